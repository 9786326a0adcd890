"""The benchmark scenarios of issue 7, each measured side by side with its baseline in one run.

1. plan: N resources already in sync; reconciler's list-based refresh against one GET per
   resource at parallelism 10; same planner, same emulator, same API latency.
2. apply: independent instances under API latency, boot time and a rate limit; against the
   critical-path bound and a parallelism-10 Terraform-style apply.
3. chains: key -> volume -> instance chains, same comparisons.
4. footprint: a plan of many resources in a separate process: CPU seconds and peak RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from baselines import TERRAFORM_PARALLELISM, SlotHoldingApply, refresh_per_resource
from fleet import (
    UNTHROTTLED_RATE,
    build_in_sync,
    chains_document,
    close_providers,
    embedded_providers,
    fleet_document,
    instances_document,
    write_config,
)
from pydantic import BaseModel, Field
from served import ServedWorld

from reconciler import engine
from reconciler.applier import ApplyOptions
from reconciler.config import Config, load_config
from reconciler.emulator.embedded import EmbeddedCloud
from reconciler.model import Action, Plan
from reconciler.planner import PlanOptions, plan_changes
from reconciler.providers.base import DEFAULT_RATE_LIMIT
from reconciler.state.local import LocalStateBackend
from reconciler.state.model import StateDocument

PLAN_CALLS_TARGET = 6
PLAN_SPEEDUP_TARGET = 20.0
PLAN_SPEEDUP_AT = 1000
APPLY_BOUND_TARGET = 1.25
FOOTPRINT_CPU_BUDGET = 5.0
FOOTPRINT_RSS_BUDGET_MB = 300.0
WORKER = Path(__file__).with_name("plan_worker.py")
T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """Sizes and the modelled API: latency per call, boot time, rate limit per API key."""

    plan_sizes: tuple[int, ...]
    apply_instances: int
    chains: int
    footprint_size: int
    latency: float = 0.1
    boot_seconds: float = 5.0
    rate_limit: float = 20.0
    poll_interval: float = ApplyOptions().poll_interval


FULL = Settings(plan_sizes=(100, 1000, 10000), apply_instances=200, chains=50, footprint_size=10000)
QUICK = Settings(
    plan_sizes=(100,), apply_instances=20, chains=10, footprint_size=100, boot_seconds=1.0, poll_interval=0.5
)


class Row(BaseModel):
    """One line of the table: our figure against a reference (a baseline, a bound or a budget)."""

    scenario: str
    label: str
    unit: str
    ours: float
    reference: float
    reference_kind: Literal["baseline", "bound", "budget"]
    calls_ours: int | None = None
    calls_reference: int | None = None
    target: str = ""
    met: bool | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def against_baseline(
        cls,
        scenario: str,
        label: str,
        ours: Measured[Any],
        baseline: Measured[Any],
        target: str,
        met: bool,
        details: dict[str, Any],
    ) -> Row:
        """A wall-time row of ours against its baseline, with both sides' API calls by operation."""
        return cls(
            scenario=scenario,
            label=label,
            unit="s",
            ours=ours.wall,
            reference=baseline.wall,
            reference_kind="baseline",
            calls_ours=ours.calls,
            calls_reference=baseline.calls,
            target=target,
            met=met,
            details={**details, "requests_ours": ours.requests, "requests_baseline": baseline.requests},
        )

    @property
    def ratio(self) -> float:
        """How many times faster than the baseline, or what fraction of the bound or budget."""
        if self.reference_kind == "baseline":
            return self.reference / self.ours
        return self.ours / self.reference


@dataclass
class Fleet:
    config: Config
    cloud: EmbeddedCloud
    doc: StateDocument


class Fleets:
    """In-sync fleets built once per size and shared by the scenarios that read them."""

    def __init__(self, workdir: Path, stack: contextlib.ExitStack) -> None:
        self.workdir = workdir
        self._stack = stack
        self._built: dict[int, Fleet] = {}

    async def in_sync(self, size: int) -> Fleet:
        if size not in self._built:
            config = load_config(write_config(self.workdir / f"fleet-{size}", fleet_document(size)))
            cloud = self._stack.enter_context(EmbeddedCloud(boot_seconds=0.0))
            doc = await build_in_sync(config, cloud)
            self._built[size] = Fleet(config, cloud, doc)
        return self._built[size]


def requests_of(cloud: EmbeddedCloud) -> dict[str, int]:
    """Requests the emulator received (refused ones included) since its counters were reset, by operation."""
    return dict(cloud.runtime.traffic.requests)


@dataclass(frozen=True)
class Measured(Generic[T]):
    """What one side of a comparison returned, its wall time and the requests it sent."""

    result: T
    wall: float
    requests: dict[str, int]

    @property
    def calls(self) -> int:
        return sum(self.requests.values())


