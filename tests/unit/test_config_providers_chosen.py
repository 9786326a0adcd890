"""Loading instances whose provider is chosen (`offering.providers`) and SSH keys declared
for several providers: one object per provider, one name to reference."""

from __future__ import annotations

import textwrap
from pathlib import Path

import jsonschema
import pytest

from reconciler.config import Config, config_json_schema, load_config
from reconciler.errors import ConfigError
from reconciler.model import Address, Kind
from reconciler.references import parse_reference

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPk0Zss4K0I05ck6M0v3LwgFehqBeF6jeh4iCKCR219c deploy@ci"

SHARED = f"""\
ssh_keys:
  - name: deploy
    providers: [shadeform, forward]
    public_key: {PUBLIC_KEY}
    private_key_file: keys/deploy
volumes:
  - name: data
    provider: forward
    cloud: crusoe
    region: us-east-1
    size_gb: 100
instances:
  - name: trainer
    ssh_key: deploy
    offering: {{providers: [shadeform, forward], gpu_type: A100, num_gpus: 1}}
    fallback: {{max_attempts: 3}}
    expires_after: 8h
  - name: reader
    ssh_key: deploy
    volumes: [data]
    offering: {{providers: [shadeform, forward], gpu_type: A100}}
  - name: pinned
    provider: shadeform
    cloud: lambdalabs
    region: us-east-1
    shade_instance_type: A100
    ssh_key: deploy
    depends_on: ['ssh_keys.deploy["forward"]']
"""


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "main.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(path, environ={})


def load_error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return caught.value


def key(provider: str) -> Address:
    return Address(Kind.SSH_KEY, "deploy", provider)


def test_a_shared_key_is_one_object_per_provider_under_one_name(tmp_path: Path) -> None:
    config = load(tmp_path, SHARED)
    shadeform, forward = config.resources[key("shadeform")], config.resources[key("forward")]
    assert (shadeform.provider, forward.provider) == ("shadeform", "forward")
    assert shadeform.attributes == forward.attributes == {"name": "deploy", "public_key": PUBLIC_KEY}
    assert str(key("forward")) == 'ssh_keys.deploy["forward"]'
    assert Address.parse('ssh_keys.deploy["forward"]') == key("forward")
    assert sorted([key("shadeform"), Address(Kind.SSH_KEY, "deploy"), key("forward")], key=Address.sort_key) == [
        Address(Kind.SSH_KEY, "deploy"), key("forward"), key("shadeform")
    ]
    assert config.private_keys[key("forward")].endswith("keys/deploy")


def test_a_chosen_instance_uses_the_key_object_of_each_provider_it_may_land_on(tmp_path: Path) -> None:
    trainer = load(tmp_path, SHARED).resources[Address(Kind.INSTANCE, "trainer")]
    assert trainer.providers == ("shadeform", "forward")
    assert trainer.offering is not None and trainer.offering.providers == ("shadeform", "forward")
    assert trainer.attributes["ssh_key"] == {p: str(key(p)) for p in ("shadeform", "forward")}
    assert set(trainer.depends_on) == {key("shadeform"), key("forward")}
    assert trainer.fallback_attempts == 3
    assert "ip" in trainer.computed  # both providers report it


def test_a_volume_pins_a_chosen_instance_to_its_provider_and_place(tmp_path: Path) -> None:
    config = load(tmp_path, SHARED)
    reader = config.resources[Address(Kind.INSTANCE, "reader")]
    assert reader.provider == "forward" and reader.providers == ("forward",)
    assert reader.offering is not None
    assert (reader.offering.providers, reader.offering.cloud, reader.offering.region) == (
        ("forward",), "crusoe", "us-east-1"
    )
    assert reader.attributes["ssh_key"] == str(key("forward"))
    assert key("shadeform") not in reader.depends_on


def test_a_single_provider_instance_uses_its_providers_object(tmp_path: Path) -> None:
    pinned = load(tmp_path, SHARED).resources[Address(Kind.INSTANCE, "pinned")]
    assert pinned.attributes["ssh_key"] == str(key("shadeform"))
    assert set(pinned.depends_on) == {key("shadeform"), key("forward")}  # the explicit one too


def test_references_name_one_object_of_a_shared_key() -> None:
    reference = parse_reference('ssh_keys.deploy["forward"].id')
    assert reference is not None
    assert (reference.base, reference.index, reference.attribute) == (Address(Kind.SSH_KEY, "deploy"), "forward", "id")
    assert reference.text == 'ssh_keys.deploy["forward"].id'


def test_the_json_schema_accepts_the_new_shapes(tmp_path: Path) -> None:
    import yaml

    document = yaml.safe_load(SHARED)
    jsonschema.validate(document, config_json_schema())
    document["instances"][0]["launch"] = {"type": "docker", "image": "x"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, config_json_schema())


