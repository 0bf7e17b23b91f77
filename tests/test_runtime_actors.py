"""Actors started through ``client.start_actor``, monitored by machines.

This module is also what the nodes import: the actor class the tests start
(``Reporter``) and the machine of the monitoring cluster (pytest puts
``tests/`` on ``sys.path`` and nodes inherit the path).

One set of four nodes serves the whole module: the machine's cluster runs
on n1-n3; n4 hosts the actor whose node is killed at the end (the last
test), so that no other test loses a node.
"""
from __future__ import annotations

import json
import os
import signal
import time

import pytest
from thespian.actors import Actor, ActorExitRequest

import ra_actors as ra
from ra_actors import errors
from ra_actors.core.effects import Down, Monitor, SendMsg
from runtime_helpers import wait_for

MACHINE = __name__
REPORTER = f"{__name__}:Reporter"


# -------------------------------------------------------------------- actor
class Reporter(Actor):
    """Appends what happens to it (JSON lines) to the file named by its
    init value ``{"report": path}``: its start (with its pid and restart
    count) and every message it receives."""

    def __init__(self):
        super().__init__()
        self.path = None

    def receiveMessage(self, msg, sender):
        if isinstance(msg, ra.ActorInit):
            self.path = msg.init["report"]
            self._write({"event": "init", "pid": os.getpid(), "restarts": msg.restarts,
                         "ref": [msg.ref.name, msg.ref.node], "is_ref": isinstance(msg.ref, ra.ActorRef)})
        elif isinstance(msg, ActorExitRequest):
            self._write({"event": "exit"})
        elif self.path is not None:
            self._write({"event": "msg", "msg": msg, "pid": os.getpid()})

    def _write(self, record):
        with open(self.path, "a") as f:
            f.write(json.dumps(record, default=repr) + "\n")


class NotAnActor:
    pass


# ------------------------------------------------------------------ machine
def init(config):
    return {"watched": [], "events": []}


def apply(meta, command, state):
    state = {"watched": list(state["watched"]), "events": list(state["events"])}
    if isinstance(command, Down):
        state["events"].append(("down", command.target, command.reason))
        state["watched"] = [w for w in state["watched"] if w != command.target]
        return state, "ok"
    if command[0] == "watch":
        state["watched"].append(command[1])
        return state, "ok", [Monitor("process", command[1])]
    if command[0] == "send":
        return state, "ok", [SendMsg(command[1], command[2], *command[3:4])]
    return state, ("error", "unknown_command")


def state_enter(role, state):
    if role == "leader":
        return [Monitor("process", w) for w in state["watched"]]
    return []


def events(state):
    return state["events"]


# ------------------------------------------------------------------ fixture
class Env:
    def __init__(self, nodes, client, sids, tmp):
        self.nodes, self.c, self.sids, self.tmp = nodes, client, sids, tmp
        self.count = 0

    def report_path(self):
        self.count += 1
        return str(self.tmp / f"report-{self.count}.jsonl")

    def events(self):
        value, _leader = self.c.consistent_query(self.sids[0], f"{MACHINE}:events")
        return [tuple(e) for e in value]

    def wait_event(self, want, timeout=10.0):
        deadline = time.time() + timeout
        evs = []
        while time.time() < deadline:
            evs = self.events()
            if want in evs:
                return evs
            time.sleep(0.05)
        raise AssertionError(f"{want} not seen; events: {evs}")

    def watch(self, ref, registered=True):
        """The machine watches ``ref``; with ``registered``, wait until the
        actor's node holds the watch (the Monitor effect travels from the
        leader's node on its own: an exit before it arrives is ``noproc``)."""
        before = self.watchers(ref) if registered else 0
        reply, _leader = self.c.process_command(self.sids[0], ("watch", ref))
        assert reply == "ok"
        if registered:
            wait_for(lambda: self.watchers(ref) > before, what=f"the watch of {ref} on its node")

    def watchers(self, ref):
        return self.c.overview(ref.node)["actors"][ref.name]["watchers"]


def read_report(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def wait_report(path, pred, timeout=10.0):
    deadline = time.time() + timeout
    recs = []
    while time.time() < deadline:
        recs = read_report(path)
        found = [r for r in recs if pred(r)]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"nothing matching in {path}: {recs}")


@pytest.fixture(scope="module", params=["process", "shared"])
def env(request, tmp_path_factory):
    """Four nodes running an ``amon`` cluster on n1-n3, in each placement
    (the machine's monitors and messages leave from a server process or
    from a host actor)."""
    tmp = tmp_path_factory.mktemp("actors")
    with ra.local_nodes(["n1", "n2", "n3", "n4"], data_root=str(tmp / "nodes"),
                        placement=request.param, allowed_modules=[__name__]) as nodes:
        c = nodes.client()
        sids = [ra.ServerId("amon", n) for n in ("n1", "n2", "n3")]
        started, not_started = c.start_cluster("amon", MACHINE, sids)
        assert sorted(started) == sorted(sids)
        yield Env(nodes, c, sids, tmp)


