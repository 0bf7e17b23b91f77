"""Ra's aux handler and machine upgrade strategies on real nodes, in both
placements: ``aux_command`` / ``cast_aux_command`` / ``consistent_aux``
reach ``handle_aux(role, kind, command, aux_state, internal)`` on the
member they name (or its leader), with aux state of that member's own;
``Aux`` effects and ``AuxEval`` reach every member; and a new machine
version takes effect under ``quorum`` at a new leader, under ``all`` only
once every member runs code for it.

This module is also the machine the nodes run.  Its code's version is
``$RA_TEST_AUX_MACHINE_VERSION`` (0 if unset) in the node's environment: a
node restarted with it set runs "newer code"."""
from __future__ import annotations

import os
import sys
import time

import pytest

import ra_actors as ra
from ra_actors import errors
from ra_actors.core.effects import Aux, AuxEval, AuxTick, MachineVersion, SendMsg
from ra_actors.core.machine import NO_REPLY
from ra_actors.events import Message

MACHINE = __name__
VERSION_ENV = "RA_TEST_AUX_MACHINE_VERSION"


# ================================================================ the machine
def version():
    return int(os.environ.get(VERSION_ENV, "0"))


def which_module(_version):
    return sys.modules[__name__]        # one code for every version


def init(config):
    return {"n": 0, "upgrades": ()}


def apply(meta, command, state):
    if isinstance(command, MachineVersion):
        entry = (command.from_version, command.to_version, meta.index)
        return {**state, "upgrades": state["upgrades"] + (entry,)}, "ok"
    state = {**state, "n": state["n"] + 1}
    if command[0] == "note":                         # an Aux effect for every member
        return state, meta.index, [Aux(("note", command[1]))]
    return state, meta.index


def upgrades(state):
    return state["upgrades"]


def init_aux(name):
    return {"name": name, "n": 0, "notes": (), "evals": 0, "ticks": 0}


def handle_aux(role, kind, command, aux, internal):
    if isinstance(command, AuxEval):
        return {**aux, "evals": aux["evals"] + 1}, NO_REPLY
    if isinstance(command, AuxTick):
        return {**aux, "ticks": aux["ticks"] + 1}, NO_REPLY
    op = command[0]
    if op == "inc":
        return {**aux, "n": aux["n"] + 1}, (role, kind, aux["n"] + 1)
    if op == "get":
        return aux, dict(aux, role=role)
    if op == "note":
        return {**aux, "notes": aux["notes"] + (command[1],)}, NO_REPLY
    if op == "read":
        return aux, {"last_applied": internal.last_applied(), "leader": internal.leader_id(),
                     "term": internal.current_term(), "n": internal.machine_state()["n"],
                     "members": tuple(internal.members()), "role": role,
                     "version": internal.effective_machine_version()}
    if op == "fetch":
        return aux, internal.log_fetch(command[1])
    if op == "send":
        return aux, "sent", [SendMsg(command[1], ("from aux", role))]
    if op == "boom":
        raise RuntimeError("an aux bug")
    return aux, ("unknown", command)


# ================================================================== fixtures
@pytest.fixture(params=["process", "shared"])
def placement(request):
    return request.param


@pytest.fixture
def cluster(placement, tmp_path):
    with ra.local_nodes(["n1", "n2", "n3"], data_root=str(tmp_path / "nodes"), placement=placement,
                        allowed_modules=[__name__]) as nodes:
        c = nodes.client()
        sids = [ra.ServerId("aux", n) for n in ("n1", "n2", "n3")]
        started, _ = c.start_cluster("aux", MACHINE, sids)
        assert sorted(started) == sorted(sids)
        yield c, sids


def _wait(what, check, timeout=20.0):
    """``check()`` once it is truthy; a check that raises a RaError (a
    server restarting, an election) is tried again."""
    deadline = time.time() + timeout
    while True:
        try:
            value = check()
        except errors.RaError:
            value = None
        if value:
            return value
        assert time.time() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.1)


def _applied_everywhere(c, sids, index):
    _wait(f"every member applies {index}",
          lambda: all(c.key_metrics(s)["last_applied"] >= index for s in sids))


