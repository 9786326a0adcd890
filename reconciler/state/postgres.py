"""PostgreSQL state backend: several stacks in one database, CAS writes, advisory locks.

Each stack (for example `staging` and `prod`) has one row of current state, plus a history
row for every version ever written. Writes are a compare-and-swap inside one transaction, so
two writers can never both store the same serial. The state lock is a session-level advisory
lock held on a dedicated connection: PostgreSQL releases it when that session ends, so a run
that was killed never leaves a lock behind that someone has to break by hand.

Every operation opens its own short connection; only `lock()` keeps one open, for as long as
the lock is held. Nothing needs closing when the backend is dropped.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import math
import os
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from reconciler.errors import StateConflictError, StateError, StateLockedError
from reconciler.redaction import Scrubber
from reconciler.state.backend import LockInfo
from reconciler.state.model import StateDocument
from reconciler.state.validation import parse_state_text

# Ordered schema migrations: entry N (1-based) brings the schema to version N. Each step is
# one SQL statement with `{schema}` standing for the quoted schema name. To change the
# schema, append an entry; never edit one that has shipped.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS {schema}.states (
            stack text PRIMARY KEY,
            serial bigint NOT NULL,
            lineage text NOT NULL,
            document jsonb NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            updated_by text NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS {schema}.state_history (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            stack text NOT NULL,
            serial bigint NOT NULL,
            lineage text NOT NULL,
            document jsonb NOT NULL,
            written_at timestamptz NOT NULL DEFAULT now(),
            written_by text NOT NULL,
            UNIQUE (stack, serial, lineage)
        )""",
        """CREATE TABLE IF NOT EXISTS {schema}.lock_holders (
            stack text PRIMARY KEY,
            lock_id text NOT NULL,
            backend_pid integer NOT NULL,
            info jsonb NOT NULL,
            acquired_at timestamptz NOT NULL DEFAULT now()
        )""",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)
LOCK_POLL_INTERVAL = 0.25
# How long a refused run waits for a new holder to commit the record of who it is.
HOLDER_RECORD_WAIT = 5.0
FORCE_UNLOCK_WAIT = 10.0
# Where a password sits in a URL or a keyword connection string, quoted or not.
_PASSWORD_PATTERNS = (
    r"://[^/@:]*:([^@]+)@",
    r"password\s*=\s*'((?:[^'\\]|\\.)+)'",
    r"password\s*=\s*([^\s']+)",
)


