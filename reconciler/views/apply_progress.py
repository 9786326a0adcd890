"""Apply progress: Terraform-like lines for people, or the same events as JSON lines
(`apply --json`), fed by the applier through its observer protocol.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

from reconciler.model import Action, Address, Change, Status
from reconciler.views.formatting import format_elapsed

if TYPE_CHECKING:
    from reconciler.applier import ApplyResult
from reconciler.views.plan_events import ui_event, ui_resource, utc_now
from reconciler.views.plan_summary import display_address

_APPLY_WORDS = {
    # action: (starting, still, complete, failed)
    Action.CREATE: ("Creating...", "Still creating...", "Creation complete", "Creation failed"),
    Action.DELETE: ("Destroying...", "Still destroying...", "Destruction complete", "Destruction failed"),
    Action.UPDATE: ("Modifying...", "Still modifying...", "Modifications complete", "Modification failed"),
    Action.REPLACE: ("Replacing...", "Still replacing...", "Replacement complete", "Replacement failed"),
    Action.NOOP: ("Refreshing...", "Still refreshing...", "Refresh complete", "Refresh failed"),
}


# The applier runs a replace as two steps, each reported with its own phase.
_PHASE_ACTION = {"create": Action.CREATE, "delete": Action.DELETE, "update": Action.UPDATE}


def _step_action(change: Change, phase: str | None) -> Action:
    if phase is None:
        return change.action
    try:
        return _PHASE_ACTION[phase]
    except KeyError:
        raise ValueError(f"unknown apply phase {phase!r} (expected create, delete or update)") from None


def _step_key(change: Change) -> str:
    return f"{change.address}#{change.deposed}" if change.deposed else str(change.address)


class ApplyReporter:
    """Terraform-like apply progress lines for people.

    `phase` (create, delete, update) names the step when the applier splits a change, so
    a replace reads `Destroying...` then `Creating...` as in Terraform. Every method
    prints whole lines synchronously and never awaits, so concurrent asyncio tasks in one
    thread can call it without interleaving partial output.
    """

    def __init__(
        self,
        console: Console,
        *,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._console = console
        self._start_tracking(clock, monotonic)

    def _start_tracking(self, clock: Callable[[], datetime], monotonic: Callable[[], float]) -> None:
        self._clock = clock
        self._monotonic = monotonic
        self._in_flight: dict[str, tuple[Change, Action, float]] = {}

    def _write(self, event: dict[str, Any]) -> None:
        style = {"error": "bold red", "warn": "yellow"}.get(event["@level"], "")
        if event["type"] == "change_summary":
            style = "bold red" if event["@level"] == "error" else "bold green"
        self._console.print(Text(event["@message"], style=style), soft_wrap=True)

    def _event(self, level: str, message: str, kind: str, **fields: Any) -> dict[str, Any]:
        return ui_event(self._clock, level, message, kind, **fields)

    @staticmethod
    def _hook(change: Change, action: Action, **fields: Any) -> dict[str, Any]:
        hook: dict[str, Any] = {
            "resource": ui_resource(change.address, change.provider),
            "action": action.value,
        }
        if change.deposed:
            hook["deposed"] = change.deposed
        hook.update(fields)
        return hook

    def started(self, change: Change, *, phase: str | None = None) -> None:
        """A step began: the applier sent (or is about to send) its API call."""
        action = _step_action(change, phase)
        self._in_flight[_step_key(change)] = (change, action, self._monotonic())
        old_id = change.deposed or change.id
        ident = f" [id={old_id}]" if old_id and action is not Action.CREATE else ""
        message = f"{display_address(change)}: {_APPLY_WORDS[action][0]}{ident}"
        self._write(self._event("info", message, "apply_start", hook=self._hook(change, action)))

    def waiting(self, target: Change | Address | str, status: Status | str, seconds: float) -> None:
        """Still waiting on a step (an instance to become active, for example)."""
        if isinstance(target, Change):
            tracked = self._in_flight.get(_step_key(target))
            shown = display_address(target)
        else:
            tracked = self._in_flight.get(str(target))
            shown = str(target)
        status_text = status.value if isinstance(status, Status) else str(status)
        still = _APPLY_WORDS[tracked[1]][1] if tracked else "Still waiting..."
        message = f"{shown}: {still} [{format_elapsed(seconds)} elapsed] (status: {status_text})"
        if tracked:
            hook = self._hook(tracked[0], tracked[1], elapsed_seconds=int(seconds), status=status_text)
        else:
            hook = {"resource": {"addr": shown}, "elapsed_seconds": int(seconds), "status": status_text}
        self._write(self._event("info", message, "apply_progress", hook=hook))

    def finished(self, change: Change, seconds: float, id: str | None, *, phase: str | None = None) -> None:
        """A step succeeded after `seconds`; `id` is the provider id it left (None for a delete)."""
        action = _step_action(change, phase)
        self._in_flight.pop(_step_key(change), None)
        ident = f" [id={id}]" if id else ""
        done = _APPLY_WORDS[action][2]
        message = f"{display_address(change)}: {done} after {format_elapsed(seconds)}{ident}"
        hook = self._hook(change, action, elapsed_seconds=int(seconds))
        if id:
            hook.update({"id_key": "id", "id_value": id})
        self._write(self._event("info", message, "apply_complete", hook=hook))

    def failed(self, change: Change, error_text: str, *, phase: str | None = None) -> None:
        """A step failed; the error text is shown in full, indented under the address."""
        action = _step_action(change, phase)
        tracked = self._in_flight.pop(_step_key(change), None)
        elapsed = self._monotonic() - tracked[2] if tracked else None
        after = f" after {format_elapsed(elapsed)}" if elapsed is not None else ""
        first, *rest = error_text.splitlines() or [""]
        message = f"{display_address(change)}: {_APPLY_WORDS[action][3]}{after}: {first}"
        if rest:
            message += "\n" + "\n".join(f"    {line}" for line in rest)
        hook = self._hook(
            change,
            action,
            elapsed_seconds=int(elapsed) if elapsed is not None else None,
            error=error_text,
        )
        self._write(self._event("error", message, "apply_errored", hook=hook))

    def capacity_fallback(
        self, change: Change, refused: str, error: str, next: str, attempt: int, reason: str = "no capacity"
    ) -> None:
        """A create found no capacity (or, with on_boot_failure, failed to boot); apply tries
        the plan's next candidate."""
        total = len(change.candidates)
        message = f"{display_address(change)}: {reason} on {refused}; attempt {attempt} of {total}: {next}"
        hook = self._hook(
            change, Action.CREATE, refused=refused, error=error, next=next, attempt=attempt, reason=reason
        )
        self._write(self._event("warn", message, "apply_fallback", hook=hook))

    def summary(
        self,
        added: int,
        changed: int,
        destroyed: int,
        failed: int,
        not_started: int,
        *,
        interrupted: bool = False,
        no_capacity: int = 0,
    ) -> None:
        """The closing line: `Apply complete!` only when every step succeeded. Creates that
        found no capacity are counted apart: a sold-out market, not a broken configuration."""
        done = f"{added} added, {changed} changed, {destroyed} destroyed"
        if failed or not_started or interrupted:
            level = "error"
            verb = "interrupted" if interrupted else "failed"
            errors = failed - no_capacity
            sold_out = f"{no_capacity} found no capacity, " if no_capacity else ""
            message = (
                f"Apply {verb}: {sold_out}{errors} failed, {not_started} not started; succeeded: {done}."
            )
        else:
            level = "info"
            message = f"Apply complete! Resources: {done}."
        changes = {
            "add": added,
            "change": changed,
            "import": 0,
            "remove": destroyed,
            "failed": failed,
            "no_capacity": no_capacity,
            "not_started": not_started,
            "interrupted": interrupted,
            "operation": "apply",
        }
        self._write(self._event(level, message, "change_summary", changes=changes))


