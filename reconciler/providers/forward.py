"""Forward Compute adapter: maps the Forward Compute spot API (v1) to the Provider protocol.

Documented endpoints (shared seeds): `GET /spot/compute/offerings`,
`GET /spot/volumes/offerings`, `GET|POST /spot/instances/`, `GET /spot/instances/{id}`,
`GET /spot/volumes/`, `GET /spot/volumes/{id}`, `GET /spot/ssh-keys/`. Errors are
`{"error": {"type", "message", "field"}}`.

Write endpoints as Forward's own SDK (fwd-sdk 0.1.1) documents them: `DELETE
/spot/instances/{id}` (answers `{deleted, id, object}`), `POST /spot/volumes/` with
`{"name", "offering_id", "size_gb"}` (the offering is the cheapest volume offering in the
volume's region, of its `cloud` when given, from `GET /spot/volumes/offerings`, read once per
client), `DELETE /spot/volumes/{id}`, `POST /spot/ssh-keys/` with `{"name", "public_key"}`
(the key is registered with the API's default provider) and `DELETE /spot/ssh-keys/{id}`.
Create answers are 200 `{id, object}` or 201 with the object; both are read. There is no single-key read, so `get` of an SSH key
filters the (cached) key list. The excerpt does not show the auth scheme either: the key
goes in `Authorization: Bearer <key>` (`AUTH_HEADER`).

Lists are served from a cache and may lag writes; `get` asks for fresh data with
`?refresh=true`. `list_consistency_seconds` is the caller's setting, except that against
the real API an unset (zero) value means `REAL_API_LIST_CONSISTENCY_SECONDS`.

Where requests go is decided as for Shadeform: an http(s) `settings.endpoint`, else
`settings.options["base_url"]` (the embedded emulator, whose transport the caller
passes), else the real API. Ownership markers are name suffixes on every kind.
"""

from __future__ import annotations

import builtins
from typing import Any

from reconciler.errors import NotFoundError, ProviderError
from reconciler.limits import FORWARD_LIMITS
from reconciler.model import CreatedResource, Kind, LiveResource, Offering, Status, VolumeOffering
from reconciler.providers.adapter import STATUS_MAP, ApiAccess, HttpProvider, normalised_computed, status_in
from reconciler.providers.base import join_name_marker, offering_hardware, split_name_marker
from reconciler.providers.http import (
    ApiErrorBody,
    envs_from_api,
    envs_to_api,
    parse_decimal,
)

DEFAULT_BASE_URL = "https://api.forwardcompute.ai/v1"
AUTH_HEADER = "Authorization"
AUTH_SCHEME = "Bearer "
API_KEY_ENV_VAR = "FORWARD_API_KEY"
REAL_API_LIST_CONSISTENCY_SECONDS = 30.0

_COLLECTION = {
    Kind.INSTANCE: "/spot/instances/",
    Kind.VOLUME: "/spot/volumes/",
    Kind.SSH_KEY: "/spot/ssh-keys/",
}
_ITEM = {
    Kind.INSTANCE: "/spot/instances/{id}",
    Kind.VOLUME: "/spot/volumes/{id}",
    Kind.SSH_KEY: "/spot/ssh-keys/{id}",
}
_CAPACITY_WORDS = ("capacity", "out of stock", "sold out")


# What the API reports and users do not set, per kind, under reconciler's names (Forward's
# `created` is `created_at`, its `provider` is `cloud`): recorded in state apart from the
# desired attributes.
_COMPUTED_FIELDS: dict[Kind, dict[str, str]] = {
    Kind.SSH_KEY: {"id": "id", "fingerprint": "fingerprint", "created_at": "created"},
    Kind.VOLUME: {
        "id": "id", "cloud_assigned_id": "cloud_assigned_id", "cost_estimate": "cost_estimate",
        "created_at": "created", "mounted_by": "mounted_by",
    },
    Kind.INSTANCE: {
        "id": "id", "ip": "ip", "ssh_user": "ssh_user", "ssh_port": "ssh_port", "status": "status",
        "status_details": "status_details", "hourly_price": "hourly_price", "created_at": "created",
        "cloud": "provider", "region": "region", "offering_id": "offering_id",
        "cloud_instance_type": "instance_type",
    },
}
COMPUTED_ATTRIBUTES: dict[Kind, tuple[str, ...]] = {kind: tuple(f) for kind, f in _COMPUTED_FIELDS.items()}


