"""A damaged document stored in PostgreSQL is refused exactly as a damaged local file is, and left as it is."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from support import reachable_pg_url, scratch_schema

from reconciler.state.model import ResourceState, StateDocument
from reconciler.state.postgres import PostgresStateBackend
from reconciler.state.validation import DamagedStateError, repairable_by_removal


@pytest.fixture
def backend() -> Iterator[PostgresStateBackend]:
    url = reachable_pg_url()
    with scratch_schema(url) as schema:
        yield PostgresStateBackend(url, "prod", schema=schema)


def store_damaged(backend: PostgresStateBackend, change: dict[str, Any]) -> str:
    """Store a sound document through the backend, then damage the stored row as a bad hand edit would."""
    doc = StateDocument(serial=1)
    doc.resources["instances.a"] = ResourceState(provider="shadeform", kind="instances", id="i-1")
    backend.write(doc)
    stored = {**doc.model_dump(mode="json"), **change}
    if "resources" in change:
        stored["resources"] = {**doc.model_dump(mode="json")["resources"], **change["resources"]}
    with psycopg.connect(backend._conninfo, autocommit=True) as connection:
        connection.execute(
            sql.SQL("UPDATE {} SET document = %s::jsonb WHERE stack = 'prod'").format(
                backend._table("states")
            ),
            (json.dumps(stored),),
        )
        row = connection.execute(
            sql.SQL("SELECT document::text FROM {} WHERE stack = 'prod'").format(backend._table("states"))
        ).fetchone()
    assert row is not None
    return str(row[0])


def stored_text(backend: PostgresStateBackend) -> str:
    with psycopg.connect(backend._conninfo, autocommit=True) as connection:
        row = connection.execute(
            sql.SQL("SELECT document::text FROM {} WHERE stack = 'prod'").format(backend._table("states"))
        ).fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (
            {"resources": {"gpus.x": {"provider": "shadeform", "kind": "gpus", "id": "g"}}},
            "unknown kind 'gpus'",
        ),
        (
            {"resources": {"instances.b": {"provider": "shadeform", "kind": "instances", "id": "i-1"}}},
            "id i-1 is also recorded under instances.a",
        ),
        ({"serial": -1}, "serial: Input should be greater than or equal to 0"),
        ({"pending": [{"op": "create"}]}, "pending[0].address: Field required"),
    ],
    ids=["unknown-kind", "one-id-two-addresses", "negative-serial", "pending-does-not-parse"],
)
def test_damaged_stored_document_is_refused_and_untouched(
    backend: PostgresStateBackend, change: dict[str, Any], fragment: str
) -> None:
    before = store_damaged(backend, change)
    with pytest.raises(DamagedStateError) as caught:
        backend.read()
    message = str(caught.value)
    assert message.startswith(f"state {backend.description} is damaged ("), message
    assert fragment in message
    assert "reconciler state history" in message
    assert stored_text(backend) == before


def test_state_rm_repair_writes_the_next_serial(backend: PostgresStateBackend) -> None:
    store_damaged(
        backend, {"resources": {"instances.b": {"provider": "shadeform", "kind": "instances", "id": "i-1"}}}
    )
    with pytest.raises(DamagedStateError) as caught:
        backend.read()
    doc = repairable_by_removal(caught.value, ("instances.b",)).model_copy(deep=True)
    del doc.resources["instances.b"]
    doc.serial += 1
    backend.write(doc)
    assert set(backend.read().resources) == {"instances.a"}
