"""Team state in PostgreSQL through the CLI, the way laptops and CI jobs share one stack:
apply and inspect, stacks, concurrent runs, a run killed holding the lock, serial and lineage
conflicts, pull/push, migration from a local file, a database that is down, and the URL's
password kept out of every output, file and stored row."""

from __future__ import annotations

import contextlib
import getpass
import json
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from team_state_support import (
    KEY_ONLY_CONFIG,
    SHADEFORM_CONFIG,
    RunningCli,
    TeamDatabase,
    TeamProject,
    ledger_names,
    team_database,
    unreachable_url,
    wait_until,
)

from reconciler.state.postgres import PostgresStateBackend

ADDRESSES = ["ssh_keys.deploy", "volumes.datasets", "instances.trainer"]
RESOURCE_NAMES = ["datasets", "deploy", "trainer"]
SLOW_INSTANCE_CREATE = {"RECONCILER_EMULATOR_FAULTS": "shadeform.instances.create=latency:3"}
HISTORY_ROW = re.compile(r"^\W*(\d+)\W+([0-9a-f-]{36})\W+(\S+)\W+(\S+@\S+?)\W*$")
HOLDER = re.compile(
    r"is locked: ID (?P<id>[0-9a-f-]{36}), held by (?P<who>\S+)@(?P<host>\S+) \(pid (?P<pid>\d+)\) "
    r"for '(?P<operation>[^']+)' since (?P<since>\S+)"
)


@pytest.fixture
def database() -> Iterator[TeamDatabase]:
    with team_database() as fresh:
        yield fresh


def this_user_at_host() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def assert_converged(project: TeamProject) -> None:
    """A plan shows no changes and every declared resource exists exactly once, still running."""
    plan = project.run("plan", "--detailed-exitcode")
    assert "No changes" in plan.stdout, plan.describe()
    ledger = project.ledger()
    assert ledger_names(ledger) == RESOURCE_NAMES, ledger
    assert all(entry.deleted_at is None for entry in ledger), ledger
    assert sorted(project.stored()["resources"]) == sorted(ADDRESSES)
    assert project.stored()["pending"] == []


def seed_then_declare_everything(project: TeamProject) -> None:
    """A stored state to hold the row lock of: the key applied, then the volume and instance declared."""
    project.configure(KEY_ONLY_CONFIG)
    project.run("apply", "--auto-approve")
    project.configure(SHADEFORM_CONFIG)


@contextlib.contextmanager
def apply_stalled_after_the_instance_create(project: TeamProject, app: str) -> Iterator[RunningCli]:
    """An apply whose instance create went through, stuck recording the answer for as long as the block runs.

    The emulator answers the create after 3 s; meanwhile the test sees the pending create the run
    recorded first, and holds the state row so that the write of the answer waits.
    """
    run = project.start("apply", "--auto-approve", app=app, env=SLOW_INSTANCE_CREATE)
    wait_until(
        lambda: any(op["address"] == "instances.trainer" for op in project.stored()["pending"]),
        "the apply to record its pending instance create",
    )
    with project.database.hold_state_row(project.stack):
        wait_until(lambda: bool(project.database.sessions(app, waiting_on_lock=True)), "the apply to record the create")
        yield run


