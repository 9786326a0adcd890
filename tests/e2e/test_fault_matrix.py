"""Fault matrix: each fault the emulator can inject, switched on during `reconciler apply`
and during `reconciler destroy` of the 20-resource stack, through the installed command
against `reconciler emulator serve`.

Transient faults (429 with Retry-After, 500/502/503, client timeouts, lost create and
delete answers, lagging lists, slow deletes) must be absorbed: the run succeeds, a second
run with the fault still on has nothing to do. Capacity errors and boot failures must
fail the run with a clear message (exit 1), keep what failed on record, and the next run
with the fault gone must converge. Every phase ends with an audit of the emulator's
ledger against the state file; every rule must have hit at least once, so no case passes
by the fault never happening.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from crash_support import (
    BASELINE,
    REPLACED_BY_REPLACING,
    REPLACING,
    TOTALS,
    EmulatorServer,
    Stack,
    Variant,
    assert_clean,
    run_in_lanes,
)

LANES = 5
FAULT_SEED = 7
EXTRA_LAG_SECONDS = 3.0


@dataclass(frozen=True)
class FaultCase:
    """One fault, how to switch it on, and what a run under it must do."""

    name: str
    spec: str
    variant: Variant = BASELINE
    # A fault that must fail the apply (exit 1) with this text in its output.
    apply_error: str | None = None
    # Replace resources under the fault (slow deletes only happen on deletes).
    replace_under_fault: bool = False
    # Kinds of rule that cannot fire during a destroy (creates only).
    create_only: bool = False

    def __str__(self) -> str:
        return f"{self.name} ({self.spec})"


CASES = [
    FaultCase("rate limit 429", "*.*=rate_limit@every=4,retry_after=1"),
    FaultCase(
        "status 500",
        "*.create=status_500@every=3,times=2;*.delete=status_500@every=3;*.list=status_500@every=4",
    ),
    FaultCase(
        "status 502",
        "*.create=status_502@every=4,times=2;*.delete=status_502@every=2;*.list=status_502@every=5",
    ),
    FaultCase(
        "status 503",
        "*.create=status_503@every=2,times=2;*.delete=status_503@every=4;*.list=status_503@every=3",
    ),
    FaultCase(
        "client timeout",
        "*.create=timeout@every=4,times=2,seconds=10;*.delete=timeout@every=5,times=2,seconds=10;"
        "*.list=timeout@every=6,times=1,seconds=10",
        variant=Variant(provider_timeout=1.0),
    ),
    FaultCase("lost answer", "*.create=lost_response@every=3;*.delete=lost_response@every=3"),
    FaultCase(
        "list lag",
        f"forward.list=lag:{EXTRA_LAG_SECONDS:g};forward.get=lag:{EXTRA_LAG_SECONDS:g}",
        variant=Variant(extra_list_lag=EXTRA_LAG_SECONDS),
    ),
    FaultCase(
        "capacity",
        "*.instances.create=capacity@every=4,times=2",
        apply_error="capacity",
        create_only=True,
    ),
    FaultCase(
        "boot failure",
        "shadeform.instances.create=boot_failure@every=2,times=1;"
        "forward.instances.create=boot_failure@every=3,times=1",
        apply_error="ended in status error",
        create_only=True,
    ),
    FaultCase("slow delete", "*.instances.delete=slow_delete:2", replace_under_fault=True),
]


@pytest.fixture(scope="module")
def lanes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[EmulatorServer]]:
    started: list[EmulatorServer] = []
    try:
        for index in range(LANES):
            started.append(EmulatorServer(tmp_path_factory.mktemp(f"fault-emulator-{index}")).start())
        yield started
    finally:
        for emulator in started:
            emulator.stop()


def _assert_fired(case: FaultCase, emulator: EmulatorServer, verbs: frozenset[str]) -> None:
    """Every rule aimed at calls of `verbs` matched some call, and every refusal among them hit."""
    durations = ("=latency", "=lag", "=slow_delete")
    for counter in emulator.fault_counters():
        rule = str(counter["rule"])
        verb = rule.split("=", 1)[0].rsplit(".", 1)[-1]
        if verb not in verbs and verb != "*":
            continue
        assert int(counter["matched"]) > 0, f"{case}: no call matched {rule}"
        if not any(d in rule for d in durations):
            assert int(counter["hits"]) > 0, f"{case}: {rule} never fired"


APPLY_VERBS = frozenset({"create", "list", "get"})
DESTROY_VERBS = frozenset({"delete", "list", "get"})


def _phase(stack: Stack, case: FaultCase, command: str, replaced: dict[str, int]) -> None:
    """`command` under the fault: it must succeed (at the latest on a second run, still under
    the fault), and a further run find nothing to do."""
    emulator = stack.emulator
    emulator.set_faults(case.spec, FAULT_SEED)
    first = stack.run(command, expect=None)
    if first.returncode != 0:
        # A transient fault can outlast the client's retries for one call (a 5xx on every
        # other delete, say): that step fails, state stays consistent, and the next run,
        # fault still on, finishes the job. Anything else is a failure.
        assert first.returncode == 1 and "Apply failed" in first.stdout, first.describe()
    stack.converge(command)
    if command == "destroy":
        verbs = frozenset() if case.create_only else DESTROY_VERBS
    else:
        verbs = APPLY_VERBS | (DESTROY_VERBS if case.replace_under_fault else frozenset())
    _assert_fired(case, emulator, verbs)
    emulator.set_faults("")
    assert_clean(stack, expect_live=command == "apply", replaced=replaced)


def _failing_apply(stack: Stack, case: FaultCase) -> dict[str, int]:
    """An apply the fault must fail: exit 1 with a clear message, the failure on record,
    then a run with the fault gone converges. Returns the replacements it caused."""
    emulator = stack.emulator
    emulator.set_faults(case.spec, FAULT_SEED)
    failed = stack.run("apply", expect=1)
    _assert_fired(case, emulator, APPLY_VERBS)
    emulator.set_faults("")
    assert case.apply_error is not None
    assert case.apply_error in failed.stdout + failed.stderr, failed.describe()
    assert "Apply failed" in failed.stdout, failed.describe()
    state = stack.state()
    assert not state["pending"], f"a failed apply left pending operations: {state['pending']}"
    errored = {address for address, res in state["resources"].items() if res["status"] == "error"}
    if case.name == "boot failure":
        assert errored, f"the instances that failed to boot are not in state:\n{failed.describe()}"
    converged = stack.run("apply")
    for address in errored:
        assert f"# {address} must be replaced" in converged.stdout, converged.describe()
    again = stack.run("apply")
    assert "No changes" in again.stdout, again.describe()
    replaced = {address: 1 for address in errored}
    assert_clean(stack, expect_live=True, replaced=replaced)
    return replaced


def play(case: FaultCase, emulator: EmulatorServer, root: Path) -> None:
    stack = Stack(root, emulator, case.name.replace(" ", "-"))
    stack.write_config(case.variant)
    try:
        replaced: dict[str, int] = {}
        if case.apply_error is not None:
            replaced = _failing_apply(stack, case)
        elif case.replace_under_fault:
            stack.run("apply")
            stack.write_config(
                replace(case.variant, sf_volume_size=REPLACING.sf_volume_size, fw_spot_gpu=REPLACING.fw_spot_gpu)
            )
            replaced = {address: 1 for address in REPLACED_BY_REPLACING}
            _phase(stack, case, "apply", replaced)
        else:
            _phase(stack, case, "apply", replaced)
        _phase(stack, case, "destroy", replaced)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.transcript()}") from None
    finally:
        emulator.set_faults("")
    TOTALS.faults.add(case.name)


@pytest.mark.slow
def test_every_fault_during_apply_and_destroy(lanes: list[EmulatorServer], tmp_path: Path) -> None:
    failures = run_in_lanes(CASES, lanes, lambda case, emulator: play(case, emulator, tmp_path))
    assert not failures, f"{len(failures)} of {len(CASES)} fault cases failed:\n" + "\n".join(failures)
