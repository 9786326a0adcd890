"""Clocks for the emulated world.

Every status in the emulator is computed from timestamps against a clock, so tests can
move time forward instead of sleeping, and a world reloaded by another process still
agrees on what is pending and what is active.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch, as the emulated world sees them."""
        ...

    def advance(self, seconds: float) -> None:
        """Move this clock forward (tests, `POST /_emulator/clock`)."""
        ...


class SystemClock:
    """Wall-clock time plus an offset that `advance` grows, so a live server can skip ahead."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class ManualClock:
    """A clock that only moves when told to: deterministic boot and delete transitions."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds
