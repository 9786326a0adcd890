"""Executes a Plan: dependency order, bounded concurrency, the API calls and the waiting.

Never leak, never duplicate: before each create or delete a pending record is made
durable; the API call follows; its answer is recorded and the record cleared in one
write. A create whose answer is lost is looked up by its ownership marker before it is
ever tried again. The applier builds its work from the Plan alone and sequences the
calls; every change to state is a transition of the StateLedger, which persists it.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from reconciler.apply_steps import Phase, Step, build_steps
from reconciler.errors import CapacityError, CreateOutcomeUnknown, ProviderError, ReconcilerError
from reconciler.failover import BootFailure, CapacityRefused, NoCapacityError, attempt_of, no_capacity
from reconciler.model import (
    CREATE_TIMED_OUT,
    GONE_STATUSES,
    SSH_KEY_REFERENCE,
    VOLUMES_REFERENCE,
    Action,
    Change,
    Kind,
    LiveResource,
    Status,
    mask_sensitive,
    new_marker,
)
from reconciler.providers.base import Provider
from reconciler.state.ledger import CreateTicket, StateLedger, sent_now
from reconciler.state.model import PendingOperation, StateDocument
from reconciler.unknowns import AppliedValues

CREATE_ATTEMPTS = 6


class ApplyObserver(Protocol):
    """What the applier tells the person (or machine) watching."""

    def step_started(self, change: Change, phase: Phase) -> None: ...

    def step_finished(self, change: Change, phase: Phase, seconds: float, id: str | None) -> None: ...

    def step_failed(self, change: Change, phase: Phase, error: str) -> None: ...

    def waiting(self, change: Change, status: str, seconds: float) -> None: ...

    def status_seen(self, change: Change, api_status: str) -> None:
        """Every poll of a booting instance: the API's own status word (for a live view)."""

    def capacity_fallback(
        self, change: Change, refused: str, error: str, next: str, attempt: int, reason: str = "no capacity"
    ) -> None: ...


class SilentObserver:
    def step_started(self, change: Change, phase: Phase) -> None:
        return None

    def step_finished(self, change: Change, phase: Phase, seconds: float, id: str | None) -> None:
        return None

    def step_failed(self, change: Change, phase: Phase, error: str) -> None:
        return None

    def waiting(self, change: Change, status: str, seconds: float) -> None:
        return None

    def status_seen(self, change: Change, api_status: str) -> None:
        return None

    def capacity_fallback(
        self, change: Change, refused: str, error: str, next: str, attempt: int, reason: str = "no capacity"
    ) -> None:
        return None


@dataclass(frozen=True)
class ApplyOptions:
    parallelism: int = 10
    create_timeout: float = 900.0
    delete_timeout: float = 600.0
    poll_interval: float = 2.0
    progress_interval: float = 10.0


@dataclass
class StepOutcome:
    ok: bool
    error: str | None = None
    started: bool = True
    no_capacity: bool = False


class StepNotStarted(Exception):
    """The run was told to stop before this step's first API call: it is left for the next run."""


@dataclass
class ApplyResult:
    state: StateDocument
    succeeded: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    no_capacity: list[str] = field(default_factory=list)  # failed steps whose every candidate was sold out
    not_started: list[str] = field(default_factory=list)
    interrupted: bool = False
    added: int = 0
    changed: int = 0
    destroyed: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.not_started and not self.interrupted


