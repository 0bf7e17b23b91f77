"""Placement mode ``shared``: one host actor per node carries every server of
the node and the node's WAL, each server still its own ServerId: addressed,
monitored, crashed and restarted alone."""
from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

import ra_actors as ra
from ra_actors import errors
from ra_actors.nodes import free_port
from runtime_helpers import wait_for as _wait


@pytest.fixture
def shared3(tmp_path):
    with ra.local_nodes(["n1", "n2", "n3"], data_root=str(tmp_path / "nodes"), placement="shared",
                        allowed_modules=["ra_actors.testing.crash_machine"]) as nodes:
        yield nodes


def _sids(name):
    return [ra.ServerId(name, n) for n in ("n1", "n2", "n3")]


def _start(c, name, machine="machines.kv"):
    sids = _sids(name)
    started, failed = c.start_cluster(name, machine, sids)
    assert sorted(started) == sorted(sids) and not failed
    return sids


def _incarnation(c, sid):
    return c.overview(sid.node)["servers"][sid.name]["incarnation"]


def test_servers_of_a_node_share_one_process_and_replicate(shared3):
    c = shared3.client()
    a, b = _start(c, "a"), _start(c, "b")
    for i in range(20):
        assert c.process_command(a[i % 3], ("write", f"k{i}", i))[0] == "ok"
        assert c.process_command(b[i % 3], ("write", f"k{i}", -i))[0] == "ok"
    for node in ("n1", "n2", "n3"):
        pa = c.member_overview(ra.ServerId("a", node))["pid"]
        pb = c.member_overview(ra.ServerId("b", node))["pid"]
        assert pa == pb, "both servers of a node live in its host process"
        assert pa in shared3.pids(node)
        assert c.overview(node)["pid"] != pa, "the host is not the supervisor"
    for sids, sign in ((a, 1), (b, -1)):
        leader = c.members(sids[0])[1]
        commit = c.key_metrics(leader)["commit_index"]
        for sid in sids:
            _wait(lambda: c.key_metrics(sid)["last_applied"] >= commit, what=f"{sid} applied")
            assert c.local_query(sid, "machines.kv:read", "k19")[0][1] == 19 * sign
    # each server is still its own member, with its own incarnation (unique
    # on its node; servers of different nodes may happen to share a value)
    for sa, sb in zip(a, b):
        assert _incarnation(c, sa) != _incarnation(c, sb)


def test_a_crashing_server_restarts_alone_inside_the_host(shared3, tmp_path):
    c = shared3.client()
    crashy = _start(c, "crashy", "ra_actors.testing.crash_machine")
    calm = _start(c, "calm")
    c.process_command(calm[0], ("write", "x", 1))
    calm_incs = {s: _incarnation(c, s) for s in calm}
    crashy_incs = {s: _incarnation(c, s) for s in crashy}
    host_pids = {n: c.member_overview(ra.ServerId("calm", n))["pid"] for n in ("n1", "n2", "n3")}
    # a monitor on one crashy server, from the calm cluster's machine
    watcher = ra.ServerId("calm", "n1")
    flag = tmp_path / "crash-now"
    flag.write_text("1")
    with pytest.raises(errors.RaError):
        c.process_command(crashy[0], ("crash_if", str(flag)), timeout=2.0)
    # every crashy server crashed (and keeps crashing on replay) ...
    _wait(lambda: all(_incarnation(c, s) != crashy_incs[s] for s in crashy), what="crashy restarted")
    flag.unlink()
    # ... and comes back once the entry no longer raises
    _wait(lambda: c.process_command(crashy[0], ("add", 5), timeout=2.0)[0] == 5, what="crashy back")
    # the other cluster in the same hosts never noticed
    for s in calm:
        assert _incarnation(c, s) == calm_incs[s]
        assert c.member_overview(s)["pid"] == host_pids[s.node]
    assert c.process_command(watcher, ("write", "x", 2))[0] == "ok"
    assert any(c.overview(s.node)["servers"]["crashy"]["restarts"] >= 1 for s in crashy)


