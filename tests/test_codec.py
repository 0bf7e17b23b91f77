"""ra_actors.codec: what goes to disk and to the network as msgpack."""
from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ra_actors import codec, errors
from ra_actors.core import types as t
from ra_actors.core.types import ActorRef, ServerId


def test_records_round_trip_as_the_same_records():
    values = [
        t.Usr(("write", 1, b"x"), t.AwaitConsensus(("client:n1:c", 3)), 5),
        t.Usr(b"y" * 16, t.NotifyReply(7, "client:n1:c"), 1700000000000),
        t.Usr(t.ClusterChange(((ServerId("a", "n1"), "voter"),)), t.NoReply(), 1),
        {"a": (1, 2, ServerId("s", "n")), 3: (ActorRef("x", "n"),), "nested": ((), ((1,),))},
    ]
    for v in values:
        assert codec.unpack(codec.pack(v)) == v
    # a ServerId stays a ServerId, not a plain tuple
    assert type(codec.unpack(codec.pack(ServerId("a", "b")))) is ServerId


def test_sequences_come_back_as_tuples_and_sets_as_sorted_tuples():
    assert codec.normalise([1, [2, 3]]) == (1, (2, 3))
    assert codec.normalise({3, 1, 2}) == (1, 2, 3)


def test_documents_of_the_first_record_encoding_still_decode():
    # each record its own extension document (EXT_RECORD / EXT_SERVER_ID)
    sid = msgpack.ExtType(codec.EXT_SERVER_ID, msgpack.packb(("s", "n")))
    reply = msgpack.ExtType(codec.EXT_RECORD, msgpack.packb(["NotifyReply", [7, "client:n1:c"]]))
    usr = msgpack.ExtType(codec.EXT_RECORD, msgpack.packb(["Usr", [b"data", reply, 5]]))
    old = msgpack.packb({"cmd": usr, "who": sid})
    assert codec.unpack(old) == {"cmd": t.Usr(b"data", t.NotifyReply(7, "client:n1:c"), 5),
                                 "who": ServerId("s", "n")}


def test_user_tuples_and_foreign_extension_values_are_left_alone():
    ext = msgpack.ExtType(42, b"raw")
    v = (("Usr", 1), ext, ("tag-like", b"Usr"))
    assert codec.unpack(codec.pack(v)) == v


def test_an_unknown_record_name_is_an_error_not_an_import():
    forged = msgpack.packb([msgpack.ExtType(codec.EXT_TAG, b"os.system"), "echo hi"])
    with pytest.raises(ValueError, match="unknown record type"):
        codec.unpack(forged)


def test_values_msgpack_cannot_encode_are_invalid_commands():
    with pytest.raises(errors.InvalidCommand):
        codec.pack(object())


def test_two_records_may_not_share_a_tag():
    """Records travel under their class name: a second class with a name
    already taken would be decoded as the first (it once silently turned the
    core's ``Redirect`` reply into the public ``events.NotLeader`` on the
    replication stream)."""
    import dataclasses

    from ra_actors import events
    from ra_actors.core.codec import Codec, register

    @dataclasses.dataclass(frozen=True)
    class Entry:            # noqa: F811 - the point: a second "Entry"
        index: int

    with pytest.raises(ValueError, match="two records named Entry"):
        register(Entry)
    with pytest.raises(ValueError, match="two records named Entry"):
        Codec([Entry])
    Codec([events.Applied, events.Rejected, events.NotLeader])   # the stream's own records fit


def test_sized_gives_the_normal_form_and_the_encoded_size_of_any_command():
    """What a client checks a command with (size limit, the form members
    see): scalars and bytes at every length boundary of msgpack, containers."""
    values = [b"", b"x" * 255, b"x" * 256, b"x" * 65535, b"x" * 65536, "", "é" * 200, 0, -1, 2 ** 63,
              -(2 ** 63), 2 ** 64 - 1, 1.5, True, None, [1, [2, b"x"]], {3, 1}, ("write", 1, b"v"),
              t.Usr(b"y", t.NoReply(), 1)]
    for v in values:
        normal, size = codec.sized(v)
        assert normal == codec.unpack(codec.pack(v)) and type(normal) is type(codec.unpack(codec.pack(v)))
        assert size == len(codec.pack(v)), v


def test_shortcuts_refuse_what_msgpack_refuses():
    for bad in (2 ** 64, -(2 ** 63) - 1, "\ud800", object(), [1, object()]):
        with pytest.raises(errors.InvalidCommand):
            codec.sized(bad)
        with pytest.raises(errors.InvalidCommand):
            codec.normalise(bad)


def test_normalise_keeps_scalars_and_turns_containers_into_tuples():
    for v in (b"abc", "abc", 7, 2 ** 64 - 1, 1.25, False, None):
        assert codec.normalise(v) == v and type(codec.normalise(v)) is type(v)
    assert codec.normalise([b"a", [1]]) == (b"a", (1,))


def test_encoding_after_a_refused_value_and_after_a_large_one_is_unchanged():
    """Packers are reused (core.codec._Packers): a value that fails half-way
    and one larger than the kept buffer leave nothing behind."""
    small = t.Usr(b"y" * 16, t.NotifyReply(7, "client:n1:c"), 1, t.SessionSeq("s/a@n1", 3, 1, True))
    expected = msgpack.packb([msgpack.ExtType(codec.EXT_TAG, b"~U"), b"y" * 16, 7, "client:n1:c", 1,
                              "s/a@n1", 3, 1, True])
    assert codec.pack(small) == expected
    with pytest.raises(errors.InvalidCommand):
        codec.pack([b"half", object()])
    assert codec.pack(small) == expected
    big = b"z" * (3 << 20)
    assert codec.unpack(codec.pack(big)) == big
    assert codec.pack(small) == expected


