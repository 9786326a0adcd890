"""The quick benchmark run (N=100) on every test run, so the benchmarks cannot rot.

It runs the README's command, `python benchmarks/run.py --quick`, and checks what the
figures must show about behaviour: how many API calls of which kind, every resource
created exactly once, plans in sync. Never timing: that is what the full run reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
QUICK_RUN_TIMEOUT_SECONDS = 600

Rows = dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    figures = tmp_path_factory.mktemp("benchmarks") / "quick.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--quick", "--json", str(figures)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=QUICK_RUN_TIMEOUT_SECONDS,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return {"stdout": done.stdout, **json.loads(figures.read_text())}


@pytest.fixture(scope="module")
def rows(quick_run: dict[str, Any]) -> Rows:
    by_scenario: Rows = {}
    for row in quick_run["rows"]:
        by_scenario.setdefault(row["scenario"], []).append(row)
    return by_scenario


def test_prints_one_table_with_every_scenario(quick_run: dict[str, Any], rows: Rows) -> None:
    header = quick_run["stdout"].splitlines()[0].split()
    assert header[:4] == ["Scenario", "Ratio", "Ours", "Reference"]
    assert set(rows) == {"plan", "apply", "chains", "footprint", "selection"}
    for row in quick_run["rows"]:
        assert row["label"] in quick_run["stdout"]
        assert row["ours"] > 0 and row["reference"] > 0


def test_plan_lists_each_kind_once_where_the_baseline_reads_each_resource(rows: Rows) -> None:
    (plan,) = rows["plan"]
    details = plan["details"]
    size = details["size"]
    assert details["noop"] == details["baseline_noop"] == size == 100
    ours = details["requests_ours"]
    assert plan["calls_ours"] == sum(ours.values()) <= 6
    assert {op: n for op, n in ours.items() if op.endswith(".list")} == {
        "shadeform.instances.list": 1,
        "shadeform.volumes.list": 1,
        "shadeform.ssh_keys.list": 1,
        "shadeform.volume_types.list": 1,
    }
    assert not [op for op in ours if op.endswith(".get")]
    baseline = details["requests_baseline"]
    # The fleet: per ten resources one key, two volumes and seven instances.
    assert baseline["shadeform.ssh_keys.get"] == size // 10
    assert baseline["shadeform.volumes.get"] == size // 5
    assert baseline["shadeform.instances.get"] == size * 7 // 10
    assert baseline["shadeform.volume_types.list"] == 1  # concurrent readers share one price fetch
    assert plan["calls_reference"] == size + 1


def test_apply_creates_each_instance_once_and_polls_with_lists(rows: Rows) -> None:
    bound, versus = rows["apply"]
    assert bound["reference_kind"] == "bound" and versus["reference_kind"] == "baseline"
    details = versus["details"]
    assert details["created"] == {"instances": 20}
    ours, baseline = details["requests_ours"], details["requests_baseline"]
    assert ours.get("shadeform.instances.get", 0) == 0
    assert ours["shadeform.instances.list"] >= 1
    # The baseline reads each instance at least once while it boots.
    assert baseline["shadeform.instances.get"] >= 20
    assert versus["calls_ours"] < versus["calls_reference"]
    # Reference: 20 creates at 20/s fit the burst, then 0.1 s answer + 1 s boot + 0.1 s final poll.
    assert bound["reference"] == pytest.approx(1.2)


def test_chains_create_keys_then_volumes_then_instances(rows: Rows) -> None:
    bound, versus = rows["chains"]
    assert versus["details"]["created"] == {"ssh_keys": 10, "volumes": 10, "instances": 10}
    assert versus["details"]["requests_ours"].get("shadeform.instances.get", 0) == 0
    # 30 creates at 20/s: the last is admitted 0.5 s in, then answer, boot and a final poll.
    assert bound["reference"] == pytest.approx(0.5 + 0.1 + 1.0 + 0.1)


def test_footprint_plan_runs_in_its_own_process(rows: Rows) -> None:
    cpu, rss = rows["footprint"]
    details = cpu["details"]
    assert details["resources"] == details["noop"] == 100
    assert set(details["phases"]) == {"start", "import", "load_config", "read_state", "refresh_and_plan"}
    assert cpu["ours"] == details["cpu_seconds"] > 0
    assert rss["ours"] == details["peak_rss_mb"] > 0
    assert cpu["calls_ours"] == sum(details["requests"].values()) <= 6


def test_critical_path_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from scenarios import FULL, critical_path_bound

    # Issue 7's apply: 200 creates at 20/s (20 in the first burst) -> last sent at 9 s.
    assert critical_path_bound(200, 1, FULL) == pytest.approx(9.0 + 0.1 + 5.0 + 0.1)
    # 50 chains: 150 creates -> 6.5 s; the chain depth (two answers first) matters only when short.
    assert critical_path_bound(150, 3, FULL) == pytest.approx(6.5 + 0.1 + 5.0 + 0.1)
    assert critical_path_bound(3, 3, FULL) == pytest.approx(0.2 + 0.1 + 5.0 + 0.1)


def test_selection_reads_each_catalogue_once_where_the_baseline_reads_it_per_instance(rows: Rows) -> None:
    (selection,) = rows["selection"]
    details = selection["details"]
    ours = details["requests_ours"]
    assert ours["shadeform.instance_types.list"] == 1
    assert ours["forward.compute_offerings.list"] == 1
    assert selection["calls_ours"] <= 8
    # The half choosing its provider reads both catalogues per instance in the baseline.
    assert selection["calls_reference"] == 150 and details["size"] == 100
    assert details["with_fallbacks"] == 50  # the half choosing its provider asks for fallback
    assert sum(details["landed"].values()) == 100
    assert details["catalogue"] > 100
