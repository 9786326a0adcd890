"""State identity, pure parts: the `name:` key, how a configuration's identity and local state
are chosen, and which recorded identities a configuration accepts."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from reconciler import workspace
from reconciler.config import load_config
from reconciler.errors import ConfigError, StateError
from reconciler.identity import ConfigIdentity, locate_local_state
from reconciler.state.local import LocalStateBackend

INSTANCES = "instances:\n  - {name: t, provider: forward, offering_id: o}\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def write_state(path: Path, configuration: object = None) -> Path:
    doc: dict[str, object] = {"version": 1, "serial": 1, "lineage": "l", "resources": {}}
    if configuration is not None:
        doc["configuration"] = configuration
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


# -- the name: key ------------------------------------------------------------------------------


def test_a_declared_name_is_the_identity_and_the_root_is_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "real" / "main.yaml", "name: gpu-fleet\n" + INSTANCES)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    for spelling in ("real", "real/", "./real", str(tmp_path / "link"), "link/"):
        config = load_config(Path(spelling), environ={})
        assert (config.name, config.root) == ("gpu-fleet", (tmp_path / "real").resolve())
        assert config.identity == ConfigIdentity("gpu-fleet", "name", True, "real")


def test_without_a_name_a_file_is_named_by_its_stem_and_a_directory_by_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "infra" / "prod.yaml", INSTANCES)
    monkeypatch.chdir(tmp_path / "infra")
    by_file = load_config(Path("prod.yaml"), environ={})
    assert (by_file.identity, by_file.root) == (ConfigIdentity("prod", "file", False, "prod"), tmp_path / "infra")
    by_dir = load_config(Path("."), environ={})
    assert by_dir.identity == ConfigIdentity("infra", "directory", True, "infra")


@pytest.mark.parametrize(
    ("value", "shown"),
    [("'My Prod!'", "'My Prod!'"), ("${var.x}", "'${var.x}'"), ("[a]", "'list'"), ("''", "''"), ("x" * 65, "'xxx")],
)
def test_an_unsafe_name_is_refused_with_file_line_and_a_suggestion(tmp_path: Path, value: str, shown: str) -> None:
    path = write(tmp_path / "main.yaml", "# header\nname: " + value + "\n" + INSTANCES)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    error = caught.value
    assert error.mark.line == 2 and error.field == "name"
    assert shown in error.message and "is not a valid configuration name" in error.message
    assert error.hint is not None and "for example name: " in error.hint


def test_two_files_of_a_directory_cannot_both_declare_a_name(tmp_path: Path) -> None:
    write(tmp_path / "infra" / "a.yaml", "name: a\n")
    write(tmp_path / "infra" / "b.yaml", "name: a\n" + INSTANCES)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "infra", environ={})
    assert caught.value.mark.file.endswith("b.yaml") and "declared twice (first at " in caught.value.message


# -- which recorded identities a configuration accepts ------------------------------------------


NAMED_DIR = ConfigIdentity("gpu", "name", True, "infra")
NAMELESS_DIR = ConfigIdentity("infra", "directory", True, "infra")
NAMELESS_FILE = ConfigIdentity("prod", "file", False, "prod")


@pytest.mark.parametrize(
    ("identity", "recorded", "own_dir", "accepted"),
    [
        (NAMED_DIR, None, False, True),  # written before identities were recorded
        (NAMED_DIR, {"name": "gpu", "source": "name"}, False, True),
        (NAMED_DIR, {"name": "other", "source": "name"}, True, False),
        (NAMED_DIR, {"name": "infra", "source": "directory"}, False, True),  # from before `name:` was added
        (NAMED_DIR, {"name": "prod", "source": "file"}, True, False),
        (NAMELESS_DIR, {"name": "old-folder", "source": "directory"}, True, True),  # the folder was renamed
        (NAMELESS_DIR, {"name": "old-folder", "source": "directory"}, False, False),  # another folder's
        (NAMELESS_DIR, {"name": "infra", "source": "name"}, True, False),
        (NAMELESS_FILE, {"name": "prod", "source": "file"}, False, True),
        (NAMELESS_FILE, {"name": "staging", "source": "file"}, True, False),
        (NAMELESS_FILE, {"name": "prod", "source": "directory"}, True, False),
    ],
)
def test_a_state_is_accepted_only_from_the_same_configuration(
    identity: ConfigIdentity, recorded: object, own_dir: bool, accepted: bool
) -> None:
    assert identity.accepts(recorded, own_dir) is accepted


# -- where the local state is ------------------------------------------------------------------


def test_a_new_configuration_starts_at_state_name_json(tmp_path: Path) -> None:
    assert locate_local_state(NAMED_DIR, tmp_path).path == tmp_path / "state" / "gpu.json"


def test_a_renamed_directory_without_a_name_finds_its_recorded_state(tmp_path: Path) -> None:
    write(tmp_path / "main.yaml", INSTANCES)
    old = write_state(tmp_path / "state" / "old.json", {"name": "old", "source": "directory"})
    write_state(tmp_path / "state" / "main.json", {"name": "main", "source": "file"})
    location = locate_local_state(ConfigIdentity("new", "directory", True, "new"), tmp_path)
    assert location.path == old and location.note is not None and "add `name: old`" in location.note


def test_a_renamed_directory_with_an_unrecorded_state_is_stopped_with_the_fix(tmp_path: Path) -> None:
    write(tmp_path / "main.yaml", INSTANCES)
    write_state(tmp_path / "state" / "main.json")  # the single file main.yaml's own: not a candidate
    write_state(tmp_path / "state" / "old.json")
    with pytest.raises(StateError) as caught:
        locate_local_state(ConfigIdentity("new", "directory", True, "new"), tmp_path)
    assert "old.json" in str(caught.value) and "main.json" not in str(caught.value)
    assert caught.value.hint is not None and "add `name: old`" in caught.value.hint


def test_a_name_added_to_a_configuration_with_state_is_stopped_with_the_move(tmp_path: Path) -> None:
    write_state(tmp_path / "state" / "infra.json")
    (tmp_path / "state" / "infra.sandbox.json").write_text("{}")
    with pytest.raises(StateError) as caught:
        locate_local_state(NAMED_DIR, tmp_path)
    assert caught.value.hint is not None
    assert "mv state/infra.json state/gpu.json && mv state/infra.sandbox.json state/gpu.sandbox.json" in (
        caught.value.hint
    )


def test_another_named_configurations_state_beside_it_does_not_stop_a_new_one(tmp_path: Path) -> None:
    write_state(tmp_path / "state" / "infra.json", {"name": "infra", "source": "name"})
    assert locate_local_state(NAMED_DIR, tmp_path).path == tmp_path / "state" / "gpu.json"


# -- backends ---------------------------------------------------------------------------------


def test_a_relative_path_is_joined_to_the_configuration_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "repo" / "examples" / "quickstart" / "main.yaml", "name: quickstart\n" + INSTANCES)
    monkeypatch.chdir(tmp_path / "repo")
    config = load_config(Path("examples/quickstart"), environ={})
    backend = workspace.open_backend(config)
    assert isinstance(backend, LocalStateBackend)
    assert backend.path == tmp_path / "repo" / "examples" / "quickstart" / "state" / "quickstart.json"
    assert workspace.sandbox_path_for(config, backend) == backend.path.with_name("quickstart.sandbox.json")
    given = workspace.open_backend(config, Path("elsewhere/s.json"))
    assert isinstance(given, LocalStateBackend) and given.path == tmp_path / "repo" / "elsewhere" / "s.json"


def test_postgres_needs_a_name_for_a_directory_but_defaults_to_it_when_declared(tmp_path: Path) -> None:
    write(tmp_path / "infra" / "main.yaml", INSTANCES)
    pg = {"type": "postgres", "url": "postgresql://u@127.0.0.1:1/db"}
    with pytest.raises(StateError) as caught:
        workspace.open_backend(load_config(tmp_path / "infra", environ={}), None, pg)
    assert caught.value.hint is not None and "add `name: infra` at the top of" in caught.value.hint
    explicit = workspace.open_backend(load_config(tmp_path / "infra", environ={}), None, {**pg, "stack": "s"})
    assert getattr(explicit, "stack", None) == "s"
    write(tmp_path / "infra" / "main.yaml", "name: gpu\n" + INSTANCES)
    assert getattr(workspace.open_backend(load_config(tmp_path / "infra", environ={}), None, pg), "stack", None) == "gpu"


def test_a_state_of_another_configuration_is_refused_and_a_read_one_is_stamped(tmp_path: Path) -> None:
    write(tmp_path / "infra" / "main.yaml", "name: gpu\n" + INSTANCES)
    config = load_config(tmp_path / "infra", environ={})
    foreign = LocalStateBackend(write_state(tmp_path / "other.json", {"name": "other", "source": "name"}))
    with pytest.raises(StateError) as caught:
        workspace.check_state_identity(config, foreign, foreign.read())
    assert "the configuration named 'other'" in str(caught.value)
    taken = workspace.check_state_identity(config, foreign, foreign.read(), allow_foreign=True)
    assert taken.configuration == {"name": "gpu", "source": "name"}
    legacy = LocalStateBackend(write_state(tmp_path / "legacy.json"))
    assert workspace.check_state_identity(config, legacy, legacy.read()).configuration == {
        "name": "gpu",
        "source": "name",
    }
