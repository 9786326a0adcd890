"""load_config: YAML files -> a validated Config with references resolved and count expanded.

Steps: parse each file (keeping nodes for line numbers), merge the files' sections,
resolve variables, then per resource entry interpolate, validate (pydantic) and build
canonical attributes; finally resolve references, reject cycles, and settle providers and
the state backend. No network call happens here.
"""

from __future__ import annotations

import gc
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from reconciler.budget import BudgetPolicy
from reconciler.config.attributes import CanonicalResource, canonical_resource, sensitive_attribute_path
from reconciler.config.diagnostics import (
    FieldIssue,
    Origin,
    did_you_mean,
    hint_for_names,
    issue_from_validation_error,
)
from reconciler.config.interpolation import Interpolator
from reconciler.config.limits import check_provider_limits, check_volume_count
from reconciler.config.schema import (
    KIND_ATTRIBUTES,
    KNOWN_PROVIDERS,
    MAX_COUNT,
    OUTPUT_NAME_PATTERN,
    RESOURCE_MODELS,
    RESOURCE_SECTIONS,
    TOP_LEVEL_KEYS,
    BackendBlock,
    EmulatorBlock,
    OutputBlock,
    PolicyBlock,
    ProviderBlock,
    ResourceBlock,
    foreign_fields,
)
from reconciler.config.variables import resolve_variables, sensitive_strings
from reconciler.config.yaml_source import YamlDocument, parse_yaml_file
from reconciler.errors import ConfigError, GraphCycleError, SourceMark
from reconciler.graph import DependencyGraph
from reconciler.limits import PROVIDER_LIMITS
from reconciler.model import Address, Kind, Output, Resource
from reconciler.providers import computed_attributes
from reconciler.providers.base import ProviderSettings
from reconciler.providers.http import api_key_problem
from reconciler.references import Reference
from reconciler.workspace import (
    CONFIG_NAME_RULE,
    ConfigIdentity,
    suggested_config_name,
    valid_config_name,
)

CONFIG_SUFFIXES = (".yaml", ".yml")
_MAP_SECTIONS = ("providers", "variables", "backend", "emulator", "outputs", "policy")
_KEYED_SECTIONS = ("backend", "emulator", "policy")
_BlockT = TypeVar("_BlockT", bound=BaseModel)  # one block of settings, merged key by key across files
_REFERENCE = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]*?)(?:\[(\d+)\])?$")


def referable_attributes(kind: Kind, provider: str) -> frozenset[str]:
    """What `${kind.name.ATTRIBUTE}` may name: desired attributes and what the API reports."""
    return KIND_ATTRIBUTES[kind] | frozenset(computed_attributes(provider, kind)) | {"id"}


def api_key_env_var(provider: str) -> str:
    """The environment variable that supplies a provider's API key by default."""
    return f"{provider.upper()}_API_KEY"


@dataclass(frozen=True)
class BackendSettings:
    """Where state lives. `url` may hold a password, so it is kept out of repr."""

    type: Literal["local", "postgres"]
    path: str | None = None
    url: str | None = field(default=None, repr=False)
    schema: str = "reconciler"
    stack: str | None = None


@dataclass(frozen=True)
class Config:
    """Everything the configuration declares, validated and resolved."""

    name: str  # the identity's name: it names the state file and the default PostgreSQL stack
    root: Path  # absolute, symlinks resolved: the directory of the YAML files
    files: tuple[Path, ...]
    resources: dict[Address, Resource]
    providers: dict[str, ProviderSettings]
    backend: BackendSettings | None
    marks: dict[Address, SourceMark]
    secrets: frozenset[str] = field(repr=False)
    emulator: dict[str, Any] = field(default_factory=dict)  # the emulator block's settings that were given
    outputs: dict[str, Output] = field(default_factory=dict)
    private_keys: dict[Address, str] = field(default_factory=dict)  # ssh key -> local private key path
    identity: ConfigIdentity | None = None  # None only for a Config built by hand
    policy: BudgetPolicy | None = None


