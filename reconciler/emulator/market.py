"""A GPU market for the emulated clouds: machines per offering, a clock-driven schedule, spot reclaims.

Off by default (every offering the catalogue sells is unlimited, as before); switched on per
test or per server with a `MarketConfig`, like faults:

    {"seed": 7,                                   # seeded counts for every offering
     "machines": {"forward:spot_coff_ab12": 0,    # this offering is sold out
                  "shadeform:lambdalabs:*:H100x8": 1,
                  "*": 4},                        # every other offering: 4 machines
     "schedule": [{"offering": "forward:spot_coff_ab12", "after_seconds": 60, "machines": 2},
                  {"offering": "shadeform:datacrunch:FIN-01:A6000:spot", "at": 1767225700,
                   "hourly_price_cents": 30}],
     "reclaims": [{"instance_id": "spot_inst_...", "after_seconds": 30},
                  {"offering": "shadeform:runpod:*:*:spot", "at": 1767225800}]}

Offering keys: `shadeform:<cloud>:<region>:<shade_instance_type>` (plus `:spot` for the spot
market) and `forward:<offering id>`; patterns use shell wildcards. An exact key wins, then
the first matching pattern in the order given, then the seed (1 to 8 machines for what the
catalogue sells, 0 for what it does not), else unlimited. A scheduled change applies from
its moment on (`at`, a world timestamp, or `after_seconds` from when the config is set):
later changes win. Capacity is used by every tenant's instances on the offering from create
until their deletion starts; a create beyond it fails with the API's capacity error, and
`/instances/types` and `/v1/spot/compute/offerings` report the offering unavailable.

A reclaim starts deleting an instance (by id) or every instance on an offering (Shadeform:
spot rentals only) at its moment, with `status_details` saying it was preempted; the instance
then goes `deleting` -> `deleted` -> gone like any other delete.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from reconciler.emulator.records import Api, InstanceRecord

PREEMPTED = "preempted: the provider reclaimed the spot capacity"
SEEDED_MACHINES = (1, 8)


class _Timed(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: float | None = None
    after_seconds: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_moment(self) -> _Timed:
        if (self.at is None) == (self.after_seconds is None):
            raise ValueError("give exactly one of at (a world timestamp) or after_seconds")
        return self

    def moment(self, now: float) -> float:
        return self.at if self.at is not None else now + (self.after_seconds or 0.0)


class ScheduledChange(_Timed):
    """From its moment on, an offering has this many machines and/or this price."""

    offering: str = Field(min_length=1)
    machines: int | None = Field(default=None, ge=0)
    hourly_price_cents: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _changes_something(self) -> ScheduledChange:
        if self.machines is None and self.hourly_price_cents is None:
            raise ValueError("a scheduled change sets machines, hourly_price_cents or both")
        return self


class Reclaim(_Timed):
    """The provider takes back one instance, or every instance on an offering."""

    instance_id: str | None = None
    offering: str | None = None
    reason: str = PREEMPTED

    @model_validator(mode="after")
    def _one_target(self) -> Reclaim:
        if (self.instance_id is None) == (self.offering is None):
            raise ValueError("a reclaim names exactly one of instance_id or offering")
        return self


class MarketConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int | None = None
    machines: dict[str, int] = Field(default_factory=dict)
    schedule: list[ScheduledChange] = Field(default_factory=list)
    reclaims: list[Reclaim] = Field(default_factory=list)

    @model_validator(mode="after")
    def _counts(self) -> MarketConfig:
        negative = [key for key, count in self.machines.items() if count < 0]
        if negative:
            raise ValueError(f"machines must be >= 0 (got a negative count for {', '.join(negative)})")
        return self

    @property
    def enabled(self) -> bool:
        return self.seed is not None or bool(self.machines or self.schedule or self.reclaims)


class MarketSpecError(ValueError):
    """A market configuration that does not parse; the message says where."""


def parse_market(text: str) -> MarketConfig:
    """A MarketConfig from JSON text, or from the file named after an `@`."""
    source = ""
    if text.startswith("@"):
        source = text[1:]
        try:
            text = Path(source).read_text()
        except OSError as exc:
            raise MarketSpecError(f"cannot read market file {source}: {exc.strerror}") from None
    try:
        return MarketConfig.model_validate(json.loads(text))
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(top level)"
            raise MarketSpecError(f"{source}{': ' if source else ''}{where}: {first['msg']}") from None
        raise MarketSpecError(f"{source}{': ' if source else ''}not valid JSON ({exc})") from None


@dataclass(frozen=True)
class Quote:
    """What an offering looks like now: can it be bought, at what price, how many are left."""

    available: bool
    price_cents: int
    remaining: int | None


def instance_offering_key(record: InstanceRecord) -> str:
    """The market key of the offering an instance runs on."""
    if record.api == "forward":
        return f"forward:{record.offering_id}"
    spot = ":spot" if record.rental_type == "spot" else ""
    return f"shadeform:{record.cloud}:{record.region}:{record.instance_type}{spot}"


class Market:
    """The configured market, with every moment resolved against the clock when set."""

    def __init__(self, config: MarketConfig | None = None, now: float = 0.0) -> None:
        self.configure(config or MarketConfig(), now)

    def configure(self, config: MarketConfig, now: float) -> None:
        self.config = config
        self._changes = sorted(
            ((change.moment(now), index, change) for index, change in enumerate(config.schedule)),
            key=lambda item: (item[0], item[1]),
        )
        self._reclaims = [(reclaim.moment(now), reclaim) for reclaim in config.reclaims]
        self._done: set[int] = set()

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def describe(self, now: float) -> dict[str, object]:
        return {
            "config": self.config.model_dump(exclude_none=True),
            "schedule": [
                {"at": at, **change.model_dump(exclude_none=True)} for at, _, change in self._changes
            ],
            "reclaims": [
                {"at": at, "done": i in self._done, **r.model_dump(exclude_none=True)}
                for i, (at, r) in enumerate(self._reclaims)
            ],
        }

    # ------------------------------------------------------------------ capacity and prices

    def machines(self, key: str, sold: bool, at: float) -> int | None:
        """How many machines the offering has at `at`; None when unlimited."""
        count = self._configured(key, sold)
        for moment, _, change in self._changes:
            if moment <= at and change.machines is not None and _matches(change.offering, key):
                count = change.machines
        return count

    def _configured(self, key: str, sold: bool) -> int | None:
        machines = self.config.machines
        if key in machines:
            return machines[key]
        for pattern, count in machines.items():
            if fnmatch.fnmatchcase(key, pattern):
                return count
        if self.config.seed is None:
            return None
        if not sold:
            return 0
        digest = hashlib.sha256(f"{self.config.seed}/{key}".encode()).digest()
        return random.Random(digest).randint(*SEEDED_MACHINES)

    def price_cents(self, key: str, listed_cents: int, at: float) -> int:
        price = listed_cents
        for moment, _, change in self._changes:
            if moment <= at and change.hourly_price_cents is not None and _matches(change.offering, key):
                price = change.hourly_price_cents
        return price

    def quote(self, key: str, sold: bool, listed_cents: int, at: float, used: Counter[str]) -> Quote:
        """The offering as the catalogue lists it (`sold`, `listed_cents`), seen through the market."""
        price = self.price_cents(key, listed_cents, at) if self._changes else listed_cents
        machines = self.machines(key, sold, at) if self.enabled else None
        if machines is None:
            return Quote(sold, price, None)
        remaining = max(0, machines - used[key])
        return Quote(remaining > 0, price, remaining)

    # ------------------------------------------------------------------ reclaims

    def due_reclaims(self, now: float) -> list[tuple[float, Reclaim]]:
        """Reclaims whose moment has come and that were not carried out yet; marks them done."""
        due = []
        for index, (moment, reclaim) in enumerate(self._reclaims):
            if index not in self._done and moment <= now:
                self._done.add(index)
                due.append((moment, reclaim))
        return due


def reclaim_targets(reclaim: Reclaim, instances: list[InstanceRecord], at: float) -> list[InstanceRecord]:
    """The running instances a reclaim takes back at `at`."""
    hit = []
    for record in instances:
        if record.deletion_started(at) is not None or not record.live_at(at):
            continue
        if reclaim.instance_id is not None:
            if record.id == reclaim.instance_id:
                hit.append(record)
        elif reclaim.offering is not None and _matches(reclaim.offering, instance_offering_key(record)):
            if record.api == "forward" or record.rental_type == "spot":
                hit.append(record)
    return hit


def used_machines(instances: list[InstanceRecord], at: float) -> Counter[str]:
    """Machines in use per offering key: instances created and not yet being deleted."""
    used: Counter[str] = Counter()
    for record in instances:
        if record.created_at <= at and record.deletion_started(at) is None:
            used[instance_offering_key(record)] += 1
    return used


def api_instances(instances: list[InstanceRecord], api: Api) -> list[InstanceRecord]:
    return [record for record in instances if record.api == api]


def _matches(pattern: str, key: str) -> bool:
    return pattern == key or fnmatch.fnmatchcase(key, pattern)
