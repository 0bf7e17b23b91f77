"""Tests of the etcd side of the benchmark (``ra_actors/bench/etcd_bench.py``
and its wiring into ``scripts/bench.py``).

Rules: speed is reported by the benchmark, never asserted here.  Tests that
start etcd run only when an ``etcd`` binary is on ``PATH`` (Debian:
``apt-get install etcd-server``) and are skipped with that reason
otherwise; they use a handful of puts and half a second of throughput, and
check that the figures are sane, that the consistency check passed, and
that no etcd process and no temporary directory of the run is left.  The
other tests need no etcd: the missing-binary path, a member that fails to
start, and the ``--json`` keys with the ra_actors phases faked.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import stat
import sys
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ra_actors.bench import etcd_bench as eb  # noqa: E402

ETCD = eb.find_etcd()
needs_etcd = pytest.mark.skipif(ETCD is None, reason=f"etcd side not tested: {eb.MISSING_REASON}")
TINY = {"sync": 20, "warmup": 5, "clients": 2, "connections": 2, "duration": 0.5}


def _live_children() -> list[psutil.Process]:
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                out.append(child)
        except psutil.Error:
            pass
    return out


def _gone(pids: list[int]) -> bool:
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            pass
    return True


class _Recorder:
    """Records every EtcdCluster a run creates (its PIDs and directory)."""

    def __init__(self, monkeypatch) -> None:
        self.clusters: list[eb.EtcdCluster] = []
        self.pids: list[int] = []
        real = eb.EtcdCluster
        recorder = self

        class Recording(real):
            def start(self) -> None:
                recorder.clusters.append(self)
                try:
                    super().start()
                finally:
                    recorder.pids.extend(self.pids)
        monkeypatch.setattr(eb, "EtcdCluster", Recording)

    def check_clean(self) -> None:
        assert self.clusters and len(self.pids) == 3 * len(self.clusters)
        assert _gone(self.pids), "an etcd member outlived the run"
        for c in self.clusters:
            assert c.root is not None and not c.root.exists(), f"{c.root} left behind"
        assert _live_children() == []


# ---------------------------------------------------------------- no etcd needed

def test_puts_are_16_bytes_in_a_bounded_key_space() -> None:
    assert len(eb.payload(0)) == eb.PAYLOAD_BYTES == 16
    assert len(eb.payload(2 ** 40)) == 16
    assert eb.key_for(5) == eb.key_for(5 + eb.KEY_SPACE) == b"k0005"
    assert len({eb.key_for(i) for i in range(3 * eb.KEY_SPACE)}) == eb.KEY_SPACE


def test_missing_etcd_is_a_skipped_result_saying_how_to_get_it(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))   # an empty directory: no etcd on PATH
    assert eb.find_etcd() is None
    res = eb.run_etcd(**TINY)
    assert res["skipped"] is True and "apt-get install etcd-server" in res["reason"]
    assert set(eb.RESULT_KEYS) <= set(res)
    assert res["sync_p50_ms"] is None and res["ops_per_s"] is None
    assert "not measured" in eb.format_report(res) and "apt-get install etcd-server" in eb.format_report(res)


def test_a_member_that_fails_to_start_is_an_error_naming_its_log(tmp_path) -> None:
    fake = tmp_path / "etcd"
    fake.write_text("#!/bin/sh\necho 'etcd: cannot start (test)' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    cluster = eb.EtcdCluster(str(fake), start_timeout=10.0)
    try:
        with pytest.raises(eb.EtcdError) as info:
            with cluster:
                raise AssertionError("a cluster of failing members started")
        text = str(info.value)
        logs = [m.log_path for m in cluster.members]
        assert any(str(p) in text for p in logs), text
        assert "cannot start (test)" in text    # the log's last lines are in the message
        assert all(p.exists() for p in logs)    # kept: the error names them
        assert not any(m.data_dir.exists() for m in cluster.members)
        assert _gone(cluster.pids) and _live_children() == []
    finally:
        if cluster.root is not None:
            shutil.rmtree(cluster.root, ignore_errors=True)


# ---------------------------------------------------------------- real etcd

@needs_etcd
def test_run_etcd_tiny(monkeypatch) -> None:
    rec = _Recorder(monkeypatch)
    lines: list[str] = []
    res = eb.run_etcd(progress=lines.append, **TINY)
    rec.check_clean()
    assert res["skipped"] is False and res["error"] is None
    assert res["version"].startswith("3.") and res["members"] == 3
    assert "fsync" in res["fsync"]
    for key in ("sync_p50_ms", "sync_p99_ms", "sync_mean_ms", "sync_max_ms", "ops_per_s",
                "etcd_cpu_ms_per_put", "client_cpu_ms_per_put"):
        assert isinstance(res[key], float) and res[key] > 0, key
    assert res["sync_p50_ms"] <= res["sync_p99_ms"] <= res["sync_max_ms"]
    assert res["sync_n"] == TINY["sync"] and res["sync_failed"] == 0
    assert res["sync"]["reconnects"] == 0          # one keep-alive connection throughout
    assert res["clients"] == 2 and res["connections"] == 2 and res["inflight"] == 4
    assert res["acked"] > 0 and res["failed"] == 0
    # every acknowledged put made exactly one revision, on every member
    assert res["consistent"] is True
    assert res["consistency"]["grown"] == res["acked"]
    assert len(set(res["consistency"]["revisions"])) == 1
    assert any("starting 3 members" in line for line in lines)
    report = eb.format_report(res)
    assert "consistency [etcd]: OK" in report and res["version"] in report


@needs_etcd
def test_cluster_is_stopped_on_keyboard_interrupt() -> None:
    cluster = eb.EtcdCluster(ETCD)
    with pytest.raises(KeyboardInterrupt):
        with cluster:
            pids = cluster.pids
            assert len(pids) == 3 and not _gone(pids)
            gw = cluster.gateway()
            try:
                assert gw.put(b"k", b"v" * 16) > 1
            finally:
                gw.close()
            raise KeyboardInterrupt
    assert _gone(pids) and not cluster.root.exists() and _live_children() == []


# ---------------------------------------------------------------- scripts/bench.py

def _bench_script():
    spec = importlib.util.spec_from_file_location("bench_script", REPO / "scripts" / "bench.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fake_ra(plan: dict, placement: str) -> dict:
    run = {"machine": "null", "window": 64, "clients": 1, "ops_per_s": 1000.0, "node_cpu_ms_per_cmd": 0.1,
           "acked": 500}
    return {"placement": placement, "runs": [run], "errors": [],
            "sync": {"acked": 20, "p50_ms": 1.5, "p99_ms": 3.0, "max_ms": 4.0, "mean_ms": 1.7},
            "durability": {"ok": True, "clusters_checked": 2, "acked_total": 520}}


def _bench_json(monkeypatch, tmp_path, *extra: str) -> tuple[dict, str, int]:
    """``scripts/bench.py --tiny`` with the ra_actors phases faked (no nodes)."""
    bench = _bench_script()
    monkeypatch.setattr(bench, "run_ra", _fake_ra)
    out = tmp_path / "bench.json"
    rc = bench.main(["--tiny", "--no-pysyncobj", "--placements", "shared,process", "--clusters", "0",
                     "--shared-clusters", "0", "--json", str(out), *extra])
    return json.loads(out.read_text()), out, rc


def _check_ra_keys(res: dict) -> None:
    for placement in ("shared", "process"):
        ra = res["ra_actors_by_placement"][placement]
        assert ra["sync_p50_ms"] == 1.5 and ra["sync_p99_ms"] == 3.0 and ra["sync_mean_ms"] == 1.7


def test_bench_json_records_a_missing_etcd_as_skipped(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    res, _, rc = _bench_json(monkeypatch, tmp_path)
    assert rc == 0
    _check_ra_keys(res)
    e = res["etcd"]
    assert e["skipped"] is True and "apt-get install etcd-server" in e["reason"]
    for key in ("sync_p50_ms", "sync_p99_ms", "ops_per_s"):
        assert key in e and e[key] is None
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("etcd: not measured, "))
    assert "apt-get install etcd-server" in row


def test_bench_no_etcd_flag(monkeypatch, tmp_path) -> None:
    res, _, rc = _bench_json(monkeypatch, tmp_path, "--no-etcd")
    assert rc == 0 and res["etcd"]["skipped"] is True and res["etcd"]["reason"] == "--no-etcd"
    assert res["etcd"]["sync_p50_ms"] is None


@needs_etcd
def test_bench_json_has_the_etcd_figures(monkeypatch, tmp_path, capsys) -> None:
    rec = _Recorder(monkeypatch)
    res, _, rc = _bench_json(monkeypatch, tmp_path)
    rec.check_clean()
    assert rc == 0
    _check_ra_keys(res)
    e = res["etcd"]
    assert e["skipped"] is False and e["consistent"] is True
    for key in ("sync_p50_ms", "sync_p99_ms", "ops_per_s"):
        assert isinstance(e[key], float) and e[key] > 0, key
    assert e["sync_n"] == res["plan"]["sync"] and e["inflight"] == 4
    out = capsys.readouterr().out
    assert any(line.startswith(f"etcd {e['version']} (fsync)") for line in out.splitlines()), out
    assert "consistency [etcd]: OK" in out


def test_bench_reports_a_failed_etcd_and_exits_1(monkeypatch, tmp_path) -> None:
    bench = _bench_script()
    monkeypatch.setattr(bench, "run_ra", _fake_ra)

    def boom(plan):
        raise eb.EtcdError("etcd member e1 exited with code 1 while starting; its log: /x/e1.log")
    monkeypatch.setattr(bench, "run_etcd", boom)
    out = tmp_path / "bench.json"
    rc = bench.main(["--tiny", "--no-pysyncobj", "--placements", "shared", "--clusters", "0",
                     "--shared-clusters", "0", "--json", str(out)])
    e = json.loads(out.read_text())["etcd"]
    assert rc == 1 and e["skipped"] is False and "/x/e1.log" in e["error"] and e["sync_p50_ms"] is None
