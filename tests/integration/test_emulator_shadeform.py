"""The emulated Shadeform API end to end over httpx's ASGI transport."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from emulator_fixtures import (
    BOOT_SECONDS,
    DELETE_SECONDS,
    TENANT_B,
    add_shadeform_key,
    available_placement,
    create_shadeform_instance,
    create_shadeform_volume,
    instance_body,
    shadeform_client,
    sold_out_placement,
)

from reconciler.emulator import EmbeddedCloud, ManualClock, example_public_key
from reconciler.emulator.catalogue import (
    SHADEFORM_INSTANCE_TYPES,
    SHADEFORM_VOLUME_TYPES,
    shadeform_placements,
)

pytest_plugins = ["emulator_fixtures"]

ERROR_CODE = re.compile(r"^[A-Z][A-Z_]*$")


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> str:
    """Every Shadeform error has the one documented shape; returns the message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "code"}
    assert isinstance(body["error"], str) and body["error"]
    assert ERROR_CODE.match(body["code"])
    if code is not None:
        assert body["code"] == code
    return str(body["error"])


# ------------------------------------------------------------------ auth and tenancy

ENDPOINTS = [
    ("GET", "/instances/types"),
    ("GET", "/instances"),
    ("POST", "/instances/create"),
    ("GET", "/instances/{id}/info"),
    ("POST", "/instances/{id}/update"),
    ("POST", "/instances/{id}/restart"),
    ("POST", "/instances/{id}/delete"),
    ("GET", "/volumes/types"),
    ("GET", "/volumes"),
    ("POST", "/volumes/create"),
    ("GET", "/volumes/{id}/info"),
    ("POST", "/volumes/{id}/delete"),
    ("GET", "/sshkeys"),
    ("POST", "/sshkeys/add"),
    ("GET", "/sshkeys/{id}/info"),
    ("POST", "/sshkeys/{id}/delete"),
    ("POST", "/sshkeys/{id}/setdefault"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("key", [None, "", "   "])
async def test_every_endpoint_needs_an_api_key(
    cloud: EmbeddedCloud, method: str, path: str, key: str | None
) -> None:
    async with shadeform_client(cloud, key) as client:
        response = await client.request(
            method, path.format(id=uuid.uuid4()), json={} if method == "POST" else None
        )
    assert_error(response, 401, "UNAUTHORIZED")
    assert cloud.world.ledger() == []


async def test_each_api_key_is_a_separate_tenant(cloud: EmbeddedCloud, shadeform: httpx.AsyncClient) -> None:
    instance_id = await create_shadeform_instance(shadeform)
    key_id = await add_shadeform_key(shadeform)
    volume_id = await create_shadeform_volume(shadeform)
    async with shadeform_client(cloud, TENANT_B) as other:
        assert (await other.get("/instances")).json() == {"instances": []}
        assert (await other.get("/volumes")).json() == {"volumes": []}
        assert (await other.get("/sshkeys")).json() == {"ssh_keys": []}
        assert_error(await other.get(f"/instances/{instance_id}/info"), 404, "NOT_FOUND")
        assert_error(await other.post(f"/instances/{instance_id}/delete"), 404, "NOT_FOUND")
        assert_error(await other.post(f"/volumes/{volume_id}/delete"), 404, "NOT_FOUND")
        assert_error(await other.post(f"/sshkeys/{key_id}/delete"), 404, "NOT_FOUND")
        assert_error(
            await other.post("/instances/create", json=instance_body(ssh_key_id=key_id)),
            400,
            "INVALID_REQUEST",
        )
    assert (await shadeform.get(f"/instances/{instance_id}/info")).json()["status"] == "creating"


# ------------------------------------------------------------------ instance types


async def test_instance_types_without_filters_lists_the_whole_catalogue(shadeform: httpx.AsyncClient) -> None:
    types = (await shadeform.get("/instances/types")).json()["instance_types"]
    assert len(types) == len(SHADEFORM_INSTANCE_TYPES)
    first = types[0]
    assert isinstance(first["hourly_price"], int)
    assert {"os", "os_options"} <= set(first["configuration"])
    on_demand = [a for a in first["availability"] if a["rental_type"] == "on_demand"]
    assert on_demand and all(isinstance(a["available"], bool) for a in on_demand)


@pytest.mark.parametrize(
    ("params", "check"),
    [
        ({"cloud": "runpod"}, lambda t: t["cloud"] == "runpod"),
        ({"num_gpus": "8"}, lambda t: t["configuration"]["num_gpus"] == 8),
        ({"gpu_type": "H100"}, lambda t: t["configuration"]["gpu_type"] == "H100"),
        ({"shade_instance_type": "A100_80Gx8"}, lambda t: t["shade_instance_type"] == "A100_80Gx8"),
        ({"available": "true"}, lambda t: any(a["available"] for a in t["availability"])),
        ({"available": "false"}, lambda t: not any(a["available"] for a in t["availability"])),
        (
            {"region": "us-east-1"},
            lambda t: (
                t["region"] == "us-east-1" and {a["region"] for a in t["availability"]} == {"us-east-1"}
            ),
        ),
    ],
)
async def test_instance_type_filters(
    shadeform: httpx.AsyncClient, params: dict[str, str], check: object
) -> None:
    types = (await shadeform.get("/instances/types", params=params)).json()["instance_types"]
    assert types, f"filter {params} matched nothing"
    assert all(check(t) for t in types)  # type: ignore[operator]
    unfiltered = (await shadeform.get("/instances/types")).json()["instance_types"]
    assert len(types) < len(unfiltered)


async def test_instance_types_sort_by_price_and_combine_filters(shadeform: httpx.AsyncClient) -> None:
    params = {"gpu_type": "A6000", "num_gpus": "1", "available": "true", "sort": "price"}
    types = (await shadeform.get("/instances/types", params=params)).json()["instance_types"]
    prices = [t["hourly_price"] for t in types]
    assert len(prices) > 1 and prices == sorted(prices)
    assert all(t["shade_instance_type"] == "A6000" for t in types)


async def test_spot_availability_carries_rental_type_and_a_dollar_price(shadeform: httpx.AsyncClient) -> None:
    types = (await shadeform.get("/instances/types", params={"cloud": "runpod", "num_gpus": "1"})).json()
    spot = [a for t in types["instance_types"] for a in t["availability"] if a["rental_type"] == "spot"]
    assert spot
    assert all(re.fullmatch(r"\d+\.\d{2}", a["hourly_price"]) for a in spot)


@pytest.mark.parametrize(
    ("params", "field"),
    [({"num_gpus": "eight"}, "num_gpus"), ({"available": "maybe"}, "available"), ({"sort": "name"}, "sort")],
)
async def test_instance_types_bad_filters_are_400(
    shadeform: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    message = assert_error(await shadeform.get("/instances/types", params=params), 400, "INVALID_REQUEST")
    assert field in message


# ------------------------------------------------------------------ instances


async def test_create_boots_creating_pending_provider_pending_then_active_on_the_clock(
    shadeform: httpx.AsyncClient, clock: ManualClock
) -> None:
    response = await shadeform.post("/instances/create", json=instance_body(tags=["team:ml"]))
    assert response.status_code == 200
    created = response.json()
    assert set(created) == {"id", "cloud_assigned_id"}
    uuid.UUID(created["id"])
    info = (await shadeform.get(f"/instances/{created['id']}/info")).json()
    assert (info["status"], info["ip"]) == ("creating", "")
    assert info["cloud_assigned_id"] == created["cloud_assigned_id"]
    clock.advance(BOOT_SECONDS / 2)
    assert (await shadeform.get(f"/instances/{created['id']}/info")).json()["status"] == "pending_provider"
    clock.advance(BOOT_SECONDS / 2 - 0.01)
    assert (await shadeform.get(f"/instances/{created['id']}/info")).json()["status"] == "pending"
    clock.advance(0.02)
    info = (await shadeform.get(f"/instances/{created['id']}/info")).json()
    assert info["status"] == "active"
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", info["ip"])
    assert info["tags"] == ["team:ml"]
    listed = (await shadeform.get("/instances")).json()["instances"]
    assert [i["id"] for i in listed] == [created["id"]]


async def test_create_echoes_every_given_field(shadeform: httpx.AsyncClient) -> None:
    key_id = await add_shadeform_key(shadeform)
    volume_id = await create_shadeform_volume(shadeform)
    launch = {
        "type": "docker",
        "docker_configuration": {"image": "vllm/vllm-openai:latest", "args": "--model x"},
    }
    body = instance_body(
        ssh_key_id=key_id,
        volume_ids=[volume_id],
        tags=["a", "b"],
        envs=[{"name": "HF_TOKEN", "value": "secret"}],
        launch_configuration=launch,
        os="ubuntu20.04_cuda12.0_shade_os",
        auto_delete={"date_threshold": "2030-01-01T00:00:00Z"},
        alert={"spend_threshold": "100.00"},
        shade_cloud=True,
    )
    instance_id = (await shadeform.post("/instances/create", json=body)).json()["id"]
    info = (await shadeform.get(f"/instances/{instance_id}/info")).json()
    assert info["ssh_key_id"] == key_id
    assert info["volume_ids"] == [volume_id]
    assert info["tags"] == ["a", "b"]
    assert info["envs"] == [{"name": "HF_TOKEN", "value": "secret"}]
    assert info["launch_configuration"] == launch
    assert info["configuration"]["os"] == "ubuntu20.04_cuda12.0_shade_os"
    assert info["auto_delete"] == {"date_threshold": "2030-01-01T00:00:00Z"}
    assert info["alert"] == {"spend_threshold": "100.00"}
    assert info["shade_cloud"] is True
    assert info["rental_type"] == "on_demand"
    placement = available_placement()
    assert (info["cloud"], info["region"], info["shade_instance_type"]) == (
        placement.cloud,
        placement.region,
        placement.shade_instance_type,
    )
    assert info["hourly_price"] == placement.hourly_price_cents


async def test_shade_cloud_defaults_to_true_and_names_may_repeat(shadeform: httpx.AsyncClient) -> None:
    first = await create_shadeform_instance(shadeform, name="same")
    second = await create_shadeform_instance(shadeform, name="same")
    assert first != second
    listed = (await shadeform.get("/instances")).json()["instances"]
    assert [i["name"] for i in listed] == ["same", "same"]
    assert all(i["shade_cloud"] is True for i in listed)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": None}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"cloud": "hyperstack"}, "cloud"),
        ({"region": 5}, "region"),
        ({"shade_instance_type": "B200x64"}, "shade_instance_type"),
        ({"region": "mars-1"}, "region"),
        ({"os": "windows"}, "os"),
        ({"shade_cloud": "yes"}, "shade_cloud"),
        ({"tags": "a"}, "tags"),
        ({"tags": [1]}, "tags"),
        ({"envs": [{"name": "A"}]}, "envs"),
        ({"launch_configuration": {"type": "docker"}}, "launch_configuration"),
        ({"launch_configuration": {"type": "podman"}}, "launch_configuration"),
        (
            {"launch_configuration": {"type": "script", "script_configuration": {"base64_script": "%%"}}},
            "launch",
        ),
        ({"auto_delete": {}}, "auto_delete"),
        ({"auto_delete": {"date_threshold": "tomorrow"}}, "auto_delete"),
        ({"alert": {"spend_threshold": "-5"}}, "alert"),
        ({"rental_type": "reserved"}, "rental_type"),
        ({"ssh_key_id": str(uuid.uuid4())}, "ssh_key_id"),
        ({"volume_ids": [str(uuid.uuid4())]}, "volume_ids"),
    ],
)
async def test_create_validation_errors_name_the_field(
    shadeform: httpx.AsyncClient, change: dict[str, object], field: str
) -> None:
    body = instance_body()
    body.update(change)
    message = assert_error(await shadeform.post("/instances/create", json=body), 400, "INVALID_REQUEST")
    assert field in message
    assert (await shadeform.get("/instances")).json() == {"instances": []}


async def test_missing_required_fields_and_bad_json_are_400(shadeform: httpx.AsyncClient) -> None:
    for required in ("cloud", "region", "shade_instance_type", "name"):
        body = instance_body()
        del body[required]
        assert required in assert_error(await shadeform.post("/instances/create", json=body), 400)
    response = await shadeform.post(
        "/instances/create", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "INVALID_REQUEST")
    assert_error(await shadeform.post("/instances/create", json=[1, 2]), 400, "INVALID_REQUEST")


async def test_sold_out_type_is_a_capacity_error(cloud: EmbeddedCloud, shadeform: httpx.AsyncClient) -> None:
    placement = sold_out_placement()
    message = assert_error(
        await shadeform.post("/instances/create", json=instance_body(placement)), 409, "NO_CAPACITY"
    )
    assert "capacity" in message
    assert cloud.world.ledger() == []


async def test_spot_rental_uses_the_spot_price(shadeform: httpx.AsyncClient) -> None:
    spot_type = next(t for t in SHADEFORM_INSTANCE_TYPES if t.cloud == "runpod" and t.num_gpus == 1)
    region = next(a for a in spot_type.availability if a.spot_available)
    body = {
        "cloud": "runpod",
        "region": region.region,
        "shade_instance_type": spot_type.shade_instance_type,
        "name": "cheap",
        "rental_type": "spot",
    }
    instance_id = (await shadeform.post("/instances/create", json=body)).json()["id"]
    info = (await shadeform.get(f"/instances/{instance_id}/info")).json()
    assert (info["rental_type"], info["hourly_price"]) == ("spot", region.spot_price_cents)
    no_spot = instance_body(
        placement=next(p for p in shadeform_placements(available=True) if p.cloud == "lambdalabs")
    )
    no_spot["rental_type"] = "spot"
    assert "spot" in assert_error(await shadeform.post("/instances/create", json=no_spot), 400)


async def test_delete_moves_to_deleting_then_deleted_then_gone(shadeform: httpx.AsyncClient, clock: ManualClock) -> None:
    instance_id = await create_shadeform_instance(shadeform)
    clock.advance(BOOT_SECONDS)
    response = await shadeform.post(f"/instances/{instance_id}/delete")
    assert (response.status_code, response.content) == (200, b"")
    info = (await shadeform.get(f"/instances/{instance_id}/info")).json()
    assert info["status"] == "deleting" and info["deleted_at"] not in (None, "0001-01-01T00:00:00Z")
    assert [i["status"] for i in (await shadeform.get("/instances")).json()["instances"]] == ["deleting"]
    assert (await shadeform.post(f"/instances/{instance_id}/delete")).status_code == 200
    clock.advance(DELETE_SECONDS)
    assert [i["status"] for i in (await shadeform.get("/instances")).json()["instances"]] == ["deleted"]
    assert (await shadeform.get(f"/instances/{instance_id}/info")).json()["status"] == "deleted"
    assert (await shadeform.post(f"/instances/{instance_id}/delete")).status_code == 200
    clock.advance(DELETE_SECONDS)
    assert (await shadeform.get("/instances")).json() == {"instances": []}
    assert_error(await shadeform.get(f"/instances/{instance_id}/info"), 404, "NOT_FOUND")
    assert_error(await shadeform.post(f"/instances/{instance_id}/delete"), 404, "NOT_FOUND")


async def test_update_changes_name_tags_and_thresholds_in_place(
    shadeform: httpx.AsyncClient, clock: ManualClock
) -> None:
    instance_id = await create_shadeform_instance(shadeform, tags=["old"])
    body = {"name": "renamed", "tags": ["new", "x"], "alert": {"spend_threshold": "10"}}
    response = await shadeform.post(f"/instances/{instance_id}/update", json=body)
    assert response.status_code == 200
    info = (await shadeform.get(f"/instances/{instance_id}/info")).json()
    assert (info["name"], info["tags"], info["alert"]) == ("renamed", ["new", "x"], {"spend_threshold": "10"})
    assert_error(await shadeform.post(f"/instances/{instance_id}/update", json={"tags": "x"}), 400)
    assert_error(await shadeform.post(f"/instances/{instance_id}/update", json={"name": None}), 400)
    await shadeform.post(f"/instances/{instance_id}/delete")
    assert_error(
        await shadeform.post(f"/instances/{instance_id}/update", json={"name": "z"}), 409, "INVALID_STATE"
    )


async def test_restart_reboots_an_active_instance(shadeform: httpx.AsyncClient, clock: ManualClock) -> None:
    instance_id = await create_shadeform_instance(shadeform)
    assert_error(await shadeform.post(f"/instances/{instance_id}/restart"), 409, "INVALID_STATE")
    clock.advance(BOOT_SECONDS)
    assert (await shadeform.post(f"/instances/{instance_id}/restart")).status_code == 200
    assert (await shadeform.get(f"/instances/{instance_id}/info")).json()["status"] == "pending"
    clock.advance(BOOT_SECONDS)
    assert (await shadeform.get(f"/instances/{instance_id}/info")).json()["status"] == "active"


async def test_auto_delete_spend_threshold_deletes_the_instance(
    shadeform: httpx.AsyncClient, clock: ManualClock
) -> None:
    placement = available_placement()
    threshold = placement.hourly_price_cents / 100  # one hour of spend
    instance_id = await create_shadeform_instance(
        shadeform, auto_delete={"spend_threshold": f"{threshold:.2f}"}
    )
    clock.advance(3599)
    assert (await shadeform.get(f"/instances/{instance_id}/info")).json()["status"] == "active"
    clock.advance(2)
    info = (await shadeform.get(f"/instances/{instance_id}/info")).json()
    assert info["status"] == "deleting"
    assert float(info["cost_estimate"]) == pytest.approx(threshold, abs=0.01)


# ------------------------------------------------------------------ volumes


async def test_volume_types_cover_the_catalogue(shadeform: httpx.AsyncClient) -> None:
    types = (await shadeform.get("/volumes/types")).json()["volume_types"]
    assert len(types) == len(SHADEFORM_VOLUME_TYPES)
    assert all(
        set(t) == {"cloud", "region", "supports_multi_mount", "fixed_size", "price_per_gb_per_hour"}
        for t in types
    )


async def test_volume_lifecycle(shadeform: httpx.AsyncClient) -> None:
    placement = available_placement()
    body = {"cloud": placement.cloud, "region": placement.region, "size_in_gb": 250, "name": "datasets"}
    response = await shadeform.post("/volumes/create", json=body)
    assert response.status_code == 200 and set(response.json()) == {"id"}
    volume_id = response.json()["id"]
    info = (await shadeform.get(f"/volumes/{volume_id}/info")).json()
    assert (info["name"], info["size_in_gb"], info["mounted_by"]) == ("datasets", 250, "")
    assert isinstance(info["cost_estimate"], str)
    assert [v["id"] for v in (await shadeform.get("/volumes")).json()["volumes"]] == [volume_id]
    response = await shadeform.post(f"/volumes/{volume_id}/delete")
    assert (response.status_code, response.content) == (200, b"")
    assert (await shadeform.get("/volumes")).json() == {"volumes": []}
    assert_error(await shadeform.get(f"/volumes/{volume_id}/info"), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"size_in_gb": 0}, "size_in_gb"),
        ({"size_in_gb": "100"}, "size_in_gb"),
        ({"size_in_gb": 10**7}, "size_in_gb"),
        ({"region": "nowhere"}, "region"),
        ({"cloud": "gcp"}, "cloud"),
        ({"name": ""}, "name"),
    ],
)
async def test_volume_validation(shadeform: httpx.AsyncClient, change: dict[str, object], field: str) -> None:
    placement = available_placement()
    body: dict[str, object] = {
        "cloud": placement.cloud,
        "region": placement.region,
        "size_in_gb": 10,
        "name": "v",
    }
    body.update(change)
    assert field in assert_error(await shadeform.post("/volumes/create", json=body), 400, "INVALID_REQUEST")


