"""Fleets for the benchmarks: configuration files of many resources, and clouds already running them.

Every fleet is plain reconciler configuration (YAML loaded by the real loader) on the
Shadeform API. Building the in-sync fleets goes through the product too: one plan from
an empty state, applied by the real applier against the in-process emulator with no
latency, so the state and the emulated cloud agree exactly as after a user's apply.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from reconciler import engine
from reconciler.applier import ApplyOptions
from reconciler.config import Config
from reconciler.emulator.embedded import EmbeddedCloud
from reconciler.emulator.validation import example_public_key
from reconciler.errors import StateError, StateLockedError
from reconciler.planner import PlanOptions
from reconciler.providers import make_provider
from reconciler.providers.base import Provider
from reconciler.state.backend import LockInfo
from reconciler.state.model import StateDocument

PROVIDER = "shadeform"
CLOUD = "lambdalabs"
REGION = "us-east-1"
INSTANCE_TYPE = "A6000"
VOLUME_SIZE_GB = 100
# One fleet block of ten resources: a key, two volumes, seven instances using the key,
# two of which mount one of the volumes each.
BLOCK_SIZE = 10
BLOCK_VOLUMES = 2
BLOCK_INSTANCES = 7
# Building a fleet is setup, not a measurement: apply in slices, as fast as the emulator goes.
BUILD_SLICE = 1000
BUILD_OPTIONS = ApplyOptions(parallelism=64, poll_interval=0.5)
UNTHROTTLED_RATE = 1_000_000.0

_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def provider_block(endpoint: str) -> dict[str, Any]:
    """The `providers:` section; a URL endpoint takes its key from SHADEFORM_API_KEY."""
    return {PROVIDER: {"endpoint": endpoint}}


def write_config(directory: Path, document: dict[str, Any]) -> Path:
    """Write one `main.yaml` (block style, as people write it) and return the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    text = yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
    (directory / "main.yaml").write_text(text)
    return directory


def _instance(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": PROVIDER,
        "cloud": CLOUD,
        "region": REGION,
        "shade_instance_type": INSTANCE_TYPE,
        **extra,
    }


def _volume(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": PROVIDER,
        "cloud": CLOUD,
        "region": REGION,
        "size_gb": VOLUME_SIZE_GB,
        **extra,
    }


def _key(name: str) -> dict[str, Any]:
    return {"name": name, "provider": PROVIDER, "public_key": example_public_key(name)}


def fleet_document(size: int, endpoint: str = "embedded") -> dict[str, Any]:
    """`size` resources (a multiple of ten) in blocks of one key, two volumes, seven instances."""
    if size <= 0 or size % BLOCK_SIZE:
        raise ValueError(f"fleet size must be a positive multiple of {BLOCK_SIZE}, got {size}")
    keys, volumes, instances = [], [], []
    for block in range(size // BLOCK_SIZE):
        keys.append(_key(f"key-{block}"))
        for v in range(BLOCK_VOLUMES):
            volumes.append(_volume(f"data-{block}-{v}"))
        for i in range(BLOCK_INSTANCES):
            extra: dict[str, Any] = {"ssh_key": f"key-{block}"}
            if i < BLOCK_VOLUMES:
                extra["volumes"] = [f"data-{block}-{i}"]
            instances.append(_instance(f"worker-{block}-{i}", **extra))
    return {
        "providers": provider_block(endpoint),
        "ssh_keys": keys,
        "volumes": volumes,
        "instances": instances,
    }


def instances_document(count: int) -> dict[str, Any]:
    """`count` independent instances (one entry with `count:`)."""
    return {"providers": provider_block("embedded"), "instances": [_instance("worker", count=count)]}


def chains_document(chains: int) -> dict[str, Any]:
    """`chains` chains key -> volume -> instance (the volume waits for the key explicitly)."""
    keys, volumes, instances = [], [], []
    for c in range(chains):
        keys.append(_key(f"key-{c}"))
        volumes.append(_volume(f"data-{c}", depends_on=[f"ssh_keys.key-{c}"]))
        instances.append(_instance(f"node-{c}", ssh_key=f"key-{c}", volumes=[f"data-{c}"]))
    return {
        "providers": provider_block("embedded"),
        "ssh_keys": keys,
        "volumes": volumes,
        "instances": instances,
    }


class MemoryStateBackend:
    """A state backend in memory: fleet building measures the cloud, not the disk."""

    def __init__(self) -> None:
        self.doc = StateDocument()
        self.writes = 0
        self._held: LockInfo | None = None

    @property
    def description(self) -> str:
        return "memory"

    def read(self) -> StateDocument:
        return self.doc

    def exists(self) -> bool:
        return self.writes > 0

    def write(self, doc: StateDocument, force: bool = False) -> None:
        """Nothing else writes this state, so there is no serial to compare: `force` changes nothing."""
        self.doc = doc
        self.writes += 1

    @contextlib.contextmanager
    def lock(self, operation: str, timeout: float = 0.0) -> Iterator[LockInfo]:
        if self._held is not None:
            raise StateLockedError(f"memory state is locked: {self._held.describe()}", self._held.id)
        self._held = LockInfo.for_this_process(operation, "memory")
        try:
            yield self._held
        finally:
            self._held = None

    def force_unlock(self, lock_id: str) -> None:
        if self._held is None or self._held.id != lock_id:
            raise StateError(f"no lock with ID {lock_id} on memory state")
        self._held = None

    def current_lock(self) -> LockInfo | None:
        return self._held


def embedded_providers(
    cloud: EmbeddedCloud, config: Config, rate_limit: float | None = None
) -> dict[str, Provider]:
    """Clients on the in-process emulator, wired the way `engine.open_providers` wires them.

    `rate_limit` overrides the client's own pacing (requests per second).
    """
    providers: dict[str, Provider] = {}
    for name, settings in config.providers.items():
        settings = dataclasses.replace(
            settings,
            api_key=settings.api_key or engine.EMBEDDED_API_KEY,
            options={**settings.options, "base_url": cloud.base_url(name)},
        )
        if rate_limit is not None:
            settings = dataclasses.replace(settings, rate_limit_per_second=rate_limit)
        providers[name] = make_provider(settings, cloud.transport(name))
    return providers


async def close_providers(providers: Mapping[str, Provider]) -> None:
    for provider in providers.values():
        await provider.aclose()


async def build_in_sync(config: Config, cloud: EmbeddedCloud) -> StateDocument:
    """Plan the fleet from an empty state and apply it, so state and cloud agree.

    The plan is applied in slices of BUILD_SLICE changes in creation order (keys,
    volumes, instances), so every dependency is created in an earlier slice or the same one.
    """
    backend = MemoryStateBackend()
    providers = embedded_providers(cloud, config, rate_limit=UNTHROTTLED_RATE)
    try:
        outcome = await engine.make_plan(providers, config, backend.read(), PlanOptions())
        doc = outcome.state
        ordered = sorted(outcome.plan.changes, key=lambda change: change.address.sort_key())
        for start in range(0, len(ordered), BUILD_SLICE):
            part = dataclasses.replace(outcome.plan, changes=tuple(ordered[start : start + BUILD_SLICE]))
            result = await engine.apply_plan(part, doc, backend, providers, BUILD_OPTIONS)
            if not result.ok:
                raise RuntimeError(f"building the fleet failed: {result.failed[:3]}")
        return doc
    finally:
        await close_providers(providers)
