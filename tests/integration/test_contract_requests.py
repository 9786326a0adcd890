"""Every request our two clients send, checked against the seed documents.

A recording transport sits in front of the emulator while each client method runs (list,
get, create, delete, update of every kind, offerings, volume_offerings). The create specs
come from a configuration file declaring every field a user can write, so the bodies are
the ones a real `apply` sends. Then, per request:

- Shadeform: method and path are an operation of the OpenAPI document or of the
  volumes/SSH-keys markdown; query parameters are declared; `POST /instances/create`
  bodies validate against the seed's `CreateRequest` (loaded from the file, `$ref`s
  resolved) extended with the fields the markdown adds, refusing unknown fields; volume
  and key bodies carry exactly the markdown's fields; auth is `X-API-KEY`.
- Forward Compute: method and path (trailing slash included) are a section of the excerpt
  or one of the README's REST conventions; the instance body has only the documented
  fields with their documented types; auth is `Authorization: Bearer`.

The last test keeps docs/api-coverage.md honest: its rows must be exactly the seeds'
endpoints, and its emulator and client columns must match the emulator's routes and the
requests recorded here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from contract_support import (
    JSON_TYPES,
    RecordedRequest,
    RecordingTransport,
    Route,
    find_route,
    forward_create_instance_contract,
    forward_query_parameters,
    forward_routes,
    forward_sdk_routes,
    is_json_type,
    openapi_validator,
    operation_keys,
    seed_text,
    shadeform_body_fields,
    shadeform_create_request_schema,
    shadeform_openapi,
    shadeform_openapi_current,
    shadeform_query_parameters,
    shadeform_root_path,
    shadeform_routes,
    shadeform_update_request_schema,
)
from emulator_fixtures import DELETE_SECONDS, REPO_ROOT
from fwd_sdk import CreateInstanceRequest, CreateSshKeyRequest, CreateVolumeRequest
from support import ClockSleep

from reconciler.config.loader import load_config
from reconciler.emulator import EmbeddedCloud, ManualClock, example_public_key
from reconciler.emulator import forward_api as forward_emulator
from reconciler.emulator import shadeform_api as shadeform_emulator
from reconciler.model import KIND_ORDER, Address, Kind, Resource
from reconciler.providers.base import ProviderSettings
from reconciler.providers.forward import ForwardProvider
from reconciler.providers.shadeform import ShadeformProvider

pytest_plugins = ["emulator_fixtures"]

SHADEFORM_KEY = "contract-shadeform-key"
FORWARD_KEY = "contract-forward-key"
MARKER = "rc-0c0ffee0-a1b2c3"
COVERAGE_DOC = REPO_ROOT / "docs" / "api-coverage.md"


@dataclass
class Driver:
    """Calls one client method on a fresh client, labelling the requests it sends with the
    method and kind (`create(volumes)`, `offerings()`).

    A fresh client per call makes each label carry every request its method sends (the
    Shadeform volume price table is read once per client, for instance).
    """

    make: Callable[[], ShadeformProvider | ForwardProvider]
    recorder: RecordingTransport

    async def call(self, method: str, *args: Any) -> Any:
        kind = args[0].value if args and isinstance(args[0], Kind) else ""
        provider = self.make()
        try:
            with self.recorder.calling(f"{method}({kind})"):
                return await getattr(provider, method)(*args)
        finally:
            await provider.aclose()


def load_resources(directory: Path, document: dict[str, Any]) -> dict[str, Resource]:
    """The resources of a configuration file, by address."""
    path = directory / "contract.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return {str(address): resource for address, resource in load_config(path, environ={}).resources.items()}


def spec_of(resource: Resource, ids: dict[str, str]) -> dict[str, Any]:
    """What the applier hands a provider: the attributes with references resolved to ids."""
    spec = dict(resource.attributes)
    ssh_key = spec.pop("ssh_key", None)
    if ssh_key is not None:
        spec["ssh_key_id"] = ids[ssh_key]
    volumes = spec.pop("volumes", None)
    if volumes:
        spec["volume_ids"] = [ids[v] for v in volumes]
    return spec


async def create_all(driver: Driver, resources: dict[str, Resource]) -> dict[str, str]:
    """Create every resource (keys, then volumes, then instances); their ids by address."""
    ids: dict[str, str] = {}
    for kind in KIND_ORDER:
        for address, resource in resources.items():
            if Address.parse(address).kind is kind:
                created = await driver.call("create", kind, spec_of(resource, ids), MARKER)
                ids[address] = created.id
    return ids


async def read_and_delete_all(driver: Driver, ids: dict[str, str], clock: ManualClock) -> None:
    """list and get of every kind, then delete everything (instances first)."""
    by_kind = {kind: [i for a, i in ids.items() if Address.parse(a).kind is kind] for kind in Kind}
    for kind in Kind:
        listed = await driver.call("list", kind)
        assert {r.id for r in listed} == set(by_kind[kind]), f"list({kind.value}) -> {listed}"
        got = await driver.call("get", kind, by_kind[kind][0])
        assert got is not None and got.id == by_kind[kind][0], f"get({kind.value}) -> {got}"
    for kind in (Kind.INSTANCE, Kind.VOLUME, Kind.SSH_KEY):
        for resource_id in by_kind[kind]:
            await driver.call("delete", kind, resource_id)
        clock.advance(DELETE_SECONDS)


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return shadeform_openapi()


@pytest.fixture
async def shadeform_requests(
    cloud: EmbeddedCloud, clock: ManualClock, tmp_path: Path, openapi: dict[str, Any]
) -> list[RecordedRequest]:
    """Every Shadeform client method, with creates that use every field a config can give."""
    recorder = RecordingTransport(cloud.transport("shadeform"))
    pace = ClockSleep(clock)
    settings = ProviderSettings(
        name="shadeform", api_key=SHADEFORM_KEY, options={"base_url": cloud.base_url("shadeform")}
    )
    driver = Driver(lambda: ShadeformProvider(settings, recorder, sleep=pace, clock=pace.now), recorder)

    offerings = await driver.call("offerings")
    volume_places = {(v.cloud, v.region) for v in await driver.call("volume_offerings")}
    spot = next(
        o
        for o in offerings
        if o.available and o.pin.get("rental_type") == "spot" and (o.cloud, o.region) in volume_places
    )
    on_demand = next(o for o in offerings if o.available and "rental_type" not in o.pin)
    os_example = openapi["components"]["schemas"]["CreateRequest"]["properties"]["os"]["example"]
    place = {"provider": "shadeform", "cloud": spot.cloud, "region": spot.region}
    config = {
        "ssh_keys": [{"name": "deploy", "provider": "shadeform", "public_key": example_public_key("deploy")}],
        "volumes": [{"name": "datasets", **place, "size_gb": 100}],
        "instances": [
            {
                "name": "trainer",
                **place,
                "shade_instance_type": spot.pin["shade_instance_type"],
                "rental_type": "spot",
                "os": os_example,
                "ssh_key": "deploy",
                "volumes": ["datasets"],
                "tags": ["team-ml"],
                "envs": {"MODE": "train", "HF_TOKEN": {"value": "hf-secret", "sensitive": True}},
                "auto_delete": {"date_threshold": "2030-01-01T00:00:00Z", "spend_threshold": "250"},
                "alert": {"spend_threshold": "100.50"},
                "launch": {
                    "type": "docker",
                    "image": "vllm/vllm-openai:latest",
                    "args": "--model mistralai/Mistral-7B-v0.1",
                    "envs": {"PORT": "8000"},
                    "port_mappings": [{"host_port": 80, "container_port": 8000}],
                    "volume_mounts": [{"host_path": "/mnt/datasets", "container_path": "/data"}],
                    "shared_memory_in_gb": 8,
                },
            },
            {
                "name": "runner",
                "provider": "shadeform",
                **on_demand.pin,
                "rental_type": "on_demand",
                "launch": {"type": "script", "script": "#!/bin/bash\necho ready\n"},
            },
            {"name": "bare", "provider": "shadeform", **on_demand.pin},
        ],
    }
    ids = await create_all(driver, load_resources(tmp_path, config))
    trainer = ids["instances.trainer"]
    await driver.call("update", Kind.INSTANCE, trainer, {"name": "trainer-2", "tags": ["team-infra"]}, MARKER)
    await read_and_delete_all(driver, ids, clock)
    return recorder.requests


@pytest.fixture
async def forward_requests(cloud: EmbeddedCloud, clock: ManualClock, tmp_path: Path) -> list[RecordedRequest]:
    """Every Forward client method, with creates that use every field a config can give."""
    recorder = RecordingTransport(cloud.transport("forward"))
    pace = ClockSleep(clock)
    settings = ProviderSettings(
        name="forward", api_key=FORWARD_KEY, options={"base_url": cloud.base_url("forward")}
    )
    driver = Driver(lambda: ForwardProvider(settings, recorder, sleep=pace, clock=pace.now), recorder)

    offerings = await driver.call("offerings")
    volume_places = {(v.cloud, v.region) for v in await driver.call("volume_offerings")}
    offering = next(o for o in offerings if o.available and (o.cloud, o.region) in volume_places)
    config = {
        "ssh_keys": [{"name": "deploy", "provider": "forward", "public_key": example_public_key("deploy")}],
        "volumes": [
            {
                "name": "datasets",
                "provider": "forward",
                "cloud": offering.cloud,
                "region": offering.region,
                "size_gb": 100,
            },
            {"name": "scratch", "provider": "forward", "region": offering.region, "size_gb": 10},
        ],
        "instances": [
            {
                "name": "worker",
                "provider": "forward",
                "offering_id": offering.id,
                "ssh_key": "deploy",
                "volumes": ["datasets"],
                "envs": {"MODE": "train", "HF_TOKEN": {"value": "hf-secret", "sensitive": True}},
            },
            {"name": "bare", "provider": "forward", "offering_id": offering.id},
        ],
    }
    ids = await create_all(driver, load_resources(tmp_path, config))
    await read_and_delete_all(driver, ids, clock)
    return recorder.requests


CLIENT_METHODS = {
    *(f"{verb}({kind.value})" for verb in ("list", "get", "create", "delete") for kind in Kind),
    "offerings()",
    "volume_offerings()",
}


def routed(requests: list[RecordedRequest], routes: set[Route]) -> list[tuple[Route, RecordedRequest]]:
    """Each request with the documented route it hits; undocumented requests fail the test."""
    pairs = []
    undocumented = []
    for request in requests:
        route = find_route(routes, request.method, request.path)
        if route is None:
            undocumented.append(str(request))
        else:
            pairs.append((route, request))
    assert not undocumented, f"requests to undocumented endpoints: {undocumented}"
    return pairs


# ------------------------------------------------------------------ Shadeform


def test_shadeform_sends_only_documented_operations(
    shadeform_requests: list[RecordedRequest], openapi: dict[str, Any]
) -> None:
    pairs = routed(shadeform_requests, shadeform_routes(openapi))
    assert {r.caller for _, r in pairs} == CLIENT_METHODS | {"update(instances)"}


def test_shadeform_authenticates_with_the_x_api_key_header(shadeform_requests: list[RecordedRequest]) -> None:
    for request in shadeform_requests:
        assert request.headers.get("X-API-KEY") == SHADEFORM_KEY, str(request)
        assert "authorization" not in request.headers, str(request)


def test_shadeform_query_parameters_are_declared(
    shadeform_requests: list[RecordedRequest], openapi: dict[str, Any]
) -> None:
    declared = shadeform_query_parameters(openapi)
    for route, request in routed(shadeform_requests, shadeform_routes(openapi)):
        unknown = set(request.query) - declared.get(route, set())
        assert not unknown, f"{request}: undeclared query parameters {unknown}"


def test_shadeform_create_bodies_validate_against_the_extended_create_request(
    shadeform_requests: list[RecordedRequest], openapi: dict[str, Any]
) -> None:
    schema = shadeform_create_request_schema(openapi)
    validator = openapi_validator(openapi, schema)
    create = Route("POST", shadeform_root_path(openapi) + "/instances/create")
    bodies = [r.body for route, r in routed(shadeform_requests, shadeform_routes(openapi)) if route == create]
    assert len(bodies) == 3
    for body in bodies:
        validator.validate(body)
    assert set().union(*bodies) == set(schema["properties"]), "a documented create field was never sent"
    launches = {b["launch_configuration"]["type"]: b["launch_configuration"] for b in bodies if "launch_configuration" in b}
    assert set(launches) == {"docker", "script"}
    docker_fields = openapi["components"]["schemas"]["DockerConfiguration"]["properties"]
    assert set(launches["docker"]["docker_configuration"]) == set(docker_fields)


def test_shadeform_create_sends_shade_cloud_true(
    shadeform_requests: list[RecordedRequest], openapi: dict[str, Any]
) -> None:
    # The OpenAPI document requires shade_cloud; the markdown says the API treats an omitted
    # one as true. Sending true is the one request both documents agree on.
    create_path = shadeform_root_path(openapi) + "/instances/create"
    bodies = [r.body for r in shadeform_requests if r.path == create_path]
    assert bodies and all(body["shade_cloud"] is True for body in bodies)


def test_shadeform_volume_and_key_bodies_carry_exactly_the_markdown_fields(
    shadeform_requests: list[RecordedRequest], openapi: dict[str, Any]
) -> None:
    root = shadeform_root_path(openapi)
    checked = set()
    for template in ("/volumes/create", "/sshkeys/add"):
        fields = shadeform_body_fields(Route("POST", template))
        for request in (r for r in shadeform_requests if r.path == root + template):
            body = request.body
            assert set(body) == set(fields), f"{request}: {sorted(body)} != {sorted(fields)}"
            for name, hint in fields.items():
                expected = (int,) if hint == "int" else (str,)
                assert is_json_type(body[name], expected), f"{request}: {name}={body[name]!r}"
            checked.add(template)
    assert checked == {"/volumes/create", "/sshkeys/add"}


def test_shadeform_update_body_is_what_update_accepts(
    shadeform_requests: list[RecordedRequest], openapi: dict[str, Any]
) -> None:
    validator = openapi_validator(openapi, shadeform_update_request_schema(openapi))
    updates = [r for r in shadeform_requests if r.caller == "update(instances)"]
    assert len(updates) == 1 and updates[0].path.endswith("/update")
    validator.validate(updates[0].body)
    assert updates[0].body["tags"] == ["team-infra", f"reconciler:{MARKER}"]


def test_shadeform_write_answers_are_what_the_markdown_says(
    shadeform_requests: list[RecordedRequest], openapi: dict[str, Any]
) -> None:
    # The markdown documents the answers of the volume and key writes (`-> {"id": uuid}`,
    # `-> 200, empty body`); the OpenAPI operations' answers are checked in test_contract_shadeform.
    root = shadeform_root_path(openapi)
    documented = re.findall(r"^- `POST (/\S+)`[^\n]*? -> (.+)$", seed_text("shadeform-volumes-sshkeys.md"), re.MULTILINE)
    checked = set()
    for template, promise in documented:
        route = Route("POST", root + template)
        for request in (r for r in shadeform_requests if route.matches(r.method, r.path)):
            answer = request.answer
            assert answer.status_code == 200, f"{request} -> {answer.status_code}"
            if '{"id": uuid}' in promise:
                body = answer.json()
                assert set(body) == {"id"} and uuid.UUID(body["id"]), f"{request} -> {body}"
            if "empty body" in promise:
                assert answer.content == b"", f"{request} -> {answer.content!r}"
            checked.add(template)
    assert checked == {"/volumes/create", "/volumes/{id}/delete", "/sshkeys/add", "/sshkeys/{id}/delete"}


def test_shadeform_reads_and_actions_send_no_body(
    shadeform_requests: list[RecordedRequest], openapi: dict[str, Any]
) -> None:
    root = shadeform_root_path(openapi)
    with_body = {root + t for t in ("/instances/create", "/volumes/create", "/sshkeys/add")}
    for request in shadeform_requests:
        if request.path in with_body or request.caller == "update(instances)":
            assert request.headers.get("content-type") == "application/json", str(request)
        else:
            assert request.content == b"", f"{request} sends an undocumented body"


# ------------------------------------------------------------------ Forward Compute


def test_forward_sends_only_documented_operations(forward_requests: list[RecordedRequest]) -> None:
    pairs = routed(forward_requests, forward_routes())
    assert {r.caller for _, r in pairs} == CLIENT_METHODS
    assert all(r.path.startswith("/v1/spot/") for _, r in pairs)


def test_forward_authenticates_with_a_bearer_token(forward_requests: list[RecordedRequest]) -> None:
    for request in forward_requests:
        assert request.headers.get("Authorization") == f"Bearer {FORWARD_KEY}", str(request)
        assert "x-api-key" not in request.headers, str(request)


def test_forward_query_parameters_are_documented(forward_requests: list[RecordedRequest]) -> None:
    declared = forward_query_parameters()
    refreshed = set()
    for route, request in routed(forward_requests, forward_routes()):
        for name, values in request.query.items():
            documented = declared.get(route, {})
            assert name in documented, f"{request}: undocumented query parameter {name}"
            if documented[name] == "boolean":
                assert values == ["true"] or values == ["false"], f"{request}: {name}={values}"
        if request.caller.startswith("get(") and request.method == "GET" and "{id}" in route.template:
            assert request.query == {"refresh": ["true"]}, f"{request}: a get must bypass the list cache"
            refreshed.add(request.caller)
    assert refreshed == {"get(instances)", "get(volumes)"}


def test_forward_create_instance_body_has_only_the_documented_fields(
    forward_requests: list[RecordedRequest],
) -> None:
    contract = forward_create_instance_contract()
    bodies = [r.body for r in forward_requests if r.caller == "create(instances)"]
    assert len(bodies) == 2
    for body in bodies:
        assert set(body) <= set(contract.fields), f"undocumented fields {set(body) - set(contract.fields)}"
        assert contract.required <= set(body), f"missing required {contract.required - set(body)}"
        for name, value in body.items():
            field = contract.fields[name]
            assert is_json_type(value, JSON_TYPES[field.json_type]), f"{name}={value!r}"
            if name in contract.item_fields:
                expected = {f.name: f for f in contract.item_fields[name]}
                for item in value:
                    assert set(item) == set(expected), f"{name} item {item}"
                    for key, part in item.items():
                        assert is_json_type(part, JSON_TYPES[expected[key].json_type]), f"{name}.{key}"
            elif field.items is not None:
                assert all(is_json_type(v, JSON_TYPES[field.items]) for v in value), f"{name}={value!r}"
    assert set().union(*bodies) == set(contract.fields) == {
        "envs",
        "name",
        "offering_id",
        "ssh_key_id",
        "volume_ids",
    }


SDK_REQUEST_MODELS = {
    "create(instances)": CreateInstanceRequest,
    "create(volumes)": CreateVolumeRequest,
    "create(ssh_keys)": CreateSshKeyRequest,
}


def test_forward_create_bodies_are_exactly_what_the_sdk_request_models_accept(
    forward_requests: list[RecordedRequest],
) -> None:
    # Forward's SDK (generated from Forward's OpenAPI document) is the reference for the write
    # endpoints the excerpt omits: a body must validate with its strict request model and name
    # no field the model does not know.
    for caller, model in SDK_REQUEST_MODELS.items():
        requests = [r for r in forward_requests if r.caller == caller and r.method == "POST"]
        assert requests, f"no {caller} request recorded"
        known = {field.alias or name for name, field in model.model_fields.items()}
        for request in requests:
            assert set(request.body) <= known, f"{request}: unknown to the SDK {set(request.body) - known}"
            model.model_validate(request.body)
            assert "name" in request.body, str(request)


def test_forward_reads_and_deletes_send_no_body(forward_requests: list[RecordedRequest]) -> None:
    for request in forward_requests:
        if request.method == "POST":
            assert request.headers.get("content-type") == "application/json", str(request)
        else:
            assert request.content == b"", f"{request} sends a body"


# ------------------------------------------------------------------ docs/api-coverage.md


@dataclass(frozen=True)
class CoverageRow:
    route: Route
    current: str
    emulator: str
    client: str


def coverage_tables() -> dict[str, dict[Route, CoverageRow]]:
    """`## Shadeform` / `## Forward Compute` sections of the coverage page -> rows by route."""
    assert COVERAGE_DOC.exists(), "docs/api-coverage.md is missing"
    tables: dict[str, dict[Route, CoverageRow]] = {}
    for section in re.split(r"^## ", COVERAGE_DOC.read_text(), flags=re.MULTILINE)[1:]:
        title = section.splitlines()[0].strip()
        rows: dict[Route, CoverageRow] = {}
        for line in section.splitlines():
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not line.startswith("|") or len(cells) != 6 or cells[0] not in ("GET", "POST", "DELETE"):
                continue
            route = Route(cells[0], cells[1].strip("`"))
            assert route not in rows, f"{title}: {route} listed twice"
            rows[route] = CoverageRow(route, cells[2], cells[3], cells[4])
        if rows:
            tables[title] = rows
    return tables


def emulated(endpoints: list[Any], root: str) -> set[Route]:
    """The routes an emulator serves (each with and without a trailing slash)."""
    served = set()
    for endpoint in endpoints:
        path = root + re.sub(r"\{(\w+):\w+\}", r"{\1}", endpoint.path).rstrip("/")
        served |= {Route(endpoint.method, path), Route(endpoint.method, path + "/")}
    return served


def check_table(
    rows: dict[Route, CoverageRow],
    documented: set[Route],
    current: set[Route],
    served: set[Route],
    used: dict[Route, set[str]],
) -> None:
    assert set(rows) == documented, (
        f"missing rows {sorted(map(str, documented - set(rows)))}, extra {sorted(map(str, set(rows) - documented))}"
    )
    for route, row in rows.items():
        assert row.current.startswith("yes" if route in current else "no"), f"{route}: current {row.current!r}"
        assert row.emulator.startswith("yes" if route in served else "no"), f"{route}: emulator {row.emulator!r}"
        claimed = set(re.findall(r"`([\w.]+\(\w*\))`", row.client))
        if not claimed:
            assert row.client == "not used", f"{route}: client cell {row.client!r}"
        assert claimed == used.get(route, set()), f"{route}: the client column says {claimed}, the run shows {used.get(route, set())}"


def test_api_coverage_table_matches_the_code(
    shadeform_requests: list[RecordedRequest], forward_requests: list[RecordedRequest], openapi: dict[str, Any]
) -> None:
    tables = coverage_tables()
    assert set(tables) == {"Shadeform", "Forward Compute"}, f"sections: {sorted(tables)}"

    root = shadeform_root_path(openapi)
    current = {Route(m.upper(), p) for p, m in operation_keys(shadeform_openapi_current())}
    relative = {Route(r.method, r.template.removeprefix(root)) for r in shadeform_routes(openapi)} | current
    used: dict[Route, set[str]] = {}
    for route, request in routed(shadeform_requests, shadeform_routes(openapi)):
        used.setdefault(Route(route.method, route.template.removeprefix(root)), set()).add(request.caller)
    check_table(tables["Shadeform"], relative, current, emulated(shadeform_emulator.ENDPOINTS, ""), used)

    used = {}
    for route, request in routed(forward_requests, forward_routes()):
        used.setdefault(route, set()).add(request.caller)
    served = emulated(forward_emulator.ENDPOINTS, "/v1")
    check_table(tables["Forward Compute"], forward_routes(), forward_sdk_routes(), served, used)
