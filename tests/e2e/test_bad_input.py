"""Bad input is refused before anything happens: exit 1, one clear error naming the file, line and
field where there is one, no API call, no state write.

The project under test already has a state (with a resource, so a run that got as far as a
refresh would call the API) and points its provider at a recorder on 127.0.0.1 that logs
every request: "no API call" is checked, not assumed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from lifecycle_support import Project, RequestRecorder, shadeform_trainer

pytest_plugins = ["lifecycle_support"]

LINEAGE = "5d1e3c0a-8b7f-4e2a-9c61-2f4b8d0e7a13"
EXISTING_STATE = {
    "version": 1,
    "serial": 3,
    "lineage": LINEAGE,
    "resources": {
        "ssh_keys.deploy": {
            "provider": "shadeform",
            "kind": "ssh_keys",
            "id": "0b6f3c1e-2d4a-4c8e-9f10-1a2b3c4d5e6f",
            "attributes": {"name": "deploy", "public_key": "ssh-ed25519 AAAA e2e@example"},
            "depends_on": [],
            "marker": "rc-5d1e3c0a-000001",
            "status": "active",
        }
    },
    "deposed": [],
    "pending": [],
}


def valid_config(endpoint: str, *, api_key: bool = True) -> str:
    key_line = "    api_key: recorder-key\n" if api_key else ""
    return f"""providers:
  shadeform:
    endpoint: {endpoint}
{key_line}variables:
  gpu: {{type: string, default: A6000}}
  size: {{type: number, default: 100}}
{shadeform_trainer(gpu="${var.gpu}", size_gb="${var.size}")}"""


@pytest.fixture
def guarded(project: Project, recorder: RequestRecorder) -> Project:
    """A valid project with existing state whose provider endpoint is the recorder."""
    project.write(valid_config(recorder.url))
    project.state_dir.mkdir()
    text = json.dumps(EXISTING_STATE, indent=2) + "\n"
    project.state_path.write_text(text, encoding="utf-8")
    project.state_path.with_name(project.state_path.name + ".backup").write_text(text, encoding="utf-8")
    return project


def refused(
    project: Project, recorder: RequestRecorder, *args: str, env: dict[str, str] | None = None
) -> str:
    """Run a command that must be refused; returns its error text after checking nothing happened."""
    before = project.files()
    result = project.run(*args, expect=1, env=env)
    assert result.stderr.startswith(("Error:", "Usage:")), result.describe()
    assert "Traceback" not in result.output
    assert project.files() == before, "the state directory changed"
    assert not project.sandbox_path.exists()
    assert recorder.requests == [], f"API calls were made: {recorder.requests}"
    return result.stderr


@dataclass(frozen=True)
class BadConfig:
    id: str
    find: str  # text of the valid config to replace ...
    replace: str  # ... with this
    expected: tuple[str, ...]  # fragments the error must contain (file:line:column, field, hint)


BAD_CONFIGS = [
    BadConfig(
        "malformed-yaml",
        "    volumes: [data]\n",
        "    volumes: [data\n",
        ("main.yaml:", "invalid YAML"),
    ),
    BadConfig(
        "unknown-key",
        "    region: us-east-1\n    size_gb",
        "    regoin: us-east-1\n    size_gb",
        ("main.yaml:16:5:", "volumes[0].regoin", "unknown key 'regoin'", "did you mean 'region'?"),
    ),
    BadConfig(
        "misspelt-provider-key",
        "  - name: data\n    provider: shadeform",
        "  - name: data\n    provder: shadeform",
        ("main.yaml:14:5:", "volumes[0].provder", "unknown key 'provder'", "did you mean 'provider'?"),
    ),
    BadConfig(
        "missing-required-field",
        "    size_gb: ${var.size}\n",
        "",
        ("main.yaml:13:5:", "volumes[0].size_gb", "missing required field 'size_gb'"),
    ),
    BadConfig(
        "duplicate-name",
        "volumes:\n",
        "  - name: deploy\n    provider: shadeform\n    public_key: ${file:deploy.pub}\nvolumes:\n",
        (
            "main.yaml:12:11:",
            "ssh_keys[1].name",
            "duplicate ssh_key name 'deploy' (first declared at main.yaml:9:11)",
        ),
    ),
    BadConfig(
        "dangling-key-reference",
        "    ssh_key: deploy\n",
        "    ssh_key: deplyo\n",
        ("main.yaml:24:14:", "instances[0].ssh_key", "no ssh_key named 'deplyo'", "did you mean 'deploy'?"),
    ),
    BadConfig(
        "dependency-cycle",
        "    size_gb: ${var.size}\n",
        "    size_gb: ${var.size}\n    depends_on: [instances.trainer]\n",
        ("main.yaml:", "dependency cycle:", "volumes.data -> instances.trainer -> volumes.data"),
    ),
    BadConfig(
        "unknown-provider",
        "  - name: trainer\n    provider: shadeform\n",
        "  - name: trainer\n    provider: shadefrom\n",
        (
            "main.yaml:20:15:",
            "instances[0].provider",
            "unknown provider 'shadefrom'",
            "did you mean 'shadeform'?",
        ),
    ),
    BadConfig(
        "invalid-value",
        "    size_gb: ${var.size}\n",
        "    size_gb: -5\n",
        ("main.yaml:17:14:", "volumes[0].size_gb", "size_gb -5 is outside", "between 1 and 65536"),
    ),
    BadConfig(
        "variable-without-value",
        "  gpu: {type: string, default: A6000}\n",
        "  gpu: {type: string, description: GPU type for the trainer}\n",
        (
            "main.yaml:23:26:",
            "instances[0].shade_instance_type",
            "variable 'gpu' (declared at main.yaml:6:8) has no value",
            "--var gpu=VALUE",
        ),
    ),
    BadConfig(
        "reference-to-undeclared-resource",
        "    volumes: [data]\n",
        '    volumes: [data]\n    envs: {PEER: "${instances.trainr.ip}"}\n',
        (
            "main.yaml:26:18:",
            "instances[0].envs.PEER",
            "${instances.trainr.ip}: instances.trainr is not declared",
            "did you mean 'instances.trainer'?",
        ),
    ),
    BadConfig(
        "reference-to-unknown-attribute",
        "    volumes: [data]\n",
        '    volumes: [data]\n    envs: {SIZE: "${volumes.data.sise_gb}"}\n',
        ("main.yaml:26:18:", "volumes (shadeform) have no attribute 'sise_gb'", "did you mean 'size_gb'?"),
    ),
    BadConfig(
        "reference-cycle",
        "    volumes: [data]\n",
        '    volumes: [data]\n    envs: {SELF: "${instances.trainer.ip}"}\n',
        ("main.yaml:26:18:", "dependency cycle: instances.trainer -> instances.trainer"),
    ),
    BadConfig(
        "output-exposing-a-sensitive-value",
        "variables:\n",
        'outputs:\n  token: {value: "t=${var.token}"}\nvariables:\n  token: {default: abcd1234, sensitive: true}\n',
        ("main.yaml:6:18:", "outputs.token.value", "output token exposes a sensitive variable", "sensitive: true"),
    ),
    BadConfig(
        "duplicate-output-name",
        "variables:\n",
        "outputs:\n  ip: {value: a}\n  ip: {value: b}\nvariables:\n",
        ("main.yaml:7:3:", "duplicate key 'ip' (first at line 6)"),
    ),
]


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=lambda c: c.id)
def test_bad_configuration_is_refused_before_anything_happens(
    guarded: Project, recorder: RequestRecorder, case: BadConfig
) -> None:
    text = (guarded.root / "main.yaml").read_text(encoding="utf-8")
    assert case.find in text, f"{case.id}: the base config no longer contains {case.find!r}"
    guarded.write(text.replace(case.find, case.replace, 1))
    error = refused(guarded, recorder, "apply", "--auto-approve")
    for fragment in case.expected:
        assert fragment in error, f"{case.id}: {fragment!r} not in:\n{error}"


def test_every_command_refuses_a_bad_configuration_the_same_way(
    guarded: Project, recorder: RequestRecorder
) -> None:
    text = (guarded.root / "main.yaml").read_text(encoding="utf-8")
    guarded.write(text.replace("    ssh_key: deploy\n", "    ssh_key: deplyo\n"))
    errors = [
        refused(guarded, recorder, *command) for command in (("validate",), ("destroy", "--auto-approve"))
    ]
    for error in errors:
        assert "main.yaml:24:14: instances[0].ssh_key: no ssh_key named 'deplyo'" in error


def test_missing_api_key_for_a_real_endpoint(guarded: Project, recorder: RequestRecorder) -> None:
    guarded.write(valid_config(recorder.url, api_key=False))
    error = refused(guarded, recorder, "plan")
    assert "main.yaml:3:5: providers.shadeform.api_key: missing API key for provider shadeform" in error
    assert "SHADEFORM_API_KEY" in error
    assert "endpoint: embedded" in error


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (("--var", "size=lots"), {}, ("--var size", "'lots' is not a number")),
        (
            (),
            {"RECONCILER_VAR_size": "big"},
            ("RECONCILER_VAR_size", "variable 'size' (number)", "'big' is not a number"),
        ),
        (("--var-file", "vars/prod.yaml"), {}, ("vars/prod.yaml:1:7:", "expected a number, got a list")),
    ],
    ids=["cli-wrong-type", "env-wrong-type", "var-file-wrong-type"],
)
def test_bad_variable_values(
    guarded: Project,
    recorder: RequestRecorder,
    args: tuple[str, ...],
    env: dict[str, str],
    expected: tuple[str, ...],
) -> None:
    # Var files live outside the config directory: every *.yaml in it is configuration.
    (guarded.root / "vars").mkdir()
    (guarded.root / "vars" / "prod.yaml").write_text("size: [1, 2]\n", encoding="utf-8")
    error = refused(guarded, recorder, "plan", *args, env=env)
    for fragment in expected:
        assert fragment in error, error


def test_unknown_target_is_refused_before_any_api_call(guarded: Project, recorder: RequestRecorder) -> None:
    error = refused(guarded, recorder, "plan", "--target", "instances.trainr")
    assert "--target instances.trainr: no such resource" in error
    assert "did you mean instances.trainer?" in error
    error = refused(guarded, recorder, "apply", "--auto-approve", "--replace", "volumes.nope")
    assert "--replace volumes.nope: no such resource" in error
    error = refused(guarded, recorder, "plan", "--target", "trainer")
    assert "'trainer' is not a resource address" in error


def test_corrupt_state_is_refused_and_never_overwritten(guarded: Project, recorder: RequestRecorder) -> None:
    guarded.state_path.write_text('{"version": 1, "serial": 4, "resources": {', encoding="utf-8")
    for command in (("apply", "--auto-approve"), ("show",)):
        error = refused(guarded, recorder, *command)
        assert "state/stack.json is not valid JSON (line 1" in error
        assert ".backup" in error

    guarded.state_path.write_text("", encoding="utf-8")
    error = refused(guarded, recorder, "apply", "--auto-approve")
    assert "is empty" in error
    assert "state/stack.json.backup" in error


def test_state_of_a_newer_version_is_refused_and_left_untouched(
    guarded: Project, recorder: RequestRecorder
) -> None:
    guarded.state_path.write_text(json.dumps({**EXISTING_STATE, "version": 2}), encoding="utf-8")
    for command in (("apply", "--auto-approve"), ("state", "list")):
        error = refused(guarded, recorder, *command)
        assert "has state version 2, newer than this reconciler knows (1)" in error
        assert "left untouched" in error


def test_corrupt_and_damaged_plan_files_are_refused(guarded: Project, recorder: RequestRecorder) -> None:
    (guarded.root / "garbage.bin").write_bytes(b"\x00\x01 not a plan \xff")
    error = refused(guarded, recorder, "apply", "garbage.bin")
    assert "garbage.bin is not a reconciler plan file" in error
    error = refused(guarded, recorder, "show", "-json", "garbage.bin")
    assert "garbage.bin is not a reconciler plan file" in error

    damaged = {"format": "reconciler-plan", "format_version": 1, "config_name": "stack", "changes": []}
    (guarded.root / "damaged.bin").write_text(json.dumps(damaged), encoding="utf-8")
    error = refused(guarded, recorder, "apply", "damaged.bin")
    assert "damaged.bin is a damaged plan file" in error

    error = refused(guarded, recorder, "apply", "missing.bin")
    assert "missing.bin does not exist" in error


def test_plan_file_from_another_configuration_is_refused(guarded: Project, recorder: RequestRecorder) -> None:
    other = Project.create(guarded.root.parent, "alpha")
    other.write("ssh_keys:\n  - name: deploy\n    provider: shadeform\n    public_key: ${file:deploy.pub}\n")
    other.run("plan", "-out", str(guarded.root / "alpha.bin"))
    error = refused(guarded, recorder, "apply", "alpha.bin")
    assert "the plan was made from configuration 'alpha', not 'stack'" in error
