"""Every kind of configuration error names the file, line, column and field, with a hint
where the fix is obvious."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reconciler.config import load_config
from reconciler.errors import ConfigError, GraphCycleError

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPk0Zss4K0I05ck6M0v3LwgFehqBeF6jeh4iCKCR219c me@host"
PINNED = "provider: shadeform, cloud: c, region: r, shade_instance_type: A6000"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def load_error(tmp_path: Path, text: str, **kwargs: object) -> ConfigError:
    kwargs.setdefault("environ", {})
    path = write(tmp_path, "main.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, **kwargs)  # type: ignore[arg-type]
    return caught.value


def assert_error(
    error: ConfigError,
    *,
    line: int | None,
    field: str | None,
    message: str,
    hint: str | None = None,
    column: int | None = None,
    file: str = "main.yaml",
) -> None:
    if line is None:
        assert error.mark is None
    else:
        assert error.mark is not None
        assert Path(error.mark.file).name == file
        assert error.mark.line == line, error
        if column is not None:
            assert error.mark.column == column, error
    assert error.field == field, error
    assert message in error.message, error
    if hint is None:
        assert error.hint is None, error.hint
    else:
        assert error.hint is not None and hint in error.hint, error
    assert str(error).startswith(f"{error.mark}: " if error.mark else "")


CASES = [
    pytest.param(
        "instances:\n  - name: a\n    provider: forward\n   offering_id: o\n",
        dict(line=4, column=4, field=None, message="invalid YAML", hint="indentation"),
        id="malformed-yaml",
    ),
    pytest.param(
        "instances:\n  - name: a\n    name: b\n",
        dict(line=3, column=5, field=None, message="duplicate key 'name' (first at line 2)", hint="only one"),
        id="duplicate-yaml-key",
    ),
    pytest.param(
        "providers: {}\ninstancs: []\n",
        dict(
            line=2,
            column=1,
            field="instancs",
            message="unknown top-level key",
            hint="did you mean 'instances'?",
        ),
        id="unknown-top-level-key",
    ),
    pytest.param(
        "- a\n",
        dict(line=1, field=None, message="the top level must be a map"),
        id="top-level-not-a-map",
    ),
    pytest.param(
        "instances: {name: a}\n",
        dict(line=1, field="instances", message="must be a list"),
        id="section-not-a-list",
    ),
    pytest.param(
        "instances:\n  - just-a-name\n",
        dict(line=2, field="instances[0]", message="must be a map", hint="- name:"),
        id="entry-not-a-map",
    ),
    pytest.param(
        f"""\
        instances:
          - {{name: ok, {PINNED}}}
          - {{name: a, {PINNED},
              launch: {{type: docker, imgae: vllm}}}}
        """,
        dict(
            line=4,
            column=30,
            field="instances[1].launch.imgae",
            message="unknown key 'imgae'",
            hint="did you mean 'image'?",
        ),
        id="unknown-nested-key",
    ),
    pytest.param(
        "instances:\n  - name: a\n    provider: forward\n    offering_id: o\n    clod: c\n",
        dict(
            line=5,
            column=5,
            field="instances[0].clod",
            message="unknown key 'clod'",
            hint="did you mean 'cloud'?",
        ),
        id="unknown-resource-key",
    ),
    pytest.param(
        """\
        instances:
          - name: a
            provider: shadeform
            cloud: c
            region: r
            shade_instance_type: A6000
            launch:
              type: docker
              args: --model x
        """,
        dict(line=8, column=7, field="instances[0].launch.image", message="missing required field 'image'"),
        id="missing-required-field",
    ),
    pytest.param(
        "volumes:\n  - {name: v, provider: shadeform, cloud: c, region: r, size_gb: big}\n",
        dict(line=2, column=66, field="volumes[0].size_gb", message="valid integer"),
        id="wrong-type",
    ),
    pytest.param(
        "volumes:\n  - {name: v, provider: shadeform, cloud: c, region: r, size_gb: 0}\n",
        dict(
            line=2,
            field="volumes[0].size_gb",
            message="size_gb 0 is outside what shadeform creates (1 to 65536 GB)",
            hint="between 1 and 65536",
        ),
        id="size-not-positive",
    ),
    pytest.param(
        "volumes:\n  - {name: v, provider: shadeform, region: r, size_gb: 5}\n",
        dict(line=2, field="volumes[0].cloud", message="missing required field 'cloud'"),
        id="shadeform-volume-needs-cloud",
    ),
    pytest.param(
        "instances:\n  - {name: a, provider: forward, offering_id: o,\n     tags: [x]}\n",
        dict(
            line=3,
            column=6,
            field="instances[0].tags",
            message="'tags' is not supported by this provider (it is a shadeform field)",
            hint="use provider: shadeform",
        ),
        id="provider-specific-field",
    ),
    pytest.param(
        "instances:\n  - {name: a, provider: forward, offering_id: o, launch: {type: script, script: x}}\n",
        dict(line=2, field="instances[0].launch", message="shadeform field", hint="remove 'launch'"),
        id="launch-on-forward",
    ),
    pytest.param(
        "instances:\n  - {name: a, provider: shadefrom, offering_id: o}\n",
        dict(
            line=2, field="instances[0].provider", message="unknown provider 'shadefrom'", hint="'shadeform'"
        ),
        id="unknown-resource-provider",
    ),
    pytest.param(
        "instances:\n  - {name: a, offering_id: o}\n",
        dict(
            line=2, field="instances[0].provider", message="missing required field", hint="shadeform, forward"
        ),
        id="missing-provider",
    ),
    pytest.param(
        "providers:\n  forward: {}\n  shadefrom: {}\n",
        dict(line=3, column=3, field="providers.shadefrom", message="unknown provider", hint="'shadeform'"),
        id="unknown-declared-provider",
    ),
    pytest.param(
        "providers:\n  forward: {endpoint: ftp://x}\n",
        dict(line=2, field="providers.forward.endpoint", message="http(s) URL", hint="https://"),
        id="bad-endpoint",
    ),
    pytest.param(
        "providers:\n  forward: {rate_limt: 3}\n",
        dict(line=2, field="providers.forward.rate_limt", message="unknown key", hint="'rate_limit'"),
        id="unknown-provider-setting",
    ),
    pytest.param(
        """\
        instances:
          - {name: web, provider: forward, offering_id: o}
          - {name: db, provider: forward, offering_id: o}
          - {name: web, provider: forward, offering_id: o}
        """,
        dict(line=4, field="instances[2].name", message="(first declared at", hint="rename one"),
        id="duplicate-name",
    ),
    pytest.param(
        "instances:\n  - {provider: forward, offering_id: o}\n",
        dict(line=2, column=5, field="instances[0].name", message="missing required field 'name'"),
        id="missing-name",
    ),
    pytest.param(
        "instances:\n  - {name: 'my box', provider: forward, offering_id: o}\n",
        dict(line=2, field="instances[0].name", message="'my box' is not a valid name", hint="letters"),
        id="bad-name",
    ),
    pytest.param(
        "instances:\n  - {name: web--rc-1, provider: forward, offering_id: o}\n",
        dict(line=2, field="instances[0].name", message="ownership marker", hint="rename"),
        id="name-with-marker-separator",
    ),
    pytest.param(
        "instances:\n  - {name: a, provider: forward, offering_id: o, envs: {1X: y}}\n",
        dict(
            line=2, field="instances[0].envs.1X", message="not a valid environment variable name", hint="'_'"
        ),
        id="bad-env-name",
    ),
    pytest.param(
        "instances:\n  - name: a\n    provider: forward\n    offering_id: o\n"
        "    envs:\n      A: {valeu: x}\n",
        dict(line=6, column=11, field="instances[0].envs.A.valeu", message="unknown key", hint="'value'"),
        id="env-entry-typo",
    ),
    pytest.param(
        f"instances:\n  - {{name: a, {PINNED}, launch: {{type: dokcer, image: x}}}}\n",
        dict(
            field="instances[0].launch.type", line=2, message="'dokcer' is not a valid type", hint="'docker'"
        ),
        id="bad-launch-type",
    ),
    pytest.param(
        f"instances:\n  - {{name: a, {PINNED}, launch: {{image: x}}}}\n",
        dict(field="instances[0].launch.type", line=2, message="missing required field 'type'"),
        id="missing-launch-type",
    ),
    pytest.param(
        f"instances:\n  - {{name: a, {PINNED}, rental_type: spto}}\n",
        dict(field="instances[0].rental_type", line=2, message="'on_demand' or 'spot'", hint="'spot'"),
        id="bad-literal",
    ),
    pytest.param(
        f"instances:\n  - {{name: a, {PINNED}, tags: [rc-mine]}}\n",
        dict(field="instances[0].tags[0]", line=2, message="reserved", hint="rename"),
        id="reserved-tag",
    ),
    pytest.param(
        f"instances:\n  - {{name: a, {PINNED}, auto_delete: {{}}}}\n",
        dict(
            field="instances[0].auto_delete", line=2, message="date_threshold, spend_threshold", hint="remove"
        ),
        id="empty-threshold",
    ),
    pytest.param(
        f"instances:\n  - {{name: a, {PINNED}, auto_delete: {{date_threshold: 2030-01-01}}}}\n",
        dict(field="instances[0].auto_delete.date_threshold", line=2, message="RFC 3339", hint="Z"),
        id="threshold-without-timezone",
    ),
    pytest.param(
        f"instances:\n  - {{name: a, {PINNED}, auto_delete: {{spend_threshold: -3}}}}\n",
        dict(field="instances[0].auto_delete.spend_threshold", line=2, message="positive amount"),
        id="negative-spend-threshold",
    ),
    pytest.param(
        "instances:\n  - {name: a, provider: forward, offering_id: o, offering: {gpu_type: H100}}\n",
        dict(field="instances[0].offering_id", line=2, message="not both"),
        id="pin-and-requirements",
    ),
    pytest.param(
        "instances:\n  - name: a\n    provider: forward\n",
        dict(field="instances[0]", line=2, column=5, message="needs offering_id", hint="offering: {gpu_type"),
        id="neither-pin-nor-requirements",
    ),
    pytest.param(
        "instances:\n  - {name: a, provider: shadeform, shade_instance_type: A, region: r}\n",
        dict(field="instances[0].cloud", line=2, message="missing required field 'cloud'", hint="pinned"),
        id="shadeform-pin-without-cloud",
    ),
    pytest.param(
        "instances:\n  - {name: a, provider: forward, region: r1, offering: {region: r2}}\n",
        dict(field="instances[0].region", line=2, message="conflicts with offering.region", hint="one place"),
        id="region-conflict",
    ),
    pytest.param(
        "instances:\n  - {name: a, provider: forward, offering_id: o, lifecycle: {ignore_changes: [envz]}}\n",
        dict(
            field="instances[0].lifecycle.ignore_changes[0]",
            line=2,
            message="not an attribute",
            hint="'envs'",
        ),
        id="ignore-changes-unknown-attribute",
    ),
    pytest.param(
        "ssh_keys:\n  - name: k\n    provider: forward\n"
        "    public_key: '-----BEGIN OPENSSH PRIVATE KEY-----'\n",
        dict(field="ssh_keys[0].public_key", line=4, message="private key", hint=".pub"),
        id="private-key",
    ),
    pytest.param(
        "ssh_keys:\n  - {name: k, provider: forward, public_key: hello}\n",
        dict(field="ssh_keys[0].public_key", line=2, message="not an OpenSSH public key", hint="ssh-ed25519"),
        id="not-a-public-key",
    ),
    pytest.param(
        "instances:\n  - {name: a, provider: forward, count: -1, offering_id: o}\n",
        dict(field="instances[0].count", line=2, message="whole number >= 0"),
        id="negative-count",
    ),
    pytest.param(
        f"""\
        ssh_keys:
          - {{name: deploy, provider: shadeform, public_key: "{KEY}"}}
        instances:
          - {{name: a, {PINNED}, ssh_key: deplyo}}
        """,
        dict(field="instances[0].ssh_key", line=4, message="no ssh_key named 'deplyo'", hint="'deploy'"),
        id="dangling-ssh-key",
    ),
    pytest.param(
        """\
        volumes:
          - {name: datasets, provider: shadeform, cloud: c, region: r, size_gb: 5}
        instances:
          - name: a
            provider: shadeform
            cloud: c
            region: r
            shade_instance_type: A6000
            volumes:
              - datasets
              - dataset
        """,
        dict(
            field="instances[0].volumes[1]", line=11, message="no volume named 'dataset'", hint="'datasets'"
        ),
        id="dangling-volume",
    ),
    pytest.param(
        f"instances:\n  - {{name: a, {PINNED}, volumes: [data]}}\n",
        dict(
            field="instances[0].volumes[0]",
            line=2,
            message="no volume named 'data'",
            hint="no volumes are declared",
        ),
        id="volume-reference-with-no-volumes",
    ),
    pytest.param(
        """\
        instances:
          - {name: a, provider: forward, offering_id: o, depends_on: [instances.bb]}
          - {name: b, provider: forward, offering_id: o}
        """,
        dict(
            field="instances[0].depends_on[0]",
            line=2,
            message="instances.bb does not exist",
            hint="'instances.b'",
        ),
        id="dangling-depends-on",
    ),
    pytest.param(
        "instances:\n  - {name: a, provider: forward, offering_id: o, depends_on: [instance.b]}\n",
        dict(field="instances[0].depends_on[0]", line=2, message="not a resource address", hint="kind.name"),
        id="malformed-depends-on",
    ),
    pytest.param(
        """\
        volumes:
          - {name: data, provider: shadeform, cloud: c, region: r, size_gb: 5}
        instances:
          - {name: a, provider: forward, offering_id: o, volumes: [data]}
        """,
        dict(
            field="instances[0].volumes[0]",
            line=4,
            message="volumes.data is on provider shadeform, this instance on forward",
            hint="own provider",
        ),
        id="volume-on-another-provider",
    ),
    pytest.param(
        f"""\
        ssh_keys:
          - {{name: k, provider: forward, public_key: "{KEY}"}}
        instances:
          - {{name: a, {PINNED}, ssh_key: k}}
        """,
        dict(
            field="instances[0].ssh_key",
            line=4,
            message="ssh_keys.k is on provider forward",
            hint="only use ssh_keys of its own provider",
        ),
        id="ssh-key-on-another-provider",
    ),
    pytest.param(
        """\
        volumes:
          - {name: data, provider: shadeform, cloud: c, region: eu-1, size_gb: 5}
        instances:
          - {name: a, provider: shadeform, cloud: c, region: us-1, shade_instance_type: A, volumes: [data]}
        """,
        dict(
            field="instances[0].volumes[0]",
            line=4,
            message="volumes.data is in region 'eu-1', this instance in 'us-1'",
            hint="same cloud and region",
        ),
        id="volume-in-another-region",
    ),
    pytest.param(
        """\
        volumes:
          - {name: data, provider: shadeform, cloud: other, region: r, size_gb: 5}
        instances:
          - {name: a, provider: shadeform, volumes: [data], offering: {gpu_type: A100, cloud: c}}
        """,
        dict(
            field="instances[0].volumes[0]",
            line=4,
            message="in cloud 'other', this instance in 'c'",
            hint="same cloud and region",
        ),
        id="volume-in-another-cloud-than-requirements",
    ),
    pytest.param(
        f"""\
        ssh_keys:
          - {{name: k, count: 2, provider: shadeform, public_key: "{KEY}"}}
        instances:
          - {{name: a, {PINNED}, ssh_key: k}}
        """,
        dict(
            field="instances[0].ssh_key",
            line=4,
            message="has count 2; name one of them",
            hint="k[${count.index}]",
        ),
        id="counted-reference-without-index",
    ),
    pytest.param(
        f"""\
        ssh_keys:
          - {{name: k, count: 2, provider: shadeform, public_key: "{KEY}"}}
        instances:
          - {{name: a, {PINNED}, ssh_key: "k[2]"}}
        """,
        dict(
            field="instances[0].ssh_key",
            line=4,
            message="ssh_keys.k[2] does not exist (ssh_keys.k has count 2)",
        ),
        id="reference-index-out-of-range",
    ),
    pytest.param(
        f"""\
        ssh_keys:
          - {{name: k, provider: shadeform, public_key: "{KEY}"}}
        instances:
          - {{name: a, {PINNED}, ssh_key: "k[0]"}}
        """,
        dict(field="instances[0].ssh_key", line=4, message="has no count; refer to it as 'k'"),
        id="index-on-uncounted-reference",
    ),
    pytest.param(
        "instances:\n  - {name: a, provider: forward, offering_id: '${var.gpuu}'}\n"
        "variables:\n  gpu: {default: x}\n",
        dict(field="instances[0].offering_id", line=2, message="undeclared variable 'gpuu'", hint="'gpu'"),
        id="undeclared-variable",
    ),
    pytest.param(
        "variables:\n  gpu: {}\ninstances:\n  - {name: a, provider: forward, offering_id: 'x-${var.gpu}'}\n",
        dict(
            field="instances[0].offering_id",
            line=4,
            message="variable 'gpu' (declared at ",
            hint="--var gpu=VALUE",
        ),
        id="variable-without-value",
    ),
    pytest.param(
        "variables:\n  gpu: {typ: string}\n",
        dict(field="variables.gpu.typ", line=2, message="unknown key 'typ'", hint="'type'"),
        id="variable-block-typo",
    ),
    pytest.param(
        "variables:\n  n: {type: number, default: many}\n",
        dict(field="variables.n.default", line=2, message="'many' is not a number"),
        id="variable-default-wrong-type",
    ),
    pytest.param(
        "variables:\n  n: {type: integer}\n",
        dict(field="variables.n.type", line=2, message="'string', 'number', 'bool', 'list' or 'map'"),
        id="variable-unknown-type",
    ),
    pytest.param(
        "variables:\n  x: {default: '${env:HOME}'}\n",
        dict(field="variables.x.default", line=2, message="literal values", hint="RECONCILER_VAR_"),
        id="interpolation-in-variable-default",
    ),
    pytest.param(
        "instances:\n  - {name: a, provider: forward, offering_id: '${env:NOPE_NOT_SET}'}\n",
        dict(
            field="instances[0].offering_id",
            line=2,
            message="environment variable NOPE_NOT_SET is not set",
            hint="export NOPE_NOT_SET=",
        ),
        id="missing-env",
    ),
    pytest.param(
        "instances:\n  - {name: a, provider: forward, offering_id: o, envs: {K: '${file:missing.txt}'}}\n",
        dict(field="instances[0].envs.K", line=2, message="file not found: missing.txt", hint="relative to"),
        id="missing-file",
    ),
    pytest.param(
        "instances:\n  - {name: a, provider: forward, offering_id: 'o-${count.index}'}\n",
        dict(field="instances[0].offering_id", line=2, message="only available inside a resource with count"),
        id="count-index-without-count",
    ),
    pytest.param(
        "instances:\n  - {name: a, provider: forward, offering_id: '${foo.bar}'}\n",
        dict(field="instances[0].offering_id", line=2, message="unknown expression ${foo.bar}", hint="$${"),
        id="unknown-expression",
    ),
    pytest.param(
        "instances:\n  - {name: a, provider: forward, offering_id: 'x${var.a'}\n",
        dict(field="instances[0].offering_id", line=2, message="unterminated", hint="${var.NAME}"),
        id="unterminated-expression",
    ),
    pytest.param(
        "backend: {type: postgres}\n",
        dict(field="backend.url", line=1, message="needs url", hint="${env:DATABASE_URL}"),
        id="postgres-without-url",
    ),
    pytest.param(
        "backend: {type: postgres, url: 'mysql://x'}\n",
        dict(field="backend.url", line=1, message="postgresql://"),
        id="postgres-wrong-scheme",
    ),
    pytest.param(
        "backend:\n  path: s.json\n  url: postgresql://x/y\n",
        dict(field="backend.url", line=3, message="takes path, not url", hint="type: postgres"),
        id="local-with-url",
    ),
    pytest.param(
        "backend: {type: s3}\n",
        dict(field="backend.type", line=1, message="'local' or 'postgres'"),
        id="unknown-backend-type",
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_error_names_file_line_field_and_hint(tmp_path: Path, text: str, expected: dict[str, object]) -> None:
    assert_error(load_error(tmp_path, text), **expected)  # type: ignore[arg-type]


def test_dependency_cycle_is_a_graph_cycle_error_with_the_path(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        """\
        volumes:
          - {name: data, provider: forward, region: r, size_gb: 1, depends_on: [instances.a]}
        instances:
          - {name: a, provider: forward, offering_id: o, volumes: [data]}
        """,
    )
    assert isinstance(error, GraphCycleError)
    assert_error(
        error,
        line=2,
        field="volumes[0].depends_on[0]",
        message="dependency cycle: volumes.data -> instances.a -> volumes.data",
        hint="remove one",
    )


def test_self_dependency_is_a_cycle(tmp_path: Path) -> None:
    error = load_error(
        tmp_path, "instances:\n  - {name: a, provider: forward, offering_id: o, depends_on: [instances.a]}\n"
    )
    assert isinstance(error, GraphCycleError)
    assert "instances.a -> instances.a" in error.message


def test_missing_api_key_names_the_env_var_and_never_calls_out(tmp_path: Path) -> None:
    text = """\
    providers:
      shadeform: {endpoint: "https://api.shadeform.ai/v1"}
    volumes:
      - {name: v, provider: shadeform, cloud: c, region: r, size_gb: 5}
    """
    error = load_error(tmp_path, text)
    assert_error(
        error,
        line=2,
        field="providers.shadeform.api_key",
        message="missing API key for provider shadeform (used by volumes.v)",
        hint="SHADEFORM_API_KEY",
    )
    config = load_config(tmp_path / "main.yaml", environ={"SHADEFORM_API_KEY": "from-env"})
    assert config.providers["shadeform"].api_key == "from-env"


def test_declared_but_unused_provider_needs_no_key(tmp_path: Path) -> None:
    path = write(
        tmp_path, "main.yaml", "providers:\n  forward: {endpoint: 'https://api.forwardcompute.ai'}\n"
    )
    assert load_config(path, environ={}).providers["forward"].api_key is None


def test_empty_api_key_counts_as_missing(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        "providers:\n  forward: {endpoint: 'https://x.example', api_key: ''}\n"
        "instances:\n  - {name: a, provider: forward, offering_id: o}\n",
        environ={"FORWARD_API_KEY": ""},
    )
    assert "FORWARD_API_KEY" in (error.hint or "")


def test_unknown_cli_var_suggests_a_declared_one(tmp_path: Path) -> None:
    error = load_error(tmp_path, "variables:\n  gpu_type: {}\n", cli_vars={"gpu_typ": "A100"})
    assert_error(error, line=None, field="--var gpu_typ", message="no variable 'gpu_typ'", hint="'gpu_type'")


def test_cli_var_that_does_not_convert_names_its_source(tmp_path: Path) -> None:
    error = load_error(tmp_path, "variables:\n  n: {type: number}\n", cli_vars={"n": "ten"})
    assert_error(
        error, line=None, field="--var n", message="variable 'n' (number) from --var n: 'ten' is not a number"
    )
    error = load_error(tmp_path, "variables:\n  b: {type: bool}\n", environ={"RECONCILER_VAR_b": "maybe"})
    assert_error(
        error,
        line=None,
        field="environment variable RECONCILER_VAR_b",
        message="expected true or false, got 'maybe'",
    )
    error = load_error(tmp_path, "variables:\n  l: {type: list}\n", cli_vars={"l": "{a: 1}"})
    assert "expected a list, got a map" in error.message


def test_var_file_errors_point_into_the_var_file(tmp_path: Path) -> None:
    var_file = write(tmp_path, "prod.vars.yaml", "gpu: A100\ngpu_cont: 3\n")
    error = load_error(tmp_path, "variables:\n  gpu: {}\n  gpu_count: {type: number}\n", var_files=[var_file])
    assert_error(
        error,
        file="prod.vars.yaml",
        line=2,
        column=1,
        field="gpu_cont",
        message="no variable 'gpu_cont'",
        hint="'gpu_count'",
    )
    write(tmp_path, "prod.vars.yaml", "gpu_count: [1, 2]\n")
    error = load_error(tmp_path, "variables:\n  gpu_count: {type: number}\n", var_files=[var_file])
    assert_error(
        error, file="prod.vars.yaml", line=1, field="gpu_count", message="expected a number, got a list"
    )


def test_duplicate_names_across_files_point_at_both(tmp_path: Path) -> None:
    write(tmp_path, "cfg/a.yaml", "instances:\n  - {name: web, provider: forward, offering_id: o}\n")
    write(tmp_path, "cfg/b.yaml", "\n\ninstances:\n  - {name: web, provider: forward, offering_id: o}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "cfg", environ={})
    assert_error(
        caught.value, file="b.yaml", line=4, field="instances[0].name", message="a.yaml:2:", hint="rename one"
    )


def test_provider_declared_in_two_files(tmp_path: Path) -> None:
    write(tmp_path, "cfg/a.yaml", "providers:\n  forward: {}\n")
    write(tmp_path, "cfg/b.yaml", "providers:\n  forward: {timeout: 3}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "cfg", environ={})
    assert_error(
        caught.value,
        file="b.yaml",
        line=2,
        field="providers.forward",
        message="declared twice (first at ",
        hint="keep one",
    )
    assert "a.yaml:2:3" in caught.value.message


def test_backend_keys_merge_across_files_but_not_twice(tmp_path: Path) -> None:
    write(tmp_path, "cfg/a.yaml", "backend:\n  type: postgres\n")
    write(tmp_path, "cfg/b.yaml", "backend:\n  url: postgresql://127.0.0.1/test\n")
    config = load_config(tmp_path / "cfg", environ={})
    assert config.backend is not None
    assert (config.backend.type, config.backend.url) == ("postgres", "postgresql://127.0.0.1/test")
    write(tmp_path, "cfg/c.yaml", "backend:\n  stack: x\n  type: local\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "cfg", environ={})
    assert_error(
        caught.value, file="c.yaml", line=3, field="backend.type", message="a.yaml:2:3", hint="keep one"
    )


def test_missing_path_and_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file or directory"):
        load_config(tmp_path / "nope.yaml", environ={})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no \*\.yaml or \*\.yml files"):
        load_config(tmp_path / "empty", environ={})


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "main.yaml"
    path.write_bytes(b"instances: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path, environ={})


def test_unsupported_yaml_tag(tmp_path: Path) -> None:
    error = load_error(tmp_path, "instances:\n  - !Ref x\n")
    assert_error(error, line=2, field=None, message="unsupported YAML tag !Ref", hint="plain strings")


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    error = load_error(tmp_path, "instances: &loop\n  - *loop\n")
    assert "alias" in error.message
