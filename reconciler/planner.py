"""plan(config, state, live) -> Plan. Pure: no I/O, no provider imports.

Two steps, both pure:
- `resolve_pending` settles operations a crashed run left half-done, from live resources
  found by ownership marker (adopt what exists, forget what never happened);
- `plan_changes` diffs desired resources against state refreshed by live.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reconciler.errors import PlanError
from reconciler.expiry import EXPIRY_KEY, expired, with_deadline
from reconciler.foreign_objects import find_foreign_objects
from reconciler.graph import DependencyGraph
from reconciler.model import (
    CREATE_TIMED_OUT,
    MASK_PREFIX,
    Action,
    Address,
    Change,
    CostSummary,
    Kind,
    LiveResource,
    Offering,
    OfferingRequest,
    Orphan,
    Plan,
    Resource,
    Status,
    marker_belongs_to,
    mask_sensitive,
)
from reconciler.plan_checks import check_creatable, pinned_offering
from reconciler.selection import Selection, rank, select
from reconciler.state.model import DeposedResource, ResourceState, StateDocument
from reconciler.unknowns import PlannedValues, explain_unknowns, resolve_for_plan

LiveKey = tuple[str, Kind]
# A create is stamped right before it is sent; the client may still wait this long for its
# own pacing before the request leaves, so a lagging list's window is counted from later.
PRE_SEND_SLACK_SECONDS = 5.0
GONE_STATUSES = (Status.DELETING, Status.DELETED)
OFFERING_KEY = "offering"
REFERENCE_KEYS = ("ssh_key", "volumes")


@dataclass(frozen=True)
class LiveView:
    """What refresh saw. A (provider, kind) missing from `resources` was not refreshed."""

    resources: Mapping[LiveKey, Mapping[str, LiveResource]] = field(default_factory=dict)
    offerings: Mapping[str, Sequence[Offering]] = field(default_factory=dict)
    volume_prices: Mapping[tuple[str, str, str | None], float] = field(default_factory=dict)
    updatable: Mapping[LiveKey, frozenset[str]] = field(default_factory=dict)

    def lookup(self, provider: str, kind: Kind, id: str) -> LiveResource | None:
        return self.resources.get((provider, kind), {}).get(id)

    def refreshed(self, provider: str, kind: Kind) -> bool:
        return (provider, kind) in self.resources

    def by_marker(self, provider: str, kind: Kind, marker: str) -> list[LiveResource]:
        return [r for r in self.resources.get((provider, kind), {}).values() if r.marker == marker]


@dataclass(frozen=True)
class PlanOptions:
    destroy: bool = False
    targets: tuple[Address, ...] = ()
    replace: tuple[Address, ...] = ()
    reselect: bool = False
    refresh_only: bool = False
    now: datetime | None = None  # when the plan is made: expiry deadlines count from it


@dataclass(frozen=True)
class PendingResolution:
    state: StateDocument
    notes: tuple[str, ...]
    unresolved: tuple[str, ...]


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def resolve_pending(
    doc: StateDocument,
    live: LiveView,
    now: datetime,
    consistency_seconds: Mapping[str, float] | None = None,
) -> PendingResolution:
    """Settle pending operations from live resources, by ownership marker.

    A pending create whose marker is found live is adopted into state; one whose marker
    is absent, once the provider's lists are consistent, never happened and is dropped.
    A pending delete whose object is gone (or going) is completed; otherwise dropped and
    the object stays in state. Pending records that cannot be settled yet stay pending.
    """
    if not doc.pending:
        return PendingResolution(doc, (), ())
    consistency = consistency_seconds or {}
    new = doc.model_copy(deep=True)
    notes: list[str] = []
    unresolved: list[str] = []
    keep = []
    for op in new.pending:
        kind = Kind(op.kind)
        if not live.refreshed(op.provider, kind):
            keep.append(op)
            unresolved.append(f"{op.op} of {op.address}: {op.provider} {kind.value} were not refreshed")
            continue
        if op.op == "create":
            found = live.by_marker(op.provider, kind, op.marker)
            if op.id and not found:
                hit = live.lookup(op.provider, kind, op.id)
                found = [hit] if hit else []
            tracked = {r.id for r in new.resources.values()} | {d.id for d in new.deposed}
            found = [r for r in found if r.status not in GONE_STATUSES and r.id not in tracked]
            if found:
                adopted = sorted(found, key=lambda r: r.id)[0]
                adopted_state = ResourceState(
                    provider=op.provider,
                    kind=op.kind,
                    id=adopted.id,
                    attributes=op.attributes,
                    depends_on=op.depends_on,
                    marker=op.marker,
                    status=adopted.status.value,
                    hourly_price=op.hourly_price if op.hourly_price is not None else adopted.hourly_price,
                    created_at=op.started_at,
                    computed=dict(adopted.computed),
                )
                if op.address in new.resources:
                    # The address was taken meanwhile (import, state mv or push): state's entry
                    # stays; the interrupted run's object is ours and is deleted, not leaked.
                    new.deposed.append(DeposedResource(address=op.address, **adopted_state.model_dump()))
                    notes.append(
                        f"{op.address}: {adopted.id}, created by an interrupted run, is not what state "
                        "now tracks there; it is deleted"
                    )
                    continue
                new.resources[op.address] = adopted_state
                notes.append(
                    f"{op.address}: adopted {adopted.id} created by an interrupted run (marker {op.marker})"
                )
                for extra in sorted(found, key=lambda r: r.id)[1:]:
                    notes.append(
                        f"{op.address}: {extra.id} also carries marker {op.marker}; listed as orphan"
                    )
                continue
            started = _parse_time(op.started_at)
            window = consistency.get(op.provider, 0.0)
            if window > 0:
                window += PRE_SEND_SLACK_SECONDS
            if started is not None and window > 0 and (now - started).total_seconds() < window:
                keep.append(op)
                unresolved.append(
                    f"create of {op.address}: {op.provider} lists may lag writes by {window:g}s; not yet visible"
                )
                continue
            notes.append(
                f"{op.address}: an interrupted create left nothing live (marker {op.marker}); planned again"
            )
        else:
            target = live.lookup(op.provider, kind, op.id) if op.id else None
            if target is None or target.status is Status.DELETED:
                if op.address in new.resources and new.resources[op.address].id == op.id:
                    del new.resources[op.address]
                new.deposed = [d for d in new.deposed if d.id != op.id]
                notes.append(f"{op.address}: completed the delete of {op.id} started by an interrupted run")
            elif target.status is Status.DELETING:
                # Still tracked, so the plan finishes the delete and what waits for the
                # object to be gone (the volume it mounts, the key it uses) still waits.
                notes.append(
                    f"{op.address}: the delete of {op.id} started by an interrupted run is still in progress"
                )
            else:
                notes.append(f"{op.address}: an interrupted delete of {op.id} did not happen; still in state")
    new.pending = keep
    return PendingResolution(new, tuple(notes), tuple(unresolved))


def _reclaimed(prior: ResourceState | None, live: LiveView) -> str | None:
    """The reason to show when the provider took a spot instance back (None otherwise)."""
    if prior is None or prior.kind != Kind.INSTANCE.value:
        return None
    observed = live.lookup(prior.provider, Kind.INSTANCE, prior.id)
    if observed is None or observed.status not in GONE_STATUSES:
        return None
    details = (observed.status_details or "").lower()
    if "preempt" not in details and "reclaim" not in details:
        return None
    return f"reclaimed by the provider ({observed.status_details}); created again"


def _selected_offering(prior: ResourceState | None) -> str | None:
    request = prior.attributes.get(OFFERING_KEY) if prior is not None else None
    return str(request.get("selected")) if isinstance(request, dict) and request.get("selected") else None


def _select_offering(
    res: Resource, request: OfferingRequest, offerings: Sequence[Offering] | None, exclude: str | None = None
) -> Selection:
    if offerings is None:
        raise PlanError(f"{res.address}: offerings of {res.provider} were not fetched; cannot pick an offering")
    ranked = [o for o in rank(request, offerings) if o.id != exclude]
    if not ranked:
        wanted = ", ".join(f"{k}={v}" for k, v in request.to_dict().items())
        raise PlanError(
            f"{res.address}: no available {res.provider} offering matches {wanted}",
            hint="run `reconciler offerings` to see what is available, then relax the requirements",
        )
    return select(ranked, res.fallback_attempts)


def _desired_attributes(
    res: Resource, prior: ResourceState | None, live: LiveView, reselect: bool, exclude: str | None = None
) -> tuple[dict[str, Any], float | None, Selection | None]:
    """Attributes to create with (offering pinned), the hourly price where known, and the
    selection made now (None when the pin comes from state or the configuration)."""
    attrs = dict(res.attributes)
    offerings = live.offerings.get(res.provider)
    if res.address.kind is Kind.INSTANCE and res.offering is not None:
        request = res.offering.to_dict()
        prior_request = dict(prior.attributes.get(OFFERING_KEY) or {}) if prior else {}
        selected = prior_request.pop("selected", None)
        if prior is not None and prior_request == request and selected and not reselect:
            pin_keys = set(prior.attributes) - set(attrs) - {OFFERING_KEY}
            attrs.update({k: prior.attributes[k] for k in pin_keys})
            attrs[OFFERING_KEY] = {**request, "selected": selected}
            return attrs, prior.hourly_price, None
        selection = _select_offering(res, res.offering, offerings, exclude)
        attrs.update(selection.chosen.pin)
        attrs[OFFERING_KEY] = {**request, "selected": selection.chosen.id}
        return attrs, selection.chosen.hourly_price, selection
    if res.address.kind is Kind.INSTANCE:
        chosen_pin = pinned_offering(attrs, offerings)
        if chosen_pin is not None:
            return attrs, chosen_pin.hourly_price, None
        return attrs, prior.hourly_price if prior else None, None
    if res.address.kind is Kind.VOLUME:
        size = attrs.get("size_gb")
        region = attrs.get("region")
        price = live.volume_prices.get((res.provider, str(region), attrs.get("cloud")))
        if price is None:
            price = live.volume_prices.get((res.provider, str(region), None))
        if price is not None and isinstance(size, int):
            return attrs, price * size, None
        return attrs, prior.hourly_price if prior else None, None
    return attrs, 0.0, None


def _refreshed_before(prior: ResourceState, observed: LiveResource | None) -> dict[str, Any]:
    """State attributes overlaid with what the API reports now (drift shows as a diff).

    Where state keeps a sensitive value's digest, the digest stays: the API reports the
    value in clear, which must neither count as drift nor reach a plan, state or output.
    """
    before = dict(prior.attributes)
    if observed is not None:
        for key, value in observed.attributes.items():
            if key in before and key not in REFERENCE_KEYS:
                before[key] = _overlay_keeping_digests(before[key], value)
    return before


def _overlay_keeping_digests(stored: Any, reported: Any) -> Any:
    if isinstance(stored, str) and stored.startswith(MASK_PREFIX):
        return stored
    if isinstance(stored, dict) and isinstance(reported, dict):
        return {k: _overlay_keeping_digests(stored[k], v) if k in stored else v for k, v in reported.items()}
    if isinstance(stored, list) and isinstance(reported, list) and len(stored) == len(reported):
        return [_overlay_keeping_digests(a, b) for a, b in zip(stored, reported, strict=True)]
    return reported


def _changed_keys(before: Mapping[str, Any], after: Mapping[str, Any], ignore: Iterable[str]) -> list[str]:
    ignored = set(ignore)
    keys = set(before) | set(after)
    return sorted(k for k in keys if k not in ignored and before.get(k) != after.get(k))


def _did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean {match[0]}?" if match else None


def _match_targets(targets: Sequence[Address], known: set[Address], flag: str) -> set[Address]:
    selected: set[Address] = set()
    for target in targets:
        hits = {a for a in known if a == target or (target.index is None and a.base == target)}
        if not hits:
            raise PlanError(
                f"{flag} {target}: no such resource in the configuration or state",
                hint=_did_you_mean(str(target), sorted(str(a) for a in known)),
            )
        selected |= hits
    return selected


def check_addresses(
    resources: Mapping[Address, Resource], doc: StateDocument, options: PlanOptions
) -> None:
    """Unknown --target/--replace addresses are user error: refuse them before any API call."""
    known = set(resources) | {Address.parse(a) for a in doc.resources}
    _match_targets(options.replace, known, "--replace")
    _match_targets(options.targets, known, "--target")


def _cbd_closure(
    replaced: set[Address], cbd: set[Address], deps: Mapping[Address, tuple[Address, ...]]
) -> set[Address]:
    """create_before_destroy spreads to replaced dependencies, or the order would cycle."""
    result = set(cbd)
    stack = list(cbd)
    while stack:
        node = stack.pop()
        for dep in deps.get(node, ()):
            if dep in replaced and dep not in result:
                result.add(dep)
                stack.append(dep)
    return result


def plan_changes(
    resources: Mapping[Address, Resource],
    doc: StateDocument,
    live: LiveView,
    options: PlanOptions | None = None,
) -> Plan:
    """Diff desired resources against state (refreshed by live) into an ordered Plan."""
    opts = options or PlanOptions()
    desired = {} if opts.destroy else dict(resources)
    state_addrs = {Address.parse(a): a for a in doc.resources}
    known = set(resources) | set(state_addrs)
    forced_replace = _match_targets(opts.replace, known, "--replace")
    targeted = _match_targets(opts.targets, known, "--target") if opts.targets else None

    graph = DependencyGraph({a: r.depends_on for a, r in desired.items()})
    order = graph.topological_order()

    changes: dict[Address, Change] = {}
    notes: list[str] = []
    new_ids: set[Address] = set()  # addresses whose provider id changes in this plan
    finishing_delete: set[Address] = set()  # replaced only because they are already being deleted
    values = PlannedValues(changes, desired, doc, live)
    selections: dict[Address, Selection] = {}
    expired_reasons: dict[Address, str] = {}

    for address in order:
        if address not in desired:
            continue
        res, unknown = resolve_for_plan(desired[address], values)
        key = str(address)
        prior = doc.resources.get(key)
        reclaimed = _reclaimed(prior, live)
        # A reclaimed spot instance with fallback moves on: its offering's capacity just went.
        move_on = reclaimed is not None and res.fallback_attempts > 1
        after, price_after, selection = _desired_attributes(
            res, prior, live, opts.reselect or move_on, exclude=_selected_offering(prior) if move_on else None
        )
        if selection is not None:
            selections[address] = selection
        if address.kind is Kind.INSTANCE:
            after = with_deadline(res.provider, after, prior, opts.now)
            why = expired(after, prior, opts.now)
            if why is not None:
                del desired[address]  # planned below as a delete of what state holds
                if prior is None:
                    notes.append(f"{address}: {why}; not created")
                else:
                    expired_reasons[address] = why
                continue
        masked_after = mask_sensitive(after, res.sensitive, doc.lineage)
        common = dict(
            address=address,
            provider=res.provider,
            after=after,
            depends_on=res.depends_on,
            sensitive=res.sensitive,
            create_before_destroy=res.lifecycle.create_before_destroy,
            hourly_after=price_after or 0.0,
            computed=res.computed,
            unknown=unknown,
        )
        if prior is None:
            changes[address] = Change(action=Action.CREATE, before=None, **common)  # type: ignore[arg-type]
            new_ids.add(address)
            continue
        if prior.provider != res.provider:
            reasons: tuple[str, ...] = (f"provider changed from {prior.provider} to {res.provider}",)
            changes[address] = Change(
                action=Action.REPLACE,
                before=prior.attributes,
                reasons=reasons,
                replace_paths=("provider",),
                id=prior.id,
                hourly_before=prior.hourly_price or 0.0,
                **common,  # type: ignore[arg-type]
            )
            new_ids.add(address)
            continue
        observed = live.lookup(prior.provider, address.kind, prior.id)
        refreshed = live.refreshed(prior.provider, address.kind)
        if refreshed and observed is not None and observed.status is Status.DELETING:
            # A delete already under way (an interrupted run's, or someone else's): finish
            # it, so whatever must wait for the object to be gone waits, then create anew.
            changes[address] = Change(
                action=Action.REPLACE,
                before=prior.attributes,
                reasons=(reclaimed or "being deleted; the delete is finished, then a new one is created",),
                id=prior.id,
                hourly_before=prior.hourly_price or 0.0,
                marker=prior.marker,
                **common,  # type: ignore[arg-type]
            )
            new_ids.add(address)
            finishing_delete.add(address)
            continue
        if refreshed and (observed is None or observed.status in GONE_STATUSES):
            changes[address] = Change(
                action=Action.CREATE,
                before=None,
                reasons=(reclaimed or "deleted outside reconciler",),
                **common,  # type: ignore[arg-type]
            )
            new_ids.add(address)
            continue
        before = _refreshed_before(prior, observed)
        hourly_before = prior.hourly_price or 0.0
        if observed is not None and observed.hourly_price is not None and address.kind is Kind.INSTANCE:
            hourly_before = observed.hourly_price
        replace_reasons: list[str] = []
        replace_paths: list[str] = []
        status = (
            observed.status
            if observed is not None
            else Status(prior.status)
            if prior.status in (s.value for s in Status)
            else Status.UNKNOWN
        )
        if prior.status == Status.ERROR.value and status in (Status.PENDING, Status.UNKNOWN):
            # The applier saw the error on a fresh read; a cached list (Forward) may still say
            # "creating" for a while, but an instance does not leave error for pending.
            status = Status.ERROR
        failure = None
        if status is Status.ERROR:
            failure = "instance is in error state"
        elif prior.status == CREATE_TIMED_OUT and status in (Status.PENDING, Status.UNKNOWN):
            failure = "instance failed to become active within --create-timeout"
        if failure is not None:
            if res.on_failure == "replace":
                replace_reasons.append(f"{failure} (on_failure: replace)")
            else:
                notes.append(f"{address}: {failure}; kept (on_failure: keep)")
        if address in forced_replace:
            replace_reasons.append("replacement requested with --replace")
        changed = _changed_keys(before, masked_after, res.lifecycle.ignore_changes)
        updatable = live.updatable.get((res.provider, address.kind), frozenset())
        forcing = [k for k in changed if k not in updatable and k != EXPIRY_KEY]
        for dep in res.depends_on:
            if dep in new_ids and dep.kind is not Kind.INSTANCE:
                ref_key = "ssh_key" if dep.kind is Kind.SSH_KEY else "volumes"
                if ref_key in res.attributes:
                    replace_reasons.append(f"{dep} gets a new id")
                    replace_paths.append(ref_key)
        if forcing:
            replace_reasons.extend(f"{k} forces replacement" for k in forcing)
            replace_paths.extend(forcing)
        if replace_reasons:
            changes[address] = Change(
                action=Action.REPLACE,
                before=before,
                reasons=tuple(replace_reasons),
                replace_paths=tuple(dict.fromkeys(replace_paths)),
                id=prior.id,
                hourly_before=hourly_before,
                marker=prior.marker,
                **common,  # type: ignore[arg-type]
            )
            new_ids.add(address)
        elif changed:
            changes[address] = Change(
                action=Action.UPDATE,
                before=before,
                reasons=tuple(f"{k} changed" for k in changed),
                id=prior.id,
                hourly_before=hourly_before,
                marker=prior.marker,
                **{**common, "hourly_after": hourly_before},  # type: ignore[arg-type]
            )
        else:
            changes[address] = Change(
                action=Action.NOOP,
                before=before,
                id=prior.id,
                hourly_before=hourly_before,
                marker=prior.marker,
                **{**common, "hourly_after": hourly_before},  # type: ignore[arg-type]
            )

    for key, prior in doc.resources.items():
        address = Address.parse(key)
        if address in desired:
            continue
        observed = live.lookup(prior.provider, address.kind, prior.id)
        gone = live.refreshed(prior.provider, address.kind) and observed is None
        changes[address] = Change(
            address=address,
            action=Action.DELETE,
            provider=prior.provider,
            before=prior.attributes,
            after=None,
            reasons=("already gone outside reconciler",)
            if gone
            else (expired_reasons[address],)
            if address in expired_reasons
            else (("destroy requested",) if opts.destroy else ("not in the configuration",)),
            depends_on=tuple(Address.parse(d) for d in prior.depends_on),
            id=prior.id,
            hourly_before=prior.hourly_price or 0.0,
            marker=prior.marker,
        )

    changes = {a: explain_unknowns(c, changes) for a, c in changes.items()}
    if targeted is not None:
        changes = _restrict_to_targets(changes, targeted, desired, doc)
    changes = _with_selections(changes, selections, desired)
    check_creatable(changes, desired, doc, live)

    replaced = {a for a, c in changes.items() if c.action is Action.REPLACE}
    chosen_cbd = {a for a in replaced if changes[a].create_before_destroy}
    spread = _cbd_closure(replaced, chosen_cbd, {a: c.depends_on for a, c in changes.items()})
    for address in sorted(spread - chosen_cbd, key=Address.sort_key):
        changes[address] = dataclasses.replace(changes[address], create_before_destroy=True)
        notes.append(f"{address}: replaced create-before-destroy because a dependent is")

    for address, change in changes.items():
        if change.action in (Action.DELETE, Action.REPLACE):
            declared = resources.get(address)
            if address in finishing_delete:
                continue
            if declared is not None and declared.lifecycle.prevent_destroy:
                verb = "destroy" if change.action is Action.DELETE else "replace"
                raise PlanError(
                    f"{address} has lifecycle.prevent_destroy set, but the plan would {verb} it "
                    f"({'; '.join(change.reasons)})",
                    hint="remove prevent_destroy from its lifecycle block if you really mean it",
                )

    deposed_deletes = tuple(
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
    ordered = tuple(changes[a] for a in sorted(changes, key=Address.sort_key)) + deposed_deletes
    hourly_before = sum(
        r.hourly_price or 0.0 for k, r in doc.resources.items() if _still_running(k, r, live)
    ) + sum(d.hourly_price or 0.0 for d in doc.deposed)
    hourly_after = sum(c.hourly_after for c in ordered if c.action is not Action.DELETE)
    if targeted is not None:
        untouched = {str(c.address) for c in ordered}
        hourly_after += sum(r.hourly_price or 0.0 for k, r in doc.resources.items() if k not in untouched)
    orphans = _find_orphans(doc, live)
    return Plan(
        changes=ordered,
        state_serial=doc.serial,
        state_lineage=doc.lineage,
        cost=CostSummary(hourly_before=round(hourly_before, 6), hourly_after=round(hourly_after, 6)),
        notes=tuple(notes),
        orphans=orphans,
        foreign=find_foreign_objects(ordered, doc, live),
    )


def _with_selections(
    changes: dict[Address, Change], selections: Mapping[Address, Selection], desired: Mapping[Address, Resource]
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


def _still_running(key: str, res: ResourceState, live: LiveView) -> bool:
    """False for a tracked object the refresh saw gone: it no longer costs anything."""
    kind = Address.parse(key).kind
    if not live.refreshed(res.provider, kind):
        return True
    observed = live.lookup(res.provider, kind, res.id)
    return observed is not None and observed.status not in GONE_STATUSES


def _restrict_to_targets(
    changes: dict[Address, Change],
    targeted: set[Address],
    desired: Mapping[Address, Resource],
    doc: StateDocument,
) -> dict[Address, Change]:
    deps = {a: r.depends_on for a, r in desired.items()}
    for key, res in doc.resources.items():
        deps.setdefault(Address.parse(key), tuple(Address.parse(d) for d in res.depends_on))
    keep = set(targeted)
    stack = list(targeted)
    while stack:
        node = stack.pop()
        for dep in deps.get(node, ()):
            if dep not in keep:
                keep.add(dep)
                stack.append(dep)
    dependents: dict[Address, set[Address]] = {}
    for node, its_deps in deps.items():
        for dep in its_deps:
            dependents.setdefault(dep, set()).add(node)
    stack = [a for a in keep if a in changes and changes[a].action in (Action.DELETE, Action.REPLACE)]
    while stack:
        node = stack.pop()
        for dependent in dependents.get(node, ()):
            change = changes.get(dependent)
            if (
                dependent not in keep
                and change is not None
                and change.action in (Action.DELETE, Action.REPLACE)
            ):
                keep.add(dependent)
                stack.append(dependent)
    return {a: c for a, c in changes.items() if a in keep}


def _find_orphans(doc: StateDocument, live: LiveView) -> tuple[Orphan, ...]:
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


def providers_needing_offerings(
    resources: Mapping[Address, Resource], doc: StateDocument, reselect: bool = False
) -> tuple[set[str], set[str]]:
    """Which providers' instance offerings and volume prices a plan needs.

    In-sync resources reuse the price and pin recorded in state, so a plan of an
    unchanged configuration fetches no catalogue at all, unless an instance may fail over
    (a reclaimed spot instance with `fallback` is placed on the next candidate).
    """
    instance_providers: set[str] = set()
    volume_providers: set[str] = set()
    for address, res in resources.items():
        prior = doc.resources.get(str(address))
        if address.kind is Kind.INSTANCE:
            if prior is None or reselect or prior.hourly_price is None or res.fallback_attempts > 1:
                instance_providers.add(res.provider)
            elif res.offering is not None:
                prior_request = dict(prior.attributes.get(OFFERING_KEY) or {})
                prior_request.pop("selected", None)
                if prior_request != res.offering.to_dict():
                    instance_providers.add(res.provider)
            elif any(prior.attributes.get(k) != v for k, v in res.attributes.items()):
                instance_providers.add(res.provider)
        elif address.kind is Kind.VOLUME:
            if prior is None or prior.hourly_price is None or prior.attributes != res.attributes:
                volume_providers.add(res.provider)
    return instance_providers, volume_providers


def refresh_state(doc: StateDocument, live: LiveView) -> tuple[StateDocument, tuple[str, ...]]:
    """State updated from live: drifted attributes taken over, objects gone forgotten.

    This is `reconciler refresh` (and what `plan --refresh-only` shows): it records what
    happened outside reconciler without changing any resource.
    """
    new = doc.model_copy(deep=True)
    notes: list[str] = []
    for key, prior in doc.resources.items():
        address = Address.parse(key)
        if not live.refreshed(prior.provider, address.kind):
            continue
        observed = live.lookup(prior.provider, address.kind, prior.id)
        if observed is None or observed.status is Status.DELETED:
            del new.resources[key]
            notes.append(f"{key}: {prior.id} was deleted outside reconciler (refresh forgets it)")
            continue
        refreshed = _refreshed_before(prior, observed)
        for attr in _changed_keys(prior.attributes, refreshed, ()):
            notes.append(
                f"{key}: {attr} changed outside reconciler: {prior.attributes.get(attr)!r} -> {refreshed.get(attr)!r}"
            )
        updates: dict[str, Any] = {
            "attributes": refreshed,
            "status": observed.status.value,
            "computed": observed.computed or prior.computed,
        }
        if observed.status.value != prior.status:
            notes.append(f"{key}: status {prior.status} -> {observed.status.value}")
        if observed.hourly_price is not None:
            updates["hourly_price"] = observed.hourly_price
        new.resources[key] = prior.model_copy(update=updates)
    return new, tuple(notes)


def refresh_computed(doc: StateDocument, live: LiveView) -> StateDocument:
    """State with the computed attributes (ip, ssh_port, ...) each refreshed object reports now.

    Computed attributes never count as drift: this is how every plan keeps them current.
    """
    updates: dict[str, ResourceState] = {}
    for key, prior in doc.resources.items():
        observed = live.lookup(prior.provider, Address.parse(key).kind, prior.id)
        if observed is not None and observed.computed and observed.computed != prior.computed:
            updates[key] = prior.model_copy(update={"computed": dict(observed.computed)})
    if not updates:
        return doc
    return doc.model_copy(update={"resources": {**doc.resources, **updates}})


PIN_ATTRIBUTES = ("cloud", "region", "shade_instance_type", "offering_id")


def imported_resource(res: Resource, observed: LiveResource, lineage: str) -> ResourceState:
    """The state entry for an existing object adopted with `reconciler import`."""
    attrs = dict(res.attributes)
    for key in PIN_ATTRIBUTES:
        if key not in attrs and key in observed.attributes:
            attrs[key] = observed.attributes[key]
    if res.offering is not None:
        attrs[OFFERING_KEY] = {
            **res.offering.to_dict(),
            "selected": observed.attributes.get("offering_id", "imported"),
        }
    return ResourceState(
        provider=res.provider,
        kind=res.address.kind.value,
        id=observed.id,
        attributes=mask_sensitive(attrs, res.sensitive, lineage),
        depends_on=[str(d) for d in res.depends_on],
        marker=observed.marker,
        status=observed.status.value,
        hourly_price=observed.hourly_price,
        computed=dict(observed.computed),
    )
