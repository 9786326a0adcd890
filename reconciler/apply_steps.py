"""The steps of an apply and the order between them, built from the plan's changes alone.

A replace is two steps (create and delete), ordered by create_before_destroy; a delete
waits for the deletes of what depended on the old object, as state recorded it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum

from reconciler.model import Action, Address, Change
from reconciler.state.model import StateDocument


class Phase(StrEnum):
    """What one step does to its change's object (a replace runs a create and a delete)."""

    CREATE = "create"
    DELETE = "delete"
    UPDATE = "update"


@dataclass(frozen=True)
class Step:
    change: Change
    phase: Phase

    @functools.cached_property
    def key(self) -> str:
        suffix = f"#{self.change.deposed}" if self.change.deposed else ""
        return f"{self.phase}:{self.change.address}{suffix}"


def build_steps(
    plan_changes: tuple[Change, ...], doc: StateDocument
) -> tuple[list[Step], dict[str, set[str]]]:
    """The steps of a plan and, for each, the step keys it must wait for."""
    steps: list[Step] = []
    create_of: dict[Address, Step] = {}
    delete_of: dict[tuple[Address, str | None], Step] = {}
    deletes_at: dict[Address, list[Step]] = {}  # current and deposed objects of one address
    for change in plan_changes:
        if change.action in (Action.CREATE, Action.REPLACE):
            step = Step(change, Phase.CREATE)
            steps.append(step)
            create_of[change.address] = step
        if change.action in (Action.DELETE, Action.REPLACE):
            step = Step(change, Phase.DELETE)
            steps.append(step)
            delete_of[(change.address, change.deposed)] = step
            deletes_at.setdefault(change.address, []).append(step)
        if change.action is Action.UPDATE:
            step = Step(change, Phase.UPDATE)
            steps.append(step)
            create_of[change.address] = step
    waits: dict[str, set[str]] = {s.key: set() for s in steps}
    for step in steps:
        change = step.change
        if step.phase in (Phase.CREATE, Phase.UPDATE):
            for dep in change.depends_on:
                if dep in create_of:
                    waits[step.key].add(create_of[dep].key)
            own_delete = delete_of.get((change.address, None))
            if step.phase is Phase.CREATE and own_delete is not None:
                if change.create_before_destroy:
                    waits[own_delete.key].add(step.key)
                else:
                    waits[step.key].add(own_delete.key)
        else:
            old_deps = _old_dependencies(change, doc)
            for dep in old_deps:
                for target in deletes_at.get(dep, ()):
                    waits[target.key].add(step.key)
    return steps, waits


def _old_dependencies(change: Change, doc: StateDocument) -> tuple[Address, ...]:
    if change.deposed:
        for d in doc.deposed:
            if d.id == change.deposed:
                return tuple(Address.parse(x) for x in d.depends_on)
        return ()
    prior = doc.resources.get(str(change.address))
    if prior is None:
        return ()
    return tuple(Address.parse(x) for x in prior.depends_on)