def test_apply_then_inspect_the_state_in_postgres(tmp_path: Path, database: TeamDatabase) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    project = TeamProject.create(tmp_path, database)

    apply = project.run("apply", "--auto-approve")
    assert "Apply complete! Resources: 3 added" in apply.stdout, apply.describe()
    assert_converged(project)
    # The state lives in the database only: no local state file beside the emulator's sandbox.
    assert sorted(p.name for p in (project.root / "state").glob("*.json")) == ["prod.sandbox.json"]

    listed = project.run("state", "list").stdout.split()
    assert sorted(listed) == sorted(ADDRESSES)
    stored = project.stored()
    shown = json.loads(project.run("state", "show", "instances.trainer").stdout)
    assert shown["id"] == stored["resources"]["instances.trainer"]["id"]
    assert json.loads(project.run("state", "pull").stdout) == stored

    history = project.run("state", "history", "--limit", "100").stdout
    rows = [match.groups() for line in history.splitlines() if (match := HISTORY_ROW.match(line))]
    assert [int(serial) for serial, *_ in rows] == sorted(database.serials("prod"), reverse=True)
    assert int(rows[0][0]) == stored["serial"] and len(rows) == stored["serial"]
    for _, lineage, written_at, written_by in rows:
        assert lineage == stored["lineage"]
        assert written_by == this_user_at_host()
        assert started <= datetime.fromisoformat(written_at) <= datetime.now(UTC)
    project.assert_secrets_never_shown()


def test_two_stacks_in_one_database_are_independent(tmp_path: Path, database: TeamDatabase) -> None:
    project = TeamProject.create(tmp_path, database, stack="prod")
    staging = ("--backend-config", "stack=staging")

    project.run("apply", "--auto-approve")
    project.run("apply", "--auto-approve", *staging)
    prod_doc, staging_doc = database.document("prod"), database.document("staging")
    assert prod_doc is not None and staging_doc is not None
    assert prod_doc["lineage"] != staging_doc["lineage"]
    assert sorted(prod_doc["resources"]) == sorted(staging_doc["resources"]) == sorted(ADDRESSES)
    assert all(prod_doc["resources"][a]["id"] != staging_doc["resources"][a]["id"] for a in ADDRESSES)

    # One stack's lock does not block the other.
    with PostgresStateBackend(database.url, "prod", schema=database.schema).lock("apply"):
        locked = project.run("plan", expect=1)
        assert "is locked" in locked.stderr and "stack prod" in locked.stderr, locked.describe()
        assert "No changes" in project.run("plan", *staging).stdout

    project.run("destroy", "--auto-approve", *staging)
    staging_after = database.document("staging")
    assert staging_after is not None and staging_after["resources"] == {}
    assert database.document("prod") == prod_doc
    assert database.serials("prod") == list(range(1, prod_doc["serial"] + 1))
    assert_converged(project)
    project.assert_secrets_never_shown()


def test_concurrent_applies_exactly_one_proceeds_the_other_fails_fast(
    tmp_path: Path, database: TeamDatabase
) -> None:
    project = TeamProject.create(tmp_path, database)
    seed_then_declare_everything(project)

    with database.hold_state_row("prod"):
        runs = {name: project.start("apply", "--auto-approve", app=name) for name in ("run-a", "run-b")}
        wait_until(
            lambda: any(database.sessions(name, waiting_on_lock=True) for name in runs),
            "one of the two applies to hold the state lock and reach its first state write",
        )
        winner = next(name for name in runs if database.sessions(name, waiting_on_lock=True))
        loser = next(name for name in runs if name != winner)
        refused = runs[loser].finish(expect=1, timeout=60)
        # Refused while the winner still holds the lock: it did not wait for it.
        assert runs[winner].running()
        assert not database.sessions(loser)

    holder = HOLDER.search(refused.stderr)
    assert holder is not None, refused.describe()
    assert holder["who"] + "@" + holder["host"] == this_user_at_host()
    assert int(holder["pid"]) == runs[winner].pid
    assert holder["operation"] == "apply"
    assert abs(datetime.fromisoformat(holder["since"]) - datetime.now(UTC)) < timedelta(minutes=2)
    assert "--lock-timeout" in refused.stderr
    assert "Creating" not in refused.stdout

    done = runs[winner].finish()
    assert "Apply complete! Resources: 2 added" in done.stdout, done.describe()
    assert_converged(project)
    project.assert_secrets_never_shown()


