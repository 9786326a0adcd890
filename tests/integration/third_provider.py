"""A third provider defined entirely here: adapter, configuration blocks, emulated API and spec.

Acme sells GPU machines by id (`machine`), volumes per region and SSH keys; it keeps no
tags, so ownership markers are name suffixes. Its emulated API is a few endpoints over the
emulator's shared world, mounted the way the built-in APIs are. `ACME` is its spec; a test
adds it with `provider_registered(ACME)` and nothing under `reconciler/` names it.
"""

from __future__ import annotations

import builtins
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from reconciler.config.schema import InstanceBlock, NonEmpty, SshKeyBlock, VolumeBlock
from reconciler.emulator.faults import Operation
from reconciler.emulator.records import InstanceRecord, SshKeyRecord, VolumeRecord
from reconciler.emulator.runtime import (
    ApiError,
    Call,
    EmulatedApi,
    Endpoint,
    Problem,
    invalid,
    not_found,
)
from reconciler.limits import ProviderLimits
from reconciler.model import CreatedResource, Kind, LiveResource, Offering, VolumeOffering
from reconciler.provider_spec import ProviderSpec
from reconciler.providers.adapter import STATUS_MAP, ApiAccess, HttpProvider, status_in
from reconciler.providers.base import join_name_marker, split_name_marker
from reconciler.providers.http import ApiErrorBody, parse_decimal

NAME = "acme"
REGION = "eu-1"
MACHINES = {  # id -> (gpu type, gpus, region, dollars per hour)
    "a10.1x": ("A10", 1, REGION, "0.60"),
    "a10.2x": ("A10", 2, REGION, "1.10"),
    "h100.8x": ("H100", 8, "us-1", "22.00"),
}
VOLUME_PRICE = "0.0002"  # dollars per GB-hour, in every region machines are sold
_COLLECTIONS = {Kind.SSH_KEY: "/keys", Kind.VOLUME: "/volumes", Kind.INSTANCE: "/machines"}


# ---------------------------------------------------------------- configuration blocks


class AcmeVolumeBlock(VolumeBlock):
    provider: Literal["acme"]


class AcmeInstanceBlock(InstanceBlock):
    provider: Literal["acme"]
    machine: NonEmpty | None = None  # the pin: a machine id
    image: NonEmpty | None = None  # Acme's own attribute


# ---------------------------------------------------------------- adapter


def _is_capacity_error(status: int, body: ApiErrorBody) -> bool:
    return status == 409 and "capacity" in body.message.lower()


class AcmeProvider(HttpProvider):
    name = NAME
    ACCESS = ApiAccess("https://api.acme.invalid/v1", "X-Acme-Key", "", "ACME_API_KEY", _is_capacity_error)
    LIMITS = ProviderLimits(marker_in_name=frozenset(Kind), max_volumes_per_instance=None, placement=("region",))

    async def list(self, kind: Kind) -> builtins.list[LiveResource]:
        data = await self.api.request("GET", _COLLECTIONS[kind])
        return [self._to_live(kind, item) for item in (data or {}).get("items") or []]

    async def get(self, kind: Kind, id: str) -> LiveResource | None:
        return next((item for item in await self.list(kind) if item.id == id), None)

    async def create(self, kind: Kind, spec: dict[str, Any], marker: str) -> CreatedResource:
        body: dict[str, Any] = {"name": join_name_marker(spec["name"], marker)}
        if kind is Kind.SSH_KEY:
            body["public_key"] = spec["public_key"]
        elif kind is Kind.VOLUME:
            body.update(region=spec["region"], size_gb=int(spec["size_gb"]))
        else:
            body.update(machine=spec["machine"], image=spec.get("image"))
            body.update(ssh_key_id=spec.get("ssh_key_id"), volume_ids=list(spec.get("volume_ids") or []))
        return self._created(await self.api.request("POST", _COLLECTIONS[kind], json=body, create=True))

    async def delete(self, kind: Kind, id: str) -> None:
        await self._delete("DELETE", _COLLECTIONS[kind] + "/{id}", kind, id)

    async def update(self, kind: Kind, id: str, changes: dict[str, Any], marker: str) -> None:
        raise ValueError("acme updates nothing in place")

    async def offerings(self) -> builtins.list[Offering]:
        data = await self.api.request("GET", "/machine-types")
        return [
            Offering(
                provider=self.name,
                id=item["id"],
                gpu_type=item["gpu"],
                num_gpus=item["gpus"],
                hourly_price=float(item["price"]),
                region=item["region"],
                cloud=NAME,
                available=True,
                pin={"machine": item["id"]},
            )
            for item in data["items"]
        ]

    async def volume_offerings(self) -> builtins.list[VolumeOffering]:
        data = await self.api.request("GET", "/volume-prices")
        found = (self._volume_offering(item, item["region"], NAME) for item in data["items"])
        return [offering for offering in found if offering is not None]

    def _to_live(self, kind: Kind, item: dict[str, Any]) -> LiveResource:
        name, marker = split_name_marker(str(item["name"]))
        attributes: dict[str, Any] = {"name": name}
        if kind is Kind.SSH_KEY:
            attributes["public_key"] = item["public_key"]
        elif kind is Kind.VOLUME:
            attributes.update(region=item["region"], size_gb=item["size_gb"])
        else:
            attributes.update(
                machine=item["machine"],
                region=item["region"],
                ssh_key_id=item.get("ssh_key_id"),
                volume_ids=item.get("volume_ids") or [],
            )
            if item.get("image"):
                attributes["image"] = item["image"]
        return LiveResource(
            provider=self.name,
            kind=kind,
            id=str(item["id"]),
            name=name,
            status=status_in(STATUS_MAP, item.get("status", "active")),
            attributes=attributes,
            marker=marker,
            hourly_price=parse_decimal(item.get("price")),
            computed={"id": item["id"]},
        )


