"""HTTP plumbing shared by the provider adapters: pacing, retries, error typing, call counts,
and the few wire formats both APIs share (env lists, decimal strings, volume offerings).

Each adapter owns one `ApiClient`. The client paces requests with a `TokenBucket`, retries
what is safe to retry, turns every failure into a typed `ProviderError` and counts every
request it sends (`calls`, keyed by method and route template, e.g. "GET /instances").

Retry rules, because reconciler handles money:
- reads, deletes and updates are retried on 429 (honouring Retry-After), 5xx, timeouts and
  dropped connections, with exponential backoff and jitter, up to `max_retries` times;
- a create is retried only when the API cannot have acted on it: a 429, or a connection
  that never opened. If the request may have reached the API (timeout, dropped connection,
  5xx, unreadable answer) the create raises `CreateOutcomeUnknown` (a ProviderError)
  and the caller looks the resource up by its ownership marker instead of creating twice.

The API key is sent in a header and never appears in messages: API answers that echo it
are redacted before they become part of an exception.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from reconciler.errors import (
    AuthError,
    CapacityError,
    ConfigError,
    CreateOutcomeUnknown,
    NotFoundError,
    ProviderError,
)
from reconciler.model import Kind
from reconciler.providers.base import ProviderSettings
from reconciler.redaction import Scrubber

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

# A Retry-After longer than this is not waited out inside one call: the error is raised
# (retryable, with retry_after set) so the caller decides.
MAX_HONOURED_RETRY_AFTER_SECONDS = 60.0
CREATE_OUTCOME_UNKNOWN = CreateOutcomeUnknown.ERROR_TYPE
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
BACKOFF_JITTER_SECONDS = 0.5
_MAX_MESSAGE_CHARS = 500


@dataclass(frozen=True)
class ApiErrorBody:
    """What an API said about a failed request, whatever shape its error body had."""

    type: str | None
    message: str
    field: str | None = None


CapacityTest = Callable[[int, ApiErrorBody], bool]


class TokenBucket:
    """Paces requests to one API at `rate` per second, bursting up to one second's worth.

    Adapts like TCP (AIMD): a 429 halves the rate (at most once per second, never below
    1/s or the configured rate if that is lower) and empties the bucket; each success then adds back a twentieth of
    the configured rate until it is reached again. The clock and sleep are injectable so
    tests run on a fake clock.
    """

    RECOVERY_SUCCESSES = 20

    def __init__(
        self,
        rate_per_second: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate_per_second <= 0:
            raise ValueError(f"rate_per_second must be positive, got {rate_per_second}")
        self.max_rate = rate_per_second
        self.min_rate = min(1.0, rate_per_second)
        self._rate = rate_per_second
        self._clock = clock
        self._sleep = sleep
        self._tokens = self._capacity
        self._updated = clock()
        self._last_throttle: float | None = None
        self._lock = asyncio.Lock()

    @property
    def rate(self) -> float:
        """The current pace in requests per second."""
        return self._rate

    @property
    def _capacity(self) -> float:
        return max(1.0, self._rate)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    async def acquire(self) -> None:
        """Wait until a request may be sent; waiters are served in arrival order."""
        async with self._lock:
            self._refill()
            while self._tokens < 1.0:
                await self._sleep((1.0 - self._tokens) / self._rate)
                self._refill()
            self._tokens -= 1.0

    def throttled(self) -> None:
        """The API answered 429: halve the pace and drop the saved-up burst.

        429s that arrive together (answers to requests sent in one burst) are one signal:
        the pace is halved at most once per second.
        """
        self._refill()
        now = self._clock()
        if self._last_throttle is None or now - self._last_throttle >= 1.0:
            self._rate = max(self.min_rate, self._rate / 2)
            self._last_throttle = now
        self._tokens = min(self._tokens, 0.0)

    def succeeded(self) -> None:
        """A request went through: creep back toward the configured pace."""
        if self._rate < self.max_rate:
            self._refill()
            self._rate = min(self.max_rate, self._rate + self.max_rate / self.RECOVERY_SUCCESSES)


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter after the `attempt`-th failure: 0.5 s, 1 s, 2 s ... 30 s,
    plus up to 0.5 s at random so clients that failed together do not retry together."""
    return min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (attempt - 1)) + random.uniform(
        0, BACKOFF_JITTER_SECONDS
    )


