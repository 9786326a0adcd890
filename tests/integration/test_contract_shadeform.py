"""The emulator against the seed documents themselves, loaded from file.

Shadeform: every response of every operation in the OpenAPI document is validated against
the schema the document gives for it (with `$ref`s resolved inside the loaded document);
volumes and SSH keys against the field lists of the markdown seed. Forward Compute: every
documented endpoint's answer carries the markdown seed's required fields with the
documented JSON types and enum values.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from contract_support import (
    check_forward_answer,
    check_markdown_object,
    check_request,
    check_response,
    forward_sections,
    operation_keys,
    shadeform_openapi,
    shadeform_ssh_key_fields,
    shadeform_volume_fields,
    shadeform_volume_type_fields,
)
from emulator_fixtures import (
    BOOT_SECONDS,
    add_shadeform_key,
    create_shadeform_volume,
    forward_client,
    instance_body,
    seed_file,
    shadeform_client,
    sold_out_placement,
)

from reconciler.emulator import EmbeddedCloud, ManualClock, example_public_key
from reconciler.emulator.catalogue import (
    FORWARD_MODELS,
    FORWARD_VOLUME_OFFERINGS,
    SHADEFORM_INSTANCE_TYPES,
    forward_offerings,
)

pytest_plugins = ["emulator_fixtures"]


# ------------------------------------------------------------------ Shadeform: OpenAPI


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return shadeform_openapi()


async def test_every_openapi_operation_answers_per_its_schema(
    openapi: dict[str, Any], clock: ManualClock
) -> None:
    covered: set[tuple[str, str]] = set()
    statuses_seen: set[str] = set()

    async def call(
        client: httpx.AsyncClient, path: str, method: str, url: str, **kwargs: Any
    ) -> httpx.Response:
        response = await client.request(method.upper(), url, **kwargs)
        check_response(openapi, path, method, response)
        covered.add((path, method))
        return response

    with EmbeddedCloud(None, clock=clock, boot_seconds=BOOT_SECONDS, delete_seconds=2) as cloud:
        async with shadeform_client(cloud) as client:
            types = "/instances/types"
            everything = await call(client, types, "get", types)
            assert len(everything.json()["instance_types"]) == len(SHADEFORM_INSTANCE_TYPES)
            for params in (
                {"cloud": "datacrunch"},
                {"region": "FIN-01"},
                {"num_gpus": "2"},
                {"gpu_type": "A100_80G"},
                {"shade_instance_type": "H100x8"},
                {"available": "true", "sort": "price"},
                {"available": "false"},
            ):
                assert (await call(client, types, "get", types, params=params)).json()["instance_types"]

            key_id = await add_shadeform_key(client)
            volume_id = await create_shadeform_volume(client)
            launches = [
                {
                    "type": "docker",
                    "docker_configuration": {"image": "vllm/vllm-openai:latest", "args": "--x"},
                },
                {"type": "script", "script_configuration": {"base64_script": "ZWNobyBoaQo="}},
            ]
            bodies = [
                instance_body(shade_cloud=True, name="minimal"),
                instance_body(
                    shade_cloud=True,
                    ssh_key_id=key_id,
                    volume_ids=[volume_id],
                    launch_configuration=launches[0],
                ),
                instance_body(
                    shade_cloud=True, os="ubuntu20.04_cuda12.0_shade_os", launch_configuration=launches[1]
                ),
            ]
            ids = []
            for body in bodies:
                check_request(openapi, "/instances/create", "post", body)
                ids.append(
                    (await call(client, "/instances/create", "post", "/instances/create", json=body)).json()[
                        "id"
                    ]
                )
            cloud.set_faults("shadeform.instances.create=boot_failure")
            failed = (
                await call(client, "/instances/create", "post", "/instances/create", json=bodies[0])
            ).json()["id"]
            cloud.set_faults("")

            async def observe() -> None:
                listed = await call(client, "/instances", "get", "/instances")
                for item in listed.json()["instances"]:
                    statuses_seen.add(item["status"])
                    await call(client, "/instances/{id}/info", "get", f"/instances/{item['id']}/info")

            await observe()
            clock.advance(BOOT_SECONDS)
            await observe()
            for instance_id in (ids[0], failed):
                await call(client, "/instances/{id}/delete", "post", f"/instances/{instance_id}/delete")
            await observe()

            refused = await client.post(
                "/instances/create", json=instance_body(sold_out_placement(), shade_cloud=True)
            )
            assert refused.status_code == 409

    assert covered == operation_keys(openapi)
    assert statuses_seen == {"creating", "active", "error", "deleting"}


# ------------------------------------------------------------------ Shadeform: markdown seed


async def test_volumes_and_ssh_keys_carry_the_documented_fields(
    cloud: EmbeddedCloud, shadeform: httpx.AsyncClient
) -> None:
    volume_types = (await shadeform.get("/volumes/types")).json()["volume_types"]
    for item in volume_types:
        check_markdown_object(item, shadeform_volume_type_fields())
    volume_id = await create_shadeform_volume(shadeform)
    volume_fields = shadeform_volume_fields()
    for item in [
        (await shadeform.get(f"/volumes/{volume_id}/info")).json(),
        *(await shadeform.get("/volumes")).json()["volumes"],
    ]:
        check_markdown_object(item, volume_fields)
    key_id = await add_shadeform_key(shadeform)
    key_fields = shadeform_ssh_key_fields()
    for item in [
        (await shadeform.get(f"/sshkeys/{key_id}/info")).json(),
        *(await shadeform.get("/sshkeys")).json()["ssh_keys"],
    ]:
        check_markdown_object(item, key_fields)


# ------------------------------------------------------------------ Forward Compute: markdown seed


async def test_every_documented_forward_endpoint_answers_with_the_documented_fields(
    clock: ManualClock,
) -> None:
    sections = forward_sections()
    answered: set[str] = set()
    curl = re.search(r"-d '(\{.*?\})' ", seed_file("forwardcompute-api.md").read_text(), re.DOTALL)
    assert curl, "the seed's POST example is gone"
    example_body = json.loads(curl.group(1))

    with EmbeddedCloud(None, clock=clock, boot_seconds=BOOT_SECONDS) as cloud:
        async with forward_client(cloud) as client:

            async def check(section: str, url: str, status: int = 200, **kwargs: Any) -> Any:
                method = section.split(" ", 1)[0]
                response = await client.request(method, url, **kwargs)
                assert response.status_code == status, response.text
                check_forward_answer(sections[section][str(status)], response.json(), section)
                answered.add(section)
                return response.json()

            single_mount = {
                (o.provider, o.region): o for o in FORWARD_VOLUME_OFFERINGS if not o.supports_multi_mount
            }
            offering = next(
                o for o in forward_offerings(available=True) if (o.provider, o.region) in single_mount
            )
            key = await client.post(
                "/spot/ssh-keys/", json={"name": "k", "public_key": example_public_key("k")}
            )
            volume = await client.post(
                "/spot/volumes/",
                json={
                    "name": "v",
                    "size_gb": 10,
                    "offering_id": single_mount[(offering.provider, offering.region)].id,
                },
            )
            substitutes = {
                "spot_coff_abc123def456": offering.id,
                "spot_sshk_abc123def456": key.json()["id"],
                "spot_vol_abc123def456": volume.json()["id"],
            }
            body = json.loads(json.dumps(example_body), object_hook=lambda o: o)
            text = json.dumps(body)
            for placeholder, real in substitutes.items():
                text = text.replace(placeholder, real)
            created = await check("POST /v1/spot/instances/", "/spot/instances/", 201, json=json.loads(text))
            clock.advance(BOOT_SECONDS)

            await check("GET /v1/spot/compute/offerings", "/spot/compute/offerings")
            await check("GET /v1/spot/compute/offerings/{id}", f"/spot/compute/offerings/{offering.id}")
            await check("GET /v1/spot/volumes/offerings", "/spot/volumes/offerings")
            await check(
                "GET /v1/spot/volumes/offerings/{id}",
                f"/spot/volumes/offerings/{FORWARD_VOLUME_OFFERINGS[0].id}",
            )
            listed = await check("GET /v1/spot/instances/", "/spot/instances/")
            assert [i["id"] for i in listed["data"]] == [created["id"]]
            fetched = await check("GET /v1/spot/instances/{id}", f"/spot/instances/{created['id']}")
            assert fetched["status"] == "active" and fetched["ssh_key_id"] == key.json()["id"]
            await check("GET /v1/spot/volumes/", "/spot/volumes/")
            mounted = await check(
                "GET /v1/spot/volumes/{id}", f"/spot/volumes/{volume.json()['id']}?refresh=false"
            )
            assert mounted["mounted_by"] == created["id"]
            await check("GET /v1/spot/ssh-keys/", "/spot/ssh-keys/")
            await check("GET /v1/models/", "/models/")
            await check("GET /v1/models/{model}", f"/models/{FORWARD_MODELS[0].id}")
            missing = await client.get("/models/unknown/model")
            check_forward_answer(sections["GET /v1/models/{model}"]["404"], missing.json(), "model 404")

    assert answered == set(sections)
