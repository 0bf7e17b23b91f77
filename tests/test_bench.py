"""Tests of the ra_actors benchmark (``scripts/bench.py``).

Rules: speed is reported, never asserted.  The end-to-end test runs the
real script in its tiny mode (both placements, three nodes each, a few
commands, C=2 per placement, PySyncObj with a handful of commands, etcd
with a handful of puts when it is on PATH) and
checks the JSON document's structure, the durability checks and that no
process outlives the run.  The other tests need no nodes.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ra_actors.bench import null_machine  # noqa: E402
from ra_actors.bench import ra_bench  # noqa: E402
from ra_actors.core import messages as m  # noqa: E402
from ra_actors.core.types import Entry, NotifyReply, ServerId, Usr  # noqa: E402

import machines.kv as kv_machine  # noqa: E402


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
    assert kv_machine.digest(a) == kv_machine.digest(b)
    assert kv_machine.digest(a) != kv_machine.digest({"kv": {1: b"x"}})


def test_fast_pickle_round_trips_core_records() -> None:
    import pickle
    sid = ServerId("c", "n1")
    ents = tuple(Entry(i, 1, Usr(b"x" * 16, NotifyReply(i, "client:n1:abc"), 7)) for i in range(5))
    msgs = [m.AppendEntriesRpc(1, sid, 3, 2, 1, ents), m.ElectionTimeout(), m.Tick(5),
            m.AppendEntriesReply(1, sid, True, 5, 4, 1), m.Commands((m.Command(b"x", NotifyReply(1, "h")),))]
    for msg in msgs:
        assert pickle.loads(pickle.dumps(msg)) == msg


def _bench_script():
    spec = importlib.util.spec_from_file_location("bench_script", REPO / "scripts" / "bench.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_scale_plan_per_placement(monkeypatch) -> None:
    """Each placement gets its own C list; a failing C stops the larger C
    of the same placement only; ``--clusters 0`` keeps the shared rows."""
    bench = _bench_script()
    calls = []

    def fake_row(plan, placement, c):
        calls.append((placement, c))
        row = {"placement": placement, "clusters": c, "durable": True}
        if (placement, c) == ("shared", 100):
            row["error"] = "boom"
        return row
    monkeypatch.setattr(bench, "scale_row", fake_row)
    plan = {"placements": ["shared", "process"], "shared_clusters": [10, 100, 300], "clusters": [10, 20]}
    rows = bench.run_scale(plan)
    assert calls == [("shared", 10), ("shared", 100), ("process", 10), ("process", 20)]
    assert [r["placement"] for r in rows] == ["shared", "shared", "process", "process"]

    seen = {}

    def fake_scale(plan):
        seen.update(plan)
        return []
    monkeypatch.setattr(bench, "run_scale", fake_scale)
    monkeypatch.setattr(bench, "run_ra", lambda plan, placement: (_ for _ in ()).throw(AssertionError))
    assert bench.main(["--tiny", "--no-pysyncobj", "--placements", "shared", "--only-scale",
                       "--shared-clusters", "300,1000", "--clusters", "0", "--busy-clusters", "500"]) == 0
    assert seen["placements"] == ["shared"] and seen["shared_clusters"] == [300, 1000]
    assert seen["clusters"] == [] and seen["busy_clusters"] == 500


def test_parallel_uses_one_client_per_thread_and_raises() -> None:
    class FakeNodes:
        def client(self):
            return object()
    b = ra_bench.RaBench()
    b.nodes, b.client = FakeNodes(), object()
    users: dict = {}
    lock = threading.Lock()

    def fn(client, item):
        with lock:
            users.setdefault(id(client), set()).add(threading.get_ident())
        return item * 2
    assert b.parallel(list(range(50)), fn, workers=4) == [i * 2 for i in range(50)]
    assert all(len(threads) == 1 for threads in users.values()) and len(users) <= 4

    def bad(client, item):
        if item == 7:
            raise ValueError("seven")
        return item
    try:
        b.parallel(list(range(20)), bad, workers=3)
    except ValueError as exc:
        assert str(exc) == "seven"
    else:
        raise AssertionError("the worker's exception was not raised")


def test_idle_sample_is_extrapolated(monkeypatch) -> None:
    import ra_actors as ra
    b = ra_bench.RaBench()
    b.clusters = {f"s{i}": {"members": [ra.ServerId(f"s{i}", n) for n in ra_bench.NODES]} for i in range(100)}
    reads = []

    def server_messages(sids=None, workers=1):
        reads.append(list(sids))
        # second read: 3 more messages per server, one of them the first
        # read's request (subtracted by idle): 2 per server in the window
        return (len(reads) - 1) * 3 * len(sids), len(sids)
    monkeypatch.setattr(b, "server_messages", server_messages)
    monkeypatch.setattr(b, "supervisor_messages", lambda: 0)
    monkeypatch.setattr(b, "node_pids", lambda: [])
    out = b.idle(0.01, server_sample=30)
    assert len(reads) == 2 and reads[0] == reads[1] and len(set(reads[0])) == 30
    assert out["sampled"] and out["servers"] == 300 and out["servers_read"] == 30
    assert out["server_msgs_sampled"] == 60 and out["server_msgs"] == 600
    reads.clear()
    out = b.idle(0.01, server_sample=1000)
    assert not out["sampled"] and out["servers_read"] == 300 and out["server_msgs"] == 600


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
    assert res["ra_actors"]["placement"] == "shared"    # the first of the default --placements
    assert set(res["ra_actors_by_placement"]) == {"shared", "process"}
    assert res["ra_actors_by_placement"]["shared"] == res["ra_actors"]
    for placement, ra in res["ra_actors_by_placement"].items():
        assert ra["placement"] == placement
        for key in ("pipelined_ops_per_s", "sync_p50_ms", "sync_p99_ms", "sync_mean_ms"):
            assert isinstance(ra[key], float) and ra[key] > 0, (placement, key)
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
    assert set(res["throughput_ratio_by_placement"]) == {"shared", "process"}
    assert res["throughput_ratio_by_placement"]["shared"] == res["throughput_ratio"]

    e = res["etcd"]   # always there: measured when etcd is on PATH, else skipped with the reason
    if e["skipped"]:
        assert "apt-get install etcd-server" in e["reason"] and e["sync_p50_ms"] is None
        assert "etcd: not measured, " in proc.stdout
    else:
        for key in ("sync_p50_ms", "sync_p99_ms", "ops_per_s"):
            assert isinstance(e[key], float) and e[key] > 0, key
        assert e["consistent"] is True and "consistency [etcd]: OK" in proc.stdout

    assert [row["placement"] for row in res["scale"]] == ["shared", "process"]
    for row in res["scale"]:
        for key in ("clusters", "start_s", "rss_mb", "uss_mb", "idle_cpu_pct", "idle_msgs_per_s", "busy_ops_per_s",
                    "starters", "busy_clusters"):
            assert key in row, key
        assert row["clusters"] == 2 and row["durable"] is True and "error" not in row
        assert row["busy_clusters"] == 2 and row["idle_server_sample"] is None and row["idle_servers_read"] == 6
        assert row["rss_mb"] >= row["uss_mb"] > 0
        assert row["idle_msgs_per_s"] >= 0 and row["busy_ops_per_s"] > 0
    for text in ("durability [shared]: OK", "durability [process]: OK", "placement shared", "placement process",
                 "PySyncObj default", "PySyncObj appendEntriesUseBatch=False"):
        assert text in proc.stdout, text
    assert _bench_children() == []
