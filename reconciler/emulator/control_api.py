"""`/_emulator/`: the control API tests and benchmarks drive the emulator with.

Not part of either provider API and not authenticated. Errors are `{"error": message}`.

- `GET  /ledger[?api=&tenant=]`  every resource ever created, with status and times
- `GET  /faults`, `PUT /faults {"spec": "...", "seed": 0}`  read or replace the fault rules
- `POST /hold {"after_writes": N, "phase": "before"|"after"}`  hold the Nth mutating
  request from now, before it is applied or after it is applied and before it is answered
- `GET  /hold`  whether a hold is armed, whether a request is held, the write count
- `POST /release`  let the held request go (or disarm the hold)
- `GET  /clock`, `POST /clock {"advance_seconds": x}`  read or advance the world's clock
- `GET  /stats`, `DELETE /stats`  request counts per api.kind.verb, or reset them
- `GET  /market`, `PUT /market {MarketConfig}`  read or replace the capacity market (machines
  per offering, schedule, reclaims; see `reconciler.emulator.market`), with every moment resolved
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reconciler.emulator.faults import FaultConfig, FaultSpecError
from reconciler.emulator.market import MarketConfig
from reconciler.emulator.records import iso_time
from reconciler.emulator.runtime import EmulatorRuntime


class _BadRequest(Exception):
    pass


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise _BadRequest("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _BadRequest("body must be a JSON object")
    return body


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def build_control_app(runtime: EmulatorRuntime) -> Starlette:
    """The control API over one runtime (and its world)."""
    world = runtime.world

    async def ledger(request: Request) -> Response:
        entries = world.ledger(api=request.query_params.get("api"), tenant=request.query_params.get("tenant"))
        return JSONResponse({"ledger": [entry.model_dump() for entry in entries], "count": len(entries)})

    def faults_state() -> dict[str, Any]:
        config = runtime.faults.config
        return {
            "spec": config.to_spec(),
            "seed": config.seed,
            "rules": [rule.model_dump(mode="json") for rule in config.rules],
            "counters": runtime.faults.counters(),
        }

    async def get_faults(request: Request) -> Response:
        return JSONResponse(faults_state())

    async def put_faults(request: Request) -> Response:
        body = await _body(request)
        spec = body.get("spec", "")
        seed = body.get("seed", runtime.faults.config.seed)
        if not isinstance(spec, str) or not isinstance(seed, int):
            return _error("spec must be a string and seed an integer")
        try:
            runtime.faults.configure(FaultConfig.parse(spec, seed))
        except FaultSpecError as exc:
            return _error(str(exc))
        return JSONResponse(faults_state())

    async def get_hold(request: Request) -> Response:
        return JSONResponse(runtime.gate.status())

    async def arm_hold(request: Request) -> Response:
        body = await _body(request)
        after_writes = body.get("after_writes", 1)
        phase = body.get("phase", "before")
        if not isinstance(after_writes, int) or not isinstance(phase, str):
            return _error("after_writes must be an integer and phase a string")
        try:
            runtime.gate.arm(after_writes, phase)
        except ValueError as exc:
            return _error(str(exc))
        return JSONResponse(runtime.gate.status())

    async def release(request: Request) -> Response:
        released = runtime.gate.release()
        return JSONResponse({"released": released} | runtime.gate.status())

    def clock_state() -> dict[str, Any]:
        now = world.now()
        return {"now": iso_time(now), "timestamp": now}

    async def get_clock(request: Request) -> Response:
        return JSONResponse(clock_state())

    async def advance_clock(request: Request) -> Response:
        body = await _body(request)
        seconds = body.get("advance_seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            return _error("advance_seconds must be a number >= 0")
        world.clock.advance(float(seconds))
        return JSONResponse(clock_state())

    async def get_stats(request: Request) -> Response:
        return JSONResponse(runtime.traffic.snapshot())

    async def reset_stats(request: Request) -> Response:
        runtime.traffic.reset()
        return JSONResponse(runtime.traffic.snapshot())

    async def get_market(request: Request) -> Response:
        return JSONResponse(runtime.market.describe(world.now()))

    async def put_market(request: Request) -> Response:
        body = await _body(request)
        try:
            config = MarketConfig.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(body)"
            return _error(f"{where}: {first['msg']}")
        runtime.market.configure(config, world.now())
        return JSONResponse(runtime.market.describe(world.now()))

    async def bad_request(request: Request, exc: Exception) -> Response:
        return _error(str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return _error(f"{request.method} {request.url.path}: {getattr(exc, 'detail', 'error')}", status)

    routes = [
        Route("/ledger", ledger, methods=["GET"]),
        Route("/faults", get_faults, methods=["GET"]),
        Route("/faults", put_faults, methods=["PUT"]),
        Route("/hold", get_hold, methods=["GET"]),
        Route("/hold", arm_hold, methods=["POST"]),
        Route("/release", release, methods=["POST"]),
        Route("/clock", get_clock, methods=["GET"]),
        Route("/clock", advance_clock, methods=["POST"]),
        Route("/stats", get_stats, methods=["GET"]),
        Route("/stats", reset_stats, methods=["DELETE"]),
        Route("/market", get_market, methods=["GET"]),
        Route("/market", put_market, methods=["PUT"]),
    ]
    return Starlette(routes=routes, exception_handlers={_BadRequest: bad_request, HTTPException: http_error})
