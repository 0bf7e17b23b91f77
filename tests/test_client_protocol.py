"""The client protocol without nodes: typed request records, the server's
dispatch table (one handler per record; the server, not the client, names
the reply's destination and the clock), and the client's retry policy
(:mod:`ra_actors.client.resolution`) against a scripted connection.
Sessions and pipelining: tests/test_client_sessions.py."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
import time
from collections import deque
from pathlib import Path

import msgpack
import pytest

from ra_actors import errors
from ra_actors import events as ev
from ra_actors.actors import protocol
from ra_actors.actors.protocol import (CLIENT_REQUESTS, AddMemberRequest, ClientCall, ClientReply, CommandRequest,
                                       DeleteClusterRequest, KeyMetricsRequest, LookupReply, MembersInfoRequest,
                                       MembersRequest,
                                       Misdelivered, Pipeline, PipelinedColumns, PipelinedCommand, QueryRequest,
                                       RemoveMemberRequest, ServerPingRequest, TransferLeadershipRequest,
                                       TriggerElectionRequest)
from ra_actors.actors.server import ActorServerPort
from ra_actors.actors.stream import wire_codec
from ra_actors.client.addresses import AddressBook
from ra_actors.client.connection import Undelivered
from ra_actors.client.resolution import Resolver
from ra_actors.core import codec as core_codec
from ra_actors.core import messages as m
from ra_actors.core.types import (AwaitConsensus, Error, NoReply, NotifyReply, Ok, QueryContext, Redirect,
                                  ServerConfig, ServerId, Unavailable)
from ra_actors.shell.names import query_function

import machines.kv as kv_machine

ROOT = Path(__file__).resolve().parents[1]
N1, N2, N3 = (ServerId("kv", n) for n in ("n1", "n2", "n3"))
SAMPLES = {
    CommandRequest: CommandRequest(("write", "k", 1)),
    QueryRequest: QueryRequest("consistent", "machines.kv:read", ("k",)),
    MembersRequest: MembersRequest(),
    MembersInfoRequest: MembersInfoRequest(),
    AddMemberRequest: AddMemberRequest(N3, "promotable"),
    RemoveMemberRequest: RemoveMemberRequest(N3),
    TransferLeadershipRequest: TransferLeadershipRequest(N2),
    DeleteClusterRequest: DeleteClusterRequest(),
    TriggerElectionRequest: TriggerElectionRequest(),
    KeyMetricsRequest: KeyMetricsRequest(),
    protocol.MemberOverviewRequest: protocol.MemberOverviewRequest(),
    ServerPingRequest: ServerPingRequest(),
    protocol.AuxRequest: protocol.AuxRequest("call", ("stats", 1)),
    protocol.InitialMembersRequest: protocol.InitialMembersRequest(),
    protocol.ForceShrinkRequest: protocol.ForceShrinkRequest(),
}


# ============================================================ the records
def test_every_request_is_a_frozen_slotted_record_that_travels_on_the_stream():
    assert set(SAMPLES) == set(CLIENT_REQUESTS)
    codec = wire_codec()
    for cls, request in SAMPLES.items():
        assert issubclass(cls, protocol.ClientRequest)
        assert cls.__dataclass_params__.frozen and "__slots__" in cls.__dict__
        call = ClientCall(7, "client:n1:abc", request, N1)
        assert codec.unpack(codec.pack(call)) == call
    pipe = Pipeline("client:n1:abc", (PipelinedCommand(1, ("write", "a", 1), "low"),
                                      PipelinedCommand(None, ("write", "b", 2))), N1)
    assert codec.unpack(codec.pack(pipe)) == pipe


def test_pipelined_columns_travel_on_the_stream_and_ill_typed_columns_are_refused():
    codec = wire_codec()
    columns = PipelinedColumns((1, "c2", None), (("write", "a", 1), b"x", 3), ("normal", "low", "normal"),
                               "s/c@n1", (4, 5, 6), 4, (False, True, True))
    pipe = Pipeline("client:n1:abc", columns, N1)
    assert codec.unpack(codec.pack(pipe)) == pipe
    assert "PipelinedColumns(3 commands" in repr(columns) and "1xPipelinedColumns" in repr(pipe)
    for bad in (dict(seqs=(4, "5", 6)), dict(seqs=(4, 5, True)), dict(knowns=(False, 1, True)),
                dict(priorities=("normal", 2, "low")), dict(session=7), dict(low="4"), dict(low=None),
                dict(correlations=7), dict(datas=b"xyz")):
        with pytest.raises(core_codec.DecodeError):
            codec.unpack(codec.pack(Pipeline("client:n1:abc", dataclasses.replace(columns, **bad), N1)))


def test_the_stream_refuses_op_tuples_and_untyped_pipelines():
    codec = wire_codec()
    for msg in (ClientCall(1, "client:n1:abc", ("command", "x", "noreply", "normal"), N1),
                Pipeline("client:n1:abc", ((1, "x", "normal"),), N1),
                ClientCall(1, "client:n1:abc", AddMemberRequest("kv@n3", "voter"), N1)):
        with pytest.raises(core_codec.DecodeError):
            codec.unpack(codec.pack(msg))


def test_request_names_collide_with_no_other_record():
    """The codec tags a record with its class name: a request may share it
    with no core message, base record or other protocol class."""
    core = set(core_codec._REGISTRY) | {c.__name__ for c in vars(m).values()
                                        if isinstance(c, type) and dataclasses.is_dataclass(c)}
    for cls in CLIENT_REQUESTS + (PipelinedCommand, PipelinedColumns, ClientCall, Pipeline):
        assert cls.__name__ not in core
    wire_codec()    # (builds its registry; refuses two records of one name)


def test_importing_the_client_api_imports_no_thespian():
    code = textwrap.dedent("""
        import sys
        import ra_actors, ra_actors.api
        assert ra_actors.Client is ra_actors.api.Client
        assert not any(m == "thespian" or m.startswith("thespian.") for m in sys.modules)
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


