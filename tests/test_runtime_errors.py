"""Bad input gets a clear ra_actors.errors exception and changes nothing."""
from __future__ import annotations

import time

import pytest

import ra_actors as ra
from ra_actors import errors


def test_unencodable_command_or_query_argument_is_rejected_before_sending(kv3):
    c = kv3.client
    before = c.key_metrics(kv3.sids[0])["last_index"]
    with pytest.raises(errors.InvalidCommand):
        c.process_command(kv3.sids[0], ("write", "k", object()))
    with pytest.raises(errors.InvalidCommand):
        c.pipeline_command(kv3.sids[0], ("write", "k", {1, 2}.__iter__()), correlation=1)
    with pytest.raises(errors.InvalidCommand):
        c.consistent_query(kv3.sids[0], "machines.kv:read", lambda: 1)
    with pytest.raises(errors.InvalidCommand):
        c.local_query(kv3.sids[0], "not a function name")
    with pytest.raises(errors.InvalidCommand):
        c.start_cluster("x", "machines.kv", [ra.ServerId("x", "n1")], config={"bad": object()})
    assert c.events(0.2) == []
    assert c.key_metrics(kv3.sids[0])["last_index"] == before


def test_a_cluster_starts_on_the_majority_of_its_nodes_that_are_up(nodes3):
    """start_cluster asks every node at once whether it loads the machine:
    a node that is down is left out (``not_started``) and the members on
    the others form the cluster."""
    c = nodes3.client()
    c.nodes()                       # the client knows every node before one goes
    nodes3.kill("n3")
    sids = [ra.ServerId("half", n) for n in ("n1", "n2", "n3")]
    started, not_started = c.start_cluster("half", "machines.kv", sids, timeout=30)
    assert sorted(started) == sids[:2] and not_started == [sids[2]]
    assert c.process_command(sids[0], ("write", "k", 1))[0] == "ok"


def test_machine_that_does_not_import_fails_start_cluster_and_starts_nothing(nodes3):
    c = nodes3.client()
    sids = [ra.ServerId("bad", n) for n in ("n1", "n2", "n3")]
    with pytest.raises(errors.MachineError) as info:
        c.start_cluster("bad", "machines.no_such_module_xyz", sids)
    msg = str(info.value)
    assert "no_such_module_xyz" in msg and "node n" in msg and "ModuleNotFoundError" in msg
    with pytest.raises(errors.MachineError):
        c.start_cluster("bad", "machines.kv:NoSuchClass", sids)
    for n in ("n1", "n2", "n3"):
        assert c.overview(n)["servers"] == {}
    # a module the nodes do not allow: refused before it is imported
    with pytest.raises(errors.MachineError, match="allowed modules"):
        c.start_cluster("bad", "json", sids)
    with pytest.raises(errors.MachineError, match="allowed modules"):
        c.start_cluster("bad", "no_such_module_xyz", sids)
    for n in ("n1", "n2", "n3"):
        assert c.overview(n)["servers"] == {}
    # the names are still free
    c.start_cluster("bad", "machines.kv", sids)


def test_unknown_server_and_unknown_node(kv3):
    c = kv3.client
    with pytest.raises(errors.NoSuchServer):
        c.process_command(ra.ServerId("nope", "n1"), ("write", "a", 1), timeout=3)
    with pytest.raises(errors.NoSuchServer):
        c.key_metrics(ra.ServerId("nope", "n2"), timeout=3)
    with pytest.raises(errors.NoSuchServer):
        c.local_query(ra.ServerId("nope", "n3"), "machines.kv:read", "a", timeout=3)
    with pytest.raises(errors.NoSuchServer):
        c.stop_server(ra.ServerId("nope", "n1"))
    with pytest.raises(errors.NoSuchServer):
        c.restart_server(ra.ServerId("nope", "n1"))
    with pytest.raises(errors.NoSuchServer):
        c.members(ra.ServerId("kv", "no_such_node"), timeout=3)


def test_duplicate_ids_and_existing_members(kv3):
    c = kv3.client
    with pytest.raises(errors.ServerAlreadyExists):
        c.start_cluster("d", "machines.kv", [ra.ServerId("d", "n1"), ra.ServerId("d", "n1")])
    assert "d" not in c.overview("n1")["servers"]
    with pytest.raises(errors.ServerAlreadyExists):
        c.start_cluster("kv", "machines.kv", kv3.sids)
    with pytest.raises(errors.AlreadyMember):
        c.add_member(kv3.sids[0], kv3.sids[1])
    members, _ = c.members(kv3.sids[0])
    assert sorted(members) == sorted(kv3.sids)


def test_node_down_gives_timeout_not_hang(kv3):
    c = kv3.client
    _r, leader = c.process_command(kv3.sids[0], ("write", "a", 1))
    follower = next(s for s in kv3.sids if s != leader)
    kv3.nodes.pause(follower.node)
    try:
        t0 = time.monotonic()
        with pytest.raises(errors.Timeout):
            c.key_metrics(follower, timeout=1.0)
        assert time.monotonic() - t0 < 3.0
        t0 = time.monotonic()
        with pytest.raises(errors.Timeout):
            c.overview(follower.node, timeout=1.0)
        assert time.monotonic() - t0 < 3.0
        # the majority still works
        assert c.process_command(leader, ("write", "b", 2), timeout=5)[0] == "ok"
    finally:
        kv3.nodes.resume(follower.node)


def test_no_quorum_gives_timeout(kv3):
    c = kv3.client
    _r, leader = c.process_command(kv3.sids[0], ("write", "a", 1))
    followers = [s for s in kv3.sids if s != leader]
    for f in followers:
        kv3.nodes.pause(f.node)
    try:
        t0 = time.monotonic()
        with pytest.raises(errors.Timeout):
            c.process_command(leader, ("write", "b", 2), timeout=1.5)
        assert time.monotonic() - t0 < 4.0
        t0 = time.monotonic()
        with pytest.raises(errors.Timeout):
            c.consistent_query(leader, "machines.kv:read", "a", timeout=1.5)
        assert time.monotonic() - t0 < 4.0
    finally:
        for f in followers:
            kv3.nodes.resume(f.node)
    # once the majority is back the cluster serves again
    reply, _ = c.process_command(leader, ("write", "c", 3), timeout=15)
    assert reply == "ok"


def test_connect_to_nothing_times_out(tmp_path):
    from ra_actors.nodes import free_port
    t0 = time.monotonic()
    with pytest.raises(errors.Timeout):
        ra.connect(("127.0.0.1", free_port()), timeout=1.0)
    assert time.monotonic() - t0 < 3.0


@pytest.mark.parametrize("name", ["builtins:dict.clear", "os:system", "machines.counter:read", "machines.kv:apply"])
def test_a_query_may_only_name_a_function_of_the_clusters_machine(tmp_path, name):
    """The probe that found it: 'builtins:dict.clear' as a local query wiped a
    replica.  Now any name outside the machine's own query functions is
    InvalidQuery, and the replica's state is intact."""
    with ra.local_nodes(["n1"], data_root=str(tmp_path / "nodes")) as nodes:
        c = nodes.client()
        sid = ra.ServerId("q", "n1")
        c.start_cluster("q", "machines.kv", [sid])
        c.process_command(sid, ("write", "k", 1))
        with pytest.raises(errors.InvalidQuery):
            c.local_query(sid, name)
        assert c.local_query(sid, "machines.kv:read", "k")[0][1] == 1
