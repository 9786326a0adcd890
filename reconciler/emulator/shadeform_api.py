"""The Shadeform API (v1), as its current OpenAPI document and the volumes/SSH-keys reference define it.

Where the current document (`shadeform-openapi-current.yaml`) and the older seeds differ, the
current one wins: `cloud` is an open string, availability entries carry `display_name`,
configurations `gpu_manufacturer` and `nvlink`, `price_per_gb_per_hour` is a decimal string,
and `deleted_at` is always a date-time (the zero time `0001-01-01T00:00:00Z` before a delete).

Paths are relative to the API root (`https://api.shadeform.ai/v1` on the real service).
Auth: header `X-API-KEY`; a missing or blank key is 401, and so is any key the runtime was
not told about when it was given a list of keys; any other key is a tenant that sees only
its own resources.

Error body (the seeds define none; one shape for every error status):

    {"error": "<human message>", "code": "<UPPER_SNAKE_CODE>"}

(a validation message starts with the offending field: `"region: ..."`), with codes INVALID_REQUEST (400, 413), UNAUTHORIZED (401), NOT_FOUND (404),
METHOD_NOT_ALLOWED (405, with `Allow`), NO_CAPACITY (409: type sold out in that region, or
the capacity market has no machine left), VOLUME_IN_USE (409: volume mounted by another
instance), VOLUME_MOUNTED (409: delete refused while mounted), KEY_IN_USE / KEY_IS_DEFAULT
(409: key delete refused), INVALID_STATE (409: e.g. restart while deleting), RATE_LIMITED
(429, with `Retry-After`), INTERNAL_ERROR (500), BAD_GATEWAY (502), SERVICE_UNAVAILABLE
(503), SERVER_ERROR (other 5xx).

Statuses: `creating`, `pending_provider`, `pending` (each a third of the boot time), then
`active` (or `error` on a failed boot, with `status_details`); a restart is `pending` until
booted again; `deleting` after a delete request (or a spot reclaim, whose `status_details`
says preempted), `deleted` once the delete delay passed, then gone (404) after as long again.
`GET /instances` lists everything not yet gone. Instances echo `ssh_key_id`, `volume_ids`,
`tags`, `envs`, `launch_configuration`, `auto_delete`, `alert` and `rental_type` as given
(absent optional objects are omitted). An `auto_delete` threshold is honoured: the platform
starts deleting the instance when the date passes or the spend reaches the threshold. A key
becomes the default only through `/sshkeys/{id}/setdefault`.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from reconciler.emulator.catalogue import (
    SHADEFORM_INSTANCE_TYPES,
    SHADEFORM_VOLUME_TYPES,
    ShadeformInstanceType,
    region_display_name,
    shadeform_instance_type,
    shadeform_volume_type,
)
from reconciler.emulator.faults import Operation
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
from reconciler.emulator.runtime import (
    ApiError,
    Call,
    EmulatedApi,
    Endpoint,
    Problem,
    invalid,
    not_found,
    parse_body,
)
from reconciler.emulator.validation import (
    PublicKey,
    ResourceName,
    StrictBody,
    parse_dollars,
    parse_rfc3339,
)
from reconciler.emulator.world import World

API: Api = "shadeform"
# `cloud` is an open string in the current document (its own example, hyperstack, is not in
# the old seed's list): a cloud nobody sells is refused by the catalogue lookup instead.
ShadeformCloud = Annotated[str, StringConstraints(min_length=1)]
MAX_VOLUME_GB = 65536
SSH_USER = "shadeform"

_CODES = {
    Problem.VALIDATION: "INVALID_REQUEST",
    Problem.AUTHENTICATION: "UNAUTHORIZED",
    Problem.NOT_FOUND: "NOT_FOUND",
    Problem.METHOD_NOT_ALLOWED: "METHOD_NOT_ALLOWED",
    Problem.CONFLICT: "CONFLICT",
    Problem.CAPACITY: "NO_CAPACITY",
    Problem.RATE_LIMITED: "RATE_LIMITED",
}
_SERVER_CODES = {500: "INTERNAL_ERROR", 502: "BAD_GATEWAY", 503: "SERVICE_UNAVAILABLE"}
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


class ShadeformDialect:
    api = API

    def api_key(self, request: Request) -> str | None:
        key = request.headers.get("x-api-key", "").strip()
        return key or None

    def error_response(self, error: ApiError) -> Response:
        code = error.code or _CODES.get(error.problem) or _SERVER_CODES.get(error.status, "SERVER_ERROR")
        headers = {"Retry-After": str(int(error.retry_after))} if error.retry_after is not None else None
        message = error.message
        if error.problem is Problem.VALIDATION and error.field and not message.startswith(error.field):
            message = f"{error.field}: {message}"
        return JSONResponse({"error": message, "code": code}, status_code=error.status, headers=headers)


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


def _configuration(itype: ShadeformInstanceType, os: str) -> dict[str, Any]:
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
        "configuration": _configuration(itype, itype.os_options[0]),
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


# ------------------------------------------------------------------ instance types


def list_instance_types(call: Call) -> Response:
    cloud = call.query("cloud")
    region = call.query("region")
    gpu_type = call.query("gpu_type")
    shade_type = call.query("shade_instance_type")
    num_gpus = _int_query(call, "num_gpus")
    available = _bool_query(call, "available")
    sort = call.query("sort")
    if sort not in (None, "price"):
        raise invalid("sort must be 'price'", field="sort")
    chosen = []
    view = MarketView.of(call)
    for itype in SHADEFORM_INSTANCE_TYPES:
        if cloud is not None and itype.cloud != cloud:
            continue
        if gpu_type is not None and itype.gpu_type != gpu_type:
            continue
        if shade_type is not None and itype.shade_instance_type != shade_type:
            continue
        if num_gpus is not None and itype.num_gpus != num_gpus:
            continue
        if region is not None and itype.region(region) is None:
            continue
        entry = instance_type_json(itype, region, view)
        if available is not None and any(a["available"] for a in entry["availability"]) is not available:
            continue
        chosen.append(entry)
    if sort == "price":
        chosen.sort(key=lambda t: (t["hourly_price"], t["cloud"], t["shade_instance_type"]))
    return JSONResponse({"instance_types": chosen})


def _int_query(call: Call, name: str) -> int | None:
    raw = call.query(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise invalid(f"{name} must be an integer", field=name) from None


def _bool_query(call: Call, name: str) -> bool | None:
    raw = call.query(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise invalid(f"{name} must be true or false", field=name)


# ------------------------------------------------------------------ instances


def _live_instance(call: Call) -> InstanceRecord:
    record = call.world.instance(API, call.tenant, call.path("id"))
    if record is None or not record.listed_at(call.world.now()):
        raise not_found("instance", call.path("id"))
    return record


def _auto_delete_at(threshold: Threshold | None, created_at: float, cents: int) -> float | None:
    if threshold is None:
        return None
    moments = []
    if threshold.date_threshold is not None:
        moments.append(parse_rfc3339(threshold.date_threshold).timestamp())
    if threshold.spend_threshold is not None and cents > 0:
        dollars = float(parse_dollars(threshold.spend_threshold))
        moments.append(created_at + dollars / (cents / 100) * 3600.0)
    return min(moments, default=None)


def _threshold_json(threshold: Threshold | None) -> dict[str, str] | None:
    return threshold.model_dump(exclude_none=True) if threshold is not None else None


def list_instances(call: Call) -> Response:
    now = call.world.now()
    instances = [
        instance_json(record, now)
        for record in call.world.instances(API, call.tenant)
        if record.listed_at(now)
    ]
    return JSONResponse({"instances": instances})


def create_instance(call: Call) -> Response:
    body = parse_body(CreateInstanceBody, call.body)
    world = call.world
    itype = shadeform_instance_type(body.cloud, body.shade_instance_type)
    if itype is None:
        raise invalid(
            f"shade_instance_type {body.shade_instance_type} is not offered by cloud {body.cloud} "
            "(see GET /instances/types)",
            field="shade_instance_type",
        )
    place = itype.region(body.region)
    if place is None:
        raise invalid(
            f"{body.shade_instance_type} is not offered in region {body.region} of cloud {body.cloud}",
            field="region",
        )
    os = body.os or itype.os_options[0]
    if os not in itype.os_options:
        raise invalid(f"os {os} is not one of {', '.join(itype.os_options)}", field="os")
    quote = MarketView.of(call).quote(itype, body.region, spot=body.rental_type == "spot")
    if quote is None:
        raise invalid(f"{body.cloud} sells no spot capacity in {body.region}", field="rental_type")
    available, cents = quote.available, quote.price_cents
    now = world.now()
    if body.ssh_key_id is not None:
        key = world.ssh_key(API, call.tenant, body.ssh_key_id)
        if key is None or not key.live_at(now):
            raise invalid(f"ssh key {body.ssh_key_id} not found", field="ssh_key_id")
    _check_volumes(world, call.tenant, body, now)
    if not available or call.faults.capacity:
        raise ApiError(
            409,
            Problem.CAPACITY,
            f"no capacity for {body.shade_instance_type} ({body.rental_type}) in {body.cloud} {body.region}; "
            "pick another region or cloud (see GET /instances/types?available=true)",
        )
    record = InstanceRecord(
        api=API,
        tenant=call.tenant,
        id=world.new_id(API, "instances"),
        name=body.name,
        created_at=now,
        cloud=body.cloud,
        region=body.region,
        instance_type=itype.shade_instance_type,
        cloud_instance_type=itype.cloud_instance_type,
        hourly_price_cents=cents,
        configuration=_configuration(itype, os),
        os=os,
        shade_cloud=body.shade_cloud,
        launch_configuration=(
            body.launch_configuration.model_dump(exclude_none=True) if body.launch_configuration else None
        ),
        ssh_key_id=body.ssh_key_id,
        volume_ids=list(body.volume_ids),
        tags=list(body.tags),
        envs=[env.model_dump() for env in body.envs],
        auto_delete=_threshold_json(body.auto_delete),
        alert=_threshold_json(body.alert),
        rental_type=body.rental_type,
        cloud_assigned_id=world.new_id(API, "instances"),
        ip=_next_ip(world),
        ready_at=None if call.faults.stuck_pending else now + world.boot_seconds,
        boot_outcome=BootOutcome.ERROR if call.faults.boot_failure else BootOutcome.ACTIVE,
        auto_delete_at=_auto_delete_at(body.auto_delete, now, cents),
        delete_seconds=world.delete_seconds,
    )
    world.add(record)
    return JSONResponse({"id": record.id, "cloud_assigned_id": record.cloud_assigned_id})


def _next_ip(world: World) -> str:
    """An address from the benchmarking range 198.18.0.0/15, distinct per instance in this world."""
    serial = len(world) + 1
    return f"198.18.{(serial >> 8) % 256}.{serial % 256}"


def _check_volumes(world: World, tenant: str, body: CreateInstanceBody, now: float) -> None:
    if len(body.volume_ids) > 1:
        raise invalid("an instance mounts at most one volume", field="volume_ids")
    mounts = {v: m for v in body.volume_ids if (m := world.mounted_by(API, tenant, v, now))}
    for volume_id in body.volume_ids:
        volume = world.volume(API, tenant, volume_id)
        if volume is None or not volume.live_at(now):
            raise invalid(f"volume {volume_id} not found", field="volume_ids")
        if (volume.cloud, volume.region) != (body.cloud, body.region):
            raise invalid(
                f"volume {volume_id} is in {volume.cloud} {volume.region}; "
                f"the instance is in {body.cloud} {body.region}",
                field="volume_ids",
            )
        if volume_id in mounts and not volume.supports_multi_mount:
            raise ApiError(
                409,
                Problem.CONFLICT,
                f"volume {volume_id} is mounted by instance {mounts[volume_id]}",
                code="VOLUME_IN_USE",
            )


def instance_info(call: Call) -> Response:
    return JSONResponse(instance_json(_live_instance(call), call.world.now()))


def update_instance(call: Call) -> Response:
    record = _live_instance(call)
    body = parse_body(UpdateInstanceBody, call.body)
    world = call.world
    if record.phase(world.now()) in (Phase.DELETING, Phase.DELETED):
        raise ApiError(409, Problem.CONFLICT, f"instance {record.id} is being deleted", code="INVALID_STATE")
    given = body.model_fields_set
    if "name" in given:
        if body.name is None:
            raise invalid("name must not be null", field="name")
        record.name = body.name
    if "tags" in given:
        if body.tags is None:
            raise invalid("tags must not be null", field="tags")
        record.tags = list(body.tags)
    if "auto_delete" in given:
        record.auto_delete = _threshold_json(body.auto_delete)
        record.auto_delete_at = _auto_delete_at(
            body.auto_delete, record.created_at, record.hourly_price_cents
        )
    if "alert" in given:
        record.alert = _threshold_json(body.alert)
    world.changed(record)
    return Response(status_code=200)


def restart_instance(call: Call) -> Response:
    record = _live_instance(call)
    world = call.world
    now = world.now()
    phase = record.phase(now)
    if phase not in (Phase.ACTIVE, Phase.ERROR):
        raise ApiError(
            409,
            Problem.CONFLICT,
            f"instance {record.id} is {instance_status(record, now)}",
            code="INVALID_STATE",
        )
    record.restarted_at = now
    record.ready_at = now + world.boot_seconds
    record.boot_outcome = BootOutcome.ACTIVE
    world.changed(record)
    return Response(status_code=200)


def delete_instance(call: Call) -> Response:
    record = _live_instance(call)
    world = call.world
    if record.phase(world.now()) not in (Phase.DELETING, Phase.DELETED):
        record.deleted_at = world.now()
        record.delete_seconds = (
            call.faults.slow_delete if call.faults.slow_delete is not None else world.delete_seconds
        )
        world.changed(record)
    return Response(status_code=200)


# ------------------------------------------------------------------ volumes


def list_volume_types(call: Call) -> Response:
    return JSONResponse(
        {
            "volume_types": [
                {
                    "cloud": v.cloud,
                    "region": v.region,
                    "supports_multi_mount": v.supports_multi_mount,
                    "fixed_size": v.fixed_size,
                    "price_per_gb_per_hour": f"{v.price_per_gb_per_hour:.5f}",
                }
                for v in SHADEFORM_VOLUME_TYPES
            ]
        }
    )


def _live_volume(call: Call) -> VolumeRecord:
    record = call.world.volume(API, call.tenant, call.path("id"))
    if record is None or not record.live_at(call.world.now()):
        raise not_found("volume", call.path("id"))
    return record


def list_volumes(call: Call) -> Response:
    now = call.world.now()
    mounts = call.world.mounts(API, call.tenant, now)
    volumes = [
        volume_json(v, now, mounts.get(v.id)) for v in call.world.volumes(API, call.tenant) if v.live_at(now)
    ]
    return JSONResponse({"volumes": volumes})


def create_volume(call: Call) -> Response:
    body = parse_body(CreateVolumeBody, call.body)
    world = call.world
    vtype = shadeform_volume_type(body.cloud, body.region)
    if vtype is None:
        raise invalid(
            f"cloud {body.cloud} offers no volumes in region {body.region} (see GET /volumes/types)", "region"
        )
    if call.faults.capacity:
        raise ApiError(409, Problem.CAPACITY, f"no volume capacity in {body.cloud} {body.region}")
    record = VolumeRecord(
        api=API,
        tenant=call.tenant,
        id=world.new_id(API, "volumes"),
        name=body.name,
        created_at=world.now(),
        cloud=body.cloud,
        region=body.region,
        size_gb=body.size_in_gb,
        fixed_size=vtype.fixed_size,
        supports_multi_mount=vtype.supports_multi_mount,
        price_per_gb_per_hour=vtype.price_per_gb_per_hour,
        cloud_assigned_id=world.new_id(API, "volumes"),
    )
    world.add(record)
    return JSONResponse({"id": record.id})


def volume_info(call: Call) -> Response:
    record = _live_volume(call)
    now = call.world.now()
    return JSONResponse(volume_json(record, now, call.world.mounted_by(API, call.tenant, record.id, now)))


def delete_volume(call: Call) -> Response:
    record = _live_volume(call)
    world = call.world
    now = world.now()
    mounted_by = world.mounted_by(API, call.tenant, record.id, now)
    if mounted_by is not None:
        raise ApiError(
            409,
            Problem.CONFLICT,
            f"volume {record.id} is mounted by instance {mounted_by}; delete the instance first",
            code="VOLUME_MOUNTED",
        )
    record.deleted_at = now
    world.changed(record)
    return Response(status_code=200)


# ------------------------------------------------------------------ ssh keys


def _live_key(call: Call) -> SshKeyRecord:
    record = call.world.ssh_key(API, call.tenant, call.path("id"))
    if record is None or not record.live_at(call.world.now()):
        raise not_found("ssh key", call.path("id"))
    return record


def list_ssh_keys(call: Call) -> Response:
    now = call.world.now()
    keys = [ssh_key_json(k) for k in call.world.ssh_keys(API, call.tenant) if k.live_at(now)]
    return JSONResponse({"ssh_keys": keys})


def add_ssh_key(call: Call) -> Response:
    body = parse_body(AddSshKeyBody, call.body)
    world = call.world
    record = SshKeyRecord(
        api=API,
        tenant=call.tenant,
        id=world.new_id(API, "ssh_keys"),
        name=body.name,
        created_at=world.now(),
        public_key=body.public_key,
    )
    world.add(record)
    return JSONResponse({"id": record.id})


def ssh_key_info(call: Call) -> Response:
    return JSONResponse(ssh_key_json(_live_key(call)))


def delete_ssh_key(call: Call) -> Response:
    record = _live_key(call)
    world = call.world
    now = world.now()
    if record.is_default:
        raise ApiError(
            409,
            Problem.CONFLICT,
            f"ssh key {record.id} is the account's default key; make another key the default first",
            code="KEY_IS_DEFAULT",
        )
    user = world.key_user(API, call.tenant, record.id, now)
    if user is not None:
        raise ApiError(
            409, Problem.CONFLICT, f"ssh key {record.id} is in use by instance {user}", code="KEY_IN_USE"
        )
    record.deleted_at = now
    world.changed(record)
    return Response(status_code=200)


def set_default_ssh_key(call: Call) -> Response:
    record = _live_key(call)
    world = call.world
    now = world.now()
    for key in world.ssh_keys(API, call.tenant):
        should_be_default = key is record
        if key.live_at(now) and key.is_default != should_be_default:
            key.is_default = should_be_default
            world.changed(key)
    return Response(status_code=200)


def _op(kind: str, verb: str) -> Operation:
    return Operation(API, kind, verb)


ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/instances/types", _op("instance_types", "list"), list_instance_types),
    Endpoint("GET", "/instances", _op("instances", "list"), list_instances),
    Endpoint("POST", "/instances/create", _op("instances", "create"), create_instance),
    Endpoint("GET", "/instances/{id}/info", _op("instances", "get"), instance_info),
    Endpoint("POST", "/instances/{id}/update", _op("instances", "update"), update_instance),
    Endpoint("POST", "/instances/{id}/restart", _op("instances", "restart"), restart_instance),
    Endpoint("POST", "/instances/{id}/delete", _op("instances", "delete"), delete_instance),
    Endpoint("GET", "/volumes/types", _op("volume_types", "list"), list_volume_types),
    Endpoint("GET", "/volumes", _op("volumes", "list"), list_volumes),
    Endpoint("POST", "/volumes/create", _op("volumes", "create"), create_volume),
    Endpoint("GET", "/volumes/{id}/info", _op("volumes", "get"), volume_info),
    Endpoint("POST", "/volumes/{id}/delete", _op("volumes", "delete"), delete_volume),
    Endpoint("GET", "/sshkeys", _op("ssh_keys", "list"), list_ssh_keys),
    Endpoint("POST", "/sshkeys/add", _op("ssh_keys", "create"), add_ssh_key),
    Endpoint("GET", "/sshkeys/{id}/info", _op("ssh_keys", "get"), ssh_key_info),
    Endpoint("POST", "/sshkeys/{id}/delete", _op("ssh_keys", "delete"), delete_ssh_key),
    Endpoint("POST", "/sshkeys/{id}/setdefault", _op("ssh_keys", "setdefault"), set_default_ssh_key),
]

EMULATED_API = EmulatedApi(ShadeformDialect(), ENDPOINTS)
