"""ra_actors.codec: what goes to disk and to the network as msgpack."""
from __future__ import annotations

import msgpack
import pytest

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
    expected = msgpack.packb([msgpack.ExtType(codec.EXT_TAG, b"Usr"), b"y" * 16,
                              [msgpack.ExtType(codec.EXT_TAG, b"NotifyReply"), 7, "client:n1:c"], 1,
                              [msgpack.ExtType(codec.EXT_TAG, b"SessionSeq"), "s/a@n1", 3, 1, True]])
    assert codec.pack(small) == expected
    with pytest.raises(errors.InvalidCommand):
        codec.pack([b"half", object()])
    assert codec.pack(small) == expected
    big = b"z" * (3 << 20)
    assert codec.unpack(codec.pack(big)) == big
    assert codec.pack(small) == expected
