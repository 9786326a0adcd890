"""The emulator against Shadeform's current OpenAPI document (`shadeform-openapi-current.yaml`).

Every answer of every operation the emulator serves is validated against the schema the
current document gives for it (all required fields, types, enums, `$ref`s resolved inside the
loaded document), through every instance status the document lists. The operations the
emulator does not serve (clusters, templates) are named, so a new one cannot slip by.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from contract_support import check_request, check_response, operation_keys, shadeform_openapi_current
from emulator_fixtures import (
    BOOT_SECONDS,
    add_shadeform_key,
    create_shadeform_volume,
    instance_body,
    shadeform_client,
    sold_out_placement,
)

from reconciler.emulator import EmbeddedCloud, ManualClock, example_public_key
from reconciler.emulator.catalogue import SHADEFORM_VOLUME_TYPES
from reconciler.emulator.shadeform_api import ENDPOINTS

pytest_plugins = ["emulator_fixtures"]
NOT_SERVED_PREFIXES = ("/clusters", "/templates")


@pytest.fixture(scope="module")
def current() -> dict[str, Any]:
    return shadeform_openapi_current()


def test_the_emulator_serves_every_instance_key_and_volume_operation_of_the_current_document(
    current: dict[str, Any],
) -> None:
    documented = operation_keys(current)
    served = {(e.path, e.method.lower()) for e in ENDPOINTS}
    wanted = {op for op in documented if not op[0].startswith(NOT_SERVED_PREFIXES)}
    assert wanted == served, f"missing {sorted(wanted - served)}, undocumented {sorted(served - wanted)}"


async def test_every_served_operation_answers_per_the_current_document(
    current: dict[str, Any], clock: ManualClock
) -> None:
    covered: set[tuple[str, str]] = set()
    statuses: set[str] = set()

    async def call(
        client: httpx.AsyncClient, path: str, method: str, url: str, **kwargs: Any
    ) -> httpx.Response:
        response = await client.request(method.upper(), url, **kwargs)
        check_response(current, path, method, response)
        covered.add((path, method))
        return response

    async def observe(client: httpx.AsyncClient) -> None:
        for item in (await call(client, "/instances", "get", "/instances")).json()["instances"]:
            statuses.add(item["status"])
            await call(client, "/instances/{id}/info", "get", f"/instances/{item['id']}/info")

    with EmbeddedCloud(None, clock=clock, boot_seconds=BOOT_SECONDS, delete_seconds=2) as cloud:
        async with shadeform_client(cloud) as client:
            await call(client, "/instances/types", "get", "/instances/types")
            await call(client, "/instances/types", "get", "/instances/types", params={"available": "true"})
            await call(client, "/volumes/types", "get", "/volumes/types")
            key_id = (await call(client, "/sshkeys/add", "post", "/sshkeys/add", json=_key_body())).json()[
                "id"
            ]
            await call(client, "/sshkeys", "get", "/sshkeys")
            await call(client, "/sshkeys/{id}/info", "get", f"/sshkeys/{key_id}/info")
            await call(client, "/sshkeys/{id}/setdefault", "post", f"/sshkeys/{key_id}/setdefault")
            other_key = await add_shadeform_key(client, "other")
            await call(client, "/sshkeys/{id}/delete", "post", f"/sshkeys/{other_key}/delete")
            volume = _volume_body()
            check_request(current, "/volumes/create", "post", volume)
            volume_id = (
                await call(client, "/volumes/create", "post", "/volumes/create", json=volume)
            ).json()["id"]
            await call(client, "/volumes", "get", "/volumes")
            await call(client, "/volumes/{id}/info", "get", f"/volumes/{volume_id}/info")
            spare = await create_shadeform_volume(client)
            await call(client, "/volumes/{id}/delete", "post", f"/volumes/{spare}/delete")

            body = instance_body(shade_cloud=True, ssh_key_id=key_id, tags=["team:ml"])
            check_request(current, "/instances/create", "post", body)
            kept = (await call(client, "/instances/create", "post", "/instances/create", json=body)).json()[
                "id"
            ]
            cloud.set_faults("shadeform.instances.create=boot_failure")
            failed = (await call(client, "/instances/create", "post", "/instances/create", json=body)).json()[
                "id"
            ]
            cloud.set_faults("")
            for _ in range(4):  # creating, pending_provider, pending, then active / error
                await observe(client)
                clock.advance(BOOT_SECONDS / 3)
            await observe(client)
            update = {"name": "renamed", "tags": ["x"]}
            check_request(current, "/instances/{id}/update", "post", update)
            await call(client, "/instances/{id}/update", "post", f"/instances/{kept}/update", json=update)
            await call(client, "/instances/{id}/restart", "post", f"/instances/{kept}/restart")
            await observe(client)
            clock.advance(BOOT_SECONDS)
            for instance_id in (kept, failed):
                await call(client, "/instances/{id}/delete", "post", f"/instances/{instance_id}/delete")
            await observe(client)
            clock.advance(2)
            await observe(client)
            refused = await client.post(
                "/instances/create", json=instance_body(sold_out_placement(), shade_cloud=True)
            )
            assert refused.status_code == 409

    served = {op for op in operation_keys(current) if not op[0].startswith(NOT_SERVED_PREFIXES)}
    assert covered == served, f"not exercised: {sorted(served - covered)}"
    assert statuses == set(current["components"]["schemas"]["Status"]["enum"])


def _key_body() -> dict[str, str]:
    return {"name": "laptop", "public_key": example_public_key("laptop")}


def _volume_body() -> dict[str, Any]:
    vtype = SHADEFORM_VOLUME_TYPES[0]
    return {"cloud": vtype.cloud, "region": vtype.region, "size_in_gb": 100, "name": "data"}


async def test_a_cloud_outside_the_old_list_is_an_open_string(clock: ManualClock) -> None:
    with EmbeddedCloud(None, clock=clock) as cloud:
        async with shadeform_client(cloud) as client:
            response = await client.post("/instances/create", json=instance_body(cloud="hyperstack"))
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_REQUEST"
    assert "not offered by cloud hyperstack" in response.json()["error"]
