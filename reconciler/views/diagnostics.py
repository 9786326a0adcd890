"""Configuration errors and warnings for people (source line, caret, one-line fix) and for
editors and CI annotators (Terraform's `validate -json` shape).

A source line may hold a secret (an API key written in the file), so the value of a key
that names one is shown as `(sensitive)`; everything printed also passes the CLI's scrubber.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.text import Text

from reconciler.config.diagnostics import ConfigErrors, ConfigWarning
from reconciler.errors import ConfigError, SourceMark

Severity = Literal["error", "warning"]

_TOKEN = re.compile(r"""("(?:[^"\\]|\\.)*"|'[^']*'|\$\{[^}]*\}|[^\s:,\]\}#]+(?::[^\s,\]\}#]+)*)""")
# `api_key: VALUE`, `{password: VALUE, ...}`: a key naming a secret, then a literal value
# (an interpolation such as ${env:KEY} names where the secret is, so it is shown).
_SECRET_VALUE = re.compile(
    r"""((?:^|[\s{,])["']?(?:[\w.-]*(?:api_key|password|passwd|secret|token|credential)[\w.-]*"""
    r"""|url|[\w-]*_url)["']?\s*:\s+)(?!\$\{)([^\s,}#][^,}#]*?)(?=\s*(?:[,}]|\s#|$))""",
    re.IGNORECASE,
)
SENSITIVE_SHOWN = "(sensitive)"


@dataclass(frozen=True)
class Diagnostic:
    """One error or warning, where it is, and what to do about it."""

    severity: Severity
    summary: str
    detail: str | None
    mark: SourceMark | None
    field: str | None = None

    @classmethod
    def of_error(cls, error: ConfigError) -> Diagnostic:
        return cls("error", error.summary, error.hint, error.mark, error.field)

    @classmethod
    def of_warning(cls, warning: ConfigWarning) -> Diagnostic:
        return cls("warning", warning.message, warning.hint, warning.mark, warning.field)


def diagnostics_of(error: ConfigError | None, warnings: Iterable[ConfigWarning] = ()) -> list[Diagnostic]:
    """Errors first (in the loader's file and line order), then warnings."""
    found: list[Diagnostic] = []
    if error is not None:
        errors = error.errors if isinstance(error, ConfigErrors) else (error,)
        found.extend(Diagnostic.of_error(e) for e in errors)
    found.extend(Diagnostic.of_warning(w) for w in warnings)
    return found


@dataclass(frozen=True)
class SourceLine:
    """The line a mark points at, made safe to show, and the span to underline (0-based)."""

    number: int
    text: str
    start: int
    end: int


def _masked(line: str, column: int) -> tuple[str, int]:
    """The line with the value of every secret-naming key replaced (block or flow style);
    the caret column moved with the text."""
    out = ""
    last = 0
    for match in _SECRET_VALUE.finditer(line):
        start, end = match.span(2)
        out += line[last:start] + SENSITIVE_SHOWN
        if column >= end:
            column += len(SENSITIVE_SHOWN) - (end - start)
        elif column >= start:
            column = len(out) - len(SENSITIVE_SHOWN)
        last = end
    return out + line[last:], column


