"""`reconciler emulator serve`: both emulated APIs as a real HTTP server.

On startup it prints the bound URL (`--port 0` picks a free port), e.g.

    reconciler emulator listening on http://127.0.0.1:43121
      shadeform: http://127.0.0.1:43121/shadeform/v1
      forward:   http://127.0.0.1:43121/forward/v1
      control:   http://127.0.0.1:43121/_emulator
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable
from types import FrameType
from typing import Any

import click
import uvicorn
from starlette.applications import Starlette

from reconciler.emulator.faults import FaultConfig, FaultSpecError
from reconciler.emulator.market import MarketSpecError, parse_market
from reconciler.emulator.runtime import ConnectionDropped, EmulatorRuntime
from reconciler.emulator.sandbox import Sandbox
from reconciler.emulator.server import api_names, build_server_app
from reconciler.emulator.storage import SandboxError
from reconciler.emulator.world import World


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that reports once it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()


class _HideInjectedDrops(logging.Filter):
    """Connections dropped on purpose are not server errors; keep them out of the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ConnectionDropped))


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    return sock


async def _serve(app: Starlette, host: str, port: int) -> None:
    sock = _bind(host, port)
    bound: tuple[Any, ...] = sock.getsockname()
    shown_host = f"[{bound[0]}]" if sock.family == socket.AF_INET6 else bound[0]
    url = f"http://{shown_host}:{bound[1]}"

    def announce() -> None:
        click.echo(f"reconciler emulator listening on {url}")
        click.echo(f"  shadeform: {url}/shadeform/v1")
        click.echo(f"  forward:   {url}/forward/v1")
        click.echo(f"  control:   {url}/_emulator")

    config = uvicorn.Config(
        app, lifespan="off", access_log=False, log_level="warning", timeout_graceful_shutdown=2
    )
    logging.getLogger("uvicorn.error").addFilter(_HideInjectedDrops())
    await _AnnouncingServer(config, announce).serve(sockets=[sock])


@click.group("emulator")
def emulator() -> None:
    """The built-in emulator of the Shadeform and Forward Compute APIs."""


@emulator.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port."
)
@click.option(
    "--boot-seconds", default=1.0, show_default=True, type=click.FloatRange(min=0), help="pending -> active."
)
@click.option(
    "--delete-seconds", default=0.5, show_default=True, type=click.FloatRange(min=0), help="deleting -> gone."
)
@click.option(
    "--faults", default="", help="Fault spec, e.g. 'shadeform.create=lost_response:0.5;forward.list=lag:5'."
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the fault probabilities.")
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Sandbox file to load and persist the world in (default: memory only).",
)
@click.option(
    "--list-lag-seconds",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="How far Forward Compute's cached lists lag behind writes.",
)
@click.option(
    "--latency-ms", default=0.0, show_default=True, type=click.FloatRange(min=0), help="Added to every call."
)
@click.option(
    "--rate-limit",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="Requests per second per API key; beyond it 429 with Retry-After.",
)
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    envvar="RECONCILER_EMULATOR_API_KEYS",
    help="Accept only this API key (repeatable; the env var takes keys separated by spaces). "
    "Other keys get 401. Without it any non-empty key is its own tenant.",
)
@click.option(
    "--market",
    default=None,
    envvar="RECONCILER_EMULATOR_MARKET",
    help="Capacity market as JSON, or @FILE: machines per offering, schedule, reclaims "
    "(see the README's emulator section).",
)
def serve(
    host: str,
    port: int,
    boot_seconds: float,
    delete_seconds: float,
    faults: str,
    seed: int,
    state_file: str | None,
    list_lag_seconds: float,
    latency_ms: float,
    rate_limit: float | None,
    api_keys: tuple[str, ...],
    market: str | None,
) -> None:
    """Serve both APIs over HTTP until interrupted."""
    try:
        fault_config = FaultConfig.parse(faults, seed)
    except FaultSpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from None
    try:
        market_config = parse_market(market) if market else None
    except MarketSpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--market") from None
    keys = frozenset(k.strip() for k in api_keys if k.strip())
    sandbox = Sandbox(state_file) if state_file else None
    try:
        if sandbox is not None:
            world = sandbox.open(
                boot_seconds=boot_seconds, delete_seconds=delete_seconds, list_lag_seconds=list_lag_seconds
            )
        else:
            world = World(
                boot_seconds=boot_seconds, delete_seconds=delete_seconds, list_lag_seconds=list_lag_seconds
            )
    except SandboxError as exc:
        raise click.ClickException(str(exc)) from None
    api_names()  # every emulated API loaded before the runtime starts: market moments count from then
    runtime = EmulatorRuntime(
        world,
        faults=fault_config,
        latency_seconds=latency_ms / 1000.0,
        rate_limit=rate_limit,
        api_keys=keys or None,
        market=market_config,
    )
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        asyncio.run(_serve(build_server_app(world, runtime), host, port))
    except _Stopped:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if sandbox is not None:
            sandbox.close()


class _Stopped(Exception):
    """SIGINT or SIGTERM after uvicorn's graceful shutdown: leave normally so the sandbox closes."""


def _stop(signum: int, frame: FrameType | None) -> None:
    # uvicorn shuts down on the signal, then raises it again once its own handlers are gone.
    raise _Stopped()
