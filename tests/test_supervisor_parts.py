"""The node supervisor's seams, without a running node: its requests are
records each with one handler, the restart policy, and the routing of a
server's retirement (docs/internals.rst, "The node supervisor")."""
from __future__ import annotations

import dataclasses
import pickle
from collections import deque

import pytest

from ra_actors.actors import protocol
from ra_actors.actors.children import DELETING, STOPPING, Child
from ra_actors.actors.protocol import RetireServerRequest, StopServerRequest, SupervisorRequest, SupResponse
from ra_actors.actors.restart_policy import RestartPolicy
from ra_actors.actors.supervisor import NodeSupervisor


def _request_types() -> list[type]:
    return [cls for cls in vars(protocol).values()
            if isinstance(cls, type) and issubclass(cls, SupervisorRequest) and cls is not SupervisorRequest]


class _Recorder(NodeSupervisor):
    """A supervisor whose sends are recorded instead of transmitted."""

    def __init__(self):
        super().__init__()
        self.sent = []

    def send(self, to, msg):
        self.sent.append((to, msg))


def test_every_supervisor_request_has_one_handler():
    sup = NodeSupervisor()
    assert set(_request_types()) == set(sup._requests)


def test_requests_are_frozen_records_that_pickle_with_their_id():
    request = StopServerRequest("kv")
    assert request.req_id is None
    sent = dataclasses.replace(request, req_id=7)
    assert pickle.loads(pickle.dumps(sent)) == StopServerRequest("kv", req_id=7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sent.name = "other"   # type: ignore[misc]


def test_a_request_error_is_answered_not_raised():
    sup = _Recorder()
    sup.receiveMessage(StopServerRequest("nothing", req_id=3), "client")
    [(to, reply)] = sup.sent
    assert to == "client" and isinstance(reply, SupResponse) and reply.req_id == 3
    assert reply.error[0] == "NoSuchServer"


def test_an_unknown_request_type_is_answered_with_an_error():
    @dataclasses.dataclass(frozen=True, slots=True)
    class FutureRequest(SupervisorRequest):
        pass

    sup = _Recorder()
    sup.receiveMessage(FutureRequest(req_id=4), "client")
    [(_, reply)] = sup.sent
    assert reply.req_id == 4 and "unknown operation FutureRequest" in reply.error[1]


@pytest.mark.parametrize("delete_data, status", [(True, DELETING), (False, STOPPING)])
def test_a_retiring_server_is_not_restarted(tmp_path, delete_data, status):
    sup = _Recorder()
    sup.registry.load(str(tmp_path))
    sup.registry.add("kv", "uid-kv")
    child = Child("server", "kv", "kv-address")
    child.status = "running"
    sup.directory.servers["kv"] = child
    sup.receiveMessage(RetireServerRequest("kv", delete_data=delete_data), "other-address")
    assert child.status == "running"                       # only the server itself may retire
    sup.receiveMessage(RetireServerRequest("kv", delete_data=delete_data), "kv-address")
    assert child.status == status
    assert sup.registry.get("kv").stopped
    assert [reply.value for _, reply in sup.sent] == [("ok", None), ("ok", None)]


def test_restart_policy_intensity_and_backoff():
    policy = RestartPolicy(max_restarts=3, period=10.0)
    history: deque[float] = deque()
    assert policy.next_delay(history, now=100.0) == 0.0          # the first restart: at once
    assert policy.next_delay(history, now=100.1) == pytest.approx(0.2)
    assert policy.next_delay(history, now=100.2) == pytest.approx(0.4)
    assert policy.next_delay(history, now=100.3) is None         # a fourth within 10 s: give up
    assert len(history) == 3
    assert policy.next_delay(history, now=111.0) == 0.0          # the window moved on


def test_restart_policy_backoff_is_capped():
    policy = RestartPolicy(max_restarts=100, period=10.0)
    history: deque[float] = deque()
    delays = [policy.next_delay(history, now=1.0 + i / 100) for i in range(10)]
    assert delays[-1] == policy.max_delay


def test_restart_policy_from_the_supervisor_settings():
    sup = NodeSupervisor()
    assert sup.ctx.restart_policy == RestartPolicy(10, 10.0)



# ------------------------------------------------------------ batches of starts
def test_a_bundle_from_the_host_is_handled_message_by_message_in_order():
    sup = _Recorder()
    inner = (StopServerRequest("a", req_id=1), StopServerRequest("b", req_id=2))
    sup.receiveMessage(protocol.Bundle(inner + (protocol.Bundle(inner),)), "host")
    assert [reply.req_id for _to, reply in sup.sent] == [1, 2], "a nested bundle is dropped"


@pytest.mark.parametrize("configs, error", [
    ((), "InvalidConfig"),
    (("not a config",), "InvalidConfig"),
    ([], "InvalidConfig"),
])
def test_a_malformed_batch_of_starts_is_refused_whole(configs, error):
    sup = _Recorder()
    sup.receiveMessage(protocol.StartServersRequest(configs, req_id=5), "client")
    [(to, reply)] = sup.sent
    assert to == "client" and reply.req_id == 5 and reply.error[0] == error


def test_a_batch_naming_a_server_twice_is_refused_whole():
    from ra_actors.core.types import ServerConfig, ServerId
    cfg = ServerConfig(server_id=ServerId("a", "n1"), uid="a_n1_1", cluster_name="a", machine="machines.kv",
                       initial_members=(ServerId("a", "n1"),), machine_config={})
    sup = _Recorder()
    sup.receiveMessage(protocol.StartServersRequest((cfg, dataclasses.replace(cfg, uid="a_n1_2")), req_id=6),
                       "client")
    [(_to, reply)] = sup.sent
    assert reply.error[0] == "ServerAlreadyExists"


def test_a_batch_waiter_answers_once_in_the_request_order_when_the_last_server_is_known():
    from ra_actors.actors.node_context import BatchWaiter

    class Ctx:
        replies = []

        def reply(self, waiter, value):
            self.replies.append((waiter, value))

    ctx, done = Ctx(), []
    batch = BatchWaiter(("client", 9), ["a", "b", "c"], on_done=lambda: done.append(True))
    batch.started("c", 3, "host")
    batch.answer_if_done(ctx)
    batch.failed("a", ("MachineError", "no", None))
    batch.started("b", 2, "host")
    batch.failed("b", ("Timeout", "late", None))       # the first outcome stays
    assert ctx.replies == [] and not done
    batch.answer_if_done(ctx)
    batch.answer_if_done(ctx)
    assert ctx.replies == [(("client", 9), (("error", ("MachineError", "no", None)), ("ok", 2, "host"),
                                            ("ok", 3, "host")))]
    assert done == [True]


def test_the_leaderboard_answers_many_servers_in_one_request():
    from ra_actors.actors.leaderboard import Leaderboard
    from ra_actors.actors.protocol import LeaderboardRecord, LeaderboardRequest, LeaderboardUpdate
    from ra_actors.errors import InvalidConfig
    board = Leaderboard(lambda name, incarnation: True)
    board.on_update(LeaderboardUpdate((
        LeaderboardRecord("a", "a", 1, 1, ("a", "n1"), (("a", "n1"), ("a", "n2")), 3),
        LeaderboardRecord("b", "b", 1, 1, None, (("b", "n1"),), 2),
    )), None)
    assert board.lookup(LeaderboardRequest(servers=("a", "b", "c")), None) == (
        (("a", "n1"), (("a", "n1"), ("a", "n2"))), (None, (("b", "n1"),)), None)
    with pytest.raises(InvalidConfig):
        board.lookup(LeaderboardRequest(servers=("a", 3)), None)


def test_the_leaderboard_finds_a_cluster_by_its_members_entries_and_forgets_the_cleared():
    from ra_actors.actors.leaderboard import Leaderboard
    from ra_actors.actors.protocol import LeaderboardRecord, LeaderboardRequest, LeaderboardUpdate
    board = Leaderboard(lambda name, incarnation: True)
    members = (("q1", "n1"), ("q2", "n1"))
    board.on_update(LeaderboardUpdate((
        LeaderboardRecord("q1", "q", 1, 1, None, members, 4),
        LeaderboardRecord("q2", "q", 1, 1, ("q2", "n1"), members, 5),
        LeaderboardRecord("other", "o", 1, 1, ("other", "n1"), (("other", "n1"),), 9),
    )), None)
    assert board.lookup(LeaderboardRequest(cluster="q"), None) == (("q2", "n1"), members)   # the newest term
    board.clear("q2")
    assert board.lookup(LeaderboardRequest(cluster="q"), None) == (None, members)
    board.clear("q1")
    assert board.lookup(LeaderboardRequest(cluster="q"), None) is None
    assert "q" not in board.by_cluster and board.by_cluster == {"o": {"other"}}


def test_per_server_messages_of_one_turn_leave_as_one_bundle_per_target(monkeypatch):
    """A thousand Lookups in one bundle from the host are answered with one
    bundle, not a thousand Thespian messages (each would wait for the
    host's acknowledgement in turn); another message to a target first
    sends what waits for it, so each target's order is kept."""
    from thespian.actors import Actor

    from ra_actors.actors.protocol import Bundle, Lookup, LookupReply, WatchDown
    from ra_actors.core.messages import NodeEvent

    sent = []
    monkeypatch.setattr(Actor, "send", lambda self, to, msg: sent.append((to, msg)))
    sup = NodeSupervisor(requirements={"ra_node": "n1"})
    sup.ctx.node = "n1"
    host = "host-address"
    lookups = tuple(Lookup((f"s{i}", "n9"), f"s{i}") for i in range(1000))
    sup.receiveMessage(Bundle(lookups), host)
    assert len(sent) == 1
    to, msg = sent[0]
    assert to == host and type(msg) is Bundle and len(msg.msgs) == 1000
    assert all(type(r) is LookupReply for r in msg.msgs)
    assert [r.req for r in msg.msgs] == [f"s{i}" for i in range(1000)]

    sent.clear()
    sup._turn_out = {}
    sup.send(host, WatchDown(("a", "n2"), "noconnection", 1))
    sup.send(host, WatchDown(("b", "n2"), "noconnection", 2))
    sup.send("other", WatchDown(("c", "n2"), "noconnection", 3))
    sup.send(host, NodeEvent("n2", False))
    assert [(to, type(m)) for to, m in sent] == [(host, Bundle), (host, NodeEvent)]
    assert [w.ref for w in sent[0][1].msgs] == [1, 2]
    sup._end_turn()                             # the end of a turn sends the rest
    assert [(to, type(m)) for to, m in sent[2:]] == [("other", WatchDown)]
