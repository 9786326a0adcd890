"""The shared HTTP plumbing: token bucket, Retry-After, error bodies, retries and redaction."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from support import FakeClock

from reconciler.errors import AuthError, CapacityError, ConfigError, NotFoundError, ProviderError
from reconciler.model import Kind
from reconciler.providers.base import ProviderSettings
from reconciler.providers.http import (
    CREATE_OUTCOME_UNKNOWN,
    MAX_HONOURED_RETRY_AFTER_SECONDS,
    ApiClient,
    TokenBucket,
    envs_from_api,
    envs_to_api,
    in_use_error,
    parse_decimal,
    parse_retry_after,
    read_error_body,
    resolve_base_url,
)

API_KEY = "sk-test-5ecret-key-value"


Handler = Callable[[httpx.Request], httpx.Response]


def make_client(
    handler: Handler, clock: FakeClock, *, max_retries: int = 3, rate: float = 1000.0, **kwargs: Any
) -> ApiClient:
    return ApiClient(
        provider="testapi",
        base_url="https://api.example.test/v1",
        api_key=API_KEY,
        auth_header="X-API-KEY",
        auth_scheme="",
        key_env_var="TESTAPI_API_KEY",
        timeout_seconds=5.0,
        max_retries=max_retries,
        rate_limit_per_second=rate,
        is_capacity_error=lambda status, body: "capacity" in body.message,
        transport=httpx.MockTransport(handler),
        sleep=clock.sleep,
        clock=clock,
        **kwargs,
    )


def scripted(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler answering each request with the next scripted response (or raising it)."""
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return handler, seen


def assert_key_absent(error: BaseException) -> None:
    for text in (
        str(error),
        repr(error),
        error.args and str(error.args[0]) or "",
        getattr(error, "hint", ""),
    ):
        assert API_KEY not in (text or "")


# --- token bucket -----------------------------------------------------------------


async def test_bucket_allows_a_burst_then_paces_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(4.0, clock=clock, sleep=clock.sleep)
    for _ in range(4):
        await bucket.acquire()
    assert clock.sleeps == []
    await bucket.acquire()
    assert clock.sleeps == [pytest.approx(0.25)]
    clock.now += 10.0  # idle time refills, but only up to one second's worth
    for _ in range(4):
        await bucket.acquire()
    assert len(clock.sleeps) == 1


async def test_bucket_serves_concurrent_waiters_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, clock=clock, sleep=clock.sleep)
    await asyncio.gather(*(bucket.acquire() for _ in range(6)))
    # 2 from the burst, then 4 more at 2/s: two seconds of fake time.
    assert clock.now == pytest.approx(2.0)


async def test_bucket_halves_on_throttle_with_a_floor_and_recovers_gradually() -> None:
    clock = FakeClock()
    bucket = TokenBucket(8.0, clock=clock, sleep=clock.sleep)
    bucket.throttled()
    assert bucket.rate == 4.0
    for _ in range(5):
        clock.now += 1.0
        bucket.throttled()
    assert bucket.rate == 1.0  # floor 1/s
    bucket.succeeded()
    assert bucket.rate == pytest.approx(1.4)  # one twentieth of 8/s per success
    for _ in range(100):
        bucket.succeeded()
    assert bucket.rate == 8.0


async def test_a_burst_of_429s_halves_the_rate_once() -> None:
    clock = FakeClock()
    bucket = TokenBucket(8.0, clock=clock, sleep=clock.sleep)
    for _ in range(6):
        bucket.throttled()
    assert bucket.rate == 4.0
    clock.now += 1.0
    bucket.throttled()
    assert bucket.rate == 2.0


async def test_bucket_throttle_drops_the_saved_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, clock=clock, sleep=clock.sleep)
    bucket.throttled()
    await bucket.acquire()
    assert clock.sleeps == [pytest.approx(0.2)]  # 1 token at the halved 5/s


def test_bucket_floor_never_exceeds_a_slow_configured_rate() -> None:
    bucket = TokenBucket(0.5)
    bucket.throttled()
    assert bucket.rate == 0.5


def test_bucket_rejects_non_positive_rates() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0)


# --- parsing ----------------------------------------------------------------------


def test_retry_after_seconds_and_http_dates() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-4") == 0.0
    later = (now + timedelta(seconds=7)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(later, now=now) == pytest.approx(7.0)
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"error": {"type": "not_found", "message": "no such thing", "field": "id"}},
            ("not_found", "no such thing"),
        ),
        ({"error": "boom"}, (None, "boom")),
        ({"message": "bad size", "type": "validation_error"}, ("validation_error", "bad size")),
        ({"detail": "nope"}, (None, "nope")),
    ],
)
def test_error_bodies_of_any_shape_give_a_message(body: dict[str, Any], expected: tuple[Any, str]) -> None:
    parsed = read_error_body(httpx.Response(400, json=body))
    assert (parsed.type, parsed.message) == expected


