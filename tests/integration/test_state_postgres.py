"""PostgresStateBackend against a real PostgreSQL server (RECONCILER_TEST_PG_URL to override).

Every test gets its own schema, dropped afterwards. Races are made deterministic by holding
a row lock in a third session until both writers are seen waiting on it.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from support import reachable_pg_url, scratch_schema

from reconciler.errors import StateConflictError, StateError, StateLockedError
from reconciler.state.backend import LockInfo
from reconciler.state.model import PendingOperation, ResourceState, StateDocument
from reconciler.state.postgres import SCHEMA_VERSION, PostgresStateBackend

LOCK_HOLDER_SCRIPT = Path(__file__).with_name("pg_lock_holder.py")
DEADLINE = 15.0

MakeBackend = Callable[..., PostgresStateBackend]


@pytest.fixture(scope="module")
def pg_url() -> str:
    return reachable_pg_url()


@pytest.fixture
def schema(pg_url: str) -> Iterator[str]:
    with scratch_schema(pg_url) as name:
        yield name


@pytest.fixture
def make_backend(pg_url: str, schema: str) -> MakeBackend:
    def make(stack: str = "prod") -> PostgresStateBackend:
        return PostgresStateBackend(pg_url, stack, schema=schema)

    return make


@pytest.fixture
def admin(pg_url: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """A plain session for inspecting and interfering with what the backend stored."""
    with psycopg.connect(pg_url, autocommit=True) as connection:
        yield connection


def sample_document(serial: int, lineage: str | None = None) -> StateDocument:
    doc = StateDocument(serial=serial, lineage=lineage or str(uuid.uuid4()))
    doc.resources["instances.trainer"] = ResourceState(
        provider="shadeform",
        kind="instances",
        id=f"inst-{serial}",
        attributes={"cloud": "hyperstack", "region": "canada-1", "tags": ["a", "b"]},
        depends_on=["ssh_keys.deploy"],
        marker="rc-abc-instances.trainer",
        hourly_price=1.25,
    )
    doc.pending.append(
        PendingOperation(
            op="create",
            address="volumes.data",
            provider="shadeform",
            kind="volumes",
            marker="rc-abc-volumes.data",
            name="data",
        )
    )
    return doc


def successor(doc: StateDocument) -> StateDocument:
    return doc.model_copy(update={"serial": doc.serial + 1}, deep=True)


def wait_for_blocked_sessions(pg_url: str, schema: str, count: int) -> None:
    """Poll, from a session of its own (activity is snapshotted per transaction), until `count`
    sessions touching `schema` wait on a lock."""
    deadline = time.monotonic() + DEADLINE
    with psycopg.connect(pg_url, autocommit=True) as observer:
        while time.monotonic() < deadline:
            row = observer.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database() AND query LIKE %s",
                (f"%{schema}%",),
            ).fetchone()
            if row and row[0] >= count:
                return
    pytest.fail(f"{count} writers did not block on the row lock within {DEADLINE} s")


def race(writers: list[Callable[[], None]]) -> list[BaseException | None]:
    """Run the writers in threads; their outcomes in order (None for success)."""

    def outcome(write: Callable[[], None]) -> BaseException | None:
        try:
            write()
        except BaseException as exc:  # noqa: B036 - the test inspects whatever happened
            return exc
        return None

    with ThreadPoolExecutor(max_workers=len(writers)) as pool:
        futures = [pool.submit(outcome, write) for write in writers]
        return [future.result(timeout=DEADLINE) for future in futures]


def read_line_within(proc: subprocess.Popen[str], seconds: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(seconds):
            pytest.fail(f"lock holder printed nothing within {seconds} s")
    line = proc.stdout.readline()
    if not line:
        assert proc.stderr is not None
        pytest.fail(f"lock holder exited early: {proc.stderr.read()}")
    return line


@contextlib.contextmanager
def lock_holder_process(
    pg_url: str, schema: str, stack: str = "prod"
) -> Iterator[tuple[subprocess.Popen[str], LockInfo]]:
    """Another run, in its own process, holding the stack's lock until stdin closes."""
    with subprocess.Popen(
        [sys.executable, str(LOCK_HOLDER_SCRIPT), pg_url, schema, stack],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            info = LockInfo.from_dict(json.loads(read_line_within(proc, DEADLINE)))
            yield proc, info
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=DEADLINE)


