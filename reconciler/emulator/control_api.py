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


class _Control:
    """The control API's handlers over one runtime (and its world)."""

    def __init__(self, runtime: EmulatorRuntime) -> None:
        self.runtime = runtime
        self.world = runtime.world

    async def ledger(self, request: Request) -> Response:
        query = request.query_params
        entries = self.world.ledger(api=query.get("api"), tenant=query.get("tenant"))
        return JSONResponse({"ledger": [entry.model_dump() for entry in entries], "count": len(entries)})

    def faults_state(self) -> dict[str, Any]:
        faults = self.runtime.faults
        return {
            "spec": faults.config.to_spec(),
            "seed": faults.config.seed,
            "rules": [rule.model_dump(mode="json") for rule in faults.config.rules],
            "counters": faults.counters(),
        }

    async def get_faults(self, request: Request) -> Response:
        return JSONResponse(self.faults_state())

    async def put_faults(self, request: Request) -> Response:
        body = await _body(request)
        spec = body.get("spec", "")
        seed = body.get("seed", self.runtime.faults.config.seed)
        if not isinstance(spec, str) or not isinstance(seed, int):
            return _error("spec must be a string and seed an integer")
        try:
            self.runtime.faults.configure(FaultConfig.parse(spec, seed))
        except FaultSpecError as exc:
            return _error(str(exc))
        return JSONResponse(self.faults_state())

    async def get_hold(self, request: Request) -> Response:
        return JSONResponse(self.runtime.gate.status())

    async def arm_hold(self, request: Request) -> Response:
        body = await _body(request)
        after_writes = body.get("after_writes", 1)
        phase = body.get("phase", "before")
        if not isinstance(after_writes, int) or not isinstance(phase, str):
            return _error("after_writes must be an integer and phase a string")
        try:
            self.runtime.gate.arm(after_writes, phase)
        except ValueError as exc:
            return _error(str(exc))
        return JSONResponse(self.runtime.gate.status())

    async def release(self, request: Request) -> Response:
        released = self.runtime.gate.release()
        return JSONResponse({"released": released} | self.runtime.gate.status())

    def clock_state(self) -> dict[str, Any]:
        now = self.world.now()
        return {"now": iso_time(now), "timestamp": now}

    async def get_clock(self, request: Request) -> Response:
        return JSONResponse(self.clock_state())

    async def advance_clock(self, request: Request) -> Response:
        body = await _body(request)
        seconds = body.get("advance_seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            return _error("advance_seconds must be a number >= 0")
        self.world.clock.advance(float(seconds))
        return JSONResponse(self.clock_state())

    async def stats(self, request: Request) -> Response:
        """GET reads the request counts; DELETE resets them first."""
        if request.method == "DELETE":
            self.runtime.traffic.reset()
        return JSONResponse(self.runtime.traffic.snapshot())

    async def get_market(self, request: Request) -> Response:
        return JSONResponse(self.runtime.market.describe(self.world.now()))

    async def put_market(self, request: Request) -> Response:
        body = await _body(request)
        try:
            config = MarketConfig.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(body)"
            return _error(f"{where}: {first['msg']}")
        self.runtime.market.configure(config, self.world.now())
        return JSONResponse(self.runtime.market.describe(self.world.now()))


async def _bad_request(request: Request, exc: Exception) -> Response:
    return _error(str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return _error(f"{request.method} {request.url.path}: {getattr(exc, 'detail', 'error')}", status)


def build_control_app(runtime: EmulatorRuntime) -> Starlette:
    """The control API over one runtime (and its world)."""
    control = _Control(runtime)
    routes = [
        Route("/ledger", control.ledger, methods=["GET"]),
        Route("/faults", control.get_faults, methods=["GET"]),
        Route("/faults", control.put_faults, methods=["PUT"]),
        Route("/hold", control.get_hold, methods=["GET"]),
        Route("/hold", control.arm_hold, methods=["POST"]),
        Route("/release", control.release, methods=["POST"]),
        Route("/clock", control.get_clock, methods=["GET"]),
        Route("/clock", control.advance_clock, methods=["POST"]),
        Route("/stats", control.stats, methods=["GET"]),
        Route("/stats", control.stats, methods=["DELETE"]),
        Route("/market", control.get_market, methods=["GET"]),
        Route("/market", control.put_market, methods=["PUT"]),
    ]
    return Starlette(routes=routes, exception_handlers={_BadRequest: _bad_request, HTTPException: _http_error})
