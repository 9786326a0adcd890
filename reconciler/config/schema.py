"""The YAML format as pydantic models: strict (unknown keys are errors) and exported as JSON Schema.

Models check one resource at a time, after interpolation. Checks that span fields or
resources (a pin or requirements, references, cycles) live in the loader, where they can
point at the exact line.
"""

from __future__ import annotations

import copy
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from types import GenericAlias
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    WithJsonSchema,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from reconciler.config.schema_docs import apply_schema_docs
from reconciler.expiry import parse_duration
from reconciler.identity import CONFIG_NAME_PATTERN
from reconciler.limits import MAX_VOLUME_GB, MIN_VOLUME_GB
from reconciler.model import Kind
from reconciler.provider_spec import provider_names, provider_specs
from reconciler.providers.base import EMBEDDED, MARKER_PREFIX, NAME_MARKER_SEPARATOR
from reconciler.public_keys import public_key_problem

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
VARIABLE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"
INTERPOLATION_PATTERN = r"^\$\{[^{}]+\}$"

_NAME_RE = re.compile(NAME_PATTERN)
_ENV_NAME_RE = re.compile(ENV_NAME_PATTERN)
_RESERVED_NAME_PART = NAME_MARKER_SEPARATOR + MARKER_PREFIX


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise PydanticCustomError(
            "resource_name",
            "'{name}' is not a valid name",
            {
                "name": value,
                "hint": "use letters, digits, '_', '.' and '-', starting with a letter, digit or '_'",
            },
        )
    if _RESERVED_NAME_PART in value:
        raise PydanticCustomError(
            "resource_name",
            "'{name}' contains '{part}', which reconciler reserves for its ownership marker",
            {"name": value, "part": _RESERVED_NAME_PART, "hint": "rename it"},
        )
    return value


def _check_env_name(value: str) -> str:
    if not _ENV_NAME_RE.match(value):
        raise PydanticCustomError(
            "env_name",
            "'{name}' is not a valid environment variable name",
            {"name": value, "hint": "use letters, digits and '_', not starting with a digit"},
        )
    return value


def _scalar_text(value: Any) -> Any:
    """Env values are strings; YAML `PORT: 8000` or `DEBUG: true` means the text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _env_shorthand(value: Any) -> Any:
    if isinstance(value, dict):
        return value
    return {"value": _scalar_text(value)}


def _check_public_key(value: str) -> str:
    text = value.strip()
    if "PRIVATE KEY" in text[:4096]:
        raise PydanticCustomError(
            "public_key",
            "this is a private key; never put a private key in the configuration",
            {"hint": "use the .pub file next to it, e.g. ${file:keys/deploy.pub}"},
        )
    problem = public_key_problem(text)
    if problem is not None:
        raise PydanticCustomError(
            "public_key",
            "not an OpenSSH public key: it {problem}",
            {
                "problem": problem,
                "hint": "give the one line of a .pub file, like 'ssh-ed25519 AAAAC3Nza... user@host'",
            },
        )
    return text


def _check_endpoint(value: str) -> str:
    if value == EMBEDDED or re.match(r"^https?://[^\s/]+", value):
        return value.rstrip("/") if value != EMBEDDED else value
    raise PydanticCustomError(
        "endpoint",
        "endpoint must be 'embedded' or an http(s) URL, not '{value}'",
        {"value": value, "hint": "for example endpoint: https://api.shadeform.ai/v1"},
    )


def _decimal_text(value: Any) -> Any:
    """Spend thresholds are dollars; kept as a normalised decimal string, as the API takes them."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return value
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise PydanticCustomError(
            "decimal", "'{value}' is not a number of dollars", {"value": value}
        ) from None
    if not number.is_finite() or number <= 0:
        raise PydanticCustomError("decimal", "must be a positive amount of dollars", {})
    return format(number.normalize(), "f")


def _check_duration(value: str) -> str:
    if parse_duration(value) is None:
        raise PydanticCustomError(
            "duration",
            "'{value}' is not a duration",
            {"value": value, "hint": "a whole number of minutes, hours or days: 90m, 8h, 2d"},
        )
    return value


