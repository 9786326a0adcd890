"""Shadeform adapter: maps the Shadeform API v1 to the Provider protocol.

Endpoints (per the shared seeds): instances `GET /instances`, `POST /instances/create`,
`GET /instances/{id}/info`, `POST /instances/{id}/update`, `POST /instances/{id}/delete`,
`GET /instances/types`; volumes `GET /volumes`, `POST /volumes/create`,
`GET /volumes/{id}/info`, `POST /volumes/{id}/delete`, `GET /volumes/types`; SSH keys
`GET /sshkeys`, `POST /sshkeys/add`, `GET /sshkeys/{id}/info`, `POST /sshkeys/{id}/delete`.
Auth is the `X-API-KEY` header.

Where requests go: `settings.endpoint` when it is an http(s) URL; otherwise
`settings.options["base_url"]` when set, otherwise the real API. The embedded endpoint
runs the emulator in-process: the caller passes its httpx transport and sets
`options["base_url"]` to the emulator's base URL (a provider for the embedded endpoint
refuses to start without a transport, so it can never reach the real API by mistake).

Ownership: instances carry the marker as the tag `reconciler:<marker>` (their name stays
the user's); volumes and SSH keys carry it as a name suffix (`join_name_marker`).
Prices: instance `hourly_price` is integer cents and is reported in dollars; a volume's
price is `price_per_gb_per_hour` of its cloud and region (from `/volumes/types`, read once
per provider) times its size.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
from typing import Any

from reconciler.errors import NotFoundError
from reconciler.limits import SHADEFORM_LIMITS
from reconciler.model import CreatedResource, Kind, LiveResource, Offering, Status, VolumeOffering
from reconciler.providers.adapter import STATUS_MAP as SHARED_STATUS_MAP
from reconciler.providers.adapter import ApiAccess, HttpProvider, normalised_computed, status_in
from reconciler.providers.base import join_name_marker, offering_hardware, split_name_marker
from reconciler.providers.http import (
    ApiErrorBody,
    envs_from_api,
    envs_to_api,
    parse_decimal,
)

DEFAULT_BASE_URL = "https://api.shadeform.ai/v1"
API_KEY_HEADER = "X-API-KEY"
API_KEY_ENV_VAR = "SHADEFORM_API_KEY"
MARKER_TAG_PREFIX = "reconciler:"

STATUS_MAP: dict[str, Status] = SHARED_STATUS_MAP | {"pending_provider": Status.PENDING}

_ROUTES: dict[Kind, dict[str, str]] = {
    Kind.INSTANCE: {
        "list": "/instances",
        "info": "/instances/{id}/info",
        "create": "/instances/create",
        "delete": "/instances/{id}/delete",
        "update": "/instances/{id}/update",
    },
    Kind.VOLUME: {
        "list": "/volumes",
        "info": "/volumes/{id}/info",
        "create": "/volumes/create",
        "delete": "/volumes/{id}/delete",
    },
    Kind.SSH_KEY: {
        "list": "/sshkeys",
        "info": "/sshkeys/{id}/info",
        "create": "/sshkeys/add",
        "delete": "/sshkeys/{id}/delete",
    },
}
_LIST_FIELD = {Kind.INSTANCE: "instances", Kind.VOLUME: "volumes", Kind.SSH_KEY: "ssh_keys"}
_DOCKER_FIELDS = ("image", "args", "port_mappings", "volume_mounts", "shared_memory_in_gb")
_INSTANCE_PASSTHROUGH = ("os", "rental_type", "auto_delete", "alert")
_CAPACITY_CODES = ("NO_CAPACITY",)
_CAPACITY_WORDS = ("capacity", "out of stock", "sold out")


# What the API reports and users do not set: recorded in state apart from the desired attributes.
INSTANCE_COMPUTED = (
    "id", "ip", "ssh_user", "ssh_port", "status", "status_details", "hourly_price", "cost_estimate",
    "created_at", "active_at", "cloud_instance_type", "cloud_assigned_id", "cloud", "region",
    "shade_instance_type",
)
VOLUME_COMPUTED = ("id", "cloud_assigned_id", "cost_estimate", "fixed_size", "supports_multi_mount", "mounted_by")
COMPUTED_ATTRIBUTES: dict[Kind, tuple[str, ...]] = {
    Kind.SSH_KEY: ("id",),
    Kind.VOLUME: VOLUME_COMPUTED,
    Kind.INSTANCE: INSTANCE_COMPUTED,
}


def _reported(item: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The named fields the API answered with a value (an empty ip means "not yet")."""
    return {name: item[name] for name in names if item.get(name) not in (None, "")}


