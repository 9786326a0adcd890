"""Warnings for price caps no offering meets: `max_hourly_price` or `max_price_per_gpu_hour`
below every offering that matches an instance's other requirements.

An instance pinned by an earlier plan keeps its offering, so such a cap does not fail the
plan; but `--reselect`, a replacement or a capacity fallback would find nothing. The check
needs the catalogue, so it runs at plan time (never in validate), for the providers whose
catalogue the plan read anyway (no extra API call), and never changes the exit code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from reconciler.model import Address, Kind, Offering, Resource
from reconciler.selection import matches


def price_cap_warnings(
    resources: Mapping[Address, Resource], offerings: Mapping[str, Sequence[Offering]]
) -> list[tuple[Address, str]]:
    """(address, message) for each instance whose caps are below every otherwise matching offering."""
    found: list[tuple[Address, str]] = []
    for address, resource in sorted(resources.items(), key=lambda item: item[0].sort_key()):
        request = resource.offering
        fetched = [p for p in resource.providers if p in offerings]  # several if the provider is chosen
        if address.kind is not Kind.INSTANCE or request is None or not fetched:
            continue
        if request.max_hourly_price is None and request.max_price_per_gpu_hour is None:
            continue
        if address.index not in (None, 0):
            continue  # the members of a counted entry share its requirements: one warning
        uncapped = replace(request, max_hourly_price=None, max_price_per_gpu_hour=None)
        candidates = [o for p in fetched for o in offerings[p] if matches(uncapped, o)]
        if not candidates or any(matches(request, o) for o in candidates):
            continue  # nothing matches at all (the plan says so), or the cap is met
        cheapest = min(candidates, key=lambda o: o.hourly_price)
        caps = []
        if request.max_hourly_price is not None:
            caps.append(f"max_hourly_price {request.max_hourly_price:g}")
        if request.max_price_per_gpu_hour is not None:
            caps.append(f"max_price_per_gpu_hour {request.max_price_per_gpu_hour:g}")
        shown = address.base if address.index is not None else address
        found.append(
            (
                address,
                f"{shown}: {' and '.join(caps)} is below every matching {' or '.join(fetched)} offering "
                f"(the cheapest is ${cheapest.hourly_price:,.2f}/h, ${cheapest.price_per_gpu_hour:,.2f}/GPU-h); "
                "a new selection (--reselect, a replacement, a fallback) would find none",
            )
        )
    return found
