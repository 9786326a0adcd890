"""The request pipeline both emulated APIs share.

Every call goes through `EmulatorRuntime.serve`: count it, authenticate, rate-limit,
number it if it writes and stop there if a hold is armed for it, decide faults, run the
handler, journal the changed records, hold again if asked to ("applied, not answered"),
then answer, or drop the connection for a lost response or a timeout.

Errors are raised as `ApiError` with an API-neutral `Problem`; each API's `Dialect`
renders them in its own error body.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from reconciler.emulator.faults import FaultConfig, FaultDecision, FaultInjector, FaultKind, Operation
from reconciler.emulator.market import Market, MarketConfig, reclaim_targets
from reconciler.emulator.records import tenant_id
from reconciler.emulator.world import World


class Problem(str, Enum):
    """What went wrong, before an API names it."""

    VALIDATION = "validation"
    AUTHENTICATION = "authentication"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    CAPACITY = "capacity"
    RATE_LIMITED = "rate_limited"
    SERVER = "server"


class ApiError(Exception):
    """An error answer. `code` refines the problem for APIs that expose one (Shadeform)."""

    def __init__(
        self,
        status: int,
        problem: Problem,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem
        self.message = message
        self.field = field
        self.code = code
        self.retry_after = retry_after


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, Problem.NOT_FOUND, f"{what} {ident} not found", field="id")


def invalid(message: str, field: str | None = None) -> ApiError:
    return ApiError(400, Problem.VALIDATION, message, field=field)


class ConnectionDropped(Exception):
    """Raised out of the app to make the connection drop without a complete answer."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"connection dropped by fault injection ({reason})")
        self.reason = reason


class DroppedResponse(Response):
    """Starts an answer and drops the connection mid-body.

    Starting the answer first matters for real servers: an exception before any byte is
    sent makes them answer 500 instead of closing the connection.
    """

    def __init__(self, reason: str, hold_seconds: float = 0.0) -> None:
        super().__init__(status_code=200)
        self.reason = reason
        self.hold_seconds = hold_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.hold_seconds > 0:
            await _wait_for_disconnect(receive, self.hold_seconds)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
            }
        )
        await send({"type": "http.response.body", "body": b"{", "more_body": True})
        raise ConnectionDropped(self.reason)


async def _wait_for_disconnect(receive: Receive, seconds: float) -> None:
    async def until_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    try:
        await asyncio.wait_for(until_disconnect(), timeout=seconds)
    except TimeoutError:
        return


class Dialect(Protocol):
    """How one API authenticates and renders errors."""

    @property
    def api(self) -> str: ...

    def api_key(self, request: Request) -> str | None:
        """The caller's API key, or None when none was given."""
        ...

    def error_response(self, error: ApiError) -> Response: ...


@dataclass
class Call:
    """What a handler gets: the caller's tenant, the parsed body and the fault decision."""

    request: Request
    tenant: str
    body: dict[str, Any]
    faults: FaultDecision
    world: World
    market: Market = field(default_factory=Market)

    def query(self, name: str) -> str | None:
        return self.request.query_params.get(name)

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])


Handler = Callable[[Call], Response]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    operation: Operation
    handler: Handler
    authenticated: bool = True


@dataclass(frozen=True)
class EmulatedApi:
    """One emulated API as a provider's spec names it: its dialect and its endpoints."""

    dialect: Dialect
    endpoints: Sequence[Endpoint]
    cached_lists: bool = False  # lists are served from a cache that may lag writes (`lag` faults)

    @property
    def name(self) -> str:
        return self.dialect.api

    @property
    def operations(self) -> tuple[Operation, ...]:
        return tuple(dict.fromkeys(endpoint.operation for endpoint in self.endpoints))


_ModelT = TypeVar("_ModelT", bound=BaseModel)


