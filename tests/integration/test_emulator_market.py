"""The capacity market: machines per offering, a clock-driven schedule, spot reclaims.

Knobs a test (or a later failover feature's tests) sets: `cloud.set_market({...})` in
process, `PUT /_emulator/market` over HTTP, `RECONCILER_EMULATOR_MARKET` for CLI runs.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from emulator_fixtures import (
    BOOT_SECONDS,
    DELETE_SECONDS,
    TENANT_B,
    available_placement,
    create_shadeform_instance,
    forward_client,
    instance_body,
    shadeform_client,
)

from reconciler.emulator import EmbeddedCloud, ManualClock
from reconciler.emulator.catalogue import ShadeformPlacement, forward_offerings, shadeform_placements
from reconciler.emulator.market import PREEMPTED, MarketSpecError, parse_market
from reconciler.engine import embedded_options
from reconciler.errors import CapacityError
from reconciler.model import Kind, Status
from reconciler.providers.base import ProviderSettings
from reconciler.providers.forward import ForwardProvider
from reconciler.providers.shadeform import ShadeformProvider

pytest_plugins = ["emulator_fixtures"]


def shadeform_key(placement: ShadeformPlacement, spot: bool = False) -> str:
    key = f"shadeform:{placement.cloud}:{placement.region}:{placement.shade_instance_type}"
    return key + (":spot" if spot else "")


async def type_entry(client: httpx.AsyncClient, placement: ShadeformPlacement, rental: str) -> dict[str, Any]:
    params = {"cloud": placement.cloud, "shade_instance_type": placement.shade_instance_type}
    (item,) = (await client.get("/instances/types", params=params)).json()["instance_types"]
    return next(
        a for a in item["availability"] if a["region"] == placement.region and a["rental_type"] == rental
    )


async def forward_offering(client: httpx.AsyncClient, offering_id: str) -> dict[str, Any]:
    listed = (await client.get("/spot/compute/offerings")).json()["data"]
    return next(o for o in listed if o["id"] == offering_id)


async def test_without_a_market_every_offering_is_as_the_catalogue_says(
    cloud: EmbeddedCloud, shadeform: httpx.AsyncClient
) -> None:
    placement = available_placement()
    for _ in range(20):
        await create_shadeform_instance(shadeform, **_place(placement))
    assert (await type_entry(shadeform, placement, "on_demand"))["available"] is True


def _place(placement: ShadeformPlacement) -> dict[str, str]:
    return {
        "cloud": placement.cloud,
        "region": placement.region,
        "shade_instance_type": placement.shade_instance_type,
    }


async def test_a_shadeform_offering_runs_out_for_every_tenant_and_a_delete_gives_a_machine_back(
    cloud: EmbeddedCloud, shadeform: httpx.AsyncClient, clock: ManualClock
) -> None:
    placement = available_placement()
    cloud.set_market({"machines": {shadeform_key(placement): 2}})
    first = await create_shadeform_instance(shadeform, **_place(placement))
    async with shadeform_client(cloud, TENANT_B) as other:
        await create_shadeform_instance(other, **_place(placement))
        refused = await other.post("/instances/create", json=instance_body(placement))
    assert refused.status_code == 409 and refused.json()["code"] == "NO_CAPACITY"
    assert (await type_entry(shadeform, placement, "on_demand"))["available"] is False
    ledger_before = len(cloud.world.ledger())
    assert (await shadeform.post(f"/instances/{first}/delete")).status_code == 200
    assert (await type_entry(shadeform, placement, "on_demand"))["available"] is True
    await create_shadeform_instance(shadeform, **_place(placement))
    assert len(cloud.world.ledger()) == ledger_before + 1


async def test_zero_machines_makes_a_forward_offering_sold_out_with_its_capacity_error(
    cloud: EmbeddedCloud, forward: httpx.AsyncClient
) -> None:
    offering = forward_offerings(available=True)[0]
    cloud.set_market({"machines": {f"forward:{offering.id}": 0}})
    assert (await forward_offering(forward, offering.id))["available"] is False
    refused = await forward.post("/spot/instances/", json={"name": "w", "offering_id": offering.id})
    assert refused.status_code == 400
    assert (
        refused.json()["error"]["type"] == "provider_error"
        and refused.json()["error"]["field"] == "offering_id"
    )
    other = forward_offerings(available=True)[1]
    assert (
        await forward.post("/spot/instances/", json={"name": "w", "offering_id": other.id})
    ).status_code == 201


async def test_the_clients_see_a_sold_out_offering_as_a_capacity_error(cloud: EmbeddedCloud) -> None:
    placement = available_placement()
    offering = forward_offerings(available=True)[0]
    cloud.set_market({"machines": {shadeform_key(placement): 0, f"forward:{offering.id}": 0}})
    shadeform = ShadeformProvider(
        ProviderSettings("shadeform", api_key="k", options={"base_url": cloud.base_url("shadeform")}),
        cloud.transport("shadeform"),
    )
    forward = ForwardProvider(
        ProviderSettings("forward", api_key="k", options={"base_url": cloud.base_url("forward")}),
        cloud.transport("forward"),
    )
    try:
        shadeform_offer = next(o for o in await shadeform.offerings() if o.pin == _place(placement))
        assert shadeform_offer.available is False
        with pytest.raises(CapacityError):
            await shadeform.create(Kind.INSTANCE, {**_place(placement), "name": "t"}, "rc-0a1b2c3d-abcdef")
        assert next(o for o in await forward.offerings() if o.id == offering.id).available is False
        with pytest.raises(CapacityError):
            await forward.create(
                Kind.INSTANCE, {"name": "w", "offering_id": offering.id}, "rc-0a1b2c3d-abcdef"
            )
    finally:
        await shadeform.aclose()
        await forward.aclose()


async def test_the_schedule_changes_availability_and_spot_prices_on_the_clock(
    cloud: EmbeddedCloud, shadeform: httpx.AsyncClient, forward: httpx.AsyncClient, clock: ManualClock
) -> None:
    spot = next(
        p
        for p in shadeform_placements(available=True)
        if p.cloud in ("runpod", "datacrunch") and p.num_gpus < 8
    )
    offering = forward_offerings(available=True)[0]
    cloud.set_market(
        {
            "schedule": [
                {"offering": shadeform_key(spot, spot=True), "after_seconds": 60, "hourly_price_cents": 7},
                {"offering": f"forward:{offering.id}", "after_seconds": 60, "machines": 0},
                {"offering": f"forward:{offering.id}", "after_seconds": 120, "hourly_price_cents": 999},
                {"offering": f"forward:{offering.id}", "after_seconds": 120, "machines": 1},
            ]
        }
    )
    before = (await type_entry(shadeform, spot, "spot"))["hourly_price"]
    assert before != "0.07" and (await forward_offering(forward, offering.id))["available"] is True
    clock.advance(60)
    assert (await type_entry(shadeform, spot, "spot"))["hourly_price"] == "0.07"
    assert (await forward_offering(forward, offering.id))["available"] is False
    clock.advance(60)
    shown = await forward_offering(forward, offering.id)
    assert (shown["available"], shown["hourly_price"]) == (True, "9.99")
    created = await forward.post("/spot/instances/", json={"name": "w", "offering_id": offering.id})
    assert created.status_code == 201
    assert (await forward_offering(forward, offering.id))["available"] is False
    spot_body = instance_body(spot, rental_type="spot")
    instance_id = (await shadeform.post("/instances/create", json=spot_body)).json()["id"]
    assert (await shadeform.get(f"/instances/{instance_id}/info")).json()["hourly_price"] == 7


async def test_a_seeded_market_is_deterministic_and_follows_the_catalogue(clock: ManualClock) -> None:
    async def counts(seed: int) -> dict[str, bool]:
        with EmbeddedCloud(None, clock=clock, market=f'{{"seed": {seed}}}') as cloud:
            async with forward_client(cloud) as client:
                listed = (await client.get("/spot/compute/offerings")).json()["data"]
                return {o["id"]: o["available"] for o in listed}

    first, again = await counts(7), await counts(7)
    assert first == again
    sold_out = {o.id for o in forward_offerings(available=False)}
    assert not any(first[i] for i in sold_out)
    with EmbeddedCloud(None, clock=clock, market='{"seed": 7}') as cloud:
        offering = forward_offerings(available=True)[0]
        machines = cloud.runtime.market.machines(f"forward:{offering.id}", True, clock.now())
        assert machines is not None and 1 <= machines <= 8
        async with forward_client(cloud) as client:
            for _ in range(machines):
                body = {"name": "w", "offering_id": offering.id}
                assert (await client.post("/spot/instances/", json=body)).status_code == 201
            refused = await client.post("/spot/instances/", json={"name": "w", "offering_id": offering.id})
            assert refused.status_code == 400


async def test_a_reclaimed_spot_instance_is_deleting_preempted_then_deleted_then_gone(
    cloud: EmbeddedCloud, shadeform: httpx.AsyncClient, forward: httpx.AsyncClient, clock: ManualClock
) -> None:
    spot = next(
        p
        for p in shadeform_placements(available=True)
        if p.cloud in ("runpod", "datacrunch") and p.num_gpus < 8
    )
    spot_id = (
        await shadeform.post("/instances/create", json=instance_body(spot, rental_type="spot"))
    ).json()["id"]
    on_demand = await create_shadeform_instance(shadeform, **_place(spot))
    created = await forward.post(
        "/spot/instances/", json={"name": "w", "offering_id": forward_offerings(available=True)[0].id}
    )
    forward_id = created.json()["id"]
    clock.advance(BOOT_SECONDS)
    cloud.set_market(
        {
            "reclaims": [
                {"offering": "shadeform:*:spot", "after_seconds": 10},
                {"instance_id": forward_id, "after_seconds": 10},
            ]
        }
    )
    assert (await shadeform.get(f"/instances/{spot_id}/info")).json()["status"] == "active"
    clock.advance(10)
    info = (await shadeform.get(f"/instances/{spot_id}/info")).json()
    assert (info["status"], info["status_details"]) == ("deleting", PREEMPTED)
    assert (await shadeform.get(f"/instances/{on_demand}/info")).json()["status"] == "active"
    fresh = (await forward.get(f"/spot/instances/{forward_id}", params={"refresh": "true"})).json()
    assert (fresh["status"], fresh["status_details"]) == ("deleting", PREEMPTED)
    clock.advance(DELETE_SECONDS)
    assert (await shadeform.get(f"/instances/{spot_id}/info")).json()["status"] == "deleted"
    clock.advance(DELETE_SECONDS)
    assert (await shadeform.get(f"/instances/{spot_id}/info")).status_code == 404
    listed = (await forward.get("/spot/instances/")).json()["data"]
    assert [i["id"] for i in listed] == []
    assert next(e for e in cloud.world.ledger() if e.id == spot_id).status == "deleted"


async def test_the_shadeform_client_reports_a_reclaimed_instance_as_deleting(
    cloud: EmbeddedCloud, shadeform: httpx.AsyncClient, clock: ManualClock
) -> None:
    instance_id = await create_shadeform_instance(shadeform)
    cloud.set_market({"reclaims": [{"instance_id": instance_id, "after_seconds": 0}]})
    provider = ShadeformProvider(
        ProviderSettings(
            "shadeform", api_key="key-tenant-a", options={"base_url": cloud.base_url("shadeform")}
        ),
        cloud.transport("shadeform"),
    )
    try:
        seen = await provider.get(Kind.INSTANCE, instance_id)
    finally:
        await provider.aclose()
    assert seen is not None and seen.status is Status.DELETING and seen.status_details == PREEMPTED


async def test_the_control_api_sets_and_shows_the_market(cloud: EmbeddedCloud, clock: ManualClock) -> None:
    async with httpx.AsyncClient(
        base_url="http://forward.embedded/_emulator", transport=cloud.transport("forward")
    ) as control:
        bad = await control.put("/market", json={"machines": {"*": -1}})
        assert bad.status_code == 400 and "machines" in bad.json()["error"]
        missing_moment = await control.put("/market", json={"reclaims": [{"instance_id": "x"}]})
        assert missing_moment.status_code == 400 and "at" in missing_moment.json()["error"]
        set_ = await control.put(
            "/market", json={"machines": {"*": 3}, "reclaims": [{"instance_id": "x", "after_seconds": 5}]}
        )
        assert set_.status_code == 200
        shown = (await control.get("/market")).json()
        assert shown["config"]["machines"] == {"*": 3}
        assert shown["reclaims"][0]["at"] == clock.now() + 5 and shown["reclaims"][0]["done"] is False


def test_the_market_comes_from_the_environment_for_cli_runs(tmp_path: Any) -> None:
    options = embedded_options({"RECONCILER_EMULATOR_MARKET": '{"machines": {"*": 0}}'})
    assert options["market"].machines == {"*": 0}
    spec = tmp_path / "market.json"
    spec.write_text('{"seed": 3}')
    assert parse_market(f"@{spec}").seed == 3
    with pytest.raises(MarketSpecError, match="schedule.0"):
        parse_market('{"schedule": [{"offering": "*", "at": 1}]}')
    with pytest.raises(MarketSpecError, match="not valid JSON"):
        parse_market("{machines")