# -------------------------------------------------------------------- tests
def test_actor_ref_is_not_a_server_id_and_round_trips():
    import pickle

    from ra_actors import codec
    from ra_actors.actors.util import target_node
    ref, sid = ra.ActorRef("a", "n1"), ra.ServerId("a", "n1")
    assert ref != sid and sid != ref and len({ref, sid}) == 2
    assert tuple(ref) == ("a", "n1") and target_node(ref) == "n1"
    value = codec.normalise({"refs": [ref, sid], ref: Down(ref, "normal")})
    assert value == {"refs": (ref, sid), ref: Down(ref, "normal")}
    assert type(value["refs"][0]) is ra.ActorRef and type(value["refs"][1]) is ra.ServerId
    assert pickle.loads(pickle.dumps(ref)) == ref


def test_stop_actor_is_down_normal(env):
    path = env.report_path()
    ref = env.c.start_actor("n2", REPORTER, init={"report": path})
    assert isinstance(ref, ra.ActorRef) and ref.node == "n2" and ref.name.startswith("actor-")
    assert ref != ra.ServerId(ref.name, ref.node)
    init = wait_report(path, lambda r: r["event"] == "init")[0]
    assert init["ref"] == [ref.name, "n2"] and init["is_ref"] and init["restarts"] == 0
    assert env.c.actors("n2") == {ref.name: "running"}
    ov = env.c.overview("n2")["actors"][ref.name]
    assert ov["class"] == REPORTER and ov["status"] == "running" and ov["restart"] == "temporary"
    assert ov["watchers"] == 0

    env.watch(ref)
    assert env.watchers(ref) == 1
    env.c.stop_actor(ref)                     # returns once the actor has exited
    evs = env.wait_event(("down", ref, "normal"))
    assert isinstance([e for e in evs if e[0] == "down"][0][1], ra.ActorRef)   # codec round trip
    assert read_report(path)[-1] == {"event": "exit"}
    assert ref.name not in env.c.actors("n2")
    with pytest.raises(errors.NoSuchActor):
        env.c.stop_actor(ref)
    # watching an actor that is gone: noproc at once
    env.watch(ref, registered=False)
    env.wait_event(("down", ref, "noproc"))


def test_killed_actor_is_down_killed(env):
    path = env.report_path()
    ref = env.c.start_actor("n3", REPORTER, name="victim", init={"report": path})
    assert ref == ra.ActorRef("victim", "n3")
    pid = wait_report(path, lambda r: r["event"] == "init")[0]["pid"]
    assert pid in env.nodes.pids("n3")
    env.watch(ref)
    os.kill(pid, signal.SIGKILL)
    env.wait_event(("down", ref, "killed"))
    assert "victim" not in env.c.actors("n3")          # temporary: gone for good
    with pytest.raises(errors.NoSuchActor):
        env.c.send_actor(ref, "hello?")
    # the name is free again
    ref2 = env.c.start_actor("n3", REPORTER, name="victim", init={"report": env.report_path()})
    assert ref2 == ref
    env.c.stop_actor(ref2)


def test_permanent_actor_restarts_and_watchers_see_down(env):
    path = env.report_path()
    ref = env.c.start_actor("n1", REPORTER, name="phoenix", init={"report": path}, restart="permanent")
    first = wait_report(path, lambda r: r["event"] == "init")[0]
    env.watch(ref)
    os.kill(first["pid"], signal.SIGKILL)
    env.wait_event(("down", ref, "killed"))
    second = wait_report(path, lambda r: r["event"] == "init" and r["restarts"] == 1)[0]
    assert second["pid"] != first["pid"] and second["ref"] == ["phoenix", "n1"]
    assert env.c.actors("n1")["phoenix"] == "running"
    assert env.c.overview("n1")["actors"]["phoenix"]["restarts"] == 1
    # the new incarnation answers, under the same ref
    env.c.send_actor(ref, ("ping", 2))
    got = wait_report(path, lambda r: r["event"] == "msg")
    assert got[0]["msg"] == ["ping", 2] and got[0]["pid"] == second["pid"]
    # a monitor fires once: watch the new incarnation, kill it too (the
    # second restart in the period comes after a back-off), then stop it
    env.watch(ref)
    os.kill(second["pid"], signal.SIGKILL)
    deadline = time.time() + 10
    while [e for e in env.events() if e == ("down", ref, "killed")] != [("down", ref, "killed")] * 2:
        assert time.time() < deadline, env.events()
        time.sleep(0.05)
    third = wait_report(path, lambda r: r["event"] == "init" and r["restarts"] == 2)[0]
    assert third["pid"] not in (first["pid"], second["pid"])
    env.watch(ref)
    env.c.stop_actor(ref)
    env.wait_event(("down", ref, "normal"))
    assert "phoenix" not in env.c.actors("n1")
    assert len([r for r in read_report(path) if r["event"] == "init"]) == 3


def test_send_msg_effect_reaches_the_actor(env):
    path = env.report_path()
    ref = env.c.start_actor("n2", REPORTER, init={"report": path})
    wait_report(path, lambda r: r["event"] == "init")
    reply, _leader = env.c.process_command(env.sids[0], ("send", ref, ("hello", {"n": 1})))
    assert reply == "ok"
    got = wait_report(path, lambda r: r["event"] == "msg")
    assert got[0]["msg"] == ["hello", {"n": 1}]
    assert len(got) == 1          # only the leader runs SendMsg
    env.c.stop_actor(ref)


