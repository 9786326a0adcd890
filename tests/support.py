"""Fakes several test files share: clocks that only move when something sleeps, canned
provider APIs for httpx.MockTransport, and the result of one `reconciler` run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from reconciler.emulator import ManualClock
from reconciler.state.model import PendingOperation, StateDocument

Route = Callable[[httpx.Request], httpx.Response]

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


class FakeClock:
    """A monotonic clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class ClockSleep:
    """A client's sleep and clock on the emulator's manual clock: pacing and waits advance it
    instead of waiting."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.sleeps: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(seconds)

    def now(self) -> float:
        return self.clock.now()


class FakeApi:
    """Canned answers keyed by "METHOD /path" (below /v1); records every request it gets.

    A request with no route gets a 404 whose body `not_found` builds from the route key, in
    the API's own error shape.
    """

    def __init__(self, routes: dict[str, Route | httpx.Response], not_found: Callable[[str], Any]) -> None:
        self.routes = routes
        self.not_found = not_found
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = self._key(request)
        answer = self.routes.get(key)
        if answer is None:
            return httpx.Response(404, json=self.not_found(key))
        return answer(request) if callable(answer) else answer

    def bodies(self, key: str) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if self._key(r) == key]

    @staticmethod
    def _key(request: httpx.Request) -> str:
        return f"{request.method} {request.url.path.removeprefix('/v1')}"


def pending_doc(started: datetime) -> StateDocument:
    """A state whose only entry is a create of ssh_keys.deploy on Shadeform that a run began at
    `started` (written as `started.isoformat()`) and never finished."""
    doc = StateDocument(serial=5)
    doc.pending.append(
        PendingOperation(
            op="create",
            address="ssh_keys.deploy",
            provider="shadeform",
            kind="ssh_keys",
            marker="rc-abc-123",
            name="deploy",
            started_at=started.isoformat(),
            attributes={"name": "deploy"},
        )
    )
    return doc


@dataclass(frozen=True)
class CliResult:
    """One finished `reconciler` run."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        return (
            f"reconciler {' '.join(self.args)} exited {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


def reachable_pg_url(url: str | None = None, what: str = "the state backend tests") -> str:
    """The test PostgreSQL server's URL (RECONCILER_TEST_PG_URL, else a local default), once it
    answers; the test is skipped, saying why, when it does not."""
    url = url or os.environ.get("RECONCILER_TEST_PG_URL", DEFAULT_PG_URL)
    try:
        with psycopg.connect(url, connect_timeout=3):
            pass
    except psycopg.OperationalError as exc:
        pytest.skip(
            f"PostgreSQL for {what} is not reachable ({type(exc).__name__}); "
            "start it or set RECONCILER_TEST_PG_URL"
        )
    return url


@contextlib.contextmanager
def scratch_schema(url: str, prefix: str = "reconciler_test") -> Iterator[str]:
    """A schema name no other test uses, dropped (with everything in it) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@dataclass
class Totals:
    """What the crash, fault and concurrency tests tried and found; printed by the tests'
    conftest at the end of the session."""

    kill_points: set[str] = field(default_factory=set)
    kills: int = 0
    interrupts: int = 0
    faults: set[str] = field(default_factory=set)
    audits: int = 0
    orphans: int = 0
    duplicates: int = 0

    def lines(self) -> list[str]:
        return [
            f"kill points tried: {len(self.kill_points)} distinct ({self.kills} kill -9 in all)",
            f"interrupts sent: {self.interrupts}",
            f"faults exercised: {len(self.faults)} ({', '.join(sorted(self.faults)) or 'none'})",
            f"audits against the emulator ledger: {self.audits}",
            f"orphans found: {self.orphans}",
            f"duplicates found: {self.duplicates}",
        ]

    @property
    def used(self) -> bool:
        return bool(self.audits or self.kills or self.interrupts)

    def as_json(self) -> dict[str, Any]:
        """Plain data a pytest-xdist worker can hand to the controller."""
        return {
            name: sorted(value) if isinstance(value, set) else value for name, value in self.__dict__.items()
        }

    def add(self, other: Mapping[str, Any]) -> None:
        """Count in what another process (a pytest-xdist worker) tried and found."""
        for name, value in other.items():
            mine = getattr(self, name)
            if isinstance(mine, set):
                mine.update(value)
            else:
                setattr(self, name, mine + value)


TOTALS = Totals()