def load_config(
    path: Path,
    cli_vars: Mapping[str, str] | None = None,
    var_files: Sequence[Path] = (),
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Load a YAML file, or every `*.yaml`/`*.yml` file of a directory, into a Config.

    Every problem is a ConfigError naming file, line, column and field (GraphCycleError
    for dependency cycles).
    """
    environment = os.environ if environ is None else environ
    with _cyclic_collector_paused():
        return _ConfigLoader(Path(path), dict(cli_vars or {}), var_files, environment).load()


@contextmanager
def _cyclic_collector_paused() -> Iterator[None]:
    """Loading allocates hundreds of thousands of small acyclic objects; without this pause the
    cyclic collector rescans the growing tree over and over (about 3x slower at 10k resources)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class _Member:
    """One count-expanded resource whose references are not resolved yet."""

    address: Address
    provider: str
    origin: Origin
    canonical: CanonicalResource
    sensitive: list[str]
    ssh_key: str | None
    volumes: list[str]
    depends_on: list[str]
    references: tuple[tuple[tuple[str | int, ...], Reference], ...] = ()


@dataclass
class _Entry:
    """One entry of a resource section (before count expansion)."""

    kind: Kind
    name: str
    provider: str
    count: int | None
    origin: Origin
    members: list[_Member] = field(default_factory=list)


class _ConfigLoader:
    def __init__(
        self, path: Path, cli_vars: dict[str, str], var_files: Sequence[Path], environ: Mapping[str, str]
    ) -> None:
        self.path = path
        self.cli_vars = cli_vars
        self.var_files = var_files
        self.environ = environ
        self.maps: dict[str, dict[str, tuple[Any, Origin]]] = {name: {} for name in _MAP_SECTIONS}
        self.items: list[tuple[Kind, Any, Origin]] = []
        self.entries: dict[Kind, dict[str, _Entry]] = {kind: {} for kind in Kind}
        self.secrets: set[str] = set()
        self.private_keys: dict[Address, str] = {}
        self.by_address: dict[Address, _Member] = {}
        self.declared_name: tuple[str, Origin] | None = None

    def load(self) -> Config:
        try:
            return self._load()
        except ConfigError as exc:
            # The secrets read before the error, so the message printing it can scrub them.
            exc.secrets = frozenset(self.secrets)
            raise

    def _load(self) -> Config:
        files = self._files()
        for file in files:
            self._collect(parse_yaml_file(file))
        # Resolved once here, so neither the working directory nor the spelling of the path
        # (relative, `.`, trailing slash, symlink) changes which state the configuration uses.
        resolved = self.path.resolve()
        identity = ConfigIdentity.of(resolved, self.declared_name[0] if self.declared_name else None)
        name = identity.name
        variables = resolve_variables(self.maps["variables"], self.var_files, self.environ, self.cli_vars)
        for variable in variables.values():
            if variable.sensitive and variable.has_value:
                self.secrets |= sensitive_strings(variable.value)
        interpolator = Interpolator(variables, self.environ)
        members: list[_Member] = []
        for kind, raw, origin in self.items:
            members.extend(self._expand(kind, raw, origin, interpolator))
        resources, edge_fields = self._resolve(members)
        self._reject_cycles(resources, edge_fields, {m.address: m.origin for m in members})
        outputs = self._outputs(interpolator)
        providers = self._providers(resources, interpolator)
        backend = self._backend(interpolator)
        emulator = self._emulator(interpolator)
        policy = self._policy(interpolator)
        return Config(
            name=name,
            root=resolved if identity.is_directory else resolved.parent,
            files=tuple(files),
            resources=resources,
            providers=providers,
            backend=backend,
            emulator=emulator,
            policy=policy,
            marks={member.address: member.origin.mark() for member in members},
            secrets=frozenset(self.secrets),
            outputs=outputs,
            private_keys=self.private_keys,
            identity=identity,
        )

    # -- files and sections ------------------------------------------------------------

    def _files(self) -> list[Path]:
        if self.path.is_dir():
            files = sorted(
                child
                for child in self.path.iterdir()
                if child.suffix in CONFIG_SUFFIXES and child.is_file() and not child.name.startswith(".")
            )
            if not files:
                raise ConfigError(
                    "no *.yaml or *.yml files in this directory",
                    SourceMark(str(self.path)),
                    hint="is it the right path?",
                )
            return files
        if not self.path.exists():
            raise ConfigError("no such file or directory", SourceMark(str(self.path)))
        return [self.path]

    def _collect(self, document: YamlDocument) -> None:
        data = document.data
        if data is None:
            return
        top = Origin(document, ())
        if not isinstance(data, dict):
            raise top.fail((), "the top level must be a map with keys " + ", ".join(TOP_LEVEL_KEYS))
        for key, value in data.items():
            if key not in TOP_LEVEL_KEYS:
                raise top.error(
                    FieldIssue(
                        (key,),
                        f"unknown top-level key {key!r}",
                        did_you_mean(key, TOP_LEVEL_KEYS) or "allowed keys: " + ", ".join(TOP_LEVEL_KEYS),
                        at_key=True,
                    )
                )
            if key == "name":
                self._collect_name(value, Origin(document, ("name",)))
                continue
            if value is None:
                continue
            if key in _MAP_SECTIONS:
                self._collect_map(key, value, document)
            else:
                if not isinstance(value, list):
                    raise top.fail(
                        (key,), f"{key} must be a list of entries (each starting with '- name: ...')"
                    )
                kind = RESOURCE_SECTIONS[key]
                self.items.extend(
                    (kind, item, Origin(document, (key, index))) for index, item in enumerate(value)
                )

    def _collect_name(self, value: Any, origin: Origin) -> None:
        """The top-level `name:`: the configuration's identity, so it must be static and safe in a file name."""
        if self.declared_name is not None:
            first = self.declared_name[1].mark()
            raise origin.fail((), f"the configuration name is declared twice (first at {first})", hint="keep one")
        if not isinstance(value, str) or not valid_config_name(value):
            shown = "" if value is None else value if isinstance(value, str | int | float) else type(value).__name__
            raise origin.fail(
                (),
                f"{str(shown)[:80]!r} is not a valid configuration name ({CONFIG_NAME_RULE})",
                hint=f"for example name: {suggested_config_name(str(shown))}; it names the state file "
                "and the PostgreSQL stack, so it cannot use ${...}",
            )
        self.declared_name = (value, origin)

    def _collect_map(self, section: str, value: Any, document: YamlDocument) -> None:
        section_origin = Origin(document, (section,))
        if not isinstance(value, dict):
            raise section_origin.fail((), f"{section} must be a map")
        merged = self.maps[section]
        for key, item in value.items():
            if key in merged:
                first = merged[key][1]
                first_mark = first.mark((key,) if section in _KEYED_SECTIONS else (), at_key=True)
                raise section_origin.error(
                    FieldIssue(
                        (key,),
                        f"{section}.{key} is declared twice (first at {first_mark})",
                        hint="keep one of them",
                        at_key=True,
                    )
                )
            if section in _KEYED_SECTIONS:
                merged[key] = (item, section_origin)
            else:
                merged[key] = (item, Origin(document, (section, key)))

    # -- resources ---------------------------------------------------------------------

    def _expand(self, kind: Kind, raw: Any, origin: Origin, interpolator: Interpolator) -> list[_Member]:
        if not isinstance(raw, dict):
            raise origin.fail(
                (), f"each {kind.value} entry must be a map", hint="start it with '- name: ...'"
            )
        base_dir = origin.document.path.parent
        identity = {key: raw[key] for key in ("name", "provider", "count") if key in raw}
        try:
            head = interpolator.render(identity, base_dir).value
        except FieldIssue as issue:
            raise origin.error(issue) from None
        name = head.get("name")
        provider = self._provider_of(head, origin, raw)
        count = self._count(head, origin)
        entry = self._declare(kind, name, provider, count, origin)
        body = {key: value for key, value in raw.items() if key not in identity}
        model = RESOURCE_MODELS[kind][provider]
        foreign = foreign_fields(kind, provider)
        for index in [None] if count is None else range(count):
            entry.members.append(
                self._member(entry, head, body, index, model, foreign, interpolator, base_dir)
            )
        return entry.members

    def _provider_of(self, head: dict[str, Any], origin: Origin, raw: dict[Any, Any]) -> str:
        if "provider" not in head:
            for key in raw:
                hint = did_you_mean(key, ("provider",))
                if hint is not None:
                    # A misspelt provider key is the real mistake, not the missing field.
                    raise origin.error(FieldIssue((key,), f"unknown key {key!r}", hint, at_key=True))
            raise origin.fail(
                ("provider",),
                "missing required field 'provider'",
                hint="one of " + ", ".join(KNOWN_PROVIDERS),
            )
        provider = head["provider"]
        if provider not in KNOWN_PROVIDERS:
            raise origin.fail(
                ("provider",),
                f"unknown provider {provider!r}",
                hint=did_you_mean(provider, KNOWN_PROVIDERS) or "one of " + ", ".join(KNOWN_PROVIDERS),
            )
        return str(provider)

    def _count(self, head: dict[str, Any], origin: Origin) -> int | None:
        count = head.get("count")
        if count is None:
            return None
        if isinstance(count, str) and count.strip().isdigit():
            count = int(count)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise origin.fail(("count",), f"count must be a whole number >= 0, not {count!r}")
        if count > MAX_COUNT:
            raise origin.fail(("count",), f"count {count} is more than {MAX_COUNT} resources of one entry")
        return count

    def _declare(self, kind: Kind, name: Any, provider: str, count: int | None, origin: Origin) -> _Entry:
        identity = {} if name is None else {"name": name}
        try:
            ResourceBlock.model_validate(identity)
        except ValidationError as exc:
            raise origin.error(issue_from_validation_error(exc, identity, ResourceBlock)) from None
        known = self.entries[kind]
        if name in known:
            first = known[name].origin
            raise origin.fail(
                ("name",),
                f"duplicate {kind.singular} name {name!r} (first declared at {first.mark(('name',))})",
                hint=f"names must be unique among {kind.value}; rename one of them",
            )
        entry = _Entry(kind, name, provider, count, origin)
        known[name] = entry
        return entry

    def _member(
        self,
        entry: _Entry,
        head: dict[str, Any],
        body: dict[str, Any],
        index: int | None,
        model: type[ResourceBlock],
        foreign: dict[str, str],
        interpolator: Interpolator,
        base_dir: Path,
    ) -> _Member:
        origin = entry.origin
        try:
            rendered = interpolator.render(body, base_dir, index, allow_references=True)
        except FieldIssue as issue:
            raise origin.error(issue) from None
        data = {**head, **rendered.value}
        try:
            block = model.model_validate(data)
        except ValidationError as exc:
            raise origin.error(issue_from_validation_error(exc, data, model, foreign)) from None
        provider_name = entry.name if index is None else f"{entry.name}-{index}"
        try:
            canonical = canonical_resource(entry.kind, block, provider_name)
            check_provider_limits(entry.kind, entry.provider, canonical.attributes, index is not None)
        except FieldIssue as issue:
            raise origin.error(issue) from None
        sensitive = list(canonical.sensitive)
        for raw_path in rendered.sensitive_paths:
            attribute = sensitive_attribute_path(raw_path, canonical.attributes)
            if attribute is not None and attribute not in sensitive:
                sensitive.append(attribute)
        self.secrets |= canonical.secrets
        private_key = getattr(block, "private_key_file", None)
        if private_key is not None:
            self.private_keys[Address(entry.kind, entry.name, index)] = str(
                (base_dir / Path(private_key).expanduser()).absolute()
            )
        return _Member(
            address=Address(entry.kind, entry.name, index),
            provider=entry.provider,
            origin=origin,
            canonical=canonical,
            sensitive=sensitive,
            ssh_key=getattr(block, "ssh_key", None),
            volumes=list(getattr(block, "volumes", [])),
            depends_on=list(getattr(block, "depends_on", [])),
            references=rendered.references,
        )

    # -- references --------------------------------------------------------------------

    def _resolve(
        self, members: list[_Member]
    ) -> tuple[dict[Address, Resource], dict[tuple[Address, Address], tuple[str | int, ...]]]:
        by_address = {member.address: member for member in members}
        self.by_address = by_address
        self._spread_sensitivity(members, by_address)
        resources: dict[Address, Resource] = {}
        edge_fields: dict[tuple[Address, Address], tuple[str | int, ...]] = {}
        for member in members:
            attributes = dict(member.canonical.attributes)
            offering = member.canonical.offering
            dependencies: dict[Address, tuple[str | int, ...]] = {}
            if member.ssh_key is not None:
                key = self._reference(Kind.SSH_KEY, member.ssh_key, member, ("ssh_key",))
                attributes["ssh_key"] = str(key)
                dependencies.setdefault(key, ("ssh_key",))
            if member.volumes:
                volumes: list[str] = []
                for position, text in enumerate(member.volumes):
                    place: tuple[str | int, ...] = ("volumes", position)
                    volume = self._reference(Kind.VOLUME, text, member, place)
                    if str(volume) in volumes:
                        raise member.origin.fail(place, f"{volume} is listed twice")
                    offering = self._check_volume_placement(
                        member, by_address[volume], attributes, offering, place
                    )
                    volumes.append(str(volume))
                    dependencies.setdefault(volume, place)
                try:
                    check_volume_count(member.provider, volumes)
                except FieldIssue as issue:
                    raise member.origin.error(issue) from None
                attributes["volumes"] = volumes
            for position, text in enumerate(member.depends_on):
                for dependency in self._explicit_dependency(text, member.origin, ("depends_on", position)):
                    dependencies.setdefault(dependency, ("depends_on", position))
            for raw_path, reference in member.references:
                for dependency in self._attribute_reference(reference, member.origin, raw_path):
                    dependencies.setdefault(dependency, raw_path)
            for dependency, place in dependencies.items():
                edge_fields[(member.address, dependency)] = place
            resources[member.address] = Resource(
                address=member.address,
                provider=member.provider,
                attributes=dict(sorted(attributes.items())),
                depends_on=tuple(dependencies),
                lifecycle=member.canonical.lifecycle,
                sensitive=tuple(sorted(member.sensitive)),
                offering=offering,
                on_failure=member.canonical.on_failure,
                references=tuple(sorted({reference.text for _, reference in member.references})),
                computed=computed_attributes(member.provider, member.address.kind),
                fallback_attempts=member.canonical.fallback_attempts,
                fallback_on_boot_failure=member.canonical.fallback_on_boot_failure,
            )
        return resources, edge_fields

    def _attribute_reference(
        self, reference: Reference, origin: Origin, place: tuple[str | int, ...]
    ) -> list[Address]:
        """The addresses `${kind.name[i].attribute}` reads; each is a dependency edge."""
        entry = self.entries[reference.kind].get(reference.name)
        if entry is None:
            candidates = [f"{kind.value}.{name}" for kind, named in self.entries.items() for name in named]
            raise origin.fail(
                place,
                f"${{{reference.text}}}: {reference.base} is not declared",
                hint=hint_for_names(str(reference.base), candidates, "resources"),
            )
        if reference.splat:
            if entry.count is None:
                raise origin.fail(
                    place,
                    f"${{{reference.text}}}: {reference.base} has no count, so [*] has nothing to list",
                    hint=f"write ${{{reference.base}.{reference.attribute}}}",
                )
            addresses = [member.address for member in entry.members]
        else:
            index_text = None if reference.index is None else str(reference.index)
            addresses = self._member_address(entry, index_text, origin, place, allow_all=False)
        known = referable_attributes(reference.kind, entry.provider)
        if reference.attribute not in known:
            raise origin.fail(
                place,
                f"${{{reference.text}}}: {reference.kind.value} ({entry.provider}) have no attribute "
                f"{reference.attribute!r}",
                hint=did_you_mean(reference.attribute, sorted(known))
                or "attributes: " + ", ".join(sorted(known)),
            )
        return addresses

    def _spread_sensitivity(self, members: list[_Member], by_address: dict[Address, _Member]) -> None:
        """A reference to a sensitive value is sensitive wherever it lands (chains included)."""
        for _ in range(len(members) + 1):
            spread = False
            for member in members:
                for raw_path, reference in member.references:
                    if not self._reads_sensitive(reference, by_address):
                        continue
                    path = sensitive_attribute_path(raw_path, member.canonical.attributes)
                    if path is not None and path not in member.sensitive:
                        member.sensitive.append(path)
                        spread = True
            if not spread:
                return

    def _reads_sensitive(self, reference: Reference, by_address: dict[Address, _Member]) -> bool:
        targets = [
            member
            for address, member in by_address.items()
            if address.base == reference.base and (reference.splat or address.index == reference.index)
        ]
        attribute = reference.attribute
        return any(
            path == attribute or path.startswith(attribute + ".")
            for target in targets
            for path in target.sensitive
        )

    def _reference(self, kind: Kind, text: str, member: _Member, place: tuple[str | int, ...]) -> Address:
        """A by-name reference (`deploy`, `data[1]`) to exactly one resource of `kind`."""
        match = _REFERENCE.match(text.strip())
        known = self.entries[kind]
        if match is None:
            raise member.origin.fail(
                place, f"{text!r} is not a {kind.singular} name", hint="write name or name[i]"
            )
        name, index_text = match.groups()
        entry = known.get(name)
        if entry is None:
            raise member.origin.fail(
                place,
                f"no {kind.singular} named {name!r}",
                hint=hint_for_names(name, list(known), kind.value),
            )
        address = self._member_address(entry, index_text, member.origin, place, allow_all=False)[0]
        if entry.provider != member.provider:
            raise member.origin.fail(
                place,
                f"{address} is on provider {entry.provider}, "
                f"this {member.address.kind.singular} on {member.provider}",
                hint=f"an instance can only use {kind.value} of its own provider",
            )
        return address

    def _explicit_dependency(self, text: str, origin: Origin, place: tuple[str | int, ...]) -> list[Address]:
        try:
            wanted = Address.parse(text)
        except ValueError:
            raise origin.fail(
                place,
                f"{text!r} is not a resource address",
                hint="write kind.name, e.g. volumes.data or instances.web[0]",
            ) from None
        entry = self.entries[wanted.kind].get(wanted.name)
        if entry is None:
            candidates = [f"{kind.value}.{name}" for kind, named in self.entries.items() for name in named]
            raise origin.fail(
                place,
                f"{text} does not exist",
                hint=hint_for_names(str(wanted.base), candidates, "resources"),
            )
        index_text = None if wanted.index is None else str(wanted.index)
        return self._member_address(entry, index_text, origin, place, allow_all=True)

    def _member_address(
        self,
        entry: _Entry,
        index_text: str | None,
        origin: Origin,
        place: tuple[str | int, ...],
        allow_all: bool,
    ) -> list[Address]:
        base = Address(entry.kind, entry.name)
        if index_text is None:
            if entry.count is None:
                return [base]
            if allow_all:
                return [member.address for member in entry.members]
            raise origin.fail(
                place,
                f"{base} has count {entry.count}; name one of them, e.g. {entry.name}[0]",
                hint=f"in a counted instance, {entry.name}[${{count.index}}] pairs them up",
            )
        if entry.count is None:
            raise origin.fail(place, f"{base} has no count; refer to it as {entry.name!r}")
        index = int(index_text)
        if index >= entry.count:
            raise origin.fail(place, f"{base}[{index}] does not exist ({base} has count {entry.count})")
        return [Address(entry.kind, entry.name, index)]

    def _check_volume_placement(
        self,
        member: _Member,
        volume: _Member,
        attributes: dict[str, Any],
        offering: Any,
        place: tuple[str | int, ...],
    ) -> Any:
        """A volume mounts only on an instance where it is (its provider's placement keys).

        For an instance given by requirements, the volume's placement becomes part of them,
        so the planner picks an offering that can mount it.
        """
        keys = PROVIDER_LIMITS[member.provider].placement
        wanted = {key: value for key in keys if (value := volume.canonical.attributes.get(key)) is not None}
        have = {key: attributes.get(key) if offering is None else getattr(offering, key) for key in keys}
        for key, value in wanted.items():
            if have[key] is not None and have[key] != value:
                raise member.origin.fail(
                    place,
                    f"{volume.address} is in {key} {value!r}, this instance in {have[key]!r}",
                    hint=f"{member.provider} mounts a volume only on an instance with the same "
                    + " and ".join(keys),
                )
        missing = {key: value for key, value in wanted.items() if have[key] is None}
        if offering is not None and missing:
            offering = replace(offering, **missing)
        return offering

    # -- outputs -----------------------------------------------------------------------

    def _outputs(self, interpolator: Interpolator) -> dict[str, Output]:
        outputs: dict[str, Output] = {}
        for name, (raw, origin) in self.maps["outputs"].items():
            outputs[name] = self._output(name, raw, origin, interpolator)
        return outputs

    def _output(self, name: str, raw: Any, origin: Origin, interpolator: Interpolator) -> Output:
        if not isinstance(raw, dict):
            raise origin.fail(
                (), f"outputs.{name} must be a map", hint="for example {value: ${instances.NAME.ip}}"
            )
        try:
            rendered = interpolator.render(raw, origin.document.path.parent, allow_references=True)
            block = OutputBlock.model_validate(rendered.value)
        except FieldIssue as issue:
            raise origin.error(issue) from None
        except ValidationError as exc:
            raise origin.error(issue_from_validation_error(exc, raw, OutputBlock)) from None
        if not re.match(OUTPUT_NAME_PATTERN, name):
            raise origin.error(
                FieldIssue((), f"{name!r} is not a valid output name", "use letters, digits, '_' and '-'", True)
            )
        depends_on: dict[Address, None] = {}
        exposes: str | None = "a sensitive variable" if rendered.sensitive_paths else None
        for raw_path, reference in rendered.references:
            for address in self._attribute_reference(reference, origin, raw_path):
                depends_on.setdefault(address, None)
            if exposes is None and self._reads_sensitive(reference, self.by_address):
                exposes = f"${{{reference.text}}}, which is sensitive"
        if exposes is not None and not block.sensitive:
            raise origin.error(
                FieldIssue(("value",), f"output {name} exposes {exposes}", "add sensitive: true to the output")
            )
        return Output(
            name=name,
            value=block.value,
            description=block.description,
            sensitive=block.sensitive,
            depends_on=tuple(depends_on),
        )

    def _reject_cycles(
        self,
        resources: dict[Address, Resource],
        edge_fields: dict[tuple[Address, Address], tuple[str | int, ...]],
        origins: dict[Address, Origin],
    ) -> None:
        graph = DependencyGraph({address: resource.depends_on for address, resource in resources.items()})
        cycle = graph.find_cycle()
        if cycle is None:
            return
        start, following = cycle[0], cycle[1]
        raise origins[start].error(
            FieldIssue(
                edge_fields[(start, following)],
                "dependency cycle: " + " -> ".join(str(address) for address in cycle),
                hint="remove one of these references or depends_on entries",
            ),
            GraphCycleError,
        )

    # -- providers and backend ---------------------------------------------------------

    def _providers(
        self, resources: dict[Address, Resource], interpolator: Interpolator
    ) -> dict[str, ProviderSettings]:
        declared = self.maps["providers"]
        first_user: dict[str, Address] = {}
        for address, resource in resources.items():
            first_user.setdefault(resource.provider, address)
        for name, (_, place) in declared.items():
            if name not in KNOWN_PROVIDERS:
                raise place.error(
                    FieldIssue(
                        (),
                        f"unknown provider {name!r}",
                        did_you_mean(name, KNOWN_PROVIDERS) or "one of " + ", ".join(KNOWN_PROVIDERS),
                        at_key=True,
                    )
                )
        settings: dict[str, ProviderSettings] = {}
        for name in KNOWN_PROVIDERS:
            if name not in declared and name not in first_user:
                continue
            origin: Origin | None = None
            block = ProviderBlock()
            if name in declared:
                raw, origin = declared[name]
                block = self._provider_block(name, raw, origin, interpolator)
            api_key = block.api_key or self.environ.get(api_key_env_var(name)) or None
            if api_key:
                self._check_api_key(name, api_key, origin if block.api_key else None)
            endpoint = block.endpoint
            if name in first_user and endpoint != "embedded" and not api_key:
                self._missing_api_key(name, origin, first_user[name], resources)
            options: dict[str, Any] = {}
            if block.rate_limit is not None:
                options["rate_limit_per_second"] = block.rate_limit
            if block.timeout is not None:
                options["timeout_seconds"] = block.timeout
            if block.max_retries is not None:
                options["max_retries"] = block.max_retries
            if block.list_consistency_seconds is not None:
                options["list_consistency_seconds"] = block.list_consistency_seconds
            settings[name] = ProviderSettings(name=name, endpoint=endpoint, api_key=api_key, **options)
            if api_key:
                self.secrets.add(api_key)
        return settings

    def _provider_block(
        self, name: str, raw: Any, origin: Origin, interpolator: Interpolator
    ) -> ProviderBlock:
        data = {} if raw is None else raw
        if not isinstance(data, dict):
            raise origin.fail((), f"providers.{name} must be a map (api_key, endpoint, ...)")
        try:
            data = interpolator.render(data, origin.document.path.parent).value
            return ProviderBlock.model_validate(data)
        except FieldIssue as issue:
            raise origin.error(issue) from None
        except ValidationError as exc:
            raise origin.error(issue_from_validation_error(exc, data, ProviderBlock)) from None

    def _check_api_key(self, name: str, api_key: str, origin: Origin | None) -> None:
        """Refuse a key that cannot be sent as it is, naming where it came from, never the key."""
        problem = api_key_problem(api_key)
        if problem is None:
            return
        self.secrets.add(api_key)
        variable = api_key_env_var(name)
        fix = "without surrounding spaces or line breaks (in a shell: printf '%s' \"$KEY\"; in CI, store the "
        fix += "secret without its final newline); nothing was sent"
        if origin is None:
            raise ConfigError(
                f"the API key of provider {name} in the environment variable {variable} {problem}",
                hint=f"set {variable} to the key alone, {fix}",
            )
        raise ConfigError(
            f"the API key of provider {name} {problem}",
            origin.mark(("api_key",)),
            f"providers.{name}.api_key",
            f"give the key alone, {fix}",
        )

    def _missing_api_key(
        self, name: str, origin: Origin | None, user: Address, resources: dict[Address, Resource]
    ) -> None:
        variable = api_key_env_var(name)
        hint = (
            f"set {variable}, or providers.{name}.api_key (e.g. api_key: ${{env:{variable}}}); "
            "or use endpoint: embedded for the built-in emulator"
        )
        message = f"missing API key for provider {name} (used by {user})"
        if origin is not None:
            raise ConfigError(message, origin.mark(), f"providers.{name}.api_key", hint)
        entry = self.entries[user.kind][user.name]
        raise ConfigError(message, entry.origin.mark(("provider",)), entry.origin.field(("provider",)), hint)

    def _settings_block(
        self, section: str, model: type[_BlockT], interpolator: Interpolator
    ) -> tuple[_BlockT, Callable[[FieldIssue], Origin]] | None:
        """A keyed section (backend, emulator) merged across files, interpolated and validated."""
        entries = self.maps[section]
        if not entries:
            return None
        first_origin = next(iter(entries.values()))[1]
        data: dict[str, Any] = {}
        for key, (value, origin) in entries.items():
            try:
                data[key] = interpolator.render(value, origin.document.path.parent).value
            except FieldIssue as failure:
                raise origin.error(FieldIssue((key, *failure.path), failure.message, failure.hint)) from None

        def origin_of(issue: FieldIssue) -> Origin:
            if issue.path and issue.path[0] in entries:
                return entries[str(issue.path[0])][1]
            return first_origin

        try:
            return model.model_validate(data), origin_of
        except ValidationError as exc:
            issue = issue_from_validation_error(exc, data, model)
            raise origin_of(issue).error(issue) from None

    def _emulator(self, interpolator: Interpolator) -> dict[str, Any]:
        parsed = self._settings_block("emulator", EmulatorBlock, interpolator)
        if parsed is None:
            return {}
        block, origin_of = parsed
        if block.faults is not None:
            from reconciler.emulator.faults import FaultConfig, FaultSpecError

            try:
                FaultConfig.parse(block.faults, block.seed or 0)
            except FaultSpecError as exc:
                problem = FieldIssue(("faults",), str(exc))
                raise origin_of(problem).error(problem) from None
        return block.model_dump(exclude_none=True)

    def _policy(self, interpolator: Interpolator) -> BudgetPolicy | None:
        parsed = self._settings_block("policy", PolicyBlock, interpolator)
        if parsed is None:
            return None
        block = parsed[0]
        return BudgetPolicy(max_hourly_spend=block.max_hourly_spend, max_monthly_spend=block.max_monthly_spend)

    def _backend(self, interpolator: Interpolator) -> BackendSettings | None:
        parsed = self._settings_block("backend", BackendBlock, interpolator)
        if parsed is None:
            return None
        block, origin_of = parsed
        entries = self.maps["backend"]
        if block.type == "local" and block.url is not None:
            problem = FieldIssue(
                ("url",), "a local backend takes path, not url", hint="or set type: postgres"
            )
            raise origin_of(problem).error(problem)
        if block.type == "postgres":
            if block.url is None:
                problem = FieldIssue(
                    ("url",), "a postgres backend needs url", hint="for example url: ${env:DATABASE_URL}"
                )
                raise origin_of(problem).error(problem)
            if block.path is not None:
                problem = FieldIssue(("path",), "a postgres backend takes url, not path")
                raise origin_of(problem).error(problem)
            if block.url.split("://", 1)[0] not in ("postgres", "postgresql"):
                problem = FieldIssue(("url",), "url must start with postgresql:// (or postgres://)")
                raise origin_of(problem).error(problem)
            password = urlsplit(block.url).password
            if password:
                self.secrets.add(password)
        path = None
        if block.path is not None:
            base_dir = entries["path"][1].document.path.parent
            path = str((base_dir / Path(block.path).expanduser()).absolute())
        return BackendSettings(
            type=block.type,
            path=path,
            url=block.url,
            schema=block.schema_name,
            stack=block.stack,
        )
