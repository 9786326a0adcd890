"""The workspace, the state edits by hand and the offerings search, on files in a temp dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler import engine, state_ops
from reconciler.errors import ConfigError, StateError
from reconciler.model import Address, Offering, OfferingRequest
from reconciler.state.model import ResourceState, StateDocument
from reconciler.workspace import Workspace

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAcUIS47SFVib3yJlqOwvcrX5PH+CxglMj9MWWZzgI2a me@example"
CONFIG = f"name: ws\nssh_keys:\n  - {{name: k, provider: shadeform, public_key: '{KEY}'}}\n"


def workspace_at(tmp_path: Path, text: str = CONFIG) -> tuple[Workspace, list[str]]:
    (tmp_path / "main.yaml").write_text(text)
    notes: list[str] = []
    return Workspace(tmp_path, notify=notes.append), notes


def entry(id: str, **attributes: object) -> ResourceState:
    return ResourceState(provider="shadeform", kind="instances", id=id, attributes=dict(attributes))


def test_state_edits_by_hand_commit_the_next_serial_through_the_workspace(tmp_path: Path) -> None:
    ws, _ = workspace_at(tmp_path)
    base = StateDocument(serial=3, resources={
        "ssh_keys.k": ResourceState(provider="shadeform", kind="ssh_keys", id="key-1"),
        "instances.a": entry("i-1", ssh_key="ssh_keys.k", volumes=["volumes.v"]),
        "volumes.v": ResourceState(provider="shadeform", kind="volumes", id="vol-1"),
    })
    ws.backend.write(base.model_copy(update={"serial": 4}))
    message = state_ops.move_in_state(ws, Address.parse("ssh_keys.k"), Address.parse("ssh_keys.main"))
    assert message == "Moved ssh_keys.k to ssh_keys.main."
    stored = ws.backend.read()
    assert stored.serial == 5 and stored.resources["instances.a"].attributes["ssh_key"] == "ssh_keys.main"
    removed = state_ops.remove_from_state(ws, ("volumes.v",))
    assert removed == "Removed from state (still running at the provider): volumes.v (vol-1)"
    assert ws.backend.read().serial == 6 and "volumes.v" not in ws.backend.read().resources
    with pytest.raises(StateError, match="the kinds differ"):
        state_ops.move_in_state(ws, Address.parse("volumes.x"), Address.parse("instances.x"))
    with pytest.raises(StateError, match="volumes.v is not in state"):
        state_ops.remove_from_state(ws, ("volumes.v",))
    assert ws.backend.read().serial == 6, "a refused edit writes nothing"


def test_a_push_must_be_newer_and_of_the_same_lineage_unless_forced(tmp_path: Path) -> None:
    ws, _ = workspace_at(tmp_path)
    ws.backend.write(StateDocument(serial=1, lineage="L"))
    older = tmp_path / "older.json"
    older.write_text(StateDocument(serial=1, lineage="L").to_json_text())
    with pytest.raises(StateError, match="not newer than the stored 1"):
        state_ops.push_state(ws, older, force=False)
    other = tmp_path / "other.json"
    other.write_text(StateDocument(serial=9, lineage="M").to_json_text())
    with pytest.raises(StateError, match="has lineage M"):
        state_ops.push_state(ws, other, force=False)
    assert state_ops.push_state(ws, other, force=True) == f"Pushed {other} to {ws.backend.description}."
    assert (ws.backend.read().lineage, ws.backend.read().serial) == ("M", 9)


def test_a_renamed_folders_state_is_used_with_a_note_to_the_user(tmp_path: Path) -> None:
    project = tmp_path / "renamed"
    project.mkdir()
    (project / "state").mkdir()
    recorded = StateDocument(configuration={"name": "old", "source": "directory"})
    (project / "state" / "old.json").write_text(recorded.to_json_text())
    ws, notes = workspace_at(project, CONFIG.replace("name: ws\n", ""))
    assert ws.backend.description.endswith("old.json")
    assert len(notes) == 1 and "add `name: old`" in notes[0]


def test_secrets_of_a_configuration_are_scrubbed_once_it_is_loaded(tmp_path: Path) -> None:
    text = CONFIG + "providers:\n  shadeform: {api_key: sk-very-secret-value-1234}\n"
    ws, _ = workspace_at(tmp_path, text)
    assert ws.scrubber.scrub("key sk-very-secret-value-1234") == "key sk-very-secret-value-1234"
    assert ws.config.name == "ws"
    assert "sk-very-secret-value-1234" not in ws.scrubber.scrub("key sk-very-secret-value-1234")


def test_a_backend_url_must_be_postgresql_in_the_file_and_in_the_flags(tmp_path: Path) -> None:
    ws, _ = workspace_at(tmp_path, CONFIG + "backend: {type: postgres, url: postgres}\n")
    with pytest.raises(ConfigError, match="url must start with postgresql://"):
        _ = ws.config
    (tmp_path / "flags").mkdir()
    flagged, _ = workspace_at(tmp_path / "flags", CONFIG)
    flagged.backend_config = {"type": "postgres", "url": "mysql://u:pw@db/x"}
    with pytest.raises(StateError, match="must start with postgresql://") as refused:
        _ = flagged.backend
    assert "pw" not in str(refused.value)


def offering(id: str, price: float, available: bool = True, gpu: str = "H100") -> Offering:
    return Offering("shadeform", id, gpu, 1, price, "us-east", "aws", available, {"id": id})


def test_the_offerings_search_filters_by_requirement_and_sorts_cheapest_first() -> None:
    found = [offering("b", 3.0), offering("a", 2.0, available=False), offering("c", 1.0, gpu="A100")]
    request = OfferingRequest(gpu_type="H100")
    assert [o.id for o in engine.matching_offerings(found, request, available_only=False)] == ["a", "b"]
    assert [o.id for o in engine.matching_offerings(found, request, available_only=True)] == ["b"]
