"""Removing secrets from text in every spelling a message could carry them.

A secret rarely reaches output as it was written: an HTTP library prints a bad header as
`b'key\\n'`, a JSON body escapes it, a URL percent-encodes it, a repr() escapes its control
characters. `Scrubber` knows each of those forms of every secret it is given, and
`ScrubbedStream` applies it to everything written to a stream, so the CLI wraps its standard
output and error once and no message, progress line or traceback can show a secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

# Shorter secrets are not scrubbed: replacing every "abc" would garble output and hide nothing.
MIN_SECRET_LENGTH = 4
# The lines of a multi-line secret (a pasted key file) are scrubbed on their own from this length.
MIN_LINE_LENGTH = 8


def secret_forms(secret: str, min_length: int = MIN_SECRET_LENGTH) -> set[str]:
    """The spellings of `secret` that messages are known to carry."""
    cores = {secret, secret.strip()}
    cores |= {line.strip() for line in secret.splitlines() if len(line.strip()) >= MIN_LINE_LENGTH}
    forms: set[str] = set()
    for core in cores:
        forms |= {
            core,
            repr(core)[1:-1],  # Python str repr: \n, \t, \x1b, quotes escaped
            repr(core.encode("utf-8"))[2:-1],  # bytes repr, as in "Invalid header value b'...'"
            json.dumps(core)[1:-1],  # JSON string escaping
            json.dumps(core, ensure_ascii=False)[1:-1],
            core.encode("unicode_escape").decode("ascii"),
            quote(core, safe=""),  # percent-encoded (URLs, query strings)
            quote(core),
            quote_plus(core),
        }
    return {form for form in forms if len(form) >= min_length}


class Scrubber:
    """Replaces every known form of its secrets with `replacement`, longest first."""

    def __init__(
        self, secrets: Iterable[str] = (), replacement: str = "(sensitive)", min_length: int = MIN_SECRET_LENGTH
    ) -> None:
        self.replacement = replacement
        self.min_length = min_length
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        new = set().union(*(secret_forms(s, self.min_length) for s in secrets if s)) - self._forms
        if new:
            self._forms |= new
            ordered = sorted(self._forms, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(form) for form in ordered))

    def __bool__(self) -> bool:
        return self._pattern is not None

    def scrub(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(self.replacement, text)


class ScrubbedStream:
    """A text stream that scrubs everything written to it; anything else is the inner stream's."""

    def __init__(self, scrubber: Scrubber, inner: Any) -> None:
        self._scrubber = scrubber
        self._inner = inner

    @property
    def verbatim(self) -> Any:
        """The stream itself, for the one output a user asks to see unscrubbed (`output -json`)."""
        return self._inner

    def write(self, text: str) -> int:
        self._inner.write(self._scrubber.scrub(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._inner.flush()

    def isatty(self) -> bool:
        return bool(self._inner.isatty())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
