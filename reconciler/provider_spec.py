"""What reconciler knows about each provider, in one `ProviderSpec` per provider, found by name.

The configuration schema, the loader, pinning, rendering, offerings, placement checks and
the emulator read a provider's spec instead of naming it. The built-in providers are
`reconciler.providers.registry.BUILTIN_PROVIDERS`; another one is added with
`register_provider(spec)` (see docs/adding-a-provider.md).

This module imports nothing that knows a provider, so every layer may read the registry.
The built-in specs (which import the adapters and the configuration models) are put in the
registry on its first use, in the one lazy import below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reconciler.limits import ProviderLimits
from reconciler.model import Kind

if TYPE_CHECKING:
    from reconciler.emulator.runtime import EmulatedApi
    from reconciler.providers.base import ProviderFactory


@dataclass(frozen=True)
class ProviderSpec:
    """One provider: its adapter, its configuration blocks and the rules that differ per API."""

    name: str  # what users write in `provider:`
    title: str  # how messages name the API ("Shadeform")
    adapter: ProviderFactory
    # The configuration model of each kind's entries (`provider: <name>` selects it).
    blocks: Mapping[Kind, type[Any]]
    # The instance attribute that pins an exact offering (`shade_instance_type`, `offering_id`);
    # also what the state table shows as an instance's type.
    type_key: str
    # Attributes that say where an instance runs, copied from the live object on import.
    pin_keys: tuple[str, ...]
    api_key_env_var: str
    limits: ProviderLimits  # name lengths, volumes per instance, placement, in-place updates
    # Canonical attributes this provider's blocks add to every provider's common ones.
    attributes: Mapping[Kind, frozenset[str]] = field(default_factory=dict)
    # What the API reports and users do not set (`${instances.x.ip}` may name them).
    computed: Mapping[Kind, tuple[str, ...]] = field(default_factory=dict)
    # A pinned instance must also give cloud and region (the pin alone does not say where).
    pin_needs_place: bool = False
    # The API deletes an expired instance by itself (expiry thresholds are sent along).
    enforces_expiry: bool = False
    # The emulated API serving `endpoint: embedded` (imported only when the emulator runs).
    emulator: Callable[[], EmulatedApi] | None = None


_REGISTRY: dict[str, ProviderSpec] = {}
_builtins_loaded = False


def _registry() -> dict[str, ProviderSpec]:
    global _builtins_loaded
    if not _builtins_loaded:
        from reconciler.providers.registry import BUILTIN_PROVIDERS

        _builtins_loaded = True
        _REGISTRY.update((spec.name, spec) for spec in BUILTIN_PROVIDERS)
    return _REGISTRY


def provider_specs() -> Mapping[str, ProviderSpec]:
    """Every registered provider by name, the built-in ones first."""
    return _registry()


def provider_names() -> tuple[str, ...]:
    return tuple(_registry())


def find_provider(name: str) -> ProviderSpec | None:
    return _registry().get(name)


def provider_spec(name: str) -> ProviderSpec:
    """The spec of a known provider; KeyError for a name nothing registered."""
    return _registry()[name]


def register_provider(spec: ProviderSpec) -> ProviderSpec:
    """Add a provider: from now on configurations, plans and the emulator know it."""
    registry = _registry()
    if spec.name in registry:
        raise ValueError(f"provider {spec.name!r} is already registered")
    registry[spec.name] = spec
    return spec


def unregister_provider(name: str) -> None:
    registry = _registry()
    if name not in registry:
        raise KeyError(name)
    del registry[name]


@contextmanager
def provider_registered(spec: ProviderSpec) -> Iterator[ProviderSpec]:
    """`register_provider` for the length of a `with` block (tests, plugins tried out)."""
    register_provider(spec)
    try:
        yield spec
    finally:
        unregister_provider(spec.name)
