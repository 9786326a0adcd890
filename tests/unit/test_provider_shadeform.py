"""Shadeform adapter against canned API answers (httpx.MockTransport)."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from support import FakeApi, FakeClock, Route

from reconciler.errors import AuthError, CapacityError, ProviderError
from reconciler.model import Kind, Status
from reconciler.providers.base import ProviderSettings, join_name_marker
from reconciler.providers.shadeform import (
    ShadeformProvider,
    launch_from_api,
    launch_to_api,
    split_marker_tag,
    status_from_api,
)

API_KEY = "shade-key-7c1d-secret"
MARKER = "rc-1a2b3c4d-9f8e7d"
BASE = "http://shadeform.test/v1"


class FakeShadeform(FakeApi):
    def __init__(self, routes: dict[str, Route | httpx.Response]) -> None:
        super().__init__(routes, lambda key: {"error": f"no route {key}"})


def make_provider(api: FakeShadeform, clock: FakeClock | None = None, **settings: Any) -> ShadeformProvider:
    clock = clock or FakeClock()
    options = {"base_url": BASE}
    merged: dict[str, Any] = {"rate_limit_per_second": 1000.0, "max_retries": 3, **settings}
    return ShadeformProvider(
        ProviderSettings(name="shadeform", api_key=API_KEY, options=options, **merged),
        httpx.MockTransport(api),
        sleep=clock.sleep,
        clock=clock,
    )


def instance(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "d290f1ee-6c54-4b01-90e6-d701748f0851",
        "cloud": "hyperstack",
        "region": "canada-1",
        "shade_instance_type": "A6000",
        "cloud_instance_type": "n3-RTX-A6000x1",
        "cloud_assigned_id": "13b057d7",
        "shade_cloud": True,
        "name": "trainer",
        "configuration": {
            "memory_in_gb": 12,
            "storage_in_gb": 256,
            "vcpus": 6,
            "num_gpus": 1,
            "gpu_type": "A6000",
            "interconnect": "pcie",
            "os": "ubuntu22.04_cuda12.2_shade_os",
            "vram_per_gpu_in_gb": 48,
        },
        "ip": "1.0.0.1",
        "ssh_user": "shadeform",
        "ssh_port": 22,
        "status": "active",
        "cost_estimate": "103.4",
        "hourly_price": 210,
        "created_at": "2016-08-29T09:12:33.001Z",
        "deleted_at": None,
        "tags": ["team:ml", f"reconciler:{MARKER}"],
        "envs": [{"name": "MODE", "value": "train"}],
        "ssh_key_id": "key-1",
        "volume_ids": ["vol-1"],
    }
    base.update(overrides)
    return base


VOLUME_TYPES = {
    "volume_types": [
        {
            "cloud": "hyperstack",
            "region": "canada-1",
            "supports_multi_mount": True,
            "fixed_size": True,
            "price_per_gb_per_hour": 0.0001,
        }
    ]
}


def all_error_texts(error: BaseException) -> str:
    return " ".join([str(error), repr(error), *(str(a) for a in error.args), str(getattr(error, "hint", ""))])


# --- statuses and listing ---------------------------------------------------------


@pytest.mark.parametrize(
    ("api_status", "status"),
    [
        ("pending", Status.PENDING),
        ("creating", Status.PENDING),
        ("pending_provider", Status.PENDING),
        ("restarting", Status.PENDING),
        ("active", Status.ACTIVE),
        ("deleting", Status.DELETING),
        ("deleted", Status.DELETED),
        ("error", Status.ERROR),
        ("ACTIVE", Status.ACTIVE),
        ("hibernating", Status.UNKNOWN),
        (None, Status.UNKNOWN),
    ],
)
def test_status_mapping(api_status: str | None, status: Status) -> None:
    assert status_from_api(api_status) is status


async def test_list_instances_maps_canonical_attributes_and_drops_deleted() -> None:
    api = FakeShadeform(
        {
            "GET /instances": httpx.Response(
                200,
                json={
                    "instances": [
                        instance(),
                        instance(id="gone", status="deleted"),
                        instance(id="going", status="deleting", status_details="preempted", tags=[]),
                        instance(id="odd", status="hibernating", brand_new_field={"x": 1}),
                    ]
                },
            )
        }
    )
    provider = make_provider(api)
    live = {r.id: r for r in await provider.list(Kind.INSTANCE)}
    assert set(live) == {"d290f1ee-6c54-4b01-90e6-d701748f0851", "going", "odd"}
    trainer = live["d290f1ee-6c54-4b01-90e6-d701748f0851"]
    assert trainer.name == "trainer" and trainer.marker == MARKER
    assert trainer.status is Status.ACTIVE
    assert trainer.hourly_price == pytest.approx(2.10)
    assert trainer.attributes == {
        "name": "trainer",
        "cloud": "hyperstack",
        "region": "canada-1",
        "shade_instance_type": "A6000",
        "os": "ubuntu22.04_cuda12.2_shade_os",
        "tags": ["team:ml"],
        "envs": {"MODE": "train"},
        "ssh_key_id": "key-1",
        "volume_ids": ["vol-1"],
    }
    # What the API reports and users do not set is kept apart from the desired attributes.
    assert trainer.computed["ip"] == "1.0.0.1"
    assert (trainer.computed["ssh_user"], trainer.computed["ssh_port"]) == ("shadeform", 22)
    assert trainer.computed["hourly_price"] == pytest.approx(2.10)
    assert trainer.computed["status"] == "active"
    assert trainer.ready
    assert live["going"].status is Status.DELETING and live["going"].status_details == "preempted"
    assert live["going"].marker is None
    assert live["odd"].status is Status.UNKNOWN
    assert provider.calls == {"GET /instances": 1}


async def test_list_volumes_prices_them_from_volume_types_once() -> None:
    volume = {
        "id": "vol-1",
        "cloud": "hyperstack",
        "cloud_assigned_id": "abc",
        "region": "canada-1",
        "name": join_name_marker("datasets", MARKER),
        "fixed_size": True,
        "size_in_gb": 500,
        "cost_estimate": "103.4",
        "supports_multi_mount": True,
        "mounted_by": "",
    }
    api = FakeShadeform(
        {
            "GET /volumes": httpx.Response(
                200, json={"volumes": [volume, {**volume, "id": "v2", "region": "x"}]}
            ),
            "GET /volumes/types": httpx.Response(200, json=VOLUME_TYPES),
        }
    )
    provider = make_provider(api)
    first = await provider.list(Kind.VOLUME)
    await provider.list(Kind.VOLUME)
    assert provider.calls == {"GET /volumes": 2, "GET /volumes/types": 1}
    datasets = first[0]
    assert datasets.name == "datasets" and datasets.marker == MARKER and datasets.status is Status.ACTIVE
    assert datasets.attributes["size_gb"] == 500 and datasets.attributes["name"] == "datasets"
    assert datasets.attributes["mounted_by"] is None
    assert datasets.hourly_price == pytest.approx(0.05)
    assert first[1].hourly_price is None  # no volume type for that region


@pytest.mark.parametrize("price", [0.0001, "0.0001"], ids=["older seed: number", "current: string"])
async def test_volume_prices_are_read_as_numbers_or_decimal_strings(price: object) -> None:
    types = {"volume_types": [{**VOLUME_TYPES["volume_types"][0], "price_per_gb_per_hour": price}]}
    provider = make_provider(FakeShadeform({"GET /volumes/types": httpx.Response(200, json=types)}))
    (offering,) = await provider.volume_offerings()
    assert offering.price_per_gb_hour == pytest.approx(0.0001)


async def test_list_ssh_keys_and_unmarked_names() -> None:
    api = FakeShadeform(
        {
            "GET /sshkeys": httpx.Response(
                200,
                json={
                    "ssh_keys": [
                        {
                            "id": "k1",
                            "name": join_name_marker("deploy", MARKER),
                            "public_key": "ssh-ed25519 AAA",
                        },
                        {
                            "id": "k2",
                            "name": "laptop--not-a-marker",
                            "public_key": "ssh-rsa B",
                            "is_default": True,
                        },
                    ]
                },
            )
        }
    )
    keys = await make_provider(api).list(Kind.SSH_KEY)
    assert [(k.name, k.marker) for k in keys] == [("deploy", MARKER), ("laptop--not-a-marker", None)]
    assert keys[0].attributes["public_key"] == "ssh-ed25519 AAA"


async def test_get_returns_none_on_404_and_the_resource_otherwise() -> None:
    api = FakeShadeform(
        {
            "GET /instances/i-1/info": httpx.Response(200, json=instance(id="i-1", status="pending")),
            "GET /instances/i-2/info": httpx.Response(404, json={"error": "instance not found"}),
        }
    )
    provider = make_provider(api)
    found = await provider.get(Kind.INSTANCE, "i-1")
    assert found is not None and found.status is Status.PENDING and found.marker == MARKER
    assert await provider.get(Kind.INSTANCE, "i-2") is None


# --- create -----------------------------------------------------------------------


async def test_create_instance_body_carries_marker_tag_launch_and_envs() -> None:
    api = FakeShadeform(
        {"POST /instances/create": httpx.Response(200, json={"id": "new-1", "cloud_assigned_id": "c"})}
    )
    provider = make_provider(api)
    spec = {
        "name": "trainer",
        "cloud": "hyperstack",
        "region": "canada-1",
        "shade_instance_type": "A6000",
        "os": "ubuntu22.04_cuda12.2_shade_os",
        "tags": ["team:ml"],
        "envs": {"HF_TOKEN": "hf_secret"},
        "ssh_key_id": "key-1",
        "volume_ids": ["vol-1"],
        "launch": {"type": "docker", "image": "vllm/vllm-openai:latest", "args": "--model x"},
        "auto_delete": {"spend_threshold": "50"},
    }
    created = await provider.create(Kind.INSTANCE, spec, MARKER)
    assert created.id == "new-1" and created.live is None
    (body,) = api.bodies("POST /instances/create")
    assert body == {
        "cloud": "hyperstack",
        "region": "canada-1",
        "shade_instance_type": "A6000",
        "shade_cloud": True,
        "name": "trainer",
        "tags": ["team:ml", f"reconciler:{MARKER}"],
        "os": "ubuntu22.04_cuda12.2_shade_os",
        "auto_delete": {"spend_threshold": "50"},
        "launch_configuration": {
            "type": "docker",
            "docker_configuration": {"image": "vllm/vllm-openai:latest", "args": "--model x"},
        },
        "envs": [{"name": "HF_TOKEN", "value": "hf_secret"}],
        "ssh_key_id": "key-1",
        "volume_ids": ["vol-1"],
    }


async def test_marker_round_trips_through_create_and_list() -> None:
    stored: list[dict[str, Any]] = []

    def create(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        stored.append({**instance(), **body, "id": f"i-{len(stored)}", "status": "pending"})
        return httpx.Response(200, json={"id": stored[-1]["id"], "cloud_assigned_id": "c"})

    def create_volume(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        stored.append({**body, "id": "vol-9", "size_in_gb": body["size_in_gb"], "mounted_by": ""})
        return httpx.Response(200, json={"id": "vol-9"})

    api = FakeShadeform(
        {
            "POST /instances/create": create,
            "POST /volumes/create": create_volume,
            "GET /instances": lambda r: httpx.Response(
                200, json={"instances": [s for s in stored if "tags" in s]}
            ),
            "GET /volumes": lambda r: httpx.Response(
                200, json={"volumes": [s for s in stored if "tags" not in s]}
            ),
            "GET /volumes/types": httpx.Response(200, json=VOLUME_TYPES),
        }
    )
    provider = make_provider(api)
    spec = {
        "name": "a",
        "cloud": "hyperstack",
        "region": "canada-1",
        "shade_instance_type": "A6000",
        "tags": ["x"],
    }
    await provider.create(Kind.INSTANCE, spec, MARKER)
    await provider.create(
        Kind.VOLUME, {"name": "d", "cloud": "hyperstack", "region": "canada-1", "size_gb": 10}, MARKER
    )
    (live_instance,) = await provider.list(Kind.INSTANCE)
    (live_volume,) = await provider.list(Kind.VOLUME)
    assert (live_instance.name, live_instance.marker, live_instance.attributes["tags"]) == (
        "a",
        MARKER,
        ["x"],
    )
    assert (live_volume.name, live_volume.marker, live_volume.attributes["size_gb"]) == ("d", MARKER, 10)
    assert api.bodies("POST /volumes/create")[0]["name"] == join_name_marker("d", MARKER)


async def test_create_ssh_key_suffixes_the_marker() -> None:
    api = FakeShadeform({"POST /sshkeys/add": httpx.Response(200, json={"id": "k-1"})})
    created = await make_provider(api).create(
        Kind.SSH_KEY, {"name": "deploy", "public_key": "ssh-ed25519 A"}, MARKER
    )
    assert created.id == "k-1"
    assert api.bodies("POST /sshkeys/add") == [{"name": f"deploy--{MARKER}", "public_key": "ssh-ed25519 A"}]


def test_script_launch_is_base64_and_round_trips() -> None:
    script = "#!/bin/bash\necho hi\n"
    api_launch = launch_to_api({"type": "script", "script": script})
    assert api_launch == {
        "type": "script",
        "script_configuration": {"base64_script": base64.b64encode(script.encode()).decode()},
    }
    assert launch_from_api(api_launch) == {"type": "script", "script": script}
    docker = {"type": "docker", "image": "img", "envs": {"A": "1"}, "port_mappings": [{"host_port": 80}]}
    assert launch_from_api(launch_to_api(docker)) == docker
    with pytest.raises(ValueError):
        launch_to_api({"type": "vm"})


def test_marker_tag_split_keeps_user_tags() -> None:
    assert split_marker_tag(["a", f"reconciler:{MARKER}", "b"]) == (["a", "b"], MARKER)
    assert split_marker_tag(["a"]) == (["a"], None)


async def test_create_without_an_id_in_the_answer_is_an_unknown_outcome() -> None:
    api = FakeShadeform({"POST /sshkeys/add": httpx.Response(200, json={"status": "ok"})})
    with pytest.raises(ProviderError) as info:
        await make_provider(api).create(Kind.SSH_KEY, {"name": "k", "public_key": "p"}, MARKER)
    assert info.value.error_type == "create_outcome_unknown"


async def test_create_is_not_retried_after_a_timeout() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    api = FakeShadeform({"POST /instances/create": timeout})
    provider = make_provider(api)
    spec = {"name": "a", "cloud": "c", "region": "r", "shade_instance_type": "A6000"}
    with pytest.raises(ProviderError) as info:
        await provider.create(Kind.INSTANCE, spec, MARKER)
    assert info.value.error_type == "create_outcome_unknown" and not info.value.retryable
    assert provider.calls == {"POST /instances/create": 1}


async def test_capacity_refusal_is_a_capacity_error() -> None:
    api = FakeShadeform(
        {
            "POST /instances/create": httpx.Response(
                400, json={"error": "Instance type A6000 is out of capacity in canada-1"}
            )
        }
    )
    spec = {"name": "a", "cloud": "c", "region": "r", "shade_instance_type": "A6000"}
    with pytest.raises(CapacityError):
        await make_provider(api).create(Kind.INSTANCE, spec, MARKER)


async def test_capacity_is_read_from_the_error_code_when_there_is_one() -> None:
    answers = iter(
        [
            httpx.Response(409, json={"error": "A6000 sold in canada-1 is gone", "code": "NO_CAPACITY"}),
            httpx.Response(
                400, json={"error": "runpod sells no spot capacity in x", "code": "INVALID_REQUEST"}
            ),
        ]
    )
    api = FakeShadeform({"POST /instances/create": lambda r: next(answers)})
    provider = make_provider(api)
    spec = {"name": "a", "cloud": "c", "region": "r", "shade_instance_type": "A6000"}
    with pytest.raises(CapacityError) as sold_out:
        await provider.create(Kind.INSTANCE, spec, MARKER)
    assert sold_out.value.error_type == "NO_CAPACITY" and sold_out.value.status == 409
    with pytest.raises(ProviderError) as invalid:
        await provider.create(Kind.INSTANCE, spec, MARKER)
    assert type(invalid.value) is ProviderError and invalid.value.error_type == "INVALID_REQUEST"


# --- delete and update ------------------------------------------------------------


async def test_delete_treats_404_as_done() -> None:
    api = FakeShadeform(
        {
            "POST /instances/i-1/delete": httpx.Response(200),
            "POST /sshkeys/k-1/delete": httpx.Response(404, json={"error": "not found"}),
        }
    )
    provider = make_provider(api)
    await provider.delete(Kind.INSTANCE, "i-1")
    await provider.delete(Kind.SSH_KEY, "k-1")
    assert provider.calls == {"POST /instances/{id}/delete": 1, "POST /sshkeys/{id}/delete": 1}


async def test_deleting_a_mounted_volume_is_a_clear_retryable_error() -> None:
    api = FakeShadeform(
        {"POST /volumes/v-1/delete": httpx.Response(409, json={"error": "volume is mounted by instance i-1"})}
    )
    provider = make_provider(api)
    with pytest.raises(ProviderError) as info:
        await provider.delete(Kind.VOLUME, "v-1")
    assert info.value.retryable and "still in use" in str(info.value) and "mounted" in str(info.value)
    assert provider.calls == {"POST /volumes/{id}/delete": 1}  # the caller decides when to retry


async def test_deleting_the_default_key_is_not_retryable() -> None:
    api = FakeShadeform(
        {
            "POST /sshkeys/k-1/delete": httpx.Response(
                409, json={"error": "ssh key k-1 is the account's default key", "code": "KEY_IS_DEFAULT"}
            ),
            "POST /sshkeys/k-2/delete": httpx.Response(
                409, json={"error": "ssh key k-2 is in use by instance i-1", "code": "KEY_IN_USE"}
            ),
        }
    )
    provider = make_provider(api)
    with pytest.raises(ProviderError) as default:
        await provider.delete(Kind.SSH_KEY, "k-1")
    assert not default.value.retryable and default.value.error_type == "KEY_IS_DEFAULT"
    with pytest.raises(ProviderError) as in_use:
        await provider.delete(Kind.SSH_KEY, "k-2")
    assert in_use.value.retryable


async def test_delete_retries_server_errors() -> None:
    answers = iter([httpx.Response(500, json={"error": "db"}), httpx.Response(200)])
    api = FakeShadeform({"POST /instances/i-1/delete": lambda r: next(answers)})
    clock = FakeClock()
    await make_provider(api, clock).delete(Kind.INSTANCE, "i-1")
    assert len(clock.sleeps) == 1


async def test_update_keeps_the_marker_tag() -> None:
    api = FakeShadeform({"POST /instances/i-1/update": httpx.Response(200)})
    provider = make_provider(api)
    assert provider.updatable(Kind.INSTANCE) == frozenset({"name", "tags", "auto_delete", "alert"})
    assert provider.updatable(Kind.VOLUME) == frozenset()
    await provider.update(Kind.INSTANCE, "i-1", {"name": "renamed", "tags": ["new"]}, MARKER)
    await provider.update(Kind.INSTANCE, "i-1", {"name": "again"}, MARKER)
    assert api.bodies("POST /instances/i-1/update") == [
        {"name": "renamed", "tags": ["new", f"reconciler:{MARKER}"]},
        {"name": "again"},
    ]
    with pytest.raises(ValueError, match="region"):
        await provider.update(Kind.INSTANCE, "i-1", {"region": "x"}, MARKER)


async def test_update_sends_thresholds_and_null_to_remove_one() -> None:
    api = FakeShadeform({"POST /instances/i-1/update": httpx.Response(200)})
    provider = make_provider(api)
    await provider.update(Kind.INSTANCE, "i-1", {"alert": {"spend_threshold": "50"}, "auto_delete": None}, MARKER)
    assert api.bodies("POST /instances/i-1/update") == [{"alert": {"spend_threshold": "50"}, "auto_delete": None}]


# --- offerings --------------------------------------------------------------------


async def test_offerings_one_per_type_region_and_rental_type_in_dollars() -> None:
    types = {
        "instance_types": [
            {
                "cloud": "hyperstack",
                "region": "canada-1",
                "shade_instance_type": "A6000",
                "cloud_instance_type": "n3-RTX-A6000x1",
                "configuration": {"gpu_type": "A6000", "num_gpus": 1, "vram_per_gpu_in_gb": 48},
                "hourly_price": 110,
                "availability": [
                    {"region": "canada-1", "available": True},
                    {"region": "norway-1", "available": False},
                    {"region": "canada-1", "available": True, "rental_type": "spot", "hourly_price": "0.55"},
                ],
                "something_new": True,
            }
        ]
    }
    api = FakeShadeform(
        {
            "GET /instances/types": httpx.Response(200, json=types),
            "GET /volumes/types": httpx.Response(200, json=VOLUME_TYPES),
        }
    )
    provider = make_provider(api)
    offerings = {o.id: o for o in await provider.offerings()}
    assert set(offerings) == {
        "hyperstack:canada-1:A6000",
        "hyperstack:norway-1:A6000",
        "hyperstack:canada-1:A6000:spot",
    }
    on_demand = offerings["hyperstack:canada-1:A6000"]
    assert on_demand.hourly_price == pytest.approx(1.10) and on_demand.available
    assert on_demand.pin == {"cloud": "hyperstack", "region": "canada-1", "shade_instance_type": "A6000"}
    assert (on_demand.gpu_type, on_demand.num_gpus, on_demand.vram_per_gpu_gb) == ("A6000", 1, 48)
    assert not offerings["hyperstack:norway-1:A6000"].available
    spot = offerings["hyperstack:canada-1:A6000:spot"]
    assert spot.hourly_price == pytest.approx(0.55) and spot.pin["rental_type"] == "spot"
    (volume_type,) = await provider.volume_offerings()
    assert (volume_type.cloud, volume_type.region, volume_type.price_per_gb_hour) == (
        "hyperstack",
        "canada-1",
        0.0001,
    )


# --- auth and secrecy -------------------------------------------------------------


async def test_401_is_an_auth_error_naming_the_env_var_and_never_the_key() -> None:
    api = FakeShadeform({"GET /instances": httpx.Response(401, json={"error": f"invalid api key {API_KEY}"})})
    provider = make_provider(api)
    with pytest.raises(AuthError) as info:
        await provider.list(Kind.INSTANCE)
    assert "SHADEFORM_API_KEY" in str(info.value)
    assert API_KEY not in all_error_texts(info.value)
    assert API_KEY not in repr(provider) and API_KEY not in repr(provider.settings)
    assert api.requests[0].headers["X-API-KEY"] == API_KEY


async def test_no_error_this_provider_raises_contains_the_key() -> None:
    def echo_key(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400, json={"error": {"message": f"bad request with {request.headers['X-API-KEY']}"}}
        )

    def drop(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError(f"dropped {API_KEY}", request=request)

    api = FakeShadeform(
        {
            "GET /instances": echo_key,
            "POST /instances/create": drop,
            "GET /sshkeys": httpx.Response(500, json={"error": API_KEY}),
            "POST /volumes/v/delete": httpx.Response(409, json={"error": f"mounted ({API_KEY})"}),
        }
    )
    provider = make_provider(api, max_retries=1)
    spec = {"name": "a", "cloud": "c", "region": "r", "shade_instance_type": "t"}
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: provider.list(Kind.INSTANCE),
        lambda: provider.create(Kind.INSTANCE, spec, MARKER),
        lambda: provider.list(Kind.SSH_KEY),
        lambda: provider.delete(Kind.VOLUME, "v"),
    ]
    for call in calls:
        with pytest.raises(ProviderError) as info:
            await call()
        assert API_KEY not in all_error_texts(info.value)