# ================================================== the server's dispatch
class _Shell:
    def __init__(self, max_command_bytes=1 << 20):
        self.id = N1
        self.leader = N2
        self.incarnation = 42
        self.role = "follower"
        self.config = ServerConfig(N1, "kv_n1", "kv", "machines.kv", (N1,), max_command_bytes=max_command_bytes)
        self.stats = {"commands": 0, "queries": 0}   # the counters the dispatch bumps
        self.delivered = []
        self.query_waits = []

    def limit_query_wait(self, wait_ms, caller):
        self.query_waits.append((wait_ms, caller))

    def deliver(self, msg):
        self.delivered.append(msg)

    def key_metrics(self):
        return {"term": 3}

    def query_function(self, name):
        return query_function("machines.kv", name)     # as ServerShell does, for a kv cluster

    def overview(self):
        return {"id": self.id}


class _Router:
    def __init__(self):
        self.clients = {}

    def client_called(self, handle, address):
        self.clients[handle] = address

    def stats(self):
        return {}


class _Port(ActorServerPort):
    def __init__(self, max_command_bytes=1 << 20):
        super().__init__()
        self.shell = _Shell(max_command_bytes)
        self.router = _Router()
        self.sent = []

    def _send(self, addr, msg):
        self.sent.append((addr, msg))


def _call(request, to=N1, req_id=9):
    port = _Port()
    port._on_client_call(ClientCall(req_id, "client:n1:abc", request, to), "client-address")
    return port


def test_the_dispatch_table_has_one_handler_per_request():
    assert set(ActorServerPort._CLIENT_REQUESTS) == set(CLIENT_REQUESTS)


