"""Sandbox persistence: round trips, the write journal, kill -9, locking and scale."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from emulator_fixtures import (
    BOOT_SECONDS,
    REPO_ROOT,
    add_shadeform_key,
    create_forward_instance,
    create_shadeform_instance,
    create_shadeform_volume,
    forward_client,
    shadeform_client,
)

from reconciler.emulator import EmbeddedCloud, ManualClock, SandboxError, World, tenant_id
from reconciler.emulator import world as world_module
from reconciler.emulator.records import InstanceRecord, SshKeyRecord
from reconciler.emulator.storage import SandboxFile

pytest_plugins = ["emulator_fixtures"]


def file_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


async def populate(cloud: EmbeddedCloud) -> dict[str, str]:
    async with shadeform_client(cloud) as shadeform, forward_client(cloud) as forward:
        key = await add_shadeform_key(shadeform)
        volume = await create_shadeform_volume(shadeform)
        instance = await create_shadeform_instance(shadeform, ssh_key_id=key, volume_ids=[volume], tags=["t"])
        gone = await create_shadeform_instance(shadeform, name="gone")
        await shadeform.post(f"/instances/{gone}/delete")
        spot = (await create_forward_instance(forward))["id"]
    return {"key": key, "volume": volume, "instance": instance, "spot": spot}


async def snapshot(cloud: EmbeddedCloud) -> dict[str, object]:
    async with shadeform_client(cloud) as shadeform, forward_client(cloud) as forward:
        return {
            "instances": (await shadeform.get("/instances")).json(),
            "volumes": (await shadeform.get("/volumes")).json(),
            "keys": (await shadeform.get("/sshkeys")).json(),
            "spot": (await forward.get("/spot/instances/")).json(),
            "ledger": [e.model_dump() for e in cloud.world.ledger()],
        }


async def test_world_save_and_load_round_trip(tmp_path: Path, clock: ManualClock) -> None:
    with EmbeddedCloud(None, clock=clock) as cloud:
        await populate(cloud)
        before = await snapshot(cloud)
        path = tmp_path / "world.sandbox.json"
        cloud.world.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(file_lines(path)) == 1
    json.loads(path.read_text())
    loaded = World.load(path, clock=clock)
    assert [e.model_dump() for e in loaded.ledger()] == before["ledger"]
    with EmbeddedCloud(None, clock=clock) as again:
        again.world.load_records(SandboxFile(path).read())
        assert await snapshot(again) == before


async def test_sandbox_reopens_with_everything_and_statuses_move_on(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "state" / "default.sandbox.json"
    with EmbeddedCloud(path, clock=clock, boot_seconds=BOOT_SECONDS) as cloud:
        ids = await populate(cloud)
        before = await snapshot(cloud)
    with EmbeddedCloud(path, clock=clock, boot_seconds=99) as cloud:
        assert await snapshot(cloud) == before
        clock.advance(BOOT_SECONDS)
        async with shadeform_client(cloud) as shadeform:
            info = (await shadeform.get(f"/instances/{ids['instance']}/info")).json()
    assert info["status"] == "active"


async def test_every_write_is_journaled_before_its_answer(tmp_path: Path, clock: ManualClock) -> None:
    path = tmp_path / "s.sandbox.json"
    with EmbeddedCloud(path, clock=clock) as cloud:
        async with shadeform_client(cloud) as shadeform:
            instance_id = await create_shadeform_instance(shadeform)
            assert len(file_lines(path)) == 2
            assert instance_id in {e.id for e in World.load(path).ledger()}
            size = path.stat().st_size
            for _ in range(3):
                await shadeform.get("/instances")
                await shadeform.get(f"/instances/{instance_id}/info")
            assert path.stat().st_size == size
            await shadeform.post(f"/instances/{instance_id}/update", json={"name": "renamed"})
            assert len(file_lines(path)) == 3
    assert len(file_lines(path)) == 1
    assert [e.name for e in World.load(path).ledger()] == ["renamed"]


def test_a_process_killed_after_a_write_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "killed.sandbox.json"
    script = textwrap.dedent(
        f"""
        import asyncio, sys, httpx
        from reconciler.emulator import EmbeddedCloud

        async def main():
            cloud = EmbeddedCloud({str(path)!r})
            cloud.open()
            async with httpx.AsyncClient(
                base_url=cloud.base_url("forward"), transport=cloud.transport("forward"),
                headers={{"Authorization": "Bearer k"}},
            ) as client:
                offerings = (await client.get("/spot/compute/offerings")).json()["data"]
                offering = next(o["id"] for o in offerings if o["available"])
                created = await client.post("/spot/instances/", json={{"name": "x", "offering_id": offering}})
                print(created.json()["id"], flush=True)
            sys.stdin.readline()

        asyncio.run(main())
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    ) as process:
        assert process.stdout is not None
        created_id = process.stdout.readline().strip()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert created_id.startswith("spot_inst_")
    assert [e.id for e in World.load(path).ledger()] == [created_id]
    with EmbeddedCloud(path, lock_timeout=5) as cloud:
        assert [e.id for e in cloud.world.ledger()] == [created_id]


