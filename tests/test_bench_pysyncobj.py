"""Tests of the PySyncObj reference benchmark and of the shared stats helpers.

Rules: speed is reported by the benchmark, never asserted here.  The
benchmark test runs the real thing (three PySyncObj processes on loopback,
both configurations) with a handful of commands, and checks the result's
shape, that the rates are positive, that every replica holds exactly the
acknowledged commands, and that no node process outlives the run.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ra_actors.bench import pysyncobj_bench as psb  # noqa: E402
from ra_actors.bench.stats import (  # noqa: E402
    format_table, format_value, median, percentile, summarize_latencies,
)


def _node_children() -> list[psutil.Process]:
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "--node" in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                out.append(child)
        except psutil.Error:
            pass
    return out


# ---------------------------------------------------------------- stats

def test_median() -> None:
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 3, 2]) == 2.5
    assert median([7]) == 7
    with pytest.raises(ValueError):
        median([])


def test_percentile_nearest_rank() -> None:
    xs = list(range(1, 101))  # 1..100
    assert percentile(xs, 50) == 50
    assert percentile(xs, 99) == 99
    assert percentile(xs, 100) == 100
    assert percentile(xs, 0) == 1
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0
    # Always one of the samples, never interpolated.
    assert percentile([1.0, 10.0], 50) == 1.0
    assert percentile([1.0, 10.0], 51) == 10.0
    assert percentile([2.5], 99) == 2.5
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_latencies_in_ms() -> None:
    s = summarize_latencies([0.001 * i for i in range(1, 201)])  # 1..200 ms
    assert s["n"] == 200
    assert s["p50_ms"] == pytest.approx(100.0)
    assert s["p99_ms"] == pytest.approx(198.0)
    assert s["max_ms"] == pytest.approx(200.0)
    assert s["min_ms"] == pytest.approx(1.0)
    assert s["mean_ms"] == pytest.approx(100.5)


def test_format_value() -> None:
    assert format_value(None) == "-"
    assert format_value(True) == "yes"
    assert format_value(12345) == "12,345"
    assert format_value(32918.4) == "32,918"
    assert format_value(0.384) == "0.38"
    assert format_value("x") == "x"


def test_format_table_alignment() -> None:
    text = format_table(["name", "ops/s", "ok"],
                        [["default", 32918.0, True], ["nobatch", 7008.5, False], ["x", None, True]])
    lines = text.splitlines()
    assert len(lines) == 5
    assert lines[0].startswith("name")
    assert set(lines[1].replace(" ", "")) == {"-"}
    # Numbers right aligned: the column's cells end at the same position.
    col_end = lines[0].index("ops/s") + len("ops/s")
    assert lines[2][:col_end].endswith("32,918")
    assert lines[3][:col_end].endswith("7,008") or lines[3][:col_end].endswith("7,009")
    assert lines[4][:col_end].endswith("-")
    # Text left aligned.
    assert lines[2].startswith("default ")
    with pytest.raises(ValueError):
        format_table(["a", "b"], [[1]])


# ---------------------------------------------------------------- benchmark

def test_payload_is_16_bytes_and_digest_is_order_sensitive() -> None:
    assert len(psb._payload(0)) == psb.PAYLOAD_BYTES == 16
    assert len(psb._payload(2 ** 40)) == 16
    assert psb.expected_digest(3) != psb.expected_digest(2)
    assert psb.expected_digest(0) == 0


def test_plan_small_commands_bound_every_phase() -> None:
    plan = psb._plan(True, None, 10, None, 1024)
    assert plan["commands"] == 10
    assert plan["sync_commands"] <= 10
    assert plan["warmup_async"] <= 10
    assert plan["repeats"] == 1
    full = psb._plan(False, None, None, None, 1024)
    assert full["sync_commands"] >= 2000
    assert full["repeats"] == 3


def test_cluster_processes_are_reaped_on_error() -> None:
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"):
        with psb._Cluster(psb.CONFIGS["nobatch"][1]) as cluster:
            pids = [p.pid for p in cluster.procs]
            assert len(pids) == 3
            assert all(p.poll() is None for p in cluster.procs)
            raise RuntimeError("boom")
    assert len(pids) == 3
    assert all(p.returncode is not None for p in cluster.procs)
    assert _node_children() == []


def test_run_pysyncobj_quick_few_commands() -> None:
    result: dict[str, Any] = psb.run_pysyncobj(quick=True, commands=20)
    for key in ("async_ops_per_s", "sync_p50_ms", "sync_p99_ms", "sync_max_ms",
                "nobatch_async_ops_per_s", "nobatch_sync_p50_ms", "nobatch_sync_p99_ms"):
        assert isinstance(result[key], float), key
        assert result[key] > 0, key
    assert result["sync_p50_ms"] <= result["sync_p99_ms"] <= result["sync_max_ms"]
    assert result["nobatch_sync_p50_ms"] <= result["nobatch_sync_p99_ms"]
    assert result["fsync"] is False
    assert result["journal"] is False
    assert isinstance(result["version"], str) and result["version"].startswith("0.3")
    assert result["repeats"] == 1
    assert result["failed_runs"] == 0
    assert result["consistent"] is True

    runs = result["runs"]
    assert sorted(r["config"] for r in runs) == ["default", "nobatch"]
    for run in runs:
        assert "error" not in run
        assert run["async"]["n"] == 20 and run["async"]["acked"] == 20
        assert run["sync"]["acked"] == run["sync"]["n"] > 0
        assert run["failed_total"] == 0
        assert run["consistent"] is True
        assert run["digest_ok"] is True
        assert run["replicas_agree"] is True
        replicas = run["replicas"]
        assert len(replicas) == 3
        assert len({r["self"] for r in replicas}) == 3
        assert all(r["self"].startswith("127.0.0.1:") for r in replicas)
        # Every replica holds exactly the acknowledged commands.
        assert {r["counter"] for r in replicas} == {run["acked_total"]}
        assert run["acked_total"] == run["submitted_total"]
        assert isinstance(run["truncations"], int) and run["truncations"] >= 0

    report = psb.format_report(result)
    assert "fsync: never" in report
    assert "appendEntriesUseBatch=False" in report
    assert _node_children() == []
