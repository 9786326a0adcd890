"""Fault injection: the spec grammar and every fault kind, through the in-process transport."""

from __future__ import annotations

import time

import httpx
import pytest
from emulator_fixtures import (
    BOOT_SECONDS,
    TENANT_B,
    available_placement,
    create_forward_instance,
    create_shadeform_instance,
    forward_client,
    instance_body,
    shadeform_client,
)

from reconciler.emulator import EmbeddedCloud, FaultConfig, FaultSpecError, ManualClock, parse_fault_spec
from reconciler.emulator.faults import FaultKind

pytest_plugins = ["emulator_fixtures"]

BRIEF_EXAMPLE = "shadeform.create=lost_response:0.5;forward.list=lag:5;*.*=status_503:0.1;shadeform.*=rate_limit:1.0@retry_after=1"


# ------------------------------------------------------------------ grammar


def test_the_documented_example_parses() -> None:
    rules = parse_fault_spec(BRIEF_EXAMPLE)
    assert [(r.api, r.kind, r.verb, r.fault, r.value) for r in rules] == [
        ("shadeform", "*", "create", FaultKind.LOST_RESPONSE, 0.5),
        ("forward", "*", "list", FaultKind.LAG, 5.0),
        ("*", "*", "*", FaultKind.STATUS, 0.1),
        ("shadeform", "*", "*", FaultKind.RATE_LIMIT, 1.0),
    ]
    assert rules[2].status == 503 and rules[3].retry_after == 1.0


def test_spec_round_trips_through_its_canonical_form() -> None:
    spec = (
        " shadeform.instances.create = status_500 @ every=3, times=2 ; forward.get=timeout:0.25@seconds=2;"
        "*.delete=slow_delete:60;shadeform.instances.create=boot_failure"
    )
    config = FaultConfig.parse(spec, seed=7)
    assert FaultConfig.parse(config.to_spec(), seed=7) == config
    assert config.rules[0].every == 3 and config.rules[0].times == 2 and config.rules[1].seconds == 2


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("shadeform=status_503", "target"),
        ("shadeform.a.b.c=status_503", "target"),
        ("aws.create=status_503", "unknown api"),
        ("shadeform.clusters.create=status_503", "unknown kind"),
        ("shadeform.explode=status_503", "unknown verb"),
        ("shadeform.create=meltdown", "unknown fault"),
        ("shadeform.create=status_200", "status_400"),
        ("shadeform.create=status", "status_NNN"),
        ("shadeform.create=status_503:1.5", "between 0 and 1"),
        ("shadeform.create=status_503:often", "not a number"),
        ("shadeform.create=latency", "duration"),
        ("shadeform.create=status_503@often=2", "unknown parameter"),
        ("shadeform.create=status_503@retry_after=2", "does not apply"),
        ("shadeform.create=status_503@every=0", "whole number"),
        ("shadeform.create=status_503@every=1.5", "whole number"),
        ("shadeform.list=lag:5", "can never apply"),
        ("forward.list=capacity", "can never apply"),
        ("shadeform.volumes.create=boot_failure", "can never apply"),
        ("no equals sign", "expected"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, complaint: str) -> None:
    with pytest.raises(FaultSpecError, match=complaint):
        parse_fault_spec(spec)


def test_empty_spec_means_no_faults() -> None:
    assert parse_fault_spec("") == parse_fault_spec(" ; ;") == []


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_status_faults_answer_in_each_api_shape_and_apply_nothing(
    cloud: EmbeddedCloud, status: int
) -> None:
    cloud.set_faults(f"*.create=status_{status}")
    async with shadeform_client(cloud) as shadeform, forward_client(cloud) as forward:
        response = await shadeform.post("/instances/create", json=instance_body())
        assert response.status_code == status
        assert set(response.json()) == {"error", "code"}
        response = await forward.post("/spot/instances/", json={"name": "a", "offering_id": "x"})
        assert response.status_code == status
        assert response.json()["error"]["type"] in ("server_error", "provider_error")
        assert (await shadeform.get("/instances")).status_code == 200
    assert cloud.world.ledger() == []


