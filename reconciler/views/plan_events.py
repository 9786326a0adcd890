"""The plan as Terraform's machine-readable UI events (`plan --json`): JSON lines with the
`@level`, `@message`, `@module`, `@timestamp` envelope and a `type`. The apply progress
events share the envelope. Events carry no attribute values, so nothing sensitive can leak.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from reconciler.foreign_objects import ALLOW_FLAG, foreign_summary
from reconciler.model import Action, ActionReason, Address, Plan
from reconciler.views.formatting import cost_fields, format_hourly
from reconciler.views.plan_json import foreign_json, orphan_json
from reconciler.views.plan_summary import (
    NO_CHANGES,
    cost_line,
    display_address,
    import_command,
    ordered_changes,
    summary_counts,
    summary_line,
)

UI_MODULE = "reconciler.ui"


# Terraform's machine-readable UI names the replace reasons without their prefix.
_UI_REASON = {
    ActionReason.REPLACE_BECAUSE_TAINTED: "tainted",
    ActionReason.REPLACE_BY_REQUEST: "requested",
    ActionReason.REPLACE_BECAUSE_CANNOT_UPDATE: "cannot_update",
}


def ui_event(
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


def utc_now() -> datetime:
    return datetime.now(UTC)


def ui_resource(address: Address, provider: str) -> dict[str, Any]:
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


def plan_events(plan: Plan, *, clock: Callable[[], datetime] = utc_now) -> Iterator[dict[str, Any]]:
    """Terraform-style JSON-lines UI events for `plan --json`.

    One `planned_change` per change (no-ops are not changes, as in Terraform), a warning
    `diagnostic` per orphan and an info one per note, then `change_summary`, then `cost`.
    Events carry no attribute values, so nothing sensitive can leak through them.
    """

    def event(level: str, message: str, kind: str, **fields: Any) -> dict[str, Any]:
        return ui_event(clock, level, message, kind, **fields)

    for change in ordered_changes(plan):
        body: dict[str, Any] = {
            "resource": ui_resource(change.address, change.provider),
            "action": change.action.value,
        }
        if change.reason is not None:
            body["reason"] = _UI_REASON.get(change.reason, change.reason.value)
        if change.id is not None:
            body["id"] = change.id
        if change.deposed:
            body["deposed"] = change.deposed
        body["cost"] = cost_fields(change.hourly_before, change.hourly_after)
        message = f"{display_address(change)}: {_PLAN_VERB[change.action]}"
        yield event("info", message, "planned_change", change=body)
    if plan.foreign:
        summary = foreign_summary(plan.foreign)
        yield event(
            "warn",
            f"Warning: {summary}",
            "diagnostic",
            diagnostic={
                "severity": "warning",
                "summary": summary,
                "detail": f"apply refuses without {ALLOW_FLAG}",
            },
            foreign_objects=[foreign_json(f) for f in plan.foreign],
        )
    for orphan in plan.orphans:
        price = format_hourly(orphan.hourly_price) if orphan.hourly_price is not None else "price unknown"
        summary = f"Untracked {orphan.kind.singular} {orphan.name!r} carries this state's marker ({price})"
        yield event(
            "warn",
            f"Warning: {summary}",
            "diagnostic",
            diagnostic={"severity": "warning", "summary": summary, "detail": import_command(orphan)},
            orphan=orphan_json(orphan),
        )
    for note in plan.notes:
        yield event("info", f"Note: {note}", "diagnostic", diagnostic={"severity": "info", "summary": note})
    add, change_count, destroy = summary_counts(plan)
    message = summary_line(plan) if plan.has_changes else NO_CHANGES
    yield event(
        "info",
        message,
        "change_summary",
        changes={"add": add, "change": change_count, "import": 0, "remove": destroy, "operation": "plan"},
    )
    yield event(
        "info",
        cost_line(plan),
        "cost",
        cost=cost_fields(plan.cost.hourly_before, plan.cost.hourly_after),
    )
