"""The flow behind every command: open state and providers, refresh, settle, plan, apply.

This is the only module that puts the pieces together; the CLI calls one function here per
command and the planner stays pure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from reconciler.applier import Applier, ApplyObserver, ApplyOptions, ApplyResult
from reconciler.budget import check_budget
from reconciler.config import Config
from reconciler.cost_report import CostReport, cost_report
from reconciler.errors import ReconcilerError, StateError
from reconciler.foreign_objects import ALLOW_FLAG, foreign_summary
from reconciler.model import (
    GONE_STATUSES,
    Address,
    Kind,
    LiveResource,
    Offering,
    OfferingRequest,
    Output,
    Plan,
)
from reconciler.outputs import outputs_after_apply, plan_outputs
from reconciler.planner import (
    LiveView,
    PlanOptions,
    check_addresses,
    imported_resource,
    plan_changes,
    providers_needing_offerings,
)
from reconciler.planner_pending import resolve_pending
from reconciler.planner_refresh import refresh_computed, refresh_state
from reconciler.price_caps import price_cap_warnings
from reconciler.provider_spec import provider_names
from reconciler.providers import make_provider
from reconciler.providers.base import Provider, ProviderSettings
from reconciler.selection import matches
from reconciler.state.backend import StateBackend
from reconciler.state.ledger import StateLedger
from reconciler.state.model import StateDocument
from reconciler.timestamps import parse_timestamp
from reconciler.workspace import Workspace

EMBEDDED_API_KEY = "embedded-sandbox"
PENDING_SETTLE_POLL = 1.0
T = TypeVar("T")


def providers_in_use(config: Config, doc: StateDocument) -> dict[str, ProviderSettings]:
    names = {p for r in config.resources.values() for p in r.providers}
    names |= {r.provider for r in doc.resources.values()}
    names |= {p.provider for p in doc.pending} | {d.provider for d in doc.deposed}
    settings: dict[str, ProviderSettings] = {}
    for name in sorted(names):
        settings[name] = config.providers.get(name) or ProviderSettings(name=name)
    return settings


def embedded_options(environ: Mapping[str, str], configured: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The embedded emulator's knobs: the config's `emulator:` block, then RECONCILER_EMULATOR_*.

    BOOT_SECONDS, DELETE_SECONDS, LIST_LAG_SECONDS, LATENCY_MS, FAULTS (the emulator's fault
    spec), SEED and MARKET (the capacity market as JSON or @file); tests and demos use them to make the in-process cloud misbehave.
    """
    numbers = {
        "BOOT_SECONDS": "boot_seconds",
        "DELETE_SECONDS": "delete_seconds",
        "LIST_LAG_SECONDS": "list_lag_seconds",
    }
    block = dict(configured or {})
    options: dict[str, Any] = {k: block[k] for k in numbers.values() if k in block}
    if "latency_ms" in block:
        options["latency_seconds"] = block["latency_ms"] / 1000
    if "seed" in block:
        options["seed"] = block["seed"]
    if "faults" in block:
        environ = {"RECONCILER_EMULATOR_FAULTS": block["faults"], **environ}
    for suffix, name in numbers.items():
        raw = environ.get(f"RECONCILER_EMULATOR_{suffix}")
        if raw:
            options[name] = _env_number(f"RECONCILER_EMULATOR_{suffix}", raw)
    if raw := environ.get("RECONCILER_EMULATOR_LATENCY_MS"):
        options["latency_seconds"] = _env_number("RECONCILER_EMULATOR_LATENCY_MS", raw) / 1000
    if raw := environ.get("RECONCILER_EMULATOR_SEED"):
        options["seed"] = int(_env_number("RECONCILER_EMULATOR_SEED", raw))
    if raw := environ.get("RECONCILER_EMULATOR_MARKET"):
        from reconciler.emulator.market import MarketSpecError, parse_market

        try:
            options["market"] = parse_market(raw)
        except MarketSpecError as exc:
            raise ReconcilerError(f"RECONCILER_EMULATOR_MARKET: {exc}") from None
    if raw := environ.get("RECONCILER_EMULATOR_FAULTS"):
        from reconciler.emulator.faults import FaultConfig, FaultSpecError

        try:
            options["faults"] = FaultConfig.parse(raw, options.get("seed", 0))
        except FaultSpecError as exc:
            raise ReconcilerError(f"RECONCILER_EMULATOR_FAULTS: {exc}") from None
    return options


