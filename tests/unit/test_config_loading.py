"""load_config on valid configurations: canonical resources, count, merging, variables,
interpolation, providers, backend and the exported JSON Schema."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from reconciler.config import BackendSettings, Config, config_json_schema, load_config
from reconciler.model import Address, Kind, Lifecycle, OfferingRequest
from reconciler.providers.base import EMBEDDED
from reconciler.providers.registry import BUILTIN_PROVIDER_NAMES as KNOWN_PROVIDERS

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPk0Zss4K0I05ck6M0v3LwgFehqBeF6jeh4iCKCR219c deploy@ci"

DESIGN_EXAMPLE = """\
providers:
  shadeform:
    endpoint: embedded
variables:
  gpu: {default: A6000, description: GPU type for workers}
ssh_keys:
  - name: deploy
    provider: shadeform
    public_key: ${file:keys/deploy.pub}
volumes:
  - name: datasets
    provider: shadeform
    cloud: hyperstack
    region: canada-1
    size_gb: 500
instances:
  - name: trainer
    provider: shadeform
    cloud: hyperstack
    region: canada-1
    shade_instance_type: ${var.gpu}
    ssh_key: deploy
    volumes: [datasets]
    launch: {type: docker, image: vllm/vllm-openai:latest, args: "--model x"}
    lifecycle: {prevent_destroy: true}
  - name: spot-worker
    provider: forward
    count: 4
    offering: {gpu_type: H100, num_gpus: 8, max_hourly_price: 25.0}
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str, **kwargs: object) -> Config:
    kwargs.setdefault("environ", {})
    return load_config(write(tmp_path, "main.yaml", text), **kwargs)  # type: ignore[arg-type]


def addr(text: str) -> Address:
    return Address.parse(text)


@pytest.fixture
def design(tmp_path: Path) -> Config:
    write(tmp_path, "keys/deploy.pub", PUBLIC_KEY + "\n")
    return load(tmp_path, DESIGN_EXAMPLE)


def test_design_example_loads_in_declaration_order_with_count_expanded(design: Config) -> None:
    assert [str(a) for a in design.resources] == [
        "ssh_keys.deploy",
        "volumes.datasets",
        "instances.trainer",
        "instances.spot-worker[0]",
        "instances.spot-worker[1]",
        "instances.spot-worker[2]",
        "instances.spot-worker[3]",
    ]
    assert design.name == "main"
    assert design.backend is None


def test_canonical_attributes_of_the_design_example(design: Config) -> None:
    key = design.resources[addr("ssh_keys.deploy")]
    assert key.attributes == {"name": "deploy", "public_key": PUBLIC_KEY}
    volume = design.resources[addr("volumes.datasets")]
    assert volume.attributes == {
        "cloud": "hyperstack",
        "name": "datasets",
        "region": "canada-1",
        "size_gb": 500,
    }
    trainer = design.resources[addr("instances.trainer")]
    assert trainer.provider == "shadeform"
    assert trainer.attributes == {
        "cloud": "hyperstack",
        "launch": {"args": "--model x", "image": "vllm/vllm-openai:latest", "type": "docker"},
        "name": "trainer",
        "region": "canada-1",
        "shade_instance_type": "A6000",
        "ssh_key": "ssh_keys.deploy",
        "volumes": ["volumes.datasets"],
    }
    assert list(trainer.attributes) == sorted(trainer.attributes)
    assert trainer.depends_on == (addr("ssh_keys.deploy"), addr("volumes.datasets"))
    assert trainer.lifecycle == Lifecycle(prevent_destroy=True)
    assert trainer.offering is None
    assert trainer.on_failure == "replace"


def test_requirements_go_to_offering_and_pins_are_absent(design: Config) -> None:
    worker = design.resources[addr("instances.spot-worker[2]")]
    assert worker.provider == "forward"
    assert worker.attributes == {"name": "spot-worker-2"}
    assert worker.offering == OfferingRequest(gpu_type="H100", num_gpus=8, max_hourly_price=25.0)


def test_marks_point_at_each_declaration(design: Config) -> None:
    assert design.marks[addr("ssh_keys.deploy")].line == 7
    assert design.marks[addr("instances.trainer")].line == 17
    assert design.marks[addr("instances.spot-worker[0]")] == design.marks[addr("instances.spot-worker[3]")]
    assert design.marks[addr("instances.spot-worker[0]")].line == 26
    assert design.marks[addr("instances.trainer")].file.endswith("main.yaml")


