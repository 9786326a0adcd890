"""The CI recipe of examples/ci run end to end the way a CI job runs it: a plan stage on each
pull request and an apply stage after merge, as separate processes sharing only the plan
file and the state (a local file, or PostgreSQL when a URL is given)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import yaml
from lifecycle_support import (
    CLI_TIMEOUT_SECONDS,
    EXAMPLES,
    CliResult,
    Project,
    cli_environment,
    live_names,
    reconciler_executable,
)
from support import reachable_pg_url, scratch_schema

from reconciler.emulator import World

CI_EXAMPLE = EXAMPLES / "ci"
FIRST_FLEET = ["ci-deploy", "ci-deploy-forward", "inference", "worker-0", "worker-1"]


class Checkout:
    """A CI job's working copy: the repository root with ci/pipeline.sh and ci/infra/."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pipeline = root / "ci" / "pipeline.sh"
        self.infra = Project(root / "ci" / "infra")

    def stage(self, stage: str, env: Mapping[str, str] | None = None, expect: int | None = 0) -> CliResult:
        completed = subprocess.run(
            [str(self.pipeline)],
            cwd=self.root,
            env=cli_environment(
                {"RECONCILER_STAGE": stage, "RECONCILER": str(reconciler_executable()), **(env or {})}
            ),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_SECONDS,
            check=False,
        )
        result = CliResult(
            (f"RECONCILER_STAGE={stage}", "ci/pipeline.sh"),
            completed.returncode,
            completed.stdout,
            completed.stderr,
        )
        if expect is not None:
            assert result.returncode == expect, result.describe()
        return result

    def edit_config(self, old: str, new: str) -> None:
        path = self.infra.root / "main.yaml"
        text = path.read_text(encoding="utf-8")
        assert old in text, f"examples/ci/infra/main.yaml no longer contains {old!r}"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.fixture
def checkout(tmp_path: Path) -> Checkout:
    root = tmp_path / "repo"
    shutil.copytree(CI_EXAMPLE, root / "ci", ignore=shutil.ignore_patterns("state", "*.bin"))
    return Checkout(root)


def test_pipeline_plans_pull_requests_and_applies_them_after_merge(checkout: Checkout) -> None:
    # Pull request 1: the plan stage changes nothing and leaves a plan and its summary.
    planned = checkout.stage("plan")
    assert "changes planned" in planned.stdout
    summary = (checkout.root / "plan-summary.md").read_text(encoding="utf-8")
    assert "| `instances.inference` | create |" in summary
    assert "| `instances.worker[1]` | create |" in summary
    assert "**Plan: 5 to add, 0 to change, 0 to destroy.**" in summary
    assert "```mermaid\nflowchart LR\n" in summary
    assert not checkout.infra.state_path.exists()
    assert checkout.infra.ledger() == []

    # Merged: the apply stage runs the saved plan, with no prompt and no TTY.
    applied = checkout.stage("apply")
    assert "Apply complete! Resources: 5 added, 0 changed, 0 destroyed." in applied.stdout
    assert live_names(checkout.infra.live()) == FIRST_FLEET

    # Two pull requests are planned against the same state; the first one merged wins.
    checkout.edit_config("default: 2\n", "default: 3\n")
    checkout.stage("plan", {"RECONCILER_PLAN_FILE": "scale.bin", "RECONCILER_SUMMARY_FILE": "scale.md"})
    scale = (checkout.root / "scale.md").read_text(encoding="utf-8")
    assert "| `instances.worker[2]` | create |" in scale
    assert "1 to add" in scale
    checkout.edit_config("default: 3\n", "default: 2\n")
    checkout.edit_config("tags: [ci-managed]", "tags: [ci-managed, prod]")
    checkout.stage("plan", {"RECONCILER_PLAN_FILE": "tags.bin", "RECONCILER_SUMMARY_FILE": "tags.md"})
    assert "| `instances.inference` | update |" in (checkout.root / "tags.md").read_text(encoding="utf-8")

    checkout.edit_config("default: 2\n", "default: 3\n")  # main now holds the scale-up
    checkout.stage("apply", {"RECONCILER_PLAN_FILE": "scale.bin"})
    assert live_names(checkout.infra.live()) == [*FIRST_FLEET, "worker-2"]

    before = checkout.infra.files()
    stale = checkout.stage("apply", {"RECONCILER_PLAN_FILE": "tags.bin"}, expect=1)
    assert "the saved plan is stale" in stale.stderr
    assert checkout.infra.files() == before
    assert live_names(checkout.infra.live()) == [*FIRST_FLEET, "worker-2"]