def test_empty_stack_reads_as_fresh_document(make_backend: MakeBackend) -> None:
    backend = make_backend()
    doc = backend.read()
    assert (doc.serial, doc.resources, doc.pending) == (0, {}, [])
    assert uuid.UUID(doc.lineage)
    assert backend.exists() is False


def test_write_then_read_round_trips_everything(make_backend: MakeBackend) -> None:
    backend = make_backend()
    raw = sample_document(1).model_dump(mode="json")
    raw["unknown_top_level"] = {"kept": True}
    raw["resources"]["instances.trainer"]["unknown_field"] = {"nested": [1, 2]}
    written = StateDocument.model_validate(raw)
    backend.write(written)
    assert backend.exists() is True
    stored = make_backend().read()
    assert stored.model_dump() == written.model_dump()
    assert stored.model_dump()["unknown_top_level"] == {"kept": True}

    second = successor(written)
    second.resources.pop("instances.trainer")
    backend.write(second)
    assert make_backend().read().model_dump() == second.model_dump()


def test_stale_serial_is_refused_and_nothing_stored(make_backend: MakeBackend) -> None:
    backend = make_backend()
    first = sample_document(1)
    backend.write(first)
    second = successor(first)
    backend.write(second)

    stale = successor(first)
    stale.resources.clear()
    with pytest.raises(StateConflictError) as refused:
        backend.write(stale)
    assert "serial 2" in str(refused.value) and first.lineage in str(refused.value)

    skipping = second.model_copy(update={"serial": 4}, deep=True)
    with pytest.raises(StateConflictError, match="serial 4"):
        backend.write(skipping)

    assert backend.read().model_dump() == second.model_dump()
    assert [entry["serial"] for entry in backend.history()] == [2, 1]


def test_other_lineage_is_refused(make_backend: MakeBackend) -> None:
    backend = make_backend()
    ours = sample_document(1)
    backend.write(ours)
    theirs = sample_document(2)
    with pytest.raises(StateConflictError) as refused:
        backend.write(theirs)
    assert ours.lineage in str(refused.value) and theirs.lineage in str(refused.value)
    assert backend.read().lineage == ours.lineage
    assert len(backend.history()) == 1


def test_first_version_needs_serial_one(make_backend: MakeBackend) -> None:
    backend = make_backend()
    with pytest.raises(StateConflictError, match="serial 0"):
        backend.write(StateDocument())
    assert backend.exists() is False
    assert backend.history() == []


