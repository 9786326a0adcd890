"""Shell completion: commands and flags from click, resource addresses from the
configuration and its local state, for bash, zsh and fish."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.shell_completion import ShellComplete, get_completion_class

from reconciler import workspace
from reconciler.cli import Session, cli
from reconciler.completion import SHELLS, completion_script, known_addresses
from reconciler.config import load_config
from reconciler.state.model import ResourceState, StateDocument

CONFIG = """\
providers:
  forward: {endpoint: embedded}
instances:
  - name: web
    provider: forward
    offering_id: o-1
  - name: worker
    provider: forward
    offering_id: o-1
    count: 2
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "stack"
    root.mkdir()
    (root / "main.yaml").write_text(CONFIG)
    config = load_config(root, environ={})
    backend, _ = workspace.choose_backend(config)
    doc = StateDocument(serial=1, resources={"instances.gone": ResourceState(provider="forward", kind="instances", id="i-1")})
    backend.write(doc)
    monkeypatch.chdir(root)
    return root


def completions(args: list[str], incomplete: str) -> list[str]:
    cls = get_completion_class("bash")
    assert cls is not None
    completer: ShellComplete = cls(cli, {"obj": Session()}, "reconciler", "_RECONCILER_COMPLETE")
    return [item.value for item in completer.get_completions(args, incomplete)]


def test_addresses_come_from_configuration_and_state(project: Path) -> None:
    assert known_addresses(project, None) == [
        "instances.gone", "instances.web", "instances.worker[0]", "instances.worker[1]"]
    assert completions(["state", "show"], "instances.w") == [
        "instances.web", "instances.worker[0]", "instances.worker[1]"]
    assert completions(["plan", "--target"], "instances.g") == ["instances.gone"]
    assert completions(["state", "rm", "instances.web"], "instances.wo") == [
        "instances.worker[0]", "instances.worker[1]"]


def test_commands_and_flags_complete(project: Path) -> None:
    assert {"plan", "apply", "init", "completion", "validate"} <= set(completions([], ""))
    assert "--detailed-exitcode" in completions(["plan"], "--d")


def test_a_broken_configuration_completes_nothing_quietly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "main.yaml").write_text("instances: [\n")
    monkeypatch.chdir(tmp_path)
    assert completions(["state", "show"], "") == []


@pytest.mark.parametrize("shell", SHELLS)
def test_completion_scripts_for_each_shell(shell: str) -> None:
    script = completion_script(cli, shell)
    assert "_RECONCILER_COMPLETE" in script and f"{shell}_" in script
