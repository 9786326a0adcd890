"""Shared by every test directory.

This file puts `tests/` on the import path, so test modules import the fakes in `support`
(clocks, canned APIs, CLI results) from one place. It also prints the crash, fault and
concurrency totals (kill points, orphans, duplicates) at the end of every session that ran
those tests, so a CI log shows them without `-s`; under pytest-xdist each worker counts its
own and hands them to the controller when it finishes, and the controller prints the sum.
"""

from __future__ import annotations

from typing import Any

import pytest
from support import TOTALS

_WORKER_KEY = "crash_totals"


def pytest_sessionfinish(session: pytest.Session) -> None:
    output: dict[str, Any] | None = getattr(session.config, "workeroutput", None)
    if output is not None:
        output[_WORKER_KEY] = TOTALS.as_json()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    totals = getattr(node, "workeroutput", {}).get(_WORKER_KEY)
    if totals:
        TOTALS.add(totals)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TOTALS.used:
        return
    terminalreporter.section("crash, fault and concurrency totals")
    for line in TOTALS.lines():
        terminalreporter.write_line(line)