async def test_mounted_volume_cannot_be_deleted_until_its_instance_is_gone(
    shadeform: httpx.AsyncClient, clock: ManualClock
) -> None:
    volume_id = await create_shadeform_volume(shadeform)
    instance_id = await create_shadeform_instance(shadeform, volume_ids=[volume_id])
    assert (await shadeform.get(f"/volumes/{volume_id}/info")).json()["mounted_by"] == instance_id
    assert_error(await shadeform.post(f"/volumes/{volume_id}/delete"), 409, "VOLUME_MOUNTED")
    await shadeform.post(f"/instances/{instance_id}/delete")
    assert_error(await shadeform.post(f"/volumes/{volume_id}/delete"), 409, "VOLUME_MOUNTED")
    clock.advance(DELETE_SECONDS)
    assert (await shadeform.get(f"/volumes/{volume_id}/info")).json()["mounted_by"] == ""
    assert (await shadeform.post(f"/volumes/{volume_id}/delete")).status_code == 200


async def test_volume_rules_on_instance_create(shadeform: httpx.AsyncClient) -> None:
    placement = available_placement()
    elsewhere = next(
        p
        for p in shadeform_placements(available=True)
        if (p.cloud, p.region) != (placement.cloud, placement.region)
    )
    far_volume = await create_shadeform_volume(shadeform, elsewhere)
    assert "volume" in assert_error(
        await shadeform.post("/instances/create", json=instance_body(volume_ids=[far_volume])), 400
    )
    first, second = await create_shadeform_volume(shadeform), await create_shadeform_volume(shadeform)
    assert "one volume" in assert_error(
        await shadeform.post("/instances/create", json=instance_body(volume_ids=[first, second])), 400
    )
    await create_shadeform_instance(shadeform, volume_ids=[first])
    single_mount = next(v for v in SHADEFORM_VOLUME_TYPES if v.cloud == placement.cloud)
    assert not single_mount.supports_multi_mount
    assert_error(
        await shadeform.post("/instances/create", json=instance_body(volume_ids=[first])),
        409,
        "VOLUME_IN_USE",
    )


