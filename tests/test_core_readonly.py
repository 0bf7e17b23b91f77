"""Queries run on a read-only view of the machine state (a query that
changed the state would fork that replica from the others, outside Raft)."""
from __future__ import annotations

import dataclasses

import pytest

from core_helpers import make_follower
from ra_actors.core import messages as m
from ra_actors.core.readonly import unwrap, view
from ra_actors.core.types import Error, ServerId


def test_a_query_that_tries_to_change_the_state_fails_and_the_state_is_intact():
    """The probe that found it: ``builtins:dict.clear`` as a local query
    wiped a replica's state.  Now it fails as a query, and nothing changed."""
    srv = make_follower()
    srv.machine_state["kv"]["k"] = 1          # (the test machine's dict state)
    before = repr(srv.machine_state)
    for mutate in (dict.clear, lambda s: s["kv"].clear(), lambda s: s.__setitem__("x", 1),
                   lambda s: s["kv"].update(a=2), lambda s: s["kv"].pop("k")):
        role, effects = srv.handle(m.Query("local", mutate, "q"))
        assert isinstance(effects[0].reply, Error) and effects[0].reply.kind == "QueryFailed"
    assert repr(srv.machine_state) == before


def test_a_query_reads_everything_and_its_result_is_plain_values():
    srv = make_follower()
    srv.machine_state["kv"]["k"] = [1, {"a": (2, 3)}]
    role, effects = srv.handle(m.Query("local", lambda s: (s["kv"]["k"], s["kv"], len(s), "k" in s["kv"]), "q"))
    _index_term, value = effects[0].reply.value
    assert value == ([1, {"a": (2, 3)}], {"k": [1, {"a": (2, 3)}]}, 2, True)
    assert type(value[0]) is list and type(value[1]) is dict, "views are unwrapped into plain values"


def test_views_are_lazy_read_only_and_equal_to_what_they_wrap():
    state = {"a": [1, 2, {3}], "b": {"c": bytearray(b"x")}}
    v = view(state)
    assert v == state and v["a"] == [1, 2, {3}] and list(v) == ["a", "b"]
    for write in (lambda: v.__setitem__("a", 1), lambda: v["a"].append(3), lambda: v["a"][2].add(4),
                  lambda: setattr(v, "x", 1)):
        with pytest.raises((TypeError, AttributeError)):
            write()
    assert v["b"]["c"] == b"x" and isinstance(v["b"]["c"], bytes)
    assert unwrap(v) == state and unwrap(v) is not state


def test_immutable_values_pass_through_and_other_objects_are_copied():
    sid = ServerId("a", "n1")
    assert view(sid) is sid and view((1, "x")) == (1, "x") and view(frozenset({1})) == frozenset({1})

    @dataclasses.dataclass(frozen=True)
    class Frozen:
        n: int

    f = Frozen(1)
    assert view(f) is f

    class Mutable:
        def __init__(self):
            self.items = [1]

    obj = Mutable()
    seen = view(obj)
    seen.items.append(2)
    assert obj.items == [1], "a mutable object of the machine's own class is given as a copy"
