"""Shared machinery of the crash, fault and concurrency tests: a served emulator, a stack
of ~20 resources on both providers, the installed `reconciler` command run as a user runs
it, and an audit of what the emulator's own ledger says against the state file.

The audit is the point of these tests: after any crash, fault or interruption, and the
re-runs that follow, nothing may be live that state does not track (an orphan: money
burning unseen) and no address may have been created more often than the plans asked
(a duplicate: a doubled bill). Every audit and kill point is added to `TOTALS`, which
the tests' conftest prints at the end of the session.

Emulator timings: instances boot in BOOT_SECONDS and take DELETE_SECONDS to go; Forward's
lists lag writes by LIST_LAG_SECONDS, and each stack tells reconciler they may lag by that
plus CONSISTENCY_MARGIN_SECONDS, as a user who knows the provider would configure it.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import TOTALS

from reconciler.emulator import tenant_id

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAcUIS47SFVib3yJlqOwvcrX5PH+CxglMj9MWWZzgI2a crash@example"
BOOT_SECONDS = 0.3
DELETE_SECONDS = 0.2
LIST_LAG_SECONDS = 1.0
CONSISTENCY_MARGIN_SECONDS = 0.5
CLI_POLL_SECONDS = "0.1"  # --poll-interval of every run: instances are polled every 0.1 s
RUN_TIMEOUT_SECONDS = 120.0
HOLD_DEADLINE_SECONDS = 30.0
POLL_INTERVAL_SECONDS = 0.03
NAME_MARKER_SEPARATOR = "--rc-"
# The caller's variables that would change what a run does; the tests set their own.
_INHERITED_PREFIXES = ("RECONCILER_VAR_", "RECONCILER_EMULATOR_")
_INHERITED_NAMES = ("SHADEFORM_API_KEY", "FORWARD_API_KEY", "NO_COLOR", "FORCE_COLOR")


# ----------------------------------------------------------------------------- processes


def reconciler_executable() -> Path:
    """The console script installed beside this interpreter, as a user has it on PATH."""
    path = Path(sys.executable).parent / "reconciler"
    if not path.exists():
        pytest.skip(f"the reconciler command is not installed beside {Path(sys.executable).name}")
    return path


def cli_environment() -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in _INHERITED_NAMES and not name.startswith(_INHERITED_PREFIXES)
    }
    env["COLUMNS"] = "200"
    return env


def wait_until(condition: Callable[[], bool], what: str, deadline_seconds: float = 30.0) -> None:
    """Poll `condition` until it holds; fail naming `what` when the deadline passes."""
    deadline = time.monotonic() + deadline_seconds
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {deadline_seconds:g}s waiting for {what}")
        time.sleep(POLL_INTERVAL_SECONDS)


@dataclass
class RunResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        return (
            f"`reconciler {' '.join(self.args)}` exited {self.returncode} after {self.seconds:.1f}s\n"
            f"--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-4000:]}"
        )


class Run:
    """One `reconciler` process started in the background, output captured to files."""

    def __init__(self, args: Sequence[str], cwd: Path, log_dir: Path) -> None:
        self.args = tuple(args)
        stamp = f"{time.monotonic_ns()}"
        self.stdout_path = log_dir / f"run-{stamp}.out"
        self.stderr_path = log_dir / f"run-{stamp}.err"
        self.started = time.monotonic()
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [str(reconciler_executable()), *self.args],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=cli_environment(),
            )
        self.ended: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        if self.process.poll() is None:
            return True
        if self.ended is None:
            self.ended = time.monotonic()
        return False

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def kill_hard(self) -> None:
        """kill -9: no handler runs, nothing is flushed, the lock dies with the process."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=RUN_TIMEOUT_SECONDS)
        TOTALS.kills += 1

    def interrupt(self) -> None:
        self.process.send_signal(signal.SIGINT)
        TOTALS.interrupts += 1

    def finish_within(self, seconds: float) -> bool:
        """Whether the process ends within `seconds` (a chosen kill time, not a synchronisation)."""
        try:
            self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return False
        self.running()
        return True

    def finish(self, timeout: float = RUN_TIMEOUT_SECONDS) -> RunResult:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"`reconciler {' '.join(self.args)}` still running after {timeout:g}s\n{self.stdout()[-3000:]}"
            ) from None
        if self.ended is None:
            self.ended = time.monotonic()
        return RunResult(
            self.args, self.process.returncode, self.stdout(), self.stderr(), self.ended - self.started
        )