def _check_timestamp(value: str) -> str:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise PydanticCustomError(
            "timestamp",
            "'{value}' is not an RFC 3339 time with a timezone",
            {"value": value, "hint": "for example 2025-06-30T18:00:00Z"},
        )
    return value


def _check_tag(value: str) -> str:
    if not value:
        raise PydanticCustomError("tag", "tags must not be empty", {})
    if value.startswith(MARKER_PREFIX):
        raise PydanticCustomError(
            "tag",
            "tags starting with '{prefix}' are reserved for reconciler's ownership marker",
            {"prefix": MARKER_PREFIX, "hint": "rename the tag"},
        )
    return value


ResourceName = Annotated[str, AfterValidator(_check_name), Field(json_schema_extra={"pattern": NAME_PATTERN})]
EnvName = Annotated[
    str, AfterValidator(_check_env_name), Field(json_schema_extra={"pattern": ENV_NAME_PATTERN})
]
ScalarText = Annotated[
    str, BeforeValidator(_scalar_text), WithJsonSchema({"type": ["string", "number", "boolean"]})
]
NonEmpty = Annotated[str, Field(min_length=1)]
Port = Annotated[int, Field(ge=1, le=65535)]
DollarAmount = Annotated[
    str,
    BeforeValidator(_decimal_text),
    WithJsonSchema({"type": ["string", "number"], "pattern": r"^[0-9.]+$"}),
]