def test_racing_writers_on_one_serial_exactly_one_wins(
    pg_url: str, make_backend: MakeBackend, admin: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    base = sample_document(1)
    make_backend().write(base)
    candidates = [successor(base), successor(base)]
    candidates[0].resources["instances.trainer"].id = "winner-a"
    candidates[1].resources["instances.trainer"].id = "winner-b"

    with ThreadPoolExecutor(max_workers=1) as pool:
        with admin.transaction():
            admin.execute(
                sql.SQL("SELECT 1 FROM {} WHERE stack = 'prod' FOR UPDATE").format(
                    sql.Identifier(schema, "states")
                )
            )
            racing = pool.submit(race, [lambda doc=doc: make_backend().write(doc) for doc in candidates])
            wait_for_blocked_sessions(pg_url, schema, 2)
        outcomes = racing.result(timeout=DEADLINE)

    assert sum(outcome is None for outcome in outcomes) == 1
    loser = next(outcome for outcome in outcomes if outcome is not None)
    assert isinstance(loser, StateConflictError) and "serial 2" in str(loser)
    winner = candidates[outcomes.index(None)]
    assert make_backend().read().model_dump() == winner.model_dump()
    assert [entry["serial"] for entry in make_backend().history()] == [2, 1]


def test_racing_first_writers_exactly_one_wins(
    pg_url: str, make_backend: MakeBackend, admin: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    make_backend().read()
    candidates = [sample_document(1), sample_document(1)]

    with ThreadPoolExecutor(max_workers=1) as pool:
        with admin.transaction(force_rollback=True):
            admin.execute(
                sql.SQL(
                    "INSERT INTO {} (stack, serial, lineage, document, updated_by) "
                    "VALUES ('prod', 1, 'uncommitted', '{{}}', 'test')"
                ).format(sql.Identifier(schema, "states"))
            )
            racing = pool.submit(race, [lambda doc=doc: make_backend().write(doc) for doc in candidates])
            wait_for_blocked_sessions(pg_url, schema, 2)
        outcomes = racing.result(timeout=DEADLINE)

    assert sum(outcome is None for outcome in outcomes) == 1
    loser = next(outcome for outcome in outcomes if outcome is not None)
    assert isinstance(loser, StateConflictError)
    winner = candidates[outcomes.index(None)]
    assert winner.lineage in str(loser) and "created by another run" in str(loser)
    assert make_backend().read().lineage == winner.lineage
    assert len(make_backend().history()) == 1


@pytest.mark.slow
def test_writers_racing_repeatedly_never_both_succeed(make_backend: MakeBackend) -> None:
    base = sample_document(1)
    make_backend().write(base)
    current = base
    for _ in range(15):
        candidates = [successor(current) for _ in range(3)]
        barrier = threading.Barrier(len(candidates))

        def write_after_barrier(doc: StateDocument, barrier: threading.Barrier = barrier) -> None:
            backend = make_backend()
            barrier.wait(timeout=DEADLINE)
            backend.write(doc)

        outcomes = race([lambda doc=doc: write_after_barrier(doc) for doc in candidates])
        assert sum(outcome is None for outcome in outcomes) == 1
        assert all(isinstance(o, StateConflictError) for o in outcomes if o is not None)
        current = candidates[outcomes.index(None)]
    assert make_backend().read().serial == 16
    assert [entry["serial"] for entry in make_backend().history(limit=100)] == list(range(16, 0, -1))


def test_history_keeps_every_version_with_who_and_when(make_backend: MakeBackend) -> None:
    backend = make_backend()
    before = datetime.now().astimezone() - timedelta(seconds=2)
    versions = [sample_document(1)]
    versions.append(successor(versions[0]))
    versions.append(successor(versions[1]))
    for index, doc in enumerate(versions):
        doc.resources["instances.trainer"].id = f"version-{index + 1}"
        backend.write(doc)
    after = datetime.now().astimezone() + timedelta(seconds=2)

    history = backend.history()
    assert [entry["serial"] for entry in history] == [3, 2, 1]
    assert {entry["lineage"] for entry in history} == {versions[0].lineage}
    assert {entry["written_by"] for entry in history} == {f"{getpass.getuser()}@{socket.gethostname()}"}
    for entry in history:
        assert before <= datetime.fromisoformat(entry["written_at"]) <= after
    assert [entry["serial"] for entry in backend.history(limit=2)] == [3, 2]

    assert backend.read_version(1).resources["instances.trainer"].id == "version-1"
    assert backend.read_version(2).model_dump() == versions[1].model_dump()
    with pytest.raises(StateError, match="no version with serial 9"):
        backend.read_version(9)


def test_two_stacks_are_independent(make_backend: MakeBackend) -> None:
    staging, prod = make_backend("staging"), make_backend("prod")
    staging_doc = sample_document(1)
    staging.write(staging_doc)
    assert prod.exists() is False
    prod_doc = sample_document(1)
    prod.write(prod_doc)
    staging.write(successor(staging_doc))

    assert (staging.read().serial, staging.read().lineage) == (2, staging_doc.lineage)
    assert (prod.read().serial, prod.read().lineage) == (1, prod_doc.lineage)
    assert [entry["serial"] for entry in staging.history()] == [2, 1]
    assert [entry["serial"] for entry in prod.history()] == [1]

    with staging.lock("apply") as staging_lock, prod.lock("plan") as prod_lock:
        assert make_backend("staging").current_lock() == staging_lock
        assert make_backend("prod").current_lock() == prod_lock


def test_held_lock_refuses_second_run_within_a_second(make_backend: MakeBackend) -> None:
    with make_backend().lock("apply") as held:
        assert held.operation == "apply" and held.pid == os.getpid()
        other = make_backend()
        started = time.monotonic()
        with pytest.raises(StateLockedError) as refused, other.lock("plan"):
            pytest.fail("second lock was granted while the first is held")
        assert time.monotonic() - started < 1.0
        assert refused.value.lock_id == held.id
        assert held.describe() in str(refused.value)
        assert f"force-unlock {held.id}" in str(refused.value)
        assert other.current_lock() == held
    assert make_backend().current_lock() is None


def test_lock_is_released_when_the_block_raises(make_backend: MakeBackend) -> None:
    backend = make_backend()
    with pytest.raises(RuntimeError), backend.lock("apply"):
        raise RuntimeError("apply failed")
    assert backend.current_lock() is None
    with backend.lock("apply") as again:
        assert backend.current_lock() == again


def test_lock_timeout_expires_while_held(make_backend: MakeBackend) -> None:
    with make_backend().lock("apply") as held:
        started = time.monotonic()
        with pytest.raises(StateLockedError) as refused, make_backend().lock("plan", timeout=0.6):
            pytest.fail("lock was granted while held")
        assert 0.6 <= time.monotonic() - started < 5
        assert refused.value.lock_id == held.id


def test_lock_waits_then_succeeds_when_released(
    make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiter = make_backend()
    refused_once = threading.Event()
    real_pause = waiter._pause

    def pause(seconds: float) -> None:
        refused_once.set()
        real_pause(seconds)

    monkeypatch.setattr(waiter, "_pause", pause)

    def lock_and_report() -> tuple[LockInfo, LockInfo | None]:
        with waiter.lock("apply", timeout=DEADLINE) as info:
            return info, make_backend().current_lock()

    with contextlib.ExitStack() as first_run, ThreadPoolExecutor(max_workers=1) as pool:
        held = first_run.enter_context(make_backend().lock("apply"))
        waiting = pool.submit(lock_and_report)
        assert refused_once.wait(timeout=DEADLINE), "second run never found the lock busy"
        assert not waiting.done()
        first_run.close()
        acquired, seen_while_held = waiting.result(timeout=DEADLINE)
    assert acquired.id != held.id
    assert seen_while_held == acquired
    assert waiter.stale_lock is None


def test_killed_holder_frees_the_lock_without_force_unlock(
    pg_url: str, schema: str, make_backend: MakeBackend
) -> None:
    backend = make_backend()
    with lock_holder_process(pg_url, schema) as (proc, holder):
        assert holder.pid == proc.pid
        with pytest.raises(StateLockedError) as refused, backend.lock("apply"):
            pytest.fail("lock granted while another process holds it")
        assert refused.value.lock_id == holder.id
        assert backend.current_lock() == holder
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=DEADLINE)

    with backend.lock("apply", timeout=DEADLINE) as mine:
        assert backend.current_lock() == mine
        assert backend.stale_lock == holder


def test_force_unlock_with_wrong_id_is_refused(pg_url: str, schema: str, make_backend: MakeBackend) -> None:
    backend = make_backend()
    with lock_holder_process(pg_url, schema) as (_proc, holder):
        with pytest.raises(StateError, match="no lock with ID not-the-id") as refused:
            backend.force_unlock("not-the-id")
        assert holder.id in str(refused.value)
        assert backend.current_lock() == holder


def test_force_unlock_with_right_id_ends_the_holder_session(
    pg_url: str, schema: str, make_backend: MakeBackend
) -> None:
    backend = make_backend()
    with lock_holder_process(pg_url, schema) as (proc, holder):
        backend.force_unlock(holder.id)
        assert backend.current_lock() is None
        with backend.lock("apply") as mine:
            assert backend.current_lock() == mine
            assert proc.stdin is not None
            proc.stdin.close()
            assert proc.wait(timeout=DEADLINE) == 0, "the broken holder must finish without an error"
            assert backend.current_lock() == mine


def test_force_unlock_clears_a_recorded_holder_whose_session_ended(
    pg_url: str, schema: str, make_backend: MakeBackend, admin: psycopg.Connection[tuple[Any, ...]]
) -> None:
    backend = make_backend()
    with lock_holder_process(pg_url, schema) as (proc, holder):
        proc.kill()
        proc.wait(timeout=DEADLINE)
    deadline = time.monotonic() + DEADLINE
    while backend.current_lock() is not None:
        assert time.monotonic() < deadline, "killed holder's session never ended"
    backend.force_unlock(holder.id)
    row = admin.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "lock_holders"))
    ).fetchone()
    assert row == (0,)
    with pytest.raises(StateError, match="no lock with ID"):
        backend.force_unlock(holder.id)


