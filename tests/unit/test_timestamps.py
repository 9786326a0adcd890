"""One reading of the moments in state: an offset-less time is UTC, wherever it is compared."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support import pending_doc

from reconciler.cost_report import cost_report
from reconciler.expiry import EXPIRY_KEY, expired
from reconciler.model import Kind, LiveResource, Status
from reconciler.planner import LiveView
from reconciler.planner_pending import resolve_pending
from reconciler.state.model import ResourceState, StateDocument
from reconciler.timestamps import parse_timestamp

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def naive(moment: datetime) -> str:
    return moment.replace(tzinfo=None).isoformat()


def test_parse_timestamp_reads_offsets_takes_naive_as_utc_and_refuses_the_rest() -> None:
    assert parse_timestamp("2026-01-01T12:00:00+02:00") == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert parse_timestamp("2026-01-01T12:00:00Z") == NOW
    assert parse_timestamp("2026-01-01T12:00:00") == NOW
    assert parse_timestamp("2026-01-01T12:00:00").tzinfo is not None  # type: ignore[union-attr]
    for nothing in (None, "", "yesterday", "2026-13-01"):
        assert parse_timestamp(nothing) is None


def instance_created_hours_ago(hours: float) -> ResourceState:
    """A Forward instance at $2/h whose created_at has no offset."""
    return ResourceState(
        provider="forward",
        kind="instances",
        id="a",
        attributes={},
        hourly_price=2.0,
        created_at=naive(NOW - timedelta(hours=hours)),
    )


def test_a_naive_created_at_counts_spend_as_utc() -> None:
    doc = StateDocument()
    doc.resources["instances.a"] = instance_created_hours_ago(3)
    running = LiveResource("forward", Kind.INSTANCE, "a", "a", Status.ACTIVE)
    (line,) = cost_report(doc, LiveView(resources={("forward", Kind.INSTANCE): {"a": running}}), NOW).lines
    assert line.spent == pytest.approx(6.0)


def test_max_spend_reads_a_naive_created_at_as_utc() -> None:
    reason = expired({EXPIRY_KEY: {"max_spend": 5}}, instance_created_hours_ago(3), NOW)
    assert reason is not None and "spent $6.00 of max_spend $5.00" in reason
    assert expired({EXPIRY_KEY: {"deadline": naive(NOW - timedelta(minutes=1)), "after": "1h"}}, None, NOW)


def test_a_pending_create_with_a_naive_start_waits_out_the_list_window_in_utc() -> None:
    doc = pending_doc((NOW - timedelta(seconds=5)).replace(tzinfo=None))
    assert "+" not in doc.pending[0].started_at
    resolved = resolve_pending(
        doc, LiveView(resources={("shadeform", Kind.SSH_KEY): {}}), NOW, {"shadeform": 30.0}
    )
    assert resolved.unresolved and resolved.state.pending, "a naive start is read as UTC, still in the window"
