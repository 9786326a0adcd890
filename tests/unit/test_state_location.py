"""One configuration, one state file, whichever way its path is spelt."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler import workspace
from reconciler.config import load_config
from reconciler.state.local import LocalStateBackend

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAcUIS47SFVib3yJlqOwvcrX5PH+CxglMj9MWWZzgI2a me@example"


def test_a_relative_directory_path_finds_the_state_beside_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "stack"
    project.mkdir()
    (project / "main.yaml").write_text(f"ssh_keys:\n  - {{name: k, provider: shadeform, public_key: '{KEY}'}}\n")
    expected = project / "state" / "stack.json"
    spellings = [(tmp_path, Path("stack")), (project, Path(".")), (tmp_path, project), (tmp_path / "stack", Path("../stack"))]
    for cwd, path in spellings:
        monkeypatch.chdir(cwd)
        config = load_config(path, environ={})
        backend = workspace.open_backend(config)
        assert isinstance(backend, LocalStateBackend)
        assert backend.path.resolve() == expected, (cwd, path)
        assert workspace.sandbox_path_for(config, backend).resolve() == project / "state" / "stack.sandbox.json"