MAX_COUNT = 10_000  # a typo like 100000000 must fail at once, not exhaust the machine


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo must fail loudly, not be ignored."""

    model_config = ConfigDict(extra="forbid")


class ProviderBlock(StrictModel):
    """How to reach one provider API."""

    api_key: str | None = Field(
        default=None, description="API key; default from the provider's <NAME>_API_KEY"
    )
    endpoint: Annotated[str, AfterValidator(_check_endpoint)] = Field(
        default=EMBEDDED, description="'embedded' (the built-in emulator) or the API's base URL"
    )
    rate_limit: PositiveFloat | None = Field(default=None, description="requests per second")
    timeout: PositiveFloat | None = Field(default=None, description="seconds per request")
    max_retries: NonNegativeInt | None = None
    list_consistency_seconds: NonNegativeFloat | None = Field(
        default=None, description="how long a list may lag behind a write"
    )


class VariableBlock(StrictModel):
    """An input variable; its value comes from default < var files < RECONCILER_VAR_<name> < --var."""

    type: Literal["string", "number", "bool", "list", "map"] = "string"
    default: Any = None
    description: str | None = None
    sensitive: bool = Field(default=False, description="never printed; values are scrubbed from output")


class BackendBlock(StrictModel):
    """Where state is kept."""

    type: Literal["local", "postgres"] = "local"
    path: NonEmpty | None = Field(default=None, description="local: state file, relative to the YAML file")
    url: NonEmpty | None = Field(default=None, description="postgres: connection URL")
    schema_name: NonEmpty = Field(default="reconciler", alias="schema", description="postgres: schema name")
    stack: NonEmpty | None = Field(default=None, description="postgres: state key; default: the config name")


class PolicyBlock(StrictModel):
    """Budgets a plan must stay inside (dollars, running cost of everything it leaves)."""

    max_hourly_spend: PositiveFloat | None = Field(default=None, description="dollars per hour in total")
    max_monthly_spend: PositiveFloat | None = Field(default=None, description="dollars per month in total")


class EmulatorBlock(StrictModel):
    """How the built-in emulator behaves for `endpoint: embedded` (RECONCILER_EMULATOR_* override)."""

    boot_seconds: NonNegativeFloat | None = Field(default=None, description="pending -> active")
    delete_seconds: NonNegativeFloat | None = Field(default=None, description="deleting -> gone")
    list_lag_seconds: NonNegativeFloat | None = Field(
        default=None, description="how far Forward's cached lists lag writes"
    )
    latency_ms: NonNegativeFloat | None = Field(default=None, description="added to every call")
    faults: NonEmpty | None = Field(default=None, description="fault spec, e.g. shadeform.create=lost_response:0.5")
    seed: NonNegativeInt | None = Field(default=None, description="seed of fault probabilities")


class LifecycleBlock(StrictModel):
    prevent_destroy: bool = False
    create_before_destroy: bool = False
    ignore_changes: list[NonEmpty] = Field(default_factory=list, description="attribute names")


class ResourceBlock(StrictModel):
    """Fields every resource kind has."""

    name: ResourceName
    count: Annotated[int, Field(ge=0, le=MAX_COUNT)] | None = Field(
        default=None, description=f"create name[0..count-1], named <name>-<i> (at most {MAX_COUNT})"
    )
    lifecycle: LifecycleBlock = Field(default_factory=LifecycleBlock)
    depends_on: list[NonEmpty] = Field(default_factory=list, description="addresses, e.g. volumes.data")


class SshKeyBlock(ResourceBlock):
    provider: str  # the loader checks it names a registered provider
    public_key: Annotated[str, AfterValidator(_check_public_key)]
    private_key_file: NonEmpty | None = Field(
        default=None,
        description="local path of the matching private key, for `reconciler ssh` (never read)",
    )


class SharedSshKeyBlock(ResourceBlock):
    """One key declared for several providers: one object on each, referenced by one name
    (`ssh_key: deploy` uses the object on the provider the instance lands on)."""

    providers: Annotated[list[NonEmpty], Field(min_length=1)] = Field(
        description='one object per provider, addressed ssh_keys.NAME["provider"]'
    )
    public_key: Annotated[str, AfterValidator(_check_public_key)]
    private_key_file: NonEmpty | None = Field(
        default=None,
        description="local path of the matching private key, for `reconciler ssh` (never read)",
    )


# Checked against the provider's limits (reconciler.limits) by the loader, with a hint.
VolumeSize = Annotated[int, Field(json_schema_extra={"minimum": MIN_VOLUME_GB, "maximum": MAX_VOLUME_GB})]


class VolumeBlock(ResourceBlock):
    """Fields every provider's volumes have; each provider's block names itself in `provider`."""

    provider: str
    cloud: NonEmpty | None = None
    region: NonEmpty
    size_gb: VolumeSize


class ShadeformVolumeBlock(VolumeBlock):
    provider: Literal["shadeform"]
    cloud: NonEmpty


class ForwardVolumeBlock(VolumeBlock):
    provider: Literal["forward"]
    cloud: NonEmpty | None = Field(default=None, description="Forward's underlying provider")


class EnvValueBlock(StrictModel):
    value: ScalarText
    sensitive: bool = False


EnvEntry = Annotated[
    EnvValueBlock,
    BeforeValidator(_env_shorthand),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": ["string", "number", "boolean"]},
                {
                    "type": "object",
                    "properties": {
                        "value": {"type": ["string", "number", "boolean"]},
                        "sensitive": {"type": "boolean"},
                    },
                    "required": ["value"],
                    "additionalProperties": False,
                },
            ]
        }
    ),
]
Envs = dict[EnvName, EnvEntry]


class PortMappingBlock(StrictModel):
    host_port: Port
    container_port: Port


class VolumeMountBlock(StrictModel):
    host_path: NonEmpty
    container_path: NonEmpty


class DockerLaunchBlock(StrictModel):
    type: Literal["docker"]
    image: NonEmpty
    args: str | None = None
    envs: Envs = Field(default_factory=dict)
    port_mappings: list[PortMappingBlock] = Field(default_factory=list)
    shared_memory_in_gb: PositiveInt | None = None
    volume_mounts: list[VolumeMountBlock] = Field(default_factory=list)


class ScriptLaunchBlock(StrictModel):
    type: Literal["script"]
    script: NonEmpty


Launch = Annotated[DockerLaunchBlock | ScriptLaunchBlock, Field(discriminator="type")]


class ThresholdBlock(StrictModel):
    date_threshold: Annotated[str, AfterValidator(_check_timestamp)] | None = None
    spend_threshold: DollarAmount | None = None

    @model_validator(mode="after")
    def _one_threshold(self) -> ThresholdBlock:
        if self.date_threshold is None and self.spend_threshold is None:
            raise PydanticCustomError(
                "threshold", "give date_threshold, spend_threshold or both", {"hint": "or remove the block"}
            )
        return self


class OfferingBlock(StrictModel):
    """Requirements: the planner ranks the available offerings that meet them, cheapest first."""

    gpu_type: NonEmpty | list[NonEmpty] | None = Field(default=None, description="one GPU type or a list")
    num_gpus: PositiveInt | None = None
    max_hourly_price: PositiveFloat | None = Field(
        default=None, description="dollars per hour, whole instance"
    )
    max_price_per_gpu_hour: PositiveFloat | None = Field(default=None, description="dollars per GPU-hour")
    min_vram_per_gpu_gb: PositiveInt | None = None
    min_vcpus: PositiveInt | None = None
    min_memory_gb: PositiveInt | None = None
    region: NonEmpty | None = None
    cloud: NonEmpty | None = None
    regions: list[NonEmpty] | None = Field(default=None, description="allowed regions")
    clouds: list[NonEmpty] | None = Field(default=None, description="allowed clouds")
    exclude_regions: list[NonEmpty] | None = None
    exclude_clouds: list[NonEmpty] | None = None
    rental_type: Literal["on_demand", "spot"] | None = None
    deployment_type: NonEmpty | None = Field(default=None, description="vm, container or baremetal")
    providers: Annotated[list[NonEmpty], Field(min_length=1)] | None = Field(
        default=None,
        description="choose the provider too, among these (then leave out the instance's provider:)",
    )


class FallbackBlock(StrictModel):
    """On a capacity refusal, apply tries the next offerings of the plan's ranked list."""

    max_attempts: PositiveInt = Field(description="creates tried in all, the plan's choice included")
    on_boot_failure: bool = Field(
        default=False, description="also move on when an instance ends in error while booting (it is deleted)"
    )


