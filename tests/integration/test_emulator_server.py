"""`emulator serve` as a real subprocess on port 0, driven over HTTP like a third-party client."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from emulator_fixtures import REPO_ROOT, ServerProcess, available_offering_id, instance_body

from reconciler.emulator import example_public_key

pytest_plugins = ["emulator_fixtures"]

SHADEFORM_KEY = {"X-API-KEY": "server-key"}
FORWARD_KEY = {"Authorization": "Bearer server-key"}


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    process = ServerProcess("--boot-seconds", "0")
    yield process
    assert process.stop() == 0, "".join(process.stderr_lines)


async def test_serves_both_apis_and_the_control_api(server: ServerProcess) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    async with httpx.AsyncClient(base_url=server.url) as client:
        types = await client.get(
            "/shadeform/v1/instances/types", params={"available": "true"}, headers=SHADEFORM_KEY
        )
        assert types.status_code == 200 and types.json()["instance_types"]
        assert (await client.get("/shadeform/v1/instances")).status_code == 401
        created = await client.post(
            "/forward/v1/spot/instances/",
            json={"name": "w", "offering_id": available_offering_id()},
            headers=FORWARD_KEY,
        )
        assert created.status_code == 201
        listed = await client.get("/forward/v1/spot/instances", headers=FORWARD_KEY)
        assert [i["status"] for i in listed.json()["data"]] == ["active"]
        ledger = (await client.get("/_emulator/ledger")).json()
        assert [e["id"] for e in ledger["ledger"]] == [created.json()["id"]]
        stats = (await client.get("/_emulator/stats")).json()
        assert stats["requests"]["forward.instances.create"] == 1
        missing = await client.get("/elsewhere")
        assert missing.status_code == 404 and "error" in missing.json()


async def test_lost_responses_and_timeouts_drop_real_connections() -> None:
    faults = "shadeform.instances.create=lost_response;forward.instances.create=timeout@seconds=30"
    server = ServerProcess("--faults", faults)
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.post(
                    "/shadeform/v1/instances/create", json=instance_body(), headers=SHADEFORM_KEY
                )
            listed = await client.get("/shadeform/v1/instances", headers=SHADEFORM_KEY)
            assert len(listed.json()["instances"]) == 1
            with pytest.raises(httpx.ReadTimeout):
                await client.post(
                    "/forward/v1/spot/instances/",
                    json={"name": "w", "offering_id": available_offering_id()},
                    headers=FORWARD_KEY,
                    timeout=0.5,
                )
            ledger = (await client.get("/_emulator/ledger", params={"api": "forward"})).json()
            assert ledger["count"] == 0
    finally:
        assert server.stop() == 0
    assert not any("Traceback" in line for line in server.stderr_lines), "".join(server.stderr_lines)


async def test_state_file_survives_a_clean_stop_and_a_kill(tmp_path: Path) -> None:
    state = tmp_path / "served.sandbox.json"

    async def add_key(url: str, name: str) -> str:
        async with httpx.AsyncClient(base_url=url, headers=SHADEFORM_KEY) as client:
            response = await client.post(
                "/shadeform/v1/sshkeys/add", json={"name": name, "public_key": example_public_key(name)}
            )
            return str(response.json()["id"])

    async def key_ids(url: str) -> list[str]:
        async with httpx.AsyncClient(base_url=url, headers=SHADEFORM_KEY) as client:
            return [k["id"] for k in (await client.get("/shadeform/v1/sshkeys")).json()["ssh_keys"]]

    first_server = ServerProcess("--state-file", str(state))
    first = await add_key(first_server.url, "first")
    assert first_server.stop() == 0
    assert len(state.read_text().splitlines()) == 1, "a clean stop folds the journal into one snapshot"
    second_server = ServerProcess("--state-file", str(state))
    assert await key_ids(second_server.url) == [first]
    second = await add_key(second_server.url, "second")
    assert second_server.kill() == -9
    third_server = ServerProcess("--state-file", str(state))
    try:
        assert await key_ids(third_server.url) == [first, second]
    finally:
        assert third_server.stop() == 0


async def test_hold_and_release_over_http(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        await client.post("/_emulator/hold", json={"after_writes": 1, "phase": "after"})
        create = asyncio.create_task(
            client.post("/shadeform/v1/instances/create", json=instance_body(), headers=SHADEFORM_KEY)
        )
        deadline = time.monotonic() + 10
        while not (await client.get("/_emulator/hold")).json()["held"]:
            assert time.monotonic() < deadline, "the write was never held"
            await asyncio.sleep(0.01)
        assert (await client.get("/_emulator/ledger")).json()["count"] == 1
        assert not create.done()
        assert (await client.post("/_emulator/release")).json()["released"] is True
        assert (await create).status_code == 200


async def test_rate_limit_and_latency_options() -> None:
    server = ServerProcess("--rate-limit", "0.01", "--latency-ms", "50")
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=SHADEFORM_KEY) as client:
            started = time.monotonic()
            assert (await client.get("/shadeform/v1/instances")).status_code == 200
            assert time.monotonic() - started >= 0.05
            limited = await client.get("/shadeform/v1/instances")
            assert limited.status_code == 429
            assert int(limited.headers["Retry-After"]) >= 90
    finally:
        assert server.stop() == 0


def test_a_bad_fault_spec_is_a_usage_error() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler.emulator",
            "serve",
            "--port",
            "0",
            "--faults",
            "shadeform.create=meltdown",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert result.returncode == 2
    assert "unknown fault" in result.stderr


async def test_registered_keys_make_every_other_key_a_401_in_each_apis_shape() -> None:
    server = ServerProcess("--api-key", "key-one", "--api-key", "key-two")
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            for key in ("key-one", "key-two"):
                ok = await client.get("/shadeform/v1/instances", headers={"X-API-KEY": key})
                assert ok.status_code == 200
                ok = await client.get(
                    "/forward/v1/spot/instances/", headers={"Authorization": f"Bearer {key}"}
                )
                assert ok.status_code == 200
            shadeform = await client.get("/shadeform/v1/instances", headers={"X-API-KEY": "key-three"})
            assert shadeform.status_code == 401
            assert shadeform.json() == {"error": "invalid API key", "code": "UNAUTHORIZED"}
            forward = await client.get(
                "/forward/v1/spot/instances/", headers={"Authorization": "Bearer key-three"}
            )
            assert forward.status_code == 401
            assert forward.json()["error"]["type"] == "authentication_error"
            created = await client.post(
                "/forward/v1/spot/instances/",
                json={"name": "w", "offering_id": available_offering_id()},
                headers={"Authorization": "Bearer key-three"},
            )
            assert created.status_code == 401
            public = await client.get(
                "/forward/v1/spot/compute/offerings", headers={"Authorization": "Bearer x"}
            )
            assert public.status_code == 200
            ledger = (await client.get("/_emulator/ledger")).json()
            assert ledger["count"] == 0
    finally:
        assert server.stop() == 0, "".join(server.stderr_lines)


async def test_an_undeclared_method_is_405_with_an_allow_header(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        shadeform = await client.delete("/shadeform/v1/instances/abc/info", headers=SHADEFORM_KEY)
        assert shadeform.status_code == 405 and shadeform.json()["code"] == "METHOD_NOT_ALLOWED"
        assert set(shadeform.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}
        forward = await client.put("/forward/v1/spot/instances/", headers=FORWARD_KEY)
        assert forward.status_code == 405 and forward.json()["error"]["type"] == "validation_error"
        assert set(forward.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "POST"}
