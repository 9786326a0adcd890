"""Plan-time checks: what a plan would create must be creatable, before anything is deleted;
a change the API makes in place is an update, never a replace."""

from __future__ import annotations

import pytest

from reconciler.errors import PlanError
from reconciler.limits import SHADEFORM_LIMITS
from reconciler.model import (
    Action,
    Address,
    Kind,
    LiveResource,
    Offering,
    OfferingRequest,
    Resource,
    Status,
)
from reconciler.planner import LiveView, plan_changes
from reconciler.state.model import ResourceState, StateDocument

VOL = Address(Kind.VOLUME, "data")
INST = Address(Kind.INSTANCE, "trainer")


def sf_offering(instance_type: str, cloud: str = "lambdalabs", region: str = "us-1") -> Offering:
    pin = {"cloud": cloud, "region": region, "shade_instance_type": instance_type}
    return Offering(
        "shadeform", f"{cloud}:{region}:{instance_type}", instance_type, 1, 1.5, region, cloud, True, pin
    )


def fw_offering(id: str, cloud: str, region: str, price: float) -> Offering:
    return Offering("forward", id, "A100", 1, price, region, cloud, True, {"offering_id": id})


SF_OFFERS = [sf_offering("A100"), sf_offering("H100")]


def volume(provider: str = "shadeform", size: int = 100, **place: str) -> Resource:
    where = place or {"cloud": "lambdalabs", "region": "us-1"}
    return Resource(VOL, provider, {"name": "data", "size_gb": size, **where})


def trainer(**attributes: object) -> Resource:
    attrs = {
        "name": "trainer",
        "cloud": "lambdalabs",
        "region": "us-1",
        "shade_instance_type": "A100",
        "volumes": [str(VOL)],
        **attributes,
    }
    return Resource(INST, "shadeform", attrs, depends_on=(VOL,))


def applied(*resources: Resource) -> tuple[StateDocument, LiveView]:
    """State and live view of resources applied as given and running."""
    doc = StateDocument(serial=1)
    live: dict[tuple[str, Kind], dict[str, LiveResource]] = {}
    for res in resources:
        id = f"id-{res.address.name}"
        doc.resources[str(res.address)] = ResourceState(
            provider=res.provider,
            kind=res.address.kind.value,
            id=id,
            attributes=dict(res.attributes),
            depends_on=[str(d) for d in res.depends_on],
            hourly_price=1.5,
        )
        live.setdefault((res.provider, res.address.kind), {})[id] = LiveResource(
            provider=res.provider, kind=res.address.kind, id=id, name=res.address.name, status=Status.ACTIVE
        )
    for provider in ("shadeform", "forward"):
        for kind in Kind:
            live.setdefault((provider, kind), {})
    updatable = {("shadeform", Kind.INSTANCE): SHADEFORM_LIMITS.updatable(Kind.INSTANCE)}
    return doc, LiveView(resources=live, updatable=updatable, offerings={"shadeform": SF_OFFERS})


def plan_of(doc: StateDocument, live: LiveView, *resources: Resource):  # type: ignore[no-untyped-def]
    return plan_changes({r.address: r for r in resources}, doc, live)


@pytest.mark.parametrize(
    "change",
    [
        {"alert": {"spend_threshold": "100"}},
        {"auto_delete": {"date_threshold": "2030-01-01T00:00:00Z"}},
        {"tags": ["team-ml"]},
        {"name": "trainer-renamed"},
    ],
)
def test_what_the_shadeform_update_takes_is_an_update_in_place(change: dict[str, object]) -> None:
    doc, live = applied(volume(), trainer(alert={"spend_threshold": "50"}))
    plan = plan_of(doc, live, volume(), trainer(**{"alert": {"spend_threshold": "50"}, **change}))
    inst = next(c for c in plan.changes if c.address == INST)
    assert inst.action is Action.UPDATE, inst.reasons
    assert inst.id == "id-trainer"


def test_removing_a_budget_threshold_is_an_update_too() -> None:
    doc, live = applied(volume(), trainer(auto_delete={"spend_threshold": "50"}))
    plan = plan_of(doc, live, volume(), trainer())
    assert next(c for c in plan.changes if c.address == INST).action is Action.UPDATE


def test_a_replacement_onto_an_offering_nobody_sells_fails_the_plan() -> None:
    # Without the check the plan deletes the instance first, then the create fails.
    doc, live = applied(volume(), trainer())
    with pytest.raises(PlanError, match="sells no offering") as caught:
        plan_of(doc, live, volume(), trainer(shade_instance_type="H200"))
    assert "shade_instance_type=H200" in str(caught.value)
    assert caught.value.hint is not None and "reconciler offerings" in caught.value.hint


def test_a_pin_no_offering_sells_fails_a_create_too() -> None:
    with pytest.raises(PlanError, match="sells no offering"):
        plan_changes(
            {INST: trainer(shade_instance_type="H200", volumes=[])},
            StateDocument(),
            LiveView(offerings={"shadeform": SF_OFFERS}),
        )


