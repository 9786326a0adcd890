"""The state ledger: each transition changes the document as named and is durable (or not)
exactly where crash safety needs it; the applier sequences API calls through it."""

from __future__ import annotations

import asyncio
import builtins
from typing import Any

import pytest

from reconciler.applier import Applier, ApplyOptions
from reconciler.apply_steps import Phase, build_steps
from reconciler.errors import CreateOutcomeUnknown, ProviderError
from reconciler.model import Action, Address, Change, CreatedResource, Kind, LiveResource, Status
from reconciler.providers.http import CREATE_OUTCOME_UNKNOWN
from reconciler.state.ledger import StateLedger, commit_next
from reconciler.state.model import OutputState, PendingOperation, ResourceState, StateDocument

KEY = "ssh_keys.main"


class MemoryBackend:
    def __init__(self) -> None:
        self.written: list[StateDocument] = []

    def write(self, doc: StateDocument, force: bool = False) -> None:
        self.written.append(doc.model_copy(deep=True))


def ledger_with(doc: StateDocument) -> tuple[StateLedger, MemoryBackend]:
    backend = MemoryBackend()
    return StateLedger(backend, doc), backend  # type: ignore[arg-type]


def create_record(marker: str = "rc-1") -> PendingOperation:
    return PendingOperation(
        op="create", address=KEY, provider="shadeform", kind="ssh_keys", marker=marker, name="main",
        attributes={"name": "main"}, depends_on=[], started_at="2026-01-01T00:00:00.000000+00:00",
    )


def held(id: str = "old-1") -> ResourceState:
    return ResourceState(provider="shadeform", kind="ssh_keys", id=id, attributes={"name": "main"}, marker="rc-0")


def test_a_create_is_durable_before_it_is_sent_and_its_answer_clears_the_record_in_one_write() -> None:
    ledger, backend = ledger_with(StateDocument())

    async def run() -> None:
        ticket = await ledger.begin_create(create_record(), replacing=False)
        assert [p.marker for p in backend.written[-1].pending] == ["rc-1"]
        assert backend.written[-1].serial == 1
        await ledger.record_created(ticket, "key-9", "active", {"fingerprint": "ab"})

    asyncio.run(run())
    last = backend.written[-1]
    assert len(backend.written) == 2 and last.serial == 2
    assert last.pending == []
    entry = last.resources[KEY]
    assert (entry.id, entry.marker, entry.status) == ("key-9", "rc-1", "active")
    assert entry.computed == {"fingerprint": "ab", "id": "key-9"}
    assert entry.created_at == "2026-01-01T00:00:00.000000+00:00"


def test_a_replacement_deposes_the_old_object_and_a_refused_create_gives_it_back() -> None:
    doc = StateDocument(resources={KEY: held()})
    ledger, backend = ledger_with(doc)

    async def run() -> None:
        ticket = await ledger.begin_create(create_record(), replacing=True)
        first = backend.written[-1]
        assert KEY not in first.resources and [d.id for d in first.deposed] == ["old-1"]
        await ledger.restamp(ticket)
        assert backend.written[-1].pending[0].started_at != "2026-01-01T00:00:00.000000+00:00"
        assert ticket.pending.started_at == backend.written[-1].pending[0].started_at
        await ledger.abandon(ticket)

    asyncio.run(run())
    last = backend.written[-1]
    assert len(backend.written) == 3
    assert last.pending == [] and last.deposed == [] and last.resources[KEY].id == "old-1"


def test_a_plain_create_over_an_entry_drops_it() -> None:
    ledger, backend = ledger_with(StateDocument(resources={KEY: held()}))
    asyncio.run(ledger.begin_create(create_record(), replacing=False))
    assert backend.written[-1].resources == {} and backend.written[-1].deposed == []


def test_a_delete_is_announced_and_its_end_removes_the_entry_the_deposed_copy_and_the_record() -> None:
    doc = StateDocument(resources={KEY: held("k-1")})
    ledger, backend = ledger_with(doc)
    doc.deposed.append(ledger.depose(KEY) or pytest.fail("nothing deposed"))
    doc.resources[KEY] = held("k-2")
    record = PendingOperation(op="delete", address=KEY, provider="shadeform", kind="ssh_keys", marker="rc-0",
                              name="main", id="k-1")

    async def run() -> None:
        pending = await ledger.begin_delete(record)
        assert [p.id for p in backend.written[-1].pending] == ["k-1"]
        await ledger.record_deleted(pending)

    asyncio.run(run())
    last = backend.written[-1]
    assert last.deposed == [] and last.pending == [] and last.resources[KEY].id == "k-2"
    assert ledger.owner_of(KEY, "k-2", "forward") == "shadeform"
    assert ledger.owner_of(KEY, "gone", "forward") == "forward"


