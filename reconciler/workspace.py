"""The workspace a command runs in: one configuration, its state backend and its sandbox.

The common flags (-f, --state, --var, --var-file, --backend-config, --lock-timeout,
--allow-foreign-state) name a workspace; every command reads its configuration and state
through one, so each is loaded, checked and locked the same way. Backend settings are
checked once each: the configuration's `backend:` block when it is loaded (with its file
and line), the `--backend-config` overrides here.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from reconciler.config import Config, load_config
from reconciler.errors import ConfigError, ReconcilerError, StateError
from reconciler.identity import (
    STATE_DIR,
    ConfigIdentity,
    describe_identity,
    describe_recorded,
    is_postgres_url,
    locate_local_state,
    suggested_config_name,
)
from reconciler.redaction import Scrubber
from reconciler.state.backend import StateBackend
from reconciler.state.ledger import commit_next
from reconciler.state.local import LocalStateBackend
from reconciler.state.model import StateDocument
from reconciler.state.validation import DamagedStateError, repairable_by_removal

BACKEND_CONFIG_KEYS = ("type", "path", "url", "schema", "stack")
BACKEND_TYPE_KEYS = {"local": ("path",), "postgres": ("url", "schema", "stack")}
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,40}")


def _ignore(text: str) -> None:
    return None


class Workspace:
    """Where the configuration and its state are, as the common flags say.

    `scrubber` learns every secret the configuration holds as soon as it is loaded (so no
    output shows one); `notify` tells the user what they should know but need not act on.
    """

    def __init__(
        self,
        path: Path,
        state_path: Path | None = None,
        cli_vars: Mapping[str, str] | None = None,
        var_files: tuple[Path, ...] = (),
        backend_config: Mapping[str, str] | None = None,
        lock_timeout: float = 0.0,
        allow_foreign_state: bool = False,
        *,
        scrubber: Scrubber | None = None,
        notify: Callable[[str], None] = _ignore,
    ) -> None:
        self.path = path
        self.state_path = state_path
        self.cli_vars = dict(cli_vars or {})
        self.var_files = var_files
        self.backend_config = dict(backend_config or {})
        self.lock_timeout = lock_timeout
        self.allow_foreign_state = allow_foreign_state
        self.scrubber = scrubber if scrubber is not None else Scrubber()
        self.notify = notify
        self._config: Config | None = None
        self._backend: StateBackend | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = load_config(self.path, cli_vars=self.cli_vars, var_files=self.var_files)
            except ConfigError as exc:
                self.scrubber.add(*exc.secrets)
                raise
            self.scrubber.add(*self._config.secrets)
        return self._config

    def has_config(self) -> bool:
        """False for a directory without any YAML file (a command that can run without one)."""
        return not (self.path.is_dir() and not any(p.suffix in (".yaml", ".yml") for p in self.path.iterdir()))

    @property
    def backend(self) -> StateBackend:
        if self._backend is None:
            self._backend, note = choose_backend(self.config, self.state_path, self.backend_config)
            if note:
                self.notify(note)
        return self._backend

    @property
    def sandbox(self) -> Path:
        return sandbox_path_for(self.config, self.backend)

    def read_state(self) -> StateDocument:
        """The stored state (a fresh one if none), refused if another configuration wrote it."""
        return check_state_identity(self.config, self.backend, self.backend.read(), self.allow_foreign_state)

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

    @contextlib.contextmanager
    def locked(self, operation: str) -> Iterator[None]:
        """Hold the state lock; say so when the previous holder died without releasing it."""
        with self.backend.lock(operation, self.lock_timeout):
            stale = getattr(self.backend, "stale_lock", None)
            if stale is not None:
                self.notify(
                    f"a previous run died holding the state lock ({stale.describe()}); "
                    "the lock was released with it. Pending operations it left are settled now."
                )
            yield

    def commit(self, new: StateDocument, base: StateDocument) -> StateDocument:
        """Store `new` as the version after `base` (the commit path every state change takes)."""
        return commit_next(self.backend, new, base)


def open_backend(
    config: Config, state_path: Path | None = None, overrides: Mapping[str, str] | None = None
) -> StateBackend:
    """The state backend the configuration names, with --state / --backend-config applied."""
    return choose_backend(config, state_path, overrides)[0]


def _check_overrides(overrides: Mapping[str, str], backend_type: str) -> None:
    """--backend-config names only settings the chosen backend reads (one dropped without a
    word would keep state somewhere the user did not mean)."""
    for key in overrides:
        if key not in BACKEND_CONFIG_KEYS:
            # Echo a mistyped name, never a bare connection URL (and its password) given without `url=`.
            if _SETTING_NAME.fullmatch(key):
                raise ReconcilerError(
                    f"--backend-config {key}: unknown setting", hint=f"known: {', '.join(BACKEND_CONFIG_KEYS)}"
                )
            raise ReconcilerError(
                "--backend-config: unknown setting (not shown: it may hold a password)",
                hint=f"write KEY=VALUE, for example url=postgresql://...; known: {', '.join(BACKEND_CONFIG_KEYS)}",
            )
    for key in overrides:
        if key != "type" and key not in BACKEND_TYPE_KEYS.get(backend_type, (key,)):
            raise ReconcilerError(
                f"--backend-config {key}: not a setting of the {backend_type} backend",
                hint="add --backend-config type=postgres"
                if backend_type == "local"
                else "the postgres backend takes url, schema and stack",
            )


def choose_backend(
    config: Config, state_path: Path | None = None, overrides: Mapping[str, str] | None = None
) -> tuple[StateBackend, str | None]:
    """The state backend, and a note for the user when the state was found under an older name.

    The configuration's block was checked when it was loaded; what the overrides change is
    checked here, once.
    """
    settings: dict[str, str | None] = {
        "type": "local",
        "path": None,
        "url": None,
        "schema": "reconciler",
        "stack": None,
        **({k: getattr(config.backend, k) for k in BACKEND_CONFIG_KEYS} if config.backend else {}),
    }
    overrides = overrides or {}
    unknown = [key for key in overrides if key not in BACKEND_CONFIG_KEYS]
    settings.update({k: v for k, v in overrides.items() if k not in unknown})
    _check_overrides(overrides, str(settings["type"]))
    if state_path is not None:
        return LocalStateBackend(state_path.resolve()), None
    if settings["type"] == "local":
        if not settings["path"]:
            location = locate_local_state(_identity(config), config.root)
            return LocalStateBackend(location.path), location.note
        path = Path(str(settings["path"])).expanduser()
        return LocalStateBackend((config.root / path).resolve()), None
    if settings["type"] != "postgres":
        raise ReconcilerError(f"backend type {settings['type']!r} is not known", hint="use local or postgres")
    from reconciler.state.postgres import PostgresStateBackend

    if "url" in overrides and overrides["url"] and not is_postgres_url(overrides["url"]):
        # The text is not echoed: a mistyped URL may still hold a password.
        raise StateError("the postgres backend url must start with postgresql:// (or postgres://)")
    if not settings["url"]:
        raise StateError(
            "backend type postgres needs a url",
            hint="set backend.url (e.g. ${env:RECONCILER_PG_URL}) or pass --backend-config url=...",
        )
    stack = str(settings["stack"] or default_stack(config))
    return PostgresStateBackend(str(settings["url"]), stack=stack, schema=str(settings["schema"])), None


def _identity(config: Config) -> ConfigIdentity:
    return config.identity or ConfigIdentity(config.name, "name", config.root.is_dir(), config.name)


def default_stack(config: Config) -> str:
    """The PostgreSQL stack of a configuration that names none: its `name:` or its file's stem.

    A folder's name is no stable key for a shared database (a rename would start an empty
    stack, and every repository has an `infra/`), so a directory must declare its name.
    """
    identity = _identity(config)
    if identity.source == "directory":
        first = config.files[0] if config.files else config.root
        raise StateError(
            f"the postgres backend needs a stack name for the configuration directory {config.root}: "
            "its folder's name is no stable key (renaming the folder would start an empty stack)",
            hint=f"add `name: {suggested_config_name(identity.name)}` at the top of {first} (older versions "
            f"used the folder's name, {identity.name!r}, as the stack), or set backend.stack; nothing was changed",
        )
    return identity.name


def check_state_identity(
    config: Config, backend: StateBackend, doc: StateDocument, allow_foreign: bool = False
) -> StateDocument:
    """Refuse a state another configuration wrote (unless allowed); record this one's identity in it.

    The record is what later runs check; old states without one are read as they are.
    """
    identity = _identity(config)
    own_dir = isinstance(backend, LocalStateBackend) and backend.path.parent == config.root / STATE_DIR
    if not allow_foreign and not identity.accepts(doc.configuration, own_dir):
        raise StateError(
            f"{backend.description} is the state of {describe_recorded(doc.configuration)}, "
            f"not of this one ({describe_identity(identity)})",
            hint="point --state (or the backend) at this configuration's own state; pass "
            "--allow-foreign-state only to take that state over: plan and apply would then delete "
            "what it tracks that this configuration does not declare. Nothing was changed",
        )
    doc.configuration = identity.record()
    return doc


def sandbox_path_for(config: Config, backend: StateBackend) -> Path:
    """The embedded emulator's world lives beside the state so separate runs share one cloud."""
    if isinstance(backend, LocalStateBackend):
        return backend.path.with_name(backend.path.name.removesuffix(".json") + ".sandbox.json")
    stack = getattr(backend, "stack", None) or config.name
    return config.root / STATE_DIR / f"{stack}.sandbox.json"
