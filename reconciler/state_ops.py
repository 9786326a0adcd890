"""State changes outside an apply: refresh, import and the `state` edits (rm, mv, push, migrate).

Each holds the state lock for its whole read-change-write and stores the result through
one commit path (`Workspace.commit`: serial + 1, then a compare-and-swap write), except
push and migrate, which store a whole document whose serial they choose.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from reconciler import engine
from reconciler.errors import StateError
from reconciler.model import Address, retarget_references
from reconciler.state.backend import StateBackend
from reconciler.state.model import StateDocument
from reconciler.state.validation import DamagedStateError, parse_state_text
from reconciler.workspace import Workspace, open_backend


async def refresh_and_commit(workspace: Workspace, report: Callable[[tuple[str, ...]], None]) -> int | None:
    """`reconciler refresh`: state brought up to date with what runs (drift recorded, pending
    operations settled); `report` hears the changes found. The new serial, or None when
    nothing changed and nothing was written."""
    with workspace.locked("refresh"):
        doc = workspace.read_state()
        config = workspace.config
        new, drift = await engine.with_providers(workspace, doc, lambda p: engine.refresh_only(p, config, doc))
        report(drift)
        if new == doc:
            return None
        return workspace.commit(new, doc).serial


async def import_and_commit(workspace: Workspace, address: Address, id: str) -> None:
    """`reconciler import`: adopt the existing object `id` as `address`."""
    with workspace.locked("import"):
        doc = workspace.read_settled_state("import")
        config = workspace.config
        new = await engine.with_providers(
            workspace, doc, lambda p: engine.import_resource(p, config, doc, address, id)
        )
        workspace.commit(new, doc)


def edit_state(
    workspace: Workspace, operation: str, edit: Callable[[StateDocument], str], removing: tuple[str, ...] = ()
) -> str:
    """Apply an edit by hand to a settled copy of the state and commit it; the edit's message."""
    with workspace.locked(operation):
        doc = workspace.read_settled_state(operation, must_exist=True, removing=removing)
        new = doc.model_copy(deep=True)
        message = edit(new)
        workspace.commit(new, doc)
    return message


def canonical_or_as_written(text: str) -> str:
    """An address in its canonical spelling; a damaged state's malformed key as it is written,
    so `state rm` can remove that too."""
    try:
        return str(Address.parse(text))
    except ValueError:
        return text


def remove_resources(doc: StateDocument, addresses: tuple[str, ...]) -> str:
    """Forget `addresses` (their objects keep running); refused unless every one is in state."""
    for address in addresses:
        if address not in doc.resources:
            raise StateError(f"{address} is not in state", hint="`reconciler state list` shows what is")
    ids = [f"{a} ({doc.resources.pop(a).id})" for a in addresses]
    return "Removed from state (still running at the provider): " + ", ".join(ids)


def remove_from_state(workspace: Workspace, addresses: tuple[str, ...]) -> str:
    """`reconciler state rm`."""
    targets = tuple(canonical_or_as_written(a) for a in addresses)
    return edit_state(workspace, "state rm", lambda doc: remove_resources(doc, targets), removing=targets)


def move_resource(doc: StateDocument, old: str, new_address: str) -> str:
    """Rename `old` to `new_address`, and every reference to it in other entries."""
    if old not in doc.resources:
        raise StateError(f"{old} is not in state", hint="`reconciler state list` shows what is")
    if new_address in doc.resources:
        raise StateError(f"{new_address} is already in state")
    doc.resources[new_address] = doc.resources.pop(old)
    for res in doc.resources.values():
        res.depends_on = [new_address if d == old else d for d in res.depends_on]
        retarget_references(res.attributes, old, new_address)
    return f"Moved {old} to {new_address}."


def move_in_state(workspace: Workspace, source: Address, destination: Address) -> str:
    """`reconciler state mv`: only between addresses of one kind."""
    old, new_address = str(source), str(destination)
    if source.kind != destination.kind:
        raise StateError(f"cannot move {old} to {new_address}: the kinds differ")
    return edit_state(workspace, "state mv", lambda doc: move_resource(doc, old, new_address))


def overwrite_state(backend: StateBackend, doc: StateDocument, current: StateDocument | None) -> None:
    """Store `doc` as the next version (state push / migrate); serials never go backwards."""
    if current is None:
        backend.write(doc.model_copy(update={"serial": max(doc.serial, 1)}))
        return
    stored = doc.model_copy(update={"serial": max(doc.serial, current.serial + 1)})
    backend.write(stored, force=stored.lineage != current.lineage or stored.serial != current.serial + 1)


def replace_damaged_state(backend: StateBackend, doc: StateDocument, damaged: DamagedStateError) -> None:
    """`state push --force` over a stored state that cannot be read; the local .backup file or
    the PostgreSQL history keeps the damaged version."""
    floor = damaged.document.serial + 1 if damaged.document is not None else 1
    backend.write(doc.model_copy(update={"serial": max(doc.serial, floor)}), force=True)


def push_state(workspace: Workspace, file: Path, force: bool) -> str:
    """`reconciler state push`: replace the stored state with `file`, refused unless it is the
    same lineage and newer (or `force`); the message to show."""
    pushed = parse_state_text(file.read_text(encoding="utf-8"), str(file), "nothing was pushed")
    backend = workspace.backend
    with workspace.locked("state push"):
        try:
            current = workspace.read_settled_state("state push")
        except DamagedStateError as damaged:
            if not force:
                raise
            replace_damaged_state(backend, pushed, damaged)
            return f"Pushed {file} to {backend.description}, replacing its damaged state."
        exists = backend.exists()
        if exists and not force:
            if pushed.lineage != current.lineage:
                raise StateError(
                    f"{file} has lineage {pushed.lineage}, the stored state {current.lineage}",
                    hint="it is another state's history; pass --force only if you mean to replace it",
                )
            if pushed.serial <= current.serial:
                raise StateError(
                    f"{file} has serial {pushed.serial}, not newer than the stored {current.serial}",
                    hint="pull the current state and edit that, or pass --force",
                )
        overwrite_state(backend, pushed, current if exists else None)
    return f"Pushed {file} to {backend.description}."


def migrate_state(workspace: Workspace, settings: dict[str, str]) -> tuple[StateDocument, StateBackend]:
    """`reconciler state migrate`: copy the state into the backend `settings` name, which must
    hold none yet; the state copied and where it went."""
    destination = open_backend(workspace.config, None, settings)
    if destination.description == workspace.backend.description:
        raise StateError("source and destination are the same backend")
    with workspace.locked("state migrate"), destination.lock("state migrate", workspace.lock_timeout):
        doc = workspace.read_existing_state()
        if destination.exists():
            raise StateError(
                f"{destination.description} already holds a state",
                hint="migrate into an empty stack, or `state push --force` if you mean to overwrite it",
            )
        overwrite_state(destination, doc, None)
    return doc, destination
