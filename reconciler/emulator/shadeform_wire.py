"""The Shadeform API's wire format: request bodies, and how records are shown (statuses, instance
types, instances, volumes, SSH keys). The handlers in `shadeform_api` serve them."""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from reconciler.emulator.catalogue import ShadeformInstanceType, region_display_name
from reconciler.emulator.market import Market, Quote, used_machines
from reconciler.emulator.records import (
    Api,
    BootOutcome,
    BootStage,
    InstanceRecord,
    Phase,
    SshKeyRecord,
    VolumeRecord,
    iso_time,
)
from reconciler.emulator.runtime import Call
from reconciler.emulator.validation import PublicKey, ResourceName, StrictBody, parse_dollars, parse_rfc3339

API: Api = "shadeform"
# `cloud` is an open string in the current document (its own example, hyperstack, is not in
# the old seed's list): a cloud nobody sells is refused by the catalogue lookup instead.
ShadeformCloud = Annotated[str, StringConstraints(min_length=1)]
MAX_VOLUME_GB = 65536
SSH_USER = "shadeform"

_STATUS = {
    Phase.PENDING: "pending",
    Phase.ACTIVE: "active",
    Phase.ERROR: "error",
    Phase.DELETING: "deleting",
    Phase.DELETED: "deleted",
}
_PENDING_STATUS = {
    BootStage.CREATING: "creating",
    BootStage.PROVISIONING: "pending_provider",
    BootStage.STARTING: "pending",
    BootStage.RESTARTING: "pending",
}
GPU_MANUFACTURER = "nvidia"
# The current document makes `deleted_at` a required date-time: before a delete it is the zero time.
NOT_DELETED = "0001-01-01T00:00:00Z"
BOOT_FAILED = "the instance failed to boot"


def instance_status(record: InstanceRecord, at: float) -> str:
    """The status the API reports: creating -> pending_provider -> pending while booting."""
    phase = record.phase(at)
    return _PENDING_STATUS[record.boot_stage(at)] if phase is Phase.PENDING else _STATUS[phase]


def status_details(record: InstanceRecord, at: float) -> str | None:
    phase = record.phase(at)
    if phase is Phase.ERROR:
        return BOOT_FAILED
    if phase in (Phase.DELETING, Phase.DELETED):
        return record.deletion_reason
    return None


# ------------------------------------------------------------------ request bodies


class EnvVar(StrictBody):
    name: str = Field(min_length=1)
    value: str


class PortMapping(StrictBody):
    host_port: int = Field(ge=1, le=65535)
    container_port: int = Field(ge=1, le=65535)


class VolumeMount(StrictBody):
    host_path: str = Field(min_length=1)
    container_path: str = Field(min_length=1)


class DockerConfiguration(StrictBody):
    image: str = Field(min_length=1)
    args: str | None = None
    envs: list[EnvVar] | None = None
    port_mappings: list[PortMapping] | None = None
    shared_memory_in_gb: int | None = Field(default=None, ge=1)
    volume_mounts: list[VolumeMount] | None = None


