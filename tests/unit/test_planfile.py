"""Saved plans carry a SHA-256 of their content: any change to what they say is refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import PlanError
from reconciler.model import Action, ActionReason, Address, Change, CostSummary, Kind, Plan
from reconciler.planfile import DIGEST_FIELD, read_plan_file, write_plan_file

PLAN = Plan(
    changes=(
        Change(
            address=Address(Kind.INSTANCE, "trainer"),
            action=Action.CREATE,
            provider="shadeform",
            before=None,
            after={"name": "trainer", "shade_instance_type": "A6000", "cloud": "lambdalabs"},
            hourly_after=0.8,
            reason=ActionReason.CREATE_BECAUSE_DELETED_OUTSIDE,
        ),
        Change(
            address=Address(Kind.SSH_KEY, "deploy"),
            action=Action.NOOP,
            provider="shadeform",
            before={"name": "deploy"},
            after={"name": "deploy"},
            id="key-1",
        ),
    ),
    state_serial=4,
    state_lineage="5d1e3c0a-8b7f-4e2a-9c61-2f4b8d0e7a13",
    cost=CostSummary(0.0, 0.8),
)


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "plan.bin"
    write_plan_file(path, PLAN, "stack")
    return path


def edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    change(document)
    path.write_text(json.dumps(document, indent=1), encoding="utf-8")


def test_a_saved_plan_reads_back_as_it_was_made(saved: Path) -> None:
    assert read_plan_file(saved) == (PLAN, "stack")


def test_the_typed_reason_reads_back_as_the_enum(saved: Path) -> None:
    plan, _ = read_plan_file(saved)
    assert plan.changes[0].reason is ActionReason.CREATE_BECAUSE_DELETED_OUTSIDE
    assert plan.changes[1].reason is None


def test_reformatting_is_not_a_change(saved: Path) -> None:
    document = json.loads(saved.read_text(encoding="utf-8"))
    saved.write_text(json.dumps(dict(reversed(list(document.items())))), encoding="utf-8")
    assert read_plan_file(saved) == (PLAN, "stack")


def _set_type(d: dict[str, Any]) -> None:
    d["changes"][0]["after"]["shade_instance_type"] = "H100"


def _drop_change(d: dict[str, Any]) -> None:
    d["changes"].pop(1)


def _noop_to_delete(d: dict[str, Any]) -> None:
    d["changes"][1]["action"] = "delete"


def _newer_serial(d: dict[str, Any]) -> None:
    d["state"]["serial"] = 5


def _cheaper(d: dict[str, Any]) -> None:
    d["cost"]["hourly_after"] = 0.1


def _new_field(d: dict[str, Any]) -> None:
    d["changes"][0]["after"]["envs"] = {"EXTRA": "1"}


@pytest.mark.parametrize(
    "change",
    [_set_type, _drop_change, _noop_to_delete, _newer_serial, _cheaper, _new_field],
    ids=lambda f: f.__name__.strip("_"),
)
def test_any_change_to_the_content_is_refused(saved: Path, change: Callable[[dict[str, Any]], None]) -> None:
    edit(saved, change)
    with pytest.raises(
        PlanError, match="was changed after it was saved: its content no longer matches its sha256"
    ):
        read_plan_file(saved)


def test_a_recomputed_or_missing_digest_is_refused(saved: Path) -> None:
    edit(saved, lambda d: d.update({DIGEST_FIELD: "0" * 64}))
    with pytest.raises(PlanError, match="was changed after it was saved"):
        read_plan_file(saved)
    edit(saved, lambda d: d.pop(DIGEST_FIELD))
    with pytest.raises(PlanError, match="is a damaged plan file: it carries no sha256 integrity digest"):
        read_plan_file(saved)


def test_a_key_written_twice_is_refused(saved: Path) -> None:
    text = saved.read_text(encoding="utf-8")
    # The later key wins in json: same-valued duplicate that a digest over parsed data would miss.
    saved.write_text(text.replace('"format": ', '"config_name": "stack",\n "format": ', 1), encoding="utf-8")
    with pytest.raises(PlanError, match="a key appears twice in one object"):
        read_plan_file(saved)
