"""`state list` for people: what state tracks, what it costs, and what an interrupted run left."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from reconciler.model import HOURS_PER_MONTH, Address, Status
from reconciler.provider_spec import find_provider
from reconciler.state.model import ResourceState, StateDocument
from reconciler.views.formatting import format_hourly, format_money


def _address_order(address: str) -> tuple[int, tuple[int, str, int, str], str]:
    try:
        return (0, Address.parse(address).sort_key(), address)
    except ValueError:
        return (1, (0, "", 0, ""), address)


def _type_of(kind: str, attributes: dict[str, Any], provider: str) -> str:
    if kind == "volumes" and attributes.get("size_gb") is not None:
        return f"{attributes['size_gb']} GB"
    spec = find_provider(provider)
    for key in (*((spec.type_key,) if spec is not None else ()), "instance_type", "gpu_type"):
        if attributes.get(key):
            return str(attributes[key])
    return ""


def _state_row(address: str, res: ResourceState) -> list[Text]:
    status_style = {Status.ERROR.value: "red", Status.PENDING.value: "yellow"}.get(res.status, "")
    return [
        Text(address),
        Text(res.provider),
        Text(res.id),
        Text(res.status, style=status_style),
        Text(format_hourly(res.hourly_price) if res.hourly_price is not None else "-"),
        Text(str(res.attributes.get("name", ""))),
        Text(str(res.attributes.get("region") or res.computed.get("region") or "")),
        Text(_type_of(res.kind, res.attributes, res.provider)),
        Text(_connect_address(res)),
    ]


def _connect_address(res: ResourceState) -> str:
    """`user@ip:port` once an instance reports where users connect to, else empty."""
    ip = res.computed.get("ip")
    if res.kind != "instances" or not ip:
        return ""
    user = res.computed.get("ssh_user")
    port = res.computed.get("ssh_port")
    return f"{user + '@' if user else ''}{ip}{':' + str(port) if port else ''}"


def render_state_table(doc: StateDocument, console: Console) -> None:
    """What state tracks and what it costs, with a warning for unresolved operations.

    Deposed objects (old halves of a create_before_destroy replacement) are listed too:
    they still run and cost money until the next apply deletes them.
    """

    def out(text: str, style: str = "") -> None:
        console.print(Text(text, style=style), soft_wrap=True)

    if not doc.resources and not doc.deposed:
        out("No resources in state.")
    else:
        table = Table(show_edge=False, header_style="bold")
        for column in ("Address", "Provider", "ID", "Status", "$/h", "Name", "Region", "Type", "SSH"):
            table.add_column(column, justify="right" if column == "$/h" else "left", overflow="fold")
        for address in sorted(doc.resources, key=_address_order):
            table.add_row(*_state_row(address, doc.resources[address]))
        for old in sorted(doc.deposed, key=lambda d: (_address_order(d.address), d.id)):
            table.add_row(*_state_row(f"{old.address} (deposed)", old))
        console.print(table)
        everything = [*doc.resources.values(), *doc.deposed]
        total = sum(r.hourly_price or 0.0 for r in everything)
        deposed = f" ({len(doc.deposed)} deposed)" if doc.deposed else ""
        plural = "" if len(everything) == 1 else "s"
        out(
            f"{len(everything)} resource{plural}{deposed}, {format_hourly(total)} "
            f"({format_money(total * HOURS_PER_MONTH)}/month)",
            "bold",
        )
    if doc.pending:
        count = len(doc.pending)
        out(
            f"Warning: {count} pending operation{'s' if count != 1 else ''} from an interrupted run; "
            "the next plan or apply resolves them by marker before planning:",
            "bold yellow",
        )
        for op in doc.pending:
            ident = f", id={op.id}" if op.id else ""
            out(
                f"  - {op.op} {op.address} ({op.provider}, name {op.name!r}{ident}, "
                f"marker {op.marker}, started {op.started_at})"
            )
