"""Budgets fail a plan that would exceed them and keep failover inside them."""

from __future__ import annotations

import pytest

from reconciler.budget import BudgetPolicy, check_budget
from reconciler.errors import PlanError
from reconciler.model import Action, Address, Candidate, Change, CostSummary, Kind, Plan


def create(name: str, hourly: float, candidates: tuple[float, ...] = ()) -> Change:
    return Change(
        address=Address(Kind.INSTANCE, name),
        action=Action.CREATE,
        provider="forward",
        before=None,
        after={"name": name},
        hourly_after=hourly,
        candidates=tuple(Candidate(f"o{p}", f"offer ${p}", p, {"offering_id": f"o{p}"}) for p in candidates),
        reasons=("cheapest of 3 candidates", "on no capacity, apply tries the next 2 in this order")
        if candidates
        else (),
    )


def plan_of(*changes: Change, before: float = 0.0) -> Plan:
    after = sum(c.hourly_after for c in changes)
    return Plan(changes=changes, state_serial=0, state_lineage="l", cost=CostSummary(before, after))


def test_no_policy_changes_nothing() -> None:
    plan = plan_of(create("a", 100.0))
    assert check_budget(plan, None) is plan
    assert check_budget(plan, BudgetPolicy()) is plan


def test_an_hourly_budget_names_the_largest_contributors() -> None:
    plan = plan_of(create("small", 1.0), create("big", 20.0), create("mid", 5.0), create("tiny", 0.5))
    with pytest.raises(PlanError) as caught:
        check_budget(plan, BudgetPolicy(max_hourly_spend=10.0))
    message = str(caught.value)
    assert "$26.50/h" in message and "policy.max_hourly_spend $10.00/h" in message
    assert "largest: instances.big $20.00/h, instances.mid $5.00/h, instances.small $1.00/h" in message
    assert "tiny" not in message


def test_a_monthly_budget_counts_730_hours() -> None:
    plan = plan_of(create("a", 2.0))
    assert check_budget(plan, BudgetPolicy(max_monthly_spend=1460.0)) is plan
    with pytest.raises(PlanError, match=r"policy.max_monthly_spend \$1,459.00/month"):
        check_budget(plan, BudgetPolicy(max_monthly_spend=1459.0, max_hourly_spend=100.0))


def test_a_plan_that_lowers_the_spend_is_never_refused() -> None:
    plan = plan_of(create("a", 20.0), before=30.0)
    assert check_budget(plan, BudgetPolicy(max_hourly_spend=10.0)) is plan


def test_failover_keeps_only_candidates_the_headroom_can_pay_for() -> None:
    plan = plan_of(create("a", 1.0, (1.0, 1.5, 2.5)), create("b", 1.0, (1.0, 1.2, 3.0)))
    checked = check_budget(plan, BudgetPolicy(max_hourly_spend=3.0))  # headroom 1.0: 0.5 each
    prices = {str(c.address): [x.hourly_price for x in c.candidates] for c in checked.changes}
    assert prices == {"instances.a": [1.0, 1.5], "instances.b": [1.0, 1.2]}
    assert any("instances.a: 1 fallback candidates left out" in n for n in checked.notes)
    assert checked.changes[0].reasons[-1] == "on no capacity, apply tries the next 1 in this order"


def test_no_headroom_means_no_failover() -> None:
    plan = plan_of(create("a", 2.0, (2.0, 2.1)))
    checked = check_budget(plan, BudgetPolicy(max_hourly_spend=2.0))
    assert checked.changes[0].candidates == ()
    assert not any(r.startswith("on no capacity") for r in checked.changes[0].reasons)
