"""The Forward Compute API's wire format: request bodies, and how offerings, models and records
are shown. The handlers in `forward_api` serve them."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import Field
from starlette.responses import JSONResponse

from reconciler.emulator.catalogue import (
    ForwardComputeOffering,
    ForwardModel,
    ForwardVolumeOffering,
)
from reconciler.emulator.market import Quote, used_machines
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
from reconciler.emulator.runtime import (
    Call,
    invalid,
)
from reconciler.emulator.validation import PublicKey, ResourceName, StrictBody

API: Api = "forward"
SSH_USER = "ubuntu"
MAX_VOLUME_GB = 65536
DEFAULT_KEY_PROVIDER = "shadeform"
_STATUS = {
    Phase.PENDING: "creating",  # "restarting" after a restart request
    Phase.ACTIVE: "active",
    Phase.ERROR: "error",
    Phase.DELETING: "deleting",
    Phase.DELETED: "deleted",
}


def owner_id(tenant: str) -> str:
    """The membership id the API reports as `owner` for a tenant."""
    return "mem_" + tenant[:12]


# ------------------------------------------------------------------ request bodies


class EnvVar(StrictBody):
    name: str = Field(min_length=1)
    value: str


class CreateInstanceBody(StrictBody):
    name: ResourceName
    offering_id: str = Field(min_length=1)
    ssh_key_id: str | None = None
    volume_ids: list[str] = Field(default_factory=list)
    envs: list[EnvVar] = Field(default_factory=list)


class CreateVolumeBody(StrictBody):
    """As the SDK's CreateVolumeRequest: an offering and a size; the name is optional."""

    name: ResourceName | None = None
    size_gb: int = Field(ge=1, le=MAX_VOLUME_GB)
    offering_id: str = Field(min_length=1)


class CreateSshKeyBody(StrictBody):
    name: ResourceName
    public_key: PublicKey
    provider: str = DEFAULT_KEY_PROVIDER


# ------------------------------------------------------------------ rendering


def offering_quote(call: Call, offering: ForwardComputeOffering, used: Counter[str] | None = None) -> Quote:
    """The offering as the market has it now (the catalogue's, when no market is set)."""
    if used is None:
        used = machines_used(call)
    key = f"forward:{offering.id}"
    return call.market.quote(key, offering.available, offering.hourly_price_cents, call.world.now(), used)


def machines_used(call: Call) -> Counter[str]:
    if not call.market.enabled:
        return Counter()
    return used_machines(call.world.all_instances(API), call.world.now())


def compute_offering_json(offering: ForwardComputeOffering, quote: Quote | None = None) -> dict[str, Any]:
    available = offering.available if quote is None else quote.available
    cents = offering.hourly_price_cents if quote is None else quote.price_cents
    return {
        "id": offering.id,
        "provider": offering.provider,
        "region": offering.region,
        "region_display_name": offering.region_display_name,
        "instance_type": offering.instance_type,
        "deployment_type": offering.deployment_type,
        "available": available,
        "hourly_price": f"{cents / 100:.2f}",
        "price_per_gpu_hour": f"{cents / 100 / offering.num_gpus:.4f}".rstrip("0").rstrip("."),
        "boot_time": {"min_seconds": offering.boot_min_seconds, "max_seconds": offering.boot_max_seconds},
        "configuration": {
            "gpu_type": offering.gpu_type,
            "num_gpus": offering.num_gpus,
            "vram_per_gpu_in_gb": offering.vram_per_gpu_gb,
            "total_vram_in_gb": offering.vram_per_gpu_gb * offering.num_gpus,
            "vcpus": offering.vcpus,
            "memory_in_gb": offering.memory_gb,
            "storage_in_gb": offering.storage_gb,
            "interconnect": offering.interconnect,
        },
    }


def volume_offering_json(offering: ForwardVolumeOffering) -> dict[str, Any]:
    return {
        "id": offering.id,
        "provider": offering.provider,
        "region": offering.region,
        "price_per_gb_per_hour": offering.price_per_gb_per_hour,
        "fixed_size": offering.fixed_size,
        "supports_multi_mount": offering.supports_multi_mount,
    }


