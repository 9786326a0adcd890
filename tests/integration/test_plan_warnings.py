"""Plan-time warnings through the engine, against the emulator in-process: a pinned instance
whose price cap the market has moved past still plans (its pin holds), with a warning
whenever the plan reads the catalogue."""

from __future__ import annotations

from pathlib import Path

from reconciler import engine
from reconciler.applier import ApplyOptions
from reconciler.config import load_config
from reconciler.model import Action
from reconciler.planner import PlanOptions
from reconciler.state.local import LocalStateBackend

FAST = {"RECONCILER_EMULATOR_BOOT_SECONDS": "0.05", "RECONCILER_EMULATOR_DELETE_SECONDS": "0.05"}
CONFIG = """
providers:
  forward: {{endpoint: embedded}}
instances:
  - name: worker
    provider: forward
    offering: {{gpu_type: A100, num_gpus: 1, max_hourly_price: {cap}}}
"""


async def test_a_cap_below_every_offering_warns_while_the_pin_holds(tmp_path: Path) -> None:
    path = tmp_path / "main.yaml"
    backend = LocalStateBackend(tmp_path / "state" / "main.json")
    sandbox = tmp_path / "state" / "main.sandbox.json"
    path.write_text(CONFIG.format(cap=100))
    config = load_config(path)
    doc = backend.read()
    async with engine.open_providers(engine.providers_in_use(config, doc), sandbox, FAST) as providers:
        outcome = await engine.make_plan(providers, config, doc, PlanOptions())
        assert outcome.warnings == ()
        result = await engine.apply_plan(
            outcome.plan, outcome.state, backend, providers, ApplyOptions(poll_interval=0.02)
        )
    assert result.ok
    # The plan that pinned the offering had a cap of 0.01; prices have since moved above it.
    doc = backend.read()
    doc.resources["instances.worker"].attributes["offering"]["max_hourly_price"] = 0.01
    doc.serial += 1
    backend.write(doc)
    # A new instance makes the plan read the catalogue (a pinned one alone does not).
    path.write_text(CONFIG.format(cap=0.01) + "  - {name: extra, provider: forward, offering: {gpu_type: A100}}\n")
    config = load_config(path)
    async with engine.open_providers(engine.providers_in_use(config, doc), sandbox, FAST) as providers:
        outcome = await engine.make_plan(providers, config, backend.read(), PlanOptions())
    assert {str(c.address): c.action for c in outcome.plan.changes} == {
        "instances.worker": Action.NOOP, "instances.extra": Action.CREATE}
    [(address, message)] = outcome.warnings
    assert str(address) == "instances.worker"
    assert "max_hourly_price 0.01 is below every matching forward offering" in message
