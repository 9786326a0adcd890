"""One configuration, one state: a configuration's identity and where its state is found.

A configuration is named by its top-level `name:`; without one, a single file is named by
its stem and a directory by its folder. The local state is `<config dir>/state/<name>.json`
and the default PostgreSQL stack is `<name>`, whatever the working directory or the
spelling of `-f`. The state records which configuration wrote it, so a state another
configuration wrote is recognised, and a directory's state is still found after its folder
was renamed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from reconciler.errors import StateError

CONFIG_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
CONFIG_NAME_RULE = "lowercase letters, digits, '-' and '_', starting with a letter or digit, at most 64"
_CONFIG_NAME = re.compile(CONFIG_NAME_PATTERN)
STATE_DIR = "state"
IdentitySource = Literal["name", "file", "directory"]


POSTGRES_URL_PREFIXES = ("postgresql://", "postgres://")


def is_postgres_url(url: str) -> bool:
    """Whether a backend url names PostgreSQL (the rule for `backend.url` and `--backend-config url=`)."""
    return url.startswith(POSTGRES_URL_PREFIXES)


def valid_config_name(text: str) -> bool:
    return bool(_CONFIG_NAME.match(text))


def suggested_config_name(text: str) -> str:
    """A valid name close to `text` (for hints), e.g. 'My Prod!' -> 'my-prod'."""
    cleaned = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")[:64]
    return cleaned or "my-config"


@dataclass(frozen=True)
class ConfigIdentity:
    """Which configuration this is: the name that keys its state, and where the name came from."""

    name: str
    source: IdentitySource  # `name:` declared, else the file's stem or the directory's folder name
    is_directory: bool
    derived: str  # the name it has without `name:` (what older versions named its state after)

    @classmethod
    def of(cls, path: Path, declared: str | None) -> ConfigIdentity:
        """The identity of the configuration at `path` (already resolved: absolute, no symlinks)."""
        is_directory = path.is_dir()
        derived = path.name if is_directory else path.stem
        if declared is not None:
            return cls(declared, "name", is_directory, derived)
        return cls(derived, "directory" if is_directory else "file", is_directory, derived)

    def record(self) -> dict[str, str]:
        """What a state document keeps of the configuration that writes it."""
        return {"name": self.name, "source": self.source}

    def accepts(self, recorded: Any, in_own_state_dir: bool) -> bool:
        """Whether a state recorded as written by `recorded` is this configuration's.

        States written before identities were recorded are accepted. A state written
        before this configuration declared its `name:` is its own. A directory's
        state inside its own folder is its own whatever the folder was called then.
        """
        if not isinstance(recorded, dict):
            return True
        name, source = recorded.get("name"), recorded.get("source")
        if source == "name":
            return self.source == "name" and name == self.name
        if source == "file":
            return not self.is_directory and name == self.derived
        if source == "directory":
            return self.is_directory and (name == self.derived or in_own_state_dir)
        return True


def describe_recorded(recorded: Any) -> str:
    if not isinstance(recorded, dict):
        return "an unknown configuration"
    name, source = recorded.get("name"), recorded.get("source")
    if source == "name":
        return f"the configuration named {name!r}"
    if source == "file":
        return f"the configuration file {name}.yaml (no name:)"
    return f"the configuration directory {name}/ (no name:)"


def describe_identity(identity: ConfigIdentity) -> str:
    return describe_recorded(identity.record())


@dataclass(frozen=True)
class StateLocation:
    """The local state file a configuration uses, and a note for the user when it was found
    under another name than its own."""

    path: Path
    note: str | None = None


def recorded_identity(path: Path) -> Any:
    """The `configuration` a state file records, read leniently (None when absent or unreadable)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return raw.get("configuration") if isinstance(raw, dict) else None


