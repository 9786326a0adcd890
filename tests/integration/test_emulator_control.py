"""The `/_emulator/` control API: ledger, faults, holds, clock and statistics."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from emulator_fixtures import (
    BOOT_SECONDS,
    TENANT_B,
    create_forward_instance,
    create_shadeform_instance,
    instance_body,
    shadeform_client,
)

from reconciler.emulator import EmbeddedCloud, ManualClock, tenant_id

pytest_plugins = ["emulator_fixtures"]


async def wait_until_held(control: httpx.AsyncClient, deadline_seconds: float = 5.0) -> dict[str, object]:
    """Poll the hold status (yielding to the held request) until it reports a held request."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_seconds
    while loop.time() < deadline:
        status: dict[str, object] = (await control.get("/hold")).json()
        if status["held"]:
            return status
        await asyncio.sleep(0)
    raise AssertionError("no request was held before the deadline")


async def test_ledger_records_everything_ever_created(
    cloud: EmbeddedCloud,
    shadeform: httpx.AsyncClient,
    forward: httpx.AsyncClient,
    control: httpx.AsyncClient,
    clock: ManualClock,
) -> None:
    kept = await create_shadeform_instance(shadeform, name="kept")
    removed = await create_shadeform_instance(shadeform, name="removed")
    await shadeform.post(f"/instances/{removed}/delete")
    clock.advance(BOOT_SECONDS)
    forward_instance = await create_forward_instance(forward)
    async with shadeform_client(cloud, TENANT_B) as other:
        await create_shadeform_instance(other, name="other")
    body = (await control.get("/ledger")).json()
    assert body["count"] == 4
    entries = {e["name"]: e for e in body["ledger"]}
    assert set(entries) == {"kept", "removed", "worker", "other"}
    assert entries["kept"]["id"] == kept and entries["kept"]["status"] == "active"
    assert entries["kept"]["deleted_at"] is None
    assert entries["removed"]["status"] == "deleted" and entries["removed"]["deleted_at"]
    assert entries["worker"]["id"] == forward_instance["id"] and entries["worker"]["api"] == "forward"
    assert {e["kind"] for e in body["ledger"]} == {"instances"}
    mine = (
        await control.get("/ledger", params={"api": "shadeform", "tenant": tenant_id("key-tenant-a")})
    ).json()
    assert [e["name"] for e in mine["ledger"]] == ["kept", "removed"]


async def test_faults_can_be_read_and_replaced(
    control: httpx.AsyncClient, shadeform: httpx.AsyncClient
) -> None:
    assert (await control.get("/faults")).json()["spec"] == ""
    response = await control.put("/faults", json={"spec": "shadeform.list=status_503@times=1", "seed": 3})
    assert response.status_code == 200
    assert response.json()["seed"] == 3 and response.json()["rules"][0]["status"] == 503
    assert (await shadeform.get("/instances")).status_code == 503
    assert (await shadeform.get("/instances")).status_code == 200
    counters = (await control.get("/faults")).json()["counters"]
    assert counters == [{"rule": "shadeform.list=status_503@times=1", "matched": 2, "hits": 1}]
    bad = await control.put("/faults", json={"spec": "shadeform.list=meltdown"})
    assert bad.status_code == 400 and "unknown fault" in bad.json()["error"]
    assert (await control.put("/faults", json={"spec": 5})).status_code == 400
    assert (await control.put("/faults", content=b"nope")).status_code == 400
    assert (await control.put("/faults", json={"spec": ""})).json()["rules"] == []


async def test_stats_count_calls_per_operation(
    control: httpx.AsyncClient, shadeform: httpx.AsyncClient
) -> None:
    await shadeform.get("/instances")
    await shadeform.get("/instances")
    await shadeform.post("/instances/create", json=instance_body())
    await shadeform.get("/instances/types")
    stats = (await control.get("/stats")).json()
    assert stats["requests"] == {
        "shadeform.instance_types.list": 1,
        "shadeform.instances.create": 1,
        "shadeform.instances.list": 2,
    }
    assert (stats["total"], stats["writes"]) == (4, 1)
    assert (await control.delete("/stats")).json()["total"] == 0


async def test_clock_advances_the_world(control: httpx.AsyncClient, shadeform: httpx.AsyncClient) -> None:
    instance_id = await create_shadeform_instance(shadeform)
    before = (await control.get("/clock")).json()
    after = (await control.post("/clock", json={"advance_seconds": BOOT_SECONDS})).json()
    assert after["timestamp"] == pytest.approx(before["timestamp"] + BOOT_SECONDS)
    assert (await shadeform.get(f"/instances/{instance_id}/info")).json()["status"] == "active"
    for bad in ({"advance_seconds": -1}, {"advance_seconds": "1"}, {"advance_seconds": True}, {}):
        assert (await control.post("/clock", json=bad)).status_code == 400


async def test_hold_before_a_write_keeps_it_unapplied_until_released(
    cloud: EmbeddedCloud, control: httpx.AsyncClient, shadeform: httpx.AsyncClient
) -> None:
    await create_shadeform_instance(shadeform, name="first")
    armed = (await control.post("/hold", json={"after_writes": 1, "phase": "before"})).json()
    assert armed["armed"] and not armed["held"] and armed["target_write"] == 2
    create = asyncio.create_task(shadeform.post("/instances/create", json=instance_body(name="held")))
    status = await wait_until_held(control)
    assert status["operation"] == "shadeform.instances.create" and status["phase"] == "before"
    assert [e.name for e in cloud.world.ledger()] == ["first"]
    assert (await shadeform.get("/instances")).status_code == 200
    released = (await control.post("/release")).json()
    assert released["released"] and not released["armed"]
    response = await create
    assert response.status_code == 200
    assert [e.name for e in cloud.world.ledger()] == ["first", "held"]


async def test_hold_after_a_write_applies_it_but_withholds_the_answer(
    cloud: EmbeddedCloud, control: httpx.AsyncClient, shadeform: httpx.AsyncClient
) -> None:
    await control.post("/hold", json={"after_writes": 2, "phase": "after"})
    await create_shadeform_instance(shadeform, name="passes")
    create = asyncio.create_task(shadeform.post("/instances/create", json=instance_body(name="held")))
    await wait_until_held(control)
    assert [e.name for e in cloud.world.ledger()] == ["passes", "held"]
    assert not create.done()
    await control.post("/release")
    assert (await create).status_code == 200
    assert (await control.get("/hold")).json() == {
        "armed": False,
        "held": False,
        "operation": None,
        "phase": None,
        "target_write": None,
        "writes": 2,
    }


async def test_hold_arguments_are_checked_and_release_without_hold_is_harmless(
    control: httpx.AsyncClient,
) -> None:
    assert (await control.post("/hold", json={"after_writes": 0})).status_code == 400
    assert (await control.post("/hold", json={"after_writes": 1, "phase": "during"})).status_code == 400
    assert (await control.post("/hold", json={"after_writes": "1"})).status_code == 400
    assert (await control.post("/release")).json()["released"] is False
    await control.post("/hold", json={"after_writes": 1})
    released = (await control.post("/release")).json()
    assert (released["released"], released["armed"]) == (False, False)


async def test_unknown_control_paths_are_json_404(control: httpx.AsyncClient) -> None:
    response = await control.get("/nothing")
    assert response.status_code == 404 and "error" in response.json()
