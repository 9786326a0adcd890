"""References between resources: by name (ssh_key, volumes), by address (depends_on) and by
attribute (`${kind.name.attribute}`), turned into dependency edges; outputs; cycles.

A mixin of the loader: it reads the entries the loader declared and the members it expanded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from reconciler.config.attributes import CanonicalResource, sensitive_attribute_path
from reconciler.config.diagnostics import (
    DependentProblem,
    FieldIssue,
    Origin,
    ProblemCollector,
    did_you_mean,
    hint_for_names,
    issue_from_validation_error,
)
from reconciler.config.interpolation import Interpolator
from reconciler.config.schema import OUTPUT_NAME_PATTERN, OutputBlock, kind_attributes
from reconciler.errors import GraphCycleError
from reconciler.graph import DependencyGraph
from reconciler.limits import check_volume_count
from reconciler.model import Address, Kind, OfferingRequest, Output, Resource
from reconciler.provider_spec import provider_spec
from reconciler.providers import computed_attributes
from reconciler.references import Reference

_REFERENCE = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]*?)(?:\[(\d+)\])?$")


def referable_attributes(kind: Kind, provider: str) -> frozenset[str]:
    """What `${kind.name.ATTRIBUTE}` may name: desired attributes and what the API reports."""
    return kind_attributes(kind) | frozenset(computed_attributes(provider, kind)) | {"id"}


def _computed_everywhere(providers: Sequence[str], kind: Kind) -> tuple[str, ...]:
    """What every provider it may be on reports (the first's order)."""
    first, *others = providers
    return tuple(a for a in computed_attributes(first, kind) if all(a in computed_attributes(o, kind) for o in others))



@dataclass
class _Member:
    """One count-expanded resource whose references are not resolved yet."""

    address: Address
    provider: str
    origin: Origin
    canonical: CanonicalResource
    providers: tuple[str, ...]
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
    providers: tuple[str, ...] = ()  # where it is (a shared SSH key) or may be (a chosen instance)
    by_provider: bool = False  # an SSH key with one object per provider, ssh_keys.NAME["provider"]




class ReferenceResolver:
    """Resolves the references of expanded members against the declared entries."""

    entries: dict[Kind, dict[str, _Entry]]
    by_address: dict[Address, _Member]
    maps: dict[str, dict[str, tuple[Any, Origin]]]
    problems: ProblemCollector
    broken: set[tuple[Kind, str]]

    def _unless_broken(self, kind: Kind, name: str) -> None:
        if (kind, name) in self.broken:
            raise DependentProblem()

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
            with self.problems.attempt():
                resources[member.address] = self._resolve_member(member, by_address, edge_fields)
        return resources, edge_fields

    def _resolve_member(
        self,
        member: _Member,
        by_address: dict[Address, _Member],
        edge_fields: dict[tuple[Address, Address], tuple[str | int, ...]],
    ) -> Resource:
        attributes = dict(member.canonical.attributes)
        offering = member.canonical.offering
        if offering is not None and offering.providers and member.volumes:
            offering = self._pin_to_volumes(member, offering)
        dependencies: dict[Address, tuple[str | int, ...]] = {}
        if member.ssh_key is not None:
            keys = self._placed(Kind.SSH_KEY, member.ssh_key, member, ("ssh_key",))
            if len(member.providers) > 1:
                # Which object is used follows the provider the plan chooses.
                attributes["ssh_key"] = {provider: str(key) for provider, key in keys.items()}
            else:
                attributes["ssh_key"] = str(keys[member.provider])
            for key in keys.values():
                dependencies.setdefault(key, ("ssh_key",))
        if member.volumes:
            volumes: list[str] = []
            for position, text in enumerate(member.volumes):
                place: tuple[str | int, ...] = ("volumes", position)
                volume = self._placed(Kind.VOLUME, text, member, place)[member.provider]
                if str(volume) in volumes:
                    raise member.origin.fail(place, f"{volume} is listed twice")
                if volume in by_address:  # else its entry failed to load, and was reported
                    offering = self._check_volume_placement(
                        member, by_address[volume], attributes, offering, place
                    )
                volumes.append(str(volume))
                dependencies.setdefault(volume, place)
            try:
                check_volume_count(member.provider, provider_spec(member.provider).limits, volumes)
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
        return Resource(
            address=member.address,
            provider=member.provider,
            attributes=dict(sorted(attributes.items())),
            depends_on=tuple(dependencies),
            lifecycle=member.canonical.lifecycle,
            sensitive=tuple(sorted(member.sensitive)),
            offering=offering,
            on_failure=member.canonical.on_failure,
            references=tuple(sorted({reference.text for _, reference in member.references})),
            computed=_computed_everywhere(member.providers, member.address.kind),
            fallback_attempts=member.canonical.fallback_attempts,
            fallback_on_boot_failure=member.canonical.fallback_on_boot_failure,
        )

    def _attribute_reference(
        self, reference: Reference, origin: Origin, place: tuple[str | int, ...]
    ) -> list[Address]:
        """The addresses `${kind.name[i].attribute}` reads; each is a dependency edge."""
        entry = self.entries[reference.kind].get(reference.name)
        if entry is None:
            self._unless_broken(reference.kind, reference.name)
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
        known = frozenset.intersection(*(referable_attributes(reference.kind, p) for p in entry.providers))
        if reference.attribute not in known:
            raise origin.fail(
                place,
                f"${{{reference.text}}}: {reference.kind.value} ({' and '.join(entry.providers)}) have no attribute "
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

    def _placed(
        self, kind: Kind, text: str, member: _Member, place: tuple[str | int, ...]
    ) -> dict[str, Address]:
        """A by-name reference (`deploy`, `data[1]`) to one resource of `kind`: the object on
        each provider the member may be on (a key declared for several has one on each)."""
        match = _REFERENCE.match(text.strip())
        known = self.entries[kind]
        if match is None:
            raise member.origin.fail(
                place, f"{text!r} is not a {kind.singular} name", hint="write name or name[i]"
            )
        name, index_text = match.groups()
        entry = known.get(name)
        if entry is None:
            self._unless_broken(kind, name)
            raise member.origin.fail(
                place,
                f"no {kind.singular} named {name!r}",
                hint=hint_for_names(name, list(known), kind.value),
            )
        if entry.by_provider:
            if index_text is not None:
                raise member.origin.fail(place, f"{Address(kind, name)} has no count; refer to it as {name!r}")
            missing = [p for p in member.providers if p not in entry.providers]
            if missing:
                declared = ", ".join(entry.providers)
                raise member.origin.fail(
                    place,
                    f"{member.address} may be on {', '.join(missing)}, where {Address(kind, name)} is not "
                    f"declared (it is declared for {declared})",
                    hint=f"add {', '.join(missing)} to the providers of {kind.value} {name}, "
                    "or leave it out of this instance's providers",
                )
            return {p: Address(kind, name, p) for p in member.providers}
        address = self._member_address(entry, index_text, member.origin, place, allow_all=False)[0]
        if member.providers != (entry.provider,):
            if len(member.providers) > 1:
                raise member.origin.fail(
                    place,
                    f"{address} is only on {entry.provider}, and {member.address} may be on "
                    + ", ".join(p for p in member.providers if p != entry.provider),
                    hint=f"declare it for every provider the instance may use: providers: "
                    f"[{', '.join(member.providers)}] instead of provider: {entry.provider}",
                )
            raise member.origin.fail(
                place,
                f"{address} is on provider {entry.provider}, "
                f"this {member.address.kind.singular} on {member.provider}",
                hint=f"an instance can only use {kind.value} of its own provider",
            )
        return {entry.provider: address}

    def _pin_to_volumes(self, member: _Member, offering: OfferingRequest) -> OfferingRequest:
        """A volume pins an instance whose provider is chosen to the volume's own provider (and,
        through its placement, region): the data is where it is."""
        pinned_by: str | None = None
        for position, text in enumerate(member.volumes):
            match = _REFERENCE.match(text.strip())
            entry = self.entries[Kind.VOLUME].get(match.group(1)) if match else None
            if entry is None:
                continue  # reported with its hint when the reference is resolved
            if pinned_by is not None and entry.provider not in member.providers:
                raise member.origin.fail(
                    ("volumes", position),
                    f"volumes.{entry.name} is on {entry.provider}, {pinned_by} on {member.provider}: "
                    "an instance is on one provider",
                    hint="mount volumes of one provider",
                )
            if entry.provider not in member.providers:
                raise member.origin.fail(
                    ("volumes", position),
                    f"volumes.{entry.name} is on {entry.provider}, which is not among offering.providers "
                    f"({', '.join(member.providers)})",
                    hint=f"add {entry.provider} to offering.providers, or use a volume on one of them",
                )
            member.providers = (entry.provider,)
            member.provider = entry.provider
            pinned_by = pinned_by or f"volumes.{entry.name}"
        return replace(offering, providers=member.providers)

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
            self._unless_broken(wanted.kind, wanted.name)
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
        if entry.by_provider:
            if index_text is None:
                if allow_all:
                    return [member.address for member in entry.members]
                raise origin.fail(
                    place,
                    f"{base} is declared for {', '.join(entry.providers)}; name one of them, "
                    f'e.g. {entry.name}["{entry.providers[0]}"]',
                )
            if index_text not in entry.providers:
                raise origin.fail(
                    place,
                    f'{base}["{index_text}"] does not exist ({base} is declared for {", ".join(entry.providers)})',
                )
            return [Address(entry.kind, entry.name, index_text)]
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
        keys = provider_spec(member.provider).limits.placement
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
            with self.problems.attempt():
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
        # Edges to resources that failed to load (and were reported) are left out.
        graph = DependencyGraph(
            {address: tuple(d for d in r.depends_on if d in resources) for address, r in resources.items()}
        )
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

