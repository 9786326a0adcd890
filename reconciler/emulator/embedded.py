"""The emulator as reconciler's default endpoint: every provider's API in-process over httpx.

    with EmbeddedCloud("state/default.sandbox.json", boot_seconds=1.0) as cloud:
        client = httpx.AsyncClient(
            base_url=cloud.base_url("shadeform"),      # http://shadeform.embedded/v1
            transport=cloud.transport("shadeform"),
        )

Use `base_url(api)` as the client's base URL as-is: requests go to `<base>/instances`
exactly as against the real service (`https://api.shadeform.ai/v1`,
`https://api.forwardcompute.ai/v1`). The same transport also answers the control API at
`http://<api>.embedded/_emulator/...`.

The sandbox file is loaded on open and every mutating request is journaled to it before
its answer is returned, so a killed process never loses a write the API acknowledged;
reads never touch the file. Open one EmbeddedCloud per sandbox per process and share it
between the providers. httpx's ASGI transport sends no lifespan events; nothing here
needs them.

Dropped connections from fault injection surface as the errors a real network gives:
`httpx.RemoteProtocolError` for a lost response, `httpx.ReadTimeout` for a timeout.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any

import httpx
from starlette.applications import Starlette

from reconciler.emulator.clock import Clock
from reconciler.emulator.faults import FaultConfig
from reconciler.emulator.market import MarketConfig, parse_market
from reconciler.emulator.runtime import ConnectionDropped, EmulatorRuntime
from reconciler.emulator.sandbox import Sandbox
from reconciler.emulator.server import api_names, build_api_app, emulated_api
from reconciler.emulator.world import World

DEFAULT_BOOT_SECONDS = 1.0


class EmbeddedTransport(httpx.AsyncBaseTransport):
    """An ASGI transport whose injected connection drops look like network failures."""

    def __init__(self, app: Starlette) -> None:
        self._inner = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._inner.handle_async_request(request)
        except ConnectionDropped as exc:
            if exc.reason == "timeout":
                raise httpx.ReadTimeout(
                    "timed out waiting for the emulator's answer", request=request
                ) from None
            raise httpx.RemoteProtocolError(
                "server disconnected without sending a response", request=request
            ) from None

    async def aclose(self) -> None:
        await self._inner.aclose()


class EmbeddedCloud:
    """Every emulated API over one world, optionally persisted in a sandbox file.

    `boot_seconds=None` means the default (1 s); `sandbox=None` keeps the world in memory.
    """

    def __init__(
        self,
        sandbox: str | os.PathLike[str] | None = None,
        *,
        boot_seconds: float | None = None,
        delete_seconds: float = 0.5,
        list_lag_seconds: float = 0.0,
        faults: str | FaultConfig | None = None,
        seed: int = 0,
        clock: Clock | None = None,
        latency_seconds: float = 0.0,
        rate_limit: float | None = None,
        lock_timeout: float = 10.0,
        market: str | MarketConfig | None = None,
    ) -> None:
        self.sandbox_path = sandbox
        self._clock = clock
        self._boot_seconds = DEFAULT_BOOT_SECONDS if boot_seconds is None else boot_seconds
        self._delete_seconds = delete_seconds
        self._list_lag_seconds = list_lag_seconds
        self._faults = faults if isinstance(faults, FaultConfig) else FaultConfig.parse(faults, seed)
        self._latency_seconds = latency_seconds
        self._rate_limit = rate_limit
        self._lock_timeout = lock_timeout
        self._market = parse_market(market) if isinstance(market, str) else market
        self._sandbox: Sandbox | None = None
        self._runtime: EmulatorRuntime | None = None
        self._apps: dict[str, Starlette] = {}

    def __enter__(self) -> EmbeddedCloud:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Load the sandbox (or start an empty world) and build every API."""
        if self._runtime is not None:
            return
        # Load every emulated API before the runtime starts: market moments count from then,
        # and the first request must not wait for an import.
        apis = api_names()
        if self.sandbox_path is not None:
            self._sandbox = Sandbox(self.sandbox_path, lock_timeout=self._lock_timeout)
            world = self._sandbox.open(
                clock=self._clock,
                boot_seconds=self._boot_seconds,
                delete_seconds=self._delete_seconds,
                list_lag_seconds=self._list_lag_seconds,
            )
        else:
            world = World(
                clock=self._clock,
                boot_seconds=self._boot_seconds,
                delete_seconds=self._delete_seconds,
                list_lag_seconds=self._list_lag_seconds,
            )
        self._runtime = EmulatorRuntime(
            world,
            faults=self._faults,
            latency_seconds=self._latency_seconds,
            rate_limit=self._rate_limit,
            in_process=True,
            market=self._market,
        )
        self._apps = {api: build_api_app(self._runtime, api) for api in apis}

    def close(self) -> None:
        """Persist the journal as a snapshot and release the sandbox."""
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None
        self._runtime = None
        self._apps = {}

    @property
    def runtime(self) -> EmulatorRuntime:
        """Faults, statistics and holds of the open cloud."""
        if self._runtime is None:
            raise RuntimeError("EmbeddedCloud is not open; use it as a context manager")
        return self._runtime

    @property
    def world(self) -> World:
        return self.runtime.world

    def transport(self, api: str) -> httpx.AsyncBaseTransport:
        """A transport to one API ("shadeform", "forward", ...); use it with `base_url(api)`."""
        emulated_api(api)
        if not self._apps:
            raise RuntimeError("EmbeddedCloud is not open; use it as a context manager")
        if api not in self._apps:  # registered after this cloud opened
            self._apps[api] = build_api_app(self.runtime, api)
        return EmbeddedTransport(self._apps[api])

    @staticmethod
    def base_url(api: str) -> str:
        emulated_api(api)
        return f"http://{api}.embedded/v1"

    def set_market(self, config: str | MarketConfig | dict[str, Any]) -> None:
        """Replace the capacity market; `after_seconds` moments count from now."""
        if isinstance(config, str):
            config = parse_market(config)
        elif isinstance(config, dict):
            config = MarketConfig.model_validate(config)
        self.runtime.market.configure(config, self.world.now())

    def set_faults(self, spec: str | FaultConfig, seed: int = 0) -> None:
        """Replace the fault rules (counters and random stream restart)."""
        config = spec if isinstance(spec, FaultConfig) else FaultConfig.parse(spec, seed)
        self.runtime.faults.configure(config)
