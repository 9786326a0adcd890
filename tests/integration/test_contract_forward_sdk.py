"""Forward Compute's own SDK (fwd-sdk, generated from Forward's OpenAPI document, strict pydantic
models) pointed at `emulator serve`, as a user would: every answer must parse.

The SDK raises on any field of the wrong type, a missing required field or an enum value it
does not know, so each call below is a contract check of the emulator's answer.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from emulator_fixtures import ServerProcess, available_offering_id
from fwd_sdk import (
    ApiClient,
    ComputeApi,
    Configuration,
    CreateInstanceRequest,
    CreateSshKeyRequest,
    CreateVolumeRequest,
    InstancesApi,
    SSHKeysApi,
    VolumesApi,
)
from fwd_sdk.exceptions import ApiException
from fwd_sdk.models import ListModels200ResponseModelsInner

from reconciler.emulator import example_public_key
from reconciler.emulator.catalogue import FORWARD_MODELS, forward_compute_offering, forward_volume_offering_at

pytest_plugins = ["emulator_fixtures"]
KEY = "sdk-key"
BOOT_SECONDS = 30


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    process = ServerProcess("--boot-seconds", str(BOOT_SECONDS), "--delete-seconds", "10", "--api-key", KEY)
    try:
        yield process
    finally:
        assert process.stop() == 0, "".join(process.stderr_lines)


@pytest.fixture
def sdk(server: ServerProcess) -> Iterator[ApiClient]:
    with ApiClient(Configuration(host=f"{server.url}/forward", access_token=KEY)) as client:
        yield client


def advance(server: ServerProcess, seconds: float) -> None:
    response = httpx.post(f"{server.url}/_emulator/clock", json={"advance_seconds": seconds})
    assert response.status_code == 200, response.text


def test_the_sdk_runs_keys_volumes_and_instances_through_their_lifecycles(
    server: ServerProcess, sdk: ApiClient
) -> None:
    compute, instances, volumes, keys = ComputeApi(sdk), InstancesApi(sdk), VolumesApi(sdk), SSHKeysApi(sdk)
    offerings = compute.list_offerings()
    assert offerings.object == "list" and offerings.data
    offering = forward_compute_offering(available_offering_id())
    assert offering is not None
    assert compute.get_offering(offering.id).data.id == offering.id
    place = forward_volume_offering_at(offering.provider, offering.region)
    assert place is not None
    assert volumes.get_volume_offering(place.id).data.id == place.id
    assert {o.id for o in volumes.list_volume_offerings().data} >= {place.id}

    key = keys.create_ssh_key(CreateSshKeyRequest(name="laptop", public_key=example_public_key("laptop")))
    assert key.provider == "shadeform" and key.object == "spot.ssh_key"
    volume = volumes.create_volume(CreateVolumeRequest(name="data", offering_id=place.id, size_gb=50))
    assert (volume.provider, volume.region, volume.size_gb) == (offering.provider, offering.region, 50)
    created = instances.create_instance(
        CreateInstanceRequest(
            name="train", offering_id=offering.id, ssh_key_id=key.id, volume_ids=[volume.id]
        )
    )
    assert created.status == "creating"
    assert [i.id for i in instances.list_instances().data] == [created.id]
    assert [k.id for k in keys.list_ssh_keys().data] == [key.id]
    assert volumes.get_volume(volume.id).mounted_by == created.id
    advance(server, BOOT_SECONDS)
    assert instances.get_instance(created.id, refresh=True).status == "active"

    restarted = instances.restart_instance(created.id, {})
    assert restarted.status == "restarting"
    advance(server, BOOT_SECONDS)
    assert instances.get_instance(created.id, refresh=True).status == "active"

    deleted = instances.delete_instance(created.id)
    assert (deleted.deleted, deleted.id, deleted.object) == (True, created.id, "spot.instance")
    assert instances.get_instance(created.id, refresh=True).status == "deleting"
    advance(server, 10)
    assert instances.get_instance(created.id, refresh=True).status == "deleted"
    assert volumes.delete_volume(volume.id).deleted
    assert keys.delete_ssh_key(key.id).deleted
    assert volumes.list_volumes().data == [] and keys.list_ssh_keys().data == []


def test_the_sdk_reads_every_error_in_its_own_shape(server: ServerProcess, sdk: ApiClient) -> None:
    with pytest.raises(ApiException) as missing:
        InstancesApi(sdk).get_instance("spot_inst_000000000000")
    assert missing.value.status == 404 and missing.value.data.error.type == "not_found"
    with pytest.raises(ApiException) as invalid:
        VolumesApi(sdk).create_volume(CreateVolumeRequest(offering_id="spot_voff_000000000000", size_gb=1))
    assert invalid.value.status == 400 and invalid.value.data.error.var_field == "offering_id"
    wrong = Configuration(host=f"{server.url}/forward", access_token="not-" + KEY)
    with ApiClient(wrong) as client, pytest.raises(ApiException) as refused:
        InstancesApi(client).list_instances()
    assert refused.value.status == 401 and refused.value.data.error.type == "authentication_error"
    assert KEY not in str(refused.value.body)



def test_the_sdk_reads_the_models_list(server: ServerProcess) -> None:
    """fwd-sdk 0.1.1 declares chat pricing ({input, output}) and embedding pricing ({input}) as a
    oneOf without a discriminator, so any chat model matches both and the SDK refuses it
    ("Multiple matches"): that is the SDK's defect, not the answer's. Everything else parses."""
    response = httpx.get(f"{server.url}/forward/v1/models/", headers={"Authorization": f"Bearer {KEY}"})
    body = response.json()
    assert body["total"] == len(FORWARD_MODELS) == len(body["models"]) == len(body["data"])
    for entry in body["models"]:
        if entry["model_type"] == "chat":
            with pytest.raises(ValueError, match="Multiple matches"):
                ListModels200ResponseModelsInner.from_dict(entry)
        else:
            model = ListModels200ResponseModelsInner.from_dict(entry)
            assert model is not None and model.model_name == entry["id"] and model.created_at.tzinfo
    assert {m["model_type"] for m in body["models"]} > {"chat"}
