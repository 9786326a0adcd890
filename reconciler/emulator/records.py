"""What the emulated world stores: one record per resource ever created, never pruned.

A record keeps timestamps rather than a status: the status at any moment is computed
from them (`InstanceRecord.phase(at)`), so time can be advanced in tests, a world loaded
by another process agrees on every transition, and Forward Compute's cached lists are
simply the same records viewed at an earlier moment.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# The emulated API a record belongs to: the name of the provider whose spec serves it.
Api = str


class Phase(str, Enum):
    """API-neutral lifecycle of an instance; each API names these its own way."""

    PENDING = "pending"
    ACTIVE = "active"
    ERROR = "error"
    DELETING = "deleting"
    DELETED = "deleted"


class BootStage(str, Enum):
    """Where a pending instance is: APIs that report more than `pending` name these."""

    CREATING = "creating"  # accepted, not yet handed to the underlying cloud
    PROVISIONING = "provisioning"  # the underlying cloud is allocating a machine
    STARTING = "starting"  # the machine boots
    RESTARTING = "restarting"  # a restart was asked for and has not completed


class BootOutcome(str, Enum):
    ACTIVE = "active"
    ERROR = "error"


def tenant_id(api_key: str) -> str:
    """The tenant an API key stands for; a digest, so sandbox files never hold keys."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


def iso_time(timestamp: float) -> str:
    """RFC 3339 UTC with milliseconds, the way both APIs print times."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RecordBase(BaseModel):
    model_config = ConfigDict(extra="ignore")

    api: Api
    tenant: str
    id: str
    name: str
    created_at: float
    deleted_at: float | None = None

    def live_at(self, at: float) -> bool:
        """Whether the resource exists (listed, fetchable) at `at`."""
        return self.created_at <= at and (self.deleted_at is None or at < self.deleted_at)

    def ledger_status(self, at: float) -> str:
        return "active" if self.live_at(at) else "deleted"

    def deletion_started(self, at: float) -> float | None:
        return self.deleted_at if self.deleted_at is not None and self.deleted_at <= at else None


class SshKeyRecord(RecordBase):
    kind: Literal["ssh_keys"] = "ssh_keys"
    public_key: str
    is_default: bool = False
    provider: str | None = None
    provider_key_id: str | None = None


class VolumeRecord(RecordBase):
    kind: Literal["volumes"] = "volumes"
    cloud: str
    region: str
    size_gb: int
    fixed_size: bool
    supports_multi_mount: bool
    price_per_gb_per_hour: float
    cloud_assigned_id: str
    offering_id: str | None = None


class InstanceRecord(RecordBase):
    """An instance. Deletion starts at `deleted_at` (a request) or `auto_delete_at` (the
    platform acting on an auto_delete threshold), whichever comes first, and completes
    `delete_seconds` later."""

    kind: Literal["instances"] = "instances"
    cloud: str
    region: str
    instance_type: str
    cloud_instance_type: str
    offering_id: str | None = None
    hourly_price_cents: int
    configuration: dict[str, Any]
    os: str | None = None
    shade_cloud: bool = True
    launch_configuration: dict[str, Any] | None = None
    ssh_key_id: str | None = None
    volume_ids: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    envs: list[dict[str, str]] = Field(default_factory=list)
    auto_delete: dict[str, str] | None = None
    alert: dict[str, str] | None = None
    rental_type: str = "on_demand"
    cloud_assigned_id: str
    ip: str
    ready_at: float | None
    boot_outcome: BootOutcome = BootOutcome.ACTIVE
    auto_delete_at: float | None = None
    delete_seconds: float = 0.0
    restarted_at: float | None = None
    deletion_reason: str | None = None

    def deletion_started(self, at: float) -> float | None:
        starts = [t for t in (self.deleted_at, self.auto_delete_at) if t is not None and t <= at]
        return min(starts) if starts else None

    def phase(self, at: float) -> Phase:
        started = self.deletion_started(at)
        if started is not None:
            return Phase.DELETED if at >= started + self.delete_seconds else Phase.DELETING
        if self.ready_at is None or at < self.ready_at:
            return Phase.PENDING
        return Phase.ERROR if self.boot_outcome is BootOutcome.ERROR else Phase.ACTIVE

    def boot_stage(self, at: float) -> BootStage:
        """Which part of booting a PENDING instance is in: the boot time split in thirds
        (creating, provisioning, starting), or restarting after a restart request."""
        if self.restarted_at is not None and at >= self.restarted_at:
            return BootStage.RESTARTING
        if self.ready_at is None:
            return BootStage.PROVISIONING
        elapsed = (at - self.created_at) / max(self.ready_at - self.created_at, 1e-9)
        if elapsed < 1 / 3:
            return BootStage.CREATING
        return BootStage.PROVISIONING if elapsed < 2 / 3 else BootStage.STARTING

    def listed_at(self, at: float) -> bool:
        """Still listed: not deleted, or deleted for less than the deletion took (then gone)."""
        started = self.deletion_started(at)
        if started is None:
            return self.created_at <= at
        return at < started + 2 * self.delete_seconds

    def live_at(self, at: float) -> bool:
        """Exists and is not fully deleted: it still holds its volumes and key."""
        return self.created_at <= at and self.phase(at) is not Phase.DELETED

    def ledger_status(self, at: float) -> str:
        return self.phase(at).value

    def last_change(self, at: float) -> float:
        """When the instance last changed state, as seen at `at`."""
        moments = [self.created_at]
        if self.ready_at is not None and self.ready_at <= at:
            moments.append(self.ready_at)
        started = self.deletion_started(at)
        if started is not None:
            done = started + self.delete_seconds
            moments.append(done if at >= done else started)
        return max(moments)

    def billed_hours(self, at: float) -> float:
        """Hours billed so far: billing stops when deletion starts."""
        end = self.deletion_started(at) or at
        return max(0.0, end - self.created_at) / 3600.0
