"""Provider adapters, found by name in the provider registry (`reconciler.provider_spec`)."""

from __future__ import annotations

import httpx

from reconciler.errors import ConfigError
from reconciler.model import Kind, VolumeOffering
from reconciler.provider_spec import find_provider, provider_names
from reconciler.providers.base import Provider, ProviderSettings
from reconciler.suggestions import did_you_mean

__all__ = [
    "VolumeOffering",
    "computed_attributes",
    "make_provider",
]


def computed_attributes(provider: str, kind: Kind) -> tuple[str, ...]:
    """Attributes the API reports and users do not set (`${instances.x.ip}` may refer to them)."""
    spec = find_provider(provider)
    return spec.computed.get(kind, ()) if spec is not None else ()


def make_provider(settings: ProviderSettings, transport: httpx.AsyncBaseTransport | None = None) -> Provider:
    """The adapter for `settings.name`; an unknown name is a configuration error with a suggestion."""
    spec = find_provider(settings.name)
    if spec is None:
        known = provider_names()
        hint = did_you_mean(settings.name, known) or f"known providers: {', '.join(sorted(known))}"
        raise ConfigError(f"unknown provider {settings.name!r}", field="provider", hint=hint)
    return spec.adapter(settings, transport)