def test_force_unlock_when_nothing_is_locked(make_backend: MakeBackend) -> None:
    with pytest.raises(StateError, match="no lock with ID abc"):
        make_backend().force_unlock("abc")


def test_unreachable_database_is_a_state_error_without_password(schema: str) -> None:
    password = "s3cret-Pa55"
    backend = PostgresStateBackend(
        f"postgresql://reconciler:{password}@127.0.0.1:1/test", "prod", schema=schema
    )
    assert backend.description == f"postgres://127.0.0.1:1/test (stack prod, schema {schema})"
    attempts: list[Callable[[], object]] = [
        backend.read,
        backend.exists,
        lambda: backend.write(sample_document(1)),
        backend.current_lock,
        lambda: backend.force_unlock("x"),
        backend.history,
    ]
    for attempt in attempts:
        with pytest.raises(StateError) as failed:
            attempt()
        assert password not in str(failed.value)
        assert "127.0.0.1:1" in str(failed.value)
    with pytest.raises(StateError) as failed, backend.lock("apply"):
        pytest.fail("lock granted without a database")
    assert password not in str(failed.value) and not isinstance(failed.value, StateLockedError)


def test_missing_database_is_a_state_error_without_password(pg_url: str, schema: str) -> None:
    password = "An0ther-secret"
    url = psycopg.conninfo.make_conninfo(pg_url, password=password, dbname=f"missing_{uuid.uuid4().hex[:8]}")
    backend = PostgresStateBackend(url, "prod", schema=schema)
    assert password not in backend.description
    with pytest.raises(StateError, match="does not exist") as failed:
        backend.read()
    assert password not in str(failed.value)


