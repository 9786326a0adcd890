"""Outputs for people and machines: `Outputs:` after apply, `reconciler output`, and the
output changes of a plan (text, and `output_changes` in the plan JSON, as Terraform's).

A sensitive output shows as `(sensitive)` everywhere except where its value is asked for
by name (`output -raw NAME`) or as JSON (`output -json`), as in Terraform.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from reconciler.model import Action, OutputChange
from reconciler.state.model import OutputState, StateDocument
from reconciler.views.masking import KNOWN_AFTER_APPLY, SENSITIVE_TEXT

_SYMBOL = {Action.CREATE: "+", Action.UPDATE: "~", Action.DELETE: "-"}


def format_value(value: Any) -> str:
    """A value as the `name = value` lines show it: strings quoted, lists and maps as JSON."""
    if isinstance(value, list | dict):
        return json.dumps(value, indent=2, sort_keys=True)
    return json.dumps(value)


def output_lines(outputs: dict[str, OutputState]) -> list[str]:
    lines: list[str] = []
    for name in sorted(outputs):
        held = outputs[name]
        lines.append(f"{name} = {SENSITIVE_TEXT if held.sensitive else format_value(held.value)}")
    return lines


def outputs_json(doc: StateDocument, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """`{name: {value, type, sensitive}}`; a sensitive value only when given in `values`."""
    shown: dict[str, Any] = {}
    for name in sorted(doc.outputs):
        held = doc.outputs[name]
        value = (values or {}).get(name) if held.sensitive else held.value
        shown[name] = {"sensitive": held.sensitive, "type": held.type, "value": value}
    return shown


def raw_text(value: Any) -> str | None:
    """What `output -raw` prints: a string, number or bool as bare text; None for anything else."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    return None


def _side(change: OutputChange, value: Any, unknown: bool = False) -> str:
    if unknown:
        return KNOWN_AFTER_APPLY
    if value is None:
        return "null"
    return SENSITIVE_TEXT if change.sensitive else format_value(value)


def output_change_lines(changes: Sequence[OutputChange]) -> list[str]:
    """`Changes to Outputs:` of a plan, or nothing when no output changes."""
    shown = [c for c in changes if c.action is not Action.NOOP]
    if not shown:
        return []
    width = max(len(c.name) for c in shown)
    lines = ["Changes to Outputs:"]
    for change in shown:
        symbol = _SYMBOL[change.action]
        if change.action is Action.CREATE:
            value = _side(change, change.after, change.after_unknown)
        elif change.action is Action.DELETE:
            value = f"{_side(change, change.before)} -> null"
        else:
            value = f"{_side(change, change.before)} -> {_side(change, change.after, change.after_unknown)}"
        lines.append(f"  {symbol} {change.name.ljust(width)} = {value}".replace("\n", "\n    "))
    return lines


def _tf_actions(action: Action) -> list[str]:
    return ["no-op"] if action is Action.NOOP else [action.value]


def output_changes_json(changes: Sequence[OutputChange]) -> dict[str, Any]:
    """Terraform's `output_changes`: sensitive values are null, marked in `*_sensitive`."""
    result: dict[str, Any] = {}
    for change in changes:
        result[change.name] = {
            "actions": _tf_actions(change.action),
            "before": None if change.sensitive else change.before,
            "after": None if change.sensitive or change.after_unknown else change.after,
            "after_unknown": change.after_unknown,
            "before_sensitive": change.sensitive,
            "after_sensitive": change.sensitive,
        }
    return result
