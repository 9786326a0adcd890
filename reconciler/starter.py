"""`reconciler init`: a starter configuration a new user can plan and apply at once.

It declares the chosen providers (the built-in emulator unless asked for the real API), one
SSH key found in ~/.ssh, and one instance by requirements; it writes a .gitignore for the
state directory and the JSON Schema that the YAML's yaml-language-server modeline points
at, so editors complete and check keys. It never overwrites a file without `force`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.config.schema import config_json_schema
from reconciler.errors import ReconcilerError
from reconciler.model import Offering

CONFIG_FILE = "main.yaml"
SCHEMA_FILE = "reconciler.schema.json"
GITIGNORE_ENTRIES = ("state/",)
_PREFERRED_KEYS = ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub")
MODELINE = f"# yaml-language-server: $schema=./{SCHEMA_FILE}"


@dataclass(frozen=True)
class StarterChoices:
    """What the starter configuration declares."""

    providers: tuple[str, ...] = ("shadeform",)
    gpu_type: str = "A6000"
    num_gpus: int = 1
    max_hourly_price: float | None = None
    real_api: bool = False  # False: endpoint: embedded (the built-in emulator, no key needed)
    public_key: Path | None = None
    instance_name: str = "gpu"


@dataclass(frozen=True)
class GpuChoice:
    """One GPU type and count on offer, with its cheapest price."""

    provider: str
    gpu_type: str
    num_gpus: int
    hourly_price: float

    def describe(self) -> str:
        return f"{self.num_gpus}x {self.gpu_type} on {self.provider}, from ${self.hourly_price:,.2f}/h"


def find_public_key(home: Path) -> Path | None:
    """The user's SSH public key: id_ed25519.pub first, then ecdsa, rsa, then any other *.pub."""
    ssh = home / ".ssh"
    if not ssh.is_dir():
        return None
    for name in _PREFERRED_KEYS:
        if (ssh / name).is_file():
            return ssh / name
    others = sorted(path for path in ssh.glob("*.pub") if path.is_file())
    return others[0] if others else None


def gpu_choices(offerings: Sequence[Offering], limit: int = 12) -> list[GpuChoice]:
    """The cheapest available offering of each (provider, GPU type, count), cheapest first."""
    best: dict[tuple[str, str, int], float] = {}
    for o in offerings:
        if not o.available:
            continue
        key = (o.provider, o.gpu_type, o.num_gpus)
        best[key] = min(best.get(key, o.hourly_price), o.hourly_price)
    ranked = sorted(best.items(), key=lambda item: (item[1], item[0]))
    return [GpuChoice(p, gpu, n, price) for (p, gpu, n), price in ranked[:limit]]


def _home_relative(path: Path, home: Path) -> str:
    try:
        return "~/" + str(path.relative_to(home))
    except ValueError:
        return str(path)


def starter_config(choices: StarterChoices, home: Path) -> str:
    """The YAML text of the starter configuration."""
    lines = [
        MODELINE,
        "# Starter configuration written by `reconciler init`. Check it with `reconciler validate`,",
        "# see what it would do with `reconciler plan`, make it so with `reconciler apply`.",
        "",
        "providers:",
    ]
    for provider in choices.providers:
        variable = f"{provider.upper()}_API_KEY"
        lines.append(f"  {provider}:")
        if choices.real_api:
            lines.append(f"    api_key: ${{env:{variable}}}")
        else:
            lines += [
                "    # The built-in emulator: no account, no cost. For the real API, remove this",
                f"    # line and export {variable}.",
                "    endpoint: embedded",
            ]
    provider = choices.providers[0]
    if choices.public_key is not None:
        private = choices.public_key.with_suffix("")
        lines += [
            "",
            "ssh_keys:",
            "  - name: me",
            f"    provider: {provider}",
            f"    public_key: ${{file:{_home_relative(choices.public_key, home)}}}",
        ]
        if private.is_file():
            lines.append(f"    private_key_file: {_home_relative(private, home)}")
    lines += [
        "",
        "instances:",
        f"  - name: {choices.instance_name}",
        f"    provider: {provider}",
        "    # Requirements: the plan picks the cheapest available match and pins it.",
        "    offering:",
        f"      gpu_type: {choices.gpu_type}",
        f"      num_gpus: {choices.num_gpus}",
    ]
    if choices.max_hourly_price is not None:
        lines.append(f"      max_hourly_price: {choices.max_hourly_price:g}")
    if choices.public_key is not None:
        lines.append("    ssh_key: me")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class StarterFiles:
    written: tuple[Path, ...]
    gitignore: Path


def write_starter(directory: Path, choices: StarterChoices, home: Path, force: bool = False) -> StarterFiles:
    """Write main.yaml and the schema into `directory`, and add the state to its .gitignore.

    Refuses, writing nothing, when main.yaml or the schema exists and `force` is not given.
    """
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        directory / CONFIG_FILE: starter_config(choices, home),
        directory / SCHEMA_FILE: json.dumps(config_json_schema(), indent=2) + "\n",
    }
    existing = [path for path in files if path.exists()]
    if existing and not force:
        names = ", ".join(path.name for path in existing)
        raise ReconcilerError(
            f"{directory}: {names} already exist{'s' if len(existing) == 1 else ''}; nothing was written",
            hint="pass --force to overwrite, or choose another directory",
        )
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    gitignore = directory / ".gitignore"
    present = gitignore.read_text(encoding="utf-8").splitlines() if gitignore.exists() else []
    missing = [entry for entry in GITIGNORE_ENTRIES if entry not in present]
    if missing:
        text = gitignore.read_text(encoding="utf-8") if gitignore.exists() else ""
        if text and not text.endswith("\n"):
            text += "\n"
        header = "# reconciler: state files (they hold the ids of what runs)\n"
        gitignore.write_text(text + header + "\n".join(missing) + "\n", encoding="utf-8")
    return StarterFiles(tuple(files), gitignore)


def next_commands(directory: Path, cwd: Path) -> list[str]:
    """The two commands to run next, from where the user is."""
    try:
        relative = directory.resolve().relative_to(cwd.resolve())
    except ValueError:
        relative = directory
    where = "" if str(relative) in ("", ".") else f" -f {relative}"
    return [f"reconciler plan{where}", f"reconciler apply{where}"]
