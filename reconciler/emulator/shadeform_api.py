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

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from reconciler.emulator.catalogue import (
    SHADEFORM_INSTANCE_TYPES,
    SHADEFORM_VOLUME_TYPES,
    shadeform_instance_type,
    shadeform_volume_type,
)
from reconciler.emulator.faults import Operation
from reconciler.emulator.mounts import MountFault, delete_unmounted, mount_problem
from reconciler.emulator.records import BootOutcome, InstanceRecord, Phase, SshKeyRecord, VolumeRecord
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
from reconciler.emulator.shadeform_wire import (
    API,
    AddSshKeyBody,
    CreateInstanceBody,
    CreateVolumeBody,
    MarketView,
    Threshold,
    UpdateInstanceBody,
    configuration_json,
    instance_json,
    instance_status,
    instance_type_json,
    ssh_key_json,
    volume_json,
)
from reconciler.emulator.validation import parse_dollars, parse_rfc3339
from reconciler.emulator.world import World

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
        configuration=configuration_json(itype, os),
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
    problem = mount_problem(world, API, tenant, body.volume_ids, (body.cloud, body.region), now)
    if problem is None:
        return
    volume_id, volume = problem.volume_id, problem.volume
    if problem.fault is MountFault.MISSING or volume is None:
        raise invalid(f"volume {volume_id} not found", field="volume_ids")
    if problem.fault is MountFault.ELSEWHERE:
        raise invalid(
            f"volume {volume_id} is in {volume.cloud} {volume.region}; "
            f"the instance is in {body.cloud} {body.region}",
            field="volume_ids",
        )
    raise ApiError(
        409,
        Problem.CONFLICT,
        f"volume {volume_id} is mounted by instance {problem.mounted_by}",
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
    delete_unmounted(call.world, call.tenant, record, call.world.now(), code="VOLUME_MOUNTED")
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
