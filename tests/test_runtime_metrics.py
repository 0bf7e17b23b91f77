"""Counters and metrics on real nodes (Ra's ra_counters / seshat), in both
placements: every server and storage service writes its counters into the
node's counters file; key_metrics, ``ra-actors metrics`` and the HTTP
endpoint read them without asking the server."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

import ra_actors as ra
from ra_actors import errors
from ra_actors.metrics.block import CountersReader
from runtime_helpers import wait_for as _wait

PLACEMENTS = ("process", "shared")


@pytest.fixture(params=PLACEMENTS)
def nodes(request, tmp_path):
    with ra.local_nodes(["n1", "n2", "n3"], data_root=str(tmp_path / "nodes"), placement=request.param,
                        metrics_port=0) as nodes:
        yield nodes


def _servers(data_dir):
    with CountersReader(data_dir) as reader:
        return {s.name: s for s in reader.slots() if s.kind == "server"}


def _services(data_dir):
    with CountersReader(data_dir) as reader:
        return {s.kind: s for s in reader.slots() if s.kind != "server"}


def _start_kv(c):
    sids = [ra.ServerId("kv", n) for n in ("n1", "n2", "n3")]
    started, _ = c.start_cluster("kv", "machines.kv", sids)
    assert sorted(started) == sorted(sids)
    return sids


def test_counters_count_what_the_servers_and_the_wal_do(nodes):
    c = nodes.client()
    sids = _start_kv(c)
    wal_before = _services(nodes.data_dir("n1"))["wal"].values
    leader = None
    for i in range(30):
        _r, leader = c.process_command(sids[i % 3], ("write", f"k{i}", i))
    c.local_query(leader, "machines.kv:read", "k1")
    km = c.key_metrics(leader)
    assert km["state"] == "leader" and km["membership"] == "voter"
    assert set(km) == {"last_applied", "commit_index", "snapshot_index", "last_written_index", "last_index",
                       "commit_latency", "term", "state", "membership"}
    assert isinstance(km["commit_latency"], int) and 0 <= km["commit_latency"] < 5000
    assert km["commit_index"] >= km["last_applied"] >= 31      # 30 commands and the leader's noop

    mine = _servers(nodes.data_dir(leader.node))["kv"]
    assert mine.status == "running" and mine.cluster == "kv"
    assert mine.values["commands"] >= 10             # a third were sent to it directly; the rest forwarded
    assert mine.values["applied"] >= 31 and mine.values["queries"] == 1
    assert mine.values["rpcs_sent"] > 0 and mine.values["wal_writes"] > 0
    assert mine.values["term"] == km["term"]
    for sid in sids:
        _wait(lambda sid=sid: _servers(nodes.data_dir(sid.node))["kv"].values["last_applied"] >= 31,
              what=f"{sid} applied")
    elections = sum(_servers(nodes.data_dir(s.node))["kv"].values["elections"] for s in sids)
    assert elections >= 1

    # the WAL publishes its counters after each flush, from its sync thread
    _wait(lambda: _services(nodes.data_dir(leader.node))["wal"].values["writes"] >= 31, what="the WAL's counters")
    wal = _services(nodes.data_dir(leader.node))["wal"]
    assert wal.status == "running"
    assert wal.values["batches"] > wal_before["batches"] and wal.values["writes"] >= 31
    assert wal.values["bytes_written"] > 0 and wal.values["syncs"] == wal.values["batches"]
    assert wal.values["max_file_size"] == 256_000_000


def test_key_metrics_answer_while_the_server_cannot(nodes):
    """SIGSTOP the process that runs a server (its own, or the host with
    every server of the node): a call to the server times out, its key
    metrics still come, from its node's counters."""
    c = nodes.client()
    sids = _start_kv(c)
    _r, leader = c.process_command(sids[0], ("write", "a", 1))
    follower = next(s for s in sids if s != leader)
    _wait(lambda: c.key_metrics(follower)["last_applied"] >= 2, what="follower applied")
    pid = c.member_overview(follower)["pid"]
    assert pid != c.overview(follower.node)["pid"], "the server does not run in its supervisor"
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(errors.Timeout):
            c.member_overview(follower, timeout=1.0)
        t0 = time.monotonic()
        km = c.key_metrics(follower, timeout=2.0)
        assert time.monotonic() - t0 < 1.5
        assert km["state"] == "follower" and km["last_applied"] >= 2
    finally:
        os.kill(pid, signal.SIGCONT)


