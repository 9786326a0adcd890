"""References to other resources' attributes: `${instances.head.ip}`, `${instances.worker[*].ip}`.

The loader leaves each reference in the configuration's strings as a placeholder (two
private-use characters around the reference's text), so validation, canonical attributes
and saved plans carry it as plain text. The planner substitutes what it knows (from state,
when the referenced object stays) and keeps the placeholder where the value is known only
after apply; the applier substitutes the rest once the referenced object is ready.

A reference always becomes text inside a resource's attributes (a list as JSON), since
every place that takes one is a string; an output that is exactly one reference keeps the
value's type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.model import Address, Kind

OPEN = "\ue000"
CLOSE = "\ue001"
_PLACEHOLDER = re.compile(f"{OPEN}([^{OPEN}{CLOSE}]*){CLOSE}")
_REFERENCE = re.compile(
    r"^(ssh_keys|volumes|instances)\.([A-Za-z0-9_][A-Za-z0-9_.-]*?)"
    r'(?:\[(\d+|\*|"[A-Za-z0-9_-]+")\])?\.([A-Za-z_][A-Za-z0-9_]*)$'
)


class Unknown:
    """A value known only after apply."""

    def __repr__(self) -> str:
        return "(known after apply)"


UNKNOWN = Unknown()


@dataclass(frozen=True)
class Reference:
    """`kind.name[index].attribute`; `splat` for `name[*]` (every counted member, as a list)."""

    kind: Kind
    name: str
    index: int | str | None  # a str names the provider of an SSH key declared for several
    splat: bool
    attribute: str

    @property
    def text(self) -> str:
        if self.splat:
            return f"{self.kind.value}.{self.name}[*].{self.attribute}"
        return f"{Address(self.kind, self.name, self.index)}.{self.attribute}"

    @property
    def base(self) -> Address:
        return Address(self.kind, self.name)


def parse_reference(expression: str) -> Reference | None:
    """The reference an expression names, or None when it is not one (`var.x`, `env:Y`)."""
    match = _REFERENCE.match(expression.strip())
    if match is None:
        return None
    kind, name, index, attribute = match.groups()
    return Reference(
        kind=Kind(kind),
        name=name,
        index=None if index in (None, "*") else index.strip('"') if index.startswith('"') else int(index),
        splat=index == "*",
        attribute=attribute,
    )


def placeholder(reference: Reference) -> str:
    return f"{OPEN}{reference.text}{CLOSE}"


def has_placeholder(value: Any) -> bool:
    if isinstance(value, str):
        return OPEN in value
    if isinstance(value, dict):
        return any(has_placeholder(v) for v in value.values())
    if isinstance(value, list):
        return any(has_placeholder(v) for v in value)
    return False


def references_in(value: Any) -> list[Reference]:
    """Every reference left in a value's strings, in order of appearance."""
    found: list[Reference] = []
    if isinstance(value, str):
        for match in _PLACEHOLDER.finditer(value):
            reference = parse_reference(match.group(1))
            if reference is not None:
                found.append(reference)
    elif isinstance(value, dict):
        for item in value.values():
            found.extend(references_in(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(references_in(item))
    return found


def display(value: Any) -> Any:
    """A value with each placeholder written back as `${...}`, for people."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: "${" + m.group(1) + "}", value)
    if isinstance(value, dict):
        return {k: display(v) for k, v in value.items()}
    if isinstance(value, list):
        return [display(v) for v in value]
    return value


def as_text(value: Any) -> str:
    """A value as it reads inside longer text: lists and maps as JSON, booleans as YAML writes them."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, sort_keys=True)


Lookup = Callable[[Reference], Any]  # a value, or UNKNOWN


def substitute(value: Any, lookup: Lookup, keep_type: bool = False) -> tuple[Any, tuple[str, ...]]:
    """`value` with every placeholder the lookup knows replaced, and the dotted paths still unknown.

    A string with an unknown reference keeps its placeholders (all of them), so the
    applier can finish it later from the same text. With `keep_type`, a string that is
    exactly one reference takes the value's own type (outputs).
    """
    unknown: list[str] = []
    result = _walk(value, lookup, (), unknown, keep_type)
    return result, tuple(unknown)


def _walk(value: Any, lookup: Lookup, path: tuple[str, ...], unknown: list[str], keep_type: bool) -> Any:
    if isinstance(value, str):
        if OPEN not in value:
            return value
        return _string(value, lookup, path, unknown, keep_type)
    if isinstance(value, dict):
        return {k: _walk(v, lookup, (*path, str(k)), unknown, keep_type) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, lookup, (*path, str(i)), unknown, keep_type) for i, v in enumerate(value)]
    return value


def _string(text: str, lookup: Lookup, path: tuple[str, ...], unknown: list[str], keep_type: bool) -> Any:
    values: list[Any] = []
    for match in _PLACEHOLDER.finditer(text):
        reference = parse_reference(match.group(1))
        values.append(UNKNOWN if reference is None else lookup(reference))
    if any(v is UNKNOWN for v in values):
        unknown.append(".".join(path))
        return text
    whole = _PLACEHOLDER.fullmatch(text)
    if keep_type and whole is not None:
        return values[0]
    replacements = iter(values)
    return _PLACEHOLDER.sub(lambda _m: as_text(next(replacements)), text)


def members_of(reference: Reference, addresses: Mapping[Address, Any]) -> list[Address]:
    """The addresses a reference reads: one, or every counted member for `[*]`."""
    if reference.splat:
        return sorted(
            (a for a in addresses if a.base == reference.base and isinstance(a.index, int)),
            key=lambda a: a.index if isinstance(a.index, int) else 0,
        )
    return [Address(reference.kind, reference.name, reference.index)]


def attribute_value(
    reference: Reference, addresses: Mapping[Address, Any], read: Callable[[Address, str], Any]
) -> Any:
    """The referenced value (a list for `[*]`), or UNKNOWN when any member's value is."""
    values = [read(address, reference.attribute) for address in members_of(reference, addresses)]
    if any(v is UNKNOWN for v in values):
        return UNKNOWN
    return values if reference.splat else (values[0] if values else UNKNOWN)
