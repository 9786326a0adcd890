"""ForwardProvider against the emulated Forward Compute API, in-process, on a manual clock.

The emulator serves lists from a cache that lags LIST_LAG_SECONDS behind writes, as the
real API does; fresh reads go through `get` (`?refresh=true`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from emulator_fixtures import BOOT_SECONDS, DELETE_SECONDS
from support import ClockSleep

from reconciler.emulator import EmbeddedCloud, ManualClock, example_public_key
from reconciler.emulator.catalogue import (
    FORWARD_COMPUTE_OFFERINGS,
    FORWARD_VOLUME_OFFERINGS,
    ForwardComputeOffering,
    forward_offerings,
    forward_volume_offering_at,
)
from reconciler.errors import AuthError, CapacityError, ProviderError
from reconciler.model import Kind, Status
from reconciler.providers import make_provider
from reconciler.providers.base import ProviderSettings
from reconciler.providers.forward import ForwardProvider

API_KEY = "integration-forward-key"
MARKER = "rc-0a1b2c3d-fedcba"
LIST_LAG_SECONDS = 10.0


pytest_plugins = ["emulator_fixtures"]


@pytest.fixture
def cloud(clock: ManualClock) -> Iterator[EmbeddedCloud]:
    with EmbeddedCloud(
        None,
        clock=clock,
        boot_seconds=BOOT_SECONDS,
        delete_seconds=DELETE_SECONDS,
        list_lag_seconds=LIST_LAG_SECONDS,
    ) as opened:
        yield opened


def settings(cloud: EmbeddedCloud, api_key: str | None = API_KEY) -> ProviderSettings:
    return ProviderSettings(
        name="forward",
        api_key=api_key,
        max_retries=3,
        list_consistency_seconds=LIST_LAG_SECONDS,
        options={"base_url": cloud.base_url("forward")},
    )


@pytest.fixture
async def provider(cloud: EmbeddedCloud, sleep: ClockSleep) -> AsyncIterator[ForwardProvider]:
    client = ForwardProvider(settings(cloud), cloud.transport("forward"), sleep=sleep, clock=sleep.now)
    yield client
    await client.aclose()


def offering_with_volumes() -> ForwardComputeOffering:
    """The first available offering whose provider and region also sell volumes."""
    return next(
        o for o in forward_offerings(available=True) if forward_volume_offering_at(o.provider, o.region)
    )


async def test_full_lifecycle_of_every_kind_with_lagging_lists(
    provider: ForwardProvider, cloud: EmbeddedCloud, clock: ManualClock
) -> None:
    assert provider.list_consistency_seconds == LIST_LAG_SECONDS
    offering = offering_with_volumes()
    key = await provider.create(
        Kind.SSH_KEY, {"name": "deploy", "public_key": example_public_key("d")}, MARKER
    )
    volume = await provider.create(
        Kind.VOLUME,
        {"name": "datasets", "region": offering.region, "cloud": offering.provider, "size_gb": 200},
        MARKER,
    )
    assert key.live is not None and key.live.name == "deploy" and key.live.marker == MARKER
    assert volume.live is not None and volume.live.attributes["size_gb"] == 200
    spec = {
        "name": "spot-worker",
        "offering_id": offering.id,
        "envs": {"MODE": "train"},
        "ssh_key_id": key.id,
        "volume_ids": [volume.id],
    }
    created = await provider.create(Kind.INSTANCE, spec, MARKER)
    assert created.live is not None and created.live.status is Status.PENDING

    # The cached list does not show the new instance yet; the fresh read does.
    assert await provider.list(Kind.INSTANCE) == []
    fresh = await provider.get(Kind.INSTANCE, created.id)
    assert fresh is not None and fresh.status is Status.PENDING and fresh.marker == MARKER
    assert fresh.attributes["envs"] == {"MODE": "train"}
    assert fresh.attributes["volume_ids"] == [volume.id] and fresh.attributes["ssh_key_id"] == key.id
    assert (fresh.attributes["cloud"], fresh.attributes["region"]) == (offering.provider, offering.region)
    fresh_volume = await provider.get(Kind.VOLUME, volume.id)
    assert fresh_volume is not None and fresh_volume.attributes["mounted_by"] == created.id

    clock.advance(LIST_LAG_SECONDS)
    # The list now shows the instance as it was at creation; the fresh read sees it booted.
    (listed,) = await provider.list(Kind.INSTANCE)
    assert (listed.id, listed.name, listed.marker) == (created.id, "spot-worker", MARKER)
    assert listed.status is Status.PENDING
    booted = await provider.get(Kind.INSTANCE, created.id)
    assert booted is not None and booted.status is Status.ACTIVE and booted.computed["ip"]
    (listed_volume,) = await provider.list(Kind.VOLUME)
    volume_offering = forward_volume_offering_at(offering.provider, offering.region)
    assert volume_offering is not None
    assert listed_volume.name == "datasets" and listed_volume.marker == MARKER
    assert listed_volume.hourly_price == pytest.approx(200 * float(volume_offering.price_per_gb_per_hour))
    live_key = await provider.get(Kind.SSH_KEY, key.id)
    assert live_key is not None and live_key.name == "deploy"

    with pytest.raises(ProviderError) as mounted:
        await provider.delete(Kind.VOLUME, volume.id)
    assert mounted.value.retryable and "still in use" in str(mounted.value)

    await provider.delete(Kind.INSTANCE, created.id)
    deleting = await provider.get(Kind.INSTANCE, created.id)
    assert deleting is not None and deleting.status is Status.DELETING
    clock.advance(DELETE_SECONDS)
    gone = await provider.get(Kind.INSTANCE, created.id)
    assert gone is not None and gone.status is Status.DELETED
    await provider.delete(Kind.INSTANCE, created.id)  # already deleted: success

    await provider.delete(Kind.VOLUME, volume.id)
    await provider.delete(Kind.SSH_KEY, key.id)
    await provider.delete(Kind.VOLUME, volume.id)
    await provider.delete(Kind.SSH_KEY, key.id)
    assert await provider.get(Kind.VOLUME, volume.id) is None

    clock.advance(LIST_LAG_SECONDS)
    for kind in Kind:
        assert await provider.list(kind) == []
    ledger = cloud.world.ledger(api="forward")
    assert len(ledger) == 3 and all(entry.status == "deleted" for entry in ledger)


async def test_offerings_and_volume_offerings(provider: ForwardProvider) -> None:
    offerings = {o.id: o for o in await provider.offerings()}
    assert set(offerings) == {o.id for o in FORWARD_COMPUTE_OFFERINGS}
    source = forward_offerings(available=True)[0]
    chosen = offerings[source.id]
    assert chosen.pin == {"offering_id": source.id} and chosen.available
    assert (chosen.gpu_type, chosen.num_gpus, chosen.cloud, chosen.region) == (
        source.gpu_type,
        source.num_gpus,
        source.provider,
        source.region,
    )
    assert chosen.hourly_price == pytest.approx(float(source.hourly_price))
    assert not offerings[forward_offerings(available=False)[0].id].available
    volume_offerings = await provider.volume_offerings()
    assert {(v.id, v.cloud, v.region) for v in volume_offerings} == {
        (v.id, v.provider, v.region) for v in FORWARD_VOLUME_OFFERINGS
    }


async def test_sold_out_offering_is_a_capacity_error(provider: ForwardProvider, cloud: EmbeddedCloud) -> None:
    sold_out = forward_offerings(available=False)[0]
    with pytest.raises(CapacityError) as info:
        await provider.create(Kind.INSTANCE, {"name": "w", "offering_id": sold_out.id}, MARKER)
    assert info.value.error_type == "provider_error"
    cloud.set_faults("forward.volumes.create=capacity")
    offering = offering_with_volumes()
    with pytest.raises(CapacityError):
        await provider.create(Kind.VOLUME, {"name": "v", "region": offering.region, "size_gb": 10}, MARKER)
    assert cloud.world.ledger(api="forward") == []


async def test_lost_create_answer_is_found_by_marker_once_the_list_catches_up(
    provider: ForwardProvider, cloud: EmbeddedCloud, clock: ManualClock
) -> None:
    cloud.set_faults("forward.instances.create=lost_response")
    offering = forward_offerings(available=True)[0]
    with pytest.raises(ProviderError) as info:
        await provider.create(Kind.INSTANCE, {"name": "w", "offering_id": offering.id}, MARKER)
    assert info.value.error_type == "create_outcome_unknown"
    assert provider.calls["POST /spot/instances/"] == 1
    assert [r for r in await provider.list(Kind.INSTANCE) if r.marker == MARKER] == []
    clock.advance(provider.list_consistency_seconds)
    (found,) = [r for r in await provider.list(Kind.INSTANCE) if r.marker == MARKER]
    assert found.name == "w" and len(cloud.world.ledger(api="forward")) == 1


async def test_rate_limits_and_server_errors_are_retried_on_reads(
    provider: ForwardProvider, cloud: EmbeddedCloud, sleep: ClockSleep
) -> None:
    cloud.set_faults(
        "forward.instances.list=rate_limit@retry_after=2,times=1;forward.volumes.list=status_502@times=2"
    )
    assert await provider.list(Kind.INSTANCE) == []
    assert await provider.list(Kind.VOLUME) == []
    assert provider.calls["GET /spot/instances/"] == 2 and provider.calls["GET /spot/volumes/"] == 3
    assert sleep.sleeps[0] == 2.0 and len(sleep.sleeps) == 3


async def test_created_through_the_registry_like_the_engine_does(cloud: EmbeddedCloud) -> None:
    provider = make_provider(settings(cloud), cloud.transport("forward"))
    offering = forward_offerings(available=True)[0]
    created = await provider.create(Kind.INSTANCE, {"name": "w", "offering_id": offering.id}, MARKER)
    assert (await provider.get(Kind.INSTANCE, created.id)) is not None
    await provider.delete(Kind.INSTANCE, created.id)
    await provider.aclose()


async def test_missing_key_is_an_auth_error_naming_the_env_var(cloud: EmbeddedCloud) -> None:
    provider = make_provider(settings(cloud, api_key=None), cloud.transport("forward"))
    with pytest.raises(AuthError) as info:
        await provider.list(Kind.INSTANCE)
    assert info.value.error_type == "authentication_error" and "FORWARD_API_KEY" in str(info.value)
    await provider.aclose()


async def test_the_key_appears_in_no_error(cloud: EmbeddedCloud, sleep: ClockSleep) -> None:
    provider = ForwardProvider(
        settings(cloud), cloud.transport("forward"), sleep=sleep, clock=sleep.now
    )
    errors: list[ProviderError] = []
    cloud.set_faults("forward.*=status_503")
    for call in (
        lambda: provider.list(Kind.INSTANCE),
        lambda: provider.create(Kind.INSTANCE, {"name": "w", "offering_id": "spot_coff_x"}, MARKER),
        lambda: provider.delete(Kind.VOLUME, "spot_vol_x"),
    ):
        with pytest.raises(ProviderError) as info:
            await call()
        errors.append(info.value)
    cloud.set_faults("")
    with pytest.raises(ProviderError) as invalid:
        await provider.create(Kind.INSTANCE, {"name": "w", "offering_id": "spot_coff_nope"}, MARKER)
    errors.append(invalid.value)
    for error in errors:
        assert API_KEY not in f"{error} {error!r} {error.args} {error.hint}"
    await provider.aclose()
