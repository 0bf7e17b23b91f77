"""Bytes from the network: the wire codec and the stream's receiving side
survive anything.  A frame that is not our protocol is a ``DecodeError``
(never another exception, never a crash) and closes that one connection."""
from __future__ import annotations

import dataclasses
import socket
import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ra_actors.actors.protocol import Rpcs
from ra_actors.actors.stream import MAX_FRAME, wire_codec
from ra_actors.core import codec as core_codec
from ra_actors.core import messages as m
from ra_actors.core import types as t
from ra_actors.core.codec import EXT_RECORD, EXT_TAG, DecodeError
from ra_actors.core.types import AwaitConsensus, Entry, ServerId, Usr

from test_stream import Addr, StreamHub, proven_connection, pump

WIRE = wire_codec()
S1, S2 = ServerId("s", "n1"), ServerId("s", "n2")


def _tag(name: str) -> msgpack.ExtType:
    return msgpack.ExtType(EXT_TAG, name.encode())


def _frame(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _aer(entries) -> Rpcs:
    return Rpcs(S2, 1, S1, 1, (m.AppendEntriesRpc(3, S1, 0, 0, 0, entries),))


# ================================================================= the codec
def test_a_real_message_round_trips():
    msg = _aer(tuple(Entry(i, 3, Usr(("put", i), AwaitConsensus(("client:n1:c", i)), 0)) for i in range(1, 5)))
    assert WIRE.unpack(WIRE.pack(msg)) == msg


def test_nested_record_documents_are_refused_not_recursed():
    """The older nested encoding decodes recursively; 3.4 KB of nested
    EXT_RECORDs once segfaulted a host.  From the network it is refused."""
    bomb = b"\xc0"
    for _ in range(2000):
        bomb = msgpack.packb(msgpack.ExtType(EXT_RECORD, bomb))
    with pytest.raises(DecodeError, match="extension type"):
        WIRE.unpack(bomb)
    with pytest.raises(DecodeError):
        WIRE.unpack(msgpack.packb(msgpack.ExtType(core_codec.EXT_SERVER_ID, msgpack.packb(("a", "b")))))


@pytest.mark.parametrize("doc, why", [
    ([_tag("Rpcs"), 7, 1, [_tag("ServerId"), "s", "n1"], 1, []], "Rpcs.to is an int"),
    ([_tag("Rpcs"), [_tag("ServerId"), "s", "n2"], "1", [_tag("ServerId"), "s", "n1"], 1, []],
     "Rpcs.to_inc is a string"),
    ([_tag("Rpcs"), [_tag("ServerId"), "s", "n2"], 1, [_tag("ServerId"), "s", "n1"], 1, ["not an rpc"]],
     "Rpcs.rpcs holds a string"),
    ([_tag("Entry"), True, 3, [_tag("Noop"), 0]], "Entry.index is a bool"),
    ([_tag("Entry"), 1, 3, "not a command"], "Entry.command is a string"),
    ([_tag("AppendEntriesRpc"), 3, [_tag("ServerId"), "s", "n1"], 0, 0, 0, [1, 2]],
     "AppendEntriesRpc.entries holds ints"),
    ([_tag("Entry"), 1], "Entry lacks fields"),
    ([_tag("Entry"), 1, 2, 3, 4, 5], "Entry has too many"),
    ([_tag("NoSuchRecord"), 1], "an unknown tag"),
])
def test_records_whose_fields_do_not_fit_their_types_are_refused(doc, why):
    with pytest.raises(DecodeError):
        WIRE.unpack(_frame(doc))


_U_FIELDS = [b"data", 7, "client:n1:c", 5, "cli/s@n1", 9, 2, True]    # ~U: Usr(NotifyReply, SessionSeq)
_S_FIELDS = [b"data", [_tag("NoReply")], 5, "cli/s@n1", 9, 2, False]  # ~S: Usr(any reply mode, SessionSeq)


def _with(fields: list, i: int, value) -> list:
    return [*fields[:i], value, *fields[i + 1:]]


@pytest.mark.parametrize("doc, why", [
    ([_tag("~U"), *_U_FIELDS[:-1]], "~U lacks a field"),
    ([_tag("~U"), *_U_FIELDS, 1], "~U has one too many"),
    ([_tag("~U")], "~U has no fields"),
    ([_tag("~U"), *_with(_U_FIELDS, 3, "5")], "~U: ts is a string"),
    ([_tag("~U"), *_with(_U_FIELDS, 3, True)], "~U: ts is a bool"),
    ([_tag("~U"), *_with(_U_FIELDS, 4, 17)], "~U: the session is an int"),
    ([_tag("~U"), *_with(_U_FIELDS, 4, None)], "~U: the session is None"),
    ([_tag("~U"), *_with(_U_FIELDS, 5, 9.0)], "~U: seq is a float"),
    ([_tag("~U"), *_with(_U_FIELDS, 6, "2")], "~U: low is a string"),
    ([_tag("~U"), *_with(_U_FIELDS, 7, 1)], "~U: known is an int"),
    ([_tag("~S"), *_with(_S_FIELDS, 1, "not a reply mode")], "~S: the reply mode is a string"),
    ([_tag("~S"), *_with(_S_FIELDS, 1, [_tag("Noop"), 0])], "~S: the reply mode is another record"),
    ([_tag("~S"), *_S_FIELDS[:-1]], "~S lacks a field"),
    ([_tag("~E"), 1, 3, *_U_FIELDS[:-1]], "~E lacks a field"),
    ([_tag("~E"), "1", 3, *_U_FIELDS], "~E: the index is a string"),
    ([_tag("~E"), 1, None, *_U_FIELDS], "~E: the term is None"),
    ([_tag("~E"), 1, 3, *_with(_U_FIELDS, 7, "yes")], "~E: known is a string"),
    ([_tag("~X"), 1], "an unknown compact tag"),
    ([_tag("~"), 1], "a bare ~"),
    ([_tag("Entry"), 1, 3, [_tag("~E"), 1, 3, *_U_FIELDS]], "an Entry holding an Entry"),
    ([_tag("AppendEntriesRpc"), 3, [_tag("ServerId"), "s", "n1"], 0, 0, 0, [[_tag("~U"), *_U_FIELDS]]],
     "AppendEntriesRpc.entries holds a command, not an entry"),
])
def test_compact_forms_whose_fields_do_not_fit_are_refused(doc, why):
    with pytest.raises(DecodeError):
        WIRE.unpack(_frame(doc))


def test_compact_forms_from_the_wire_decode_to_the_records_they_stand_for():
    from ra_actors.core.types import NotifyReply, SessionSeq
    cmd = Usr(b"data", NotifyReply(7, "client:n1:c"), 5, SessionSeq("cli/s@n1", 9, 2, True))
    assert WIRE.unpack(_frame([_tag("~U"), *_U_FIELDS])) == cmd
    assert WIRE.unpack(_frame([_tag("~E"), 1, 3, *_U_FIELDS])) == Entry(1, 3, cmd)
    assert WIRE.unpack(_frame([_tag("~S"), *_S_FIELDS])) == Usr(b"data", t.NoReply(), 5,
                                                                SessionSeq("cli/s@n1", 9, 2, False))
    msg = _aer(tuple(Entry(i, 3, Usr(("put", i), NotifyReply(i, "client:n1:c"), 9, SessionSeq("c/s@n1", i, 1)))
                     for i in range(1, 5)))
    assert WIRE.unpack(WIRE.pack(msg)) == msg


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_decode_or_raise_decode_error(data):
    try:
        WIRE.unpack(data)
    except DecodeError:
        pass


_tags = st.sampled_from(["Rpcs", "Entry", "Usr", "AppendEntriesRpc", "ServerId", "Noop", "ClientCall",
                         "Bundle", "Forwarded", "Command", "SnapshotMeta", "InstallSnapshotRpc",
                         "SessionSeq", "NotifyReply", "~U", "~S", "~E", "Pipeline", "PipelinedColumns"])
_leaves = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**63, max_value=2**64 - 1),
                   st.text(max_size=8), st.binary(max_size=8))
