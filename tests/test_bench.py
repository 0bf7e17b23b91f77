"""Tests of the ra_actors benchmark (``scripts/bench.py``).

Rules: speed is reported, never asserted.  The end-to-end test runs the
real script in its tiny mode (three nodes, a few commands, C=2, PySyncObj
with a handful of commands) and checks the JSON document's structure, the
durability checks and that no process outlives the run.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ra_actors.bench import null_machine  # noqa: E402
from ra_actors.bench import ra_bench  # noqa: E402
from ra_actors.core import messages as m  # noqa: E402
from ra_actors.core.types import Entry, NotifyReply, ServerId, Usr  # noqa: E402


def test_commands_are_16_bytes() -> None:
    assert len(ra_bench.payload(0)) == ra_bench.PAYLOAD_BYTES == 16
    assert len(ra_bench.payload(2 ** 40)) == 16
    assert ra_bench.command_for("null", 5) == ra_bench.payload(5)
    assert ra_bench.command_for("kv", 1030) == ("write", 6, ra_bench.payload(1030))


def test_null_machine_counts_and_chains() -> None:
    s = null_machine.init({})
    s, r = null_machine.apply(None, b"a", s)
    assert r == 1
    s2, r2 = null_machine.apply(None, b"b", s)
    assert r2 == 2 and s2[0] == 2
    other, _ = null_machine.apply(None, b"a", null_machine.apply(None, b"b", null_machine.init({}))[0])
    assert other[0] == 2 and other[1] != s2[1]   # order matters
    assert null_machine.apply(None, "x", s)[1] == ("error", "unknown_command")


def test_kv_digest_is_order_independent() -> None:
    a = {"kv": {1: b"x", 2: b"y"}}
    b = {"kv": {2: b"y", 1: b"x"}}
    assert ra_bench.kv_digest(a) == ra_bench.kv_digest(b)
    assert ra_bench.kv_digest(a) != ra_bench.kv_digest({"kv": {1: b"x"}})


def test_fast_pickle_round_trips_core_records() -> None:
    import pickle
    sid = ServerId("c", "n1")
    ents = tuple(Entry(i, 1, Usr(b"x" * 16, NotifyReply(i, "client:n1:abc"), 7)) for i in range(5))
    msgs = [m.AppendEntriesRpc(1, sid, 3, 2, 1, ents), m.ElectionTimeout(), m.Tick(5),
            m.AppendEntriesReply(1, sid, True, 5, 4, 1), m.Commands((m.Command(b"x", NotifyReply(1, "h")),))]
    for msg in msgs:
        assert pickle.loads(pickle.dumps(msg)) == msg


def _bench_children() -> list:
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                out.append(child)
        except psutil.Error:
            pass
    return out


def test_bench_tiny_end_to_end(tmp_path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "--tiny", "--json", str(out)],
                          cwd=str(REPO), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    ra = res["ra_actors"]
    for key in ("pipelined_ops_per_s", "sync_p50_ms", "sync_p99_ms"):
        assert isinstance(ra[key], float) and ra[key] > 0, key
    assert ra["sync_p50_ms"] <= ra["sync_p99_ms"] <= ra["sync_max_ms"]
    assert ra["durable"] is True
    assert ra["durability"]["ok"] is True and ra["durability"]["clusters_checked"] == 2
    assert ra["errors"] == []
    machines = {r["machine"] for r in ra["runs"]}
    assert machines == {"null", "kv"}
    assert {r["clients"] for r in ra["runs"]} == {1, 2}
    for r in ra["runs"]:
        assert r["acked"] > 0 and r["rejected"] == 0 and r["unacknowledged"] == 0

    p = res["pysyncobj"]
    for key in ("async_ops_per_s", "sync_p50_ms", "nobatch_async_ops_per_s", "nobatch_sync_p50_ms"):
        assert isinstance(p[key], float) and p[key] > 0, key
    assert p["consistent"] is True
    assert isinstance(res["throughput_ratio"], float) and res["throughput_ratio"] > 0

    assert len(res["scale"]) == 1
    row = res["scale"][0]
    for key in ("clusters", "start_s", "rss_mb", "uss_mb", "idle_cpu_pct", "idle_msgs_per_s", "busy_ops_per_s"):
        assert key in row, key
    assert row["clusters"] == 2 and row["durable"] is True
    assert row["rss_mb"] >= row["uss_mb"] > 0
    assert row["idle_msgs_per_s"] >= 0 and row["busy_ops_per_s"] > 0
    assert "durability: OK" in proc.stdout and "PySyncObj" in proc.stdout
    assert _bench_children() == []
