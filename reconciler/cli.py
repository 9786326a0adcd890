"""Command line: parse flags, call the engine, map errors to exit codes. Nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import traceback
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.table import Table

from reconciler import engine
from reconciler.applier import ApplyOptions, ApplyResult
from reconciler.completion import complete_addresses, completion_command
from reconciler.config import Config, config_json_schema, load_config
from reconciler.connect import ready_targets, ssh_command, ssh_config_text, ssh_target
from reconciler.cost_report import cost_table
from reconciler.errors import ConfigError, ReconcilerError, StateError
from reconciler.graph import DependencyGraph
from reconciler.model import Address, OfferingRequest, Plan
from reconciler.offering_search import offering_json, offerings_table, search
from reconciler.outputs import sensitive_value
from reconciler.planfile import read_plan_file, restore_secrets, write_plan_file
from reconciler.planner import PlanOptions
from reconciler.redaction import ScrubbedStream, Scrubber
from reconciler.state.backend import StateBackend
from reconciler.state.model import StateDocument
from reconciler.state.validation import DamagedStateError, parse_state_text, repairable_by_removal
from reconciler.views.apply_live import choose_apply_observer, showing
from reconciler.views.apply_progress import make_apply_observer
from reconciler.views.diagnostics import (
    diagnostics_of,
    render_config_error,
    render_diagnostics,
    render_plan_warnings,
    validation_report,
)
from reconciler.views.init_wizard import init_command
from reconciler.views.mermaid import config_mermaid, summary_with_diagram
from reconciler.views.outputs import format_value, output_lines, outputs_json, raw_text
from reconciler.views.plan_events import plan_events
from reconciler.views.plan_human import render_plan
from reconciler.views.plan_json import plan_to_json, reconciler_version
from reconciler.views.plan_markdown import plan_summary_markdown
from reconciler.views.state_json import state_to_json
from reconciler.views.state_table import render_state_table
from reconciler.views.tables import FittingConsole, state_list_json

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


def _pairs(items: tuple[str, ...], flag: str) -> dict[str, str]:
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


@dataclass
class Location:
    """Where the configuration and its state are, as the common flags say."""

    session: Session
    path: Path
    state_path: Path | None
    cli_vars: dict[str, str]
    var_files: tuple[Path, ...]
    backend_config: dict[str, str]
    lock_timeout: float
    allow_foreign_state: bool = False
    _config: Config | None = None
    _backend: StateBackend | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = load_config(self.path, cli_vars=self.cli_vars, var_files=self.var_files)
            except ConfigError as exc:
                self.session.scrubber.add(*exc.secrets)
                raise
            self.session.scrubber.add(*self._config.secrets)
        return self._config

    def has_config(self) -> bool:
        """False for a directory without any YAML file (a command that can run without one)."""
        return not (self.path.is_dir() and not any(p.suffix in (".yaml", ".yml") for p in self.path.iterdir()))

    @property
    def backend(self) -> StateBackend:
        if self._backend is None:
            self._backend, note = engine.choose_backend(self.config, self.state_path, self.backend_config)
            if note:
                self.session.console(stderr=True).print(f"Note: {note}", markup=False)
        return self._backend

    def read_state(self) -> StateDocument:
        """The stored state (a fresh one if none), refused if another configuration wrote it."""
        return engine.check_state_identity(self.config, self.backend, self.backend.read(), self.allow_foreign_state)

    @property
    def sandbox(self) -> Path:
        return engine.sandbox_path_for(self.config, self.backend)

    @contextlib.contextmanager
    def locked(self, operation: str) -> Iterator[None]:
        """Hold the state lock; say so when the previous holder died without releasing it."""
        with self.backend.lock(operation, self.lock_timeout):
            stale = getattr(self.backend, "stale_lock", None)
            if stale is not None:
                self.session.console(stderr=True).print(
                    f"Note: a previous run died holding the state lock ({stale.describe()}); "
                    "the lock was released with it. Pending operations it left are settled now.",
                    markup=False,
                )
            yield

    def read_existing_state(self) -> StateDocument:
        if not self.backend.exists():
            raise StateError(f"no state at {self.backend.description}", hint="run `reconciler apply` first")
        return self.read_state()

    def read_settled_state(
        self, what: str, must_exist: bool = False, removing: tuple[str, ...] = ()
    ) -> StateDocument:
        """State for an edit by hand: refused while an interrupted run's operations are unsettled,
        since moving addresses or ids under them could lose or misplace what they created.
        A state damaged only in the entries being removed is read, so `state rm` can repair it."""
        try:
            doc = self.read_existing_state() if must_exist else self.read_state()
        except DamagedStateError as exc:
            doc = repairable_by_removal(exc, removing)
        if doc.pending:
            raise StateError(
                f"{what}: state has {len(doc.pending)} pending operation(s) from an interrupted run",
                hint="run `reconciler refresh` (or apply) first to settle them; nothing was changed",
            )
        return doc


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
        loc = Location(session, path, state_path, _pairs(cli_vars, "--var"), tuple(var_files),
                       _pairs(backend_config, "--backend-config"), parse_duration(lock_timeout),
                       allow_foreign_state)
        return func(loc, **kwargs)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    # Options declared on the command itself (below this decorator) belong to it too.
    wrapper.__click_params__.extend(getattr(func, "__click_params__", []))  # type: ignore[attr-defined]
    return wrapper


class ReconcilerGroup(click.Group):
    """The top-level group; `emulator` is imported only when it is asked for (faster start-up)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), "emulator"})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "emulator":
            from reconciler.emulator.cli import emulator

            return emulator
        return super().get_command(ctx, cmd_name)


