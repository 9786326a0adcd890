"""One reading of the moments in state: an offset-less time is UTC, wherever it is compared."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconciler.cost_report import cost_report
from reconciler.expiry import EXPIRY_KEY, expired
from reconciler.model import Kind, LiveResource, Status
from reconciler.planner import LiveView, resolve_pending
from reconciler.state.model import PendingOperation, ResourceState, StateDocument
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


def test_a_naive_created_at_counts_spend_as_utc() -> None:
    doc = StateDocument()
    doc.resources["instances.a"] = ResourceState(
        provider="forward",
        kind="instances",
        id="a",
        attributes={},
        hourly_price=2.0,
        created_at=naive(NOW - timedelta(hours=3)),
    )
    running = LiveResource("forward", Kind.INSTANCE, "a", "a", Status.ACTIVE)
    (line,) = cost_report(doc, LiveView(resources={("forward", Kind.INSTANCE): {"a": running}}), NOW).lines
    assert line.spent == pytest.approx(6.0)


def test_max_spend_reads_a_naive_created_at_as_utc() -> None:
    prior = ResourceState(
        provider="forward",
        kind="instances",
        id="a",
        attributes={},
        hourly_price=2.0,
        created_at=naive(NOW - timedelta(hours=3)),
    )
    reason = expired({EXPIRY_KEY: {"max_spend": 5}}, prior, NOW)
    assert reason is not None and "spent $6.00 of max_spend $5.00" in reason
    assert expired({EXPIRY_KEY: {"deadline": naive(NOW - timedelta(minutes=1)), "after": "1h"}}, None, NOW)


def test_a_pending_create_with_a_naive_start_waits_out_the_list_window_in_utc() -> None:
    doc = StateDocument()
    doc.pending.append(
        PendingOperation(
            op="create",
            address="ssh_keys.deploy",
            provider="shadeform",
            kind="ssh_keys",
            marker="rc-abc-123",
            name="deploy",
            started_at=naive(NOW - timedelta(seconds=5)),
            attributes={"name": "deploy"},
        )
    )
    resolved = resolve_pending(
        doc, LiveView(resources={("shadeform", Kind.SSH_KEY): {}}), NOW, {"shadeform": 30.0}
    )
    assert resolved.unresolved and resolved.state.pending, "a naive start is read as UTC, still in the window"
