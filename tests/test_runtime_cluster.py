"""A 3-node kv cluster on real nodes: replication, crashes, restarts."""
from __future__ import annotations

import os
import signal
import socket
import time

import psutil
import pytest

import ra_actors as ra
from ra_actors import errors


def _server_pid(c, sid):
    return c.member_overview(sid)["pid"]


def _wal_pid(nodes, node):
    for pid in nodes.pids(node):
        try:
            if any(f.path.endswith("/LOCK") for f in psutil.Process(pid).open_files()):
                return pid
        except psutil.Error:
            continue
    raise AssertionError(f"no WAL process found on {node}")


def _all_equal(kv, keys, timeout=15.0):
    """Every member applied the same index and holds the same values."""
    c = kv.client
    lead = kv.leader()
    target = c.key_metrics(lead)["commit_index"]
    for sid in kv.sids:
        kv.wait_applied(sid, target, timeout)
    for k in keys:
        vals = {sid: c.local_query(sid, "machines.kv:read", k)[0][1] for sid in kv.sids}
        assert len(set(map(repr, vals.values()))) == 1, (k, vals)


def test_commands_are_applied_on_every_member(kv3):
    c = kv3.client
    for i in range(30):
        reply, leader = c.process_command(kv3.sids[i % 3], ("write", f"k{i}", i))
        assert reply == "ok" and leader in kv3.sids
    reply, _ = c.process_command(kv3.sids[1], ("cas", "k1", 1, 100))
    assert reply == "cas_ok"
    value, _ = c.consistent_query(kv3.sids[2], "machines.kv:read", "k1")
    assert value == 100
    _all_equal(kv3, [f"k{i}" for i in range(30)])
    metrics = [c.key_metrics(s) for s in kv3.sids]
    assert len({(m["last_applied"], m["term"]) for m in metrics}) == 1
    assert sorted(m["state"] for m in metrics) == ["follower", "follower", "leader"]
    for m in metrics:
        assert m["membership"] == "voter"
        assert m["last_written_index"] == m["last_index"]


def test_killed_follower_server_is_restarted_and_catches_up(kv3):
    c = kv3.client
    _r, leader = c.process_command(kv3.sids[0], ("write", "a", 0))
    follower = next(s for s in kv3.sids if s != leader)
    old_pid = _server_pid(c, follower)
    os.kill(old_pid, signal.SIGKILL)
    for i in range(100):
        c.process_command(leader, ("write", f"f{i}", i))
    km = kv3.wait_applied(follower, c.key_metrics(leader)["commit_index"])
    assert _server_pid(c, follower) != old_pid
    assert km["state"] == "follower"
    assert c.local_query(follower, "machines.kv:read", "f99")[0][1] == 99
    assert c.overview(follower.node)["servers"]["kv"]["restarts"] == 1


def test_killed_leader_server_gives_a_new_leader_without_losing_writes(kv3):
    c = kv3.client
    acked = {}
    for i in range(50):
        reply, leader = c.process_command(kv3.sids[0], ("write", f"w{i}", i))
        acked[f"w{i}"] = i
    old_leader = leader
    pid = _server_pid(c, old_leader)
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    others = [s for s in kv3.sids if s != old_leader]
    new_leader = None
    while time.monotonic() - t0 < 10:
        try:
            _m, new_leader = c.members(others[0], timeout=1.0)
        except errors.RaError:
            new_leader = None
        if new_leader is not None and new_leader != old_leader:
            break
        time.sleep(0.01)
    elapsed = time.monotonic() - t0
    print(f"\nnew leader {new_leader} {elapsed * 1000:.0f} ms after SIGKILL of the leader's server actor")
    assert new_leader in others
    assert elapsed < 5.0
    for i in range(50, 80):
        reply, _ = c.process_command(new_leader, ("write", f"w{i}", i), timeout=10)
        assert reply == "ok"
        acked[f"w{i}"] = i
    for k, v in acked.items():
        assert c.consistent_query(new_leader, "machines.kv:read", k)[0] == v
    _all_equal(kv3, list(acked)[::7])


def test_killed_node_restarts_from_disk_and_catches_up(kv3):
    c = kv3.client
    nodes = kv3.nodes
    _r, leader = c.process_command(kv3.sids[0], ("write", "before", 1))
    for i in range(100):
        c.process_command(leader, ("write", f"b{i}", i))
    victim = leader.node
    port = nodes.ports[victim]
    pids = nodes.pids(victim)
    t0 = time.monotonic()
    nodes.kill(victim)
    assert nodes.pids(victim) == []
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
    # no orphan keeps the port half-open
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))
    survivors = [s for s in kv3.sids if s.node != victim]
    reply, new_leader = c.process_command(survivors[0], ("write", "during", 1), timeout=15)
    print(f"\nwrite accepted {time.monotonic() - t0:.2f}s after the leader's node was killed")
    assert reply == "ok" and new_leader in survivors
    for i in range(100):
        c.process_command(new_leader, ("write", f"d{i}", i))
    assert c.nodes()[victim] == "down"
    nodes.restart(victim)
    back = ra.ServerId("kv", victim)
    target = c.key_metrics(new_leader)["commit_index"]
    km = kv3.wait_applied(back, target)
    assert km["state"] == "follower"
    assert c.local_query(back, "machines.kv:read", "d99")[0][1] == 99
    assert c.local_query(back, "machines.kv:read", "b99")[0][1] == 99
    reply, _ = c.process_command(back, ("write", "after", 1), timeout=10)
    assert reply == "ok"


