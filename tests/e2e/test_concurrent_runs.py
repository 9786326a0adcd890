"""Concurrent runs and interrupts, with real processes and real signals.

Two `reconciler apply` processes on one state: exactly one proceeds, the other is refused
at once, naming who holds the lock; with `--lock-timeout` it waits its turn instead. A
first SIGINT lets the calls in flight finish and exits non-zero with a summary; a second
exits at once. Whatever happened, the state file is a complete document, the next run
converges, and the emulator's ledger shows nothing leaked and nothing duplicated.
"""

from __future__ import annotations

import getpass
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from crash_support import EmulatorServer, Run, Stack, assert_clean, wait_until

SLOW_BOOT_SECONDS = 2.0
REFUSAL_SECONDS = 1.0
SECOND_INTERRUPT_SECONDS = 2.0


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    """Instances take seconds to boot, so an apply holds the lock long enough to collide with."""
    server = EmulatorServer(tmp_path_factory.mktemp("concurrent-emulator"), boot_seconds=SLOW_BOOT_SECONDS)
    yield server.start()
    server.stop()


@pytest.fixture
def stack(emulator: EmulatorServer, tmp_path: Path) -> Iterator[Stack]:
    made = Stack(tmp_path, emulator, "shared")
    yield made
    emulator.release()


def test_two_applies_started_together_exactly_one_proceeds(stack: Stack) -> None:
    first = stack.start("apply")
    second = stack.start("apply")
    # Watch both, so each one's end is seen when it happens.
    wait_until(lambda: not (first.running() | second.running()), "both applies to end", 120)
    results = {run.pid: run.finish() for run in (first, second)}
    winners = [pid for pid, result in results.items() if result.returncode == 0]
    losers = [pid for pid, result in results.items() if result.returncode != 0]
    assert len(winners) == 1 and len(losers) == 1, "\n".join(r.describe() for r in results.values())
    winner, loser = results[winners[0]], results[losers[0]]
    assert loser.returncode == 1, loser.describe()
    refusal = loser.stderr
    assert "is locked" in refusal, loser.describe()
    for detail in (f"pid {winners[0]}", getpass.getuser(), socket.gethostname(), "'apply'", "since"):
        assert detail in refusal, f"the refusal does not name the holder's {detail!r}:\n{refusal}"
    assert "--lock-timeout" in refusal, refusal
    assert "Apply complete!" in winner.stdout, winner.describe()
    # Refused at once: it did not wait for the winner, whose instances take seconds to boot.
    assert loser.seconds < winner.seconds - SLOW_BOOT_SECONDS + REFUSAL_SECONDS, (
        f"refused after {loser.seconds:.1f}s while the winner took {winner.seconds:.1f}s"
    )
    assert "No changes" in stack.run("apply").stdout
    assert_clean(stack, expect_live=True)


def test_lock_timeout_waits_for_the_holder_then_finds_nothing_to_do(stack: Stack) -> None:
    first = stack.start("apply")
    wait_until(
        lambda: any(e["kind"] == "instances" for e in stack.ledger()) or not first.running(),
        "the first apply to start creating",
    )
    assert first.running(), first.finish().describe()
    waiting = stack.start("apply", "--lock-timeout", "60s")
    done_first = first.finish()
    done_waiting = waiting.finish()
    assert done_first.returncode == 0, done_first.describe()
    assert done_waiting.returncode == 0, done_waiting.describe()
    assert "No changes" in done_waiting.stdout, done_waiting.describe()
    assert waiting.ended is not None and first.ended is not None and waiting.ended >= first.ended
    assert_clean(stack, expect_live=True)


def _interrupted_while_a_write_is_held(stack: Stack, write: int) -> Run:
    """An apply (one call at a time) whose `write`-th call the emulator holds, sent SIGINT."""
    emulator = stack.emulator
    emulator.arm_hold(write, "before")
    run = stack.start("apply", "--parallelism", "1")
    wait_until(lambda: emulator.hold_status()["held"] or not run.running(), f"write {write} to be held")
    assert run.running(), run.finish().describe()
    run.interrupt()
    wait_until(lambda: "Interrupt received" in run.stderr() or not run.running(), "the interrupt notice")
    return run


def test_first_interrupt_waits_for_calls_in_flight_then_stops(stack: Stack) -> None:
    run = _interrupted_while_a_write_is_held(stack, write=6)
    # The held call is still in flight, so the run is still waiting for it.
    assert run.running(), run.finish().describe()
    stack.emulator.release()
    result = run.finish()
    assert result.returncode != 0, result.describe()
    assert "Apply interrupted:" in result.stdout, result.describe()
    assert "not started" in result.stdout, result.describe()
    state = stack.state()
    assert not state["pending"], f"calls in flight were not recorded: {state['pending']}"
    assert len(state["resources"]) == 6, sorted(state["resources"])
    stack.converge("apply")
    assert_clean(stack, expect_live=True)


def test_second_interrupt_exits_at_once_and_state_stays_valid(stack: Stack) -> None:
    run = _interrupted_while_a_write_is_held(stack, write=4)
    interrupted_at = time.monotonic()
    run.interrupt()
    wait_until(lambda: not run.running(), "the second interrupt to end the run", SECOND_INTERRUPT_SECONDS)
    assert time.monotonic() - interrupted_at < SECOND_INTERRUPT_SECONDS
    result = run.finish()
    assert result.returncode == 130, result.describe()
    stack.state()  # complete JSON, whatever instant the exit hit
    stack.emulator.release()
    stack.converge("apply")
    assert_clean(stack, expect_live=True)