def parse_body(model: type[_ModelT], body: dict[str, Any]) -> _ModelT:
    """Validate a request body, turning the first pydantic error into a 400."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise invalid(f"{where}: {first['msg']}" if where else first["msg"], field=where or None) from None


class Traffic:
    """Request counts per operation (`shadeform.instances.create`), for tests and benchmarks."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.writes = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(sorted(self.requests.items())),
            "total": sum(self.requests.values()),
            "writes": self.writes,
        }

    def reset(self) -> None:
        """Forget request counts; the write count goes on, since holds are numbered by it."""
        self.requests.clear()


@dataclass
class HoldState:
    target: int
    phase: str
    event: asyncio.Event = field(default_factory=asyncio.Event)
    held: str | None = None


class WriteGate:
    """Numbers mutating requests and holds the chosen one until released (crash tests)."""

    PHASES = ("before", "after")

    def __init__(self, traffic: Traffic) -> None:
        self._traffic = traffic
        self._hold: HoldState | None = None

    def arm(self, after_writes: int, phase: str) -> None:
        """Hold the `after_writes`-th mutating request from now, `before` or `after` it is applied."""
        if after_writes < 1:
            raise ValueError("after_writes must be at least 1")
        if phase not in self.PHASES:
            raise ValueError("phase must be 'before' or 'after'")
        self.release()
        self._hold = HoldState(target=self._traffic.writes + after_writes, phase=phase)

    def arrive(self) -> int:
        self._traffic.writes += 1
        return self._traffic.writes

    async def pass_phase(self, ordinal: int, phase: str, op: Operation) -> None:
        hold = self._hold
        if hold is None or hold.target != ordinal or hold.phase != phase:
            return
        hold.held = op.key
        await hold.event.wait()
        if self._hold is hold:
            self._hold = None

    def release(self) -> bool:
        """Let a held request go (or disarm a hold not reached yet); True if one was held."""
        hold, self._hold = self._hold, None
        if hold is None:
            return False
        hold.event.set()
        return hold.held is not None

    def status(self) -> dict[str, Any]:
        hold = self._hold
        return {
            "armed": hold is not None,
            "held": hold is not None and hold.held is not None,
            "operation": hold.held if hold else None,
            "phase": hold.phase if hold else None,
            "target_write": hold.target if hold else None,
            "writes": self._traffic.writes,
        }


