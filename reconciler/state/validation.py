"""Checks a stored state document before anything is planned or applied from it.

A state that names an unknown kind, a malformed address, one provider object under two
addresses or a pending record that cannot be read would make apply act on the wrong object
(a destroy deleting one GPU twice and leaving its twin running). Every backend reads through
`parse_state_text`, so the local file and PostgreSQL refuse the same documents with the same
messages. Unknown extra fields stay lenient: they are kept, never an error.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from reconciler.errors import StateError
from reconciler.model import Address, Kind
from reconciler.provider_spec import provider_names
from reconciler.state.model import STATE_VERSION, ResourceState, StateDocument

MAX_PROBLEMS_SHOWN = 10
_TYPE_FIX = "correct the value to the type shown"


@dataclass(frozen=True)
class StateProblem:
    """One damaged entry: where it is, what is wrong, how to fix it.

    `addresses` are the resource entries whose removal (`state rm`) clears the problem.
    """

    entry: str
    message: str
    fix: str
    addresses: tuple[str, ...] = ()


class DamagedStateError(StateError):
    """The stored state cannot be used as it is; nothing was planned or written.

    `document` is the parsed document when only its entries (not its shape) are damaged,
    so `state rm` can drop the named entries and store the rest.
    """

    def __init__(
        self, source: str, problems: list[StateProblem], recovery: str, document: StateDocument | None = None
    ) -> None:
        self.source = source
        self.problems = problems
        self.document = document
        shown = _describe_all(problems[:MAX_PROBLEMS_SHOWN])
        more = len(problems) - MAX_PROBLEMS_SHOWN
        if more > 0:
            shown += f"\n  - ... and {more} more"
        count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
        super().__init__(
            f"state {source} is damaged ({count}); it was left untouched and nothing was done:\n{shown}",
            hint=recovery,
        )


def _describe_all(problems: list[StateProblem]) -> str:
    """One line per problem; a fix is said once for consecutive problems that share it."""
    lines = []
    previous_fix = None
    for problem in problems:
        lines.append(f"  - {problem.entry}: {problem.message}")
        if problem.fix != previous_fix:
            lines.append(f"    fix: {problem.fix}")
        previous_fix = problem.fix
    return "\n".join(lines)


def parse_state_text(text: str, source: str, recovery: str) -> StateDocument:
    """The state document in `text`, or DamagedStateError listing every damaged entry.

    `recovery` says where earlier versions are (a .backup file, the PostgreSQL history).
    """
    duplicates: list[str] = []
    try:
        raw = json.loads(text, object_pairs_hook=_dict_noting_duplicates(duplicates))
    except json.JSONDecodeError as exc:
        raise StateError(
            f"{source} is not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}",
            hint=f"{recovery}; inspect it and copy it back if it is good",
        ) from exc
    except RecursionError as exc:
        raise StateError(f"{source} is nested too deeply to be a state document", hint=recovery) from exc
    if not isinstance(raw, dict):
        raise StateError(f"{source} is not a state document (expected a JSON object)", hint=recovery)
    version = raw.get("version")
    if type(version) is int and version > STATE_VERSION:
        raise StateError(
            f"{source} has state version {version}, newer than this reconciler knows ({STATE_VERSION})",
            hint="upgrade reconciler; the file was left untouched",
        )
    problems = [_duplicate_key(key, text) for key in duplicates]
    try:
        doc = StateDocument.model_validate(raw, strict=True)
    except ValidationError as exc:
        raise DamagedStateError(source, problems + _type_problems(exc), recovery) from None
    problems += document_problems(doc)
    if problems:
        raise DamagedStateError(source, problems, recovery, doc)
    return doc


def document_problems(doc: StateDocument) -> list[StateProblem]:
    """What makes a well-typed document unsafe to act on; empty when it is sound."""
    problems: list[StateProblem] = []
    for key, res in doc.resources.items():
        if not _entry_is_sound(key, res.kind, res.provider):
            problems += _entry_problems(f"resources[{json.dumps(key)}]", key, res.kind, res.provider, (key,))
        if not all(_is_address(d) for d in res.depends_on):
            problems += _dependency_problems(f"resources[{json.dumps(key)}].depends_on", res.depends_on, key)
    for i, old in enumerate(doc.deposed):
        if not _entry_is_sound(old.address, old.kind, old.provider):
            problems += _entry_problems(f"deposed[{i}]", old.address, old.kind, old.provider, ())
    for i, op in enumerate(doc.pending):
        problems += _pending_problems(i, op.op, op.address, op.kind, op.provider, op.id)
        if not _is_aware_time(op.started_at):
            problems.append(
                StateProblem(
                    f"pending[{i}] ({op.op} of {op.address}).started_at",
                    f"{op.started_at!r} is not an ISO 8601 time with a UTC offset; how long lists may still "
                    "hide the object is counted from it",
                    _PENDING_FIX,
                )
            )
    problems += _shared_ids(doc)
    return problems


def _is_aware_time(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


def _is_address(text: str) -> bool:
    try:
        Address.parse(text)
    except ValueError:
        return False
    return True


def _entry_is_sound(address: str, kind: str, provider: str) -> bool:
    """The common case, checked without building any message."""
    try:
        parsed = Address.parse(address)
    except ValueError:
        return False
    return kind == parsed.kind.value and provider in provider_names() and str(parsed) == address


def _dict_noting_duplicates(found: list[str]) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)
        if len(result) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    found.append(key)
                seen.add(key)
        return result

    return hook


def _duplicate_key(key: str, text: str) -> StateProblem:
    quoted = json.dumps(key)
    first = text.find(quoted)
    second = text.find(quoted, first + len(quoted))
    line = text.count("\n", 0, second) + 1 if second >= 0 else 0
    where = f" (again at line {line})" if line else ""
    return StateProblem(
        f"key {quoted}",
        f"appears twice in one object{where}; JSON readers keep only one of them silently",
        "keep the entry that is right and delete the other by hand (if both are resources, note both "
        "provider ids first: the one you delete keeps running until you import or delete it)",
    )


def _type_problems(exc: ValidationError) -> list[StateProblem]:
    problems = []
    for error in exc.errors():
        loc, value = error["loc"], error.get("input")
        got = (
            f" (got {json.dumps(value)})"
            if isinstance(value, str | int | float) and len(repr(value)) <= 40
            else ""
        )
        problems.append(StateProblem(_entry_name(loc), error["msg"] + got, _fix_for_location(loc)))
    return problems


def _entry_name(loc: tuple[int | str, ...]) -> str:
    text = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            text += f"[{part}]"
        elif i > 0 and loc[i - 1] == "resources":
            text += f"[{json.dumps(part)}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "document"


def _fix_for_location(loc: tuple[int | str, ...]) -> str:
    if loc and loc[0] == "serial":
        return "serial counts the state's writes: a whole number, 0 or more"
    if loc and loc[0] == "pending":
        return _PENDING_FIX
    return _TYPE_FIX


_PENDING_FIX = (
    "a pending record is an operation an interrupted run may have sent: check at the provider whether "
    "the object exists (a create may be running and billing), then correct the record or remove it by hand"
)


def _entry_problems(
    entry: str, address: str, kind: str, provider: str, removable: tuple[str, ...]
) -> list[StateProblem]:
    remedy = "correct the entry by hand"
    if removable:
        remedy = f"`reconciler state rm {shlex.quote(address)}` forgets it (the object keeps running)"
    try:
        parsed = Address.parse(address)
    except ValueError as exc:
        kinds = [k.value for k in Kind]
        written = address.partition(".")[0]
        message = str(exc) if written in kinds else f"unknown kind {written!r} (known: {', '.join(kinds)})"
        return [StateProblem(entry, message, f"correct the address, or {remedy}", removable)]
    problems = []
    if str(parsed) != address:
        problems.append(
            StateProblem(
                entry,
                f"the address is not written the way reconciler writes it ({parsed})",
                f"rename the key to {parsed}, or {remedy}",
                removable,
            )
        )
    if kind != parsed.kind.value:
        problems.append(
            StateProblem(
                entry,
                f"kind {kind!r} does not match the address's kind {parsed.kind.value!r}",
                f"correct the kind, or {remedy}",
                removable,
            )
        )
    if provider not in provider_names():
        problems.append(
            StateProblem(
                entry,
                f"unknown provider {provider!r} (known: {', '.join(provider_names())})",
                f"correct the provider, or {remedy}",
                removable,
            )
        )
    return problems


def _dependency_problems(entry: str, depends_on: Iterable[str], owner: str) -> list[StateProblem]:
    problems = []
    for dependency in depends_on:
        try:
            Address.parse(dependency)
        except ValueError as exc:
            problems.append(
                StateProblem(
                    entry,
                    str(exc),
                    f"remove {dependency!r} from the list, or `reconciler state rm {owner}`",
                    (owner,),
                )
            )
    return problems


def _pending_problems(
    index: int, op: str, address: str, kind: str, provider: str, id: str | None
) -> list[StateProblem]:
    entry = f"pending[{index}] ({op} of {address})"
    problems = []
    try:
        parsed = Address.parse(address)
        if kind != parsed.kind.value:
            problems.append(
                StateProblem(
                    entry,
                    f"kind {kind!r} does not match the address's kind {parsed.kind.value!r}",
                    _PENDING_FIX,
                )
            )
    except ValueError as exc:
        problems.append(StateProblem(entry, str(exc), _PENDING_FIX))
    if provider not in provider_names():
        problems.append(StateProblem(entry, f"unknown provider {provider!r}", _PENDING_FIX))
    if op == "delete" and not id:
        problems.append(StateProblem(entry, "a pending delete without the id of the object", _PENDING_FIX))
    return problems


def _shared_ids(doc: StateDocument) -> list[StateProblem]:
    """One provider object under two addresses: a destroy would delete it twice and leak the other."""
    owners: dict[tuple[str, str, str], str] = {}
    problems = []
    tracked: list[tuple[str, ResourceState]] = list(doc.resources.items())
    tracked += [(f"deposed {old.address}", old) for old in doc.deposed]
    for name, res in tracked:
        first = owners.setdefault((res.provider, res.kind, res.id), name)
        if first == name:
            continue
        problems.append(
            StateProblem(
                name if name.startswith("deposed ") else f"resources[{json.dumps(name)}]",
                f"{res.provider} {res.kind} id {res.id} is also recorded under {first}; a destroy would "
                "delete that one object twice and leave the other address's object running",
                "look up at the provider which address the object belongs to, then forget the other with "
                "`reconciler state rm ADDRESS` and adopt its own object with `reconciler import ADDRESS ID`",
                tuple(a for a in (first, name) if a in doc.resources),
            )
        )
    return problems


def repairable_by_removal(error: DamagedStateError, addresses: Iterable[str]) -> StateDocument:
    """The damaged document, when forgetting `addresses` (`state rm`) leaves it sound; else `error`."""
    if error.document is None:
        raise error
    trial = error.document.model_copy(deep=True)
    for address in addresses:
        trial.resources.pop(address, None)
    if document_problems(trial):
        raise error
    return error.document
