"""A client's session without nodes: the numbers its commands carry
(:mod:`ra_actors.client.sessions`), the server port that checks them,
``process_command`` sent until answered (:meth:`Resolver.session_call`),
pipelined commands sent again and answered once (:mod:`ra_actors.client.pipelining`),
and a connection that keeps only answers someone waits for."""
from __future__ import annotations

import time
from collections import deque

import pytest

from ra_actors import errors
from ra_actors import events as ev
from ra_actors.actors.protocol import (ClientCall, ClientReply, CommandRequest, LookupReply, Pipeline,
                                       PipelinedColumns, PipelinedCommand)
from ra_actors.actors.server import ActorServerPort, session_seq
from ra_actors.actors.stream import wire_codec
from ra_actors.client.addresses import AddressBook
from ra_actors.client.commands import Commands
from ra_actors.client.connection import Connection, Undelivered
from ra_actors.client.pipelining import PATIENCE, Pipeliner
from ra_actors.client.resolution import Resolver
from ra_actors.client.sessions import Session, Stream
from ra_actors.core import messages as m
from ra_actors.core.types import Error, NotifyReply, Ok, Redirect, ServerConfig, ServerId, SessionSeq

N1, N2, N3 = (ServerId("c", n) for n in ("n1", "n2", "n3"))
HANDLE = "client:n1:abc"


# ============================================================ the numbers
def test_a_new_session_numbers_each_server_id_from_one():
    session = Session(None, now_us=5_000_000)
    a, b = session.stream(N1, 0), session.stream(N2, 0)
    assert (a.issue(), a.issue(), b.issue()) == (1, 2, 1)
    assert a.key == f"{session.name}/c@n1" and b.key == f"{session.name}/c@n2"
    assert session.stream(N1, 0) is a and not session.named


def test_low_is_the_lowest_number_still_outstanding():
    s = Stream("s", 1)
    assert s.low() == 1                      # nothing outstanding: the next number
    one, two, three = s.issue(), s.issue(), s.issue()
    assert s.low() == one
    s.settle(two)
    assert s.low() == one                    # 1 still waits
    s.settle(one)
    assert s.low() == three
    s.settle(three)
    assert s.low() == s.next == 4            # everything answered or given up


def test_known_says_whether_a_command_may_repeat_one_the_cluster_saw():
    s = Stream("s", 1)
    one = s.issue()
    assert not s.known(one, again=False)     # the session has never been applied
    assert not s.known(one, again=True)
    s.seen_applied = True
    assert not s.known(one, again=False), "a first attempt with nothing below repeats nothing"
    assert s.known(one, again=True)
    two = s.issue()
    assert s.known(two, again=False), "1 is outstanding below it: it may have been applied"


def test_a_named_session_numbers_after_any_earlier_client_and_may_claim_their_numbers():
    session = Session("importer", now_us=1_700_000_000_000_000)
    s = session.stream(N1, now_us=1_700_000_000_000_123)
    assert session.named and s.first_own == 1_700_000_000_000_123
    assert s.claim(41) == 41 and s.blocked() and s.low() == 41
    assert s.known(41, again=False), "an earlier client's command may have been applied"
    with pytest.raises(ValueError, match="already outstanding"):
        s.claim(41)
    for bad in (0, s.first_own, True, "41"):
        with pytest.raises(ValueError):
            s.claim(bad)
    own = s.issue()
    assert s.low() == 41
    s.settle(41)
    assert not s.blocked() and s.low() == own


@pytest.mark.parametrize("name", ["", "x" * 129, 7])
def test_a_session_name_is_a_short_string(name):
    with pytest.raises(ValueError, match="session name"):
        Session(name, 0)


# ========================================================= the server port
class _Shell:
    id = N1
    leader = N1

    def __init__(self):
        self.config = ServerConfig(N1, "counter_n1", "counter", "machines.counter", (N1,), max_command_bytes=100)
        self.stats = {"commands": 0}
        self.delivered = []

    def deliver(self, msg):
        self.delivered.append(msg)


class _Router:
    def __init__(self):
        self.to_clients = []

    def client_called(self, handle, address):
        pass

    def send_to_client(self, handle, msg):
        self.to_clients.append((handle, msg))


