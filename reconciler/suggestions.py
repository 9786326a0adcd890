"""Did-you-mean hints: the one rule for naming the closest known word to a likely typo."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: object, candidates: Iterable[str], quoted: bool = True) -> str | None:
    """`did you mean 'x'?` for the closest candidate, if one is close enough to be a typo.

    `quoted=False` writes the candidate bare (`did you mean instances.web?`), for addresses.
    """
    if not isinstance(word, str):
        return None
    matches = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    if not matches:
        return None
    return f"did you mean {matches[0]!r}?" if quoted else f"did you mean {matches[0]}?"
