"""`reconciler init` on a terminal: pick the providers and a GPU from the live offerings.

Off a terminal (or with any choice given as a flag) nothing is asked: the flags and their
defaults decide. The questions go through `ask`/`confirm` (click's prompts) so tests can
answer them.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from reconciler.model import Offering
from reconciler.providers.registry import BUILTIN_PROVIDER_NAMES as KNOWN_PROVIDERS
from reconciler.starter import StarterChoices, find_public_key, gpu_choices, next_commands, write_starter

PROVIDER_ANSWERS = {"shadeform": ("shadeform",), "forward": ("forward",), "both": ("shadeform", "forward")}


def ask_choices(
    console: Console,
    defaults: StarterChoices,
    offerings_for: Callable[[tuple[str, ...]], Sequence[Offering]],
    ask: Callable[..., Any] = click.prompt,
    confirm: Callable[..., bool] = click.confirm,
) -> StarterChoices:
    """Ask for providers, GPU, price cap and endpoint; the defaults are the non-interactive ones."""
    answer = ask(
        "Providers", type=click.Choice(list(PROVIDER_ANSWERS)), default="both" if len(defaults.providers) > 1
        else defaults.providers[0],
    )
    providers = PROVIDER_ANSWERS[answer]
    console.print("Looking up what is on offer...", markup=False)
    options = gpu_choices(offerings_for(providers))
    choices = replace(defaults, providers=providers)
    if options:
        console.print("Cheapest available GPUs:", markup=False)
        for number, option in enumerate(options, start=1):
            console.print(f"  {number:>2}. {option.describe()}", markup=False)
        picked = options[ask("GPU", type=click.IntRange(1, len(options)), default=1) - 1]
        # The chosen offering's provider goes first: it is the one the instance uses.
        ordered = (picked.provider, *(p for p in providers if p != picked.provider))
        suggested = round(picked.hourly_price * 1.25 + 0.005, 2)
        cap = ask("Highest $/h you accept for it", type=float, default=suggested)
        choices = replace(
            choices, providers=ordered, gpu_type=picked.gpu_type, num_gpus=picked.num_gpus, max_hourly_price=cap
        )
    else:
        console.print("No offering is available right now; keeping the defaults.", markup=False)
    real = confirm("Use the real APIs (needs an API key in the environment)?", default=defaults.real_api)
    return replace(choices, real_api=real)


def run_init(
    console: Console,
    directory: Path,
    choices: StarterChoices,
    *,
    interactive: bool,
    force: bool,
    home: Path,
    offerings_for: Callable[[tuple[str, ...]], Sequence[Offering]],
) -> None:
    if interactive:
        choices = ask_choices(console, choices, offerings_for)
    files = write_starter(directory, choices, home, force=force)
    for path in files.written:
        console.print(f"Wrote {path}", markup=False)
    console.print(f"Updated {files.gitignore} (state stays out of git)", markup=False)
    if choices.public_key is None:
        console.print("No SSH public key found in ~/.ssh; add one under ssh_keys: to log in.", markup=False)
    first, second = next_commands(directory, Path.cwd())
    console.print(f"\nNext:\n  {first}\n  {second}", markup=False)


def _live_offerings(providers: tuple[str, ...]) -> list[Offering]:
    """Both providers' catalogues with their default settings (the emulator unless a key is set)."""
    from reconciler import engine

    return asyncio.run(engine.list_offerings(None, None, set(providers)))


@click.command("init")
@click.argument("directory", required=False, type=click.Path(path_type=Path, file_okay=False), default=Path("."))
@click.option("--provider", "providers", multiple=True, type=click.Choice(list(KNOWN_PROVIDERS)),
              help="Provider to declare (repeatable; the first one runs the instance). Default: shadeform.")
@click.option("--gpu", "gpu_type", default=None, help="GPU type of the instance, e.g. H100 (default: A6000).")
@click.option("--num-gpus", type=click.IntRange(1, 64), default=None, help="GPUs of the instance (default: 1).")
@click.option("--max-price", type=float, default=None, help="Highest $/h for the instance.")
@click.option("--real-api", is_flag=True, help="Use the providers' APIs (API keys from the environment) "
              "instead of the built-in emulator.")
@click.option("--ssh-key", "ssh_key", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="SSH public key to declare (default: the first of ~/.ssh/*.pub).")
@click.option("--no-ssh-key", is_flag=True, help="Declare no SSH key.")
@click.option("--interactive/--no-interactive", default=None,
              help="Ask on a terminal (the default there, unless choices are given as flags).")
@click.option("--force", is_flag=True, help="Overwrite main.yaml and the schema file if they exist.")
@click.pass_obj
def init_command(session: Any, directory: Path, providers: tuple[str, ...], gpu_type: str | None, num_gpus: int | None,
         max_price: float | None, real_api: bool, ssh_key: Path | None, no_ssh_key: bool,
         interactive: bool | None, force: bool) -> None:
    """Write a starter configuration (and a .gitignore for its state) into DIRECTORY."""
    home = Path.home()
    choices = StarterChoices(
        providers=providers or ("shadeform",), gpu_type=gpu_type or "A6000", num_gpus=num_gpus or 1,
        max_hourly_price=max_price, real_api=real_api,
        public_key=None if no_ssh_key else (ssh_key or find_public_key(home)))
    flagged = bool(providers or gpu_type or num_gpus or max_price is not None)
    ask = interactive if interactive is not None else (sys.stdin.isatty() and sys.stdout.isatty() and not flagged)
    run_init(session.console(), directory, choices, interactive=ask, force=force, home=home,
             offerings_for=_live_offerings)


