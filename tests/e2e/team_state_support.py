"""Team state end to end: the installed `reconciler` command on a PostgreSQL backend.

Each test gets its own schema in the real database (dropped afterwards) and a config
directory under tmp_path whose backend is `${env:RECONCILER_PG_URL}`. That URL carries a
password (the test server trusts local connections, so any password is accepted), and
every output, state row and file is searched for it afterwards.

Races are made deterministic from a third session: holding the row lock on a stack's
state makes a run that holds the state lock block at its next state write, where the test
sees it waiting (pg_stat_activity, found by the `application_name` in its URL) and acts:
starts a rival run, kills it, or lets it go.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from support import CliResult

from reconciler.emulator import LedgerEntry, World

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
# Percent-encoded in the URL, so both spellings must stay out of sight.
TEST_PASSWORD = "Team%40State-pw-41c7"
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAcUIS47SFVib3yJlqOwvcrX5PH+CxglMj9MWWZzgI2a team@example"
BOOT_SECONDS = 0.1
DELETE_SECONDS = 0.05
CLI_TIMEOUT_SECONDS = 120
DEADLINE_SECONDS = 30.0
POLL_SECONDS = 0.05
# Variables of the caller's shell that would change what a run does; tests set their own.
_INHERITED_PREFIXES = ("RECONCILER_",)
_INHERITED_NAMES = ("SHADEFORM_API_KEY", "FORWARD_API_KEY", "NO_COLOR", "FORCE_COLOR", "PGPASSWORD")

SHADEFORM_CONFIG = """\
name: team
providers:
  shadeform:
    endpoint: embedded

ssh_keys:
  - name: deploy
    provider: shadeform
    public_key: ${file:deploy.pub}

volumes:
  - name: datasets
    provider: shadeform
    cloud: lambdalabs
    region: us-east-1
    size_gb: 100

instances:
  - name: trainer
    provider: shadeform
    cloud: lambdalabs
    region: us-east-1
    shade_instance_type: A6000
    ssh_key: deploy
    volumes: [datasets]
    launch:
      type: docker
      image: vllm/vllm-openai:latest
"""

KEY_ONLY_CONFIG = """\
name: team
providers:
  shadeform:
    endpoint: embedded

ssh_keys:
  - name: deploy
    provider: shadeform
    public_key: ${file:deploy.pub}