# ======================================================================= aux
def test_an_aux_call_runs_on_the_member_it_names_with_that_members_aux_state(cluster):
    c, sids = cluster
    leader = c.members(sids[0])[1]
    for sid in sids:
        role = "leader" if sid == leader else "follower"
        assert c.aux_command(sid, ("inc",)) == (role, "call", 1)
    assert c.aux_command(leader, ("inc",)) == ("leader", "call", 2)
    follower = next(s for s in sids if s != leader)
    got = c.aux_command(follower, ("get",))
    assert (got["name"], got["n"], got["role"]) == ("aux", 1, "follower")     # init_aux(name), its own state


def test_a_cast_is_taken_at_once_and_handled_on_that_member_only(cluster):
    c, sids = cluster
    leader = c.members(sids[0])[1]
    follower = next(s for s in sids if s != leader)
    assert c.cast_aux_command(follower, ("inc",)) is None
    assert c.cast_aux_command(follower, ("inc",)) is None
    assert c.aux_command(follower, ("get",))["n"] == 2
    assert c.aux_command(leader, ("get",))["n"] == 0


def test_the_internal_handle_reads_the_members_state_and_log(cluster):
    c, sids = cluster
    leader = c.members(sids[0])[1]
    index = c.process_command(leader, ("inc",))[0]
    index = c.process_command(leader, ("inc",))[0]
    _applied_everywhere(c, sids, index)
    for sid in sids:
        read = c.aux_command(sid, ("read",))
        assert read["last_applied"] >= index and read["n"] == 2 and read["leader"] == leader
        assert sorted(read["members"]) == sorted(sids) and read["version"] == 0
        term, meta, command = c.aux_command(sid, ("fetch", index))
        assert (meta["index"], meta["term"], term, tuple(command)) == (index, term, read["term"], ("inc",))
    assert c.aux_command(leader, ("fetch", index + 1000)) is None


def test_consistent_aux_is_answered_by_the_leader_after_a_read_barrier(cluster):
    c, sids = cluster
    leader = c.members(sids[0])[1]
    follower = next(s for s in sids if s != leader)
    index = c.process_command(leader, ("inc",))[0]
    read, answered_by = c.consistent_aux(follower, ("read",))        # redirected to the leader
    assert answered_by == leader and read["role"] == "leader" and read["last_applied"] >= index
    assert c.consistent_aux(follower, ("inc",)) == (("leader", "call", 1), leader)
    assert c.aux_command(leader, ("get",))["n"] == 1 and c.aux_command(follower, ("get",))["n"] == 0


def test_aux_effects_and_eval_reach_every_member_and_aux_may_send(cluster):
    c, sids = cluster
    leader = c.members(sids[0])[1]
    index = c.process_command(leader, ("note", "hello"))[0]
    _applied_everywhere(c, sids, index)
    for sid in sids:
        aux = _wait(f"the note reaches {sid}", lambda: (a := c.aux_command(sid, ("get",)))["notes"] and a)
        assert tuple(aux["notes"]) == ("hello",) and aux["evals"] >= 1
    assert c.aux_command(leader, ("send", c.handle)) == "sent"
    got = []
    deadline = time.time() + 10
    while not got and time.time() < deadline:
        got = [e for e in c.events(timeout=0.5) if isinstance(e, Message)]
    assert [tuple(e.msg) for e in got] == [("from aux", "leader")]


def test_every_member_ticks_its_aux_handler(cluster):
    """As Ra: AuxTick reaches every member's handler, followers too, even
    in an idle cluster."""
    c, sids = cluster
    for sid in sids:
        _wait(f"{sid} ticks", lambda sid=sid: c.aux_command(sid, ("get",))["ticks"] >= 2)


def test_aux_errors(cluster):
    c, sids = cluster
    leader = c.members(sids[0])[1]
    c.aux_command(leader, ("inc",))
    with pytest.raises(errors.AuxFailed, match="an aux bug"):
        c.aux_command(leader, ("boom",))
    c.cast_aux_command(leader, ("boom",))                       # logged by the server, nothing else
    assert c.aux_command(leader, ("get",))["n"] == 1            # the server and its aux state go on
    with pytest.raises(errors.InvalidCommand):
        c.aux_command(leader, ("inc", object()))
    with pytest.raises(errors.NoSuchServer):
        c.aux_command(ra.ServerId("nope", "n1"), ("inc",), timeout=2)
    kv = [ra.ServerId("plain", n) for n in ("n1", "n2", "n3")]
    c.start_cluster("plain", "machines.kv", kv)
    with pytest.raises(errors.AuxNotImplemented):
        c.aux_command(kv[0], ("inc",))