_docs = st.recursive(_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=6),
    st.tuples(_tags.map(_tag), st.lists(inner, max_size=7)).map(lambda t: [t[0], *t[1]])), max_leaves=40)


@settings(max_examples=400, deadline=None)
@given(_docs)
def test_random_record_shaped_documents_decode_or_raise_decode_error(doc):
    """Arrays that start with real tags and hold random fields: either a
    well-typed record comes out, or DecodeError -- nothing else."""
    try:
        WIRE.unpack(_frame(doc))
    except DecodeError:
        pass


# ============================================================ the stream hub
def _connected_pair():
    a_addr, b_addr = Addr("a"), Addr("b")
    a, b = StreamHub("127.0.0.1", a_addr), StreamHub("127.0.0.1", b_addr)
    b.dial(a_addr, a.endpoint)
    pump([a, b], lambda r: b.has_link(a_addr) and a.pending == [] and a.links)
    return a, b, a_addr, b_addr


def _raw_to(hub, frames: bytes) -> socket.socket:
    sock = proven_connection(hub)
    hello = _frame(["hello", "intruder"])
    sock.sendall(struct.pack(">I", len(hello)) + hello + frames)
    return sock


@pytest.mark.parametrize("payload, why", [
    (b"\xc1" * 16, "bytes msgpack never produces"),
    (_frame([_tag("Rpcs"), 7, 1, 7, 1, []]), "a record with wrong field types"),
    (msgpack.packb(msgpack.ExtType(EXT_RECORD, b"\xc0")), "a nested record document"),
])
def test_a_bad_frame_closes_that_connection_only_and_is_counted(payload, why):
    a, b, a_addr, b_addr = _connected_pair()
    intruder = _raw_to(a, struct.pack(">I", len(payload)) + payload)
    try:
        pump([a, b], lambda r: a.protocol_errors == 1)
        intruder.settimeout(2.0)
        assert intruder.recv(10) == b"", "the bad connection is closed"
        good = Rpcs(S1, 1, S2, 1, ())
        assert b.send(a_addr, good)
        got = pump([a, b], lambda r: r[id(a)])
        assert [msg for _p, msg in got[id(a)]] == [good], "the other connection still works"
        assert a.stats()["protocol_errors"] == 1
    finally:
        intruder.close()
        a.close()
        b.close()


