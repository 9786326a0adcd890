"""Tables that fit where they are printed.

On a terminal a table keeps to the terminal's width: columns that cannot fit are left out,
least useful first, and a note under the table names them (and --json, which has them all).
Piped or redirected, a table is plain text: no box drawing, every column, one line per row,
so `grep`, `awk` and `cut` work on it. `FittingConsole` applies this to every Table printed,
so the commands keep building their tables as they did.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from reconciler.state.model import StateDocument

# Columns left out first when a table is too wide (by header, case-insensitive); then any
# column from the right, never the first one (it names the row).
DROP_FIRST = (
    "pin", "interconnect", "disk", "boot", "from", "ssh", "type", "name", "rental", "ram", "vcpus", "vram",
    "available", "$/gpu-h", "spent so far", "id", "region", "cloud",
)
_CELL_OVERHEAD = 3  # padding on both sides and a separator, per column
_UNLIMITED = 100_000  # measure a table as if the line had no end


def _header(table: Table, index: int) -> str:
    header = table.columns[index].header
    return header.plain if isinstance(header, Text) else str(header)


def _column_widths(console: Console, table: Table) -> list[int]:
    options = console.options.update_width(_UNLIMITED)
    widths = []
    for column in table.columns:
        cells: list[Any] = [column.header, *column.cells, column.footer]
        widths.append(max(Measurement.get(console, options, cell).maximum for cell in cells if cell is not None))
    return widths


def _copy_without(table: Table, hidden: set[int]) -> Table:
    kept = [i for i in range(len(table.columns)) if i not in hidden]
    copy = Table(
        title=table.title, caption=table.caption, show_header=table.show_header, show_footer=table.show_footer,
        show_edge=table.show_edge, box=table.box, header_style=table.header_style, padding=table.padding,
        title_justify=table.title_justify, caption_justify=table.caption_justify,
    )
    for i in kept:
        column = table.columns[i]
        copy.add_column(column.header, footer=column.footer, justify=column.justify, style=column.style,
                        no_wrap=True, overflow="ellipsis")
    cells = [list(column.cells) for column in table.columns]
    for row in range(table.row_count):
        copy.add_row(*(cells[i][row] for i in kept))
    return copy


def fit_to_width(console: Console, table: Table, width: int, drop_first: Sequence[str] = DROP_FIRST) -> Table:
    """The table with the columns that fit in `width`, and a caption naming the others."""
    widths = _column_widths(console, table)
    total = sum(widths) + _CELL_OVERHEAD * len(widths) + 1
    if total <= width or len(widths) <= 1:
        return table
    headers = [_header(table, i).lower() for i in range(len(widths))]
    order = [headers.index(name) for name in drop_first if name in headers and headers.index(name) != 0]
    order += [i for i in range(len(widths) - 1, 0, -1) if i not in order]
    hidden: set[int] = set()
    for index in order:
        if total <= width:
            break
        hidden.add(index)
        total -= widths[index] + _CELL_OVERHEAD
    fitted = _copy_without(table, hidden)
    names = ", ".join(_header(table, i) for i in sorted(hidden))
    note = f"{len(hidden)} column{'s' if len(hidden) != 1 else ''} left out to fit ({names}); widen the terminal or use --json"
    fitted.caption = f"{table.caption}\n{note}" if table.caption else note
    return fitted


def plain(console: Console, table: Table) -> tuple[Table, int]:
    """The table as plain text (no box, every column), and the width it needs on one line."""
    table.box = None
    table.show_edge = False
    table.padding = (0, 2, 0, 0)
    table.pad_edge = False
    for column in table.columns:
        column.no_wrap = True
        column.overflow = "ignore"
    return table, Measurement.get(console, console.options.update_width(_UNLIMITED), table).maximum


class FittingConsole(Console):
    """A Console that fits every Table it prints to the terminal, or prints it plain off one."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if len(objects) == 1 and isinstance(objects[0], Table):
            table: RenderableType = objects[0]
            assert isinstance(table, Table)
            if self.is_terminal:
                super().print(fit_to_width(self, table, self.width), **kwargs)
            else:
                shown, width = plain(self, table)
                # Console.print never goes wider than the console, so widen it for this table.
                kept = self._width
                self.width = max(width, self.width)
                try:
                    super().print(shown, **kwargs)
                finally:
                    self._width = kept
            return
        super().print(*objects, **kwargs)


def state_list_json(doc: StateDocument, addresses: Sequence[str]) -> list[dict[str, Any]]:
    """`state list --json`: what a script needs to act on each resource, nothing secret."""
    return [
        {
            "address": address,
            "provider": doc.resources[address].provider,
            "id": doc.resources[address].id,
            "status": doc.resources[address].status,
        }
        for address in addresses
    ]
