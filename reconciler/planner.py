"""plan(config, state, live) -> Plan. Pure: no I/O, no provider imports.

`plan_changes` reads as its passes, in the spirit of Terraform's graph transformers: each
desired resource is diffed on its own, in dependency order (`plan_resource`); then passes
over the whole plan (`planner_passes`) add the deletes of removed resources, explain values
known only after apply, keep to `--target`, attach the offering choices, check that what is
created can be, spread create_before_destroy and enforce prevent_destroy; the deletes of
deposed objects, the cost and the orphans close it. Before any of it, `planner_pending`
settles the operations a crashed run left half-done; `planner_refresh` reads drift.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reconciler.errors import PlanError
from reconciler.expiry import EXPIRY_KEY, expired, with_deadline
from reconciler.foreign_objects import find_foreign_objects
from reconciler.graph import DependencyGraph
from reconciler.model import (
    CREATE_TIMED_OUT,
    GONE_STATUSES,
    REFERENCE_KEYS,
    Action,
    ActionReason,
    Address,
    Change,
    Kind,
    LiveResource,
    Offering,
    OfferingRequest,
    Plan,
    Resource,
    Status,
    mask_sensitive,
)
from reconciler.plan_checks import check_creatable, pinned_offering
from reconciler.planner_passes import (
    attach_selections,
    check_prevent_destroy,
    deposed_deletes,
    find_orphans,
    in_plan_order,
    match_targets,
    moved_to_providers,
    plan_cost,
    removed_resources,
    restrict_to_targets,
    spread_create_before_destroy,
    target_graph,
)
from reconciler.planner_refresh import changed_keys, refreshed_before
from reconciler.provider_spec import find_provider
from reconciler.selection import Bound, Selection, rank, select
from reconciler.state.model import ResourceState, StateDocument
from reconciler.unknowns import PlannedValues, explain_unknowns, resolve_for_plan

LiveKey = tuple[str, Kind]
OFFERING_KEY = "offering"


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


def plan_changes(
    resources: Mapping[Address, Resource],
    doc: StateDocument,
    live: LiveView,
    options: PlanOptions | None = None,
) -> Plan:
    """Diff desired resources against state (refreshed by live) into an ordered Plan."""
    opts = options or PlanOptions()
    known = set(resources) | {Address.parse(a) for a in doc.resources}
    forced_replace = match_targets(opts.replace, known, "--replace")
    targeted = match_targets(opts.targets, known, "--target") if opts.targets else None

    diffs = diff_resources(resources, doc, live, opts, forced_replace)
    removed = removed_resources(doc, diffs.desired, live, destroy=opts.destroy, expired=diffs.expired)
    changes = {**diffs.changes, **removed}
    moved_notes = moved_to_providers(changes, diffs.desired)
    changes = {a: explain_unknowns(c, changes) for a, c in changes.items()}
    if targeted is not None:
        changes = restrict_to_targets(changes, targeted, target_graph(diffs.desired, doc, targeted))
    changes = attach_selections(changes, diffs.selections, diffs.desired)
    check_creatable(changes, diffs.desired, doc, live)
    changes, spread_notes = spread_create_before_destroy(changes)
    check_prevent_destroy(changes, resources, diffs.finishing_delete)

    ordered = in_plan_order(changes, deposed_deletes(doc))
    return Plan(
        changes=ordered,
        state_serial=doc.serial,
        state_lineage=doc.lineage,
        cost=plan_cost(ordered, doc, live, targeted),
        notes=(*diffs.notes, *moved_notes, *spread_notes),
        orphans=find_orphans(doc, live),
        foreign=find_foreign_objects(ordered, doc, live),
    )


def check_addresses(
    resources: Mapping[Address, Resource], doc: StateDocument, options: PlanOptions
) -> None:
    """Unknown --target/--replace addresses are user error: refuse them before any API call."""
    known = set(resources) | {Address.parse(a) for a in doc.resources}
    match_targets(options.replace, known, "--replace")
    match_targets(options.targets, known, "--target")


@dataclass
class ResourceDiffs:
    """What diffing every desired resource found, for the passes that follow."""

    desired: dict[Address, Resource]  # without the instances that expired
    changes: dict[Address, Change] = field(default_factory=dict)
    selections: dict[Address, Selection] = field(default_factory=dict)
    expired: dict[Address, str] = field(default_factory=dict)  # why each one expired
    finishing_delete: set[Address] = field(default_factory=set)  # replaced as they are being deleted
    notes: list[str] = field(default_factory=list)


def diff_resources(
    resources: Mapping[Address, Resource],
    doc: StateDocument,
    live: LiveView,
    opts: PlanOptions,
    forced_replace: Set[Address],
) -> ResourceDiffs:
    """`plan_resource` for each desired resource, dependencies first, so a reference reads the
    value its target is planned to have and a dependency's new id reaches its dependents."""
    diffs = ResourceDiffs(desired={} if opts.destroy else dict(resources))
    values = PlannedValues(diffs.changes, diffs.desired, doc, live)
    new_ids: set[Address] = set()  # addresses whose provider id changes in this plan
    for address in DependencyGraph({a: r.depends_on for a, r in diffs.desired.items()}).topological_order():
        if address not in diffs.desired:
            continue
        res, unknown = resolve_for_plan(diffs.desired[address], values)
        planned = plan_resource(
            res,
            unknown,
            doc.resources.get(str(address)),
            live,
            opts,
            lineage=doc.lineage,
            replace_requested=address in forced_replace,
            new_ids=new_ids,
        )
        diffs.notes.extend(planned.notes)
        if planned.change is None:
            del diffs.desired[address]  # expired: planned as a delete of what state holds, if anything
            if planned.expired is not None:
                diffs.expired[address] = planned.expired
            continue
        diffs.changes[address] = planned.change
        if planned.selection is not None:
            diffs.selections[address] = planned.selection
        if planned.finishing_delete:
            diffs.finishing_delete.add(address)
        if planned.change.action in (Action.CREATE, Action.REPLACE):
            new_ids.add(address)
    return diffs


