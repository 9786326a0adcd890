"""Reading the moments held in state and plans (`created_at`, `started_at`, expiry deadlines)."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_timestamp(text: object) -> datetime | None:
    """An ISO 8601 moment, always timezone-aware; None when there is none or it does not parse.

    A moment written without an offset (an older state, a hand edit) is taken as UTC, so it
    can be compared with the aware clock of a run instead of failing the comparison.
    """
    if text is None or text == "":
        return None
    try:
        parsed = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
