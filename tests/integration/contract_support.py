"""The seed documents as executable contracts, shared by the contract test modules.

Everything here reads the seeds from their files (never from a hand copy): the Shadeform
OpenAPI document and its volumes/SSH-keys markdown, the Forward Compute markdown excerpt
and the seeds' README conventions. Validators check answers (what an API returns) and
requests (what our clients send); `RecordingTransport` captures the requests.

This module is imported by test modules, so pytest does not rewrite its assertions: each
carries its own message.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import yaml
from emulator_fixtures import seed_file
from openapi_schema_validator import OAS30Validator, oas30_format_checker

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def seed_text(name: str) -> str:
    return seed_file(name).read_text()


# ------------------------------------------------------------------ routes


@dataclass(frozen=True, order=True)
class Route:
    """One documented operation: a method and a path template such as `/instances/{id}/info`."""

    method: str
    template: str

    def matches(self, method: str, path: str) -> bool:
        if method.upper() != self.method:
            return False
        pattern = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(self.template))
        return re.fullmatch(pattern, path) is not None

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


def find_route(routes: set[Route], method: str, path: str) -> Route | None:
    """The documented route a request hits; a literal segment wins over a `{param}` one."""
    hits = [route for route in routes if route.matches(method, path)]
    return min(hits, key=lambda route: route.template.count("{"), default=None)


def backticked_routes(text: str) -> set[Route]:
    """Every `` `METHOD /path` `` mentioned in a markdown text (query strings dropped)."""
    methods = "|".join(HTTP_METHODS)
    return {Route(m, p) for m, p in re.findall(rf"`({methods}) (/[^`\s?]*)", text)}


# ------------------------------------------------------------------ Shadeform: OpenAPI


def documented_newer_statuses() -> list[str]:
    """The statuses shadeform-volumes-sshkeys.md documents beyond the OpenAPI enum."""
    text = seed_text("shadeform-volumes-sshkeys.md")
    match = re.search(r"statuses\s+beyond\s+`pending\|active\|deleted`\s+\(e\.g\.\s+([^)]*)\)", text)
    assert match, "the markdown seed no longer documents newer instance statuses"
    return re.findall(r"`(\w+)`", match.group(1))


def shadeform_openapi() -> dict[str, Any]:
    """The OpenAPI seed, with its instance Status enum extended by the markdown's newer statuses
    (creating, deleting, error) and the current document's (pending_provider): the enum
    predates them and a client must accept them."""
    document: dict[str, Any] = json.loads(seed_text("shadeform-openapi.json"))
    status = document["components"]["schemas"]["Status"]
    newer = [*documented_newer_statuses(), *current_statuses()]
    status["enum"] = status["enum"] + [s for s in dict.fromkeys(newer) if s not in status["enum"]]
    return document


def shadeform_openapi_current() -> dict[str, Any]:
    """Shadeform's current OpenAPI document: what the service answers today."""
    # YAML reads unquoted example times as datetimes; as JSON they are the strings they stand for.
    loaded = yaml.safe_load(seed_text("shadeform-openapi-current.yaml"))
    document: dict[str, Any] = json.loads(json.dumps(loaded, default=str))
    return document


def current_statuses() -> list[str]:
    return list(shadeform_openapi_current()["components"]["schemas"]["Status"]["enum"])


def shadeform_root_path(document: dict[str, Any]) -> str:
    """The path of the documented server URL (`/v1`): the prefix of every request path."""
    return urlsplit(document["servers"][0]["url"]).path.rstrip("/")


def operation_keys(document: dict[str, Any]) -> set[tuple[str, str]]:
    methods = {m.lower() for m in HTTP_METHODS}
    return {
        (path, method) for path, item in document["paths"].items() for method in item if method in methods
    }


def openapi_validator(document: dict[str, Any], schema: dict[str, Any]) -> OAS30Validator:
    """A validator for `schema` with the document's `#/components/...` refs resolvable."""
    rooted = dict(schema)
    rooted["components"] = document["components"]
    return OAS30Validator(rooted, format_checker=oas30_format_checker)


def check_response(document: dict[str, Any], path: str, method: str, response: httpx.Response) -> None:
    """Validate an answer against the document's response schema for its status code."""
    responses = document["paths"][path][method]["responses"]
    assert str(response.status_code) in responses, f"{method.upper()} {path} answered {response.status_code}"
    content = responses[str(response.status_code)].get("content")
    if content is None:
        assert response.content == b"", f"{method.upper()} {path} documents no body"
        return
    openapi_validator(document, content["application/json"]["schema"]).validate(response.json())