def test_the_server_names_the_reply_destination_and_the_clock():
    before = int(time.time() * 1000)
    port = _call(CommandRequest(("write", "k", 1), "await_consensus", "low"))
    (cmd,) = port.shell.delivered
    assert isinstance(cmd, m.Command) and cmd.data == ("write", "k", 1) and cmd.priority == "low"
    assert cmd.reply_mode == AwaitConsensus(("client:n1:abc", 9))
    assert cmd.ts >= before and port.shell.stats["commands"] == 1
    assert port.router.clients == {"client:n1:abc": "client-address"}
    assert _call(CommandRequest("x", "noreply")).shell.delivered[0].reply_mode == NoReply()


@pytest.mark.parametrize("request_, expected", [
    (MembersRequest(), m.Members(("client:n1:abc", 9))),
    (MembersInfoRequest(), m.MembersInfo(("client:n1:abc", 9))),
    (protocol.InitialMembersRequest(), m.InitialMembers(("client:n1:abc", 9))),
    (protocol.ForceShrinkRequest(), m.ForceShrink(("client:n1:abc", 9))),
    (AddMemberRequest(("kv", "n3"), "voter"), m.AddMember(N3, "voter", ("client:n1:abc", 9))),
    (RemoveMemberRequest(N3), m.RemoveMember(N3, ("client:n1:abc", 9))),
    (TransferLeadershipRequest(N2), m.TransferLeadership(N2, ("client:n1:abc", 9))),
    (DeleteClusterRequest(), m.DeleteClusterCmd(("client:n1:abc", 9))),
    (protocol.AuxRequest("call", ("stats",)), m.AuxCommand("call", ("stats",), ("client:n1:abc", 9))),
    (protocol.AuxRequest("consistent", ("stats",)), m.ConsistentAux(("stats",), ("client:n1:abc", 9))),
])
def test_requests_become_core_messages_addressed_to_the_caller(request_, expected):
    port = _call(request_)
    assert port.shell.delivered == [expected] and port.sent == []


def test_a_query_resolves_its_function_on_the_server():
    port = _call(QueryRequest("local", "machines.kv:read", ("k",)))
    (query,) = port.shell.delivered
    assert isinstance(query, m.Query) and query.kind == "local"
    assert query.fun({"kv": {"k": 5}}) == kv_machine.read({"kv": {"k": 5}}, "k")


def test_a_query_with_a_condition_waits_at_most_what_the_client_allows():
    port = _call(QueryRequest("local", "machines.kv:read", ("k",), condition=[7, 2], wait_ms=1500))
    (query,) = port.shell.delivered
    assert query.condition == (7, 2) and not query.with_context
    assert port.shell.query_waits == [(1500, ("client:n1:abc", 9))]
    assert _call(QueryRequest("local", "machines.kv:read", ("k",))).shell.query_waits == []


def test_a_query_with_context_gets_it_as_a_keyword():
    port = _call(QueryRequest("leader", "machines.kv:read", ("k",), context=True))
    (query,) = port.shell.delivered
    assert query.with_context
    with pytest.raises(TypeError, match="context"):       # kv's read takes no context
        query.fun({"kv": {"k": 5}}, QueryContext(3, 1, 0, N1))
    seen = []
    port.shell.query_function = lambda name: lambda state, key, context: seen.append((key, context)) or 1
    port._on_client_call(ClientCall(10, "client:n1:abc", QueryRequest("local", "machines.kv:read", ("k",),
                                                                      context=True), N1), "client-address")
    assert port.shell.delivered[-1].fun({}, QueryContext(3, 1, 0, N1)) == 1
    assert seen == [("k", QueryContext(3, 1, 0, N1))]


@pytest.mark.parametrize("request_, value", [
    (KeyMetricsRequest(), {"term": 3}),
    (ServerPingRequest(), ("pong", "follower")),
])
def test_immediate_requests_are_answered_at_once(request_, value):
    port = _call(request_)
    assert port.sent == [("client-address", ClientReply(9, Ok(value), N2))] and port.shell.delivered == []


def test_trigger_election_is_answered_then_delivered():
    port = _call(TriggerElectionRequest())
    assert port.sent == [("client-address", ClientReply(9, Ok(None), N2))]
    assert port.shell.delivered == [m.TriggerElection()]


