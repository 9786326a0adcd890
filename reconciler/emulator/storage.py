"""The sandbox file: where an emulated world survives between processes.

Format: the first line is a JSON snapshot
`{"format": "reconciler-emulator-sandbox", "version": 1, "records": [...]}`; every
further line is a journal entry `{"record": {...}}` holding a record as it became after a
write (an upsert keyed by api and id). A file holding only the snapshot line is plain JSON.

Appending one line per write keeps a mutating request O(1) however large the world is;
the journal is folded into a fresh snapshot (temp file, fsync, rename) when it grows
past the world's size and when the sandbox is closed. Lines are flushed to the OS before
the API answers, so a killed process never loses a write the API acknowledged; only the
snapshot rewrite is fsynced. A torn last line (killed mid-write, so never acknowledged)
is ignored on load.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from reconciler.errors import ReconcilerError

SANDBOX_FORMAT = "reconciler-emulator-sandbox"
SANDBOX_VERSION = 1
_COMPACT = (",", ":")


class SandboxError(ReconcilerError):
    """The sandbox file cannot be read or is in use."""


class SandboxFile:
    """Reads, journals and compacts one sandbox file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.journal_lines = 0
        self._handle: IO[str] | None = None

    def read(self) -> list[dict[str, Any]]:
        """Every record in the file, with the journal replayed over the snapshot."""
        if not self.path.exists():
            return []
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SandboxError(f"cannot read emulator sandbox {self.path}: {exc}") from exc
        lines = text.splitlines()
        if not lines:
            return []
        snapshot = self._parse_snapshot(lines[0])
        records: dict[tuple[str, str], dict[str, Any]] = {}
        for record in snapshot:
            if not isinstance(record, dict):
                raise SandboxError(f"emulator sandbox {self.path}: a record is not an object")
            records[(str(record.get("api")), str(record.get("id")))] = record
        journal = lines[1:]
        for number, line in enumerate(journal, start=2):
            try:
                record = json.loads(line)["record"]
                records[(record["api"], record["id"])] = record
            except (ValueError, KeyError, TypeError) as exc:
                if number == len(lines):
                    break
                raise SandboxError(f"emulator sandbox {self.path} line {number} is corrupt: {exc}") from exc
        self.journal_lines = len(journal)
        return list(records.values())

    def _parse_snapshot(self, line: str) -> list[dict[str, Any]]:
        try:
            snapshot = json.loads(line)
        except ValueError as exc:
            raise SandboxError(f"emulator sandbox {self.path} is not valid JSON: {exc}") from exc
        if not isinstance(snapshot, dict) or snapshot.get("format") != SANDBOX_FORMAT:
            raise SandboxError(f"{self.path} is not an emulator sandbox file")
        if snapshot.get("version") != SANDBOX_VERSION:
            raise SandboxError(
                f"emulator sandbox {self.path} has version {snapshot.get('version')}, "
                f"this reconciler reads version {SANDBOX_VERSION}"
            )
        records = snapshot.get("records", [])
        if not isinstance(records, list):
            raise SandboxError(f"emulator sandbox {self.path}: records must be a list")
        return records

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Journal records as they are now; flushed before returning."""
        if self._handle is None:
            if not self.path.exists():
                self.rewrite([])
            self._handle = open(self.path, "a", encoding="utf-8")
        lines = [json.dumps({"record": record}, separators=_COMPACT) + "\n" for record in records]
        self._handle.write("".join(lines))
        self._handle.flush()
        self.journal_lines += len(lines)

    def rewrite(self, records: Iterable[dict[str, Any]]) -> None:
        """Replace the file by a snapshot of `records`: atomic, durable, journal emptied."""
        self.close()
        snapshot = {"format": SANDBOX_FORMAT, "version": SANDBOX_VERSION, "records": list(records)}
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(snapshot, separators=_COMPACT) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o600)
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        with contextlib.suppress(OSError):
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self.journal_lines = 0

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
