"""A provider reconciler does not ship goes through validate, plan, apply, crash recovery and
destroy once its spec is registered: nothing under `reconciler/` names it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from third_provider import ACME

from reconciler import engine
from reconciler.applier import ApplyOptions, ApplyResult
from reconciler.config import config_json_schema, load_config
from reconciler.emulator.embedded import EmbeddedCloud
from reconciler.errors import ConfigError
from reconciler.model import Action, Kind
from reconciler.planner import PlanOptions
from reconciler.provider_spec import provider_names, provider_registered
from reconciler.state.local import LocalStateBackend
from reconciler.state.model import StateDocument

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAcUIS47SFVib3yJlqOwvcrX5PH+CxglMj9MWWZzgI2a ci@example"
CONFIG = f"""
ssh_keys:
  - {{name: deploy, provider: acme, public_key: "{PUBLIC_KEY}"}}
volumes:
  - {{name: data, provider: acme, region: eu-1, size_gb: 50}}
instances:
  - name: trainer
    provider: acme
    offering: {{gpu_type: A10, num_gpus: 1}}
    image: ubuntu-22.04
    ssh_key: deploy
    volumes: [data]
    lifecycle: {{ignore_changes: [image]}}
"""
FAST = {"RECONCILER_EMULATOR_BOOT_SECONDS": "0.05", "RECONCILER_EMULATOR_DELETE_SECONDS": "0.05"}


@pytest.fixture
def acme() -> Iterator[None]:
    with provider_registered(ACME):
        yield
    assert "acme" not in provider_names()


class Crash(BaseException):
    """The process dying: nothing after it runs."""


class CrashBeforeRecordingInstance(LocalStateBackend):
    """A state file whose owner dies after the instance's create was answered, before the
    answer is recorded: state keeps only the pending record written before the call."""

    def write(self, doc: StateDocument, **kwargs: Any) -> None:
        if "instances.trainer" in doc.resources:
            raise Crash
        super().write(doc, **kwargs)


class Run:
    def __init__(self, tmp_path: Path, text: str = CONFIG) -> None:
        (tmp_path / "main.yaml").write_text(text)
        self.config = load_config(tmp_path / "main.yaml")
        self.path = tmp_path / "state" / "main.json"
        self.backend = LocalStateBackend(self.path)
        self.sandbox = tmp_path / "state" / "main.sandbox.json"

    async def apply(self, options: PlanOptions | None = None, backend: LocalStateBackend | None = None) -> ApplyResult:
        backend = backend or self.backend
        doc = backend.read()
        async with engine.open_providers(engine.providers_in_use(self.config, doc), self.sandbox, FAST) as providers:
            outcome = await engine.make_plan(providers, self.config, doc, options or PlanOptions())
            return await engine.apply_plan(
                outcome.plan, outcome.state, backend, providers, ApplyOptions(poll_interval=0.02)
            )

    async def changes(self) -> dict[str, Action]:
        doc = self.backend.read()
        async with engine.open_providers(engine.providers_in_use(self.config, doc), self.sandbox, FAST) as providers:
            outcome = await engine.make_plan(providers, self.config, doc, PlanOptions())
        return {str(c.address): c.action for c in outcome.plan.changes if c.action is not Action.NOOP}

    def ledger(self) -> list[dict[str, Any]]:
        with EmbeddedCloud(self.sandbox) as cloud:
            return [entry.model_dump() for entry in cloud.world.ledger(api="acme")]


def test_validate_knows_the_registered_provider_and_its_own_fields(tmp_path: Path, acme: None) -> None:
    run = Run(tmp_path)
    trainer = next(r for a, r in run.config.resources.items() if a.kind is Kind.INSTANCE)
    assert trainer.provider == "acme" and trainer.attributes["image"] == "ubuntu-22.04"
    assert run.config.providers["acme"].name == "acme"
    schema = config_json_schema()
    assert "acme" in schema["properties"]["providers"]["propertyNames"]["enum"]
    (tmp_path / "bad.yaml").write_text(CONFIG.replace("image: ubuntu", "imagee: ubuntu"))
    with pytest.raises(ConfigError, match="imagee"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "remote.yaml").write_text(CONFIG + "providers:\n  acme: {endpoint: 'https://api.acme.invalid/v1'}\n")
    with pytest.raises(ConfigError) as missing:
        load_config(tmp_path / "remote.yaml", environ={})
    assert "ACME_API_KEY" in str(missing.value) + str(missing.value.hint)


def test_an_unregistered_provider_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "main.yaml").write_text(CONFIG)
    with pytest.raises(ConfigError, match="unknown provider 'acme'"):
        load_config(tmp_path / "main.yaml")


async def test_plan_apply_crash_recovery_and_destroy(tmp_path: Path, acme: None) -> None:
    run = Run(tmp_path)
    crashing = CrashBeforeRecordingInstance(run.path)
    with pytest.raises(Crash):
        await run.apply(backend=crashing)
    left = run.backend.read()
    assert [(p.op, p.address) for p in left.pending] == [("create", "instances.trainer")]
    assert "instances.trainer" not in left.resources
    created = [e for e in run.ledger() if e["kind"] == "instances"]
    assert len(created) == 1, "the create was sent before the crash"

    settled = await run.apply()
    assert settled.ok, settled.failed
    doc = run.backend.read()
    assert doc.pending == []
    trainer = doc.resources["instances.trainer"]
    assert trainer.id == created[0]["id"], "the object the crashed run created is adopted"
    assert trainer.attributes["machine"] == "a10.1x", "the cheapest A10 machine is pinned"
    assert doc.resources["volumes.data"].provider == "acme"
    assert len([e for e in run.ledger() if e["kind"] == "instances"]) == 1, "never created twice"
    assert await run.changes() == {}

    destroyed = await run.apply(PlanOptions(destroy=True))
    assert destroyed.ok and destroyed.destroyed == 3
    assert run.backend.read().resources == {}
    assert {e["status"] for e in run.ledger()} <= {"deleted", "deleting"}
