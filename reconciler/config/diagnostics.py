"""Turning problems into ConfigErrors that name the file, line, column and field path.

Validation code below the loader raises FieldIssue with a path relative to the value it
checks; an Origin (document + where that value sits in it) turns it into a ConfigError.
Pydantic errors are mapped to FieldIssues here, with did-you-mean hints for unknown keys.
A ProblemCollector gathers every ConfigError of one load, so all of them are reported at
once, sorted by file and line; ConfigWarnings are problems that do not stop anything.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from reconciler.config.yaml_source import FieldPath, YamlDocument
from reconciler.errors import ConfigError, FieldIssue, SourceMark
from reconciler.suggestions import did_you_mean

_QUOTED = re.compile(r"'([^']*)'")


def format_field_path(path: FieldPath) -> str:
    """`("instances", 2, "launch", "image")` -> `instances[2].launch.image`."""
    text = ""
    for element in path:
        if isinstance(element, int):
            text += f"[{element}]"
        else:
            text += f".{element}" if text else str(element)
    return text


@dataclass(frozen=True)
class Origin:
    """Where a value sits: a document and the path to the value inside it."""

    document: YamlDocument
    path: tuple[str | int, ...]

    def mark(self, relative: FieldPath = (), at_key: bool = False) -> SourceMark:
        return self.document.mark((*self.path, *relative), at_key=at_key)

    def field(self, relative: FieldPath = ()) -> str:
        return format_field_path((*self.path, *relative))

    def error(self, issue: FieldIssue, error_type: type[ConfigError] = ConfigError) -> ConfigError:
        return error_type(
            issue.message,
            self.mark(issue.path, at_key=issue.at_key),
            self.field(issue.path) or None,
            issue.hint,
        )

    def errors(self, issues: Sequence[FieldIssue]) -> ConfigError:
        """One ConfigError for one issue, ConfigErrors for several."""
        found = [self.error(issue) for issue in issues]
        return found[0] if len(found) == 1 else ConfigErrors(found)

    def fail(self, relative: FieldPath, message: str, hint: str | None = None) -> ConfigError:
        return self.error(FieldIssue(relative, message, hint))


def issue_from_validation_error(
    exc: ValidationError,
    data: Any,
    model: type[BaseModel],
    foreign_fields: Mapping[str, str] | None = None,
) -> FieldIssue:
    """The first pydantic error as a FieldIssue whose path exists in `data` (the validated input).

    `foreign_fields` maps a top-level key that another variant supports to that variant's
    name, so `tags` on a Forward instance says it is a Shadeform field instead of "unknown".
    """
    return issues_from_validation_error(exc, data, model, foreign_fields)[0]


def issues_from_validation_error(
    exc: ValidationError,
    data: Any,
    model: type[BaseModel],
    foreign_fields: Mapping[str, str] | None = None,
) -> list[FieldIssue]:
    """Every pydantic error worth reporting, the most telling first, one per place.

    An unknown key usually explains the other errors (a typo'd required field is also
    missing), so when there are unknown keys, "missing" errors are left out.
    """
    errors = exc.errors(include_url=False)
    unknown = [error for error in errors if error["type"] == "extra_forbidden"]
    if unknown:
        ordered = unknown + [e for e in errors if e["type"] not in ("extra_forbidden", "missing")]
    else:
        ordered = list(errors)
    issues: list[FieldIssue] = []
    seen: set[tuple[str | int, ...]] = set()
    for error in ordered:
        issue = _issue_from_error(error, data, model, foreign_fields)
        if issue.path not in seen:
            seen.add(issue.path)
            issues.append(issue)
    return issues


def _issue_from_error(
    first: ErrorDetails, data: Any, model: type[BaseModel], foreign_fields: Mapping[str, str] | None
) -> FieldIssue:
    loc = tuple(first["loc"])
    path = _data_path(data, loc)
    kind = first["type"]
    ctx = first.get("ctx") or {}
    if kind == "extra_forbidden":
        key = loc[-1]
        owner = (foreign_fields or {}).get(str(key)) if len(loc) == 1 else None
        if owner is not None:
            return FieldIssue(
                path,
                f"{key!r} is not supported by this provider (it is a {owner} field)",
                hint=f"remove {key!r}, or use provider: {owner}",
                at_key=True,
            )
        allowed = _allowed_keys(model, loc[:-1])
        hint = did_you_mean(key, allowed)
        if hint is None and allowed:
            hint = "allowed keys: " + ", ".join(sorted(allowed))
        return FieldIssue(path, f"unknown key {key!r}", hint, at_key=True)
    if kind == "missing":
        return FieldIssue((*path, loc[-1]), f"missing required field {loc[-1]!r}")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        discriminator = str(ctx.get("discriminator", "")).strip("'")
        if kind == "union_tag_not_found":
            return FieldIssue((*path, discriminator), f"missing required field {discriminator!r}")
        expected = _QUOTED.findall(str(ctx.get("expected_tags", "")))
        tag = ctx.get("tag")
        return FieldIssue(
            (*path, discriminator),
            f"{tag!r} is not a valid {discriminator} (expected {', '.join(expected)})",
            did_you_mean(tag, expected),
        )
    if kind == "literal_error":
        expected = _QUOTED.findall(str(ctx.get("expected", "")))
        return FieldIssue(path, _message(first), did_you_mean(first.get("input"), expected))
    return FieldIssue(path, _message(first), ctx.get("hint"))


def _message(error: ErrorDetails) -> str:
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _data_path(data: Any, loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """The part of a pydantic location that exists in the data (drops union tags like 'docker')."""
    path: list[str | int] = []
    current = data
    for element in loc:
        if isinstance(current, dict) and element in current:
            path.append(element)
            current = current[element]
        elif isinstance(current, list) and isinstance(element, int) and 0 <= element < len(current):
            path.append(element)
            current = current[element]
    return tuple(path)


def _allowed_keys(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    current: Any = model
    for element in loc:
        current = _step(current, element)
        if current is None:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [field.alias or name for name, field in current.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
            continue
        if origin in (Union, types.UnionType):
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation


def _step(annotation: Any, element: str | int) -> Any:
    annotation = _unwrap(annotation)
    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, field in annotation.model_fields.items():
            if element in (name, field.alias):
                return field.annotation
        return None
    if origin in (Union, types.UnionType):
        for member in get_args(annotation):
            candidate = _unwrap(member)
            if _is_variant(candidate, element):
                return candidate
        return None
    if origin is list:
        return get_args(annotation)[0] if isinstance(element, int) else None
    if origin is dict:
        return get_args(annotation)[1]
    return None


def _is_variant(candidate: Any, tag: str | int) -> bool:
    """Whether a union member is the one pydantic names `tag` (class name or discriminator value)."""
    if getattr(candidate, "__name__", None) == tag:
        return True
    if isinstance(candidate, type) and issubclass(candidate, BaseModel):
        for field in candidate.model_fields.values():
            if get_origin(field.annotation) is Literal and tag in get_args(field.annotation):
                return True
    return False


def hint_for_names(word: str, candidates: Sequence[str], what: str) -> str:
    """A did-you-mean when one is close, else the list of what exists (or that nothing does)."""
    close = did_you_mean(word, candidates)
    if close:
        return close
    if not candidates:
        return f"no {what} are declared"
    shown = sorted(candidates)[:10]
    more = f" (and {len(candidates) - 10} more)" if len(candidates) > 10 else ""
    return f"declared {what}: {', '.join(shown)}{more}"


MAX_REPORTED_ERRORS = 50  # enough for any real mistake; a broken generator should not flood the terminal


class ConfigErrors(ConfigError):
    """Several configuration errors found in one run. It reads as the first one (file, line,
    message, hint), so whoever handles a single ConfigError still handles it; `errors`
    holds them all, sorted by file and line, and `omitted` counts those past the limit."""

    def __init__(self, errors: Sequence[ConfigError], omitted: int = 0) -> None:
        first = errors[0]
        super().__init__(first.summary, first.mark, first.field, first.hint)
        self.errors = tuple(errors)
        self.omitted = omitted


def _sort_key(error: ConfigError) -> tuple[int, str, int, int]:
    mark = error.mark
    if mark is None:
        return (1, "", 0, 0)
    return (0, mark.file, mark.line, mark.column)


class DependentProblem(ConfigError):
    """A problem that only follows from one already reported (a reference to an entry that
    failed to load); the collector drops it rather than report a confusing second error."""

    def __init__(self) -> None:
        super().__init__("follows from an error reported already")


class TooManyProblems(Exception):
    """The collector reached its limit; loading stops and reports what it has."""


class ProblemCollector:
    """Gathers the ConfigErrors of one load: `with collector.attempt(): ...` records an error
    and carries on after the block, so independent parts of a configuration are all checked."""

    def __init__(self, limit: int = MAX_REPORTED_ERRORS) -> None:
        self.limit = limit
        self.errors: list[ConfigError] = []

    @contextmanager
    def attempt(self) -> Iterator[None]:
        try:
            yield
        except DependentProblem:
            pass
        except ConfigErrors as many:
            for error in many.errors:
                self.add(error)
        except ConfigError as error:
            self.add(error)

    def add(self, error: ConfigError) -> None:
        if any(_same(error, seen) for seen in self.errors):
            return
        self.errors.append(error)
        if len(self.errors) >= self.limit:
            raise TooManyProblems

    def failed(self) -> bool:
        return bool(self.errors)

    def result(self, stopped_early: bool = False) -> ConfigError:
        """One error as it is (its own type, e.g. GraphCycleError), several as ConfigErrors."""
        ordered = sorted(self.errors, key=_sort_key)
        if len(ordered) == 1 and not stopped_early:
            return ordered[0]
        return ConfigErrors(ordered, omitted=1 if stopped_early else 0)


def _same(a: ConfigError, b: ConfigError) -> bool:
    return (a.mark, a.field, a.summary) == (b.mark, b.field, b.summary)


@dataclass(frozen=True)
class ConfigWarning:
    """Something worth fixing that does not stop the run (and never changes the exit code)."""

    message: str
    mark: SourceMark | None = None
    field: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.mark}: " if self.mark else ""
        what = f"{self.field}: " if self.field else ""
        text = f"{where}{what}{self.message}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text
