"""One configuration, one state: whatever the working directory, the spelling of `-f` or the
folder's name, a configuration finds the same state, and two configurations never share one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from lifecycle_support import PUBLIC_KEY, CliResult, run_cli

pytest_plugins = ["lifecycle_support"]

SHADEFORM_RESOURCES = """
ssh_keys:
  - name: deploy
    provider: shadeform
    public_key: ${{file:deploy.pub}}
instances:
  - name: {instance}
    provider: shadeform
    cloud: lambdalabs
    region: us-east-1
    shade_instance_type: A6000
    ssh_key: deploy
"""


def embedded_config(name: str | None, instance: str = "trainer") -> str:
    head = f"name: {name}\n" if name else ""
    return head + "providers:\n  shadeform: {endpoint: embedded}\n" + SHADEFORM_RESOURCES.format(instance=instance)


def make_config_dir(root: Path, text: str, filename: str = "main.yaml") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "deploy.pub").write_text(PUBLIC_KEY + "\n", encoding="utf-8")
    (root / filename).write_text(text, encoding="utf-8")
    return root


def state_files(top: Path) -> list[Path]:
    """Every state file under `top` (sandboxes, backups and locks aside), symlinks not followed."""
    return sorted(
        Path(folder) / name
        for folder, _, names in os.walk(top)
        for name in names
        if name.endswith(".json") and not name.endswith(".sandbox.json")
    )


def assert_no_changes(result: CliResult) -> None:
    assert "No changes." in result.stdout, result.describe()


@pytest.mark.parametrize("name", ["gpu", None], ids=["with-name", "directory-without-name"])
def test_one_state_whatever_the_path_spelling_working_directory_or_folder_name(
    tmp_path: Path, name: str | None
) -> None:
    repo = tmp_path / "repo"
    infra = make_config_dir(repo / "infra", embedded_config(name))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(infra, target_is_directory=True)

    applied = run_cli(("apply", "-f", "infra", "--auto-approve"), repo)
    assert "Apply complete! Resources: 2 added" in applied.stdout, applied.describe()
    assert state_files(tmp_path) == [infra / "state" / f"{name or 'infra'}.json"]

    spellings = [
        (repo, "infra/"),
        (repo, str(infra)),
        (infra, "."),
        (elsewhere, "../repo/infra"),
        (elsewhere, "../link/"),
        (elsewhere, str(tmp_path / "link")),
    ]
    for cwd, spelling in spellings:
        assert_no_changes(run_cli(("plan", "-f", spelling, "--detailed-exitcode"), cwd))
    assert_no_changes(run_cli(("apply", "-f", str(infra), "--auto-approve"), elsewhere))

    renamed = infra.rename(repo / "gpu-fleet")
    for cwd, spelling in [(repo, "gpu-fleet"), (renamed, "."), (elsewhere, str(renamed) + "/")]:
        planned = run_cli(("plan", "-f", spelling, "--detailed-exitcode"), cwd)
        assert_no_changes(planned)
        if name is None:  # found by what it recorded, and told how to stop depending on the folder
            assert "add `name: infra`" in planned.stderr, planned.describe()
    assert_no_changes(run_cli(("apply", "--auto-approve"), renamed))
    assert state_files(tmp_path) == [renamed / "state" / f"{name or 'infra'}.json"]


def test_two_single_file_configurations_in_one_folder_get_two_states(tmp_path: Path) -> None:
    envs = make_config_dir(tmp_path / "envs", embedded_config(None, "prod-trainer"), "prod.yaml")
    (envs / "staging.yaml").write_text(embedded_config(None, "staging-trainer"), encoding="utf-8")

    for stem in ("prod", "staging"):
        applied = run_cli(("apply", "-f", f"envs/{stem}.yaml", "--auto-approve"), tmp_path)
        assert "Apply complete! Resources: 2 added" in applied.stdout, applied.describe()
    for stem in ("prod", "staging"):
        assert_no_changes(run_cli(("plan", "-f", f"{stem}.yaml", "--detailed-exitcode"), envs))
        assert_no_changes(run_cli(("plan", "-f", str(envs / f"{stem}.yaml"), "--detailed-exitcode"), tmp_path))

    assert state_files(tmp_path) == [envs / "state" / "prod.json", envs / "state" / "staging.json"]
    prod, staging = (json.loads((envs / "state" / f"{s}.json").read_text()) for s in ("prod", "staging"))
    assert prod["resources"]["instances.prod-trainer"]["id"] != staging["resources"]["instances.staging-trainer"]["id"]
    assert "instances.staging-trainer" not in prod["resources"]
    assert (prod["configuration"], staging["configuration"]) == (
        {"name": "prod", "source": "file"},
        {"name": "staging", "source": "file"},
    )


def test_adding_a_name_does_not_leave_the_old_state_behind(tmp_path: Path) -> None:
    infra = make_config_dir(tmp_path / "infra", embedded_config(None))
    run_cli(("apply", "--auto-approve"), infra)
    before = {p.name: p.read_bytes() for p in (infra / "state").iterdir()}

    (infra / "main.yaml").write_text(embedded_config("gpu"), encoding="utf-8")
    refused = run_cli(("plan",), infra, expect=1)
    assert "this configuration's state is" in refused.stderr and "infra.json" in refused.stderr, refused.describe()
    hint = "mv state/infra.json state/gpu.json && mv state/infra.sandbox.json state/gpu.sandbox.json"
    assert hint in refused.stderr, refused.describe()
    assert {p.name: p.read_bytes() for p in (infra / "state").iterdir()} == before

    for old, new in (("infra.json", "gpu.json"), ("infra.sandbox.json", "gpu.sandbox.json")):
        (infra / "state" / old).rename(infra / "state" / new)
    (infra / "state" / "infra.json.backup").unlink(missing_ok=True)
    assert_no_changes(run_cli(("apply", "--auto-approve"), infra))
    assert state_files(tmp_path) == [infra / "state" / "gpu.json"]


def test_a_state_another_configuration_wrote_is_refused_unless_allowed(tmp_path: Path) -> None:
    alpha = make_config_dir(tmp_path / "alpha", embedded_config("alpha"))
    beta = make_config_dir(tmp_path / "beta", embedded_config("beta", "other-trainer"))
    run_cli(("apply", "--auto-approve"), alpha)
    alpha_state = alpha / "state" / "alpha.json"
    before = alpha_state.read_bytes()

    for command in (("plan",), ("apply", "--auto-approve"), ("destroy", "--auto-approve"), ("state", "list")):
        refused = run_cli((*command, "--state", "../alpha/state/alpha.json"), beta, expect=1)
        assert "is the state of the configuration named 'alpha'" in refused.stderr, refused.describe()
        assert "(the configuration named 'beta')" in refused.stderr and "--allow-foreign-state" in refused.stderr
    assert alpha_state.read_bytes() == before

    allowed = run_cli(("plan", "--state", str(alpha_state), "--allow-foreign-state"), beta)
    assert "instances.trainer will be destroyed" in allowed.stdout, allowed.describe()
    assert alpha_state.read_bytes() == before