def test_providers_cover_declared_and_used_with_embedded_defaults(design: Config) -> None:
    assert set(design.providers) == {"shadeform", "forward"}
    assert all(
        settings.endpoint == EMBEDDED and settings.api_key is None for settings in design.providers.values()
    )


def test_provider_settings_map_yaml_names_and_take_keys_from_env(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        providers:
          shadeform:
            endpoint: https://api.shadeform.ai/v1/
            rate_limit: 5
            timeout: 12.5
            max_retries: 2
          forward:
            api_key: ${env:MY_FORWARD_KEY}
            list_consistency_seconds: 3
        ssh_keys:
          - {name: k, provider: shadeform, public_key: "%s"}
        """
        % PUBLIC_KEY,
        environ={"SHADEFORM_API_KEY": "sf-key-123", "MY_FORWARD_KEY": "fw-key-456"},
    )
    shadeform = config.providers["shadeform"]
    assert shadeform.endpoint == "https://api.shadeform.ai/v1"
    assert (shadeform.rate_limit_per_second, shadeform.timeout_seconds, shadeform.max_retries) == (5, 12.5, 2)
    assert shadeform.api_key == "sf-key-123"
    forward = config.providers["forward"]
    assert forward.api_key == "fw-key-456"
    assert forward.list_consistency_seconds == 3
    assert forward.endpoint == EMBEDDED
    assert {"sf-key-123", "fw-key-456"} <= config.secrets
    assert "sf-key-123" not in repr(config)


def test_known_providers_constant() -> None:
    assert KNOWN_PROVIDERS == ("shadeform", "forward")


def test_count_expansion_with_index_interpolation_and_counted_references(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        ssh_keys:
          - {name: key, count: 2, provider: shadeform, public_key: "%s"}
        volumes:
          - {name: data, count: 2, provider: shadeform, cloud: c, region: r, size_gb: "${count.index}1"}
        instances:
          - name: web
            count: 2
            provider: shadeform
            cloud: c
            region: r
            shade_instance_type: A6000
            ssh_key: "key[${count.index}]"
            volumes: ["data[${count.index}]"]
            envs: {SHARD: "${count.index}", LABEL: "shard-${count.index}"}
          - name: proxy
            provider: shadeform
            cloud: c
            region: r
            shade_instance_type: A6000
            depends_on: [instances.web]
          - name: none
            count: 0
            provider: shadeform
            cloud: c
            region: r
            shade_instance_type: A6000
        """
        % PUBLIC_KEY,
    )
    assert addr("instances.none") not in config.resources
    assert not [a for a in config.resources if a.name == "none"]
    web1 = config.resources[addr("instances.web[1]")]
    assert web1.attributes["name"] == "web-1"
    assert web1.attributes["ssh_key"] == "ssh_keys.key[1]"
    assert web1.attributes["volumes"] == ["volumes.data[1]"]
    assert web1.attributes["envs"] == {"LABEL": "shard-1", "SHARD": "1"}
    assert config.resources[addr("volumes.data[1]")].attributes["size_gb"] == 11
    assert config.resources[addr("ssh_keys.key[0]")].attributes["name"] == "key-0"
    proxy = config.resources[addr("instances.proxy")]
    assert proxy.depends_on == (addr("instances.web[0]"), addr("instances.web[1]"))


def test_env_values_are_text(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        instances:
          - name: a
            count: 1
            provider: forward
            offering_id: o
            envs: {PORT: 8000, DEBUG: true, RATIO: 0.5, SHARD: "${count.index}"}
        """,
    )
    envs = config.resources[addr("instances.a[0]")].attributes["envs"]
    assert envs == {"DEBUG": "true", "PORT": "8000", "RATIO": "0.5", "SHARD": "0"}
    assert list(envs) == sorted(envs)


def test_interpolation_forms(tmp_path: Path) -> None:
    write(tmp_path, "scripts/boot.sh", "#!/bin/sh\necho hi\n\n")
    write(tmp_path, "keys/k.pub", PUBLIC_KEY + "\r\n")
    config = load(
        tmp_path,
        """\
        variables:
          size: {type: number, default: 250}
          tags: {type: list, default: [a, b]}
          image: {default: vllm}
        ssh_keys:
          - {name: k, provider: shadeform, public_key: "${file:keys/k.pub}"}
        volumes:
          - {name: v, provider: shadeform, cloud: c, region: r, size_gb: "${var.size}"}
        instances:
          - name: a
            provider: shadeform
            cloud: c
            region: "${env:REGION}"
            shade_instance_type: A6000
            tags: "${var.tags}"
            os: "literal $${not.interpolated} and ${var.image}:${var.size}"
            launch: {type: script, script: "${file:scripts/boot.sh}"}
        """,
        environ={"REGION": "canada-1"},
    )
    assert config.resources[addr("volumes.v")].attributes["size_gb"] == 250
    assert config.resources[addr("ssh_keys.k")].attributes["public_key"] == PUBLIC_KEY
    instance = config.resources[addr("instances.a")].attributes
    assert instance["region"] == "canada-1"
    assert instance["tags"] == ["a", "b"]
    assert instance["os"] == "literal ${not.interpolated} and vllm:250"
    assert instance["launch"] == {"script": "#!/bin/sh\necho hi\n", "type": "script"}


def test_list_and_map_values_inside_text_are_json(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        variables:
          opts: {type: map, default: {b: 1, a: x}}
        instances:
          - {name: a, provider: forward, offering_id: o, envs: {OPTS: "opts=${var.opts}"}}
        """,
    )
    assert config.resources[addr("instances.a")].attributes["envs"] == {"OPTS": 'opts={"a": "x", "b": 1}'}