def check_request(document: dict[str, Any], path: str, method: str, body: dict[str, Any]) -> None:
    """A request body is valid per the document's own request schema."""
    schema = document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    openapi_validator(document, schema).validate(body)


def shadeform_query_parameters(document: dict[str, Any]) -> dict[Route, set[str]]:
    """The query parameters the OpenAPI document declares, per route."""
    root = shadeform_root_path(document)
    declared: dict[Route, set[str]] = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method.upper() not in HTTP_METHODS:
                continue
            parameters = [*item.get("parameters", []), *operation.get("parameters", [])]
            declared[Route(method.upper(), root + path)] = {
                p["name"] for p in parameters if p.get("in") == "query"
            }
    return declared


# ------------------------------------------------------------------ Shadeform: markdown seed


def shadeform_routes(document: dict[str, Any]) -> set[Route]:
    """Every Shadeform operation the seeds document (OpenAPI paths and the markdown's), with the
    full request path (`/v1/instances`)."""
    root = shadeform_root_path(document)
    openapi = {Route(method.upper(), root + path) for path, method in operation_keys(document)}
    markdown = {
        Route(r.method, root + r.template) for r in backticked_routes(seed_text("shadeform-volumes-sshkeys.md"))
    }
    return openapi | markdown


def markdown_fields(label: str) -> dict[str, str | None]:
    """`- Label: `a`, `b` (bool), ...` from the volumes/SSH-keys seed -> {field: type hint}."""
    text = seed_text("shadeform-volumes-sshkeys.md")
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


def is_json_type(value: Any, expected: tuple[type, ...]) -> bool:
    """isinstance, except that a bool is not a number."""
    return isinstance(value, expected) and (bool in expected or not isinstance(value, bool))


def check_markdown_object(item: dict[str, Any], fields: dict[str, str | None]) -> None:
    missing = set(fields) - set(item)
    assert not missing, f"missing {missing} in {item}"
    for name, hint in fields.items():
        if hint is None:
            continue
        expected = MARKDOWN_TYPES[hint.split(",")[0].strip()]
        assert is_json_type(item[name], expected), f"{name}={item[name]!r} is not {hint}"


def shadeform_volume_fields() -> dict[str, str | None]:
    """A Volume's documented fields; `size_in_gb` typed as the seed types it in the create body."""
    fields = markdown_fields("Volume")
    fields["size_in_gb"] = "int"
    return fields


def shadeform_volume_type_fields() -> dict[str, str | None]:
    """A volume type's documented fields; the price is a string, as the current document says
    (the markdown seed's "number" predates it)."""
    fields = markdown_fields("VolumeType")
    fields["price_per_gb_per_hour"] = "string"
    return fields


def shadeform_ssh_key_fields() -> dict[str, str | None]:
    """An SSH key's documented fields (the seed gives them inline in the list answer)."""
    text = seed_text("shadeform-volumes-sshkeys.md")
    line = '`{"ssh_keys": [{"id", "name", "public_key", "is_default" (bool)}]}`'
    assert line in text, "the seed's SSH key field list changed"
    return {"id": "string", "name": "string", "public_key": "string", "is_default": "bool"}


def shadeform_body_fields(route: Route) -> dict[str, str | None]:
    """`` `POST /volumes/create` body `{"cloud", "size_in_gb" (int), ...}` `` -> {field: hint}."""
    text = seed_text("shadeform-volumes-sshkeys.md")
    match = re.search(rf"`{route.method} {re.escape(route.template)}` body `\{{(.*?)\}}`", text)
    assert match, f"the seed documents no body for {route}"
    return {name: hint or None for name, hint in re.findall(r'"(\w+)"(?: \((\w+)\))?', match.group(1))}


def _threshold_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "date_threshold": {"type": "string", "format": "date-time"},
            "spend_threshold": {"type": "string", "pattern": r"^\d+(\.\d+)?$"},
        },
        "additionalProperties": False,
    }


