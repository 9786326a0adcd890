"""The StateBackend protocol shared by the local file and PostgreSQL backends."""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from reconciler.state.model import StateDocument, utc_now


@dataclass(frozen=True)
class LockInfo:
    """Who holds a state lock, shown to a run that is refused."""

    id: str
    operation: str
    who: str
    host: str
    pid: int
    created: str
    path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_this_process(cls, operation: str, path: str = "") -> LockInfo:
        try:
            who = getpass.getuser()
        except (KeyError, OSError):
            who = str(os.getuid())
        return cls(
            id=str(uuid.uuid4()),
            operation=operation,
            who=who,
            host=socket.gethostname(),
            pid=os.getpid(),
            created=utc_now(),
            path=path,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LockInfo:
        known = {k: data[k] for k in ("id", "operation", "who", "host", "pid", "created", "path") if k in data}
        return cls(**known)

    def describe(self) -> str:
        return (
            f"ID {self.id}, held by {self.who}@{self.host} (pid {self.pid}) "
            f"for '{self.operation}' since {self.created}"
        )


class StateBackend(Protocol):
    """Where a state document lives and how it is locked.

    `write` is a compare-and-swap: it succeeds only when the stored document has the
    same lineage and a serial exactly one below the document written (or nothing is
    stored yet); otherwise it raises StateConflictError and stores nothing.
    """

    @property
    def description(self) -> str:
        """Where the state lives, for messages (never includes passwords)."""
        ...

    def read(self) -> StateDocument:
        """The stored document, or a fresh one (serial 0, new lineage) if none exists."""
        ...

    def exists(self) -> bool: ...

    def write(self, doc: StateDocument, force: bool = False) -> None: ...

    def lock(self, operation: str, timeout: float = 0.0) -> AbstractContextManager[LockInfo]:
        """Hold the state lock for a whole plan or apply; StateLockedError after `timeout`."""
        ...

    def force_unlock(self, lock_id: str) -> None: ...

    def current_lock(self) -> LockInfo | None: ...