# ---------------------------------------------------------------- emulated API


class AcmeDialect:
    api = NAME

    def api_key(self, request: Request) -> str | None:
        return request.headers.get("x-acme-key", "").strip() or None

    def error_response(self, error: ApiError) -> Response:
        headers = {"Retry-After": str(int(error.retry_after))} if error.retry_after is not None else None
        return JSONResponse({"message": error.message, "problem": error.problem.value}, error.status, headers)


def _machine_json(record: InstanceRecord, at: float) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "machine": record.instance_type,
        "region": record.region,
        "image": record.os,
        "ssh_key_id": record.ssh_key_id,
        "volume_ids": record.volume_ids,
        "status": record.phase(at).value,
        "price": f"{record.hourly_price_cents / 100:.2f}",
    }


def list_machine_types(call: Call) -> Response:
    items = [
        {"id": id, "gpu": gpu, "gpus": gpus, "region": region, "price": price}
        for id, (gpu, gpus, region, price) in MACHINES.items()
    ]
    return JSONResponse({"items": items})


def list_volume_prices(call: Call) -> Response:
    regions = sorted({region for _, _, region, _ in MACHINES.values()})
    return JSONResponse({"items": [{"region": r, "price_per_gb_per_hour": VOLUME_PRICE} for r in regions]})


