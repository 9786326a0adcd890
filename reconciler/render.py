"""Output for people and machines: plans, state tables, apply progress.

Human output goes through a `rich.Console` the caller builds, so colour follows the
console (on a terminal only, never with `Console(no_color=True)`). Everything printed is
built as `Text`, never as markup, so brackets in values cannot restyle the output.

Machine output follows Terraform's shapes so existing policy tools can read it: the plan
JSON (`format_version` 1.2, `resource_changes[].change`) and the machine-readable UI
events (`@level`, `@message`, `type`). Sensitive values (dotted attribute paths in
`Change.sensitive`, such as `envs.HF_TOKEN`) never appear in any output: humans see
`(sensitive)`, JSON gets `null` with `true` at that path in `before_sensitive` /
`after_sensitive`, and the events and Markdown summary carry no attribute values at all.

`action_reason` in the plan JSON is derived from the change's action and its display
reasons (first matching phrase wins, case-insensitive):

=========  ==================================  ===================================
action     reason mentions                     action_reason
=========  ==================================  ===================================
replace    "error", "failed", "tainted"        replace_because_tainted
replace    "requested", "--replace"            replace_by_request
replace    anything else                       replace_because_cannot_update
delete     "destroy requested"                 (omitted: `destroy` mode, as Terraform)
delete     "count"                             delete_because_count_index
delete     anything else                       delete_because_no_resource_config
create     "deleted outside"                   create_because_deleted_outside
deposed    -                                   (omitted; the JSON names the `deposed` id)
other      -                                   (omitted, as Terraform does)
=========  ==================================  ===================================
"""

from __future__ import annotations

import copy
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import IO, TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from reconciler.foreign_objects import ALLOW_FLAG, foreign_summary
from reconciler.model import (
    HOURS_PER_MONTH,
    Action,
    Address,
    Change,
    ForeignObject,
    Orphan,
    Plan,
    Status,
    get_path,
    mask_sensitive,
)
from reconciler.public_keys import display_public_key
from reconciler.state.model import ResourceState, StateDocument
from reconciler.views.outputs import output_change_lines, output_changes_json

if TYPE_CHECKING:
    from reconciler.applier import ApplyResult

PLAN_FORMAT_VERSION = "1.2"
SENSITIVE_TEXT = "(sensitive)"
KNOWN_AFTER_APPLY = "(known after apply)"
UI_MODULE = "reconciler.ui"
NO_CHANGES = "No changes. Infrastructure matches the configuration."

# Destroys first: they free money and quota, and a reader checks them most carefully.
_ACTION_ORDER = {Action.DELETE: 0, Action.REPLACE: 1, Action.UPDATE: 2, Action.CREATE: 3}

_STYLE = {
    "+": "green",
    "-": "red",
    "~": "yellow",
    "-/+": "red",
    "+/-": "green",
}

_REASON_RULES: tuple[tuple[Action, tuple[str, ...], str | None], ...] = (
    (Action.REPLACE, ("error", "failed", "tainted"), "replace_because_tainted"),
    (Action.REPLACE, ("requested", "--replace"), "replace_by_request"),
    (Action.REPLACE, (), "replace_because_cannot_update"),
    (Action.DELETE, ("destroy requested",), None),
    (Action.DELETE, ("count",), "delete_because_count_index"),
    (Action.DELETE, (), "delete_because_no_resource_config"),
    (Action.CREATE, ("deleted outside",), "create_because_deleted_outside"),
)

# Terraform's machine-readable UI names the replace reasons without their prefix.
_UI_REASON = {
    "replace_because_tainted": "tainted",
    "replace_by_request": "requested",
    "replace_because_cannot_update": "cannot_update",
}

Path = tuple[str, ...]


# ---------------------------------------------------------------------------------------
# Money


def format_money(amount: float, *, signed: bool = False) -> str:
    """`$1,234.56`; with `signed`, `+$1,234.56` / `-$1,234.56` (a change, not a level)."""
    cents = round(amount, 2)
    if cents == 0:
        cents = 0.0
    text = f"${abs(cents):,.2f}"
    if cents < 0:
        return f"-{text}"
    return f"+{text}" if signed else text


def format_hourly(amount: float, *, signed: bool = False) -> str:
    """`$2.40/h`: the unit every price in reconciler is quoted in."""
    return f"{format_money(amount, signed=signed)}/h"


def _cost_line(plan: Plan) -> str:
    cost = plan.cost
    if not any(c.action is not Action.NOOP for c in plan.changes):
        monthly = cost.hourly_after * HOURS_PER_MONTH
        return f"Cost: {format_hourly(cost.hourly_after)} ({format_money(monthly)}/month)"
    return (
        f"Cost: {format_hourly(cost.hourly_before)} -> {format_hourly(cost.hourly_after)} "
        f"({format_hourly(cost.hourly_delta, signed=True)}, "
        f"{format_money(cost.monthly_delta, signed=True)}/month)"
    )


def _cost_fields(hourly_before: float, hourly_after: float) -> dict[str, float]:
    delta = hourly_after - hourly_before
    return {
        "hourly_before": round(hourly_before, 6),
        "hourly_after": round(hourly_after, 6),
        "hourly_delta": round(delta, 6),
        "monthly_delta": round(delta * HOURS_PER_MONTH, 6),
    }


# ---------------------------------------------------------------------------------------
# Shared plan facts


def reconciler_version() -> str:
    """The installed package version, for `reconciler_version` in machine output."""
    try:
        return version("reconciler")
    except PackageNotFoundError:
        return "0+unknown"


def ordered_changes(plan: Plan) -> list[Change]:
    """Changes a person must read (no-ops hidden): destroys, replaces, updates, creates."""
    shown = [c for c in plan.changes if c.action is not Action.NOOP]
    return sorted(shown, key=lambda c: (_ACTION_ORDER[c.action], c.address.sort_key(), c.deposed or ""))


