"""Checks a plan passes before anything is sent: what it creates can be created.

Pure, like the planner. A replacement deletes first unless create_before_destroy, so a
new object the API would refuse (an offering that is not sold, a volume in another place
than the instance mounting it) must fail the plan, never the apply after the delete.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from reconciler.errors import PlanError
from reconciler.model import Action, Address, Change, Kind, LiveResource, Offering, Resource, mounted_volumes
from reconciler.provider_spec import provider_spec
from reconciler.state.model import StateDocument

if TYPE_CHECKING:
    from reconciler.planner import LiveView

CREATING = (Action.CREATE, Action.REPLACE)
Observe = Callable[[str, Kind, str], LiveResource | None]


def pinned_offering(attrs: Mapping[str, Any], offerings: Sequence[Offering] | None) -> Offering | None:
    """The offering whose pin (cloud, region, type; or offering id) these attributes name."""
    for offering in offerings or ():
        if offering.pin and all(attrs.get(k) == v for k, v in offering.pin.items()):
            return offering
    return None


def check_creatable(
    changes: Mapping[Address, Change], desired: Mapping[Address, Resource], doc: StateDocument, live: LiveView
) -> None:
    """PlanError for the first object to be created that its API would refuse."""
    for address, change in changes.items():
        if change.action not in CREATING or change.after is None:
            continue
        if address.kind is Kind.VOLUME:
            _check_volume_sold(address, change, live.volume_prices)
        if address.kind is not Kind.INSTANCE:
            continue
        sold = live.offerings.get(change.provider)
        if sold is None:
            continue  # not fetched: the pin is the one state recorded, already created once
        offering = pinned_offering(change.after, sold)
        if offering is None:
            raise PlanError(
                f"{address}: {change.provider} sells no offering {_pin_text(change.after, sold)}",
                hint="run `reconciler offerings` to see what is sold, then fix the pin",
            )
        for volume in mounted_volumes(change.after):
            where = _volume_place(Address.parse(volume), changes, desired, doc, live.lookup)
            _check_mount(address, change.provider, offering, Address.parse(volume), where)


def _check_volume_sold(
    address: Address, change: Change, prices: Mapping[tuple[str, str, str | None], float]
) -> None:
    """A volume where its provider sells none (per its volume types) cannot be created."""
    if not any(key[0] == change.provider for key in prices):
        return  # volume types not fetched (or none listed): nothing to check against
    after = change.after or {}
    region, cloud = str(after.get("region")), after.get("cloud")
    if (change.provider, region, cloud) in prices:
        return
    places = sorted({f"{c} {r}" for p, r, c in prices if p == change.provider and c is not None})
    where = f"{cloud} {region}" if cloud is not None else f"region {region}"
    raise PlanError(
        f"{address}: {change.provider} sells no volumes in {where}",
        hint="volumes are sold in: "
        + ", ".join(places[:8])
        + (f" and {len(places) - 8} more" if len(places) > 8 else ""),
    )


def _pin_text(attrs: Mapping[str, Any], sold: Sequence[Offering]) -> str:
    keys = sorted({k for o in sold for k in o.pin}) or ["offering_id"]
    return ", ".join(f"{k}={attrs[k]}" for k in keys if k in attrs) or "(no pin)"


def _check_mount(
    address: Address,
    provider: str,
    offering: Offering,
    volume: Address,
    where: Mapping[str, Any],
) -> None:
    placement = provider_spec(provider).limits.placement
    for key in placement:
        value = where.get(key)
        if value is None:
            raise PlanError(
                f"{address} mounts {volume}, which sets no {key}: {provider} would choose one when "
                f"it creates the volume, maybe not {getattr(offering, key)!r} where offering "
                f"{offering.id} runs",
                hint=f"set {key}: {getattr(offering, key)} on {volume}",
            )
        if value != getattr(offering, key):
            raise PlanError(
                f"{address}: offering {offering.id} is in {key} {getattr(offering, key)!r}, "
                f"but {volume} is in {value!r}",
                hint=f"{provider} mounts a volume only on an instance with the same "
                + " and ".join(placement)
                + f": choose an offering in {key} {value!r} (set offering.{key} to let the plan pick one)",
            )


def _volume_place(
    volume: Address,
    changes: Mapping[Address, Change],
    desired: Mapping[Address, Resource],
    doc: StateDocument,
    observe: Observe,
) -> dict[str, Any]:
    """Where the volume is (live, when it stays) or will be (its configuration)."""
    place = dict(desired[volume].attributes) if volume in desired else {}
    prior = doc.resources.get(str(volume))
    change = changes.get(volume)
    if prior is not None and (change is None or change.action not in CREATING):
        seen: LiveResource | None = observe(prior.provider, Kind.VOLUME, prior.id)
        if seen is not None:
            place = {**place, **{k: v for k, v in seen.attributes.items() if v is not None}}
    return place
