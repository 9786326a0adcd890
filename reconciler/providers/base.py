"""The Provider protocol: the only surface through which reconciler touches a cloud API.

Canonical attributes (what config produces, what state stores, what live reports back):

- ssh_keys:  name, public_key
- volumes:   name, region, size_gb, cloud (Shadeform cloud; Forward's `provider`, optional)
- instances: name, region, cloud, ssh_key (address), volumes (addresses), envs (name -> value),
             Shadeform: shade_instance_type, os, launch, tags, rental_type, auto_delete, alert;
             Forward: offering_id.

`create` receives a *spec*: the canonical attributes with references resolved to provider
ids (`ssh_key_id`, `volume_ids` instead of `ssh_key`, `volumes`) and sensitive values in
clear. Each adapter stores the ownership `marker` where its API keeps it (Shadeform
instance tags, otherwise a name suffix) and reports it back in `LiveResource.marker`, with
the marker removed from `name` and `tags` so live attributes compare cleanly with config.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import httpx

from reconciler.model import CreatedResource, Kind, LiveResource, Offering, VolumeOffering

EMBEDDED = "embedded"
DEFAULT_RATE_LIMIT = 20.0
EMBEDDED_RATE_LIMIT = 10_000.0
MARKER_PREFIX = "rc-"
NAME_MARKER_SEPARATOR = "--"


def split_name_marker(name: str) -> tuple[str, str | None]:
    """`trainer--rc-1a2b3c4d-9f8e7d` -> (`trainer`, `rc-1a2b3c4d-9f8e7d`)."""
    head, sep, tail = name.rpartition(NAME_MARKER_SEPARATOR)
    if sep and tail.startswith(MARKER_PREFIX):
        return head, tail
    return name, None


def join_name_marker(name: str, marker: str) -> str:
    return f"{name}{NAME_MARKER_SEPARATOR}{marker}"


@dataclass
class ProviderSettings:
    """How to reach one provider. `api_key` is never printed (see __repr__)."""

    name: str
    endpoint: str = EMBEDDED
    api_key: str | None = field(default=None, repr=False)
    rate_limit_per_second: float | None = None  # None: DEFAULT_RATE_LIMIT, or unpaced when embedded
    timeout_seconds: float = 30.0
    max_retries: int = 5
    list_consistency_seconds: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def embedded(self) -> bool:
        return self.endpoint == EMBEDDED

    @property
    def requests_per_second(self) -> float:
        """The pace of the client's token bucket: as configured, else a polite default for a
        real API; the in-process emulator needs no pacing unless one is configured."""
        if self.rate_limit_per_second is not None:
            return self.rate_limit_per_second
        return EMBEDDED_RATE_LIMIT if self.embedded else DEFAULT_RATE_LIMIT


@runtime_checkable
class Provider(Protocol):
    """One per API; nothing else crosses this line."""

    name: str

    @property
    def list_consistency_seconds(self) -> float:
        """How long a list may lag behind a write (Forward's cached lists); 0 if never."""
        ...

    def updatable(self, kind: Kind) -> frozenset[str]:
        """Attributes this API changes in place; any other change forces replacement."""
        ...

    async def list(self, kind: Kind) -> list[LiveResource]:
        """Every live resource of a kind: one call (plus pages), never one per resource."""
        ...

    async def get(self, kind: Kind, id: str) -> LiveResource | None:
        """A fresh read of one resource, or None when it does not exist."""
        ...

    async def create(self, kind: Kind, spec: dict[str, Any], marker: str) -> CreatedResource: ...

    async def delete(self, kind: Kind, id: str) -> None:
        """Delete; a resource that is already gone counts as deleted."""
        ...

    async def update(self, kind: Kind, id: str, changes: dict[str, Any], marker: str) -> None: ...

    async def offerings(self) -> builtins.list[Offering]: ...

    async def volume_offerings(self) -> builtins.list[VolumeOffering]:
        """Volume types with their $/GB-hour, to price volumes in plans."""
        ...

    async def aclose(self) -> None: ...


class ProviderFactory(Protocol):
    def __call__(
        self, settings: ProviderSettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> Provider: ...


def _whole(value: Any) -> int | None:
    try:
        return None if value is None or isinstance(value, bool) else int(float(value))
    except (TypeError, ValueError):
        return None


def offering_hardware(
    configuration: dict[str, Any], deployment_type: Any, boot_seconds: Any
) -> dict[str, Any]:
    """The hardware fields both APIs report the same way (`configuration` of an offering)."""
    interconnect = configuration.get("interconnect")
    return {
        "vcpus": _whole(configuration.get("vcpus")),
        "memory_gb": _whole(configuration.get("memory_in_gb")),
        "storage_gb": _whole(configuration.get("storage_in_gb")),
        "interconnect": None if interconnect is None else str(interconnect),
        "deployment_type": None if deployment_type is None else str(deployment_type),
        "boot_seconds": _whole(boot_seconds),
    }
