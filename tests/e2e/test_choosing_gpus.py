"""Choosing GPUs through the installed command: requirements ranked into a pinned choice, the
plan saying why, and capacity failover down the plan's ranked list during apply."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lifecycle_support import PUBLIC_KEY, Project, live_names, run_cli

pytest_plugins = ["lifecycle_support"]

SOLD_OUT = "forward.instances.create=capacity"


def trainer_config(*, attempts: int | None = 3, max_price: float = 4.0) -> str:
    text = f"""
providers:
  forward: {{endpoint: embedded}}
instances:
  - name: trainer
    provider: forward
    offering:
      gpu_type: [A100, H100]
      num_gpus: 1
      min_vram_per_gpu_gb: 40
      max_hourly_price: {max_price}
      exclude_regions: [eu-north-1]
"""
    if attempts is not None:
        text += f"    fallback: {{max_attempts: {attempts}}}\n"
    return text


def ranked(project: Project, plan_file: str = "plan.bin") -> list[dict[str, object]]:
    saved = json.loads((project.root / plan_file).read_text(encoding="utf-8"))
    (change,) = [c for c in saved["changes"] if c["address"] == "instances.trainer"]
    candidates: list[dict[str, object]] = change["candidates"]
    return candidates


def test_requirements_choose_the_cheapest_say_why_and_stay_pinned(tmp_path: Path) -> None:
    project = Project.create(tmp_path, config=trainer_config(attempts=None))
    # Run from another directory with a relative -f, as a CI job would.
    plan = run_cli(["plan", "-f", "stack/main.yaml"], tmp_path)
    assert "# (cheapest of " in plan.stdout
    assert "# (next: forward " in plan.stdout
    assert "on no capacity" not in plan.stdout  # no fallback: apply tries nothing else

    project.run("apply", "--auto-approve")
    held = project.state()["resources"]["instances.trainer"]
    assert f"forward {held['attributes']['offering_id']}" not in plan.stdout  # labels are for people
    assert f"${held['hourly_price']:.2f}/h" in plan.stdout.split("cheapest of", 1)[1].splitlines()[0]
    assert project.run("plan", "--detailed-exitcode").returncode == 0

    # --reselect chooses again; on an unchanged market it chooses the same offering.
    reselected = project.run("plan", "--reselect", "--detailed-exitcode")
    assert reselected.returncode == 0, reselected.describe()


def test_failover_skips_the_first_two_sold_out_candidates(project: Project) -> None:
    project.write(trainer_config(attempts=3))
    project.run("plan", "-out", "plan.bin")
    candidates = ranked(project)
    assert len(candidates) == 3

    applied = project.run("apply", "plan.bin", env={"RECONCILER_EMULATOR_FAULTS": f"{SOLD_OUT}@times=2"})
    assert f"no capacity on {candidates[0]['label']}; attempt 2 of 3: {candidates[1]['label']}" in applied.stdout
    assert f"no capacity on {candidates[1]['label']}; attempt 3 of 3: {candidates[2]['label']}" in applied.stdout
    assert "Apply complete! Resources: 1 added" in applied.stdout

    held = project.state()["resources"]["instances.trainer"]
    assert held["attributes"]["offering_id"] == candidates[2]["offering_id"]
    assert held["attributes"]["offering"]["selected"] == candidates[2]["offering_id"]
    assert held["hourly_price"] == candidates[2]["hourly_price"]
    assert project.state()["pending"] == []
    assert live_names(project.live()) == ["trainer"]
    # The landed choice is pinned: nothing to do on the next plan.
    assert project.run("plan", "--detailed-exitcode").returncode == 0


def test_no_capacity_in_any_candidate_is_reported_apart_and_creates_nothing(project: Project) -> None:
    project.write(trainer_config(attempts=2))
    project.run("plan", "-out", "plan.bin")
    candidates = ranked(project)

    failed = project.run("apply", "plan.bin", "--json", expect=1, env={"RECONCILER_EMULATOR_FAULTS": SOLD_OUT})
    events = [json.loads(line) for line in failed.stdout.splitlines() if line.startswith("{")]
    fallbacks = [e for e in events if e["type"] == "apply_fallback"]
    assert [(e["hook"]["refused"], e["hook"]["next"], e["hook"]["attempt"]) for e in fallbacks] == [
        (candidates[0]["label"], candidates[1]["label"], 2)
    ]
    (summary,) = [e for e in events if e["type"] == "change_summary"]
    assert summary["changes"]["no_capacity"] == 1
    assert "1 found no capacity, 0 failed" in summary["@message"]
    (errored,) = [e for e in events if e["type"] == "apply_errored"]
    expected = "; ".join(str(c["label"]) for c in candidates)
    assert f"instances.trainer: no capacity in 2 candidates: {expected}" in errored["hook"]["error"]

    assert project.live() == []
    assert project.state()["resources"] == {}
    assert project.state()["pending"] == []


def test_a_saved_plan_fails_over_only_inside_its_own_list(project: Project) -> None:
    project.write(trainer_config(attempts=2))
    project.run("plan", "-out", "plan.bin")
    candidates = ranked(project)
    # The configuration now allows more attempts; the saved plan still carries two.
    project.write(trainer_config(attempts=6))

    failed = project.run("apply", "plan.bin", expect=1, env={"RECONCILER_EMULATOR_FAULTS": SOLD_OUT})
    assert "no capacity in 2 candidates" in failed.output
    assert project.live() == []

    # A new plan; one refusal, and the create lands on that plan's second candidate.
    project.run("plan", "-out", "again.bin")
    again = ranked(project, "again.bin")
    project.run("apply", "again.bin", env={"RECONCILER_EMULATOR_FAULTS": f"{SOLD_OUT}@times=1"})
    landed = project.state()["resources"]["instances.trainer"]["attributes"]["offering_id"]
    assert landed == again[1]["offering_id"]
    assert len(again) == 6 and again[:2] == candidates  # the new plan carries the new limit


def test_fallback_without_requirements_is_refused_before_any_call(project: Project) -> None:
    project.write(
        """