def test_killing_the_host_restarts_every_server_without_losing_writes(shared3):
    c = shared3.client()
    a, b = _start(c, "a"), _start(c, "b")
    acked = {}
    for i in range(60):
        sids = a if i % 2 else b
        reply, _ = c.process_command(sids[0], ("write", f"w{i}", i))
        assert reply == "ok"
        acked[f"w{i}"] = (sids, i)
    leader_a = c.members(a[0])[1]
    victim = leader_a.node
    host = c.member_overview(leader_a)["pid"]
    t0 = time.monotonic()
    os.kill(host, signal.SIGKILL)
    # the node (supervisor) survives; its host comes back with every server
    new_pid = _wait(lambda: (p := c.member_overview(leader_a, timeout=1.0)["pid"]) != host and p,
                    what="host restarted")
    print(f"\nservers back {time.monotonic() - t0:.2f}s after SIGKILL of the host")
    assert psutil.pid_exists(new_pid) and new_pid in shared3.pids(victim)
    assert c.member_overview(ra.ServerId("b", victim))["pid"] == new_pid
    for i in range(60, 80):
        sids = a if i % 2 else b
        reply, _ = c.process_command(sids[0], ("write", f"w{i}", i), timeout=15)
        assert reply == "ok"
        acked[f"w{i}"] = (sids, i)
    for k, (sids, v) in acked.items():
        assert c.consistent_query(sids[0], "machines.kv:read", k)[0] == v
    for sids in (a, b):
        commit = c.key_metrics(c.members(sids[0])[1])["commit_index"]
        for s in sids:
            _wait(lambda: c.key_metrics(s)["last_applied"] >= commit, what=f"{s} caught up")


def test_stop_restart_delete_and_monitors_in_a_host(shared3):
    c = shared3.client()
    a = _start(c, "a")
    c.process_command(a[0], ("write", "k", 1))
    victim = a[2]
    c.stop_server(victim)
    assert c.overview(victim.node)["servers"]["a"]["status"] == "exited"
    with pytest.raises(errors.RaError):
        c.key_metrics(victim, timeout=1.0)
    # the two others still commit
    assert c.process_command(a[0], ("write", "k", 2))[0] == "ok"
    c.restart_server(victim)
    commit = c.key_metrics(c.members(a[0])[1])["commit_index"]
    _wait(lambda: c.key_metrics(victim)["last_applied"] >= commit, what="restarted member caught up")
    assert c.local_query(victim, "machines.kv:read", "k")[0][1] == 2
    # a second cluster in the same hosts is untouched by deleting the first
    b = _start(c, "b")
    c.delete_cluster(a)
    _wait(lambda: all("a" not in c.overview(n)["servers"] for n in ("n1", "n2", "n3")), what="a deleted")
    assert c.process_command(b[1], ("write", "z", 3))[0] == "ok"
    with pytest.raises(errors.NoSuchServer):
        c.restart_server(a[0])


def test_deleting_clusters_just_after_a_member_restarted_deletes_that_member_too(shared3):
    """The restarted member gets the DeleteCluster entry while it catches
    up, and the terminating leader's resends before the entry is durable
    there: it must still acknowledge it and go, not outlive the cluster
    as a candidate with no peers (and keep ``delete_cluster`` waiting for
    it until its timeout).  Three clusters: each delete is one more chance
    for that interleaving."""
    c = shared3.client()
    clusters = [_start(c, f"d{i}") for i in range(3)]
    victim_node = "n3"
    for sids in clusters:
        c.process_command(sids[0], ("write", "a", 1))
    shared3.stop(victim_node)
    for sids in clusters:
        c.process_command(sids[0], ("write", "b", 2))
    shared3.restart(victim_node)
    for sids in clusters:
        victim = next(s for s in sids if s.node == victim_node)
        _wait(lambda: c.member_overview(victim, timeout=2)["last_applied"] >= 1, what="the member back")
        c.delete_cluster(sids, timeout=15)
        for sid in sids:
            with pytest.raises(errors.NoSuchServer):
                c.member_overview(sid, timeout=2)
    assert os.listdir(os.path.join(shared3.data_dir(victim_node), "servers")) == []


