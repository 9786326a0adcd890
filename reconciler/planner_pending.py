"""Settling the operations a crashed run left half-done, before anything is planned. Pure.

A pending create whose ownership marker is found live is adopted into state; one whose
marker is absent, once the provider's lists are consistent, never happened and is dropped.
A pending delete whose object is gone (or going) is completed; otherwise dropped, and the
object stays in state. Records that cannot be settled yet stay pending.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from reconciler.model import GONE_STATUSES, Kind, LiveResource, Status
from reconciler.state.model import DeposedResource, PendingOperation, ResourceState, StateDocument
from reconciler.timestamps import parse_timestamp

if TYPE_CHECKING:
    from reconciler.planner import LiveView

# A create is stamped right before it is sent; the client may still wait this long for its
# own pacing before the request leaves, so a lagging list's window is counted from later.
PRE_SEND_SLACK_SECONDS = 5.0


@dataclass(frozen=True)
class PendingResolution:
    state: StateDocument
    notes: tuple[str, ...]
    unresolved: tuple[str, ...]


@dataclass(frozen=True)
class Settled:
    """What became of one pending operation: a note, or why it stays pending."""

    note: tuple[str, ...] = ()
    unresolved: str | None = None


def resolve_pending(
    doc: StateDocument,
    live: LiveView,
    now: datetime,
    consistency_seconds: Mapping[str, float] | None = None,
) -> PendingResolution:
    """Settle pending operations from live resources, by ownership marker (see the module)."""
    if not doc.pending:
        return PendingResolution(doc, (), ())
    consistency = consistency_seconds or {}
    new = doc.model_copy(deep=True)
    notes: list[str] = []
    unresolved: list[str] = []
    keep = []
    for op in new.pending:
        if not live.refreshed(op.provider, Kind(op.kind)):
            settled = Settled(unresolved=f"{op.op} of {op.address}: {op.provider} {op.kind} were not refreshed")
        elif op.op == "create":
            settled = settle_create(op, new, live, now, consistency.get(op.provider, 0.0))
        else:
            settled = settle_delete(op, new, live)
        notes.extend(settled.note)
        if settled.unresolved is not None:
            keep.append(op)
            unresolved.append(settled.unresolved)
    new.pending = keep
    return PendingResolution(new, tuple(notes), tuple(unresolved))


def _found_live(op: PendingOperation, doc: StateDocument, live: LiveView) -> list[LiveResource]:
    """Live objects the create made, found by marker (or by id if the answer arrived), that
    are neither going away nor tracked already, in id order."""
    kind = Kind(op.kind)
    found = live.by_marker(op.provider, kind, op.marker)
    if op.id and not found:
        hit = live.lookup(op.provider, kind, op.id)
        found = [hit] if hit else []
    tracked = {r.id for r in doc.resources.values()} | {d.id for d in doc.deposed}
    return sorted((r for r in found if r.status not in GONE_STATUSES and r.id not in tracked), key=lambda r: r.id)


def settle_create(
    op: PendingOperation, doc: StateDocument, live: LiveView, now: datetime, window: float
) -> Settled:
    """Adopt what an interrupted create left live; drop it once a lagging list must show it."""
    found = _found_live(op, doc, live)
    if found:
        return _adopt(op, found, doc)
    if window > 0:
        window += PRE_SEND_SLACK_SECONDS
    started = parse_timestamp(op.started_at)
    if started is not None and window > 0 and (now - started).total_seconds() < window:
        return Settled(
            unresolved=f"create of {op.address}: {op.provider} lists may lag writes by {window:g}s; not yet visible"
        )
    return Settled((f"{op.address}: an interrupted create left nothing live (marker {op.marker}); planned again",))


def _adopt(op: PendingOperation, found: list[LiveResource], doc: StateDocument) -> Settled:
    adopted = found[0]
    adopted_state = ResourceState(
        provider=op.provider,
        kind=op.kind,
        id=adopted.id,
        attributes=op.attributes,
        depends_on=op.depends_on,
        marker=op.marker,
        status=adopted.status.value,
        hourly_price=op.hourly_price if op.hourly_price is not None else adopted.hourly_price,
        created_at=op.started_at,
        computed=dict(adopted.computed),
    )
    if op.address in doc.resources:
        # The address was taken meanwhile (import, state mv or push): state's entry stays;
        # the interrupted run's object is ours and is deleted, not leaked.
        doc.deposed.append(DeposedResource(address=op.address, **adopted_state.model_dump()))
        return Settled(
            (
                f"{op.address}: {adopted.id}, created by an interrupted run, is not what state "
                "now tracks there; it is deleted",
            )
        )
    doc.resources[op.address] = adopted_state
    notes = [f"{op.address}: adopted {adopted.id} created by an interrupted run (marker {op.marker})"]
    notes += [f"{op.address}: {extra.id} also carries marker {op.marker}; listed as orphan" for extra in found[1:]]
    return Settled(tuple(notes))


def settle_delete(op: PendingOperation, doc: StateDocument, live: LiveView) -> Settled:
    """Complete a delete whose object is gone; keep tracking one still going, or never gone."""
    target = live.lookup(op.provider, Kind(op.kind), op.id) if op.id else None
    if target is None or target.status is Status.DELETED:
        if op.address in doc.resources and doc.resources[op.address].id == op.id:
            del doc.resources[op.address]
        doc.deposed = [d for d in doc.deposed if d.id != op.id]
        return Settled((f"{op.address}: completed the delete of {op.id} started by an interrupted run",))
    if target.status is Status.DELETING:
        # Still tracked, so the plan finishes the delete and what waits for the object to
        # be gone (the volume it mounts, the key it uses) still waits.
        return Settled(
            (f"{op.address}: the delete of {op.id} started by an interrupted run is still in progress",)
        )
    return Settled((f"{op.address}: an interrupted delete of {op.id} did not happen; still in state",))