async def test_rate_limit_fault_sends_retry_after(cloud: EmbeddedCloud, shadeform: httpx.AsyncClient) -> None:
    cloud.set_faults("shadeform.*=rate_limit@retry_after=7")
    response = await shadeform.get("/instances")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json()["code"] == "RATE_LIMITED"


async def test_timeout_raises_read_timeout_and_applies_nothing(
    cloud: EmbeddedCloud, shadeform: httpx.AsyncClient
) -> None:
    cloud.set_faults("shadeform.instances.create=timeout")
    with pytest.raises(httpx.ReadTimeout):
        await shadeform.post("/instances/create", json=instance_body())
    assert cloud.world.ledger() == []


async def test_lost_response_applies_the_write_then_drops_the_connection(
    cloud: EmbeddedCloud, shadeform: httpx.AsyncClient, forward: httpx.AsyncClient
) -> None:
    cloud.set_faults("*.instances.create=lost_response")
    with pytest.raises(httpx.RemoteProtocolError):
        await shadeform.post("/instances/create", json=instance_body(name="lost"))
    with pytest.raises(httpx.RemoteProtocolError):
        await create_forward_instance(forward, name="lost-too")
    assert [i["name"] for i in (await shadeform.get("/instances")).json()["instances"]] == ["lost"]
    assert [i["name"] for i in (await forward.get("/spot/instances/")).json()["data"]] == ["lost-too"]
    assert [(e.api, e.name) for e in cloud.world.ledger()] == [("shadeform", "lost"), ("forward", "lost-too")]


async def test_first_refusal_in_spec_order_wins(cloud: EmbeddedCloud, shadeform: httpx.AsyncClient) -> None:
    cloud.set_faults("shadeform.list=status_502;shadeform.list=rate_limit")
    assert (await shadeform.get("/instances")).status_code == 502
    cloud.set_faults("shadeform.list=rate_limit;shadeform.list=status_502")
    assert (await shadeform.get("/instances")).status_code == 429


# ------------------------------------------------------------------ world faults


async def test_capacity_fault_refuses_an_available_type(
    cloud: EmbeddedCloud, shadeform: httpx.AsyncClient
) -> None:
    cloud.set_faults("shadeform.create=capacity")
    response = await shadeform.post("/instances/create", json=instance_body())
    assert (response.status_code, response.json()["code"]) == (409, "NO_CAPACITY")
    placement = available_placement()
    body = {"cloud": placement.cloud, "region": placement.region, "size_in_gb": 1, "name": "v"}
    assert (await shadeform.post("/volumes/create", json=body)).status_code == 409
    assert (await shadeform.post("/sshkeys/add", json={"name": "k", "public_key": "x"})).status_code == 400


async def test_boot_failure_ends_in_error(cloud: EmbeddedCloud, clock: ManualClock) -> None:
    cloud.set_faults("*.instances.create=boot_failure")
    async with shadeform_client(cloud) as shadeform, forward_client(cloud) as forward:
        instance_id = await create_shadeform_instance(shadeform)
        forward_id = (await create_forward_instance(forward))["id"]
        clock.advance(BOOT_SECONDS)
        info = (await shadeform.get(f"/instances/{instance_id}/info")).json()
        assert (info["status"], info["ip"]) == ("error", "")
        assert info["status_details"]
        fresh = (await forward.get(f"/spot/instances/{forward_id}", params={"refresh": "true"})).json()
        assert fresh["status"] == "error" and "ip" not in fresh
        assert (await shadeform.post(f"/instances/{instance_id}/delete")).status_code == 200


async def test_stuck_pending_never_boots(
    cloud: EmbeddedCloud, shadeform: httpx.AsyncClient, clock: ManualClock
) -> None:
    cloud.set_faults("shadeform.instances.create=stuck_pending@times=1")
    stuck = await create_shadeform_instance(shadeform)
    healthy = await create_shadeform_instance(shadeform)
    clock.advance(86400)
    statuses = {i["id"]: i["status"] for i in (await shadeform.get("/instances")).json()["instances"]}
    assert statuses == {stuck: "pending_provider", healthy: "active"}


