"""Fixtures and helpers shared by the emulator tests (loaded with `pytest_plugins`).

PYTEST_DONT_REWRITE: test modules import the helpers before pytest loads this module as a
plugin, so it cannot be assert-rewritten; its assertions carry their own messages.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import ClockSleep

from reconciler.emulator import EmbeddedCloud, ManualClock, example_public_key
from reconciler.emulator.catalogue import ShadeformPlacement, forward_offerings, shadeform_placements

REPO_ROOT = Path(__file__).resolve().parents[2]
SEEDS = REPO_ROOT.parent / "shared" / "seeds"
BOOT_SECONDS = 5.0
DELETE_SECONDS = 2.0
TENANT_A = "key-tenant-a"
TENANT_B = "key-tenant-b"


def seed_file(name: str) -> Path:
    """A seed document; the test is skipped (with the reason) when the seeds are not checked out."""
    path = SEEDS / name
    if not path.exists():
        pytest.skip(f"seed document {name} not found at ../shared/seeds relative to the repository")
    return path


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def cloud(clock: ManualClock) -> Iterator[EmbeddedCloud]:
    with EmbeddedCloud(None, clock=clock, boot_seconds=BOOT_SECONDS, delete_seconds=DELETE_SECONDS) as opened:
        yield opened


@pytest.fixture
def sleep(clock: ManualClock) -> ClockSleep:
    """A client's sleep (and, as `sleep.now`, its clock) on the emulator's manual clock."""
    return ClockSleep(clock)


def shadeform_client(cloud: EmbeddedCloud, key: str | None = TENANT_A) -> httpx.AsyncClient:
    headers = {"X-API-KEY": key} if key is not None else {}
    return httpx.AsyncClient(
        base_url=cloud.base_url("shadeform"), transport=cloud.transport("shadeform"), headers=headers
    )


def forward_client(cloud: EmbeddedCloud, key: str | None = TENANT_A) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.AsyncClient(
        base_url=cloud.base_url("forward"), transport=cloud.transport("forward"), headers=headers
    )


def control_client(cloud: EmbeddedCloud) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url="http://shadeform.embedded/_emulator", transport=cloud.transport("shadeform")
    )


@pytest.fixture
async def shadeform(cloud: EmbeddedCloud) -> AsyncIterator[httpx.AsyncClient]:
    async with shadeform_client(cloud) as client:
        yield client


@pytest.fixture
async def forward(cloud: EmbeddedCloud) -> AsyncIterator[httpx.AsyncClient]:
    async with forward_client(cloud) as client:
        yield client


@pytest.fixture
async def control(cloud: EmbeddedCloud) -> AsyncIterator[httpx.AsyncClient]:
    async with control_client(cloud) as client:
        yield client


def available_placement() -> ShadeformPlacement:
    return shadeform_placements(available=True)[0]


def sold_out_placement() -> ShadeformPlacement:
    return shadeform_placements(available=False)[0]


def instance_body(placement: ShadeformPlacement | None = None, **extra: Any) -> dict[str, Any]:
    chosen = placement or available_placement()
    body: dict[str, Any] = {
        "cloud": chosen.cloud,
        "region": chosen.region,
        "shade_instance_type": chosen.shade_instance_type,
        "name": "trainer",
    }
    body.update(extra)
    return body


async def create_shadeform_instance(client: httpx.AsyncClient, **extra: Any) -> str:
    response = await client.post("/instances/create", json=instance_body(**extra))
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def create_shadeform_volume(
    client: httpx.AsyncClient, placement: ShadeformPlacement | None = None
) -> str:
    chosen = placement or available_placement()
    body = {"cloud": chosen.cloud, "region": chosen.region, "size_in_gb": 100, "name": "data"}
    response = await client.post("/volumes/create", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def add_shadeform_key(client: httpx.AsyncClient, label: str = "deploy") -> str:
    response = await client.post(
        "/sshkeys/add", json={"name": label, "public_key": example_public_key(label)}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def available_offering_id() -> str:
    return forward_offerings(available=True)[0].id


async def create_forward_instance(client: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    body = {"name": "worker", "offering_id": available_offering_id()} | extra
    response = await client.post("/spot/instances/", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


class ServerProcess:
    """`python -m reconciler.emulator serve` on a free port, stopped by SIGTERM."""

    URL_LINE = re.compile(r"listening on (http://\S+)")

    def __init__(self, *args: str, startup_seconds: float = 20.0) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reconciler.emulator", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO_ROOT,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr_lines: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        self._pumps = [
            threading.Thread(target=self._pump, args=(self.process.stdout, self.lines.put), daemon=True),
            threading.Thread(
                target=self._pump, args=(self.process.stderr, self.stderr_lines.append), daemon=True
            ),
        ]
        for pump in self._pumps:
            pump.start()
        self.url = self._wait_for_url(startup_seconds)

    @staticmethod
    def _pump(stream: Any, sink: Any) -> None:
        for line in stream:
            sink(line)

    def _wait_for_url(self, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            match = self.URL_LINE.search(line)
            if match:
                return match.group(1)
        self.stop()
        raise AssertionError(
            f"emulator server did not announce its URL; stderr: {''.join(self.stderr_lines)}"
        )

    def stop(self) -> int:
        """SIGTERM (a clean shutdown); returns the exit code."""
        return self._end(signal.SIGTERM)

    def kill(self) -> int:
        """SIGKILL: no shutdown code runs, as when a machine or an OOM killer stops it."""
        return self._end(signal.SIGKILL)

    def _end(self, sig: signal.Signals) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pump in self._pumps:
            pump.join(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return self.process.returncode
