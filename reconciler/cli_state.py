"""`reconciler state ...`: inspect and edit state without touching resources."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from reconciler import state_ops
from reconciler.cli_options import Location, location_options, parse_addresses, parse_pairs
from reconciler.completion import complete_addresses
from reconciler.errors import StateError
from reconciler.model import Address
from reconciler.views.tables import state_list_json


@click.group()
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
    entry = doc.resources.get(str(parse_addresses((address,), "ADDRESS")[0]))
    if entry is None:
        raise StateError(f"{address} is not in state", hint="`reconciler state list` shows what is")
    click.echo(json.dumps({"address": address, **entry.model_dump(mode="json")}, indent=2))


@state.command("rm")
@click.argument("addresses", nargs=-1, required=True, shell_complete=complete_addresses)
@location_options
def state_rm(loc: Location, addresses: tuple[str, ...]) -> None:
    """Forget resources without deleting them (they keep running and billing)."""
    loc.session.console().print(state_ops.remove_from_state(loc, addresses))


@state.command("mv")
@click.argument("source", shell_complete=complete_addresses)
@click.argument("destination")
@location_options
def state_mv(loc: Location, source: str, destination: str) -> None:
    """Rename a resource's address without replacing it."""
    old, new_address = parse_addresses((source, destination), "ADDRESS")
    loc.session.console().print(state_ops.move_in_state(loc, old, new_address))


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
    loc.session.console().print(state_ops.push_state(loc, file, force))


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
    doc, destination = state_ops.migrate_state(loc, {**parse_pairs(to_config, "--to-config"), "type": to_type})
    loc.session.console().print(
        f"Migrated {len(doc.resources)} resources (serial {doc.serial}) to {destination.description}.\n"
        "Point the configuration's backend at it, then `reconciler plan` should show no changes."
    )
