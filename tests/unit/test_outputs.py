"""Outputs: planned values (known or not), what apply records, and how they are shown."""

from __future__ import annotations

import pytest

from reconciler.errors import ReconcilerError
from reconciler.model import Action, Address, Change, Kind, Output, OutputChange, Resource
from reconciler.outputs import outputs_after_apply, plan_outputs, sensitive_value, value_type
from reconciler.planner import LiveView
from reconciler.references import parse_reference, placeholder
from reconciler.state.model import OutputState, ResourceState, StateDocument
from reconciler.views.outputs import (
    output_change_lines,
    output_changes_json,
    output_lines,
    outputs_json,
    raw_text,
)

HEAD = Address(Kind.INSTANCE, "head")


def ref(text: str) -> str:
    reference = parse_reference(text)
    assert reference is not None
    return placeholder(reference)


IP = Output("ip", ref("instances.head.ip"), depends_on=(HEAD,))
CONNECT = Output("connect", f"ssh -p {ref('instances.head.ssh_port')} {ref('instances.head.ssh_user')}@{ref('instances.head.ip')}")
SECRET = Output("token", "tok-123456", sensitive=True)
HEAD_RES = Resource(HEAD, "shadeform", {"name": "head"}, computed=("id", "ip", "ssh_port", "ssh_user"))


def ready_state() -> StateDocument:
    doc = StateDocument(serial=2)
    doc.resources[str(HEAD)] = ResourceState(
        provider="shadeform",
        kind="instances",
        id="h1",
        attributes={"name": "head"},
        computed={"ip": "10.0.0.7", "ssh_port": 2222, "ssh_user": "ubuntu"},
    )
    return doc


def test_outputs_of_a_new_object_are_known_after_apply() -> None:
    change = Change(HEAD, Action.CREATE, "shadeform", None, {"name": "head"}, computed=HEAD_RES.computed)
    planned = plan_outputs({"ip": IP, "token": SECRET}, (change,), {HEAD: HEAD_RES}, StateDocument(), LiveView())
    by_name = {o.name: o for o in planned}
    assert by_name["ip"] == OutputChange("ip", Action.CREATE, None, None, after_unknown=True)
    assert by_name["token"].after.startswith("sha256:") and by_name["token"].sensitive
    lines = output_change_lines(planned)
    assert lines == ["Changes to Outputs:", "  + ip    = (known after apply)", "  + token = (sensitive)"]


def test_apply_records_values_and_only_a_digest_of_a_sensitive_one() -> None:
    doc = ready_state()
    recorded = outputs_after_apply({"ip": IP, "connect": CONNECT, "token": SECRET}, doc)
    assert recorded["ip"] == OutputState(value="10.0.0.7", type="string")
    assert recorded["connect"].value == "ssh -p 2222 ubuntu@10.0.0.7"
    assert recorded["token"].value is None and recorded["token"].digest and "tok-123456" not in str(recorded)
    doc.outputs = recorded
    assert output_lines(doc.outputs) == [
        'connect = "ssh -p 2222 ubuntu@10.0.0.7"',
        'ip = "10.0.0.7"',
        "token = (sensitive)",
    ]
    assert outputs_json(doc)["token"] == {"sensitive": True, "type": "string", "value": None}
    assert sensitive_value(SECRET, "token", doc) == "tok-123456"
    with pytest.raises(ReconcilerError, match="differs from the one last applied"):
        sensitive_value(Output("token", "rotated-654321", sensitive=True), "token", doc)


def test_an_output_whose_object_is_not_ready_is_not_recorded() -> None:
    doc = ready_state()
    doc.resources[str(HEAD)].computed = {}
    assert outputs_after_apply({"ip": IP}, doc) == {}


def test_unchanged_outputs_are_no_op_and_removed_ones_are_deleted() -> None:
    doc = ready_state()
    doc.outputs = outputs_after_apply({"ip": IP, "token": SECRET}, doc)
    noop = Change(HEAD, Action.NOOP, "shadeform", {"name": "head"}, {"name": "head"}, id="h1")
    planned = {o.name: o for o in plan_outputs({"ip": IP}, (noop,), {HEAD: HEAD_RES}, doc, LiveView())}
    assert planned["ip"].action is Action.NOOP and planned["ip"].after == "10.0.0.7"
    assert planned["token"].action is Action.DELETE
    json = output_changes_json(tuple(planned.values()))
    assert json["ip"]["actions"] == ["no-op"] and json["token"] == {
        "actions": ["delete"],
        "before": None,
        "after": None,
        "after_unknown": False,
        "before_sensitive": True,
        "after_sensitive": True,
    }


def test_types_and_raw_text_follow_terraform() -> None:
    assert value_type(["a", "b"]) == ["list", "string"]
    assert value_type({"a": 1}) == ["object", {"a": "number"}]
    assert value_type(True) == "bool"
    assert raw_text(22) == "22" and raw_text("x") == "x" and raw_text(["x"]) is None


def test_an_output_of_an_object_left_out_of_a_targeted_plan_keeps_its_value() -> None:
    doc = ready_state()
    doc.outputs = outputs_after_apply({"ip": IP}, doc)
    planned = plan_outputs({"ip": IP}, (), {HEAD: HEAD_RES}, doc, LiveView())
    assert planned == (OutputChange("ip", Action.NOOP, "10.0.0.7", "10.0.0.7"),)
