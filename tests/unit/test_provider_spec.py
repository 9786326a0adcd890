"""The provider registry: the built-in specs, and adding or removing one at run time."""

from __future__ import annotations

import dataclasses

import pytest

from reconciler.config.schema import kind_attributes
from reconciler.model import Kind
from reconciler.provider_spec import (
    find_provider,
    provider_names,
    provider_registered,
    provider_spec,
    register_provider,
)


def test_the_built_in_providers_come_first_with_their_knowledge() -> None:
    assert provider_names()[:2] == ("shadeform", "forward")
    shadeform, forward = provider_spec("shadeform"), provider_spec("forward")
    assert (shadeform.type_key, forward.type_key) == ("shade_instance_type", "offering_id")
    assert shadeform.api_key_env_var == "SHADEFORM_API_KEY" and forward.api_key_env_var == "FORWARD_API_KEY"
    assert shadeform.enforces_expiry and not forward.enforces_expiry
    assert shadeform.limits.placement == ("cloud", "region")


def test_a_registered_provider_is_known_until_it_is_removed() -> None:
    copy = dataclasses.replace(provider_spec("forward"), name="forward2")
    with provider_registered(copy):
        assert provider_names()[-1] == "forward2" and find_provider("forward2") is copy
        with pytest.raises(ValueError, match="already registered"):
            register_provider(copy)
    assert find_provider("forward2") is None


def test_attribute_names_follow_the_registry() -> None:
    assert "shade_instance_type" in kind_attributes(Kind.INSTANCE)
    assert "offering_id" in kind_attributes(Kind.INSTANCE)
    assert kind_attributes(Kind.SSH_KEY) == {"name", "public_key"}
