"""Tables fit the terminal (80 and 160 columns, captured with rich's recording console) and
print as plain text, every column, when piped."""

from __future__ import annotations

import io

from rich.table import Table

from reconciler.model import Offering
from reconciler.state.model import ResourceState, StateDocument
from reconciler.views.offerings import offerings_table
from reconciler.views.state_table import render_state_table
from reconciler.views.tables import FittingConsole, state_list_json


def offerings() -> Table:
    rows = [
        Offering("shadeform", f"o-{i}", "H100", 8, 20.0 + i, "us-east-1", "lambdalabs", True,
                 {"cloud": "lambdalabs", "region": "us-east-1", "shade_instance_type": "H100x8"},
                 vram_per_gpu_gb=80, vcpus=208, memory_gb=1800, storage_gb=8192, interconnect="nvlink",
                 boot_seconds=600)
        for i in range(3)
    ]
    return offerings_table(rows)


def terminal(width: int) -> FittingConsole:
    return FittingConsole(record=True, width=width, file=io.StringIO(), force_terminal=True)


def test_offerings_fit_80_columns_leaving_out_the_least_useful() -> None:
    console = terminal(80)
    console.print(offerings())
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    header = text.splitlines()[2]
    for kept in ("provider", "cloud", "region", "gpu", "gpus", "$/h"):
        assert kept in header
    assert "pin" not in header and "interconnect" not in header
    assert "left out to fit (" in text and "use --json" in text


def test_offerings_at_160_columns_show_more() -> None:
    console = terminal(160)
    console.print(offerings())
    text = console.export_text()
    assert all(len(line) <= 160 for line in text.splitlines())
    assert "interconnect" in text and "vCPUs" in text


def test_a_table_that_fits_is_printed_as_it_is() -> None:
    table = Table("a", "b")
    table.add_row("1", "2")
    console = terminal(80)
    console.print(table)
    assert "left out" not in console.export_text()


def test_piped_tables_are_plain_text_with_every_column_on_one_line() -> None:
    out = io.StringIO()
    console = FittingConsole(file=out, width=80)
    console.print(offerings())
    lines = out.getvalue().splitlines()
    assert not any(ch in out.getvalue() for ch in "│┃━─")
    assert lines[1].split() == ["provider", "cloud", "region", "gpu", "gpus", "VRAM", "vCPUs", "RAM", "disk",
                                "interconnect", "boot", "rental", "$/h", "$/GPU-h", "available", "pin"]
    assert "shade_instance_type=H100x8" in lines[2] and len(lines) == 5


def test_state_table_on_a_narrow_terminal() -> None:
    doc = StateDocument(resources={
        "instances.trainer": ResourceState(provider="shadeform", kind="instances", id="0472743b-ffe5-4a08-b79a-d0eaedda77d2",
                                           hourly_price=1.9, attributes={"name": "trainer", "region": "canada-1"}),
    })
    console = terminal(80)
    render_state_table(doc, console)
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "instances.trainer" in text and "$1.90/h" in text
    assert state_list_json(doc, ["instances.trainer"]) == [{
        "address": "instances.trainer", "provider": "shadeform", "id": "0472743b-ffe5-4a08-b79a-d0eaedda77d2",
        "status": "active"}]