VARIABLES = """\
variables:
  gpu: {default: from-default}
  replicas: {type: number, default: 1}
  spot: {type: bool, default: false}
  zones: {type: list, default: []}
  labels: {type: map, default: {}}
instances:
  - name: a
    count: "${var.replicas}"
    provider: shadeform
    cloud: c
    region: r
    shade_instance_type: "${var.gpu}"
    tags: "${var.zones}"
    envs: {SPOT: "${var.spot}", LABELS: "l=${var.labels}"}
"""


def test_variable_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, VARIABLES)
    only = config.resources[addr("instances.a[0]")]
    assert len(config.resources) == 1
    assert only.attributes["shade_instance_type"] == "from-default"
    assert only.attributes["envs"] == {"LABELS": "l={}", "SPOT": "false"}
    assert "tags" not in only.attributes


def test_variable_precedence_default_var_files_env_cli(tmp_path: Path) -> None:
    first = write(tmp_path, "first.vars.yaml", "gpu: from-file-1\nreplicas: 2\nzones: [z1]\n")
    second = write(tmp_path, "second.vars.yaml", "gpu: from-file-2\nlabels: {team: ml}\n")
    config = load(tmp_path, VARIABLES, var_files=[first, second])
    a0 = config.resources[addr("instances.a[0]")]
    assert len(config.resources) == 2
    assert a0.attributes["shade_instance_type"] == "from-file-2"
    assert a0.attributes["tags"] == ["z1"]
    assert a0.attributes["envs"]["LABELS"] == 'l={"team": "ml"}'

    environ = {"RECONCILER_VAR_gpu": "from-env", "RECONCILER_VAR_replicas": "3", "RECONCILER_VAR_spot": "yes"}
    config = load(tmp_path, VARIABLES, var_files=[first, second], environ=environ)
    assert len(config.resources) == 3
    assert config.resources[addr("instances.a[2]")].attributes["shade_instance_type"] == "from-env"
    assert config.resources[addr("instances.a[0]")].attributes["envs"]["SPOT"] == "true"

    cli = {"gpu": "from-cli", "replicas": "1", "zones": "[x, y]", "labels": '{"k": "v"}'}
    config = load(tmp_path, VARIABLES, var_files=[first, second], environ=environ, cli_vars=cli)
    only = config.resources[addr("instances.a[0]")]
    assert len(config.resources) == 1
    assert only.attributes["shade_instance_type"] == "from-cli"
    assert only.attributes["tags"] == ["x", "y"]
    assert only.attributes["envs"]["LABELS"] == 'l={"k": "v"}'


