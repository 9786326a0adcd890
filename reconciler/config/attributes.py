"""Validated YAML blocks -> canonical Resource attributes (see reconciler.providers.base).

Canonical means plain JSON data with sorted keys, optional fields absent rather than
null, envs as a `{name: value}` dict and launch as a dict, so the planner can compare
desired and live attributes with `==`. References (`ssh_key`, `volumes`) are added by the
loader once every resource is known.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from reconciler.config.diagnostics import FieldIssue, did_you_mean
from reconciler.config.schema import (
    NOT_ATTRIBUTES,
    ChosenInstanceBlock,
    DockerLaunchBlock,
    EnvValueBlock,
    InstanceBlock,
    ResourceBlock,
    ScriptLaunchBlock,
    SshKeyBlock,
    VolumeBlock,
    kind_attributes,
    provider_fields,
)
from reconciler.expiry import EXPIRY_KEY
from reconciler.model import Kind, Lifecycle, OfferingRequest
from reconciler.provider_spec import provider_spec

_NOT_ATTRIBUTES = NOT_ATTRIBUTES


@dataclass(frozen=True)
class CanonicalResource:
    """A resource's attributes before references are resolved, plus what travels beside them."""

    attributes: dict[str, Any]
    lifecycle: Lifecycle
    offering: OfferingRequest | None = None
    sensitive: tuple[str, ...] = ()
    secrets: frozenset[str] = frozenset()
    on_failure: str = "replace"
    fallback_attempts: int = 1
    fallback_on_boot_failure: bool = False


def canonical_resource(kind: Kind, block: ResourceBlock, provider_name: str) -> CanonicalResource:
    """Canonical attributes of one (count-expanded) resource; FieldIssue for cross-field problems."""
    lifecycle = _lifecycle(kind, block)
    if isinstance(block, SshKeyBlock):
        return CanonicalResource({"name": provider_name, "public_key": block.public_key}, lifecycle)
    if isinstance(block, VolumeBlock):
        attributes: dict[str, Any] = {"name": provider_name, "region": block.region, "size_gb": block.size_gb}
        if block.cloud is not None:
            attributes["cloud"] = block.cloud
        return CanonicalResource(dict(sorted(attributes.items())), lifecycle)
    if isinstance(block, InstanceBlock):
        return _instance(block, provider_name, lifecycle)
    raise TypeError(f"no canonical form for {type(block).__name__}")


def _lifecycle(kind: Kind, block: ResourceBlock) -> Lifecycle:
    known = kind_attributes(kind)
    for index, attribute in enumerate(block.lifecycle.ignore_changes):
        if attribute.split(".", 1)[0] not in known:
            raise FieldIssue(
                ("lifecycle", "ignore_changes", index),
                f"{attribute!r} is not an attribute of {kind.value}",
                did_you_mean(attribute, known) or "attributes: " + ", ".join(sorted(known)),
            )
    return Lifecycle(
        prevent_destroy=block.lifecycle.prevent_destroy,
        create_before_destroy=block.lifecycle.create_before_destroy,
        ignore_changes=tuple(block.lifecycle.ignore_changes),
    )


def _instance(block: InstanceBlock, provider_name: str, lifecycle: Lifecycle) -> CanonicalResource:
    attributes: dict[str, Any] = {"name": provider_name}
    sensitive: list[str] = []
    secrets: set[str] = set()
    spec = None
    if isinstance(block, ChosenInstanceBlock):
        pin_field, pin = "offering", None  # the provider is chosen, so its offering is too
    else:
        spec = provider_spec(getattr(block, "provider"))  # noqa: B009 (each provider's block declares it)
        pin_field = spec.type_key
        pin = getattr(block, pin_field)
    offering = _offering(block, pin_field, pin)
    if offering is None:
        attributes[pin_field] = pin
        for place in ("cloud", "region"):
            value = getattr(block, place)
            if value is not None:
                attributes[place] = value
            elif spec is not None and spec.pin_needs_place:
                raise FieldIssue(
                    (place,),
                    f"missing required field {place!r}",
                    hint=f"a pinned {spec.title} instance needs cloud, region and {pin_field}",
                )
    expiry = _expiry(block)
    if expiry:
        attributes[EXPIRY_KEY] = expiry
    if block.envs:
        attributes["envs"] = _envs(block.envs, "envs", sensitive, secrets)
    for name in provider_fields(Kind.INSTANCE, spec.name) if spec is not None else ():
        value = getattr(block, name)
        if name != pin_field and value is not None and value != []:
            attributes[name] = _provider_value(value, sensitive, secrets)
    return CanonicalResource(
        dict(sorted(attributes.items())),
        lifecycle,
        offering=offering,
        sensitive=tuple(sensitive),
        secrets=frozenset(secrets),
        on_failure=block.on_failure,
        fallback_attempts=_fallback_attempts(block, offering),
        fallback_on_boot_failure=block.fallback is not None and block.fallback.on_boot_failure,
    )


def _expiry(block: InstanceBlock) -> dict[str, Any]:
    if block.expires_after is not None and block.expires_at is not None:
        raise FieldIssue(("expires_at",), "give expires_after or expires_at, not both")
    given = block.expires_after is not None or block.expires_at is not None or block.max_spend is not None
    if given and getattr(block, "auto_delete", None) is not None:
        raise FieldIssue(
            ("auto_delete",),
            "auto_delete and expires_after / expires_at / max_spend set the same Shadeform thresholds",
            hint="keep one: expires_after, expires_at and max_spend become auto_delete",
        )
    return given_fields(block, {"expires_after": "after", "expires_at": "at", "max_spend": "max_spend"})


