"""Secrets are scrubbed in every spelling a message carries them; unusable API keys are refused unsent."""

from __future__ import annotations

import io
import json
from urllib.parse import quote, quote_plus

import httpx
import pytest

from reconciler.errors import ConfigError, ProviderError
from reconciler.providers.http import ApiClient, api_key_problem
from reconciler.redaction import ScrubbedStream, Scrubber

SECRET = 'sk-live/4b9"e+x&y=z'


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        repr(SECRET)[1:-1],
        json.dumps(SECRET)[1:-1],
        quote(SECRET, safe=""),
        quote(SECRET),
        quote_plus(SECRET),
        SECRET.encode("unicode_escape").decode(),
    ],
    ids=["raw", "repr", "json", "percent", "percent-path", "percent-plus", "unicode-escape"],
)
def test_every_spelling_of_a_secret_is_scrubbed(form: str) -> None:
    assert Scrubber([SECRET]).scrub(f"before {form} after") == "before (sensitive) after"


def test_a_secret_with_a_newline_is_scrubbed_escaped_stripped_and_as_bytes() -> None:
    pasted = "sk-live-0123456789\n"
    scrubber = Scrubber([pasted])
    for text in (
        f"Invalid header value {pasted.encode()!r}",  # what httpx says about a bad header
        f"key={pasted!r}",
        json.dumps({"key": pasted}),
        "key sk-live-0123456789 refused",
    ):
        assert "0123456789" not in scrubber.scrub(text), text


def test_each_long_line_of_a_multi_line_secret_is_scrubbed() -> None:
    scrubber = Scrubber(["-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END KEY-----"])
    assert scrubber.scrub("line 2 was MIIEvQIBADANBgkqhkiG9w0BAQEFAASC") == "line 2 was (sensitive)"


def test_short_values_are_left_alone_and_longest_forms_win() -> None:
    scrubber = Scrubber(["abc", "token-1", "token-12"])
    assert scrubber.scrub("abc token-12 token-1") == "abc (sensitive) (sensitive)"
    assert not Scrubber() and Scrubber().scrub("text") == "text"


def test_a_scrubbed_stream_scrubs_what_is_written_after_a_secret_is_added() -> None:
    inner = io.StringIO()
    scrubber = Scrubber()
    stream = ScrubbedStream(scrubber, inner)
    stream.write("hunter2-password early\n")
    scrubber.add("hunter2-password")
    stream.writelines(["hunter2-password late\n"])
    assert inner.getvalue() == "hunter2-password early\n(sensitive) late\n"


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("sk-live-1\n", "ends with a line break"),
        ("sk-live-1\r\n", "ends with a line break"),
        (" sk-live-1", "starts or ends with whitespace"),
        ("sk-live-1 ", "starts or ends with whitespace"),
        ("sk-li\nve-1", "control character"),
        ("sk-li\tve-1", "control character"),
        ("sk-li\x1bve-1", "control character"),
        ("sk-lïve-1", "non-ASCII"),
    ],
)
def test_unusable_api_keys_are_described_without_quoting_them(key: str, problem: str) -> None:
    found = api_key_problem(key)
    assert found is not None and problem in found
    assert "sk-" not in found


def test_usable_api_keys_have_no_problem() -> None:
    assert api_key_problem("sk-live_0123-ABCD.xyz/+=") is None


def client(key: str, handler: httpx.MockTransport | None = None) -> ApiClient:
    return ApiClient(
        provider="shadeform",
        base_url="https://api.example.test/v1",
        api_key=key,
        auth_header="X-API-KEY",
        auth_scheme="",
        key_env_var="SHADEFORM_API_KEY",
        timeout_seconds=5.0,
        max_retries=0,
        rate_limit_per_second=1000.0,
        is_capacity_error=lambda status, body: False,
        transport=handler or httpx.MockTransport(lambda request: httpx.Response(200, json=[])),
    )


def test_the_client_refuses_a_key_it_cannot_send_and_names_the_variable_not_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        client("sk-live-0123456789\n")
    message = str(caught.value)
    assert "providers.shadeform.api_key: the shadeform API key ends with a line break" in message
    assert "SHADEFORM_API_KEY" in message and "0123456789" not in message


async def test_an_api_answer_echoing_the_key_escaped_is_redacted() -> None:
    key = 'sk-live/"0123456789'
    echoes = [repr(key), json.dumps(key), quote(key, safe="")]

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"type": "bad_request", "message": " ".join(echoes)}})

    api = client(key, httpx.MockTransport(echo))
    with pytest.raises(ProviderError) as caught:
        await api.request("GET", "/instances")
    await api.aclose()
    assert "0123456789" not in str(caught.value)
    assert str(caught.value).count("(redacted)") == 3
