"""The baselines reconciler is measured against, run in the same process on the same emulator.

Both follow what Terraform does with its default `-parallelism=10`:

- `refresh_per_resource`: refresh reads every resource in state with its own GET, at most
  ten at a time; the result feeds the same planner as reconciler's list-based refresh.
- `SlotHoldingApply`: at most ten resources in flight; a resource starts once everything
  it depends on is done and keeps its slot from the create call until its own polling
  (one GET per instance per poll interval) sees it active. It writes no state at all,
  which only flatters it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.config import Config
from reconciler.errors import ProviderError
from reconciler.model import Action, Address, Change, Kind, LiveResource, Status, new_marker
from reconciler.planner import LiveView, providers_needing_offerings
from reconciler.providers.base import Provider
from reconciler.state.model import StateDocument

TERRAFORM_PARALLELISM = 10


async def refresh_per_resource(
    providers: Mapping[str, Provider],
    config: Config,
    doc: StateDocument,
    parallelism: int = TERRAFORM_PARALLELISM,
) -> LiveView:
    """What refresh sees when it reads each resource in state on its own.

    Only for configurations already in sync with state: those need no catalogue
    (offerings, volume prices), so resources are all there is to read.
    """
    instance_providers, volume_providers = providers_needing_offerings(config.resources, doc)
    if instance_providers or volume_providers:
        raise ValueError("the per-resource baseline models plans of in-sync configurations only")
    slots = asyncio.Semaphore(parallelism)

    async def read(provider: str, kind: Kind, id: str) -> LiveResource | None:
        async with slots:
            return await providers[provider].get(kind, id)

    held = [(res.provider, Kind(res.kind), res.id) for res in doc.resources.values()]
    seen = await asyncio.gather(*(read(p, k, i) for p, k, i in held))
    resources: dict[tuple[str, Kind], dict[str, LiveResource]] = {(p, k): {} for p in providers for k in Kind}
    for (provider, kind, _), live in zip(held, seen, strict=True):
        if live is not None and live.status is not Status.DELETED:
            resources[(provider, kind)][live.id] = live
    updatable = {(p, k): providers[p].updatable(k) for p in providers for k in Kind}
    return LiveView(resources=resources, updatable=updatable)


class SlotHoldingApply:
    """Creates a plan's resources the way Terraform does (see the module docstring)."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        lineage: str,
        poll_interval: float,
        parallelism: int = TERRAFORM_PARALLELISM,
        create_timeout: float = 900.0,
    ) -> None:
        self.providers = providers
        self.lineage = lineage
        self.poll_interval = poll_interval
        self.create_timeout = create_timeout
        self._slots = asyncio.Semaphore(parallelism)
        self.ids: dict[Address, str] = {}

    async def run(self, changes: Sequence[Change]) -> dict[Address, str]:
        """Create every resource of a create-only plan; returns address -> provider id."""
        if any(c.action is not Action.CREATE for c in changes):
            raise ValueError("the slot-holding baseline applies create-only plans")
        done = {c.address: asyncio.Event() for c in changes}

        async def create(change: Change) -> None:
            for dep in change.depends_on:
                await done[dep].wait()
            async with self._slots:
                self.ids[change.address] = await self._create_and_wait(change)
            done[change.address].set()

        await asyncio.gather(*(create(c) for c in changes))
        return self.ids

    async def _create_and_wait(self, change: Change) -> str:
        provider = self.providers[change.provider]
        kind = change.address.kind
        marker = new_marker(self.lineage)
        for attempt in range(1, 11):
            try:
                created = await provider.create(kind, self._spec(change), marker)
                break
            except ProviderError as exc:
                # Refused before acting (429): wait as asked and send again, as Terraform's
                # providers do; anything else ends the baseline run.
                if not exc.retryable or attempt == 10:
                    raise
                await asyncio.sleep(exc.retry_after if exc.retry_after is not None else 1.0)
        if kind is not Kind.INSTANCE:
            return created.id
        waited = 0.0
        while waited < self.create_timeout:
            await asyncio.sleep(self.poll_interval)
            waited += self.poll_interval
            seen = await provider.get(kind, created.id)
            if seen is not None and seen.status is Status.ACTIVE:
                return created.id
            if seen is None or seen.status in (Status.ERROR, Status.DELETING, Status.DELETED):
                raise RuntimeError(f"{change.address}: instance {created.id} did not boot")
        raise RuntimeError(
            f"{change.address}: instance {created.id} not active after {self.create_timeout:g}s"
        )

    def _spec(self, change: Change) -> dict[str, Any]:
        """The planned attributes with references turned into the ids this run created."""
        spec = dict(change.after or {})
        spec.pop("offering", None)
        key = spec.pop("ssh_key", None)
        if key is not None:
            spec["ssh_key_id"] = self.ids[Address.parse(key)]
        volumes = spec.pop("volumes", None)
        if volumes is not None:
            spec["volume_ids"] = [self.ids[Address.parse(v)] for v in volumes]
        return spec
