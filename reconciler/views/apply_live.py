"""Apply and destroy on a terminal: a live view (rich Live) with one row per step in flight.

Each row says what the step does and for how long: `creating 00:03`, then, once the API
reports the instance, `booting 02:10, status pending_provider` (the API's own word). A
finished step leaves the table and is counted in the summary line under it, with the $/h
of what has been started so far. Failures and capacity fallbacks are printed in full above
the view, as they happen. Without a terminal, with --no-color or in CI, apply prints
today's line-by-line output instead (see `choose_apply_observer`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from reconciler.applier import ApplyResult
from reconciler.model import Action, Change, Kind

_PHASE_WORDS = {"create": "creating", "delete": "deleting", "update": "updating"}
_DONE_WORDS = {"create": "created", "delete": "destroyed", "update": "updated"}


def clock_text(seconds: float) -> str:
    """`02:10`, `1:02:10`: elapsed time as a clock, which reads at a glance while it ticks."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _step_key(change: Change) -> str:
    return f"{change.address}#{change.deposed}" if change.deposed else str(change.address)


@dataclass
class _Row:
    change: Change
    phase: str  # create, delete, update
    started: float
    status: str | None = None  # the API's own status word, once it reports one

    def words(self, now: float) -> str:
        elapsed = clock_text(now - self.started)
        if self.phase == "create" and self.change.address.kind is Kind.INSTANCE and self.status is not None:
            if self.status == "active":  # active, but the API has not reported its address yet
                return f"booting {elapsed}, status active, waiting for its ip"
            return f"booting {elapsed}, status {self.status}"
        return f"{_PHASE_WORDS.get(self.phase, self.phase)} {elapsed}"


class LiveApplyObserver:
    """The applier's observer drawing a live table; a renderable itself (`__rich__`)."""

    def __init__(
        self,
        console: Console,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        refresh_per_second: float = 4,
        lines: Any = None,
    ) -> None:
        self.console = console
        self._monotonic = monotonic
        self._rows: dict[str, _Row] = {}
        self._done: dict[str, int] = {"created": 0, "updated": 0, "destroyed": 0}
        self._failed = 0
        self._hourly_started = 0.0
        self._lines = lines  # the line reporter that writes the closing summary
        self._live = Live(self, console=console, refresh_per_second=refresh_per_second, transient=True)

    # -- the view --------------------------------------------------------------------

    def __rich__(self) -> RenderableType:
        now = self._monotonic()
        table = Table(box=None, show_header=False, padding=(0, 2, 0, 0), expand=False)
        table.add_column("address", no_wrap=True, overflow="ellipsis")
        table.add_column("what", no_wrap=True, overflow="ellipsis")
        for row in self._rows.values():  # in the order the steps started
            table.add_row(Text(f"{_symbol(row)} {row.change.address}"), Text(row.words(now), style="cyan"))
        return Group(table, self.summary_text())

    def summary_text(self) -> Text:
        parts = [f"{count} {word}" for word, count in self._done.items() if count]
        if self._failed:
            parts.append(f"{self._failed} failed")
        done = ", ".join(parts) if parts else "nothing finished yet"
        text = Text(f"{done} · ${self._hourly_started:,.2f}/h started · {len(self._rows)} in flight", style="bold")
        return text

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Show the view while the apply runs; leave the terminal clean (the summary follows)."""
        self._live.start()
        try:
            yield
        finally:
            self._live.stop()

    def _refresh(self) -> None:
        if self._live.is_started:
            self._live.refresh()

    # -- ApplyObserver -----------------------------------------------------------------

    def step_started(self, change: Change, phase: str) -> None:
        self._rows[_step_key(change)] = _Row(change, phase, self._monotonic())
        self._refresh()

    def status_seen(self, change: Change, api_status: str) -> None:
        row = self._rows.get(_step_key(change))
        if row is not None and row.status != api_status:
            row.status = api_status
            self._refresh()

    def waiting(self, change: Change, status: str, seconds: float) -> None:
        row = self._rows.get(_step_key(change))
        if row is not None and row.status is None:
            row.status = status
        self._refresh()

    def step_finished(self, change: Change, phase: str, seconds: float, id: str | None) -> None:
        self._rows.pop(_step_key(change), None)
        word = _DONE_WORDS.get(phase)
        if word is not None:
            self._done[word] += 1
        if phase == "create":
            self._hourly_started += change.hourly_after
        self._refresh()

    def step_failed(self, change: Change, phase: str, error: str) -> None:
        row = self._rows.pop(_step_key(change), None)
        self._failed += 1
        after = f" after {clock_text(self._monotonic() - row.started)}" if row else ""
        first, *rest = error.splitlines() or [""]
        message = f"{change.address}: {_PHASE_WORDS.get(phase, phase)} failed{after}: {first}"
        if rest:
            message += "\n" + "\n".join(f"    {line}" for line in rest)
        self.console.print(Text(message, style="bold red"), soft_wrap=True)
        self._refresh()

    def capacity_fallback(
        self, change: Change, refused: str, error: str, next: str, attempt: int, reason: str = "no capacity"
    ) -> None:
        total = len(change.candidates)
        self.console.print(
            Text(f"{change.address}: {reason} on {refused}; attempt {attempt} of {total}: {next}", style="yellow"),
            soft_wrap=True,
        )

    def summary(self, result: ApplyResult) -> None:
        """The closing line, the same words as without a terminal."""
        if self._lines is not None:
            self._lines.summary(result)


def _symbol(row: _Row) -> str:
    if row.change.action is Action.REPLACE:
        return "-/+"
    return {"create": "+", "delete": "-", "update": "~"}.get(row.phase, " ")


def wants_live_view(console: Console, as_json: bool, no_color: bool, environ: Mapping[str, str]) -> bool:
    """A person at a terminal: not JSON, not --no-color/NO_COLOR, not CI, not a dumb terminal."""
    if as_json or no_color or not console.is_terminal or console.is_dumb_terminal:
        return False
    return not environ.get("CI") and "NO_COLOR" not in environ


def choose_apply_observer(
    console: Console,
    as_json: bool,
    no_color: bool,
    make_lines: Callable[[Console, bool], Any],
    environ: Mapping[str, str] | None = None,
) -> Any:
    """The live view on a terminal, else the line observer `make_lines(console, as_json)` (unchanged)."""
    lines = make_lines(console, as_json)
    if wants_live_view(console, as_json, no_color, os.environ if environ is None else environ):
        return LiveApplyObserver(console, lines=lines)
    return lines


def showing(observer: Any) -> contextlib.AbstractContextManager[None]:
    """While the apply runs: the live view's display, or nothing for the line observer."""
    if isinstance(observer, LiveApplyObserver):
        return observer.running()
    return contextlib.nullcontext()
