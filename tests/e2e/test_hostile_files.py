"""Hostile or damaged inputs other than state: an edited saved plan, an alias bomb or an oversized
YAML file, an API key pasted with its newline. Each is refused by the installed command with exit
1 and a message naming the file (and line) or the variable, before any API call or state write.
"""

from __future__ import annotations

import json
from pathlib import Path

from lifecycle_support import Project, RequestRecorder, run_cli

pytest_plugins = ["lifecycle_support"]

KEYS_ONLY = """providers:
  shadeform:
    endpoint: {endpoint}
ssh_keys:
  - name: deploy
    provider: shadeform
    public_key: ${{file:deploy.pub}}
"""

INSTANCE = """instances:
  - name: trainer
    provider: shadeform
    cloud: lambdalabs
    region: us-east-1
    shade_instance_type: A6000
    ssh_key: deploy
"""

BOMB = (
    "\n".join(
        ["x-laughs:", '  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
        + [
            f"  {name}: &{name} [{', '.join(['*' + previous] * 9)}]"
            for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
        ]
    )
    + "\n"
)


def refused(
    project: Project, recorder: RequestRecorder | None, *args: str, env: dict[str, str] | None = None
) -> str:
    before = project.files()
    result = project.run(*args, expect=1, env=env)
    assert result.stderr.startswith("Error:"), result.describe()
    assert "Traceback" not in result.output and "unexpected" not in result.output, result.describe()
    assert project.files() == before, "the state directory changed"
    if recorder is not None:
        assert recorder.requests == [], f"API calls were made: {recorder.requests}"
    return result.stderr


def test_a_saved_plan_edited_to_other_valid_json_is_refused_by_apply_and_show(project: Project) -> None:
    project.write(KEYS_ONLY.format(endpoint="embedded") + INSTANCE)
    project.run("plan", "-out", "plan.bin")
    plan_path = project.root / "plan.bin"
    document = json.loads(plan_path.read_text(encoding="utf-8"))
    for change in document["changes"]:
        if change["address"] == "instances.trainer":
            change["after"]["shade_instance_type"] = "H100"  # a dearer GPU than the plan showed
    plan_path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")

    for args in (("apply", "plan.bin"), ("show", "plan.bin"), ("show", "-json", "plan.bin")):
        error = refused(project, None, *args)
        assert (
            "plan.bin was changed after it was saved: its content no longer matches its sha256 digest"
            in error
        )
        assert "reconciler plan -out FILE" in error
    assert project.ledger() == [], "something was created from the edited plan"

    project.run("plan", "-out", "plan.bin")
    project.run("apply", "plan.bin")
    assert len(project.live()) == 2


def test_an_alias_bomb_is_refused_with_file_and_line(
    project: Project, recorder: RequestRecorder, tmp_path: Path
) -> None:
    project.write(
        KEYS_ONLY.format(endpoint=recorder.url).replace("shadeform:\n", "shadeform:\n    api_key: k-123\n")
    )
    project.write(BOMB, "laughs.yaml")
    for args in (("validate",), ("plan",)):
        error = refused(project, recorder, *args)
        assert "laughs.yaml:8:6: the YAML here holds 5,380,840 values once its aliases are expanded" in error
    result = run_cli(("validate", "-f", str(project.root)), tmp_path, expect=1)
    assert "laughs.yaml:8:6:" in result.stderr, result.describe()


def test_an_oversized_yaml_file_is_refused_before_it_is_read(
    project: Project, recorder: RequestRecorder
) -> None:
    project.write(
        KEYS_ONLY.format(endpoint=recorder.url).replace("shadeform:\n", "shadeform:\n    api_key: k-123\n")
    )
    (project.root / "huge.yaml").write_bytes(b"# " + b"x" * (17 * 1024 * 1024) + b"\n")
    error = refused(project, recorder, "plan")
    assert "huge.yaml: the file is 17.0 MiB, more than the 16 MiB a configuration file may have" in error


KEY = "sk-live-7f3a9c0e5b21"


def test_an_api_key_pasted_with_its_newline_is_refused_naming_the_variable(
    project: Project, recorder: RequestRecorder
) -> None:
    project.write(KEYS_ONLY.format(endpoint=recorder.url))
    for args in (("plan",), ("apply", "--auto-approve"), ("validate",)):
        result = project.run(*args, expect=1, env={"SHADEFORM_API_KEY": KEY + "\n"})
        assert (
            "the API key of provider shadeform in the environment variable SHADEFORM_API_KEY ends with a line break"
            in result.stderr
        ), result.describe()
        assert "7f3a9c0e5b21" not in result.output, result.describe()
    assert recorder.requests == []


def test_an_api_key_with_control_characters_from_the_config_is_refused_at_its_line(
    project: Project, recorder: RequestRecorder
) -> None:
    config = KEYS_ONLY.format(endpoint=recorder.url).replace(
        "shadeform:\n", "shadeform:\n    api_key: ${env:SF_TOKEN}\n"
    )
    project.write(config)
    error = refused(project, recorder, "plan", env={"SF_TOKEN": " " + KEY})
    assert (
        "main.yaml:3:14: providers.shadeform.api_key: the API key of provider shadeform starts or ends"
        in error
    )
    error = refused(project, recorder, "plan", env={"SF_TOKEN": KEY[:6] + "\x1b" + KEY[6:]})
    assert "contains a line break, tab or other control character" in error
    assert "7f3a9c0e5b21" not in error


def test_a_forward_key_is_checked_the_same_way(project: Project, recorder: RequestRecorder) -> None:
    project.write(
        f"providers:\n  forward:\n    endpoint: {recorder.url}\n"
        "ssh_keys:\n  - name: deploy\n    provider: forward\n    public_key: ${file:deploy.pub}\n"
    )
    error = refused(project, recorder, "plan", env={"FORWARD_API_KEY": KEY + "\r\n"})
    assert "provider forward in the environment variable FORWARD_API_KEY ends with a line break" in error
    assert "7f3a9c0e5b21" not in error


def test_a_sensitive_value_in_an_error_is_scrubbed_in_its_escaped_form(
    project: Project, recorder: RequestRecorder
) -> None:
    """The error quotes the value with repr(), which escapes the tab: the raw value is not in it."""
    project.write(
        'variables:\n  tok: {sensitive: true, default: "hunter2-secret\\tvalue"}\n'
        + KEYS_ONLY.format(endpoint=recorder.url).replace("shadeform:\n", "shadeform:\n    api_key: k-123\n")
        + INSTANCE.replace("  - name: trainer\n", '  - name: "${var.tok}"\n')
    )
    error = refused(project, recorder, "validate")
    assert "instances[0].name: '(sensitive)' is not a valid name" in error
    assert "hunter2" not in error