class _Port(ActorServerPort):
    def __init__(self):
        super().__init__()
        self.shell = _Shell()
        self.router = _Router()
        self.sent = []

    def _send(self, addr, msg):
        self.sent.append((addr, msg))


def test_a_command_request_carries_its_session_into_the_core_command():
    port = _Port()
    request = CommandRequest(("add", 1), "await_consensus", "low", "s/c@n1", 7, 5, True)
    port._on_client_call(ClientCall(9, HANDLE, request, N1), "client-address")
    (cmd,) = port.shell.delivered
    assert cmd.session == SessionSeq("s/c@n1", 7, 5, True) and cmd.priority == "low"
    assert wire_codec().unpack(wire_codec().pack(ClientCall(9, HANDLE, request, N1))).request == request


@pytest.mark.parametrize("fields", [
    dict(session=5, seq=1, low=1), dict(session="", seq=1, low=1), dict(session="x" * 257, seq=1, low=1),
    dict(session="s", seq=0, low=0), dict(session="s", seq=3, low=4), dict(session="s", seq=True, low=1),
    dict(session="s", seq=1.0, low=1), dict(session="s", seq=2 ** 63, low=1),
    dict(session="s", seq=1, low=1, known="yes"), dict(session=None, priority="urgent"),
])
def test_a_session_the_server_cannot_trust_is_the_callers_error(fields):
    port = _Port()
    port._on_client_call(ClientCall(9, HANDLE, CommandRequest("x", **fields), N1), "client-address")
    ((_addr, reply),) = port.sent
    assert isinstance(reply.result, Error) and reply.result.kind == "InvalidCommand"
    assert port.shell.delivered == [] and port.shell.stats["commands"] == 0


def test_session_seq_accepts_exactly_whole_numbers_in_order():
    assert session_seq(None, "anything", None, None) is None
    assert session_seq("s", 3, 1, False) == SessionSeq("s", 3, 1, False)


# What the server makes of the five commands below (pipelined one by one or
# as columns): two taken, three refused alone.
_TAKEN = [("a", "normal", SessionSeq("s", 1, 1, False), NotifyReply(1, HANDLE)),
          ("d", "low", SessionSeq("s", 4, 1, True), NotifyReply(4, HANDLE))]
_REFUSED = [ev.Rejected(N1, ev.CommandRefused("InvalidCommand", 2)),
            ev.Rejected(N1, ev.CommandRefused("InvalidCommand", 3)),
            ev.Rejected(N1, ev.CommandRefused("CommandTooLarge", 5))]


def test_one_bad_pipelined_command_is_refused_and_the_others_go_on():
    port = _Port()
    cmds = (PipelinedCommand(1, "a", "normal", "s", 1, 1), PipelinedCommand(2, "b", "normal", "s", 2, 3),
            PipelinedCommand(3, "c", "whenever", "s", 3, 1), PipelinedCommand(4, "d", "low", "s", 4, 1, True),
            PipelinedCommand(5, "e" * 200, "normal", "s", 5, 1))
    port._on_pipeline(Pipeline(HANDLE, cmds, N1), "client-address")
    (batch,) = port.shell.delivered
    assert [(c.data, c.priority, c.session, c.reply_mode) for c in batch.commands] == _TAKEN
    assert [msg for _a, msg in port.sent] == _REFUSED


def test_pipelined_columns_are_taken_command_by_command_as_pipelined_commands_are():
    """A client's batch as columns (one session, one low): each bad command
    is refused alone and the others go on, exactly as for the same commands
    one PipelinedCommand each."""
    port = _Port()
    columns = PipelinedColumns((1, 2, 3, 4, 5), ("a", "b", "c", "d", "e" * 200),
                               ("normal", "normal", "whenever", "low", "normal"), "s", (1, 0, 3, 4, 5), 1,
                               (False, False, False, True, False))
    port._on_pipeline(Pipeline(HANDLE, columns, N1), "client-address")
    (batch,) = port.shell.delivered
    assert [(c.data, c.priority, c.session, c.reply_mode) for c in batch.commands] == _TAKEN
    assert [msg for _a, msg in port.sent] == _REFUSED
    one_by_one = _Port()
    one_by_one._on_pipeline(Pipeline(HANDLE, tuple(columns), N1), "client-address")
    assert tuple(columns)[1] == PipelinedCommand(2, "b", "normal", "s", 0, 1, False) == columns[1]
    assert [c.data for c in one_by_one.shell.delivered[0].commands] == ["a", "d"]
    assert [msg for _a, msg in one_by_one.sent] == [msg for _a, msg in port.sent]


