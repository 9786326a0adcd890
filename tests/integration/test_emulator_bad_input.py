"""Bad input to the emulator gets the API's own 4xx shape, never a 5xx, and changes nothing.

Hand-written cases cover each kind of malformed request (wrong types, unknown enum values,
missing fields, bad JSON, oversized bodies, another tenant's ids); a bounded property-based
run (schemathesis over Shadeform's current OpenAPI document, fixed seed) sends what the
document allows and what it does not to every served operation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from contract_support import check_response, shadeform_openapi_current
from emulator_fixtures import (
    TENANT_B,
    add_shadeform_key,
    create_forward_instance,
    create_shadeform_instance,
    create_shadeform_volume,
    forward_client,
    instance_body,
    shadeform_client,
)
from hypothesis import HealthCheck, settings

from reconciler.emulator import EmbeddedCloud, ManualClock
from reconciler.emulator.runtime import MAX_BODY_BYTES
from reconciler.emulator.server import build_api_app

pytest_plugins = ["emulator_fixtures"]


def snapshot(cloud: EmbeddedCloud) -> list[tuple[str, str, str]]:
    return [(e.id, e.name, e.status) for e in cloud.world.ledger()]


def assert_shadeform_refusal(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert set(body) == {"error", "code"} and isinstance(body["error"], str) and body["error"]


def assert_forward_refusal(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message", "field"}


SHADEFORM_BAD_BODIES: list[tuple[str, Any]] = [
    ("/instances/create", {**instance_body(), "name": 7}),
    ("/instances/create", {**instance_body(), "shade_cloud": "yes"}),
    ("/instances/create", {**instance_body(), "rental_type": "auction"}),
    ("/instances/create", {**instance_body(), "launch_configuration": {"type": "vm"}}),
    ("/instances/create", {**instance_body(), "volume_ids": "v1"}),
    ("/instances/create", {**instance_body(), "auto_delete": {"spend_threshold": 3}}),
    ("/instances/create", {**instance_body(), "auto_delete": {"date_threshold": "tomorrow"}}),
    ("/instances/create", {k: v for k, v in instance_body().items() if k != "region"}),
    ("/instances/create", {**instance_body(), "cloud": ""}),
    ("/instances/create", [instance_body()]),
    ("/volumes/create", {"cloud": "lambdalabs", "region": "us-east-1", "size_in_gb": "100", "name": "d"}),
    ("/volumes/create", {"cloud": "lambdalabs", "region": "us-east-1", "size_in_gb": 10**30, "name": "d"}),
    ("/volumes/create", {"cloud": "lambdalabs", "region": "us-east-1", "name": "d"}),
    ("/sshkeys/add", {"name": "k", "public_key": "-----BEGIN OPENSSH PRIVATE KEY-----"}),
    ("/sshkeys/add", {"name": None, "public_key": "ssh-ed25519 AAAA"}),
]


@pytest.mark.parametrize(("path", "body"), SHADEFORM_BAD_BODIES)
async def test_shadeform_refuses_malformed_bodies_and_changes_nothing(
    cloud: EmbeddedCloud, shadeform: httpx.AsyncClient, path: str, body: Any
) -> None:
    before = snapshot(cloud)
    assert_shadeform_refusal(await shadeform.post(path, json=body))
    assert snapshot(cloud) == before


FORWARD_BAD_BODIES: list[tuple[str, Any]] = [
    ("/spot/instances/", {"name": "w"}),
    ("/spot/instances/", {"name": "w", "offering_id": 3}),
    ("/spot/instances/", {"name": "w", "offering_id": "spot_coff_000000000000"}),
    ("/spot/instances/", {"name": "w", "offering_id": "x", "envs": [{"name": "A"}]}),
    ("/spot/volumes/", {"offering_id": "x", "size_gb": -1}),
    ("/spot/volumes/", {"size_gb": 10}),
    ("/spot/ssh-keys/", {"name": "k", "public_key": "ssh-ed25519 AAAA", "provider": "nowhere"}),
    ("/spot/ssh-keys/", {"name": "k"}),
    ("/spot/ssh-keys/", "just a string"),
]


@pytest.mark.parametrize(("path", "body"), FORWARD_BAD_BODIES)
async def test_forward_refuses_malformed_bodies_and_changes_nothing(
    cloud: EmbeddedCloud, forward: httpx.AsyncClient, path: str, body: Any
) -> None:
    before = snapshot(cloud)
    assert_forward_refusal(await forward.post(path, json=body))
    assert snapshot(cloud) == before


@pytest.mark.parametrize(
    "raw",
    [b"{", b"\xff\xfe{}", b"[" * 100_000 + b"]" * 100_000, b'{"name": NaN', b"null"],
    ids=["truncated", "not utf-8", "deeply nested", "bad literal", "null"],
)
async def test_bad_json_is_400_in_each_apis_shape(
    cloud: EmbeddedCloud, shadeform: httpx.AsyncClient, forward: httpx.AsyncClient, raw: bytes
) -> None:
    before = snapshot(cloud)
    headers = {"content-type": "application/json"}
    response = await shadeform.post("/instances/create", content=raw, headers=headers)
    assert response.status_code == 400, response.text
    assert_shadeform_refusal(response)
    response = await forward.post("/spot/instances/", content=raw, headers=headers)
    assert response.status_code == 400, response.text
    assert_forward_refusal(response)
    assert snapshot(cloud) == before


async def test_an_oversized_body_is_413_and_changes_nothing(
    cloud: EmbeddedCloud, shadeform: httpx.AsyncClient, forward: httpx.AsyncClient
) -> None:
    before = snapshot(cloud)
    huge = json.dumps({**instance_body(), "tags": ["x" * 1000] * (MAX_BODY_BYTES // 1000 + 1)})
    response = await shadeform.post("/instances/create", content=huge)
    assert response.status_code == 413
    assert_shadeform_refusal(response)
    response = await forward.post("/spot/ssh-keys/", content=huge)
    assert response.status_code == 413
    assert_forward_refusal(response)
    assert snapshot(cloud) == before


async def test_another_tenants_ids_are_404_and_untouched(
    cloud: EmbeddedCloud, shadeform: httpx.AsyncClient, forward: httpx.AsyncClient
) -> None:
    instance_id = await create_shadeform_instance(shadeform)
    volume_id = await create_shadeform_volume(shadeform)
    key_id = await add_shadeform_key(shadeform)
    forward_id = (await create_forward_instance(forward))["id"]
    before = snapshot(cloud)
    async with shadeform_client(cloud, TENANT_B) as other:
        for method, path in [
            ("GET", f"/instances/{instance_id}/info"),
            ("POST", f"/instances/{instance_id}/update"),
            ("POST", f"/instances/{instance_id}/restart"),
            ("POST", f"/instances/{instance_id}/delete"),
            ("GET", f"/volumes/{volume_id}/info"),
            ("POST", f"/volumes/{volume_id}/delete"),
            ("GET", f"/sshkeys/{key_id}/info"),
            ("POST", f"/sshkeys/{key_id}/setdefault"),
            ("POST", f"/sshkeys/{key_id}/delete"),
        ]:
            response = await other.request(method, path, json={"name": "x"} if "update" in path else None)
            assert response.status_code == 404, f"{method} {path}: {response.text}"
            assert_shadeform_refusal(response)
    async with forward_client(cloud, TENANT_B) as other:
        for method, path in [
            ("GET", f"/spot/instances/{forward_id}"),
            ("POST", f"/spot/instances/{forward_id}/restart"),
            ("DELETE", f"/spot/instances/{forward_id}"),
        ]:
            response = await other.request(method, path)
            assert response.status_code == 404, f"{method} {path}: {response.text}"
            assert_forward_refusal(response)
    assert snapshot(cloud) == before


# ------------------------------------------------------------------ property-based, bounded


FUZZ_CLOCK = ManualClock()
FUZZ_CLOUD = EmbeddedCloud(None, clock=FUZZ_CLOCK, boot_seconds=5, delete_seconds=2)


def served_document() -> dict[str, Any]:
    """The current document, restricted to the operations the emulator serves."""
    document = shadeform_openapi_current()
    document["paths"] = {
        path: item
        for path, item in document["paths"].items()
        if not path.startswith(("/clusters", "/templates"))
    }
    return document


@pytest.fixture(scope="module", autouse=True)
def fuzz_cloud() -> Iterator[EmbeddedCloud]:
    FUZZ_CLOUD.open()
    yield FUZZ_CLOUD
    FUZZ_CLOUD.close()


fuzz_schema = schemathesis.openapi.from_dict(served_document())


@fuzz_schema.parametrize()
@settings(
    max_examples=12,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_current_document_fuzzed_never_gets_a_5xx(case: Any) -> None:
    document = fuzz_schema.raw_schema
    app = build_api_app(FUZZ_CLOUD.runtime, "shadeform")
    before = snapshot(FUZZ_CLOUD)
    response = case.call(app=app, base_url="http://shadeform.embedded/v1", headers={"X-API-KEY": "fuzz"})
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    )
    answer = httpx.Response(response.status_code, content=response.content)
    if response.status_code >= 400:
        assert_shadeform_refusal(answer)
        assert snapshot(FUZZ_CLOUD) == before, f"{case.method} {case.formatted_path} changed the world"
    else:
        template = case.operation.path
        check_response(document, template, case.method.lower(), answer)
    FUZZ_CLOCK.advance(1)