def test_counters_go_on_across_a_restart_and_go_with_the_data(nodes):
    c = nodes.client()
    sids = _start_kv(c)
    _r, leader = c.process_command(sids[0], ("write", "a", 1))
    follower = next(s for s in sids if s != leader)
    data_dir = nodes.data_dir(follower.node)
    _wait(lambda: _servers(data_dir)["kv"].values["applied"] >= 2, what="follower applied")
    before = _servers(data_dir)["kv"].values
    c.stop_server(follower)
    stopped = _servers(data_dir)["kv"]
    assert stopped.status == "stopped" and stopped.values["applied"] == before["applied"]
    with pytest.raises(errors.NoSuchServer):
        c.key_metrics(follower, timeout=2)
    for i in range(5):
        c.process_command(leader, ("write", "b", i))
    c.restart_server(follower)
    commit = c.key_metrics(leader)["commit_index"]
    _wait(lambda: c.key_metrics(follower)["last_applied"] >= commit, what="restarted follower caught up")
    after = _servers(data_dir)["kv"]
    assert after.status == "running"
    # a counter goes on from where it was (the restarted server counts from zero itself)
    assert after.values["applied"] >= before["applied"] + 5
    assert after.values["rpcs_received"] > before["rpcs_received"]
    c.delete_cluster(sids, timeout=15)
    _wait(lambda: "kv" not in _servers(data_dir), what="the deleted server's slot freed")


def _parse(text):
    """``{(name, frozenset(labels)): value}`` of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r'([a-z_]+)(?:\{(.*)\})? (\S+)', line)
        assert m, line
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def test_prometheus_text_from_the_cli_and_over_http(nodes):
    c = nodes.client()
    sids = _start_kv(c)
    for i in range(10):
        _r, leader = c.process_command(sids[0], ("write", "k", i))
    node = leader.node
    port = nodes[node].metrics_port
    assert port and ra.node_status(nodes.data_dir(node))["metrics_port"] == port
    labels = frozenset({("node", node), ("server", "kv"), ("cluster", "kv")})

    def scrape():
        return _parse(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode())

    wal_writes = ("ra_wal_writes_total", frozenset({("node", node)}))
    wal_batches = ("ra_wal_batches_total", frozenset({("node", node)}))
    # A command is acknowledged once a majority holds it, which may be before
    # the leader's own WAL write of it is counted.  (Entries, not batches: a
    # loaded WAL writes entries that arrive together in one batch.)
    _wait(lambda: scrape().get(wal_writes, 0) >= 11, what="the leader's WAL writes in the scrape")
    http = scrape()
    assert 1 <= http[wal_batches] <= http[wal_writes]
    assert http[("ra_server_up", labels)] == 1
    assert http[("ra_server_state", labels | {("state", "leader")})] == 1
    assert http[("ra_server_membership", labels | {("membership", "voter")})] == 1
    assert http[("ra_server_applied_total", labels)] >= 11
    assert 0 <= http[("ra_server_commit_latency_seconds", labels)] < 5

    out = subprocess.run([sys.executable, "-m", "ra_actors.cli", "metrics", "--data-dir", nodes.data_dir("n1"),
                          "--data-dir", nodes.data_dir("n2")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    cli = _parse(out.stdout)
    nodes_seen = {dict(lbl)["node"] for (name, lbl) in cli if name == "ra_server_term"}
    assert nodes_seen == {"n1", "n2"}
    # the endpoint follows the node: a stopped server shows its last counters, not up
    follower = next(s for s in sids if s.node != node and s.node in ("n1", "n2"))
    c.stop_server(follower)
    again = subprocess.run([sys.executable, "-m", "ra_actors.cli", "metrics", "--data-dir",
                            nodes.data_dir(follower.node)], capture_output=True, text=True, timeout=60)
    flabels = frozenset({("node", follower.node), ("server", "kv"), ("cluster", "kv")})
    assert _parse(again.stdout)[("ra_server_up", flabels)] == 0


def test_metrics_of_a_directory_without_a_node(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ra_actors.cli", "metrics", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 3 and "no counters" in out.stderr


def test_bad_metrics_port_is_refused_before_anything_starts(tmp_path):
    for bad in (-1, 70000, "9100", True):
        with pytest.raises(ValueError, match="metrics_port"):
            ra.start_node("x", str(tmp_path / "x"), 1, metrics_port=bad)
    assert not os.path.exists(tmp_path / "x" / "node.json")
