"""What every plan view says the same way: which changes a reader sees and in what order,
the summary and cost lines, how an address (or a deposed object) is named, the import
command for an orphan, and which attributes become known only after apply.
"""

from __future__ import annotations

from reconciler.model import HOURS_PER_MONTH, Action, Change, Orphan, Plan
from reconciler.views.formatting import format_hourly, format_money

NO_CHANGES = "No changes. Infrastructure matches the configuration."


# Destroys first: they free money and quota, and a reader checks them most carefully.
ACTION_ORDER = {Action.DELETE: 0, Action.REPLACE: 1, Action.UPDATE: 2, Action.CREATE: 3}


def cost_line(plan: Plan) -> str:
    cost = plan.cost
    if not any(c.action is not Action.NOOP for c in plan.changes):
        monthly = cost.hourly_after * HOURS_PER_MONTH
        return f"Cost: {format_hourly(cost.hourly_after)} ({format_money(monthly)}/month)"
    return (
        f"Cost: {format_hourly(cost.hourly_before)} -> {format_hourly(cost.hourly_after)} "
        f"({format_hourly(cost.hourly_delta, signed=True)}, "
        f"{format_money(cost.monthly_delta, signed=True)}/month)"
    )


def ordered_changes(plan: Plan) -> list[Change]:
    """Changes a person must read (no-ops hidden): destroys, replaces, updates, creates."""
    shown = [c for c in plan.changes if c.action is not Action.NOOP]
    return sorted(shown, key=lambda c: (ACTION_ORDER[c.action], c.address.sort_key(), c.deposed or ""))


def summary_counts(plan: Plan) -> tuple[int, int, int]:
    replaced = plan.count(Action.REPLACE)
    return (
        plan.count(Action.CREATE) + replaced,
        plan.count(Action.UPDATE),
        plan.count(Action.DELETE) + replaced,
    )


def summary_line(plan: Plan) -> str:
    add, change, destroy = summary_counts(plan)
    return f"Plan: {add} to add, {change} to change, {destroy} to destroy."


def display_address(change: Change) -> str:
    """The address, naming the old object when a change deletes a deposed one."""
    if change.deposed:
        return f"{change.address} (deposed object {change.deposed})"
    return str(change.address)


def import_command(orphan: Orphan) -> str:
    address = orphan.address or f"{orphan.kind.value}.{orphan.name}"
    return f"reconciler import {address} {orphan.id}"


def known_later(change: Change) -> list[str]:
    """Computed attributes a new object reports only once it exists (ip, ssh_port, ...)."""
    if change.action not in (Action.CREATE, Action.REPLACE):
        return []
    return [name for name in change.computed if name not in (change.after or {})]
