"""Ranking offerings against requirements, and what a plan says about the choice."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from reconciler.failover import attempt_of
from reconciler.model import Action, Address, Kind, LiveResource, Offering, OfferingRequest, Resource, Status
from reconciler.planfile import read_plan_file, write_plan_file
from reconciler.planner import LiveView, PlanOptions, plan_changes, providers_needing_offerings
from reconciler.selection import rank
from reconciler.state.model import ResourceState, StateDocument


def offer(id: str, price: float, **fields: object) -> Offering:
    base = Offering(
        provider="forward",
        id=id,
        gpu_type="A100",
        num_gpus=1,
        hourly_price=price,
        region="us-east-1",
        cloud="crusoe",
        available=True,
        pin={"offering_id": id},
        vram_per_gpu_gb=80,
        vcpus=12,
        memory_gb=96,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


CATALOGUE = [
    offer("a", 1.16),
    offer("b", 1.29, region="us-west-1", cloud="lambda"),
    offer("c", 0.90, available=False),
    offer("d", 1.50, gpu_type="H100", vram_per_gpu_gb=80),
    offer("e", 1.10, gpu_type="A100", vram_per_gpu_gb=40),
    offer("f", 2.40, num_gpus=2, region="eu-1", cloud="nebius"),
]


def ids(request: OfferingRequest) -> list[str]:
    return [o.id for o in rank(request, CATALOGUE)]


def test_unavailable_offerings_are_never_ranked() -> None:
    assert "c" not in ids(OfferingRequest())
    assert ids(OfferingRequest()) == ["e", "a", "b", "d", "f"]


def test_gpu_type_list_and_minimum_vram() -> None:
    assert ids(OfferingRequest(gpu_type=("a100", "H100"), min_vram_per_gpu_gb=80)) == ["a", "b", "d", "f"]
    assert ids(OfferingRequest(gpu_type="H100")) == ["d"]


def test_price_per_gpu_hour_counts_every_gpu() -> None:
    assert ids(OfferingRequest(max_price_per_gpu_hour=1.2)) == ["e", "a", "f"]
    assert ids(OfferingRequest(max_hourly_price=1.2)) == ["e", "a"]


def test_allow_and_exclude_lists_of_regions_and_clouds() -> None:
    assert ids(OfferingRequest(regions=("us-west-1", "eu-1"))) == ["b", "f"]
    assert ids(OfferingRequest(exclude_clouds=("crusoe",))) == ["b", "f"]
    assert ids(OfferingRequest(clouds=("crusoe",), exclude_regions=("us-east-1",))) == []


def test_hardware_minimums_exclude_offerings_that_do_not_report_them() -> None:
    catalogue = [offer("x", 1.0, vcpus=None), offer("y", 2.0, memory_gb=512, vcpus=64)]
    assert [o.id for o in rank(OfferingRequest(min_vcpus=16), catalogue)] == ["y"]
    assert [o.id for o in rank(OfferingRequest(min_memory_gb=200), catalogue)] == ["y"]


def test_rental_and_deployment_type() -> None:
    catalogue = [offer("x", 1.0, rental_type="spot"), offer("y", 2.0, deployment_type="vm")]
    assert [o.id for o in rank(OfferingRequest(rental_type="on_demand"), catalogue)] == ["y"]
    assert [o.id for o in rank(OfferingRequest(deployment_type="vm"), catalogue)] == ["y"]


def trainer(attempts: int = 1) -> Resource:
    return Resource(
        Address(Kind.INSTANCE, "trainer"),
        "forward",
        {"name": "trainer"},
        offering=OfferingRequest(gpu_type="A100"),
        fallback_attempts=attempts,
    )


def test_plan_says_why_and_names_the_next_few() -> None:
    res = trainer()
    plan = plan_changes({res.address: res}, StateDocument(), LiveView(offerings={"forward": CATALOGUE}))
    (change,) = plan.changes
    assert change.reasons[0] == "cheapest of 4 candidates: forward crusoe us-east-1 A100x1 $1.10/h"
    assert change.reasons[1] == (
        "next: forward crusoe us-east-1 A100x1 $1.16/h; forward lambda us-west-1 A100x1 $1.29/h; "
        "forward nebius eu-1 A100x2 $2.40/h"
    )
    assert change.candidates == ()  # without fallback, apply tries nothing else


def test_fallback_carries_the_next_candidates_in_order_within_max_attempts(tmp_path: Path) -> None:
    res = trainer(attempts=3)
    plan = plan_changes({res.address: res}, StateDocument(), LiveView(offerings={"forward": CATALOGUE}))
    (change,) = plan.changes
    assert [c.offering_id for c in change.candidates] == ["e", "a", "b"]
    assert change.candidates[1].pin == {"offering_id": "a"}
    assert change.reasons[-1] == "on no capacity, apply tries the next 2 in this order"
    saved = tmp_path / "p.json"
    write_plan_file(saved, plan, "cfg")
    loaded, _ = read_plan_file(saved)
    assert loaded.changes[0].candidates == change.candidates


def reclaimed_world(res: Resource, status_details: str) -> tuple[StateDocument, LiveView]:
    first = plan_changes({res.address: res}, StateDocument(), LiveView(offerings={"forward": CATALOGUE}))
    (change,) = first.changes
    doc = StateDocument()
    doc.resources[str(res.address)] = ResourceState(
        provider="forward", kind="instances", id="i-1", attributes=change.after or {}, hourly_price=1.10
    )
    gone = LiveResource("forward", Kind.INSTANCE, "i-1", "trainer", Status.DELETING, status_details=status_details)
    live = LiveView(resources={("forward", Kind.INSTANCE): {"i-1": gone}}, offerings={"forward": CATALOGUE})
    return doc, live


def test_a_reclaimed_spot_instance_is_created_again_on_its_pinned_offering() -> None:
    res = trainer()
    doc, live = reclaimed_world(res, "preempted: the provider reclaimed the spot capacity")
    (change,) = plan_changes({res.address: res}, doc, live).changes
    assert change.action is Action.REPLACE  # the delete the provider started is finished first
    assert change.reasons[0].startswith("reclaimed by the provider (preempted")
    assert change.after is not None and change.after["offering_id"] == "e"


def test_a_reclaimed_instance_with_fallback_moves_to_the_next_candidate() -> None:
    res = trainer(attempts=2)
    doc, live = reclaimed_world(res, "preempted: the provider reclaimed the spot capacity")
    (change,) = plan_changes({res.address: res}, doc, live).changes
    assert change.reasons[0].startswith("reclaimed by the provider")
    assert change.after is not None and change.after["offering_id"] == "a"
    assert [c.offering_id for c in change.candidates] == ["a", "b"]


def test_an_instance_deleted_by_someone_is_not_called_reclaimed() -> None:
    res = trainer(attempts=2)
    doc, live = reclaimed_world(res, "")
    (change,) = plan_changes({res.address: res}, doc, live).changes
    assert not any("reclaimed" in r for r in change.reasons)
    assert change.after is not None and change.after["offering_id"] == "e"


def shadeform_offer(cloud: str, price: float, **fields: object) -> Offering:
    pin = {"cloud": cloud, "region": "us-east-1", "shade_instance_type": "A100"}
    return offer(f"{cloud}:us-east-1:A100", price, provider="shadeform", cloud=cloud, pin=pin, **fields)


BOTH = {"forward": CATALOGUE, "shadeform": [shadeform_offer("lambdalabs", 1.12), shadeform_offer("datacrunch", 1.20)]}
KEYS = {p: f'ssh_keys.deploy["{p}"]' for p in ("shadeform", "forward")}


def anywhere(attempts: int = 1, **attributes: object) -> Resource:
    return Resource(
        Address(Kind.INSTANCE, "trainer"),
        "shadeform",
        {"name": "trainer", "ssh_key": KEYS, **attributes},
        offering=OfferingRequest(gpu_type="A100", num_gpus=1, providers=("shadeform", "forward")),
        fallback_attempts=attempts,
    )


def test_candidates_are_ranked_across_providers_and_the_choice_names_its_provider() -> None:
    res = anywhere(attempts=3)
    (change,) = plan_changes({res.address: res}, StateDocument(), LiveView(offerings=BOTH)).changes
    assert change.provider == "forward"
    assert change.reasons[0] == "cheapest of 5 candidates: forward crusoe us-east-1 A100x1 $1.10/h"
    assert change.reasons[1].startswith("next: shadeform lambdalabs us-east-1 A100x1 $1.12/h; forward crusoe")
    assert change.after is not None
    assert (change.after["offering_id"], change.after["ssh_key"]) == ("e", KEYS["forward"])
    assert [(c.provider, c.offering_id) for c in change.candidates] == [
        ("forward", "e"), ("shadeform", "lambdalabs:us-east-1:A100"), ("forward", "a")
    ]
    # Moving to the Shadeform candidate changes the provider, the pin and the key object.
    second = attempt_of(change, change.candidates[1])
    assert second.provider == "shadeform"
    assert second.after is not None and "offering_id" not in second.after
    assert (second.after["cloud"], second.after["shade_instance_type"], second.after["ssh_key"]) == (
        "lambdalabs", "A100", KEYS["shadeform"]
    )


def test_the_provider_filter_of_the_requirements() -> None:
    offerings = [*BOTH["forward"], *BOTH["shadeform"]]
    assert {o.provider for o in rank(OfferingRequest(providers=("shadeform",)), offerings)} == {"shadeform"}
    assert {o.provider for o in rank(OfferingRequest(), offerings)} == {"shadeform", "forward"}


def landed(res: Resource, provider: str, offering_id: str, price: float, **attributes: object) -> StateDocument:
    doc = StateDocument()
    after = {
        "name": "trainer", "ssh_key": KEYS[provider], **attributes,
        "offering": {**(res.offering.to_dict() if res.offering else {}), "selected": offering_id},
    }
    doc.resources[str(res.address)] = ResourceState(
        provider=provider, kind="instances", id="i-1", attributes=after, hourly_price=price
    )
    return doc


def test_the_chosen_provider_is_pinned_in_state_until_reselect() -> None:
    res = anywhere()
    pin = {"cloud": "datacrunch", "region": "us-east-1", "shade_instance_type": "A100"}
    doc = landed(res, "shadeform", "datacrunch:us-east-1:A100", 1.20, **pin)
    running = LiveResource("shadeform", Kind.INSTANCE, "i-1", "trainer", Status.ACTIVE, attributes={"name": "trainer"})
    live = LiveView(resources={("shadeform", Kind.INSTANCE): {"i-1": running}}, offerings=BOTH)
    # Cheaper offerings elsewhere do not move it, and no catalogue is needed to know so.
    (kept,) = plan_changes({res.address: res}, doc, replace(live, offerings={})).changes
    assert (kept.action, kept.provider) == (Action.NOOP, "shadeform")
    assert providers_needing_offerings({res.address: res}, doc) == (set(), set())
    assert providers_needing_offerings({res.address: res}, doc, reselect=True)[0] == {"shadeform", "forward"}

    (moved,) = plan_changes({res.address: res}, doc, live, PlanOptions(reselect=True)).changes
    assert (moved.action, moved.provider) == (Action.REPLACE, "forward")
    assert moved.reasons[0] == "provider changed from shadeform to forward"
    assert moved.after is not None and moved.after["ssh_key"] == KEYS["forward"]


def test_expiry_follows_the_provider_each_candidate_is_on() -> None:
    res = anywhere(attempts=2, expiry={"after": "8h"})
    now = datetime(2026, 1, 1, tzinfo=UTC)
    shadeform_first = {"forward": CATALOGUE[1:2], "shadeform": BOTH["shadeform"][:1]}
    (change,) = plan_changes(
        {res.address: res}, StateDocument(), LiveView(offerings=shadeform_first), PlanOptions(now=now)
    ).changes
    assert change.provider == "shadeform"
    assert change.after is not None and change.after["auto_delete"] == {"date_threshold": "2026-01-01T08:00:00Z"}
    on_forward = attempt_of(change, change.candidates[1])
    assert on_forward.provider == "forward"
    assert on_forward.after is not None and "auto_delete" not in on_forward.after
    assert on_forward.after["expiry"]["deadline"] == "2026-01-01T08:00:00Z"  # enforced by the planner there


def test_a_key_now_declared_per_provider_suggests_state_mv() -> None:
    body = {"name": "deploy", "public_key": "ssh-ed25519 AAAA k"}
    desired = {
        Address(Kind.SSH_KEY, "deploy", p): Resource(Address(Kind.SSH_KEY, "deploy", p), p, body)
        for p in ("shadeform", "forward")
    }
    doc = StateDocument()
    doc.resources["ssh_keys.deploy"] = ResourceState(provider="shadeform", kind="ssh_keys", id="k-1", attributes=body)
    plan = plan_changes(desired, doc, LiveView())
    assert any(
        "`reconciler state mv ssh_keys.deploy 'ssh_keys.deploy[\"shadeform\"]'` keeps" in note for note in plan.notes
    ), plan.notes
