"""What live says changed outside reconciler: drift in attributes, objects gone, computed values.

`refresh_state` is `reconciler refresh` (and `plan --refresh-only`); `refresh_computed` keeps
the attributes an API reports (ip, ssh_port, ...) current on every plan; `refreshed_before`
is the "before" side of every diff the planner makes. Pure, like the planner.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from reconciler.model import MASK_PREFIX, REFERENCE_KEYS, Address, LiveResource, Status
from reconciler.state.model import ResourceState, StateDocument

if TYPE_CHECKING:
    from reconciler.planner import LiveView



def refreshed_before(prior: ResourceState, observed: LiveResource | None) -> dict[str, Any]:
    """State attributes overlaid with what the API reports now (drift shows as a diff).

    Where state keeps a sensitive value's digest, the digest stays: the API reports the
    value in clear, which must neither count as drift nor reach a plan, state or output.
    """
    before = dict(prior.attributes)
    if observed is not None:
        for key, value in observed.attributes.items():
            if key in before and key not in REFERENCE_KEYS.values():
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


def changed_keys(before: Mapping[str, Any], after: Mapping[str, Any], ignore: Iterable[str]) -> list[str]:
    ignored = set(ignore)
    keys = set(before) | set(after)
    return sorted(k for k in keys if k not in ignored and before.get(k) != after.get(k))


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
        refreshed = refreshed_before(prior, observed)
        for attr in changed_keys(prior.attributes, refreshed, ()):
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
