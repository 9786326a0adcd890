"""ShadeformProvider against the emulated Shadeform API, in-process, on a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from emulator_fixtures import BOOT_SECONDS, DELETE_SECONDS
from support import ClockSleep

from reconciler.emulator import EmbeddedCloud, ManualClock, example_public_key
from reconciler.emulator.catalogue import (
    SHADEFORM_INSTANCE_TYPES,
    SHADEFORM_VOLUME_TYPES,
    ShadeformPlacement,
    shadeform_placements,
    shadeform_volume_type,
)
from reconciler.errors import AuthError, CapacityError, ProviderError
from reconciler.model import Kind, Status
from reconciler.providers import make_provider
from reconciler.providers.base import ProviderSettings
from reconciler.providers.shadeform import ShadeformProvider

API_KEY = "integration-shadeform-key"
MARKER = "rc-0a1b2c3d-abcdef"

pytest_plugins = ["emulator_fixtures"]


def settings(cloud: EmbeddedCloud, api_key: str | None = API_KEY) -> ProviderSettings:
    return ProviderSettings(
        name="shadeform", api_key=api_key, max_retries=3, options={"base_url": cloud.base_url("shadeform")}
    )


@pytest.fixture
async def provider(cloud: EmbeddedCloud, sleep: ClockSleep) -> AsyncIterator[ShadeformProvider]:
    client = ShadeformProvider(
        settings(cloud), cloud.transport("shadeform"), sleep=sleep, clock=sleep.now
    )
    yield client
    await client.aclose()


def placement_with_volumes() -> ShadeformPlacement:
    """The cheapest available instance placement whose cloud and region also sell volumes."""
    return next(p for p in shadeform_placements(available=True) if shadeform_volume_type(p.cloud, p.region))


def instance_spec(place: ShadeformPlacement, **extra: object) -> dict[str, object]:
    return {
        "name": "trainer",
        "cloud": place.cloud,
        "region": place.region,
        "shade_instance_type": place.shade_instance_type,
        **extra,
    }


async def test_full_lifecycle_of_every_kind(
    provider: ShadeformProvider, cloud: EmbeddedCloud, clock: ManualClock
) -> None:
    place = placement_with_volumes()
    key = await provider.create(
        Kind.SSH_KEY, {"name": "deploy", "public_key": example_public_key("deploy")}, MARKER
    )
    volume = await provider.create(
        Kind.VOLUME,
        {"name": "datasets", "cloud": place.cloud, "region": place.region, "size_gb": 100},
        MARKER,
    )
    spec = instance_spec(
        place,
        tags=["team:ml"],
        envs={"MODE": "train"},
        ssh_key_id=key.id,
        volume_ids=[volume.id],
        launch={"type": "docker", "image": "vllm/vllm-openai:latest", "args": "--model x"},
    )
    created = await provider.create(Kind.INSTANCE, spec, MARKER)

    (live_key,) = await provider.list(Kind.SSH_KEY)
    assert (live_key.id, live_key.name, live_key.marker) == (key.id, "deploy", MARKER)
    (live_volume,) = await provider.list(Kind.VOLUME)
    assert (live_volume.name, live_volume.marker, live_volume.attributes["size_gb"]) == (
        "datasets",
        MARKER,
        100,
    )
    volume_type = shadeform_volume_type(place.cloud, place.region)
    assert volume_type is not None
    assert live_volume.hourly_price == pytest.approx(100 * volume_type.price_per_gb_per_hour)
    (booting,) = await provider.list(Kind.INSTANCE)
    assert booting.id == created.id and booting.status is Status.PENDING
    assert booting.name == "trainer" and booting.marker == MARKER
    assert booting.hourly_price == pytest.approx(place.hourly_price_cents / 100)
    assert booting.attributes["tags"] == ["team:ml"]
    assert booting.attributes["envs"] == {"MODE": "train"}
    assert booting.attributes["ssh_key_id"] == key.id and booting.attributes["volume_ids"] == [volume.id]
    assert booting.attributes["launch"] == spec["launch"]
    assert (booting.attributes["cloud"], booting.attributes["region"]) == (place.cloud, place.region)

    clock.advance(BOOT_SECONDS)
    active = await provider.get(Kind.INSTANCE, created.id)
    assert active is not None and active.status is Status.ACTIVE and active.computed["ip"]

    await provider.update(Kind.INSTANCE, created.id, {"name": "renamed", "tags": ["team:infra"]}, MARKER)
    (updated,) = await provider.list(Kind.INSTANCE)
    assert (updated.name, updated.attributes["tags"], updated.marker) == ("renamed", ["team:infra"], MARKER)

    with pytest.raises(ProviderError) as mounted:
        await provider.delete(Kind.VOLUME, volume.id)
    assert mounted.value.retryable and "still in use" in str(mounted.value)

    await provider.delete(Kind.INSTANCE, created.id)
    (deleting,) = await provider.list(Kind.INSTANCE)
    assert deleting.status is Status.DELETING
    clock.advance(DELETE_SECONDS)
    assert await provider.list(Kind.INSTANCE) == []
    deleted = await provider.get(Kind.INSTANCE, created.id)
    assert deleted is not None and deleted.status is Status.DELETED
    await provider.delete(Kind.INSTANCE, created.id)  # deleted: still a success
    clock.advance(DELETE_SECONDS)
    assert await provider.get(Kind.INSTANCE, created.id) is None
    await provider.delete(Kind.INSTANCE, created.id)  # already gone: still a success

    for kind, id in ((Kind.VOLUME, volume.id), (Kind.SSH_KEY, key.id)):
        await provider.delete(kind, id)
        await provider.delete(kind, id)
        assert await provider.get(kind, id) is None
        assert await provider.list(kind) == []

    ledger = cloud.world.ledger(api="shadeform")
    assert len(ledger) == 3 and all(entry.status == "deleted" for entry in ledger)
    assert provider.calls["POST /instances/create"] == 1
    assert provider.calls["GET /volumes/types"] == 1


async def test_script_launch_and_spot_rental_round_trip(provider: ShadeformProvider) -> None:
    spot = next(
        (t, a)
        for t in SHADEFORM_INSTANCE_TYPES
        for a in t.availability
        if a.spot_available and a.spot_price_cents is not None
    )
    itype, region = spot
    spec = {
        "name": "batch",
        "cloud": itype.cloud,
        "region": region.region,
        "shade_instance_type": itype.shade_instance_type,
        "rental_type": "spot",
        "launch": {"type": "script", "script": "#!/bin/bash\necho ready\n"},
    }
    created = await provider.create(Kind.INSTANCE, spec, MARKER)
    live = await provider.get(Kind.INSTANCE, created.id)
    assert live is not None
    assert live.attributes["launch"] == spec["launch"] and live.attributes["rental_type"] == "spot"
    assert live.hourly_price == pytest.approx(region.spot_price_cents / 100)


async def test_offerings_cover_every_region_of_every_type(provider: ShadeformProvider) -> None:
    offerings = await provider.offerings()
    expected = sum(
        1 + (1 if a.spot_available is not None and a.spot_price_cents is not None else 0)
        for t in SHADEFORM_INSTANCE_TYPES
        for a in t.availability
    )
    assert len(offerings) == expected
    by_id = {o.id: o for o in offerings}
    place = shadeform_placements(available=True)[0]
    chosen = by_id[f"{place.cloud}:{place.region}:{place.shade_instance_type}"]
    assert chosen.available and chosen.hourly_price == pytest.approx(place.hourly_price_cents / 100)
    assert chosen.pin == {
        "cloud": place.cloud,
        "region": place.region,
        "shade_instance_type": place.shade_instance_type,
    }
    assert (chosen.gpu_type, chosen.num_gpus) == (place.gpu_type, place.num_gpus)
    sold_out = shadeform_placements(available=False)[0]
    assert not by_id[f"{sold_out.cloud}:{sold_out.region}:{sold_out.shade_instance_type}"].available
    volume_offerings = await provider.volume_offerings()
    assert {(v.cloud, v.region, v.price_per_gb_hour) for v in volume_offerings} == {
        (v.cloud, v.region, v.price_per_gb_per_hour) for v in SHADEFORM_VOLUME_TYPES
    }


async def test_sold_out_placement_is_a_capacity_error(
    provider: ShadeformProvider, cloud: EmbeddedCloud
) -> None:
    sold_out = shadeform_placements(available=False)[0]
    with pytest.raises(CapacityError) as info:
        await provider.create(Kind.INSTANCE, instance_spec(sold_out), MARKER)
    assert info.value.status == 409 and info.value.error_type == "NO_CAPACITY"
    cloud.set_faults("shadeform.instances.create=capacity")
    with pytest.raises(CapacityError):
        await provider.create(Kind.INSTANCE, instance_spec(shadeform_placements(available=True)[0]), MARKER)
    assert cloud.world.ledger(api="shadeform") == []


async def test_lost_create_answer_is_an_unknown_outcome_found_by_marker(
    provider: ShadeformProvider, cloud: EmbeddedCloud
) -> None:
    cloud.set_faults("shadeform.instances.create=lost_response")
    with pytest.raises(ProviderError) as info:
        await provider.create(Kind.INSTANCE, instance_spec(shadeform_placements(available=True)[0]), MARKER)
    assert info.value.error_type == "create_outcome_unknown" and not info.value.retryable
    assert provider.calls["POST /instances/create"] == 1
    (found,) = [r for r in await provider.list(Kind.INSTANCE) if r.marker == MARKER]
    assert len(cloud.world.ledger(api="shadeform")) == 1 and found.name == "trainer"


@pytest.mark.parametrize("fault", ["timeout", "status_503"])
async def test_create_that_may_have_failed_is_not_retried(
    provider: ShadeformProvider, cloud: EmbeddedCloud, fault: str
) -> None:
    cloud.set_faults(f"shadeform.instances.create={fault}")
    with pytest.raises(ProviderError) as info:
        await provider.create(Kind.INSTANCE, instance_spec(shadeform_placements(available=True)[0]), MARKER)
    assert info.value.error_type == "create_outcome_unknown"
    assert provider.calls["POST /instances/create"] == 1


async def test_rate_limited_create_is_refused_retryable_with_the_wait_the_api_asks(
    provider: ShadeformProvider, cloud: EmbeddedCloud, sleep: ClockSleep
) -> None:
    """The client sends a create once; the applier waits Retry-After and sends it again."""
    cloud.set_faults("shadeform.instances.create=rate_limit@retry_after=3,times=1")
    spec = instance_spec(shadeform_placements(available=True)[0])
    with pytest.raises(ProviderError) as refused:
        await provider.create(Kind.INSTANCE, spec, MARKER)
    assert refused.value.retryable and refused.value.retry_after == 3.0
    assert cloud.world.ledger(api="shadeform") == []
    created = await provider.create(Kind.INSTANCE, spec, MARKER)
    assert created.id
    assert provider.calls["POST /instances/create"] == 2 and 3.0 not in sleep.sleeps
    assert len(cloud.world.ledger(api="shadeform")) == 1
    assert provider.api.bucket.rate < provider.api.bucket.max_rate


async def test_reads_and_deletes_survive_server_errors_and_drops(
    provider: ShadeformProvider, cloud: EmbeddedCloud
) -> None:
    created = await provider.create(
        Kind.INSTANCE, instance_spec(shadeform_placements(available=True)[0]), MARKER
    )
    cloud.set_faults(
        "shadeform.instances.list=status_503@times=2;"
        "shadeform.instances.delete=lost_response@times=1;"
        "shadeform.instances.get=timeout@times=1"
    )
    assert [r.id for r in await provider.list(Kind.INSTANCE)] == [created.id]
    assert provider.calls["GET /instances"] == 3
    await provider.delete(Kind.INSTANCE, created.id)  # answer lost, retried: already deleting is fine
    seen = await provider.get(Kind.INSTANCE, created.id)
    assert seen is not None and seen.status is Status.DELETING


async def test_missing_key_is_an_auth_error_naming_the_env_var(cloud: EmbeddedCloud) -> None:
    provider = make_provider(settings(cloud, api_key=None), cloud.transport("shadeform"))
    with pytest.raises(AuthError) as info:
        await provider.list(Kind.INSTANCE)
    assert info.value.status == 401 and "SHADEFORM_API_KEY" in str(info.value)
    await provider.aclose()


async def test_the_key_appears_in_no_error(cloud: EmbeddedCloud, sleep: ClockSleep) -> None:
    provider = ShadeformProvider(
        settings(cloud), cloud.transport("shadeform"), sleep=sleep, clock=sleep.now
    )
    cloud.set_faults("shadeform.*=status_500")
    errors: list[ProviderError] = []
    for call in (
        lambda: provider.list(Kind.VOLUME),
        lambda: provider.create(Kind.SSH_KEY, {"name": "k", "public_key": example_public_key("k")}, MARKER),
        lambda: provider.delete(Kind.INSTANCE, "nope"),
    ):
        with pytest.raises(ProviderError) as info:
            await call()
        errors.append(info.value)
    cloud.set_faults("")
    with pytest.raises(ProviderError) as invalid:
        await provider.create(
            Kind.VOLUME, {"name": "v", "cloud": "aws", "region": "nowhere", "size_gb": 1}, MARKER
        )
    errors.append(invalid.value)
    for error in errors:
        assert API_KEY not in f"{error} {error!r} {error.args} {error.hint}"
    await provider.aclose()
