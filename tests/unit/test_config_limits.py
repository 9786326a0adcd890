"""Provider limits and placement rules refused by `validate`, with file, line, field and a fix."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path

import pytest

from reconciler.config import load_config
from reconciler.errors import ConfigError
from reconciler.model import Address, Kind

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPk0Zss4K0I05ck6M0v3LwgFehqBeF6jeh4iCKCR219c me@host"


def load_text(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "main.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(path, environ={})


def load_error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text)
    return caught.value


def test_a_shadeform_instance_mounting_two_volumes_is_refused_at_the_second(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        """\
        volumes:
          - {name: a, provider: shadeform, cloud: c, region: r, size_gb: 5}
          - {name: b, provider: shadeform, cloud: c, region: r, size_gb: 5}
        instances:
          - name: web
            provider: shadeform
            cloud: c
            region: r
            shade_instance_type: A6000
            volumes:
              - a
              - b
        """,
    )
    assert error.mark is not None and error.mark.line == 12
    assert error.field == "instances[0].volumes[1]"
    assert "mounts at most 1 volume" in error.message
    assert error.hint


def test_forward_requirements_are_narrowed_to_the_mounted_volumes_place(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        """\
        volumes:
          - {name: data, provider: forward, cloud: hyperstack, region: us-east-1, size_gb: 5}
        instances:
          - name: web
            provider: forward
            volumes: [data]
            offering: {gpu_type: A100, num_gpus: 1}
        """,
    )
    offering = config.resources[Address(Kind.INSTANCE, "web")].offering
    assert offering is not None
    assert (offering.cloud, offering.region) == ("hyperstack", "us-east-1")


def test_forward_instance_in_another_region_than_its_volume_is_refused(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        """\
        volumes:
          - {name: data, provider: forward, region: us-east-1, size_gb: 5}
        instances:
          - name: web
            provider: forward
            volumes: [data]
            offering: {gpu_type: A100, region: eu-north-1}
        """,
    )
    assert error.field == "instances[0].volumes[0]"
    assert "region 'us-east-1'" in error.message and "'eu-north-1'" in error.message
    assert error.hint is not None and "same cloud and region" in error.hint


@pytest.mark.parametrize("size", [0, 65537, 10**15])
def test_volume_size_outside_what_the_api_creates_is_refused(tmp_path: Path, size: int) -> None:
    error = load_error(
        tmp_path,
        f"""\
        volumes:
          - name: data
            provider: shadeform
            cloud: c
            region: r
            size_gb: {size}
        """,
    )
    assert error.mark is not None and error.mark.line == 6
    assert error.field == "volumes[0].size_gb"
    assert f"size_gb {size} is outside" in error.message and "1 to 65536 GB" in error.message
    assert error.hint


def test_name_longer_than_the_api_takes_is_refused_counting_the_marker_suffix(tmp_path: Path) -> None:
    # A Forward volume's API name carries the 30-character ownership marker: 225 is the most.
    ok = "v" * 225
    config = load_text(tmp_path, f"volumes:\n  - {{name: {ok}, provider: forward, region: r, size_gb: 5}}\n")
    assert Address(Kind.VOLUME, ok) in config.resources
    error = load_error(tmp_path, f"volumes:\n  - {{name: {ok}v, provider: forward, region: r, size_gb: 5}}\n")
    assert error.field == "volumes[0].name"
    assert "226 characters" in error.message and "at most 225" in error.message
    # A Shadeform instance keeps its marker in tags: its name may use all 255.
    pinned = "provider: shadeform, cloud: c, region: r, shade_instance_type: A6000"
    load_text(tmp_path, f"instances:\n  - {{name: {'i' * 255}, {pinned}}}\n")
    error = load_error(tmp_path, f"instances:\n  - {{name: {'i' * 256}, {pinned}}}\n")
    assert error.field == "instances[0].name"


def test_counted_names_are_checked_with_their_index_suffix(tmp_path: Path) -> None:
    name = "w" * 224
    error = load_error(
        tmp_path, f"volumes:\n  - {{name: {name}, count: 2, provider: forward, region: r, size_gb: 5}}\n"
    )
    assert "with its count suffix" in error.message


def oversized_key() -> str:
    material = b"\x00\x00\x00\x0bssh-ed25519" + b"\x01" * (5 * 1024 * 1024)
    return "ssh-ed25519 " + base64.b64encode(material).decode() + " big@host"


def test_a_five_megabyte_public_key_is_refused_with_its_line_and_never_echoed(tmp_path: Path) -> None:
    key = oversized_key()
    (tmp_path / "big.pub").write_text(key)
    error = load_error(
        tmp_path,
        """\
        ssh_keys:
          - name: deploy
            provider: shadeform
            public_key: ${file:big.pub}
        """,
    )
    assert error.mark is not None and error.mark.line == 4
    assert error.field == "ssh_keys[0].public_key"
    assert "at most 32768" in error.message
    assert len(str(error)) < 500
    assert error.hint is not None and ".pub" in error.hint


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("ssh-ed25519 not-base64!", "not valid base64"),
        (
            "ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\x07ssh-rsa").decode(),
            "does not hold a ssh-ed25519",
        ),
        ("ssh-dss AAAAB3NzaC1kc3M=", "unsupported key type"),
    ],
)
def test_a_public_key_that_no_provider_accepts_is_refused(tmp_path: Path, key: str, problem: str) -> None:
    error = load_error(
        tmp_path,
        f"""\
        ssh_keys:
          - name: deploy
            provider: forward
            public_key: "{key}"
        """,
    )
    assert error.field == "ssh_keys[0].public_key"
    assert problem in error.message


def test_a_valid_key_still_loads(tmp_path: Path) -> None:
    config = load_text(tmp_path, f'ssh_keys:\n  - {{name: deploy, provider: forward, public_key: "{KEY}"}}\n')
    assert config.resources[Address(Kind.SSH_KEY, "deploy")].attributes["public_key"] == KEY


def test_the_marker_suffix_length_is_what_names_really_get() -> None:
    from reconciler.limits import MARKER_NAME_SUFFIX_LENGTH
    from reconciler.model import new_marker
    from reconciler.providers.base import join_name_marker

    assert (
        len(join_name_marker("", new_marker("8f0c2d5e-0000-4000-8000-000000000000")))
        == MARKER_NAME_SUFFIX_LENGTH
    )