def test_a_run_refused_just_as_the_holder_takes_the_lock_still_names_it(
    tmp_path: Path, database: TeamDatabase
) -> None:
    """The lock is visible the moment it is taken, the holder's record only when its transaction
    commits: a run refused in between must wait for that record, not report an anonymous holder."""
    project = TeamProject.create(tmp_path, database)
    seed_then_declare_everything(project)

    with database.hold_lock_records():
        first = project.start("apply", "--auto-approve", app="first")
        wait_until(lambda: bool(database.sessions("first", waiting_on_lock=True)), "the apply to take the lock")
        second = project.start("apply", "--auto-approve", app="second")
        wait_until(lambda: bool(database.sessions("second")) or not second.running(), "the second apply to start")
    refused = second.finish(expect=1, timeout=60)
    holder = HOLDER.search(refused.stderr)
    assert holder is not None, refused.describe()
    assert int(holder["pid"]) == first.pid and holder["operation"] == "apply"
    assert "Apply complete! Resources: 2 added" in first.finish().stdout
    assert_converged(project)


def test_lock_timeout_waits_for_the_holder_then_proceeds(tmp_path: Path, database: TeamDatabase) -> None:
    project = TeamProject.create(tmp_path, database)
    seed_then_declare_everything(project)

    with database.hold_state_row("prod"):
        first = project.start("apply", "--auto-approve", app="first")
        wait_until(lambda: bool(database.sessions("first", waiting_on_lock=True)), "the first apply to hold the lock")
        patient = project.start("apply", "--auto-approve", "--lock-timeout", "60s", app="patient")
        wait_until(lambda: bool(database.sessions("patient")), "the second apply to ask for the lock")
        assert patient.running() and first.running()

    assert "Apply complete! Resources: 2 added" in first.finish().stdout
    waited = patient.finish()
    # It planned only after the first run had finished: nothing left to do.
    assert "No changes" in waited.stdout, waited.describe()
    assert_converged(project)
    project.assert_secrets_never_shown()


def test_a_run_killed_holding_the_lock_leaves_nothing_to_unlock(tmp_path: Path, database: TeamDatabase) -> None:
    project = TeamProject.create(tmp_path, database)
    seed_then_declare_everything(project)
    with apply_stalled_after_the_instance_create(project, "doomed") as doomed:
        doomed.kill()
    wait_until(lambda: not database.sessions("doomed"), "the server to end the killed run's sessions")

    stored = project.stored()
    assert "instances.trainer" not in stored["resources"]
    assert [op["address"] for op in stored["pending"]] == ["instances.trainer"]
    assert ledger_names(project.ledger()) == RESOURCE_NAMES  # created, but not recorded in state

    # No force-unlock, no lock timeout: the lock died with the run's database session.
    rerun = project.run("apply", "--auto-approve")
    assert "is locked" not in rerun.output
    assert_converged(project)
    assert project.stored()["resources"]["instances.trainer"]["id"] == next(
        entry.id for entry in project.ledger() if entry.name.startswith("trainer")
    )
    project.assert_secrets_never_shown()


def test_force_unlock_ends_a_hung_holder_session(tmp_path: Path, database: TeamDatabase) -> None:
    project = TeamProject.create(tmp_path, database)
    seed_then_declare_everything(project)

    with database.hold_state_row("prod"):
        hung = project.start("apply", "--auto-approve", app="hung")
        wait_until(lambda: bool(database.sessions("hung", waiting_on_lock=True)), "the apply to hold the lock")
        refused = project.run("plan", expect=1)
        holder = HOLDER.search(refused.stderr)
        assert holder is not None and int(holder["pid"]) == hung.pid, refused.describe()
        assert f"reconciler force-unlock {holder['id']}" in refused.stderr

        wrong = project.run("force-unlock", "0f0f0f0f-0000-4000-8000-000000000000", expect=1)
        assert "no lock with ID 0f0f0f0f-0000-4000-8000-000000000000" in wrong.stderr, wrong.describe()
        assert f"the current lock is ID {holder['id']}" in wrong.stderr

        unlocked = project.run("force-unlock", holder["id"])
        assert f"Lock {holder['id']} released." in unlocked.stdout
        # Free for the next run (the hung one still holds the emulator's sandbox, so look directly).
        assert PostgresStateBackend(database.url, "prod", schema=database.schema).current_lock() is None

    # The run itself is still alive, and finishes what it started.
    hung.finish(expect=None)
    assert_converged(project)
    project.assert_secrets_never_shown()


