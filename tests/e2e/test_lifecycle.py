"""The CLI as a user runs it, on both providers: create, no-op, replace, drift, removal, destroy;
update in place; saved plans; confirmation without a TTY; secrets kept out of every output."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from lifecycle_support import EXAMPLES, Project, live_names, shadeform_trainer

pytest_plugins = ["lifecycle_support"]


def shadeform_config(
    *,
    gpu: str = "A6000",
    worker: bool = True,
    tags: tuple[str, ...] = ("team-ml",),
    prevent_destroy: bool = False,
) -> str:
    text = "\nproviders:\n  shadeform: {endpoint: embedded}\n" + shadeform_trainer(
        gpu=gpu, trainer=f"    tags: [{', '.join(tags)}]\n"
    )
    if prevent_destroy:
        text += "    lifecycle: {prevent_destroy: true}\n"
    if worker:
        text += """
  - name: worker
    provider: shadeform
    cloud: massedcompute
    region: us-central-1
    shade_instance_type: L40S
    ssh_key: deploy
"""
    return text


def forward_config(*, gpu: str = "A100", worker: bool = True) -> str:
    text = f"""
providers:
  forward: {{endpoint: embedded}}
ssh_keys:
  - name: deploy
    provider: forward
    public_key: ${{file:deploy.pub}}
volumes:
  - name: data
    provider: forward
    cloud: hyperstack
    region: us-east-1
    size_gb: 100
instances:
  - name: trainer
    provider: forward
    ssh_key: deploy
    volumes: [data]
    offering: {{gpu_type: {gpu}, num_gpus: 1, cloud: hyperstack, region: us-east-1}}
"""
    if worker:
        text += """
  - name: worker
    provider: forward
    ssh_key: deploy
    offering: {gpu_type: A6000, num_gpus: 1, max_hourly_price: 2.0}
