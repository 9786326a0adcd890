"""One reconciler plan in a process of its own, reporting its CPU time and peak memory.

    python benchmarks/plan_worker.py CONFIG_DIR STATE_FILE

Loads the configuration with the real loader, reads the local state file, refreshes
against the providers the configuration names and plans, the way `reconciler plan` does,
then prints one JSON object: CPU seconds per phase and in total (interpreter start
included), peak RSS, and the plan's size. The benchmark runs it against an emulator served
from another process, so nothing but reconciler counts against this process.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(config_dir: Path, state_file: Path) -> dict[str, Any]:
    phases: dict[str, float] = {}
    mark = 0.0  # the first phase is the interpreter's own start
    started = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal mark
        now = cpu_seconds()
        phases[name] = round(now - mark, 3)
        mark = now

    phase("start")
    # Imported here, not at the top, so their cost shows as a phase of its own.
    from reconciler import engine
    from reconciler.config import load_config
    from reconciler.model import Action
    from reconciler.planner import PlanOptions
    from reconciler.state.local import LocalStateBackend

    phase("import")
    config = load_config(config_dir)
    phase("load_config")
    doc = LocalStateBackend(state_file).read()
    phase("read_state")

    outcomes: list[engine.PlanOutcome] = []

    async def plan() -> None:
        settings = engine.providers_in_use(config, doc)
        async with engine.open_providers(settings, state_file.with_suffix(".sandbox.json")) as providers:
            outcomes.append(await engine.make_plan(providers, config, doc, PlanOptions()))

    # The plan is handed out through a list, not returned: on Python 3.11 asyncio.run formats
    # the repr of a returned value while restoring the SIGINT handler (0.8 s for 10,000 resources).
    asyncio.run(plan())
    (outcome,) = outcomes
    phase("refresh_and_plan")
    return {
        "cpu_seconds": round(cpu_seconds(), 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "phases": phases,
        "resources": len(config.resources),
        "changes": len(outcome.plan.changes),
        "noop": outcome.plan.count(Action.NOOP),
    }


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python benchmarks/plan_worker.py CONFIG_DIR STATE_FILE")
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]))))