class InstanceBlock(ResourceBlock):
    """Fields every provider's instances have. A provider's block adds its pin field (its
    spec's `type_key`) and its own attributes; every added field becomes an attribute."""

    cloud: NonEmpty | None = None
    region: NonEmpty | None = None
    offering: OfferingBlock | None = Field(
        default=None, description="requirements instead of a pinned offering"
    )
    ssh_key: NonEmpty | None = Field(
        default=None, description="name of an ssh_keys entry (name[i] if counted)"
    )
    volumes: list[NonEmpty] = Field(default_factory=list, description="names of volumes entries")
    envs: Envs = Field(default_factory=dict)
    on_failure: Literal["replace", "keep"] = Field(
        default="replace", description="what to do with an instance in error"
    )
    fallback: FallbackBlock | None = Field(
        default=None, description="capacity failover along the ranked offerings (with offering:)"
    )
    expires_after: Annotated[str, AfterValidator(_check_duration)] | None = Field(
        default=None, description="delete this long after the plan that creates it: 90m, 8h, 2d"
    )
    expires_at: Annotated[str, AfterValidator(_check_timestamp)] | None = Field(
        default=None, description="delete at this RFC 3339 time"
    )
    max_spend: DollarAmount | None = Field(default=None, description="delete once it has cost this many dollars")


class ShadeformInstanceBlock(InstanceBlock):
    provider: Literal["shadeform"]
    shade_instance_type: NonEmpty | None = Field(default=None, description="pin: with cloud and region")
    os: NonEmpty | None = None
    launch: Launch | None = None
    tags: list[Annotated[str, AfterValidator(_check_tag)]] = Field(default_factory=list)
    rental_type: Literal["on_demand", "spot"] | None = None
    auto_delete: ThresholdBlock | None = None
    alert: ThresholdBlock | None = None