def _summary_counts(plan: Plan) -> tuple[int, int, int]:
    replaced = plan.count(Action.REPLACE)
    return (
        plan.count(Action.CREATE) + replaced,
        plan.count(Action.UPDATE),
        plan.count(Action.DELETE) + replaced,
    )


def _summary_line(plan: Plan) -> str:
    add, change, destroy = _summary_counts(plan)
    return f"Plan: {add} to add, {change} to change, {destroy} to destroy."


def action_reason(change: Change) -> str | None:
    """Terraform's `action_reason` for a change (see the module docstring for the table)."""
    if change.deposed:
        return None
    text = " ".join(change.reasons).lower()
    for action, phrases, reason in _REASON_RULES:
        if action is change.action and (not phrases or any(p in text for p in phrases)):
            return reason
    return None


def _display_address(change: Change) -> str:
    """The address, naming the old object when a change deletes a deposed one."""
    if change.deposed:
        return f"{change.address} (deposed object {change.deposed})"
    return str(change.address)


def _import_command(orphan: Orphan) -> str:
    address = orphan.address or f"{orphan.kind.value}.{orphan.name}"
    return f"reconciler import {address} {orphan.id}"


def _split_path(dotted: str) -> Path:
    return tuple(dotted.split("."))


def _is_sensitive(path: Path, sensitive: frozenset[Path]) -> bool:
    return any(path[: len(s)] == s for s in sensitive)


# ---------------------------------------------------------------------------------------
# Human plan


