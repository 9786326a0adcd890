"""Command line: parse flags, call the engine, map errors to exit codes. Nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from reconciler import engine, state_ops
from reconciler.applier import ApplyOptions, ApplyResult
from reconciler.cli_options import (
    EXIT_CHANGES,
    EXIT_ERROR,
    Location,
    Session,
    apply_flags,
    location_options,
    parse_addresses,
    parse_duration,
    plan_flags,
    plan_options,
    print_notes,
    run_async,
)
from reconciler.cli_state import state
from reconciler.completion import complete_addresses, completion_command
from reconciler.config import config_json_schema
from reconciler.connect import ready_targets, ssh_command, ssh_config_text, ssh_target
from reconciler.cost_report import cost_table
from reconciler.errors import ConfigError, ReconcilerError
from reconciler.graph import DependencyGraph
from reconciler.model import OfferingRequest, Plan
from reconciler.outputs import sensitive_value
from reconciler.planfile import read_plan_file, restore_secrets, write_plan_file
from reconciler.planner import PlanOptions
from reconciler.redaction import ScrubbedStream
from reconciler.state.model import StateDocument
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
from reconciler.views.offerings import offering_json, offerings_table
from reconciler.views.outputs import format_value, output_lines, outputs_json, raw_text
from reconciler.views.plan_events import plan_events
from reconciler.views.plan_human import render_plan
from reconciler.views.plan_json import plan_to_json, reconciler_version
from reconciler.views.plan_markdown import plan_summary_markdown
from reconciler.views.state_json import state_to_json
from reconciler.views.state_table import render_state_table


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


def _print_plan(session: Session, plan: Plan, as_json: bool) -> None:
    if as_json:
        for event in plan_events(plan):
            click.echo(json.dumps(event))
    else:
        render_plan(plan, session.console())


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
    options = plan_options(destroy, targets, replace, reselect)
    if out is not None and (out.is_dir() or not out.absolute().parent.is_dir()):
        raise ReconcilerError(f"-out {out}: not a file in an existing directory", hint="nothing was planned")
    with loc.locked("plan"):
        doc = loc.read_state()
        if refresh_only:
            _, drift = run_async(engine.with_providers(loc, doc, lambda p: engine.refresh_only(p, loc.config, doc)))
            print_notes(loc.session, "Changes outside reconciler (`reconciler refresh` records them)", drift)
            if detailed_exitcode and drift:
                raise SystemExit(EXIT_CHANGES)
            return
        outcome = run_async(engine.with_providers(
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
            plan = req.saved
            doc = await engine.recheck_saved_plan(
                providers, loc.config, doc, plan, req.options, req.allow_foreign_objects)
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
        result = run_async(_apply_async(loc, doc, req))
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
        plan_options(False, targets, replace, reselect), refresh_live, auto_approve or saved is not None, as_json,
        parallelism, parse_duration(create_timeout), poll, saved, "apply", allow_foreign_objects))


@cli.command()
@location_options
@plan_flags
@apply_flags
def destroy(loc: Location, targets: tuple[str, ...], replace: tuple[str, ...], reselect: bool, refresh_live: bool,
            as_json: bool, auto_approve: bool, parallelism: int, create_timeout: str, poll: float | None) -> None:
    """Delete everything in state (or the --target ones), dependents first."""
    _apply_command(loc, ApplyRequest(
        plan_options(True, targets, (), False), refresh_live, auto_approve, as_json, parallelism,
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
    target = ssh_target(doc, parse_addresses((address,), "ADDRESS")[0], loc.config.private_keys)
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
    serial = run_async(state_ops.refresh_and_commit(
        loc, lambda drift: print_notes(loc.session, "Changes outside reconciler", drift)))
    if serial is not None:
        loc.session.console().print(f"State updated (serial {serial}).")


@cli.command("import")
@click.argument("address", shell_complete=complete_addresses)
@click.argument("id")
@location_options
def import_(loc: Location, address: str, id: str) -> None:
    """Adopt an existing object (ID) as ADDRESS, which the configuration declares."""
    target = parse_addresses((address,), "ADDRESS")[0]
    run_async(state_ops.import_and_commit(loc, target, id))
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
    rows = run_async(engine.search_offerings(loc, set(providers), request, available))
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
    report = run_async(engine.with_providers(loc, doc, lambda p: engine.cost_now(p, loc.config, doc)))
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    loc.session.console().print(cost_table(report))


cli.add_command(state)
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