def _instance_computed(item: dict[str, Any]) -> dict[str, Any]:
    return normalised_computed(_reported(item, INSTANCE_COMPUTED), STATUS_MAP, _dollars_from_cents)


def status_from_api(value: Any) -> Status:
    """Map a Shadeform status string to the shared enum; unknown strings are UNKNOWN."""
    return status_in(STATUS_MAP, value)


def is_capacity_error(status: int, body: ApiErrorBody) -> bool:
    """A sold-out type: the `NO_CAPACITY` code, or (for an answer without a code) a message
    saying so. A coded answer is trusted, so a validation error mentioning capacity is not one."""
    if status in (401, 403, 404, 429):
        return False
    if body.type:
        return body.type.upper() in _CAPACITY_CODES
    return any(word in body.message.lower() for word in _CAPACITY_WORDS)


def marker_tag(marker: str) -> str:
    return f"{MARKER_TAG_PREFIX}{marker}"


def split_marker_tag(tags: list[str]) -> tuple[list[str], str | None]:
    """User tags without the ownership tag, and the marker it carried (if any)."""
    marker = None
    user_tags = []
    for tag in tags:
        if tag.startswith(MARKER_TAG_PREFIX) and marker is None:
            marker = tag[len(MARKER_TAG_PREFIX) :]
        else:
            user_tags.append(tag)
    return user_tags, marker


def launch_to_api(launch: dict[str, Any]) -> dict[str, Any]:
    """Canonical `launch` -> Shadeform `launch_configuration`.

    `{type: docker, image, args, envs, port_mappings, volume_mounts, shared_memory_in_gb}`
    becomes a docker_configuration; `{type: script, script}` a script_configuration with
    the script base64-encoded.
    """
    kind = launch.get("type")
    if kind == "docker":
        docker = {k: launch[k] for k in _DOCKER_FIELDS if launch.get(k) is not None}
        if launch.get("envs"):
            docker["envs"] = envs_to_api(launch["envs"])
        return {"type": "docker", "docker_configuration": docker}
    if kind == "script":
        script = str(launch.get("script", ""))
        encoded = base64.b64encode(script.encode()).decode()
        return {"type": "script", "script_configuration": {"base64_script": encoded}}
    raise ValueError(f"launch type must be 'docker' or 'script', got {kind!r}")


def launch_from_api(config: Any) -> dict[str, Any] | None:
    """Shadeform `launch_configuration` -> canonical `launch` (inverse of launch_to_api)."""
    if not isinstance(config, dict) or not config.get("type"):
        return None
    kind = config["type"]
    if kind == "docker":
        docker = config.get("docker_configuration") or {}
        launch: dict[str, Any] = {"type": "docker"}
        launch.update({k: docker[k] for k in _DOCKER_FIELDS if docker.get(k) is not None})
        if docker.get("envs"):
            launch["envs"] = envs_from_api(docker["envs"])
        return launch
    if kind == "script":
        encoded = (config.get("script_configuration") or {}).get("base64_script", "")
        try:
            return {"type": "script", "script": base64.b64decode(encoded, validate=True).decode()}
        except (binascii.Error, UnicodeDecodeError):
            return {"type": "script", "base64_script": encoded}
    return {"type": kind}


def _dollars_from_cents(value: Any) -> float | None:
    try:
        return None if value is None else float(value) / 100
    except (TypeError, ValueError):
        return None