def test_a_refused_delete_keeps_the_object_tracked() -> None:
    ledger, backend = ledger_with(StateDocument(resources={KEY: held("k-1")}))
    record = PendingOperation(op="delete", address=KEY, provider="shadeform", kind="ssh_keys", marker="",
                              name="main", id="k-1")

    async def run() -> None:
        await ledger.abandon_delete(await ledger.begin_delete(record))

    asyncio.run(run())
    assert backend.written[-1].pending == [] and backend.written[-1].resources[KEY].id == "k-1"


def test_status_and_outputs_are_written_only_when_they_change() -> None:
    ledger, backend = ledger_with(StateDocument(resources={KEY: held("k-1")}))

    async def run() -> None:
        await ledger.record_status(KEY, "k-1", "active", None)
        await ledger.record_status(KEY, "someone-else", "error", None)
        assert backend.written == []
        await ledger.record_status(KEY, "k-1", "active", {"ip": "10.0.0.1"})
        assert backend.written[-1].resources[KEY].computed == {"ip": "10.0.0.1"}
        await ledger.record_outputs({})
        assert len(backend.written) == 1
        await ledger.record_outputs({"ip": OutputState(value="10.0.0.1")})
        await ledger.record_updated(KEY, {"name": "renamed"})

    asyncio.run(run())
    assert len(backend.written) == 3
    assert backend.written[-1].outputs["ip"].value == "10.0.0.1"
    assert backend.written[-1].resources[KEY].attributes == {"name": "renamed"}


def test_commit_next_stores_the_version_after_its_base() -> None:
    backend = MemoryBackend()
    base = StateDocument(serial=4)
    stored = commit_next(backend, base.model_copy(deep=True), base)  # type: ignore[arg-type]
    assert stored.serial == 5 and [d.serial for d in backend.written] == [5]


def test_steps_have_typed_phases() -> None:
    old = StateDocument(resources={KEY: held()})
    change = Change(Address.parse(KEY), Action.REPLACE, "shadeform", {"name": "main"}, {"name": "new"}, id="old-1")
    steps, waits = build_steps((change,), old)
    assert [s.phase for s in steps] == [Phase.CREATE, Phase.DELETE]
    assert [s.key for s in steps] == ["create:ssh_keys.main", "delete:ssh_keys.main"]
    assert waits["create:ssh_keys.main"] == {"delete:ssh_keys.main"}


class LostAnswerProvider:
    """The first create's answer is lost; the object exists and is listed with its marker."""

    name = "shadeform"
    list_consistency_seconds = 0.0

    def __init__(self) -> None:
        self.created: list[str] = []

    def updatable(self, kind: Kind) -> frozenset[str]:
        return frozenset()

    async def list(self, kind: Kind) -> builtins.list[LiveResource]:
        return [LiveResource("shadeform", kind, "key-1", "main", Status.ACTIVE, marker=m) for m in self.created]

    async def create(self, kind: Kind, spec: dict[str, Any], marker: str) -> CreatedResource:
        self.created.append(marker)
        raise CreateOutcomeUnknown("connection dropped after sending", provider="shadeform")


def test_a_lost_create_answer_is_a_typed_error_and_the_object_is_adopted_by_marker() -> None:
    error = CreateOutcomeUnknown("lost", provider="shadeform")
    assert isinstance(error, ProviderError) and error.error_type == CREATE_OUTCOME_UNKNOWN
    assert not error.retryable
    provider = LostAnswerProvider()
    change = Change(Address.parse(KEY), Action.CREATE, "shadeform", None, {"name": "main", "public_key": "x"})
    ledger, backend = ledger_with(StateDocument())
    result = asyncio.run(Applier((change,), ledger, {"shadeform": provider}, ApplyOptions()).run())  # type: ignore[dict-item]
    assert result.ok and len(provider.created) == 1
    assert backend.written[-1].resources[KEY].id == "key-1" and backend.written[-1].pending == []