async def measure(cloud: EmbeddedCloud, work: Callable[[], Awaitable[T]]) -> Measured[T]:
    """Run `work` on the emulator with its request counters reset, timing it."""
    cloud.runtime.traffic.reset()
    started = time.perf_counter()
    result = await work()
    wall = time.perf_counter() - started
    return Measured(result, wall, requests_of(cloud))


def _all_noop(plan: Plan, size: int, who: str) -> None:
    if len(plan.changes) != size or plan.has_changes:
        counts = Counter(c.action.value for c in plan.changes)
        raise RuntimeError(f"{who}: expected {size} in-sync resources, planned {dict(counts)}")


async def plan_in_sync(fleets: Fleets, size: int, settings: Settings) -> Row:
    """Scenario 1 at one size."""
    fleet = await fleets.in_sync(size)
    runtime = fleet.cloud.runtime
    runtime.latency_seconds = settings.latency
    warm = embedded_providers(fleet.cloud, fleet.config)
    ours = embedded_providers(fleet.cloud, fleet.config)
    # The baseline is paced only by its parallelism, never by the client's rate limit.
    theirs = embedded_providers(fleet.cloud, fleet.config, rate_limit=UNTHROTTLED_RATE)
    try:
        # One unmeasured plan first (fresh clients after it, so no cache is carried over).
        await engine.make_plan(warm, fleet.config, fleet.doc, PlanOptions())
        ours_run = await measure(
            fleet.cloud, lambda: engine.make_plan(ours, fleet.config, fleet.doc, PlanOptions())
        )
        _all_noop(ours_run.result.plan, size, "reconciler")

        async def baseline() -> Plan:
            live = await refresh_per_resource(theirs, fleet.config, fleet.doc)
            return plan_changes(fleet.config.resources, fleet.doc, live, PlanOptions())

        baseline_run = await measure(fleet.cloud, baseline)
        _all_noop(baseline_run.result, size, "baseline")
    finally:
        runtime.latency_seconds = 0.0
        for providers in (warm, ours, theirs):
            await close_providers(providers)
    speedup = baseline_run.wall / ours_run.wall
    target = f"calls <= {PLAN_CALLS_TARGET}"
    met = ours_run.calls <= PLAN_CALLS_TARGET
    if size == PLAN_SPEEDUP_AT:
        target += f", >= {PLAN_SPEEDUP_TARGET:g}x"
        met = met and speedup >= PLAN_SPEEDUP_TARGET
    return Row.against_baseline(
        "plan",
        f"plan {size:,} in-sync resources",
        ours_run,
        baseline_run,
        target,
        met,
        {
            "size": size,
            "noop": ours_run.result.plan.count(Action.NOOP),
            "baseline_noop": baseline_run.result.count(Action.NOOP),
            # What the baseline would take if only latency cost time: one round trip per ten reads.
            "baseline_latency_floor": math.ceil(size / TERRAFORM_PARALLELISM) * settings.latency,
        },
    )


def critical_path_bound(creates: int, depth: int, settings: Settings) -> float:
    """The least time any apply can take under the API's limits.

    The last create cannot be sent before the rate limit admits it (a burst of one
    second's worth, then `rate_limit` per second) nor before the creates it depends on
    have answered; it is answered one latency later, the instance then boots, and one
    final list call (one more latency) sees it active.
    """
    burst = max(1.0, settings.rate_limit)
    last_send = max(max(0.0, creates - burst) / settings.rate_limit, (depth - 1) * settings.latency)
    return last_send + settings.latency + settings.boot_seconds + settings.latency


def _modelled_cloud(settings: Settings) -> EmbeddedCloud:
    return EmbeddedCloud(
        boot_seconds=settings.boot_seconds,
        latency_seconds=settings.latency,
        rate_limit=settings.rate_limit,
    )


def _check_created(cloud: EmbeddedCloud, expected: Mapping[str, int], who: str) -> dict[str, int]:
    """Exactly the planned resources exist, once each, every instance active."""
    entries = cloud.world.ledger(api="shadeform")
    made = Counter(entry.kind for entry in entries)
    statuses = Counter(entry.status for entry in entries if entry.kind == "instances")
    if dict(made) != dict(expected) or statuses.get("active", 0) != expected.get("instances", 0):
        raise RuntimeError(
            f"{who}: expected {dict(expected)} active, the cloud holds {dict(made)} {dict(statuses)}"
        )
    return dict(made)