def test_plain_text_error_body() -> None:
    assert read_error_body(httpx.Response(502, text="Bad gateway\n")).message == "Bad gateway"


def test_envs_round_trip_and_decimals() -> None:
    api = envs_to_api({"A": "1", "B": 2})
    assert api == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert envs_from_api(api + ["junk", {"value": "no name"}]) == {"A": "1", "B": "2"}
    assert parse_decimal("24.12") == 24.12
    assert parse_decimal(3) == 3.0
    assert parse_decimal("n/a") is None and parse_decimal(None) is None and parse_decimal(True) is None


def test_in_use_refusals_become_retryable() -> None:
    refused = ProviderError("volume is mounted by instance abc", provider="x", status=409)
    error = in_use_error(refused, Kind.VOLUME, "vol-1")
    assert error is not None and error.retryable and "vol-1" in str(error)
    assert in_use_error(refused, Kind.INSTANCE, "i-1") is None
    assert in_use_error(ProviderError("bad", provider="x", status=400), Kind.VOLUME, "v") is None


# --- base URL ---------------------------------------------------------------------


def test_base_url_resolution() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200))
    url = ProviderSettings(name="p", endpoint="http://127.0.0.1:8080/v1")
    assert resolve_base_url(url, "https://real/v1", None) == "http://127.0.0.1:8080/v1"
    embedded = ProviderSettings(name="p", options={"base_url": "http://emulator/p/v1"})
    assert resolve_base_url(embedded, "https://real/v1", transport) == "http://emulator/p/v1"
    assert resolve_base_url(ProviderSettings(name="p"), "https://real/v1", transport) == "https://real/v1"
    with pytest.raises(ConfigError, match="transport"):
        resolve_base_url(embedded, "https://real/v1", None)
    with pytest.raises(ConfigError, match="neither"):
        resolve_base_url(ProviderSettings(name="p", endpoint="embeded"), "https://real/v1", transport)


# --- requests and retries ---------------------------------------------------------


async def test_request_sends_key_counts_calls_and_quotes_ids() -> None:
    clock = FakeClock()
    handler, seen = scripted(httpx.Response(200, json={"ok": True}), httpx.Response(200))
    client = make_client(handler, clock)
    assert await client.request("GET", "/things/{id}/info", ids={"id": "a/b"}) == {"ok": True}
    assert await client.request("POST", "/things/{id}/delete", ids={"id": "x"}) is None
    assert seen[0].headers["X-API-KEY"] == API_KEY
    assert seen[0].url.raw_path == b"/v1/things/a%2Fb/info"
    assert client.calls == {"GET /things/{id}/info": 1, "POST /things/{id}/delete": 1}
    assert API_KEY not in repr(client)
    await client.aclose()


async def test_429_is_retried_after_the_retry_after_delay_and_slows_the_bucket() -> None:
    clock = FakeClock()
    handler, seen = scripted(
        httpx.Response(429, headers={"Retry-After": "7"}, json={"error": "slow down"}),
        httpx.Response(200, json={"items": []}),
    )
    client = make_client(handler, clock, rate=10.0)
    assert await client.request("GET", "/things") == {"items": []}
    assert len(seen) == 2
    assert 7.0 in clock.sleeps
    assert client.bucket.rate == pytest.approx(5.5)  # halved to 5, then one success adds 0.5
    assert client.calls["GET /things"] == 2


async def test_5xx_and_timeouts_are_retried_with_growing_backoff() -> None:
    clock = FakeClock()
    handler, seen = scripted(
        httpx.Response(503, json={"error": {"type": "server_error", "message": "try later"}}),
        httpx.ReadTimeout("slow"),
        httpx.Response(500, text="oops"),
        httpx.Response(200, json={"ok": 1}),
    )
    client = make_client(handler, clock, max_retries=3)
    assert await client.request("GET", "/things") == {"ok": 1}
    assert len(seen) == 4
    assert len(clock.sleeps) == 3
    # exponential (0.5, 1, 2) plus up to 0.5 s of jitter each
    for attempt, slept in enumerate(clock.sleeps):
        assert 0.5 * 2**attempt <= slept <= 0.5 * 2**attempt + 0.5


async def test_retries_stop_after_max_retries_with_the_last_error() -> None:
    clock = FakeClock()
    handler, seen = scripted(*[httpx.Response(502, json={"error": "bad gateway"}) for _ in range(3)])
    client = make_client(handler, clock, max_retries=2)
    with pytest.raises(ProviderError) as info:
        await client.request("DELETE", "/things/{id}", ids={"id": "1"})
    assert len(seen) == 3
    assert info.value.status == 502 and info.value.retryable
    assert_key_absent(info.value)