@pytest.mark.parametrize("columns", [
    PipelinedColumns((1, 2, 3), ("a", "b"), ("normal",) * 3, "s", (1, 2, 3), 1, (False,) * 3),
    PipelinedColumns((1, 2), ("a", "b"), ("normal",) * 2, "s", (1, 2, 3), 1, (False,) * 2),
    PipelinedColumns((1, 2), ("a", "b"), ("normal",) * 2, "s", (1, 2), 1, [False, False]),
])
def test_columns_that_do_not_line_up_are_refused_whole(columns):
    port = _Port()
    port._on_pipeline(Pipeline(HANDLE, columns, N1), "client-address")
    assert port.shell.delivered == [] and port.shell.stats["commands"] == 0
    assert [msg for _a, msg in port.sent] == [ev.Rejected(N1, ev.CommandRefused("InvalidCommand", c))
                                              for c in columns.correlations]


def test_a_pipeline_meant_for_another_server_refuses_every_column_as_not_leader():
    port = _Port()
    columns = PipelinedColumns((1, 2), ("a", "b"), ("normal",) * 2, "s", (1, 2), 1, (False,) * 2)
    port._on_pipeline(Pipeline(HANDLE, columns, N2), "client-address")
    assert port.shell.delivered == []
    assert [msg for _a, msg in port.sent][1:] == [ev.Rejected(N2, ev.NotLeader(None, 1)),
                                                  ev.Rejected(N2, ev.NotLeader(None, 2))]


# ======================================================== a scripted cluster
class _Conn:
    """A connection whose servers answer from a script.  ``answer(target,
    message)`` -> a reply record (or ``(reply, leader)``), an
    ``Undelivered``, or None (silence).  Pipelines are only recorded; their
    events are delivered by the test (``deliver``)."""

    def __init__(self, book, answer=lambda to, msg: None):
        self.book = book
        self.answer = answer
        self.replies = {}
        self.failed = {}
        self.events = deque()
        self.event_filter = None
        self.sent = []          # (target, message)
        self.undelivered = []   # callbacks of untracked sends
        self._id = 0

    def next_id(self):
        self._id += 1
        return self._id

    def send(self, addr, msg, key, timeout):
        from ra_actors.actors.protocol import Lookup
        if isinstance(msg, Lookup):
            self.replies[key] = LookupReply(msg.key, f"addr-{msg.key.node}", 1, msg.req)
            return
        self.sent.append((msg.to, msg))
        r = self.answer(msg.to, msg)
        if isinstance(r, Undelivered):
            self.failed[key] = r.refused
        elif r is not None:
            result, leader = r if isinstance(r, tuple) else (r, None)
            self.replies[key] = ClientReply(msg.req_id, result, leader)

    def send_untracked(self, addr, msg, timeout, on_undelivered=None):
        self.sent.append((msg.to, msg))
        self.undelivered.append(on_undelivered)

    def wait(self, key, deadline, keep=False):
        if key in self.replies:
            return self.replies.pop(key)
        if key in self.failed:
            return Undelivered(self.failed.pop(key))
        time.sleep(max(0.0, min(0.005, deadline - time.monotonic())))
        return None if time.monotonic() >= deadline else self.wait(key, deadline, keep)

    def release(self, *keys):
        for key in keys:
            self.replies.pop(key, None)
            self.failed.pop(key, None)

    def pump(self, timeout=0.0):
        pass

    def deliver(self, event):
        if self.event_filter is not None:
            event = self.event_filter(event)
        if event is not None:
            self.events.append(event)