def test_an_aux_cast_is_answered_then_delivered_without_a_caller():
    port = _call(protocol.AuxRequest("cast", ("stats",)))
    assert port.sent == [("client-address", ClientReply(9, Ok(None), N2))]
    assert port.shell.delivered == [m.AuxCommand("cast", ("stats",))]


@pytest.mark.parametrize("request_, kind", [
    (("command", "x", "noreply", "normal"), "InvalidCommand"),       # an op-tuple is no request
    (CommandRequest("x", "whenever"), "InvalidCommand"),
    (AddMemberRequest("not a server id", "voter"), "InvalidCommand"),
    (QueryRequest("local", "no_such_module_here:f", ()), "InvalidQuery"),
    (QueryRequest("local", "no colon", ()), "InvalidQuery"),
    (QueryRequest("local", "builtins:len", ()), "InvalidQuery"),      # not the cluster's machine
    (QueryRequest("local", "machines.kv:read", ("k",), condition=(1,), wait_ms=10), "InvalidQuery"),
    (QueryRequest("local", "machines.kv:read", ("k",), condition=(1, -1), wait_ms=10), "InvalidQuery"),
    (QueryRequest("local", "machines.kv:read", ("k",), condition=(1, True), wait_ms=10), "InvalidQuery"),
    (QueryRequest("local", "machines.kv:read", ("k",), condition=(1, 1)), "InvalidQuery"),   # no wait
    (QueryRequest("local", "machines.kv:read", ("k",), condition=(1, 1), wait_ms=10 ** 12), "InvalidQuery"),
    (QueryRequest("consistent", "machines.kv:read", ("k",), condition=(1, 1), wait_ms=10), "InvalidQuery"),
    (QueryRequest("local", "machines.kv:read", ("k",), context="yes"), "InvalidQuery"),
    (protocol.AuxRequest("shout", ("stats",)), "InvalidCommand"),
    (protocol.AuxRequest("call", ["a", "list"]), "InvalidCommand"),    # not in the log's form
])
def test_a_request_the_server_cannot_build_is_the_callers_error(request_, kind):
    port = _call(request_)
    ((addr, reply),) = port.sent
    assert addr == "client-address" and reply.req_id == 9 and reply.leader == N2
    assert isinstance(reply.result, Error) and reply.result.kind == kind
    assert port.shell.delivered == []


def test_a_call_for_another_server_is_misdelivered():
    port = _call(MembersRequest(), to=N3)
    assert port.sent == [("client-address", ClientReply(9, Unavailable("misdelivered"), None))]
    assert port.shell.delivered == [] and port.router.clients == {}


def test_pipelined_commands_notify_the_pipelines_handle():
    port = _Port()
    cmds = (PipelinedCommand(1, ("write", "a", 1)), PipelinedCommand("c2", ("write", "b", 2), "low"))
    port._on_pipeline(Pipeline("client:n1:abc", cmds, N1), "client-address")
    (batch,) = port.shell.delivered
    assert [(c.data, c.reply_mode, c.priority) for c in batch.commands] == [
        (("write", "a", 1), NotifyReply(1, "client:n1:abc"), "normal"),
        (("write", "b", 2), NotifyReply("c2", "client:n1:abc"), "low")]
    other = _Port()
    other._on_pipeline(Pipeline("client:n1:abc", cmds, N3), "client-address")
    assert [msg for _a, msg in other.sent] == [Misdelivered(N3), ev.Rejected(N3, ev.NotLeader(None, 1)),
                                               ev.Rejected(N3, ev.NotLeader(None, "c2"))]


def test_the_server_refuses_a_command_above_the_clusters_limit_and_delivers_nothing():
    port = _Port(max_command_bytes=100)
    port._on_client_call(ClientCall(9, "client:n1:abc", CommandRequest(("write", "k", b"x" * 200))),
                         "client-address")
    (reply,) = [msg for _a, msg in port.sent]
    assert reply.result.kind == "CommandTooLarge" and "100" in reply.result.detail
    assert port.shell.delivered == [] and port.shell.stats["commands"] == 0
    port._on_client_call(ClientCall(10, "client:n1:abc", CommandRequest(("write", "k", b"x" * 50))),
                         "client-address")
    assert len(port.shell.delivered) == 1, "one below the limit goes through"


