"""The Forward Compute spot API (v1), as the seed excerpt and Forward's own SDK define it.

The SDK (fwd-sdk, generated from Forward's OpenAPI document) is the reference for what the
excerpt omits, and every answer here parses with its strict models.

Paths are relative to the API root (`https://api.forwardcompute.ai/v1`); every path is
served with and without a trailing slash. Auth: `Authorization: Bearer <key>`; without it
401 `authentication_error`. Offerings are public (the seed lists no 401 for them).

Errors: `{"error": {"type": ..., "message": ..., "field": ...}}` with the seed's types:
validation_error (400, and 409 when a delete is refused because a volume is mounted or a
key is in use), authentication_error (401), not_found (404), provider_error (400 when an
offering has no capacity, from the catalogue or the capacity market: the upstream provider
refused; 502), server_error (500, 503,
and 429 with `Retry-After` when rate limited: the seed has no type of its own for it).

Lists: `{"object": "list", "data": [...], "url": "/v1/spot/..."}`.

Single offerings (`GET /spot/compute/offerings/{id}`, `/spot/volumes/offerings/{id}`):
the seed lists a required `data` object, the offering's fields, and a required
`object: "compute_offering"` (or `volume_offering`) at the end, the same flattened
layout its list responses use for the envelope. Read that way the answer is an envelope
`{"object": "compute_offering", "data": {...offering...}}`; read literally the fields
sit beside `object`. The emulator answers both readings at once: the offering's fields
and `object` at top level, and the same offering under `data`, so a client written
either way works.

Write endpoints, as the SDK documents them:
- `POST /spot/volumes/` takes `{offering_id, size_gb, name?}` (a `spot_voff_...` offering;
  without a name one is made up); answers 201 with the volume.
- `POST /spot/ssh-keys/` takes `{name, public_key, provider?}` (default `shadeform`).
- `DELETE /spot/instances/{id}` answers 200 `{"deleted": true, "id", "object": "spot.instance"}`;
  the instance is `deleting`, after the delete delay `deleted`: gone from the list, still
  readable by id. `DELETE /spot/volumes/{id}` and `/spot/ssh-keys/{id}` answer 200
  `{"id", "object", "deleted": true}` and the resource is gone at once.
- `POST /spot/instances/{id}/restart` (active or error instances) answers 200 with the
  instance, `restarting` until booted again.
- Instance statuses: `creating` -> `active` (or `error`, with `status_details`),
  `restarting` -> `active`, `deleting` -> `deleted`; a spot reclaim is `deleting` with
  `status_details` saying preempted.

Caching: lists (and gets without `?refresh=true`) show the world as it was
`list_lag_seconds` ago (plus any `lag` fault), so a just-created instance may be missing
and a just-deleted one may still show. Absent optional fields (`ip` before boot,
`ssh_key_id`, `mounted_by`) are omitted rather than null.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from reconciler.emulator.catalogue import (
    FORWARD_COMPUTE_OFFERINGS,
    FORWARD_MODELS,
    FORWARD_PROVIDERS,
    FORWARD_VOLUME_OFFERINGS,
    ForwardComputeOffering,
    forward_compute_offering,
    forward_model,
    forward_volume_offering,
)
from reconciler.emulator.faults import Operation
from reconciler.emulator.forward_wire import (
    API,
    CreateInstanceBody,
    CreateSshKeyBody,
    CreateVolumeBody,
    compute_offering_json,
    instance_json,
    list_answer,
    machines_used,
    model_json,
    offering_quote,
    single_answer,
    ssh_key_json,
    view_time,
    volume_json,
    volume_offering_json,
    wants_refresh,
)
from reconciler.emulator.mounts import MountFault, delete_unmounted, mount_problem
from reconciler.emulator.records import (
    BootOutcome,
    InstanceRecord,
    Phase,
    SshKeyRecord,
    VolumeRecord,
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

ID_PREFIXES = {"instances": "spot_inst_", "volumes": "spot_vol_", "ssh_keys": "spot_sshk_"}

_TYPES = {
    Problem.VALIDATION: "validation_error",
    Problem.AUTHENTICATION: "authentication_error",
    Problem.NOT_FOUND: "not_found",
    Problem.METHOD_NOT_ALLOWED: "validation_error",
    Problem.CONFLICT: "validation_error",
    Problem.CAPACITY: "provider_error",
    Problem.RATE_LIMITED: "server_error",
}
_SERVER_TYPES = {502: "provider_error"}


class ForwardDialect:
    api = API

    def api_key(self, request: Request) -> str | None:
        scheme, _, key = request.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        return key.strip()

    def error_response(self, error: ApiError) -> Response:
        error_type = _TYPES.get(error.problem) or _SERVER_TYPES.get(error.status, "server_error")
        headers = {"Retry-After": str(int(error.retry_after))} if error.retry_after is not None else None
        return JSONResponse(
            {"error": {"type": error_type, "message": error.message, "field": error.field}},
            status_code=error.status,
            headers=headers,
        )


# ------------------------------------------------------------------ offerings and models


def list_compute_offerings(call: Call) -> Response:
    used = machines_used(call)
    data = [compute_offering_json(o, offering_quote(call, o, used)) for o in FORWARD_COMPUTE_OFFERINGS]
    return list_answer(data, "/v1/spot/compute/offerings")


def get_compute_offering(call: Call) -> Response:
    offering = forward_compute_offering(call.path("id"))
    if offering is None:
        raise not_found("compute offering", call.path("id"))
    data = compute_offering_json(offering, offering_quote(call, offering)) | {"object": "compute_offering"}
    return single_answer(data | {"data": data})


def list_volume_offerings(call: Call) -> Response:
    return list_answer([volume_offering_json(o) for o in FORWARD_VOLUME_OFFERINGS], "/v1/spot/volumes/offerings")


def get_volume_offering(call: Call) -> Response:
    offering = forward_volume_offering(call.path("id"))
    if offering is None:
        raise not_found("volume offering", call.path("id"))
    data = volume_offering_json(offering) | {"object": "volume_offering"}
    return single_answer(data | {"data": data})


def list_models(call: Call) -> Response:
    models = [model_json(m) for m in FORWARD_MODELS]
    # The excerpt documents {object, data}; the SDK reads {models, total}: both are answered.
    return JSONResponse({"object": "list", "data": models, "models": models, "total": len(models)})


def get_model(call: Call) -> Response:
    model = forward_model(call.path("model").rstrip("/"))
    if model is None:
        raise ApiError(404, Problem.NOT_FOUND, "Model not found", field="model")
    return single_answer(model_json(model))


# ------------------------------------------------------------------ instances


def list_instances(call: Call) -> Response:
    at = view_time(call, cached=True)
    data = [
        instance_json(r, at)
        for r in call.world.instances(API, call.tenant)
        if r.created_at <= at and r.phase(at) is not Phase.DELETED
    ]
    return list_answer(data, "/v1/spot/instances")


def get_instance(call: Call) -> Response:
    at = view_time(call, cached=not wants_refresh(call))
    record = call.world.instance(API, call.tenant, call.path("id"))
    if record is None or record.created_at > at:
        raise not_found("instance", call.path("id"))
    return single_answer(instance_json(record, at))


def create_instance(call: Call) -> Response:
    body = parse_body(CreateInstanceBody, call.body)
    world = call.world
    offering = forward_compute_offering(body.offering_id)
    if offering is None:
        raise invalid(
            f"offering {body.offering_id} does not exist (see GET /v1/spot/compute/offerings)",
            field="offering_id",
        )
    now = world.now()
    if body.ssh_key_id is not None:
        key = world.ssh_key(API, call.tenant, body.ssh_key_id)
        if key is None or not key.live_at(now):
            raise invalid(f"ssh key {body.ssh_key_id} not found", field="ssh_key_id")
    _check_mounts(call, body.volume_ids, offering, now)
    quote = offering_quote(call, offering)
    if not quote.available or call.faults.capacity:
        raise ApiError(
            400,
            Problem.CAPACITY,
            f"no capacity for offering {offering.id} ({offering.instance_type} at {offering.provider} "
            f"{offering.region}); choose another offering",
            field="offering_id",
        )
    record = InstanceRecord(
        api=API,
        tenant=call.tenant,
        id=world.new_id(API, "instances", ID_PREFIXES),
        name=body.name,
        created_at=now,
        cloud=offering.provider,
        region=offering.region,
        instance_type=offering.instance_type,
        cloud_instance_type=offering.instance_type,
        offering_id=offering.id,
        hourly_price_cents=quote.price_cents,
        configuration=compute_offering_json(offering)["configuration"],
        ssh_key_id=body.ssh_key_id,
        volume_ids=list(body.volume_ids),
        envs=[env.model_dump() for env in body.envs],
        cloud_assigned_id=world.new_id(API, "instances", ID_PREFIXES),
        ip=f"198.19.{(len(world) >> 8) % 256}.{len(world) % 256}",
        ready_at=None if call.faults.stuck_pending else now + world.boot_seconds,
        boot_outcome=BootOutcome.ERROR if call.faults.boot_failure else BootOutcome.ACTIVE,
        delete_seconds=world.delete_seconds,
    )
    world.add(record)
    return single_answer(instance_json(record, now), status_code=201)


def _check_mounts(call: Call, volume_ids: list[str], offering: ForwardComputeOffering, now: float) -> None:
    place = (offering.provider, offering.region)
    problem = mount_problem(call.world, API, call.tenant, volume_ids, place, now)
    if problem is None:
        return
    volume_id, volume = problem.volume_id, problem.volume
    if problem.fault is MountFault.MISSING or volume is None:
        raise invalid(f"volume {volume_id} not found", field="volume_ids")
    if problem.fault is MountFault.ELSEWHERE:
        raise invalid(
            f"volume {volume_id} is at {volume.cloud} {volume.region}; "
            f"the offering is at {offering.provider} {offering.region}",
            field="volume_ids",
        )
    raise invalid(f"volume {volume_id} is mounted by instance {problem.mounted_by}", field="volume_ids")


def delete_instance(call: Call) -> Response:
    world = call.world
    now = world.now()
    record = world.instance(API, call.tenant, call.path("id"))
    if record is None or record.phase(now) is Phase.DELETED:
        raise not_found("instance", call.path("id"))
    if record.phase(now) is not Phase.DELETING:
        record.deleted_at = now
        record.delete_seconds = (
            call.faults.slow_delete if call.faults.slow_delete is not None else world.delete_seconds
        )
        world.changed(record)
    return single_answer({"deleted": True, "id": record.id, "object": "spot.instance"})


def restart_instance(call: Call) -> Response:
    world = call.world
    now = world.now()
    record = world.instance(API, call.tenant, call.path("id"))
    if record is None or record.phase(now) is Phase.DELETED:
        raise not_found("instance", call.path("id"))
    phase = record.phase(now)
    if phase not in (Phase.ACTIVE, Phase.ERROR):
        raise ApiError(
            409,
            Problem.CONFLICT,
            f"instance {record.id} is {instance_json(record, now)['status']}; only active or error "
            "instances restart",
            field="id",
        )
    record.restarted_at = now
    record.ready_at = now + world.boot_seconds
    record.boot_outcome = BootOutcome.ACTIVE
    world.changed(record)
    return single_answer(instance_json(record, now))


# ------------------------------------------------------------------ volumes


def list_volumes(call: Call) -> Response:
    at = view_time(call, cached=True)
    mounts = call.world.mounts(API, call.tenant, at)
    data = [volume_json(v, mounts.get(v.id)) for v in call.world.volumes(API, call.tenant) if v.live_at(at)]
    return list_answer(data, "/v1/spot/volumes")


def get_volume(call: Call) -> Response:
    at = view_time(call, cached=not wants_refresh(call))
    record = call.world.volume(API, call.tenant, call.path("id"))
    if record is None or not record.live_at(at):
        raise not_found("volume", call.path("id"))
    return single_answer(volume_json(record, call.world.mounted_by(API, call.tenant, record.id, at)))


def create_volume(call: Call) -> Response:
    body = parse_body(CreateVolumeBody, call.body)
    world = call.world
    offering = forward_volume_offering(body.offering_id)
    if offering is None:
        raise invalid(
            f"volume offering {body.offering_id} does not exist (see GET /v1/spot/volumes/offerings)",
            field="offering_id",
        )
    if call.faults.capacity:
        raise ApiError(400, Problem.CAPACITY, f"no volume capacity at {offering.provider} {offering.region}")
    now = world.now()
    volume_id = world.new_id(API, "volumes", ID_PREFIXES)
    record = VolumeRecord(
        api=API,
        tenant=call.tenant,
        id=volume_id,
        name=body.name if body.name is not None else f"volume-{volume_id.removeprefix('spot_vol_')}",
        created_at=now,
        cloud=offering.provider,
        region=offering.region,
        size_gb=body.size_gb,
        fixed_size=offering.fixed_size,
        supports_multi_mount=offering.supports_multi_mount,
        price_per_gb_per_hour=float(offering.price_per_gb_per_hour),
        cloud_assigned_id=world.new_id(API, "volumes", ID_PREFIXES),
        offering_id=offering.id,
    )
    world.add(record)
    return single_answer(volume_json(record, None), status_code=201)


def delete_volume(call: Call) -> Response:
    world = call.world
    now = world.now()
    record = world.volume(API, call.tenant, call.path("id"))
    if record is None or not record.live_at(now):
        raise not_found("volume", call.path("id"))
    delete_unmounted(world, call.tenant, record, now, field="id")
    return single_answer({"id": record.id, "object": "spot.volume", "deleted": True})


# ------------------------------------------------------------------ ssh keys


def list_ssh_keys(call: Call) -> Response:
    at = view_time(call, cached=True)
    data = [ssh_key_json(k) for k in call.world.ssh_keys(API, call.tenant) if k.live_at(at)]
    return list_answer(data, "/v1/spot/ssh-keys")


def create_ssh_key(call: Call) -> Response:
    body = parse_body(CreateSshKeyBody, call.body)
    if body.provider not in FORWARD_PROVIDERS:
        raise invalid(
            f"unknown provider {body.provider} (one of {', '.join(FORWARD_PROVIDERS)})", field="provider"
        )
    world = call.world
    record = SshKeyRecord(
        api=API,
        tenant=call.tenant,
        id=world.new_id(API, "ssh_keys", ID_PREFIXES),
        name=body.name,
        created_at=world.now(),
        public_key=body.public_key,
        provider=body.provider,
        provider_key_id=world.new_id("shadeform", "ssh_keys"),
    )
    world.add(record)
    return single_answer(ssh_key_json(record), status_code=201)


def delete_ssh_key(call: Call) -> Response:
    world = call.world
    now = world.now()
    record = world.ssh_key(API, call.tenant, call.path("id"))
    if record is None or not record.live_at(now):
        raise not_found("ssh key", call.path("id"))
    user = world.key_user(API, call.tenant, record.id, now)
    if user is not None:
        raise ApiError(409, Problem.CONFLICT, f"ssh key {record.id} is in use by instance {user}", field="id")
    record.deleted_at = now
    world.changed(record)
    return single_answer({"id": record.id, "object": "spot.ssh_key", "deleted": True})


def _op(kind: str, verb: str) -> Operation:
    return Operation(API, kind, verb)


ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "GET", "/spot/compute/offerings", _op("compute_offerings", "list"), list_compute_offerings, False
    ),
    Endpoint(
        "GET", "/spot/compute/offerings/{id}", _op("compute_offerings", "get"), get_compute_offering, False
    ),
    Endpoint("GET", "/spot/volumes/offerings", _op("volume_offerings", "list"), list_volume_offerings, False),
    Endpoint(
        "GET", "/spot/volumes/offerings/{id}", _op("volume_offerings", "get"), get_volume_offering, False
    ),
    Endpoint("GET", "/spot/instances", _op("instances", "list"), list_instances),
    Endpoint("POST", "/spot/instances", _op("instances", "create"), create_instance),
    Endpoint("GET", "/spot/instances/{id}", _op("instances", "get"), get_instance),
    Endpoint("DELETE", "/spot/instances/{id}", _op("instances", "delete"), delete_instance),
    Endpoint("POST", "/spot/instances/{id}/restart", _op("instances", "restart"), restart_instance),
    Endpoint("GET", "/spot/volumes", _op("volumes", "list"), list_volumes),
    Endpoint("POST", "/spot/volumes", _op("volumes", "create"), create_volume),
    Endpoint("GET", "/spot/volumes/{id}", _op("volumes", "get"), get_volume),
    Endpoint("DELETE", "/spot/volumes/{id}", _op("volumes", "delete"), delete_volume),
    Endpoint("GET", "/spot/ssh-keys", _op("ssh_keys", "list"), list_ssh_keys),
    Endpoint("POST", "/spot/ssh-keys", _op("ssh_keys", "create"), create_ssh_key),
    Endpoint("DELETE", "/spot/ssh-keys/{id}", _op("ssh_keys", "delete"), delete_ssh_key),
    Endpoint("GET", "/models", _op("models", "list"), list_models),
    Endpoint("GET", "/models/{model:path}", _op("models", "get"), get_model),
]

# Forward serves its lists from a cache that lags writes.
EMULATED_API = EmulatedApi(ForwardDialect(), ENDPOINTS, cached_lists=True)
