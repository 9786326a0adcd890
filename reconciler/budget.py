"""Budgets: `policy: {max_hourly_spend, max_monthly_spend}` bounds what a plan may run.

Pure, like the planner. A plan whose running cost would exceed the budget fails before any
API call, naming what costs the most; capacity failover is kept inside the budget by
dropping the fallback candidates whose extra price the budget's headroom cannot pay.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from reconciler.errors import PlanError
from reconciler.model import HOURS_PER_MONTH, Action, Change, Plan
from reconciler.selection import FALLBACK_REASON_START, fallback_reason

SHOWN_CONTRIBUTORS = 3


@dataclass(frozen=True)
class BudgetPolicy:
    max_hourly_spend: float | None = None
    max_monthly_spend: float | None = None

    @property
    def hourly_limit(self) -> float | None:
        """The tighter of the two limits, as dollars per hour."""
        limits = [x for x in (self.max_hourly_spend, self._monthly_as_hourly) if x is not None]
        return min(limits) if limits else None

    @property
    def _monthly_as_hourly(self) -> float | None:
        return None if self.max_monthly_spend is None else self.max_monthly_spend / HOURS_PER_MONTH

    def describe(self) -> str:
        if self.max_monthly_spend is not None and self.hourly_limit == self._monthly_as_hourly:
            return f"policy.max_monthly_spend ${self.max_monthly_spend:,.2f}/month"
        return f"policy.max_hourly_spend ${self.max_hourly_spend:,.2f}/h"


def _running(plan: Plan) -> list[Change]:
    return [c for c in plan.changes if c.action is not Action.DELETE and c.hourly_after > 0]


def check_budget(plan: Plan, policy: BudgetPolicy | None) -> Plan:
    """The plan, with failover kept inside the budget; PlanError when it raises the spend
    above the budget."""
    limit = policy.hourly_limit if policy is not None else None
    if policy is None or limit is None:
        return plan
    hourly = plan.cost.hourly_after
    # A plan that does not raise the spend is never refused: it may be the way back under.
    if hourly > limit + 1e-9 and hourly > plan.cost.hourly_before + 1e-9:
        largest = sorted(_running(plan), key=lambda c: (-c.hourly_after, str(c.address)))
        named = ", ".join(f"{c.address} ${c.hourly_after:,.2f}/h" for c in largest[:SHOWN_CONTRIBUTORS])
        raise PlanError(
            f"the plan would run at ${hourly:,.2f}/h (${hourly * HOURS_PER_MONTH:,.2f}/month), "
            f"above {policy.describe()}; largest: {named}",
            hint="lower count or max_hourly_price of the largest, or raise the policy limit",
        )
    return _fallbacks_within(plan, max(0.0, limit - hourly))


def _fallbacks_within(plan: Plan, headroom: float) -> Plan:
    """Each failing-over create may spend an equal share of the headroom on a dearer candidate,
    so the budget holds even if every one of them fails over at once."""
    failing_over = [c for c in plan.changes if c.candidates]
    if not failing_over:
        return plan
    share = headroom / len(failing_over)
    notes = list(plan.notes)
    changes = []
    for change in plan.changes:
        if change.candidates:
            chosen = change.candidates[0].hourly_price
            kept = tuple(c for c in change.candidates if c.hourly_price - chosen <= share + 1e-9)
            if len(kept) < len(change.candidates):
                dropped = len(change.candidates) - len(kept)
                notes.append(f"{change.address}: {dropped} fallback candidates left out to stay inside the budget")
                kept = kept if len(kept) > 1 else ()
                reasons = tuple(r for r in change.reasons if not r.startswith(FALLBACK_REASON_START))
                if kept:
                    reasons += (fallback_reason(kept),)
                change = dataclasses.replace(change, candidates=kept, reasons=reasons)
        changes.append(change)
    return dataclasses.replace(plan, changes=tuple(changes), notes=tuple(notes))