class _Discovery:
    def sup_address(self, node, deadline):
        return f"sup-{node}"


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _parts(answer=lambda to, msg: None, timeout=30.0, session=None):
    book = AddressBook()
    book.remember_cluster([N1, N2, N3])
    conn = _Conn(book, answer)
    resolver = Resolver(conn, book, _Discovery(), HANDLE)
    clock = _Clock()
    sess = Session(session, now_us=10**15)
    pipe = Pipeliner(conn, resolver, HANDLE, sess, batch=100, delay=60.0, timeout=timeout, clock=clock)
    return pipe, conn, clock


def _pipelines(conn):
    return [(to, msg) for to, msg in conn.sent if isinstance(msg, Pipeline)]


# ================================================================ pipelining
def test_pipelined_commands_are_numbered_and_leave_in_one_pipeline_with_their_priority():
    pipe, conn, _clock = _parts()
    assert pipe.add(N1, "a", "c1", "normal") == 1
    assert pipe.add(N1, "b", None, "low") == 2          # no correlation: still numbered, still low
    pipe.add(N1, "c", "c3", "low")
    assert conn.sent == []
    pipe.flush()
    ((to, pipeline),) = conn.sent
    key = pipe.session.stream(N1, 0).key
    assert to == N1 and pipeline.handle == HANDLE and pipeline.to == N1
    assert type(pipeline.commands) is PipelinedColumns, "one record for the batch"
    assert [(c.data, c.priority, c.session, c.seq, c.low, c.known) for c in pipeline.commands] == [
        ("a", "normal", key, 1, 1, False), ("b", "low", key, 2, 1, False), ("c", "low", key, 3, 1, False)]
    assert len({c.correlation for c in pipeline.commands}) == 3, "every command has a ticket of its own"


def test_each_command_is_handed_out_once_whatever_the_cluster_repeats():
    pipe, conn, _clock = _parts()
    pipe.add(N1, "a", "first", "normal")
    pipe.add(N1, "b", None, "normal")
    pipe.add(N1, "c", "third", "normal")
    pipe.flush()
    a, b, c = (cmd.correlation for cmd in _pipelines(conn)[0][1].commands)
    conn.deliver(ev.Applied(N1, [(a, 1), (b, 2)]))
    conn.deliver(ev.Applied(N1, [(a, 1), (c, 3)]))      # a again: a resend answered from the cache
    conn.deliver(ev.Applied(N2, [(c, 3), (b, 2)]))      # a new leader repeats them all
    assert list(conn.events) == [ev.Applied(N1, [("first", 1)]), ev.Applied(N1, [("third", 3)])]
    assert pipe.outstanding() == 0 and pipe.session.stream(N1, 0).low() == 4


def test_a_not_leader_rejection_sends_everything_sent_there_to_the_leader():
    pipe, conn, _clock = _parts()
    for i in range(3):
        pipe.add(N1, f"cmd{i}", i, "normal")
    pipe.flush()
    tickets = [cmd.correlation for cmd in _pipelines(conn)[0][1].commands]
    conn.deliver(ev.Rejected(N1, ev.NotLeader(N2, tickets[1])))
    conn.deliver(ev.Rejected(N1, ev.NotLeader(N2, tickets[0])))    # the others' rejections change nothing
    pipe.flush()
    (_first, (to, again)) = _pipelines(conn)
    assert to == N2 and [(c.correlation, c.seq, c.data) for c in again.commands] == [
        (tickets[0], 1, "cmd0"), (tickets[1], 2, "cmd1"), (tickets[2], 3, "cmd2")]
    conn.deliver(ev.Rejected(N1, ev.NotLeader(N2, tickets[2])))
    pipe.flush()
    assert len(_pipelines(conn)) == 2 and list(conn.events) == [], "the caller never sees not_leader"
    pipe.add(N1, "next", 9, "normal")
    pipe.flush()
    assert _pipelines(conn)[-1][0] == N2, "the stream follows its leader"


def test_a_silent_stream_sends_its_outstanding_commands_again_to_the_next_member():
    pipe, conn, clock = _parts()
    stream = pipe.session.stream(N1, 0)
    stream.seen_applied = True
    pipe.add(N1, "a", 1, "normal")
    pipe.add(N1, "b", 2, "normal")
    pipe.flush()
    first = _pipelines(conn)[0][1].commands
    conn.deliver(ev.Applied(N1, [(first[0].correlation, "ok")]))
    clock.now += PATIENCE / 2
    pipe.flush()
    assert len(_pipelines(conn)) == 1, "not silent yet"
    clock.now += PATIENCE + 0.1
    pipe.flush()
    to, again = _pipelines(conn)[1]
    assert to == N2 and [(c.correlation, c.seq, c.low, c.known) for c in again.commands] == [
        (first[1].correlation, 2, 2, True)], "the same number, known: it may have been applied"


