"""The safety net under state identity: a new state about to create what another state runs.

If a configuration's state is lost track of (another path, a renamed folder, `--state`
pointing elsewhere), its next plan starts from an empty state and would create every
object again. The objects already running carry the other state's ownership marker under
the same names, so a plan from an empty state can tell, and apply refuses to duplicate them
unless the user confirms.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from reconciler.model import GONE_STATUSES, Action, Change, ForeignObject, marker_belongs_to, marker_lineage
from reconciler.state.model import StateDocument

if TYPE_CHECKING:
    from reconciler.planner import LiveView

ALLOW_FLAG = "--allow-foreign-objects"


def state_is_new(doc: StateDocument) -> bool:
    return not (doc.resources or doc.pending or doc.deposed)


def find_foreign_objects(changes: Iterable[Change], doc: StateDocument, live: LiveView) -> tuple[ForeignObject, ...]:
    """Live objects named as this plan's creates that carry another state's marker (new states only)."""
    if not state_is_new(doc):
        return ()
    wanted = {
        (c.provider, c.address.kind, str(c.after.get("name"))): str(c.address)
        for c in changes
        if c.action is Action.CREATE and c.after is not None and c.after.get("name")
    }
    found = []
    for (provider, kind), by_id in live.resources.items():
        for res in by_id.values():
            address = wanted.get((provider, kind, res.name))
            lineage = marker_lineage(res.marker)
            if address is None or lineage is None or res.status in GONE_STATUSES:
                continue
            if marker_belongs_to(res.marker, doc.lineage):
                continue
            found.append(ForeignObject(address, provider, kind, res.id, res.name, lineage, res.hourly_price))
    return tuple(sorted(found, key=lambda f: (f.address, f.id)))


def foreign_summary(foreign: tuple[ForeignObject, ...]) -> str:
    """One sentence for warnings and errors: how many, owned by which states, at what cost."""
    lineages = ", ".join(sorted({f.lineage for f in foreign}))
    total = sum(f.hourly_price or 0.0 for f in foreign)
    noun = "object" if len(foreign) == 1 else "objects"
    return (
        f"the state is new, but {len(foreign)} live {noun} under the names this plan creates "
        f"already belong to another reconciler state (lineage {lineages}; ${total:,.2f}/h)"
    )
