"""The applier and engine against the emulator in-process, faults switched on per test."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from reconciler import engine
from reconciler.applier import ApplyOptions, ApplyResult
from reconciler.config import load_config
from reconciler.emulator.embedded import EmbeddedCloud
from reconciler.errors import ProviderError
from reconciler.model import Action, Address, Kind
from reconciler.planner import PlanOptions
from reconciler.state.local import LocalStateBackend
from reconciler.state.model import StateDocument

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAcUIS47SFVib3yJlqOwvcrX5PH+CxglMj9MWWZzgI2a ci@example"

CONFIG = f"""
ssh_keys:
  - {{name: deploy, provider: shadeform, public_key: "{PUBLIC_KEY}"}}
  - {{name: fwd, provider: forward, public_key: "{PUBLIC_KEY}"}}
volumes:
  - {{name: data, provider: shadeform, cloud: lambdalabs, region: us-east-1, size_gb: 100}}
instances:
  - name: trainer
    provider: shadeform
    cloud: lambdalabs
    region: us-east-1
    shade_instance_type: A6000
    ssh_key: deploy
    volumes: [data]
  - name: worker
    provider: forward
    count: 2
    ssh_key: fwd
    offering: {{gpu_type: A100, num_gpus: 1}}
"""

FAST = {"RECONCILER_EMULATOR_BOOT_SECONDS": "0.05", "RECONCILER_EMULATOR_DELETE_SECONDS": "0.05"}


class Run:
    def __init__(self, tmp_path: Path, text: str = CONFIG) -> None:
        (tmp_path / "main.yaml").write_text(text)
        self.config = load_config(tmp_path / "main.yaml")
        self.backend = LocalStateBackend(tmp_path / "state" / "main.json")
        self.sandbox = tmp_path / "state" / "main.sandbox.json"

    async def plan_and_apply(
        self, faults: str = "", options: PlanOptions | None = None, create_timeout: float = 900.0
    ) -> ApplyResult:
        doc = self.backend.read()
        env = {**FAST, "RECONCILER_EMULATOR_FAULTS": faults} if faults else FAST
        settings = engine.providers_in_use(self.config, doc)
        async with engine.open_providers(settings, self.sandbox, env) as providers:
            outcome = await engine.make_plan(providers, self.config, doc, options or PlanOptions())
            return await engine.apply_plan(
                outcome.plan,
                outcome.state,
                self.backend,
                providers,
                ApplyOptions(poll_interval=0.02, create_timeout=create_timeout),
            )

    async def pending_actions(self) -> dict[str, Action]:
        doc = self.backend.read()
        settings = engine.providers_in_use(self.config, doc)
        async with engine.open_providers(settings, self.sandbox, FAST) as providers:
            outcome = await engine.make_plan(providers, self.config, doc, PlanOptions())
        return {str(c.address): c.action for c in outcome.plan.changes if c.action is not Action.NOOP}

    def ledger(self) -> list[dict]:  # type: ignore[type-arg]
        with EmbeddedCloud(self.sandbox) as cloud:
            return [entry.model_dump() for entry in cloud.world.ledger()]

    def live_ids(self) -> set[str]:
        return {e["id"] for e in self.ledger() if e.get("deleted_at") is None}


def state_ids(doc: StateDocument) -> set[str]:
    return {r.id for r in doc.resources.values()}


async def test_apply_converges_and_a_second_plan_has_nothing_to_do(tmp_path: Path) -> None:
    run = Run(tmp_path)
    result = await run.plan_and_apply()
    assert result.ok and result.added == 6
    doc = run.backend.read()
    assert {r.status for r in doc.resources.values()} == {"active"}
    assert await run.pending_actions() == {}
    assert run.live_ids() == state_ids(doc)
    assert len(run.ledger()) == 6


async def test_the_lost_response_fault_really_loses_the_answer(tmp_path: Path) -> None:
    run = Run(tmp_path)
    env = {**FAST, "RECONCILER_EMULATOR_FAULTS": "shadeform.ssh_keys.create=lost_response"}
    settings = engine.providers_in_use(run.config, run.backend.read())
    async with engine.open_providers(settings, run.sandbox, env) as providers:
        with pytest.raises(ProviderError) as caught:
            await providers["shadeform"].create(Kind.SSH_KEY, {"name": "k", "public_key": PUBLIC_KEY}, "rc-1-2")
    assert caught.value.error_type == "create_outcome_unknown"
    assert len(run.ledger()) == 1, "the write was applied although the answer was lost"


async def test_lost_create_response_is_adopted_by_marker_not_created_twice(tmp_path: Path) -> None:
    run = Run(tmp_path)
    result = await run.plan_and_apply("shadeform.instances.create=lost_response;forward.instances.create=lost_response")
    assert result.ok, result.failed
    assert len([e for e in run.ledger() if e["kind"] == "instances"]) == 3, "each instance created once"
    assert run.live_ids() == state_ids(run.backend.read())


async def test_failed_volume_stops_its_instance_and_the_rest_completes(tmp_path: Path) -> None:
    run = Run(tmp_path)
    result = await run.plan_and_apply("shadeform.volumes.create=capacity")
    assert not result.ok
    assert [key for key, _ in result.failed] == ["create:volumes.data"]
    assert result.not_started == ["create:instances.trainer"]
    doc = run.backend.read()
    assert "ssh_keys.deploy" in doc.resources and "instances.worker[1]" in doc.resources
    assert doc.pending == []
    assert run.live_ids() == state_ids(doc)
    again = await run.plan_and_apply()
    assert again.ok and again.added == 2
    assert await run.pending_actions() == {}


async def test_instance_that_fails_to_boot_is_recorded_then_replaced(tmp_path: Path) -> None:
    run = Run(tmp_path)
    result = await run.plan_and_apply("shadeform.instances.create=boot_failure")
    assert not result.ok
    doc = run.backend.read()
    assert doc.resources["instances.trainer"].status == "error", "never forgotten"
    assert await run.pending_actions() == {"instances.trainer": Action.REPLACE}
    fixed = await run.plan_and_apply()
    assert fixed.ok
    assert run.live_ids() == state_ids(run.backend.read())


async def test_interrupt_before_start_runs_nothing_and_keeps_state_valid(tmp_path: Path) -> None:
    run = Run(tmp_path)
    doc = run.backend.read()
    settings = engine.providers_in_use(run.config, doc)
    async with engine.open_providers(settings, run.sandbox, FAST) as providers:
        outcome = await engine.make_plan(providers, run.config, doc, PlanOptions())
        stop = asyncio.Event()
        stop.set()
        result = await engine.apply_plan(
            outcome.plan, outcome.state, run.backend, providers, ApplyOptions(), stop=stop
        )
    assert result.interrupted and not result.succeeded and len(result.not_started) == 6
    assert run.backend.read().resources == {}


async def test_destroy_removes_everything_and_state_writes_are_coalesced(tmp_path: Path) -> None:
    run = Run(tmp_path)
    await run.plan_and_apply()
    serial_after_create = run.backend.read().serial
    # 6 creates each need 2 durable points plus status updates; coalescing keeps the count lower.
    assert serial_after_create < 6 * 3
    result = await run.plan_and_apply(options=PlanOptions(destroy=True))
    assert result.ok and result.destroyed == 6
    assert run.backend.read().resources == {}
    assert run.live_ids() == set()


async def test_instance_stuck_pending_past_create_timeout_is_recorded_then_replaced(tmp_path: Path) -> None:
    run = Run(tmp_path)
    result = await run.plan_and_apply("shadeform.instances.create=stuck_pending", create_timeout=0.3)
    assert [key for key, _ in result.failed] == ["create:instances.trainer"]
    doc = run.backend.read()
    assert doc.resources["instances.trainer"].status == "create_timeout", "never forgotten"
    assert await run.pending_actions() == {"instances.trainer": Action.REPLACE}
    fixed = await run.plan_and_apply()
    assert fixed.ok
    assert run.live_ids() == state_ids(run.backend.read())


async def test_emulator_block_of_the_config_switches_faults_on(tmp_path: Path) -> None:
    run = Run(tmp_path, CONFIG + "emulator:\n  boot_seconds: 0.05\n  faults: shadeform.volumes.create=capacity\n")
    doc = run.backend.read()
    settings = engine.providers_in_use(run.config, doc)
    async with engine.open_providers(settings, run.sandbox, {}, run.config.emulator) as providers:
        outcome = await engine.make_plan(providers, run.config, doc, PlanOptions())
        result = await engine.apply_plan(
            outcome.plan, outcome.state, run.backend, providers, ApplyOptions(poll_interval=0.02)
        )
    assert [key for key, _ in result.failed] == ["create:volumes.data"]


async def test_moving_a_resource_to_another_provider_deletes_it_where_it_lives(tmp_path: Path) -> None:
    """The delete of the old object goes to the provider state recorded it under, not the new one."""
    run = Run(tmp_path, key_only("shadeform"))
    assert (await run.plan_and_apply()).ok
    old_id = run.backend.read().resources["ssh_keys.deploy"].id
    run.config = Run(tmp_path, key_only("forward")).config
    moved = await run.plan_and_apply()
    assert moved.ok
    assert run.backend.read().resources["ssh_keys.deploy"].provider == "forward"
    assert old_id not in run.live_ids(), "the Shadeform key was left running"
    assert run.live_ids() == state_ids(run.backend.read())


def key_only(provider: str) -> str:
    return f'ssh_keys:\n  - {{name: deploy, provider: {provider}, public_key: "{PUBLIC_KEY}"}}\n'



async def test_unknown_outcome_then_a_refusal_keeps_the_pending_record(tmp_path: Path) -> None:
    """A lost answer the lagging list cannot confirm, then a clear refusal: the first create may
    exist, so the record stays for the next run to settle (adopt), never cleared into a leak."""
    text = CONFIG + "providers:\n  forward:\n    list_consistency_seconds: 0.1\n"
    run = Run(tmp_path, text)
    faults = "forward.instances.create=lost_response@times=1;forward.instances.create=capacity@every=2"
    env = {**FAST, "RECONCILER_EMULATOR_FAULTS": faults, "RECONCILER_EMULATOR_LIST_LAG_SECONDS": "2"}
    doc = run.backend.read()
    settings = engine.providers_in_use(run.config, doc)
    async with engine.open_providers(settings, run.sandbox, env) as providers:
        outcome = await engine.make_plan(providers, run.config, doc, PlanOptions(targets=(WORKER0,)))
        result = await engine.apply_plan(
            outcome.plan, outcome.state, run.backend, providers, ApplyOptions(poll_interval=0.02)
        )
    assert not result.ok
    pending = run.backend.read().pending
    assert [p.address for p in pending] == ["instances.worker[0]"]
    settled = await run.plan_and_apply()
    assert settled.ok
    workers = [e for e in run.ledger() if e["name"].startswith("worker-0")]
    assert len(workers) == 1, "adopted, not created twice"
    assert run.live_ids() == state_ids(run.backend.read())


WORKER0 = Address.parse("instances.worker[0]")


async def test_failed_create_before_destroy_keeps_the_running_object(tmp_path: Path) -> None:
    cbd = CONFIG.replace(
        "    shade_instance_type: A6000\n",
        "    shade_instance_type: A6000\n    lifecycle: {create_before_destroy: true}\n",
    )
    run = Run(tmp_path, cbd)
    assert (await run.plan_and_apply()).ok
    old_id = run.backend.read().resources["instances.trainer"].id
    run.config = Run(tmp_path, cbd.replace("shade_instance_type: A6000", "shade_instance_type: A100")).config
    failed = await run.plan_and_apply("shadeform.instances.create=capacity")
    assert not failed.ok
    doc = run.backend.read()
    assert doc.resources["instances.trainer"].id == old_id and doc.deposed == []
    assert old_id in run.live_ids()
    assert await run.pending_actions() == {"instances.trainer": Action.REPLACE}


async def test_rate_limited_creates_are_sent_again_after_the_wait(tmp_path: Path) -> None:
    run = Run(tmp_path)
    result = await run.plan_and_apply("shadeform.*.create=rate_limit@retry_after=0,times=2")
    assert result.ok, result.failed
    assert len(run.ledger()) == 6, "each created once"


async def test_sensitive_env_reported_back_in_clear_is_no_drift_and_never_stored(tmp_path: Path) -> None:
    secret = "hunter2-token-value"
    text = CONFIG.replace(
        "    volumes: [data]\n",
        f'    volumes: [data]\n    envs:\n      HF_TOKEN: {{value: "{secret}", sensitive: true}}\n',
        1,
    )
    run = Run(tmp_path, text)
    assert (await run.plan_and_apply()).ok
    assert await run.pending_actions() == {}, "the API's clear value is not a change"
    doc = run.backend.read()
    settings = engine.providers_in_use(run.config, doc)
    async with engine.open_providers(settings, run.sandbox, FAST) as providers:
        refreshed, drift = await engine.refresh_only(providers, run.config, doc)
    assert drift == ()
    assert secret not in refreshed.to_json_text() and secret not in run.backend.path.read_text()


ANYWHERE = """
instances:
  - name: trainer
    offering: {providers: [shadeform, forward], gpu_type: A100, num_gpus: 1, max_hourly_price: 2.0}
    fallback: {max_attempts: 5, on_boot_failure: true}
"""


async def test_failover_onto_another_provider_deletes_a_failed_boot_where_it_is(tmp_path: Path) -> None:
    """Forward sold out; the first Shadeform candidate ends in error at boot and is deleted on
    Shadeform, not on the provider the plan first chose; the next Shadeform candidate lands."""
    run = Run(tmp_path, ANYWHERE)
    result = await run.plan_and_apply(
        "forward.instances.create=capacity;shadeform.instances.create=boot_failure@times=1"
    )
    assert result.ok
    held = run.backend.read().resources["instances.trainer"]
    assert held.provider == "shadeform"
    instances = [e for e in run.ledger() if e["kind"] == "instances"]
    assert [e["api"] for e in instances] == ["shadeform", "shadeform"]
    assert run.live_ids() == {held.id}
