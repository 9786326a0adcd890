"""A damaged state file is refused by every command that would act on it: exit 1, the file and
the entry named with a fix, the file's bytes unchanged, no API call. `state rm` repairs what it
names, and a destroy never acts on one object recorded under two addresses.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from lifecycle_support import Project, RequestRecorder, run_cli
from psycopg import sql
from psycopg.types.json import Jsonb
from team_state_support import KEY_ONLY_CONFIG, TeamProject, team_database

pytest_plugins = ["lifecycle_support"]

LINEAGE = "5d1e3c0a-8b7f-4e2a-9c61-2f4b8d0e7a13"
KEY = {"provider": "shadeform", "kind": "ssh_keys", "id": "key-1", "attributes": {"name": "deploy"}}
STATE: dict[str, Any] = {
    "version": 1,
    "serial": 3,
    "lineage": LINEAGE,
    "resources": {"ssh_keys.deploy": KEY},
    "deposed": [],
    "pending": [],
}


def config(endpoint: str) -> str:
    return f"""providers:
  shadeform:
    endpoint: {endpoint}
    api_key: recorder-key
ssh_keys:
  - name: deploy
    provider: shadeform
    public_key: ${{file:deploy.pub}}
instances:
  - name: a
    provider: shadeform
    cloud: lambdalabs
    region: us-east-1
    shade_instance_type: A6000
    ssh_key: deploy
  - name: b
    provider: shadeform
    cloud: lambdalabs
    region: us-east-1
    shade_instance_type: A6000
    ssh_key: deploy