def test_pipeline_refuses_a_missing_stage_or_plan(checkout: Checkout) -> None:
    wrong = checkout.stage("deploy", expect=1)
    assert "set RECONCILER_STAGE to plan or apply (got 'deploy')" in wrong.stderr
    missing = checkout.stage("apply", expect=1)
    assert "no saved plan at plan.bin; run the plan stage first" in missing.stderr
    assert not checkout.infra.state_dir.exists()


def test_pipeline_fails_when_the_configuration_is_invalid(checkout: Checkout) -> None:
    checkout.edit_config("    region: us-east-1\n", "    regoin: us-east-1\n")
    failed = checkout.stage("plan", expect=1)
    assert "unknown key 'regoin'" in failed.stderr
    assert not (checkout.root / "plan.bin").exists()
    assert not checkout.infra.state_dir.exists()


@pytest.fixture
def pg_url() -> str:
    return reachable_pg_url(what="the CI pipeline test")


@pytest.fixture
def pg_schema(pg_url: str) -> Iterator[str]:
    with scratch_schema(pg_url, "e2e_ci") as name:
        yield name


def test_pipeline_keeps_state_in_postgresql_when_given_a_url(
    checkout: Checkout, pg_url: str, pg_schema: str
) -> None:
    team_state = {
        "RECONCILER_STATE_URL": pg_url,
        "RECONCILER_STATE_SCHEMA": pg_schema,
        "RECONCILER_STATE_STACK": "gpu-fleet",
    }
    checkout.stage("plan", team_state)
    checkout.stage("apply", team_state)

    # The embedded cloud of a PostgreSQL-backed stack lives beside the config, named after the stack.
    sandbox = checkout.infra.state_dir / "gpu-fleet.sandbox.json"
    assert live_names([e for e in World.load(sandbox).ledger() if e.deleted_at is None]) == FIRST_FLEET

    # No local state file: the state is the stack in PostgreSQL.
    assert not checkout.infra.state_path.exists()
    listed = checkout.infra.run(
        "state",
        "list",
        "--backend-config",
        "type=postgres",
        "--backend-config",
        f"url={pg_url}",
        "--backend-config",
        f"schema={pg_schema}",
        "--backend-config",
        "stack=gpu-fleet",
    )
    assert listed.stdout.split() == [
        "ssh_keys.ci-deploy",
        "ssh_keys.ci-deploy-forward",
        "instances.inference",
        "instances.worker[0]",
        "instances.worker[1]",
    ]

    # The next pull request plans against the state in PostgreSQL: nothing to do.
    checkout.stage("plan", team_state)
    assert "No changes." in (checkout.root / "plan-summary.md").read_text(encoding="utf-8")


def test_github_workflow_plans_pull_requests_and_applies_the_saved_plan_on_merge() -> None:
    workflow = yaml.safe_load((CI_EXAMPLE / "github-actions.yml").read_text(encoding="utf-8"))
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as a boolean
    assert set(triggers) == {"pull_request", "push"}
    assert triggers["push"]["branches"] == ["main"]
    assert workflow["env"]["RECONCILER_STATE_URL"] == "${{ secrets.RECONCILER_STATE_URL }}"
    assert "password" not in workflow["env"]["RECONCILER_STATE_URL"].lower()

    plan, apply = workflow["jobs"]["plan"], workflow["jobs"]["apply"]
    assert plan["if"] == "github.event_name == 'pull_request'"
    assert apply["if"] == "github.event_name == 'push'"
    assert apply["concurrency"] == {"group": "reconciler-apply", "cancel-in-progress": False}

    def stage_step(job: dict[str, object], stage: str) -> dict[str, object]:
        steps = job["steps"]
        assert isinstance(steps, list)
        found = [s for s in steps if s.get("env", {}).get("RECONCILER_STAGE") == stage]
        assert len(found) == 1, f"one step with RECONCILER_STAGE={stage}"
        assert found[0]["run"] == "ci/pipeline.sh"
        return found[0]

    stage_step(plan, "plan")
    stage_step(apply, "apply")
    plan_runs = "\n".join(str(s.get("run", "")) for s in plan["steps"])
    assert "gh pr comment" in plan_runs and "--body-file plan-summary.md" in plan_runs
    upload = next(s for s in plan["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert "plan.bin" in upload["with"]["path"]
    apply_runs = "\n".join(str(s.get("run", "")) for s in apply["steps"])
    assert 'gh run download "$run" --name "reconciler-plan-$pr"' in apply_runs
    # The apply job never plans again: it only runs the reviewed plan.
    assert "RECONCILER_STAGE: plan" not in yaml.safe_dump(apply)