# ============================================================ upgrade strategies
@pytest.fixture
def upgrade_nodes(placement, tmp_path, monkeypatch):
    monkeypatch.delenv(VERSION_ENV, raising=False)
    with ra.local_nodes(["n1", "n2", "n3"], data_root=str(tmp_path / "nodes"), placement=placement,
                        allowed_modules=[__name__], server_settings={"tick_ms": 200}) as nodes:
        yield nodes


def _versions(c, sids):
    return [c.member_overview(s)["machine_version"] for s in sids]


def _restart_with_newer_code(nodes, c, sids, names, monkeypatch):
    """Rolling restart of ``names`` with code of version 1; each catches
    up before the next goes down."""
    monkeypatch.setenv(VERSION_ENV, "1")
    for name in names:
        nodes.restart(name)
        sid = next(s for s in sids if s.node == name)
        leader = _wait("a leader", lambda: c.members(sid, timeout=2)[1])
        commit = c.key_metrics(leader)["commit_index"]
        _wait(f"{sid} catches up", lambda: c.key_metrics(sid)["last_applied"] >= commit
              or c.key_metrics(sid)["commit_index"] >= commit)


def _lead_from(c, sids, target):
    def moved():
        leader = c.members(sids[0], timeout=2)[1]
        if leader is not None and leader != target:
            c.transfer_leadership(leader, target, timeout=5)    # NotUpToDate: asked again
        return c.members(target, timeout=2)[1] == target
    _wait(f"{target} leads", moved, timeout=40)


def test_all_switches_only_once_every_member_runs_the_new_version(upgrade_nodes, monkeypatch):
    nodes = upgrade_nodes
    c = nodes.client()
    sids = [ra.ServerId("up", n) for n in ("n1", "n2", "n3")]
    c.start_cluster("up", MACHINE, sids, machine_upgrade_strategy="all")
    _restart_with_newer_code(nodes, c, sids, ["n1", "n2"], monkeypatch)
    _lead_from(c, sids, sids[0])                    # a leader whose code runs version 1
    index = c.process_command(sids[0], ("inc",), timeout=10)[0]
    _applied_everywhere(c, sids, index)
    time.sleep(1.5)                                 # several ticks: it asked n3 again and again
    assert _versions(c, sids) == [0, 0, 0]
    info, _leader = c.members_info(sids[0])
    assert [info[s]["machine_version"] for s in sids] == [1, 1, 0]
    nodes.restart("n3")                             # the last member runs version 1 too
    _wait("version 1 everywhere", lambda: _versions(c, sids) == [1, 1, 1])
    for sid in sids:
        (_pos, ups), _l = c.local_query(sid, f"{MACHINE}:upgrades")
        assert [tuple(u)[:2] for u in ups] == [(0, 1)]         # once, at the same index everywhere
    assert len({tuple(c.local_query(s, f"{MACHINE}:upgrades")[0][1][0]) for s in sids}) == 1


def test_quorum_switches_at_a_new_leader_and_an_older_member_waits(upgrade_nodes, monkeypatch):
    nodes = upgrade_nodes
    c = nodes.client()
    sids = [ra.ServerId("up", n) for n in ("n1", "n2", "n3")]
    c.start_cluster("up", MACHINE, sids)            # quorum: the default
    _restart_with_newer_code(nodes, c, sids, ["n1", "n2"], monkeypatch)
    _lead_from(c, sids, sids[0])
    index = c.process_command(sids[0], ("inc",), timeout=10)[0]
    _applied_everywhere(c, sids[:2], index)
    assert _versions(c, sids)[:2] == [1, 1]
    # n3's code cannot run version 1: it holds the entries, applies none of them
    old = _wait("n3 learns the commit", lambda: (k := c.key_metrics(sids[2]))["commit_index"] >= index and k)
    assert c.member_overview(sids[2])["machine_version"] == 0 and index > old["last_applied"]
    nodes.restart("n3")
    _applied_everywhere(c, sids, index)
    assert _versions(c, sids) == [1, 1, 1]
    (_pos, ups), _l = c.local_query(sids[2], f"{MACHINE}:upgrades")
    assert [tuple(u)[:2] for u in ups] == [(0, 1)]


def test_an_unknown_upgrade_strategy_is_invalid_config(cluster):
    c, _sids = cluster
    with pytest.raises(errors.InvalidConfig, match="machine_upgrade_strategy"):
        c.start_cluster("bad", MACHINE, [ra.ServerId("bad", "n1")], machine_upgrade_strategy="most")
