"""Command line: parse flags, call the engine, map errors to exit codes. Nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console

from reconciler import engine
from reconciler.applier import ApplyOptions, ApplyResult
from reconciler.config import Config, config_json_schema, load_config
from reconciler.errors import ReconcilerError, StateError
from reconciler.graph import DependencyGraph
from reconciler.model import Address, Plan
from reconciler.planfile import read_plan_file, restore_secrets, write_plan_file
from reconciler.planner import PlanOptions
from reconciler.render import (
    plan_events,
    plan_summary_markdown,
    plan_to_json,
    render_plan,
    render_state_table,
)
from reconciler.state.backend import StateBackend
from reconciler.state.model import StateDocument

EXIT_ERROR = 1
EXIT_CHANGES = 2
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def parse_duration(text: str) -> float:
    match = _DURATION.match(text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration (e.g. 30s, 5m, 1h)")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


@dataclass
class Session:
    """What the flags of one invocation ask for; passed to every command."""

    debug: bool = False
    no_color: bool = False
    secrets: set[str] = field(default_factory=set)

    def console(self, stderr: bool = False) -> Console:
        return Console(stderr=stderr, no_color=self.no_color, highlight=False, soft_wrap=True)

    def scrub(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            if secret and len(secret) >= 4:
                text = text.replace(secret, "(sensitive)")
        return text


pass_session = click.make_pass_decorator(Session, ensure=True)


def config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "-f",
            "--file",
            "path",
            type=click.Path(path_type=Path),
            default=Path("."),
            show_default=True,
            help="Config file or directory of *.yaml.",
        ),
        click.option(
            "--state",
            "state_path",
            type=click.Path(path_type=Path),
            default=None,
            help="State file (default: state/<config-name>.json beside the config).",
        ),
        click.option("--var", "cli_vars", multiple=True, metavar="NAME=VALUE", help="Set a variable."),
        click.option(
            "--var-file",
            "var_files",
            multiple=True,
            type=click.Path(path_type=Path),
            help="YAML file of variable values.",
        ),
        click.option(
            "--lock-timeout",
            default="0s",
            show_default=True,
            help="How long to wait for the state lock (e.g. 60s).",
        ),
        click.option("--no-color", is_flag=True, help="No colours in output."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _vars(items: tuple[str, ...]) -> dict[str, str]:
    result = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"--var {item!r}: expected NAME=VALUE")
        result[name.strip()] = value
    return result


def _load(session: Session, path: Path, cli_vars: tuple[str, ...], var_files: tuple[str, ...]) -> Config:
    config = load_config(path, cli_vars=_vars(cli_vars), var_files=[Path(v) for v in var_files])
    session.secrets |= set(config.secrets)
    return config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="reconciler")
@pass_session
def cli(session: Session, debug: bool) -> None:
    """Declarative GPU infrastructure for Shadeform and Forward Compute."""
    session.debug = debug


@cli.command()
@config_options
@pass_session
def validate(
    session: Session,
    path: Path,
    state_path: Path | None,
    cli_vars: tuple[str, ...],
    var_files: tuple[str, ...],
    lock_timeout: str,
    no_color: bool,
) -> None:
    """Check the configuration; no API call, no state access."""
    session.no_color = no_color
    config = _load(session, path, cli_vars, var_files)
    session.console().print(
        f"Success! The configuration is valid: {len(config.resources)} resources in "
        f"{len(config.files)} file(s)."
    )


def _plan_options(
    destroy: bool, targets: tuple[str, ...], replace: tuple[str, ...], reselect: bool
) -> PlanOptions:
    def parse(items: tuple[str, ...], flag: str) -> tuple[Address, ...]:
        out = []
        for item in items:
            try:
                out.append(Address.parse(item))
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint=flag) from None
        return tuple(out)

    return PlanOptions(
        destroy=destroy,
        targets=parse(targets, "--target"),
        replace=parse(replace, "--replace"),
        reselect=reselect,
    )


def plan_flags(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--target",
            "targets",
            multiple=True,
            metavar="ADDRESS",
            help="Limit to this resource and what it depends on.",
        ),
        click.option("--replace", "replace", multiple=True, metavar="ADDRESS", help="Force replacement."),
        click.option(
            "--reselect",
            is_flag=True,
            help="Pick the cheapest offering again for requirement-based instances.",
        ),
        click.option(
            "--refresh",
            "refresh_live",
            type=click.BOOL,
            default=True,
            show_default=True,
            help="Read live resources before planning (--refresh=false to skip).",
        ),
        click.option("--json", "as_json", is_flag=True, help="Machine-readable output (JSON lines)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@dataclass
class Workspace:
    config: Config
    backend: StateBackend
    sandbox: Path


def _workspace(
    session: Session,
    path: Path,
    state_path: Path | None,
    cli_vars: tuple[str, ...],
    var_files: tuple[str, ...],
) -> Workspace:
    config = _load(session, path, cli_vars, var_files)
    backend = engine.open_backend(config, state_path)
    return Workspace(config, backend, engine.sandbox_path_for(config, backend))


def _print_plan(session: Session, plan: Plan, as_json: bool) -> None:
    console = session.console()
    if as_json:
        for event in plan_events(plan):
            click.echo(session.scrub(json.dumps(event)))
    else:
        render_plan(plan, console)


@cli.command()
@config_options
@plan_flags
@click.option(
    "-out", "--out", "out", type=click.Path(path_type=Path), default=None, help="Save the plan to a file."
)
@click.option("--destroy", is_flag=True, help="Plan to destroy everything in state.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when the plan has changes.")
@pass_session
def plan(
    session: Session,
    path: Path,
    state_path: Path | None,
    cli_vars: tuple[str, ...],
    var_files: tuple[str, ...],
    lock_timeout: str,
    no_color: bool,
    targets: tuple[str, ...],
    replace: tuple[str, ...],
    reselect: bool,
    refresh_live: bool,
    as_json: bool,
    out: Path | None,
    destroy: bool,
    detailed_exitcode: bool,
) -> None:
    """Show what apply would change."""
    session.no_color = no_color
    ws = _workspace(session, path, state_path, cli_vars, var_files)
    options = _plan_options(destroy, targets, replace, reselect)
    with ws.backend.lock("plan", parse_duration(lock_timeout)):
        doc = ws.backend.read()
        outcome = _run(_plan_async(ws, doc, options, refresh_live))
    _print_plan(session, outcome.plan, as_json)
    if out is not None:
        write_plan_file(out, outcome.plan, ws.config.name)
        if not as_json:
            session.console().print(
                f"\nSaved the plan to: {out}\nTo perform exactly these actions, run: reconciler apply {out}"
            )
    if detailed_exitcode and outcome.plan.has_changes:
        raise SystemExit(EXIT_CHANGES)


async def _plan_async(
    ws: Workspace, doc: StateDocument, options: PlanOptions, refresh_live: bool
) -> engine.PlanOutcome:
    settings = engine.providers_in_use(ws.config, doc)
    async with engine.open_providers(settings, ws.sandbox) as providers:
        return await engine.make_plan(providers, ws.config, doc, options, refresh_live=refresh_live)


def _confirm(session: Session, auto_approve: bool, what: str) -> None:
    if auto_approve:
        return
    if not sys.stdin.isatty():
        raise ReconcilerError(
            f"{what} needs confirmation, but standard input is not a terminal",
            hint="pass --auto-approve (or apply a saved plan file) in scripts and CI",
        )
    console = session.console()
    console.print(f"\nDo you want to perform these actions?\n  Only 'yes' will be accepted to {what}.\n")
    answer = click.prompt("  Enter a value", default="", show_default=False)
    if answer.strip() != "yes":
        console.print(f"\n{what.capitalize()} cancelled.")
        raise SystemExit(EXIT_ERROR)


def _apply_options(parallelism: int, create_timeout: str, poll: float | None, embedded: bool) -> ApplyOptions:
    return ApplyOptions(
        parallelism=parallelism,
        create_timeout=parse_duration(create_timeout),
        poll_interval=poll if poll is not None else (0.25 if embedded else 5.0),
    )


def apply_flags(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation."),
        click.option(
            "--parallelism",
            default=10,
            show_default=True,
            type=click.IntRange(1, 1000),
            help="How many API operations run at once.",
        ),
        click.option(
            "--create-timeout",
            default="15m",
            show_default=True,
            help="How long an instance may take to become active.",
        ),
        click.option(
            "--poll-interval",
            "poll",
            type=float,
            default=None,
            help="Seconds between status polls (default 0.25 embedded, 5 otherwise).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@contextlib.contextmanager
def _interruptible(session: Session, stop: asyncio.Event, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """First SIGINT/SIGTERM: stop scheduling and finish what runs. Second: exit now."""
    console = session.console(stderr=True)
    hits = {"n": 0}

    def handler() -> None:
        hits["n"] += 1
        if hits["n"] == 1:
            console.print(
                "\nInterrupt received: no new operations start; waiting for running ones "
                "(interrupt again to exit now; state on disk stays valid)."
            )
            stop.set()
        else:
            os._exit(130)

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, handler)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _apply_async(
    session: Session,
    ws: Workspace,
    doc: StateDocument,
    options: PlanOptions,
    refresh_live: bool,
    apply_options: Callable[[bool], ApplyOptions],
    auto_approve: bool,
    as_json: bool,
    saved: Plan | None,
    what: str,
) -> ApplyResult | None:
    from reconciler.render import make_apply_observer

    settings = engine.providers_in_use(ws.config, doc)
    embedded = any(s.embedded for s in settings.values())
    async with engine.open_providers(settings, ws.sandbox) as providers:
        if saved is not None:
            engine.check_saved_plan(saved, doc)
            outcome = await engine.make_plan(providers, ws.config, doc, options, refresh_live=True)
            plan, doc = saved, outcome.state
        else:
            outcome = await engine.make_plan(providers, ws.config, doc, options, refresh_live=refresh_live)
            plan, doc = outcome.plan, outcome.state
            _print_plan(session, plan, as_json)
            if not plan.has_changes and not outcome.settled:
                return None
            if plan.has_changes:
                _confirm(session, auto_approve, what)
        stop = asyncio.Event()
        observer = make_apply_observer(session.console(), as_json)
        with _interruptible(session, stop, asyncio.get_running_loop()):
            result = await engine.apply_plan(
                plan, doc, ws.backend, providers, apply_options(embedded), observer, stop
            )
        observer.summary(result)
        return result


def _apply_command(
    session: Session,
    ws: Workspace,
    options: PlanOptions,
    refresh_live: bool,
    apply_options: Callable[[bool], ApplyOptions],
    auto_approve: bool,
    as_json: bool,
    lock_timeout: str,
    saved: Plan | None,
    what: str,
) -> None:
    with ws.backend.lock("apply" if not options.destroy else "destroy", parse_duration(lock_timeout)):
        doc = ws.backend.read()
        result = _run(
            _apply_async(
                session, ws, doc, options, refresh_live, apply_options, auto_approve, as_json, saved, what
            )
        )
    if result is not None and not result.ok:
        raise SystemExit(EXIT_ERROR)


@cli.command()
@click.argument("plan_file", required=False, type=click.Path(path_type=Path))
@config_options
@plan_flags
@apply_flags
@pass_session
def apply(
    session: Session,
    plan_file: Path | None,
    path: Path,
    state_path: Path | None,
    cli_vars: tuple[str, ...],
    var_files: tuple[str, ...],
    lock_timeout: str,
    no_color: bool,
    targets: tuple[str, ...],
    replace: tuple[str, ...],
    reselect: bool,
    refresh_live: bool,
    as_json: bool,
    auto_approve: bool,
    parallelism: int,
    create_timeout: str,
    poll: float | None,
) -> None:
    """Make the infrastructure match the configuration (or run a saved plan)."""
    session.no_color = no_color
    ws = _workspace(session, path, state_path, cli_vars, var_files)
    saved = None
    if plan_file is not None:
        plan_obj, plan_config = read_plan_file(plan_file)
        saved = restore_secrets(plan_obj, ws.config.resources, ws.config.name, plan_config)
    options = _plan_options(False, targets, replace, reselect)
    _apply_command(
        session,
        ws,
        options,
        refresh_live,
        lambda embedded: _apply_options(parallelism, create_timeout, poll, embedded),
        auto_approve or saved is not None,
        as_json,
        lock_timeout,
        saved,
        "apply",
    )


@cli.command()
@config_options
@plan_flags
@apply_flags
@pass_session
def destroy(
    session: Session,
    path: Path,
    state_path: Path | None,
    cli_vars: tuple[str, ...],
    var_files: tuple[str, ...],
    lock_timeout: str,
    no_color: bool,
    targets: tuple[str, ...],
    replace: tuple[str, ...],
    reselect: bool,
    refresh_live: bool,
    as_json: bool,
    auto_approve: bool,
    parallelism: int,
    create_timeout: str,
    poll: float | None,
) -> None:
    """Delete everything in state, in reverse dependency order."""
    session.no_color = no_color
    ws = _workspace(session, path, state_path, cli_vars, var_files)
    options = _plan_options(True, targets, (), False)
    _apply_command(
        session,
        ws,
        options,
        refresh_live,
        lambda embedded: _apply_options(parallelism, create_timeout, poll, embedded),
        auto_approve,
        as_json,
        lock_timeout,
        None,
        "destroy",
    )


@cli.command()
@click.argument("plan_file", required=False, type=click.Path(path_type=Path))
@click.option(
    "-json", "--json", "as_json", is_flag=True, help="Terraform plan JSON (for a plan file) or state JSON."
)
@click.option(
    "-summary", "--summary", "summary", is_flag=True, help="Markdown summary of a plan file (PR comment)."
)
@click.option("-f", "--file", "path", type=click.Path(path_type=Path), default=Path("."), show_default=True)
@click.option("--state", "state_path", type=click.Path(path_type=Path), default=None)
@click.option("--no-color", is_flag=True)
@pass_session
def show(
    session: Session,
    plan_file: Path | None,
    as_json: bool,
    summary: bool,
    path: Path,
    state_path: Path | None,
    no_color: bool,
) -> None:
    """Show the state as a table, or a saved plan."""
    session.no_color = no_color
    if plan_file is not None:
        plan_obj, _ = read_plan_file(plan_file)
        if summary:
            click.echo(plan_summary_markdown(plan_obj))
        elif as_json:
            click.echo(json.dumps(plan_to_json(plan_obj), indent=2))
        else:
            render_plan(plan_obj, session.console())
        return
    doc = _read_state(session, path, state_path)
    if as_json:
        click.echo(doc.to_json_text())
    else:
        render_state_table(doc, session.console())


def _read_state(session: Session, path: Path, state_path: Path | None) -> StateDocument:
    ws = _workspace(session, path, state_path, (), ())
    if not ws.backend.exists():
        raise StateError(f"no state at {ws.backend.description}", hint="run `reconciler apply` first")
    return ws.backend.read()


@cli.command()
@config_options
@pass_session
def graph(
    session: Session,
    path: Path,
    state_path: Path | None,
    cli_vars: tuple[str, ...],
    var_files: tuple[str, ...],
    lock_timeout: str,
    no_color: bool,
) -> None:
    """Print the dependency graph as DOT."""
    config = _load(session, path, cli_vars, var_files)
    click.echo(DependencyGraph({a: r.depends_on for a, r in config.resources.items()}).to_dot())


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the configuration format (for editors)."""
    click.echo(json.dumps(config_json_schema(), indent=2))


