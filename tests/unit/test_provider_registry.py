"""The provider registry: lookup by name, did-you-mean for typos, protocol conformance."""

from __future__ import annotations

import httpx
import pytest

from reconciler.errors import ConfigError, ReconcilerError
from reconciler.providers import make_provider
from reconciler.providers.base import Provider, ProviderSettings
from reconciler.providers.forward import ForwardProvider
from reconciler.providers.registry import BUILTIN_PROVIDER_NAMES as PROVIDERS
from reconciler.providers.shadeform import ShadeformProvider


def transport() -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(200, json={}))


@pytest.mark.parametrize(("name", "cls"), [("shadeform", ShadeformProvider), ("forward", ForwardProvider)])
async def test_make_provider_builds_each_registered_adapter(name: str, cls: type) -> None:
    provider = make_provider(ProviderSettings(name=name, api_key="k"), transport())
    assert isinstance(provider, cls) and isinstance(provider, Provider)
    assert provider.name == name
    await provider.aclose()


def test_registry_lists_both_apis() -> None:
    assert set(PROVIDERS) == {"shadeform", "forward"}


def test_unknown_provider_suggests_the_closest_name() -> None:
    with pytest.raises(ConfigError) as info:
        make_provider(ProviderSettings(name="shadefrom"), transport())
    assert isinstance(info.value, ReconcilerError)
    assert "unknown provider 'shadefrom'" in str(info.value) and "did you mean 'shadeform'?" in str(
        info.value
    )


def test_unknown_provider_without_a_close_match_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="known providers: forward, shadeform"):
        make_provider(ProviderSettings(name="aws"), transport())
