"""The emulated world: every tenant's resources in every API, a clock, and the ledger.

The world is API-neutral storage with the rules both APIs share (what is live when, what
mounts what); the API modules validate requests and shape responses. Records are never
pruned: deleted ones keep their timestamps, which makes the ledger ("everything ever
created, by whom, when, and when it went") a view of the same data.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterable, Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from reconciler.emulator.clock import Clock, SystemClock
from reconciler.emulator.records import (
    Api,
    InstanceRecord,
    RecordBase,
    SshKeyRecord,
    VolumeRecord,
    iso_time,
)
from reconciler.emulator.storage import SandboxError, SandboxFile

AnyRecord = SshKeyRecord | VolumeRecord | InstanceRecord
_RecordT = TypeVar("_RecordT", SshKeyRecord, VolumeRecord, InstanceRecord)
_RECORD_TYPES: dict[str, type[AnyRecord]] = {
    "ssh_keys": SshKeyRecord,
    "volumes": VolumeRecord,
    "instances": InstanceRecord,
}

# The journal is folded into a snapshot once it holds more lines than this or than the world has records.
COMPACT_MIN_LINES = 2000


class LedgerEntry(BaseModel):
    """One resource ever created, for "nothing leaked, nothing created twice" assertions."""

    tenant: str
    api: Api
    kind: str
    id: str
    name: str
    status: str
    created_at: str
    deleted_at: str | None


class World:
    """All tenants of both APIs, with timing options and an optional sandbox journal."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        boot_seconds: float = 1.0,
        delete_seconds: float = 0.5,
        list_lag_seconds: float = 0.0,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.boot_seconds = boot_seconds
        self.delete_seconds = delete_seconds
        self.list_lag_seconds = list_lag_seconds
        self._scopes: dict[tuple[str, str, str], dict[str, AnyRecord]] = {}
        self._index: dict[tuple[str, str], AnyRecord] = {}
        self._dirty: dict[tuple[str, str], AnyRecord] = {}
        self._journal: SandboxFile | None = None
        # (api, tenant, volume or key id) -> instances that named it at create, oldest first:
        # what mounts a volume or uses a key is then one short scan, not one of every instance.
        self._users: dict[tuple[str, str, str], dict[str, None]] = {}

    def now(self) -> float:
        return self.clock.now()

    def __len__(self) -> int:
        return len(self._index)

    # ------------------------------------------------------------------ records

    def new_id(self, api: Api, kind: str, prefixes: Mapping[str, str] | None = None) -> str:
        """A fresh id in the API's own format: a uuid, or with `prefixes` the kind's prefix and
        12 hex digits (Forward's `spot_inst_...`)."""
        while True:
            if prefixes is None:
                candidate = str(uuid.uuid4())
            else:
                candidate = prefixes[kind] + secrets.token_hex(6)
            if (api, candidate) not in self._index:
                return candidate

    def add(self, record: AnyRecord) -> None:
        key = (record.api, record.id)
        if key in self._index:
            raise ValueError(f"duplicate {record.api} id {record.id}")
        self._insert(record)
        self._dirty[key] = record

    def _insert(self, record: AnyRecord) -> None:
        self._index[(record.api, record.id)] = record
        self._scopes.setdefault((record.api, record.tenant, record.kind), {})[record.id] = record
        if isinstance(record, InstanceRecord):
            used = [*record.volume_ids, *([record.ssh_key_id] if record.ssh_key_id else [])]
            for resource_id in used:
                self._users.setdefault((record.api, record.tenant, resource_id), {})[record.id] = None

    def changed(self, record: RecordBase) -> None:
        """Mark a record modified in place so the next commit journals it."""
        key = (record.api, record.id)
        self._dirty[key] = self._index[key]

    def _find(self, api: Api, tenant: str, record_id: str, cls: type[_RecordT]) -> _RecordT | None:
        record = self._index.get((api, record_id))
        if isinstance(record, cls) and record.tenant == tenant:
            return record
        return None

    def instance(self, api: Api, tenant: str, record_id: str) -> InstanceRecord | None:
        return self._find(api, tenant, record_id, InstanceRecord)

    def volume(self, api: Api, tenant: str, record_id: str) -> VolumeRecord | None:
        return self._find(api, tenant, record_id, VolumeRecord)

    def ssh_key(self, api: Api, tenant: str, record_id: str) -> SshKeyRecord | None:
        return self._find(api, tenant, record_id, SshKeyRecord)

    def instances(self, api: Api, tenant: str) -> list[InstanceRecord]:
        """Every instance the tenant ever created, oldest first (deleted ones included)."""
        return [
            r
            for r in self._scopes.get((api, tenant, "instances"), {}).values()
            if isinstance(r, InstanceRecord)
        ]

    def all_instances(self, api: Api | None = None) -> list[InstanceRecord]:
        """Every tenant's instances (in one API, or both): what uses up a market's machines."""
        return [
            r for r in self._index.values() if isinstance(r, InstanceRecord) and api in (None, r.api)
        ]

    def volumes(self, api: Api, tenant: str) -> list[VolumeRecord]:
        return [
            r for r in self._scopes.get((api, tenant, "volumes"), {}).values() if isinstance(r, VolumeRecord)
        ]

    def ssh_keys(self, api: Api, tenant: str) -> list[SshKeyRecord]:
        return [
            r for r in self._scopes.get((api, tenant, "ssh_keys"), {}).values() if isinstance(r, SshKeyRecord)
        ]

    # ------------------------------------------------------------------ shared rules

    def mounts(self, api: Api, tenant: str, at: float) -> dict[str, str]:
        """volume id -> id of the oldest instance live at `at` that mounts it."""
        mounted: dict[str, str] = {}
        for instance in self.instances(api, tenant):
            if instance.volume_ids and instance.live_at(at):
                for volume_id in instance.volume_ids:
                    mounted.setdefault(volume_id, instance.id)
        return mounted

    def mounted_by(self, api: Api, tenant: str, volume_id: str, at: float) -> str | None:
        """The id of the oldest instance live at `at` that mounts the volume; None if none."""
        for instance in self._current_users(api, tenant, volume_id):
            if volume_id in instance.volume_ids and instance.live_at(at):
                return instance.id
        return None

    def _current_users(self, api: Api, tenant: str, resource_id: str) -> list[InstanceRecord]:
        """The instances (as stored now: a reloaded record replaces its older copy) naming it."""
        found = (self._index.get((api, i)) for i in self._users.get((api, tenant, resource_id), ()))
        return [r for r in found if isinstance(r, InstanceRecord)]

    def key_user(self, api: Api, tenant: str, key_id: str, at: float) -> str | None:
        """The id of an instance, not yet fully deleted, that uses the key; None if unused."""
        for instance in self._current_users(api, tenant, key_id):
            if instance.ssh_key_id == key_id and instance.live_at(at):
                return instance.id
        return None

    # ------------------------------------------------------------------ ledger

    def ledger(self, *, api: str | None = None, tenant: str | None = None) -> list[LedgerEntry]:
        """Every resource ever created, oldest first, with its status now."""
        now = self.now()
        entries = []
        for record in sorted(self._index.values(), key=lambda r: r.created_at):
            if (api is not None and record.api != api) or (tenant is not None and record.tenant != tenant):
                continue
            deleted = record.deletion_started(now)
            entries.append(
                LedgerEntry(
                    tenant=record.tenant,
                    api=record.api,
                    kind=record.kind,
                    id=record.id,
                    name=record.name,
                    status=record.ledger_status(now),
                    created_at=iso_time(record.created_at),
                    deleted_at=iso_time(deleted) if deleted is not None else None,
                )
            )
        return entries

    # ------------------------------------------------------------------ persistence

    def attach_journal(self, journal: SandboxFile) -> None:
        """Journal every committed write to `journal` from now on."""
        self._journal = journal
        self._dirty.clear()

    def detach_journal(self) -> None:
        self._journal = None

    def commit(self) -> int:
        """Persist the records changed since the last commit; returns how many."""
        changed = list(self._dirty.values())
        self._dirty.clear()
        if self._journal is None or not changed:
            return len(changed)
        self._journal.append(record.model_dump(mode="json") for record in changed)
        if self._journal.journal_lines > max(COMPACT_MIN_LINES, len(self._index)):
            self._journal.rewrite(self._dumped())
        return len(changed)

    def _dumped(self) -> list[dict[str, object]]:
        return [record.model_dump(mode="json") for record in self._index.values()]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a full snapshot atomically (temp file, fsync, rename)."""
        SandboxFile(path).rewrite(self._dumped())

    def compact(self) -> None:
        """Fold the attached journal into a fresh snapshot."""
        if self._journal is not None:
            self._journal.rewrite(self._dumped())

    def load_records(self, raw: Iterable[dict[str, object]]) -> None:
        """Insert records read from a sandbox (dispatched on `kind`: faster than a tagged union)."""
        for item in raw:
            record_type = _RECORD_TYPES.get(str(item.get("kind")))
            if record_type is None:
                raise SandboxError(
                    f"emulator sandbox record {item.get('id')!r} has unknown kind {item.get('kind')!r}"
                )
            try:
                self._insert(record_type.model_validate(item))
            except ValidationError as exc:
                raise SandboxError(f"emulator sandbox record {item.get('id')!r} is invalid: {exc}") from None

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        boot_seconds: float = 1.0,
        delete_seconds: float = 0.5,
        list_lag_seconds: float = 0.0,
    ) -> World:
        """The world saved at `path` (snapshot plus journal); an empty world if the file does not exist."""
        world = cls(
            clock=clock,
            boot_seconds=boot_seconds,
            delete_seconds=delete_seconds,
            list_lag_seconds=list_lag_seconds,
        )
        world.load_records(SandboxFile(path).read())
        return world