def test_database_connection_lost_mid_apply_loses_nothing(tmp_path: Path, database: TeamDatabase) -> None:
    project = TeamProject.create(tmp_path, database)
    seed_then_declare_everything(project)
    with apply_stalled_after_the_instance_create(project, "cut-off") as cut_off:
        for pid in database.sessions("cut-off", waiting_on_lock=True):
            database.admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    failed = cut_off.finish(expect=1)
    assert "writing state failed: terminating connection" in failed.output, failed.describe()
    assert "Traceback" not in failed.output

    assert ledger_names(project.ledger()) == RESOURCE_NAMES
    project.run("apply", "--auto-approve")
    assert_converged(project)
    project.assert_secrets_never_shown()


def test_a_bare_url_given_as_a_backend_setting_is_refused_without_showing_it(
    tmp_path: Path, database: TeamDatabase
) -> None:
    """`--backend-config $URL` (the `url=` forgotten) names no known setting; the message must not echo it."""
    project = TeamProject.create(tmp_path, database, stack=None)
    project.write(SHADEFORM_CONFIG)  # no backend block, so nothing else knows the password is secret
    refused = project.run("plan", "--backend-config", f"{database.url}?sslmode=disable", expect=1)
    assert "--backend-config: unknown setting" in refused.stderr, refused.describe()
    assert "url=" in refused.stderr
    project.assert_secrets_never_shown()


def test_serial_and_lineage_conflicts_are_refused_unless_forced(tmp_path: Path, database: TeamDatabase) -> None:
    project = TeamProject.create(tmp_path, database)
    project.run("apply", "--auto-approve")
    pulled = json.loads(project.run("state", "pull").stdout)
    serial = pulled["serial"]
    old = project.root / "old.json"
    old.write_text(json.dumps(pulled), encoding="utf-8")

    project.run("state", "rm", "instances.trainer")
    assert project.stored()["serial"] == serial + 1

    refused = project.run("state", "push", "old.json", expect=1)
    assert f"has serial {serial}, not newer than the stored {serial + 1}" in refused.stderr, refused.describe()
    assert project.stored()["serial"] == serial + 1

    other = project.root / "other.json"
    other.write_text(json.dumps({**pulled, "lineage": "0f0f0f0f-0000-4000-8000-000000000000", "serial": 99}))
    foreign = project.run("state", "push", "other.json", expect=1)
    assert "has lineage 0f0f0f0f-0000-4000-8000-000000000000" in foreign.stderr, foreign.describe()
    assert project.stored()["lineage"] == pulled["lineage"]

    project.run("state", "push", "--force", "old.json")
    restored = project.stored()
    assert restored["serial"] == serial + 2
    assert restored["resources"] == pulled["resources"]
    assert database.serials("prod")[-3:] == [serial, serial + 1, serial + 2]
    assert_converged(project)

    # A pulled, edited and pushed state is the next version.
    edited = {**restored, "serial": restored["serial"] + 1}
    edited["resources"]["instances.trainer"]["attributes"]["note"] = "edited by hand"
    (project.root / "edited.json").write_text(json.dumps(edited), encoding="utf-8")
    project.run("state", "push", "edited.json")
    assert project.stored()["serial"] == serial + 3
    assert project.stored()["resources"]["instances.trainer"]["attributes"]["note"] == "edited by hand"
    project.assert_secrets_never_shown()


