"""Input variables: declarations, and their values from (lowest to highest) the default, var
files, the environment (`RECONCILER_VAR_<name>`) and `--var name=value`.

Values from the environment and the command line are text, converted to the declared
type; values from YAML keep their type but must match it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reconciler.config.diagnostics import FieldIssue, Origin, hint_for_names, issue_from_validation_error
from reconciler.config.schema import VARIABLE_NAME_PATTERN, VariableBlock
from reconciler.config.yaml_source import parse_yaml_file, parse_yaml_text
from reconciler.errors import ConfigError

ENV_PREFIX = "RECONCILER_VAR_"
_NAME_RE = re.compile(VARIABLE_NAME_PATTERN)
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class Variable:
    """A declared variable and the value it ended up with (if any source gave one)."""

    name: str
    type: str
    sensitive: bool
    origin: Origin
    has_value: bool = False
    value: Any = None
    source: str = "default"


def resolve_variables(
    declarations: Mapping[str, tuple[Any, Origin]],
    var_files: Sequence[Path],
    environ: Mapping[str, str],
    cli_vars: Mapping[str, str],
) -> dict[str, Variable]:
    """Every declared variable with its final value; unknown `--var` or var-file names are errors."""
    variables: dict[str, Variable] = {}
    for name, (raw, origin) in declarations.items():
        variables[name] = _declare(name, raw, origin)
    names = list(variables)
    for var_file in var_files:
        document = parse_yaml_file(var_file)
        if document.data is None:
            continue
        file_origin = Origin(document, ())
        if not isinstance(document.data, dict):
            raise file_origin.fail((), "a var file must be a map of variable names to values")
        for name, value in document.data.items():
            if name not in variables:
                raise file_origin.error(
                    FieldIssue(
                        (name,),
                        f"no variable {name!r} is declared",
                        hint_for_names(str(name), names, "variables"),
                        at_key=True,
                    )
                )
            variables[name] = _with_value(
                variables[name], value, f"var file {var_file}", file_origin, (name,)
            )
    for name, variable in variables.items():
        text = environ.get(ENV_PREFIX + name)
        if text is not None:
            variables[name] = _with_value(
                variable, text, f"environment variable {ENV_PREFIX}{name}", None, ()
            )
    for name, text in cli_vars.items():
        if name not in variables:
            raise ConfigError(
                f"no variable {name!r} is declared",
                field=f"--var {name}",
                hint=hint_for_names(name, names, "variables"),
            )
        variables[name] = _with_value(variables[name], text, f"--var {name}", None, ())
    return variables


def _declare(name: str, raw: Any, origin: Origin) -> Variable:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise origin.error(
            FieldIssue(
                (),
                f"{name!r} is not a valid variable name",
                "use letters, digits, '_' and '-', starting with a letter or '_'",
                at_key=True,
            )
        )
    data = {} if raw is None else raw
    try:
        block = VariableBlock.model_validate(data)
    except ValidationError as exc:
        raise origin.error(issue_from_validation_error(exc, data, VariableBlock)) from None
    variable = Variable(name, block.type, block.sensitive, origin)
    if block.default is None:
        return variable
    _refuse_interpolation(block.default, origin, ("default",))
    return _with_value(variable, block.default, "default", origin, ("default",))


def _refuse_interpolation(value: Any, origin: Origin, path: tuple[str | int, ...]) -> None:
    if isinstance(value, str) and "${" in value:
        raise origin.fail(
            path,
            "variable defaults are literal values; ${...} is not interpolated here",
            hint="set the value with RECONCILER_VAR_<name>, a var file or --var instead",
        )
    if isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_interpolation(item, origin, (*path, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_interpolation(item, origin, (*path, key))


def _with_value(
    variable: Variable, value: Any, source: str, origin: Origin | None, path: tuple[str | int, ...]
) -> Variable:
    try:
        converted = convert_value(value, variable.type)
    except ValueError as exc:
        # A sensitive value is never echoed, not even when it is wrong.
        reason = f"the value is not a valid {variable.type}" if variable.sensitive else str(exc)
        message = f"variable {variable.name!r} ({variable.type}) from {source}: {reason}"
        if origin is not None:
            raise origin.fail(path, message) from None
        raise ConfigError(message, field=source) from None
    return Variable(
        variable.name, variable.type, variable.sensitive, variable.origin, True, converted, source
    )


def convert_value(value: Any, type_name: str) -> Any:
    """`value` as the declared type; text is parsed (`"3"` -> 3, `"[a, b]"` -> list)."""
    if type_name == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        if isinstance(value, str):
            return value
        raise ValueError(f"expected a string, got {_describe(value)}")
    if type_name == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            text = value.strip()
            try:
                return int(text)
            except ValueError:
                pass
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"{value!r} is not a number") from None
        raise ValueError(f"expected a number, got {_describe(value)}")
    if type_name == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"expected true or false, got {value!r}")
    expected: type = list if type_name == "list" else dict
    if isinstance(value, str):
        try:
            # Parsed as configuration files are, with the same limits on alias expansion.
            value = parse_yaml_text(value, Path("value")).data
        except ConfigError as exc:
            raise ValueError(
                f"cannot parse {value!r} as a {type_name} (use YAML or JSON syntax): {exc.message}"
            ) from None
    if not isinstance(value, expected):
        raise ValueError(f"expected a {type_name}, got {_describe(value)}")
    return value


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a map"
    return repr(value)


def sensitive_strings(value: Any) -> set[str]:
    """Every non-empty string inside a value, for scrubbing output."""
    if isinstance(value, str):
        return {value} if value else set()
    if isinstance(value, list):
        return set().union(*(sensitive_strings(item) for item in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(sensitive_strings(item) for item in value.values())) if value else set()
    return set()
