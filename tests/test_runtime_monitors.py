"""Machine monitors on real nodes: client handles, servers, nodes.

This module is also the machine the tests run (the nodes import it by name:
pytest puts ``tests/`` on ``sys.path`` and nodes inherit the path).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import ra_actors as ra
from ra_actors.core.effects import Demonitor, Down, Monitor, NodeDown, NodeUp

MACHINE = __name__


# ------------------------------------------------------------------ machine
def init(config):
    return {"watched": [], "nodes": [], "events": []}


def apply(meta, command, state):
    state = {"watched": list(state["watched"]), "nodes": list(state["nodes"]),
             "events": list(state["events"])}
    if isinstance(command, Down):
        target = command.target
        state["events"].append(("down", list(target) if isinstance(target, tuple) else target,
                                str(command.reason)))
        state["watched"] = [w for w in state["watched"] if w != target]
        return state, "ok"
    if isinstance(command, NodeDown):
        state["events"].append(("nodedown", command.node))
        return state, "ok"
    if isinstance(command, NodeUp):
        state["events"].append(("nodeup", command.node))
        return state, "ok"
    if isinstance(command, tuple) and command[0] == "watch":
        target = command[1]
        target = ra.ServerId(*target) if isinstance(target, tuple) else target
        state["watched"].append(target)
        return state, "ok", [Monitor("process", target)]
    if isinstance(command, tuple) and command[0] == "unwatch":
        target = command[1]
        target = ra.ServerId(*target) if isinstance(target, tuple) else target
        state["watched"] = [w for w in state["watched"] if w != target]
        return state, "ok", [Demonitor("process", target)]
    if isinstance(command, tuple) and command[0] == "watch_node":
        state["nodes"].append(command[1])
        return state, "ok", [Monitor("node", command[1])]
    return state, ("error", "unknown_command")


def state_enter(role, state):
    # monitors belong to the leader: a new leader sets them up again (as in Ra)
    if role == "leader":
        return ([Monitor("process", ra.ServerId(*w) if isinstance(w, tuple) else w) for w in state["watched"]]
                + [Monitor("node", n) for n in state["nodes"]])
    return []


def events(state):
    return state["events"]


# -------------------------------------------------------------------- tests
@pytest.fixture
def mon3(nodes3):
    c = nodes3.client()
    sids = [ra.ServerId("mon", n) for n in ("n1", "n2", "n3")]
    c.start_cluster("mon", MACHINE, sids)
    return nodes3, c, sids


def _events(c, sid):
    value, _leader = c.consistent_query(sid, f"{MACHINE}:events")
    return [tuple(e) for e in value]


def _wait_event(c, sid, pred, timeout=10.0):
    deadline = time.time() + timeout
    evs = []
    while time.time() < deadline:
        evs = _events(c, sid)
        if any(pred(e) for e in evs):
            return evs
        time.sleep(0.1)
    raise AssertionError(f"event not seen; events: {evs}")


CLIENT = """
import sys, time
import ra_actors as ra
c = ra.connect(("127.0.0.1", int(sys.argv[1])))
sid = ra.ServerId("mon", "n1")
reply, leader = c.process_command(sid, ("watch", c.handle))
print(c.handle, reply, flush=True)
time.sleep(600)
"""


def _spawn_client(port):
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p)))
    line = proc.stdout.readline().decode().split()
    assert len(line) == 2 and line[1] == "ok", line
    return proc, line[0]


def test_machine_sees_down_when_a_client_process_is_killed(mon3):
    nodes, c, sids = mon3
    proc, handle = _spawn_client(nodes.ports["n1"])
    try:
        time.sleep(0.3)
        assert _events(c, sids[0]) == []
        t0 = time.time()
        proc.kill()
        evs = _wait_event(c, sids[0], lambda e: e[0] == "down" and e[1] == handle)
        print(f"\nDown of a killed client seen {time.time() - t0:.2f}s later: {evs}")
    finally:
        proc.kill()
        proc.wait(5)
        proc.stdout.close()


def test_client_monitor_survives_a_leader_change(mon3):
    nodes, c, sids = mon3
    proc, handle = _spawn_client(nodes.ports["n2"])
    try:
        _m, leader = c.members(sids[0])
        pid = c.member_overview(leader)["pid"]
        os.kill(pid, signal.SIGKILL)          # the leader's server actor dies
        others = [s for s in sids if s != leader]
        deadline = time.time() + 10
        new = None
        while time.time() < deadline:
            try:
                _m, new = c.members(others[0], timeout=1)
            except ra.errors.RaError:
                new = None
            if new is not None and new != leader:
                break
            time.sleep(0.05)
        assert new in others
        time.sleep(0.3)   # the new leader re-monitors in state_enter
        proc.kill()
        _wait_event(c, new, lambda e: e[0] == "down" and e[1] == handle)
    finally:
        proc.kill()
        proc.wait(5)
        proc.stdout.close()


def test_machine_sees_down_of_a_monitored_server(mon3):
    nodes, c, sids = mon3
    other = ra.ServerId("kv", "n3")
    c.start_cluster("kv", "machines.kv", [other])
    c.process_command(sids[0], ("watch", tuple(other)))
    time.sleep(0.2)
    c.stop_server(other)
    evs = _wait_event(c, sids[0], lambda e: e[0] == "down" and tuple(e[1]) == tuple(other))
    assert [e for e in evs if e[0] == "down"][0][2] == "normal"
    # a server that does not exist is reported down at once (noproc)
    c.process_command(sids[0], ("watch", ("nope", "n2")))
    _wait_event(c, sids[0], lambda e: e[0] == "down" and tuple(e[1]) == ("nope", "n2") and e[2] == "noproc")


def test_node_monitor_sees_nodedown_then_nodeup(tmp_path):
    with ra.local_nodes(["n1", "n2", "n3", "n4"], data_root=str(tmp_path / "n"),
                        allowed_modules=[__name__]) as nodes:
        c = nodes.client()
        sids = [ra.ServerId("mon", n) for n in ("n1", "n2", "n3")]
        c.start_cluster("mon", MACHINE, sids)
        c.process_command(sids[0], ("watch_node", "n4"))
        t0 = time.time()
        nodes.kill("n4")
        _wait_event(c, sids[0], lambda e: e == ("nodedown", "n4"))
        print(f"\nNodeDown seen {time.time() - t0:.2f}s after the node was killed")
        t1 = time.time()
        nodes.restart("n4")
        evs = _wait_event(c, sids[0], lambda e: e == ("nodeup", "n4"))
        print(f"NodeUp seen {time.time() - t1:.2f}s after the restart began")
        assert evs.index(("nodedown", "n4")) < evs.index(("nodeup", "n4"))
