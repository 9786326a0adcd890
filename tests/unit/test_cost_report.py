"""Burn rate and spend so far, from state and one refresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconciler.cost_report import cost_report
from reconciler.model import Kind, LiveResource, Status
from reconciler.planner import LiveView
from reconciler.state.model import ResourceState, StateDocument

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def held(id: str, provider: str, price: float, hours_ago: float | None) -> ResourceState:
    created = None if hours_ago is None else (NOW - timedelta(hours=hours_ago)).isoformat()
    return ResourceState(
        provider=provider, kind="instances", id=id, attributes={}, hourly_price=price, created_at=created
    )


def live(*resources: LiveResource) -> LiveView:
    by_provider: dict[tuple[str, Kind], dict[str, LiveResource]] = {
        ("shadeform", Kind.INSTANCE): {},
        ("forward", Kind.INSTANCE): {},
    }
    for r in resources:
        by_provider[(r.provider, r.kind)][r.id] = r
    return LiveView(resources=by_provider)


def test_live_prices_api_spend_and_elapsed_time() -> None:
    doc = StateDocument()
    doc.resources["instances.a"] = held("a", "shadeform", 2.0, 3)
    doc.resources["instances.b"] = held("b", "forward", 1.5, 2)
    doc.resources["instances.c"] = held("c", "forward", 4.0, 1)
    report = cost_report(
        doc,
        live(
            LiveResource("shadeform", Kind.INSTANCE, "a", "a", Status.ACTIVE, hourly_price=2.5, spent=7.1),
            LiveResource("forward", Kind.INSTANCE, "b", "b", Status.ACTIVE),
        ),
        NOW,
    )
    a, b, c = report.lines
    assert (a.hourly, a.spent, a.spent_from) == (2.5, 7.1, "api")
    assert (b.hourly, b.spent_from) == (1.5, "elapsed") and b.spent == pytest.approx(3.0)
    assert (c.hourly, c.spent, c.status) == (0.0, None, "deleted")  # gone: burns nothing, spend unknown
    assert report.hourly == 4.0
    assert report.to_json()["total"]["monthly"] == 2920.0