INSTANCE_ONLY_SHADEFORM_KEY = f"""\
ssh_keys:
  - name: deploy
    provider: shadeform
    public_key: {PUBLIC_KEY}
instances:
  - name: trainer
    ssh_key: deploy
    offering: {{providers: [shadeform, forward], gpu_type: A100}}
"""


@pytest.mark.parametrize(
    ("text", "line", "field", "message", "hint"),
    [
        (
            INSTANCE_ONLY_SHADEFORM_KEY,
            7,
            "instances[0].ssh_key",
            "ssh_keys.deploy is only on shadeform, and instances.trainer may be on forward",
            "providers: [shadeform, forward] instead of provider: shadeform",
        ),
        (
            INSTANCE_ONLY_SHADEFORM_KEY.replace("provider: shadeform", "providers: [shadeform]"),
            7,
            "instances[0].ssh_key",
            "instances.trainer may be on forward, where ssh_keys.deploy is not declared",
            "add forward to the providers of ssh_keys deploy",
        ),
        (
            "instances:\n  - name: t\n    provider: shadeform\n"
            "    offering: {providers: [shadeform, forward], gpu_type: A100}\n",
            4,
            "instances[0].offering.providers",
            "provider: shadeform fixes where the instance goes, but offering.providers lists forward",
            "remove provider: to let the plan choose among shadeform, forward",
        ),
        (
            "instances:\n  - name: t\n    offering: {providers: [shadeform, lambda], gpu_type: A100}\n",
            3,
            "instances[0].offering.providers[1]",
            "unknown provider 'lambda'",
            None,
        ),
        (
            "instances:\n  - name: t\n    offering: {providers: [forward, forward]}\n",
            3,
            "instances[0].offering.providers[1]",
            "forward is listed twice",
            None,
        ),
        (
            "instances:\n  - name: t\n    offering: {providers: [shadeform, forward]}\n    tags: [x]\n",
            4,
            "instances[0].tags",
            "'tags' is not supported by this provider (it is a shadeform field)",
            "use provider: shadeform",
        ),
        (
            f"ssh_keys:\n  - name: k\n    provider: forward\n    providers: [forward]\n    public_key: {PUBLIC_KEY}\n",
            3,
            "ssh_keys[0].provider",
            "give provider (one) or providers (several), not both",
            "providers: [forward]",
        ),
        (
            "volumes:\n  - {name: v, provider: forward, cloud: crusoe, region: r, size_gb: 1}\n"
            "instances:\n  - name: t\n    volumes: [v]\n    offering: {providers: [shadeform]}\n",
            5,
            "instances[0].volumes[0]",
            "volumes.v is on forward, which is not among offering.providers (shadeform)",
            "add forward to offering.providers",
        ),
        (
            "volumes:\n  - {name: v, provider: forward, cloud: crusoe, region: r, size_gb: 1}\n"
            "  - {name: w, provider: shadeform, cloud: c, region: r, size_gb: 1}\n"
            "instances:\n  - name: t\n    volumes: [v, w]\n    offering: {providers: [shadeform, forward]}\n",
            6,
            "instances[0].volumes[1]",
            "volumes.w is on shadeform, volumes.v on forward: an instance is on one provider",
            "mount volumes of one provider",
        ),
    ],
    ids=["key-on-one-provider", "key-not-declared-there", "provider-and-providers", "unknown-provider",
         "listed-twice", "provider-only-key", "key-provider-and-providers", "volume-elsewhere",
         "volumes-on-two-providers"],
)
def test_bad_provider_choices_name_the_line_field_and_fix(
    tmp_path: Path, text: str, line: int, field: str, message: str, hint: str | None
) -> None:
    error = load_error(tmp_path, text)
    assert error.mark is not None and error.mark.line == line, error
    assert error.field == field, error
    assert message in error.message, error
    if hint is not None:
        assert error.hint is not None and hint in error.hint, error


def test_depends_on_and_references_name_the_objects_of_a_shared_key(tmp_path: Path) -> None:
    text = SHARED.split("volumes:")[0] + (
        "instances:\n"
        "  - name: t\n    provider: forward\n    offering_id: x\n"
        "    depends_on: [ssh_keys.deploy]\n"
        """    envs: {KEY_ID: '${ssh_keys.deploy["shadeform"].id}'}\n"""
    )
    res = load(tmp_path, text).resources[Address(Kind.INSTANCE, "t")]
    assert set(res.depends_on) == {key("shadeform"), key("forward")}
    assert res.references == ('ssh_keys.deploy["shadeform"].id',)
    error = load_error(tmp_path, text.replace('deploy["shadeform"].id', 'deploy["lambda"].id'))
    assert 'ssh_keys.deploy["lambda"] does not exist' in error.message
