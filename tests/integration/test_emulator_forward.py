"""The emulated Forward Compute API end to end over httpx's ASGI transport."""

from __future__ import annotations

import re

import httpx
import pytest
from emulator_fixtures import (
    BOOT_SECONDS,
    DELETE_SECONDS,
    TENANT_B,
    available_offering_id,
    create_forward_instance,
    forward_client,
)

from reconciler.emulator import EmbeddedCloud, ManualClock, example_public_key
from reconciler.emulator.catalogue import (
    FORWARD_COMPUTE_OFFERINGS,
    FORWARD_MODELS,
    FORWARD_VOLUME_OFFERINGS,
    forward_compute_offering,
    forward_offerings,
    forward_volume_offering_at,
)

pytest_plugins = ["emulator_fixtures"]

ERROR_TYPES = {
    "validation_error",
    "authentication_error",
    "unauthorized",
    "not_found",
    "forbidden",
    "provider_error",
    "server_error",
    "insufficient_balance",
    "streaming_error",
}


def assert_error(response: httpx.Response, status: int, error_type: str, field: str | None = None) -> str:
    """Every Forward error is `{"error": {"type", "message", "field"}}` with a seed type."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message", "field"}
    assert body["error"]["type"] in ERROR_TYPES
    assert body["error"]["type"] == error_type
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if field is not None:
        assert body["error"]["field"] == field, body
    return str(body["error"]["message"])


def offering_at(provider: str, region: str | None = None) -> str:
    return next(
        o.id
        for o in forward_offerings(available=True)
        if o.provider == provider and region in (None, o.region)
    )


async def create_volume(client: httpx.AsyncClient, **body: object) -> dict[str, object]:
    payload = {"name": "data", "size_gb": 100} | body
    response = await client.post("/spot/volumes/", json=payload)
    assert response.status_code == 201, response.text
    data: dict[str, object] = response.json()
    return data


async def create_key(client: httpx.AsyncClient, label: str = "laptop") -> str:
    response = await client.post(
        "/spot/ssh-keys/", json={"name": label, "public_key": example_public_key(label)}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


# ------------------------------------------------------------------ auth, tenancy, routing

AUTHENTICATED = [
    ("GET", "/spot/instances/"),
    ("POST", "/spot/instances/"),
    ("GET", "/spot/instances/spot_inst_000000000000"),
    ("DELETE", "/spot/instances/spot_inst_000000000000"),
    ("GET", "/spot/volumes/"),
    ("POST", "/spot/volumes/"),
    ("GET", "/spot/volumes/spot_vol_000000000000"),
    ("DELETE", "/spot/volumes/spot_vol_000000000000"),
    ("GET", "/spot/ssh-keys/"),
    ("POST", "/spot/ssh-keys/"),
    ("DELETE", "/spot/ssh-keys/spot_sshk_000000000000"),
    ("GET", "/models/"),
    ("GET", "/models/baai/bge-large-en-v1.5"),
]


@pytest.mark.parametrize(("method", "path"), AUTHENTICATED)
@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer   ", "Basic a2V5OnNlY3JldA==", "key"])
async def test_authenticated_endpoints_answer_401(
    cloud: EmbeddedCloud, method: str, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    async with forward_client(cloud, None) as client:
        response = await client.request(method, path, headers=headers, json={} if method == "POST" else None)
    assert_error(response, 401, "authentication_error")


async def test_offerings_are_public(cloud: EmbeddedCloud) -> None:
    async with forward_client(cloud, None) as client:
        assert (await client.get("/spot/compute/offerings")).status_code == 200
        assert (await client.get("/spot/volumes/offerings")).status_code == 200
        assert (await client.get(f"/spot/compute/offerings/{available_offering_id()}")).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/spot/instances",
        "/spot/volumes",
        "/spot/ssh-keys",
        "/spot/compute/offerings",
        "/spot/volumes/offerings",
        "/models",
    ],
)
async def test_lists_answer_with_and_without_trailing_slash(forward: httpx.AsyncClient, path: str) -> None:
    plain, slashed = await forward.get(path), await forward.get(path + "/")
    assert plain.status_code == slashed.status_code == 200
    assert plain.json() == slashed.json()
    assert plain.json()["object"] == "list" and isinstance(plain.json()["data"], list)


async def test_tenants_are_separate(cloud: EmbeddedCloud, forward: httpx.AsyncClient) -> None:
    instance = await create_forward_instance(forward)
    key_id = await create_key(forward)
    async with forward_client(cloud, TENANT_B) as other:
        assert (await other.get("/spot/instances/")).json()["data"] == []
        assert (await other.get("/spot/ssh-keys/")).json()["data"] == []
        assert_error(await other.get(f"/spot/instances/{instance['id']}"), 404, "not_found")
        assert_error(await other.delete(f"/spot/instances/{instance['id']}"), 404, "not_found")
        assert_error(await other.delete(f"/spot/ssh-keys/{key_id}"), 404, "not_found")
        assert (await create_forward_instance(other))["owner"] != instance["owner"]
    assert len((await forward.get("/spot/instances/")).json()["data"]) == 1


async def test_unknown_paths_and_methods_answer_in_the_error_shape(forward: httpx.AsyncClient) -> None:
    assert_error(await forward.get("/spot/clusters"), 404, "not_found")
    assert_error(await forward.put("/spot/instances/"), 405, "validation_error")


# ------------------------------------------------------------------ offerings and models


async def test_compute_offerings_list(forward: httpx.AsyncClient) -> None:
    body = (await forward.get("/spot/compute/offerings")).json()
    assert body["url"] == "/v1/spot/compute/offerings"
    assert len(body["data"]) == len(FORWARD_COMPUTE_OFFERINGS)
    item = body["data"][0]
    assert re.fullmatch(r"spot_coff_[0-9a-f]{12}", item["id"])
    assert re.fullmatch(r"\d+\.\d{2}", item["hourly_price"])
    assert item["deployment_type"] in ("vm", "container", "baremetal")
    assert {"min_seconds", "max_seconds"} == set(item["boot_time"])
    assert item["configuration"]["total_vram_in_gb"] == (
        item["configuration"]["vram_per_gpu_in_gb"] * item["configuration"]["num_gpus"]
    )
    assert {o["available"] for o in body["data"]} == {True, False}


async def test_single_offerings_answer_both_readings_of_the_seed(forward: httpx.AsyncClient) -> None:
    offering = forward_offerings(available=True)[0]
    body = (await forward.get(f"/spot/compute/offerings/{offering.id}")).json()
    assert body["object"] == "compute_offering"
    assert body["data"]["id"] == body["id"] == offering.id
    assert body["data"]["hourly_price"] == body["hourly_price"] == offering.hourly_price
    volume_offering = FORWARD_VOLUME_OFFERINGS[0]
    body = (await forward.get(f"/spot/volumes/offerings/{volume_offering.id}/")).json()
    assert (body["object"], body["data"]["object"]) == ("volume_offering", "volume_offering")
    assert (
        body["data"]["price_per_gb_per_hour"]
        == body["price_per_gb_per_hour"]
        == volume_offering.price_per_gb_per_hour
    )
    assert_error(await forward.get("/spot/compute/offerings/spot_coff_000000000000"), 404, "not_found")
    assert_error(await forward.get("/spot/volumes/offerings/spot_voff_000000000000"), 404, "not_found")


async def test_volume_offerings_list(forward: httpx.AsyncClient) -> None:
    body = (await forward.get("/spot/volumes/offerings")).json()
    assert body["url"] == "/v1/spot/volumes/offerings"
    assert [o["id"] for o in body["data"]] == [o.id for o in FORWARD_VOLUME_OFFERINGS]


async def test_models(forward: httpx.AsyncClient) -> None:
    listed = (await forward.get("/models/")).json()
    assert listed["object"] == "list" and len(listed["data"]) == len(FORWARD_MODELS)
    model = (await forward.get(f"/models/{FORWARD_MODELS[0].id}")).json()
    assert (model["id"], model["object"]) == (FORWARD_MODELS[0].id, "model")
    assert {"input", "output"} <= set(model["pricing"])
    assert assert_error(await forward.get("/models/acme/nonexistent"), 404, "not_found") == "Model not found"


# ------------------------------------------------------------------ instances


async def test_instance_lifecycle(forward: httpx.AsyncClient, clock: ManualClock) -> None:
    offering_id = available_offering_id()
    envs = [{"name": "MY_API_KEY", "value": "secret123"}]
    response = await forward.post(
        "/spot/instances/", json={"name": "train", "offering_id": offering_id, "envs": envs}
    )
    assert response.status_code == 201
    created = response.json()
    assert re.fullmatch(r"spot_inst_[0-9a-f]{12}", created["id"])
    assert (created["object"], created["status"], created["envs"]) == ("spot.instance", "creating", envs)
    assert "ip" not in created
    offering = forward_compute_offering(offering_id)
    assert offering is not None
    assert (created["provider"], created["region"]) == (offering.provider, offering.region)
    assert re.fullmatch(r"mem_[0-9a-f]{12}", created["owner"])
    clock.advance(BOOT_SECONDS)
    fetched = (await forward.get(f"/spot/instances/{created['id']}", params={"refresh": "true"})).json()
    assert fetched["status"] == "active" and fetched["ip"]
    assert [i["id"] for i in (await forward.get("/spot/instances")).json()["data"]] == [created["id"]]
    response = await forward.delete(f"/spot/instances/{created['id']}")
    assert (response.status_code, response.json()) == (
        200,
        {"deleted": True, "id": created["id"], "object": "spot.instance"},
    )
    assert [i["status"] for i in (await forward.get("/spot/instances/")).json()["data"]] == ["deleting"]
    clock.advance(DELETE_SECONDS)
    assert (await forward.get("/spot/instances/")).json()["data"] == []
    gone = (await forward.get(f"/spot/instances/{created['id']}", params={"refresh": "true"})).json()
    assert gone["status"] == "deleted"
    assert_error(await forward.delete(f"/spot/instances/{created['id']}"), 404, "not_found")


async def test_instance_with_key_and_volume(forward: httpx.AsyncClient) -> None:
    offering = forward_offerings(available=True)[0]
    key_id = await create_key(forward)
    place = forward_volume_offering_at(offering.provider, offering.region)
    assert place is not None
    volume = await create_volume(forward, offering_id=place.id)
    instance = await create_forward_instance(
        forward, offering_id=offering.id, ssh_key_id=key_id, volume_ids=[volume["id"]]
    )
    assert (instance["ssh_key_id"], instance["volume_ids"]) == (key_id, [volume["id"]])
    fetched = (await forward.get(f"/spot/volumes/{volume['id']}", params={"refresh": "true"})).json()
    assert fetched["mounted_by"] == instance["id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"offering_id": "x"}, "name"),
        ({"name": "a"}, "offering_id"),
        ({"name": "", "offering_id": "x"}, "name"),
        ({"name": 3, "offering_id": "x"}, "name"),
        ({"name": "a", "offering_id": "spot_coff_000000000000"}, "offering_id"),
        ({"name": "a", "offering_id": "OFFERING", "ssh_key_id": "spot_sshk_000000000000"}, "ssh_key_id"),
        ({"name": "a", "offering_id": "OFFERING", "volume_ids": ["spot_vol_000000000000"]}, "volume_ids"),
        ({"name": "a", "offering_id": "OFFERING", "envs": [{"name": "X"}]}, "envs.0.value"),
    ],
)
async def test_create_instance_validation(
    forward: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    payload = {k: (available_offering_id() if v == "OFFERING" else v) for k, v in body.items()}
    assert_error(await forward.post("/spot/instances/", json=payload), 400, "validation_error", field)
    assert (await forward.get("/spot/instances/")).json()["data"] == []


async def test_sold_out_offering_is_a_provider_capacity_error(
    cloud: EmbeddedCloud, forward: httpx.AsyncClient
) -> None:
    sold_out = forward_offerings(available=False)[0]
    response = await forward.post("/spot/instances/", json={"name": "a", "offering_id": sold_out.id})
    assert "capacity" in assert_error(response, 400, "provider_error", "offering_id")
    assert cloud.world.ledger() == []


async def test_volume_must_be_where_the_offering_is(forward: httpx.AsyncClient) -> None:
    offering = forward_offerings(available=True)[0]
    other = next(
        o for o in FORWARD_VOLUME_OFFERINGS if (o.provider, o.region) != (offering.provider, offering.region)
    )
    volume = await create_volume(forward, offering_id=other.id)
    response = await forward.post(
        "/spot/instances/", json={"name": "a", "offering_id": offering.id, "volume_ids": [volume["id"]]}
    )
    assert_error(response, 400, "validation_error", "volume_ids")


async def test_list_lag_hides_new_and_keeps_deleted_instances(clock: ManualClock) -> None:
    with EmbeddedCloud(None, clock=clock, boot_seconds=1, delete_seconds=1, list_lag_seconds=10) as cloud:
        async with forward_client(cloud) as client:
            instance = await create_forward_instance(client)
            path = f"/spot/instances/{instance['id']}"
            assert (await client.get("/spot/instances/")).json()["data"] == []
            assert_error(await client.get(path), 404, "not_found")
            assert (await client.get(path, params={"refresh": "true"})).status_code == 200
            clock.advance(10)
            assert [i["id"] for i in (await client.get("/spot/instances/")).json()["data"]] == [
                instance["id"]
            ]
            await client.delete(path)
            clock.advance(5)
            listed = (await client.get("/spot/instances/")).json()["data"]
            assert [i["status"] for i in listed] == ["active"]
            assert (await client.get(path, params={"refresh": "true"})).json()["status"] == "deleted"
            clock.advance(6)
            assert (await client.get("/spot/instances/")).json()["data"] == []
            assert_error(
                await client.get(path, params={"refresh": "sometimes"}), 400, "validation_error", "refresh"
            )


# ------------------------------------------------------------------ volumes


async def test_volume_lifecycle_by_offering(forward: httpx.AsyncClient) -> None:
    by_offering = await create_volume(forward, offering_id=FORWARD_VOLUME_OFFERINGS[1].id)
    assert (by_offering["provider"], by_offering["region"]) == (
        FORWARD_VOLUME_OFFERINGS[1].provider,
        FORWARD_VOLUME_OFFERINGS[1].region,
    )
    assert re.fullmatch(r"spot_vol_[0-9a-f]{12}", str(by_offering["id"]))
    assert by_offering["object"] == "spot.volume" and "mounted_by" not in by_offering
    assert isinstance(by_offering["cost_estimate"], float)
    crusoe = next(o for o in FORWARD_VOLUME_OFFERINGS if (o.provider, o.region) == ("crusoe", "us-west-2"))
    explicit = await create_volume(forward, offering_id=crusoe.id)
    assert (explicit["provider"], explicit["region"]) == ("crusoe", "us-west-2")
    unnamed = await create_volume(forward, name=None, offering_id=crusoe.id)
    assert str(unnamed["name"]).startswith("volume-")
    listed = (await forward.get("/spot/volumes")).json()
    assert listed["url"] == "/v1/spot/volumes" and len(listed["data"]) == 3
    assert (await forward.get(f"/spot/volumes/{explicit['id']}")).json()["size_gb"] == 100
    response = await forward.delete(f"/spot/volumes/{explicit['id']}")
    assert response.json() == {"id": explicit["id"], "object": "spot.volume", "deleted": True}
    assert_error(await forward.get(f"/spot/volumes/{explicit['id']}"), 404, "not_found")
    assert_error(await forward.delete(f"/spot/volumes/{explicit['id']}"), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "size_gb": 100, "offering_id": "VOFF"}, "name"),
        ({"name": "v", "size_gb": 0, "offering_id": "VOFF"}, "size_gb"),
        ({"name": "v", "size_gb": "100", "offering_id": "VOFF"}, "size_gb"),
        ({"name": "v", "size_gb": 10}, "offering_id"),
        ({"name": "v", "size_gb": 10, "region": "us-east-1"}, "offering_id"),
        ({"name": "v", "size_gb": 10, "offering_id": 7}, "offering_id"),
        ({"name": "v", "size_gb": 10, "offering_id": "spot_voff_000000000000"}, "offering_id"),
    ],
)
async def test_volume_validation(forward: httpx.AsyncClient, body: dict[str, object], field: str) -> None:
    payload = {k: (FORWARD_VOLUME_OFFERINGS[0].id if v == "VOFF" else v) for k, v in body.items()}
    assert_error(await forward.post("/spot/volumes/", json=payload), 400, "validation_error", field)


async def test_mounted_volume_delete_is_refused(forward: httpx.AsyncClient, clock: ManualClock) -> None:
    single_mount = {
        (o.provider, o.region): o.id for o in FORWARD_VOLUME_OFFERINGS if not o.supports_multi_mount
    }
    offering = next(o for o in forward_offerings(available=True) if (o.provider, o.region) in single_mount)
    volume = await create_volume(forward, offering_id=single_mount[(offering.provider, offering.region)])
    instance = await create_forward_instance(forward, offering_id=offering.id, volume_ids=[volume["id"]])
    assert "mounted" in assert_error(
        await forward.delete(f"/spot/volumes/{volume['id']}"), 409, "validation_error"
    )
    second = await forward.post(
        "/spot/instances/", json={"name": "b", "offering_id": offering.id, "volume_ids": [volume["id"]]}
    )
    assert_error(second, 400, "validation_error", "volume_ids")
    await forward.delete(f"/spot/instances/{instance['id']}")
    clock.advance(DELETE_SECONDS)
    assert (await forward.delete(f"/spot/volumes/{volume['id']}")).status_code == 200


# ------------------------------------------------------------------ ssh keys


async def test_ssh_key_lifecycle(forward: httpx.AsyncClient, clock: ManualClock) -> None:
    response = await forward.post(
        "/spot/ssh-keys",
        json={"name": "ci", "public_key": example_public_key("ci"), "provider": "hyperstack"},
    )
    assert response.status_code == 201
    key = response.json()
    assert re.fullmatch(r"spot_sshk_[0-9a-f]{12}", key["id"])
    assert (key["object"], key["provider"], key["public_key"]) == (
        "spot.ssh_key",
        "hyperstack",
        example_public_key("ci"),
    )
    assert key["provider_key_id"] and key["provider_data"] == {}
    listed = (await forward.get("/spot/ssh-keys/")).json()
    assert listed["url"] == "/v1/spot/ssh-keys" and [k["id"] for k in listed["data"]] == [key["id"]]
    instance = await create_forward_instance(forward, ssh_key_id=key["id"])
    assert "in use" in assert_error(
        await forward.delete(f"/spot/ssh-keys/{key['id']}"), 409, "validation_error"
    )
    await forward.delete(f"/spot/instances/{instance['id']}")
    clock.advance(DELETE_SECONDS)
    response = await forward.delete(f"/spot/ssh-keys/{key['id']}/")
    assert response.json() == {"id": key["id"], "object": "spot.ssh_key", "deleted": True}
    assert (await forward.get("/spot/ssh-keys")).json()["data"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "k", "public_key": "ssh-ed25519 nope"}, "public_key"),
        ({"name": "k"}, "public_key"),
        ({"public_key": "KEY"}, "name"),
        ({"name": "k", "public_key": "KEY", "provider": "aws"}, "provider"),
    ],
)
async def test_ssh_key_validation(forward: httpx.AsyncClient, body: dict[str, object], field: str) -> None:
    payload = {k: (example_public_key("k") if v == "KEY" else v) for k, v in body.items()}
    assert_error(await forward.post("/spot/ssh-keys/", json=payload), 400, "validation_error", field)


async def test_restart_is_restarting_then_active_and_only_for_a_running_instance(
    cloud: EmbeddedCloud, forward: httpx.AsyncClient, clock: ManualClock
) -> None:
    created = await create_forward_instance(forward)
    booting = await forward.post(f"/spot/instances/{created['id']}/restart", json={})
    assert "creating" in assert_error(booting, 409, "validation_error", "id")
    clock.advance(BOOT_SECONDS)
    restarted = await forward.post(f"/spot/instances/{created['id']}/restart", json={})
    assert restarted.status_code == 200
    assert (restarted.json()["id"], restarted.json()["status"]) == (created["id"], "restarting")
    assert "ip" not in restarted.json()
    clock.advance(BOOT_SECONDS)
    fresh = (await forward.get(f"/spot/instances/{created['id']}", params={"refresh": "true"})).json()
    assert fresh["status"] == "active" and fresh["ip"]
    assert_error(await forward.post("/spot/instances/spot_inst_000000000000/restart"), 404, "not_found")
    async with forward_client(cloud, TENANT_B) as other:
        assert_error(await other.post(f"/spot/instances/{created['id']}/restart"), 404, "not_found")
    await forward.delete(f"/spot/instances/{created['id']}")
    assert "deleting" in assert_error(
        await forward.post(f"/spot/instances/{created['id']}/restart"), 409, "validation_error"
    )


async def test_a_failed_boot_is_error_with_status_details(
    cloud: EmbeddedCloud, forward: httpx.AsyncClient, clock: ManualClock
) -> None:
    cloud.set_faults("forward.instances.create=boot_failure")
    created = await create_forward_instance(forward)
    clock.advance(BOOT_SECONDS)
    fresh = (await forward.get(f"/spot/instances/{created['id']}", params={"refresh": "true"})).json()
    assert fresh["status"] == "error" and fresh["status_details"] == "the instance failed to boot"
