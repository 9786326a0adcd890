"""One load reports every error of a configuration, sorted by file and line, without
second errors that only follow from a first one, and with warnings that stop nothing."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from reconciler.config import load_config
from reconciler.config.diagnostics import MAX_REPORTED_ERRORS, ConfigErrors
from reconciler.errors import ConfigError

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPk0Zss4K0I05ck6M0v3LwgFehqBeF6jeh4iCKCR219c me@host"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(path: Path) -> ConfigErrors:
    with pytest.raises(ConfigErrors) as caught:
        load_config(path, environ={})
    return caught.value


def test_every_error_of_a_directory_is_reported_sorted_by_file_and_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        "b.yaml",
        """\
        instances:
          - name: web
            provider: shadeform
            cloud: c
            region: r
            shade_instance_type: A6000
            ssh_key: deplyo
            colour: blue
        """,
    )
    write(
        tmp_path,
        "a.yaml",
        f"""\
        ssh_keys:
          - name: deploy
            provider: shadeform
            public_key: {KEY}
        volumes:
          - name: data
            provider: shadeform
            size_gb: -5
            cloud: c
            region: r
        instancs: []
        """,
    )
    error = errors_of(tmp_path)
    where = [(Path(e.mark.file).name, e.mark.line) for e in error.errors if e.mark]
    assert where == sorted(where)
    summaries = [e.summary for e in error.errors]
    assert any("unknown top-level key 'instancs'" in s for s in summaries)
    assert any("size_gb" in (e.field or "") for e in error.errors)
    assert any("unknown key 'colour'" in s for s in summaries)
    # The first error is what a caller of the single-error interface sees.
    assert error.mark == error.errors[0].mark and error.summary == error.errors[0].summary


def test_several_unknown_keys_of_one_entry_are_all_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "main.yaml",
        """\
        instances:
          - name: web
            provider: forward
            offering_id: o
            colour: blue
            flavour: mint
        """,
    )
    error = errors_of(path)
    assert [e.summary for e in error.errors] == ["unknown key 'colour'", "unknown key 'flavour'"]
    assert [e.mark.line for e in error.errors if e.mark] == [5, 6]


def test_a_reference_to_a_broken_entry_is_not_reported_again(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "main.yaml",
        """\
        volumes:
          - name: data
            provder: shadeform
            size_gb: 10
          - name: other
            provider: shadeform
            size_gb: 10
            colour: red
        instances:
          - name: web
            provider: shadeform
            cloud: c
            region: r
            shade_instance_type: A6000
            volumes: [data]
        """,
    )
    error = errors_of(path)
    assert [e.mark.line for e in error.errors if e.mark] == [3, 8]
    assert not any("data" in e.summary and "no volume" in e.summary for e in error.errors)


def test_an_instance_mounting_a_volume_that_failed_to_load_reports_only_the_volume(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "main.yaml",
        """\
        volumes:
          - name: data
            provider: shadeform
            cloud: lambdalabs
            regoin: us-east-1
            size_gb: 10
        instances:
          - name: web
            provider: shadeform
            cloud: lambdalabs
            region: us-east-1
            shade_instance_type: A6000
            volumes: [data]
            envs: {X: "${volumes.data.size_gb}"}
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.summary == "unknown key 'regoin'"
    assert not isinstance(caught.value, ConfigErrors)


def test_a_single_error_keeps_its_own_type(tmp_path: Path) -> None:
    path = write(tmp_path, "main.yaml", "instancs: []\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert type(caught.value) is ConfigError


def test_errors_stop_at_the_limit_and_say_so(tmp_path: Path) -> None:
    lines = ["instances:"]
    for i in range(MAX_REPORTED_ERRORS + 10):
        lines += [f"  - name: w{i}", "    provider: forward", "    offering_id: o", "    colour: x"]
    path = write(tmp_path, "main.yaml", "\n".join(lines) + "\n")
    error = errors_of(path)
    assert len(error.errors) == MAX_REPORTED_ERRORS
    assert error.omitted


def test_world_readable_file_with_a_literal_api_key_is_a_warning(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "main.yaml",
        """\
        providers:
          shadeform: {api_key: sk-live-0123456789, endpoint: embedded}
        """,
    )
    os.chmod(path, 0o644)
    config = load_config(path, environ={})
    [warning] = config.warnings
    assert warning.mark is not None and warning.mark.line == 2
    assert "every user of this machine can read it" in warning.message
    assert "sk-live" not in str(warning)
    os.chmod(path, 0o600)
    assert load_config(path, environ={}).warnings == ()