@dataclass(frozen=True)
class ResourcePlan:
    """What `plan_resource` decided for one desired resource."""

    change: Change | None  # None: the instance expired (see `expired`)
    selection: Selection | None = None  # the offering chosen now, if one was
    notes: tuple[str, ...] = ()
    expired: str | None = None  # why an instance that state tracks expired
    finishing_delete: bool = False  # replaced because its delete is already under way


@dataclass(frozen=True)
class Wanted:
    """What the configuration asks of one resource in this plan: its attributes to create
    with (offering pinned, deadline stamped, references substituted) and their price."""

    res: Resource
    after: dict[str, Any]
    masked_after: dict[str, Any]  # as state will keep it: sensitive values as salted digests
    hourly_after: float
    unknown: tuple[str, ...]

    def change(
        self,
        action: Action,
        before: dict[str, Any] | None,
        *,
        reasons: tuple[str, ...] = (),
        reason: ActionReason | None = None,
        replace_paths: tuple[str, ...] = (),
        prior: ResourceState | None = None,
        hourly_before: float = 0.0,
        keep_price: bool = False,
        marker: bool = True,
    ) -> Change:
        """A change to this resource; with `prior`, of the object state tracks (its id, and
        its marker unless `marker` is false); `keep_price` for one that keeps running as is."""
        return Change(
            address=self.res.address,
            action=action,
            provider=self.res.provider,
            before=before,
            after=self.after,
            reasons=reasons,
            depends_on=self.res.depends_on,
            replace_paths=replace_paths,
            id=prior.id if prior is not None else None,
            create_before_destroy=self.res.lifecycle.create_before_destroy,
            sensitive=self.res.sensitive,
            hourly_before=hourly_before,
            hourly_after=hourly_before if keep_price else self.hourly_after,
            marker=prior.marker if prior is not None and marker else None,
            computed=self.res.computed,
            unknown=self.unknown,
            reason=reason,
            masked_after=self.masked_after if self.res.sensitive else None,
        )


