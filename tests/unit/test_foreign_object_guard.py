"""The safety net under state identity: a new state about to create what another state runs
under the same names is flagged in the plan (text, JSON, Markdown) and refused by apply."""

from __future__ import annotations

import pytest

from reconciler import engine
from reconciler.errors import StateError
from reconciler.model import Action, Address, Kind, LiveResource, Resource, Status, new_marker
from reconciler.planner import LiveView, plan_changes
from reconciler.state.model import ResourceState, StateDocument
from reconciler.views.plan_events import plan_events
from reconciler.views.plan_json import plan_to_json
from reconciler.views.plan_markdown import plan_summary_markdown

TRAINER = Address(Kind.INSTANCE, "trainer")


def trainer() -> Resource:
    return Resource(TRAINER, "shadeform", {"name": "trainer", "cloud": "c", "region": "r", "shade_instance_type": "A"})


def live_with(*items: LiveResource) -> LiveView:
    resources: dict[tuple[str, Kind], dict[str, LiveResource]] = {("shadeform", k): {} for k in Kind}
    for item in items:
        resources[(item.provider, item.kind)][item.id] = item
    return LiveView(resources=resources)


def running(id: str, name: str, marker: str | None, status: Status = Status.ACTIVE) -> LiveResource:
    return LiveResource("shadeform", Kind.INSTANCE, id, name, status, marker=marker, hourly_price=2.5)


OTHER_LINEAGE = "0badcafe-0000-4000-8000-000000000000"


def test_a_new_state_flags_what_another_state_runs_under_the_names_it_creates() -> None:
    doc = StateDocument()
    live = live_with(
        running("i1", "trainer", new_marker(OTHER_LINEAGE)),
        running("i2", "trainer", None),  # not reconciler's: no marker
        running("i3", "trainer", new_marker(doc.lineage)),  # this state's own (an orphan, not foreign)
        running("i4", "other", new_marker(OTHER_LINEAGE)),  # not a name this plan creates
        running("i5", "trainer", new_marker(OTHER_LINEAGE), Status.DELETING),
    )
    plan = plan_changes({TRAINER: trainer()}, doc, live)
    assert [(f.id, f.address, f.lineage, f.hourly_price) for f in plan.foreign] == [
        ("i1", "instances.trainer", "0badcafe", 2.5)
    ]
    assert [o.id for o in plan.orphans] == ["i3"]
    assert plan_to_json(plan)["foreign_objects"][0]["lineage"] == "0badcafe"
    diagnostics = [e for e in plan_events(plan) if e.get("foreign_objects")]
    assert len(diagnostics) == 1 and "0badcafe" in diagnostics[0]["diagnostic"]["summary"]
    assert "--allow-foreign-objects" in plan_summary_markdown(plan)
    with pytest.raises(StateError) as caught:
        engine.check_foreign_objects(plan, allowed=False)
    assert "instances.trainer" in str(caught.value) and "$2.50/h" in str(caught.value)
    engine.check_foreign_objects(plan, allowed=True)


def test_a_state_that_tracks_objects_is_not_new_and_gets_no_such_warning() -> None:
    doc = StateDocument()
    doc.resources["ssh_keys.deploy"] = ResourceState(provider="shadeform", kind="ssh_keys", id="k1")
    live = live_with(running("i1", "trainer", new_marker(OTHER_LINEAGE)))
    plan = plan_changes({TRAINER: trainer()}, doc, live)
    assert [c.action for c in plan.changes if c.address == TRAINER] == [Action.CREATE]
    assert plan.foreign == ()