"""
    return text


@dataclass(frozen=True)
class Lifecycle:
    provider: str
    config: Callable[..., str]
    changed_gpu: str
    forcing_attribute: str


LIFECYCLES = [
    Lifecycle("shadeform", shadeform_config, "A10", "shade_instance_type"),
    Lifecycle("forward", forward_config, "H100", "offering_id"),
]


@pytest.mark.parametrize("case", LIFECYCLES, ids=lambda c: c.provider)
def test_full_lifecycle(project: Project, case: Lifecycle) -> None:
    project.write(case.config())

    # Create.
    planned = project.run("plan", "--detailed-exitcode", expect=2)
    assert "Plan: 4 to add, 0 to change, 0 to destroy." in planned.stdout
    created = project.run("apply", "--auto-approve")
    assert "Apply complete! Resources: 4 added, 0 changed, 0 destroyed." in created.stdout
    assert live_names(project.live()) == ["data", "deploy", "trainer", "worker"]
    assert {entry.api for entry in project.ledger()} == {case.provider}
    listed = project.run("state", "list")
    assert listed.stdout.split() == [
        "ssh_keys.deploy",
        "volumes.data",
        "instances.trainer",
        "instances.worker",
    ]

    # A second run right after: nothing to do, no API write, no state write.
    before = project.files()
    again = project.run("apply", "--auto-approve")
    assert "No changes. Infrastructure matches the configuration." in again.stdout
    assert project.files() == before

    # A changed attribute the API cannot update replaces the instance (apply shows the plan first).
    old_trainer = project.resource_id("instances.trainer")
    project.write(case.config(gpu=case.changed_gpu))
    replaced = project.run("apply", "--auto-approve")
    assert "-/+ instances.trainer" in replaced.stdout
    assert f"{case.forcing_attribute} forces replacement" in replaced.stdout
    assert "Plan: 1 to add, 0 to change, 1 to destroy." in replaced.stdout
    assert "Apply complete! Resources: 1 added, 0 changed, 1 destroyed." in replaced.stdout
    new_trainer = project.resource_id("instances.trainer")
    assert new_trainer != old_trainer
    by_id = {entry.id: entry for entry in project.ledger()}
    assert by_id[old_trainer].deleted_at is not None
    assert by_id[new_trainer].deleted_at is None

    # Drift: the instance is deleted outside reconciler; the plan says so and apply re-creates it.
    project.delete_outside("instances.trainer")
    drifted = project.run("apply", "--auto-approve")
    assert "deleted outside reconciler" in drifted.stdout
    assert "+ instances.trainer" in drifted.stdout
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in drifted.stdout
    recreated = project.resource_id("instances.trainer")
    assert recreated not in (old_trainer, new_trainer)
    assert live_names(project.live()) == ["data", "deploy", "trainer", "worker"]
    # The object deleted outside is gone: nothing of it is left in state to clean up later.
    assert project.state()["deposed"] == []

    # A resource removed from the YAML is deleted, and only that one.
    worker_id = project.resource_id("instances.worker")
    project.write(case.config(gpu=case.changed_gpu, worker=False))
    removed = project.run("apply", "--auto-approve")
    assert "- instances.worker" in removed.stdout
    assert "Plan: 0 to add, 0 to change, 1 to destroy." in removed.stdout
    assert "instances.worker" not in project.state()["resources"]
    assert {entry.id: entry for entry in project.ledger()}[worker_id].deleted_at is not None

    # Destroy: nothing live, state empty.
    destroyed = project.run("destroy", "--auto-approve")
    assert "3 destroyed" in destroyed.stdout
    assert project.live() == []
    assert project.state()["resources"] == {}
    assert project.state()["pending"] == []
    # Key, volume, worker and three trainers (original, replacement, re-creation): nothing twice.
    assert len(project.ledger()) == 6


def test_saved_plan_shown_as_json_and_summary_then_applied(project: Project) -> None:
    project.write(shadeform_config())

    # With no TTY and no --auto-approve, apply shows the plan and refuses to go on.
    unapproved = project.run("apply", expect=1)
    assert "+ instances.trainer" in unapproved.stdout
    assert "standard input is not a terminal" in unapproved.stderr
    assert "--auto-approve" in unapproved.stderr
    assert project.ledger() == []

    project.run("plan", "-out", "plan.bin", "--detailed-exitcode", expect=2)
    assert not project.state_path.exists()
    assert project.live() == []

    as_json = json.loads(project.run("show", "-json", "plan.bin").stdout)
    assert as_json["format_version"] == "1.2"
    changes = {change["address"]: change for change in as_json["resource_changes"]}
    assert set(changes) == {"ssh_keys.deploy", "volumes.data", "instances.trainer", "instances.worker"}
    trainer = changes["instances.trainer"]
    assert trainer["type"] == "instances"
    assert trainer["name"] == "trainer"
    assert trainer["mode"] == "managed"
    assert trainer["change"]["actions"] == ["create"]
    assert trainer["change"]["before"] is None
    assert trainer["change"]["after"]["shade_instance_type"] == "A6000"

    assert "+ instances.trainer" in project.run("show", "plan.bin").stdout
    summary = project.run("show", "-summary", "plan.bin").stdout
    assert "| Address | Action | Reason | $/h change |" in summary
    assert "| `instances.trainer` | create |" in summary
    assert "4 to add" in summary

    # The first plan of a new configuration applies without a prompt, even with no TTY.
    applied = project.run("apply", "plan.bin")
    assert "Apply complete! Resources: 4 added, 0 changed, 0 destroyed." in applied.stdout
    assert live_names(project.live()) == ["data", "deploy", "trainer", "worker"]

    # An empty saved plan (a PR that changes nothing) applies without touching the state.
    empty = project.run("plan", "-out", "empty.bin", "--detailed-exitcode", expect=0)
    assert "No changes." in empty.stdout
    before = project.files()
    project.run("apply", "empty.bin")
    assert project.files() == before

    # Destroy needs the same approval.
    undestroyed = project.run("destroy", expect=1)
    assert "standard input is not a terminal" in undestroyed.stderr
    assert project.files() == before
    assert live_names(project.live()) == ["data", "deploy", "trainer", "worker"]


def test_saved_replacement_in_terraform_shape_and_stale_plans_refused(project: Project) -> None:
    project.write(shadeform_config(worker=False))
    project.run("apply", "--auto-approve")
    project.write(shadeform_config(worker=False, tags=("team-ml", "prod")))
    project.run("plan", "-out", "tags.bin")
    project.write(shadeform_config(worker=False, gpu="A10"))
    project.run("plan", "-out", "replace.bin")

    trainer = next(
        change
        for change in json.loads(project.run("show", "-json", "replace.bin").stdout)["resource_changes"]
        if change["address"] == "instances.trainer"
    )
    assert trainer["change"]["actions"] == ["delete", "create"]
    assert trainer["action_reason"] == "replace_because_cannot_update"
    assert ["shade_instance_type"] in trainer["change"]["replace_paths"]
    assert trainer["change"]["before"]["shade_instance_type"] == "A6000"
    assert trainer["change"]["after"]["shade_instance_type"] == "A10"

    project.run("apply", "replace.bin")
    before = project.files()
    ever_created = [(entry.id, entry.deleted_at) for entry in project.ledger()]

    # tags.bin was made from the state before replace.bin was applied: it is stale now.
    refused = project.run("apply", "tags.bin", expect=1)
    assert "stale" in refused.stderr
    assert "plan again" in refused.stderr
    assert project.files() == before
    assert [(entry.id, entry.deleted_at) for entry in project.ledger()] == ever_created


SECRET_TOKEN = "hf_TOKEN_e2e_do_not_print_4242"
SECRET_PASSWORD = "db-pass-e2e-7f3a9c"
SECRET_API_KEY = "sf-api-key-e2e-0b1c2d3e"
ROTATED_TOKEN = "hf_TOKEN_e2e_rotated_9191"


def sensitive_config() -> str:
    return """
