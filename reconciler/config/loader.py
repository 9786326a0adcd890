"""load_config: YAML files -> a validated Config with references resolved and count expanded.

Steps: parse each file (keeping nodes for line numbers), merge the files' sections,
resolve variables, then per resource entry interpolate, validate (pydantic) and build
canonical attributes; finally resolve references (resolution.py), reject cycles, and settle
providers and the state backend (settings.py). No network call happens here.

Every problem found is collected, so one run reports all of them (up to a limit), sorted
by file and line; an entry that fails is left out of the checks that depend on it.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reconciler.budget import BudgetPolicy
from reconciler.config.attributes import canonical_resource, sensitive_attribute_path
from reconciler.config.diagnostics import (
    ConfigWarning,
    FieldIssue,
    Origin,
    ProblemCollector,
    TooManyProblems,
    did_you_mean,
    issues_from_validation_error,
)
from reconciler.config.interpolation import Interpolator
from reconciler.config.resolution import ReferenceResolver, _Entry, _Member, referable_attributes
from reconciler.config.schema import (
    MAX_COUNT,
    RESOURCE_SECTIONS,
    TOP_LEVEL_KEYS,
    ChosenInstanceBlock,
    ResourceBlock,
    foreign_fields,
    resource_model,
)
from reconciler.config.secret_files import exposed_secret_warnings
from reconciler.config.settings import BackendSettings, SettingsReader, api_key_env_var
from reconciler.config.variables import resolve_variables, sensitive_strings
from reconciler.config.yaml_source import YamlDocument, parse_yaml_file
from reconciler.errors import ConfigError, SourceMark
from reconciler.identity import (
    CONFIG_NAME_RULE,
    ConfigIdentity,
    suggested_config_name,
    valid_config_name,
)
from reconciler.limits import check_provider_limits
from reconciler.model import Address, Kind, Output, Resource
from reconciler.provider_spec import provider_names, provider_spec
from reconciler.providers.base import ProviderSettings

__all__ = ["BackendSettings", "Config", "api_key_env_var", "load_config", "referable_attributes"]

CONFIG_SUFFIXES = (".yaml", ".yml")
_MAP_SECTIONS = ("providers", "variables", "backend", "emulator", "outputs", "policy")
_KEYED_SECTIONS = ("backend", "emulator", "policy")


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
    warnings: tuple[ConfigWarning, ...] = ()  # reported, never fatal


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


class _ConfigLoader(ReferenceResolver, SettingsReader):
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
        self.problems = ProblemCollector()
        self.broken: set[tuple[Kind, str]] = set()
        self.documents: list[YamlDocument] = []

    def load(self) -> Config:
        try:
            config = self._load()
        except TooManyProblems:
            raise self._failure(self.problems.result(stopped_early=True)) from None
        except ConfigError as exc:
            self.problems.errors.append(exc)
            raise self._failure(self.problems.result()) from None
        if self.problems.failed():
            raise self._failure(self.problems.result())
        return config

    def _failure(self, error: ConfigError) -> ConfigError:
        # The secrets read before the error, so the message printing it can scrub them.
        error.secrets = frozenset(self.secrets)
        return error

    def _load(self) -> Config:
        files = self._files()
        for file in files:
            with self.problems.attempt():
                self._collect(parse_yaml_file(file))
        # Resolved once here, so neither the working directory nor the spelling of the path
        # (relative, `.`, trailing slash, symlink) changes which state the configuration uses.
        resolved = self.path.resolve()
        identity = ConfigIdentity.of(resolved, self.declared_name[0] if self.declared_name else None)
        name = identity.name
        # Every value below depends on the variables: when they fail, stop with what was found.
        variables = resolve_variables(self.maps["variables"], self.var_files, self.environ, self.cli_vars)
        for variable in variables.values():
            if variable.sensitive and variable.has_value:
                self.secrets |= sensitive_strings(variable.value)
        interpolator = Interpolator(variables, self.environ)
        members: list[_Member] = []
        for kind, raw, origin in self.items:
            with self.problems.attempt():
                try:
                    members.extend(self._expand(kind, raw, origin, interpolator))
                except ConfigError:
                    self._mark_broken(kind, raw)
                    raise
        resources, edge_fields = self._resolve(members)
        with self.problems.attempt():
            self._reject_cycles(resources, edge_fields, {m.address: m.origin for m in members})
        outputs = self._outputs(interpolator)
        providers: dict[str, ProviderSettings] = {}
        backend = None
        emulator: dict[str, Any] = {}
        policy = None
        with self.problems.attempt():
            providers = self._providers(resources, interpolator)
        with self.problems.attempt():
            backend = self._backend(interpolator)
        with self.problems.attempt():
            emulator = self._emulator(interpolator)
        with self.problems.attempt():
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
            warnings=tuple(
                exposed_secret_warnings(
                    self.documents, self.private_keys, self.secrets, [*interpolator.files_read, *self.var_files]
                )
            ),
        )

    def _mark_broken(self, kind: Kind, raw: Any) -> None:
        """An entry that failed: references to it are not reported again as undeclared."""
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            self.broken.add((kind, raw["name"]))

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
        self.documents.append(document)
        data = document.data
        if data is None:
            return
        top = Origin(document, ())
        if not isinstance(data, dict):
            raise top.fail((), "the top level must be a map with keys " + ", ".join(TOP_LEVEL_KEYS))
        for key, value in data.items():
            with self.problems.attempt():
                self._collect_section(document, top, key, value)

    def _collect_section(self, document: YamlDocument, top: Origin, key: Any, value: Any) -> None:
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
            return
        if value is None:
            return
        if key in _MAP_SECTIONS:
            self._collect_map(key, value, document)
            return
        if not isinstance(value, list):
            raise top.fail((key,), f"{key} must be a list of entries (each starting with '- name: ...')")
        kind = RESOURCE_SECTIONS[key]
        self.items.extend((kind, item, Origin(document, (key, index))) for index, item in enumerate(value))

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
            with self.problems.attempt():
                self._merge_key(section, section_origin, merged, key, item, document)

    def _merge_key(
        self,
        section: str,
        section_origin: Origin,
        merged: dict[str, tuple[Any, Origin]],
        key: Any,
        item: Any,
        document: YamlDocument,
    ) -> None:
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
        listed = self._listed_providers(kind, raw, head, origin, interpolator, base_dir)
        provider = listed[0] if listed is not None else self._provider_of(head, origin, raw)
        count = self._count(head, origin)
        entry = self._declare(kind, name, provider, count, origin)
        entry.providers = listed or (provider,)
        entry.by_provider = kind is Kind.SSH_KEY and listed is not None
        body = {key: value for key, value in raw.items() if key not in identity}
        if kind is Kind.SSH_KEY and listed is not None:
            # One object per provider, each checked as a single-provider key would be.
            body.pop("providers")
            model = resource_model(kind, provider)
            for each in listed:
                entry.members.append(
                    self._member(entry, {**head, "provider": each}, body, each, model, {}, interpolator, base_dir)
                )
            return entry.members
        if listed is not None:
            model, foreign = ChosenInstanceBlock, foreign_fields(kind, None)
        else:
            model, foreign = resource_model(kind, provider), foreign_fields(kind, provider)
        for index in [None] if count is None else range(count):
            entry.members.append(
                self._member(entry, head, body, index, model, foreign, interpolator, base_dir)
            )
        return entry.members

    def _listed_providers(
        self,
        kind: Kind,
        raw: dict[Any, Any],
        head: dict[str, Any],
        origin: Origin,
        interpolator: Interpolator,
        base_dir: Path,
    ) -> tuple[str, ...] | None:
        """The providers an SSH key is declared for (`providers:`), or an instance's provider is
        chosen among (`offering.providers` without `provider:`); None for one declared provider."""
        if kind is Kind.SSH_KEY and "providers" in raw:
            place: tuple[str | int, ...] = ("providers",)
            given = raw["providers"]
        elif kind is Kind.INSTANCE and isinstance(raw.get("offering"), dict) and "providers" in raw["offering"]:
            place = ("offering", "providers")
            given = raw["offering"]["providers"]
        else:
            return None
        try:
            rendered = interpolator.render({"providers": given}, base_dir).value["providers"]
        except FieldIssue as issue:
            raise origin.error(issue) from None
        if not isinstance(rendered, list) or not rendered:
            raise origin.fail(place, "providers must be a non-empty list", hint="for example [shadeform, forward]")
        for position, name in enumerate(rendered):
            if name not in provider_names():
                raise origin.fail(
                    (*place, position),
                    f"unknown provider {name!r}",
                    hint=did_you_mean(str(name), provider_names()) or "one of " + ", ".join(provider_names()),
                )
            if rendered.index(name) != position:
                raise origin.fail((*place, position), f"{name} is listed twice")
        listed = tuple(str(name) for name in rendered)
        if kind is Kind.SSH_KEY:
            if "provider" in head:
                raise origin.fail(
                    ("provider",),
                    "give provider (one) or providers (several), not both",
                    hint=f"providers: [{', '.join(listed)}] declares one object on each",
                )
            if "count" in head:
                raise origin.fail(
                    ("count",),
                    "a key declared for several providers cannot have count",
                    hint="declare one entry per key, each with its providers",
                )
            return listed
        if "provider" not in head:
            return listed
        declared = str(head["provider"])
        if listed == (declared,):
            return None
        others = [name for name in listed if name != declared]
        raise origin.fail(
            place,
            f"provider: {declared} fixes where the instance goes, but offering.providers lists "
            + ", ".join(others),
            hint=f"remove provider: to let the plan choose among {', '.join(listed)}, "
            f"or list only {declared} in offering.providers",
        )

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
                hint="one of " + ", ".join(provider_names()),
            )
        provider = head["provider"]
        known = provider_names()
        if provider not in known:
            raise origin.fail(
                ("provider",),
                f"unknown provider {provider!r}",
                hint=did_you_mean(provider, known) or "one of " + ", ".join(known),
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
            raise origin.errors(issues_from_validation_error(exc, identity, ResourceBlock)) from None
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
        index: int | str | None,
        model: type[ResourceBlock],
        foreign: dict[str, str],
        interpolator: Interpolator,
        base_dir: Path,
    ) -> _Member:
        origin = entry.origin
        try:
            counted = index if isinstance(index, int) else None  # a str index names a provider
            rendered = interpolator.render(body, base_dir, counted, allow_references=True)
        except FieldIssue as issue:
            raise origin.error(issue) from None
        data = {**head, **rendered.value}
        try:
            block = model.model_validate(data)
        except ValidationError as exc:
            issues = issues_from_validation_error(exc, data, model, foreign)
            raise origin.errors(issues) from None
        provider_name = entry.name if counted is None else f"{entry.name}-{counted}"
        provider = index if isinstance(index, str) else entry.provider
        try:
            canonical = canonical_resource(entry.kind, block, provider_name)
            for where in (provider,) if isinstance(index, str) else entry.providers:
                check_provider_limits(
                    entry.kind, where, provider_spec(where).limits, canonical.attributes, counted is not None
                )
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
            provider=provider,
            providers=(provider,) if isinstance(index, str) else entry.providers,
            origin=origin,
            canonical=canonical,
            sensitive=sensitive,
            ssh_key=getattr(block, "ssh_key", None),
            volumes=list(getattr(block, "volumes", [])),
            depends_on=list(getattr(block, "depends_on", [])),
            references=rendered.references,
        )

