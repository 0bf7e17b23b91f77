"""Unit tests of the example machines' apply functions (kv, counter, non_assoc)."""
from __future__ import annotations

import functools

import pytest

from ra_actors import codec
from ra_actors.core.effects import ReleaseCursor, TimerFired
from ra_actors.core.machine import Machine
from ra_actors.core.types import CommandMeta

import machines.counter as counter
import machines.kv as kv
import machines.non_assoc as non_assoc


def meta(index: int) -> CommandMeta:
    return CommandMeta(index, 1)


def run(module, commands, config=None):
    """Apply ``commands`` in order; returns (state, [replies], [effects])."""
    m = Machine(module)
    state = m.init(config or {})
    replies, effects = [], []
    for i, cmd in enumerate(commands, start=1):
        state, reply, effs = m.apply(0, meta(i), cmd, state)
        replies.append(reply)
        effects.extend(effs)
    return state, replies, effects


# ------------------------------------------------------------------- kv
def test_kv_write_read_delete():
    state, replies, _ = run(kv, [("write", "a", 1), ("read", "a"), ("read", "b"),
                                 ("delete", "a"), ("read", "a")])
    assert replies == ["ok", 1, None, "ok", None]
    assert kv.read(state, "a") is None


def test_kv_cas_success_and_failure_are_distinguishable():
    state, replies, _ = run(kv, [("cas", "k", None, 1), ("cas", "k", 5, 2), ("cas", "k", 1, 3)])
    assert replies == [kv.CAS_OK, (kv.CAS_FAILED, 1), kv.CAS_OK]
    assert kv.read(state, "k") == 3


def test_kv_apply_does_not_mutate_the_given_state():
    m = Machine(kv)
    s0 = m.init({})
    s1, _, _ = m.apply(0, meta(1), ("write", "a", 1), s0)
    s2, _, _ = m.apply(0, meta(2), ("write", "a", 2), s1)
    assert kv.read(s0, "a") is None and kv.read(s1, "a") == 1 and kv.read(s2, "a") == 2


def test_kv_unknown_and_builtin_commands_change_nothing():
    state, replies, _ = run(kv, [("write", "a", 1), ("bogus",), TimerFired("t"), ("write", "a")])
    assert replies[1:] == [("error", "unknown_command")] * 3
    assert kv.read(state, "a") == 1


def test_kv_release_cursor_every_n_commands():
    _, _, effects = run(kv, [("write", "a", i) for i in range(7)], {"release_cursor_every": 3})
    assert [e.index for e in effects] == [3, 6]
    assert all(isinstance(e, ReleaseCursor) for e in effects)
    assert effects[0].state["kv"] == {"a": 2}


def test_kv_never_releases_by_default():
    _, _, effects = run(kv, [("write", "a", i) for i in range(20)])
    assert effects == []


def test_kv_state_survives_msgpack_and_query_by_partial():
    state, _, _ = run(kv, [("write", "a", 1), ("write", "b", (1, 2))])
    back = codec.unpack(codec.pack(state))
    assert back == state
    assert functools.partial(kv.read, key="b")(back) == (1, 2)
    assert kv.overview(back)["keys"] == 2


def test_kv_rejects_negative_interval():
    with pytest.raises(ValueError):
        kv.init({"release_cursor_every": -1})


# -------------------------------------------------------------- counter
def test_counter_adds_and_replies_new_value():
    state, replies, _ = run(counter, [("add", 2), ("add", -5), ("add", True), ("mul", 3)])
    assert replies == [2, -3, ("error", "unknown_command"), ("error", "unknown_command")]
    assert counter.read(state) == -3


def test_counter_initial_value():
    assert run(counter, [("add", 1)], {"initial": 10})[0] == 11


# ------------------------------------------------------------ non_assoc
def test_non_assoc_operations():
    state, replies, _ = run(non_assoc, [("add", 4), ("mul", 3), ("sub", 5), ("div", 5)])
    # 1 + 4 = 5; * 3 = 15; - 5 = 10; / 5 = 2
    assert replies == [5, 15, 10, 2]
    assert non_assoc.read(state) == 2


def test_non_assoc_is_order_sensitive():
    a, _, _ = run(non_assoc, [("add", 3), ("mul", 7)])
    b, _, _ = run(non_assoc, [("mul", 7), ("add", 3)])
    assert a != b


def test_non_assoc_division_is_exact_and_refuses_zero():
    state, replies, _ = run(non_assoc, [("div", 3), ("mul", 3), ("div", 0), ("div", non_assoc.P)])
    assert replies[1] == 1
    assert replies[2:] == [("error", "division_by_zero")] * 2
    assert non_assoc.read(state) == 1


def test_non_assoc_state_stays_in_range_and_serialisable():
    state, _, _ = run(non_assoc, [("mul", 2**60), ("mul", 2**60), ("sub", 2**62)])
    assert 0 <= state < non_assoc.P
    assert codec.unpack(codec.pack(state)) == state


def test_non_assoc_rejects_malformed_commands():
    _, replies, _ = run(non_assoc, [("pow", 2), ("add", "x"), ("add",)])
    assert replies == [("error", "unknown_command")] * 3
