"""The safety net under state identity, through the installed CLI: the same configuration with
its state lost track of plans to create everything again; the plan says which objects another
state already runs under those names, and apply refuses unless --allow-foreign-objects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from crash_support import EmulatorServer
from lifecycle_support import PUBLIC_KEY, run_cli

pytest_plugins = ["lifecycle_support"]


def make_served_config(root: Path, name: str, emulator: EmulatorServer, api_key: str) -> Path:
    """A configuration whose provider is the emulator server: one account every state sees."""
    root.mkdir(parents=True)
    (root / "deploy.pub").write_text(PUBLIC_KEY + "\n", encoding="utf-8")
    (root / "main.yaml").write_text(
        f"""\
name: {name}
providers:
  shadeform: {{endpoint: "{emulator.url}/shadeform/v1", api_key: {api_key}}}
ssh_keys:
  - {{name: deploy, provider: shadeform, public_key: "${{file:deploy.pub}}"}}
instances:
  - {{name: trainer, provider: shadeform, cloud: lambdalabs, region: us-east-1, shade_instance_type: A6000,
     ssh_key: deploy}}
""",
        encoding="utf-8",
    )
    return root


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    """One cloud every state sees, as a real provider account is."""
    server = EmulatorServer(tmp_path_factory.mktemp("identity-emulator"))
    yield server.start()
    server.stop()


def test_a_new_state_does_not_create_again_what_another_state_runs(tmp_path: Path, emulator: EmulatorServer) -> None:
    api_key = f"identity-{tmp_path.name}"
    infra = make_served_config(tmp_path / "infra", "gpu", emulator, api_key)
    run_cli(("apply", "--auto-approve"), infra)
    lineage = json.loads((infra / "state" / "gpu.json").read_text())["lineage"].replace("-", "")[:8]
    created = emulator.ledger(api_key)
    assert len(created) == 2

    # The same configuration with its state lost track of (here: another state file).
    fork = ("--state", str(tmp_path / "fork.json"))
    planned = run_cli(("plan", *fork), infra)
    warning = "Warning: the state is new, but 2 live objects under the names this plan creates"
    assert warning in planned.stdout, planned.describe()
    assert f"lineage {lineage}" in planned.stdout and "$0.80/h" in planned.stdout
    for entry in created:
        assert entry["id"] in planned.stdout, planned.describe()
    events = [json.loads(line) for line in run_cli(("plan", *fork, "--json"), infra).stdout.splitlines()]
    flagged = [e for e in events if e["type"] == "diagnostic" and "foreign_objects" in e]
    assert [sorted(f["address"] for f in e["foreign_objects"]) for e in flagged] == [
        ["instances.trainer", "ssh_keys.deploy"]
    ]
    assert {f["lineage"] for f in flagged[0]["foreign_objects"]} == {lineage}

    refused = run_cli(("apply", *fork, "--auto-approve"), infra, expect=1)
    assert "apply refused" in refused.stderr and "--allow-foreign-objects" in refused.stderr, refused.describe()
    assert len(emulator.ledger(api_key)) == 2 and not (tmp_path / "fork.json").exists()

    run_cli(("plan", *fork, "-out", "fork.bin"), infra)
    refused = run_cli(("apply", *fork, "fork.bin"), infra, expect=1)
    assert "apply refused" in refused.stderr, refused.describe()
    assert len(emulator.ledger(api_key)) == 2

    allowed = run_cli(("apply", *fork, "--auto-approve", "--allow-foreign-objects"), infra)
    assert "Apply complete! Resources: 2 added" in allowed.stdout, allowed.describe()
    assert len(emulator.ledger(api_key)) == 4
    # A state that already tracks objects is not new: its plan carries no such warning.
    assert "Warning: the state is new" not in run_cli(("plan",), infra).stdout
    for state in ((), fork):
        run_cli(("destroy", *state, "--auto-approve"), infra)
