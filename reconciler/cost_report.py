"""`reconciler cost`: what the tracked resources burn now and what they have cost so far.

Pure, like the planner: from state and one refresh. The burn rate is the live price where
the API reports one (else the price state recorded at create); spend so far is the API's
own figure where it has one (Shadeform's `cost_estimate`), else elapsed time x price.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from rich.table import Table

from reconciler.model import GONE_STATUSES, HOURS_PER_MONTH, Address, Kind, Status
from reconciler.planner import LiveView
from reconciler.state.model import StateDocument
from reconciler.timestamps import parse_timestamp


@dataclass(frozen=True)
class CostLine:
    address: str
    provider: str
    id: str
    status: str
    hourly: float  # burn rate now; 0 for what is gone
    spent: float | None  # None when neither the API nor state says since when it runs
    spent_from: str  # "api", "elapsed" or "unknown"


@dataclass(frozen=True)
class CostReport:
    lines: tuple[CostLine, ...]

    @property
    def hourly(self) -> float:
        return sum(line.hourly for line in self.lines)

    @property
    def spent(self) -> float:
        return sum(line.spent or 0.0 for line in self.lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "resources": [asdict(line) for line in self.lines],
            "total": {
                "hourly": round(self.hourly, 6),
                "monthly": round(self.hourly * HOURS_PER_MONTH, 2),
                "spent": round(self.spent, 6),
            },
        }


def _elapsed_hours(created_at: str | None, now: datetime) -> float | None:
    started = parse_timestamp(created_at)
    if started is None:
        return None
    return max(0.0, (now - started).total_seconds() / 3600)


def cost_report(doc: StateDocument, live: LiveView, now: datetime) -> CostReport:
    lines = []
    for key in sorted(doc.resources, key=lambda a: Address.parse(a).sort_key()):
        held = doc.resources[key]
        kind = Address.parse(key).kind
        observed = live.lookup(held.provider, kind, held.id)
        refreshed = live.refreshed(held.provider, kind)
        gone = refreshed and (observed is None or observed.status in GONE_STATUSES)
        price = held.hourly_price or 0.0
        if kind is Kind.INSTANCE and observed is not None and observed.hourly_price is not None:
            price = observed.hourly_price
        status = observed.status.value if observed is not None else (Status.DELETED.value if gone else held.status)
        hours = _elapsed_hours(held.created_at, now)
        if observed is not None and observed.spent is not None:
            spent, source = observed.spent, "api"
        elif hours is not None and not gone:
            spent, source = hours * price, "elapsed"
        else:
            spent, source = None, "unknown"
        lines.append(CostLine(key, held.provider, held.id, status, 0.0 if gone else price, spent, source))
    return CostReport(tuple(lines))


def cost_table(report: CostReport) -> Table:
    table = Table(title="Cost of what state tracks", show_footer=True)
    monthly = f"${report.hourly * HOURS_PER_MONTH:,.2f}/month"
    table.add_column("address", footer="total")
    table.add_column("provider")
    table.add_column("status")
    table.add_column("$/h now", justify="right", footer=f"${report.hourly:,.2f}/h ({monthly})")
    table.add_column("spent so far", justify="right", footer=f"${report.spent:,.2f}")
    table.add_column("from", footer="")
    for line in report.lines:
        spent = "-" if line.spent is None else f"${line.spent:,.2f}"
        source = {"api": "provider's figure", "elapsed": "time x price", "unknown": "-"}[line.spent_from]
        table.add_row(line.address, line.provider, line.status, f"${line.hourly:,.2f}", spent, source)
    return table
