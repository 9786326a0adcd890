"""The state ledger: the one owner of the state document while an apply runs.

Every change apply makes to `resources`, `pending` and `deposed` is a named transition
here, and each transition decides whether it is made durable before it returns. The
order of those writes is what makes a crash safe: a pending record is durable before the
API call it announces is sent, and the call's answer is recorded and its record cleared
in one write. The applier only sequences API calls and tells the ledger what happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler.state.backend import StateBackend
from reconciler.state.model import (
    DeposedResource,
    OutputState,
    PendingOperation,
    ResourceState,
    StateDocument,
)


def sent_now() -> str:
    """When a create is (about to be) sent, to the microsecond: a crash recovery waits out a
    lagging list's consistency window from this instant."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def commit_next(backend: StateBackend, new: StateDocument, base: StateDocument) -> StateDocument:
    """Store `new` as the version after `base`: serial + 1, then a compare-and-swap write.

    The one commit path of every state change: each write of an apply, refresh, import
    and the state edits; `new` gets the serial it was stored under.
    """
    new.serial = base.serial + 1
    backend.write(new)
    return new


class StateWriter:
    """Coalesces concurrent state updates into as few durable writes as possible.

    `persist()` returns once a write containing every change made before the call is
    durable. While one write is in flight, later callers share the next one.
    """

    def __init__(self, backend: StateBackend, doc: StateDocument) -> None:
        self.backend = backend
        self.doc = doc
        self._mutations = 0
        self._durable = 0
        self._lock = asyncio.Lock()
        self.writes = 0

    async def persist(self) -> None:
        self._mutations += 1
        wanted = self._mutations
        async with self._lock:
            if self._durable >= wanted:
                return
            covered = self._mutations
            snapshot = self.doc.model_copy(
                update={
                    "resources": dict(self.doc.resources),
                    "pending": list(self.doc.pending),
                    "deposed": list(self.doc.deposed),
                }
            )
            await asyncio.to_thread(commit_next, self.backend, snapshot, self.doc)
            self.doc.serial = snapshot.serial
            self._durable = covered
            self.writes += 1


@dataclass
class CreateTicket:
    """One create in flight: its pending record (restamped before every send) and the old
    object a create_before_destroy replacement deposed for it, if any."""

    pending: PendingOperation
    deposed: DeposedResource | None = None


