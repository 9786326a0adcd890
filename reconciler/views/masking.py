"""Sensitive values (dotted attribute paths in `Change.sensitive`, such as `envs.HF_TOKEN`) in
the views: humans see `(sensitive)`, plan JSON gets `null` with `true` at that path in
`before_sensitive` / `after_sensitive`. The planner hands the views `Change.masked_after`,
where a sensitive value is already the digest state keeps, never the value.
"""

from __future__ import annotations

from typing import Any

from reconciler.model import Change

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


def _masked(value: Any, path: Path, sensitive: frozenset[Path]) -> tuple[Any, Any]:
    """(value with sensitive leaves set to None, Terraform sensitivity mark or None)."""
    if is_sensitive(path, sensitive):
        return None, True
    if not any(s[: len(path)] == path and len(s) > len(path) for s in sensitive):
        return value, None
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        marks: dict[str, Any] = {}
        for key, item in value.items():
            out[key], mark = _masked(item, (*path, str(key)), sensitive)
            if mark is not None:
                marks[key] = mark
        return out, (marks or None)
    if isinstance(value, list):
        items = [_masked(item, (*path, str(i)), sensitive) for i, item in enumerate(value)]
        marks_list = [m if m is not None else False for _, m in items]
        return [v for v, _ in items], (marks_list if any(marks_list) else None)
    return value, None


def masked_side(value: dict[str, Any] | None, sensitive: frozenset[Path]) -> tuple[Any, Any]:
    if value is None:
        return None, False
    masked, mark = _masked(value, (), sensitive)
    return masked, (mark or {})