def _env_number(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ReconcilerError(f"environment variable {name}={raw!r} is not a number") from None


@contextlib.asynccontextmanager
async def open_providers(
    settings: Mapping[str, ProviderSettings],
    sandbox: Path,
    environ: Mapping[str, str] | None = None,
    emulator: Mapping[str, Any] | None = None,
) -> AsyncIterator[dict[str, Provider]]:
    """Clients for each provider; embedded ones share one in-process emulator world."""
    providers: dict[str, Provider] = {}
    cloud_cm: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    knobs: dict[str, Any] = {}
    if any(s.embedded for s in settings.values()):
        from reconciler.emulator.embedded import EmbeddedCloud

        knobs = embedded_options(os.environ if environ is None else environ, emulator)
        cloud_cm = EmbeddedCloud(sandbox, **knobs)
    with cloud_cm as cloud:
        try:
            for name, s in settings.items():
                transport: httpx.AsyncBaseTransport | None = None
                if s.embedded:
                    assert cloud is not None
                    transport = cloud.transport(name)  # type: ignore[attr-defined]
                    lag = float(knobs.get("list_lag_seconds", 0.0))
                    s = replace(
                        s,
                        api_key=s.api_key or EMBEDDED_API_KEY,
                        options={**s.options, "base_url": cloud.base_url(name)},  # type: ignore[attr-defined]
                        # Lists the emulator is told to lag are waited out like a real cache.
                        list_consistency_seconds=s.list_consistency_seconds or (lag + 0.5 if lag else 0.0),
                    )
                providers[name] = make_provider(s, transport)
            yield providers
        finally:
            for provider in providers.values():
                await provider.aclose()


async def refresh(
    providers: Mapping[str, Provider],
    config: Config,
    doc: StateDocument,
    *,
    with_offerings: bool = True,
    reselect: bool = False,
) -> LiveView:
    """One list call per provider and kind in use (never one per resource), concurrently."""
    wanted: set[tuple[str, Kind]] = set()
    for address, res in config.resources.items():
        wanted.update((provider, address.kind) for provider in res.providers)
    for key, held in doc.resources.items():
        wanted.add((held.provider, Address.parse(key).kind))
    for op in doc.pending:
        wanted.add((op.provider, Kind(op.kind)))
    for dep in doc.deposed:
        wanted.add((dep.provider, Address.parse(dep.address).kind))
    wanted = {(p, k) for p, k in wanted if p in providers}
    instance_providers, volume_providers = (
        providers_needing_offerings(config.resources, doc, reselect) if with_offerings else (set(), set())
    )

    async def listing(provider: str, kind: Kind) -> tuple[tuple[str, Kind], dict[str, LiveResource]]:
        items = await providers[provider].list(kind)
        return (provider, kind), {r.id: r for r in items}

    async def offerings(provider: str) -> tuple[str, list[Offering]]:
        return provider, await providers[provider].offerings()

    async def volume_prices(provider: str) -> dict[tuple[str, str, str | None], float]:
        prices: dict[tuple[str, str, str | None], float] = {}
        for offer in await providers[provider].volume_offerings():
            prices[(provider, offer.region, offer.cloud)] = offer.price_per_gb_hour
            prices.setdefault((provider, offer.region, None), offer.price_per_gb_hour)
        return prices

    lists = [listing(p, k) for p, k in sorted(wanted, key=lambda x: (x[0], x[1].value))]
    offer_calls = [offerings(p) for p in sorted(instance_providers) if p in providers]
    price_calls = [volume_prices(p) for p in sorted(volume_providers) if p in providers]
    # Start every call at once; the groups only differ in how their answers are kept.
    list_tasks = [asyncio.create_task(c) for c in lists]
    offer_tasks = [asyncio.create_task(c) for c in offer_calls]
    price_tasks = [asyncio.create_task(c) for c in price_calls]
    every: list[asyncio.Task[Any]] = [*list_tasks, *offer_tasks, *price_tasks]
    try:
        await asyncio.gather(*every)
    except BaseException:
        for task in every:
            task.cancel()
        raise
    listed = dict(t.result() for t in list_tasks)
    offered = dict(t.result() for t in offer_tasks)
    prices: dict[tuple[str, str, str | None], float] = {}
    for task in price_tasks:
        prices.update(task.result())
    updatable = {(p, k): providers[p].updatable(k) for p in providers for k in Kind}
    return LiveView(resources=listed, offerings=offered, volume_prices=prices, updatable=updatable)


async def read_unlisted(
    providers: Mapping[str, Provider], doc: StateDocument, live: LiveView, now: datetime
) -> tuple[LiveView, tuple[str, ...]]:
    """Tracked objects that a list which may lag does not show, read one by one.

    A list served from a cache misses what was created moments ago; taken at its word,
    the plan would create those objects again. What a fresh read finds joins the view;
    what it cannot find although it was created inside the provider's consistency
    window cannot be judged yet and is returned as a reason to wait.

    A tracked instance missing from any list is read too: an API that keeps a deleted
    instance readable by id (Forward) says there why it went, so a spot reclaim reads as
    one rather than as a delete outside reconciler.
    """
    missing: list[tuple[str, str, Kind, str, str | None]] = []
    tracked = [(key, res) for key, res in doc.resources.items()] + [(d.address, d) for d in doc.deposed]
    for address, res in tracked:
        kind = Address.parse(address).kind
        provider = providers.get(res.provider)
        if provider is None or (provider.list_consistency_seconds <= 0 and kind is not Kind.INSTANCE):
            continue
        if live.refreshed(res.provider, kind) and live.lookup(res.provider, kind, res.id) is None:
            missing.append((address, res.provider, kind, res.id, res.created_at))
    if not missing:
        return live, ()
    seen = await asyncio.gather(*(providers[p].get(kind, id) for _, p, kind, id, _ in missing))
    resources = {key: dict(items) for key, items in live.resources.items()}
    too_young: list[str] = []
    for (address, provider_name, kind, id, created_at), found in zip(missing, seen, strict=True):
        if found is not None:
            resources[(provider_name, kind)][id] = found
            continue
        window = providers[provider_name].list_consistency_seconds
        created = parse_timestamp(created_at)
        if created is not None and (now - created).total_seconds() < window:
            too_young.append(
                f"{address}: {id}, created {(now - created).total_seconds():.1f}s ago, "
                f"is not listed by {provider_name} yet (its lists may lag {window:g}s)"
            )
    return replace(live, resources=resources), tuple(too_young)


async def settle_pending(
    providers: Mapping[str, Provider],
    config: Config,
    doc: StateDocument,
    live: LiveView,
    *,
    max_wait: float = 120.0,
) -> tuple[StateDocument, LiveView, tuple[str, ...]]:
    """Resolve pending records and find tracked objects lagging lists hide; while either
    cannot be judged yet, wait and look again."""
    consistency = {name: p.list_consistency_seconds for name, p in providers.items()}
    deadline = time.monotonic() + max_wait
    while True:
        now = datetime.now(UTC)
        live, unlisted = await read_unlisted(providers, doc, live, now)
        resolution = resolve_pending(doc, live, now, consistency)
        waiting = resolution.unresolved + unlisted
        if not waiting:
            return resolution.state, live, resolution.notes
        if time.monotonic() >= deadline:
            raise StateError(
                "what an earlier run left could not be settled: " + "; ".join(waiting),
                hint="run the command again in a minute",
            )
        await asyncio.sleep(PENDING_SETTLE_POLL)
        # Only the resource lists can lag; the catalogue fetched first still serves the plan.
        fresh = await refresh(providers, config, doc, with_offerings=False)
        live = replace(fresh, offerings=live.offerings, volume_prices=live.volume_prices)


@dataclass
class PlanOutcome:
    plan: Plan
    state: StateDocument  # the state the plan was made from, pending operations settled
    settled: tuple[str, ...]
    warnings: tuple[tuple[Address, str], ...] = ()  # price caps no offering meets


async def make_plan(
    providers: Mapping[str, Provider],
    config: Config,
    doc: StateDocument,
    options: PlanOptions,
    *,
    refresh_live: bool = True,
) -> PlanOutcome:
    check_addresses(config.resources, doc, options)
    if options.now is None:
        options = replace(options, now=datetime.now(UTC))
    if refresh_live:
        live = await refresh(providers, config, doc, reselect=options.reselect)
        doc, live, settled = await settle_pending(providers, config, doc, live)
        doc = refresh_computed(doc, live)
    else:
        if doc.pending:
            raise StateError(
                "state has pending operations from an interrupted run; they need a refresh to settle",
                hint="run without --refresh=false",
            )
        instance_providers, volume_providers = providers_needing_offerings(
            config.resources, doc, options.reselect
        )
        live = LiveView(
            offerings={p: await providers[p].offerings() for p in instance_providers if p in providers},
            updatable={(p, k): providers[p].updatable(k) for p in providers for k in Kind},
        )
        settled = ()
    plan = check_budget(plan_changes(config.resources, doc, live, options), config.policy)
    planned_outputs = plan_outputs(config.outputs, plan.changes, config.resources, doc, live, options.destroy)
    plan = replace(plan, outputs=planned_outputs)
    if settled:
        plan = replace(plan, notes=settled + plan.notes)
    warnings = tuple(price_cap_warnings(config.resources, live.offerings))
    return PlanOutcome(plan=plan, state=doc, settled=settled, warnings=warnings)


async def apply_plan(
    plan: Plan,
    doc: StateDocument,
    backend: StateBackend,
    providers: Mapping[str, Provider],
    options: ApplyOptions,
    observer: ApplyObserver | None = None,
    stop: asyncio.Event | None = None,
    outputs: Mapping[str, Output] | None = None,
) -> ApplyResult:
    """Run a plan's changes against the state it was made from; returns the state reached,
    with the outputs' values recorded (those whose references are known by then)."""
    if plan.state_lineage != doc.lineage:
        raise StateError(
            f"the plan was made from state lineage {plan.state_lineage}, but the state is {doc.lineage}"
        )
    if not plan.has_changes and backend.exists() and _same_but_computed(backend.read(), doc):
        # Nothing to do and nothing new to record: a write would only bump the serial and
        # make every other saved plan of this state stale.
        return ApplyResult(state=doc)
    ledger = StateLedger(backend, doc)
    result = await Applier(plan.changes, ledger, providers, options, observer, stop).run()
    await ledger.record_outputs(outputs_after_apply(outputs or {}, result.state))
    return result


def _same_but_computed(stored: StateDocument, doc: StateDocument) -> bool:
    """Equal apart from computed attributes (a cost estimate ticks on every read)."""
    if stored.model_copy(update={"resources": {}}) != doc.model_copy(update={"resources": {}}):
        return False
    if stored.resources.keys() != doc.resources.keys():
        return False
    return all(
        stored.resources[k].model_copy(update={"computed": {}}) == r.model_copy(update={"computed": {}})
        for k, r in doc.resources.items()
    )


def check_foreign_objects(plan: Plan, allowed: bool) -> None:
    """Refuse to create what another state already runs, unless the user said it is wanted."""
    if plan.foreign and not allowed:
        addresses = ", ".join(dict.fromkeys(f.address for f in plan.foreign))
        raise StateError(
            f"apply refused: {foreign_summary(plan.foreign)}: {addresses}",
            hint="find this configuration's state and point -f, --state or the backend at it; if a second "
            f"copy is really wanted, apply again with {ALLOW_FLAG}. Nothing was changed",
        )


def check_saved_plan(plan: Plan, doc: StateDocument) -> None:
    """A saved plan applies only to the exact state it was made from.

    A plan made before any state existed (the first plan of a new configuration) applies
    while there still is none: that new state takes the plan's lineage.
    """
    never_written = doc.serial == 0 and not (doc.resources or doc.pending or doc.deposed)
    if never_written and plan.state_serial == 0:
        doc.lineage = plan.state_lineage
    if plan.state_lineage != doc.lineage:
        raise StateError(
            f"the saved plan belongs to another state (lineage {plan.state_lineage}, state has {doc.lineage})",
            hint="make a new plan against this state",
        )
    if plan.state_serial != doc.serial:
        raise StateError(
            f"the saved plan is stale: made from state serial {plan.state_serial}, state is now at {doc.serial}",
            hint="the state changed since the plan was made; run plan again",
        )


async def recheck_saved_plan(
    providers: Mapping[str, Provider],
    config: Config,
    doc: StateDocument,
    saved: Plan,
    options: PlanOptions,
    allow_foreign_objects: bool = False,
) -> StateDocument:
    """The state a saved plan runs against, refreshed and settled; refused when the plan is
    stale (the state moved on, or an interrupted run's operations were settled since)."""
    check_saved_plan(saved, doc)
    outcome = await make_plan(providers, config, doc, options, refresh_live=True)
    if outcome.settled:
        raise StateError(
            "the saved plan is stale: operations of an interrupted run were settled since it "
            "was made (" + "; ".join(outcome.settled) + ")",
            hint="run plan again; nothing was changed",
        )
    check_foreign_objects(outcome.plan, allow_foreign_objects)
    return outcome.state


async def with_providers(
    workspace: Workspace, doc: StateDocument, work: Callable[[dict[str, Provider]], Awaitable[T]]
) -> T:
    """Run `work` with clients for every provider the configuration and the state use."""
    config = workspace.config
    async with open_providers(providers_in_use(config, doc), workspace.sandbox, emulator=config.emulator) as providers:
        return await work(providers)


async def refresh_only(
    providers: Mapping[str, Provider], config: Config, doc: StateDocument
) -> tuple[StateDocument, tuple[str, ...]]:
    """State brought up to date with live (pending operations settled first); no resource changes."""
    live = await refresh(providers, config, doc, with_offerings=False)
    doc, live, settled = await settle_pending(providers, config, doc, live)
    refreshed, drift = refresh_state(doc, live)
    return refreshed, settled + drift


async def cost_now(providers: Mapping[str, Provider], config: Config, doc: StateDocument) -> CostReport:
    """Burn rate and spend so far of what state tracks, from one refresh (no catalogue)."""
    live = await refresh(providers, config, doc, with_offerings=False)
    return cost_report(doc, live, datetime.now(UTC))


async def import_resource(
    providers: Mapping[str, Provider], config: Config, doc: StateDocument, address: Address, id: str
) -> StateDocument:
    """Adopt an existing object into state under an address the configuration declares."""
    res = config.resources.get(address)
    if res is None:
        raise ReconcilerError(
            f"import {address}: the configuration does not declare it",
            hint="add the resource to the YAML first, then import it",
        )
    if str(address) in doc.resources:
        raise ReconcilerError(
            f"import {address}: already in state as {doc.resources[str(address)].id}",
            hint=f"forget it first with `reconciler state rm {address}` if you mean to replace the mapping",
        )
    tracked = {r.id: k for k, r in doc.resources.items()}
    if id in tracked:
        raise ReconcilerError(f"import {address}: {id} is already tracked as {tracked[id]}")
    observed = None
    for provider in res.providers:  # an instance whose provider is chosen may be on any of them
        observed = await providers[provider].get(address.kind, id)
        if observed is not None:
            break
    if observed is None or observed.status in GONE_STATUSES:
        where = " or ".join(res.providers)
        raise ReconcilerError(f"import {address}: {where} has no live {address.kind.singular} {id}")
    new = doc.model_copy(deep=True)
    new.resources[str(address)] = imported_resource(res, observed, doc.lineage)
    return new


async def list_offerings(config: Config | None, sandbox: Path | None, only: set[str]) -> list[Offering]:
    """Every provider's offerings (the configured ones, or all with default settings).

    Without a configuration every provider is asked with its defaults (the embedded
    emulator unless an API key says otherwise), on a throwaway sandbox.
    """
    configured = config.providers if config is not None else {}
    names = sorted(only or set(configured) or set(provider_names()))
    settings = {name: configured.get(name) or ProviderSettings(name=name) for name in names}
    emulator = config.emulator if config is not None else None
    with contextlib.ExitStack() as stack:
        if sandbox is None:
            sandbox = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "offerings.sandbox.json"
        async with open_providers(settings, sandbox, emulator=emulator) as providers:
            found = await asyncio.gather(*(p.offerings() for p in providers.values()))
    return [o for group in found for o in group]


def matching_offerings(found: Sequence[Offering], request: OfferingRequest, available_only: bool) -> list[Offering]:
    """Matching offerings, cheapest first (unavailable ones too, unless `available_only`): the
    same requirement keys as an instance's `offering:` block, so a search shows what a plan ranks."""
    rows = [o for o in found if matches(request, o) and (o.available or not available_only)]
    return sorted(rows, key=lambda o: (o.hourly_price, o.provider, o.id))


async def search_offerings(
    workspace: Workspace, only: set[str], request: OfferingRequest, available_only: bool
) -> list[Offering]:
    """`reconciler offerings`: what the workspace's providers sell (both providers' defaults
    when there is no configuration), filtered and cheapest first."""
    configured = workspace.has_config()
    found = await list_offerings(
        workspace.config if configured else None, workspace.sandbox if configured else None, only
    )
    return matching_offerings(found, request, available_only)
