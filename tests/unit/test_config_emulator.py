"""The `emulator:` block: knobs of the built-in emulator, validated like the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.config import load_config
from reconciler.engine import embedded_options
from reconciler.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "main.yaml"
    path.write_text(text)
    return path


def test_emulator_block_is_loaded_and_env_overrides_it(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, "emulator:\n  boot_seconds: 0.2\n  latency_ms: 50\n  faults: shadeform.create=capacity\n"),
        environ={},
    )
    assert config.emulator == {"boot_seconds": 0.2, "latency_ms": 50.0, "faults": "shadeform.create=capacity"}
    options = embedded_options({"RECONCILER_EMULATOR_BOOT_SECONDS": "3"}, config.emulator)
    assert options["boot_seconds"] == 3.0 and options["latency_seconds"] == 0.05
    assert options["faults"].to_spec() == "shadeform.create=capacity"


def test_bad_fault_spec_names_file_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "emulator:\n  faults: nonsense\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    text = str(caught.value)
    assert "main.yaml:2" in text and "emulator.faults" in text and "fault rule 'nonsense'" in text


def test_unknown_emulator_key_suggests_the_right_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'boot_seconds'"):
        load_config(write(tmp_path, "emulator:\n  boot_secs: 1\n"), environ={})