def locate_local_state(identity: ConfigIdentity, root: Path) -> StateLocation:
    """The default local state of a configuration whose directory is `root` (resolved).

    The state is `state/<name>.json`. When that does not exist yet, a state this same
    configuration wrote under another name is looked for, so that none is silently left
    behind: the state of a directory whose folder was renamed is used (with a note); a state
    from before `name:` was added, or one from before states recorded their configuration,
    stops the run with what to do.
    """
    state_dir = root / STATE_DIR
    default = state_dir / f"{identity.name}.json"
    if default.exists() or _backup(default).exists():
        return StateLocation(default)
    if identity.source == "name":
        _refuse_legacy_default(identity, state_dir, default)
        return StateLocation(default)
    if identity.source == "directory":
        return _renamed_directory_state(identity, root, default)
    return StateLocation(default)


def _backup(path: Path) -> Path:
    return path.with_name(path.name + ".backup")


def _state_files(state_dir: Path) -> list[Path]:
    if not state_dir.is_dir():
        return []
    return sorted(p for p in state_dir.glob("*.json") if not p.name.endswith(".sandbox.json") and p.is_file())


def _refuse_legacy_default(identity: ConfigIdentity, state_dir: Path, default: Path) -> None:
    """Stop a named configuration from starting empty beside its state from before its name."""
    candidates = [state_dir / f"{identity.derived}.json"]
    if identity.is_directory:
        candidates += [p for p in _state_files(state_dir) if _source_of(p) == "directory"]
    for legacy in dict.fromkeys(candidates):
        if legacy != default and legacy.exists() and _source_of(legacy) != "name":
            if identity.accepts(recorded_identity(legacy), in_own_state_dir=True):
                _refuse_unmoved(identity, legacy, default)


def _source_of(path: Path) -> Any:
    recorded = recorded_identity(path)
    return recorded.get("source") if isinstance(recorded, dict) else None


def _refuse_unmoved(identity: ConfigIdentity, legacy: Path, default: Path) -> None:
    state_dir = legacy.parent
    old_name = legacy.stem
    moves = " && ".join(
        f"mv {STATE_DIR}/{old.name} {STATE_DIR}/{identity.name}{old.name[len(old_name):]}"
        for old in (legacy, legacy.with_name(f"{old_name}.sandbox.json"), _backup(legacy))
        if old.exists()
    )
    raise StateError(
        f"this configuration's state is {legacy}, named after its "
        f"{'folder' if identity.is_directory else 'file'} before it declared `name: {identity.name}`; "
        f"{default} does not exist yet, and starting it empty would create everything again",
        hint=f"in {state_dir.parent}, move the state to its new name: {moves}; "
        f"or set `name: {old_name}` to keep the old one; nothing was changed",
    )


def _renamed_directory_state(identity: ConfigIdentity, root: Path, default: Path) -> StateLocation:
    """A directory without `name:` whose own state file is missing: was its folder renamed?"""
    yaml_stems = {p.stem for p in root.iterdir() if p.suffix in (".yaml", ".yml")}
    mine: list[Path] = []
    unknown: list[Path] = []
    for path in _state_files(default.parent):
        recorded = recorded_identity(path)
        if isinstance(recorded, dict) and recorded.get("source") == "directory":
            mine.append(path)
        elif recorded is None and path.stem not in yaml_stems:
            unknown.append(path)
    if len(mine) == 1:
        old = mine[0].stem
        return StateLocation(
            mine[0],
            note=f"using {mine[0]}, this directory's state from when its folder was named {old!r}; "
            f"add `name: {old}` to one of its YAML files so the state's name no longer follows the folder's",
        )
    if mine or unknown:
        found = mine or unknown
        names = ", ".join(str(p) for p in found)
        raise StateError(
            f"{default} does not exist, but {names} {'is' if len(found) == 1 else 'are'} in this "
            "configuration's state folder: if the folder was renamed, that is its state, "
            "and starting an empty one would create everything again",
            hint=f"add `name: {found[0].stem}` to one of its YAML files to keep using {found[0].name}, "
            f"or `name: {identity.name}` to start a new state; nothing was changed",
        )
    return StateLocation(default)