def plan_resource(
    res: Resource,
    unknown: tuple[str, ...],
    prior: ResourceState | None,
    live: LiveView,
    opts: PlanOptions,
    *,
    lineage: str,
    replace_requested: bool = False,
    new_ids: Set[Address] = frozenset(),
) -> ResourcePlan:
    """The change one desired resource needs, against what state tracks and live reports.

    `unknown` lists the attribute paths known only after apply; `new_ids` the resources whose
    provider id this plan changes (a dependent that records their id is replaced).
    """
    address = res.address
    reclaimed = _reclaimed(prior, live)
    # A reclaimed spot instance with fallback moves on: its offering's capacity just went.
    move_on = reclaimed is not None and res.fallback_attempts > 1
    after, price_after, selection, provider = _desired_attributes(
        res, prior, live, opts.reselect or move_on, _selected_offering(prior) if move_on else None, opts.now
    )
    if provider != res.provider:
        res = dataclasses.replace(res, provider=provider)
    if address.kind is Kind.INSTANCE:
        after = with_deadline(res.provider, after, prior, opts.now)
        why = expired(after, prior, opts.now)
        if why is not None:
            if prior is None:
                return ResourcePlan(None, notes=(f"{address}: {why}; not created",))
            return ResourcePlan(None, expired=why)
    wanted = Wanted(res, after, mask_sensitive(after, res.sensitive, lineage), price_after or 0.0, unknown)
    if prior is None:
        return ResourcePlan(wanted.change(Action.CREATE, None), selection)
    if prior.provider != res.provider:
        change = wanted.change(
            Action.REPLACE,
            prior.attributes,
            reasons=(f"provider changed from {prior.provider} to {res.provider}",),
            reason=ActionReason.REPLACE_BECAUSE_CANNOT_UPDATE,
            replace_paths=("provider",),
            prior=prior,
            hourly_before=prior.hourly_price or 0.0,
            marker=False,
        )
        return ResourcePlan(change, selection)
    observed = live.lookup(prior.provider, address.kind, prior.id)
    refreshed = live.refreshed(prior.provider, address.kind)
    if refreshed and observed is not None and observed.status is Status.DELETING:
        # A delete already under way (an interrupted run's, or someone else's): finish it, so
        # whatever must wait for the object to be gone waits, then create anew.
        change = wanted.change(
            Action.REPLACE,
            prior.attributes,
            reasons=(reclaimed or "being deleted; the delete is finished, then a new one is created",),
            reason=ActionReason.REPLACE_BECAUSE_CANNOT_UPDATE,
            prior=prior,
            hourly_before=prior.hourly_price or 0.0,
        )
        return ResourcePlan(change, selection, finishing_delete=True)
    if refreshed and (observed is None or observed.status in GONE_STATUSES):
        change = wanted.change(
            Action.CREATE,
            None,
            reasons=(reclaimed or "deleted outside reconciler",),
            reason=None if reclaimed else ActionReason.CREATE_BECAUSE_DELETED_OUTSIDE,
        )
        return ResourcePlan(change, selection)
    change, notes = _diff_tracked(wanted, prior, observed, live, replace_requested, new_ids)
    return ResourcePlan(change, selection, notes=notes)


def _status_now(prior: ResourceState, observed: LiveResource | None) -> Status:
    if observed is not None:
        status = observed.status
    else:
        status = Status(prior.status) if prior.status in (s.value for s in Status) else Status.UNKNOWN
    if prior.status == Status.ERROR.value and status in (Status.PENDING, Status.UNKNOWN):
        # The applier saw the error on a fresh read; a cached list (Forward) may still say
        # "creating" for a while, but an instance does not leave error for pending.
        return Status.ERROR
    return status


def _failure(prior: ResourceState, observed: LiveResource | None) -> str | None:
    """What went wrong with a tracked object (error, or never became active), if anything."""
    status = _status_now(prior, observed)
    if status is Status.ERROR:
        return "instance is in error state"
    if prior.status == CREATE_TIMED_OUT and status in (Status.PENDING, Status.UNKNOWN):
        return "instance failed to become active within --create-timeout"
    return None


