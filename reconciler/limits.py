"""What each provider API accepts, as data: checked by `validate` and `plan`, before any call.

A limit here is one the API answers 400 (or fails a create) for; checking it up front means
apply never deletes an object and then finds its replacement cannot be created. Each value
says where it comes from. The planner and the loader read this table by provider name; no
code asks "is this Shadeform?": each provider's spec (reconciler.provider_spec) holds its limits.
The checks at the end turn a breach on one (count-expanded) resource into a FieldIssue that
points at the field and says how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconciler.errors import FieldIssue
from reconciler.model import Kind

# Names: neither API document states a maximum length. 255 characters is the bound of
# both emulated APIs (reconciler.emulator.validation.MAX_NAME_LENGTH), the usual bound of
# the clouds' own name fields.
MAX_API_NAME_LENGTH = 255

# The ownership marker appended to a name where the API keeps no tags:
# "--" + "rc-" + 8 hex digits of the lineage + "-" + 16 random hex digits
# (providers.base.join_name_marker of model.new_marker; a unit test holds them equal).
MARKER_NAME_SUFFIX_LENGTH = 2 + 3 + 8 + 1 + 16

# Volume sizes: Forward's create takes `size_gb` with `ge=1` (fwd-sdk 0.1.1,
# models/create_volume_request.py); Shadeform's `size_in_gb` is an integer (volumes
# reference). Neither states a maximum; 65536 GB is where both emulated APIs answer 400
# (MAX_VOLUME_GB), so a typo like 10**15 fails at validate rather than at create.
MIN_VOLUME_GB = 1
MAX_VOLUME_GB = 65536


@dataclass(frozen=True)
class ProviderLimits:
    """One API's limits and placement rules."""

    # Kinds whose API name carries the ownership marker (the API keeps no tags for them).
    marker_in_name: frozenset[Kind]
    # How many volumes one instance may mount; None: no documented limit.
    max_volumes_per_instance: int | None
    # Attributes a volume and the instances mounting it must share.
    placement: tuple[str, ...] = ("cloud", "region")
    # What the API's update endpoint changes in place, per kind.
    in_place: dict[Kind, frozenset[str]] | None = None
    max_name_length: int = MAX_API_NAME_LENGTH
    min_volume_gb: int = MIN_VOLUME_GB
    max_volume_gb: int = MAX_VOLUME_GB

    def max_user_name_length(self, kind: Kind) -> int:
        """The longest name a user may write, leaving room for the marker suffix."""
        if kind in self.marker_in_name:
            return self.max_name_length - MARKER_NAME_SUFFIX_LENGTH
        return self.max_name_length

    def updatable(self, kind: Kind) -> frozenset[str]:
        return (self.in_place or {}).get(kind, frozenset())


SHADEFORM_LIMITS = ProviderLimits(
    # Instances carry the marker in tags; volumes and SSH keys have no tags.
    marker_in_name=frozenset({Kind.VOLUME, Kind.SSH_KEY}),
    # "the API currently mounts one volume per instance" (Shadeform volumes reference,
    # instance fields); a volume mounts only "in the instance's cloud and region".
    max_volumes_per_instance=1,
    # `POST /instances/{id}/update` takes UpdateRequest {name, tags, auto_delete, alert}
    # (Shadeform's current OpenAPI document, components.schemas.UpdateRequest).
    in_place={Kind.INSTANCE: frozenset({"name", "tags", "auto_delete", "alert"})},
)

FORWARD_LIMITS = ProviderLimits(
    # Forward keeps no tags: the marker is a name suffix on every kind.
    marker_in_name=frozenset(Kind),
    # The create takes a list `volume_ids` (API reference, POST /v1/spot/instances/).
    max_volumes_per_instance=None,
    # A volume mounts on an instance of the same provider and region: its offering's
    # `provider` and `region` (volume offerings, GET /v1/spot/volumes/offerings).
    # Forward has no update endpoint: every change replaces.
)


def check_provider_limits(
    kind: Kind, provider: str, limits: ProviderLimits, attributes: dict[str, Any], counted: bool
) -> None:
    """Name length and volume size against `provider`'s limits."""
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


def check_volume_count(provider: str, limits: ProviderLimits, volumes: list[str]) -> None:
    """An instance mounts no more volumes than its API takes."""
    most = limits.max_volumes_per_instance
    if most is not None and len(volumes) > most:
        raise FieldIssue(
            ("volumes", most),
            f"a {provider} instance mounts at most {most} volume{'s' if most != 1 else ''}, "
            f"this one lists {len(volumes)}",
            hint=f"keep {most} in volumes and mount the data of the others through it, "
            "or split the instance",
        )
