"""The planner is a pure function: every case here is plain data in, Plan out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support import pending_doc

from reconciler.errors import PlanError
from reconciler.model import (
    Action,
    Address,
    Kind,
    Lifecycle,
    LiveResource,
    Offering,
    OfferingRequest,
    Resource,
    Status,
    mask_sensitive,
)
from reconciler.planner import LiveView, PlanOptions, plan_changes
from reconciler.planner_pending import resolve_pending
from reconciler.state.model import ResourceState, StateDocument

KEY = Address(Kind.SSH_KEY, "deploy")
VOL = Address(Kind.VOLUME, "data")
INST = Address(Kind.INSTANCE, "trainer")


def key_res() -> Resource:
    return Resource(KEY, "shadeform", {"name": "deploy", "public_key": "ssh-ed25519 AAAA"})


def vol_res(size: int = 100) -> Resource:
    return Resource(
        VOL, "shadeform", {"name": "data", "cloud": "lambdalabs", "region": "us-1", "size_gb": size}
    )


def inst_res(**overrides: object) -> Resource:
    attrs = {
        "name": "trainer",
        "cloud": "lambdalabs",
        "region": "us-1",
        "shade_instance_type": "A100",
        "ssh_key": str(KEY),
        "volumes": [str(VOL)],
    }
    fields: dict = {"depends_on": (KEY, VOL)}
    fields.update(overrides)
    if "attributes" in fields:
        attrs.update(fields.pop("attributes"))  # type: ignore[arg-type]
    return Resource(INST, "shadeform", attrs, **fields)


def desired(*resources: Resource) -> dict[Address, Resource]:
    return {r.address: r for r in resources}


def state_of(resources: dict[Address, Resource], ids: dict[Address, str] | None = None) -> StateDocument:
    doc = StateDocument(serial=3)
    for address, res in resources.items():
        doc.resources[str(address)] = ResourceState(
            provider=res.provider,
            kind=address.kind.value,
            id=(ids or {}).get(address, f"id-{address.name}"),
            attributes=mask_sensitive(res.attributes, res.sensitive, doc.lineage),
            depends_on=[str(d) for d in res.depends_on],
            hourly_price=1.5 if address.kind is Kind.INSTANCE else 0.01,
        )
    return doc


def live_of(doc: StateDocument, status: Status = Status.ACTIVE, drop: tuple[Address, ...] = ()) -> LiveView:
    resources: dict[tuple[str, Kind], dict[str, LiveResource]] = {("shadeform", k): {} for k in Kind}
    for key, res in doc.resources.items():
        address = Address.parse(key)
        if address in drop:
            continue
        resources[(res.provider, address.kind)][res.id] = LiveResource(
            provider=res.provider,
            kind=address.kind,
            id=res.id,
            name=address.name,
            status=status,
            marker=res.marker,
        )
    return LiveView(
        resources=resources, updatable={("shadeform", Kind.INSTANCE): frozenset({"name", "tags"})}
    )


def actions(plan) -> dict[str, Action]:  # type: ignore[no-untyped-def]
    return {str(c.address): c.action for c in plan.changes}


def test_empty_state_plans_every_create_in_dependency_order() -> None:
    res = desired(inst_res(), key_res(), vol_res())
    plan = plan_changes(res, StateDocument(), LiveView())
    assert actions(plan) == {str(KEY): Action.CREATE, str(VOL): Action.CREATE, str(INST): Action.CREATE}
    assert plan.count(Action.CREATE) == 3 and plan.has_changes


def test_in_sync_state_is_all_noop() -> None:
    res = desired(key_res(), vol_res(), inst_res())
    doc = state_of(res)
    plan = plan_changes(res, doc, live_of(doc))
    assert set(actions(plan).values()) == {Action.NOOP}
    assert not plan.has_changes
    assert plan.cost.hourly_before == plan.cost.hourly_after == pytest.approx(1.52)


def test_resource_deleted_outside_is_created_again_with_reason() -> None:
    res = desired(key_res(), vol_res(), inst_res())
    doc = state_of(res)
    plan = plan_changes(res, doc, live_of(doc, drop=(INST,)))
    change = next(c for c in plan.changes if c.address == INST)
    assert change.action is Action.CREATE
    assert change.reasons == ("deleted outside reconciler",)


def test_changed_attribute_forces_replacement_and_names_it() -> None:
    res = desired(key_res(), vol_res(), inst_res())
    doc = state_of(res)
    changed = desired(key_res(), vol_res(), inst_res(attributes={"shade_instance_type": "H100"}))
    plan = plan_changes(changed, doc, live_of(doc))
    change = next(c for c in plan.changes if c.address == INST)
    assert change.action is Action.REPLACE
    assert change.replace_paths == ("shade_instance_type",)
    assert "shade_instance_type forces replacement" in change.reasons


def test_name_change_on_shadeform_instance_is_an_update_in_place() -> None:
    res = desired(key_res(), vol_res(), inst_res())
    doc = state_of(res)
    plan = plan_changes(
        desired(key_res(), vol_res(), inst_res(attributes={"name": "renamed"})), doc, live_of(doc)
    )
    assert actions(plan)[str(INST)] is Action.UPDATE


def test_replaced_volume_replaces_the_instance_that_mounts_it() -> None:
    res = desired(key_res(), vol_res(), inst_res())
    doc = state_of(res)
    plan = plan_changes(desired(key_res(), vol_res(size=200), inst_res()), doc, live_of(doc))
    assert actions(plan)[str(VOL)] is Action.REPLACE
    inst = next(c for c in plan.changes if c.address == INST)
    assert inst.action is Action.REPLACE and "volumes" in inst.replace_paths


def test_removed_resource_is_deleted() -> None:
    res = desired(key_res(), vol_res(), inst_res())
    doc = state_of(res)
    plan = plan_changes(desired(key_res(), vol_res()), doc, live_of(doc))
    assert actions(plan)[str(INST)] is Action.DELETE
    assert plan.cost.hourly_after == pytest.approx(0.02)


def test_destroy_plans_deletes_of_everything_in_state() -> None:
    res = desired(key_res(), vol_res(), inst_res())
    doc = state_of(res)
    plan = plan_changes(res, doc, live_of(doc), PlanOptions(destroy=True))
    assert set(actions(plan).values()) == {Action.DELETE}
    assert plan.cost.hourly_after == 0


def test_prevent_destroy_refuses_a_plan_that_would_destroy() -> None:
    protected = inst_res(lifecycle=Lifecycle(prevent_destroy=True))
    res = desired(key_res(), vol_res(), protected)
    doc = state_of(res)
    with pytest.raises(PlanError, match="instances.trainer has lifecycle.prevent_destroy"):
        plan_changes(res, doc, live_of(doc), PlanOptions(destroy=True))
    changed = inst_res(lifecycle=Lifecycle(prevent_destroy=True), attributes={"region": "eu-1"})
    with pytest.raises(PlanError, match="replace"):
        plan_changes(desired(key_res(), vol_res(), changed), doc, live_of(doc))


def test_instance_in_error_is_replaced_or_kept_per_on_failure() -> None:
    res = desired(key_res(), vol_res(), inst_res())
    doc = state_of(res)
    live = live_of(doc)
    errored = dict(live.resources)
    inst_id = doc.resources[str(INST)].id
    errored[("shadeform", Kind.INSTANCE)] = {
        inst_id: LiveResource("shadeform", Kind.INSTANCE, inst_id, "trainer", Status.ERROR)
    }
    view = LiveView(resources=errored, updatable=live.updatable)
    assert actions(plan_changes(res, doc, view))[str(INST)] is Action.REPLACE
    keep = desired(key_res(), vol_res(), inst_res(on_failure="keep"))
    plan = plan_changes(keep, doc, view)
    assert actions(plan)[str(INST)] is Action.NOOP
    assert any("on_failure: keep" in n for n in plan.notes)


OFFERS = [
    Offering(
        "forward",
        "spot_coff_a",
        "H100",
        8,
        24.0,
        "us-east-1",
        "shadeform",
        True,
        {"offering_id": "spot_coff_a"},
    ),
    Offering(
        "forward", "spot_coff_b", "H100", 8, 20.0, "us-west-1", "lambda", True, {"offering_id": "spot_coff_b"}
    ),
    Offering(
        "forward",
        "spot_coff_c",
        "H100",
        8,
        10.0,
        "us-west-1",
        "lambda",
        False,
        {"offering_id": "spot_coff_c"},
    ),
]


def worker(max_price: float = 25.0) -> Resource:
    return Resource(
        Address(Kind.INSTANCE, "worker", 0),
        "forward",
        {"name": "worker-0"},
        offering=OfferingRequest(gpu_type="H100", num_gpus=8, max_hourly_price=max_price),
    )


def test_requirements_pick_the_cheapest_available_offering_and_pin_it() -> None:
    res = desired(worker())
    plan = plan_changes(res, StateDocument(), LiveView(offerings={"forward": OFFERS}))
    change = plan.changes[0]
    assert change.after is not None and change.after["offering_id"] == "spot_coff_b"
    assert change.hourly_after == 20.0
    assert plan.cost.monthly_delta == pytest.approx(20.0 * 730)


def test_pinned_offering_does_not_churn_when_prices_change() -> None:
    res = desired(worker())
    first = plan_changes(res, StateDocument(), LiveView(offerings={"forward": OFFERS}))
    change = first.changes[0]
    doc = StateDocument()
    doc.resources[str(change.address)] = ResourceState(
        provider="forward",
        kind="instances",
        id="spot_inst_1",
        attributes=change.after or {},
        hourly_price=20.0,
    )
    cheaper = [
        *OFFERS,
        Offering("forward", "spot_coff_d", "H100", 8, 5.0, "eu", "x", True, {"offering_id": "spot_coff_d"}),
    ]
    live = LiveView(
        resources={
            ("forward", Kind.INSTANCE): {
                "spot_inst_1": LiveResource(
                    "forward", Kind.INSTANCE, "spot_inst_1", "worker-0", Status.ACTIVE
                )
            }
        },
        offerings={"forward": cheaper},
    )
    assert actions(plan_changes(res, doc, live))["instances.worker[0]"] is Action.NOOP
    reselected = plan_changes(res, doc, live, PlanOptions(reselect=True))
    assert reselected.changes[0].action is Action.REPLACE
    assert reselected.changes[0].after["offering_id"] == "spot_coff_d"  # type: ignore[index]


def test_no_matching_offering_is_a_clear_error() -> None:
    with pytest.raises(PlanError, match="no available forward offering matches"):
        plan_changes(desired(worker(max_price=5.0)), StateDocument(), LiveView(offerings={"forward": OFFERS}))


def test_sensitive_value_is_compared_by_digest_and_never_stored() -> None:
    secret = Resource(
        INST, "shadeform", {"name": "t", "envs": {"TOKEN": "hunter2"}}, sensitive=("envs.TOKEN",)
    )
    doc = state_of(desired(secret))
    assert "hunter2" not in doc.to_json_text()
    assert actions(plan_changes(desired(secret), doc, live_of(doc)))[str(INST)] is Action.NOOP
    rotated = Resource(
        INST, "shadeform", {"name": "t", "envs": {"TOKEN": "hunter3"}}, sensitive=("envs.TOKEN",)
    )
    plan = plan_changes(desired(rotated), doc, live_of(doc))
    assert plan.changes[0].action is Action.REPLACE and plan.changes[0].replace_paths == ("envs",)


def test_create_before_destroy_spreads_to_replaced_dependencies() -> None:
    res = desired(key_res(), vol_res(), inst_res(lifecycle=Lifecycle(create_before_destroy=True)))
    doc = state_of(res)
    changed = desired(key_res(), vol_res(size=300), inst_res(lifecycle=Lifecycle(create_before_destroy=True)))
    plan = plan_changes(changed, doc, live_of(doc))
    vol = next(c for c in plan.changes if c.address == VOL)
    assert vol.action is Action.REPLACE and vol.create_before_destroy


def test_target_limits_the_plan_to_the_target_and_its_dependencies() -> None:
    other = Resource(
        Address(Kind.SSH_KEY, "other"), "shadeform", {"name": "other", "public_key": "ssh-ed25519 B"}
    )
    res = desired(key_res(), vol_res(), inst_res(), other)
    plan = plan_changes(res, StateDocument(), LiveView(), PlanOptions(targets=(INST,)))
    assert set(actions(plan)) == {str(KEY), str(VOL), str(INST)}
    with pytest.raises(PlanError, match="did you mean instances.trainer"):
        plan_changes(
            res, StateDocument(), LiveView(), PlanOptions(targets=(Address(Kind.INSTANCE, "trainr"),))
        )


def test_pending_create_is_adopted_when_its_marker_is_live() -> None:
    now = datetime.now(UTC)
    doc = pending_doc(now)
    live = LiveView(
        resources={
            ("shadeform", Kind.SSH_KEY): {
                "k1": LiveResource(
                    "shadeform", Kind.SSH_KEY, "k1", "deploy", Status.ACTIVE, marker="rc-abc-123"
                )
            }
        }
    )
    resolved = resolve_pending(doc, live, now)
    assert resolved.state.resources[str(KEY)].id == "k1"
    assert resolved.state.pending == [] and "adopted k1" in resolved.notes[0]
    assert doc.pending, "the input document is not modified"


def test_pending_create_with_nothing_live_is_dropped_once_lists_are_consistent() -> None:
    now = datetime.now(UTC)
    live = LiveView(resources={("shadeform", Kind.SSH_KEY): {}})
    fresh = resolve_pending(pending_doc(now), live, now, {"shadeform": 30.0})
    assert fresh.unresolved and fresh.state.pending, "a lagging list is not proof of absence"
    old = resolve_pending(pending_doc(now - timedelta(seconds=60)), live, now, {"shadeform": 30.0})
    assert not old.unresolved and old.state.pending == [] and str(KEY) not in old.state.resources


def test_orphans_carry_this_states_marker_but_are_not_in_state() -> None:
    doc = StateDocument()
    marker = f"rc-{doc.lineage.replace('-', '')[:8]}-abcdef"
    live = LiveView(
        resources={
            ("shadeform", Kind.INSTANCE): {
                "i9": LiveResource(
                    "shadeform", Kind.INSTANCE, "i9", "lost", Status.ACTIVE, marker=marker, hourly_price=2.0
                ),
                "i8": LiveResource(
                    "shadeform", Kind.INSTANCE, "i8", "someone-elses", Status.ACTIVE, marker="rc-ffffffff-1"
                ),
            }
        }
    )
    plan = plan_changes({}, doc, live)
    assert [o.id for o in plan.orphans] == ["i9"]


def test_error_recorded_from_a_fresh_read_wins_over_a_stale_cached_pending() -> None:
    res = desired(key_res(), vol_res(), inst_res())
    doc = state_of(res)
    doc.resources[str(INST)] = doc.resources[str(INST)].model_copy(update={"status": "error"})
    live = live_of(doc, status=Status.PENDING)
    assert actions(plan_changes(res, doc, live))[str(INST)] is Action.REPLACE