def test_node_kill_and_restart_recovers_every_server_of_the_host(shared3):
    c = shared3.client()
    clusters = [_start(c, f"c{i}") for i in range(4)]
    for i, sids in enumerate(clusters):
        for j in range(10):
            c.process_command(sids[0], ("write", j, i))
    victim = "n3"
    shared3.kill(victim)
    for sids in clusters:
        assert c.process_command(sids[0], ("write", "during", 1), timeout=15)[0] == "ok"
    shared3.restart(victim)
    for sids in clusters:
        commit = c.key_metrics(c.members(sids[0])[1])["commit_index"]
        sid = ra.ServerId(sids[0].name, victim)
        _wait(lambda: c.key_metrics(sid, timeout=1.0)["last_applied"] >= commit, timeout=30,
              what=f"{sid} recovered")
        assert c.local_query(sid, "machines.kv:read", "during")[0][1] == 1


def test_idle_clusters_in_a_host_receive_nothing(shared3):
    c = shared3.client()
    clusters = [_start(c, f"i{i}") for i in range(10)]
    for sids in clusters:
        c.process_command(sids[0], ("write", "k", 1))
    time.sleep(1.0)   # let commit-index updates settle

    def received():
        return {s: c.member_overview(s)["stats"]["msgs_in"] for sids in clusters for s in sids}
    before = received()
    time.sleep(3.0)
    after = received()
    # reading the counters is itself one message per server
    assert all(after[s] - before[s] <= 1 for s in before), {s: after[s] - before[s] for s in before}


def _listening(pids):
    out = []
    for pid in pids:
        try:
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    out.append(conn.laddr.ip)
        except psutil.Error:
            continue
    return out


def test_nodes_of_either_placement_share_a_cluster_and_a_node_can_switch(tmp_path):
    """n1 and n3 host their servers, n2 runs one process per server; then
    n2 restarts on the same data directory with placement ``shared``."""
    ports = {}
    for n in ("n1", "n2", "n3"):
        ports[n] = free_port(exclude=ports.values())
    conv = ("127.0.0.1", ports["n1"])
    placement = {"n1": "shared", "n2": "process", "n3": "shared"}
    nodes = {}
    try:
        for n in ("n1", "n2", "n3"):
            nodes[n] = ra.start_node(n, str(tmp_path / n), ports[n], convention=conv,
                                     placement=placement[n])
        with ra.connect([conv]) as c:
            sids = _start(c, "mixed")
            for i in range(30):
                assert c.process_command(sids[i % 3], ("write", i, i))[0] == "ok"
            leader = c.members(sids[0])[1]
            commit = c.key_metrics(leader)["commit_index"]
            for s in sids:
                _wait(lambda: c.key_metrics(s)["last_applied"] >= commit, what=f"{s} applied")
            # the stream listens on the node's address only
            assert set(_listening(nodes["n1"].pids())) == {"127.0.0.1"}
            n2 = ra.ServerId("mixed", "n2")
            pid_before = c.member_overview(n2)["pid"]
            ra.stop_node(nodes["n2"])
            assert c.process_command(sids[0], ("write", "while-down", 1), timeout=15)[0] == "ok"
            nodes["n2"] = ra.start_node("n2", str(tmp_path / "n2"), ports["n2"], convention=conv,
                                        placement="shared")
            leader = c.members(sids[0])[1]
            commit = c.key_metrics(leader)["commit_index"]
            try:
                _wait(lambda: c.key_metrics(n2, timeout=1.0)["last_applied"] >= commit, timeout=30,
                      what="n2 recovered in its host")
            except AssertionError as exc:
                lo, no = c.member_overview(leader), c.member_overview(n2)
                raise AssertionError(f"{exc}; leader {leader}: peers {lo.get('peers')} shell {lo.get('peers_shell')} "
                                     f"last {lo['last_index']} commit {lo['commit_index']}; n2: "
                                     f"{ {k: no.get(k) for k in ('state', 'term', 'last_index', 'commit_index', 'leader_id')} } "
                                     f"shell {no.get('peers_shell')} stats {no.get('stats')}") from None
            assert c.local_query(n2, "machines.kv:read", "while-down")[0][1] == 1
            assert c.local_query(n2, "machines.kv:read", 29)[0][1] == 29
            assert c.member_overview(n2)["pid"] != pid_before
    finally:
        for node in nodes.values():
            ra.stop_node(node)


def test_start_node_rejects_an_unknown_placement(tmp_path):
    with pytest.raises(ValueError, match="placement"):
        ra.start_node("n1", str(tmp_path / "n1"), free_port(), placement="everywhere")
