"""`${...}` expressions in configuration strings.

- `${var.NAME}`: an input variable; `${env:NAME}`: an environment variable (must be set);
  `${file:path}`: a file's text, relative to the YAML file, without its trailing newline;
  `${count.index}`: the index inside a resource with `count`.
- A string that is exactly one expression takes the value's type (`size_gb: ${var.size}` is
  a number); inside longer text the value is written out (lists and maps as JSON).
- `${instances.NAME.ATTR}` (also `NAME[i]`, `NAME[*]`): another resource's attribute, left as a
  placeholder for plan and apply (resource fields and outputs only).
- `$${` is a literal `${`.

Where a sensitive variable lands is recorded, so the attribute can be hidden in output.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.config.diagnostics import FieldIssue, hint_for_names
from reconciler.config.variables import ENV_PREFIX, Variable
from reconciler.references import Reference, as_text, parse_reference, placeholder

_TOKEN = re.compile(r"\$\$\{|\$\{([^{}]*)\}|\$\{")
_SYNTAX_HINT = (
    "use ${var.NAME}, ${env:NAME}, ${file:PATH}, ${count.index} or ${instances.NAME.ATTRIBUTE}; "
    "write $${ for a literal ${"
)

KeyPath = tuple[str | int, ...]


@dataclass
class _Scope:
    base_dir: Path
    count_index: int | None
    allow_references: bool = False
    sensitive_paths: list[KeyPath] = field(default_factory=list)
    references: list[tuple[KeyPath, Reference]] = field(default_factory=list)


@dataclass(frozen=True)
class Rendered:
    """An interpolated value, the paths (inside it) that received a sensitive variable, and the
    resource references it holds as placeholders (see reconciler.references)."""

    value: Any
    sensitive_paths: tuple[KeyPath, ...]
    references: tuple[tuple[KeyPath, Reference], ...] = ()


class Interpolator:
    """Evaluates expressions against resolved variables, an environment and files on disk."""

    def __init__(self, variables: Mapping[str, Variable], environ: Mapping[str, str]) -> None:
        self._variables = variables
        self._environ = environ
        self._files: dict[Path, str] = {}

    @property
    def files_read(self) -> tuple[Path, ...]:
        """The files `${file:...}` has read so far (to check who else may read them)."""
        return tuple(self._files)

    def render(
        self, value: Any, base_dir: Path, count_index: int | None = None, allow_references: bool = False
    ) -> Rendered:
        """A copy of `value` with every expression in its strings evaluated.

        With `allow_references`, `${instances.x.ip}` stays as a placeholder to be resolved
        by plan and apply. Raises FieldIssue with the path (inside `value`) of the string
        that failed.
        """
        scope = _Scope(base_dir, count_index, allow_references)
        result = self._walk(value, (), scope)
        return Rendered(result, tuple(scope.sensitive_paths), tuple(scope.references))

    def _walk(self, value: Any, path: KeyPath, scope: _Scope) -> Any:
        if type(value) is str:
            if "$" not in value:
                return value
            return self._string(value, path, scope)
        if type(value) is dict:
            return {key: self._walk(item, (*path, key), scope) for key, item in value.items()}
        if type(value) is list:
            return [self._walk(item, (*path, index), scope) for index, item in enumerate(value)]
        return value

    def _string(self, text: str, path: KeyPath, scope: _Scope) -> Any:
        parts: list[str] = []
        position = 0
        for match in _TOKEN.finditer(text):
            token = match.group(0)
            parts.append(text[position : match.start()])
            position = match.end()
            if token == "$${":
                parts.append("${")
                continue
            expression = match.group(1)
            if expression is None:
                raise FieldIssue(path, f"unterminated or nested ${{ in {text!r}", _SYNTAX_HINT)
            value, sensitive = self._evaluate(expression, path, scope)
            if sensitive:
                scope.sensitive_paths.append(path)
            if match.start() == 0 and match.end() == len(text):
                return value
            parts.append(as_text(value))
        parts.append(text[position:])
        return "".join(parts)

    def _evaluate(self, expression: str, path: KeyPath, scope: _Scope) -> tuple[Any, bool]:
        expr = expression.strip()
        if expr.startswith("var."):
            return self._variable(expr[4:].strip(), path)
        if expr.startswith("env:"):
            name = expr[4:].strip()
            if name not in self._environ:
                raise FieldIssue(
                    path,
                    f"environment variable {name} is not set",
                    hint=f"export {name}=... before running, or stop referring to it",
                )
            return self._environ[name], False
        if expr.startswith("file:"):
            return self._file(expr[5:].strip(), path, scope.base_dir), False
        if expr == "count.index":
            if scope.count_index is None:
                raise FieldIssue(path, "${count.index} is only available inside a resource with count")
            return scope.count_index, False
        reference = parse_reference(expr)
        if reference is not None:
            if not scope.allow_references:
                raise FieldIssue(
                    path,
                    f"${{{expr}}} refers to a resource attribute, which is not allowed here",
                    hint="references to resources work in resource fields and outputs",
                )
            scope.references.append((path, reference))
            return placeholder(reference), False
        raise FieldIssue(path, f"unknown expression ${{{expr}}}", _SYNTAX_HINT)

    def _variable(self, name: str, path: KeyPath) -> tuple[Any, bool]:
        variable = self._variables.get(name)
        if variable is None:
            raise FieldIssue(
                path,
                f"undeclared variable {name!r}",
                hint_for_names(name, list(self._variables), "variables"),
            )
        if not variable.has_value:
            raise FieldIssue(
                path,
                f"variable {name!r} (declared at {variable.origin.mark()}) has no value",
                hint=f"set it with --var {name}=VALUE, a var file or {ENV_PREFIX}{name}, "
                "or give it a default",
            )
        return variable.value, variable.sensitive

    def _file(self, relative: str, path: KeyPath, base_dir: Path) -> str:
        if not relative:
            raise FieldIssue(path, "${file:} needs a path", _SYNTAX_HINT)
        target = Path(relative).expanduser()
        if not target.is_absolute():
            target = base_dir / target
        cached = self._files.get(target)
        if cached is not None:
            return cached
        try:
            text = target.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FieldIssue(
                path,
                f"file not found: {relative}",
                hint=f"${{file:...}} paths are relative to the YAML file's directory ({base_dir})",
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise FieldIssue(path, f"cannot read {relative}: {exc}") from None
        text = text.removesuffix("\n").removesuffix("\r")
        self._files[target] = text
        return text
