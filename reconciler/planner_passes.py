"""The passes `plan_changes` runs over the whole plan once each resource is diffed.

Like Terraform's graph transformers, each pass has one concern and is a small pure function
over the plan's changes (and the state or live view it needs), tested on its own: the
deletes of removed resources and of deposed objects, `--target` restriction, the offering
choices creates carry, create_before_destroy spreading, the prevent_destroy check, the cost
and the orphans.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from reconciler.errors import PlanError
from reconciler.graph import DependencyGraph
from reconciler.model import (
    GONE_STATUSES,
    Action,
    ActionReason,
    Address,
    Change,
    CostSummary,
    Orphan,
    Resource,
    marker_belongs_to,
)
from reconciler.selection import Selection
from reconciler.state.model import ResourceState, StateDocument
from reconciler.suggestions import did_you_mean

if TYPE_CHECKING:
    from reconciler.planner import LiveView

DESTROYING = (Action.DELETE, Action.REPLACE)




def match_targets(targets: Sequence[Address], known: set[Address], flag: str) -> set[Address]:
    """The known addresses `--target`/`--replace` name (`instances.w` names every `instances.w[i]`)."""
    selected: set[Address] = set()
    for target in targets:
        hits = {a for a in known if a == target or (target.index is None and a.base == target)}
        if not hits:
            raise PlanError(
                f"{flag} {target}: no such resource in the configuration or state",
                hint=did_you_mean(str(target), (str(a) for a in known), quoted=False),
            )
        selected |= hits
    return selected


def removed_resources(
    doc: StateDocument,
    desired: Mapping[Address, Resource],
    live: LiveView,
    *,
    destroy: bool,
    expired: Mapping[Address, str],
) -> dict[Address, Change]:
    """A delete for each object state tracks that the configuration no longer wants."""
    changes: dict[Address, Change] = {}
    for key, prior in doc.resources.items():
        address = Address.parse(key)
        if address in desired:
            continue
        observed = live.lookup(prior.provider, address.kind, prior.id)
        reason: ActionReason | None = ActionReason.DELETE_BECAUSE_NO_RESOURCE_CONFIG
        if live.refreshed(prior.provider, address.kind) and observed is None:
            why = "already gone outside reconciler"
        elif address in expired:
            why = expired[address]
        elif destroy:
            why, reason = "destroy requested", None
        else:
            why = "not in the configuration"
        changes[address] = Change(
            address=address,
            action=Action.DELETE,
            provider=prior.provider,
            before=prior.attributes,
            after=None,
            reasons=(why,),
            depends_on=tuple(Address.parse(d) for d in prior.depends_on),
            id=prior.id,
            hourly_before=prior.hourly_price or 0.0,
            marker=prior.marker,
            reason=reason,
        )
    return changes


def deposed_deletes(doc: StateDocument) -> tuple[Change, ...]:
    """The delete of each old object a create_before_destroy replacement left behind."""
    return tuple(
        Change(
            address=Address.parse(d.address),
            action=Action.DELETE,
            provider=d.provider,
            before=d.attributes,
            after=None,
            reasons=("old object left by create_before_destroy",),
            depends_on=tuple(Address.parse(x) for x in d.depends_on),
            id=d.id,
            hourly_before=d.hourly_price or 0.0,
            marker=d.marker,
            deposed=d.id,
        )
        for d in doc.deposed
    )


def target_graph(
    desired: Mapping[Address, Resource], doc: StateDocument, targeted: Iterable[Address]
) -> DependencyGraph:
    """Dependencies as the configuration declares them, and as state recorded them for the rest."""
    edges: dict[Address, tuple[Address, ...]] = {a: r.depends_on for a, r in desired.items()}
    for key, res in doc.resources.items():
        edges.setdefault(Address.parse(key), tuple(Address.parse(d) for d in res.depends_on))
    for address in targeted:
        edges.setdefault(address, ())
    return DependencyGraph(edges)


def restrict_to_targets(
    changes: Mapping[Address, Change], targeted: Iterable[Address], graph: DependencyGraph
) -> dict[Address, Change]:
    """The targets, what they depend on, and what must go with a target that goes.

    An object that is deleted or replaced takes with it each dependent that is deleted or
    replaced too (an instance mounting a replaced volume), or apply would leave it pointing
    at an object that no longer exists.
    """
    keep = graph.subgraph_with_dependencies(targeted)
    stack = [a for a in keep if a in changes and changes[a].action in DESTROYING]
    while stack:
        node = stack.pop()
        for dependent in graph.dependents(node, transitive=False):
            change = changes.get(dependent)
            if dependent not in keep and change is not None and change.action in DESTROYING:
                keep.add(dependent)
                stack.append(dependent)
    return {a: c for a, c in changes.items() if a in keep}


def attach_selections(
    changes: Mapping[Address, Change], selections: Mapping[Address, Selection], desired: Mapping[Address, Resource]
) -> dict[Address, Change]:
    """Creates say which offering was chosen and why, and carry the fallbacks apply may try."""
    result = dict(changes)
    for address, selection in selections.items():
        change = result.get(address)
        if change is not None and change.action in (Action.CREATE, Action.REPLACE):
            on_boot = address in desired and desired[address].fallback_on_boot_failure
            result[address] = dataclasses.replace(
                change,
                reasons=change.reasons + selection.reasons,
                candidates=selection.candidates,
                fallback_on_boot_failure=on_boot and bool(selection.candidates),
            )
    return result


def moved_to_providers(changes: Mapping[Address, Change], desired: Mapping[Address, Resource]) -> list[str]:
    """A key now declared for several providers would be deleted and created again, and so
    would every instance using it; `state mv` keeps the object that exists."""
    found: list[str] = []
    for address, change in changes.items():
        if change.action is not Action.DELETE or address.index is not None:
            continue
        moved = Address(address.kind, address.name, change.provider)
        if moved in desired and desired[moved].provider == change.provider:
            found.append(
                f"{address} is now declared per provider; `reconciler state mv {address} '{moved}'` keeps "
                "the object and what uses it instead of replacing them"
            )
    return found


def spread_create_before_destroy(changes: Mapping[Address, Change]) -> tuple[dict[Address, Change], list[str]]:
    """create_before_destroy spreads to the replaced dependencies of a replacement that has it,
    or the apply order would cycle (the new dependent needs its new dependency first)."""
    graph = DependencyGraph({a: c.depends_on for a, c in changes.items()})
    replaced = {a for a, c in changes.items() if c.action is Action.REPLACE}
    chosen = {a for a in replaced if changes[a].create_before_destroy}
    spread = set(chosen)
    stack = list(chosen)
    while stack:
        node = stack.pop()
        for dependency in graph.dependencies(node, transitive=False):
            if dependency in replaced and dependency not in spread:
                spread.add(dependency)
                stack.append(dependency)
    result = dict(changes)
    notes = []
    for address in sorted(spread - chosen, key=Address.sort_key):
        result[address] = dataclasses.replace(changes[address], create_before_destroy=True)
        notes.append(f"{address}: replaced create-before-destroy because a dependent is")
    return result, notes


def check_prevent_destroy(
    changes: Mapping[Address, Change], resources: Mapping[Address, Resource], finishing_delete: set[Address]
) -> None:
    """PlanError if the plan would destroy or replace a resource with lifecycle.prevent_destroy.

    An object already being deleted (outside, or by an interrupted run) is exempt: the plan
    only finishes what happened and creates it anew.
    """
    for address, change in changes.items():
        declared = resources.get(address)
        if change.action not in DESTROYING or address in finishing_delete:
            continue
        if declared is not None and declared.lifecycle.prevent_destroy:
            verb = "destroy" if change.action is Action.DELETE else "replace"
            raise PlanError(
                f"{address} has lifecycle.prevent_destroy set, but the plan would {verb} it "
                f"({'; '.join(change.reasons)})",
                hint="remove prevent_destroy from its lifecycle block if you really mean it",
            )


def in_plan_order(changes: Mapping[Address, Change], deposed: Sequence[Change]) -> tuple[Change, ...]:
    """Changes by address, then the deletes of deposed objects."""
    return tuple(changes[a] for a in sorted(changes, key=Address.sort_key)) + tuple(deposed)


def _still_running(key: str, res: ResourceState, live: LiveView) -> bool:
    """False for a tracked object the refresh saw gone: it no longer costs anything."""
    kind = Address.parse(key).kind
    if not live.refreshed(res.provider, kind):
        return True
    observed = live.lookup(res.provider, kind, res.id)
    return observed is not None and observed.status not in GONE_STATUSES


def plan_cost(
    ordered: Sequence[Change], doc: StateDocument, live: LiveView, targeted: set[Address] | None
) -> CostSummary:
    """Hourly spend now (what still runs) and after the plan (what it leaves running).

    A --target plan leaves everything it does not touch running at its recorded price.
    """
    hourly_before = sum(
        r.hourly_price or 0.0 for k, r in doc.resources.items() if _still_running(k, r, live)
    ) + sum(d.hourly_price or 0.0 for d in doc.deposed)
    hourly_after = sum(c.hourly_after for c in ordered if c.action is not Action.DELETE)
    if targeted is not None:
        touched = {str(c.address) for c in ordered}
        hourly_after += sum(r.hourly_price or 0.0 for k, r in doc.resources.items() if k not in touched)
    return CostSummary(hourly_before=round(hourly_before, 6), hourly_after=round(hourly_after, 6))


def find_orphans(doc: StateDocument, live: LiveView) -> tuple[Orphan, ...]:
    """Live objects carrying this state's marker that state does not track (nor a pending create)."""
    tracked = {r.id for r in doc.resources.values()} | {d.id for d in doc.deposed}
    pending_markers = {p.marker for p in doc.pending}
    found = []
    for (provider, kind), by_id in live.resources.items():
        for res in by_id.values():
            if res.id in tracked or res.status in GONE_STATUSES:
                continue
            if not marker_belongs_to(res.marker, doc.lineage) or res.marker in pending_markers:
                continue
            found.append(
                Orphan(
                    provider=provider,
                    kind=kind,
                    id=res.id,
                    name=res.name,
                    address=None,
                    hourly_price=res.hourly_price,
                )
            )
    return tuple(sorted(found, key=lambda o: (o.provider, o.kind.value, o.id)))
