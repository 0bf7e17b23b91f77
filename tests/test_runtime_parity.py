"""Ra parity on real nodes, in both placements: ``transfer_leadership`` to a
member that is not up to date is ``NotUpToDate``; a machine's ``SendMsg``
with the ``ra_event`` option reaches a client as ``RaEvent(leader, msg)``;
``ping``, ``leave_and_terminate``, ``leave_and_delete_server`` and
``start_or_restart_cluster``.

This module is also the machine the nodes run (``send`` commands)."""
from __future__ import annotations

import time

import pytest

import ra_actors as ra
from ra_actors import errors
import functools

from ra_actors.core.effects import Log, SendMsg, Timer, TimerFired
from ra_actors.events import Message, RaEvent

MACHINE = __name__


def init(config):
    return {"n": 0}


def apply(meta, command, state):
    if isinstance(command, TimerFired):
        return {**state, "fired": state.get("fired", ()) + ((command.name, meta.system_time),)}, "ok"
    state = {**state, "n": state["n"] + 1}
    if isinstance(command, tuple) and command and command[0] == "send":
        return state, "ok", [SendMsg(command[1], command[2], *command[3:4])]
    if isinstance(command, tuple) and command and command[0] == "log":
        # read the commands at these indexes back from the log, send them to a client
        _op, indexes, handle = command
        return state, "ok", [Log(tuple(indexes), functools.partial(_logged_to, handle))]
    if isinstance(command, tuple) and command and command[0] == "timer_at":
        # an absolute timer: fire at the entry's system time + the given delay
        at = meta.system_time + command[2]
        state["at"] = {**state.get("at", {}), command[1]: at}
        return state, "ok", [Timer(command[1], at, absolute=True)]
    return state, state["n"]


def _logged_to(handle, commands):
    return [SendMsg(handle, ("logged", list(commands)))]


def fired(state):
    return state.get("fired", ()), state.get("at", {})


@pytest.fixture(params=["process", "shared"])
def cluster(request, tmp_path):
    with ra.local_nodes(["n1", "n2", "n3"], data_root=str(tmp_path / "nodes"), placement=request.param,
                        allowed_modules=[__name__]) as nodes:
        c = nodes.client()
        sids = [ra.ServerId("par", n) for n in ("n1", "n2", "n3")]
        started, _ = c.start_cluster("par", MACHINE, sids, max_pipeline_count=2)
        assert sorted(started) == sorted(sids)
        yield c, sids


def test_transfer_leadership_to_a_member_that_is_behind_is_not_up_to_date(cluster):
    c, sids = cluster
    leader = c.members(sids[0])[1]
    behind = next(s for s in sids if s != leader)
    c.stop_server(behind)
    for i in range(10):
        c.process_command(leader, ("inc", i))
    with pytest.raises(errors.NotUpToDate, match="not up to date"):
        c.transfer_leadership(leader, behind)
    assert c.members(leader)[1] == leader          # still leading, still taking commands
    c.process_command(leader, ("inc", 10))
    # once it has caught up the transfer goes ahead
    c.restart_server(behind)
    commit = c.key_metrics(leader)["commit_index"]
    deadline = time.time() + 15
    while c.key_metrics(behind)["last_applied"] < commit:
        assert time.time() < deadline, "the restarted member did not catch up"
        time.sleep(0.05)
    assert c.transfer_leadership(leader, behind, timeout=10)[1] == behind


def test_send_msg_with_ra_event_reaches_the_client_as_a_ra_event(cluster):
    c, sids = cluster
    leader = c.members(sids[0])[1]
    c.process_command(sids[0], ("send", c.handle, "plain"))
    c.process_command(sids[0], ("send", c.handle, "evented", ("ra_event",)))
    got = []
    deadline = time.time() + 10
    while len(got) < 2 and time.time() < deadline:
        got += [e for e in c.events(timeout=0.5) if isinstance(e, (Message, RaEvent))]
    assert got == [Message("plain"), RaEvent(leader, "evented")]


def test_ping_answers_pong_and_the_role(cluster):
    c, sids = cluster
    leader = c.members(sids[0])[1]
    assert c.ping(leader) == ("pong", "leader")
    assert {c.ping(s) for s in sids if s != leader} == {("pong", "follower")}
    with pytest.raises(errors.NoSuchServer):
        c.ping(ra.ServerId("nope", "n1"), timeout=2)


def test_leave_and_terminate_keeps_the_data_leave_and_delete_server_removes_it(cluster):
    c, sids = cluster
    leader = c.members(sids[0])[1]
    first, second = [s for s in sids if s != leader]
    c.leave_and_terminate(leader, first)
    assert sorted(c.members(leader)[0]) == sorted([leader, second])
    with pytest.raises(errors.NoSuchServer):
        c.key_metrics(first, timeout=2)
    assert "par" in c.overview(first.node)["servers"]             # stopped, data kept
    c.process_command(leader, ("inc", 1))
    c.leave_and_delete_server(leader, second)
    assert c.members(leader)[0] == [leader]
    deadline = time.time() + 10
    while "par" in c.overview(second.node)["servers"]:             # deleted
        assert time.time() < deadline, "leave_and_delete_server left the server behind"
        time.sleep(0.05)
    assert c.process_command(leader, ("inc", 2))[0] == 2           # the single member still commits
    with pytest.raises(errors.NotMember):
        c.leave_and_terminate(leader, second)                      # not a member: nothing stopped