def _text(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise invalid(f"{field} is required", field=field)
    return value


def list_keys(call: Call) -> Response:
    now = call.world.now()
    keys = [k for k in call.world.ssh_keys(NAME, call.tenant) if k.live_at(now)]
    return JSONResponse({"items": [{"id": k.id, "name": k.name, "public_key": k.public_key} for k in keys]})


def create_key(call: Call) -> Response:
    record = SshKeyRecord(
        api=NAME,
        tenant=call.tenant,
        id=call.world.new_id(NAME, "ssh_keys"),
        name=_text(call.body, "name"),
        created_at=call.world.now(),
        public_key=_text(call.body, "public_key"),
    )
    call.world.add(record)
    return JSONResponse({"id": record.id}, 201)


def list_volumes(call: Call) -> Response:
    now = call.world.now()
    volumes = [v for v in call.world.volumes(NAME, call.tenant) if v.live_at(now)]
    items = [{"id": v.id, "name": v.name, "region": v.region, "size_gb": v.size_gb} for v in volumes]
    return JSONResponse({"items": items})


def create_volume(call: Call) -> Response:
    size = call.body.get("size_gb")
    if not isinstance(size, int) or size < 1:
        raise invalid("size_gb must be a whole number of GB", field="size_gb")
    record = VolumeRecord(
        api=NAME,
        tenant=call.tenant,
        id=call.world.new_id(NAME, "volumes"),
        name=_text(call.body, "name"),
        created_at=call.world.now(),
        cloud=NAME,
        region=_text(call.body, "region"),
        size_gb=size,
        fixed_size=False,
        supports_multi_mount=False,
        price_per_gb_per_hour=float(VOLUME_PRICE),
        cloud_assigned_id=call.world.new_id(NAME, "volumes"),
    )
    call.world.add(record)
    return JSONResponse({"id": record.id}, 201)


def list_machines(call: Call) -> Response:
    now = call.world.now()
    machines = [m for m in call.world.instances(NAME, call.tenant) if m.listed_at(now)]
    return JSONResponse({"items": [_machine_json(m, now) for m in machines]})


def create_machine(call: Call) -> Response:
    machine = _text(call.body, "machine")
    if machine not in MACHINES:
        raise invalid(f"unknown machine {machine}", field="machine")
    if call.faults.capacity:
        raise ApiError(409, Problem.CAPACITY, f"no capacity for {machine}")
    gpu, gpus, region, price = MACHINES[machine]
    now = call.world.now()
    record = InstanceRecord(
        api=NAME,
        tenant=call.tenant,
        id=call.world.new_id(NAME, "instances"),
        name=_text(call.body, "name"),
        created_at=now,
        cloud=NAME,
        region=region,
        instance_type=machine,
        cloud_instance_type=machine,
        hourly_price_cents=round(float(price) * 100),
        configuration={"gpu_type": gpu, "num_gpus": gpus},
        os=call.body.get("image"),
        ssh_key_id=call.body.get("ssh_key_id"),
        volume_ids=list(call.body.get("volume_ids") or []),
        cloud_assigned_id=call.world.new_id(NAME, "instances"),
        ip="10.0.0.7",
        ready_at=now + call.world.boot_seconds,
    )
    call.world.add(record)
    return JSONResponse({"id": record.id}, 201)


def _delete(kind: str) -> Any:
    def delete(call: Call) -> Response:
        find = {"instances": call.world.instance, "volumes": call.world.volume, "ssh_keys": call.world.ssh_key}
        record = find[kind](NAME, call.tenant, call.path("id"))
        now = call.world.now()
        if record is None or record.deletion_started(now) is not None:
            raise not_found(kind, call.path("id"))
        if kind == "volumes" and call.world.mounted_by(NAME, call.tenant, record.id, now):
            raise ApiError(409, Problem.CONFLICT, f"volume {record.id} is in use by a machine")
        record.deleted_at = now
        if isinstance(record, InstanceRecord):
            record.delete_seconds = call.world.delete_seconds
        call.world.changed(record)
        return JSONResponse({"deleted": record.id})

    return delete


def _op(kind: str, verb: str) -> Operation:
    return Operation(NAME, kind, verb)


ENDPOINTS = [
    Endpoint("GET", "/machine-types", _op("machine_types", "list"), list_machine_types),
    Endpoint("GET", "/volume-prices", _op("volume_prices", "list"), list_volume_prices),
    Endpoint("GET", "/keys", _op("ssh_keys", "list"), list_keys),
    Endpoint("POST", "/keys", _op("ssh_keys", "create"), create_key),
    Endpoint("DELETE", "/keys/{id}", _op("ssh_keys", "delete"), _delete("ssh_keys")),
    Endpoint("GET", "/volumes", _op("volumes", "list"), list_volumes),
    Endpoint("POST", "/volumes", _op("volumes", "create"), create_volume),
    Endpoint("DELETE", "/volumes/{id}", _op("volumes", "delete"), _delete("volumes")),
    Endpoint("GET", "/machines", _op("instances", "list"), list_machines),
    Endpoint("POST", "/machines", _op("instances", "create"), create_machine),
    Endpoint("DELETE", "/machines/{id}", _op("instances", "delete"), _delete("instances")),
]
EMULATED_API = EmulatedApi(AcmeDialect(), ENDPOINTS)


# ---------------------------------------------------------------- the spec

ACME = ProviderSpec(
    name=NAME,
    title="Acme",
    adapter=AcmeProvider,
    blocks={Kind.SSH_KEY: SshKeyBlock, Kind.VOLUME: AcmeVolumeBlock, Kind.INSTANCE: AcmeInstanceBlock},
    type_key="machine",
    pin_keys=("region", "machine"),
    api_key_env_var="ACME_API_KEY",
    limits=AcmeProvider.LIMITS,
    computed={kind: ("id",) for kind in Kind},
    emulator=lambda: EMULATED_API,
)