providers:
  forward: {endpoint: embedded}
instances:
  - name: trainer
    provider: forward
    offering_id: spot_coff_x
    fallback: {max_attempts: 2}
"""
    )
    refused = project.run("plan", expect=1)
    assert "main.yaml:8" in refused.output
    assert "fallback needs offering requirements" in refused.output
    assert not project.state_path.exists()


def test_a_budget_fails_the_plan_and_bounds_failover(project: Project, tmp_path: Path) -> None:
    project.write(trainer_config(attempts=3) + "policy: {max_hourly_spend: 1.0}\n")
    refused = run_cli(["plan", "-f", str(project.root / "main.yaml")], tmp_path, expect=1)
    assert "above policy.max_hourly_spend $1.00/h; largest: instances.trainer $1." in refused.output
    assert not project.state_path.exists()
    assert project.ledger() == []

    # Room for the choice and a candidate a few cents dearer, not for the rest.
    project.write(trainer_config(attempts=6) + "policy: {max_monthly_spend: 900}\n")
    planned = project.run("plan", "-out", "plan.bin")
    assert "fallback candidates left out to stay inside the budget" in planned.output
    candidates = ranked(project)
    assert 1 < len(candidates) < 6
    assert max(float(str(c["hourly_price"])) for c in candidates) <= 900 / 730

    failed = project.run("apply", "plan.bin", expect=1, env={"RECONCILER_EMULATOR_FAULTS": SOLD_OUT})
    assert f"no capacity in {len(candidates)} candidates" in failed.output
    assert project.live() == []


def test_offerings_without_a_configuration_filter_by_requirement_keys(tmp_path: Path) -> None:
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    args = ["offerings", "--gpu", "H100", "--gpu", "A100", "--min-vram", "80", "--min-vcpus", "16"]
    args += ["--exclude-cloud", "crusoe", "--max-price-per-gpu", "3", "--available", "--json"]
    found = json.loads(run_cli(args, empty).stdout)
    assert {o["provider"] for o in found} == {"shadeform", "forward"}
    for o in found:
        assert o["gpu_type"] in ("H100", "A100") and o["vram_per_gpu_gb"] >= 80 and o["vcpus"] >= 16
        assert o["cloud"] != "crusoe" and o["price_per_gpu_hour"] <= 3 and o["available"]
        assert o["memory_gb"] and o["storage_gb"] and o["interconnect"] and o["boot_seconds"]
    assert [o["hourly_price"] for o in found] == sorted(o["hourly_price"] for o in found)
    assert list(empty.iterdir()) == []  # nothing written where it ran

    table = run_cli(["offerings", "--gpu", "H100", "--num-gpus", "8", "--rental-type", "on_demand"], empty).stdout
    assert "vCPUs" in table and "interconnect" in table and "boot" in table
    assert "spot" not in table


def test_cost_shows_burn_rate_and_spend_per_resource_and_in_total(project: Project) -> None:
    project.write(trainer_config(attempts=None))
    project.write(
        """
providers:
  shadeform: {endpoint: embedded}
instances:
  - name: worker
    provider: shadeform
    cloud: lambdalabs
    region: us-east-1
    shade_instance_type: A6000