class ShadeformProvider(HttpProvider):
    """The Shadeform API behind the Provider protocol (its lists are never stale)."""

    name = "shadeform"
    ACCESS = ApiAccess(DEFAULT_BASE_URL, API_KEY_HEADER, "", API_KEY_ENV_VAR, is_capacity_error)
    LIMITS = SHADEFORM_LIMITS

    async def list(self, kind: Kind) -> builtins.list[LiveResource]:
        if kind is Kind.VOLUME:
            data, prices = await self._volumes_with_prices()
        else:
            data, prices = await self.api.request("GET", _ROUTES[kind]["list"]), {}
        items = (data or {}).get(_LIST_FIELD[kind]) or []
        live = [self._to_live(kind, item, prices) for item in items if isinstance(item, dict)]
        return [r for r in live if r.status is not Status.DELETED]

    async def get(self, kind: Kind, id: str) -> LiveResource | None:
        try:
            item = await self.api.request("GET", _ROUTES[kind]["info"], ids={"id": id})
        except NotFoundError:
            return None
        if not isinstance(item, dict):
            return None
        prices = await self._volume_price_table() if kind is Kind.VOLUME else {}
        return self._to_live(kind, item, prices)

    async def create(self, kind: Kind, spec: dict[str, Any], marker: str) -> CreatedResource:
        body = self._create_body(kind, spec, marker)
        data = await self.api.request("POST", _ROUTES[kind]["create"], json=body, create=True)
        return self._created(data)

    async def delete(self, kind: Kind, id: str) -> None:
        await self._delete("POST", _ROUTES[kind]["delete"], kind, id)

    async def update(self, kind: Kind, id: str, changes: dict[str, Any], marker: str) -> None:
        allowed = self.updatable(kind)
        extra = set(changes) - allowed
        if extra:
            raise ValueError(f"shadeform cannot update {sorted(extra)} of {kind.value} in place")
        body: dict[str, Any] = {}
        if "name" in changes:
            body["name"] = changes["name"]
        if "tags" in changes:
            body["tags"] = [*(changes["tags"] or []), marker_tag(marker)]
        for threshold in ("auto_delete", "alert"):
            if threshold in changes:
                # The update takes null to remove a threshold, and keeps what is omitted.
                body[threshold] = changes[threshold]
        await self.api.request("POST", _ROUTES[kind]["update"], ids={"id": id}, json=body)

    async def offerings(self) -> builtins.list[Offering]:
        """One Offering per instance type, region and rental type; sold-out ones have available=False."""
        data = await self.api.request("GET", "/instances/types")
        offerings: builtins.list[Offering] = []
        for item in (data or {}).get("instance_types") or []:
            if isinstance(item, dict):
                offerings.extend(self._offerings_of(item))
        return offerings

    async def volume_offerings(self) -> builtins.list[VolumeOffering]:
        """Volume prices per cloud and region (`GET /volumes/types`)."""
        data = await self.api.request("GET", "/volumes/types")
        result = []
        for item in (data or {}).get("volume_types") or []:
            if not isinstance(item, dict):
                continue
            cloud, region = str(item.get("cloud", "")), str(item.get("region", ""))
            offering = self._volume_offering(item, f"{cloud}:{region}", cloud)
            if offering is not None:
                result.append(offering)
        return result

    async def _volumes_with_prices(self) -> tuple[Any, dict[tuple[str, str], float]]:
        """The volume list and the price table, asked for at once rather than one after the other."""
        listing = asyncio.ensure_future(self.api.request("GET", _ROUTES[Kind.VOLUME]["list"]))
        try:
            prices = await self._volume_price_table()
        except BaseException:
            listing.cancel()
            await asyncio.gather(listing, return_exceptions=True)  # reaped; the price error is reported
            raise
        return await listing, prices

    async def _volume_price_table(self) -> dict[tuple[str, str], float]:
        return {(o.cloud, o.region): o.price_per_gb_hour for o in await self._known_volume_offerings()}

    def _create_body(self, kind: Kind, spec: dict[str, Any], marker: str) -> dict[str, Any]:
        if kind is Kind.SSH_KEY:
            return {"name": join_name_marker(spec["name"], marker), "public_key": spec["public_key"]}
        if kind is Kind.VOLUME:
            return {
                "cloud": spec["cloud"],
                "region": spec["region"],
                "size_in_gb": int(spec["size_gb"]),
                "name": join_name_marker(spec["name"], marker),
            }
        body: dict[str, Any] = {
            "cloud": spec["cloud"],
            "region": spec["region"],
            "shade_instance_type": spec["shade_instance_type"],
            "shade_cloud": True,
            "name": spec["name"],
            "tags": [*(spec.get("tags") or []), marker_tag(marker)],
        }
        body.update({k: spec[k] for k in _INSTANCE_PASSTHROUGH if spec.get(k) is not None})
        if spec.get("launch"):
            body["launch_configuration"] = launch_to_api(spec["launch"])
        if spec.get("envs"):
            body["envs"] = envs_to_api(spec["envs"])
        if spec.get("ssh_key_id"):
            body["ssh_key_id"] = spec["ssh_key_id"]
        if spec.get("volume_ids"):
            body["volume_ids"] = list(spec["volume_ids"])
        return body

    def _to_live(
        self, kind: Kind, item: dict[str, Any], volume_prices: dict[tuple[str, str], float]
    ) -> LiveResource:
        if kind is Kind.INSTANCE:
            return self._instance_to_live(item)
        name, marker = split_name_marker(str(item.get("name", "")))
        attributes: dict[str, Any] = {"name": name}
        hourly_price: float | None = None
        if kind is Kind.SSH_KEY:
            attributes.update(public_key=item.get("public_key"), is_default=item.get("is_default"))
            computed = _reported(item, ("id",))
        else:
            cloud, region = str(item.get("cloud", "")), str(item.get("region", ""))
            size = item.get("size_in_gb")
            attributes.update(
                cloud=cloud,
                region=region,
                size_gb=size,
                fixed_size=item.get("fixed_size"),
                supports_multi_mount=item.get("supports_multi_mount"),
                mounted_by=item.get("mounted_by") or None,
            )
            price_per_gb = volume_prices.get((cloud, region))
            if price_per_gb is not None and size is not None:
                hourly_price = price_per_gb * float(size)
            computed = _reported(item, VOLUME_COMPUTED)
        return LiveResource(
            provider=self.name,
            kind=kind,
            id=str(item.get("id", "")),
            name=name,
            status=status_from_api(item["status"]) if "status" in item else Status.ACTIVE,
            attributes=attributes,
            marker=marker,
            hourly_price=hourly_price,
            computed=computed,
        )

    def _instance_to_live(self, item: dict[str, Any]) -> LiveResource:
        tags, marker = split_marker_tag([str(t) for t in item.get("tags") or []])
        configuration = item.get("configuration") if isinstance(item.get("configuration"), dict) else {}
        name = str(item.get("name", ""))
        attributes: dict[str, Any] = {
            "name": name,
            "cloud": item.get("cloud"),
            "region": item.get("region"),
            "shade_instance_type": item.get("shade_instance_type"),
            "os": (configuration or {}).get("os", item.get("os")),
            "tags": tags,
            "envs": envs_from_api(item.get("envs")),
            "ssh_key_id": item.get("ssh_key_id"),
            "volume_ids": list(item.get("volume_ids") or []),
        }
        launch = launch_from_api(item.get("launch_configuration"))
        if launch is not None:
            attributes["launch"] = launch
        for key in ("rental_type", "auto_delete", "alert"):
            if item.get(key) is not None:
                attributes[key] = item[key]
        return LiveResource(
            provider=self.name,
            kind=Kind.INSTANCE,
            id=str(item.get("id", "")),
            name=name,
            status=status_from_api(item.get("status")),
            api_status=str(item["status"]) if item.get("status") is not None else None,
            attributes=attributes,
            marker=marker,
            hourly_price=_dollars_from_cents(item.get("hourly_price")),
            status_details=item.get("status_details"),
            computed=_instance_computed(item),
            spent=parse_decimal(item.get("cost_estimate")),  # dollars billed so far
        )

    def _offerings_of(self, item: dict[str, Any]) -> builtins.list[Offering]:
        cloud = str(item.get("cloud", ""))
        instance_type = str(item.get("shade_instance_type", ""))
        configuration = item.get("configuration") if isinstance(item.get("configuration"), dict) else {}
        gpu_type = str((configuration or {}).get("gpu_type") or instance_type)
        num_gpus = int((configuration or {}).get("num_gpus") or 0)
        vram = (configuration or {}).get("vram_per_gpu_in_gb")
        on_demand_price = _dollars_from_cents(item.get("hourly_price"))
        boot = item.get("boot_time") if isinstance(item.get("boot_time"), dict) else {}
        hardware = offering_hardware(configuration or {}, item.get("deployment_type"), (boot or {}).get("max_boot_in_sec"))
        result = []
        for entry in item.get("availability") or []:
            if not isinstance(entry, dict) or not entry.get("region"):
                continue
            region = str(entry["region"])
            rental_type = str(entry.get("rental_type") or "on_demand")
            price = parse_decimal(entry.get("hourly_price")) if rental_type == "spot" else on_demand_price
            if price is None:
                continue
            pin: dict[str, Any] = {"cloud": cloud, "region": region, "shade_instance_type": instance_type}
            offering_id = f"{cloud}:{region}:{instance_type}"
            if rental_type != "on_demand":
                pin["rental_type"] = rental_type
                offering_id = f"{offering_id}:{rental_type}"
            result.append(
                Offering(
                    provider=self.name,
                    id=offering_id,
                    gpu_type=gpu_type,
                    num_gpus=num_gpus,
                    hourly_price=price,
                    region=region,
                    cloud=cloud,
                    available=bool(entry.get("available", False)),
                    pin=pin,
                    vram_per_gpu_gb=int(vram) if vram is not None else None,
                    instance_type=instance_type,
                    rental_type=rental_type,
                    **hardware,
                )
            )
        return result