async def apply_versus(
    name: str, label: str, config: Config, workdir: Path, settings: Settings, depth: int
) -> list[Row]:
    """Scenarios 2 and 3: one plan, applied by reconciler and by the baseline, each on a fresh cloud."""
    backend = LocalStateBackend(workdir / "state" / f"{name}.json")
    with backend.lock("apply"):
        doc = backend.read()
        with EmbeddedCloud(boot_seconds=settings.boot_seconds) as planning:
            providers = embedded_providers(planning, config)
            try:
                plan = (await engine.make_plan(providers, config, doc, PlanOptions())).plan
            finally:
                await close_providers(providers)
        expected = Counter(c.address.kind.value for c in plan.changes if c.action is Action.CREATE)
        creates = sum(expected.values())

        with _modelled_cloud(settings) as cloud:
            # Our client paced as against a real API (the in-process emulator is unpaced by default).
            providers = embedded_providers(cloud, config, rate_limit=DEFAULT_RATE_LIMIT)
            serial = doc.serial
            try:
                started = time.perf_counter()
                options = ApplyOptions(poll_interval=settings.poll_interval)
                result = await engine.apply_plan(plan, doc, backend, providers, options)
                ours_wall = time.perf_counter() - started
            finally:
                await close_providers(providers)
            if not result.ok:
                raise RuntimeError(f"reconciler apply failed: {result.failed[:3]} {result.not_started[:3]}")
            _check_created(cloud, expected, "reconciler")
            ours_requests = requests_of(cloud)
            state_writes = result.state.serial - serial

    with _modelled_cloud(settings) as cloud:
        providers = embedded_providers(cloud, config)
        try:
            started = time.perf_counter()
            await SlotHoldingApply(providers, doc.lineage, settings.poll_interval).run(plan.changes)
            baseline_wall = time.perf_counter() - started
        finally:
            await close_providers(providers)
        _check_created(cloud, expected, "baseline")
        baseline_requests = requests_of(cloud)

    bound = critical_path_bound(creates, depth, settings)
    details = {
        "creates": creates,
        "created": dict(expected),
        "state_writes": state_writes,
        "requests_ours": ours_requests,
        "requests_baseline": baseline_requests,
    }
    calls_ours = sum(ours_requests.values())
    return [
        Row(
            scenario=name,
            label=f"{label} vs critical-path bound",
            unit="s",
            ours=ours_wall,
            reference=bound,
            reference_kind="bound",
            calls_ours=calls_ours,
            target=f"<= {APPLY_BOUND_TARGET:g}x bound",
            met=ours_wall <= APPLY_BOUND_TARGET * bound,
            details=details,
        ),
        Row(
            scenario=name,
            label=f"{label} vs parallelism-10 apply",
            unit="s",
            ours=ours_wall,
            reference=baseline_wall,
            reference_kind="baseline",
            calls_ours=calls_ours,
            calls_reference=sum(baseline_requests.values()),
            details=details,
        ),
    ]


async def apply_instances(workdir: Path, settings: Settings) -> list[Row]:
    count = settings.apply_instances
    config = load_config(write_config(workdir / "apply", instances_document(count)))
    return await apply_versus("apply", f"apply {count} instances", config, workdir, settings, depth=1)


async def apply_chains(workdir: Path, settings: Settings) -> list[Row]:
    chains = settings.chains
    config = load_config(write_config(workdir / "chains", chains_document(chains)))
    label = f"apply {chains} chains key->volume->instance"
    return await apply_versus("chains", label, config, workdir, settings, depth=3)


async def footprint(fleets: Fleets, size: int, workdir: Path) -> list[Row]:
    """Scenario 4: `plan_worker.py` in its own process against the fleet's world served over HTTP."""
    fleet = await fleets.in_sync(size)
    here = workdir / f"footprint-{size}"
    state_file = here / "state.json"
    LocalStateBackend(state_file).write(fleet.doc)
    with ServedWorld(fleet.cloud.world) as served:
        config_dir = write_config(here / "config", fleet_document(size, endpoint=served.url("shadeform")))
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            str(config_dir),
            str(state_file),
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "SHADEFORM_API_KEY": engine.EMBEDDED_API_KEY},
        )
        out, _ = await worker.communicate()
        requests = dict(served.runtime.traffic.requests)
    if worker.returncode != 0:
        raise RuntimeError(f"plan worker exited with {worker.returncode}")
    measured = json.loads(out)
    if measured["resources"] != size or measured["noop"] != size:
        raise RuntimeError(f"plan worker: expected {size} in-sync resources, got {measured}")
    calls = sum(requests.values())
    details = {**measured, "requests": requests}
    return [
        Row(
            scenario="footprint",
            label=f"plan {size:,} resources: CPU",
            unit="CPU s",
            ours=measured["cpu_seconds"],
            reference=FOOTPRINT_CPU_BUDGET,
            reference_kind="budget",
            calls_ours=calls,
            target=f"< {FOOTPRINT_CPU_BUDGET:g} CPU s",
            met=measured["cpu_seconds"] < FOOTPRINT_CPU_BUDGET,
            details=details,
        ),
        Row(
            scenario="footprint",
            label=f"plan {size:,} resources: peak RSS",
            unit="MB",
            ours=measured["peak_rss_mb"],
            reference=FOOTPRINT_RSS_BUDGET_MB,
            reference_kind="budget",
            calls_ours=calls,
            target=f"< {FOOTPRINT_RSS_BUDGET_MB:g} MB",
            met=measured["peak_rss_mb"] < FOOTPRINT_RSS_BUDGET_MB,
            details=details,
        ),
    ]
