"""The plan in Terraform's plan JSON shape (`format_version` 1.2, `resource_changes[].change`)
so existing policy tools can read it, plus cost, orphans, foreign objects, notes and the
state it was made from.

`action_reason` is the planner's `Change.reason` (an `ActionReason`), omitted where it names
none, as Terraform omits it: a plain create or update, a delete in `destroy` mode, the delete
of a deposed object (the JSON names its `deposed` id instead).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from reconciler.model import Action, Change, ForeignObject, Orphan, Plan
from reconciler.views.formatting import cost_fields
from reconciler.views.masking import masked_side, set_path, shown_after, split_path
from reconciler.views.outputs import output_changes_json
from reconciler.views.plan_summary import import_command, known_later

PLAN_FORMAT_VERSION = "1.2"


def reconciler_version() -> str:
    """The installed package version, for `reconciler_version` in machine output."""
    try:
        return version("reconciler")
    except PackageNotFoundError:
        return "0+unknown"


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
    sensitive = frozenset(split_path(p) for p in change.sensitive)
    before, before_sensitive = masked_side(change.before, sensitive)
    after, after_sensitive = masked_side(_without_unknowns(change), sensitive)
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
    if change.reason is not None:
        entry["action_reason"] = change.reason.value
    entry["id"] = change.id
    entry["reasons"] = list(change.reasons)
    entry["destroys_data"] = change.destroys_data
    entry["cost"] = cost_fields(change.hourly_before, change.hourly_after)
    return entry


def _without_unknowns(change: Change) -> dict[str, Any] | None:
    """`after` as Terraform writes it: a value known only after apply is null."""
    shown = shown_after(change)
    if shown is None or not change.unknown:
        return shown
    after = copy.deepcopy(shown)
    for path in change.unknown:
        set_path(after, path, None)
    return after


def _after_unknown(change: Change) -> dict[str, Any]:
    marks: dict[str, Any] = {name: True for name in known_later(change)}
    for path in change.unknown:
        *parents, last = path.split(".")
        node = marks
        for part in parents:
            child = node.setdefault(part, {})
            node = child if isinstance(child, dict) else {}
        node[last] = True
    return marks


def orphan_json(orphan: Orphan) -> dict[str, Any]:
    return {
        "provider_name": orphan.provider,
        "type": orphan.kind.value,
        "id": orphan.id,
        "name": orphan.name,
        "address": orphan.address,
        "hourly_price": orphan.hourly_price,
        "import_command": import_command(orphan),
    }


def foreign_json(item: ForeignObject) -> dict[str, Any]:
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
        "cost": cost_fields(plan.cost.hourly_before, plan.cost.hourly_after),
        "orphans": [orphan_json(o) for o in plan.orphans],
        "foreign_objects": [foreign_json(f) for f in plan.foreign],
        "notes": list(plan.notes),
        "state": {"serial": plan.state_serial, "lineage": plan.state_lineage},
    }