async def test_multi_mount_volumes_can_be_shared(shadeform: httpx.AsyncClient) -> None:
    multi = next(v for v in SHADEFORM_VOLUME_TYPES if v.supports_multi_mount)
    placement = next(
        p for p in shadeform_placements(available=True) if (p.cloud, p.region) == (multi.cloud, multi.region)
    )
    volume_id = await create_shadeform_volume(shadeform, placement)
    first = await create_shadeform_instance(shadeform, placement=placement, volume_ids=[volume_id])
    await create_shadeform_instance(shadeform, placement=placement, volume_ids=[volume_id])
    assert (await shadeform.get(f"/volumes/{volume_id}/info")).json()["mounted_by"] == first


# ------------------------------------------------------------------ ssh keys


async def test_ssh_key_lifecycle_and_default(shadeform: httpx.AsyncClient) -> None:
    first = await add_shadeform_key(shadeform, "laptop")
    second = await add_shadeform_key(shadeform, "ci")
    keys = (await shadeform.get("/sshkeys")).json()["ssh_keys"]
    assert [(k["id"], k["name"], k["is_default"]) for k in keys] == [
        (first, "laptop", False),
        (second, "ci", False),
    ]
    info = (await shadeform.get(f"/sshkeys/{first}/info")).json()
    assert info == {
        "id": first,
        "name": "laptop",
        "public_key": example_public_key("laptop"),
        "is_default": False,
    }
    assert (await shadeform.post(f"/sshkeys/{first}/setdefault")).status_code == 200
    assert (await shadeform.get(f"/sshkeys/{first}/info")).json()["is_default"] is True
    assert_error(await shadeform.post(f"/sshkeys/{first}/delete"), 409, "KEY_IS_DEFAULT")
    await shadeform.post(f"/sshkeys/{second}/setdefault")
    defaults = {k["id"]: k["is_default"] for k in (await shadeform.get("/sshkeys")).json()["ssh_keys"]}
    assert defaults == {first: False, second: True}
    assert (await shadeform.post(f"/sshkeys/{first}/delete")).status_code == 200
    assert_error(await shadeform.get(f"/sshkeys/{first}/info"), 404, "NOT_FOUND")
    assert_error(await shadeform.post(f"/sshkeys/{first}/setdefault"), 404, "NOT_FOUND")