def test_a_frame_announcing_more_than_max_frame_is_a_protocol_error():
    a, b, a_addr, b_addr = _connected_pair()
    intruder = _raw_to(a, struct.pack(">I", MAX_FRAME + 1))
    try:
        pump([a, b], lambda r: a.protocol_errors == 1)
    finally:
        intruder.close()
        a.close()
        b.close()


def test_a_protocol_error_is_logged_once_per_address():
    logged = []
    a = StreamHub("127.0.0.1", Addr("a"), log=logged.append)
    try:
        socks = [_raw_to(a, struct.pack(">I", 2) + b"\xc1\xc1") for _ in range(3)]
        pump([a], lambda r: a.protocol_errors == 3)
        assert len(logged) == 1 and "127.0.0.1" in logged[0]
        for s in socks:
            s.close()
    finally:
        a.close()


def test_a_frame_too_big_for_the_receiver_is_refused_to_its_sender(monkeypatch):
    a, b, a_addr, b_addr = _connected_pair()
    try:
        monkeypatch.setattr("ra_actors.actors.stream.MAX_FRAME", 1000)
        assert not b.send(a_addr, ("x", b"y" * 2000)), "the caller sends it another way"
        assert b.send(a_addr, ("x", b"y" * 10))
    finally:
        a.close()
        b.close()


@dataclasses.dataclass(frozen=True, slots=True)
class _Checked:
    """A record whose construction does more than assign."""
    a: int

    def __post_init__(self) -> None:
        if self.a < 0:
            raise TypeError("negative")


def test_records_decode_as_their_constructors_build_them():
    """Decoding sets a plain record's slots directly when every field is
    given; with fields left to their defaults, or for a record whose
    __init__ or __post_init__ does more than assign, it calls the class."""
    from ra_actors.core.types import NotifyReply, SessionSeq
    session = Usr(b"x", NotifyReply(7, "client:n1:c"), 5, SessionSeq("s/a@n1", 9, 2, True))
    assert WIRE.unpack(WIRE.pack(session)) == session
    short = WIRE.unpack(_frame([_tag("Usr"), b"x", [_tag("NoReply")]]))      # (older senders: no ts, no session)
    assert short == Usr(b"x", t.NoReply()) and short.session is None and short.ts == 0

    @dataclasses.dataclass(frozen=True, slots=True)
    class Doubled:
        a: int

        def __init__(self, a: int) -> None:
            object.__setattr__(self, "a", a * 2)

    wire = core_codec.Codec([Doubled, _Checked], wire=True)
    assert wire.unpack(msgpack.packb([msgpack.ExtType(EXT_TAG, b"Doubled"), 2])).a == 4
    assert wire.unpack(wire.pack(_Checked(3))) == _Checked(3)
    with pytest.raises(DecodeError):
        wire.unpack(msgpack.packb([msgpack.ExtType(EXT_TAG, b"_Checked"), -1]))


def test_a_record_builder_builds_what_the_constructor_builds_and_nothing_else():
    """The leader builds its per-command records with codec.record_builder:
    equal, equally hashed and still frozen records of plain dataclasses;
    any class whose construction does more than assign is built by itself."""
    from ra_actors.core.messages import Command
    from ra_actors.core.types import Entry, NotifyReply, SessionSeq
    session = core_codec.record_builder(SessionSeq)("s/a@n1", 9, 2, True)
    assert session == SessionSeq("s/a@n1", 9, 2, True) and hash(session) == hash(SessionSeq("s/a@n1", 9, 2, True))
    command = core_codec.record_builder(Command)(b"x", core_codec.record_builder(NotifyReply)(7, "c"), "low", 5,
                                                 session)
    assert command == Command(b"x", NotifyReply(7, "c"), "low", 5, session)
    entry = core_codec.record_builder(Entry)(3, 2, Usr(b"x", t.NoReply()))
    assert entry == Entry(3, 2, Usr(b"x", t.NoReply())) and type(entry) is Entry
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.index = 4
    with pytest.raises(TypeError):
        core_codec.record_builder(SessionSeq)("s/a@n1", 9)      # every field, in order: no defaults

    assert core_codec.record_builder(_Checked) is _Checked
