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
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
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
from openapi_schema_validator import OAS30Validator, oas30_format_checker

from reconciler.emulator import EmbeddedCloud, ManualClock, example_public_key
from reconciler.emulator.catalogue import (
    FORWARD_MODELS,
    FORWARD_VOLUME_OFFERINGS,
    SHADEFORM_INSTANCE_TYPES,
    forward_offerings,
)

pytest_plugins = ["emulator_fixtures"]


# ------------------------------------------------------------------ Shadeform: OpenAPI


def documented_newer_statuses() -> list[str]:
    """The statuses shadeform-volumes-sshkeys.md documents beyond the OpenAPI enum."""
    text = seed_file("shadeform-volumes-sshkeys.md").read_text()
    match = re.search(r"statuses\s+beyond\s+`pending\|active\|deleted`\s+\(e\.g\.\s+([^)]*)\)", text)
    assert match, "the markdown seed no longer documents newer instance statuses"
    return re.findall(r"`(\w+)`", match.group(1))


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(seed_file("shadeform-openapi.json").read_text())
    # The OpenAPI Status enum predates the statuses the markdown seed documents (creating,
    # deleting, error); extend the loaded enum with exactly those documented values.
    status = document["components"]["schemas"]["Status"]
    status["enum"] = status["enum"] + [s for s in documented_newer_statuses() if s not in status["enum"]]
    return document


def operation_keys(document: dict[str, Any]) -> set[tuple[str, str]]:
    methods = {"get", "post", "put", "patch", "delete"}
    return {
        (path, method) for path, item in document["paths"].items() for method in item if method in methods
    }


def check_response(document: dict[str, Any], path: str, method: str, response: httpx.Response) -> None:
    """Validate an answer against the document's response schema for its status code."""
    responses = document["paths"][path][method]["responses"]
    assert str(response.status_code) in responses, f"{method.upper()} {path} answered {response.status_code}"
    content = responses[str(response.status_code)].get("content")
    if content is None:
        assert response.content == b"", f"{method.upper()} {path} documents no body"
        return
    schema = dict(content["application/json"]["schema"])
    schema["components"] = document["components"]
    OAS30Validator(schema, format_checker=oas30_format_checker).validate(response.json())