def _fmt_scalar(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _fmt_key(key: str, nested: bool) -> str:
    return json.dumps(key, ensure_ascii=False) if nested else key


class _Missing:
    """Marks a key absent from one side of a diff (None is a real value)."""

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


class _Block:
    """Builds the attribute lines of one change block, Terraform style.

    A line is: indent, symbol, padded label, ` = `, value, and an optional
    `# forces replacement` comment. Containers are always expanded, so a sensitive value
    nested anywhere is masked on its own line and never printed inside a collapsed one.
    """

    def __init__(self, change: Change) -> None:
        self.sensitive = frozenset(_split_path(p) for p in change.sensitive)
        self.replace = frozenset(_split_path(p) for p in change.replace_paths)
        self.unknown = frozenset(_split_path(p) for p in change.unknown)
        self.lines: list[Text] = []

    def _forces(self, path: Path, leaf: bool) -> bool:
        if path in self.replace:
            return True
        return leaf and any(r[: len(path)] == path for r in self.replace)

    def line(
        self,
        indent: int,
        symbol: str,
        label: str | None,
        width: int,
        value: Text | str,
        *,
        forces: bool = False,
        suffix: str = "",
    ) -> None:
        line = Text(" " * indent)
        line.append(symbol, style=_STYLE.get(symbol, ""))
        line.append(" ")
        if label is not None:
            line.append(label.ljust(width))
            line.append(" = ")
        line.append(value if isinstance(value, Text) else Text(value))
        if suffix:
            line.append(suffix)
        if forces:
            line.append(" # forces replacement", style="red")
        self.lines.append(line)

    def hidden_note(self, indent: int, hidden: int, noun: str) -> None:
        if hidden:
            plural = "" if hidden == 1 else "s"
            note = f"# ({hidden} unchanged {noun}{plural} hidden)"
            self.lines.append(Text(" " * indent + note, style="dim"))

    def _value_text(self, value: Any, path: Path) -> Text:
        if _is_sensitive(path, self.sensitive):
            return Text(SENSITIVE_TEXT, style="dim")
        if path in self.unknown:
            return Text(KNOWN_AFTER_APPLY)
        return Text(_fmt_scalar(value))

    def full(
        self, indent: int, symbol: str, label: str | None, width: int, value: Any, path: Path
    ) -> None:
        """Every element of `value` with one symbol (the whole value is added or removed)."""
        sep = "," if label is None else ""
        masked = _is_sensitive(path, self.sensitive) or path in self.unknown
        if masked or not isinstance(value, dict | list) or not value:
            self.line(
                indent,
                symbol,
                label,
                width,
                self._value_text(value, path),
                forces=self._forces(path, leaf=True),
                suffix=sep,
            )
            return
        opener, closer = ("{", "}") if isinstance(value, dict) else ("[", "]")
        self.line(indent, symbol, label, width, opener, forces=self._forces(path, leaf=False))
        if isinstance(value, dict):
            keys = [_fmt_key(str(k), nested=True) for k in value]
            inner = max(len(k) for k in keys)
            for key, shown in zip(value, keys, strict=True):
                self.full(indent + 4, symbol, shown, inner, value[key], (*path, str(key)))
        else:
            for i, item in enumerate(value):
                self.full(indent + 4, symbol, None, 0, item, (*path, str(i)))
        self.lines.append(Text(" " * (indent + 2) + closer + sep))

    def changed_keys(self, before: dict[str, Any], after: dict[str, Any], path: Path) -> list[str]:
        """Keys whose values differ, plus equal ones named as forcing replacement."""
        keys = set(before) | set(after)
        return sorted(
            (
                k
                for k in keys
                if before.get(k, _MISSING) != after.get(k, _MISSING) or (*path, str(k)) in self.replace
            ),
            key=str,
        )

    def diff_mapping(
        self,
        indent: int,
        before: dict[str, Any],
        after: dict[str, Any],
        path: Path,
        *,
        nested: bool,
        min_width: int = 0,
    ) -> int:
        """Lines for keys that differ; returns how many equal keys were left out."""
        shown = self.changed_keys(before, after, path)
        width = max([min_width, *(len(_fmt_key(str(k), nested)) for k in shown)])
        for key in shown:
            self.diff_value(
                indent,
                _fmt_key(str(key), nested),
                width,
                before.get(key, _MISSING),
                after.get(key, _MISSING),
                (*path, str(key)),
            )
        return len(set(before) | set(after)) - len(shown)

    def diff_value(self, indent: int, label: str, width: int, old: Any, new: Any, path: Path) -> None:
        if old is _MISSING:
            self.full(indent, "+", label, width, new, path)
            return
        if new is _MISSING:
            self.full(indent, "-", label, width, old, path)
            return
        if old == new:
            self.full(indent, " ", label, width, new, path)
            return
        if _is_sensitive(path, self.sensitive):
            masked = Text(SENSITIVE_TEXT, style="dim")
            self.line(indent, "~", label, width, masked, forces=self._forces(path, leaf=True))
            return
        if path in self.unknown and not isinstance(old, dict | list):
            shown = Text(f"{_fmt_scalar(old)} -> {KNOWN_AFTER_APPLY}")
            self.line(indent, "~", label, width, shown, forces=self._forces(path, leaf=True))
            return
        if isinstance(old, dict) and isinstance(new, dict):
            self.line(indent, "~", label, width, "{", forces=self._forces(path, leaf=False))
            hidden = self.diff_mapping(indent + 4, old, new, path, nested=True)
            self.hidden_note(indent + 6, hidden, "element")
            self.lines.append(Text(" " * (indent + 2) + "}"))
            return
        both_lists = isinstance(old, list) and isinstance(new, list)
        removed = [(i, v) for i, v in enumerate(old) if v not in new] if both_lists else []
        added = [(i, v) for i, v in enumerate(new) if v not in old] if both_lists else []
        if removed or added:
            self.line(indent, "~", label, width, "[", forces=self._forces(path, leaf=False))
            for i, item in removed:
                self.full(indent + 4, "-", None, 0, item, (*path, str(i)))
            for i, item in added:
                self.full(indent + 4, "+", None, 0, item, (*path, str(i)))
            self.hidden_note(indent + 6, len(new) - len(added), "element")
            self.lines.append(Text(" " * (indent + 2) + "]"))
            return
        if isinstance(old, dict | list) or isinstance(new, dict | list):
            # A change of type or of order only: show both values whole.
            self.full(indent, "-", label, width, old, path)
            self.full(indent, "+", label, width, new, path)
            return
        self.line(
            indent,
            "~",
            label,
            width,
            Text(f"{_fmt_scalar(old)} -> ").append_text(self._value_text(new, path)),
            forces=self._forces(path, leaf=True),
        )

    def known_after_apply(self, indent: int, symbol: str, names: Sequence[str], width: int) -> None:
        for name in names:
            self.line(indent, symbol, name, width, KNOWN_AFTER_APPLY)


_HEADLINE = {
    Action.CREATE: "will be created",
    Action.DELETE: "will be destroyed",
    Action.REPLACE: "must be replaced",
    Action.UPDATE: "will be updated in-place",
}


def _symbol(change: Change) -> str:
    if change.action is Action.REPLACE:
        return "+/-" if change.create_before_destroy else "-/+"
    return {Action.CREATE: "+", Action.DELETE: "-", Action.UPDATE: "~"}[change.action]


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node: Any = data
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and last in node:
        node[last] = value


def _comparable_after(change: Change, lineage: str) -> dict[str, Any]:
    """`after` with each unchanged secret replaced by the digest state keeps for it.

    State stores sensitive values as salted digests (`mask_sensitive`) while the plan's
    `after` holds them in clear; without this every secret would look changed.
    """
    after = change.after or {}
    if not change.sensitive or not change.before:
        return after
    digests = mask_sensitive(after, change.sensitive, lineage)
    aligned = copy.deepcopy(after)
    for path in change.sensitive:
        old = get_path(change.before, path)
        if old is not None and old == get_path(digests, path):
            _set_path(aligned, path, old)
    return aligned


def _shown_keys(attributes: dict[str, Any]) -> dict[str, Any]:
    """A public key as its type, fingerprint and comment: a key line may be kilobytes long."""
    key = attributes.get("public_key")
    if not isinstance(key, str):
        return attributes
    return {**attributes, "public_key": display_public_key(key)}


def _change_block(change: Change, lineage: str) -> list[Text]:
    symbol = _symbol(change)
    headline = _HEADLINE[change.action]
    if change.action is Action.REPLACE and change.create_before_destroy:
        headline += " (create before destroy)"
    if change.destroys_data:
        headline += " (destroys data)"
    lines = [Text(f"  # {_display_address(change)} {headline}", style="bold")]
    lines += [Text(f"  # ({reason})") for reason in change.reasons]
    head = Text(symbol.rjust(3), style=_STYLE[symbol])
    head.append(f" {change.address} ({change.provider}) {{")
    lines.append(head)

    block = _Block(change)
    before = _shown_keys(change.before or {})
    after = _shown_keys(_comparable_after(change, lineage))
    later = _known_later(change)
    if change.action is Action.CREATE:
        width = max((len(k) for k in [*after, *later]), default=0)
        for key, value in after.items():
            block.full(6, "+", key, width, value, (key,))
        block.known_after_apply(6, "+", later, width)
    elif change.action is Action.DELETE:
        keys = (["id"] if change.id else []) + list(before)
        width = max((len(k) for k in keys), default=0)
        if change.id:
            block.full(6, "-", "id", width, change.id, ("id",))
        for key, value in before.items():
            block.full(6, "-", key, width, value, (key,))
    else:
        width = max(len(k) for k in ["id", *block.changed_keys(before, after, ()), *later])
        if change.id and change.action is Action.REPLACE:
            known_later = Text(f"{_fmt_scalar(change.id)} -> (known after apply)")
            block.line(6, "~", "id", width, known_later)
        elif change.id:
            block.line(6, " ", "id", width, Text(_fmt_scalar(change.id)))
        hidden = block.diff_mapping(6, before, after, (), nested=False, min_width=width)
        block.known_after_apply(6, "~", [k for k in later if k != "id"], width)
        block.hidden_note(8, hidden, "attribute")
    lines += block.lines
    if change.hourly_before or change.hourly_after:
        lines.append(
            Text(
                f"      # {format_hourly(change.hourly_before)} -> {format_hourly(change.hourly_after)}",
                style="dim",
            )
        )
    lines.append(Text("    }"))
    return lines


def _known_later(change: Change) -> list[str]:
    """Computed attributes a new object reports only once it exists (ip, ssh_port, ...)."""
    if change.action not in (Action.CREATE, Action.REPLACE):
        return []
    return [name for name in change.computed if name not in (change.after or {})]


def _symbols_legend(changes: Sequence[Change]) -> list[Text]:
    used = {_symbol(c) for c in changes}
    legend = [
        ("+", "create"),
        ("~", "update in-place"),
        ("-", "destroy"),
        ("-/+", "destroy and then create replacement"),
        ("+/-", "create replacement and then destroy"),
    ]
    lines = [Text("Resource actions are indicated with the following symbols:")]
    for symbol, meaning in legend:
        if symbol in used:
            line = Text(symbol.rjust(3), style=_STYLE[symbol])
            line.append(f" {meaning}")
            lines.append(line)
    return lines


def _orphan_lines(orphans: Sequence[Orphan]) -> list[Text]:
    total = sum(o.hourly_price or 0.0 for o in orphans)
    noun = "resource carries" if len(orphans) == 1 else "resources carry"
    lines = [
        Text(
            f"Warning: {len(orphans)} live {noun} this state's marker but state does not track "
            f"{'it' if len(orphans) == 1 else 'them'} ({format_hourly(total)})",
            style="bold yellow",
        ),
        Text(
            "  Reconciler will not change or delete these, but they run and may cost money. "
            "Adopt each with the command shown, or delete it at the provider."
        ),
    ]
    for orphan in sorted(orphans, key=lambda o: (o.kind.value, o.name, o.id)):
        price = format_hourly(orphan.hourly_price) if orphan.hourly_price is not None else "price unknown"
        lines.append(
            Text(f"  - {orphan.kind.singular} {orphan.name!r} ({orphan.provider}, id={orphan.id}): {price}")
        )
        command = Text(f"      {_import_command(orphan)}", style="cyan")
        if orphan.address is None:
            command.append("  # use the address you give it in your configuration", style="dim")
        lines.append(command)
    return lines


def _foreign_lines(foreign: Sequence[ForeignObject]) -> list[Text]:
    lines = [
        Text(f"Warning: {foreign_summary(tuple(foreign))}.", style="bold red"),
        Text(
            "  Applying would run them twice. Is this configuration's state somewhere else (another "
            "-f path, a renamed folder or file, a different --state or stack)? Point reconciler at it; "
            f"apply refuses to create these unless {ALLOW_FLAG} is given."
        ),
    ]
    for item in foreign:
        price = format_hourly(item.hourly_price) if item.hourly_price is not None else "price unknown"
        lines.append(
            Text(
                f"  - {item.address}: {item.provider} {item.kind.singular} {item.name!r} (id={item.id}) "
                f"of state lineage {item.lineage}: {price}"
            )
        )
    return lines


def render_plan(plan: Plan, console: Console) -> None:
    """Print a plan the way Terraform does, so a reader knows what apply will do and cost."""

    def out(line: Text | str = "") -> None:
        console.print(line if isinstance(line, Text) else Text(line), soft_wrap=True)

    changes = ordered_changes(plan)
    if changes:
        for line in _symbols_legend(changes):
            out(line)
        out()
        out("Reconciler will perform the following actions:")
        for change in changes:
            out()
            for line in _change_block(change, plan.state_lineage):
                out(line)
        out()
    elif not any(o.action is not Action.NOOP for o in plan.outputs):
        out(Text(NO_CHANGES, style="bold green"))
        out()
    output_lines = output_change_lines(plan.outputs)
    if output_lines:
        for text in output_lines:
            out(text)
        out()
        if not changes:
            out("You can apply this plan to save these new output values, without changing any real infrastructure.")
            out()
    if plan.foreign:
        for line in _foreign_lines(plan.foreign):
            out(line)
        out()
    if plan.orphans:
        for line in _orphan_lines(plan.orphans):
            out(line)
        out()
    if plan.notes:
        out(Text("Note:", style="bold"))
        for note in plan.notes:
            out(f"  - {note}")
        out()
    if changes:
        out(Text(_summary_line(plan), style="bold"))
    out(_cost_line(plan))


# ---------------------------------------------------------------------------------------
# Plan JSON


def _masked(value: Any, path: Path, sensitive: frozenset[Path]) -> tuple[Any, Any]:
    """(value with sensitive leaves set to None, Terraform sensitivity mark or None)."""
    if _is_sensitive(path, sensitive):
        return None, True
    if not any(s[: len(path)] == path and len(s) > len(path) for s in sensitive):
        return value, None
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        marks: dict[str, Any] = {}
        for key, item in value.items():
            out[key], mark = _masked(item, (*path, str(key)), sensitive)
            if mark is not None:
                marks[key] = mark
        return out, (marks or None)
    if isinstance(value, list):
        items = [_masked(item, (*path, str(i)), sensitive) for i, item in enumerate(value)]
        marks_list = [m if m is not None else False for _, m in items]
        return [v for v, _ in items], (marks_list if any(marks_list) else None)
    return value, None


def _masked_side(value: dict[str, Any] | None, sensitive: frozenset[Path]) -> tuple[Any, Any]:
    if value is None:
        return None, False
    masked, mark = _masked(value, (), sensitive)
    return masked, (mark or {})


def _path_parts(dotted: str, values: Iterable[dict[str, Any] | None]) -> list[str | int]:
    """Split a dotted path, with list positions as ints the way Terraform writes them."""
    parts: list[str | int] = []
    nodes: list[Any] = [v for v in values if v is not None]
    for part in dotted.split("."):
        in_list = any(isinstance(n, list) for n in nodes)
        index = int(part) if in_list and part.isdigit() else None
        parts.append(index if index is not None else part)
        step: list[Any] = []
        for node in nodes:
            if isinstance(node, dict) and part in node:
                step.append(node[part])
            elif isinstance(node, list) and index is not None and index < len(node):
                step.append(node[index])
        nodes = step
    return parts


def _tf_actions(change: Change) -> list[str]:
    if change.action is Action.REPLACE:
        return ["create", "delete"] if change.create_before_destroy else ["delete", "create"]
    return [change.action.value]


def _resource_change(change: Change) -> dict[str, Any]:
    sensitive = frozenset(_split_path(p) for p in change.sensitive)
    before, before_sensitive = _masked_side(change.before, sensitive)
    after, after_sensitive = _masked_side(_without_unknowns(change), sensitive)
    entry: dict[str, Any] = {
        "address": str(change.address),
        "mode": "managed",
        "type": change.address.kind.value,
        "name": change.address.name,
    }
    if change.address.index is not None:
        entry["index"] = change.address.index
    if change.deposed:
        entry["deposed"] = change.deposed
    entry["provider_name"] = change.provider
    entry["change"] = {
        "actions": _tf_actions(change),
        "before": before,
        "after": after,
        "after_unknown": _after_unknown(change),
        "before_sensitive": before_sensitive,
        "after_sensitive": after_sensitive,
        "replace_paths": [_path_parts(p, (change.before, change.after)) for p in change.replace_paths],
    }
    reason = action_reason(change)
    if reason is not None:
        entry["action_reason"] = reason
    entry["id"] = change.id
    entry["reasons"] = list(change.reasons)
    entry["destroys_data"] = change.destroys_data
    entry["cost"] = _cost_fields(change.hourly_before, change.hourly_after)
    return entry


def _without_unknowns(change: Change) -> dict[str, Any] | None:
    """`after` as Terraform writes it: a value known only after apply is null."""
    if change.after is None or not change.unknown:
        return change.after
    after = copy.deepcopy(change.after)
    for path in change.unknown:
        _set_path(after, path, None)
    return after


def _after_unknown(change: Change) -> dict[str, Any]:
    marks: dict[str, Any] = {name: True for name in _known_later(change)}
    for path in change.unknown:
        *parents, last = path.split(".")
        node = marks
        for part in parents:
            child = node.setdefault(part, {})
            node = child if isinstance(child, dict) else {}
        node[last] = True
    return marks


def _orphan_json(orphan: Orphan) -> dict[str, Any]:
    return {
        "provider_name": orphan.provider,
        "type": orphan.kind.value,
        "id": orphan.id,
        "name": orphan.name,
        "address": orphan.address,
        "hourly_price": orphan.hourly_price,
        "import_command": _import_command(orphan),
    }


def _foreign_json(item: ForeignObject) -> dict[str, Any]:
    return {
        "address": item.address,
        "provider_name": item.provider,
        "type": item.kind.value,
        "id": item.id,
        "name": item.name,
        "lineage": item.lineage,
        "hourly_price": item.hourly_price,
    }


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """The plan in Terraform's plan JSON shape, plus cost, orphans, notes and state identity."""
    changes = sorted(plan.changes, key=lambda c: (c.address.sort_key(), c.deposed or ""))
    return {
        "format_version": PLAN_FORMAT_VERSION,
        "reconciler_version": reconciler_version(),
        "applyable": plan.has_changes,
        "resource_changes": [_resource_change(c) for c in changes],
        "output_changes": output_changes_json(plan.outputs),
        "cost": _cost_fields(plan.cost.hourly_before, plan.cost.hourly_after),
        "orphans": [_orphan_json(o) for o in plan.orphans],
        "foreign_objects": [_foreign_json(f) for f in plan.foreign],
        "notes": list(plan.notes),
        "state": {"serial": plan.state_serial, "lineage": plan.state_lineage},
    }


# ---------------------------------------------------------------------------------------
# Markdown summary for pull requests

_MD_CELL_MAX = 200
_MD_NOTE_MAX = 300
_MD_MIN_LIMIT = 2000
# Room kept for the "...and N more changes not listed (...)" line.
_MD_MORE_RESERVE = 300

_MD_ACTION = {
    Action.CREATE: "create",
    Action.DELETE: "destroy",
    Action.UPDATE: "update",
    Action.REPLACE: "replace",
}


def _md_cell(text: str, limit: int = _MD_CELL_MAX) -> str:
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return flat.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _md_action(change: Change) -> str:
    if change.action is Action.REPLACE and change.create_before_destroy:
        action = "replace (create first)"
    else:
        action = _MD_ACTION[change.action]
    return f"{action}, **destroys data**" if change.destroys_data else action


def _md_row(change: Change) -> str:
    delta = change.hourly_after - change.hourly_before
    return (
        f"| `{_md_cell(_display_address(change))}` | {_md_action(change)} | "
        f"{_md_cell('; '.join(change.reasons))} | {format_hourly(delta, signed=True)} |\n"
    )


def _md_more_line(rest: Sequence[Change]) -> str:
    counts = Counter(c.action for c in rest)
    parts = [f"{counts[a]:,} to {_MD_ACTION[a]}" for a in _ACTION_ORDER if counts[a]]
    noun = "change" if len(rest) == 1 else "changes"
    return f"\n_…and {len(rest):,} more {noun} not listed ({', '.join(parts)}); see the full plan output._\n"


def plan_summary_markdown(plan: Plan, limit: int = 65000) -> str:
    """A PR comment: one table row per change, cut to fit `limit` characters.

    Rows that do not fit are counted by action in a closing line, never dropped silently.
    """
    if limit < _MD_MIN_LIMIT:
        raise ValueError(f"limit must be at least {_MD_MIN_LIMIT} characters, got {limit}")
    changes = ordered_changes(plan)
    title = "### Reconciler plan\n\n"
    if not changes:
        head = title + NO_CHANGES + "\n"
    else:
        head = title + "| Address | Action | Reason | $/h change |\n| --- | --- | --- | --- |\n"

    tail = "\n"
    if changes:
        tail += f"**{_summary_line(plan)}**\n"
    tail += f"{_cost_line(plan)}\n"
    if plan.foreign:
        tail += f"\n> **Warning:** {foreign_summary(plan.foreign)}; apply refuses without `{ALLOW_FLAG}`.\n"
    if plan.orphans:
        total = sum(o.hourly_price or 0.0 for o in plan.orphans)
        tail += (
            f"\n> **Warning:** {len(plan.orphans):,} live resource(s) ({format_hourly(total)}) carry this "
            "state's marker but are not in state; adopt them with `reconciler import` "
            "(see the plan output).\n"
        )
    if plan.notes:
        notes_budget = limit // 4
        notes = "\n**Notes:**\n"
        for i, note in enumerate(plan.notes):
            line = f"- {_md_cell(note, _MD_NOTE_MAX)}\n"
            left = len(plan.notes) - i
            if len(notes) + len(line) > notes_budget:
                notes += f"- _…and {left:,} more note(s); see the full plan output._\n"
                break
            notes += line
        tail += notes

    budget = limit - len(head) - len(tail) - _MD_MORE_RESERVE
    rows: list[str] = []
    used = 0
    for change in changes:
        row = _md_row(change)
        if used + len(row) > budget:
            break
        rows.append(row)
        used += len(row)
    more = _md_more_line(changes[len(rows) :]) if len(rows) < len(changes) else ""
    return head + "".join(rows) + more + tail


# ---------------------------------------------------------------------------------------
# Machine-readable plan events (plan --json)


def _ui_event(
    clock: Callable[[], datetime], level: str, message: str, kind: str, **fields: Any
) -> dict[str, Any]:
    """One event of the machine-readable UI, with Terraform's `@`-prefixed envelope."""
    return {
        "@level": level,
        "@message": message,
        "@module": UI_MODULE,
        "@timestamp": clock().isoformat(timespec="microseconds"),
        "type": kind,
        **fields,
    }


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _ui_resource(address: Address, provider: str) -> dict[str, Any]:
    return {
        "addr": str(address),
        "module": "",
        "resource": str(address),
        "implied_provider": provider,
        "resource_type": address.kind.value,
        "resource_name": address.name,
        "resource_key": address.index,
    }


_PLAN_VERB = {
    Action.CREATE: "Plan to create",
    Action.DELETE: "Plan to delete",
    Action.UPDATE: "Plan to update",
    Action.REPLACE: "Plan to replace",
}


def plan_events(plan: Plan, *, clock: Callable[[], datetime] = _utc_now) -> Iterator[dict[str, Any]]:
    """Terraform-style JSON-lines UI events for `plan --json`.

    One `planned_change` per change (no-ops are not changes, as in Terraform), a warning
    `diagnostic` per orphan and an info one per note, then `change_summary`, then `cost`.
    Events carry no attribute values, so nothing sensitive can leak through them.
    """

    def event(level: str, message: str, kind: str, **fields: Any) -> dict[str, Any]:
        return _ui_event(clock, level, message, kind, **fields)

    for change in ordered_changes(plan):
        body: dict[str, Any] = {
            "resource": _ui_resource(change.address, change.provider),
            "action": change.action.value,
        }
        reason = action_reason(change)
        if reason is not None:
            body["reason"] = _UI_REASON.get(reason, reason)
        if change.id is not None:
            body["id"] = change.id
        if change.deposed:
            body["deposed"] = change.deposed
        body["cost"] = _cost_fields(change.hourly_before, change.hourly_after)
        message = f"{_display_address(change)}: {_PLAN_VERB[change.action]}"
        yield event("info", message, "planned_change", change=body)
    if plan.foreign:
        summary = foreign_summary(plan.foreign)
        yield event(
            "warn",
            f"Warning: {summary}",
            "diagnostic",
            diagnostic={"severity": "warning", "summary": summary, "detail": f"apply refuses without {ALLOW_FLAG}"},
            foreign_objects=[_foreign_json(f) for f in plan.foreign],
        )
    for orphan in plan.orphans:
        price = format_hourly(orphan.hourly_price) if orphan.hourly_price is not None else "price unknown"
        summary = f"Untracked {orphan.kind.singular} {orphan.name!r} carries this state's marker ({price})"
        yield event(
            "warn",
            f"Warning: {summary}",
            "diagnostic",
            diagnostic={"severity": "warning", "summary": summary, "detail": _import_command(orphan)},
            orphan=_orphan_json(orphan),
        )
    for note in plan.notes:
        yield event("info", f"Note: {note}", "diagnostic", diagnostic={"severity": "info", "summary": note})
    add, change_count, destroy = _summary_counts(plan)
    message = _summary_line(plan) if plan.has_changes else NO_CHANGES
    yield event(
        "info",
        message,
        "change_summary",
        changes={"add": add, "change": change_count, "import": 0, "remove": destroy, "operation": "plan"},
    )
    yield event(
        "info",
        _cost_line(plan),
        "cost",
        cost=_cost_fields(plan.cost.hourly_before, plan.cost.hourly_after),
    )


# ---------------------------------------------------------------------------------------
# State table


def _address_order(address: str) -> tuple[int, tuple[int, str, int], str]:
    try:
        return (0, Address.parse(address).sort_key(), address)
    except ValueError:
        return (1, (0, "", 0), address)


def _type_of(kind: str, attributes: dict[str, Any]) -> str:
    if kind == "volumes" and attributes.get("size_gb") is not None:
        return f"{attributes['size_gb']} GB"
    for key in ("shade_instance_type", "instance_type", "gpu_type", "offering_id"):
        if attributes.get(key):
            return str(attributes[key])
    return ""


def _state_row(address: str, res: ResourceState) -> list[Text]:
    status_style = {Status.ERROR.value: "red", Status.PENDING.value: "yellow"}.get(res.status, "")
    return [
        Text(address),
        Text(res.provider),
        Text(res.id),
        Text(res.status, style=status_style),
        Text(format_hourly(res.hourly_price) if res.hourly_price is not None else "-"),
        Text(str(res.attributes.get("name", ""))),
        Text(str(res.attributes.get("region") or res.computed.get("region") or "")),
        Text(_type_of(res.kind, res.attributes)),
        Text(_connect_address(res)),
    ]


def _connect_address(res: ResourceState) -> str:
    """`user@ip:port` once an instance reports where users connect to, else empty."""
    ip = res.computed.get("ip")
    if res.kind != "instances" or not ip:
        return ""
    user = res.computed.get("ssh_user")
    port = res.computed.get("ssh_port")
    return f"{user + '@' if user else ''}{ip}{':' + str(port) if port else ''}"


def render_state_table(doc: StateDocument, console: Console) -> None:
    """What state tracks and what it costs, with a warning for unresolved operations.

    Deposed objects (old halves of a create_before_destroy replacement) are listed too:
    they still run and cost money until the next apply deletes them.
    """

    def out(text: str, style: str = "") -> None:
        console.print(Text(text, style=style), soft_wrap=True)

    if not doc.resources and not doc.deposed:
        out("No resources in state.")
    else:
        table = Table(show_edge=False, header_style="bold")
        for column in ("Address", "Provider", "ID", "Status", "$/h", "Name", "Region", "Type", "SSH"):
            table.add_column(column, justify="right" if column == "$/h" else "left", overflow="fold")
        for address in sorted(doc.resources, key=_address_order):
            table.add_row(*_state_row(address, doc.resources[address]))
        for old in sorted(doc.deposed, key=lambda d: (_address_order(d.address), d.id)):
            table.add_row(*_state_row(f"{old.address} (deposed)", old))
        console.print(table)
        everything = [*doc.resources.values(), *doc.deposed]
        total = sum(r.hourly_price or 0.0 for r in everything)
        deposed = f" ({len(doc.deposed)} deposed)" if doc.deposed else ""
        plural = "" if len(everything) == 1 else "s"
        out(
            f"{len(everything)} resource{plural}{deposed}, {format_hourly(total)} "
            f"({format_money(total * HOURS_PER_MONTH)}/month)",
            "bold",
        )
    if doc.pending:
        count = len(doc.pending)
        out(
            f"Warning: {count} pending operation{'s' if count != 1 else ''} from an interrupted run; "
            "the next plan or apply resolves them by marker before planning:",
            "bold yellow",
        )
        for op in doc.pending:
            ident = f", id={op.id}" if op.id else ""
            out(
                f"  - {op.op} {op.address} ({op.provider}, name {op.name!r}{ident}, "
                f"marker {op.marker}, started {op.started_at})"
            )


# ---------------------------------------------------------------------------------------
# Apply progress

_APPLY_WORDS = {
    # action: (starting, still, complete, failed)
    Action.CREATE: ("Creating...", "Still creating...", "Creation complete", "Creation failed"),
    Action.DELETE: ("Destroying...", "Still destroying...", "Destruction complete", "Destruction failed"),
    Action.UPDATE: ("Modifying...", "Still modifying...", "Modifications complete", "Modification failed"),
    Action.REPLACE: ("Replacing...", "Still replacing...", "Replacement complete", "Replacement failed"),
    Action.NOOP: ("Refreshing...", "Still refreshing...", "Refresh complete", "Refresh failed"),
}

# The applier runs a replace as two steps, each reported with its own phase.
_PHASE_ACTION = {"create": Action.CREATE, "delete": Action.DELETE, "update": Action.UPDATE}


def format_elapsed(seconds: float) -> str:
    """`3s`, `1m30s`, `2h0m5s`: Terraform's elapsed-time style."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _step_action(change: Change, phase: str | None) -> Action:
    if phase is None:
        return change.action
    try:
        return _PHASE_ACTION[phase]
    except KeyError:
        raise ValueError(f"unknown apply phase {phase!r} (expected create, delete or update)") from None


def _step_key(change: Change) -> str:
    return f"{change.address}#{change.deposed}" if change.deposed else str(change.address)


class ApplyReporter:
    """Terraform-like apply progress lines for people.

    `phase` (create, delete, update) names the step when the applier splits a change, so
    a replace reads `Destroying...` then `Creating...` as in Terraform. Every method
    prints whole lines synchronously and never awaits, so concurrent asyncio tasks in one
    thread can call it without interleaving partial output.
    """

    def __init__(
        self,
        console: Console,
        *,
        clock: Callable[[], datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._console = console
        self._start_tracking(clock, monotonic)

    def _start_tracking(self, clock: Callable[[], datetime], monotonic: Callable[[], float]) -> None:
        self._clock = clock
        self._monotonic = monotonic
        self._in_flight: dict[str, tuple[Change, Action, float]] = {}

    def _write(self, event: dict[str, Any]) -> None:
        style = {"error": "bold red", "warn": "yellow"}.get(event["@level"], "")
        if event["type"] == "change_summary":
            style = "bold red" if event["@level"] == "error" else "bold green"
        self._console.print(Text(event["@message"], style=style), soft_wrap=True)

    def _event(self, level: str, message: str, kind: str, **fields: Any) -> dict[str, Any]:
        return _ui_event(self._clock, level, message, kind, **fields)

    @staticmethod
    def _hook(change: Change, action: Action, **fields: Any) -> dict[str, Any]:
        hook: dict[str, Any] = {
            "resource": _ui_resource(change.address, change.provider),
            "action": action.value,
        }
        if change.deposed:
            hook["deposed"] = change.deposed
        hook.update(fields)
        return hook

    def started(self, change: Change, *, phase: str | None = None) -> None:
        """A step began: the applier sent (or is about to send) its API call."""
        action = _step_action(change, phase)
        self._in_flight[_step_key(change)] = (change, action, self._monotonic())
        old_id = change.deposed or change.id
        ident = f" [id={old_id}]" if old_id and action is not Action.CREATE else ""
        message = f"{_display_address(change)}: {_APPLY_WORDS[action][0]}{ident}"
        self._write(self._event("info", message, "apply_start", hook=self._hook(change, action)))

    def waiting(self, target: Change | Address | str, status: Status | str, seconds: float) -> None:
        """Still waiting on a step (an instance to become active, for example)."""
        if isinstance(target, Change):
            tracked = self._in_flight.get(_step_key(target))
            shown = _display_address(target)
        else:
            tracked = self._in_flight.get(str(target))
            shown = str(target)
        status_text = status.value if isinstance(status, Status) else str(status)
        still = _APPLY_WORDS[tracked[1]][1] if tracked else "Still waiting..."
        message = f"{shown}: {still} [{format_elapsed(seconds)} elapsed] (status: {status_text})"
        if tracked:
            hook = self._hook(tracked[0], tracked[1], elapsed_seconds=int(seconds), status=status_text)
        else:
            hook = {"resource": {"addr": shown}, "elapsed_seconds": int(seconds), "status": status_text}
        self._write(self._event("info", message, "apply_progress", hook=hook))

    def finished(self, change: Change, seconds: float, id: str | None, *, phase: str | None = None) -> None:
        """A step succeeded after `seconds`; `id` is the provider id it left (None for a delete)."""
        action = _step_action(change, phase)
        self._in_flight.pop(_step_key(change), None)
        ident = f" [id={id}]" if id else ""
        done = _APPLY_WORDS[action][2]
        message = f"{_display_address(change)}: {done} after {format_elapsed(seconds)}{ident}"
        hook = self._hook(change, action, elapsed_seconds=int(seconds))
        if id:
            hook.update({"id_key": "id", "id_value": id})
        self._write(self._event("info", message, "apply_complete", hook=hook))

    def failed(self, change: Change, error_text: str, *, phase: str | None = None) -> None:
        """A step failed; the error text is shown in full, indented under the address."""
        action = _step_action(change, phase)
        tracked = self._in_flight.pop(_step_key(change), None)
        elapsed = self._monotonic() - tracked[2] if tracked else None
        after = f" after {format_elapsed(elapsed)}" if elapsed is not None else ""
        first, *rest = error_text.splitlines() or [""]
        message = f"{_display_address(change)}: {_APPLY_WORDS[action][3]}{after}: {first}"
        if rest:
            message += "\n" + "\n".join(f"    {line}" for line in rest)
        hook = self._hook(
            change,
            action,
            elapsed_seconds=int(elapsed) if elapsed is not None else None,
            error=error_text,
        )
        self._write(self._event("error", message, "apply_errored", hook=hook))

    def capacity_fallback(
        self, change: Change, refused: str, error: str, next: str, attempt: int, reason: str = "no capacity"
    ) -> None:
        """A create found no capacity (or, with on_boot_failure, failed to boot); apply tries
        the plan's next candidate."""
        total = len(change.candidates)
        message = f"{_display_address(change)}: {reason} on {refused}; attempt {attempt} of {total}: {next}"
        hook = self._hook(
            change, Action.CREATE, refused=refused, error=error, next=next, attempt=attempt, reason=reason
        )
        self._write(self._event("warn", message, "apply_fallback", hook=hook))

    def summary(
        self,
        added: int,
        changed: int,
        destroyed: int,
        failed: int,
        not_started: int,
        *,
        interrupted: bool = False,
        no_capacity: int = 0,
    ) -> None:
        """The closing line: `Apply complete!` only when every step succeeded. Creates that
        found no capacity are counted apart: a sold-out market, not a broken configuration."""
        done = f"{added} added, {changed} changed, {destroyed} destroyed"
        if failed or not_started or interrupted:
            level = "error"
            verb = "interrupted" if interrupted else "failed"
            errors = failed - no_capacity
            sold_out = f"{no_capacity} found no capacity, " if no_capacity else ""
            message = f"Apply {verb}: {sold_out}{errors} failed, {not_started} not started; succeeded: {done}."
        else:
            level = "info"
            message = f"Apply complete! Resources: {done}."
        changes = {
            "add": added,
            "change": changed,
            "import": 0,
            "remove": destroyed,
            "failed": failed,
            "no_capacity": no_capacity,
            "not_started": not_started,
            "interrupted": interrupted,
            "operation": "apply",
        }
        self._write(self._event(level, message, "change_summary", changes=changes))


class JsonApplyReporter(ApplyReporter):
    """The same apply progress as JSON lines (`apply --json`), one event per line."""

    def __init__(
        self,
        stream: IO[str],
        *,
        clock: Callable[[], datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._start_tracking(clock, monotonic)

    def _write(self, event: dict[str, Any]) -> None:
        self._stream.write(json.dumps(event, ensure_ascii=False) + "\n")
        self._stream.flush()


class ReportingApplyObserver:
    """The applier's observer (its `ApplyObserver` protocol), speaking through a reporter."""

    def __init__(self, reporter: ApplyReporter) -> None:
        self.reporter = reporter

    def step_started(self, change: Change, phase: str) -> None:
        self.reporter.started(change, phase=phase)

    def step_finished(self, change: Change, phase: str, seconds: float, id: str | None) -> None:
        self.reporter.finished(change, seconds, id, phase=phase)

    def step_failed(self, change: Change, phase: str, error: str) -> None:
        self.reporter.failed(change, error, phase=phase)

    def waiting(self, change: Change, status: str, seconds: float) -> None:
        self.reporter.waiting(change, status, seconds)

    def status_seen(self, change: Change, api_status: str) -> None:
        """Lines report waits through `waiting` only, so a log gets one line per interval."""

    def capacity_fallback(
        self, change: Change, refused: str, error: str, next: str, attempt: int, reason: str = "no capacity"
    ) -> None:
        self.reporter.capacity_fallback(change, refused, error, next, attempt, reason)

    def summary(self, result: ApplyResult) -> None:
        """The closing line for what apply reached, success or not."""
        self.reporter.summary(
            result.added,
            result.changed,
            result.destroyed,
            len(result.failed),
            len(result.not_started),
            interrupted=result.interrupted,
            no_capacity=len(result.no_capacity),
        )


def make_apply_observer(console: Console, as_json: bool) -> ReportingApplyObserver:
    """Human lines on `console`, or JSON lines on the console's own stream with `--json`."""
    reporter = JsonApplyReporter(console.file) if as_json else ApplyReporter(console)
    return ReportingApplyObserver(reporter)