def _newer_create_fields() -> dict[str, dict[str, Any]]:
    """JSON schemas of the create fields the markdown seed adds to the OpenAPI CreateRequest."""
    threshold = _threshold_schema()
    return {
        "ssh_key_id": {"type": "string"},
        "volume_ids": {"type": "array", "items": {"type": "string"}},
        "tags": {"type": "array", "items": {"type": "string"}},
        "envs": {"type": "array", "items": {"$ref": "#/components/schemas/Env"}},
        "auto_delete": threshold,
        "alert": threshold,
        "rental_type": {"type": "string", "enum": ["on_demand", "spot"]},
    }


def documented_newer_create_fields() -> set[str]:
    """The field names the markdown lists as accepted by `POST /instances/create` beyond the OpenAPI."""
    text = seed_text("shadeform-volumes-sshkeys.md")
    block = re.search(r"`POST /instances/create` also accepts:\n((?:- .*\n)+)", text)
    spot = re.search(r"create accepts `(\w+)` \(default `(\w+)`\)", text)
    assert block and spot, "the markdown seed no longer lists the newer create fields"
    return set(re.findall(r"`(\w+)`", block.group(1))) | {spot.group(1)}


def documented_threshold_fields() -> set[str]:
    text = seed_text("shadeform-volumes-sshkeys.md")
    match = re.search(r"`auto_delete` `\{([^}]*)\}`", text)
    assert match, "the markdown seed no longer documents the auto_delete shape"
    return set(re.findall(r"(\w+) \(", match.group(1)))