def test_malformed_url_is_a_state_error_without_password() -> None:
    with pytest.raises(StateError, match="invalid PostgreSQL URL") as failed:
        PostgresStateBackend("postgresql://admin:Very-Secret@[::1/test", "prod")
    assert "Very-Secret" not in str(failed.value)


def test_schema_is_created_once_and_reopening_is_idempotent(
    make_backend: MakeBackend, admin: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    make_backend().write(sample_document(1))
    assert make_backend().read().serial == 1
    assert make_backend("staging").read().serial == 0
    versions = admin.execute(
        sql.SQL("SELECT version FROM {} ORDER BY version").format(sql.Identifier(schema, "schema_version"))
    ).fetchall()
    assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
    tables = admin.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY table_name",
        (schema,),
    ).fetchall()
    assert [name for (name,) in tables] == ["lock_holders", "schema_version", "state_history", "states"]


def test_concurrent_first_use_migrates_once(
    make_backend: MakeBackend, admin: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    barrier = threading.Barrier(4)

    def first_use(stack: str) -> None:
        backend = make_backend(stack)
        barrier.wait(timeout=DEADLINE)
        backend.write(sample_document(1))

    outcomes = race([lambda stack=stack: first_use(stack) for stack in ("a", "b", "c", "d")])
    assert outcomes == [None, None, None, None]
    versions = admin.execute(
        sql.SQL("SELECT version FROM {}").format(sql.Identifier(schema, "schema_version"))
    ).fetchall()
    assert versions == [(SCHEMA_VERSION,)]


def test_newer_schema_version_is_refused_untouched(
    make_backend: MakeBackend, admin: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    make_backend().write(sample_document(1))
    admin.execute(
        sql.SQL("INSERT INTO {} (version) VALUES (%s)").format(sql.Identifier(schema, "schema_version")),
        (SCHEMA_VERSION + 1,),
    )
    with pytest.raises(StateError, match="newer than this reconciler knows"):
        make_backend().read()
    row = admin.execute(sql.SQL("SELECT serial FROM {}").format(sql.Identifier(schema, "states"))).fetchone()
    assert row == (1,)


def test_newer_document_version_is_refused(
    make_backend: MakeBackend, admin: psycopg.Connection[tuple[Any, ...]], schema: str
) -> None:
    make_backend().write(sample_document(1))
    admin.execute(
        sql.SQL("UPDATE {} SET document = jsonb_set(document, '{{version}}', '99')").format(
            sql.Identifier(schema, "states")
        )
    )
    with pytest.raises(StateError, match="state version 99"):
        make_backend().read()


def test_quoted_schema_and_stack_names_are_safe(
    pg_url: str, admin: psycopg.Connection[tuple[Any, ...]]
) -> None:
    schema = f'Odd "schema"; {uuid.uuid4().hex[:6]}'
    try:
        backend = PostgresStateBackend(pg_url, "prod'; DROP TABLE states; --", schema=schema)
        backend.write(sample_document(1))
        assert backend.read().serial == 1
        with backend.lock("apply") as held:
            assert backend.current_lock() == held
    finally:
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