def _computed(kind: Kind, item: dict[str, Any]) -> dict[str, Any]:
    computed = {
        name: item[field]
        for name, field in _COMPUTED_FIELDS[kind].items()
        if item.get(field) not in (None, "")
    }
    return normalised_computed(computed, STATUS_MAP, parse_decimal)


def status_from_api(value: Any) -> Status:
    """Map a Forward status string to the shared enum; unknown strings are UNKNOWN."""
    return status_in(STATUS_MAP, value)


def is_capacity_error(status: int, body: ApiErrorBody) -> bool:
    """A sold-out offering. The API has no capacity error type: it answers `provider_error`
    (the upstream provider refused) with a message saying there is no capacity."""
    if status in (401, 403, 404, 429):
        return False
    error_type = (body.type or "").lower()
    if error_type not in ("", "provider_error"):
        return False
    return any(word in body.message.lower() for word in _CAPACITY_WORDS)


class ForwardProvider(HttpProvider):
    """The Forward Compute spot API behind the Provider protocol."""

    name = "forward"
    ACCESS = ApiAccess(DEFAULT_BASE_URL, AUTH_HEADER, AUTH_SCHEME, API_KEY_ENV_VAR, is_capacity_error)
    LIMITS = FORWARD_LIMITS

    @property
    def list_consistency_seconds(self) -> float:
        """How long Forward's cached lists may lag a write."""
        configured = self.settings.list_consistency_seconds
        # Anything but the in-process emulator (the real API, a staging URL, a proxy, a served
        # emulator) may serve lists from a cache: unless told otherwise, allow for it.
        if not self.settings.embedded and configured <= 0:
            return REAL_API_LIST_CONSISTENCY_SECONDS
        return configured

    async def list(self, kind: Kind) -> builtins.list[LiveResource]:
        data = await self.api.request("GET", _COLLECTION[kind])
        items = _data_items(data)
        live = [self._to_live(kind, item) for item in items]
        return [r for r in live if r.status is not Status.DELETED]

    async def get(self, kind: Kind, id: str) -> LiveResource | None:
        """A fresh read (`?refresh=true`), bypassing the list cache; SSH keys have no
        single read, so theirs comes from the list."""
        if kind is Kind.SSH_KEY:
            return next((key for key in await self.list(kind) if key.id == id), None)
        try:
            item = await self.api.request("GET", _ITEM[kind], ids={"id": id}, params={"refresh": "true"})
        except NotFoundError:
            return None
        if isinstance(item, dict) and isinstance(item.get("data"), dict):
            item = item["data"]
        return self._to_live(kind, item) if isinstance(item, dict) else None

    async def create(self, kind: Kind, spec: dict[str, Any], marker: str) -> CreatedResource:
        body = self._create_body(kind, spec, marker)
        if kind is Kind.VOLUME:
            body["offering_id"] = await self._volume_offering_id(spec)
        data = await self.api.request("POST", _COLLECTION[kind], json=body, create=True)
        if isinstance(data, dict) and isinstance(data.get("data"), dict):
            data = data["data"]
        live = self._to_live(kind, data) if isinstance(data, dict) and "name" in data and data.get("id") else None
        return self._created(data, live)

    async def delete(self, kind: Kind, id: str) -> None:
        await self._delete("DELETE", _ITEM[kind], kind, id)

    async def update(self, kind: Kind, id: str, changes: dict[str, Any], marker: str) -> None:
        raise ValueError(f"forward cannot update {kind.value} in place (asked to change {sorted(changes)})")

    async def offerings(self) -> builtins.list[Offering]:
        """Every compute offering; sold-out ones have available=False."""
        data = await self.api.request("GET", "/spot/compute/offerings")
        return [o for o in (self._offering(item) for item in _data_items(data)) if o is not None]

    async def volume_offerings(self) -> builtins.list[VolumeOffering]:
        """Volume prices per provider and region (`GET /spot/volumes/offerings`)."""
        data = await self.api.request("GET", "/spot/volumes/offerings")
        found = (
            self._volume_offering(item, str(item["id"]), str(item.get("provider", "")))
            for item in _data_items(data)
            if item.get("id")
        )
        return [offering for offering in found if offering is not None]

    async def _volume_offering_id(self, spec: dict[str, Any]) -> str:
        """The volume offering a volume is created from: the cheapest in its region (and cloud)."""
        region, cloud = spec.get("region"), spec.get("cloud")
        candidates = [
            o
            for o in await self._known_volume_offerings()
            if o.region == region and (not cloud or o.cloud == cloud)
        ]
        if not candidates:
            where = f"{cloud} {region}" if cloud else f"region {region}"
            raise ProviderError(
                f"no volume offering in {where}",
                provider=self.name,
                error_type="no_volume_offering",
                hint="`reconciler offerings` lists where Forward Compute sells volumes",
            )
        return min(candidates, key=lambda o: (o.price_per_gb_hour, o.cloud, o.id)).id

    def _create_body(self, kind: Kind, spec: dict[str, Any], marker: str) -> dict[str, Any]:
        name = join_name_marker(spec["name"], marker)
        if kind is Kind.SSH_KEY:
            return {"name": name, "public_key": spec["public_key"]}
        if kind is Kind.VOLUME:
            return {"name": name, "size_gb": int(spec["size_gb"])}
        body: dict[str, Any] = {"name": name, "offering_id": spec["offering_id"]}
        if spec.get("ssh_key_id"):
            body["ssh_key_id"] = spec["ssh_key_id"]
        if spec.get("volume_ids"):
            body["volume_ids"] = list(spec["volume_ids"])
        if spec.get("envs"):
            body["envs"] = envs_to_api(spec["envs"])
        return body

    def _to_live(self, kind: Kind, item: dict[str, Any]) -> LiveResource:
        name, marker = split_name_marker(str(item.get("name", "")))
        attributes: dict[str, Any] = {"name": name}
        hourly_price: float | None = None
        if kind is Kind.SSH_KEY:
            attributes["public_key"] = item.get("public_key")
        elif kind is Kind.VOLUME:
            attributes.update(
                region=item.get("region"),
                cloud=item.get("provider"),
                size_gb=item.get("size_gb"),
                fixed_size=item.get("fixed_size"),
                supports_multi_mount=item.get("supports_multi_mount"),
                mounted_by=item.get("mounted_by") or None,
            )
            hourly_price = parse_decimal(item.get("cost_estimate"))
        else:
            attributes.update(
                region=item.get("region"),
                cloud=item.get("provider"),
                envs=envs_from_api(item.get("envs")),
                ssh_key_id=item.get("ssh_key_id"),
                volume_ids=list(item.get("volume_ids") or []),
            )
            if item.get("offering_id"):
                attributes["offering_id"] = item["offering_id"]
            hourly_price = parse_decimal(item.get("hourly_price"))
        has_status = kind is Kind.INSTANCE or "status" in item
        return LiveResource(
            provider=self.name,
            kind=kind,
            id=str(item.get("id", "")),
            name=name,
            status=status_from_api(item.get("status")) if has_status else Status.ACTIVE,
            api_status=str(item["status"]) if item.get("status") is not None else None,
            attributes=attributes,
            marker=marker,
            hourly_price=hourly_price,
            status_details=item.get("status_details"),
            computed=_computed(kind, item),
        )

    def _offering(self, item: dict[str, Any]) -> Offering | None:
        price = parse_decimal(item.get("hourly_price"))
        if price is None or not item.get("id"):
            return None
        configuration = item.get("configuration") if isinstance(item.get("configuration"), dict) else {}
        config: dict[str, Any] = configuration or {}
        vram = config.get("vram_per_gpu_in_gb")
        boot_time = item.get("boot_time")
        boot: dict[str, Any] = boot_time if isinstance(boot_time, dict) else {}
        offering_id = str(item["id"])
        return Offering(
            provider=self.name,
            id=offering_id,
            gpu_type=str(config.get("gpu_type") or item.get("instance_type") or ""),
            num_gpus=int(config.get("num_gpus") or 0),
            hourly_price=price,
            region=str(item.get("region", "")),
            cloud=str(item.get("provider", "")),
            available=bool(item.get("available", False)),
            pin={"offering_id": offering_id},
            vram_per_gpu_gb=int(vram) if vram is not None else None,
            instance_type=_text(item.get("instance_type")),
            rental_type="spot",  # every Forward Compute offering is sold on its spot market
            **offering_hardware(config, item.get("deployment_type"), boot.get("max_seconds")),
        )


def _data_items(data: Any) -> list[dict[str, Any]]:
    """The `data` array of a Forward list answer, keeping only objects."""
    items = data.get("data") if isinstance(data, dict) else None
    return [item for item in items or [] if isinstance(item, dict)]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