def check_request(document: dict[str, Any], path: str, method: str, body: dict[str, Any]) -> None:
    """The bodies this test sends are themselves valid per the document."""
    schema = dict(document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"])
    schema["components"] = document["components"]
    OAS30Validator(schema, format_checker=oas30_format_checker).validate(body)


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
    assert statuses_seen == {"pending", "active", "error", "deleting"}


# ------------------------------------------------------------------ Shadeform: markdown seed


def markdown_fields(label: str) -> dict[str, str | None]:
    """`- Label: `a`, `b` (bool), ...` from the volumes/SSH-keys seed -> {field: type hint}."""
    text = seed_file("shadeform-volumes-sshkeys.md").read_text()
    match = re.search(rf"^(?:- |  ){label}: (.+?)(?=\n  Example|\n- |\n\n)", text, re.MULTILINE | re.DOTALL)
    assert match, f"no field list for {label} in the seed"
    fields = re.findall(r"`(\w+)`(?: \(([^)]*)\))?", match.group(1))
    return {name: (hint or None) for name, hint in fields}


MARKDOWN_TYPES: dict[str, tuple[type, ...]] = {
    "bool": (bool,),
    "int": (int,),
    "number": (int, float),
    "string": (str,),
    "instance id or empty": (str,),
}


def check_markdown_object(item: dict[str, Any], fields: dict[str, str | None]) -> None:
    assert set(fields) <= set(item), f"missing {set(fields) - set(item)}"
    for name, hint in fields.items():
        if hint is None:
            continue
        expected = MARKDOWN_TYPES[hint.split(",")[0].strip()]
        assert isinstance(item[name], expected) and not (
            bool not in expected and isinstance(item[name], bool)
        ), f"{name}={item[name]!r} is not {hint}"


async def test_volumes_and_ssh_keys_carry_the_documented_fields(
    cloud: EmbeddedCloud, shadeform: httpx.AsyncClient
) -> None:
    volume_types = (await shadeform.get("/volumes/types")).json()["volume_types"]
    for item in volume_types:
        check_markdown_object(item, markdown_fields("VolumeType"))
    volume_id = await create_shadeform_volume(shadeform)
    volume_fields = markdown_fields("Volume")
    volume_fields["size_in_gb"] = "int"  # typed where the seed documents the create body
    for item in [
        (await shadeform.get(f"/volumes/{volume_id}/info")).json(),
        *(await shadeform.get("/volumes")).json()["volumes"],
    ]:
        check_markdown_object(item, volume_fields)
    key_id = await add_shadeform_key(shadeform)
    key_fields: dict[str, str | None] = {
        "id": "string",
        "name": "string",
        "public_key": "string",
        "is_default": "bool",
    }
    for item in [
        (await shadeform.get(f"/sshkeys/{key_id}/info")).json(),
        *(await shadeform.get("/sshkeys")).json()["ssh_keys"],
    ]:
        check_markdown_object(item, key_fields)
    text = seed_file("shadeform-volumes-sshkeys.md").read_text()
    assert '`{"ssh_keys": [{"id", "name", "public_key", "is_default" (bool)}]}`' in text


# ------------------------------------------------------------------ Forward Compute: markdown seed


@dataclass(frozen=True)
class DocumentedField:
    name: str
    json_type: str
    required: bool
    enum: tuple[str, ...]


FIELD_LINE = re.compile(
    r"^- \*\*(?P<name>\w+)\*\* \((?P<type>[a-z]+)(?: \([^)]*\))?\)(?P<required> \(required\))?"
)
ENUM_TAIL = re.compile(r'\(("[^"]+"(?:\|"[^"]+")*)\)\s*$')
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def forward_sections() -> dict[str, dict[str, list[DocumentedField]]]:
    """`GET /v1/spot/instances/` -> {status code -> documented response fields}."""
    text = seed_file("forwardcompute-api.md").read_text()
    sections: dict[str, dict[str, list[DocumentedField]]] = {}
    for block in re.split(r"^### ", text, flags=re.MULTILINE)[1:]:
        heading = re.match(r"(GET|POST|PUT|DELETE) (\S+)", block)
        assert heading, block[:80]
        responses: dict[str, list[DocumentedField]] = {}
        for part in re.split(r"^##### ", block, flags=re.MULTILINE)[1:]:
            code = part.split(" ", 1)[0]
            fields = []
            for line in part.splitlines():
                match = FIELD_LINE.match(line.strip())
                if match:
                    enum = ENUM_TAIL.search(line)
                    values = tuple(v.strip('"') for v in enum.group(1).split("|")) if enum else ()
                    fields.append(
                        DocumentedField(match["name"], match["type"], bool(match["required"]), values)
                    )
            responses[code] = fields
        sections[f"{heading.group(1)} {heading.group(2)}"] = responses
    return sections


def candidate_objects(body: Any) -> list[dict[str, Any]]:
    """The envelope, its data (object or items) and their nested objects: where documented
    fields may sit, since the markdown flattens nesting."""
    found: list[dict[str, Any]] = []

    def visit(value: Any, depth: int) -> None:
        if isinstance(value, dict):
            found.append(value)
            if depth < 5:
                for child in value.values():
                    visit(child, depth + 1)
        elif isinstance(value, list) and depth < 5:
            for child in value:
                visit(child, depth + 1)

    visit(body, 0)
    return found


def check_forward_answer(fields: list[DocumentedField], body: Any, where: str) -> None:
    objects = candidate_objects(body)
    enums: dict[str, set[str]] = {}
    for field in fields:
        enums.setdefault(field.name, set()).update(field.enum)
    for field in fields:
        values = [obj[field.name] for obj in objects if field.name in obj]
        if field.required:
            assert values, f"{where}: required field {field.name} missing"
        for value in values:
            if field.json_type == "object" and isinstance(value, list):
                continue  # `data` is an object in single answers and an array in lists
            expected = JSON_TYPES[field.json_type]
            is_bool = isinstance(value, bool)
            assert isinstance(value, expected) and (bool in expected or not is_bool), (
                f"{where}: {field.name}={value!r} is not {field.json_type}"
            )
            if enums[field.name] and isinstance(value, str):
                assert value in enums[field.name], (
                    f"{where}: {field.name}={value!r} not in {enums[field.name]}"
                )


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