async def test_key_in_use_cannot_be_deleted(shadeform: httpx.AsyncClient, clock: ManualClock) -> None:
    key_id = await add_shadeform_key(shadeform)
    instance_id = await create_shadeform_instance(shadeform, ssh_key_id=key_id)
    assert_error(await shadeform.post(f"/sshkeys/{key_id}/delete"), 409, "KEY_IN_USE")
    await shadeform.post(f"/instances/{instance_id}/delete")
    clock.advance(DELETE_SECONDS)
    assert (await shadeform.post(f"/sshkeys/{key_id}/delete")).status_code == 200


@pytest.mark.parametrize(
    "public_key",
    [
        "not a key",
        "ssh-ed25519",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
        "ssh-ed25519 !!!notbase64!!!",
        example_public_key("x", "ssh-rsa").replace("ssh-rsa", "ssh-ed25519", 1),
        "-----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjEAAAAA -----END OPENSSH PRIVATE KEY-----",
    ],
)
async def test_public_keys_are_validated(shadeform: httpx.AsyncClient, public_key: str) -> None:
    response = await shadeform.post("/sshkeys/add", json={"name": "k", "public_key": public_key})
    assert "public_key" in assert_error(response, 400, "INVALID_REQUEST")


@pytest.mark.parametrize("key_type", ["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256"])
async def test_well_formed_keys_of_each_type_are_accepted(
    shadeform: httpx.AsyncClient, key_type: str
) -> None:
    response = await shadeform.post(
        "/sshkeys/add", json={"name": "k", "public_key": example_public_key("k", key_type)}
    )
    assert response.status_code == 200


# ------------------------------------------------------------------ routing


async def test_trailing_slashes_unknown_paths_and_methods(shadeform: httpx.AsyncClient) -> None:
    instance_id = await create_shadeform_instance(shadeform)
    assert (await shadeform.get("/instances/")).json()["instances"][0]["id"] == instance_id
    assert (await shadeform.get(f"/instances/{instance_id}/info/")).status_code == 200
    assert_error(await shadeform.get("/clusters"), 404, "NOT_FOUND")
    assert_error(await shadeform.delete(f"/instances/{instance_id}/info"), 405, "METHOD_NOT_ALLOWED")
    assert_error(await shadeform.get("/instances/not-a-uuid/info"), 404, "NOT_FOUND")