""",
        "shadeform.yaml",
    )
    assert "no state" in project.run("cost", expect=1).output
    project.run("apply", "--auto-approve")
    resources = project.state()["resources"]

    report = json.loads(project.run("cost", "--json").stdout)
    lines = {line["address"]: line for line in report["resources"]}
    assert lines["instances.worker"]["spent_from"] == "api"  # Shadeform's cost_estimate
    assert lines["instances.trainer"]["spent_from"] == "elapsed"  # Forward reports none
    assert report["total"]["hourly"] == round(sum(r["hourly_price"] for r in resources.values()), 6)
    assert "total" in project.run("cost").stdout

    project.delete_outside("instances.trainer")
    after = json.loads(project.run("cost", "--json").stdout)
    gone = {line["address"]: line for line in after["resources"]}["instances.trainer"]
    assert gone["hourly"] == 0.0 and gone["status"] in ("deleting", "deleted")


def expiring_config(sf_expiry: str, fw_expiry: str) -> str:
    return f"""
providers:
  shadeform: {{endpoint: embedded}}
  forward: {{endpoint: embedded}}
instances:
  - name: batch
    provider: shadeform
    cloud: lambdalabs
    region: us-east-1
    shade_instance_type: A6000
    {sf_expiry}
  - name: spot
    provider: forward
    offering: {{gpu_type: A100, num_gpus: 1}}
    {fw_expiry}
"""


def test_expiry_on_both_providers(project: Project) -> None:
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat(timespec="seconds")
    project.write(expiring_config("expires_after: 8h\n    max_spend: 100", f"expires_at: '{later}'"))
    planned = project.run("plan")
    assert '"after"     = "8h"' in planned.stdout and '"deadline"' in planned.stdout
    assert '"spend_threshold" = "100"' in planned.stdout  # Shadeform deletes it by itself
    project.run("apply", "--auto-approve")
    held = project.state()["resources"]
    batch_id = held["instances.batch"]["id"]
    deadline = held["instances.batch"]["attributes"]["expiry"]["deadline"]
    assert held["instances.batch"]["attributes"]["auto_delete"]["date_threshold"] == deadline
    # Shadeform keeps the thresholds: a refreshed plan sees no drift.
    assert project.run("plan", "--detailed-exitcode").returncode == 0

    # A longer expiry is an update in place on Shadeform, never a new GPU.
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat(timespec="seconds")
    project.write(expiring_config("expires_after: 10h\n    max_spend: 100", f"expires_at: '{past}'"))
    changed = project.run("plan")
    assert "~ instances.batch" in changed.stdout
    assert f"# (expired at {past} (expires_at {past}))" in changed.stdout
    assert "- instances.spot" in changed.stdout
    project.run("apply", "--auto-approve")
    assert project.resource_id("instances.batch") == batch_id
    assert live_names(project.live()) == ["batch"]
    assert "instances.spot" not in project.state()["resources"]

    # Past its time, the Forward instance is not created again.
    again = project.run("plan", "--detailed-exitcode")
    assert again.returncode == 0, again.describe()
    assert "instances.spot: expired at" in again.stdout and "not created" in again.stdout


def test_on_boot_failure_deletes_the_failed_instance_and_moves_on(project: Project) -> None:
    project.write(trainer_config(attempts=3).replace("{max_attempts: 3}", "{max_attempts: 3, on_boot_failure: true}"))
    project.run("plan", "-out", "plan.bin")
    candidates = ranked(project)
    faults = {"RECONCILER_EMULATOR_FAULTS": "forward.instances.create=boot_failure@times=1"}
    applied = project.run("apply", "plan.bin", env=faults)
    assert f"failed to boot on {candidates[0]['label']}; attempt 2 of 3: {candidates[1]['label']}" in applied.stdout
    assert "Apply complete! Resources: 1 added" in applied.stdout
    held = project.state()["resources"]["instances.trainer"]
    assert held["attributes"]["offering_id"] == candidates[1]["offering_id"]
    assert [e.id for e in project.live()] == [held["id"]]  # the failed one was deleted
    assert len(project.ledger()) == 2

    # Without on_boot_failure, an instance in error stays on record for the next plan.
    project.run("destroy", "--auto-approve")
    project.write(trainer_config(attempts=3))
    failed = project.run("apply", "--auto-approve", expect=1, env=faults)
    assert "ended in status error" in failed.output and "failed to boot on" not in failed.output
    assert project.state()["resources"]["instances.trainer"]["status"] == "error"


def test_a_reclaimed_spot_instance_is_created_again_on_the_next_candidate(project: Project) -> None:
    project.write(trainer_config(attempts=2))
    project.run("apply", "--auto-approve")
    first = project.state()["resources"]["instances.trainer"]
    offering = first["attributes"]["offering_id"]
    reclaim = {"RECONCILER_EMULATOR_MARKET": json.dumps({"reclaims": [{"offering": f"forward:{offering}", "after_seconds": 0}]})}

    # The provider takes it back as the plan refreshes; the saved plan re-creates it.
    planned = project.run("plan", "-out", "plan.bin", env=reclaim)
    assert "# (reclaimed by the provider (preempted" in planned.stdout, planned.describe()
    applied = project.run("apply", "plan.bin")
    assert "Apply complete!" in applied.stdout
    second = project.state()["resources"]["instances.trainer"]
    assert second["id"] != first["id"]
    assert second["attributes"]["offering_id"] != offering  # with fallback: the next candidate
    assert [e.id for e in project.live()] == [second["id"]]
    assert project.run("plan", "--detailed-exitcode").returncode == 0


ANYWHERE = f"""
providers:
  shadeform: {{endpoint: embedded}}
  forward: {{endpoint: embedded}}