"""


def postgres_backend_block(schema: str, stack: str | None) -> str:
    lines = ["backend:", "  type: postgres", "  url: ${env:RECONCILER_PG_URL}", f"  schema: {schema}"]
    if stack is not None:
        lines.append(f"  stack: {stack}")
    return "\n".join(lines) + "\n"


def reconciler_executable() -> Path:
    """The console script installed beside this interpreter (what `pip install .` puts on PATH)."""
    path = Path(sys.executable).parent / "reconciler"
    if not path.exists():
        pytest.skip(f"the reconciler command is not installed beside {Path(sys.executable).name}")
    return path


def with_password(url: str, password: str) -> str:
    """`url` with `password` (already percent-encoded) for its user, unless it has one already."""
    parts = urlsplit(url)
    if parts.password is not None:
        return url
    user = parts.username or "postgres"
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def with_application_name(url: str, name: str) -> str:
    """`url` tagged with an application_name, so the test can find that run's sessions."""
    parts = urlsplit(url)
    query = "&".join(p for p in (parts.query, f"application_name={quote(name)}") if p)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def unreachable_url(url: str) -> str:
    """`url` pointed at a local port nothing listens on (its password kept)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    return urlunsplit((parts.scheme, f"{credentials}@127.0.0.1:{port}", parts.path, "", ""))


def wait_until(condition: Callable[[], bool], what: str, deadline: float = DEADLINE_SECONDS) -> None:
    """Poll `condition` until it holds; fail naming `what` once `deadline` seconds have passed."""
    give_up = time.monotonic() + deadline
    while not condition():
        if time.monotonic() >= give_up:
            pytest.fail(f"gave up after {deadline:.0f} s waiting for {what}")
        time.sleep(POLL_SECONDS)


@dataclass
class TeamDatabase:
    """One test's schema in the real server, and a plain session to look into it."""

    url: str
    schema: str
    admin: psycopg.Connection[tuple[Any, ...]]
    runs: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The URL itself and every spelling of its password."""
        password = urlsplit(self.url).password or ""
        return tuple(s for s in (self.url, password, unquote(password)) if s)

    def _table(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    def document(self, stack: str) -> dict[str, Any] | None:
        """The stack's current state document as stored, or None."""
        row = self.admin.execute(
            sql.SQL("SELECT document FROM {} WHERE stack = %s").format(self._table("states")), (stack,)
        ).fetchone()
        return None if row is None else dict(row[0])

    def serials(self, stack: str) -> list[int]:
        """Serials of every version written to the stack, oldest first."""
        rows = self.admin.execute(
            sql.SQL("SELECT serial FROM {} WHERE stack = %s ORDER BY id").format(self._table("state_history")),
            (stack,),
        ).fetchall()
        return [int(row[0]) for row in rows]

    def sessions(self, application_name: str, *, waiting_on_lock: bool = False) -> list[int]:
        """Server pids of the sessions a run opened (only those blocked on a lock, if asked)."""
        query = "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
        if waiting_on_lock:
            query += " AND wait_event_type = 'Lock'"
        return [int(row[0]) for row in self.admin.execute(query, (application_name,)).fetchall()]

    @contextlib.contextmanager
    def hold_state_row(self, stack: str) -> Iterator[None]:
        """Lock the stack's state row from another session: any state write waits until the block ends."""
        with psycopg.connect(self.url) as blocker:
            locked = blocker.execute(
                sql.SQL("SELECT 1 FROM {} WHERE stack = %s FOR UPDATE").format(self._table("states")), (stack,)
            ).fetchone()
            assert locked is not None, f"stack {stack} has no stored state to hold"
            try:
                yield
            finally:
                blocker.rollback()

    @contextlib.contextmanager
    def hold_lock_records(self) -> Iterator[None]:
        """Block writes to the table of lock holders: a run that takes the lock cannot record who it is yet."""
        with psycopg.connect(self.url) as blocker:
            blocker.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(self._table("lock_holders")))
            try:
                yield
            finally:
                blocker.rollback()

    def dump(self) -> str:
        """Every row of every table in the schema, as text: what a secret must not be in."""
        tables = self.admin.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY table_name",
            (self.schema,),
        ).fetchall()
        chunks: list[str] = []
        for (table,) in tables:
            rows = self.admin.execute(
                sql.SQL("SELECT t::text FROM {} t").format(self._table(str(table)))
            ).fetchall()
            chunks.extend(str(row[0]) for row in rows)
        return "\n".join(chunks)


@contextlib.contextmanager
def team_database() -> Iterator[TeamDatabase]:
    """A fresh schema in the test server, dropped afterwards; skips when the server is not there."""
    url = with_password(os.environ.get("RECONCILER_TEST_PG_URL", DEFAULT_URL), TEST_PASSWORD)
    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(
            f"PostgreSQL for the team state tests is not reachable with a password in its URL "
            f"({type(exc).__name__}); start it or set RECONCILER_TEST_PG_URL"
        )
    schema = f"reconciler_e2e_{uuid.uuid4().hex[:12]}"
    with admin:
        database = TeamDatabase(url, schema, admin)
        try:
            yield database
        finally:
            # A test that failed half-way may leave background runs: end them before their schema.
            for process in database.runs:
                if process.poll() is None:
                    process.kill()
                process.communicate()
            admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@dataclass
class RunningCli:
    """A `reconciler` run started in the background."""

    args: tuple[str, ...]
    process: subprocess.Popen[str]
    project: TeamProject

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def finish(self, expect: int | None = 0, timeout: float = CLI_TIMEOUT_SECONDS) -> CliResult:
        stdout, stderr = self.process.communicate(timeout=timeout)
        return self.project.record(CliResult(self.args, self.process.returncode, stdout, stderr), expect)

    def kill(self) -> CliResult:
        """SIGKILL, as when a CI runner is torn down mid-job."""
        self.process.send_signal(signal.SIGKILL)
        return self.finish(expect=-signal.SIGKILL)