def test_an_undelivered_pipeline_goes_to_the_next_member_and_its_address_is_forgotten():
    pipe, conn, _clock = _parts()
    pipe.add(N1, "a", 1, "normal")
    pipe.flush()
    assert conn.book.server(N1) == "addr-n1"
    conn.undelivered[0](False)
    pipe.flush()
    (_first, (to, again)) = _pipelines(conn)
    assert to == N2 and again.commands[0].seq == 1 and conn.book.server(N1) is None


def test_a_sequence_gap_sends_the_whole_stream_again_in_order():
    pipe, conn, _clock = _parts()
    for i in range(3):
        pipe.add(N1, i, i, "normal")
    pipe.flush()
    tickets = [c.correlation for c in _pipelines(conn)[0][1].commands]
    conn.deliver(ev.Rejected(N1, ev.SessionRefused("SequenceGap", tickets[2])))
    pipe.flush()
    assert [c.seq for c in _pipelines(conn)[1][1].commands] == [1, 2, 3] and list(conn.events) == []


def test_an_expired_session_is_handed_out_and_ends_the_command():
    pipe, conn, _clock = _parts()
    pipe.add(N1, "a", "mine", "normal")
    pipe.add(N1, "b", None, "normal")
    pipe.flush()
    a, b = (c.correlation for c in _pipelines(conn)[0][1].commands)
    conn.deliver(ev.Rejected(N1, ev.SessionRefused("SessionExpired", a)))
    conn.deliver(ev.Rejected(N1, ev.SessionRefused("SessionExpired", b)))
    assert list(conn.events) == [ev.Rejected(N1, ev.SessionRefused("SessionExpired", "mine"))]
    assert pipe.outstanding() == 0


def test_a_command_the_server_refuses_is_handed_out_under_its_correlation_and_ends():
    pipe, conn, _clock = _parts()
    pipe.add(N1, "a", "mine", "normal")
    pipe.add(N1, "b", "next", "normal")
    pipe.flush()
    a, b = (c.correlation for c in _pipelines(conn)[0][1].commands)
    conn.deliver(ev.Rejected(N1, ev.CommandRefused("CommandTooLarge", a)))
    pipe.flush()            # the leader holds b for a's number: b goes again, with a no longer below it
    (again,) = _pipelines(conn)[1][1].commands
    assert (again.correlation, again.seq, again.low) == (b, 2, 2)
    conn.deliver(ev.Applied(N1, [(b, 1)]))
    conn.deliver(ev.Rejected(N1, ev.CommandRefused("CommandTooLarge", a)))     # repeated: handed out once
    assert list(conn.events) == [ev.Rejected(N1, ev.CommandRefused("CommandTooLarge", "mine")),
                                 ev.Applied(N1, [("next", 1)])]
    assert pipe.outstanding() == 0


def test_a_command_no_quorum_answers_is_given_up_with_timed_out():
    pipe, conn, clock = _parts(timeout=5.0)
    pipe.add(N1, "a", "mine", "normal")
    pipe.add(N1, "b", None, "normal")
    pipe.flush()
    for _ in range(4):
        clock.now += PATIENCE + 0.1
        pipe.flush()
    assert [type(e) for e in conn.events] == [ev.TimedOut] and conn.events[0].correlation == "mine"
    assert pipe.outstanding() == 0 and pipe.session.stream(N1, 0).low() == 3
    sent = len(_pipelines(conn))
    clock.now += 10 * PATIENCE
    pipe.flush()
    assert len(_pipelines(conn)) == sent, "given up: not sent again"