ssh_keys:
  - name: deploy
    providers: [shadeform, forward]
    public_key: {PUBLIC_KEY}
instances:
  - name: trainer
    ssh_key: deploy
    offering: {{providers: [shadeform, forward], gpu_type: A100, num_gpus: 1, max_hourly_price: 2.0}}
    fallback: {{max_attempts: 4}}
"""


def test_the_provider_is_chosen_pinned_failed_over_and_a_reclaim_gone_from_the_list_says_so(
    project: Project,
) -> None:
    project.write(ANYWHERE)
    planned = project.run("plan", "-out", "plan.bin")
    candidates = ranked(project)
    providers = [c["provider"] for c in candidates]
    assert providers[0] == "forward" and "shadeform" in providers, candidates
    assert "# (cheapest of " in planned.stdout and f": {candidates[0]['label']})" in planned.stdout
    assert "# (next: " in planned.stdout and "; shadeform " in planned.stdout
    assert '# ssh_keys.deploy["forward"] will be created' in planned.stdout

    # Forward sold out: apply goes down the plan's list onto Shadeform, with its key object there.
    over = providers.index("shadeform")
    applied = project.run("apply", "plan.bin", env={"RECONCILER_EMULATOR_FAULTS": SOLD_OUT})
    assert f"attempt {over + 1} of 4: {candidates[over]['label']}" in applied.stdout, applied.describe()
    resources = project.state()["resources"]
    held = resources["instances.trainer"]
    assert (held["provider"], held["attributes"]["ssh_key"]) == ("shadeform", 'ssh_keys.deploy["shadeform"]')
    assert held["attributes"]["offering"]["selected"] == candidates[over]["offering_id"]
    assert {resources[f'ssh_keys.deploy["{p}"]']["provider"] for p in ("shadeform", "forward")} == {
        "shadeform", "forward"
    }
    assert sorted((e.api, e.kind) for e in project.live()) == [
        ("forward", "ssh_keys"), ("shadeform", "instances"), ("shadeform", "ssh_keys")
    ]
    # Pinned: a cheaper Forward offering does not move it, until --reselect.
    assert project.run("plan", "--detailed-exitcode").returncode == 0
    reselected = project.run("plan", "--reselect", "-out", "again.bin", "--detailed-exitcode", expect=2)
    assert "provider changed from shadeform to forward" in reselected.stdout
    project.run("apply", "again.bin")
    held = project.state()["resources"]["instances.trainer"]
    assert (held["provider"], held["attributes"]["ssh_key"]) == ("forward", 'ssh_keys.deploy["forward"]')
    # Imported again, it is looked for on each provider it may be on.
    project.run("state", "rm", "instances.trainer")
    project.run("import", "instances.trainer", held["id"])
    imported = project.state()["resources"]["instances.trainer"]
    assert (imported["provider"], imported["attributes"]["ssh_key"]) == ("forward", 'ssh_keys.deploy["forward"]')
    assert project.run("plan", "--detailed-exitcode").returncode == 0

    # Forward takes it back, and it is gone from Forward's list: the plan still says why.
    reclaim = {"RECONCILER_EMULATOR_MARKET": json.dumps({"reclaims": [{"instance_id": held["id"], "after_seconds": 0}]})}
    assert "# (reclaimed by the provider (preempted" in project.run("plan", env=reclaim).stdout
    deadline = time.monotonic() + 30
    while not any(e.id == held["id"] and e.status == "deleted" for e in project.ledger()):
        assert time.monotonic() < deadline, "the reclaimed instance never finished deleting"
    gone = project.run("plan")
    assert "# (reclaimed by the provider (preempted" in gone.stdout, gone.describe()
    assert "deleted outside reconciler" not in gone.stdout
    project.run("destroy", "--auto-approve")
    assert project.live() == []
