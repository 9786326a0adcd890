"""The built-in providers: one ProviderSpec each, in the order users see them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reconciler.config.schema import (
    ForwardInstanceBlock,
    ForwardVolumeBlock,
    ShadeformInstanceBlock,
    ShadeformVolumeBlock,
    SshKeyBlock,
)
from reconciler.limits import FORWARD_LIMITS, SHADEFORM_LIMITS
from reconciler.model import Kind
from reconciler.provider_spec import ProviderSpec
from reconciler.providers import forward, shadeform

if TYPE_CHECKING:
    from reconciler.emulator.runtime import EmulatedApi


# The emulator (starlette and the catalogues) is imported only when something runs it.
def shadeform_emulator() -> EmulatedApi:
    from reconciler.emulator import shadeform_api

    return shadeform_api.EMULATED_API


def forward_emulator() -> EmulatedApi:
    from reconciler.emulator import forward_api

    return forward_api.EMULATED_API


SHADEFORM = ProviderSpec(
    name="shadeform",
    title="Shadeform",
    adapter=shadeform.ShadeformProvider,
    blocks={Kind.SSH_KEY: SshKeyBlock, Kind.VOLUME: ShadeformVolumeBlock, Kind.INSTANCE: ShadeformInstanceBlock},
    type_key="shade_instance_type",
    pin_keys=("cloud", "region", "shade_instance_type"),
    api_key_env_var=shadeform.API_KEY_ENV_VAR,
    limits=SHADEFORM_LIMITS,
    computed=shadeform.COMPUTED_ATTRIBUTES,
    pin_needs_place=True,
    enforces_expiry=True,  # deletes by itself through auto_delete
    emulator=shadeform_emulator,
)

FORWARD = ProviderSpec(
    name="forward",
    title="Forward Compute",
    adapter=forward.ForwardProvider,
    blocks={Kind.SSH_KEY: SshKeyBlock, Kind.VOLUME: ForwardVolumeBlock, Kind.INSTANCE: ForwardInstanceBlock},
    type_key="offering_id",
    pin_keys=("cloud", "region", "offering_id"),
    api_key_env_var=forward.API_KEY_ENV_VAR,
    limits=FORWARD_LIMITS,
    computed=forward.COMPUTED_ATTRIBUTES,
    emulator=forward_emulator,
)

BUILTIN_PROVIDERS: tuple[ProviderSpec, ...] = (SHADEFORM, FORWARD)
BUILTIN_PROVIDER_NAMES: tuple[str, ...] = tuple(spec.name for spec in BUILTIN_PROVIDERS)