def test_own_commands_of_a_named_session_wait_for_the_earlier_clients_commands():
    pipe, conn, _clock = _parts(session="job")
    stream = pipe.session.stream(N1, 0)
    pipe.add(N1, "new", "n", "normal")
    assert pipe.add(N1, "old", "o", "normal", seq=7) == 7
    pipe.flush()
    ((_to, first),) = _pipelines(conn)
    assert [(c.seq, c.low, c.known) for c in first.commands] == [(7, 7, True)]
    conn.deliver(ev.Applied(N1, [(first.commands[0].correlation, "done")]))
    pipe.flush()
    (_c, second) = _pipelines(conn)[1]
    assert [(c.data, c.seq, c.low) for c in second.commands] == [("new", stream.first_own, stream.first_own)]


# ============================================================ process_command
def _commands(answer, session=None):
    pipe, conn, _clock = _parts(answer, session=session)
    return Commands(conn, pipe.resolver, pipe.session, pipe.flush), conn


def test_a_command_nobody_answers_goes_again_with_the_same_number_and_request_id():
    answers = iter([None, Redirect(N3), Ok(5)])
    commands, conn = _commands(lambda to, msg: next(answers))
    assert commands.call(N1, ("add", 1), 5.0) == (5, None)
    calls = [(to, msg) for to, msg in conn.sent if isinstance(msg, ClientCall)]
    assert [to for to, _m in calls] == [N1, N2, N3]
    assert len({msg.req_id for _t, msg in calls}) == 1, "an answer to any attempt ends the call"
    assert [(m.request.seq, m.request.low, m.request.known) for _t, m in calls] == [(1, 1, False)] * 3
    stream = commands.session.stream(N1, 0)
    assert stream.seen_applied and stream.outstanding == {}


def test_a_resend_says_known_once_the_session_was_applied():
    answers = iter([Ok(1), None, Ok(2)])
    commands, conn = _commands(lambda to, msg: next(answers))
    commands.call(N1, "a", 5.0)
    commands.call(N1, "b", 5.0)
    requests = [msg.request for _t, msg in conn.sent if isinstance(msg, ClientCall)]
    assert [(r.seq, r.low, r.known) for r in requests] == [(1, 1, False), (2, 2, False), (2, 2, True)]


def test_a_sequence_gap_is_sent_again_and_an_expired_session_raises():
    answers = iter([Error("SequenceGap", "gap"), Ok("v"), Error("SessionExpired", "gone")])
    commands, _conn = _commands(lambda to, msg: next(answers))
    assert commands.call(N1, "a", 5.0) == ("v", None)
    with pytest.raises(errors.SessionExpired):
        commands.call(N1, "b", 5.0)
    assert commands.session.stream(N1, 0).outstanding == {}, "ended either way"


def test_timeout_means_no_leader_answered_and_the_number_is_abandoned():
    commands, conn = _commands(lambda to, msg: None)
    with pytest.raises(errors.Timeout, match="no leader"):
        commands.call(N1, "a", 0.3)
    assert commands.session.stream(N1, 0).low() == 2, "the next command tells the cluster to forget 1"


# ============================================================= the inbox
class _Endpoint:
    def __init__(self):
        self.inbox = deque()
        self.sent = []

    def send(self, addr, msg, timeout, on_undelivered):
        self.sent.append(msg)

    def receive(self, timeout):
        return self.inbox.popleft() if self.inbox else None


def test_the_inbox_keeps_only_answers_someone_waits_for():
    endpoint = _Endpoint()
    conn = Connection("127.0.0.1", AddressBook(), endpoint=endpoint)
    conn.send("addr", "request", 7, 1.0)
    assert conn.wait(7, time.monotonic() + 0.01) is None          # timed out
    endpoint.inbox.extend([ClientReply(7, Ok("late"), None), ClientReply(99, Ok("stray"), None)])
    conn.pump()
    assert conn.replies == {} and conn.awaited == set()
    conn.send("addr", "again", 8, 1.0)
    endpoint.inbox.extend([ClientReply(8, Ok(1), None), ClientReply(8, Ok(1), None)])
    assert conn.wait(8, time.monotonic() + 1.0, keep=True).result == Ok(1)
    conn.pump()
    assert conn.take(8).result == Ok(1)
    conn.release(8)
    endpoint.inbox.append(ClientReply(8, Ok(1), None))
    conn.pump()
    assert conn.replies == {}
