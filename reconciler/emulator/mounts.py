"""The volume rules both emulated APIs enforce; each API words the refusal its own way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from reconciler.emulator.records import VolumeRecord
from reconciler.emulator.runtime import ApiError, Problem
from reconciler.emulator.world import World


class MountFault(str, Enum):
    MISSING = "missing"  # no such live volume
    ELSEWHERE = "elsewhere"  # in another cloud or region than the instance
    MOUNTED = "mounted"  # another instance mounts it and it does not multi-mount


@dataclass(frozen=True)
class MountProblem:
    fault: MountFault
    volume_id: str
    volume: VolumeRecord | None = None
    mounted_by: str | None = None


def mount_problem(
    world: World, api: str, tenant: str, volume_ids: Sequence[str], place: tuple[str, str], now: float
) -> MountProblem | None:
    """Why an instance at `place` (cloud, region) cannot mount these volumes, or None."""
    mounts = {v: m for v in volume_ids if (m := world.mounted_by(api, tenant, v, now))}
    for volume_id in volume_ids:
        volume = world.volume(api, tenant, volume_id)
        if volume is None or not volume.live_at(now):
            return MountProblem(MountFault.MISSING, volume_id)
        if (volume.cloud, volume.region) != place:
            return MountProblem(MountFault.ELSEWHERE, volume_id, volume)
        if volume_id in mounts and not volume.supports_multi_mount:
            return MountProblem(MountFault.MOUNTED, volume_id, volume, mounts[volume_id])
    return None


def delete_unmounted(world: World, tenant: str, record: VolumeRecord, now: float, **detail: Any) -> None:
    """Start deleting a volume; 409 while an instance still mounts it (`detail`: the API's
    `code` or `field` for that answer)."""
    mounted_by = world.mounted_by(record.api, tenant, record.id, now)
    if mounted_by is not None:
        raise ApiError(
            409,
            Problem.CONFLICT,
            f"volume {record.id} is mounted by instance {mounted_by}; delete the instance first",
            **detail,
        )
    record.deleted_at = now
    world.changed(record)