class StateLedger:
    """The transitions apply makes to a state document, each persisted where crash safety
    needs it (see the module docstring)."""

    def __init__(self, backend: StateBackend, doc: StateDocument) -> None:
        self.writer = StateWriter(backend, doc)
        self.doc = doc

    @property
    def writes(self) -> int:
        return self.writer.writes

    # ------------------------------------------------------------------ reading

    def resource(self, address: str) -> ResourceState | None:
        return self.doc.resources.get(address)

    def holds(self, address: str, id: str) -> bool:
        """Whether state's entry at `address` is the object `id`."""
        current = self.doc.resources.get(address)
        return current is not None and current.id == id

    def tracked_ids(self) -> set[str]:
        return {r.id for r in self.doc.resources.values()}

    def is_pending(self, marker: str) -> bool:
        return any(p.marker == marker for p in self.doc.pending)

    def owner_of(self, address: str, id: str, planned: str) -> str:
        """The provider that holds object `id`: the one state recorded it under, which is not the
        plan's provider when the configuration moved the resource to another provider."""
        current = self.doc.resources.get(address)
        if current is not None and current.id == id:
            return current.provider
        for old in self.doc.deposed:
            if old.id == id:
                return old.provider
        return planned

    # ------------------------------------------------------------------ creates

    def depose(self, address: str) -> DeposedResource | None:
        """Move the current object at `address` to `deposed` (create_before_destroy: it waits
        there for its delete step). Made durable by the transition that calls it."""
        current = self.doc.resources.pop(address, None)
        if current is None:
            return None
        deposed = DeposedResource(address=address, **current.model_dump())
        self.doc.deposed.append(deposed)
        return deposed

    async def begin_create(self, pending: PendingOperation, *, replacing: bool) -> CreateTicket:
        """Durably announce a create before it is sent. A replacement deposes the current
        object; a plain create over a state entry drops it (the plan found that object gone,
        deleted outside, so there is nothing left to delete)."""
        deposed = None
        if replacing:
            deposed = self.depose(pending.address)
        else:
            self.doc.resources.pop(pending.address, None)
        self.doc.pending.append(pending)
        await self.writer.persist()
        return CreateTicket(pending, deposed)

    async def restamp(self, ticket: CreateTicket) -> None:
        """Durably move the create's send time to now, right before it is sent again."""
        restamped = ticket.pending.model_copy(update={"started_at": sent_now()})
        self.doc.pending = [restamped if p is ticket.pending else p for p in self.doc.pending]
        ticket.pending = restamped
        await self.writer.persist()

    async def abandon(self, ticket: CreateTicket) -> None:
        """The create was refused before acting: drop its record; a deposed old object is the
        resource again, since nothing replaced it."""
        self.doc.pending = [p for p in self.doc.pending if p is not ticket.pending]
        if ticket.deposed is not None:
            deposed = ticket.deposed
            self.doc.deposed = [d for d in self.doc.deposed if d is not deposed]
            self.doc.resources[deposed.address] = ResourceState(**deposed.model_dump(exclude={"address"}))
        await self.writer.persist()

    async def record_created(
        self, ticket: CreateTicket, id: str, status: str, computed: Mapping[str, Any]
    ) -> None:
        """The created object joins state and its pending record is cleared, in one write."""
        pending = ticket.pending
        self.doc.resources[pending.address] = ResourceState(
            provider=pending.provider,
            kind=pending.kind,
            id=id,
            attributes=pending.attributes,
            depends_on=pending.depends_on,
            marker=pending.marker,
            status=status,
            hourly_price=pending.hourly_price,
            created_at=pending.started_at,
            computed={**computed, "id": id},
        )
        self.doc.pending = [p for p in self.doc.pending if p is not pending]
        await self.writer.persist()

    # ------------------------------------------------------------------ deletes

    async def begin_delete(self, pending: PendingOperation) -> PendingOperation:
        """Durably announce a delete before it is sent."""
        self.doc.pending.append(pending)
        await self.writer.persist()
        return pending

    async def abandon_delete(self, pending: PendingOperation) -> None:
        """The delete was refused: the object stays tracked as it was."""
        self.doc.pending = [p for p in self.doc.pending if p is not pending]
        await self.writer.persist()

    async def record_deleted(self, pending: PendingOperation) -> None:
        """The object is gone: its entry (current or deposed) and its record go in one write."""
        id = pending.id
        if self.holds(pending.address, id or ""):
            del self.doc.resources[pending.address]
        self.doc.deposed = [d for d in self.doc.deposed if d.id != id]
        self.doc.pending = [p for p in self.doc.pending if p is not pending]
        await self.writer.persist()

    # ------------------------------------------------------------------ what the API reports

    async def record_status(self, address: str, id: str, status: str, computed: Mapping[str, Any] | None) -> None:
        """Record what the API reports now (status, computed attributes); written only when it
        changed anything, and only while state still holds that object at `address`."""
        current = self.doc.resources.get(address)
        if current is None or current.id != id:
            return
        merged = {**current.computed, **computed} if computed is not None else current.computed
        if current.status != status or merged != current.computed:
            self.doc.resources[address] = current.model_copy(update={"status": status, "computed": merged})
            await self.writer.persist()

    async def record_updated(self, address: str, attributes: dict[str, Any]) -> None:
        """An in-place update's new (masked) attributes."""
        current = self.doc.resources.get(address)
        if current is not None:
            self.doc.resources[address] = current.model_copy(update={"attributes": attributes})
            await self.writer.persist()

    async def record_outputs(self, outputs: dict[str, OutputState]) -> None:
        """The outputs' values once the run is over; written only when they changed."""
        if outputs != self.doc.outputs:
            self.doc.outputs = outputs
            await self.writer.persist()

    async def flush(self) -> None:
        """The closing write of a run (one write covers whatever is not durable yet)."""
        await self.writer.persist()
