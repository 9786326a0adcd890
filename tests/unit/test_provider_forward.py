"""Forward Compute adapter against canned API answers (httpx.MockTransport)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from support import FakeApi, FakeClock, Route

from reconciler.errors import AuthError, CapacityError, ConfigError, ProviderError
from reconciler.model import Kind, Status
from reconciler.providers.base import ProviderSettings, join_name_marker
from reconciler.providers.forward import (
    AUTH_HEADER,
    REAL_API_LIST_CONSISTENCY_SECONDS,
    ForwardProvider,
    status_from_api,
)

API_KEY = "fwd-key-0b9e-secret"
MARKER = "rc-1a2b3c4d-9f8e7d"
BASE = "http://forward.test/v1"


class FakeForward(FakeApi):
    def __init__(self, routes: dict[str, Route | httpx.Response]) -> None:
        super().__init__(routes, lambda key: {"error": {"type": "not_found", "message": f"no route {key}"}})


def make_provider(api: FakeForward, clock: FakeClock | None = None, **settings: Any) -> ForwardProvider:
    clock = clock or FakeClock()
    merged: dict[str, Any] = {"rate_limit_per_second": 1000.0, "max_retries": 3, **settings}
    return ForwardProvider(
        ProviderSettings(name="forward", api_key=API_KEY, options={"base_url": BASE}, **merged),
        httpx.MockTransport(api),
        sleep=clock.sleep,
        clock=clock,
    )


def instance(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "created": "2025-01-01T00:00:00Z",
        "envs": [{"name": "MY_API_KEY", "value": "secret123"}],
        "id": "spot_inst_abc123def456",
        "ip": "203.0.113.42",
        "modified": "2025-01-01T00:00:00Z",
        "name": join_name_marker("spot-worker", MARKER),
        "object": "spot.instance",
        "owner": "mem_abc123def456",
        "provider": "shadeform",
        "region": "us-east-1",
        "ssh_key_id": "spot_sshk_abc123def456",
        "ssh_port": 22,
        "ssh_user": "ubuntu",
        "status": "active",
        "volume_ids": ["spot_vol_abc123def456"],
    }
    base.update(overrides)
    return base


def listing(items: list[dict[str, Any]], url: str) -> dict[str, Any]:
    return {"data": items, "object": "list", "url": url}


def all_error_texts(error: BaseException) -> str:
    return " ".join([str(error), repr(error), *(str(a) for a in error.args), str(getattr(error, "hint", ""))])


@pytest.mark.parametrize(
    ("api_status", "status"),
    [
        ("creating", Status.PENDING),
        ("restarting", Status.PENDING),
        ("active", Status.ACTIVE),
        ("error", Status.ERROR),
        ("deleting", Status.DELETING),
        ("deleted", Status.DELETED),
        ("migrating", Status.UNKNOWN),
    ],
)
def test_status_mapping(api_status: str, status: Status) -> None:
    assert status_from_api(api_status) is status


async def test_list_instances_uses_bearer_auth_and_drops_deleted() -> None:
    api = FakeForward(
        {
            "GET /spot/instances/": httpx.Response(
                200,
                json=listing(
                    [
                        instance(),
                        instance(id="old", status="deleted"),
                        instance(
                            id="new", status="creating", offering_id="spot_coff_1", hourly_price="24.12"
                        ),
                        instance(id="odd", status="migrating", unheard_of=[1, 2]),
                    ],
                    "/v1/spot/instances",
                ),
            )
        }
    )
    provider = make_provider(api)
    live = {r.id: r for r in await provider.list(Kind.INSTANCE)}
    assert set(live) == {"spot_inst_abc123def456", "new", "odd"}
    worker = live["spot_inst_abc123def456"]
    assert (worker.name, worker.marker, worker.status) == ("spot-worker", MARKER, Status.ACTIVE)
    assert worker.attributes == {
        "name": "spot-worker",
        "region": "us-east-1",
        "cloud": "shadeform",
        "envs": {"MY_API_KEY": "secret123"},
        "ssh_key_id": "spot_sshk_abc123def456",
        "volume_ids": ["spot_vol_abc123def456"],
    }
    # What the API reports and users do not set is kept apart, under reconciler's names.
    assert worker.computed["ip"] == "203.0.113.42"
    assert (worker.computed["ssh_user"], worker.computed["ssh_port"]) == ("ubuntu", 22)
    assert worker.computed["id"] == "spot_inst_abc123def456"
    assert worker.computed["status"] == "active"
    assert worker.ready
    assert not live["new"].ready
    assert worker.hourly_price is None
    assert live["new"].attributes["offering_id"] == "spot_coff_1" and live["new"].hourly_price == 24.12
    assert live["new"].status is Status.PENDING and live["odd"].status is Status.UNKNOWN
    assert api.requests[0].headers[AUTH_HEADER] == f"Bearer {API_KEY}"
    assert provider.calls == {"GET /spot/instances/": 1}


async def test_list_volumes_and_keys() -> None:
    volume = {
        "id": "spot_vol_1",
        "name": join_name_marker("data", MARKER),
        "object": "spot.volume",
        "owner": "mem_1",
        "provider": "shadeform",
        "region": "us-east-1",
        "size_gb": 100,
        "cost_estimate": 0.008,
        "mounted_by": "spot_inst_1",
    }
    key = {
        "id": "spot_sshk_1",
        "name": "laptop",
        "object": "spot.ssh_key",
        "owner": "mem_1",
        "provider": "shadeform",
        "provider_key_id": "p1",
        "public_key": "ssh-ed25519 AAA",
    }
    api = FakeForward(
        {
            "GET /spot/volumes/": httpx.Response(200, json=listing([volume], "/v1/spot/volumes")),
            "GET /spot/ssh-keys/": httpx.Response(200, json=listing([key], "/v1/spot/ssh-keys")),
        }
    )
    provider = make_provider(api)
    (vol,) = await provider.list(Kind.VOLUME)
    assert (vol.name, vol.marker, vol.status, vol.hourly_price) == ("data", MARKER, Status.ACTIVE, 0.008)
    assert vol.attributes["size_gb"] == 100 and vol.attributes["mounted_by"] == "spot_inst_1"
    assert vol.attributes["cloud"] == "shadeform"
    (ssh_key,) = await provider.list(Kind.SSH_KEY)
    assert (ssh_key.name, ssh_key.marker, ssh_key.attributes["public_key"]) == (
        "laptop",
        None,
        "ssh-ed25519 AAA",
    )


async def test_get_asks_for_fresh_data_and_maps_404_to_none() -> None:
    api = FakeForward(
        {
            "GET /spot/instances/i1": httpx.Response(200, json=instance(id="i1", status="creating")),
            "GET /spot/volumes/v1": httpx.Response(
                404, json={"error": {"type": "not_found", "message": "no"}}
            ),
        }
    )
    provider = make_provider(api)
    found = await provider.get(Kind.INSTANCE, "i1")
    assert found is not None and found.status is Status.PENDING
    assert await provider.get(Kind.VOLUME, "v1") is None
    assert all(r.url.params["refresh"] == "true" for r in api.requests)
    assert provider.calls == {"GET /spot/instances/{id}": 1, "GET /spot/volumes/{id}": 1}


async def test_get_of_an_ssh_key_reads_the_list_as_there_is_no_single_read() -> None:
    key = {"id": "spot_sshk_1", "name": "laptop", "public_key": "ssh-ed25519 AAA", "provider": "shadeform"}
    api = FakeForward({"GET /spot/ssh-keys/": httpx.Response(200, json=listing([key], "/v1/spot/ssh-keys"))})
    provider = make_provider(api)
    found = await provider.get(Kind.SSH_KEY, "spot_sshk_1")
    assert found is not None and found.name == "laptop"
    assert await provider.get(Kind.SSH_KEY, "spot_sshk_2") is None
    assert provider.calls == {"GET /spot/ssh-keys/": 2}


async def test_create_instance_body_and_live_answer() -> None:
    def create(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        return httpx.Response(201, json=instance(id="spot_inst_new", status="creating", name=body["name"]))

    api = FakeForward({"POST /spot/instances/": create})
    spec = {
        "name": "spot-worker",
        "offering_id": "spot_coff_abc",
        "region": "us-east-1",
        "envs": {"A": "1"},
        "ssh_key_id": "spot_sshk_1",
        "volume_ids": ["spot_vol_1"],
    }
    created = await make_provider(api).create(Kind.INSTANCE, spec, MARKER)
    assert api.bodies("POST /spot/instances/") == [
        {
            "name": f"spot-worker--{MARKER}",
            "offering_id": "spot_coff_abc",
            "ssh_key_id": "spot_sshk_1",
            "volume_ids": ["spot_vol_1"],
            "envs": [{"name": "A", "value": "1"}],
        }
    ]
    assert created.id == "spot_inst_new"
    assert created.live is not None and created.live.name == "spot-worker" and created.live.marker == MARKER
    assert created.live.status is Status.PENDING


async def test_create_with_a_short_answer_has_only_the_id() -> None:
    api = FakeForward(
        {"POST /spot/instances/": httpx.Response(200, json={"id": "spot_inst_2", "object": "x"})}
    )
    created = await make_provider(api).create(Kind.INSTANCE, {"name": "a", "offering_id": "o"}, MARKER)
    assert created.id == "spot_inst_2" and created.live is None


def volume_offering(offering_id: str, provider: str, region: str, price: str) -> dict[str, Any]:
    return {"id": offering_id, "provider": provider, "region": region, "price_per_gb_per_hour": price}


VOLUME_OFFERINGS = httpx.Response(
    200,
    json=listing(
        [
            volume_offering("spot_voff_x_east", "x", "us-east-1", "0.0003"),
            volume_offering("spot_voff_y_east", "y", "us-east-1", "0.0001"),
            volume_offering("spot_voff_y_west", "y", "us-west-2", "0.00005"),
        ],
        "/v1/spot/volumes/offerings",
    ),
)


async def test_create_volume_and_key_bodies_are_what_the_sdk_documents() -> None:
    api = FakeForward(
        {
            "GET /spot/volumes/offerings": VOLUME_OFFERINGS,
            "POST /spot/volumes/": httpx.Response(201, json={"id": "spot_vol_9", "object": "spot.volume"}),
            "POST /spot/ssh-keys/": httpx.Response(201, json={"id": "spot_sshk_9", "object": "spot.ssh_key"}),
        }
    )
    provider = make_provider(api)
    await provider.create(
        Kind.VOLUME, {"name": "d", "region": "us-east-1", "size_gb": 50, "cloud": "x"}, MARKER
    )
    await provider.create(Kind.VOLUME, {"name": "e", "region": "us-east-1", "size_gb": 5}, MARKER)
    await provider.create(Kind.SSH_KEY, {"name": "k", "public_key": "ssh-ed25519 A"}, MARKER)
    assert api.bodies("POST /spot/volumes/") == [
        {"name": f"d--{MARKER}", "size_gb": 50, "offering_id": "spot_voff_x_east"},
        {"name": f"e--{MARKER}", "size_gb": 5, "offering_id": "spot_voff_y_east"},
    ]
    assert provider.calls["GET /spot/volumes/offerings"] == 1
    assert api.bodies("POST /spot/ssh-keys/") == [{"name": f"k--{MARKER}", "public_key": "ssh-ed25519 A"}]


async def test_a_volume_where_no_offering_is_sold_is_refused_before_any_create() -> None:
    api = FakeForward({"GET /spot/volumes/offerings": VOLUME_OFFERINGS})
    provider = make_provider(api)
    with pytest.raises(ProviderError, match="no volume offering in x us-west-2"):
        await provider.create(
            Kind.VOLUME, {"name": "d", "region": "us-west-2", "size_gb": 5, "cloud": "x"}, MARKER
        )
    assert "POST /spot/volumes/" not in provider.calls


async def test_create_is_sent_once_a_429_is_retryable_and_a_5xx_unknown() -> None:
    answers = iter(
        [
            httpx.Response(
                429, headers={"Retry-After": "2"}, json={"error": {"type": "rate_limited", "message": "s"}}
            ),
            httpx.Response(502, json={"error": {"type": "server_error", "message": "upstream"}}),
        ]
    )
    api = FakeForward({"POST /spot/instances/": lambda r: next(answers)})
    clock = FakeClock()
    provider = make_provider(api, clock)
    with pytest.raises(ProviderError) as refused:
        await provider.create(Kind.INSTANCE, {"name": "a", "offering_id": "o"}, MARKER)
    assert refused.value.retryable and refused.value.retry_after == 2.0
    with pytest.raises(ProviderError) as info:
        await provider.create(Kind.INSTANCE, {"name": "a", "offering_id": "o"}, MARKER)
    assert info.value.error_type == "create_outcome_unknown"
    assert provider.calls == {"POST /spot/instances/": 2}
    assert 2.0 not in clock.sleeps, "the Retry-After wait is the applier's, not the client's"


async def test_capacity_and_balance_errors() -> None:
    api = FakeForward(
        {
            "POST /spot/instances/": httpx.Response(
                400,
                json={"error": {"type": "provider_error", "message": "Offering has no capacity available"}},
            ),
            "GET /spot/volumes/offerings": VOLUME_OFFERINGS,
            "POST /spot/volumes/": httpx.Response(
                402, json={"error": {"type": "insufficient_balance", "message": "top up your balance"}}
            ),
        }
    )
    provider = make_provider(api)
    with pytest.raises(CapacityError):
        await provider.create(Kind.INSTANCE, {"name": "a", "offering_id": "o"}, MARKER)
    with pytest.raises(ProviderError) as info:
        await provider.create(Kind.VOLUME, {"name": "d", "region": "us-east-1", "size_gb": 1}, MARKER)
    assert type(info.value) is ProviderError and info.value.error_type == "insufficient_balance"


async def test_delete_uses_http_delete_and_404_is_done() -> None:
    api = FakeForward(
        {
            "DELETE /spot/instances/i1": httpx.Response(
                200, json={"deleted": True, "id": "i1", "object": "spot.instance"}
            ),
            "DELETE /spot/ssh-keys/k1": httpx.Response(
                404, json={"error": {"type": "not_found", "message": "x"}}
            ),
            "DELETE /spot/volumes/v1": httpx.Response(
                400,
                json={"error": {"type": "validation_error", "message": "Volume is attached to an instance"}},
            ),
        }
    )
    provider = make_provider(api)
    await provider.delete(Kind.INSTANCE, "i1")
    await provider.delete(Kind.SSH_KEY, "k1")
    with pytest.raises(ProviderError) as info:
        await provider.delete(Kind.VOLUME, "v1")
    assert info.value.retryable and "still in use" in str(info.value)


async def test_offerings_and_volume_offerings() -> None:
    compute = {
        "available": True,
        "configuration": {"gpu_type": "H100", "num_gpus": 8, "vram_per_gpu_in_gb": 80},
        "deployment_type": "vm",
        "hourly_price": "24.12",
        "id": "spot_coff_abc",
        "instance_type": "H100x8",
        "price_per_gpu_hour": "3.015",
        "provider": "shadeform",
        "region": "us-east-1",
        "object": "compute_offering",
    }
    volumes = {
        "id": "spot_voff_1",
        "price_per_gb_per_hour": "0.00008",
        "provider": "shadeform",
        "region": "us-east-1",
        "fixed_size": False,
    }
    api = FakeForward(
        {
            "GET /spot/compute/offerings": httpx.Response(
                200, json=listing([compute, {**compute, "id": "bad", "hourly_price": "n/a"}], "/x")
            ),
            "GET /spot/volumes/offerings": httpx.Response(200, json=listing([volumes], "/y")),
        }
    )
    provider = make_provider(api)
    (offering,) = await provider.offerings()
    assert offering.id == "spot_coff_abc" and offering.pin == {"offering_id": "spot_coff_abc"}
    assert (offering.gpu_type, offering.num_gpus, offering.hourly_price) == ("H100", 8, 24.12)
    assert (offering.cloud, offering.region, offering.instance_type) == ("shadeform", "us-east-1", "H100x8")
    assert offering.price_per_gpu_hour == pytest.approx(3.015)
    (volume_offering,) = await provider.volume_offerings()
    assert volume_offering.id == "spot_voff_1" and volume_offering.price_per_gb_hour == 0.00008


async def test_update_is_not_supported() -> None:
    provider = make_provider(FakeForward({}))
    assert provider.updatable(Kind.INSTANCE) == frozenset()
    with pytest.raises(ValueError):
        await provider.update(Kind.INSTANCE, "i", {"name": "x"}, MARKER)


async def test_list_consistency_window() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200))
    real_url = "https://api.forwardcompute.ai/v1"
    embedded = ForwardProvider(ProviderSettings(name="forward", list_consistency_seconds=2.5), transport)
    real = ForwardProvider(ProviderSettings(name="forward", endpoint=real_url))
    tuned = ForwardProvider(ProviderSettings(name="forward", endpoint=real_url, list_consistency_seconds=45))
    assert embedded.list_consistency_seconds == 2.5
    assert real.list_consistency_seconds == REAL_API_LIST_CONSISTENCY_SECONDS
    assert tuned.list_consistency_seconds == 45
    for provider in (embedded, real, tuned):
        await provider.aclose()
    with pytest.raises(ConfigError):
        ForwardProvider(ProviderSettings(name="forward"))


async def test_auth_errors_name_the_env_var_and_never_the_key() -> None:
    api = FakeForward(
        {
            "GET /spot/instances/": httpx.Response(
                401,
                json={"error": {"type": "authentication_error", "message": f"bad token Bearer {API_KEY}"}},
            ),
            "GET /spot/volumes/": httpx.Response(
                403, json={"error": {"type": "forbidden", "message": "insufficient permissions"}}
            ),
        }
    )
    provider = make_provider(api)
    for kind in (Kind.INSTANCE, Kind.VOLUME):
        with pytest.raises(AuthError) as info:
            await provider.list(kind)
        assert "FORWARD_API_KEY" in str(info.value)
        assert API_KEY not in all_error_texts(info.value)
    assert API_KEY not in repr(provider)
