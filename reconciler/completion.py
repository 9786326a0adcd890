"""Shell completion (click's, for bash, zsh and fish): commands and flags come from click;
resource addresses come from the configuration and its state, read without any API call.

Completion runs on every Tab, so it must be quick and silent: it reads only a local state
file and gives up quietly on anything it cannot read.
"""

from __future__ import annotations

from pathlib import Path

import click
from click.shell_completion import CompletionItem, get_completion_class

from reconciler.config import load_config
from reconciler.model import Address

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_RECONCILER_COMPLETE"


def known_addresses(path: Path, state_path: Path | None) -> list[str]:
    """Addresses the configuration declares and the local state holds, sorted as plans list them."""
    from reconciler import workspace

    try:
        config = load_config(path)
    except Exception:  # noqa: BLE001 - a broken configuration completes nothing, quietly
        return []
    found = {str(address) for address in config.resources}
    if config.backend is None or config.backend.type == "local":
        try:
            backend, _ = workspace.choose_backend(config, state_path)
            if backend.exists():
                found |= set(backend.read().resources)
        except Exception:  # noqa: BLE001 - an unreadable state completes from the configuration only
            pass
    return sorted(found, key=lambda text: Address.parse(text).sort_key())


def complete_addresses(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Resource addresses for ADDRESS arguments and --target/--replace."""
    path = ctx.params.get("path") or Path(".")
    state_path = ctx.params.get("state_path")
    return [
        CompletionItem(address)
        for address in known_addresses(Path(path), state_path)
        if address.startswith(incomplete)
    ]


def completion_script(cli: click.Command, shell: str, prog_name: str = "reconciler") -> str:
    """The script that `eval`/`source` installs in `shell` (click's own)."""
    cls = get_completion_class(shell)
    if cls is None:
        raise click.BadParameter(f"no completion for {shell!r} (one of {', '.join(SHELLS)})")
    return cls(cli, {}, prog_name, COMPLETE_VAR).source()


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion_command(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script (eval it in bash/zsh, source it in fish)."""
    click.echo(completion_script(ctx.find_root().command, shell))