# ================================================ compact forms (sessions)
def tagged_as_before(value) -> bytes:
    """``value`` as every version before the compact forms wrote it: each
    record a tagged array ``[tag, field, ...]`` (what old WALs, segments
    and frames hold)."""
    import dataclasses

    def default(obj):
        if dataclasses.is_dataclass(obj):
            return [msgpack.ExtType(codec.EXT_TAG, type(obj).__name__.encode()),
                    *(getattr(obj, f.name) for f in dataclasses.fields(obj))]
        if type(obj) is tuple:
            return list(obj)
        raise TypeError(obj)
    return msgpack.packb(value, default=default, use_bin_type=True, strict_types=True)


def _tag(name: str) -> msgpack.ExtType:
    return msgpack.ExtType(codec.EXT_TAG, name.encode())


SESSION = t.SessionSeq("cli/null0@n1", 42, 40, True)
PIPELINED = t.Usr(b"y" * 16, t.NotifyReply(7, "client:n1:c"), 1700000000000, SESSION)
CALLED = t.Usr(("add", 1), t.AwaitConsensus(("client:n1:c", 3), ("local", "n2")), 5, SESSION)


def test_a_session_command_is_one_flat_array_under_a_short_tag():
    """A pipelined command with a session (Usr, NotifyReply, SessionSeq) is
    written as [~U, data, correlation, client, ts, session, seq, low, known];
    any other reply mode keeps its record: [~S, data, reply_mode, ts, ...];
    a log entry holding a ~U command is flattened once more: [~E, index,
    term, ...]."""
    assert codec.pack(PIPELINED) == msgpack.packb(
        [_tag("~U"), b"y" * 16, 7, "client:n1:c", 1700000000000, "cli/null0@n1", 42, 40, True])
    assert codec.pack(CALLED) == msgpack.packb(
        [_tag("~S"), ["add", 1], [_tag("AwaitConsensus"), ["client:n1:c", 3], ["local", "n2"]], 5,
         "cli/null0@n1", 42, 40, True])
    assert codec.pack(t.Entry(9, 2, PIPELINED)) == msgpack.packb(
        [_tag("~E"), 9, 2, b"y" * 16, 7, "client:n1:c", 1700000000000, "cli/null0@n1", 42, 40, True])
    assert len(codec.pack(t.Entry(9, 2, PIPELINED))) < len(tagged_as_before(t.Entry(9, 2, PIPELINED))) - 35


def test_records_that_fit_no_compact_shape_keep_their_tagged_form():
    no_session = t.Usr(b"y", t.NotifyReply(7, "c"), 1)
    assert codec.pack(no_session) == tagged_as_before(no_session)
    for entry in (t.Entry(1, 1, t.Noop(3)), t.Entry(2, 1, no_session)):
        assert codec.pack(entry) == tagged_as_before(entry)
    # an entry whose command is ~S stays an Entry record around the ~S array
    raw = msgpack.unpackb(codec.pack(t.Entry(3, 1, CALLED)))
    assert raw[:3] == [_tag("Entry"), 3, 1] and raw[3][0] == _tag("~S")


def test_what_earlier_versions_wrote_decodes_to_the_same_records():
    """Old WAL payloads, segments and frames hold the tagged records (and
    older ones the nested documents): they decode to exactly what the
    compact forms decode to, on disk and from the wire."""
    from ra_actors.actors.stream import wire_codec
    wire = wire_codec()
    nested_session = msgpack.ExtType(codec.EXT_RECORD, msgpack.packb(["SessionSeq", ["cli/null0@n1", 42, 40, True]]))
    nested_reply = msgpack.ExtType(codec.EXT_RECORD, msgpack.packb(["NotifyReply", [7, "client:n1:c"]]))
    first_form = msgpack.packb(msgpack.ExtType(codec.EXT_RECORD, msgpack.packb(
        ["Usr", [b"y" * 16, nested_reply, 1700000000000, nested_session]])))
    assert codec.unpack(first_form) == PIPELINED
    for value in (PIPELINED, CALLED, t.Entry(9, 2, PIPELINED), t.Entry(3, 1, CALLED),
                  (t.Entry(1, 1, PIPELINED), t.Entry(2, 1, CALLED))):
        old, new = tagged_as_before(value), codec.pack(value)
        assert old != new
        assert codec.unpack(old) == codec.unpack(new) == value
        assert wire.unpack(old) == wire.unpack(new) == value


@settings(max_examples=200, deadline=None)
@given(data=st.one_of(st.binary(max_size=20), st.text(max_size=8), st.integers(-2**63, 2**64 - 1),
                      st.tuples(st.text(max_size=3), st.integers(0, 9))),
       correlation=st.one_of(st.integers(-2**63, 2**64 - 1), st.text(max_size=6), st.none()),
       session=st.text(min_size=1, max_size=30), seq=st.integers(1, 2**63 - 1), known=st.booleans(),
       ts=st.integers(0, 2**63 - 1), index=st.integers(0, 2**63 - 1), pipelined=st.booleans())
def test_compact_forms_round_trip_on_disk_and_on_the_wire(data, correlation, session, seq, known, ts, index,
                                                         pipelined):
    from ra_actors.actors.stream import wire_codec
    wire = wire_codec()
    mode = t.NotifyReply(correlation, "client:n1:c") if pipelined else t.AwaitConsensus(("client:n1:c", 1))
    cmd = t.Usr(data, mode, ts, t.SessionSeq(session, seq, max(1, seq // 2), known))
    for value in (cmd, t.Entry(index, 7, cmd), (t.Entry(index, 7, cmd),)):
        assert codec.unpack(codec.pack(value)) == value
        assert wire.unpack(wire.pack(value)) == value
        assert codec.unpack(tagged_as_before(value)) == value
