"""Prints the crash, fault and concurrency totals (kill points, orphans, duplicates) at the
end of every session that ran those tests, so a CI log shows them without `-s`."""

from __future__ import annotations

import pytest
from crash_support import TOTALS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TOTALS.used:
        return
    terminalreporter.section("crash, fault and concurrency totals")
    for line in TOTALS.lines():
        terminalreporter.write_line(line)