"""


def with_changes(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(STATE)
    doc["resources"].update(changes.pop("resources", {}))
    doc.update(changes)
    return doc


INSTANCE = {"provider": "shadeform", "kind": "instances", "attributes": {}}
DAMAGED = {
    "unknown-kind": (
        json.dumps(with_changes(resources={"gpus.big": {**INSTANCE, "kind": "gpus", "id": "g-1"}}), indent=2),
        ("resources[\"gpus.big\"]: unknown kind 'gpus'", "reconciler state rm gpus.big"),
    ),
    "malformed-address": (
        json.dumps(with_changes(resources={"instances.a[x]": {**INSTANCE, "id": "i-1"}}), indent=2),
        ('resources["instances.a[x]"]', "is not a resource address"),
    ),
    "negative-serial": (json.dumps(with_changes(serial=-4), indent=2), ("serial: Input should be greater",)),
    "text-serial": (
        json.dumps(with_changes(serial="3"), indent=2),
        ('serial: Input should be a valid integer (got "3")',),
    ),
    "one-id-two-addresses": (
        json.dumps(
            with_changes(
                resources={"instances.a": {**INSTANCE, "id": "i-1"}, "instances.b": {**INSTANCE, "id": "i-1"}}
            ),
            indent=2,
        ),
        (
            'resources["instances.b"]',
            "id i-1 is also recorded under instances.a",
            "reconciler state rm ADDRESS",
        ),
    ),
    "duplicate-json-key": (
        json.dumps(with_changes(resources={"instances.a": {**INSTANCE, "id": "i-1"}}), indent=2).replace(
            '"instances.a": {',
            '"instances.a": {"provider": "shadeform", "kind": "instances", "id": "i-2"},\n'
            '    "instances.a": {',
        ),
        ('key "instances.a": appears twice in one object (again at line',),
    ),
    "pending-does-not-parse": (
        json.dumps(
            with_changes(pending=[{"op": "create", "address": "instances.a", "started_at": 5}]), indent=2
        ),
        ("pending[0].provider: Field required", "pending[0].started_at: Input should be a valid string"),
    ),
}


@pytest.fixture
def stack(project: Project, recorder: RequestRecorder) -> Project:
    project.write(config(recorder.url))
    project.state_dir.mkdir()
    return project


def refused(
    project: Project, recorder: RequestRecorder, args: tuple[str, ...], cwd: Path | None = None
) -> str:
    before = project.files()
    if cwd is None:
        result = project.run(*args, expect=1)
    else:
        result = run_cli(args, cwd, expect=1)
    assert result.stderr.startswith("Error:"), result.describe()
    assert "Traceback" not in result.output and "unexpected" not in result.output, result.describe()
    assert project.files() == before, "the state directory changed"
    assert recorder.requests == [], f"API calls were made: {recorder.requests}"
    return result.stderr


@pytest.mark.parametrize("case", DAMAGED, ids=list(DAMAGED))
def test_damaged_state_is_refused_by_every_command_and_left_byte_for_byte(
    stack: Project, recorder: RequestRecorder, case: str, tmp_path: Path
) -> None:
    text, fragments = DAMAGED[case]
    stack.state_path.write_text(text, encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    runs: list[tuple[tuple[str, ...], Path | None]] = [
        (("plan",), None),
        (("apply", "--auto-approve"), None),
        (("destroy", "--auto-approve", "-f", str(stack.root)), elsewhere),
        (("refresh", "-f", str(stack.root)), elsewhere),
        (("state", "list"), None),
    ]
    for args, cwd in runs:
        error = refused(stack, recorder, args, cwd)
        assert f"{stack.state_path.name} is damaged (" in error and "left untouched" in error, error
        assert "hint: the previous version is kept in" in error, error
        for fragment in fragments:
            assert fragment in error, f"{args}: {fragment!r} not in:\n{error}"


def test_state_rm_repairs_an_entry_it_names_and_nothing_else(
    stack: Project, recorder: RequestRecorder
) -> None:
    doc = with_changes(resources={"gpus.big": {**INSTANCE, "kind": "gpus", "id": "g-1"}})
    doc["resources"]["instances.b"] = {**INSTANCE, "kind": "volumes", "id": "v-1"}
    stack.state_path.write_text(json.dumps(doc), encoding="utf-8")
    error = refused(stack, recorder, ("state", "rm", "gpus.big"))
    assert "resources[\"instances.b\"]: kind 'volumes' does not match" in error

    result = stack.run("state", "rm", "gpus.big", "instances.b")
    assert (
        "Removed from state (still running at the provider): gpus.big (g-1), instances.b (v-1)"
        in result.stdout
    )
    assert set(stack.state()["resources"]) == {"ssh_keys.deploy"}
    assert stack.serial() == 4
    assert recorder.requests == []


SHADEFORM_CONFIG = config("embedded").replace("    api_key: recorder-key\n", "")


def test_one_instance_under_two_addresses_is_never_destroyed_twice(project: Project) -> None:
    """Today a destroy deletes the shared id twice and leaves the other instance billing."""
    project.write(SHADEFORM_CONFIG)
    project.run("apply", "--auto-approve")
    doc = project.state()
    real_b = doc["resources"]["instances.b"]["id"]
    doc["resources"]["instances.b"]["id"] = doc["resources"]["instances.a"]["id"]
    project.state_path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    before = project.files()

    result = project.run("destroy", "--auto-approve", expect=1)
    assert "is also recorded under instances.a" in result.stderr, result.describe()
    assert project.files() == before
    assert len(project.live()) == 3

    project.run("state", "rm", "instances.b")
    project.run("import", "instances.b", real_b)
    assert "No changes" in project.run("plan").stdout
    project.run("destroy", "--auto-approve")
    assert project.live() == []


def test_a_damaged_postgres_stack_is_refused_untouched_and_repaired_by_state_rm(tmp_path: Path) -> None:
    with team_database() as database:
        team = TeamProject.create(tmp_path, database, KEY_ONLY_CONFIG)
        team.run("apply", "--auto-approve")
        stored = team.stored()
        stored["resources"]["ssh_keys.twin"] = dict(stored["resources"]["ssh_keys.deploy"])
        database.admin.execute(
            sql.SQL("UPDATE {} SET document = %s WHERE stack = %s").format(
                sql.Identifier(database.schema, "states")
            ),
            (Jsonb(stored), team.stack),
        )
        for args in (("destroy", "--auto-approve"), ("plan",), ("state", "list")):
            result = team.run(*args, expect=1)
            assert (
                f"(stack {team.stack}, schema {database.schema}) is damaged (1 problem)" in result.stderr
            ), result.describe()
            # jsonb orders keys its own way: either address may be named first.
            assert re.search(
                r"ssh_keys\.(twin|deploy)\"\]: shadeform ssh_keys id \S+ is also recorded under ssh_keys\.",
                result.stderr,
            )
            assert "reconciler state history" in result.stderr
            assert team.stored() == stored
        assert [entry.deleted_at for entry in team.ledger()] == [None]

        team.run("state", "rm", "ssh_keys.twin")
        team.run("destroy", "--auto-approve")
        assert all(entry.deleted_at is not None for entry in team.ledger())
        team.assert_secrets_never_shown()


def test_state_push_force_replaces_a_damaged_state_and_keeps_it_as_the_backup(
    stack: Project, recorder: RequestRecorder
) -> None:
    damaged_text = json.dumps(with_changes(serial="3"))
    stack.state_path.write_text(damaged_text, encoding="utf-8")
    fixed = stack.root / "fixed.json"
    fixed.write_text(json.dumps(STATE), encoding="utf-8")
    error = refused(stack, recorder, ("state", "push", "fixed.json"))
    assert 'serial: Input should be a valid integer (got "3")' in error

    result = stack.run("state", "push", "--force", "fixed.json")
    assert "replacing its damaged state" in result.stdout, result.describe()
    assert stack.resource_id("ssh_keys.deploy") == "key-1" and stack.serial() == 3
    backup = stack.state_path.with_name(stack.state_path.name + ".backup")
    assert backup.read_text(encoding="utf-8") == damaged_text
    assert stack.run("state", "list").stdout == "ssh_keys.deploy\n"
    assert recorder.requests == []
