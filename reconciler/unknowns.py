"""Values of references at plan time and at apply time.

At plan time a reference to an object that stays (no-op, update) reads state refreshed
by live; one to an object being created or replaced reads its planned desired attributes,
and its computed ones (ip, id, ...) are unknown until apply, as in Terraform. The
dependent's change is decided with those unknowns: an attribute that will change forces a
replacement where the API cannot update it, and the plan says why.

At apply time the referenced objects are ready (their steps ran first, in dependency
order), so what was unknown is read from state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from reconciler.errors import ReconcilerError
from reconciler.model import MASK_PREFIX, Action, Address, Change, Resource
from reconciler.references import (
    UNKNOWN,
    Reference,
    attribute_value,
    members_of,
    references_in,
    substitute,
)
from reconciler.state.model import StateDocument

if TYPE_CHECKING:
    from reconciler.planner import LiveView

NEW_OBJECT = (Action.CREATE, Action.REPLACE)


def _in_unknown(change: Change, attribute: str) -> bool:
    return any(p == attribute or p.startswith(attribute + ".") for p in change.unknown)


class PlannedValues:
    """Reads `kind.name.attribute` while a plan is being made, in dependency order."""

    def __init__(
        self,
        changes: Mapping[Address, Change],
        desired: Mapping[Address, Resource],
        doc: StateDocument,
        live: LiveView,
    ) -> None:
        self.changes = changes
        self.desired = desired
        self.doc = doc
        self.live = live

    def lookup(self, reference: Reference) -> Any:
        return attribute_value(reference, self.desired, self.read)

    def read(self, address: Address, attribute: str) -> Any:
        change = self.changes.get(address)
        res = self.desired.get(address)
        if res is None:
            return UNKNOWN
        if change is None:
            # Left out of a --target plan: the object stays as state has it.
            return self._held(address, attribute, res)
        after = change.after or {}
        if _in_unknown(change, attribute):
            return UNKNOWN
        if change.action in NEW_OBJECT:
            if attribute in after:
                return after[attribute]
            return UNKNOWN if attribute in res.computed else None
        if attribute == "id":
            return change.id
        if attribute in res.computed:
            reported = self._reported(address)
            if attribute in reported:
                return reported[attribute]
            if attribute in after:
                return after[attribute]
            return UNKNOWN
        return after.get(attribute)

    def _held(self, address: Address, attribute: str, res: Resource) -> Any:
        prior = self.doc.resources.get(str(address))
        if prior is None:
            return UNKNOWN
        if attribute == "id":
            return prior.id
        reported = self._reported(address)
        if attribute in reported:
            return reported[attribute]
        value = prior.attributes.get(attribute, UNKNOWN if attribute in res.computed else None)
        if isinstance(value, str) and value.startswith(MASK_PREFIX):
            return UNKNOWN
        return value

    def _reported(self, address: Address) -> dict[str, Any]:
        prior = self.doc.resources.get(str(address))
        if prior is None:
            return {}
        observed = self.live.lookup(prior.provider, address.kind, prior.id)
        if observed is not None and observed.computed:
            return observed.computed
        return prior.computed


def resolve_for_plan(res: Resource, values: PlannedValues) -> tuple[Resource, tuple[str, ...]]:
    """The resource with what is known substituted, and the attribute paths still unknown."""
    if not res.references:
        return res, ()
    attributes, unknown = substitute(res.attributes, values.lookup)
    return dataclasses.replace(res, attributes=attributes), unknown


def explain_unknowns(change: Change, changes: Mapping[Address, Change]) -> Change:
    """Why a replacement or update is planned for a value that is not known yet."""
    if not change.unknown or change.action not in (Action.REPLACE, Action.UPDATE):
        return change
    reasons = list(change.reasons)
    after = change.after or {}
    for path in change.unknown:
        value: Any = after
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        for reference in references_in(value):
            causes = [
                f"{a} is {'created' if changes[a].action is Action.CREATE else 'replaced'}"
                for a in members_of(reference, changes)
                if a in changes and changes[a].action in NEW_OBJECT
            ]
            because = f" ({', '.join(causes)})" if causes else ""
            reasons.append(f"{path} uses ${{{reference.text}}}, known only after apply{because}")
    return dataclasses.replace(change, reasons=tuple(dict.fromkeys(reasons)))


class AppliedValues:
    """Reads `kind.name.attribute` during apply: state, where each referenced object now is ready."""

    def __init__(self, doc: StateDocument, changes: Mapping[Address, Change]) -> None:
        self.doc = doc
        self.changes = changes
        self.resolved: dict[Address, dict[str, Any]] = {}  # afters this run sent, values in clear

    def read(self, address: Address, attribute: str) -> Any:
        held = self.doc.resources.get(str(address))
        if held is None:
            return UNKNOWN
        if attribute == "id":
            return held.id
        if attribute in held.computed:
            return held.computed[attribute]
        sent = self.resolved.get(address)
        if sent is not None and attribute in sent:
            return sent[attribute]
        planned = self.changes.get(address)
        if planned is not None and attribute in (planned.after or {}) and not _in_unknown(planned, attribute):
            return (planned.after or {})[attribute]
        value = held.attributes.get(attribute, UNKNOWN)
        if isinstance(value, str) and value.startswith(MASK_PREFIX):
            return UNKNOWN
        return value

    def resolve(self, change: Change) -> Change:
        """The change with its unknowns filled in; an error if one is still not known."""
        if not change.unknown or change.after is None:
            return change
        desired = {c: None for c in self.changes}
        after, unknown = substitute(
            change.after, lambda reference: attribute_value(reference, desired, self.read)
        )
        if unknown:
            missing = sorted({r.text for path in unknown for r in references_in(_at(after, path))})
            raise ReconcilerError(
                f"{change.address}: {', '.join('${' + m + '}' for m in missing)} is still not known "
                "(the referenced object reports no value yet)",
                hint="run apply again once it is ready",
            )
        self.resolved[change.address] = after
        return dataclasses.replace(change, after=after, unknown=())

    def record(self, change: Change) -> None:
        if change.after is not None:
            self.resolved[change.address] = change.after


def _at(data: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data
