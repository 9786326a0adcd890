"""The CLI's hooks into the views, run in-process: validate -json and graph --format mermaid."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from reconciler.cli import Session, cli

CONFIG = """\
providers:
  forward: {endpoint: embedded}
volumes:
  - name: data
    provider: forward
    cloud: c
    region: r
    size_gb: 10
instances:
  - name: web
    provider: forward
    offering_id: o-1
    volumes: [data]
"""


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), obj=Session(), catch_exceptions=False)
    return result.exit_code, result.stdout


def test_validate_json_for_a_valid_and_a_broken_configuration(tmp_path: Path) -> None:
    path = tmp_path / "main.yaml"
    path.write_text(CONFIG)
    code, out = invoke("validate", "-json", "-f", str(path))
    assert code == 0 and json.loads(out)["valid"] is True
    path.write_text(CONFIG.replace("    offering_id: o-1\n", "    offering_id: o-1\n    colour: x\n").replace(
        "size_gb: 10", "size_gb: lots"))
    code, out = invoke("validate", "--json", "-f", str(path))
    document = json.loads(out)
    assert code == 1
    assert (document["valid"], document["error_count"]) == (False, 2)
    assert [d["range"]["start"]["line"] for d in document["diagnostics"]] == [8, 13]


def test_graph_as_mermaid_and_dot(tmp_path: Path) -> None:
    path = tmp_path / "main.yaml"
    path.write_text(CONFIG)
    code, out = invoke("graph", "--format", "mermaid", "-f", str(path))
    assert code == 0
    assert out.splitlines()[:4] == [
        "flowchart LR", '  n0["volumes.data"]:::unchanged', '  n1["instances.web"]:::unchanged', "  n1 --> n0"]
    code, out = invoke("graph", "-f", str(path))
    assert out.startswith("digraph reconciler {")


def test_validate_prints_warnings_and_still_succeeds(tmp_path: Path) -> None:
    path = tmp_path / "main.yaml"
    path.write_text(CONFIG.replace("forward: {endpoint: embedded}", "forward: {endpoint: embedded, api_key: fk-0123456789}"))
    path.chmod(0o644)
    result = CliRunner().invoke(cli, ["validate", "-f", str(path)], obj=Session(), catch_exceptions=False)
    assert result.exit_code == 0
    assert "Warning: " in result.output and "every user of this machine can read it" in result.output
    assert "fk-0123456789" not in result.output
    assert "Success! The configuration is valid" in result.output