async def test_a_very_long_retry_after_is_left_to_the_caller() -> None:
    clock = FakeClock()
    too_long = str(int(MAX_HONOURED_RETRY_AFTER_SECONDS * 10))
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": too_long}, json={"error": "quota"}))
    client = make_client(handler, clock)
    with pytest.raises(ProviderError) as info:
        await client.request("GET", "/things")
    assert len(seen) == 1
    assert info.value.retryable and info.value.retry_after == float(too_long)


async def test_client_errors_are_typed_and_not_retried() -> None:
    clock = FakeClock()
    handler, seen = scripted(
        httpx.Response(
            401, json={"error": {"type": "authentication_error", "message": "bad key " + API_KEY}}
        ),
        httpx.Response(404, json={"error": {"type": "not_found", "message": "gone"}}),
        httpx.Response(400, json={"error": {"type": "provider_error", "message": "no capacity left"}}),
        httpx.Response(422, json={"error": {"type": "validation_error", "message": "bad", "field": "size"}}),
    )
    client = make_client(handler, clock)
    errors: list[ProviderError] = []
    for _ in range(4):
        with pytest.raises(ProviderError) as info:
            await client.request("GET", "/things")
        errors.append(info.value)
    auth, missing, capacity, invalid = errors
    assert isinstance(auth, AuthError) and "TESTAPI_API_KEY" in str(auth)
    assert isinstance(missing, NotFoundError) and missing.status == 404
    assert isinstance(capacity, CapacityError)
    assert type(invalid) is ProviderError and "field: size" in str(invalid) and not invalid.retryable
    assert len(seen) == 4 and clock.sleeps == []
    for error in errors:
        assert_key_absent(error)


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("server disconnected"),
        httpx.Response(500, json={"error": "internal"}),
        httpx.Response(503, text="unavailable"),
        httpx.Response(200, text="<html>not json</html>"),
    ],
)
async def test_create_is_never_retried_after_an_ambiguous_failure(
    failure: httpx.Response | Exception,
) -> None:
    clock = FakeClock()
    handler, seen = scripted(failure, httpx.Response(200, json={"id": "dup"}))
    client = make_client(handler, clock)
    with pytest.raises(ProviderError) as info:
        await client.request("POST", "/things/create", json={"name": "x"}, create=True)
    assert len(seen) == 1
    assert info.value.error_type == CREATE_OUTCOME_UNKNOWN and not info.value.retryable
    assert_key_absent(info.value)


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("connection refused"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.Response(429, headers={"Retry-After": "1"}, json={"error": "rate limited"}),
    ],
)
async def test_create_is_sent_once_and_a_refusal_before_acting_is_retryable(
    failure: httpx.Response | Exception,
) -> None:
    """The applier retries it, re-recording when it is sent (a crash recovery counts from there)."""
    clock = FakeClock()
    handler, seen = scripted(failure, httpx.Response(200, json={"id": "new"}))
    client = make_client(handler, clock)
    with pytest.raises(ProviderError) as info:
        await client.request("POST", "/things/create", json={}, create=True)
    assert info.value.retryable and info.value.error_type != CREATE_OUTCOME_UNKNOWN
    assert len(seen) == 1 and clock.sleeps == []


async def test_create_rejected_by_validation_is_a_plain_error() -> None:
    clock = FakeClock()
    handler, _ = scripted(httpx.Response(400, json={"error": {"type": "validation_error", "message": "no"}}))
    client = make_client(handler, clock)
    with pytest.raises(ProviderError) as info:
        await client.request("POST", "/things/create", json={}, create=True)
    assert info.value.error_type == "validation_error" and not info.value.retryable


async def test_connection_errors_name_no_key() -> None:
    clock = FakeClock()
    handler, _ = scripted(*[httpx.ConnectError(f"refused for {API_KEY}") for _ in range(2)])
    client = make_client(handler, clock, max_retries=1)
    with pytest.raises(ProviderError) as info:
        await client.request("GET", "/things")
    assert info.value.error_type == "connection_error"
    assert_key_absent(info.value)


async def test_a_server_error_on_create_is_an_unknown_outcome_even_if_it_says_capacity() -> None:
    clock = FakeClock()
    handler, seen = scripted(
        httpx.Response(503, json={"error": {"type": "provider_error", "message": "no capacity"}})
    )
    client = make_client(handler, clock)
    with pytest.raises(ProviderError) as info:
        await client.request("POST", "/things/create", json={}, create=True)
    assert info.value.error_type == CREATE_OUTCOME_UNKNOWN and not isinstance(info.value, CapacityError)
    assert len(seen) == 1


async def test_a_refused_key_is_one_line_naming_the_provider_and_its_variable() -> None:
    handler, _ = scripted(httpx.Response(401, json={"error": "invalid API key " + API_KEY, "code": "UNAUTHORIZED"}))
    client = make_client(handler, FakeClock())
    with pytest.raises(AuthError) as info:
        await client.request("GET", "/things")
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{client.provider}: 401") and "set TESTAPI_API_KEY to a valid" in text
    assert_key_absent(info.value)