def test_killed_wal_actor_under_load_loses_nothing_acknowledged(kv3):
    c = kv3.client
    _r, leader = c.process_command(kv3.sids[0], ("write", "x", 0))
    wal = _wal_pid(kv3.nodes, leader.node)
    acked, pending = {}, {}
    corr = 0
    killed_at = None
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3.0:
        for _ in range(20):
            corr += 1
            pending[corr] = f"p{corr}"
            c.pipeline_command(leader, ("write", f"p{corr}", corr), correlation=corr)
        for e in c.events(0.02):
            if isinstance(e, ra.Applied):
                for cr, reply in e.results:
                    assert reply == "ok"
                    acked[pending.pop(cr)] = cr
            else:
                raise AssertionError(f"unexpected {e}")
        if killed_at is None and time.monotonic() - t0 > 1.0:
            killed_at = len(acked)
            os.kill(wal, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while pending and time.monotonic() < deadline:
        for e in c.events(0.2):
            if isinstance(e, ra.Applied):
                for cr, _reply in e.results:
                    acked[pending.pop(cr)] = cr
    assert killed_at and len(acked) > killed_at, (killed_at, len(acked))
    assert not pending, f"{len(pending)} pipelined commands never applied"
    new_wal = _wal_pid(kv3.nodes, leader.node)
    assert new_wal != wal
    for k, v in list(acked.items())[::25]:
        assert c.consistent_query(leader, "machines.kv:read", k)[0] == v
    _all_equal(kv3, list(acked)[::101])


def test_idle_cluster_sends_nothing(kv3):
    c = kv3.client
    c.process_command(kv3.sids[0], ("write", "a", 1))
    _all_equal(kv3, ["a"])
    time.sleep(0.6)   # the last commit-index round settles
    before = {s: c.member_overview(s)["stats"] for s in kv3.sids}
    time.sleep(2.0)
    after = {s: c.member_overview(s)["stats"] for s in kv3.sids}
    for s in kv3.sids:
        for k in ("rpcs_in", "rpcs_out", "wal_writes"):
            assert after[s][k] == before[s][k], (s, k, before[s], after[s])


def test_segments_and_recovery_with_small_wal_files(tmp_path):
    """Small WAL files: rollovers move entries into segments while the cluster
    runs (mem tables let go of them); restarts recover from segments + WAL."""
    opts = {"log_options": {"wal_max_size_bytes": 64 * 1024}}
    with ra.local_nodes(["n1", "n2", "n3"], data_root=str(tmp_path / "n"), **opts) as nodes:
        c = nodes.client()
        sids = [ra.ServerId("kv", n) for n in ("n1", "n2", "n3")]
        c.start_cluster("kv", "machines.kv", sids)
        _r, leader = c.process_command(sids[0], ("write", "a", 0))
        pending = set()
        for i in range(1500):
            pending.add(i)
            c.pipeline_command(leader, ("write", f"s{i}", "y" * 200), correlation=i)
        deadline = time.time() + 30
        while pending and time.time() < deadline:
            for e in c.events(0.5):
                for cr, _ in getattr(e, "results", ()):
                    pending.discard(cr)
        assert not pending
        deadline = time.time() + 10
        while time.time() < deadline:
            logs = [c.member_overview(s)["log"] for s in sids]
            if all(lg["segments"] > 0 and lg["mem_table_entries"] < 1000 for lg in logs):
                break
            time.sleep(0.2)
        assert all(lg["segments"] > 0 for lg in logs), logs
        assert all(lg["mem_table_entries"] < 1000 for lg in logs), logs
        follower = next(s for s in sids if s != leader)
        os.kill(c.member_overview(follower)["pid"], signal.SIGKILL)
        nodes.kill(leader.node)
        survivor = next(s for s in sids if s not in (leader, follower))
        reply, new_leader = c.process_command(survivor, ("write", "after", 1), timeout=20)
        assert reply == "ok"
        nodes.restart(leader.node)
        for sid in sids:
            deadline = time.time() + 15
            while time.time() < deadline:
                try:
                    if c.local_query(sid, "machines.kv:read", "after", timeout=2)[0][1] == 1:
                        break
                except errors.RaError:
                    pass
                time.sleep(0.1)
            assert c.local_query(sid, "machines.kv:read", "s1499")[0][1] == "y" * 200
            assert c.local_query(sid, "machines.kv:read", "after")[0][1] == 1
