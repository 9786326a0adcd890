"""Plans and state as people and tools see them once objects have computed attributes,
references known only after apply, and outputs."""

from __future__ import annotations

import io
import json

from rich.console import Console

from reconciler.model import (
    Action,
    Address,
    Change,
    CostSummary,
    Kind,
    OutputChange,
    Plan,
    mask_sensitive,
)
from reconciler.references import parse_reference, placeholder
from reconciler.state.model import OutputState, ResourceState, StateDocument
from reconciler.views.plan_human import render_plan
from reconciler.views.plan_json import plan_to_json
from reconciler.views.state_json import state_to_json
from reconciler.views.state_table import render_state_table

HEAD = Address(Kind.INSTANCE, "head")
WORKER = Address(Kind.INSTANCE, "worker", 0)
IP = placeholder(parse_reference("instances.head.ip"))  # type: ignore[arg-type]


def human(plan: Plan) -> str:
    buffer = io.StringIO()
    render_plan(plan, Console(file=buffer, width=200, no_color=True))
    return buffer.getvalue()


def plan_of(*changes: Change, outputs: tuple[OutputChange, ...] = ()) -> Plan:
    return Plan(changes=changes, state_serial=1, state_lineage="L", cost=CostSummary(0.0, 1.0), outputs=outputs)


def new_head() -> Change:
    return Change(HEAD, Action.CREATE, "shadeform", None, {"name": "head"}, computed=("id", "ip", "ssh_port"))


def replaced_worker() -> Change:
    return Change(
        WORKER,
        Action.REPLACE,
        "forward",
        {"name": "worker-0", "envs": {"MASTER_ADDR": "10.0.0.1"}},
        {"name": "worker-0", "envs": {"MASTER_ADDR": IP}},
        reasons=("envs forces replacement", "envs.MASTER_ADDR uses ${instances.head.ip}, known only after apply"),
        replace_paths=("envs",),
        id="w-old",
        computed=("id", "ip"),
        unknown=("envs.MASTER_ADDR",),
    )


def test_plan_text_shows_what_is_known_only_after_apply() -> None:
    text = human(plan_of(new_head(), replaced_worker()))
    assert "+ ip       = (known after apply)" in text
    assert "+ id       = (known after apply)" in text
    assert '~ "MASTER_ADDR" = "10.0.0.1" -> (known after apply)' in text
    assert "# (envs.MASTER_ADDR uses ${instances.head.ip}, known only after apply)" in text
    assert "\ue000" not in text and "\ue001" not in text


def test_plan_json_marks_unknowns_and_lists_output_changes() -> None:
    outputs = (OutputChange("head_ip", Action.CREATE, None, None, after_unknown=True),)
    data = plan_to_json(plan_of(new_head(), replaced_worker(), outputs=outputs))
    by_address = {c["address"]: c["change"] for c in data["resource_changes"]}
    assert by_address["instances.head"]["after_unknown"] == {"id": True, "ip": True, "ssh_port": True}
    worker = by_address["instances.worker[0]"]
    assert worker["after"]["envs"]["MASTER_ADDR"] is None
    assert worker["after_unknown"]["envs"] == {"MASTER_ADDR": True}
    assert data["output_changes"]["head_ip"]["actions"] == ["create"]
    assert data["output_changes"]["head_ip"]["after_unknown"] is True
    assert "\ue000" not in json.dumps(data)


def test_a_plan_that_only_changes_outputs_says_so() -> None:
    outputs = (OutputChange("head_ip", Action.CREATE, None, "10.0.0.1"),)
    noop = Change(HEAD, Action.NOOP, "shadeform", {"name": "head"}, {"name": "head"}, id="h1")
    plan = plan_of(noop, outputs=outputs)
    assert plan.has_changes
    text = human(plan)
    assert 'Changes to Outputs:\n  + head_ip = "10.0.0.1"' in text
    assert "No changes." not in text and "save these new output values" in text


def state() -> StateDocument:
    doc = StateDocument(serial=5, lineage="L")
    doc.resources[str(HEAD)] = ResourceState(
        provider="shadeform",
        kind="instances",
        id="h1",
        attributes=mask_sensitive({"name": "head", "envs": {"TOKEN": "secret-value"}}, ("envs.TOKEN",), "L"),
        computed={"ip": "10.0.0.1", "ssh_user": "shadeform", "ssh_port": 22, "status": "active"},
        hourly_price=0.8,
    )
    doc.outputs = {
        "head_ip": OutputState(value="10.0.0.1"),
        "token": OutputState(sensitive=True, digest="sha256:abc"),
    }
    return doc


def test_state_table_shows_where_to_connect() -> None:
    buffer = io.StringIO()
    render_state_table(state(), Console(file=buffer, width=250, no_color=True))
    assert "shadeform@10.0.0.1:22" in buffer.getvalue()


def test_state_json_follows_terraform_state_shape() -> None:
    data = state_to_json(state(), "0.0.0")
    resource = data["values"]["root_module"]["resources"][0]
    assert {k: resource[k] for k in ("address", "mode", "type", "name", "provider_name")} == {
        "address": "instances.head",
        "mode": "managed",
        "type": "instances",
        "name": "head",
        "provider_name": "shadeform",
    }
    assert resource["values"]["ip"] == "10.0.0.1" and resource["values"]["id"] == "h1"
    assert resource["values"]["envs"] == {"TOKEN": None}
    assert resource["sensitive_values"] == {"envs": {"TOKEN": True}}
    assert data["values"]["outputs"] == {
        "head_ip": {"sensitive": False, "type": "string", "value": "10.0.0.1"},
        "token": {"sensitive": True, "type": "string", "value": None},
    }
    assert "sha256:" not in json.dumps(data)