def _model_pricing(model: ForwardModel) -> dict[str, Any]:
    """Chat pricing has input and output prices; the SDK's embedding pricing has an input price only."""
    if model.model_type == "embedding":
        return {"input": model.input_price, "unit": "1M tokens"}
    return {"input": model.input_price, "output": model.output_price, "unit": "1M tokens"}


def model_json(model: ForwardModel) -> dict[str, Any]:
    """A model as the excerpt lists it, plus the fields the SDK's models require (each ignores the other's)."""
    created_at = iso_time(float(model.created))
    return {
        "id": model.id,
        "object": "model",
        "display_name": model.display_name,
        "model_type": model.model_type,
        "owned_by": model.owned_by,
        "provider": model.provider,
        "context_length": model.context_length,
        "created": model.created,
        "description": model.description,
        "license": model.license,
        "link": model.link,
        "pricing": _model_pricing(model),
        "model_name": model.id,
        "organization": model.owned_by,
        "created_at": created_at,
        "updated_at": created_at,
    }


def instance_json(record: InstanceRecord, at: float) -> dict[str, Any]:
    phase = record.phase(at)
    body: dict[str, Any] = {
        "id": record.id,
        "object": "spot.instance",
        "name": record.name,
        "owner": owner_id(record.tenant),
        "provider": record.cloud,
        "region": record.region,
        "status": "restarting"
        if phase is Phase.PENDING and record.boot_stage(at) is BootStage.RESTARTING
        else _STATUS[phase],
        "ssh_port": 22,
        "ssh_user": SSH_USER,
        "created": iso_time(record.created_at),
        "modified": iso_time(record.last_change(at)),
        "envs": record.envs,
        "volume_ids": record.volume_ids,
    }
    if record.ready_at is not None and record.ready_at <= at and record.boot_outcome is BootOutcome.ACTIVE:
        body["ip"] = record.ip
    if record.ssh_key_id is not None:
        body["ssh_key_id"] = record.ssh_key_id
    if phase is Phase.ERROR:
        body["status_details"] = "the instance failed to boot"
    elif phase in (Phase.DELETING, Phase.DELETED) and record.deletion_reason:
        body["status_details"] = record.deletion_reason
    return body


def volume_json(record: VolumeRecord, mounted_by: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": record.id,
        "object": "spot.volume",
        "name": record.name,
        "owner": owner_id(record.tenant),
        "provider": record.cloud,
        "region": record.region,
        "size_gb": record.size_gb,
        "cloud_assigned_id": record.cloud_assigned_id,
        "cost_estimate": round(record.size_gb * record.price_per_gb_per_hour, 6),
        "created": iso_time(record.created_at),
        "modified": iso_time(record.created_at),
        "fixed_size": record.fixed_size,
        "supports_multi_mount": record.supports_multi_mount,
    }
    if mounted_by is not None:
        body["mounted_by"] = mounted_by
    return body


def ssh_key_json(record: SshKeyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "object": "spot.ssh_key",
        "name": record.name,
        "owner": owner_id(record.tenant),
        "provider": record.provider or DEFAULT_KEY_PROVIDER,
        "provider_key_id": record.provider_key_id or record.id,
        "provider_data": {},
        "public_key": record.public_key,
        "created": iso_time(record.created_at),
        "modified": iso_time(record.created_at),
    }


def list_answer(data: list[dict[str, Any]], url: str) -> JSONResponse:
    return JSONResponse({"object": "list", "data": data, "url": url})


def single_answer(body: dict[str, Any], status_code: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status_code)


def view_time(call: Call, *, cached: bool) -> float:
    """The moment a read shows: now for fresh reads, earlier for cached ones."""
    now = call.world.now()
    if not cached:
        return now
    return now - (call.world.list_lag_seconds + call.faults.lag)


def wants_refresh(call: Call) -> bool:
    raw = call.query("refresh")
    if raw is None:
        return False
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise invalid("refresh must be true or false", field="refresh")
