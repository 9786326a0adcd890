"""Expiry deadlines: fixed once, mapped to Shadeform's auto_delete, enforced by the planner."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reconciler.model import Action, Address, Kind, LiveResource, Resource, Status
from reconciler.planner import LiveView, PlanOptions, plan_changes
from reconciler.state.model import ResourceState, StateDocument

T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
ADDRESS = Address(Kind.INSTANCE, "job")


def job(provider: str = "forward", **expiry: object) -> Resource:
    pin = {"offering_id": "o1"} if provider == "forward" else {
        "cloud": "lambdalabs", "region": "us-east-1", "shade_instance_type": "A6000"
    }
    return Resource(ADDRESS, provider, {"name": "job", **pin, "expiry": dict(expiry)})


def first_plan(res: Resource, now: datetime = T0):  # type: ignore[no-untyped-def]
    return plan_changes({ADDRESS: res}, StateDocument(), LiveView(), PlanOptions(now=now))


def applied(res: Resource, now: datetime = T0, price: float = 2.0) -> tuple[StateDocument, LiveView]:
    (change,) = first_plan(res, now).changes
    doc = StateDocument()
    doc.resources[str(ADDRESS)] = ResourceState(
        provider=res.provider, kind="instances", id="i-1", attributes=change.after or {},
        hourly_price=price, created_at=now.isoformat(),
    )
    live = LiveView(
        resources={(res.provider, Kind.INSTANCE): {"i-1": LiveResource(res.provider, Kind.INSTANCE, "i-1", "job", Status.ACTIVE)}}
    )
    return doc, live


def test_expires_after_is_fixed_at_create_and_does_not_move() -> None:
    res = job(after="8h")
    (change,) = first_plan(res).changes
    assert change.after is not None and change.after["expiry"]["deadline"] == "2026-03-01T16:00:00Z"
    doc, live = applied(res)
    later = plan_changes({ADDRESS: res}, doc, live, PlanOptions(now=T0 + timedelta(hours=3)))
    assert later.changes[0].action is Action.NOOP


def test_shadeform_gets_the_deadline_and_spend_as_auto_delete_changed_in_place() -> None:
    res = job("shadeform", after="8h", max_spend=100)
    (change,) = first_plan(res).changes
    assert change.after is not None
    assert change.after["auto_delete"] == {"date_threshold": "2026-03-01T16:00:00Z", "spend_threshold": 100}
    doc, live = applied(res)
    live = LiveView(resources=live.resources, updatable={("shadeform", Kind.INSTANCE): frozenset({"auto_delete"})})
    longer = plan_changes({ADDRESS: job("shadeform", after="10h", max_spend=100)}, doc, live, PlanOptions(now=T0))
    assert longer.changes[0].action is Action.UPDATE
    assert longer.changes[0].after["auto_delete"]["date_threshold"] == "2026-03-01T18:00:00Z"  # type: ignore[index]


def test_forward_instance_past_its_deadline_is_planned_for_deletion_with_the_reason() -> None:
    res = job(after="90m")
    doc, live = applied(res)
    before = plan_changes({ADDRESS: res}, doc, live, PlanOptions(now=T0 + timedelta(minutes=89)))
    assert before.changes[0].action is Action.NOOP
    after = plan_changes({ADDRESS: res}, doc, live, PlanOptions(now=T0 + timedelta(minutes=90)))
    (change,) = after.changes
    assert change.action is Action.DELETE
    assert change.reasons == ("expired at 2026-03-01T09:30:00Z (expires_after: 90m)",)


def test_max_spend_is_enforced_from_time_and_price() -> None:
    res = job(max_spend=10)
    doc, live = applied(res, price=2.0)
    assert plan_changes({ADDRESS: res}, doc, live, PlanOptions(now=T0 + timedelta(hours=4))).changes[0].action is Action.NOOP
    (change,) = plan_changes({ADDRESS: res}, doc, live, PlanOptions(now=T0 + timedelta(hours=5))).changes
    assert change.action is Action.DELETE and change.reasons == ("spent $10.00 of max_spend $10.00",)


def test_an_expires_at_in_the_past_creates_nothing() -> None:
    plan = first_plan(job(at="2026-03-01T07:00:00Z"))
    assert plan.changes == ()
    assert any("expired at 2026-03-01T07:00:00Z" in n and "not created" in n for n in plan.notes)
