"""Capacity failover: what a create becomes when it moves to the next ranked candidate.

Apply only ever moves along the candidates the plan carries (its ranked list, within the
price caps and budget the plan showed), so each attempt is the planned change with another
pin: never an offering the plan did not show.
"""

from __future__ import annotations

import dataclasses

from reconciler.errors import CapacityError, ReconcilerError
from reconciler.model import Candidate, Change

OFFERING_KEY = "offering"


class NoCapacityError(ReconcilerError):
    """Every candidate a create may try was refused for capacity: not an error of the config
    or the API, but a market sold out; a later apply may find room."""


class CapacityRefused(Exception):
    """A create refused for capacity before anything was made: the next candidate may go."""

    def __init__(self, error: CapacityError) -> None:
        super().__init__(str(error))
        self.error = error


class BootFailure(ReconcilerError):
    """A created instance ended in `error` while booting; it is recorded in state."""

    def __init__(self, message: str, id: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.id = id


def attempt_of(change: Change, candidate: Candidate) -> Change:
    """The planned create moved to `candidate`: its provider, pin and price replace the plan's
    choice (the pin carries what differs by provider too, such as which SSH key object)."""
    chosen = change.candidates[0]
    after = {k: v for k, v in (change.after or {}).items() if k not in chosen.pin}
    after.update(candidate.pin)
    offering = after.get(OFFERING_KEY)
    if isinstance(offering, dict):
        after[OFFERING_KEY] = {**offering, "selected": candidate.offering_id}
    return dataclasses.replace(
        change,
        provider=candidate.provider or change.provider,
        after=dict(sorted(after.items())),
        hourly_after=candidate.hourly_price,
    )


def no_capacity(change: Change, refusals: list[str]) -> NoCapacityError:
    total = len(change.candidates)
    tried = f"{len(refusals)} candidates" if len(refusals) == total else f"{len(refusals)} of {total} candidates"
    shown = "; ".join(refusals)
    tried = tried + ":" if refusals else tried
    return NoCapacityError(
        f"{change.address}: no capacity in {tried} {shown}".rstrip(),
        hint="nothing was created; apply again later, raise fallback.max_attempts, or relax the requirements",
    )