def given_fields(block: BaseModel, keys: Mapping[str, str]) -> dict[str, Any]:
    """The fields of `block` that hold a value, each under its key in `keys` (field -> key)."""
    return {key: value for name, key in keys.items() if (value := getattr(block, name)) is not None}


def _fallback_attempts(block: InstanceBlock, offering: OfferingRequest | None) -> int:
    if block.fallback is None:
        return 1
    if offering is None:
        raise FieldIssue(
            ("fallback",),
            "fallback needs offering requirements: a pinned offering has nothing to fall back to",
            hint="replace the pin with offering: {gpu_type: ..., num_gpus: ...}, or remove fallback",
        )
    return block.fallback.max_attempts


def _offering(block: InstanceBlock, pin_field: str, pin: str | None) -> OfferingRequest | None:
    if block.offering is not None and pin is not None:
        raise FieldIssue(
            (pin_field,),
            f"give either {pin_field} (an exact offering) or offering (requirements), not both",
        )
    if block.offering is None:
        if pin is None:
            raise FieldIssue(
                (),
                f"an instance needs {pin_field} (an exact offering) or offering (requirements)",
                hint="for example offering: {gpu_type: H100, num_gpus: 8, max_hourly_price: 25}",
            )
        return None
    wanted = block.offering
    places: dict[str, str | None] = {"cloud": wanted.cloud, "region": wanted.region}
    for place in ("cloud", "region"):
        outer = getattr(block, place)
        if outer is None:
            continue
        if places[place] is not None and places[place] != outer:
            raise FieldIssue(
                (place,),
                f"{place} {outer!r} conflicts with offering.{place} {places[place]!r}",
                hint=f"keep {place} in one place",
            )
        places[place] = outer
    return OfferingRequest(
        gpu_type=wanted.gpu_type if not isinstance(wanted.gpu_type, list) else tuple(wanted.gpu_type),
        num_gpus=wanted.num_gpus,
        max_hourly_price=wanted.max_hourly_price,
        region=places["region"],
        cloud=places["cloud"],
        max_price_per_gpu_hour=wanted.max_price_per_gpu_hour,
        min_vram_per_gpu_gb=wanted.min_vram_per_gpu_gb,
        min_vcpus=wanted.min_vcpus,
        min_memory_gb=wanted.min_memory_gb,
        regions=_tuple(wanted.regions),
        clouds=_tuple(wanted.clouds),
        exclude_regions=_tuple(wanted.exclude_regions),
        exclude_clouds=_tuple(wanted.exclude_clouds),
        rental_type=wanted.rental_type,
        deployment_type=wanted.deployment_type,
        providers=_tuple(wanted.providers),
    )


def _tuple(values: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(values)


def _envs(
    envs: dict[str, EnvValueBlock], prefix: str, sensitive: list[str], secrets: set[str]
) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in sorted(envs):
        entry = envs[name]
        values[name] = entry.value
        if entry.sensitive:
            sensitive.append(f"{prefix}.{name}")
            if entry.value:
                secrets.add(entry.value)
    return values


def _provider_value(value: Any, sensitive: list[str], secrets: set[str]) -> Any:
    """A field a provider's instance block adds, in canonical form: lists sorted, blocks as
    dicts without unset keys, a launch block as `_launch` gives it."""
    if isinstance(value, DockerLaunchBlock | ScriptLaunchBlock):
        return _launch(value, sensitive, secrets)
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_none=True)
    if isinstance(value, list):
        return sorted(value)
    return value


def _launch(launch: Any, sensitive: list[str], secrets: set[str]) -> dict[str, Any]:
    if not isinstance(launch, DockerLaunchBlock):
        return {"script": launch.script, "type": "script"}
    spec: dict[str, Any] = {"image": launch.image, "type": "docker"}
    if launch.args is not None:
        spec["args"] = launch.args
    if launch.envs:
        spec["envs"] = _envs(launch.envs, "launch.envs", sensitive, secrets)
    if launch.port_mappings:
        spec["port_mappings"] = [
            dict(sorted(mapping.model_dump().items())) for mapping in launch.port_mappings
        ]
    if launch.shared_memory_in_gb is not None:
        spec["shared_memory_in_gb"] = launch.shared_memory_in_gb
    if launch.volume_mounts:
        spec["volume_mounts"] = [dict(sorted(mount.model_dump().items())) for mount in launch.volume_mounts]
    return dict(sorted(spec.items()))


def sensitive_attribute_path(raw_path: tuple[str | int, ...], attributes: dict[str, Any]) -> str | None:
    """The canonical attribute path for a place in the YAML entry that got a sensitive value.

    Paths stop at list indices (`tags`, `launch.port_mappings`); `envs.X.value` is `envs.X`.
    None when the place does not become an attribute (offering requirements, lifecycle).
    """
    if not raw_path or raw_path[0] in _NOT_ATTRIBUTES or raw_path[0] not in attributes:
        return None
    parts: list[str] = []
    for element in raw_path:
        if isinstance(element, int):
            break
        parts.append(element)
    if len(parts) >= 3 and parts[-1] == "value" and parts[-3] == "envs":
        parts.pop()
    return ".".join(parts)
