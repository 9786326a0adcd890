"""Apply progress: the live view a person sees on a terminal (screens captured with rich's
recording console at 80 and 160 columns), and the line output that logs, pipes,
--no-color and CI keep byte for byte."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from reconciler.applier import ApplyResult
from reconciler.model import Action, Address, Change, Kind
from reconciler.state.model import StateDocument
from reconciler.views.apply_live import LiveApplyObserver, choose_apply_observer, clock_text, wants_live_view
from reconciler.views.apply_progress import ReportingApplyObserver, make_apply_observer

WEB = Change(Address(Kind.INSTANCE, "web"), Action.CREATE, "shadeform", None, {"name": "web"}, hourly_after=1.9)
DATA = Change(Address(Kind.VOLUME, "data"), Action.DELETE, "forward", {"name": "data"}, None, id="vol-1")
API = Change(
    Address(Kind.INSTANCE, "api"), Action.REPLACE, "forward", {"name": "api"}, {"name": "api"}, id="i-9", hourly_after=3.0
)
RESULT = ApplyResult(state=StateDocument(), added=1, destroyed=2, failed=[("instances.api", "boom")])

# What the line reporter printed before the live view existed (the same script, run on the
# code as it was): a log, a pipe, --no-color and CI must keep getting exactly these bytes.
LINES_BEFORE = (
    "instances.web: Creating...\n"
    "volumes.data: Destroying... [id=vol-1]\n"
    "instances.web: Still creating... [12s elapsed] (status: pending)\n"
    "volumes.data: Destruction complete after 2s\n"
    "instances.api: Destroying... [id=i-9]\n"
    "instances.api: Destruction complete after 1s\n"
    "instances.api: Creating...\n"
    "instances.api: Creation failed after 0s: forward: 500 internal: boom\n"
    "    request id r-1\n"
    "instances.web: Creation complete after 1m4s [id=sf-1]\n"
    "Apply failed: 1 failed, 0 not started; succeeded: 1 added, 0 changed, 2 destroyed.\n"
)


def script(observer: object) -> None:
    o = observer  # an ApplyObserver with summary()
    o.step_started(WEB, "create")  # type: ignore[attr-defined]
    o.step_started(DATA, "delete")  # type: ignore[attr-defined]
    o.status_seen(WEB, "pending_provider")  # type: ignore[attr-defined]
    o.waiting(WEB, "pending", 12.0)  # type: ignore[attr-defined]
    o.step_finished(DATA, "delete", 2.0, None)  # type: ignore[attr-defined]
    o.step_started(API, "delete")  # type: ignore[attr-defined]
    o.step_finished(API, "delete", 1.0, None)  # type: ignore[attr-defined]
    o.step_started(API, "create")  # type: ignore[attr-defined]
    o.step_failed(API, "create", "forward: 500 internal: boom\nrequest id r-1")  # type: ignore[attr-defined]
    o.step_finished(WEB, "create", 64.0, "sf-1")  # type: ignore[attr-defined]
    o.summary(RESULT)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "environ, no_color",
    [({}, False), ({"CI": "true"}, False), ({}, True)],
    ids=["pipe", "ci-on-a-terminal", "no-color-on-a-terminal"],
)
def test_without_a_person_at_a_terminal_the_lines_are_byte_identical(environ: dict[str, str], no_color: bool) -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=bool(environ) or no_color)
    observer = choose_apply_observer(console, False, no_color, make_apply_observer, environ=environ)
    assert isinstance(observer, ReportingApplyObserver)
    script(observer)
    assert out.getvalue() == LINES_BEFORE or _plain(out.getvalue()) == LINES_BEFORE


def _plain(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_a_terminal_gets_the_live_view_and_json_never_does() -> None:
    terminal = Console(file=io.StringIO(), force_terminal=True)
    assert wants_live_view(terminal, False, False, {})
    assert not wants_live_view(terminal, True, False, {})
    assert not wants_live_view(terminal, False, False, {"NO_COLOR": "1"})
    assert isinstance(choose_apply_observer(terminal, False, False, make_apply_observer, environ={}), LiveApplyObserver)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def screen_of(observer: LiveApplyObserver, width: int) -> str:
    console = Console(record=True, width=width, file=io.StringIO(), force_terminal=True)
    console.print(observer)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


@pytest.mark.parametrize("width", [80, 160])
def test_live_screens_show_rows_in_flight_and_collapse_finished_ones(width: int) -> None:
    clock = Clock()
    lines = io.StringIO()
    live = LiveApplyObserver(
        Console(file=io.StringIO(), width=width), monotonic=clock, lines=make_apply_observer(Console(file=lines), False)
    )
    live.step_started(WEB, "create")
    live.step_started(DATA, "delete")
    clock.now += 3
    assert screen_of(live, width).splitlines() == [
        "+ instances.web  creating 00:03",
        "- volumes.data   deleting 00:03",
        "nothing finished yet · $0.00/h started · 2 in flight",
    ]
    live.status_seen(WEB, "pending_provider")
    live.step_finished(DATA, "delete", 3.0, None)
    clock.now += 127
    assert screen_of(live, width).splitlines() == [
        "+ instances.web  booting 02:10, status pending_provider",
        "1 destroyed · $0.00/h started · 1 in flight",
    ]
    live.status_seen(WEB, "active")
    assert "booting 02:10, status active, waiting for its ip" in screen_of(live, width)
    live.step_finished(WEB, "create", 130.0, "sf-1")
    assert screen_of(live, width).splitlines() == ["1 created, 1 destroyed · $1.90/h started · 0 in flight"]
    live.summary(RESULT)
    assert lines.getvalue().endswith("Apply failed: 1 failed, 0 not started; succeeded: 1 added, 0 changed, 2 destroyed.\n")


def test_a_long_address_is_cut_to_the_width_not_wrapped() -> None:
    clock = Clock()
    live = LiveApplyObserver(Console(file=io.StringIO()), monotonic=clock)
    long = Change(Address(Kind.INSTANCE, "x" * 120), Action.CREATE, "forward", None, {}, hourly_after=1.0)
    live.step_started(long, "create")
    rows = screen_of(live, 80).splitlines()
    assert len(rows) == 2 and all(len(row) <= 80 for row in rows)
    assert "creating 00:00" in rows[0] or "…" in rows[0]


def test_failures_are_printed_in_full_above_the_view() -> None:
    out = io.StringIO()
    live = LiveApplyObserver(Console(file=out, width=100), monotonic=Clock())
    live.step_started(API, "create")
    live.step_failed(API, "create", "forward: 500 internal: boom\nrequest id r-1")
    assert out.getvalue() == "instances.api: creating failed after 00:00: forward: 500 internal: boom\n    request id r-1\n"
    assert "1 failed" in screen_of(live, 80)


def test_clock_text() -> None:
    assert [clock_text(s) for s in (0, 59, 130, 3725)] == ["00:00", "00:59", "02:10", "1:02:05"]
