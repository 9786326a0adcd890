"""Error types. The CLI maps each to one clear line and an exit code."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class ReconcilerError(Exception):
    """Base of every error reconciler reports to a user (no traceback unless --debug)."""

    hint: str | None = None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


@dataclass(frozen=True)
class SourceMark:
    """Where something was written: file, 1-based line and column."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}"
        return self.file


class ConfigError(ReconcilerError):
    """The configuration is invalid; names the file, line and field.

    `secrets` are the sensitive values the configuration had given before the error, for
    whoever prints the message to scrub.
    """

    secrets: frozenset[str] = frozenset()

    def __init__(
        self,
        message: str,
        mark: SourceMark | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.mark = mark
        self.field = field
        self.summary = message  # the message alone, without where it is
        where = f"{mark}: " if mark else ""
        what = f"{field}: " if field else ""
        super().__init__(f"{where}{what}{message}", hint)


class GraphCycleError(ConfigError):
    """References form a cycle; the message gives the path."""


class StateError(ReconcilerError):
    """The state file or backend cannot be used as it is."""


class StateLockedError(StateError):
    """Another run holds the state lock."""

    def __init__(self, message: str, lock_id: str | None = None, hint: str | None = None) -> None:
        self.lock_id = lock_id
        super().__init__(message, hint)


class StateConflictError(StateError):
    """The state moved on (serial or lineage) since it was read or since the plan was made."""


class PlanError(ReconcilerError):
    """The plan cannot be made or applied (prevent_destroy, no offering, stale saved plan)."""


class ApplyError(ReconcilerError):
    """Apply finished with failed or not-started steps; state was saved."""


class ProviderError(ReconcilerError):
    """An API answered with an error (or not at all)."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int | None = None,
        error_type: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self.error_type = error_type
        self.retryable = retryable
        self.retry_after = retry_after
        code = f" {status}" if status is not None else ""
        kind = f" {error_type}" if error_type else ""
        super().__init__(f"{provider}:{code}{kind}: {message}".replace(":  ", ": "), hint)


class CreateOutcomeUnknown(ProviderError):
    """A create was sent and its answer lost: the object may exist. It is looked up by its
    ownership marker, never sent again blindly; an unsettled one is left for the next run."""

    ERROR_TYPE = "create_outcome_unknown"

    def __init__(self, message: str, *, provider: str, status: int | None = None, hint: str | None = None) -> None:
        super().__init__(
            message, provider=provider, status=status, error_type=self.ERROR_TYPE, retryable=False, hint=hint
        )


class NotFoundError(ProviderError):
    """The resource does not exist (404)."""


class CapacityError(ProviderError):
    """The requested instance type or offering has no capacity now."""


class AuthError(ProviderError):
    """The API key is missing or rejected (401/403)."""


class FieldIssue(Exception):
    """A problem with the value at `path` (relative to what was being checked).

    Raised below the loader, which knows where that value sits in a file and turns it into a
    ConfigError (see reconciler.config.diagnostics.Origin).
    """

    def __init__(
        self, path: Sequence[str | int], message: str, hint: str | None = None, at_key: bool = False
    ) -> None:
        super().__init__(message)
        self.path = tuple(path)
        self.message = message
        self.hint = hint
        self.at_key = at_key