def _diff_tracked(
    wanted: Wanted,
    prior: ResourceState,
    observed: LiveResource | None,
    live: LiveView,
    replace_requested: bool,
    new_ids: Set[Address],
) -> tuple[Change, tuple[str, ...]]:
    """Replace, update in place or leave alone an object that exists: by what failed, what
    was asked, and which changed attributes the API can change in place."""
    res = wanted.res
    before = refreshed_before(prior, observed)
    hourly_before = prior.hourly_price or 0.0
    if observed is not None and observed.hourly_price is not None and res.address.kind is Kind.INSTANCE:
        hourly_before = observed.hourly_price
    replace_reasons: list[str] = []
    replace_paths: list[str] = []
    notes: tuple[str, ...] = ()
    reason = ActionReason.REPLACE_BECAUSE_CANNOT_UPDATE
    failure = _failure(prior, observed)
    if failure is not None and res.on_failure == "replace":
        replace_reasons.append(f"{failure} (on_failure: replace)")
        reason = ActionReason.REPLACE_BECAUSE_TAINTED
    elif failure is not None:
        notes = (f"{res.address}: {failure}; kept (on_failure: keep)",)
    if replace_requested:
        replace_reasons.append("replacement requested with --replace")
        if reason is not ActionReason.REPLACE_BECAUSE_TAINTED:
            reason = ActionReason.REPLACE_BY_REQUEST
    changed = changed_keys(before, wanted.masked_after, res.lifecycle.ignore_changes)
    updatable = live.updatable.get((res.provider, res.address.kind), frozenset())
    forcing = [k for k in changed if k not in updatable and k != EXPIRY_KEY]
    for dep in res.depends_on:
        if dep in new_ids and dep.kind is not Kind.INSTANCE:
            ref_key = REFERENCE_KEYS[dep.kind]
            if ref_key in res.attributes:
                replace_reasons.append(f"{dep} gets a new id")
                replace_paths.append(ref_key)
    replace_reasons.extend(f"{k} forces replacement" for k in forcing)
    replace_paths.extend(forcing)
    if replace_reasons:
        change = wanted.change(
            Action.REPLACE,
            before,
            reasons=tuple(replace_reasons),
            reason=reason,
            replace_paths=tuple(dict.fromkeys(replace_paths)),
            prior=prior,
            hourly_before=hourly_before,
        )
    elif changed:
        reasons = tuple(f"{k} changed" for k in changed)
        change = wanted.change(
            Action.UPDATE, before, reasons=reasons, prior=prior, hourly_before=hourly_before, keep_price=True
        )
    else:
        change = wanted.change(Action.NOOP, before, prior=prior, hourly_before=hourly_before, keep_price=True)
    return change, notes


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


def _catalogue(res: Resource, live: LiveView) -> list[Offering]:
    """The offerings of every provider the instance may land on (one list per provider)."""
    found: list[Offering] = []
    for provider in res.providers:
        offerings = live.offerings.get(provider)
        if offerings is None:
            raise PlanError(f"{res.address}: offerings of {provider} were not fetched; cannot pick an offering")
        found.extend(offerings)
    return found


def _select_offering(
    res: Resource, request: OfferingRequest, live: LiveView, bound: Bound | None, exclude: str | None = None
) -> Selection:
    ranked = [o for o in rank(request, _catalogue(res, live)) if o.id != exclude]
    if not ranked:
        wanted = ", ".join(f"{k}={v}" for k, v in request.to_dict().items() if k != "providers")
        raise PlanError(
            f"{res.address}: no available {' or '.join(res.providers)} offering matches {wanted}",
            hint="run `reconciler offerings` to see what is available, then relax the requirements",
        )
    return select(ranked, res.fallback_attempts, bound)


def _provider_bound(
    res: Resource, prior: ResourceState | None, now: datetime | None
) -> Callable[[str], dict[str, Any]] | None:
    """For an instance whose provider is chosen: the attributes that follow the provider it
    lands on (its SSH key's object there, Shadeform's auto_delete); None for the others."""
    if res.offering is None or not res.offering.providers:
        return None

    def bound(provider: str) -> dict[str, Any]:
        found: dict[str, Any] = {}
        keys = res.attributes.get("ssh_key")
        if isinstance(keys, dict):
            found["ssh_key"] = keys[provider]
        deadline = with_deadline(provider, res.attributes, prior, now)
        if "auto_delete" in deadline:
            found["auto_delete"] = deadline["auto_delete"]
        return found

    return bound