def test_start_or_restart_cluster_starts_then_restarts(cluster):
    c, _sids = cluster
    sids = [ra.ServerId("sor", n) for n in ("n1", "n2", "n3")]
    started, not_started = c.start_or_restart_cluster("sor", MACHINE, sids)
    assert sorted(started) == sorted(sids) and not not_started
    for i in range(3):
        c.process_command(sids[0], ("inc", i))
    for sid in sids:
        c.stop_server(sid)
    assert c.start_or_restart_cluster("sor", MACHINE, sids) == (sids, [])
    # the same cluster, its state kept: the next command is the fourth applied
    assert c.process_command(sids[0], ("inc", 3), timeout=10)[0] == 4


def test_restart_server_with_mutable_config(cluster):
    c, sids = cluster
    leader = c.members(sids[0])[1]
    follower = next(s for s in sids if s != leader)
    before = c.member_overview(follower)
    assert before["config"]["max_pipeline_count"] == 2
    with pytest.raises(errors.RaError, match="is running: stop it"):
        c.restart_server(follower, max_pipeline_count=64)        # running: stop it first
    after = c.member_overview(follower)
    assert after["incarnation"] == before["incarnation"] and after["config"]["max_pipeline_count"] == 2
    c.stop_server(follower)
    with pytest.raises(errors.InvalidConfig, match="cannot be changed"):
        c.restart_server(follower, machine="machines.kv")
    with pytest.raises(errors.InvalidConfig, match="integer"):
        c.restart_server(follower, max_pipeline_count=0)
    c.restart_server(follower, max_pipeline_count=64, min_checkpoint_interval=5)
    cfg = c.member_overview(follower)["config"]
    assert (cfg["max_pipeline_count"], cfg["min_checkpoint_interval"]) == (64, 5)
    # persisted: a plain restart keeps it
    c.stop_server(follower)
    c.restart_server(follower)
    assert c.member_overview(follower)["config"]["max_pipeline_count"] == 64
    assert c.process_command(leader, ("inc", 1))[0] == 1


def test_process_command_reply_from_a_member_or_the_local_one(cluster):
    """Ra's reply_from: the named member answers once it has applied the
    command, so with that member stopped the caller times out although the
    command was applied; ``local`` is the member on the client's node."""
    c, sids = cluster
    leader = c.members(sids[0])[1]
    follower = next(s for s in sids if s != leader)
    assert c.process_command(leader, ("inc", 1), reply_from=follower) == (1, leader)
    assert c.process_command(leader, ("inc", 2), reply_from=ra.ServerId("gone", "n9"))[0] == 2
    assert c.process_command(leader, ("inc", 3), reply_from="leader")[0] == 3
    c.stop_server(follower)
    with pytest.raises(errors.Timeout):
        c.process_command(leader, ("inc", 4), reply_from=follower, timeout=1.5)
    assert c.process_command(leader, ("inc", 5))[0] == 5           # 4 was applied all the same
    # "local": make the member on the client's node a follower, then stop it
    c.restart_server(follower)
    local = next(s for s in sids if s.node == c.handle.split(":")[1])
    deadline = time.time() + 15
    while c.key_metrics(follower)["last_applied"] < c.key_metrics(leader)["commit_index"]:
        assert time.time() < deadline, "the restarted member did not catch up"
        time.sleep(0.05)
    if local == leader:
        leader = c.transfer_leadership(leader, follower, timeout=10)[1]
    assert c.process_command(leader, ("inc", 6), reply_from="local")[0] == 6
    c.stop_server(local)
    with pytest.raises(errors.Timeout):
        c.process_command(leader, ("inc", 7), reply_from="local", timeout=1.5)
    assert c.process_command(leader, ("inc", 8))[0] == 8
    with pytest.raises(errors.InvalidCommand):
        c.process_command(leader, ("inc", 9), reply_from="everyone")


def test_an_absolute_timer_fires_at_its_time(cluster):
    c, sids = cluster
    c.process_command(sids[0], ("timer_at", "soon", 600))
    c.process_command(sids[0], ("timer_at", "past", -5000))        # already past: fires at once
    deadline = time.time() + 10
    while len((got := c.consistent_query(sids[0], f"{MACHINE}:fired")[0])[0]) < 2:
        assert time.time() < deadline, f"timers did not fire: {got}"
        time.sleep(0.05)
    ((first, t_first), (second, t_second)), at = got
    assert (first, second) == ("past", "soon")
    assert t_second >= at["soon"] > t_first                           # at its time, not before


def test_a_log_effect_reads_commands_back_from_the_log(cluster):
    c, sids = cluster
    leader = c.members(sids[0])[1]
    c.process_command(leader, ("inc", "a"))
    c.process_command(leader, ("inc", "b"))
    last = c.key_metrics(leader)["last_index"]
    c.process_command(leader, ("log", [last - 1, last, last + 500], c.handle))
    got = []
    deadline = time.time() + 10
    while not got and time.time() < deadline:
        got = [e for e in c.events(timeout=0.5) if isinstance(e, Message)]
    assert [(e.msg[0], [tuple(x) for x in e.msg[1]]) for e in got] == [("logged", [("inc", "a"), ("inc", "b")])]
