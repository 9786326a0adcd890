"""Choosing an offering from requirements: which offerings match, in what order, and why.

Pure, like the planner. The ranked list is what the plan shows and what apply may fall back
along on capacity errors, so both read it from here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.model import Candidate, Offering, OfferingRequest

SHOWN_NEXT = 3


def _in(value: str, allowed: tuple[str, ...] | None) -> bool:
    return allowed is None or value.lower() in {a.lower() for a in allowed}


def _not_in(value: str, excluded: tuple[str, ...] | None) -> bool:
    return excluded is None or value.lower() not in {e.lower() for e in excluded}


def _at_least(value: int | None, minimum: int | None) -> bool:
    return minimum is None or (value is not None and value >= minimum)


def gpu_types(request: OfferingRequest) -> tuple[str, ...] | None:
    if request.gpu_type is None:
        return None
    return (request.gpu_type,) if isinstance(request.gpu_type, str) else tuple(request.gpu_type)


def matches(request: OfferingRequest, offering: Offering) -> bool:
    """Whether an offering meets every requirement (availability aside)."""
    r = request
    return (
        (r.providers is None or offering.provider in r.providers)
        and _in(offering.gpu_type, gpu_types(r))
        and (r.num_gpus is None or offering.num_gpus == r.num_gpus)
        and (r.max_hourly_price is None or offering.hourly_price <= r.max_hourly_price)
        and (r.max_price_per_gpu_hour is None or offering.price_per_gpu_hour <= r.max_price_per_gpu_hour)
        and _at_least(offering.vram_per_gpu_gb, r.min_vram_per_gpu_gb)
        and _at_least(offering.vcpus, r.min_vcpus)
        and _at_least(offering.memory_gb, r.min_memory_gb)
        and (r.region is None or offering.region == r.region)
        and (r.cloud is None or offering.cloud == r.cloud)
        and _in(offering.region, r.regions)
        and _in(offering.cloud, r.clouds)
        and _not_in(offering.region, r.exclude_regions)
        and _not_in(offering.cloud, r.exclude_clouds)
        and (r.rental_type is None or offering.rental_type == r.rental_type)
        and (r.deployment_type is None or offering.deployment_type == r.deployment_type)
    )


def rank(request: OfferingRequest, offerings: Sequence[Offering]) -> list[Offering]:
    """Available matching offerings, cheapest first; ties broken by id so plans are stable."""
    found = [o for o in offerings if o.available and matches(request, o)]
    return sorted(found, key=lambda o: (o.hourly_price, o.provider, o.id))


def label(offering: Offering) -> str:
    """`forward crusoe us-east-1 A100x1 $1.16/h`: what a person needs to recognise it."""
    spot = " spot" if offering.rental_type == "spot" else ""
    return (
        f"{offering.provider} {offering.cloud} {offering.region} "
        f"{offering.gpu_type}x{offering.num_gpus}{spot} ${offering.hourly_price:.2f}/h"
    )


Bound = Callable[[str], Mapping[str, Any]]  # what else a create on that provider must set


def candidate(offering: Offering, bound: Bound | None = None) -> Candidate:
    """A ranked offering as apply may try it: its pin, plus what differs by provider (which
    SSH key object, Shadeform's auto_delete), so moving to it changes every such attribute."""
    pin = {**offering.pin, **(bound(offering.provider) if bound is not None else {})}
    return Candidate(
        offering_id=offering.id,
        label=label(offering),
        hourly_price=offering.hourly_price,
        pin=dict(sorted(pin.items())),
        provider=offering.provider,
    )


@dataclass(frozen=True)
class Selection:
    """The chosen offering, why, and the ranked candidates apply may try (the choice first);
    empty when apply may try nothing but the choice."""

    chosen: Offering
    reasons: tuple[str, ...]
    candidates: tuple[Candidate, ...]


def select(ranked: Sequence[Offering], attempts: int, bound: Bound | None = None) -> Selection:
    """The cheapest of a non-empty ranked list; with fallback, the first `attempts` of it."""
    chosen, rest = ranked[0], ranked[1:]
    noun = "candidate" if len(ranked) == 1 else "candidates"
    reasons = [f"cheapest of {len(ranked)} {noun}: {label(chosen)}"]
    if rest:
        shown = "; ".join(label(o) for o in rest[:SHOWN_NEXT])
        more = f" and {len(rest) - SHOWN_NEXT} more" if len(rest) > SHOWN_NEXT else ""
        reasons.append(f"next: {shown}{more}")
    candidates = tuple(candidate(o, bound) for o in ranked[:attempts]) if attempts > 1 and rest else ()
    if candidates:
        reasons.append(fallback_reason(candidates))
    return Selection(chosen=chosen, reasons=tuple(reasons), candidates=candidates)


FALLBACK_REASON_START = "on no capacity, apply tries"


def fallback_reason(candidates: Sequence[Candidate]) -> str:
    return f"{FALLBACK_REASON_START} the next {len(candidates) - 1} in this order"