def test_number_variables_keep_floats(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        variables:
          price: {type: number}
        instances:
          - {name: a, provider: forward, offering: {max_hourly_price: "${var.price}"}}
        """,
        cli_vars={"price": "12.75"},
    )
    offering = config.resources[addr("instances.a")].offering
    assert offering is not None and offering.max_hourly_price == 12.75


def test_sensitive_values_are_marked_and_collected(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        variables:
          hf_token: {sensitive: true}
          team: {sensitive: true, default: team-secret}
          unused_secret: {sensitive: true, default: never-used-but-scrubbed}
        instances:
          - name: a
            provider: shadeform
            cloud: c
            region: r
            shade_instance_type: A6000
            tags: [public, "${var.team}"]
            envs:
              HF_TOKEN: "${var.hf_token}"
              DB_PASSWORD: {value: "${env:DB_PASSWORD}", sensitive: true}
              PLAIN: visible
            launch:
              type: docker
              image: vllm
              args: "--token ${var.hf_token}"
              envs: {INNER: {value: inner-secret, sensitive: true}}
        """,
        cli_vars={"hf_token": "hf_abc"},
        environ={"DB_PASSWORD": "pw-789"},
    )
    resource = config.resources[addr("instances.a")]
    assert resource.sensitive == (
        "envs.DB_PASSWORD",
        "envs.HF_TOKEN",
        "launch.args",
        "launch.envs.INNER",
        "tags",
    )
    assert resource.attributes["envs"]["DB_PASSWORD"] == "pw-789"
    assert {"hf_abc", "pw-789", "inner-secret", "never-used-but-scrubbed"} <= config.secrets
    assert "visible" not in config.secrets


def test_offering_requirements_merge_instance_cloud_and_region(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        instances:
          - {name: a, provider: shadeform, region: canada-1, offering: {gpu_type: A100, cloud: hyperstack}}
        """,
    )
    resource = config.resources[addr("instances.a")]
    assert resource.offering == OfferingRequest(gpu_type="A100", region="canada-1", cloud="hyperstack")
    assert resource.attributes == {"name": "a"}


def test_shadeform_volume_constrains_requirements_to_its_cloud_and_region(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        volumes:
          - {name: v, provider: shadeform, cloud: hyperstack, region: canada-1, size_gb: 10}
        instances:
          - {name: a, provider: shadeform, volumes: [v], offering: {gpu_type: A100}}
        """,
    )
    resource = config.resources[addr("instances.a")]
    assert resource.offering == OfferingRequest(gpu_type="A100", region="canada-1", cloud="hyperstack")
    assert resource.attributes == {"name": "a", "volumes": ["volumes.v"]}


def test_shadeform_only_fields_become_canonical_attributes(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        instances:
          - name: a
            provider: shadeform
            cloud: c
            region: r
            shade_instance_type: A6000
            os: ubuntu22.04_cuda12.2_shade_os
            tags: [team-b, team-a]
            rental_type: spot
            auto_delete: {date_threshold: 2030-01-01T00:00:00Z, spend_threshold: 12.50}
            alert: {spend_threshold: "5"}
            on_failure: keep
            lifecycle: {create_before_destroy: true, ignore_changes: [tags, envs.X]}
            launch:
              type: docker
              image: img
              port_mappings: [{host_port: 80, container_port: 8000}]
              shared_memory_in_gb: 8
              volume_mounts: [{host_path: /data, container_path: /mnt}]
        """,
    )
    resource = config.resources[addr("instances.a")]
    assert resource.attributes == {
        "alert": {"spend_threshold": "5"},
        "auto_delete": {"date_threshold": "2030-01-01T00:00:00Z", "spend_threshold": "12.5"},
        "cloud": "c",
        "launch": {
            "image": "img",
            "port_mappings": [{"container_port": 8000, "host_port": 80}],
            "shared_memory_in_gb": 8,
            "type": "docker",
            "volume_mounts": [{"container_path": "/mnt", "host_path": "/data"}],
        },
        "name": "a",
        "os": "ubuntu22.04_cuda12.2_shade_os",
        "region": "r",
        "rental_type": "spot",
        "shade_instance_type": "A6000",
        "tags": ["team-a", "team-b"],
    }
    assert resource.on_failure == "keep"
    assert resource.lifecycle == Lifecycle(create_before_destroy=True, ignore_changes=("tags", "envs.X"))
    json.dumps(resource.attributes)


def test_yaml_anchors_and_merge_keys(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        instances:
          - &base {name: a, provider: forward, offering_id: o1, envs: {A: "1"}}
          - <<: *base
            name: b
            offering_id: o2
        """,
    )
    b = config.resources[addr("instances.b")]
    assert b.attributes == {"envs": {"A": "1"}, "name": "b", "offering_id": "o2"}