class InstanceWatcher:
    """Polls one provider's instances: one list call per interval covers every waiter.

    Ids missing from a (possibly lagging) list are read fresh one by one.
    """

    def __init__(self, provider: Provider, interval: float) -> None:
        self.provider = provider
        self.interval = interval
        self._waiters: dict[str, list[asyncio.Future[LiveResource | None]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def observe(self, id: str) -> LiveResource | None:
        """The instance as seen by the next poll (None if it no longer exists)."""
        future: asyncio.Future[LiveResource | None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(id, []).append(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        while self._waiters:
            await asyncio.sleep(self.interval)
            waiting = self._waiters
            self._waiters = {}
            try:
                listed = {r.id: r for r in await self.provider.list(Kind.INSTANCE)}
                for id, futures in waiting.items():
                    seen = listed.get(id)
                    if seen is None:
                        seen = await self.provider.get(Kind.INSTANCE, id)
                    for future in futures:
                        if not future.done():
                            future.set_result(seen)
            except Exception as exc:  # noqa: BLE001 - every waiter must hear about it
                for futures in waiting.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass


class Applier:
    def __init__(
        self,
        changes: tuple[Change, ...],
        ledger: StateLedger,
        providers: Mapping[str, Provider],
        options: ApplyOptions | None = None,
        observer: ApplyObserver | None = None,
        stop: asyncio.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.changes = changes
        self.ledger = ledger
        self.doc = ledger.doc  # read here; changed only through the ledger's transitions
        self.providers = providers
        self.options = options or ApplyOptions()
        self.observer = observer or SilentObserver()
        self.stop = stop or asyncio.Event()
        self.clock = clock
        self._watchers: dict[str, InstanceWatcher] = {}
        self._slots = asyncio.Semaphore(max(1, self.options.parallelism))
        self._values = AppliedValues(self.doc, {c.address: c for c in changes if not c.deposed})

    def _watcher(self, provider_name: str) -> InstanceWatcher:
        if provider_name not in self._watchers:
            self._watchers[provider_name] = InstanceWatcher(
                self.providers[provider_name], self.options.poll_interval
            )
        return self._watchers[provider_name]

    async def run(self) -> ApplyResult:
        """Start each step as soon as the steps it waits for are done (linear in steps + edges)."""
        steps, waits = build_steps(self.changes, self.doc)
        by_key = {s.key: s for s in steps}
        dependents: dict[str, list[str]] = {key: [] for key in by_key}
        for key, deps in waits.items():
            for dep in deps:
                dependents[dep].append(key)
        needed_gone = {dep for deps in waits.values() for dep in deps if by_key[dep].phase is Phase.DELETE}
        unmet = {key: len(deps) for key, deps in waits.items()}
        ready = collections.deque(s.key for s in steps if unmet[s.key] == 0)
        finished: asyncio.Queue[tuple[str, StepOutcome]] = asyncio.Queue()
        result = ApplyResult(state=self.doc)
        settled: set[str] = set()
        running = 0

        def report(key: str, task: asyncio.Task[StepOutcome]) -> None:
            if task.cancelled():
                outcome = StepOutcome(False, "cancelled")
            elif task.exception() is not None:
                outcome = StepOutcome(False, repr(task.exception()))
            else:
                outcome = task.result()
            finished.put_nowait((key, outcome))

        def block_dependents(key: str) -> None:
            stack = [key]
            while stack:
                for dependent in dependents[stack.pop()]:
                    if dependent not in settled:
                        settled.add(dependent)
                        result.not_started.append(dependent)
                        stack.append(dependent)

        try:
            while True:
                while ready and not self.stop.is_set():
                    key = ready.popleft()
                    if key in settled:
                        continue
                    task = asyncio.create_task(self._run_step(by_key[key], key in needed_gone))
                    task.add_done_callback(functools.partial(report, key))
                    running += 1
                if running == 0:
                    break
                key, outcome = await finished.get()
                running -= 1
                settled.add(key)
                if outcome.ok:
                    result.succeeded.append(key)
                    self._count(result, by_key[key])
                    for dependent in dependents[key]:
                        unmet[dependent] -= 1
                        if unmet[dependent] == 0:
                            ready.append(dependent)
                    continue
                if outcome.started:
                    result.failed.append((key, outcome.error or "failed"))
                    if outcome.no_capacity:
                        result.no_capacity.append(key)
                else:
                    result.not_started.append(key)
                block_dependents(key)
        finally:
            for watcher in self._watchers.values():
                await watcher.close()
        result.not_started.extend(s.key for s in steps if s.key not in settled)
        result.interrupted = self.stop.is_set()
        await self.ledger.flush()
        return result

    @staticmethod
    def _count(result: ApplyResult, step: Step) -> None:
        if step.phase is Phase.UPDATE:
            result.changed += 1
        elif step.phase is Phase.CREATE:
            result.added += 1
        else:
            result.destroyed += 1

    def _begin(self, change: Change, phase: Phase) -> None:
        """Called with a slot in hand: a step queued for one when an interrupt came never
        starts; one that does start is announced only now, not while it waits for a slot."""
        if self.stop.is_set():
            raise StepNotStarted()
        self.observer.step_started(change, phase)

    async def _run_step(self, step: Step, wait_gone: bool) -> StepOutcome:
        started = self.clock()
        new_id: str | None
        try:
            if step.phase is Phase.CREATE:
                new_id = await self._create(step.change)
            elif step.phase is Phase.DELETE:
                new_id = await self._delete(step.change, wait_gone)
            else:
                new_id = await self._update(step.change)
        except StepNotStarted:
            return StepOutcome(False, started=False)
        except ReconcilerError as exc:
            self.observer.step_failed(step.change, step.phase, str(exc))
            return StepOutcome(False, str(exc), no_capacity=isinstance(exc, NoCapacityError))
        except Exception as exc:  # noqa: BLE001 - a step failure must never lose state
            message = f"{type(exc).__name__}: {exc}"
            self.observer.step_failed(step.change, step.phase, message)
            return StepOutcome(False, message)
        self.observer.step_finished(step.change, step.phase, self.clock() - started, new_id)
        return StepOutcome(True)

    def _spec(self, change: Change) -> dict[str, Any]:
        """Canonical attributes with references resolved to the provider ids in state."""
        after = dict(change.after or {})
        after.pop("offering", None)
        after.pop("expiry", None)  # reconciler's own: Shadeform gets it as auto_delete
        ssh_key = after.pop(SSH_KEY_REFERENCE, None)
        if ssh_key is not None:
            after["ssh_key_id"] = self._id_of(ssh_key, change)
        volumes = after.pop(VOLUMES_REFERENCE, None)
        if volumes is not None:
            after["volume_ids"] = [self._id_of(v, change) for v in volumes]
        return after

    def _id_of(self, address: str, change: Change) -> str:
        res = self.ledger.resource(address)
        if res is None:
            raise ReconcilerError(
                f"{change.address}: {address} has no provider id in state (was it created?)"
            )
        return res.id

    async def _create(self, change: Change) -> str:
        """Create what the plan chose; on a capacity refusal, go down the plan's candidates.

        Only a clean refusal moves on: once an attempt's outcome is unknown its pending
        record stays for the next run to settle, and nothing else is tried.
        """
        # What the plan could not know yet (another object's ip) is known now: its step ran first.
        change = self._values.resolve(change)
        if not change.candidates:
            try:
                return await self._create_attempt(change, first=True)
            except CapacityRefused as refused:
                raise refused.error from None
        refusals: list[str] = []
        for number, candidate in enumerate(change.candidates, start=1):
            try:
                return await self._create_attempt(attempt_of(change, candidate), first=number == 1)
            except CapacityRefused as refused:
                refusals.append(candidate.label)
                if number == len(change.candidates) or self.stop.is_set():
                    break
                self.observer.capacity_fallback(
                    change, candidate.label, refused.error.message, change.candidates[number].label, number + 1
                )
            except BootFailure as failed:
                last = number == len(change.candidates)
                if not change.fallback_on_boot_failure or last or self.stop.is_set():
                    raise
                self.observer.capacity_fallback(
                    change, candidate.label, failed.message, change.candidates[number].label, number + 1,
                    reason="failed to boot",
                )
                await self._discard_failed_boot(change, failed.id)
        raise no_capacity(change, refusals)

    async def _discard_failed_boot(self, change: Change, id: str) -> None:
        """Delete an instance that ended in error (fallback.on_boot_failure), through the same
        pending-record protocol as any delete, before the next candidate is tried."""
        held = self.ledger.resource(str(change.address))
        marker = held.marker if held is not None and held.id == id else None
        doomed = Change(
            address=change.address, action=Action.DELETE, provider=change.provider,
            before=held.attributes if held is not None else None, after=None, id=id, marker=marker,
        )
        await self._delete(doomed, wait_gone=False)

    async def _create_attempt(self, change: Change, *, first: bool) -> str:
        kind = change.address.kind
        provider = self.providers[change.provider]
        spec = self._spec(change)
        masked = mask_sensitive(change.after or {}, change.sensitive, self.doc.lineage)
        marker = new_marker(self.doc.lineage)
        async with self._slots:
            if first:
                self._begin(change, Phase.CREATE)
            pending = PendingOperation(
                op="create",
                address=str(change.address),
                provider=change.provider,
                kind=kind.value,
                marker=marker,
                name=str(spec.get("name", "")),
                attributes=masked,
                depends_on=[str(d) for d in change.depends_on],
                hourly_price=change.hourly_after or None,
                started_at=sent_now(),
            )
            ticket = await self.ledger.begin_create(pending, replacing=change.action is Action.REPLACE)
            try:
                created_id, status, computed = await self._create_once_only(provider, kind, spec, ticket)
            except CapacityError as exc:
                if self.ledger.is_pending(marker):
                    raise  # an earlier try's outcome is unknown: the next run settles it
                raise CapacityRefused(exc) from exc
        await self.ledger.record_created(ticket, created_id, status, computed)
        if kind is Kind.INSTANCE:
            await self._wait_active(change, provider, created_id)
        return created_id

    async def _create_once_only(
        self, provider: Provider, kind: Kind, spec: dict[str, Any], ticket: CreateTicket
    ) -> tuple[str, str, dict[str, Any]]:
        """Create; when the answer is lost, find the object by marker before any retry.

        The pending record is stamped again right before every send (a crash recovery counts
        a lagging list's window from it). Once an attempt's outcome is unknown the record is
        never cleared here, whatever later attempts answer: the next run settles it.
        """
        marker = ticket.pending.marker
        ambiguous = False
        for attempt in range(1, CREATE_ATTEMPTS + 1):
            if attempt > 1:
                await self.ledger.restamp(ticket)
            try:
                created = await provider.create(kind, spec, marker)
                status = created.live.status.value if created.live else Status.PENDING.value
                if kind is not Kind.INSTANCE:
                    status = Status.ACTIVE.value
                return created.id, status, dict(created.live.computed) if created.live else {}
            except CreateOutcomeUnknown:
                ambiguous = True
                found = await self._find_by_marker(provider, kind, marker)
                if found is not None:
                    return found.id, found.status.value, dict(found.computed)
                if attempt == CREATE_ATTEMPTS:
                    raise
            except ProviderError as exc:
                if exc.retryable and attempt < CREATE_ATTEMPTS:
                    # Refused before acting (429, no connection): wait as the API asks.
                    await asyncio.sleep(exc.retry_after if exc.retry_after is not None else 2.0**attempt / 4)
                    continue
                if not ambiguous:
                    await self.ledger.abandon(ticket)
                raise
        raise AssertionError("unreachable")

    async def _find_by_marker(self, provider: Provider, kind: Kind, marker: str) -> LiveResource | None:
        deadline = self.clock() + provider.list_consistency_seconds
        while True:
            tracked = self.ledger.tracked_ids()
            for res in await provider.list(kind):
                if (
                    res.marker == marker
                    and res.id not in tracked
                    and res.status not in GONE_STATUSES
                ):
                    return res
            if self.clock() >= deadline:
                return None
            await asyncio.sleep(min(self.options.poll_interval, max(deadline - self.clock(), 0.0)))

    async def _record_status(
        self, address: str, id: str, status: str, seen: LiveResource | None = None
    ) -> None:
        """Record what the API reports now: the status, and the computed attributes it shows."""
        await self.ledger.record_status(address, id, status, seen.computed if seen is not None else None)

    async def _wait_active(self, change: Change, provider: Provider, id: str) -> None:
        address = str(change.address)
        started = self.clock()
        last_report = started
        watcher = self._watcher(change.provider)
        while True:
            seen = await watcher.observe(id)
            elapsed = self.clock() - started
            if seen is not None:
                self.observer.status_seen(change, seen.api_status or seen.status.value)
            if seen is None:
                await self._record_status(address, id, Status.DELETED.value)
                raise ReconcilerError(f"{change.address}: instance {id} disappeared while booting")
            if seen.ready:
                # Ready: active with the address users connect to (both APIs report ip later).
                await self._record_status(address, id, Status.ACTIVE.value, seen)
                return
            if self.stop.is_set():
                # Interrupted: the instance is in state (status pending); the next run sees it.
                await self._record_status(address, id, seen.status.value, seen)
                return
            if seen.status in (Status.ERROR, Status.DELETING, Status.DELETED):
                await self._record_status(address, id, seen.status.value, seen)
                detail = f" ({seen.status_details})" if seen.status_details else ""
                message = (
                    f"{change.address}: instance {id} ended in status {seen.status.value}{detail}; "
                    "it is recorded in state and the next apply replaces it (on_failure: replace) or keeps it"
                )
                if seen.status is Status.ERROR:
                    raise BootFailure(message, id)
                raise ReconcilerError(message)
            if elapsed >= self.options.create_timeout:
                await self._record_status(address, id, CREATE_TIMED_OUT, seen)
                shown = seen.status.value if seen.status is not Status.ACTIVE else "active, no ip reported yet"
                raise ReconcilerError(
                    f"{change.address}: instance {id} not ready after {self.options.create_timeout:g}s "
                    f"(status {shown}); it is recorded in state and the next apply replaces "
                    "it if it is still not active (on_failure: replace) or keeps it",
                    hint="raise --create-timeout, or check the provider's console",
                )
            if self.clock() - last_report >= self.options.progress_interval:
                self.observer.waiting(change, seen.status.value, elapsed)
                last_report = self.clock()

    async def _delete(self, change: Change, wait_gone: bool) -> str | None:
        kind = change.address.kind
        address = str(change.address)
        assert change.id is not None
        delete_id = change.deposed or change.id
        provider_name = self.ledger.owner_of(address, delete_id, change.provider)
        provider = self.providers[provider_name]
        async with self._slots:
            self._begin(change, Phase.DELETE)
            pending = await self.ledger.begin_delete(PendingOperation(
                op="delete",
                address=address,
                provider=provider_name,
                kind=kind.value,
                marker=change.marker or "",
                name=str((change.before or {}).get("name", "")),
                id=delete_id,
            ))
            try:
                await provider.delete(kind, delete_id)
            except ProviderError:
                await self.ledger.abandon_delete(pending)
                raise
        if wait_gone and kind is Kind.INSTANCE:
            await self._wait_gone(change, provider_name, delete_id)
        await self.ledger.record_deleted(pending)
        return delete_id

    async def _wait_gone(self, change: Change, provider_name: str, id: str) -> None:
        started = self.clock()
        watcher = self._watcher(provider_name)
        while True:
            seen = await watcher.observe(id)
            if seen is None or seen.status is Status.DELETED:
                return
            if self.clock() - started >= self.options.delete_timeout:
                raise ReconcilerError(
                    f"{change.address}: instance {id} still {seen.status.value} after "
                    f"{self.options.delete_timeout:g}s; what depends on it was not deleted"
                )

    async def _update(self, change: Change) -> str | None:
        change = self._values.resolve(change)
        assert change.id is not None
        provider = self.providers[change.provider]
        after = change.after or {}
        before = change.before or {}
        masked = mask_sensitive(after, change.sensitive, self.doc.lineage)
        allowed = provider.updatable(change.address.kind)
        updates = {k: after.get(k) for k in allowed if masked.get(k) != before.get(k)}
        async with self._slots:
            self._begin(change, Phase.UPDATE)
            if updates:  # an expiry kept only in state changes nothing at the provider
                await provider.update(change.address.kind, change.id, updates, change.marker or "")
        await self.ledger.record_updated(str(change.address), masked)
        return change.id
