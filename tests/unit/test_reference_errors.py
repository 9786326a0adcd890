"""Bad references and outputs: one error naming file, line, column and field, with a hint."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reconciler.config import load_config
from reconciler.errors import ConfigError, GraphCycleError

HEAD = """
instances:
  - name: head
    provider: shadeform
    cloud: lambdalabs
    region: us-east-1
    shade_instance_type: A6000
  - name: worker
    count: 2
    provider: forward
    offering_id: spot_coff_1
    envs:
      MASTER_ADDR: "{ref}"
"""


def error_of(tmp_path: Path, text: str, extra: dict[str, str] | None = None) -> ConfigError:
    (tmp_path / "main.yaml").write_text(textwrap.dedent(text))
    for name, body in (extra or {}).items():
        (tmp_path / name).write_text(textwrap.dedent(body))
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path if extra else tmp_path / "main.yaml", environ={})
    return caught.value


@pytest.mark.parametrize(
    ("ref", "message", "hint"),
    [
        ("${instances.head.ipp}", "instances (shadeform) have no attribute 'ipp'", "did you mean 'ip'?"),
        ("${instances.hed.ip}", "instances.hed is not declared", "instances.head"),
        ("${volumes.head.id}", "volumes.head is not declared", None),
        ("${instances.head[*].ip}", "instances.head has no count", "${instances.head.ip}"),
        ("${instances.head[0].ip}", "instances.head has no count", None),
        ("${instances.worker.ip}", "instances.worker has count 2", "worker[${count.index}]"),
        ("${instances.worker[5].ip}", "instances.worker[5] does not exist", None),
    ],
)
def test_a_bad_reference_points_at_its_string(tmp_path: Path, ref: str, message: str, hint: str | None) -> None:
    error = error_of(tmp_path, HEAD.replace("{ref}", ref))
    assert error.mark is not None and (error.mark.line, error.mark.column) == (13, 20), error
    assert error.field == "instances[1].envs.MASTER_ADDR"
    assert message in error.message, error
    if hint is not None:
        assert error.hint is not None and hint in error.hint, error


def test_a_reference_cycle_is_reported_with_its_path(tmp_path: Path) -> None:
    text = HEAD.replace("{ref}", "${instances.head.ip}").replace(
        "    shade_instance_type: A6000\n",
        '    shade_instance_type: A6000\n    envs: {PEER: "${instances.worker[1].ip}"}\n',
    )
    error = error_of(tmp_path, text)
    assert isinstance(error, GraphCycleError)
    assert "dependency cycle: instances.head -> instances.worker[1] -> instances.head" in error.message
    assert error.mark is not None and error.mark.line == 8 and error.field == "instances[0].envs.PEER"


def test_a_resource_referring_to_itself_is_a_cycle(tmp_path: Path) -> None:
    text = HEAD.replace("{ref}", "${instances.worker[0].ip}")
    error = error_of(tmp_path, text)
    assert isinstance(error, GraphCycleError) and "instances.worker[0] -> instances.worker[0]" in error.message


def test_references_are_refused_outside_resources_and_outputs(tmp_path: Path) -> None:
    text = HEAD.replace("{ref}", "x") + "providers:\n  shadeform:\n    endpoint: ${instances.head.ip}\n"
    error = error_of(tmp_path, text)
    assert "refers to a resource attribute, which is not allowed here" in error.message
    assert error.mark is not None and error.mark.line == 16


OUTPUTS_OK = HEAD.replace("{ref}", "${instances.head.ip}")


def test_an_output_exposing_a_sensitive_variable_needs_sensitive_true(tmp_path: Path) -> None:
    text = OUTPUTS_OK + textwrap.dedent(
        """\
        variables:
          token: {default: abcdefgh, sensitive: true}
        outputs:
          url:
            value: "https://${instances.head.ip}/?t=${var.token}"
        """
    )
    error = error_of(tmp_path, text)
    assert "output url exposes a sensitive variable" in error.message
    assert error.field == "outputs.url.value" and error.hint == "add sensitive: true to the output"
    assert error.mark is not None and error.mark.line == 18
    assert load_config_ok(tmp_path, text.replace("?t=${var.token}\"", "?t=${var.token}\"\n    sensitive: true"))


def test_an_output_exposing_a_sensitive_env_needs_sensitive_true(tmp_path: Path) -> None:
    text = OUTPUTS_OK.replace(
        "    shade_instance_type: A6000\n",
        "    shade_instance_type: A6000\n    envs: {KEY: {value: abcdefgh, sensitive: true}}\n",
    ) + "outputs:\n  envs:\n    value: ${instances.head.envs}\n"
    error = error_of(tmp_path, text)
    assert "output envs exposes ${instances.head.envs}, which is sensitive" in error.message


def test_an_output_name_declared_twice_across_files(tmp_path: Path) -> None:
    text = OUTPUTS_OK + "outputs:\n  ip:\n    value: ${instances.head.ip}\n"
    error = error_of(tmp_path, text, {"more.yaml": "outputs:\n  ip:\n    value: x\n"})
    assert "outputs.ip is declared twice (first at" in error.message and "main.yaml:15" in error.message
    assert error.mark is not None and Path(error.mark.file).name == "more.yaml" and error.mark.line == 2


def test_an_output_name_declared_twice_in_one_file(tmp_path: Path) -> None:
    text = OUTPUTS_OK + "outputs:\n  ip:\n    value: a\n  ip:\n    value: b\n"
    error = error_of(tmp_path, text)
    assert "duplicate key 'ip'" in error.message and error.mark is not None and error.mark.line == 17


def test_an_output_with_a_bad_reference_or_key(tmp_path: Path) -> None:
    error = error_of(tmp_path, OUTPUTS_OK + "outputs:\n  ip:\n    value: ${instances.head.adress}\n")
    assert "no attribute 'adress'" in error.message and error.field == "outputs.ip.value"
    error = error_of(tmp_path, OUTPUTS_OK + "outputs:\n  ip:\n    value: x\n    sensitiv: true\n")
    assert "unknown key 'sensitiv'" in error.message and error.hint == "did you mean 'sensitive'?"


def load_config_ok(tmp_path: Path, text: str) -> bool:
    (tmp_path / "main.yaml").write_text(textwrap.dedent(text))
    return bool(load_config(tmp_path / "main.yaml", environ={}).outputs)
