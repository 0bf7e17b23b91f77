"""The client protocol without nodes: typed request records and the
server's dispatch table (one handler per record; the server, not the
client, names the reply's destination and the clock)."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ra_actors import events as ev
from ra_actors.actors import protocol
from ra_actors.actors.protocol import (CLIENT_REQUESTS, AddMemberRequest, ClientCall, ClientReply, CommandRequest,
                                       DeleteClusterRequest, KeyMetricsRequest, MembersRequest,
                                       Misdelivered, Pipeline, PipelinedCommand, QueryRequest,
                                       RemoveMemberRequest, ServerPingRequest, TransferLeadershipRequest,
                                       TriggerElectionRequest)
from ra_actors.actors.server import ActorServerPort
from ra_actors.actors.stream import wire_codec
from ra_actors.core import codec as core_codec
from ra_actors.core import messages as m
from ra_actors.core.types import AwaitConsensus, Error, NoReply, NotifyReply, Ok, ServerId, Unavailable

ROOT = Path(__file__).resolve().parents[1]
N1, N2, N3 = (ServerId("kv", n) for n in ("n1", "n2", "n3"))
SAMPLES = {
    CommandRequest: CommandRequest(("write", "k", 1)),
    QueryRequest: QueryRequest("consistent", "machines.kv:read", ("k",)),
    MembersRequest: MembersRequest(),
    AddMemberRequest: AddMemberRequest(N3, "promotable"),
    RemoveMemberRequest: RemoveMemberRequest(N3),
    TransferLeadershipRequest: TransferLeadershipRequest(N2),
    DeleteClusterRequest: DeleteClusterRequest(),
    TriggerElectionRequest: TriggerElectionRequest(),
    KeyMetricsRequest: KeyMetricsRequest(),
    protocol.MemberOverviewRequest: protocol.MemberOverviewRequest(),
    ServerPingRequest: ServerPingRequest(),
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
    for cls in CLIENT_REQUESTS + (PipelinedCommand, ClientCall, Pipeline):
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
    def __init__(self):
        self.id = N1
        self.leader = N2
        self.incarnation = 42
        self.stats = {"commands": 0}
        self.delivered = []

    def deliver(self, msg):
        self.delivered.append(msg)

    def key_metrics(self):
        return {"term": 3}

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
    def __init__(self):
        super().__init__()
        self.shell = _Shell()
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
    (AddMemberRequest(("kv", "n3"), "voter"), m.AddMember(N3, "voter", ("client:n1:abc", 9))),
    (RemoveMemberRequest(N3), m.RemoveMember(N3, ("client:n1:abc", 9))),
    (TransferLeadershipRequest(N2), m.TransferLeadership(N2, ("client:n1:abc", 9))),
    (DeleteClusterRequest(), m.DeleteClusterCmd(("client:n1:abc", 9))),
])
def test_requests_become_core_messages_addressed_to_the_caller(request_, expected):
    port = _call(request_)
    assert port.shell.delivered == [expected] and port.sent == []


def test_a_query_resolves_its_function_on_the_server():
    port = _call(QueryRequest("local", "builtins:len", ()))
    (query,) = port.shell.delivered
    assert isinstance(query, m.Query) and query.kind == "local" and query.fun([1, 2, 3]) == 3


@pytest.mark.parametrize("request_, value", [
    (KeyMetricsRequest(), {"term": 3}),
    (ServerPingRequest(), (N1, 42)),
])
def test_immediate_requests_are_answered_at_once(request_, value):
    port = _call(request_)
    assert port.sent == [("client-address", ClientReply(9, Ok(value), N2))] and port.shell.delivered == []


def test_trigger_election_is_answered_then_delivered():
    port = _call(TriggerElectionRequest())
    assert port.sent == [("client-address", ClientReply(9, Ok(None), N2))]
    assert port.shell.delivered == [m.TriggerElection()]


@pytest.mark.parametrize("request_, kind", [
    (("command", "x", "noreply", "normal"), "InvalidCommand"),       # an op-tuple is no request
    (CommandRequest("x", "whenever"), "InvalidCommand"),
    (AddMemberRequest("not a server id", "voter"), "InvalidCommand"),
    (QueryRequest("local", "no_such_module_here:f", ()), "InvalidQuery"),
    (QueryRequest("local", "no colon", ()), "InvalidQuery"),
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