def _desired_attributes(
    res: Resource,
    prior: ResourceState | None,
    live: LiveView,
    reselect: bool,
    exclude: str | None = None,
    now: datetime | None = None,
) -> tuple[dict[str, Any], float | None, Selection | None, str]:
    """Attributes to create with (offering pinned), the hourly price where known, the
    selection made now (None when the pin comes from state or the configuration), and the
    provider: chosen with the offering when the configuration lists several."""
    attrs = dict(res.attributes)
    offerings = live.offerings.get(res.provider)
    if res.address.kind is Kind.INSTANCE and res.offering is not None:
        bound = _provider_bound(res, prior, now)
        request = res.offering.to_dict()
        prior_request = dict(prior.attributes.get(OFFERING_KEY) or {}) if prior else {}
        selected = prior_request.pop("selected", None)
        if prior is not None and prior_request == request and selected and not reselect:
            pin_keys = set(prior.attributes) - set(attrs) - {OFFERING_KEY}
            attrs.update({k: prior.attributes[k] for k in pin_keys})
            if bound is not None and prior.provider in res.providers:
                attrs.update(bound(prior.provider))
            attrs[OFFERING_KEY] = {**request, "selected": selected}
            return attrs, prior.hourly_price, None, prior.provider if bound is not None else res.provider
        selection = _select_offering(res, res.offering, live, bound, exclude)
        attrs.update(selection.chosen.pin)
        if bound is not None:
            attrs.update(bound(selection.chosen.provider))
        attrs[OFFERING_KEY] = {**request, "selected": selection.chosen.id}
        return attrs, selection.chosen.hourly_price, selection, selection.chosen.provider
    if res.address.kind is Kind.INSTANCE:
        chosen_pin = pinned_offering(attrs, offerings)
        if chosen_pin is not None:
            return attrs, chosen_pin.hourly_price, None, res.provider
        return attrs, prior.hourly_price if prior else None, None, res.provider
    if res.address.kind is Kind.VOLUME:
        size = attrs.get("size_gb")
        region = attrs.get("region")
        price = live.volume_prices.get((res.provider, str(region), attrs.get("cloud")))
        if price is None:
            price = live.volume_prices.get((res.provider, str(region), None))
        if price is not None and isinstance(size, int):
            return attrs, price * size, None, res.provider
        return attrs, prior.hourly_price if prior else None, None, res.provider
    return attrs, 0.0, None, res.provider


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
                instance_providers.update(res.providers)
            elif res.offering is not None:
                prior_request = dict(prior.attributes.get(OFFERING_KEY) or {})
                prior_request.pop("selected", None)
                if prior_request != res.offering.to_dict():
                    instance_providers.update(res.providers)
            elif any(prior.attributes.get(k) != v for k, v in res.attributes.items()):
                instance_providers.add(res.provider)
        elif address.kind is Kind.VOLUME:
            if prior is None or prior.hourly_price is None or prior.attributes != res.attributes:
                volume_providers.add(res.provider)
    return instance_providers, volume_providers


def imported_resource(res: Resource, observed: LiveResource, lineage: str) -> ResourceState:
    """The state entry for an existing object adopted with `reconciler import`."""
    attrs = dict(res.attributes)
    keys = attrs.get("ssh_key")
    if isinstance(keys, dict):  # the key object on the provider it was found on
        attrs["ssh_key"] = keys[observed.provider]
    spec = find_provider(observed.provider)
    for key in spec.pin_keys if spec is not None else ():
        if key not in attrs and key in observed.attributes:
            attrs[key] = observed.attributes[key]
    if res.offering is not None:
        attrs[OFFERING_KEY] = {
            **res.offering.to_dict(),
            "selected": observed.attributes.get("offering_id", "imported"),
        }
    return ResourceState(
        provider=observed.provider,
        kind=res.address.kind.value,
        id=observed.id,
        attributes=mask_sensitive(attrs, res.sensitive, lineage),
        depends_on=[str(d) for d in res.depends_on],
        marker=observed.marker,
        status=observed.status.value,
        hourly_price=observed.hourly_price,
        computed=dict(observed.computed),
    )