def advisory_key(*parts: str) -> int:
    """A stable signed 64-bit advisory lock key, the same in every process and Python version."""
    digest = hashlib.blake2b("\0".join(("reconciler", *parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _user_at_host() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


class PostgresStateBackend:
    """State of one stack kept in PostgreSQL tables under `schema`, created on first use."""

    def __init__(self, url: str, stack: str, schema: str = "reconciler", connect_timeout: float = 5) -> None:
        if not stack:
            raise StateError("a PostgreSQL state needs a stack name (for example 'prod')")
        if not schema or len(schema.encode("utf-8")) > 63:
            raise StateError(f"invalid PostgreSQL schema name {schema!r} (1 to 63 bytes)")
        self.stack = stack
        self.schema = schema
        # A password is scrubbed whatever its length: a database message quotes it alone.
        self._secrets = Scrubber(self._password_forms(url), replacement="***", min_length=1)
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise StateError(
                f"invalid PostgreSQL URL for stack {stack!r}: {self._scrub(str(exc))}",
                hint="expected postgresql://user@host:port/database",
            ) from None
        self._conninfo = make_conninfo(
            url,
            connect_timeout=str(max(1, math.ceil(connect_timeout))),
            application_name=str(params.get("application_name") or "reconciler"),
        )
        host = str(params.get("host") or params.get("hostaddr") or "localhost")
        port = str(params.get("port") or "5432")
        dbname = str(params.get("dbname") or "")
        self._description = f"postgres://{host}:{port}/{dbname} (stack {stack}, schema {schema})"
        self._lock_key = advisory_key("lock", schema, stack)
        self._migration_key = advisory_key("migrate", schema)
        self._schema_ready = False
        self.stale_lock: LockInfo | None = None

    @staticmethod
    def _password_forms(url: str) -> tuple[str, ...]:
        """Every spelling of the URL's password that could end up in a driver message."""
        forms: set[str] = set()
        # Found by pattern too, for URLs too malformed for the parsers below.
        for pattern in _PASSWORD_PATTERNS:
            forms.update(match.group(1) for match in re.finditer(pattern, url))
        with contextlib.suppress(ValueError):
            raw = urlsplit(url).password
            if raw:
                forms.update({raw, unquote(raw)})
        with contextlib.suppress(psycopg.Error):
            password = conninfo_to_dict(url).get("password")
            if password:
                forms.add(str(password))
        return tuple(sorted(forms, key=len, reverse=True))

    def _scrub(self, text: str) -> str:
        text = self._secrets.scrub(text)
        return " ".join(line.strip() for line in text.strip().splitlines() if line.strip())

    @property
    def description(self) -> str:
        return self._description

    def _table(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    @contextlib.contextmanager
    def _database_errors(self, action: str) -> Iterator[None]:
        """Report driver failures (server down, auth, permissions) as StateError, password removed."""
        try:
            yield
        except psycopg.Error as exc:
            raise StateError(
                f"PostgreSQL state {self._description}: {action} failed: {self._scrub(str(exc))}",
                hint="check that the server is reachable and the URL's user may use the database",
            ) from None

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        connection = psycopg.connect(self._conninfo, autocommit=True)
        try:
            self._migrate(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    @contextlib.contextmanager
    def _connection(self, action: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        with self._database_errors(action), self._connect() as connection:
            yield connection

    def _migrate(self, connection: psycopg.Connection[tuple[Any, ...]]) -> None:
        """Bring the schema to SCHEMA_VERSION, once per backend; a current schema needs no DDL rights."""
        if self._schema_ready:
            return
        if self._stored_schema_version(connection) != SCHEMA_VERSION:
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (self._migration_key,))
                connection.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
                )
                connection.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {} ("
                        "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                    ).format(self._table("schema_version"))
                )
                current = self._stored_schema_version(connection)
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    for step in MIGRATIONS[version - 1]:
                        connection.execute(sql.SQL(step).format(schema=sql.Identifier(self.schema)))
                    connection.execute(
                        sql.SQL("INSERT INTO {} (version) VALUES (%s)").format(self._table("schema_version")),
                        (version,),
                    )
        self._schema_ready = True

    def _stored_schema_version(self, connection: psycopg.Connection[tuple[Any, ...]]) -> int:
        exists = connection.execute(
            "SELECT to_regclass(%s) IS NOT NULL",
            (sql.Identifier(self.schema, "schema_version").as_string(connection),),
        ).fetchone()
        if not exists or not exists[0]:
            return 0
        row = connection.execute(
            sql.SQL("SELECT coalesce(max(version), 0) FROM {}").format(self._table("schema_version"))
        ).fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StateError(
                f"PostgreSQL state {self._description} uses schema version {version}, newer than "
                f"this reconciler knows ({SCHEMA_VERSION})",
                hint="upgrade reconciler; nothing was changed in the database",
            )
        return version

    def exists(self) -> bool:
        with self._connection("reading state") as connection:
            row = connection.execute(
                sql.SQL("SELECT 1 FROM {} WHERE stack = %s").format(self._table("states")), (self.stack,)
            ).fetchone()
        return row is not None

    def read(self) -> StateDocument:
        with self._connection("reading state") as connection:
            row = connection.execute(
                sql.SQL("SELECT document::text FROM {} WHERE stack = %s").format(self._table("states")),
                (self.stack,),
            ).fetchone()
        if row is None:
            return StateDocument()
        return parse_state_text(row[0], self._description, self._recovery)

    @property
    def _recovery(self) -> str:
        return (
            "every earlier version is kept: `reconciler state history` lists them; push a corrected "
            "copy with `reconciler state push --force FILE`"
        )

    def write(self, doc: StateDocument, force: bool = False) -> None:
        """Store `doc` if it is the direct successor of the stored version; otherwise store nothing.

        `force` (state push --force) skips the serial and lineage check; history keeps both.
        """
        document = Jsonb(doc.model_dump(mode="json"))
        author = _user_at_host()
        with self._connection("writing state") as connection, connection.transaction():
            row = connection.execute(
                sql.SQL("SELECT serial, lineage FROM {} WHERE stack = %s FOR UPDATE").format(
                    self._table("states")
                ),
                (self.stack,),
            ).fetchone()
            if row is None:
                if doc.serial < 1:
                    raise StateConflictError(
                        f"refusing to write {self._description} with serial {doc.serial}: "
                        "the first stored version must have serial 1 or more"
                    )
                inserted = connection.execute(
                    sql.SQL(
                        "INSERT INTO {} (stack, serial, lineage, document, updated_by) "
                        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (stack) DO NOTHING RETURNING 1"
                    ).format(self._table("states")),
                    (self.stack, doc.serial, doc.lineage, document, author),
                ).fetchone()
                if inserted is None:
                    raise self._concurrent_creation_conflict(connection, doc)
            else:
                serial, lineage = int(row[0]), str(row[1])
                if not force and (lineage != doc.lineage or serial != doc.serial - 1):
                    raise self._conflict(doc, serial, lineage)
                connection.execute(
                    sql.SQL(
                        "UPDATE {} SET serial = %s, lineage = %s, document = %s, updated_at = now(), "
                        "updated_by = %s WHERE stack = %s"
                    ).format(self._table("states")),
                    (doc.serial, doc.lineage, document, author, self.stack),
                )
            connection.execute(
                sql.SQL(
                    "INSERT INTO {} (stack, serial, lineage, document, written_by) "
                    "VALUES (%s, %s, %s, %s, %s)"
                ).format(self._table("state_history")),
                (self.stack, doc.serial, doc.lineage, document, author),
            )

    def _concurrent_creation_conflict(
        self, connection: psycopg.Connection[tuple[Any, ...]], doc: StateDocument
    ) -> StateConflictError:
        """Another writer stored this stack's first version while this one was inserting its own."""
        row = connection.execute(
            sql.SQL("SELECT serial, lineage FROM {} WHERE stack = %s").format(self._table("states")),
            (self.stack,),
        ).fetchone()
        if row is None:
            return StateConflictError(f"{self._description} changed while serial {doc.serial} was written")
        return self._conflict(doc, int(row[0]), str(row[1]), created_concurrently=True)

    def _conflict(
        self, doc: StateDocument, serial: int, lineage: str, created_concurrently: bool = False
    ) -> StateConflictError:
        how = "was created by another run meanwhile and " if created_concurrently else ""
        if lineage != doc.lineage:
            return StateConflictError(
                f"{self._description} {how}has serial {serial} of lineage {lineage}; refusing to write "
                f"serial {doc.serial} of lineage {doc.lineage}: it is another state's history",
                hint="check the stack name, or plan again from the stored state",
            )
        return StateConflictError(
            f"{self._description} {how}is at serial {serial} (lineage {lineage}); refusing to write "
            f"serial {doc.serial}, which must follow serial {doc.serial - 1}",
            hint="another run changed the state; plan again",
        )

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        """Versions written for this stack, newest first: serial, lineage, written_at, written_by."""
        with self._connection("reading state history") as connection:
            rows = connection.execute(
                sql.SQL(
                    "SELECT serial, lineage, written_at, written_by FROM {} WHERE stack = %s "
                    "ORDER BY id DESC LIMIT %s"
                ).format(self._table("state_history")),
                (self.stack, max(limit, 0)),
            ).fetchall()
        return [
            {"serial": int(serial), "lineage": lineage, "written_at": _iso_utc(written_at), "written_by": who}
            for serial, lineage, written_at, who in rows
        ]

    def read_version(self, serial: int) -> StateDocument:
        """A version from history; of the current lineage when several lineages share the serial."""
        with self._connection("reading state history") as connection:
            row = connection.execute(
                sql.SQL(
                    "SELECT h.document::text FROM {history} h "
                    "LEFT JOIN {states} s ON s.stack = h.stack AND s.lineage = h.lineage "
                    "WHERE h.stack = %s AND h.serial = %s "
                    "ORDER BY (s.stack IS NOT NULL) DESC, h.id DESC LIMIT 1"
                ).format(history=self._table("state_history"), states=self._table("states")),
                (self.stack, serial),
            ).fetchone()
        if row is None:
            raise StateError(
                f"{self._description} has no version with serial {serial}",
                hint="list the stored versions with their serials in the state history",
            )
        return parse_state_text(row[0], f"{self._description} serial {serial}", self._recovery)

    def _holder(self, connection: psycopg.Connection[tuple[Any, ...]]) -> tuple[int, LockInfo] | None:
        """The backend pid holding this stack's advisory lock and who it is, or None when free."""
        high, low = (self._lock_key >> 32) & 0xFFFFFFFF, self._lock_key & 0xFFFFFFFF
        row = connection.execute(
            sql.SQL(
                "SELECT l.pid, h.backend_pid, h.info::text FROM pg_locks l "
                "LEFT JOIN {} h ON h.stack = %s "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                "AND l.classid::bigint = %s AND l.objid::bigint = %s "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).format(self._table("lock_holders")),
            (self.stack, high, low),
        ).fetchone()
        if row is None:
            return None
        pid, recorded_pid, info = int(row[0]), row[1], row[2]
        if info is not None and recorded_pid == pid:
            return pid, LockInfo.from_dict(json.loads(info))
        # Taken by a session that has not recorded itself (yet): say what is known.
        return pid, LockInfo(
            id="",
            operation="unknown",
            who="unknown",
            host="unknown",
            pid=0,
            created="unknown",
            path=self._description,
        )

    def current_lock(self) -> LockInfo | None:
        with self._connection("reading the state lock") as connection:
            holder = self._holder(connection)
        return holder[1] if holder else None

    def _locked_error(self, holder: LockInfo | None) -> StateLockedError:
        if holder is None:
            return StateLockedError(
                f"state {self._description} is locked by another run",
                hint="wait for it to finish, or pass --lock-timeout 60s to wait",
            )
        if not holder.id:
            return StateLockedError(
                f"state {self._description} is locked by a session that has not recorded who it is",
                hint="retry in a moment, or pass --lock-timeout 60s to wait",
            )
        return StateLockedError(
            f"state {self._description} is locked: {holder.describe()}",
            lock_id=holder.id,
            hint="wait for it to finish or pass --lock-timeout 60s to wait; the lock is released as soon "
            f"as that run's database session ends; if the run hangs: reconciler force-unlock {holder.id}",
        )

    def _pause(self, seconds: float) -> None:
        """Wait between two attempts at a busy lock."""
        time.sleep(seconds)

    def _try_lock(self, connection: psycopg.Connection[tuple[Any, ...]], info: LockInfo) -> bool:
        """Take the advisory lock and record the holder.

        Others see the advisory lock as soon as it is taken, but the record only when this
        transaction commits: `lock()` gives a holder without a record a moment to appear.
        """
        with connection.transaction():
            row = connection.execute("SELECT pg_try_advisory_lock(%s)", (self._lock_key,)).fetchone()
            if not row or not row[0]:
                return False
            leftover = connection.execute(
                sql.SQL("SELECT info::text FROM {} WHERE stack = %s").format(self._table("lock_holders")),
                (self.stack,),
            ).fetchone()
            # The lock was free, so a recorded holder is a run whose session ended without unlocking.
            self.stale_lock = LockInfo.from_dict(json.loads(leftover[0])) if leftover else None
            connection.execute(
                sql.SQL(
                    "INSERT INTO {} (stack, lock_id, backend_pid, info) "
                    "VALUES (%s, %s, pg_backend_pid(), %s) "
                    "ON CONFLICT (stack) DO UPDATE SET lock_id = excluded.lock_id, "
                    "backend_pid = excluded.backend_pid, info = excluded.info, acquired_at = now()"
                ).format(self._table("lock_holders")),
                (self.stack, info.id, Jsonb(info.to_dict())),
            )
        return True

    @contextlib.contextmanager
    def lock(self, operation: str, timeout: float = 0.0) -> Iterator[LockInfo]:
        """Hold the stack's advisory lock on a dedicated session until the block ends."""
        deadline = time.monotonic() + max(timeout, 0.0)
        info = LockInfo.for_this_process(operation, self._description)
        with self._database_errors("taking the state lock"):
            connection = self._connect()
        try:
            with self._database_errors("taking the state lock"):
                while not self._try_lock(connection, info):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        holder = self._holder(connection)
                        unrecorded = holder is not None and not holder[1].id
                        if unrecorded and time.monotonic() < deadline + HOLDER_RECORD_WAIT:
                            self._pause(LOCK_POLL_INTERVAL / 5)
                            continue
                        raise self._locked_error(holder[1] if holder else None)
                    self._pause(min(LOCK_POLL_INTERVAL, remaining))
            try:
                yield info
            finally:
                self._unlock(connection, info)
        finally:
            connection.close()

    def _unlock(self, connection: psycopg.Connection[tuple[Any, ...]], info: LockInfo) -> None:
        """Release the lock and forget the holder.

        If that fails, the session is broken or gone (for example force-unlocked): closing or
        losing it releases the advisory lock all the same, and the holder row left behind is
        ignored because no session holds the lock any more.
        """
        with contextlib.suppress(psycopg.Error):
            with connection.transaction():
                connection.execute(
                    sql.SQL("DELETE FROM {} WHERE stack = %s AND lock_id = %s").format(
                        self._table("lock_holders")
                    ),
                    (self.stack, info.id),
                )
                connection.execute("SELECT pg_advisory_unlock(%s)", (self._lock_key,))

    def force_unlock(self, lock_id: str) -> None:
        """End the database session holding the lock recorded as `lock_id`; PostgreSQL then frees it."""
        with self._connection("breaking the state lock") as connection:
            holder = self._holder(connection)
            if holder is None or holder[1].id != lock_id:
                recorded = connection.execute(
                    sql.SQL("SELECT lock_id FROM {} WHERE stack = %s").format(self._table("lock_holders")),
                    (self.stack,),
                ).fetchone()
                if holder is None and recorded is not None and recorded[0] == lock_id:
                    self._forget_holder(connection, lock_id)
                    return
                held_by = f"; the current lock is {holder[1].describe()}" if holder and holder[1].id else ""
                raise StateError(
                    f"no lock with ID {lock_id} on {self._description}{held_by}",
                    hint="run `reconciler plan` to see the current holder's lock ID",
                )
            pid = holder[0]
            terminated = connection.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
            if not terminated or not terminated[0]:
                raise StateError(f"could not end PostgreSQL session {pid} holding lock {lock_id}")
            deadline = time.monotonic() + FORCE_UNLOCK_WAIT
            while (still := self._holder(connection)) is not None and still[0] == pid:
                if time.monotonic() >= deadline:
                    raise StateError(
                        f"PostgreSQL session {pid} holding lock {lock_id} did not end within "
                        f"{FORCE_UNLOCK_WAIT:.0f} s"
                    )
                self._pause(0.05)
            self._forget_holder(connection, lock_id)

    def _forget_holder(self, connection: psycopg.Connection[tuple[Any, ...]], lock_id: str) -> None:
        connection.execute(
            sql.SQL("DELETE FROM {} WHERE stack = %s AND lock_id = %s").format(self._table("lock_holders")),
            (self.stack, lock_id),
        )
