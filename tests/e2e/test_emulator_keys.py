"""A served emulator with registered keys refuses a mistyped key as the real APIs do, and
reconciler says so in one line naming the provider and the variable holding its key, instead
of planning to re-create everything in a new, empty account."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from crash_support import EmulatorServer
from lifecycle_support import Project

pytest_plugins = ["lifecycle_support"]
GOOD_KEY = "registered-key-1"
WRONG_KEY = "registered-kee-1"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmulatorServer]:
    started = EmulatorServer(
        tmp_path, env={"RECONCILER_EMULATOR_API_KEYS": f"{GOOD_KEY} registered-key-2"}
    ).start()
    try:
        yield started
    finally:
        started.stop()


def config(url: str) -> str:
    return f"""providers:
  shadeform:
    endpoint: {url}/shadeform/v1
    api_key: ${{env:SHADEFORM_API_KEY}}
volumes:
  - name: data
    provider: shadeform
    cloud: lambdalabs
    region: us-east-1
    size_gb: 10
"""


def test_a_mistyped_key_is_one_error_line_naming_the_provider_and_its_variable(
    server: EmulatorServer, project: Project
) -> None:
    project.write(config(server.url))
    refused = project.run("plan", expect=1, env={"SHADEFORM_API_KEY": WRONG_KEY})
    lines = refused.stderr.strip().splitlines()
    assert lines == [
        "Error: shadeform: 401 UNAUTHORIZED: the API key was refused; "
        "set SHADEFORM_API_KEY to a valid shadeform API key"
    ], refused.describe()
    assert WRONG_KEY not in refused.stdout + refused.stderr
    assert not project.state_path.exists()
    planned = project.run("plan", env={"SHADEFORM_API_KEY": GOOD_KEY})
    assert "volumes.data" in planned.stdout
