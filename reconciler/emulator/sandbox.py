"""A world bound to its sandbox file for the life of one process.

Opening locks the file (`<file>.lock`, an OS lock released even on kill -9), loads the
world as the last process left it, and journals every committed write; closing folds the
journal into a snapshot. Two processes may use one sandbox one after the other; a second
process opening it while the first still has it open is refused after `lock_timeout`,
and opening it twice in one process is refused at once (share one EmbeddedCloud between
both providers instead).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from filelock import FileLock, Timeout

from reconciler.emulator.clock import Clock
from reconciler.emulator.storage import SandboxError, SandboxFile
from reconciler.emulator.world import World


class Sandbox:
    _open_here: ClassVar[set[Path]] = set()

    def __init__(self, path: str | os.PathLike[str], *, lock_timeout: float = 10.0) -> None:
        self.path = Path(path).resolve()
        self.lock_timeout = lock_timeout
        self._lock: FileLock | None = None
        self._file: SandboxFile | None = None
        self._world: World | None = None

    def open(
        self,
        *,
        clock: Clock | None = None,
        boot_seconds: float = 1.0,
        delete_seconds: float = 0.5,
        list_lag_seconds: float = 0.0,
    ) -> World:
        if self.path in Sandbox._open_here:
            raise SandboxError(
                f"emulator sandbox {self.path} is already open in this process",
                hint="open one EmbeddedCloud and use its transport for both providers",
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(f"{self.path}.lock", timeout=self.lock_timeout)
        try:
            lock.acquire()
        except Timeout:
            raise SandboxError(
                f"emulator sandbox {self.path} is in use by another process",
                hint="wait for the other run to finish",
            ) from None
        try:
            file = SandboxFile(self.path)
            world = World(
                clock=clock,
                boot_seconds=boot_seconds,
                delete_seconds=delete_seconds,
                list_lag_seconds=list_lag_seconds,
            )
            world.load_records(file.read())
            world.attach_journal(file)
        except BaseException:
            lock.release()
            raise
        Sandbox._open_here.add(self.path)
        self._lock, self._file, self._world = lock, file, world
        return world

    def close(self) -> None:
        """Fold the journal into a snapshot (only if anything was written) and unlock."""
        if self._lock is None:
            return
        try:
            if self._world is not None and self._file is not None:
                self._world.commit()
                if self._file.journal_lines:
                    self._world.compact()
                self._world.detach_journal()
                self._file.close()
        finally:
            self._lock.release()
            Sandbox._open_here.discard(self.path)
            self._lock = self._file = self._world = None
