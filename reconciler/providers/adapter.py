"""What every HTTP provider adapter does the same way: its client, statuses, deletes, volume prices.

An adapter subclasses `HttpProvider`, names its API in an `ApiAccess` (where it is, how it
authenticates, how it says "sold out") and keeps only what its API does differently:
routes, request bodies and how answers become `LiveResource`s and `Offering`s.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from reconciler.errors import NotFoundError, ProviderError
from reconciler.limits import ProviderLimits
from reconciler.model import CreatedResource, Kind, LiveResource, Status, VolumeOffering
from reconciler.providers.base import ProviderSettings
from reconciler.providers.http import (
    ApiClient,
    CapacityTest,
    Clock,
    Sleep,
    in_use_error,
    parse_decimal,
    resolve_base_url,
)

# The status words both built-in APIs use; an adapter adds its own (`STATUS_MAP | {...}`).
STATUS_MAP: dict[str, Status] = {
    "pending": Status.PENDING,
    "creating": Status.PENDING,
    "restarting": Status.PENDING,
    "active": Status.ACTIVE,
    "deleting": Status.DELETING,
    "deleted": Status.DELETED,
    "error": Status.ERROR,
}


def status_in(status_map: Mapping[str, Status], value: Any) -> Status:
    """Map an API's status string to the shared enum; unknown strings are UNKNOWN."""
    return status_map.get(str(value).lower(), Status.UNKNOWN) if value is not None else Status.UNKNOWN


def normalised_computed(
    computed: dict[str, Any], status_map: Mapping[str, Status], price: Callable[[Any], float | None]
) -> dict[str, Any]:
    """Reported values in reconciler's terms: the price in dollars, the status as the shared enum's."""
    if "hourly_price" in computed:
        computed["hourly_price"] = price(computed["hourly_price"])
    if "status" in computed:
        computed["status"] = status_in(status_map, computed["status"]).value
    return computed


@dataclass(frozen=True)
class ApiAccess:
    """Where one API lives and how a client authenticates to it."""

    default_base_url: str
    auth_header: str
    auth_scheme: str  # put before the key in the header ("Bearer "), or ""
    key_env_var: str
    is_capacity_error: CapacityTest


class HttpProvider(ABC):
    """The Provider protocol's shared half; subclasses set `name`, `ACCESS` and `LIMITS`."""

    name: str
    ACCESS: ClassVar[ApiAccess]
    LIMITS: ClassVar[ProviderLimits]

    def __init__(
        self,
        settings: ProviderSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        self.settings = settings
        access = self.ACCESS
        self.api = ApiClient(
            provider=self.name,
            base_url=resolve_base_url(settings, access.default_base_url, transport),
            api_key=settings.api_key,
            auth_header=access.auth_header,
            auth_scheme=access.auth_scheme,
            key_env_var=access.key_env_var,
            timeout_seconds=settings.timeout_seconds,
            max_retries=settings.max_retries,
            rate_limit_per_second=settings.requests_per_second,
            is_capacity_error=access.is_capacity_error,
            transport=transport,
            sleep=sleep,
            clock=clock,
        )
        self.calls = self.api.calls
        self._volume_offerings: builtins.list[VolumeOffering] | None = None
        self._volume_offerings_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.api!r})"

    @property
    def list_consistency_seconds(self) -> float:
        """Lists read from the source of truth are never stale; cached ones override this."""
        return 0.0

    def updatable(self, kind: Kind) -> frozenset[str]:
        return self.LIMITS.updatable(kind)

    async def aclose(self) -> None:
        await self.api.aclose()

    @abstractmethod
    async def volume_offerings(self) -> builtins.list[VolumeOffering]: ...

    async def _known_volume_offerings(self) -> builtins.list[VolumeOffering]:
        """`volume_offerings()`, asked once per client: concurrent first reads share one fetch."""
        async with self._volume_offerings_lock:
            if self._volume_offerings is None:
                self._volume_offerings = await self.volume_offerings()
            return self._volume_offerings

    async def _delete(self, method: str, route: str, kind: Kind, id: str) -> None:
        """Delete; a resource already gone counts as deleted, one still in use is retryable."""
        try:
            await self.api.request(method, route, ids={"id": id})
        except NotFoundError:
            return
        except ProviderError as exc:
            in_use = in_use_error(exc, kind, id)
            if in_use is not None:
                raise in_use from None
            raise

    def _created(self, data: Any, live: LiveResource | None = None) -> CreatedResource:
        """The id a create answered with; an answer without one leaves the outcome unknown."""
        created_id = data.get("id") if isinstance(data, dict) else None
        if not created_id:
            raise self.api.create_outcome_unknown("the answer carried no id", None)
        return CreatedResource(id=str(created_id), live=live)

    def _volume_offering(self, item: Any, id: str, cloud: str) -> VolumeOffering | None:
        """One volume price entry (`price_per_gb_per_hour`, `fixed_size`, `supports_multi_mount`)."""
        price = parse_decimal(item.get("price_per_gb_per_hour")) if isinstance(item, dict) else None
        if price is None:
            return None
        return VolumeOffering(
            provider=self.name,
            id=id,
            cloud=cloud,
            region=str(item.get("region", "")),
            price_per_gb_hour=price,
            fixed_size=bool(item.get("fixed_size", False)),
            supports_multi_mount=bool(item.get("supports_multi_mount", False)),
        )
