"""Configuration errors as people see them (source line, caret, fix) and as editors read
them (Terraform's validate -json), captured on rich's recording console."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import jsonschema
import pytest
from rich.console import Console

from reconciler.config import load_config
from reconciler.config.diagnostics import ConfigWarning
from reconciler.errors import ConfigError, SourceMark
from reconciler.views.diagnostics import (
    Diagnostic,
    diagnostics_of,
    render_config_error,
    render_diagnostics,
    source_line,
    validate_json,
)

BROKEN = """\
instances:
  - name: web
    provider: shadeform
    cloud: hyperstack
    region: canada-1
    shade_instance_type: A6000
    colour: blue
  - name: api
    provider: forward
    offering_id: o-1
    count: many
"""


def screen(width: int = 80) -> Console:
    return Console(record=True, width=width, force_terminal=True, color_system="truecolor", file=io.StringIO())


def load_error(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "main.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    return caught.value


def test_errors_screen_shows_each_line_with_a_caret_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    error = load_error(Path("."), BROKEN)
    console = screen(80)
    render_config_error(error, console)
    text = console.export_text(clear=False)
    assert text.splitlines() == [
        "Error: main.yaml:7:5: instances[0].colour: unknown key 'colour'",
        "   |",
        " 7 |     colour: blue",
        "   |     ^^^^^^",
        "  hint: did you mean 'cloud'?",
        "",
        "Error: main.yaml:11:12: instances[1].count: count must be a whole number >= 0, not 'many'",
        "    |",
        " 11 |     count: many",
        "    |            ^^^^",
        "",
        "Found 2 errors in 1 file.",
    ]
    # Colour on a terminal: the caret is red.
    styled = console.export_text(styles=True)
    assert "\x1b[1;31m^^^^^^\x1b[0m" in styled, repr(styled)


def test_an_error_on_a_secret_line_never_shows_the_secret(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        """\
        providers:
          shadeform: {api_key: sk-live-abcdef123456, endpoint: embedded, timeout: soon}
        """,
    )
    console = screen(160)
    render_config_error(error, console)
    text = console.export_text()
    assert "sk-live" not in text
    assert "{api_key: (sensitive), endpoint: embedded, timeout: soon}" in text
    caret = text.splitlines()[3]
    assert caret.index("^") == text.splitlines()[2].index("soon")


def test_source_line_underlines_the_token_at_the_column(tmp_path: Path) -> None:
    lines = ['    envs: {PEER: "${instances.trainr.ip}"}', "    url: postgresql://u:pw@h/db"]
    first = source_line(SourceMark("f.yaml", 1, 18), lines)
    assert first is not None and lines[0][first.start : first.end] == '"${instances.trainr.ip}"'
    second = source_line(SourceMark("f.yaml", 2, 10), lines)
    assert second is not None and second.text == "    url: (sensitive)"
    assert second.text[second.start : second.end] == "(sensitive)"
    assert source_line(SourceMark("missing.yaml", 3, 1)) is None


# A JSON Schema of Terraform's `validate -json` document (format_version 1.0), as documented.
TERRAFORM_VALIDATE = {
    "type": "object",
    "required": ["format_version", "valid", "error_count", "warning_count", "diagnostics"],
    "properties": {
        "format_version": {"const": "1.0"},
        "valid": {"type": "boolean"},
        "error_count": {"type": "integer"},
        "warning_count": {"type": "integer"},
        "diagnostics": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["severity", "summary", "detail"],
                "properties": {
                    "severity": {"enum": ["error", "warning"]},
                    "summary": {"type": "string"},
                    "detail": {"type": "string"},
                    "range": {
                        "type": "object",
                        "required": ["filename", "start", "end"],
                        "properties": {
                            "filename": {"type": "string"},
                            "start": {"$ref": "#/$defs/pos"},
                            "end": {"$ref": "#/$defs/pos"},
                        },
                    },
                },
            },
        },
    },
    "$defs": {
        "pos": {
            "type": "object",
            "required": ["line", "column", "byte"],
            "properties": {"line": {"type": "integer"}, "column": {"type": "integer"}, "byte": {"type": "integer"}},
        }
    },
}


def test_validate_json_has_terraforms_shape_with_byte_offsets(tmp_path: Path) -> None:
    error = load_error(tmp_path, BROKEN)
    warning = ConfigWarning("main.yaml holds a secret", SourceMark(str(tmp_path / "main.yaml"), 2, 5), hint="chmod 600")
    document = validate_json(diagnostics_of(error, [warning]))
    jsonschema.validate(document, TERRAFORM_VALIDATE)
    assert (document["valid"], document["error_count"], document["warning_count"]) == (False, 2, 1)
    first = document["diagnostics"][0]
    assert first["summary"] == "unknown key 'colour'"
    assert first["detail"] == "instances[0].colour: did you mean 'cloud'?"
    source = (tmp_path / "main.yaml").read_bytes()
    start, end = first["range"]["start"], first["range"]["end"]
    assert (start["line"], start["column"], end["column"]) == (7, 5, 11)
    assert source[start["byte"] : end["byte"]] == b"colour"
    assert document["diagnostics"][2]["severity"] == "warning"
    assert validate_json([])["valid"] is True


def test_warnings_render_with_their_own_label() -> None:
    console = screen(80)
    render_diagnostics([Diagnostic("warning", "deprecated", "use the new key", None)], console)
    assert console.export_text() == "Warning: deprecated\n  hint: use the new key\n"


def test_secrets_are_scrubbed_before_rich_lays_the_text_out() -> None:
    """rich expands a tab to spaces; a scrubber that saw only the printed text would miss it."""
    from reconciler.redaction import Scrubber

    secret = "hunter2-secret\tvalue"
    scrubber = Scrubber()
    scrubber.add(secret)
    error = ConfigError(f"{secret!s} is not a valid name", None, "instances[0].name", hint=f"not {secret}")
    console = screen(120)
    render_config_error(error, console, scrubber.scrub)
    text = console.export_text()
    assert "hunter2" not in text and "(sensitive)" in text
    leaky = screen(120)
    render_config_error(error, leaky)
    assert "hunter2-secret" in leaky.export_text()  # without the scrubber the value is there