def test_torn_last_line_is_ignored_and_corruption_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "t.sandbox.json"
    world = World(clock=ManualClock())
    world.save(path)
    file = SandboxFile(path)
    key = SshKeyRecord(
        api="shadeform", tenant="t", id="k1", name="k", created_at=0.0, public_key="ssh-ed25519 AAAA"
    )
    file.append([key.model_dump(mode="json")])
    file.close()
    with path.open("a") as handle:
        handle.write('{"record": {"api": "shadef')
    assert [e.id for e in World.load(path).ledger()] == ["k1"]
    with path.open("a") as handle:
        handle.write("\n" + json.dumps({"record": key.model_dump(mode="json")}) + "\n")
    with pytest.raises(SandboxError, match="line 3 is corrupt"):
        World.load(path)
    path.write_text('{"something": "else"}\n')
    with pytest.raises(SandboxError, match="not an emulator sandbox"):
        World.load(path)
    path.write_text('{"format": "reconciler-emulator-sandbox", "version": 99, "records": []}\n')
    with pytest.raises(SandboxError, match="version 99"):
        World.load(path)
    path.write_text(
        '{"format": "reconciler-emulator-sandbox", "version": 1, "records": [{"kind": "gpus", "id": "g"}]}\n'
    )
    with pytest.raises(SandboxError, match="unknown kind 'gpus'"):
        World.load(path)
    path.write_text(
        '{"format": "reconciler-emulator-sandbox", "version": 1, "records": [{"kind": "ssh_keys", "id": "k"}]}\n'
    )
    with pytest.raises(SandboxError, match="'k' is invalid"):
        World.load(path)
    path.write_text("not json")
    with pytest.raises(SandboxError, match="not valid JSON"):
        World.load(path)
    assert World.load(tmp_path / "missing.sandbox.json").ledger() == []


def test_the_journal_is_compacted_once_it_outgrows_the_world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(world_module, "COMPACT_MIN_LINES", 10)
    path = tmp_path / "c.sandbox.json"
    file = SandboxFile(path)
    world = World(clock=ManualClock())
    world.attach_journal(file)
    key = SshKeyRecord(
        api="shadeform", tenant="t", id="k", name="k0", created_at=0.0, public_key="ssh-ed25519 A"
    )
    world.add(key)
    world.commit()
    lengths = []
    for number in range(1, 25):
        key.name = f"k{number}"
        world.changed(key)
        world.commit()
        lengths.append(len(file_lines(path)))
    assert max(lengths) <= 12 and min(lengths) == 1
    file.close()
    assert [e.name for e in World.load(path).ledger()] == ["k24"]


def test_a_sandbox_is_used_by_one_process_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "locked.sandbox.json"
    with EmbeddedCloud(path):
        with pytest.raises(SandboxError, match="already open in this process"):
            EmbeddedCloud(path).open()
    code = (
        "import sys\n"
        "from reconciler.emulator import EmbeddedCloud\n"
        f"cloud = EmbeddedCloud({str(path)!r})\n"
        "cloud.open()\n"
        "print('open', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
            with pytest.raises(SandboxError, match="in use by another process"):
                EmbeddedCloud(path, lock_timeout=0.2).open()
        finally:
            holder.kill()
            holder.wait(timeout=30)
    with EmbeddedCloud(path, lock_timeout=5):
        pass


async def test_ten_thousand_resources_list_in_one_call_and_writes_stay_append_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rewrites: list[int] = []
    original = SandboxFile.rewrite

    def counting_rewrite(self: SandboxFile, records: Iterable[dict[str, Any]]) -> None:
        rewrites.append(1)
        original(self, records)

    monkeypatch.setattr(SandboxFile, "rewrite", counting_rewrite)
    clock = ManualClock()
    path = tmp_path / "big.sandbox.json"
    with EmbeddedCloud(path, clock=clock) as cloud:
        world = cloud.world
        template: dict[str, Any] = {
            "api": "shadeform",
            "tenant": tenant_id("key-big"),
            "created_at": clock.now(),
            "cloud": "runpod",
            "region": "us-ks-2",
            "instance_type": "A6000",
            "cloud_instance_type": "1x-a6000",
            "hourly_price_cents": 68,
            "configuration": {},
            "cloud_assigned_id": "c",
            "ip": "198.18.0.1",
            "ready_at": clock.now(),
        }
        for number in range(10_000):
            world.add(InstanceRecord.model_validate(template | {"id": f"i-{number}", "name": f"n{number}"}))
            world.commit()
        assert len(rewrites) <= 4
        async with httpx.AsyncClient(
            base_url=cloud.base_url("shadeform"),
            transport=cloud.transport("shadeform"),
            headers={"X-API-KEY": "key-big"},
        ) as client:
            listed = await client.get("/instances")
            assert listed.status_code == 200
            assert len(listed.json()["instances"]) == 10_000
            assert cloud.runtime.traffic.snapshot()["total"] == 1
    reloaded = World.load(path)
    assert len(reloaded) == 10_000
    assert os.path.getsize(path) > 0
