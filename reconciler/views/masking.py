"""Sensitive values (dotted attribute paths in `Change.sensitive`, such as `envs.HF_TOKEN`) in
the views: humans see `(sensitive)`, plan JSON gets `null` with `true` at that path in
`before_sensitive` / `after_sensitive`. The planner hands the views `Change.masked_after`,
where a sensitive value is already the digest state keeps, never the value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reconciler.model import MASK_PREFIX, Change

SENSITIVE_TEXT = "(sensitive)"
KNOWN_AFTER_APPLY = "(known after apply)"
Path = tuple[str, ...]


def shown_after(change: Change) -> dict[str, Any] | None:
    """The `after` a view reads: the planner's masked view where a value is sensitive."""
    return change.masked_after if change.masked_after is not None else change.after


def split_path(dotted: str) -> Path:
    return tuple(dotted.split("."))


def is_sensitive(path: Path, sensitive: frozenset[Path]) -> bool:
    return any(path[: len(s)] == s for s in sensitive)


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node: Any = data
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and last in node:
        node[last] = value


def hide(
    value: Any, hidden: Callable[[Path, Any], bool], path: Path = (), below: Callable[[Path], bool] | None = None
) -> tuple[Any, Any]:
    """(value with each hidden part as None, Terraform's sensitivity marks for it or None).

    `hidden` says whether the value at a path is hidden; `below`, whether anything under a
    path may be (a walk stops where nothing can be).
    """
    if hidden(path, value):
        return None, True
    if below is not None and not below(path):
        return value, None
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        marks: dict[str, Any] = {}
        for key, item in value.items():
            out[key], mark = hide(item, hidden, (*path, str(key)), below)
            if mark is not None:
                marks[key] = mark
        return out, (marks or None)
    if isinstance(value, list):
        items = [hide(item, hidden, (*path, str(i)), below) for i, item in enumerate(value)]
        marks_list = [m if m is not None else False for _, m in items]
        return [v for v, _ in items], (marks_list if any(marks_list) else None)
    return value, None


def masked_side(value: dict[str, Any] | None, sensitive: frozenset[Path]) -> tuple[Any, Any]:
    """One side of a plan JSON change: each sensitive path null, and its marks (`{}` for none)."""
    if value is None:
        return None, False
    masked, mark = hide(
        value,
        lambda path, _: is_sensitive(path, sensitive),
        below=lambda path: any(s[: len(path)] == path and len(s) > len(path) for s in sensitive),
    )
    return masked, (mark or {})


def hide_digests(value: Any) -> tuple[Any, Any]:
    """State's values with each salted digest (a sensitive value state kept) as null, and marks."""
    return hide(value, lambda _, item: isinstance(item, str) and item.startswith(MASK_PREFIX))