def test_a_pin_is_not_checked_when_offerings_were_not_fetched() -> None:
    plan = plan_changes({INST: trainer(shade_instance_type="H200", volumes=[])}, StateDocument(), LiveView())
    assert plan.changes[0].action is Action.CREATE


FW_OFFERS = [
    fw_offering("spot_coff_east", "hyperstack", "us-east-1", 1.0),
    fw_offering("spot_coff_west", "crusoe", "us-west-2", 0.5),
]


def fw_trainer(offering_id: str) -> Resource:
    return Resource(
        INST,
        "forward",
        {"name": "trainer", "offering_id": offering_id, "volumes": [str(VOL)]},
        depends_on=(VOL,),
    )


def test_a_forward_pin_in_another_place_than_its_volume_fails_the_plan() -> None:
    desired = {
        VOL: volume("forward", cloud="hyperstack", region="us-east-1"),
        INST: fw_trainer("spot_coff_west"),
    }
    with pytest.raises(PlanError, match="offering spot_coff_west is in cloud 'crusoe'") as caught:
        plan_changes(desired, StateDocument(), LiveView(offerings={"forward": FW_OFFERS}))
    assert caught.value.hint is not None and "same cloud and region" in caught.value.hint
    desired[INST] = fw_trainer("spot_coff_east")
    assert plan_changes(desired, StateDocument(), LiveView(offerings={"forward": FW_OFFERS})).changes


def test_a_new_forward_volume_without_cloud_mounted_by_an_instance_must_name_it() -> None:
    desired = {VOL: volume("forward", region="us-east-1"), INST: fw_trainer("spot_coff_east")}
    with pytest.raises(PlanError, match="sets no cloud") as caught:
        plan_changes(desired, StateDocument(), LiveView(offerings={"forward": FW_OFFERS}))
    assert caught.value.hint == "set cloud: hyperstack on volumes.data"


def test_an_existing_forward_volume_is_placed_where_the_api_reports_it() -> None:
    vol = volume("forward", region="us-east-1")
    doc = StateDocument(serial=1)
    doc.resources[str(VOL)] = ResourceState(
        provider="forward", kind="volumes", id="v1", attributes=dict(vol.attributes)
    )
    seen = LiveResource(
        "forward",
        Kind.VOLUME,
        "v1",
        "data",
        Status.ACTIVE,
        attributes={"cloud": "crusoe", "region": "us-east-1"},
    )
    live = LiveView(
        resources={("forward", Kind.VOLUME): {"v1": seen}, ("forward", Kind.INSTANCE): {}},
        offerings={"forward": FW_OFFERS},
    )
    with pytest.raises(PlanError, match="is in cloud 'hyperstack', but volumes.data is in 'crusoe'"):
        plan_changes({VOL: vol, INST: fw_trainer("spot_coff_east")}, doc, live)


def test_forward_requirements_pick_an_offering_where_the_volume_is() -> None:
    request = OfferingRequest(gpu_type="A100", cloud="hyperstack", region="us-east-1")
    inst = Resource(
        INST, "forward", {"name": "trainer", "volumes": [str(VOL)]}, depends_on=(VOL,), offering=request
    )
    desired = {VOL: volume("forward", cloud="hyperstack", region="us-east-1"), INST: inst}
    plan = plan_changes(desired, StateDocument(), LiveView(offerings={"forward": FW_OFFERS}))
    chosen = next(c for c in plan.changes if c.address == INST)
    assert chosen.after is not None and chosen.after["offering_id"] == "spot_coff_east"


VOLUME_PRICES = {
    ("shadeform", "us-1", "lambdalabs"): 0.0001,
    ("shadeform", "us-1", None): 0.0001,
    ("shadeform", "eu-1", "hyperstack"): 0.0002,
    ("shadeform", "eu-1", None): 0.0002,
}


def test_a_volume_moved_where_its_provider_sells_none_fails_the_plan_before_any_delete() -> None:
    doc, live = applied(volume(), trainer())
    live = LiveView(
        resources=live.resources,
        updatable=live.updatable,
        offerings=live.offerings,
        volume_prices=VOLUME_PRICES,
    )
    moved = volume(cloud="lambdalabs", region="mars-1")
    with pytest.raises(
        PlanError, match="volumes.data: shadeform sells no volumes in lambdalabs mars-1"
    ) as caught:
        plan_of(doc, live, moved, trainer(region="mars-1"))
    assert caught.value.hint == "volumes are sold in: hyperstack eu-1, lambdalabs us-1"
    assert plan_of(doc, live, volume(cloud="hyperstack", region="eu-1"), trainer(volumes=[])).changes


def test_volume_places_are_not_checked_when_volume_types_were_not_fetched() -> None:
    moved = volume(cloud="lambdalabs", region="mars-1")
    assert plan_changes({VOL: moved}, StateDocument(), LiveView()).changes[0].action is Action.CREATE
