"""What every command shares: the session, the workspace flags and the flag parsers."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from reconciler.completion import complete_addresses
from reconciler.model import Address
from reconciler.planner import PlanOptions
from reconciler.redaction import Scrubber
from reconciler.views.tables import FittingConsole
from reconciler.workspace import Workspace

EXIT_ERROR = 1
EXIT_CHANGES = 2
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
T = TypeVar("T")


def parse_duration(text: str) -> float:
    match = _DURATION.match(text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration (e.g. 30s, 5m, 1h)")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def parse_pairs(items: tuple[str, ...], flag: str) -> dict[str, str]:
    result = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            # The argument is not echoed: it may be a URL with a password in it.
            raise click.BadParameter(f"{flag} takes NAME=VALUE; one argument has no NAME= before its value")
        result[name.strip()] = value
    return result


@dataclass
class Session:
    """Per-invocation settings every command shares, and the secrets output must never show.

    `main` routes standard output and error through `scrubber`, so every line any command
    prints (messages, progress, JSON, tracebacks) has each secret removed in every spelling.
    """

    debug: bool = False
    no_color: bool = False
    scrubber: Scrubber = field(default_factory=Scrubber)

    def console(self, stderr: bool = False) -> Console:
        stream = sys.stderr if stderr else sys.stdout
        # Logs (CI, pipes) get wide tables instead of 80 columns; COLUMNS still wins.
        width = None if stream.isatty() or "COLUMNS" in os.environ else 160
        return FittingConsole(stderr=stderr, no_color=self.no_color, highlight=False, soft_wrap=True, width=width)


class Location(Workspace):
    """The workspace the common flags name, printing its notes for this invocation's session."""

    def __init__(self, session: Session, path: Path, state_path: Path | None, cli_vars: dict[str, str],
                 var_files: tuple[Path, ...], backend_config: dict[str, str], lock_timeout: float,
                 allow_foreign_state: bool = False) -> None:
        super().__init__(path, state_path, cli_vars, var_files, backend_config, lock_timeout, allow_foreign_state,
                         scrubber=session.scrubber, notify=self._note)
        self.session = session

    def _note(self, text: str) -> None:
        self.session.console(stderr=True).print(f"Note: {text}", markup=False)


def location_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """-f/--state/--var/--var-file/--backend-config/--lock-timeout/--no-color, as one `loc` argument."""

    @click.option("-f", "--file", "path", type=click.Path(path_type=Path), default=Path("."), show_default=True,
                  help="Config file, or directory of *.yaml.")
    @click.option("--state", "state_path", type=click.Path(path_type=Path), default=None,
                  help="Local state file (default: state/<name>.json beside the config).")
    @click.option("--allow-foreign-state", is_flag=True,
                  help="Use a state that another configuration wrote (it takes that state over).")
    @click.option("--var", "cli_vars", multiple=True, metavar="NAME=VALUE", help="Set a variable.")
    @click.option("--var-file", "var_files", multiple=True, type=click.Path(path_type=Path),
                  help="YAML file of variable values.")
    @click.option("--backend-config", "backend_config", multiple=True, metavar="KEY=VALUE",
                  help="Override a backend setting: type, path, url, schema, stack.")
    @click.option("--lock-timeout", default="0s", show_default=True,
                  help="How long to wait for the state lock (e.g. 60s).")
    @click.option("--no-color", is_flag=True, help="No colours in output.")
    @click.pass_obj
    def wrapper(session: Session, path: Path, state_path: Path | None, allow_foreign_state: bool,
                cli_vars: tuple[str, ...], var_files: tuple[Path, ...], backend_config: tuple[str, ...],
                lock_timeout: str, no_color: bool, **kwargs: Any) -> Any:
        session.no_color = session.no_color or no_color
        loc = Location(session, path, state_path, parse_pairs(cli_vars, "--var"), tuple(var_files),
                       parse_pairs(backend_config, "--backend-config"), parse_duration(lock_timeout),
                       allow_foreign_state)
        return func(loc, **kwargs)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    # Options declared on the command itself (below this decorator) belong to it too.
    wrapper.__click_params__.extend(getattr(func, "__click_params__", []))  # type: ignore[attr-defined]
    return wrapper



def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, handing the result out through a closure: on Python 3.11 asyncio.run
    builds the repr of what it returns, which for a 10,000-resource plan costs ~0.5 s."""
    box: list[T] = []

    async def keep() -> None:
        box.append(await coro)

    asyncio.run(keep())
    return box[0]



def plan_flags(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--target", "targets", multiple=True, metavar="ADDRESS", shell_complete=complete_addresses,
                     help="Limit to this resource and what it depends on (repeatable)."),
        click.option("--replace", "replace", multiple=True, metavar="ADDRESS", shell_complete=complete_addresses,
                     help="Force replacement of this resource (repeatable)."),
        click.option("--reselect", is_flag=True,
                     help="Pick the cheapest offering again for requirement-based instances."),
        click.option("--refresh", "refresh_live", type=click.BOOL, default=True, show_default=True,
                     help="Read live resources first (--refresh=false to skip)."),
        click.option("--json", "as_json", is_flag=True, help="Machine-readable output (JSON lines)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def parse_addresses(items: tuple[str, ...], flag: str) -> tuple[Address, ...]:
    out = []
    for item in items:
        try:
            out.append(Address.parse(item))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=flag) from None
    return tuple(out)


def plan_options(destroy: bool, targets: tuple[str, ...], replace: tuple[str, ...], reselect: bool) -> PlanOptions:
    return PlanOptions(destroy=destroy, targets=parse_addresses(targets, "--target"),
                       replace=parse_addresses(replace, "--replace"), reselect=reselect)



def print_notes(session: Session, title: str, notes: tuple[str, ...]) -> None:
    console = session.console()
    if not notes:
        console.print(f"{title}: none.")
        return
    console.print(f"{title}:")
    for note in notes:
        console.print(f"  - {note}", markup=False)



def apply_flags(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation."),
        click.option("--parallelism", default=10, show_default=True, type=click.IntRange(1, 1000),
                     help="How many API operations run at once."),
        click.option("--create-timeout", default="15m", show_default=True,
                     help="How long an instance may take to become active."),
        click.option("--poll-interval", "poll", type=float, default=None,
                     help="Seconds between status polls (default 0.25 embedded, 5 otherwise)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func