@pytest.mark.parametrize("limit", [100, 300, 70_000])
def test_a_bytes_command_is_measured_as_the_log_encodes_it(limit):
    """Bytes (the commonest command) are measured without being encoded:
    at the limit exactly they go through, one byte more is refused (the
    header grows at 256 and 65,536 bytes)."""
    port = _Port(max_command_bytes=limit)
    fits = b"x" * (limit - len(msgpack.packb(b"x" * limit)) + limit)
    assert len(msgpack.packb(fits)) == limit
    cmds = (PipelinedCommand(1, fits), PipelinedCommand(2, fits + b"y"))
    port._on_pipeline(Pipeline("client:n1:abc", cmds, N1), "client-address")
    (batch,) = port.shell.delivered
    assert [c.reply_mode.correlation for c in batch.commands] == [1]
    assert [msg for _a, msg in port.sent] == [ev.Rejected(N1, ev.CommandRefused("CommandTooLarge", 2))]


@pytest.mark.parametrize("command", [object(), {"a", "set"}, ["write", "k", 1], ("write", ["k"], 1)])
def test_the_server_refuses_a_command_the_log_cannot_give_back_as_sent(command):
    """Not storable, or not the form followers read back from the log (so
    the leader would apply something else than they do)."""
    port = _call(CommandRequest(command))
    (reply,) = [msg for _a, msg in port.sent]
    assert reply.result.kind == "InvalidCommand" and port.shell.delivered == []


def test_the_server_takes_commands_with_records_in_them():
    port = _call(CommandRequest(("watch", N2, {"k": (1, b"x")})))
    assert port.sent == [] and len(port.shell.delivered) == 1


def test_a_pipelined_command_above_the_limit_is_rejected_alone():
    port = _Port(max_command_bytes=100)
    cmds = (PipelinedCommand(1, ("write", "a", 1)), PipelinedCommand(2, ("write", "b", b"x" * 200)),
            PipelinedCommand(3, ("write", "c", 3)))
    port._on_pipeline(Pipeline("client:n1:abc", cmds, N1), "client-address")
    (batch,) = port.shell.delivered
    assert [c.reply_mode.correlation for c in batch.commands] == [1, 3]
    assert [msg for _a, msg in port.sent] == [ev.Rejected(N1, ev.CommandRefused("CommandTooLarge", 2))]


# ==================================================== the client's policy
class _Conn:
    """A connection whose servers answer from a script: ``answer(target,
    request)`` -> a reply record, an ``Undelivered``, or None (silence)."""

    def __init__(self, book, answer):
        self.book = book
        self.answer = answer
        self.replies = {}
        self.failed = {}
        self.events = deque()
        self.event_filter = None
        self.calls = []
        self._id = 0

    def next_id(self):
        self._id += 1
        return self._id

    def send(self, addr, msg, key, timeout):
        if isinstance(msg, protocol.Lookup):
            self.replies[key] = LookupReply(msg.key, f"addr-{msg.key.node}", 1, msg.req)
            return
        self.calls.append((msg.to, msg.request))
        r = self.answer(msg.to, msg.request)
        if isinstance(r, Undelivered):
            self.failed[key] = r.refused
        elif r is not None:
            result, leader = r if isinstance(r, tuple) else (r, None)
            self.replies[key] = ClientReply(msg.req_id, result, leader)

    def send_untracked(self, addr, msg, timeout, on_undelivered=None):
        self.calls.append((addr, msg))
        if self.answer(addr, msg) is not None and on_undelivered is not None:
            on_undelivered(False)

    def wait(self, key, deadline, keep=False):
        if key in self.replies:
            return self.replies.pop(key)
        if key in self.failed:
            return Undelivered(self.failed.pop(key))
        time.sleep(max(0.0, min(0.01, deadline - time.monotonic())))
        return None

    def release(self, *keys):
        for key in keys:
            self.replies.pop(key, None)
            self.failed.pop(key, None)

    def pump(self, timeout=0.0):
        pass

    def deliver(self, event):
        """An event arrives from a server (through the pipeliner's filter)."""
        if self.event_filter is not None:
            event = self.event_filter(event)
        if event is not None:
            self.events.append(event)