def _strict_objects(document: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """A copy of `root` and every component it references, with unknown properties refused.

    The seed leaves `additionalProperties` open; a client must still send only what the
    contract names, so request bodies are validated strictly.
    """
    components = copy.deepcopy(document["components"])
    schemas = components["schemas"]
    seen: set[str] = set()

    def tighten(schema: Any) -> None:
        if isinstance(schema, list):
            for child in schema:
                tighten(child)
            return
        if not isinstance(schema, dict):
            return
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name not in seen:
                seen.add(name)
                tighten(schemas[name])
        if "properties" in schema and "allOf" not in schema:
            schema.setdefault("additionalProperties", False)
        for key, child in schema.items():
            if key != "$ref":
                tighten(child)

    rooted = copy.deepcopy(root)
    tighten(rooted)
    rooted["components"] = components
    return rooted


def shadeform_create_request_schema(document: dict[str, Any]) -> dict[str, Any]:
    """The seed's `CreateRequest`, extended with the fields the markdown documents, strict.

    `shade_cloud` stays required: the markdown says real clients may omit it and the API
    then treats it as true, so a client that sends `true` is valid under both documents;
    ours does (see `test_shadeform_create_sends_shade_cloud_true`).
    """
    create = copy.deepcopy(document["components"]["schemas"]["CreateRequest"])
    extension = _newer_create_fields()
    assert set(extension) == documented_newer_create_fields(), "the markdown's create fields changed"
    threshold_fields = set(extension["auto_delete"]["properties"])
    assert threshold_fields == documented_threshold_fields(), "the markdown's threshold shape changed"
    create["properties"].update(extension)
    return _strict_objects(document, create)


def documented_update_fields() -> set[str]:
    text = seed_text("shadeform-volumes-sshkeys.md")
    match = re.search(r"`POST /instances/\{id\}/update` accepts ((?:`\w+`(?:, )?)+)", text)
    assert match, "the markdown seed no longer lists what update accepts"
    return set(re.findall(r"`(\w+)`", match.group(1)))


def shadeform_update_request_schema(document: dict[str, Any]) -> dict[str, Any]:
    """`POST /instances/{id}/update`: name and tags (and the thresholds) only, strict."""
    threshold = _threshold_schema()
    update = {
        "type": "object",
        "properties": {
            "name": {"$ref": "#/components/schemas/Name"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "auto_delete": threshold,
            "alert": threshold,
        },
    }
    assert set(update["properties"]) == documented_update_fields(), "the markdown's update fields changed"
    return _strict_objects(document, update)


# ------------------------------------------------------------------ Forward Compute: markdown seed


@dataclass(frozen=True)
class DocumentedField:
    name: str
    json_type: str
    required: bool
    enum: tuple[str, ...]
    items: str | None = None


FIELD_LINE = re.compile(
    r"^- \*\*(?P<name>\w+)\*\* \((?P<type>[a-z]+)(?: \((?P<inner>[^)]*)\))?\)(?P<required> \(required\))?"
)
QUERY_LINE = re.compile(r"^- \*\*(?P<name>\w+)\*\* \((?P<type>[a-z]+), query")
ENUM_TAIL = re.compile(r'\(("[^"]+"(?:\|"[^"]+")*)\)\s*$')
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def _documented_fields(lines: list[str]) -> list[DocumentedField]:
    fields = []
    for line in lines:
        match = FIELD_LINE.match(line.strip())
        if match:
            enum = ENUM_TAIL.search(line)
            values = tuple(v.strip('"') for v in enum.group(1).split("|")) if enum else ()
            items = match["inner"] if match["type"] == "array" else None
            fields.append(
                DocumentedField(match["name"], match["type"], bool(match["required"]), values, items)
            )
    return fields


def _forward_blocks() -> dict[str, str]:
    """`GET /v1/spot/instances/` -> the text of its section."""
    blocks: dict[str, str] = {}
    for block in re.split(r"^### ", seed_text("forwardcompute-api.md"), flags=re.MULTILINE)[1:]:
        heading = re.match(r"(GET|POST|PUT|PATCH|DELETE) (\S+)", block)
        assert heading, f"unreadable section heading: {block[:80]}"
        blocks[f"{heading.group(1)} {heading.group(2)}"] = block
    return blocks


def forward_sections() -> dict[str, dict[str, list[DocumentedField]]]:
    """`GET /v1/spot/instances/` -> {status code -> documented response fields}."""
    sections: dict[str, dict[str, list[DocumentedField]]] = {}
    for section, block in _forward_blocks().items():
        responses: dict[str, list[DocumentedField]] = {}
        for part in re.split(r"^##### ", block, flags=re.MULTILINE)[1:]:
            responses[part.split(" ", 1)[0]] = _documented_fields(part.splitlines())
        sections[section] = responses
    return sections


def forward_routes() -> set[Route]:
    """Every Forward Compute operation: the markdown's sections plus the README's REST conventions
    for the ones it does not list (deletes, volume and key creation)."""
    documented = {Route(*section.split(" ", 1)) for section in _forward_blocks()}
    conventions = {r for r in backticked_routes(seed_text("README.md")) if r.template.startswith("/v1/")}
    return documented | conventions | forward_sdk_routes()


def forward_sdk_routes() -> set[Route]:
    """The spot and model routes Forward's own SDK (fwd-sdk) calls, read from its API modules."""
    import fwd_sdk.api

    routes = set()
    for module in Path(fwd_sdk.api.__file__).parent.glob("*_api.py"):
        text = module.read_text()
        for method, path in re.findall(r"method='(\w+)',\s*resource_path='([^']+)'", text):
            if path.startswith(("/v1/spot/", "/v1/models")):
                routes.add(Route(method, path))
    assert routes, "no spot routes found in the SDK"
    return routes


def forward_convention_routes() -> set[Route]:
    """The routes only the README's conventions give (the excerpt does not list them)."""
    return forward_routes() - {Route(*section.split(" ", 1)) for section in _forward_blocks()}


def forward_query_parameters() -> dict[Route, dict[str, str]]:
    """The query parameters each Forward section documents: {route: {name: json type}}."""
    declared: dict[Route, dict[str, str]] = {}
    for section, block in _forward_blocks().items():
        params = block.split("#### Responses", 1)[0].splitlines()
        found = (QUERY_LINE.match(line.strip()) for line in params)
        declared[Route(*section.split(" ", 1))] = {m["name"]: m["type"] for m in found if m}
    return declared


@dataclass(frozen=True)
class ForwardCreateContract:
    """`POST /v1/spot/instances/` request: its top-level fields, the required ones, their types."""

    fields: dict[str, DocumentedField]
    item_fields: dict[str, list[DocumentedField]]

    @property
    def required(self) -> set[str]:
        return {name for name, field in self.fields.items() if field.required}


def forward_create_instance_contract() -> ForwardCreateContract:
    """The request body of `POST /v1/spot/instances/`.

    The excerpt flattens nested objects (the `envs` items' `name` and `value` sit in the same
    list as the top-level `name`); the seed's own curl example body gives the nesting.
    """
    block = _forward_blocks()["POST /v1/spot/instances/"]
    request = block.split("#### Request Body", 1)[1].split("#### Responses", 1)[0]
    documented = _documented_fields(request.splitlines())
    curl = re.search(r"-d '(\{.*?\})' ", block, re.DOTALL)
    assert curl, "the seed's POST example is gone"
    example: dict[str, Any] = json.loads(curl.group(1))
    fields: dict[str, DocumentedField] = {}
    item_fields: dict[str, list[DocumentedField]] = {}
    position = 0
    for name, value in example.items():
        while position < len(documented) and documented[position].name != name:
            position += 1
        assert position < len(documented), f"the example's field {name} is not documented"
        field = documented[position]
        fields[name] = field
        if field.json_type == "array" and value and isinstance(value[0], dict):
            count = len(value[0])
            item_fields[name] = documented[position + 1 : position + 1 + count]
            assert {f.name for f in item_fields[name]} == set(value[0]), f"items of {name} misread"
            position += count
        position += 1
    return ForwardCreateContract(fields, item_fields)


def forward_error_types() -> set[str]:
    text = seed_text("forwardcompute-api.md")
    match = re.search(r"with type one of ([\w, ]+)\.", text)
    assert match, "the seed's error model sentence changed"
    return {t.strip() for t in match.group(1).split(",")}


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


LIST_ENVELOPE_FIELDS = frozenset({"object", "data", "url"})


def check_forward_answer(fields: list[DocumentedField], body: Any, where: str) -> None:
    objects = candidate_objects(body)
    # An empty list answer has only its envelope: the item fields cannot be there.
    empty_list = isinstance(body, dict) and body.get("data") == []
    enums: dict[str, set[str]] = {}
    for field in fields:
        enums.setdefault(field.name, set()).update(field.enum)
    for field in fields:
        values = [obj[field.name] for obj in objects if field.name in obj]
        if field.required and not (empty_list and field.name not in LIST_ENVELOPE_FIELDS):
            assert values, f"{where}: required field {field.name} missing"
        for value in values:
            if field.json_type == "object" and isinstance(value, list):
                continue  # `data` is an object in single answers and an array in lists
            assert is_json_type(value, JSON_TYPES[field.json_type]), (
                f"{where}: {field.name}={value!r} is not {field.json_type}"
            )
            if enums[field.name] and isinstance(value, str):
                assert value in enums[field.name], (
                    f"{where}: {field.name}={value!r} not in {enums[field.name]}"
                )


def check_forward_error(response: httpx.Response, where: str) -> None:
    """The standard error object: `{"error": {"type": <documented type>, "message": ...}}`."""
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"{where}: not the standard error object: {body}"
    assert error.get("type") in forward_error_types(), f"{where}: undocumented error type {error.get('type')}"
    assert isinstance(error.get("message"), str) and error["message"], f"{where}: error without a message"


# ------------------------------------------------------------------ recording requests


async def send_and_copy(
    inner: httpx.AsyncBaseTransport, request: httpx.Request
) -> tuple[httpx.Response, httpx.Response]:
    """Send through `inner`; return the answer for the client and a decoded copy to inspect."""
    response = await inner.handle_async_request(request)
    raw = b"".join([chunk async for chunk in response.aiter_raw()])
    await response.aclose()
    inspected = httpx.Response(response.status_code, headers=response.headers, content=raw, request=request)
    inspected.read()
    return httpx.Response(response.status_code, headers=response.headers, content=raw, request=request), inspected


@dataclass(frozen=True)
class RecordedRequest:
    """One request as it left a client, the client method that sent it, and the answer."""

    caller: str
    method: str
    path: str
    query: dict[str, list[str]]
    headers: httpx.Headers
    content: bytes
    answer: httpx.Response

    @property
    def body(self) -> Any:
        return json.loads(self.content) if self.content else None

    def __str__(self) -> str:
        return f"{self.caller}: {self.method} {self.path}"


class RecordingTransport(httpx.AsyncBaseTransport):
    """Passes every request on to `inner` and keeps a copy of it and of its answer, labelled
    with the current caller."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[RecordedRequest] = []
        self.caller = "(unlabelled)"

    @contextmanager
    def calling(self, caller: str) -> Iterator[None]:
        """Label the requests sent inside the block (`list(instances)`, `offerings()`)."""
        previous, self.caller = self.caller, caller
        try:
            yield
        finally:
            self.caller = previous

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()
        response, kept = await send_and_copy(self.inner, request)
        self.requests.append(
            RecordedRequest(
                caller=self.caller,
                method=request.method,
                path=request.url.path,
                query=parse_qs(request.url.query.decode(), keep_blank_values=True),
                headers=request.headers.copy(),
                content=content,
                answer=kept,
            )
        )
        return response
