"""Provider limits checked on one (count-expanded) resource: what its API would refuse.

The limits themselves are data in `reconciler.limits`; this module turns a
breach into a FieldIssue that points at the field and says how to fix it.
"""

from __future__ import annotations

from typing import Any

from reconciler.config.diagnostics import FieldIssue
from reconciler.model import Kind
from reconciler.provider_spec import provider_spec


def check_provider_limits(kind: Kind, provider: str, attributes: dict[str, Any], counted: bool) -> None:
    """Name length and volume size against `provider`'s limits."""
    limits = provider_spec(provider).limits
    name = str(attributes.get("name", ""))
    longest = limits.max_user_name_length(kind)
    if len(name) > longest:
        what = "with its count suffix, " if counted else ""
        raise FieldIssue(
            ("name",),
            f"name is {len(name)} characters {what}and {provider} takes at most {longest} "
            f"for {kind.value}",
            hint=f"shorten the name to {longest} characters or fewer",
        )
    size = attributes.get("size_gb")
    if kind is Kind.VOLUME and isinstance(size, int) and not limits.min_volume_gb <= size <= limits.max_volume_gb:
        raise FieldIssue(
            ("size_gb",),
            f"size_gb {size} is outside what {provider} creates "
            f"({limits.min_volume_gb} to {limits.max_volume_gb} GB)",
            hint=f"give a size between {limits.min_volume_gb} and {limits.max_volume_gb}",
        )


def check_volume_count(provider: str, volumes: list[str]) -> None:
    """An instance mounts no more volumes than its API takes."""
    most = provider_spec(provider).limits.max_volumes_per_instance
    if most is not None and len(volumes) > most:
        raise FieldIssue(
            ("volumes", most),
            f"a {provider} instance mounts at most {most} volume{'s' if most != 1 else ''}, "
            f"this one lists {len(volumes)}",
            hint=f"keep {most} in volumes and mount the data of the others through it, "
            "or split the instance",
        )