class _Discovery:
    def sup_address(self, node, deadline):
        return f"sup-{node}"


def _resolver(answer):
    book = AddressBook()
    book.remember_cluster([N1, N2, N3])
    conn = _Conn(book, answer)
    return Resolver(conn, book, _Discovery(), "client:n1:abc"), conn


def test_a_call_follows_the_leader_it_is_redirected_to():
    resolver, conn = _resolver(lambda to, req: Ok("v") if to == N2 else Redirect(N2))
    assert resolver.call(N1, KeyMetricsRequest(), 1.0) == ("v", None)
    assert [to for to, _r in conn.calls] == [N1, N2]


def test_a_call_that_may_not_be_redirected_raises_not_leader():
    resolver, _conn = _resolver(lambda to, req: Redirect(N2))
    with pytest.raises(errors.NotLeader) as info:
        resolver.call(N1, KeyMetricsRequest(), 1.0, redirect=False)
    assert info.value.leader == N2


def test_an_error_reply_raises_its_class():
    resolver, _conn = _resolver(lambda to, req: Error("NotMember", "kv@n9 is not a member"))
    with pytest.raises(errors.NotMember, match="kv@n9"):
        resolver.call(N1, RemoveMemberRequest(ServerId("kv", "n9")), 1.0)


def test_a_command_that_may_have_arrived_is_never_sent_again():
    resolver, conn = _resolver(lambda to, req: Undelivered(refused=False))
    with pytest.raises(errors.Timeout):
        resolver.call(N1, CommandRequest("x"), 0.3, idempotent=False)
    assert len(conn.calls) == 1


def test_a_refused_command_goes_to_another_member():
    resolver, conn = _resolver(lambda to, req: Undelivered(refused=True) if to == N1 else Ok("done"))
    assert resolver.call(N1, CommandRequest("x"), 1.0, idempotent=False) == ("done", None)
    assert [to for to, _r in conn.calls] == [N1, N2]
    assert resolver.book.server(N1) is None, "the refused address is forgotten"


def test_an_unanswered_query_is_asked_again():
    answers = iter([None, Ok(5)])
    resolver, conn = _resolver(lambda to, req: next(answers))
    assert resolver.call(N1, QueryRequest("leader", "m:f"), 3.0) == (5, None)
    assert [to for to, _r in conn.calls] == [N1, N2]


def test_a_misdelivered_call_looks_the_server_up_again():
    answers = iter([Unavailable("misdelivered"), Ok(1)])
    resolver, conn = _resolver(lambda to, req: next(answers))
    resolver.book.set_server(N1, "stale-address", 1)
    assert resolver.call(N1, MembersRequest(), 1.0, redirect=False) == (1, None)
    assert resolver.book.server(N1) == "addr-n1"


def test_an_applied_window_prints_its_first_results_and_how_many_more():
    # Thespian formats every message it sends, so the repr of a full window
    # must not grow with it; a small batch still prints whole.
    small = ev.Applied("kv@n1", [(1, "ok"), (2, "ok")])
    assert repr(small) == "Applied(leader='kv@n1', results=[(1, 'ok'), (2, 'ok')])"
    window = ev.Applied("kv@n1", tuple((i, None) for i in range(1024)))
    text = repr(window)
    assert text.startswith("Applied(leader='kv@n1', results=[(0, None), (1, None),")
    assert "(7, None), ... 1016 more])" in text and "(8, None)" not in text
