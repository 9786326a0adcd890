"""Damaged state documents are refused with the entry and a fix; sound ones, extra fields and all, are read."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from reconciler.errors import StateError
from reconciler.state.validation import DamagedStateError, parse_state_text, repairable_by_removal

LINEAGE = "5d1e3c0a-8b7f-4e2a-9c61-2f4b8d0e7a13"


def resource(kind: str, id: str, provider: str = "shadeform", **extra: Any) -> dict[str, Any]:
    return {"provider": provider, "kind": kind, "id": id, "attributes": {}, "depends_on": [], **extra}


def pending(**fields: Any) -> dict[str, Any]:
    record = {
        "op": "create",
        "address": "instances.worker",
        "provider": "shadeform",
        "kind": "instances",
        "marker": "rc-5d1e3c0a-000002",
        "name": "worker",
    }
    return {**record, **fields}


SOUND: dict[str, Any] = {
    "version": 1,
    "serial": 3,
    "lineage": LINEAGE,
    "resources": {
        "ssh_keys.deploy": resource("ssh_keys", "key-1"),
        "instances.trainer": resource("instances", "inst-1", depends_on=["ssh_keys.deploy"]),
    },
    "deposed": [],
    "pending": [],
}


def damaged(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(SOUND)
    for key, value in changes.items():
        if key == "extra_resources":
            doc["resources"].update(value)
        else:
            doc[key] = value
    return doc


def refusal(doc: dict[str, Any] | str) -> DamagedStateError:
    text = doc if isinstance(doc, str) else json.dumps(doc, indent=2)
    with pytest.raises(DamagedStateError) as caught:
        parse_state_text(text, "state/stack.json", "the previous version is kept in state/stack.json.backup")
    return caught.value


CASES = {
    "unknown-kind": (
        damaged(extra_resources={"gpus.big": resource("gpus", "g-1")}),
        ('resources["gpus.big"]', "unknown kind 'gpus'", "reconciler state rm gpus.big"),
    ),
    "malformed-address": (
        damaged(extra_resources={"instances..x[": resource("instances", "inst-9")}),
        ('resources["instances..x["]', "is not a resource address", "reconciler state rm 'instances..x['"),
    ),
    "address-not-canonical": (
        damaged(extra_resources={"instances.w[01]": resource("instances", "inst-9")}),
        ("instances.w[01]", "rename the key to instances.w[1]"),
    ),
    "kind-does-not-match-address": (
        damaged(extra_resources={"volumes.data": resource("instances", "inst-9")}),
        ('resources["volumes.data"]', "kind 'instances' does not match the address's kind 'volumes'"),
    ),
    "unknown-provider": (
        damaged(extra_resources={"volumes.data": resource("volumes", "v-1", provider="aws")}),
        ("unknown provider 'aws'",),
    ),
    "negative-serial": (
        damaged(serial=-1),
        ("serial: Input should be greater than or equal to 0", "whole number"),
    ),
    "string-serial": (damaged(serial="7"), ("serial: Input should be a valid integer", '(got "7")')),
    "fractional-serial": (damaged(serial=2.5), ("serial:",)),
    "boolean-serial": (damaged(serial=True), ("serial: Input should be a valid integer",)),
    "string-version": (damaged(version="1"), ("version: Input should be a valid integer",)),
    "wrong-type-id": (
        damaged(extra_resources={"volumes.data": resource("volumes", 42)}),  # type: ignore[arg-type]
        ('resources["volumes.data"].id: Input should be a valid string',),
    ),
    "resources-not-a-map": (damaged(resources=[]), ("resources: Input should be a valid dictionary",)),
    "one-id-under-two-addresses": (
        damaged(extra_resources={"instances.twin": resource("instances", "inst-1")}),
        (
            'resources["instances.twin"]',
            "shadeform instances id inst-1 is also recorded under instances.trainer",
            "reconciler state rm ADDRESS",
            "reconciler import ADDRESS ID",
        ),
    ),
    "deposed-id-also-current": (
        damaged(deposed=[{**resource("instances", "inst-1"), "address": "instances.old"}]),
        ("deposed instances.old", "also recorded under instances.trainer"),
    ),
    "dependency-not-an-address": (
        damaged(extra_resources={"volumes.data": resource("volumes", "v-1", depends_on=["nowhere"])}),
        ('resources["volumes.data"].depends_on', "'nowhere' is not a resource address"),
    ),
    "pending-missing-fields": (
        damaged(pending=[{"op": "create", "address": "instances.worker"}]),
        (
            "pending[0].provider: Field required",
            "pending[0].marker: Field required",
            "may be running and billing",
        ),
    ),
    "pending-unknown-op": (damaged(pending=[pending(op="explode")]), ("pending[0].op",)),
    "pending-bad-address": (damaged(pending=[pending(address="worker")]), ("pending[0] (create of worker)",)),
    "pending-kind-mismatch": (damaged(pending=[pending(kind="volumes")]), ("pending[0]", "kind 'volumes'")),
    "pending-time-not-a-time": (
        damaged(pending=[pending(started_at="yesterday")]),
        ("pending[0] (create of instances.worker).started_at: 'yesterday' is not an ISO 8601 time",),
    ),
    "pending-time-without-offset": (
        damaged(pending=[pending(started_at="2026-12-01T20:00:00")]),
        ("with a UTC offset",),
    ),
    "pending-delete-without-id": (
        damaged(pending=[pending(op="delete")]),
        ("pending[0] (delete of instances.worker)", "without the id"),
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_damaged_documents_are_refused_naming_the_entry_and_a_fix(case: str) -> None:
    doc, fragments = CASES[case]
    error = str(refusal(doc))
    assert error.startswith("state state/stack.json is damaged (")
    assert "left untouched" in error
    assert "state/stack.json.backup" in error
    for fragment in fragments:
        assert fragment in error, f"{fragment!r} not in:\n{error}"


def test_duplicate_json_keys_are_refused_with_their_line() -> None:
    text = json.dumps(SOUND, indent=2)
    twin = '"instances.trainer": {"provider": "shadeform", "kind": "instances", "id": "inst-2"},\n    '
    text = text.replace('"ssh_keys.deploy"', twin + '"ssh_keys.deploy"', 1)
    line = text[: text.rindex('"instances.trainer"')].count("\n") + 1
    error = str(refusal(text))
    assert f'key "instances.trainer": appears twice in one object (again at line {line})' in error


def test_every_problem_is_listed_and_a_long_list_is_cut() -> None:
    many = {f"gpus.g{i}": resource("gpus", f"g-{i}") for i in range(15)}
    error = refusal(damaged(extra_resources=many))
    assert len(error.problems) == 15
    assert str(error).startswith("state state/stack.json is damaged (15 problems)")
    assert 'resources["gpus.g9"]' in str(error) and 'resources["gpus.g10"]' not in str(error)
    assert "... and 5 more" in str(error)


def test_unknown_extra_fields_are_kept_not_refused() -> None:
    doc = damaged(
        written_by="a newer tool", extra_resources={"volumes.data": resource("volumes", "v-1", note="x")}
    )
    doc["pending"] = [pending(retries=2, started_at="2026-12-01T20:00:00+00:00")]
    parsed = parse_state_text(json.dumps(doc), "state/stack.json", "")
    assert parsed.model_extra == {"written_by": "a newer tool"}
    assert parsed.resources["volumes.data"].model_extra == {"note": "x"}
    assert parsed.pending[0].model_extra == {"retries": 2}


def test_the_same_id_under_two_providers_or_kinds_is_not_a_duplicate() -> None:
    doc = damaged(
        extra_resources={
            "volumes.data": resource("volumes", "inst-1"),
            "instances.spot": resource("instances", "inst-1", provider="forward"),
        }
    )
    assert set(parse_state_text(json.dumps(doc), "s", "").resources) == {
        *SOUND["resources"],
        "volumes.data",
        "instances.spot",
    }


def test_corrupt_json_and_newer_versions_stay_plain_state_errors() -> None:
    with pytest.raises(StateError, match=r"is not valid JSON \(line 1"):
        parse_state_text('{"serial": ', "s", "r")
    with pytest.raises(StateError, match="newer than this reconciler knows"):
        parse_state_text(json.dumps(damaged(version=9)), "s", "r")


def test_removing_the_damaged_entries_is_a_repair_removing_others_is_not() -> None:
    error = refusal(damaged(extra_resources={"instances.twin": resource("instances", "inst-1")}))
    for address in ("instances.twin", "instances.trainer"):
        assert "instances.twin" in repairable_by_removal(error, (address,)).resources
    with pytest.raises(DamagedStateError):
        repairable_by_removal(error, ("ssh_keys.deploy",))
    shape = refusal(damaged(serial="7"))
    with pytest.raises(DamagedStateError):
        repairable_by_removal(shape, ("instances.trainer",))