class RateLimiter:
    """Token bucket per (api, tenant) on the world's clock: `rate` requests per second, burst `rate`."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def retry_after(self, key: tuple[str, str], now: float) -> float | None:
        """Take a token; None if granted, else the seconds until one is free."""
        if not self.rate:
            return None
        capacity = max(1.0, self.rate)
        tokens, last = self._buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + max(0.0, now - last) * self.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return None
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate


class EmulatorRuntime:
    """Faults, statistics, holds and rate limits around one World, shared by both APIs."""

    def __init__(
        self,
        world: World,
        *,
        faults: FaultConfig | None = None,
        latency_seconds: float = 0.0,
        rate_limit: float | None = None,
        in_process: bool = False,
        api_keys: frozenset[str] | None = None,
        market: MarketConfig | None = None,
    ) -> None:
        self.world = world
        self.faults = FaultInjector(faults)
        self.market = Market(market, world.now())
        # None: any non-empty key is a tenant; otherwise only these keys are (others get 401).
        self.api_keys = api_keys
        self.latency_seconds = latency_seconds
        self.limiter = RateLimiter(rate_limit)
        self.traffic = Traffic()
        self.gate = WriteGate(self.traffic)
        self.in_process = in_process

    def routes(self, dialect: Dialect, endpoints: Sequence[Endpoint]) -> list[BaseRoute]:
        """Starlette routes for the endpoints, each path with and without a trailing slash.

        One route per path carries all its methods, so another method gets a 405 whose
        `Allow` header lists them all.
        """
        by_path: dict[str, dict[str, Endpoint]] = {}
        for endpoint in endpoints:
            by_path.setdefault(endpoint.path.rstrip("/"), {})[endpoint.method] = endpoint
        routes: list[BaseRoute] = []
        for path, methods in by_path.items():
            serve = self._bind(dialect, methods)
            routes.append(Route(path, serve, methods=list(methods)))
            routes.append(Route(path + "/", serve, methods=list(methods)))
        return routes

    def _bind(self, dialect: Dialect, methods: dict[str, Endpoint]) -> Callable[[Request], Any]:
        async def serve(request: Request) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            return await self.serve(request, dialect, methods[method])

        return serve

    async def serve(self, request: Request, dialect: Dialect, endpoint: Endpoint) -> Response:
        op = endpoint.operation
        self.traffic.requests[op.key] += 1
        try:
            tenant = self._tenant(request, dialect, endpoint)
            body = await _json_body(request) if request.method in ("POST", "PUT", "PATCH") else {}
        except ApiError as error:
            return dialect.error_response(error)
        ordinal = self.gate.arrive() if op.mutating else 0
        if ordinal:
            await self.gate.pass_phase(ordinal, "before", op)
        decision = self.faults.decide(op)
        delay = self.latency_seconds + decision.latency
        if delay > 0:
            await asyncio.sleep(delay)
        refusal = decision.refusal
        if refusal is not None:
            if refusal.fault is FaultKind.TIMEOUT:
                return DroppedResponse("timeout", 0.0 if self.in_process else refusal.hold_seconds)
            if refusal.fault is FaultKind.RATE_LIMIT:
                return dialect.error_response(_rate_limited(refusal.retry_after))
            return dialect.error_response(_injected_status(refusal.status))
        self._carry_out_reclaims()
        try:
            response = endpoint.handler(Call(request, tenant, body, decision, self.world, self.market))
        except ApiError as error:
            response = dialect.error_response(error)
        if ordinal:
            self.world.commit()
            await self.gate.pass_phase(ordinal, "after", op)
        if decision.lost_response:
            return DroppedResponse("lost_response")
        return response

    def _carry_out_reclaims(self) -> None:
        """Start deleting the instances the market has reclaimed by now (journaled at once)."""
        due = self.market.due_reclaims(self.world.now()) if self.market.enabled else []
        if not due:
            return
        instances = self.world.all_instances()
        for moment, reclaim in due:
            for record in reclaim_targets(reclaim, instances, moment):
                record.deleted_at = moment
                record.deletion_reason = reclaim.reason
                record.delete_seconds = self.world.delete_seconds
                self.world.changed(record)
        self.world.commit()

    def _tenant(self, request: Request, dialect: Dialect, endpoint: Endpoint) -> str:
        key = dialect.api_key(request)
        if key is not None and self.api_keys is not None and key not in self.api_keys:
            if endpoint.authenticated:
                raise ApiError(401, Problem.AUTHENTICATION, "invalid API key")
            key = None
        if key is None:
            if endpoint.authenticated:
                raise ApiError(401, Problem.AUTHENTICATION, "missing or invalid API key")
            return ""
        tenant = tenant_id(key)
        wait = self.limiter.retry_after((dialect.api, tenant), self.world.now())
        if wait is not None:
            raise _rate_limited(wait)
        return tenant


def _rate_limited(retry_after: float) -> ApiError:
    seconds = max(1, math.ceil(retry_after))
    return ApiError(
        429,
        Problem.RATE_LIMITED,
        f"rate limit exceeded; retry after {seconds} s",
        retry_after=seconds,
    )


_INJECTED_PROBLEMS = {
    401: Problem.AUTHENTICATION,
    404: Problem.NOT_FOUND,
    405: Problem.METHOD_NOT_ALLOWED,
    409: Problem.CONFLICT,
    429: Problem.RATE_LIMITED,
}


def _injected_status(status: int) -> ApiError:
    if status >= 500:
        return ApiError(status, Problem.SERVER, f"upstream failure (HTTP {status}); try again")
    return ApiError(
        status, _INJECTED_PROBLEMS.get(status, Problem.VALIDATION), f"request refused (HTTP {status})"
    )


# Larger bodies are refused before they are read whole; no request of either API needs 1 MiB.
MAX_BODY_BYTES = 1 << 20


async def _json_body(request: Request) -> dict[str, Any]:
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, Problem.VALIDATION, f"request body is larger than {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise invalid("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise invalid("request body must be a JSON object")
    return body