def test_directory_merges_files_in_name_order(tmp_path: Path) -> None:
    write(
        tmp_path, "stack/20-instances.yml", "instances:\n  - {name: b, provider: forward, offering_id: o}\n"
    )
    write(
        tmp_path,
        "stack/10-base.yaml",
        """\
        providers:
          forward: {rate_limit: 2}
        variables:
          offer: {default: o}
        instances:
          - {name: a, provider: forward, offering_id: "${var.offer}"}
        """,
    )
    write(tmp_path, "stack/30-more.yaml", "providers:\n  shadeform: {timeout: 9}\n")
    write(tmp_path, "stack/.hidden.yaml", "not: [valid")
    write(tmp_path, "stack/notes.txt", "ignored")
    write(tmp_path, "stack/nested/deeper.yaml", "instances: [oops]")
    config = load_config(tmp_path / "stack", environ={})
    assert [p.name for p in config.files] == ["10-base.yaml", "20-instances.yml", "30-more.yaml"]
    assert config.name == "stack"
    assert config.root == tmp_path / "stack"
    assert [str(a) for a in config.resources] == ["instances.a", "instances.b"]
    assert config.providers["forward"].rate_limit_per_second == 2
    assert config.providers["shadeform"].timeout_seconds == 9
    assert config.marks[addr("instances.b")].file.endswith("20-instances.yml")


def test_backend_local_path_is_relative_to_the_yaml_file(tmp_path: Path) -> None:
    config = load(tmp_path, "backend: {path: state/prod.json}\n")
    assert config.backend == BackendSettings(
        type="local", path=str((tmp_path / "state/prod.json").absolute()), stack=None
    )


def test_backend_postgres_hides_the_url_and_scrubs_its_password(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        backend:
          type: postgres
          url: ${env:DATABASE_URL}
          schema: infra
        """,
        environ={"DATABASE_URL": "postgresql://ci:s3cret-pw@127.0.0.1:5432/test"},
    )
    backend = config.backend
    assert backend is not None
    assert (backend.type, backend.schema, backend.stack, backend.path) == ("postgres", "infra", None, None)
    assert backend.url == "postgresql://ci:s3cret-pw@127.0.0.1:5432/test"
    assert "s3cret" not in repr(backend)
    assert "s3cret-pw" in config.secrets


def test_empty_file_is_an_empty_config(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.resources == {} and config.providers == {} and config.backend is None
    assert config.root == tmp_path
    assert config.files == (tmp_path / "main.yaml",)


def test_schema_is_valid_json_schema_and_accepts_the_design_example() -> None:
    schema = config_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    json.dumps(schema)
    validator = jsonschema.Draft202012Validator(schema)
    document = yaml.safe_load(DESIGN_EXAMPLE)
    assert list(validator.iter_errors(document)) == []
    document["instances"][0]["imgae"] = "typo"
    assert list(validator.iter_errors(document))
    assert list(validator.iter_errors({"instancs": []}))
    assert list(validator.iter_errors({"volumes": [{"name": "v", "provider": "shadeform", "size_gb": 1}]}))


def test_schema_lists_every_top_level_key_and_provider() -> None:
    schema = config_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["properties"]) == {
        "name",
        "providers",
        "variables",
        "backend",
        "emulator",
        "policy",
        "ssh_keys",
        "volumes",
        "instances",
        "outputs",
    }
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]["providers"]["propertyNames"]["enum"]) == set(KNOWN_PROVIDERS)


@pytest.mark.slow
def test_ten_thousand_resources_load(tmp_path: Path) -> None:
    lines = [
        "variables:",
        "  gpu: {default: A6000}",
        "ssh_keys:",
        f"  - {{name: k, provider: shadeform, public_key: '{PUBLIC_KEY}'}}",
    ]
    lines.append("volumes:")
    for i in range(1000):
        lines.append(f"  - {{name: v{i}, provider: shadeform, cloud: c, region: r, size_gb: 10}}")
    lines.append("instances:")
    for i in range(8998):
        lines += [
            f"  - name: w{i}",
            "    provider: shadeform",
            "    cloud: c",
            "    region: r",
            "    shade_instance_type: ${var.gpu}",
            "    ssh_key: k",
            f"    volumes: [v{i % 1000}]",
            "    envs: {A: b, T: {value: s, sensitive: true}}",
            f"    depends_on: [volumes.v{(i + 1) % 1000}]",
        ]
    lines += ["  - {name: fleet, provider: forward, count: 1, offering_id: o}"]
    config = load_config(write(tmp_path, "big.yaml", "\n".join(lines) + "\n"), environ={})
    assert len(config.resources) == 10_000
    last = config.resources[addr("instances.w8997")]
    assert last.attributes["shade_instance_type"] == "A6000"
    assert last.depends_on == (addr("ssh_keys.k"), addr("volumes.v997"), addr("volumes.v998"))
    assert last.sensitive == ("envs.T",)
    assert sum(1 for a in config.resources if a.kind is Kind.INSTANCE) == 8999
