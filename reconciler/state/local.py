"""Local JSON state file: atomic writes, a kept backup, and an OS file lock.

Writes never modify the file in place: the new document goes to a temp file (fsync), the
current file is hard-linked to `<state>.backup`, then the temp file is renamed over the
state. A crash at any instant leaves either the old or the new document, and the backup.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from reconciler.errors import StateConflictError, StateError, StateLockedError
from reconciler.state.backend import LockInfo
from reconciler.state.model import StateDocument
from reconciler.state.validation import DamagedStateError, parse_state_text

HOLDER_RECORD_WAIT_SECONDS = 2.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalStateBackend:
    """State in one JSON file (mode 0600) with `<file>.backup`, `<file>.lock`, `<file>.lock.info`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.backup_path = self.path.with_name(self.path.name + ".backup")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.lock_info_path = self.path.with_name(self.path.name + ".lock.info")
        self._stored: tuple[str, int] | None = None
        self._held: LockInfo | None = None
        self.stale_lock: LockInfo | None = None

    @property
    def description(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> StateDocument:
        if not self.path.exists():
            if self.backup_path.exists():
                raise StateError(
                    f"state file {self.path} is missing but its backup {self.backup_path} exists",
                    hint=f"if the backup is the state you expect, copy it back: cp {self.backup_path} {self.path}",
                )
            doc = StateDocument()
            self._stored = None
            return doc
        try:
            text = self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise StateError(
                f"{self.path} is not a text state file",
                hint=f"the previous version is kept in {self.backup_path}",
            ) from exc
        if not text.strip():
            raise StateError(
                f"{self.path} is empty (truncated?)",
                hint=f"the previous version is kept in {self.backup_path}; inspect it and copy it back",
            )
        try:
            doc = parse_state_text(text, str(self.path), self._recovery)
        except DamagedStateError as exc:
            if exc.document is not None:
                # `state rm` may repair it: its write then follows this version.
                self._stored = (exc.document.lineage, exc.document.serial)
            raise
        self._stored = (doc.lineage, doc.serial)
        return doc

    @property
    def _recovery(self) -> str:
        return f"the previous version is kept in {self.backup_path}"

    def _check_cas(self, doc: StateDocument) -> None:
        stored = self._stored
        if stored is None and self.path.exists():
            current = parse_state_text(self.path.read_text(encoding="utf-8"), str(self.path), self._recovery)
            stored = (current.lineage, current.serial)
        if stored is None:
            if doc.serial < 1:
                raise StateConflictError(f"refusing to write {self.path} with serial {doc.serial}")
            return
        lineage, serial = stored
        if lineage != doc.lineage:
            raise StateConflictError(
                f"{self.path} has lineage {lineage}, not {doc.lineage}: it is another state's history",
                hint="point --state at the right file, or start a new state file",
            )
        if doc.serial != serial + 1:
            raise StateConflictError(
                f"{self.path} is at serial {serial}; refusing to write serial {doc.serial}",
                hint="another run changed the state; plan again",
            )

    def write(self, doc: StateDocument, force: bool = False) -> None:
        """Atomic replace; `force` (state push --force) skips the serial and lineage check."""
        if not force:
            self._check_cas(doc)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = doc.to_json_text().encode("utf-8")
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if self.path.exists():
            link_tmp = self.backup_path.with_name(self.backup_path.name + ".tmp")
            with contextlib.suppress(FileNotFoundError):
                link_tmp.unlink()
            os.link(self.path, link_tmp)
            os.replace(link_tmp, self.backup_path)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._stored = (doc.lineage, doc.serial)

    def current_lock(self) -> LockInfo | None:
        probe = FileLock(str(self.lock_path))
        try:
            probe.acquire(timeout=0)
        except Timeout:
            return self._read_lock_info()
        probe.release()
        return None

    def _read_lock_info(self) -> LockInfo | None:
        try:
            return LockInfo.from_dict(json.loads(self.lock_info_path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def _holder_info(self) -> LockInfo | None:
        """Who holds the lock. The holder writes its record just after taking the OS lock, so a
        run refused in that instant waits briefly for the record instead of naming no one."""
        deadline = time.monotonic() + HOLDER_RECORD_WAIT_SECONDS
        while True:
            info = self._read_lock_info()
            if info is not None or time.monotonic() >= deadline:
                return info
            time.sleep(0.02)

    def _locked_error(self, holder: LockInfo | None) -> StateLockedError:
        if holder is None:
            return StateLockedError(
                f"state {self.path} is locked by another run",
                hint="wait for it to finish, or pass --lock-timeout 60s to wait",
            )
        stale = holder.host == socket.gethostname() and not _pid_alive(holder.pid)
        note = " (its process is gone: the lock is stale)" if stale else ""
        return StateLockedError(
            f"state {self.path} is locked: {holder.describe()}{note}",
            lock_id=holder.id,
            hint="wait for it to finish, pass --lock-timeout 60s to wait, "
            f"or if you are sure it is dead: reconciler force-unlock {holder.id}",
        )

    @contextlib.contextmanager
    def lock(self, operation: str, timeout: float = 0.0) -> Iterator[LockInfo]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file_lock = FileLock(str(self.lock_path), mode=0o600)
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            try:
                file_lock.acquire(timeout=min(0.2, max(deadline - time.monotonic(), 0.0)))
                break
            except Timeout:
                if time.monotonic() >= deadline:
                    raise self._locked_error(self._holder_info()) from None
        try:
            leftover = self._read_lock_info()
            # The OS lock was free, so any info file left behind is from a run that died.
            self.stale_lock = leftover
            info = LockInfo.for_this_process(operation, str(self.path))
            tmp = self.lock_info_path.with_name(self.lock_info_path.name + ".tmp")
            tmp.write_text(json.dumps(info.to_dict()), encoding="utf-8")
            os.replace(tmp, self.lock_info_path)
            self._held = info
            yield info
        finally:
            self._held = None
            with contextlib.suppress(FileNotFoundError):
                self.lock_info_path.unlink()
            file_lock.release()

    def force_unlock(self, lock_id: str) -> None:
        holder = self._read_lock_info()
        if holder is None or holder.id != lock_id:
            raise StateError(
                f"no lock with ID {lock_id} on {self.path}",
                hint="run `reconciler plan` to see the current holder's lock ID",
            )
        if holder.host == socket.gethostname() and _pid_alive(holder.pid) and self.current_lock() is not None:
            raise StateError(
                f"lock {lock_id} is held by a live process (pid {holder.pid} on {holder.host})",
                hint=f"stop that process first (kill {holder.pid}); a local lock is released when it exits",
            )
        with contextlib.suppress(FileNotFoundError):
            self.lock_info_path.unlink()