class ScriptConfiguration(StrictBody):
    base64_script: str = Field(min_length=1)

    @model_validator(mode="after")
    def _decodes(self) -> ScriptConfiguration:
        try:
            base64.b64decode(self.base64_script, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("base64_script is not valid base64") from None
        return self


class LaunchConfiguration(StrictBody):
    type: Literal["docker", "script"]
    docker_configuration: DockerConfiguration | None = None
    script_configuration: ScriptConfiguration | None = None

    @model_validator(mode="after")
    def _matches_type(self) -> LaunchConfiguration:
        if self.type == "docker" and self.docker_configuration is None:
            raise ValueError("type 'docker' needs docker_configuration")
        if self.type == "script" and self.script_configuration is None:
            raise ValueError("type 'script' needs script_configuration")
        return self


class Threshold(StrictBody):
    """auto_delete / alert: a date, a spend in dollars, or both."""

    date_threshold: str | None = None
    spend_threshold: str | None = None

    @model_validator(mode="after")
    def _valid(self) -> Threshold:
        if self.date_threshold is None and self.spend_threshold is None:
            raise ValueError("give date_threshold, spend_threshold or both")
        if self.date_threshold is not None:
            parse_rfc3339(self.date_threshold)
        if self.spend_threshold is not None:
            parse_dollars(self.spend_threshold)
        return self


class CreateInstanceBody(StrictBody):
    cloud: ShadeformCloud
    region: str = Field(min_length=1)
    shade_instance_type: str = Field(min_length=1)
    shade_cloud: bool = True
    name: ResourceName
    os: str | None = None
    launch_configuration: LaunchConfiguration | None = None
    ssh_key_id: str | None = None
    volume_ids: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    envs: list[EnvVar] = Field(default_factory=list)
    auto_delete: Threshold | None = None
    alert: Threshold | None = None
    rental_type: Literal["on_demand", "spot"] = "on_demand"


class UpdateInstanceBody(StrictBody):
    name: ResourceName | None = None
    tags: list[str] | None = None
    auto_delete: Threshold | None = None
    alert: Threshold | None = None


class CreateVolumeBody(StrictBody):
    cloud: ShadeformCloud
    region: str = Field(min_length=1)
    size_in_gb: int = Field(ge=1, le=MAX_VOLUME_GB)
    name: ResourceName


class AddSshKeyBody(StrictBody):
    name: ResourceName
    public_key: PublicKey


# ------------------------------------------------------------------ rendering


def configuration_json(itype: ShadeformInstanceType, os: str) -> dict[str, Any]:
    return {
        "memory_in_gb": itype.memory_gb,
        "storage_in_gb": itype.storage_gb,
        "vcpus": itype.vcpus,
        "num_gpus": itype.num_gpus,
        "gpu_type": itype.gpu_type,
        "gpu_manufacturer": GPU_MANUFACTURER,
        "interconnect": itype.interconnect,
        "nvlink": itype.interconnect == "nvlink",
        "vram_per_gpu_in_gb": itype.vram_per_gpu_gb,
        "os": os,
        "os_options": list(itype.os_options),
    }


@dataclass(frozen=True)
class MarketView:
    """The market at one moment, with the machines every tenant uses counted once."""

    market: Market
    at: float
    used: Counter[str]

    @classmethod
    def of(cls, call: Call) -> MarketView:
        at = call.world.now()
        used = used_machines(call.world.all_instances(API), at) if call.market.enabled else Counter()
        return cls(call.market, at, used)

    def quote(self, itype: ShadeformInstanceType, region: str, spot: bool) -> Quote | None:
        """The on-demand or spot offer of a type in a region; None where none is sold."""
        place = itype.region(region)
        if place is None:
            return None
        key = f"shadeform:{itype.cloud}:{region}:{itype.shade_instance_type}"
        if not spot:
            return self.market.quote(key, place.available, itype.hourly_price_cents, self.at, self.used)
        if place.spot_available is None or place.spot_price_cents is None:
            return None
        return self.market.quote(
            key + ":spot", place.spot_available, place.spot_price_cents, self.at, self.used
        )


def instance_type_json(itype: ShadeformInstanceType, region: str | None, view: MarketView) -> dict[str, Any]:
    availability: list[dict[str, Any]] = []
    for entry in itype.availability:
        if region is not None and entry.region != region:
            continue
        shown = {"region": entry.region, "display_name": region_display_name(entry.region)}
        on_demand = view.quote(itype, entry.region, spot=False)
        if on_demand is not None:
            availability.append(shown | {"available": on_demand.available, "rental_type": "on_demand"})
        spot = view.quote(itype, entry.region, spot=True)
        if spot is not None:
            availability.append(
                shown
                | {
                    "available": spot.available,
                    "rental_type": "spot",
                    "hourly_price": f"{spot.price_cents / 100:.2f}",
                }
            )
    home = next((a["region"] for a in availability if a["available"]), availability[0]["region"])
    return {
        "cloud": itype.cloud,
        "region": home,
        "shade_instance_type": itype.shade_instance_type,
        "cloud_instance_type": itype.cloud_instance_type,
        "configuration": configuration_json(itype, itype.os_options[0]),
        "hourly_price": itype.hourly_price_cents,
        "deployment_type": "vm",
        "boot_time": {"min_boot_in_sec": 120, "max_boot_in_sec": 600},
        "availability": availability,
    }


def instance_json(record: InstanceRecord, at: float) -> dict[str, Any]:
    booted = (
        record.ready_at is not None and record.ready_at <= at and record.boot_outcome is BootOutcome.ACTIVE
    )
    deleted = record.deletion_started(at)
    body: dict[str, Any] = {
        "id": record.id,
        "cloud": record.cloud,
        "region": record.region,
        "shade_instance_type": record.instance_type,
        "cloud_instance_type": record.cloud_instance_type,
        "cloud_assigned_id": record.cloud_assigned_id,
        "shade_cloud": record.shade_cloud,
        "name": record.name,
        "configuration": {"gpu_manufacturer": GPU_MANUFACTURER, **record.configuration},
        "ip": record.ip if booted else "",
        "ssh_user": SSH_USER,
        "ssh_port": 22,
        "status": instance_status(record, at),
        "cost_estimate": f"{record.hourly_price_cents / 100 * record.billed_hours(at):.2f}",
        "hourly_price": record.hourly_price_cents,
        "created_at": iso_time(record.created_at),
        "deleted_at": iso_time(deleted) if deleted is not None else NOT_DELETED,
        "ssh_key_id": record.ssh_key_id,
        "volume_ids": record.volume_ids,
        "tags": record.tags,
        "envs": record.envs,
        "rental_type": record.rental_type,
    }
    if record.launch_configuration is not None:
        body["launch_configuration"] = record.launch_configuration
    if record.auto_delete is not None:
        body["auto_delete"] = record.auto_delete
    if record.alert is not None:
        body["alert"] = record.alert
    details = status_details(record, at)
    if details is not None:
        body["status_details"] = details
    return body


def volume_json(record: VolumeRecord, at: float, mounted_by: str | None) -> dict[str, Any]:
    hours = max(0.0, at - record.created_at) / 3600.0
    return {
        "id": record.id,
        "cloud": record.cloud,
        "cloud_assigned_id": record.cloud_assigned_id,
        "region": record.region,
        "name": record.name,
        "fixed_size": record.fixed_size,
        "size_in_gb": record.size_gb,
        "cost_estimate": f"{record.size_gb * record.price_per_gb_per_hour * hours:.2f}",
        "supports_multi_mount": record.supports_multi_mount,
        "mounted_by": mounted_by or "",
    }


def ssh_key_json(record: SshKeyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "public_key": record.public_key,
        "is_default": record.is_default,
    }