class JsonApplyReporter(ApplyReporter):
    """The same apply progress as JSON lines (`apply --json`), one event per line."""

    def __init__(
        self,
        stream: IO[str],
        *,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._start_tracking(clock, monotonic)

    def _write(self, event: dict[str, Any]) -> None:
        self._stream.write(json.dumps(event, ensure_ascii=False) + "\n")
        self._stream.flush()


class ReportingApplyObserver:
    """The applier's observer (its `ApplyObserver` protocol), speaking through a reporter."""

    def __init__(self, reporter: ApplyReporter) -> None:
        self.reporter = reporter

    def step_started(self, change: Change, phase: str) -> None:
        self.reporter.started(change, phase=phase)

    def step_finished(self, change: Change, phase: str, seconds: float, id: str | None) -> None:
        self.reporter.finished(change, seconds, id, phase=phase)

    def step_failed(self, change: Change, phase: str, error: str) -> None:
        self.reporter.failed(change, error, phase=phase)

    def waiting(self, change: Change, status: str, seconds: float) -> None:
        self.reporter.waiting(change, status, seconds)

    def status_seen(self, change: Change, api_status: str) -> None:
        """Lines report waits through `waiting` only, so a log gets one line per interval."""

    def capacity_fallback(
        self, change: Change, refused: str, error: str, next: str, attempt: int, reason: str = "no capacity"
    ) -> None:
        self.reporter.capacity_fallback(change, refused, error, next, attempt, reason)

    def summary(self, result: ApplyResult) -> None:
        """The closing line for what apply reached, success or not."""
        self.reporter.summary(
            result.added,
            result.changed,
            result.destroyed,
            len(result.failed),
            len(result.not_started),
            interrupted=result.interrupted,
            no_capacity=len(result.no_capacity),
        )


def make_apply_observer(console: Console, as_json: bool) -> ReportingApplyObserver:
    """Human lines on `console`, or JSON lines on the console's own stream with `--json`."""
    reporter = JsonApplyReporter(console.file) if as_json else ApplyReporter(console)
    return ReportingApplyObserver(reporter)
