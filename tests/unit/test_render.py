"""Rendering of plans, state and apply progress, asserted on the text people and tools read."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from rich.console import Console

from reconciler.applier import ApplyObserver, ApplyResult
from reconciler.model import (
    Action,
    ActionReason,
    Address,
    Change,
    CostSummary,
    Kind,
    Orphan,
    Plan,
    Status,
    mask_sensitive,
)
from reconciler.state.model import DeposedResource, PendingOperation, ResourceState, StateDocument
from reconciler.views.apply_progress import (
    ApplyReporter,
    JsonApplyReporter,
    ReportingApplyObserver,
    make_apply_observer,
)
from reconciler.views.formatting import format_elapsed, format_hourly, format_money
from reconciler.views.plan_events import plan_events
from reconciler.views.plan_human import render_plan
from reconciler.views.plan_json import plan_to_json
from reconciler.views.plan_markdown import plan_summary_markdown
from reconciler.views.state_table import render_state_table

SECRET = "hf_TOPSECRET_123"
OLD_SECRET = "hf_OLDSECRET_456"


def console() -> Console:
    return Console(record=True, width=120, no_color=True)


def human(plan: Plan) -> str:
    out = console()
    render_plan(plan, out)
    return out.export_text()


def make_plan(*changes: Change, before: float = 0.0, after: float = 0.0, **extra: Any) -> Plan:
    return Plan(
        changes=changes,
        state_serial=7,
        state_lineage="lineage-1",
        cost=CostSummary(hourly_before=before, hourly_after=after),
        **extra,
    )


def create_trainer() -> Change:
    return Change(
        address=Address(Kind.INSTANCE, "trainer"),
        action=Action.CREATE,
        provider="shadeform",
        before=None,
        after={
            "name": "trainer",
            "region": "canada-1",
            "size_gb": 500,
            "envs": {"HF_TOKEN": SECRET, "MODE": "train"},
            "volumes": ["volumes.datasets"],
            "launch": {"type": "docker", "image": "vllm/vllm-openai:latest"},
        },
        sensitive=("envs.HF_TOKEN",),
        hourly_after=2.4,
    )


def delete_volume() -> Change:
    return Change(
        address=Address(Kind.VOLUME, "old"),
        action=Action.DELETE,
        provider="forward",
        before={"name": "old", "size_gb": 100, "region": "us-east"},
        after=None,
        reasons=("not in configuration",),
        reason=ActionReason.DELETE_BECAUSE_NO_RESOURCE_CONFIG,
        id="vol-9",
        hourly_before=0.1,
    )


def replace_worker(create_before_destroy: bool = False) -> Change:
    return Change(
        address=Address(Kind.INSTANCE, "worker", 2),
        action=Action.REPLACE,
        provider="shadeform",
        before={
            "name": "worker-2",
            "region": "canada-1",
            "cloud": "hyperstack",
            "size_gb": 100,
            "envs": {"HF_TOKEN": OLD_SECRET},
            "launch": {"type": "docker", "image": "a:1"},
        },
        after={
            "name": "worker-2",
            "region": "canada-1",
            "cloud": "hyperstack",
            "size_gb": 500,
            "envs": {"HF_TOKEN": SECRET},
            "launch": {"type": "docker", "image": "a:2"},
        },
        reasons=("size_gb forces replacement", "launch.image forces replacement"),
        reason=ActionReason.REPLACE_BECAUSE_CANNOT_UPDATE,
        replace_paths=("size_gb", "launch.image"),
        id="sf-123",
        sensitive=("envs.HF_TOKEN",),
        create_before_destroy=create_before_destroy,
        hourly_before=2.4,
        hourly_after=3.0,
    )


def update_api() -> Change:
    return Change(
        address=Address(Kind.INSTANCE, "api"),
        action=Action.UPDATE,
        provider="shadeform",
        before={"name": "api", "tags": ["team-a"], "region": "x", "cloud": "y"},
        after={"name": "api-v2", "tags": ["team-a", "prod"], "region": "x", "cloud": "y"},
        id="sf-7",
        hourly_before=1.0,
        hourly_after=1.0,
    )


def noop_key() -> Change:
    return Change(
        address=Address(Kind.SSH_KEY, "deploy"),
        action=Action.NOOP,
        provider="shadeform",
        before={"name": "deploy", "public_key": "ssh-ed25519 AAAA"},
        after={"name": "deploy", "public_key": "ssh-ed25519 AAAA"},
        id="key-1",
    )


def ghost_orphan() -> Orphan:
    return Orphan(
        provider="shadeform",
        kind=Kind.INSTANCE,
        id="sf-ghost",
        name="ghost",
        address="instances.ghost",
        hourly_price=19.92,
    )


def full_plan() -> Plan:
    return make_plan(
        create_trainer(),
        delete_volume(),
        replace_worker(),
        update_api(),
        noop_key(),
        before=3.5,
        after=6.4,
        notes=("instances.trainer was deleted outside reconciler",),
        orphans=(ghost_orphan(),),
    )


# --- money -------------------------------------------------------------------------------


def test_money_formats_thousands_cents_and_signs() -> None:
    assert format_money(1234.561) == "$1,234.56"
    assert format_money(0) == "$0.00"
    assert format_money(-5.5) == "-$5.50"
    assert format_money(-0.001) == "$0.00"
    assert format_money(438, signed=True) == "+$438.00"
    assert format_money(-438, signed=True) == "-$438.00"
    assert format_hourly(2.4) == "$2.40/h"
    assert format_hourly(0.6, signed=True) == "+$0.60/h"


def test_elapsed_is_terraform_style() -> None:
    assert format_elapsed(3.9) == "3s"
    assert format_elapsed(90) == "1m30s"
    assert format_elapsed(3605) == "1h0m5s"


# --- human plan ----------------------------------------------------------------------------


def test_create_lists_every_attribute_on_its_own_line() -> None:
    text = human(make_plan(create_trainer(), after=2.4))
    assert "  # instances.trainer will be created" in text
    assert "  + instances.trainer (shadeform) {" in text
    assert re.search(r"^      \+ size_gb += 500$", text, re.M)
    assert re.search(r'^      \+ region += "canada-1"$', text, re.M)
    assert re.search(r'^          \+ "MODE" += "train"$', text, re.M)
    assert re.search(r'^          \+ "volumes.datasets",$', text, re.M)
    assert re.search(r'^          \+ "image" = "vllm/vllm-openai:latest"$', text, re.M)
    assert "      # $0.00/h -> $2.40/h" in text
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in text
    assert "Cost: $0.00/h -> $2.40/h (+$2.40/h, +$1,752.00/month)" in text
    assert "+ create" in text


def test_delete_shows_reason_id_and_cost() -> None:
    text = human(make_plan(delete_volume(), before=0.1))
    block = "  # volumes.old will be destroyed (destroys data)\n  # (not in configuration)\n  - volumes.old (forward) {"
    assert block in text
    assert re.search(r'^      - id += "vol-9"$', text, re.M)
    assert re.search(r"^      - size_gb += 100$", text, re.M)
    assert "      # $0.10/h -> $0.00/h" in text
    assert "Plan: 0 to add, 0 to change, 1 to destroy." in text
    assert "Cost: $0.10/h -> $0.00/h (-$0.10/h, -$73.00/month)" in text


def test_replace_marks_forcing_attributes_and_hides_unchanged() -> None:
    text = human(make_plan(replace_worker(), before=2.4, after=3.0))
    assert "  # instances.worker[2] must be replaced" in text
    assert "  # (size_gb forces replacement)" in text
    assert "-/+ instances.worker[2] (shadeform) {" in text
    assert re.search(r'^      ~ id += "sf-123" -> \(known after apply\)$', text, re.M)
    assert re.search(r"^      ~ size_gb += 100 -> 500 # forces replacement$", text, re.M)
    assert re.search(r'^          ~ "image" = "a:1" -> "a:2" # forces replacement$', text, re.M)
    assert "        # (3 unchanged attributes hidden)" in text
    assert "            # (1 unchanged element hidden)" in text
    assert "Plan: 1 to add, 0 to change, 1 to destroy." in text
    assert "-/+ destroy and then create replacement" in text


def test_create_before_destroy_replace_uses_its_own_symbol() -> None:
    text = human(make_plan(replace_worker(create_before_destroy=True)))
    assert "+/- instances.worker[2] (shadeform) {" in text
    assert "+/- create replacement and then destroy" in text
    assert "-/+" not in text


def test_update_in_place_shows_changes_and_id() -> None:
    text = human(make_plan(update_api(), before=1.0, after=1.0))
    assert "  # instances.api will be updated in-place" in text
    assert "  ~ instances.api (shadeform) {" in text
    assert re.search(r'^        id += "sf-7"$', text, re.M)
    assert re.search(r'^      ~ name += "api" -> "api-v2"$', text, re.M)
    assert re.search(r'^          \+ "prod",$', text, re.M)
    assert "        # (2 unchanged attributes hidden)" in text
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in text


def test_changes_ordered_destroy_replace_update_create_and_noops_hidden() -> None:
    second_create = Change(Address(Kind.VOLUME, "a"), Action.CREATE, "shadeform", None, {"name": "a"})
    changes = (create_trainer(), update_api(), noop_key(), replace_worker(), delete_volume(), second_create)
    text = human(make_plan(*changes))
    heads = re.findall(r"^  # (\S+) (?:will|must)", text, re.M)
    assert heads == ["volumes.old", "instances.worker[2]", "instances.api", "volumes.a", "instances.trainer"]
    assert "ssh_keys.deploy" not in text


def test_values_are_printed_literally_not_as_markup() -> None:
    change = Change(
        Address(Kind.INSTANCE, "m"),
        Action.CREATE,
        "shadeform",
        None,
        {"name": "[bold]x[/bold]", "args": "--flag [red]"},
    )
    text = human(make_plan(change))
    assert '"[bold]x[/bold]"' in text
    assert '"--flag [red]"' in text


def test_no_changes_message_with_running_cost() -> None:
    text = human(make_plan(noop_key(), before=2.4, after=2.4))
    assert "No changes. Infrastructure matches the configuration." in text
    assert "Cost: $2.40/h ($1,752.00/month)" in text
    assert "Plan:" not in text
    assert "ssh_keys.deploy" not in text


def test_orphans_section_warns_with_price_and_import_command() -> None:
    text = human(make_plan(noop_key(), orphans=(ghost_orphan(),)))
    assert "Warning: 1 live resource carries this state's marker but state does not track it" in text
    assert "instance 'ghost' (shadeform, id=sf-ghost): $19.92/h" in text
    assert "reconciler import instances.ghost sf-ghost" in text


def test_orphan_without_address_gets_a_suggested_one() -> None:
    orphan = Orphan("forward", Kind.VOLUME, "v-7", "scratch", None, None)
    text = human(make_plan(orphans=(orphan,)))
    command = "reconciler import volumes.scratch v-7  # use the address you give it in your configuration"
    assert command in text
    assert "price unknown" in text


def test_notes_listed_under_note() -> None:
    text = human(full_plan())
    assert "Note:\n  - instances.trainer was deleted outside reconciler" in text
    assert "Plan: 2 to add, 1 to change, 2 to destroy." in text
    assert "Cost: $3.50/h -> $6.40/h (+$2.90/h, +$2,117.00/month)" in text


def test_sensitive_values_masked_in_human_output() -> None:
    text = human(full_plan())
    assert SECRET not in text
    assert OLD_SECRET not in text
    assert re.search(r'^          \+ "HF_TOKEN" = \(sensitive\)$', text, re.M)
    assert re.search(r'^          ~ "HF_TOKEN" = \(sensitive\)$', text, re.M)


def test_whole_sensitive_container_is_masked() -> None:
    change = Change(
        Address(Kind.INSTANCE, "s"),
        Action.CREATE,
        "shadeform",
        None,
        {"name": "s", "envs": {"A": SECRET, "B": [SECRET]}},
        sensitive=("envs",),
    )
    plan = make_plan(change)
    text = human(plan)
    assert SECRET not in text
    assert re.search(r"^      \+ envs += \(sensitive\)$", text, re.M)
    doc = plan_to_json(plan)["resource_changes"][0]["change"]
    assert doc["after"]["envs"] is None
    assert doc["after_sensitive"] == {"envs": True}


# --- plan JSON ------------------------------------------------------------------------------


def test_plan_json_has_terraform_shape() -> None:
    doc = plan_to_json(full_plan())
    json.dumps(doc)
    assert doc["format_version"] == "1.2"
    assert isinstance(doc["reconciler_version"], str) and doc["reconciler_version"]
    assert doc["state"] == {"serial": 7, "lineage": "lineage-1"}
    assert doc["notes"] == ["instances.trainer was deleted outside reconciler"]
    assert doc["cost"] == {
        "hourly_before": 3.5,
        "hourly_after": 6.4,
        "hourly_delta": pytest.approx(2.9),
        "monthly_delta": pytest.approx(2117.0),
    }
    assert doc["orphans"][0]["import_command"] == "reconciler import instances.ghost sf-ghost"
    by_address = {rc["address"]: rc for rc in doc["resource_changes"]}
    assert set(by_address) == {
        "instances.trainer",
        "volumes.old",
        "instances.worker[2]",
        "instances.api",
        "ssh_keys.deploy",
    }
    worker = by_address["instances.worker[2]"]
    assert worker["type"] == "instances"
    assert worker["name"] == "worker"
    assert worker["index"] == 2
    assert worker["provider_name"] == "shadeform"
    assert worker["change"]["actions"] == ["delete", "create"]
    assert worker["change"]["after_unknown"] == {}
    assert worker["change"]["replace_paths"] == [["size_gb"], ["launch", "image"]]
    assert worker["action_reason"] == "replace_because_cannot_update"
    assert worker["cost"]["hourly_delta"] == pytest.approx(0.6)
    assert "index" not in by_address["instances.trainer"]
    assert by_address["instances.trainer"]["change"]["actions"] == ["create"]
    assert by_address["instances.trainer"]["change"]["before"] is None
    assert by_address["instances.trainer"]["change"]["before_sensitive"] is False
    assert by_address["volumes.old"]["change"]["actions"] == ["delete"]
    assert by_address["volumes.old"]["change"]["after"] is None
    assert by_address["volumes.old"]["action_reason"] == "delete_because_no_resource_config"
    assert by_address["volumes.old"]["id"] == "vol-9"
    assert by_address["instances.api"]["change"]["actions"] == ["update"]
    assert by_address["ssh_keys.deploy"]["change"]["actions"] == ["no-op"]
    assert "action_reason" not in by_address["instances.api"]


def test_plan_json_create_before_destroy_action_order() -> None:
    doc = plan_to_json(make_plan(replace_worker(create_before_destroy=True)))
    assert doc["resource_changes"][0]["change"]["actions"] == ["create", "delete"]


def test_plan_json_masks_sensitive_with_null_and_true() -> None:
    doc = plan_to_json(full_plan())
    text = json.dumps(doc)
    assert SECRET not in text
    assert OLD_SECRET not in text
    worker = next(rc for rc in doc["resource_changes"] if rc["address"] == "instances.worker[2]")
    change = worker["change"]
    assert change["before"]["envs"] == {"HF_TOKEN": None}
    assert change["after"]["envs"] == {"HF_TOKEN": None}
    assert change["before_sensitive"] == {"envs": {"HF_TOKEN": True}}
    assert change["after_sensitive"] == {"envs": {"HF_TOKEN": True}}
    assert change["after"]["size_gb"] == 500


def test_plan_json_masks_list_elements_and_uses_int_indexes() -> None:
    change = Change(
        Address(Kind.INSTANCE, "l"),
        Action.REPLACE,
        "shadeform",
        {"name": "l", "args": ["--a", OLD_SECRET]},
        {"name": "l", "args": ["--a", SECRET]},
        replace_paths=("args.1",),
        sensitive=("args.1",),
    )
    doc = plan_to_json(make_plan(change))["resource_changes"][0]
    assert doc["change"]["after"]["args"] == ["--a", None]
    assert doc["change"]["after_sensitive"] == {"args": [False, True]}
    assert doc["change"]["replace_paths"] == [["args", 1]]
    assert SECRET not in human(make_plan(change))


@pytest.mark.parametrize(
    ("action", "reason", "event_reason"),
    [
        (Action.CREATE, ActionReason.CREATE_BECAUSE_DELETED_OUTSIDE, "create_because_deleted_outside"),
        (Action.DELETE, ActionReason.DELETE_BECAUSE_NO_RESOURCE_CONFIG, "delete_because_no_resource_config"),
        (Action.REPLACE, ActionReason.REPLACE_BECAUSE_CANNOT_UPDATE, "cannot_update"),
        (Action.REPLACE, ActionReason.REPLACE_BECAUSE_TAINTED, "tainted"),
        (Action.REPLACE, ActionReason.REPLACE_BY_REQUEST, "requested"),
        (Action.UPDATE, None, None),
    ],
)
def test_plan_json_and_events_show_the_planners_reason_never_the_prose(
    action: Action, reason: ActionReason | None, event_reason: str | None
) -> None:
    # The prose says otherwise on purpose: the typed reason is what the views show.
    change = Change(
        Address(Kind.INSTANCE, "x"), action, "shadeform", {}, {}, reasons=("deleted outside, error",), reason=reason
    )
    entry = plan_to_json(make_plan(change))["resource_changes"][0]
    assert entry.get("action_reason") == (reason.value if reason else None)
    event = next(plan_events(make_plan(change), clock=fixed_clock))
    assert event["change"].get("reason") == event_reason


# --- events ---------------------------------------------------------------------------------


def fixed_clock() -> datetime:
    return datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_plan_events_sequence_and_envelope() -> None:
    events = list(plan_events(full_plan(), clock=fixed_clock))
    for event in events:
        assert {"@level", "@message", "@module", "@timestamp", "type"} <= set(event)
        assert event["@timestamp"] == "2030-01-02T03:04:05.000000+00:00"
        json.dumps(event)
    types = [e["type"] for e in events]
    assert types[:4] == ["planned_change"] * 4
    assert types[-2:] == ["change_summary", "cost"]
    first = events[0]
    assert first["@message"] == "volumes.old: Plan to delete"
    assert first["change"]["resource"]["addr"] == "volumes.old"
    assert first["change"]["reason"] == "delete_because_no_resource_config"
    replace = events[1]["change"]
    assert replace["action"] == "replace"
    assert replace["reason"] == "cannot_update"
    assert replace["resource"]["resource_key"] == 2
    warnings = [e for e in events if e["@level"] == "warn"]
    assert len(warnings) == 1
    assert warnings[0]["diagnostic"]["detail"] == "reconciler import instances.ghost sf-ghost"
    summary = events[-2]
    assert summary["changes"] == {"add": 2, "change": 1, "import": 0, "remove": 2, "operation": "plan"}
    assert events[-1]["cost"]["hourly_after"] == 6.4
    assert SECRET not in json.dumps(events)
    assert OLD_SECRET not in json.dumps(events)


def test_plan_events_no_changes() -> None:
    events = list(plan_events(make_plan(noop_key()), clock=fixed_clock))
    assert [e["type"] for e in events] == ["change_summary", "cost"]
    assert events[0]["@message"] == "No changes. Infrastructure matches the configuration."


# --- markdown -------------------------------------------------------------------------------


def test_markdown_table_destroys_first_then_summary() -> None:
    md = plan_summary_markdown(full_plan())
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `volumes.old` | destroy, **destroys data** | not in configuration | -$0.10/h |")
    assert rows[1].startswith("| `instances.worker[2]` | replace |")
    assert [r.split("|")[2].strip() for r in rows] == ["destroy, **destroys data**", "replace", "update", "create"]
    assert md.index("| `instances.trainer`") < md.index("**Plan: 2 to add, 1 to change, 2 to destroy.**")
    assert "Cost: $3.50/h -> $6.40/h (+$2.90/h, +$2,117.00/month)" in md
    assert "**Warning:** 1 live resource(s) ($19.92/h)" in md
    assert "instances.trainer was deleted outside reconciler" in md
    assert SECRET not in md
    assert OLD_SECRET not in md


def test_markdown_escapes_table_breaking_text() -> None:
    change = Change(
        Address(Kind.VOLUME, "v"),
        Action.DELETE,
        "shadeform",
        {"name": "v"},
        None,
        reasons=("a | b\nc <script>",),
    )
    md = plan_summary_markdown(make_plan(change))
    row = next(line for line in md.splitlines() if line.startswith("| `volumes.v`"))
    assert "a \\| b c &lt;script&gt;" in row
    assert row.count(" | ") == 3


def many_changes(count: int) -> Iterator[Change]:
    actions = (Action.CREATE, Action.DELETE, Action.UPDATE, Action.REPLACE)
    for i in range(count):
        yield Change(
            Address(Kind.INSTANCE, "w", i),
            actions[i % 4],
            "forward",
            {"name": f"w-{i}"},
            {"name": f"w-{i}"},
            reasons=("offering_id forces replacement",),
            hourly_after=1.5,
        )


def test_markdown_stays_under_limit_and_counts_unlisted_changes() -> None:
    plan = make_plan(*many_changes(50_000), after=75_000.0)
    md = plan_summary_markdown(plan)
    assert len(md) <= 65_000
    listed = [line for line in md.splitlines() if line.startswith("| `")]
    match = re.search(r"…and ([\d,]+) more changes not listed \(([^)]*)\)", md)
    assert match, md[-600:]
    remaining = int(match.group(1).replace(",", ""))
    assert len(listed) + remaining == 50_000
    by_action = {
        word: int(n.replace(",", "")) for n, word in re.findall(r"([\d,]+) to (\w+)", match.group(2))
    }
    assert sum(by_action.values()) == remaining
    listed_by_action = {w: sum(1 for r in listed if r.split("|")[2].strip() == w) for w in by_action}
    for word, count in by_action.items():
        assert listed_by_action[word] + count == 12_500
    assert "**Plan: 25000 to add, 12500 to change, 25000 to destroy.**" in md
    assert md.rstrip().endswith("/month)")


def test_markdown_small_limit_is_honoured_and_too_small_refused() -> None:
    plan = make_plan(*many_changes(500), notes=tuple(f"note {i} " * 30 for i in range(200)))
    md = plan_summary_markdown(plan, limit=3000)
    assert len(md) <= 3000
    assert "more note(s)" in md
    assert "more changes not listed" in md
    with pytest.raises(ValueError):
        plan_summary_markdown(plan, limit=100)


def test_markdown_no_changes() -> None:
    md = plan_summary_markdown(make_plan(noop_key(), before=1.0, after=1.0))
    assert "No changes. Infrastructure matches the configuration." in md
    assert "| Address |" not in md
    assert "Cost: $1.00/h ($730.00/month)" in md


# --- state table ----------------------------------------------------------------------------


def test_state_table_lists_resources_totals_and_pending() -> None:
    doc = StateDocument(
        serial=3,
        resources={
            "instances.trainer": ResourceState(
                provider="shadeform",
                kind="instances",
                id="sf-123",
                attributes={"name": "trainer", "region": "canada-1", "shade_instance_type": "A6000"},
                hourly_price=2.4,
            ),
            "volumes.data": ResourceState(
                provider="forward",
                kind="volumes",
                id="vol-1",
                attributes={"name": "data", "region": "us-east", "size_gb": 500},
                hourly_price=0.05,
            ),
        },
        pending=[
            PendingOperation(
                op="create",
                address="instances.spare",
                provider="forward",
                kind="instances",
                marker="rc-1234",
                name="spare--rc-1234",
                started_at="2030-01-01T00:00:00+00:00",
            )
        ],
    )
    out = console()
    render_state_table(doc, out)
    text = out.export_text()
    trainer = next(line for line in text.splitlines() if "instances.trainer" in line)
    for cell in ("shadeform", "sf-123", "active", "$2.40/h", "trainer", "canada-1", "A6000"):
        assert cell in trainer
    volume = next(line for line in text.splitlines() if "volumes.data" in line)
    assert "500 GB" in volume
    assert text.index("volumes.data") < text.index("instances.trainer")
    assert "2 resources, $2.45/h ($1,788.50/month)" in text
    assert "Warning: 1 pending operation from an interrupted run" in text
    assert "create instances.spare (forward, name 'spare--rc-1234', marker rc-1234" in text


def test_state_table_empty() -> None:
    out = console()
    render_state_table(StateDocument(), out)
    assert "No resources in state." in out.export_text()
    assert "Warning" not in out.export_text()


# --- apply progress -------------------------------------------------------------------------


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_apply_reporter_lines() -> None:
    out = console()
    clock = FakeMonotonic()
    reporter = ApplyReporter(out, clock=fixed_clock, monotonic=clock)
    reporter.started(create_trainer())
    reporter.waiting(Address(Kind.INSTANCE, "trainer"), Status.PENDING, 10)
    reporter.finished(create_trainer(), 3.4, "sf-new")
    reporter.started(delete_volume())
    reporter.finished(delete_volume(), 2, None)
    reporter.started(update_api())
    clock.now += 75
    reporter.failed(update_api(), "shadeform: 500 internal: boom\nrequest id r-1")
    reporter.summary(added=1, changed=0, destroyed=1, failed=1, not_started=2)
    reporter.summary(added=2, changed=0, destroyed=1, failed=0, not_started=0)
    lines = out.export_text().splitlines()
    assert lines == [
        "instances.trainer: Creating...",
        "instances.trainer: Still creating... [10s elapsed] (status: pending)",
        "instances.trainer: Creation complete after 3s [id=sf-new]",
        "volumes.old: Destroying... [id=vol-9]",
        "volumes.old: Destruction complete after 2s",
        "instances.api: Modifying... [id=sf-7]",
        "instances.api: Modification failed after 1m15s: shadeform: 500 internal: boom",
        "    request id r-1",
        "Apply failed: 1 failed, 2 not started; succeeded: 1 added, 0 changed, 1 destroyed.",
        "Apply complete! Resources: 2 added, 0 changed, 1 destroyed.",
    ]


def test_json_apply_reporter_emits_same_messages_as_events() -> None:
    stream = io.StringIO()
    reporter = JsonApplyReporter(stream, clock=fixed_clock, monotonic=FakeMonotonic())
    reporter.started(replace_worker())
    reporter.waiting("instances.worker[2]", "pending", 12)
    reporter.finished(replace_worker(), 30, "sf-456")
    reporter.failed(delete_volume(), "gone wrong")
    reporter.summary(1, 0, 1, 1, 0)
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["type"] for e in events] == [
        "apply_start",
        "apply_progress",
        "apply_complete",
        "apply_errored",
        "change_summary",
    ]
    assert events[0]["@message"] == "instances.worker[2]: Replacing... [id=sf-123]"
    assert events[0]["hook"]["resource"]["resource_key"] == 2
    assert events[1]["@message"] == "instances.worker[2]: Still replacing... [12s elapsed] (status: pending)"
    assert events[1]["hook"]["elapsed_seconds"] == 12
    assert events[2]["hook"]["id_value"] == "sf-456"
    assert events[3]["@level"] == "error"
    assert events[3]["hook"]["error"] == "gone wrong"
    assert events[4]["changes"]["failed"] == 1
    assert events[4]["@message"].startswith("Apply failed:")
    assert all(e["@timestamp"] == "2030-01-02T03:04:05.000000+00:00" for e in events)


async def test_apply_reporter_from_concurrent_tasks_prints_whole_lines() -> None:
    out = console()
    reporter = ApplyReporter(out)

    def change(i: int) -> Change:
        return Change(Address(Kind.INSTANCE, "w", i), Action.CREATE, "forward", None, {"name": f"w-{i}"})

    all_started = asyncio.Event()
    started = 0

    async def step(i: int) -> None:
        nonlocal started
        reporter.started(change(i))
        started += 1
        if started == 30:
            all_started.set()
        await all_started.wait()
        reporter.waiting(change(i).address, Status.PENDING, i)
        await asyncio.sleep(0)
        reporter.finished(change(i), i, f"id-{i}")

    await asyncio.gather(*(step(i) for i in range(30)))
    lines = out.export_text().splitlines()
    assert len(lines) == 90
    patterns = [
        re.compile(r"instances\.w\[\d+\]: Creating\.\.\."),
        re.compile(r"instances\.w\[(\d+)\]: Still creating\.\.\. \[\1s elapsed\] \(status: pending\)"),
        re.compile(r"instances\.w\[(\d+)\]: Creation complete after \1s \[id=id-\1\]"),
    ]
    assert all(any(p.fullmatch(line) for p in patterns) for line in lines)
    assert lines[:30] == [f"instances.w[{i}]: Creating..." for i in range(30)]


def test_apply_phases_read_like_terraform_replace_steps() -> None:
    out = console()
    clock = FakeMonotonic()
    reporter = ApplyReporter(out, clock=fixed_clock, monotonic=clock)
    worker = replace_worker()
    reporter.started(worker, phase="delete")
    reporter.finished(worker, 4, None, phase="delete")
    reporter.started(worker, phase="create")
    reporter.waiting(worker, "pending", 20)
    reporter.finished(worker, 61, "sf-new", phase="create")
    assert out.export_text().splitlines() == [
        "instances.worker[2]: Destroying... [id=sf-123]",
        "instances.worker[2]: Destruction complete after 4s",
        "instances.worker[2]: Creating...",
        "instances.worker[2]: Still creating... [20s elapsed] (status: pending)",
        "instances.worker[2]: Creation complete after 1m1s [id=sf-new]",
    ]
    with pytest.raises(ValueError, match="unknown apply phase"):
        reporter.started(worker, phase="explode")


def deposed_delete() -> Change:
    return Change(
        address=Address(Kind.INSTANCE, "worker", 2),
        action=Action.DELETE,
        provider="shadeform",
        before={"name": "worker-2", "size_gb": 100},
        after=None,
        reasons=("old object left by create_before_destroy",),
        id="sf-old",
        deposed="sf-old",
        hourly_before=2.4,
    )


def test_deposed_object_is_named_in_every_output() -> None:
    plan = make_plan(deposed_delete(), before=2.4)
    text = human(plan)
    assert "  # instances.worker[2] (deposed object sf-old) will be destroyed" in text
    assert "  # (old object left by create_before_destroy)" in text
    entry = plan_to_json(plan)["resource_changes"][0]
    assert entry["deposed"] == "sf-old"
    assert entry["change"]["actions"] == ["delete"]
    assert "action_reason" not in entry
    assert "| `instances.worker[2] (deposed object sf-old)` | destroy |" in plan_summary_markdown(plan)
    first = next(plan_events(plan, clock=fixed_clock))
    assert first["@message"] == "instances.worker[2] (deposed object sf-old): Plan to delete"
    assert first["change"]["deposed"] == "sf-old"

    out = console()
    reporter = ApplyReporter(out, clock=fixed_clock, monotonic=FakeMonotonic())
    reporter.started(deposed_delete(), phase="delete")
    reporter.finished(deposed_delete(), 2, None, phase="delete")
    assert out.export_text().splitlines() == [
        "instances.worker[2] (deposed object sf-old): Destroying... [id=sf-old]",
        "instances.worker[2] (deposed object sf-old): Destruction complete after 2s",
    ]


def test_destroy_mode_delete_has_no_action_reason() -> None:
    volume = Address(Kind.VOLUME, "v")
    change = Change(volume, Action.DELETE, "shadeform", {"name": "v"}, None, reasons=("destroy requested",))
    assert "action_reason" not in plan_to_json(make_plan(change))["resource_changes"][0]


def test_state_table_lists_deposed_objects_in_totals() -> None:
    doc = StateDocument(
        resources={
            "instances.w": ResourceState(provider="forward", kind="instances", id="new-1", hourly_price=3.0),
        },
        deposed=[
            DeposedResource(
                address="instances.w", provider="forward", kind="instances", id="old-1", hourly_price=2.0
            )
        ],
    )
    out = console()
    render_state_table(doc, out)
    text = out.export_text()
    assert "instances.w (deposed)" in text
    assert "old-1" in text
    assert "2 resources (1 deposed), $5.00/h ($3,650.00/month)" in text


def test_apply_observer_from_cli_factory_reports_result() -> None:
    out = console()
    observer: ApplyObserver = make_apply_observer(out, as_json=False)
    observer.step_started(create_trainer(), "create")
    observer.waiting(create_trainer(), "pending", 10.0)
    observer.step_failed(create_trainer(), "create", "capacity gone")
    assert isinstance(observer, ReportingApplyObserver)
    observer.summary(ApplyResult(state=StateDocument(), not_started=["instances.x"], interrupted=True))
    lines = out.export_text().splitlines()
    assert lines[0] == "instances.trainer: Creating..."
    assert lines[1] == "instances.trainer: Still creating... [10s elapsed] (status: pending)"
    assert lines[2].startswith("instances.trainer: Creation failed after ")
    assert lines[2].endswith(": capacity gone")
    summary = "Apply interrupted: 0 failed, 1 not started; succeeded: 0 added, 0 changed, 0 destroyed."
    assert lines[3] == summary


def test_json_apply_observer_writes_to_the_console_stream() -> None:
    stream = io.StringIO()
    observer = make_apply_observer(Console(file=stream), as_json=True)
    observer.step_started(delete_volume(), "delete")
    observer.step_finished(delete_volume(), "delete", 1.0, None)
    observer.summary(ApplyResult(state=StateDocument(), destroyed=1))
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["type"] for e in events] == ["apply_start", "apply_complete", "change_summary"]
    assert events[-1]["@message"] == "Apply complete! Resources: 0 added, 0 changed, 1 destroyed."


def test_secret_kept_as_digest_in_state_is_not_shown_as_changed() -> None:
    plan_lineage = "lineage-1"
    paths = ("envs.HF_TOKEN",)
    before = mask_sensitive({"name": "api", "envs": {"HF_TOKEN": SECRET}}, paths, plan_lineage)
    after = {"name": "api-v2", "envs": {"HF_TOKEN": SECRET}}
    change = Change(
        Address(Kind.INSTANCE, "api"),
        Action.UPDATE,
        "shadeform",
        before=before,
        after=after,
        id="sf-7",
        sensitive=paths,
        masked_after=mask_sensitive(after, paths, plan_lineage),  # as the planner hands it over
    )
    text = human(make_plan(change))
    assert "HF_TOKEN" not in text
    assert "        # (1 unchanged attribute hidden)" in text
    rotated_after = {"name": "api-v2", "envs": {"HF_TOKEN": "hf_rotated_999"}}
    rotated = dataclasses.replace(
        change, after=rotated_after, masked_after=mask_sensitive(rotated_after, paths, plan_lineage)
    )
    text = human(make_plan(rotated))
    assert re.search(r'^          ~ "HF_TOKEN" = \(sensitive\)$', text, re.M)
    assert "hf_rotated_999" not in text
    assert "sha256:" not in text


# --- data loss and key display -------------------------------------------------------


def replace_volume() -> Change:
    return Change(
        address=Address(Kind.VOLUME, "data"),
        action=Action.REPLACE,
        provider="shadeform",
        before={"name": "data", "size_gb": 100, "region": "canada-1", "cloud": "hyperstack"},
        after={"name": "data", "size_gb": 200, "region": "canada-1", "cloud": "hyperstack"},
        reasons=("size_gb forces replacement",),
        replace_paths=("size_gb",),
        id="vol-1",
    )


def test_replacing_or_deleting_a_volume_is_marked_as_destroying_data_in_text_and_json() -> None:
    plan = make_plan(replace_volume(), delete_volume(), replace_worker())
    text = human(plan)
    assert "  # volumes.data must be replaced (destroys data)\n" in text
    assert "  # volumes.old will be destroyed (destroys data)\n" in text
    assert "worker[2] must be replaced\n" in text
    changes = {c["address"]: c for c in plan_to_json(plan)["resource_changes"]}
    assert changes["volumes.data"]["destroys_data"] is True
    assert changes["volumes.old"]["destroys_data"] is True
    assert changes["instances.worker[2]"]["destroys_data"] is False


def test_a_public_key_is_shown_by_fingerprint_never_in_full() -> None:
    blob = "AAAAC3NzaC1lZDI1NTE5AAAAIAcUIS47SFVib3yJlqOwvcrX5PH+CxglMj9MWWZzgI2a"
    key = f"ssh-ed25519 {blob} me@laptop"
    change = Change(
        address=Address(Kind.SSH_KEY, "deploy"),
        action=Action.CREATE,
        provider="shadeform",
        before=None,
        after={"name": "deploy", "public_key": key},
    )
    text = human(make_plan(change))
    assert blob not in text
    assert re.search(r'public_key = "ssh-ed25519 SHA256:[A-Za-z0-9+/]{43} me@laptop"', text), text