def test_migrate_a_local_state_into_postgres_without_loss(tmp_path: Path, database: TeamDatabase) -> None:
    project = TeamProject.create(tmp_path, database, stack=None)
    project.write(SHADEFORM_CONFIG)  # the local file backend, the default
    project.run("apply", "--auto-approve")
    local_path = project.root / "state" / "team.json"
    local = json.loads(local_path.read_text(encoding="utf-8"))

    project.configure(SHADEFORM_CONFIG)  # now the config names the PostgreSQL backend
    migrated = project.run("state", "migrate", "--backend-config", "type=local", "--to", "postgres")
    assert f"Migrated 3 resources (serial {local['serial']})" in migrated.stdout, migrated.describe()
    assert project.stored() == local
    assert database.serials("team") == [local["serial"]]
    assert json.loads(local_path.read_text(encoding="utf-8")) == local
    assert_converged(project)

    again = project.run("state", "migrate", "--backend-config", "type=local", "--to", "postgres", expect=1)
    assert "already holds a state" in again.stderr, again.describe()
    assert project.stored() == local

    project.run("state", "migrate", "--to", "local", "--to-config", "path=state/back.json")
    assert json.loads((project.root / "state" / "back.json").read_text(encoding="utf-8")) == local
    project.assert_secrets_never_shown()


def test_database_down_is_a_clear_error_and_loses_nothing(tmp_path: Path, database: TeamDatabase) -> None:
    project = TeamProject.create(tmp_path, database)
    project.run("apply", "--auto-approve")
    stored, serials, ledger = project.stored(), database.serials("prod"), project.ledger()
    (project.root / "pulled.json").write_text(json.dumps(stored), encoding="utf-8")
    down = unreachable_url(database.url)
    port = down.rsplit(":", 1)[1].split("/")[0]

    commands = [
        ("apply", "--auto-approve"),
        ("state", "pull"),
        ("state", "push", "--force", "pulled.json"),
        ("state", "history"),
        ("force-unlock", "0f0f0f0f-0000-4000-8000-000000000000"),
    ]
    for command in commands:
        failed = project.run(*command, url=down, expect=1)
        assert f"PostgreSQL state postgres://127.0.0.1:{port}/test (stack prod" in failed.stderr, failed.describe()
        assert "failed" in failed.stderr and "hint: check that the server is reachable" in failed.stderr
        assert "Traceback" not in failed.output
    debug = project.run("--debug", "apply", "--auto-approve", url=down, expect=1)
    assert "Traceback" in debug.stderr, debug.describe()

    assert project.stored() == stored
    assert database.serials("prod") == serials
    assert project.ledger() == ledger
    assert_converged(project)
    project.assert_secrets_never_shown()


def test_a_database_url_given_to_the_local_backend_is_refused(tmp_path: Path, database: TeamDatabase) -> None:
    """`--backend-config url=...` without type=postgres must not quietly keep state in a local file:
    a CI job would lose it with its runner and create everything again on the next run."""
    project = TeamProject.create(tmp_path, database, stack=None)
    project.write(SHADEFORM_CONFIG)  # no backend block: the local file backend
    overrides = ("--backend-config", f"url={database.url}", "--backend-config", f"schema={database.schema}")

    refused = project.run("apply", "--auto-approve", *overrides, expect=1)
    assert "--backend-config url: not a setting of the local backend" in refused.stderr, refused.describe()
    assert "type=postgres" in refused.stderr
    assert project.ledger() == [] and not (project.root / "state" / "team.json").exists()

    project.run("apply", "--auto-approve", "--backend-config", "type=postgres", *overrides)
    assert sorted(project.stored()["resources"]) == sorted(ADDRESSES)
    project.configure(SHADEFORM_CONFIG)  # the PostgreSQL backend, from the YAML
    misplaced = project.run("plan", "--backend-config", "path=elsewhere.json", expect=1)
    assert "--backend-config path: not a setting of the postgres backend" in misplaced.stderr, misplaced.describe()
    project.assert_secrets_never_shown()
