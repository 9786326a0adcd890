"""Each of the planner's passes on its own, on plain data: no config files, no HTTP."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from reconciler.errors import PlanError
from reconciler.model import (
    Action,
    ActionReason,
    Address,
    Change,
    Kind,
    Lifecycle,
    LiveResource,
    Offering,
    Resource,
    Status,
    mask_sensitive,
)
from reconciler.planfile import plan_to_document
from reconciler.planner import LiveView, PlanOptions, plan_changes, plan_resource
from reconciler.planner_passes import (
    attach_selections,
    check_prevent_destroy,
    deposed_deletes,
    find_orphans,
    match_targets,
    plan_cost,
    removed_resources,
    restrict_to_targets,
    spread_create_before_destroy,
    target_graph,
)
from reconciler.planner_pending import settle_create, settle_delete
from reconciler.selection import select
from reconciler.state.model import DeposedResource, PendingOperation, ResourceState, StateDocument
from reconciler.views.plan_human import render_plan
from reconciler.views.plan_json import plan_to_json

KEY = Address(Kind.SSH_KEY, "k")
VOL = Address(Kind.VOLUME, "v")
INST = Address(Kind.INSTANCE, "i")
OTHER = Address(Kind.INSTANCE, "other")
SECRET = "hf_PASSES_SECRET_77"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def held(address: Address, id: str, price: float = 1.0, deps: tuple[Address, ...] = ()) -> ResourceState:
    return ResourceState(
        provider="shadeform",
        kind=address.kind.value,
        id=id,
        attributes={"name": address.name},
        depends_on=[str(d) for d in deps],
        hourly_price=price,
    )


def live_with(*objects: LiveResource, kinds: tuple[Kind, ...] = tuple(Kind)) -> LiveView:
    resources: dict[tuple[str, Kind], dict[str, LiveResource]] = {("shadeform", k): {} for k in kinds}
    for obj in objects:
        resources[(obj.provider, obj.kind)][obj.id] = obj
    return LiveView(resources=resources, updatable={("shadeform", Kind.INSTANCE): frozenset({"name"})})


def running(address: Address, id: str, status: Status = Status.ACTIVE, **extra: object) -> LiveResource:
    return LiveResource("shadeform", address.kind, id, address.name, status, **extra)  # type: ignore[arg-type]


def change(address: Address, action: Action, deps: tuple[Address, ...] = (), **extra: object) -> Change:
    return Change(address, action, "shadeform", {}, {}, depends_on=deps, **extra)  # type: ignore[arg-type]


# --- plan_resource: one resource, and the typed reason it is given ------------------------


def instance(attributes: dict[str, object] | None = None, **fields: object) -> Resource:
    attrs = attributes or {"name": "i", "region": "r1"}
    return Resource(INST, "shadeform", dict(attrs), **fields)  # type: ignore[arg-type]


def tracked(status: str = "active") -> ResourceState:
    return ResourceState(
        provider="shadeform",
        kind="instances",
        id="i-1",
        attributes={"name": "i", "region": "r1"},
        status=status,
        hourly_price=2.0,
        marker="m-1",
    )


def planned(res: Resource, prior: ResourceState | None, live: LiveView, **options: object) -> Change:
    result = plan_resource(res, (), prior, live, PlanOptions(), lineage="L", **options)  # type: ignore[arg-type]
    assert result.change is not None
    return result.change


def test_plan_resource_sets_the_reason_where_it_decides_the_action() -> None:
    up = live_with(running(INST, "i-1", attributes={"name": "i", "region": "r1"}))
    new = planned(instance(), None, up)
    assert (new.action, new.reason) == (Action.CREATE, None)
    gone = planned(instance(), tracked(), live_with())
    assert (gone.action, gone.reason) == (Action.CREATE, ActionReason.CREATE_BECAUSE_DELETED_OUTSIDE)
    moved = planned(instance(attributes={"name": "i", "region": "r2"}), tracked(), up)
    assert (moved.action, moved.reason) == (Action.REPLACE, ActionReason.REPLACE_BECAUSE_CANNOT_UPDATE)
    renamed = planned(instance(attributes={"name": "j", "region": "r1"}), tracked(), up)
    assert (renamed.action, renamed.reason, renamed.hourly_after) == (Action.UPDATE, None, 2.0)
    asked = planned(instance(), tracked(), up, replace_requested=True)
    assert (asked.action, asked.reason) == (Action.REPLACE, ActionReason.REPLACE_BY_REQUEST)
    broken = live_with(running(INST, "i-1", Status.ERROR, attributes={"name": "i", "region": "r1"}))
    tainted = planned(instance(), tracked(), broken, replace_requested=True)
    assert tainted.reason is ActionReason.REPLACE_BECAUSE_TAINTED, "a broken object is tainted even if asked"
    assert tainted.reasons == ("instance is in error state (on_failure: replace)", "replacement requested with --replace")
    kept = plan_resource(instance(on_failure="keep"), (), tracked(), broken, PlanOptions(), lineage="L")
    assert kept.change is not None and kept.change.action is Action.NOOP
    assert kept.notes == ("instances.i: instance is in error state; kept (on_failure: keep)",)


def test_plan_resource_replaces_a_dependent_whose_dependency_gets_a_new_id() -> None:
    res = Resource(INST, "shadeform", {"name": "i", "region": "r1", "ssh_key": str(KEY)}, depends_on=(KEY,))
    prior = tracked().model_copy(update={"attributes": {"name": "i", "region": "r1", "ssh_key": str(KEY)}})
    up = live_with(running(INST, "i-1"))
    assert planned(res, prior, up).action is Action.NOOP
    replaced = planned(res, prior, up, new_ids={KEY})
    assert replaced.reasons == ("ssh_keys.k gets a new id",) and replaced.replace_paths == ("ssh_key",)


def test_plan_resource_hands_views_the_masked_after_once() -> None:
    res = instance(attributes={"name": "i", "region": "r1", "envs": {"HF_TOKEN": SECRET}}, sensitive=("envs.HF_TOKEN",))
    created = planned(res, None, live_with())
    assert created.after is not None and created.after["envs"]["HF_TOKEN"] == SECRET, "apply sends the value"
    assert created.masked_after == mask_sensitive(created.after, ("envs.HF_TOKEN",), "L")
    assert planned(instance(), None, live_with()).masked_after is None, "nothing sensitive, no second copy"


def test_plan_resource_leaves_an_expired_instance_to_the_removed_pass() -> None:
    res = instance(attributes={"name": "i", "region": "r1", "expiry": {"at": "2025-12-31T00:00:00Z"}})
    live = live_with(running(INST, "i-1"))
    result = plan_resource(res, (), tracked(), live, PlanOptions(now=NOW), lineage="L")
    assert result.change is None and result.expired == "expired at 2025-12-31T00:00:00Z (expires_at 2025-12-31T00:00:00Z)"
    new = plan_resource(res, (), None, live, PlanOptions(now=NOW), lineage="L")
    assert new.change is None and new.expired is None and new.notes[0].endswith("; not created")


# --- whole-plan passes -------------------------------------------------------------------


def test_removed_resources_says_why_in_prose_and_as_a_typed_reason() -> None:
    doc = StateDocument(
        resources={str(VOL): held(VOL, "v-1"), str(KEY): held(KEY, "k-1"), str(INST): held(INST, "i-1")}
    )
    live = live_with(running(VOL, "v-1"), running(INST, "i-1"))
    found = removed_resources(doc, {}, live, destroy=False, expired={INST: "expired at noon"})
    assert {a: (c.reasons, c.reason) for a, c in found.items()} == {
        VOL: (("not in the configuration",), ActionReason.DELETE_BECAUSE_NO_RESOURCE_CONFIG),
        KEY: (("already gone outside reconciler",), ActionReason.DELETE_BECAUSE_NO_RESOURCE_CONFIG),
        INST: (("expired at noon",), ActionReason.DELETE_BECAUSE_NO_RESOURCE_CONFIG),
    }
    destroyed = removed_resources(doc, {}, live, destroy=True, expired={})
    assert (destroyed[VOL].reasons, destroyed[VOL].reason) == (("destroy requested",), None)
    kept = removed_resources(doc, {VOL: Resource(VOL, "shadeform", {})}, live, destroy=False, expired={})
    assert VOL not in kept


def test_deposed_deletes_name_the_old_object() -> None:
    old = DeposedResource(address=str(INST), provider="shadeform", kind="instances", id="old-1", hourly_price=2.0)
    (delete,) = deposed_deletes(StateDocument(deposed=[old]))
    assert (delete.action, delete.deposed, delete.id, delete.reason) == (Action.DELETE, "old-1", "old-1", None)


def test_target_restriction_keeps_dependencies_and_what_goes_with_a_destroyed_target() -> None:
    changes = {
        KEY: change(KEY, Action.NOOP),
        VOL: change(VOL, Action.REPLACE),
        INST: change(INST, Action.REPLACE, (KEY, VOL)),
        OTHER: change(OTHER, Action.UPDATE, (VOL,)),
    }
    deps = {INST: (KEY, VOL), OTHER: (VOL,)}
    desired = {a: Resource(a, "shadeform", {}, depends_on=deps.get(a, ())) for a in changes}
    graph = target_graph(desired, StateDocument(), {INST})
    assert set(restrict_to_targets(changes, {INST}, graph)) == {INST, KEY, VOL}
    kept = restrict_to_targets(changes, {VOL}, target_graph(desired, StateDocument(), {VOL}))
    assert set(kept) == {VOL, INST}, "the replaced dependent goes with its volume; an update does not"


def test_target_graph_knows_a_target_only_the_configuration_declares() -> None:
    graph = target_graph({}, StateDocument(), {INST})  # destroy mode: nothing desired, nothing held
    assert restrict_to_targets({}, {INST}, graph) == {}


def test_match_targets_suggests_the_nearest_address() -> None:
    worker = [Address(Kind.INSTANCE, "worker", i) for i in range(2)]
    assert match_targets((Address(Kind.INSTANCE, "worker"),), set(worker), "--target") == set(worker)
    with pytest.raises(PlanError) as raised:
        match_targets((Address(Kind.INSTANCE, "wroker", 0),), set(worker), "--target")
    assert raised.value.hint == "did you mean instances.worker[0]?"


def test_attach_selections_only_to_what_is_created() -> None:
    offering = Offering("shadeform", "o-1", "A100", 1, 1.0, "r", "c", True, {"offering_id": "o-1"})
    selection = select([offering], 1)
    changes = {INST: change(INST, Action.CREATE), OTHER: change(OTHER, Action.NOOP)}
    result = attach_selections(changes, {INST: selection, OTHER: selection}, {})
    assert result[INST].reasons == selection.reasons
    assert result[OTHER].reasons == ()


def test_create_before_destroy_spreads_to_replaced_dependencies_only() -> None:
    changes = {
        KEY: change(KEY, Action.REPLACE),
        VOL: change(VOL, Action.NOOP),
        INST: change(INST, Action.REPLACE, (KEY, VOL), create_before_destroy=True),
    }
    result, notes = spread_create_before_destroy(changes)
    assert result[KEY].create_before_destroy and not result[VOL].create_before_destroy
    assert notes == ["ssh_keys.k: replaced create-before-destroy because a dependent is"]


def test_prevent_destroy_refuses_unless_the_object_is_already_being_deleted() -> None:
    guarded = {INST: Resource(INST, "shadeform", {}, lifecycle=Lifecycle(prevent_destroy=True))}
    changes = {INST: change(INST, Action.REPLACE, reasons=("region forces replacement",))}
    with pytest.raises(PlanError, match="would replace it \\(region forces replacement\\)"):
        check_prevent_destroy(changes, guarded, set())
    check_prevent_destroy(changes, guarded, {INST})
    check_prevent_destroy({INST: change(INST, Action.UPDATE)}, guarded, set())


def test_plan_cost_counts_what_still_runs_and_what_a_target_plan_leaves() -> None:
    doc = StateDocument(resources={str(INST): held(INST, "i-1", 2.0), str(OTHER): held(OTHER, "o-1", 3.0)})
    live = live_with(running(INST, "i-1"), running(OTHER, "o-1", Status.DELETED))
    ordered = (change(INST, Action.UPDATE, hourly_before=2.0, hourly_after=2.5),)
    assert plan_cost(ordered, doc, live, None).hourly_before == 2.0, "a deleted object costs nothing"
    assert plan_cost(ordered, doc, live, None).hourly_after == 2.5
    assert plan_cost(ordered, doc, live, {INST}).hourly_after == 5.5, "untouched objects keep running"


def test_find_orphans_skips_tracked_gone_foreign_and_pending() -> None:
    doc = StateDocument(resources={str(INST): held(INST, "i-1")})
    mine = f"rc-{doc.lineage.replace('-', '')[:8]}"
    doc.pending.append(
        PendingOperation(op="create", address=str(OTHER), provider="shadeform", kind="instances", marker=f"{mine}-p", name="o")
    )
    live = live_with(
        running(INST, "i-1", marker=f"{mine}-a"),
        running(OTHER, "lost", marker=f"{mine}-b", hourly_price=1.0),
        running(OTHER, "going", Status.DELETING, marker=f"{mine}-c"),
        running(OTHER, "theirs", marker="rc-ffffffff-d"),
        running(OTHER, "pending", marker=f"{mine}-p"),
    )
    assert [o.id for o in find_orphans(doc, live)] == ["lost"]


# --- pending operations ------------------------------------------------------------------


def pending(op: str = "create", id: str | None = None, started: datetime = NOW) -> PendingOperation:
    return PendingOperation(
        op=op,  # type: ignore[arg-type]
        address=str(INST),
        provider="shadeform",
        kind="instances",
        marker="rc-x-1",
        name="i",
        started_at=started.isoformat(),
        id=id,
    )


def test_settle_create_adopts_waits_for_a_lagging_list_or_drops() -> None:
    doc = StateDocument()
    found = live_with(running(INST, "i-9", marker="rc-x-1"))
    assert "adopted i-9" in settle_create(pending(), doc, found, NOW, 0.0).note[0]
    assert doc.resources[str(INST)].id == "i-9"
    lagging = settle_create(pending(), StateDocument(), live_with(), NOW + timedelta(seconds=10), 30.0)
    assert lagging.unresolved == "create of instances.i: shadeform lists may lag writes by 35s; not yet visible"
    dropped = settle_create(pending(), StateDocument(), live_with(), NOW + timedelta(seconds=60), 30.0)
    assert dropped.unresolved is None and "left nothing live" in dropped.note[0]


def test_settle_create_deposes_what_it_finds_where_the_address_was_taken_meanwhile() -> None:
    doc = StateDocument(resources={str(INST): held(INST, "imported-1")})
    settled = settle_create(pending(), doc, live_with(running(INST, "i-9", marker="rc-x-1")), NOW, 0.0)
    assert doc.resources[str(INST)].id == "imported-1" and [d.id for d in doc.deposed] == ["i-9"]
    assert settled.note[0].endswith("is not what state now tracks there; it is deleted")


def test_settle_delete_completes_follows_or_forgets() -> None:
    doc = StateDocument(resources={str(INST): held(INST, "i-1")})
    going = settle_delete(pending("delete", "i-1"), doc, live_with(running(INST, "i-1", Status.DELETING)))
    assert "still in progress" in going.note[0] and str(INST) in doc.resources
    alive = settle_delete(pending("delete", "i-1"), doc, live_with(running(INST, "i-1")))
    assert "did not happen" in alive.note[0] and str(INST) in doc.resources
    done = settle_delete(pending("delete", "i-1"), doc, live_with())
    assert "completed the delete" in done.note[0] and str(INST) not in doc.resources


# --- the passes together, and the views reading what the planner set ---------------------


def test_a_planned_secret_reaches_no_view_and_no_saved_plan() -> None:
    res = Resource(
        INST,
        "shadeform",
        {"name": "i", "envs": {"HF_TOKEN": SECRET}},
        sensitive=("envs.HF_TOKEN",),
    )
    doc = StateDocument()
    plan = plan_changes({INST: res}, doc, live_with())
    assert plan.changes[0].masked_after is not None
    assert SECRET not in str(plan_to_json(plan)) and SECRET not in str(plan_to_document(plan, "cfg"))
    out = Console(record=True, width=120, no_color=True)
    render_plan(plan, out)
    assert SECRET not in out.export_text()


def test_a_saved_plan_refuses_a_sensitive_change_without_the_planners_masked_view() -> None:
    unmasked = Change(INST, Action.CREATE, "shadeform", None, {"envs": {"HF_TOKEN": SECRET}}, sensitive=("envs.HF_TOKEN",))
    plan = plan_changes({}, StateDocument(), LiveView())
    with pytest.raises(ValueError, match="no masked view"):
        plan_to_document(dataclasses.replace(plan, changes=(unmasked,)), "cfg")