@dataclass
class TeamProject:
    """A config directory whose state lives in the test's PostgreSQL schema.

    The config's name is the directory's name; every run's output is kept for the secrecy check.
    """

    root: Path
    database: TeamDatabase
    stack: str
    results: list[CliResult] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        parent: Path,
        database: TeamDatabase,
        config: str = SHADEFORM_CONFIG,
        *,
        name: str = "team",
        stack: str | None = "prod",
    ) -> TeamProject:
        root = parent / name
        root.mkdir(parents=True)
        (root / "deploy.pub").write_text(PUBLIC_KEY + "\n", encoding="utf-8")
        project = cls(root, database, stack or name)
        project.write(config + "\n" + postgres_backend_block(database.schema, stack))
        return project

    def write(self, text: str, filename: str = "main.yaml") -> None:
        (self.root / filename).write_text(text, encoding="utf-8")

    def configure(self, resources: str) -> None:
        """Replace the declared resources, keeping the PostgreSQL backend."""
        stack = None if self.stack == self.root.name else self.stack
        self.write(resources + "\n" + postgres_backend_block(self.database.schema, stack))

    def environment(self, url: str | None, app: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
        env = {
            name: value
            for name, value in os.environ.items()
            if name not in _INHERITED_NAMES and not name.startswith(_INHERITED_PREFIXES)
        }
        backend_url = self.database.url if url is None else url
        env.update(
            {
                "RECONCILER_PG_URL": with_application_name(backend_url, app) if app else backend_url,
                "RECONCILER_EMULATOR_BOOT_SECONDS": str(BOOT_SECONDS),
                "RECONCILER_EMULATOR_DELETE_SECONDS": str(DELETE_SECONDS),
                "COLUMNS": "200",
            }
        )
        env.update(extra or {})
        return env

    def record(self, result: CliResult, expect: int | None) -> CliResult:
        self.results.append(result)
        if expect is not None:
            assert result.returncode == expect, result.describe()
        return result

    def run(
        self,
        *args: str,
        expect: int | None = 0,
        url: str | None = None,
        app: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CliResult:
        """Run `reconciler ARGS` here with no TTY; `expect` is the exit code required (None: any)."""
        completed = subprocess.run(
            [str(reconciler_executable()), *args],
            cwd=self.root,
            env=self.environment(url, app, env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_SECONDS,
            check=False,
        )
        return self.record(CliResult(tuple(args), completed.returncode, completed.stdout, completed.stderr), expect)

    def start(self, *args: str, app: str, env: Mapping[str, str] | None = None) -> RunningCli:
        """Start `reconciler ARGS` in the background; its database sessions carry `app` as their name."""
        process = subprocess.Popen(
            [str(reconciler_executable()), *args],
            cwd=self.root,
            env=self.environment(None, app, env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.database.runs.append(process)
        return RunningCli(tuple(args), process, self)

    # -- what the runs left behind ----------------------------------------------------------

    @property
    def sandbox_path(self) -> Path:
        return self.root / "state" / f"{self.stack}.sandbox.json"

    def ledger(self) -> list[LedgerEntry]:
        """Everything the emulated cloud ever created for this stack, deleted ones included."""
        if not self.sandbox_path.exists():
            return []
        return World.load(self.sandbox_path).ledger()

    def stored(self) -> dict[str, Any]:
        document = self.database.document(self.stack)
        assert document is not None, f"stack {self.stack} has no stored state"
        return document

    def assert_secrets_never_shown(self) -> None:
        """Neither the URL nor its password in any output, file under the project, or stored row."""
        places = {f"output of reconciler {' '.join(r.args)}": r.output for r in self.results}
        for path in sorted(self.root.rglob("*")):
            if path.is_file():
                places[str(path.relative_to(self.root))] = path.read_text(encoding="utf-8", errors="replace")
        places[f"tables of schema {self.database.schema}"] = self.database.dump()
        for secret in self.database.secrets:
            leaks = [where for where, text in places.items() if secret in text]
            assert not leaks, f"a database secret appears in: {', '.join(leaks)}"


def ledger_names(entries: list[LedgerEntry]) -> list[str]:
    """Ledger names without reconciler's ownership suffix (`deploy--rc-...` -> `deploy`), sorted."""
    return sorted(entry.name.split("--rc-")[0] for entry in entries)
