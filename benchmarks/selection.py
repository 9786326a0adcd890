"""Scenario 5, selection: plan instances given by requirements over the full catalogue of both
providers. Half choose their provider too (`offering.providers: [shadeform, forward]`), so
each of them ranks both catalogues together. Ours fetches each provider's catalogue once per
plan and ranks every instance against it; the baseline asks the catalogue once per instance
and provider it may land on (ten at a time), as a tool that resolves each instance's offering
on its own would. Same planner, same emulator, same latency."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from baselines import TERRAFORM_PARALLELISM
from fleet import close_providers, embedded_providers, write_config
from scenarios import Row, Settings, measure

from reconciler import engine
from reconciler.config import load_config
from reconciler.emulator.embedded import EmbeddedCloud
from reconciler.model import Action, Offering, Plan
from reconciler.planner import LiveView, PlanOptions, plan_changes
from reconciler.state.model import StateDocument

SELECTION_CALLS_TARGET = 8
REQUIREMENTS = {"gpu_type": ["A100", "H100", "L40S"], "num_gpus": 1, "max_price_per_gpu_hour": 5.0}


def selection_document(count: int) -> dict[str, Any]:
    """`count` instances by requirements: half choosing among both providers' catalogues (with
    fallback), a quarter on each provider, every one ranking many offerings."""
    half, quarter = count // 2, count // 4
    anywhere = {**REQUIREMENTS, "providers": ["shadeform", "forward"]}
    return {
        "providers": {"shadeform": {"endpoint": "embedded"}, "forward": {"endpoint": "embedded"}},
        "instances": [
            {"name": "any", "count": half, "offering": anywhere, "fallback": {"max_attempts": 3}},
            {"name": "sf", "provider": "shadeform", "count": quarter, "offering": REQUIREMENTS},
            {"name": "fw", "provider": "forward", "count": count - half - quarter, "offering": REQUIREMENTS},
        ],
    }


async def _catalogue_per_instance(providers: dict[str, Any], config: Any) -> dict[str, list[Offering]]:
    """The baseline's reads: one catalogue query per instance, ten in flight."""
    slots = asyncio.Semaphore(TERRAFORM_PARALLELISM)
    seen: dict[str, list[Offering]] = {}

    async def one(provider: str) -> None:
        async with slots:
            seen[provider] = await providers[provider].offerings()

    await asyncio.gather(*(one(p) for res in config.resources.values() for p in res.providers))
    return seen


async def plan_selection(workdir: Path, settings: Settings) -> list[Row]:
    count = max(settings.plan_sizes[:2])  # 1,000 in the full run, 100 in the quick one
    config = load_config(write_config(workdir / f"selection-{count}", selection_document(count)))
    with EmbeddedCloud(boot_seconds=0.0) as cloud:
        ours = embedded_providers(cloud, config)
        theirs = embedded_providers(cloud, config)
        try:
            cloud.runtime.latency_seconds = settings.latency
            ours_run = await measure(cloud, lambda: engine.make_plan(ours, config, StateDocument(), PlanOptions()))

            async def baseline() -> tuple[Plan, dict[str, list[Offering]]]:
                offerings = await _catalogue_per_instance(theirs, config)
                return plan_changes(config.resources, StateDocument(), LiveView(offerings=offerings)), offerings

            baseline_run = await measure(cloud, baseline)
        finally:
            cloud.runtime.latency_seconds = 0.0
            await close_providers(ours)
            await close_providers(theirs)
    plan = ours_run.result.plan
    baseline_plan, offerings = baseline_run.result
    chosen = [c for c in plan.changes if c.action is Action.CREATE and c.reasons]
    if len(chosen) != count or baseline_plan.count(Action.CREATE) != count:
        raise RuntimeError(f"selection: expected {count} creates with a choice, got {len(chosen)}")
    catalogue = sum(len(v) for v in offerings.values())
    return [
        Row.against_baseline(
            "selection",
            f"plan {count:,} instances by requirements over {catalogue:,} offerings",
            ours_run,
            baseline_run,
            f"calls <= {SELECTION_CALLS_TARGET}",
            ours_run.calls <= SELECTION_CALLS_TARGET,
            {
                "size": count,
                "catalogue": catalogue,
                "with_fallbacks": sum(1 for c in plan.changes if c.candidates),
                "landed": {p: sum(1 for c in chosen if c.provider == p) for p in ("shadeform", "forward")},
            },
        )
    ]