def resolve_base_url(
    settings: ProviderSettings, default: str, transport: httpx.AsyncBaseTransport | None
) -> str:
    """Where requests go: an http(s) `endpoint`, else `options["base_url"]`, else `default`.

    `endpoint: embedded` needs the emulator's transport; without one the client would send
    an emulator key to the real API, so that is refused.
    """
    endpoint = settings.endpoint.strip()
    if endpoint.startswith(("http://", "https://")):
        return endpoint
    if not settings.embedded:
        raise ConfigError(
            f"endpoint {endpoint!r} is neither 'embedded' nor an http(s) URL",
            field=f"providers.{settings.name}.endpoint",
            hint=f"use 'embedded' for the built-in emulator or the API URL, e.g. {default}",
        )
    if transport is None:
        raise ConfigError(
            "the embedded endpoint runs the built-in emulator, which needs its transport",
            field=f"providers.{settings.name}.endpoint",
        )
    return str(settings.options.get("base_url") or default)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def read_error_body(response: httpx.Response) -> ApiErrorBody:
    """Read an error answer leniently: `{"error": {type, message, field}}`, `{"error": "..."}`,
    `{"message": ...}`, `{"detail": ...}` or plain text all give a message."""
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip()
        return ApiErrorBody(None, text[:_MAX_MESSAGE_CHARS] or response.reason_phrase or "no message")
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            return ApiErrorBody(
                _text_or_none(error.get("type") or error.get("code")),
                str(error.get("message") or error.get("detail") or response.reason_phrase or "no message"),
                _text_or_none(error.get("field")),
            )
        message = data.get("message") or data.get("detail") or error or response.reason_phrase
        error_type = data.get("type") or data.get("error_code") or data.get("code")
        if isinstance(message, list | dict):
            message = str(message)
        return ApiErrorBody(
            _text_or_none(error_type), str(message or "no message"), _text_or_none(data.get("field"))
        )
    return ApiErrorBody(None, str(data)[:_MAX_MESSAGE_CHARS])


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def envs_to_api(envs: Any) -> list[dict[str, str]]:
    """`{NAME: value}` (canonical) or an API-style list -> `[{"name", "value"}]`."""
    if isinstance(envs, dict):
        return [{"name": str(k), "value": str(v)} for k, v in envs.items()]
    return [{"name": str(e["name"]), "value": str(e["value"])} for e in envs or []]


def envs_from_api(envs: Any) -> dict[str, str]:
    """`[{"name", "value"}]` -> `{NAME: value}`; malformed entries are skipped."""
    if isinstance(envs, dict):
        return {str(k): str(v) for k, v in envs.items()}
    return {
        str(e["name"]): str(e.get("value", ""))
        for e in envs or []
        if isinstance(e, dict) and e.get("name") is not None
    }


