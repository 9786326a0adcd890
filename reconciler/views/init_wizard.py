"""`reconciler init` on a terminal: pick the providers and a GPU from the live offerings.

Off a terminal (or with any choice given as a flag) nothing is asked: the flags and their
defaults decide. The questions go through `ask`/`confirm` (click's prompts) so tests can
answer them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from reconciler.model import Offering
from reconciler.starter import StarterChoices, gpu_choices, next_commands, write_starter

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