@cli.command("force-unlock")
@click.argument("lock_id")
@click.option("-f", "--file", "path", type=click.Path(path_type=Path), default=Path("."), show_default=True)
@click.option("--state", "state_path", type=click.Path(path_type=Path), default=None)
@pass_session
def force_unlock(session: Session, lock_id: str, path: Path, state_path: Path | None) -> None:
    """Break a state lock left by a run that died."""
    ws = _workspace(session, path, state_path, (), ())
    ws.backend.force_unlock(lock_id)
    session.console().print(f"Lock {lock_id} released.")


@cli.group()
def state() -> None:
    """Inspect and edit state without touching resources."""


@state.command("list")
@click.option("-f", "--file", "path", type=click.Path(path_type=Path), default=Path("."), show_default=True)
@click.option("--state", "state_path", type=click.Path(path_type=Path), default=None)
@pass_session
def state_list(session: Session, path: Path, state_path: Path | None) -> None:
    """List the addresses in state."""
    doc = _read_state(session, path, state_path)
    for address in sorted(doc.resources, key=lambda a: Address.parse(a).sort_key()):
        click.echo(address)


def main() -> NoReturn:
    """Entry point: one line per error, no traceback unless --debug; exit 1 on any error."""
    session = Session(debug="--debug" in sys.argv[1:])
    try:
        cli.main(args=sys.argv[1:], prog_name="reconciler", standalone_mode=False, obj=session)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_ERROR)
        sys.exit(code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_ERROR)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_ERROR)
    except ReconcilerError as exc:
        if session.debug:
            import traceback

            traceback.print_exc()
        click.echo(session.scrub(f"Error: {exc}"), err=True)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - an unexpected failure still gets one clear line
        if session.debug:
            raise
        click.echo(session.scrub(f"Error: unexpected {type(exc).__name__}: {exc}"), err=True)
        click.echo("  hint: run again with --debug for the traceback, and report it", err=True)
        sys.exit(EXIT_ERROR)
    sys.exit(0)


def register_emulator() -> None:
    from reconciler.emulator.cli import emulator

    cli.add_command(emulator)


register_emulator()
