"""Warnings for files that hold secrets but any user of the machine may read.

A configuration may hold an API key literally, read one through `${file:...}` or a var file,
or point at an SSH private key. None of that is an error (the run goes on), but a file with
mode o+r shares the secret with every account on the host, so it is worth a warning.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from reconciler.config.diagnostics import ConfigWarning
from reconciler.config.yaml_source import YamlDocument
from reconciler.errors import SourceMark
from reconciler.model import Address

_SHORTEST_SECRET = 4  # shorter sensitive values would match by chance


def world_readable(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & stat.S_IROTH)
    except OSError:
        return False


def _first_line_with(text: str, secrets: Iterable[str]) -> tuple[int, int] | None:
    for number, line in enumerate(text.splitlines(), start=1):
        for secret in secrets:
            column = line.find(secret)
            if column >= 0:
                return number, column + 1
    return None


def exposed_secret_warnings(
    documents: Iterable[YamlDocument],
    private_keys: Mapping[Address, str],
    secrets: Iterable[str],
    read_files: Iterable[Path] = (),
) -> list[ConfigWarning]:
    """One warning per world-readable file that holds a secret; the secret itself is never named."""
    wanted = sorted({s for s in secrets if len(s) >= _SHORTEST_SECRET}, key=len, reverse=True)
    warnings: list[ConfigWarning] = []
    seen: set[Path] = set()
    for path in [*(document.path for document in documents), *read_files]:
        if path in seen or not wanted or not world_readable(path):
            continue
        seen.add(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        found = _first_line_with(text, wanted)
        if found is None:
            continue
        warnings.append(
            ConfigWarning(
                f"{path.name} holds a secret and every user of this machine can read it",
                SourceMark(str(path), *found),
                hint=f"chmod 600 {path}, or take the value from the environment (${{env:NAME}})",
            )
        )
    for address, key_path in sorted(private_keys.items(), key=lambda item: str(item[0])):
        path = Path(key_path)
        if path in seen or not world_readable(path):
            continue
        seen.add(path)
        warnings.append(
            ConfigWarning(
                f"the private key of {address} ({path}) can be read by every user of this machine "
                "(ssh refuses such a key)",
                hint=f"chmod 600 {path}",
            )
        )
    return warnings