class ForwardInstanceBlock(InstanceBlock):
    provider: Literal["forward"]
    offering_id: NonEmpty | None = Field(default=None, description="pin: a compute offering id")


class ChosenInstanceBlock(InstanceBlock):
    """An instance whose provider the plan chooses (`offering.providers`): the keys every
    provider's instances take, since which provider it lands on is known only at plan time."""

    offering: OfferingBlock = Field(description="requirements, with providers: the plan chooses among them")


class OutputBlock(StrictModel):
    """A named value printed after apply and by `reconciler output` (as Terraform's outputs)."""

    value: Any = Field(description="any value; may use ${instances.NAME.ATTRIBUTE}, ${var.X}")
    description: str | None = None
    sensitive: bool = Field(default=False, description="printed only when asked for by name")


OUTPUT_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"

TOP_LEVEL_KEYS: tuple[str, ...] = (
    "name",
    "providers",
    "variables",
    "backend",
    "emulator",
    "policy",
    "ssh_keys",
    "volumes",
    "instances",
    "outputs",
)
RESOURCE_SECTIONS: dict[str, Kind] = {kind.value: kind for kind in Kind}
# Each kind's fields shared by every provider; what a provider's block adds are its own.
KIND_BASE_BLOCKS: dict[Kind, type[ResourceBlock]] = {
    Kind.SSH_KEY: SshKeyBlock,
    Kind.VOLUME: VolumeBlock,
    Kind.INSTANCE: InstanceBlock,
}
# Sections of a resource entry that do not become attributes.
NOT_ATTRIBUTES = frozenset({"provider", "count", "lifecycle", "depends_on", "on_failure", "offering", "fallback"})
# Canonical attribute names every provider's resources have (see reconciler.providers.base).
COMMON_ATTRIBUTES: dict[Kind, frozenset[str]] = {
    Kind.SSH_KEY: frozenset({"name", "public_key"}),
    Kind.VOLUME: frozenset({"name", "region", "size_gb", "cloud"}),
    Kind.INSTANCE: frozenset({"name", "region", "cloud", "ssh_key", "volumes", "envs", "expiry"}),
}


def resource_model(kind: Kind, provider: str) -> type[ResourceBlock]:
    """The model of one provider's entries of `kind`."""
    model: type[ResourceBlock] = provider_specs()[provider].blocks[kind]
    return model


def provider_fields(kind: Kind, provider: str) -> tuple[str, ...]:
    """The fields a provider's block of `kind` adds to the fields every provider has."""
    shared = KIND_BASE_BLOCKS[kind].model_fields
    fields = resource_model(kind, provider).model_fields
    return tuple(name for name in fields if name not in shared and name != "provider")


def kind_attributes(kind: Kind) -> frozenset[str]:
    """Canonical attribute names of a kind, on any provider (for ignore_changes, references)."""
    specs = tuple(provider_specs().values())
    cached = _kind_attributes_seen.get(kind)
    if cached is not None and len(cached[0]) == len(specs) and all(a is b for a, b in zip(cached[0], specs, strict=True)):
        return cached[1]
    names = set(COMMON_ATTRIBUTES[kind])
    for spec in specs:
        names.update(provider_fields(kind, spec.name))
    _kind_attributes_seen[kind] = (specs, frozenset(names))
    return frozenset(names)


# Per kind: the registry's specs when the attribute names were last gathered, and those names.
_kind_attributes_seen: dict[Kind, tuple[tuple[object, ...], frozenset[str]]] = {}


class _DocumentBase(StrictModel):
    model_config = ConfigDict(extra="forbid", title="reconciler configuration")


# Entries that name several providers (`providers:`) beside each provider's own block.
_SEVERAL_PROVIDERS: dict[Kind, type[ResourceBlock]] = {
    Kind.SSH_KEY: SharedSshKeyBlock,
    Kind.INSTANCE: ChosenInstanceBlock,
}


def _entry_union(kind: Kind) -> Any:
    models = tuple(dict.fromkeys(resource_model(kind, name) for name in provider_names()))
    single: Any = models[0] if len(models) == 1 else Annotated[Union[models], Field(discriminator="provider")]  # noqa: UP007
    several = _SEVERAL_PROVIDERS.get(kind)
    return single if several is None else single | several