def parse_decimal(value: Any) -> float | None:
    """A price sent as a number or a decimal string ("24.12"); None when absent or malformed."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


_IN_USE_WORDS = ("mount", "in use", "attached")


def in_use_error(error: ProviderError, kind: Kind, id: str) -> ProviderError | None:
    """A refused delete of a volume or key that an instance still uses, as a retryable error.

    The instance holding it may itself be deleting, so trying again later can succeed;
    None when `error` is not that refusal.
    """
    if kind is Kind.INSTANCE or error.status is None or not 400 <= error.status < 500:
        return None
    if error.status == 404 or not any(word in error.message.lower() for word in _IN_USE_WORDS):
        return None
    return ProviderError(
        f"{kind.singular} {id} is still in use and cannot be deleted yet ({error.message})",
        provider=error.provider,
        status=error.status,
        error_type=error.error_type or "resource_in_use",
        retryable=True,
        hint="the instance using it may still be deleting; retry once it is gone",
    )


def api_key_problem(key: str) -> str | None:
    """What makes `key` unusable as sent in a header (never quoting the key), or None.

    A key is refused rather than trimmed: one pasted with its newline or a stray space is a
    copy that went wrong, and sending a trimmed guess could authenticate as someone else.
    """
    if key.endswith(("\n", "\r")):
        return "ends with a line break (a secret saved with its trailing newline?)"
    if key != key.strip():
        return "starts or ends with whitespace"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        return "contains a line break, tab or other control character"
    if not key.isascii():
        return "contains a non-ASCII character"
    return None


class ApiClient:
    """One authenticated HTTP client for one provider API, with pacing and retries."""

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        api_key: str | None,
        auth_header: str,
        auth_scheme: str,
        key_env_var: str,
        timeout_seconds: float,
        max_retries: int,
        rate_limit_per_second: float,
        is_capacity_error: CapacityTest,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        self.provider = provider
        self.key_env_var = key_env_var
        self.max_retries = max_retries
        self.calls: collections.Counter[str] = collections.Counter()
        self.bucket = TokenBucket(rate_limit_per_second, clock=clock, sleep=sleep)
        self._scrubber = Scrubber([api_key] if api_key else [], replacement="(redacted)")
        self._is_capacity_error = is_capacity_error
        self._sleep = sleep
        headers = {"Accept": "application/json"}
        problem = api_key_problem(api_key) if api_key else None
        if problem:
            raise ConfigError(
                f"the {provider} API key {problem}; it was not sent",
                field=f"providers.{provider}.api_key",
                hint=f"set {key_env_var} (or providers.{provider}.api_key) to the key alone, "
                "without surrounding spaces or line breaks",
            )
        if api_key:
            headers[auth_header] = f"{auth_scheme}{api_key}"
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            transport=transport,
            timeout=httpx.Timeout(timeout_seconds),
        )

    def __repr__(self) -> str:
        return f"ApiClient(provider={self.provider!r}, base_url={str(self._client.base_url)!r})"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        route: str,
        *,
        ids: dict[str, str] | None = None,
        json: Any = None,
        params: dict[str, str] | None = None,
        create: bool = False,
    ) -> Any:
        """Send one logical request and return its JSON answer (None for an empty body).

        `route` is a template such as "/instances/{id}/info" filled from `ids` (URL-quoted);
        the template, not the filled path, keys `calls`. `create=True` applies the
        never-blindly-retry rule described in the module docstring.
        """
        path = route.format(**{k: quote(v, safe="") for k, v in (ids or {}).items()})
        call = f"{method} {route}"
        retrying = AsyncRetrying(
            # A create is sent once: the caller retries it, after re-recording the moment it
            # is sent, so a crash recovery's list-lag window is counted from the real send.
            stop=stop_after_attempt(1 if create else self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(self._retry_now),
            sleep=self._sleep,
            reraise=True,
        )
        return await retrying(self._send_once, method, path, call, json, params, create)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ProviderError) and error.retry_after is not None:
            return error.retry_after
        return backoff_seconds(state.attempt_number)

    @staticmethod
    def _retry_now(error: BaseException) -> bool:
        if not isinstance(error, ProviderError) or not error.retryable:
            return False
        return error.retry_after is None or error.retry_after <= MAX_HONOURED_RETRY_AFTER_SECONDS

    async def _send_once(
        self, method: str, path: str, call: str, body: Any, params: dict[str, str] | None, create: bool
    ) -> Any:
        await self.bucket.acquire()
        self.calls[call] += 1
        started = time.perf_counter()
        try:
            response = await self._client.request(method, path, json=body, params=params)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # The connection never opened: the API cannot have seen the request.
            raise self._error(
                f"could not connect ({type(exc).__name__}: {exc})",
                error_type="connection_error",
                retryable=True,
            ) from None
        except httpx.TimeoutException as exc:
            raise self._sent_failure(
                create, f"no answer in time ({type(exc).__name__})", error_type="timeout"
            ) from None
        except httpx.TransportError as exc:
            raise self._sent_failure(
                create, f"connection dropped ({type(exc).__name__}: {exc})", error_type="connection_lost"
            ) from None
        logger.debug(
            "%s %s %s -> %s (%.1f ms)",
            self.provider,
            method,
            path,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        if response.is_success:
            self.bucket.succeeded()
            return self._json(response, create)
        raise self._status_error(response, create)

    def _json(self, response: httpx.Response, create: bool) -> Any:
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError:
            message = f"answered {response.status_code} with a body that is not JSON"
            if create:
                raise self.create_outcome_unknown(message, response.status_code) from None
            raise self._error(message, status=response.status_code, error_type="invalid_response") from None

    def _status_error(self, response: httpx.Response, create: bool) -> ProviderError:
        status = response.status_code
        body = read_error_body(response)
        message = self._redact(body.message)
        if body.field:
            message = f"{message} (field: {self._redact(body.field)})"
        if status == 429:
            self.bucket.throttled()
            return self._error(
                message,
                status=status,
                error_type=body.type or "rate_limited",
                retryable=True,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status >= 500 and create:
            # Whatever a 5xx says (even "capacity"), the write may have happened.
            return self.create_outcome_unknown(f"{status} {body.type or 'server error'}: {message}", status)
        if status >= 500 and not self._is_capacity_error(status, body):
            return self._error(
                message,
                status=status,
                error_type=body.type or "server_error",
                retryable=True,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status in (401, 403):
            # One line that names where the key comes from, never the key or the API's words about it.
            return AuthError(
                f"the API key was refused; set {self.key_env_var} to a valid {self.provider} API key",
                provider=self.provider,
                status=status,
                error_type=body.type,
            )
        if status == 404:
            return NotFoundError(message, provider=self.provider, status=status, error_type=body.type)
        if self._is_capacity_error(status, body):
            return CapacityError(message, provider=self.provider, status=status, error_type=body.type)
        return self._error(message, status=status, error_type=body.type)

    def _sent_failure(self, create: bool, message: str, *, error_type: str) -> ProviderError:
        if create:
            return self.create_outcome_unknown(message, None)
        return self._error(message, error_type=error_type, retryable=True)

    def create_outcome_unknown(self, what: str, status: int | None) -> CreateOutcomeUnknown:
        """The error for a create that may or may not have happened (never retried blindly)."""
        return CreateOutcomeUnknown(
            self._redact(f"create request failed after it was sent ({what}); the resource may exist"),
            provider=self.provider,
            status=status,
            hint="look the resource up by its ownership marker before creating it again",
        )

    def _error(
        self,
        message: str,
        *,
        status: int | None = None,
        error_type: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> ProviderError:
        return ProviderError(
            self._redact(message),
            provider=self.provider,
            status=status,
            error_type=error_type,
            retryable=retryable,
            retry_after=retry_after,
            hint=hint,
        )

    def _redact(self, text: str) -> str:
        return self._scrubber.scrub(text)
