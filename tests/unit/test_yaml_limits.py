"""Hostile YAML (alias bombs, oversized files) is refused with file and line, in memory the size of the file."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from reconciler.config import yaml_source
from reconciler.config.variables import convert_value
from reconciler.config.yaml_source import MAX_YAML_VALUES, parse_yaml_file, parse_yaml_text
from reconciler.errors import ConfigError

# Nine levels of nine aliases: 9**9 (387 million) strings once expanded.
LAUGHS = (
    "\n".join(
        ["variables: {}", 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
        + [
            f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]"
            for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
        ]
    )
    + "\n"
)


def test_an_alias_bomb_is_refused_at_its_line_without_expanding_it(tmp_path: Path) -> None:
    path = tmp_path / "main.yaml"
    path.write_text(LAUGHS, encoding="utf-8")
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as caught:
            parse_yaml_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    # Level g (9**7 = 4.8 million values) is the first to pass the limit: line 8.
    assert message.startswith(
        f"{path}:8:4: the YAML here holds 5,380,840 values once its aliases are expanded"
    )
    assert f"more than the {MAX_YAML_VALUES:,}" in message
    assert "fewer nested aliases" in message
    assert peak < 5_000_000, f"parsing a 1 KB file peaked at {peak:,} bytes"


def test_aliases_within_the_limit_still_work() -> None:
    text = "base: &base {cloud: hyperstack, region: canada-1}\nx: {<<: *base, name: a}\ny: [*base, *base]\n"
    data = parse_yaml_text(text, Path("main.yaml")).data
    assert data["x"] == {"cloud": "hyperstack", "region": "canada-1", "name": "a"}
    assert data["y"] == [data["base"], data["base"]]


def test_a_recursive_alias_is_refused_at_its_line() -> None:
    with pytest.raises(ConfigError, match=r"^main.yaml:2:4: a YAML alias refers to a node that contains it"):
        parse_yaml_text("a: 1\nb: &b\n  c: *b\n", Path("main.yaml"))


def test_an_oversized_file_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(yaml_source, "MAX_YAML_FILE_BYTES", 4 * 1024 * 1024)
    path = tmp_path / "main.yaml"
    path.write_bytes(b"a: " + b"x" * (5 * 1024 * 1024) + b"\n")
    with pytest.raises(ConfigError, match=r"main.yaml: the file is 5.0 MiB, more than the 4 MiB") as caught:
        parse_yaml_file(path)
    assert "split the configuration into several files" in str(caught.value)


def test_a_variable_value_is_held_to_the_same_limits() -> None:
    bomb = LAUGHS.replace("variables: {}\n", "").replace("\n", ", ")
    with pytest.raises(ValueError, match="values once its aliases are expanded"):
        convert_value("{" + bomb.rstrip(", ") + "}", "map")
    assert convert_value("[a, b]", "list") == ["a", "b"]
