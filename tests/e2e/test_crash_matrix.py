"""Crash matrix: `reconciler apply` and `destroy` killed with SIGKILL at every step
boundary of a 20-resource stack on both providers, then run again to completion.

The emulator (`reconciler emulator serve`, a real subprocess) counts API writes and holds
the Nth one, before it is applied or after it is applied but before it is answered; the
test kills the run while the write is held, lets the write go, and re-runs. After each
recovery the emulator's own ledger must show nothing live that state does not track,
nothing created more often than the plans asked, and a further run must have nothing to
do. Totals (kill points, orphans, duplicates) appear in the terminal summary.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from crash_support import (
    CONSISTENCY_MARGIN_SECONDS,
    CROSS_PROVIDER_ATTEMPTS,
    FAILOVER_ATTEMPTS,
    REPLACED_BY_REPLACING,
    REPLACING,
    STACK_SIZE,
    TOTALS,
    CrossProviderFailoverStack,
    EmulatorServer,
    FailoverStack,
    Stack,
    assert_clean,
    audit_cross_provider,
    audit_failover,
    kill_at_write,
    run_in_lanes,
    wait_until,
)

LANES = 3
REPLACE_WRITES = 2 * len(REPLACED_BY_REPLACING)
INSTANCES = 11
SLOW_BOOT_SECONDS = 2.0
SLOW_DELETE_SECONDS = 1.5
LONG_LAG_SECONDS = 3.0


@pytest.fixture(scope="module")
def lanes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[EmulatorServer]]:
    started: list[EmulatorServer] = []
    try:
        for index in range(LANES):
            log_dir = tmp_path_factory.mktemp(f"emulator-{index}")
            started.append(EmulatorServer(log_dir).start())
        yield started
    finally:
        for emulator in started:
            emulator.stop()


@pytest.fixture(scope="module")
def slow_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    """Instances that take seconds to boot and to go, so a run can be killed mid-wait."""
    emulator = EmulatorServer(
        tmp_path_factory.mktemp("slow-emulator"),
        boot_seconds=SLOW_BOOT_SECONDS,
        delete_seconds=SLOW_DELETE_SECONDS,
    ).start()
    yield emulator
    emulator.stop()


@dataclass(frozen=True)
class KillPoint:
    write: int
    phase: str
    parallelism: int = 1

    def __str__(self) -> str:
        return f"write {self.write} {self.phase}" + (
            f" (parallelism {self.parallelism})" if self.parallelism != 1 else ""
        )


@dataclass(frozen=True)
class Scenario:
    """Apply from nothing, replace 10 resources, destroy: each stage killed at its own point."""

    name: str
    create: KillPoint | None
    replace: KillPoint | None
    destroy: KillPoint | None

    def __str__(self) -> str:
        return f"{self.name}: create at {self.create}, replace at {self.replace}, destroy at {self.destroy}"


def _stage(stack: Stack, command: str, point: KillPoint | None, label: str) -> None:
    if point is None:
        stack.run(command)
        return
    kill_at_write(stack, command, point.write, point.phase, f"{label}-p{point.parallelism}", point.parallelism)
    stack.check_state_after_kill()
    stack.converge(command)


def play(scenario: Scenario, emulator: EmulatorServer, root: Path) -> None:
    stack = Stack(root, emulator, scenario.name)
    try:
        _stage(stack, "apply", scenario.create, "create")
        assert_clean(stack, expect_live=True)
        stack.write_config(REPLACING)
        _stage(stack, "apply", scenario.replace, "replace")
        replaced = {address: 1 for address in REPLACED_BY_REPLACING}
        assert_clean(stack, expect_live=True, replaced=replaced)
        _stage(stack, "destroy", scenario.destroy, "delete")
        assert_clean(stack, expect_live=False, replaced=replaced)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.transcript()}") from None


def _play_all(scenarios: list[Scenario], lanes: list[EmulatorServer], root: Path) -> None:
    failures = run_in_lanes(scenarios, lanes, lambda s, e: play(s, e, root))
    assert not failures, f"{len(failures)} of {len(scenarios)} scenarios failed:\n" + "\n".join(failures)


def test_kill_after_each_write_is_answered(lanes: list[EmulatorServer], tmp_path: Path) -> None:
    """Every create, replace and delete boundary, killed once the API did the write but
    before the client heard: the next run must adopt (or finish) what was done."""
    scenarios = [
        Scenario(
            f"after-{n}",
            KillPoint(n, "after"),
            KillPoint(min(n, REPLACE_WRITES), "after"),
            KillPoint(n, "after"),
        )
        for n in range(1, STACK_SIZE + 1)
    ]
    _play_all(scenarios, lanes, tmp_path)


@pytest.mark.slow
def test_kill_before_writes_and_with_calls_in_parallel(lanes: list[EmulatorServer], tmp_path: Path) -> None:
    """Killed while a write is on its way (it lands after the client died), one step at a
    time and with ten calls in flight."""
    scenarios = [
        Scenario(f"before-{n}", KillPoint(n, "before"), KillPoint(n, "before"), KillPoint(n, "before"))
        for n in (1, 5, 10, 15, 20)
    ] + [
        Scenario(
            f"parallel-{n}",
            KillPoint(n, "after", parallelism=10),
            KillPoint(n, "before", parallelism=10),
            KillPoint(n, "after", parallelism=10),
        )
        for n in (3, 14)
    ]
    _play_all(scenarios, lanes, tmp_path)


def _instance_polls(emulator: EmulatorServer) -> int:
    requests = emulator.requests()
    return sum(
        count for key, count in requests.items() if key.endswith(("instances.list", "instances.get"))
    )


def _kill_while_waiting(stack: Stack, command: str, requested: set[str], polls: int, label: str) -> None:
    """Kill -9 once every instance's own write is done (its status is one of `requested`)
    and the run has polled `polls` times more: it is waiting on the provider, for instances
    to become active or to be gone, and sending nothing."""
    emulator = stack.emulator
    run = stack.start(command)
    try:

        def instances_requested() -> bool:
            assert run.running(), f"{command} ended before it waited:\n{run.finish().describe()}"
            entries = [e for e in stack.ledger() if e["kind"] == "instances"]
            return len(entries) >= INSTANCES and all(e["status"] in requested for e in entries)

        wait_until(instances_requested, f"every instance to reach {sorted(requested)} during {command}")
        baseline = _instance_polls(emulator)
        wait_until(lambda: _instance_polls(emulator) >= baseline + polls, f"{polls} status polls")
        assert run.running(), f"{command} ended before the kill:\n{run.finish().describe()}"
        run.kill_hard()
    finally:
        if run.running():
            run.kill_hard()
    TOTALS.kill_points.add(f"{label}:{command}:waiting:{polls}-polls")
    stack.check_state_after_kill()
    stack.converge(command)


@pytest.mark.slow
def test_kill_while_waiting_for_instances(slow_emulator: EmulatorServer, tmp_path: Path) -> None:
    """Killed while polling for `active` after every create, and while waiting for deleted
    instances to be gone before their volumes and keys go."""
    for polls in (1, 4):
        stack = Stack(tmp_path, slow_emulator, f"wait-{polls}")
        try:
            _kill_while_waiting(stack, "apply", {"pending", "active"}, polls, "create")
            assert_clean(stack, expect_live=True)
            _kill_while_waiting(stack, "destroy", {"deleting", "deleted"}, polls, "delete")
            assert_clean(stack, expect_live=False)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{stack.transcript()}") from None


@dataclass(frozen=True)
class RandomKill:
    name: str
    apply_after: float
    destroy_after: float

    def __str__(self) -> str:
        return f"{self.name}: apply killed after {self.apply_after:.2f}s, destroy after {self.destroy_after:.2f}s"


def play_random(kill: RandomKill, emulator: EmulatorServer, root: Path) -> None:
    stack = Stack(root, emulator, kill.name)
    try:
        for command, delay, live in (("apply", kill.apply_after, True), ("destroy", kill.destroy_after, False)):
            run = stack.start(command)
            if not run.finish_within(delay):
                run.kill_hard()
                TOTALS.kill_points.add(f"random:{command}:{kill.name}")
            stack.check_state_after_kill()
            stack.converge(command)
            assert_clean(stack, expect_live=live)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.transcript()}") from None


@pytest.mark.slow
def test_kill_at_random_times(lanes: list[EmulatorServer], tmp_path: Path) -> None:
    """Seeded random kill times across apply and destroy with ten calls in flight."""
    rng = random.Random(20240605)
    kills = [
        RandomKill(f"random-{i}", rng.uniform(0.8, 2.2), rng.uniform(0.8, 1.8)) for i in range(4)
    ]
    failures = run_in_lanes(kills, lanes, lambda k, e: play_random(k, e, tmp_path))
    assert not failures, f"{len(failures)} of {len(kills)} random kills failed:\n" + "\n".join(failures)


def test_pending_create_inside_the_consistency_window_keeps_the_catalogue(
    lanes: list[EmulatorServer], tmp_path: Path
) -> None:
    """A run that finds a pending create too recent to judge waits for Forward's lists to
    catch up; the offerings it fetched first must still be there for the plan."""
    stack = Stack(tmp_path, lanes[0], "settle")
    lineage = "5d1f0c9e-2f43-4c1b-9a57-0b8f1d2e3c4a"
    state = {
        "version": 1,
        "serial": 1,
        "lineage": lineage,
        "resources": {},
        "deposed": [],
        "pending": [
            {
                "op": "create",
                "address": "ssh_keys.fw-key",
                "provider": "forward",
                "kind": "ssh_keys",
                "marker": "rc-5d1f0c9e-a1b2c3",
                "name": "fw-key",
                "started_at": datetime.now(UTC).isoformat(),
            }
        ],
    }
    stack.state_path.parent.mkdir(parents=True)
    stack.state_path.write_text(json.dumps(state))
    result = stack.plan()
    assert result.returncode == 0, result.describe()
    assert "ssh_keys.fw-key: an interrupted create left nothing live" in result.stdout, result.describe()
    assert f"Plan: {STACK_SIZE} to add" in result.stdout, result.describe()


@pytest.fixture(scope="module")
def lagging_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    """Forward lists that lag writes by more than a re-run takes to start and list."""
    emulator = EmulatorServer(tmp_path_factory.mktemp("lagging-emulator"), list_lag_seconds=LONG_LAG_SECONDS)
    yield emulator.start()
    emulator.stop()


def test_a_create_queued_behind_a_hung_call_is_adopted_not_repeated(
    lagging_emulator: EmulatorServer, tmp_path: Path
) -> None:
    """One call at a time: a Forward volume waits for a slot while a key's create hangs for
    longer than Forward's consistency window; then the volume is created and the run dies
    before hearing so. The next run must wait for the lagging list to show the volume (the
    window counts from when the call was sent, not from when the step was queued) and
    adopt it, not create a second one."""
    stack = Stack(tmp_path, lagging_emulator, "queued")
    emulator = stack.emulator
    window = emulator.list_lag_seconds + CONSISTENCY_MARGIN_SECONDS
    emulator.arm_hold(1, "before")
    # Two independent steps, so nothing else becomes ready (and pending) while one hangs.
    targets = ("--target", "ssh_keys.fw-key-spare", "--target", "volumes.fw-data[0]")
    run = stack.start("apply", "--parallelism", "1", *targets)
    try:
        wait_until(lambda: emulator.hold_status()["held"], "the key's create to be held")
        assert emulator.hold_status()["operation"] == "forward.ssh_keys.create"
        hung_since = time.monotonic()
        # The scenario itself: the first call stays unanswered for longer than the window.
        wait_until(lambda: time.monotonic() - hung_since > window + 0.5, "the window to pass", window + 5)
        emulator.arm_hold(1, "after")  # lets the key's create go; holds the next write once applied
        wait_until(lambda: emulator.hold_status()["held"], "the volume's create to be held")
        assert emulator.hold_status()["operation"] == "forward.volumes.create"
        run.kill_hard()
    finally:
        if run.running():
            run.kill_hard()
        emulator.release()
    TOTALS.kill_points.add("queued:apply:write2:after-hung-write1")
    try:
        stack.converge("apply")
        assert_clean(stack, expect_live=True)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.transcript()}") from None


@pytest.fixture(scope="module")
def market_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    """An emulator of its own: capacity faults are global to one emulator."""
    emulator = EmulatorServer(tmp_path_factory.mktemp("market-emulator")).start()
    yield emulator
    emulator.stop()


# The first two creates find no capacity, the third lands: writes 1 and 2 are refused
# attempts, write 3 the one that creates.
FAILOVER_KILLS = [KillPoint(1, "before"), KillPoint(2, "before"), KillPoint(3, "before"), KillPoint(3, "after")]


@pytest.mark.parametrize("point", FAILOVER_KILLS, ids=str)
def test_kill_during_capacity_failover(market_emulator: EmulatorServer, tmp_path: Path, point: KillPoint) -> None:
    """Killed between failover attempts (a refused attempt's record, the next one's send) and
    as the last attempt lands: the next runs converge to one instance, nothing orphaned."""
    market_emulator.set_faults(f"forward.instances.create=capacity@times={FAILOVER_ATTEMPTS - 1}")
    stack = FailoverStack(tmp_path, market_emulator, f"failover-{point.write}-{point.phase}")
    try:
        killed = kill_at_write(stack, "apply", point.write, point.phase, "failover")
        # Past the first write, the kill came in the middle of failing over.
        assert killed.stdout.count("no capacity on") == point.write - 1, killed.describe()
        stack.check_state_after_kill()
        stack.converge("apply")
        audit = audit_failover(stack, expect_live=True)
        assert not (audit.orphans or audit.duplicates or audit.problems), audit.describe()
        stack.converge("destroy")
        audit = audit_failover(stack, expect_live=False)
        assert not (audit.orphans or audit.duplicates or audit.problems), audit.describe()
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.transcript()}") from None
    finally:
        market_emulator.set_faults("")


def test_kill_as_failover_lands_on_another_provider(market_emulator: EmulatorServer, tmp_path: Path) -> None:
    """Forward sold out, the last candidate is Shadeform's: killed once that create is applied
    but not answered, the pending record names Shadeform, so the next run adopts the instance
    there; nothing orphaned on either provider, nothing doubled, and destroy removes it all."""
    market_emulator.set_faults("forward.instances.create=capacity")
    stack = CrossProviderFailoverStack(tmp_path, market_emulator, "cross-provider-failover")
    try:
        last = 2 + CROSS_PROVIDER_ATTEMPTS  # two key objects, then the attempts
        killed = kill_at_write(stack, "apply", last, "after", "cross-provider-failover")
        assert killed.stdout.count("no capacity on forward") == CROSS_PROVIDER_ATTEMPTS - 1, killed.describe()
        assert f"attempt {CROSS_PROVIDER_ATTEMPTS} of {CROSS_PROVIDER_ATTEMPTS}: shadeform " in killed.stdout
        stack.check_state_after_kill()
        (pending,) = stack.state()["pending"]
        assert (pending["address"], pending["provider"]) == ("instances.trainer", "shadeform")
        stack.converge("apply")
        held = stack.state()["resources"]["instances.trainer"]
        assert held["provider"] == "shadeform"
        assert held["attributes"]["ssh_key"] == 'ssh_keys.deploy["shadeform"]'
        audit = audit_cross_provider(stack, expect_live=True)
        assert not (audit.orphans or audit.duplicates or audit.problems), audit.describe()
        stack.converge("destroy")
        audit = audit_cross_provider(stack, expect_live=False)
        assert not (audit.orphans or audit.duplicates or audit.problems), audit.describe()
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.transcript()}") from None
    finally:
        market_emulator.set_faults("")