providers:
  shadeform:
    api_key: ${env:SHADEFORM_API_KEY}
variables:
  hf_token:
    description: Hugging Face token for the model download
    sensitive: true
instances:
  - name: server
    provider: shadeform
    cloud: lambdalabs
    region: us-east-1
    shade_instance_type: A6000
    launch:
      type: docker
      image: vllm/vllm-openai:latest
      envs:
        HF_TOKEN: ${var.hf_token}
        DB_PASSWORD: {value: "${env:E2E_DB_PASSWORD}", sensitive: true}
        LOG_LEVEL: info
"""


def test_sensitive_values_never_reach_output_state_or_plan_files(project: Project) -> None:
    project.write(sensitive_config())
    project.env.update(
        {
            "RECONCILER_VAR_hf_token": SECRET_TOKEN,
            "E2E_DB_PASSWORD": SECRET_PASSWORD,
            "SHADEFORM_API_KEY": SECRET_API_KEY,
        }
    )
    saved = project.run("plan", "-out", "plan.bin")
    runs = [
        saved,
        project.run("plan", "--json"),
        project.run("show", "-json", "plan.bin"),
        project.run("show", "-summary", "plan.bin"),
        project.run("apply", "plan.bin"),
        project.run("show", "-json"),
    ]
    # Rotating the token replaces the instance: the diff is about the secret itself.
    rotated = project.run("apply", "--auto-approve", env={"RECONCILER_VAR_hf_token": ROTATED_TOKEN})
    assert "-/+ instances.server" in rotated.stdout
    assert "(sensitive)" in rotated.stdout
    runs.append(rotated)
    backup = project.state_path.with_name(project.state_path.name + ".backup").read_text(encoding="utf-8")
    runs.append(project.run("destroy", "--auto-approve", env={"RECONCILER_VAR_hf_token": ROTATED_TOKEN}))
    assert "(sensitive)" in saved.stdout

    plan_file = (project.root / "plan.bin").read_text(encoding="utf-8")
    state = project.state_path.read_text(encoding="utf-8")
    for secret in (SECRET_TOKEN, ROTATED_TOKEN, SECRET_PASSWORD, SECRET_API_KEY):
        for run in runs:
            assert secret not in run.output, run.describe()
        assert secret not in plan_file
        assert secret not in state
        assert secret not in backup
    # The values did reach the API (so the test is not vacuous); the emulator keeps no API key.
    sandbox = project.sandbox_path.read_text(encoding="utf-8")
    assert SECRET_TOKEN in sandbox and ROTATED_TOKEN in sandbox and SECRET_PASSWORD in sandbox
    assert SECRET_API_KEY not in sandbox


def test_rename_and_retag_update_in_place_then_state_rm_and_import(project: Project) -> None:
    project.write(shadeform_config(worker=False))
    project.run("apply", "--auto-approve")
    trainer = project.resource_id("instances.trainer")
    shown = json.loads(project.run("state", "show", "instances.trainer").stdout)
    assert shown["id"] == trainer
    assert shown["attributes"]["shade_instance_type"] == "A6000"

    # Rename (move the state entry, rename in YAML) and retag: Shadeform updates both in place.
    project.run("state", "mv", "instances.trainer", "instances.main")
    retagged = shadeform_config(worker=False, tags=("team-ml", "prod"))
    project.write(retagged.replace("name: trainer", "name: main"))
    renamed = project.run("apply", "--auto-approve")
    assert "~ instances.main" in renamed.stdout
    assert "update in-place" in renamed.stdout
    assert '"trainer" -> "main"' in renamed.stdout
    assert '+ "prod"' in renamed.stdout
    assert "forces replacement" not in renamed.stdout
    assert "Apply complete! Resources: 0 added, 1 changed, 0 destroyed." in renamed.stdout
    assert project.resource_id("instances.main") == trainer
    assert sorted(project.state()["resources"]["instances.main"]["attributes"]["tags"]) == ["prod", "team-ml"]
    assert [e.name for e in project.ledger() if e.kind == "instances"] == ["main"]

    # Forget it: it keeps running, the plan warns and shows how to adopt it; import adopts it.
    project.run("state", "rm", "instances.main")
    assert "instances.main" not in project.state()["resources"]
    assert [e.id for e in project.live() if e.kind == "instances"] == [trainer]
    warned = project.run("plan", "--detailed-exitcode", expect=2)
    assert f"reconciler import instances.main {trainer}" in warned.stdout
    project.run("import", "instances.main", trainer)
    assert project.resource_id("instances.main") == trainer
    settled = project.run("plan", "--detailed-exitcode", expect=0)
    assert "No changes." in settled.stdout
    assert len([e for e in project.ledger() if e.kind == "instances"]) == 1


def test_refresh_flags_targets_and_protected_resources(project: Project) -> None:
    project.write(shadeform_config(prevent_destroy=True))
    project.run("apply", "--auto-approve")
    worker = project.resource_id("instances.worker")
    project.delete_outside("instances.worker")
    before = project.files()

    # Without a refresh the plan cannot see the drift; a refresh-only plan reports it; neither writes.
    project.run("plan", "--refresh=false", "--detailed-exitcode", expect=0)
    drift = project.run("plan", "--refresh-only", "--detailed-exitcode", expect=2)
    assert "instances.worker" in drift.stdout and worker in drift.stdout
    assert project.files() == before

    # `refresh` records the drift in state and changes no resource.
    serial = project.serial()
    project.run("refresh")
    assert project.serial() == serial + 1
    assert "instances.worker" not in project.state()["resources"]
    assert [e for e in project.ledger() if e.deleted_at is None and e.name == "trainer"]

    # --target limits the plan to that resource (and what it depends on).
    targeted = project.run("plan", "--target", "instances.worker", "--detailed-exitcode", expect=2)
    assert "+ instances.worker" in targeted.stdout
    assert "instances.trainer" not in targeted.stdout
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in targeted.stdout

    # --replace asks for a replacement, which prevent_destroy refuses (naming it); so does destroy.
    forced = project.run("plan", "--replace", "instances.trainer", expect=1)
    assert (
        "instances.trainer has lifecycle.prevent_destroy set, but the plan would replace it" in forced.stderr
    )
    assert "replacement requested with --replace" in forced.stderr
    protected = project.run("destroy", "--auto-approve", expect=1)
    assert "instances.trainer has lifecycle.prevent_destroy set" in protected.stderr
    assert [e for e in project.ledger() if e.deleted_at is None and e.name == "trainer"]

    applied = project.run("apply", "--target", "instances.worker", "--auto-approve")
    assert "Apply complete! Resources: 1 added, 0 changed, 0 destroyed." in applied.stdout
    assert "instances.trainer" not in applied.stdout

    dot = project.run("graph").stdout
    assert dot.startswith("digraph")
    assert '"instances.trainer" -> "volumes.data"' in dot
    assert '"instances.worker" -> "ssh_keys.deploy"' in dot

    found = json.loads(
        project.run("offerings", "--gpu", "A100", "--num-gpus", "1", "--available", "--json").stdout
    )
    assert found and all(o["gpu_type"] == "A100" and o["num_gpus"] == 1 and o["available"] for o in found)
    prices = [o["hourly_price"] for o in found]
    assert prices == sorted(prices)


def example_configs() -> list[Path]:
    """Every configuration directory under examples/ (where *.yaml files are)."""
    return sorted({path.parent for path in EXAMPLES.rglob("*.yaml") if "state" not in path.parts})


@pytest.mark.parametrize("example", example_configs(), ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_every_example_validates_and_applies(tmp_path: Path, example: Path) -> None:
    project = Project.copy_of(example, tmp_path)
    project.run("validate")
    applied = project.run("apply", "--auto-approve")
    assert "Apply complete!" in applied.stdout
    assert project.live(), "the example created nothing"
    assert len(project.live()) == len(project.state()["resources"])
    project.run("plan", "--detailed-exitcode", expect=0)


def test_examples_are_found() -> None:
    found = {str(path.relative_to(EXAMPLES)) for path in example_configs()}
    assert {"quickstart", "ci/infra"} <= found
