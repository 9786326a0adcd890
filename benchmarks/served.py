"""An emulated world served over real HTTP from a background thread.

The footprint scenario measures a separate reconciler process, so the cloud it talks to
must live elsewhere: here, in the benchmark process, on 127.0.0.1 and a free port.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from reconciler.emulator.runtime import EmulatorRuntime
from reconciler.emulator.server import build_server_app
from reconciler.emulator.world import World

STARTUP_DEADLINE_SECONDS = 30.0


class ServedWorld:
    """`with ServedWorld(world) as served:` serves both APIs at `served.url(api)` until exit."""

    def __init__(self, world: World, latency_seconds: float = 0.0) -> None:
        self.runtime = EmulatorRuntime(world, latency_seconds=latency_seconds)
        config = uvicorn.Config(
            build_server_app(world, self.runtime), lifespan="off", access_log=False, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="served-world", daemon=True
        )

    def url(self, api: str) -> str:
        return f"http://127.0.0.1:{self.port}/{api}/v1"

    def __enter__(self) -> ServedWorld:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the emulator server did not start")
            time.sleep(0.01)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=STARTUP_DEADLINE_SECONDS)
        self._socket.close()