async def test_slow_delete_keeps_deleting_longer(
    cloud: EmbeddedCloud, shadeform: httpx.AsyncClient, clock: ManualClock
) -> None:
    cloud.set_faults("shadeform.delete=slow_delete:60")
    instance_id = await create_shadeform_instance(shadeform)
    await shadeform.post(f"/instances/{instance_id}/delete")
    clock.advance(59)
    assert (await shadeform.get(f"/instances/{instance_id}/info")).json()["status"] == "deleting"
    clock.advance(1)
    assert (await shadeform.get(f"/instances/{instance_id}/info")).json()["status"] == "deleted"
    clock.advance(60)
    assert (await shadeform.get(f"/instances/{instance_id}/info")).status_code == 404


async def test_lag_fault_delays_forward_cached_reads(
    cloud: EmbeddedCloud, forward: httpx.AsyncClient, clock: ManualClock
) -> None:
    cloud.set_faults("forward.list=lag:30")
    instance = await create_forward_instance(forward)
    assert (await forward.get("/spot/instances/")).json()["data"] == []
    assert (await forward.get(f"/spot/instances/{instance['id']}")).status_code == 200
    clock.advance(30)
    assert len((await forward.get("/spot/instances/")).json()["data"]) == 1


async def test_latency_delays_every_matching_call(cloud: EmbeddedCloud, shadeform: httpx.AsyncClient) -> None:
    cloud.set_faults("shadeform.instances.list=latency:0.05")
    for _ in range(2):
        started = time.monotonic()
        assert (await shadeform.get("/instances")).status_code == 200
        assert time.monotonic() - started >= 0.05


# ------------------------------------------------------------------ determinism


async def pattern(cloud: EmbeddedCloud, spec: str, seed: int, calls: int) -> list[int]:
    cloud.set_faults(spec, seed=seed)
    async with shadeform_client(cloud) as client:
        return [(await client.get("/instances")).status_code for _ in range(calls)]


async def test_probabilities_are_reproducible_with_a_seed(cloud: EmbeddedCloud) -> None:
    first = await pattern(cloud, "shadeform.list=status_503:0.5", 42, 40)
    again = await pattern(cloud, "shadeform.list=status_503:0.5", 42, 40)
    other = await pattern(cloud, "shadeform.list=status_503:0.5", 43, 40)
    assert first == again
    assert first != other
    assert {200, 503} == set(first)


async def test_every_and_times_count_matching_calls(cloud: EmbeddedCloud) -> None:
    assert await pattern(cloud, "shadeform.list=status_503@every=3", 0, 7) == [
        200,
        200,
        503,
        200,
        200,
        503,
        200,
    ]
    assert await pattern(cloud, "shadeform.list=status_503@every=2,times=1", 0, 6) == [
        200,
        503,
        200,
        200,
        200,
        200,
    ]
    assert await pattern(cloud, "shadeform.list=status_503@times=2", 0, 4) == [503, 503, 200, 200]
    assert await pattern(cloud, "shadeform.list=status_503:0", 0, 3) == [200, 200, 200]


async def test_rules_match_only_their_api_kind_and_verb(cloud: EmbeddedCloud) -> None:
    cloud.set_faults("shadeform.volumes.list=status_503")
    async with shadeform_client(cloud) as shadeform, forward_client(cloud) as forward:
        assert (await shadeform.get("/volumes")).status_code == 503
        assert (await shadeform.get("/instances")).status_code == 200
        assert (await forward.get("/spot/volumes/")).status_code == 200


# ------------------------------------------------------------------ rate limit option


async def test_rate_limit_option_is_per_tenant_on_the_world_clock(clock: ManualClock) -> None:
    with EmbeddedCloud(None, clock=clock, rate_limit=2) as cloud:
        async with shadeform_client(cloud) as client, shadeform_client(cloud, TENANT_B) as other:
            assert [(await client.get("/instances")).status_code for _ in range(2)] == [200, 200]
            limited = await client.get("/instances")
            assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
            assert (await other.get("/instances")).status_code == 200
            clock.advance(0.5)
            assert (await client.get("/instances")).status_code == 200
            assert (await client.get("/instances")).status_code == 429
