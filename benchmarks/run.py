"""Run the benchmarks and print one table: scenario, ratio, ours, baseline, API calls, target.

    python benchmarks/run.py                    # everything (about ten minutes)
    python benchmarks/run.py --quick            # small sizes, what the test suite runs
    python benchmarks/run.py --scenario plan    # one scenario: plan, apply, chains, footprint
    python benchmarks/run.py --json out.json    # also write every figure as JSON

Exit status 0 when every scenario ran (whether or not it met its target), 1 when one failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from scenarios import (
    FULL,
    QUICK,
    Fleets,
    Row,
    Settings,
    apply_chains,
    apply_instances,
    footprint,
    plan_in_sync,
)
from selection import plan_selection

SCENARIOS = ("plan", "apply", "chains", "footprint", "selection")
HEADERS = ("Scenario", "Ratio", "Ours", "Reference", "API calls ours/ref", "Target", "Met")


async def run_scenarios(names: tuple[str, ...], settings: Settings, workdir: Path) -> list[Row]:
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        fleets = Fleets(workdir, stack)
        steps: dict[str, Callable[[], Awaitable[list[Row]]]] = {
            "plan": lambda: _plans(fleets, settings),
            "apply": lambda: apply_instances(workdir, settings),
            "chains": lambda: apply_chains(workdir, settings),
            "footprint": lambda: footprint(fleets, settings.footprint_size, workdir),
            "selection": lambda: plan_selection(workdir, settings),
        }
        for name in names:
            started = time.perf_counter()
            produced = await steps[name]()
            print(f"  {name}: {len(produced)} rows in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            rows.extend(produced)
    return rows


async def _plans(fleets: Fleets, settings: Settings) -> list[Row]:
    return [await plan_in_sync(fleets, size, settings) for size in settings.plan_sizes]


def ratio_text(row: Row) -> str:
    if row.reference_kind == "baseline":
        return f"{row.ratio:.1f}x faster"
    return f"{row.ratio:.2f}x {row.reference_kind}"


def figure(value: float, unit: str) -> str:
    return f"{value:.3g} {unit}" if value < 10 else f"{value:,.1f} {unit}"


def calls_text(row: Row) -> str:
    ours = "-" if row.calls_ours is None else f"{row.calls_ours:,}"
    reference = "-" if row.calls_reference is None else f"{row.calls_reference:,}"
    return f"{ours} / {reference}"


def table(rows: list[Row]) -> str:
    """Plain text, fixed columns: it reads the same in a terminal, a CI log and an issue note."""
    lines = [
        (
            row.label,
            ratio_text(row),
            figure(row.ours, row.unit),
            f"{figure(row.reference, row.unit)} ({row.reference_kind})",
            calls_text(row),
            row.target or "-",
            {True: "yes", False: "NO", None: "-"}[row.met],
        )
        for row in rows
    ]
    widths = [max(len(cells[i]) for cells in [HEADERS, *lines]) for i in range(len(HEADERS))]
    rule = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)), rule]
    out += ["  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) for cells in lines]
    return "\n".join(out)


def describe(settings: Settings) -> str:
    return (
        f"modelled API: {settings.latency * 1000:g} ms latency per call; applies: {settings.boot_seconds:g} s boot, "
        f"{settings.rate_limit:g} requests/s per API key, poll every {settings.poll_interval:g} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="reconciler benchmarks against baselines (issue 7)")
    parser.add_argument("--quick", action="store_true", help="small sizes (N=100), as in the test suite")
    parser.add_argument(
        "--scenario", choices=SCENARIOS, action="append", help="run only this one (repeatable)"
    )
    parser.add_argument("--json", type=Path, help="also write all figures to this file")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    names = tuple(args.scenario or SCENARIOS)
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as workdir:
        rows = asyncio.run(run_scenarios(names, settings, Path(workdir)))
    print(table(rows))
    print(describe(settings))
    if args.json is not None:
        document = {
            "quick": args.quick,
            "settings": dataclasses.asdict(settings),
            "rows": [r.model_dump() for r in rows],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
