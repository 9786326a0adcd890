"""Read-only contract tests against the real APIs, and the same tests against the emulator.

Each test runs twice. `[live]` talks to the real API when its key is set
(`SHADEFORM_API_KEY`, `FORWARD_API_KEY`; the base URL is the client's default, or
`SHADEFORM_API_URL` / `FORWARD_API_URL`) and is skipped, saying so, otherwise.
`[emulator]` always runs, so these tests cannot rot: the emulator is served over HTTP on
127.0.0.1 (`emulator serve`) and reached exactly as the real API is, holding a few
resources created before the tests start.

What is checked: the answers our clients receive, validated against the seeds with the
same validators as the emulator's contract tests (`contract_support`), and what the
clients make of them (every listed resource is reported, ids match). Nothing is ever
created, changed or deleted: every request goes through `ReadOnlyTransport`, which
refuses any method but GET before it leaves the process.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from contract_support import (
    check_forward_answer,
    check_forward_error,
    check_markdown_object,
    check_response,
    forward_sections,
    send_and_copy,
    shadeform_openapi,
    shadeform_ssh_key_fields,
    shadeform_volume_fields,
    shadeform_volume_type_fields,
)
from emulator_fixtures import ServerProcess

from reconciler.emulator import example_public_key
from reconciler.emulator.catalogue import (
    forward_offerings,
    forward_volume_offering_at,
    shadeform_placements,
    shadeform_volume_type,
)
from reconciler.errors import AuthError
from reconciler.model import Kind, Status
from reconciler.providers import forward as forward_client
from reconciler.providers import shadeform as shadeform_client
from reconciler.providers.base import ProviderSettings
from reconciler.providers.forward import ForwardProvider
from reconciler.providers.shadeform import ShadeformProvider

pytest_plugins = ["emulator_fixtures"]

EMULATOR_KEY = "contract-live-tenant"
DETAIL_READS = 3  # by-id reads per kind: enough to see the shape, bounded on big accounts
TIMEOUT_SECONDS = 30.0


class ReadOnlyTransport(httpx.AsyncBaseTransport):
    """Lets only GET through, and keeps a decoded copy of every answer for validation.

    Several clients share one: closing a client leaves it open; `release` closes it.
    """

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.answers: list[httpx.Response] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "GET":
            raise AssertionError(f"a read-only contract test tried {request.method} {request.url}")
        response, kept = await send_and_copy(self.inner, request)
        self.answers.append(kept)
        return response

    async def aclose(self) -> None:
        """Clients close their transport when they close; this one outlives them."""

    async def release(self) -> None:
        await self.inner.aclose()


@dataclass
class Target:
    """One API to check: where it is, its key, and read-only clients for it."""

    base_url: str
    api_key: str
    transport: ReadOnlyTransport = field(default_factory=ReadOnlyTransport)

    def answer(self, path: str) -> httpx.Response:
        """The last answer to a GET of `path` (relative to the base URL, query ignored)."""
        full = urlsplit(self.base_url).path.rstrip("/") + path
        matching = [a for a in self.transport.answers if a.request.url.path == full]
        assert matching, f"no answer to GET {path} was recorded"
        return matching[-1]

    def raw(self, headers: dict[str, str]) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url, headers=headers, transport=self.transport, timeout=TIMEOUT_SECONDS
        )


def seed_emulator(url: str) -> None:
    """A key, a volume and an instance using both, on each API of the served emulator."""
    with httpx.Client(base_url=f"{url}/shadeform/v1", headers={"X-API-KEY": EMULATOR_KEY}) as shadeform:
        place = next(p for p in shadeform_placements(available=True) if shadeform_volume_type(p.cloud, p.region))
        key = shadeform.post("/sshkeys/add", json={"name": "deploy", "public_key": example_public_key("d")})
        volume = shadeform.post(
            "/volumes/create",
            json={"cloud": place.cloud, "region": place.region, "size_in_gb": 50, "name": "data"},
        )
        instance = shadeform.post(
            "/instances/create",
            json={
                "cloud": place.cloud,
                "region": place.region,
                "shade_instance_type": place.shade_instance_type,
                "name": "trainer",
                "ssh_key_id": key.json()["id"],
                "volume_ids": [volume.json()["id"]],
                "tags": ["contract"],
            },
        )
        assert instance.status_code == 200, instance.text
    with httpx.Client(
        base_url=f"{url}/forward/v1", headers={"Authorization": f"Bearer {EMULATOR_KEY}"}
    ) as forward:
        offering = next(o for o in forward_offerings(available=True) if forward_volume_offering_at(o.provider, o.region))
        volume_offering = forward_volume_offering_at(offering.provider, offering.region)
        assert volume_offering is not None
        key = forward.post("/spot/ssh-keys/", json={"name": "deploy", "public_key": example_public_key("d")})
        volume = forward.post(
            "/spot/volumes/", json={"name": "data", "size_gb": 50, "offering_id": volume_offering.id}
        )
        instance = forward.post(
            "/spot/instances/",
            json={
                "name": "worker",
                "offering_id": offering.id,
                "ssh_key_id": key.json()["id"],
                "volume_ids": [volume.json()["id"]],
                "envs": [{"name": "MODE", "value": "train"}],
            },
        )
        assert instance.status_code == 201, instance.text


@pytest.fixture(scope="module")
def served_emulator() -> Iterator[str]:
    server = ServerProcess("--boot-seconds", "0")
    try:
        seed_emulator(server.url)
        yield server.url
    finally:
        assert server.stop() == 0, "".join(server.stderr_lines)


def make_target(request: pytest.FixtureRequest, api: str, default_url: str) -> Target:
    if request.param == "emulator":
        url = request.getfixturevalue("served_emulator")
        return Target(f"{url}/{api}/v1", EMULATOR_KEY)
    env = api.upper()
    key = os.environ.get(f"{env}_API_KEY")
    if not key:
        pytest.skip(f"{env}_API_KEY is not set: the read-only contract tests against the real {api} API need it")
    return Target(os.environ.get(f"{env}_API_URL") or default_url, key)


@pytest.fixture(params=["emulator", "live"])
async def shadeform_target(request: pytest.FixtureRequest) -> AsyncIterator[Target]:
    target = make_target(request, "shadeform", shadeform_client.DEFAULT_BASE_URL)
    yield target
    await target.transport.release()


@pytest.fixture(params=["emulator", "live"])
async def forward_target(request: pytest.FixtureRequest) -> AsyncIterator[Target]:
    target = make_target(request, "forward", forward_client.DEFAULT_BASE_URL)
    yield target
    await target.transport.release()


@pytest.fixture
async def shadeform(shadeform_target: Target) -> AsyncIterator[ShadeformProvider]:
    provider = ShadeformProvider(
        ProviderSettings(
            name="shadeform",
            endpoint=shadeform_target.base_url,
            api_key=shadeform_target.api_key,
            timeout_seconds=TIMEOUT_SECONDS,
        ),
        shadeform_target.transport,
    )
    yield provider
    await provider.aclose()


@pytest.fixture
async def forward(forward_target: Target) -> AsyncIterator[ForwardProvider]:
    provider = ForwardProvider(
        ProviderSettings(
            name="forward",
            endpoint=forward_target.base_url,
            api_key=forward_target.api_key,
            timeout_seconds=TIMEOUT_SECONDS,
        ),
        forward_target.transport,
    )
    yield provider
    await provider.aclose()


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return shadeform_openapi()


def listed(items: list[dict[str, Any]]) -> set[str]:
    """The ids a client must report from a list answer: everything not already deleted."""
    return {str(item["id"]) for item in items if item.get("status") != "deleted"}


# ------------------------------------------------------------------ Shadeform


async def test_shadeform_instance_types(
    shadeform: ShadeformProvider, shadeform_target: Target, openapi: dict[str, Any]
) -> None:
    offerings = await shadeform.offerings()
    answer = shadeform_target.answer("/instances/types")
    check_response(openapi, "/instances/types", "get", answer)
    types = answer.json()["instance_types"]
    assert types, "no instance types"
    sold = {(t["cloud"], t["shade_instance_type"]) for t in types}
    assert offerings and {(o.cloud, o.instance_type) for o in offerings} <= sold

    async with shadeform_target.raw({"X-API-KEY": shadeform_target.api_key}) as raw:
        cheapest = await raw.get("/instances/types", params={"available": "true", "sort": "price"})
    check_response(openapi, "/instances/types", "get", cheapest)
    prices = [t["hourly_price"] for t in cheapest.json()["instance_types"]]
    assert prices == sorted(prices), "sort=price did not sort by price"


async def test_shadeform_instances(
    shadeform: ShadeformProvider, shadeform_target: Target, openapi: dict[str, Any]
) -> None:
    live = await shadeform.list(Kind.INSTANCE)
    answer = shadeform_target.answer("/instances")
    check_response(openapi, "/instances", "get", answer)
    assert {r.id for r in live} == listed(answer.json()["instances"])
    assert all(r.status is not Status.UNKNOWN for r in live), [r.status for r in live]
    for resource in live[:DETAIL_READS]:
        fetched = await shadeform.get(Kind.INSTANCE, resource.id)
        check_response(openapi, "/instances/{id}/info", "get", shadeform_target.answer(f"/instances/{resource.id}/info"))
        assert fetched is not None and fetched.id == resource.id


async def test_shadeform_volumes(shadeform: ShadeformProvider, shadeform_target: Target) -> None:
    prices = await shadeform.volume_offerings()
    volume_types = shadeform_target.answer("/volumes/types").json()["volume_types"]
    for item in volume_types:
        check_markdown_object(item, shadeform_volume_type_fields())
    assert len(prices) == len(volume_types)

    live = await shadeform.list(Kind.VOLUME)
    volumes = shadeform_target.answer("/volumes").json()["volumes"]
    fields = shadeform_volume_fields()
    for item in volumes:
        check_markdown_object(item, fields)
    assert {r.id for r in live} == listed(volumes)
    for resource in live[:DETAIL_READS]:
        fetched = await shadeform.get(Kind.VOLUME, resource.id)
        check_markdown_object(shadeform_target.answer(f"/volumes/{resource.id}/info").json(), fields)
        assert fetched is not None and fetched.id == resource.id


async def test_shadeform_ssh_keys(shadeform: ShadeformProvider, shadeform_target: Target) -> None:
    live = await shadeform.list(Kind.SSH_KEY)
    keys = shadeform_target.answer("/sshkeys").json()["ssh_keys"]
    fields = shadeform_ssh_key_fields()
    for item in keys:
        check_markdown_object(item, fields)
    assert {r.id for r in live} == listed(keys)
    for resource in live[:DETAIL_READS]:
        fetched = await shadeform.get(Kind.SSH_KEY, resource.id)
        check_markdown_object(shadeform_target.answer(f"/sshkeys/{resource.id}/info").json(), fields)
        assert fetched is not None and fetched.id == resource.id


async def test_shadeform_unknown_ids_and_missing_keys(
    shadeform: ShadeformProvider, shadeform_target: Target
) -> None:
    for kind in Kind:
        assert await shadeform.get(kind, str(uuid.uuid4())) is None
    anonymous = ShadeformProvider(
        ProviderSettings(name="shadeform", endpoint=shadeform_target.base_url, max_retries=0),
        shadeform_target.transport,
    )
    with pytest.raises(AuthError) as refused:
        await anonymous.list(Kind.INSTANCE)
    assert refused.value.status == 401


# ------------------------------------------------------------------ Forward Compute


@pytest.fixture(scope="module")
def sections() -> dict[str, dict[str, Any]]:
    return forward_sections()


async def test_forward_offerings(
    forward: ForwardProvider, forward_target: Target, sections: dict[str, dict[str, Any]]
) -> None:
    compute = await forward.offerings()
    answer = forward_target.answer("/spot/compute/offerings")
    check_forward_answer(sections["GET /v1/spot/compute/offerings"]["200"], answer.json(), "compute offerings")
    items = answer.json()["data"]
    assert items and {o.id for o in compute} == {i["id"] for i in items}

    volumes = await forward.volume_offerings()
    answer = forward_target.answer("/spot/volumes/offerings")
    check_forward_answer(sections["GET /v1/spot/volumes/offerings"]["200"], answer.json(), "volume offerings")
    assert {o.id for o in volumes} == {i["id"] for i in answer.json()["data"]}

    async with forward_target.raw({"Authorization": f"Bearer {forward_target.api_key}"}) as raw:
        for section, offering_id in (
            ("GET /v1/spot/compute/offerings/{id}", compute[0].id),
            ("GET /v1/spot/volumes/offerings/{id}", volumes[0].id),
        ):
            path = section.removeprefix("GET /v1").replace("{id}", offering_id)
            single = await raw.get(path)
            assert single.status_code == 200, single.text
            check_forward_answer(sections[section]["200"], single.json(), section)


async def test_forward_instances(
    forward: ForwardProvider, forward_target: Target, sections: dict[str, dict[str, Any]]
) -> None:
    live = await forward.list(Kind.INSTANCE)
    answer = forward_target.answer("/spot/instances/")
    check_forward_answer(sections["GET /v1/spot/instances/"]["200"], answer.json(), "instances")
    assert {r.id for r in live} == listed(answer.json()["data"])
    assert all(r.status is not Status.UNKNOWN for r in live), [r.status for r in live]
    for resource in live[:DETAIL_READS]:
        fetched = await forward.get(Kind.INSTANCE, resource.id)
        single = forward_target.answer(f"/spot/instances/{resource.id}")
        check_forward_answer(sections["GET /v1/spot/instances/{id}"]["200"], single.json(), "instance")
        assert fetched is not None and fetched.id == resource.id


async def test_forward_volumes(
    forward: ForwardProvider, forward_target: Target, sections: dict[str, dict[str, Any]]
) -> None:
    live = await forward.list(Kind.VOLUME)
    answer = forward_target.answer("/spot/volumes/")
    check_forward_answer(sections["GET /v1/spot/volumes/"]["200"], answer.json(), "volumes")
    assert {r.id for r in live} == listed(answer.json()["data"])
    for resource in live[:DETAIL_READS]:
        fetched = await forward.get(Kind.VOLUME, resource.id)
        single = forward_target.answer(f"/spot/volumes/{resource.id}")
        check_forward_answer(sections["GET /v1/spot/volumes/{id}"]["200"], single.json(), "volume")
        assert fetched is not None and fetched.id == resource.id


async def test_forward_ssh_keys(
    forward: ForwardProvider, forward_target: Target, sections: dict[str, dict[str, Any]]
) -> None:
    live = await forward.list(Kind.SSH_KEY)
    answer = forward_target.answer("/spot/ssh-keys/")
    check_forward_answer(sections["GET /v1/spot/ssh-keys/"]["200"], answer.json(), "ssh keys")
    assert {r.id for r in live} == listed(answer.json()["data"])


async def test_forward_unknown_ids_and_missing_keys(forward: ForwardProvider, forward_target: Target) -> None:
    missing = f"spot_inst_{uuid.uuid4().hex[:12]}"
    assert await forward.get(Kind.INSTANCE, missing) is None
    not_found = forward_target.answer(f"/spot/instances/{missing}")
    assert not_found.status_code == 404
    check_forward_error(not_found, "unknown instance")
    anonymous = ForwardProvider(
        ProviderSettings(name="forward", endpoint=forward_target.base_url, max_retries=0),
        forward_target.transport,
    )
    with pytest.raises(AuthError) as refused:
        await anonymous.list(Kind.INSTANCE)
    assert refused.value.status == 401
    check_forward_error(forward_target.answer("/spot/instances/"), "no credentials")