# ----------------------------------------------------------------------------- emulator


class EmulatorServer:
    """`reconciler emulator serve --port 0` as a real subprocess, and its control API."""

    def __init__(
        self,
        log_dir: Path,
        *,
        boot_seconds: float = BOOT_SECONDS,
        delete_seconds: float = DELETE_SECONDS,
        list_lag_seconds: float = LIST_LAG_SECONDS,
        env: dict[str, str] | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.env = env or {}
        self.boot_seconds = boot_seconds
        self.delete_seconds = delete_seconds
        self.list_lag_seconds = list_lag_seconds
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._control: httpx.Client | None = None

    def start(self) -> EmulatorServer:
        out_path = self.log_dir / "emulator.out"
        err_path = self.log_dir / "emulator.err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            self._process = subprocess.Popen(
                [
                    str(reconciler_executable()),
                    "emulator",
                    "serve",
                    "--port",
                    "0",
                    "--boot-seconds",
                    str(self.boot_seconds),
                    "--delete-seconds",
                    str(self.delete_seconds),
                    "--list-lag-seconds",
                    str(self.list_lag_seconds),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env={**cli_environment(), **self.env},
            )

        def announced() -> bool:
            assert self._process is not None
            if self._process.poll() is not None:
                raise AssertionError(f"emulator exited {self._process.returncode}: {err_path.read_text()}")
            for line in out_path.read_text().splitlines():
                if line.startswith("reconciler emulator listening on "):
                    self.url = line.rsplit(" ", 1)[1].strip()
                    return True
            return False

        wait_until(announced, "the emulator to announce its URL")
        self._control = httpx.Client(base_url=f"{self.url}/_emulator", timeout=30.0)
        return self

    def stop(self) -> None:
        if self._control is not None:
            self._control.close()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    @property
    def control(self) -> httpx.Client:
        assert self._control is not None, "the emulator is not started"
        return self._control

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.control.request(method, path, json=body)
        assert response.status_code == 200, f"{method} /_emulator{path}: {response.status_code} {response.text}"
        return response.json()

    def ledger(self, api_key: str) -> list[dict[str, Any]]:
        """Everything the tenant of `api_key` ever created, in both APIs, with status now."""
        return list(self._call("GET", f"/ledger?tenant={tenant_id(api_key)}")["ledger"])

    def arm_hold(self, after_writes: int, phase: str) -> None:
        self._call("POST", "/hold", {"after_writes": after_writes, "phase": phase})

    def hold_status(self) -> dict[str, Any]:
        return dict(self._call("GET", "/hold"))

    def release(self) -> None:
        self._call("POST", "/release")

    def set_faults(self, spec: str, seed: int = 0) -> None:
        self._call("PUT", "/faults", {"spec": spec, "seed": seed})

    def fault_counters(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/faults")["counters"])

    def requests(self) -> dict[str, int]:
        return dict(self._call("GET", "/stats")["requests"])


# ----------------------------------------------------------------------------- the stack


@dataclass(frozen=True)
class Variant:
    """Knobs of the stack's configuration; the default is the ~20-resource baseline."""

    sf_volume_size: int = 100
    fw_spot_gpu: str = "A100"
    provider_timeout: float | None = None
    extra_list_lag: float = 0.0  # lag a fault adds on top of the emulator's


BASELINE = Variant()
# Replaces 3 Shadeform volumes, the 3 instances mounting them, and the 4 Forward spot workers.
REPLACING = Variant(sf_volume_size=200, fw_spot_gpu="A6000")
REPLACED_BY_REPLACING = (
    "volumes.sf-data[0]",
    "volumes.sf-data[1]",
    "volumes.sf-data[2]",
    "instances.sf-gpu[0]",
    "instances.sf-gpu[1]",
    "instances.sf-gpu[2]",
    "instances.fw-spot[0]",
    "instances.fw-spot[1]",
    "instances.fw-spot[2]",
    "instances.fw-spot[3]",
)

# (kind, name, count) of every declared resource; the config text below must agree.
DECLARED: tuple[tuple[str, str, int | None], ...] = (
    ("ssh_keys", "sf-key", None),
    ("ssh_keys", "sf-key-spare", None),
    ("ssh_keys", "fw-key", None),
    ("ssh_keys", "fw-key-spare", None),
    ("volumes", "sf-data", 3),
    ("volumes", "fw-data", 2),
    ("instances", "sf-gpu", 3),
    ("instances", "sf-solo", 2),
    ("instances", "fw-mounted", 2),
    ("instances", "fw-spot", 4),
)


def declared_addresses() -> dict[tuple[str, str], str]:
    """(kind, name the API sees) -> address, for every resource of the stack."""
    found = {}
    for kind, name, count in DECLARED:
        if count is None:
            found[(kind, name)] = f"{kind}.{name}"
        else:
            for index in range(count):
                found[(kind, f"{name}-{index}")] = f"{kind}.{name}[{index}]"
    return found


STACK_SIZE = len(declared_addresses())


def _provider_block(name: str, endpoint: str, api_key: str, variant: Variant, list_lag: float) -> str:
    lines = [f"  {name}:", f"    endpoint: {endpoint}", f"    api_key: {api_key}"]
    if name == "forward":
        consistency = list_lag + variant.extra_list_lag + CONSISTENCY_MARGIN_SECONDS
        lines.append(f"    list_consistency_seconds: {consistency:g}")
    if variant.provider_timeout is not None:
        lines.append(f"    timeout: {variant.provider_timeout}")
    return "\n".join(lines)


def stack_config(emulator: EmulatorServer, api_key: str, variant: Variant = BASELINE) -> str:
    """The stack: 4 keys, 5 volumes, 11 instances on both providers, with references."""
    lag = emulator.list_lag_seconds
    shadeform = _provider_block("shadeform", f"{emulator.url}/shadeform/v1", api_key, variant, lag)
    forward = _provider_block("forward", f"{emulator.url}/forward/v1", api_key, variant, lag)
    return f"""\
providers:
{shadeform}
{forward}

ssh_keys:
  - name: sf-key
    provider: shadeform
    public_key: {PUBLIC_KEY}
  - name: sf-key-spare
    provider: shadeform
    public_key: {PUBLIC_KEY}
  - name: fw-key
    provider: forward
    public_key: {PUBLIC_KEY}
  - name: fw-key-spare
    provider: forward
    public_key: {PUBLIC_KEY}

volumes:
  - name: sf-data
    provider: shadeform
    count: 3
    cloud: lambdalabs
    region: us-east-1
    size_gb: {variant.sf_volume_size}
  - name: fw-data
    provider: forward
    count: 2
    cloud: hyperstack
    region: eu-central-1
    size_gb: 100

instances:
  - name: sf-gpu
    provider: shadeform
    count: 3
    cloud: lambdalabs
    region: us-east-1
    shade_instance_type: A6000
    ssh_key: sf-key
    volumes: ["sf-data[${{count.index}}]"]
  - name: sf-solo
    provider: shadeform
    count: 2
    cloud: lambdalabs
    region: us-east-1
    shade_instance_type: A10
  - name: fw-mounted
    provider: forward
    count: 2
    ssh_key: fw-key
    volumes: ["fw-data[${{count.index}}]"]
    offering: {{gpu_type: A6000, num_gpus: 1, cloud: hyperstack, region: eu-central-1}}
  - name: fw-spot
    provider: forward
    count: 4
    ssh_key: fw-key
    offering: {{gpu_type: {variant.fw_spot_gpu}, num_gpus: 1, max_hourly_price: 2.0}}
"""


class Stack:
    """One configuration directory and its state, on its own emulator tenant."""

    def __init__(self, root: Path, emulator: EmulatorServer, name: str) -> None:
        self.root = root / name
        self.root.mkdir(parents=True)
        self.logs = self.root / "logs"
        self.logs.mkdir()
        self.emulator = emulator
        self.api_key = f"crash-{name}-{time.monotonic_ns()}"
        self.runs: list[Run] = []
        self.write_config(BASELINE)

    @property
    def state_path(self) -> Path:
        return self.root / "state" / f"{self.root.name}.json"

    def write_config(self, variant: Variant) -> None:
        (self.root / "main.yaml").write_text(stack_config(self.emulator, self.api_key, variant))

    def start(self, command: str, *extra: str) -> Run:
        """`reconciler apply|destroy --auto-approve` in the background."""
        run = Run([command, "--auto-approve", "--poll-interval", CLI_POLL_SECONDS, *extra], self.root, self.logs)
        self.runs.append(run)
        return run

    def run(self, command: str, *extra: str, expect: int | None = 0) -> RunResult:
        result = self.start(command, *extra).finish()
        if expect is not None:
            assert result.returncode == expect, result.describe()
        return result

    def plan(self, *extra: str) -> RunResult:
        run = Run(["plan", *extra], self.root, self.logs)
        self.runs.append(run)
        return run.finish()

    def transcript(self, tail: int = 2500) -> str:
        """Every run of this stack, in order, with the end of its output (for failure reports)."""
        parts = []
        for run in self.runs:
            code = run.process.returncode
            parts.append(
                f"=== reconciler {' '.join(run.args)} -> {'killed' if code == -signal.SIGKILL else code}\n"
                f"{run.stdout()[-tail:]}{run.stderr()[-tail:]}"
            )
        return "\n".join(parts)

    def state(self) -> dict[str, Any]:
        """The state file, which must always be a complete JSON document."""
        text = self.state_path.read_text(encoding="utf-8")
        data: dict[str, Any] = json.loads(text)
        return data

    def check_state_after_kill(self) -> None:
        """Whatever instant a kill hit, the state file is absent (killed before its first
        write) or a complete document, and its backup too."""
        for path in (self.state_path, self.state_path.with_name(self.state_path.name + ".backup")):
            if path.exists():
                json.loads(path.read_text(encoding="utf-8"))

    def ledger(self) -> list[dict[str, Any]]:
        return self.emulator.ledger(self.api_key)

    def converge(self, command: str = "apply") -> RunResult:
        """Run to completion, then once more: the second run must find nothing to do."""
        self.run(command)
        again = self.run(command)
        assert "No changes" in again.stdout, f"a second {command} still had work to do\n{again.describe()}"
        return again


# ----------------------------------------------------------------------------- audit


@dataclass
class Audit:
    orphans: list[str]
    duplicates: list[str]
    problems: list[str]

    def describe(self) -> str:
        return "\n".join(
            [f"orphan: {o}" for o in self.orphans]
            + [f"duplicate: {d}" for d in self.duplicates]
            + [f"problem: {p}" for p in self.problems]
        )


def _api_name(entry: Mapping[str, Any]) -> str:
    """The name the user gave, without the ownership marker suffix some kinds carry."""
    name = str(entry["name"])
    head, sep, _ = name.rpartition(NAME_MARKER_SEPARATOR)
    return head if sep else name


def audit_stack(
    stack: Stack,
    *,
    expect_live: bool,
    replaced: Mapping[str, int] | None = None,
) -> Audit:
    """Compare the emulator's ledger with the state file, and record the totals.

    `expect_live`: the stack should be fully applied (True) or destroyed (False).
    `replaced`: how many legitimate replacements each address went through; every
    address is otherwise created exactly once over the whole test.
    """
    state = stack.state()
    ledger = stack.ledger()
    addresses = declared_addresses()
    tracked = {res["id"]: address for address, res in state.get("resources", {}).items()}
    tracked.update({dep["id"]: dep["address"] for dep in state.get("deposed", [])})
    problems: list[str] = []
    if state.get("pending"):
        problems.append(f"state still has pending operations: {state['pending']}")
    if state.get("deposed"):
        problems.append(f"state still has deposed objects: {state['deposed']}")
    live = [e for e in ledger if e["status"] not in ("deleted", "deleting")]
    orphans = [
        f"{e['api']} {e['kind']} {e['id']} ({e['name']}, {e['status']}) is live but not in state"
        for e in live
        if e["id"] not in tracked
    ]
    created: Counter[str] = Counter()
    live_per_address: dict[str, list[str]] = {}
    for entry in ledger:
        address = addresses.get((entry["kind"], _api_name(entry)))
        if address is None:
            problems.append(f"the ledger has {entry['kind']} {entry['name']} that the stack never declared")
            continue
        created[address] += 1
        if entry in live:
            live_per_address.setdefault(address, []).append(entry["id"])
    duplicates = [
        f"{address} has {len(ids)} live objects: {', '.join(ids)}"
        for address, ids in sorted(live_per_address.items())
        if len(ids) > 1
    ]
    for address in sorted(set(addresses.values())):
        allowed = 1 + (replaced or {}).get(address, 0)
        if created[address] > allowed:
            duplicates.append(f"{address} was created {created[address]} times (plans asked for {allowed})")
        if created[address] < 1:
            problems.append(f"{address} was never created")
    in_state = set(state.get("resources", {}))
    if expect_live:
        if in_state != set(addresses.values()):
            problems.append(
                f"state differs from config: missing {sorted(set(addresses.values()) - in_state)}, "
                f"extra {sorted(in_state - set(addresses.values()))}"
            )
        live_ids = {e["id"] for e in live}
        for address, res in state.get("resources", {}).items():
            if res["id"] not in live_ids:
                problems.append(f"{address} is in state as {res['id']}, which is not live")
    else:
        if in_state:
            problems.append(f"state still tracks {sorted(in_state)} after destroy")
        if live:
            problems.append(f"{len(live)} objects still live after destroy")
    TOTALS.audits += 1
    TOTALS.orphans += len(orphans)
    TOTALS.duplicates += len(duplicates)
    return Audit(orphans, duplicates, problems)


def assert_clean(stack: Stack, *, expect_live: bool, replaced: Mapping[str, int] | None = None) -> None:
    audit = audit_stack(stack, expect_live=expect_live, replaced=replaced)
    assert not (audit.orphans or audit.duplicates or audit.problems), audit.describe()


# ----------------------------------------------------------------------------- kill points


def kill_at_write(
    stack: Stack, command: str, after_writes: int, phase: str, label: str, parallelism: int = 1
) -> RunResult:
    """Start `command`, hold its `after_writes`-th API write (`phase` it is applied), kill -9
    the process while the write is held, then let the write go.

    With parallelism 1 the held write is the only call in flight, so write N is exactly the
    boundary between step N-1 and step N. Returns what the killed run printed; fails if the
    run ended before reaching the write.
    """
    emulator = stack.emulator
    emulator.arm_hold(after_writes, phase)
    run = stack.start(command, "--parallelism", str(parallelism))
    try:
        wait_until(
            lambda: emulator.hold_status()["held"] or not run.running(),
            f"write {after_writes} ({phase}) of {command}",
            HOLD_DEADLINE_SECONDS,
        )
        held = emulator.hold_status()
        assert held["held"], (
            f"{command} ended before its write {after_writes} ({phase}):\n{run.finish().describe()}"
        )
        run.kill_hard()
    finally:
        if run.running():
            run.kill_hard()
        emulator.release()
    TOTALS.kill_points.add(f"{label}:{command}:write{after_writes}:{phase}")
    return run.finish()


# ----------------------------------------------------------------------------- lanes


def run_in_lanes(
    scenarios: Sequence[Any],
    lanes: Sequence[EmulatorServer],
    play: Callable[[Any, EmulatorServer], None],
) -> list[str]:
    """Play every scenario, each lane (an emulator of its own, since holds are global to an
    emulator) taking the next one when it is free. Returns one report per failed scenario."""
    pending: queue.SimpleQueue[Any] = queue.SimpleQueue()
    for scenario in scenarios:
        pending.put(scenario)
    failures: list[str] = []
    guard = threading.Lock()

    def lane(emulator: EmulatorServer) -> None:
        while True:
            try:
                scenario = pending.get_nowait()
            except queue.Empty:
                return
            try:
                play(scenario, emulator)
            except Exception as exc:  # noqa: BLE001 - every scenario's failure is reported
                with guard:
                    failures.append(f"--- {scenario}\n{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=lane, args=(emulator,), daemon=True) for emulator in lanes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


# ----------------------------------------------------------------------------- failover


FAILOVER_ATTEMPTS = 3


class FailoverStack(Stack):
    """One Forward instance chosen by requirements, failing over along three candidates."""

    def write_config(self, variant: Variant) -> None:
        lag = self.emulator.list_lag_seconds
        forward = _provider_block("forward", f"{self.emulator.url}/forward/v1", self.api_key, variant, lag)
        (self.root / "main.yaml").write_text(
            f"""\
providers:
{forward}

instances:
  - name: trainer
    provider: forward
    offering: {{gpu_type: A100, num_gpus: 1, max_hourly_price: 2.0}}
    fallback: {{max_attempts: {FAILOVER_ATTEMPTS}}}
"""
        )


def audit_failover(stack: Stack, *, expect_live: bool) -> Audit:
    """At most one live instance, the one state tracks; nothing pending; totals recorded."""
    state = stack.state()
    live = [e for e in stack.ledger() if e["kind"] == "instances" and e["status"] not in ("deleted", "deleting")]
    tracked = {res["id"] for res in state.get("resources", {}).values()}
    orphans = [f"{e['id']} ({e['name']}, {e['status']}) is live but not in state" for e in live if e["id"] not in tracked]
    duplicates = [f"{len(live)} live instances for instances.trainer"] if len(live) > 1 else []
    problems = [f"state still has pending operations: {state['pending']}"] if state.get("pending") else []
    if expect_live and len(live) != 1:
        problems.append(f"{len(live)} live instances, expected 1")
    if not expect_live and (live or tracked):
        problems.append(f"after destroy: {len(live)} live, state tracks {sorted(tracked)}")
    TOTALS.audits += 1
    TOTALS.orphans += len(orphans)
    TOTALS.duplicates += len(duplicates)
    return Audit(orphans, duplicates, problems)


CROSS_PROVIDER_ATTEMPTS = 4  # three Forward candidates are cheaper than Shadeform's first


class CrossProviderFailoverStack(Stack):
    """One instance whose provider is chosen, with a key on both providers: Forward sold out,
    so failover crosses to Shadeform on the last attempt."""

    def write_config(self, variant: Variant) -> None:
        lag = self.emulator.list_lag_seconds
        shadeform = _provider_block("shadeform", f"{self.emulator.url}/shadeform/v1", self.api_key, variant, lag)
        forward = _provider_block("forward", f"{self.emulator.url}/forward/v1", self.api_key, variant, lag)
        (self.root / "main.yaml").write_text(
            f"""\
providers:
{shadeform}
{forward}

ssh_keys:
  - name: deploy
    providers: [shadeform, forward]
    public_key: {PUBLIC_KEY}

instances:
  - name: trainer
    ssh_key: deploy
    offering: {{providers: [shadeform, forward], gpu_type: A100, num_gpus: 1, max_hourly_price: 2.0}}
    fallback: {{max_attempts: {CROSS_PROVIDER_ATTEMPTS}}}
"""
        )


def audit_cross_provider(stack: Stack, *, expect_live: bool) -> Audit:
    """`audit_failover` over both providers, and the two key objects neither orphaned nor doubled."""
    audit = audit_failover(stack, expect_live=expect_live)
    tracked = {res["id"] for res in stack.state().get("resources", {}).values()}
    keys = [e for e in stack.ledger() if e["kind"] == "ssh_keys" and e["status"] not in ("deleted", "deleting")]
    orphans = [f"key {e['id']} ({e['api']}) is live but not in state" for e in keys if e["id"] not in tracked]
    providers = sorted(str(e["api"]) for e in keys)
    duplicates = [f"keys live on {providers}"] if len(providers) != len(set(providers)) else []
    problems = []
    if expect_live and providers != ["forward", "shadeform"]:
        problems.append(f"keys live on {providers}, expected one on each provider")
    TOTALS.orphans += len(orphans)
    TOTALS.duplicates += len(duplicates)
    return Audit(audit.orphans + orphans, audit.duplicates + duplicates, audit.problems + problems)