def _sent_by(env) -> dict:
    return {s.node: env.c.member_overview(s)["stats"]["machine_messages_sent"] for s in env.sids}


def test_send_msg_options_cast_ra_event_and_local(env):
    """Ra's send_msg options: ``ra_event`` wraps the message as
    ``RaEvent(leader, msg)``, ``cast`` as ``Cast(...)`` around it; ``local``
    makes the member on the target's node send it (a follower here), and
    the leader only when no member is on that node."""
    leader = env.c.members(env.sids[0])[1]
    node = next(s.node for s in env.sids if s != leader)          # a follower's node
    near = env.c.start_actor(node, REPORTER, init={"report": (p_near := env.report_path())})
    far = env.c.start_actor("n4", REPORTER, init={"report": (p_far := env.report_path())})
    wait_report(p_near, lambda r: r["event"] == "init")
    wait_report(p_far, lambda r: r["event"] == "init")
    env.c.process_command(env.sids[0], ("send", near, "wrapped", ("cast", "ra_event")))
    got = wait_report(p_near, lambda r: r["event"] == "msg")
    assert got[0]["msg"] == repr(ra.events.Cast(ra.events.RaEvent(leader, "wrapped")))

    before = _sent_by(env)
    env.c.process_command(env.sids[0], ("send", near, "local-near", ["local"]))
    wait_report(p_near, lambda r: r["event"] == "msg" and r["msg"] == "local-near")
    after = _sent_by(env)
    assert {n: after[n] - before[n] for n in after} == {n: int(n == node) for n in after}

    before = after
    env.c.process_command(env.sids[0], ("send", far, "local-far", ["local"]))
    wait_report(p_far, lambda r: r["event"] == "msg" and r["msg"] == "local-far")
    after = _sent_by(env)
    assert {n: after[n] - before[n] for n in after} == {n: int(n == leader.node) for n in after}
    time.sleep(0.3)
    assert len([r for r in read_report(p_near) if r["event"] == "msg"]) == 2   # each sent once
    env.c.stop_actor(near)
    env.c.stop_actor(far)


def test_bad_inputs_are_clear_errors_and_leave_nothing(env):
    c = env.c
    before = set(env.nodes.pids("n1"))
    with pytest.raises(errors.ActorClassError, match=r"node n1: .*no_such_module.*ModuleNotFoundError"):
        c.start_actor("n1", f"{__name__}.no_such_module:Foo")          # allowed, but missing
    with pytest.raises(errors.ActorClassError, match=r"node n1: .*'os'.*allowed modules"):
        c.start_actor("n1", "os:Foo")                                   # not allowed: never imported
    with pytest.raises(errors.ActorClassError, match=r"node n1: .*AttributeError"):
        c.start_actor("n1", f"{__name__}:Missing")
    with pytest.raises(errors.ActorClassError, match="not a Thespian Actor"):
        c.start_actor("n1", f"{__name__}:NotAnActor")
    with pytest.raises(errors.ActorClassError, match="pkg.module:Class"):
        c.start_actor("n1", "no_colon_here")
    with pytest.raises(errors.NoSuchServer, match="unknown node"):
        c.start_actor("nope", REPORTER)
    with pytest.raises(ValueError):
        c.start_actor("n1", REPORTER, restart="sometimes")
    with pytest.raises(errors.InvalidCommand):
        c.start_actor("n1", REPORTER, init=object())
    assert c.actors("n1") == {}

    path = env.report_path()
    ref = c.start_actor("n1", REPORTER, name="only", init={"report": path})
    wait_report(path, lambda r: r["event"] == "init")
    with pytest.raises(errors.ActorAlreadyExists, match="only"):
        c.start_actor("n1", REPORTER, name="only", init={"report": path})
    c.stop_actor(ref)
    with pytest.raises(errors.NoSuchActor) as exc:
        c.stop_actor(ra.ActorRef("ghost", "n1"))
    assert isinstance(exc.value, errors.NoSuchServer)
    with pytest.raises(errors.NoSuchServer, match="unknown node"):
        c.stop_actor(ra.ActorRef("ghost", "nope"))
    with pytest.raises(ValueError):
        c.stop_actor("ghost")
    assert c.actors("n1") == {}
    assert len([r for r in read_report(path) if r["event"] == "init"]) == 1
    deadline = time.time() + 5
    while set(env.nodes.pids("n1")) != before and time.time() < deadline:
        time.sleep(0.1)
    assert set(env.nodes.pids("n1")) == before


def test_node_down_is_noconnection_for_a_remote_actor(env):
    """Last: kills n4 (no member of the machine's cluster runs there)."""
    path = env.report_path()
    ref = env.c.start_actor("n4", REPORTER, init={"report": path})
    wait_report(path, lambda r: r["event"] == "init")
    env.watch(ref)
    env.nodes.kill("n4")
    env.wait_event(("down", ref, "noconnection"))
