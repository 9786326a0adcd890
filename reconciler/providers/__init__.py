"""The provider registry: one explicit dict from the name users write to the adapter class.

Adding a provider is one new module and one line here.
"""

from __future__ import annotations

import difflib

import httpx

from reconciler.errors import ConfigError
from reconciler.model import Kind, VolumeOffering
from reconciler.providers import forward, shadeform
from reconciler.providers.base import Provider, ProviderFactory, ProviderSettings
from reconciler.providers.forward import ForwardProvider
from reconciler.providers.shadeform import ShadeformProvider

PROVIDERS: dict[str, ProviderFactory] = {
    "shadeform": ShadeformProvider,
    "forward": ForwardProvider,
}

# Attributes each API reports and users do not set (`${instances.x.ip}` may refer to them).
COMPUTED_ATTRIBUTES: dict[str, dict[Kind, tuple[str, ...]]] = {
    "shadeform": shadeform.COMPUTED_ATTRIBUTES,
    "forward": forward.COMPUTED_ATTRIBUTES,
}

__all__ = [
    "COMPUTED_ATTRIBUTES",
    "PROVIDERS",
    "ForwardProvider",
    "ShadeformProvider",
    "VolumeOffering",
    "computed_attributes",
    "make_provider",
]


def computed_attributes(provider: str, kind: Kind) -> tuple[str, ...]:
    return COMPUTED_ATTRIBUTES.get(provider, {}).get(kind, ())


def make_provider(settings: ProviderSettings, transport: httpx.AsyncBaseTransport | None = None) -> Provider:
    """The adapter for `settings.name`; an unknown name is a configuration error with a suggestion."""
    factory = PROVIDERS.get(settings.name)
    if factory is None:
        close = difflib.get_close_matches(settings.name, list(PROVIDERS), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known providers: {', '.join(sorted(PROVIDERS))}"
        raise ConfigError(f"unknown provider {settings.name!r}", field="provider", hint=hint)
    return factory(settings, transport)