@click.group(cls=ReconcilerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.option("--no-color", is_flag=True, help="No colours in output.")
@click.version_option(package_name="reconciler")
@click.pass_obj
def cli(session: Session, debug: bool, no_color: bool) -> None:
    """Declarative GPU infrastructure for Shadeform and Forward Compute."""
    session.debug = debug
    session.no_color = no_color


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, handing the result out through a closure: on Python 3.11 asyncio.run
    builds the repr of what it returns, which for a 10,000-resource plan costs ~0.5 s."""
    box: list[T] = []

    async def keep() -> None:
        box.append(await coro)

    asyncio.run(keep())
    return box[0]


async def _with_providers(loc: Location, doc: StateDocument,
                          work: Callable[[dict[str, Any]], Coroutine[Any, Any, T]]) -> T:
    settings = engine.providers_in_use(loc.config, doc)
    async with engine.open_providers(settings, loc.sandbox, emulator=loc.config.emulator) as providers:
        return await work(providers)


# ----------------------------------------------------------------------------- validate, plan


@cli.command()
@location_options
@click.option("-json", "--json", "as_json", is_flag=True, help="Diagnostics as JSON (Terraform's validate -json).")
def validate(loc: Location, as_json: bool) -> None:
    """Check the configuration; no API call, no state access."""
    if as_json:
        document, ok = validation_report(lambda: loc.config)
        click.echo(json.dumps(document, indent=2))
        raise SystemExit(0 if ok else EXIT_ERROR)
    config = loc.config
    render_diagnostics(diagnostics_of(None, config.warnings), loc.session.console(stderr=True),
                       scrub=loc.session.scrubber.scrub)
    loc.session.console().print(
        f"Success! The configuration is valid: {len(config.resources)} resources in {len(config.files)} file(s)."
    )


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


def _addresses(items: tuple[str, ...], flag: str) -> tuple[Address, ...]:
    out = []
    for item in items:
        try:
            out.append(Address.parse(item))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=flag) from None
    return tuple(out)


def _plan_options(destroy: bool, targets: tuple[str, ...], replace: tuple[str, ...], reselect: bool) -> PlanOptions:
    return PlanOptions(destroy=destroy, targets=_addresses(targets, "--target"),
                       replace=_addresses(replace, "--replace"), reselect=reselect)


def _print_plan(session: Session, plan: Plan, as_json: bool) -> None:
    if as_json:
        for event in plan_events(plan):
            click.echo(json.dumps(event))
    else:
        render_plan(plan, session.console())


def _print_notes(session: Session, title: str, notes: tuple[str, ...]) -> None:
    console = session.console()
    if not notes:
        console.print(f"{title}: none.")
        return
    console.print(f"{title}:")
    for note in notes:
        console.print(f"  - {note}", markup=False)


@cli.command()
@location_options
@plan_flags
@click.option("-out", "--out", "out", type=click.Path(path_type=Path), default=None, help="Save the plan to a file.")
@click.option("--destroy", is_flag=True, help="Plan to destroy everything in state.")
@click.option("--refresh-only", is_flag=True, help="Only show what changed outside reconciler.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 with no changes, 2 with changes, 1 on error.")
def plan(loc: Location, targets: tuple[str, ...], replace: tuple[str, ...], reselect: bool, refresh_live: bool,
         as_json: bool, out: Path | None, destroy: bool, refresh_only: bool, detailed_exitcode: bool) -> None:
    """Show what apply would change, and what it costs."""
    options = _plan_options(destroy, targets, replace, reselect)
    if out is not None and (out.is_dir() or not out.absolute().parent.is_dir()):
        raise ReconcilerError(f"-out {out}: not a file in an existing directory", hint="nothing was planned")
    with loc.locked("plan"):
        doc = loc.read_state()
        if refresh_only:
            _, drift = _run(_with_providers(loc, doc, lambda p: engine.refresh_only(p, loc.config, doc)))
            _print_notes(loc.session, "Changes outside reconciler (`reconciler refresh` records them)", drift)
            if detailed_exitcode and drift:
                raise SystemExit(EXIT_CHANGES)
            return
        outcome = _run(_with_providers(
            loc, doc, lambda p: engine.make_plan(p, loc.config, doc, options, refresh_live=refresh_live)))
    render_plan_warnings(outcome.warnings, loc.config.warnings, loc.session.console(stderr=True))
    _print_plan(loc.session, outcome.plan, as_json)
    if out is not None:
        write_plan_file(out, outcome.plan, loc.config.name)
        if not as_json:
            loc.session.console().print(
                f"\nSaved the plan to: {out}\nTo perform exactly these actions, run: reconciler apply {out}"
            )
    if detailed_exitcode and outcome.plan.has_changes:
        raise SystemExit(EXIT_CHANGES)


# ----------------------------------------------------------------------------- apply, destroy


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


@contextlib.contextmanager
def _interruptible(session: Session, stop: asyncio.Event) -> Iterator[None]:
    """First SIGINT/SIGTERM: stop scheduling and let running calls finish. Second: exit now."""
    loop = asyncio.get_running_loop()
    console = session.console(stderr=True)
    hits = [0]

    def handler() -> None:
        hits[0] += 1
        if hits[0] == 1:
            console.print("\nInterrupt received: no new operations start; waiting for running ones "
                          "(interrupt again to exit at once; state on disk stays valid).")
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


@dataclass(frozen=True)
class ApplyRequest:
    options: PlanOptions
    refresh_live: bool
    auto_approve: bool
    as_json: bool
    parallelism: int
    create_timeout: float
    poll: float | None
    saved: Plan | None
    what: str
    allow_foreign_objects: bool = False

    def apply_options(self, embedded: bool) -> ApplyOptions:
        return ApplyOptions(
            parallelism=self.parallelism,
            create_timeout=self.create_timeout,
            poll_interval=self.poll if self.poll is not None else (0.25 if embedded else 5.0),
        )


async def _apply_async(loc: Location, doc: StateDocument, req: ApplyRequest) -> ApplyResult | None:
    session = loc.session
    settings = engine.providers_in_use(loc.config, doc)
    embedded = any(s.embedded for s in settings.values())
    async with engine.open_providers(settings, loc.sandbox, emulator=loc.config.emulator) as providers:
        if req.saved is not None:
            engine.check_saved_plan(req.saved, doc)
            outcome = await engine.make_plan(providers, loc.config, doc, req.options, refresh_live=True)
            if outcome.settled:
                raise StateError(
                    "the saved plan is stale: operations of an interrupted run were settled since it "
                    "was made (" + "; ".join(outcome.settled) + ")",
                    hint="run plan again; nothing was changed",
                )
            engine.check_foreign_objects(outcome.plan, req.allow_foreign_objects)
            plan, doc = req.saved, outcome.state
        else:
            outcome = await engine.make_plan(providers, loc.config, doc, req.options, refresh_live=req.refresh_live)
            render_plan_warnings(outcome.warnings, loc.config.warnings, session.console(stderr=True))
            plan, doc = outcome.plan, outcome.state
            _print_plan(session, plan, req.as_json)
            if not plan.has_changes and not outcome.settled:
                return None
            engine.check_foreign_objects(plan, req.allow_foreign_objects)
            if plan.has_changes:
                _confirm(session, req.auto_approve, req.what)
        stop = asyncio.Event()
        console = session.console()
        observer = choose_apply_observer(console, req.as_json, session.no_color, make_apply_observer)
        with _interruptible(session, stop), showing(observer):
            outputs = loc.config.outputs if req.what == "apply" else {}
            result = await engine.apply_plan(plan, doc, loc.backend, providers, req.apply_options(embedded),
                                             observer, stop, outputs)
        observer.summary(result)
        if result.state.outputs and not req.as_json:
            console.print("\nOutputs:\n\n" + "\n".join(output_lines(result.state.outputs)), markup=False)
        return result


def _apply_command(loc: Location, req: ApplyRequest) -> None:
    with loc.locked(req.what):
        doc = loc.read_state()
        result = _run(_apply_async(loc, doc, req))
    if result is not None and not result.ok:
        raise SystemExit(EXIT_ERROR)


@cli.command()
@click.argument("plan_file", required=False, type=click.Path(path_type=Path))
@location_options
@plan_flags
@apply_flags
@click.option("--allow-foreign-objects", is_flag=True,
              help="Create even where a new state's objects already run under another state's marker.")
def apply(loc: Location, plan_file: Path | None, targets: tuple[str, ...], replace: tuple[str, ...],
          reselect: bool, refresh_live: bool, as_json: bool, auto_approve: bool, parallelism: int,
          create_timeout: str, poll: float | None, allow_foreign_objects: bool) -> None:
    """Make the infrastructure match the configuration, or run a saved plan exactly."""
    saved = None
    if plan_file is not None:
        ignored = [flag for flag, given in (("--target", targets), ("--replace", replace), ("--reselect", reselect),
                                            ("--refresh=false", not refresh_live), ("--var", loc.cli_vars)) if given]
        if ignored:
            raise ReconcilerError(
                f"{', '.join(ignored)} cannot be used with a saved plan: it runs exactly what it shows",
                hint="pass them to `reconciler plan -out FILE` instead",
            )
        plan_obj, plan_config = read_plan_file(plan_file)
        saved = restore_secrets(plan_obj, loc.config.resources, loc.config.name, plan_config, loc.backend.read())
    _apply_command(loc, ApplyRequest(
        _plan_options(False, targets, replace, reselect), refresh_live, auto_approve or saved is not None, as_json,
        parallelism, parse_duration(create_timeout), poll, saved, "apply", allow_foreign_objects))


@cli.command()
@location_options
@plan_flags
@apply_flags
def destroy(loc: Location, targets: tuple[str, ...], replace: tuple[str, ...], reselect: bool, refresh_live: bool,
            as_json: bool, auto_approve: bool, parallelism: int, create_timeout: str, poll: float | None) -> None:
    """Delete everything in state (or the --target ones), dependents first."""
    _apply_command(loc, ApplyRequest(
        _plan_options(True, targets, (), False), refresh_live, auto_approve, as_json, parallelism,
        parse_duration(create_timeout), poll, None, "destroy"))


# ----------------------------------------------------------------------------- show, graph, schema


@cli.command()
@click.argument("plan_file", required=False, type=click.Path(path_type=Path))
@click.option("-json", "--json", "as_json", is_flag=True, help="Terraform-shaped plan JSON, or the state JSON.")
@click.option("-summary", "--summary", "summary", is_flag=True, help="Markdown summary of a plan (PR comment).")
@location_options
def show(loc: Location, plan_file: Path | None, as_json: bool, summary: bool) -> None:
    """Show the state as a table, or a saved plan."""
    if plan_file is not None:
        plan_obj, _ = read_plan_file(plan_file)
        if summary:
            click.echo(summary_with_diagram(plan_obj, plan_summary_markdown))
        elif as_json:
            click.echo(json.dumps(plan_to_json(plan_obj), indent=2))
        else:
            render_plan(plan_obj, loc.session.console())
        return
    doc = loc.read_existing_state()
    if as_json:
        click.echo(json.dumps(state_to_json(doc, reconciler_version()), indent=2))
    else:
        render_state_table(doc, loc.session.console())


@cli.command()
@click.argument("name", required=False)
@click.option("-json", "--json", "as_json", is_flag=True, help="Every output as {name: {value, type, sensitive}}.")
@click.option("-raw", "--raw", "raw", is_flag=True, help="The bare string value of NAME, for scripts.")
@location_options
def output(loc: Location, name: str | None, as_json: bool, raw: bool) -> None:
    """Print the outputs recorded by the last apply."""
    if raw and (name is None or as_json):
        raise ReconcilerError("-raw needs exactly one output NAME (and no -json)")
    doc = loc.read_existing_state()
    if name is not None and name not in doc.outputs:
        raise ReconcilerError(f"output {name!r} not found", hint=_output_hint(doc, loc.config.outputs))
    if as_json or raw:
        wanted = [name] if name else [n for n, held in doc.outputs.items() if held.sensitive]
        secret = {n: sensitive_value(loc.config.outputs.get(n), n, doc) for n in wanted if doc.outputs[n].sensitive}
        shown = outputs_json(doc, secret)
        if raw:
            assert name is not None
            text = raw_text(shown[name]["value"])
            if text is None:
                raise ReconcilerError(f"output {name} is not a string, number or bool", hint="use -json")
            _echo_verbatim(text, nl=False)
        else:
            _echo_verbatim(json.dumps(shown[name]["value"] if name else shown, indent=2))
        return
    if name is not None:
        held = doc.outputs[name]
        click.echo("(sensitive)" if held.sensitive else format_value(held.value))
        return
    if not doc.outputs:
        click.echo(f"No outputs in state.\n  hint: {_output_hint(doc, loc.config.outputs)}", err=True)
    for line in output_lines(doc.outputs):
        click.echo(line)


def _echo_verbatim(text: str, nl: bool = True) -> None:
    """Sensitive outputs asked for by name (-json, -raw) are printed as they are, as Terraform does."""
    click.echo(text, nl=nl, file=getattr(sys.stdout, "verbatim", sys.stdout))


def _output_hint(doc: StateDocument, declared: dict[str, Any]) -> str:
    if declared:
        return "apply records the outputs the configuration declares"
    return "declare them under outputs: in the configuration, then apply"


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("address", shell_complete=complete_addresses)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@location_options
def ssh(loc: Location, address: str, command: tuple[str, ...]) -> None:
    """Open an SSH session to a ready instance (`-- COMMAND ...` runs a command there)."""
    doc = loc.read_existing_state()
    target = ssh_target(doc, _addresses((address,), "ADDRESS")[0], loc.config.private_keys)
    argv = ssh_command(target, command)
    if shutil.which(argv[0]) is None:
        raise ReconcilerError("ssh was not found on PATH", hint="install the OpenSSH client")
    sys.stdout.flush()
    os.execvp(argv[0], argv)


@cli.command("ssh-config")
@location_options
def ssh_config(loc: Location) -> None:
    """Print OpenSSH Host entries for every ready instance (for Include in ~/.ssh/config)."""
    doc = loc.read_existing_state()
    click.echo(ssh_config_text(loc.config.name, ready_targets(doc, loc.config.private_keys)), nl=False)


@cli.command()
@location_options
@click.option("--format", "form", type=click.Choice(["dot", "mermaid"]), default="dot", show_default=True,
              help="DOT (pipe to `dot -Tsvg`) or Mermaid (GitHub renders it in Markdown).")
def graph(loc: Location, form: str) -> None:
    """Print the dependency graph as DOT or Mermaid."""
    edges = {a: r.depends_on for a, r in loc.config.resources.items()}
    click.echo(config_mermaid(edges) if form == "mermaid" else DependencyGraph(edges).to_dot(), nl=False)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the configuration format (for editors)."""
    click.echo(json.dumps(config_json_schema(), indent=2))


# ----------------------------------------------------------------------------- refresh, import, offerings


@cli.command()
@location_options
def refresh(loc: Location) -> None:
    """Update state from what runs now (records drift; changes no resource)."""
    with loc.locked("refresh"):
        doc = loc.read_state()
        new, drift = _run(_with_providers(loc, doc, lambda p: engine.refresh_only(p, loc.config, doc)))
        _print_notes(loc.session, "Changes outside reconciler", drift)
        if new != doc:
            new.serial = doc.serial + 1
            loc.backend.write(new)
            loc.session.console().print(f"State updated (serial {new.serial}).")


@cli.command("import")
@click.argument("address", shell_complete=complete_addresses)
@click.argument("id")
@location_options
def import_(loc: Location, address: str, id: str) -> None:
    """Adopt an existing object (ID) as ADDRESS, which the configuration declares."""
    target = _addresses((address,), "ADDRESS")[0]
    with loc.locked("import"):
        doc = loc.read_settled_state("import")
        new = _run(_with_providers(loc, doc, lambda p: engine.import_resource(p, loc.config, doc, target, id)))
        new.serial = doc.serial + 1
        loc.backend.write(new)
    loc.session.console().print(f"Imported {id} as {target}. Run `reconciler plan` to see how it differs.")


@cli.command()
@location_options
@click.option("--provider", "providers", multiple=True, help="Only this provider (repeatable).")
@click.option("--gpu", "gpu_types", multiple=True, help="GPU type, e.g. H100 (repeatable: any of them).")
@click.option("--num-gpus", type=int, default=None)
@click.option("--min-vram", type=int, default=None, help="Least GB of memory per GPU.")
@click.option("--min-vcpus", type=int, default=None)
@click.option("--min-memory", type=int, default=None, help="Least GB of RAM.")
@click.option("--max-price", type=float, default=None, help="Highest $/h for the whole instance.")
@click.option("--max-price-per-gpu", type=float, default=None, help="Highest $/h per GPU.")
@click.option("--region", "regions", multiple=True, help="Only this region (repeatable).")
@click.option("--cloud", "clouds", multiple=True, help="Only this cloud (repeatable).")
@click.option("--exclude-region", "exclude_regions", multiple=True)
@click.option("--exclude-cloud", "exclude_clouds", multiple=True)
@click.option("--rental-type", type=click.Choice(["on_demand", "spot"]), default=None)
@click.option("--deployment-type", default=None, help="vm, container or baremetal.")
@click.option("--available", is_flag=True, help="Only offerings with capacity now.")
@click.option("--json", "as_json", is_flag=True)
def offerings(loc: Location, providers: tuple[str, ...], available: bool, as_json: bool, **wanted: Any) -> None:
    """What every provider sells, cheapest first, filtered by the keys of an instance's
    `offering:` block. Runs without a configuration too (the built-in emulator by default)."""
    request = OfferingRequest(
        gpu_type=tuple(wanted["gpu_types"]) or None,
        num_gpus=wanted["num_gpus"],
        min_vram_per_gpu_gb=wanted["min_vram"],
        min_vcpus=wanted["min_vcpus"],
        min_memory_gb=wanted["min_memory"],
        max_hourly_price=wanted["max_price"],
        max_price_per_gpu_hour=wanted["max_price_per_gpu"],
        regions=tuple(wanted["regions"]) or None,
        clouds=tuple(wanted["clouds"]) or None,
        exclude_regions=tuple(wanted["exclude_regions"]) or None,
        exclude_clouds=tuple(wanted["exclude_clouds"]) or None,
        rental_type=wanted["rental_type"],
        deployment_type=wanted["deployment_type"],
    )
    configured = loc.has_config()
    found = _run(engine.list_offerings(
        loc.config if configured else None, loc.sandbox if configured else None, set(providers)))
    rows = search(found, request, available)
    if as_json:
        click.echo(json.dumps([offering_json(o) for o in rows], indent=2))
        return
    loc.session.console().print(offerings_table(rows))


# ----------------------------------------------------------------------------- locks and state


@cli.command("force-unlock")
@click.argument("lock_id")
@location_options
def force_unlock(loc: Location, lock_id: str) -> None:
    """Break a state lock left by a run that died."""
    loc.backend.force_unlock(lock_id)
    loc.session.console().print(f"Lock {lock_id} released.")


@cli.command()
@location_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: per resource and total.")
def cost(loc: Location, as_json: bool) -> None:
    """What the tracked resources burn now ($/h from live prices) and have cost so far."""
    doc = loc.read_existing_state()
    report = _run(_with_providers(loc, doc, lambda p: engine.cost_now(p, loc.config, doc)))
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    loc.session.console().print(cost_table(report))


@cli.group()
def state() -> None:
    """Inspect and edit state without touching resources."""


@state.command("list")
@location_options
@click.option("-json", "--json", "as_json", is_flag=True, help="Address, provider, id and status of each, as JSON.")
def state_list(loc: Location, as_json: bool) -> None:
    """List the addresses in state."""
    doc = loc.read_existing_state()
    addresses = sorted(doc.resources, key=lambda a: Address.parse(a).sort_key())
    if as_json:
        click.echo(json.dumps(state_list_json(doc, addresses), indent=2))
        return
    for address in addresses:
        click.echo(address)


@state.command("show")
@click.argument("address", shell_complete=complete_addresses)
@location_options
def state_show(loc: Location, address: str) -> None:
    """Show one resource's state entry."""
    doc = loc.read_existing_state()
    entry = doc.resources.get(str(_addresses((address,), "ADDRESS")[0]))
    if entry is None:
        raise StateError(f"{address} is not in state", hint="`reconciler state list` shows what is")
    click.echo(json.dumps({"address": address, **entry.model_dump(mode="json")}, indent=2))


def _edit_state(
    loc: Location, operation: str, edit: Callable[[StateDocument], str], removing: tuple[str, ...] = ()
) -> None:
    with loc.locked(operation):
        doc = loc.read_settled_state(operation, must_exist=True, removing=removing)
        new = doc.model_copy(deep=True)
        message = edit(new)
        new.serial = doc.serial + 1
        loc.backend.write(new)
    loc.session.console().print(message)


@state.command("rm")
@click.argument("addresses", nargs=-1, required=True, shell_complete=complete_addresses)
@location_options
def state_rm(loc: Location, addresses: tuple[str, ...]) -> None:
    """Forget resources without deleting them (they keep running and billing)."""
    # A damaged state's malformed key is named as it is written, so it can be removed too.
    targets = tuple(_canonical_or_as_written(a) for a in addresses)

    def edit(doc: StateDocument) -> str:
        for address in targets:
            if address not in doc.resources:
                raise StateError(f"{address} is not in state", hint="`reconciler state list` shows what is")
        ids = [f"{a} ({doc.resources.pop(a).id})" for a in targets]
        return "Removed from state (still running at the provider): " + ", ".join(ids)

    _edit_state(loc, "state rm", edit, removing=targets)


def _canonical_or_as_written(text: str) -> str:
    try:
        return str(Address.parse(text))
    except ValueError:
        return text


@state.command("mv")
@click.argument("source", shell_complete=complete_addresses)
@click.argument("destination")
@location_options
def state_mv(loc: Location, source: str, destination: str) -> None:
    """Rename a resource's address without replacing it."""
    old, new_address = (str(a) for a in _addresses((source, destination), "ADDRESS"))
    if Address.parse(old).kind != Address.parse(new_address).kind:
        raise StateError(f"cannot move {old} to {new_address}: the kinds differ")

    def edit(doc: StateDocument) -> str:
        if old not in doc.resources:
            raise StateError(f"{old} is not in state", hint="`reconciler state list` shows what is")
        if new_address in doc.resources:
            raise StateError(f"{new_address} is already in state")
        doc.resources[new_address] = doc.resources.pop(old)
        for res in doc.resources.values():
            res.depends_on = [new_address if d == old else d for d in res.depends_on]
            for key in ("ssh_key",):
                if res.attributes.get(key) == old:
                    res.attributes[key] = new_address
            if isinstance(res.attributes.get("volumes"), list):
                res.attributes["volumes"] = [new_address if v == old else v for v in res.attributes["volumes"]]
        return f"Moved {old} to {new_address}."

    _edit_state(loc, "state mv", edit)


@state.command("pull")
@location_options
def state_pull(loc: Location) -> None:
    """Print the current state document (e.g. `state pull > backup.json`)."""
    click.echo(loc.read_existing_state().to_json_text(), nl=False)


@state.command("push")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--force", is_flag=True, help="Write even if the lineage differs or the serial is not newer.")
@location_options
def state_push(loc: Location, file: Path, force: bool) -> None:
    """Replace the stored state with FILE (refused unless it is the same lineage and newer)."""
    pushed = parse_state_text(file.read_text(encoding="utf-8"), str(file), "nothing was pushed")
    with loc.locked("state push"):
        try:
            current = loc.read_settled_state("state push")
        except DamagedStateError as damaged:
            if not force:
                raise
            engine.replace_damaged_state(loc.backend, pushed, damaged)
            loc.session.console().print(f"Pushed {file} to {loc.backend.description}, replacing its damaged state.")
            return
        exists = loc.backend.exists()
        if exists and not force:
            if pushed.lineage != current.lineage:
                raise StateError(
                    f"{file} has lineage {pushed.lineage}, the stored state {current.lineage}",
                    hint="it is another state's history; pass --force only if you mean to replace it",
                )
            if pushed.serial <= current.serial:
                raise StateError(
                    f"{file} has serial {pushed.serial}, not newer than the stored {current.serial}",
                    hint="pull the current state and edit that, or pass --force",
                )
        engine.overwrite_state(loc.backend, pushed, current if exists else None)
    loc.session.console().print(f"Pushed {file} to {loc.backend.description}.")


@state.command("history")
@click.option("--limit", default=20, show_default=True)
@location_options
def state_history(loc: Location, limit: int) -> None:
    """Every version of the state written (PostgreSQL backend)."""
    history = getattr(loc.backend, "history", None)
    if history is None:
        raise StateError(
            "the local backend keeps only the previous version (the .backup file)",
            hint="use the PostgreSQL backend for full history",
        )
    table = Table()
    for column in ("serial", "lineage", "written_at", "written_by"):
        table.add_column(column)
    for row in history(limit):
        table.add_row(str(row["serial"]), str(row["lineage"]), str(row["written_at"]), str(row["written_by"]))
    loc.session.console().print(table)


@state.command("migrate")
@click.option("--to", "to_type", type=click.Choice(["local", "postgres"]), required=True)
@click.option("--to-config", "to_config", multiple=True, metavar="KEY=VALUE",
              help="Destination backend settings (url, schema, stack, path); default: the config's backend.")
@location_options
def state_migrate(loc: Location, to_type: str, to_config: tuple[str, ...]) -> None:
    """Copy the state into another backend without loss (same lineage and serial)."""
    destination_settings = {**_pairs(to_config, "--to-config"), "type": to_type}
    destination = engine.open_backend(loc.config, None, destination_settings)
    if destination.description == loc.backend.description:
        raise StateError("source and destination are the same backend")
    with loc.locked("state migrate"), destination.lock("state migrate", loc.lock_timeout):
        doc = loc.read_existing_state()
        if destination.exists():
            raise StateError(
                f"{destination.description} already holds a state",
                hint="migrate into an empty stack, or `state push --force` if you mean to overwrite it",
            )
        engine.overwrite_state(destination, doc, None)
    loc.session.console().print(
        f"Migrated {len(doc.resources)} resources (serial {doc.serial}) to {destination.description}.\n"
        "Point the configuration's backend at it, then `reconciler plan` should show no changes."
    )


cli.add_command(init_command)
cli.add_command(completion_command)


# ----------------------------------------------------------------------------- entry point


def main() -> NoReturn:
    """Entry point: one line per error, no traceback unless --debug; exit 1 on any error."""
    argv = sys.argv[1:]
    session = Session(debug="--debug" in argv)
    sys.stdout = ScrubbedStream(session.scrubber, sys.stdout)
    sys.stderr = ScrubbedStream(session.scrubber, sys.stderr)
    if session.debug:
        argv = ["--debug", *(a for a in argv if a != "--debug")]
    try:
        cli.main(args=argv, prog_name="reconciler", standalone_mode=False, obj=session)
    except SystemExit as exc:
        sys.exit(exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_ERROR))
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_ERROR)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_ERROR)
    except ConfigError as exc:
        if session.debug:
            traceback.print_exc()
        session.scrubber.add(*exc.secrets)
        render_config_error(exc, session.console(stderr=True), session.scrubber.scrub)
        sys.exit(EXIT_ERROR)
    except ReconcilerError as exc:
        if session.debug:
            traceback.print_exc()
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - an unexpected failure still gets one clear line
        if session.debug:
            raise
        click.echo(f"Error: unexpected {type(exc).__name__}: {exc}", err=True)
        click.echo("  hint: run again with --debug for the traceback, and report it", err=True)
        sys.exit(EXIT_ERROR)
    sys.exit(0)