def source_line(mark: SourceMark | None, lines: Sequence[str] | None = None) -> SourceLine | None:
    """The source line under `mark`, or None when the file or line cannot be read."""
    if mark is None or mark.line < 1:
        return None
    if lines is None:
        try:
            lines = Path(mark.file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return None
    if mark.line > len(lines):
        return None
    raw = lines[mark.line - 1].rstrip("\r")
    column = max(0, min(mark.column - 1, len(raw)))
    text, column = _masked(raw, column)
    token = _TOKEN.match(text, column)
    end = token.end() if token and token.end() > column else column + 1
    return SourceLine(mark.line, text, column, end)


def _severity_style(severity: Severity) -> str:
    return "bold red" if severity == "error" else "bold yellow"


def _unchanged(text: str) -> str:
    return text


def diagnostic_text(diagnostic: Diagnostic, scrub: Callable[[str], str] = _unchanged) -> Text:
    """`Error: file:line:col: field: message`, the source line with a caret under the
    offending text, and the one-line fix."""
    label = "Error" if diagnostic.severity == "error" else "Warning"
    where = f"{diagnostic.mark}: " if diagnostic.mark else ""
    what = f"{diagnostic.field}: " if diagnostic.field else ""
    text = Text()
    text.append(f"{label}: ", style=_severity_style(diagnostic.severity))
    text.append(scrub(f"{where}{what}{diagnostic.summary}"))
    line = source_line(diagnostic.mark)
    if line is not None:
        gutter = " " * len(str(line.number))
        text.append(f"\n {gutter} |\n")
        text.append(f" {line.number} | ", style="blue")
        text.append(scrub(line.text))
        text.append(f"\n {gutter} | ", style="blue")
        text.append(" " * line.start)
        text.append("^" * (line.end - line.start), style=_severity_style(diagnostic.severity))
    if diagnostic.detail:
        text.append("\n  hint: ", style="cyan")
        text.append(scrub(diagnostic.detail))
    return text


def render_diagnostics(
    diagnostics: Sequence[Diagnostic],
    console: Console,
    omitted: bool = False,
    scrub: Callable[[str], str] = _unchanged,
) -> None:
    """Each diagnostic, a blank line between them, and a count when there are several errors.

    `scrub` removes secrets before rich lays the text out: rich expands tabs and escapes,
    which would hide a secret from a scrubber that only sees the printed result."""
    for position, diagnostic in enumerate(diagnostics):
        if position:
            console.print()
        console.print(diagnostic_text(diagnostic, scrub), soft_wrap=True)
    errors = [d for d in diagnostics if d.severity == "error"]
    if len(errors) > 1 or omitted:
        files = {d.mark.file for d in errors if d.mark}
        in_files = f" in {len(files)} file{'s' if len(files) != 1 else ''}" if files else ""
        more = "; stopped there, fix these and run again to see the rest" if omitted else ""
        console.print(Text(f"\nFound {len(errors)} errors{in_files}{more}.", style="bold red"))


def render_config_error(error: ConfigError, console: Console, scrub: Callable[[str], str] = _unchanged) -> None:
    render_diagnostics(diagnostics_of(error), console, omitted=bool(getattr(error, "omitted", 0)), scrub=scrub)


# -- validate -json ---------------------------------------------------------------------------


def _position(lines: Sequence[str], line: int, column: int) -> dict[str, int]:
    """Terraform's position: 1-based line and column, 0-based byte offset into the file."""
    offset = sum(len(text.encode("utf-8")) + 1 for text in lines[: line - 1])
    if 0 < line <= len(lines):
        offset += len(lines[line - 1][: column - 1].encode("utf-8"))
    return {"line": line, "column": column, "byte": offset}


def _read_lines(file: str) -> list[str] | None:
    try:
        return Path(file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None


def diagnostic_json(diagnostic: Diagnostic) -> dict[str, Any]:
    """One entry of `diagnostics[]` as Terraform writes it (range and snippet when known)."""
    detail = diagnostic.detail or ""
    if diagnostic.field:
        detail = f"{diagnostic.field}: {detail}" if detail else diagnostic.field
    entry: dict[str, Any] = {"severity": diagnostic.severity, "summary": diagnostic.summary, "detail": detail}
    mark = diagnostic.mark
    if mark is None:
        return entry
    lines = _read_lines(mark.file) if mark.line else None
    if lines is None or not mark.line:
        entry["range"] = {"filename": mark.file, "start": {"line": 0, "column": 0, "byte": 0},
                          "end": {"line": 0, "column": 0, "byte": 0}}
        return entry
    line = source_line(mark, lines)
    start_column = mark.column or 1
    end_column = start_column + (line.end - line.start if line else 1)
    entry["range"] = {
        "filename": mark.file,
        "start": _position(lines, mark.line, start_column),
        "end": _position(lines, mark.line, end_column),
    }
    if line is not None:
        entry["snippet"] = {
            "context": diagnostic.field,
            "code": line.text,
            "start_line": line.number,
            "highlight_start_offset": line.start,
            "highlight_end_offset": line.end,
            "values": [],
        }
    return entry


def validate_json(diagnostics: Sequence[Diagnostic]) -> dict[str, Any]:
    """`reconciler validate -json`: the document `terraform validate -json` prints."""
    errors = sum(1 for d in diagnostics if d.severity == "error")
    return {
        "format_version": "1.0",
        "valid": errors == 0,
        "error_count": errors,
        "warning_count": len(diagnostics) - errors,
        "diagnostics": [diagnostic_json(d) for d in diagnostics],
    }


def validation_report(load: Callable[[], Any]) -> tuple[dict[str, Any], bool]:
    """Run `load` (which returns a Config) and describe the outcome as `validate -json` does."""
    try:
        config = load()
    except ConfigError as error:
        return validate_json(diagnostics_of(error)), False
    return validate_json(diagnostics_of(None, config.warnings)), True


def render_plan_warnings(
    warnings: Sequence[tuple[Any, str]], config_warnings: Iterable[ConfigWarning], console: Console
) -> None:
    """What a plan found worth a warning: the configuration's, then price caps no offering meets.

    Printed once the plan is made (an error before then is printed alone); stderr, never the
    exit code.
    """
    render_diagnostics(
        [
            *(Diagnostic.of_warning(warning) for warning in config_warnings),
            *(
                Diagnostic("warning", message, "raise the cap, or see the prices with `reconciler offerings`", None)
                for _, message in warnings
            ),
        ],
        console,
    )
