"""The plan as a pull-request comment: one table row per change, cut to fit a size limit."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from reconciler.foreign_objects import ALLOW_FLAG, foreign_summary
from reconciler.model import Action, Change, Plan
from reconciler.views.formatting import format_hourly
from reconciler.views.plan_summary import (
    ACTION_ORDER,
    NO_CHANGES,
    cost_line,
    display_address,
    ordered_changes,
    summary_line,
)

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
        f"| `{_md_cell(display_address(change))}` | {_md_action(change)} | "
        f"{_md_cell('; '.join(change.reasons))} | {format_hourly(delta, signed=True)} |\n"
    )


def _md_more_line(rest: Sequence[Change]) -> str:
    counts = Counter(c.action for c in rest)
    parts = [f"{counts[a]:,} to {_MD_ACTION[a]}" for a in ACTION_ORDER if counts[a]]
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
        tail += f"**{summary_line(plan)}**\n"
    tail += f"{cost_line(plan)}\n"
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
