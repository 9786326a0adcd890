"""ASGI applications: each API on its own, and all together for `emulator serve`.

Server layout (`build_server_app`), one mount per registered provider's emulated API:

    /shadeform/v1/...   the Shadeform API      (real: https://api.shadeform.ai/v1)
    /forward/v1/...     the Forward Compute API (real: https://api.forwardcompute.ai/v1)
    /_emulator/...      the control API

In-process layout (`build_api_app`, one per API, used by EmbeddedCloud): `/v1/...` and
`/_emulator/...`.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount

from reconciler.emulator.control_api import build_control_app
from reconciler.emulator.runtime import ApiError, EmulatedApi, EmulatorRuntime, Problem
from reconciler.emulator.world import World
from reconciler.provider_spec import provider_specs


def emulated_apis() -> dict[str, EmulatedApi]:
    """The emulated API of every registered provider that has one, by provider name."""
    return {name: spec.emulator() for name, spec in provider_specs().items() if spec.emulator is not None}


def api_names() -> tuple[str, ...]:
    return tuple(emulated_apis())


def emulated_api(api: str) -> EmulatedApi:
    """One provider's emulated API; ValueError naming the known ones for any other name."""
    apis = emulated_apis()
    if api not in apis:
        raise ValueError(f"unknown api {api!r} (one of {', '.join(apis)})")
    return apis[api]


def build_api_routes_app(runtime: EmulatorRuntime, api: str) -> Starlette:
    """One API's routes, relative to its `/v1` root; unknown paths answer in the API's error shape."""
    emulated = emulated_api(api)
    dialect, endpoints = emulated.dialect, emulated.endpoints

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 405:
            error = ApiError(
                405, Problem.METHOD_NOT_ALLOWED, f"method {request.method} not allowed on {request.url.path}"
            )
        else:
            error = ApiError(
                status, Problem.NOT_FOUND, f"no such endpoint: {request.method} {request.url.path}"
            )
        response = dialect.error_response(error)
        allow = exc.headers.get("Allow") if isinstance(exc, HTTPException) and exc.headers else None
        if allow:
            response.headers["Allow"] = allow
        return response

    return Starlette(
        routes=runtime.routes(dialect, endpoints), exception_handlers={HTTPException: http_error}
    )


async def _unknown_path(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return JSONResponse({"error": f"no such path: {request.url.path}"}, status_code=status)


def build_api_app(runtime: EmulatorRuntime, api: str) -> Starlette:
    """One API mounted at `/v1`, plus the control API at `/_emulator` (the in-process layout)."""
    return Starlette(
        routes=[
            Mount("/v1", build_api_routes_app(runtime, api)),
            Mount("/_emulator", build_control_app(runtime)),
        ],
        exception_handlers={HTTPException: _unknown_path},
    )


def build_server_app(world: World, runtime: EmulatorRuntime | None = None) -> Starlette:
    """Every API and the control API under one server (see the module docstring for paths)."""
    runtime = runtime or EmulatorRuntime(world)
    if runtime.world is not world:
        raise ValueError("the runtime serves another world")
    app = Starlette(
        routes=[
            *(Mount(f"/{api}/v1", build_api_routes_app(runtime, api)) for api in api_names()),
            Mount("/_emulator", build_control_app(runtime)),
        ],
        exception_handlers={HTTPException: _unknown_path},
    )
    app.state.runtime = runtime
    return app