def config_document_model() -> type[StrictModel]:
    """The whole document as one model, over the registered providers (for the JSON Schema)."""
    provider_key: Any = Literal[provider_names()]
    fields: dict[str, Any] = {
        "name": (
            Annotated[str, Field(pattern=CONFIG_NAME_PATTERN)] | None,
            Field(
                default=None,
                description="names this configuration's state (state/<name>.json) and its PostgreSQL "
                "stack; default: the file's stem, or the directory's folder name",
            ),
        ),
        "providers": (dict[provider_key, ProviderBlock], Field(default_factory=dict)),
        "variables": (
            dict[Annotated[str, Field(pattern=VARIABLE_NAME_PATTERN)], VariableBlock],
            Field(default_factory=dict),
        ),
        "backend": (BackendBlock | None, None),
        "emulator": (EmulatorBlock | None, None),
        "policy": (PolicyBlock | None, None),
        **{kind.value: (GenericAlias(list, (_entry_union(kind),)), Field(default_factory=list)) for kind in Kind},
        "outputs": (
            dict[Annotated[str, Field(pattern=OUTPUT_NAME_PATTERN)], OutputBlock],
            Field(default_factory=dict),
        ),
    }
    document: type[StrictModel] = create_model(
        "ConfigDocument", __base__=_DocumentBase, __doc__=CONFIG_DOCUMENT_DESCRIPTION, **fields
    )
    return document


CONFIG_DOCUMENT_DESCRIPTION = """Providers, variables, state backend, SSH keys, volumes and GPU instances.

    A directory's YAML files merge into one document: lists concatenate, maps merge.
    """


def foreign_fields(kind: Kind, provider: str | None) -> dict[str, str]:
    """Keys that other providers' variants of `kind` accept and `provider`'s does not (None:
    an instance whose provider is chosen, which takes only what every provider takes)."""
    own = ChosenInstanceBlock if provider is None else resource_model(kind, provider)
    own_fields = set(own.model_fields)
    found: dict[str, str] = {}
    for other in provider_names():
        if other == provider:
            continue
        for name in resource_model(kind, other).model_fields:
            if name not in own_fields:
                found.setdefault(name, other)
    return found


_UNINTERPOLATED_DEFINITIONS = {"VariableBlock"}
_KEPT_OUTSIDE = ("title", "description", "default")


def config_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the YAML format, for editors and CI linting.

    Any field that is not a string also accepts a whole-string `${...}` expression, since
    interpolation happens before validation and keeps the expression's type.
    """
    schema = copy.deepcopy(config_document_model().model_json_schema(by_alias=True))
    # One SSH key model serves every provider: its `provider` is any registered name.
    schema["$defs"]["SshKeyBlock"]["properties"]["provider"] = {
        "enum": list(provider_names()),
        "title": "Provider",
        "type": "string",
    }
    for name, definition in schema.get("$defs", {}).items():
        if name not in _UNINTERPOLATED_DEFINITIONS:
            _allow_interpolation(definition)
    apply_schema_docs(schema)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def _allow_interpolation(definition: dict[str, Any]) -> None:
    for key, field in list(definition.get("properties", {}).items()):
        if _accepts_string(field):
            continue
        outer = {k: field.pop(k) for k in _KEPT_OUTSIDE if k in field}
        definition["properties"][key] = {
            **outer,
            "anyOf": [field, {"type": "string", "pattern": INTERPOLATION_PATTERN}],
        }


def _accepts_string(field: dict[str, Any]) -> bool:
    kind = field.get("type")
    if kind == "string" or (isinstance(kind, list) and "string" in kind):
        return True
    variants = field.get("anyOf", []) + field.get("oneOf", [])
    if any(_accepts_string(variant) for variant in variants):
        return True
    return (
        kind is None and not variants and "$ref" not in field and "const" not in field and "enum" not in field
    )
