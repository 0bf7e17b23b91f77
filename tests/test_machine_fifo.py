"""Unit tests of the fifo machine (``machines/fifo.py``): ``apply`` driven
directly, command by command, with exact replies and effects.

Every command goes through :func:`ra_actors.codec.normalise` first, as it
would on its way into the log, and every state the machine returns must
survive msgpack unchanged (a snapshot of it must decode to the same value).
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the clone itself must be importable
    sys.path.insert(0, str(REPO))

from machines import fifo  # noqa: E402
from ra_actors.codec import normalise  # noqa: E402
from ra_actors.core.effects import (  # noqa: E402
    Demonitor, Down, MachineVersion, Monitor, ReleaseCursor, SendMsg, Timer, TimerFired,
)
from ra_actors.core.types import CommandMeta, ServerId  # noqa: E402

DELIVERY_TIMEOUT = fifo.DELIVERY_TIMEOUT


class Queue:
    """One fifo machine plus the log position and leader clock it runs at."""

    def __init__(self, check_round_trip: bool = True, **config: Any):
        self.state = fifo.init(config)
        self.index = 0
        self.now = 1_000
        self.check_round_trip = check_round_trip

    def __call__(self, command: Any) -> tuple[Any, list]:
        self.index += 1
        meta = CommandMeta(self.index, 1, self.now, 0)
        self.state, reply, effects = fifo.apply(meta, normalise(command), self.state)
        if self.check_round_trip:
            assert normalise(self.state) == self.state
        return reply, effects

    def enqueue(self, *bodies: Any) -> list[int]:
        ids = []
        for body in bodies:
            reply, _ = self(("enqueue", body))
            assert reply[0] == "ok"
            ids.append(reply[1])
        return ids

    @property
    def overview(self) -> dict:
        return fifo.overview(self.state)


def delivery(consumer: Any, *msgs: tuple, name: Any = None) -> SendMsg:
    return SendMsg(consumer, ("delivery", name, tuple(msgs)))


# ================================================================ commands
def test_enqueue_assigns_increasing_ids_and_delivers_nothing_without_consumers():
    q = Queue()
    assert q(("enqueue", "a")) == (("ok", 1), [])
    assert q(("enqueue", {"k": (1, 2)})) == (("ok", 2), [])
    assert q(("enqueue", b"\x00")) == (("ok", 3), [])
    assert q.overview["messages_ready"] == 3
    assert q.overview["enqueued_total"] == 3
    assert fifo.depth(q.state) == 3


def test_checkout_monitors_the_consumer_and_delivers_up_to_prefetch_in_one_batch():
    q = Queue(name="orders")
    q.enqueue("a", "b", "c")
    reply, effects = q(("checkout", "c1", 2))
    assert reply == "ok"
    assert effects == [Monitor("process", "c1"),
                       delivery("c1", (1, "a", 0), (2, "b", 0), name="orders")]
    assert q.overview["messages_ready"] == 1
    assert q.overview["messages_checked_out"] == 2
    assert fifo.consumers(q.state) == (("c1", 2, (1, 2)),)


def test_checkout_on_an_empty_queue_delivers_on_the_next_enqueue():
    q = Queue()
    assert q(("checkout", "c1", 5)) == ("ok", [Monitor("process", "c1")])
    assert q(("enqueue", "a")) == (("ok", 1), [delivery("c1", (1, "a", 0))])


def test_checking_out_again_changes_only_the_prefetch():
    q = Queue()
    q.enqueue("a", "b", "c")
    q(("checkout", "c1", 1))
    # No second Monitor: the consumer is already watched.
    assert q(("checkout", "c1", 3)) == ("ok", [delivery("c1", (2, "b", 0), (3, "c", 0))])
    assert fifo.consumers(q.state) == (("c1", 3, (1, 2, 3)),)
    # A lower prefetch keeps what is checked out but delivers nothing more
    # until the consumer is below it again.
    q.enqueue("d", "e")
    assert q(("checkout", "c1", 1)) == ("ok", [])
    assert q(("settle", "c1", (1, 2))) == ("ok", [])
    assert q(("settle", "c1", (3,))) == ("ok", [delivery("c1", (4, "d", 0))])


def test_prefetch_limits_unsettled_messages_and_settling_frees_credit():
    q = Queue()
    q.enqueue("a", "b", "c", "d", "e")
    q(("checkout", "c1", 2))
    assert q(("enqueue", "f")) == (("ok", 6), [])  # no credit left
    assert q(("settle", "c1", (1,))) == ("ok", [delivery("c1", (3, "c", 0))])
    assert q(("settle", "c1", (2, 3))) == ("ok", [delivery("c1", (4, "d", 0), (5, "e", 0))])
    assert q.overview["messages_ready"] == 1
    assert q.overview["messages_checked_out"] == 2
    assert q.overview["settled_total"] == 3


def test_consumers_with_credit_are_served_round_robin():
    q = Queue()
    q(("checkout", "c1", 10))
    q(("checkout", ServerId("c2", "n1"), 10))
    effects = [q(("enqueue", body))[1] for body in "abcd"]
    assert effects == [[delivery("c1", (1, "a", 0))],
                       [delivery(ServerId("c2", "n1"), (2, "b", 0))],
                       [delivery("c1", (3, "c", 0))],
                       [delivery(ServerId("c2", "n1"), (4, "d", 0))]]


def test_a_batch_is_spread_round_robin_with_one_send_per_consumer():
    q = Queue()
    q(("checkout", "c1", 1))
    q(("checkout", "c2", 5))
    q(("checkout", "c3", 5))
    q.enqueue("a")  # -> c1, which moves to the back of the line
    q(("checkout", "c4", 5))  # joins at the back
    q.enqueue("b", "c", "d", "e", "f")  # c2, c3, (c1 is full) c4, c2, c3
    # c1, without credit, kept its place at the front.
    assert fifo.consumers(q.state) == (("c1", 1, (1,)), ("c4", 5, (4,)), ("c2", 5, (2, 5)),
                                       ("c3", 5, (3, 6)))
    _, effects = q(("cancel", "c4"))
    # c4's message is returned and goes to the first in line with credit.
    assert effects == [Demonitor("process", "c4"), delivery("c2", (4, "d", 1))]
    _, effects = q(("return", "c3", (3, 6)))
    # Two messages become ready in one apply: c3 is first in line with credit
    # (c1 is full), then c2.  One SendMsg per consumer.
    assert effects == [delivery("c3", (3, "c", 1)), delivery("c2", (6, "f", 1))]
    _, effects = q(("return", "c2", (2, 4, 5, 6)))
    # Four ready, c2 (5 credits) and c3 (4 credits) alternate: c2 was served
    # last, so c3 goes first.  Each gets all of its share in one SendMsg.
    assert effects == [delivery("c3", (2, "b", 1), (5, "e", 1)),
                       delivery("c2", (4, "d", 2), (6, "f", 2))]


def test_settle_of_unknown_or_foreign_ids_is_refused_and_changes_nothing_for_them():
    q = Queue()
    q.enqueue("a", "b")
    q(("checkout", "c1", 1))
    q(("checkout", "c2", 1))
    assert q(("settle", "c2", (1,))) == (("error", "unknown_msg_ids", (1,)), [])
    assert fifo.consumers(q.state) == (("c1", 1, (1,)), ("c2", 1, (2,)))
    # Known ids in the same command are still settled; a repeat is unknown.
    q.enqueue("c")
    assert q(("settle", "c1", (1, 99, 1))) == (("error", "unknown_msg_ids", (99, 1)),
                                               [delivery("c1", (3, "c", 0))])
    assert q(("settle", "ghost", (2,))) == (("error", "unknown_msg_ids", (2,)), [])
    assert q.overview["settled_total"] == 1


def test_a_settled_message_is_never_delivered_again():
    q = Queue()
    q.enqueue("a", "b")
    q(("checkout", "c1", 2))
    q(("settle", "c1", (1,)))
    q(("checkout", "c2", 5))
    _, effects = q(Down("c1", "noproc"))
    assert effects == [delivery("c2", (2, "b", 1))]
    assert q(("settle", "c1", (1,))) == (("error", "unknown_msg_ids", (1,)), [])
    assert q(("return", "c2", (1,))) == (("error", "unknown_msg_ids", (1,)), [])
    assert fifo.depth(q.state) == 1


def test_return_redelivers_with_an_incremented_delivery_count_before_fresh_messages():
    q = Queue()
    q.enqueue("a", "b", "c")
    q(("checkout", "c1", 2))
    assert q(("return", "c1", (2, 1))) == ("ok", [delivery("c1", (1, "a", 1), (2, "b", 1))])
    assert q(("return", "c1", (1,))) == ("ok", [delivery("c1", (1, "a", 2))])
    assert q.overview["returned_total"] == 3
    assert q(("return", "c1", (3,))) == (("error", "unknown_msg_ids", (3,)), [])


def test_cancel_returns_unsettled_messages_to_the_front_in_order():
    q = Queue()
    q.enqueue("a", "b", "c", "d")
    q(("checkout", "c1", 2))
    reply, effects = q(("cancel", "c1"))
    assert (reply, effects) == ("ok", [Demonitor("process", "c1")])
    assert q.overview["consumers"] == 0
    _, effects = q(("checkout", "c2", 3))
    assert effects == [Monitor("process", "c2"),
                       delivery("c2", (1, "a", 1), (2, "b", 1), (3, "c", 0))]
    assert q(("cancel", "c1")) == (("error", "unknown_consumer"), [])


def test_consumer_death_redelivers_its_messages_to_another_consumer_first():
    q = Queue()
    q.enqueue("a", "b", "c")
    q(("checkout", "c1", 2))
    q(("checkout", "c2", 3))  # gets "c"
    q.enqueue("d")  # -> c2
    q(("settle", "c2", (3,)))
    q.enqueue("e")  # -> c2
    # c1 dies holding 1 and 2: they go to c2 first (c2 holds 4, 5: one slot
    # left), then wait at the front of the queue, ahead of "f".
    _, effects = q(Down("c1", "noconnection"))
    assert effects == [delivery("c2", (1, "a", 1))]
    q.enqueue("f")
    assert q(("settle", "c2", (4, 5))) == ("ok", [delivery("c2", (2, "b", 1), (6, "f", 0))])
    assert q.overview["consumers"] == 1
    # A Down for something that is not a consumer changes nothing.
    before = normalise(q.state)
    assert q(Down("stranger", "noproc")) == ("ok", [])
    assert q.state == before


def test_purge_drops_ready_messages_but_keeps_checked_out_ones():
    q = Queue()
    q.enqueue("a", "b", "c")
    q(("checkout", "c1", 1))
    q(("return", "c1", (1,)))  # 1 goes straight back to c1 ...
    q(("checkout", "c2", 1))  # ... and 2 to c2: only 3 is ready
    q(("return", "c2", (2,)))  # 2 back to c2: still only 3 ready
    q(("cancel", "c2"))  # 2 is ready again, returned
    assert q(("purge",)) == (("ok", 2), [])
    assert q.overview["messages_ready"] == 0
    assert fifo.consumers(q.state) == (("c1", 1, (1,)),)
    # Ids are never reused after a purge.
    assert q(("enqueue", "d")) == (("ok", 4), [])
    assert q.overview["purged_total"] == 2
    assert fifo.depth(q.state) == 2
    o = q.overview
    assert o["enqueued_total"] == fifo.depth(q.state) + o["settled_total"] + o["purged_total"]


# ======================================================= delivery timeout
def test_delivery_timeout_returns_overdue_messages_and_rearms_for_the_oldest_checkout():
    q = Queue(delivery_timeout_ms=1_000)
    q.enqueue("a", "b", "c")
    q.now = 10_000
    _, effects = q(("checkout", "c1", 2))
    # First checkout: arm the timer for one full timeout.
    assert effects == [Monitor("process", "c1"), delivery("c1", (1, "a", 0), (2, "b", 0)),
                       Timer("delivery_timeout", 1_000)]
    q.now = 10_400
    _, effects = q(("settle", "c1", (1,)))  # 3 is checked out at 10_400
    assert effects == [delivery("c1", (3, "c", 0))]  # no new timer: one is pending
    q.now = 11_000
    _, effects = q(TimerFired("delivery_timeout"))
    # 2 is overdue and comes back (the consumer stays, so it gets it again);
    # 3 expires at 11_400 and 2, redelivered now, at 12_000.
    assert effects == [delivery("c1", (2, "b", 1)), Timer("delivery_timeout", 400)]
    assert fifo.consumers(q.state) == (("c1", 2, (2, 3)),)
    q.now = 11_400
    _, effects = q(TimerFired("delivery_timeout"))
    assert effects == [delivery("c1", (3, "c", 1)), Timer("delivery_timeout", 600)]
    q(("settle", "c1", (2, 3)))
    q.now = 12_000
    # Nothing left checked out: the timer is not re-armed.
    assert q(TimerFired("delivery_timeout")) == ("ok", [])


def test_a_consumer_whose_messages_expire_goes_to_the_back_of_the_line():
    q = Queue(delivery_timeout_ms=500)
    q.enqueue("a")
    q(("checkout", "slow", 1))  # gets "a"
    q(("checkout", "fast", 1))  # joins behind "slow"
    q.now += 500
    _, effects = q(TimerFired("delivery_timeout"))
    # "slow" still has its place (and credit again) but loses its turn, so the
    # overdue message goes to another consumer if one has credit.
    assert effects == [delivery("fast", (1, "a", 1)), Timer("delivery_timeout", 500)]
    assert fifo.consumers(q.state) == (("slow", 1, ()), ("fast", 1, (1,)))


def test_without_a_delivery_timeout_no_timer_is_armed_and_a_stray_firing_is_harmless():
    q = Queue()
    q.enqueue("a")
    _, effects = q(("checkout", "c1", 1))
    assert not any(isinstance(e, Timer) for e in effects)
    before = normalise(q.state)
    q.now += 10**9
    assert q(TimerFired("delivery_timeout")) == ("ok", [])
    assert q.state == before


# ============================================================ callbacks
def test_a_new_leader_re_monitors_every_consumer_and_rearms_the_timer():
    q = Queue(delivery_timeout_ms=2_000)
    q(("checkout", "c1", 1))
    q(("checkout", ServerId("c2", "n2"), 1))
    assert fifo.state_enter("leader", q.state) == [Monitor("process", "c1"),
                                                   Monitor("process", ServerId("c2", "n2"))]
    q.enqueue("a")
    assert fifo.state_enter("leader", q.state) == [Monitor("process", ServerId("c2", "n2")),
                                                   Monitor("process", "c1"),
                                                   Timer("delivery_timeout", 2_000)]
    for role in ("follower", "candidate", "recovered", "eol"):
        assert fifo.state_enter(role, q.state) == []


def test_release_cursor_every_n_commands_carries_the_state_at_that_index():
    q = Queue(release_cursor_every=3)
    _, e1 = q(("enqueue", "a"))
    _, e2 = q(("checkout", "c1", 1))
    _, e3 = q(("purge",))
    assert e1 == []
    assert e2 == [Monitor("process", "c1"), delivery("c1", (1, "a", 0))]
    assert e3 == [ReleaseCursor(3, q.state)]
    assert [q(("bogus",))[1] for _ in range(3)] == [[], [], [ReleaseCursor(6, q.state)]]


def test_unknown_and_malformed_commands_change_nothing():
    q = Queue()
    q.enqueue("a")
    q(("checkout", "c1", 1))
    before = normalise(q.state)
    cases = [
        (("bogus",), ("error", "unknown_command")),
        ("enqueue", ("error", "unknown_command")),
        (("enqueue",), ("error", "unknown_command")),
        ((), ("error", "unknown_command")),
        (TimerFired("other"), ("error", "unknown_command")),
        (MachineVersion(0, 1), ("error", "unknown_command")),
        (("checkout", "c2", 0), ("error", "bad_command")),
        (("checkout", "c2", True), ("error", "bad_command")),
        (("checkout", {"not": "hashable"}, 1), ("error", "bad_command")),
        (("settle", "c1", 1), ("error", "bad_command")),
        (("settle", "c1", ("x",)), ("error", "bad_command")),
        (("return", "c1", None), ("error", "bad_command")),
        (("cancel", {"x": 1}), ("error", "bad_command")),
    ]
    for command, expected in cases:
        assert q(command) == (expected, []), command
        assert q.state == before, command


def test_init_rejects_bad_config():
    with pytest.raises(ValueError):
        fifo.init({"delivery_timeout_ms": -1})
    with pytest.raises(ValueError):
        fifo.init({"release_cursor_every": "3"})


def test_state_survives_msgpack_with_every_kind_of_consumer_and_body():
    q = Queue(name="q", delivery_timeout_ms=100, release_cursor_every=2)
    q.enqueue("s", b"bytes", 7, None, (1, (2, "x")), {"k": [1, 2], 3: "int key"})
    q(("checkout", ServerId("srv", "n1"), 2))
    q(("checkout", ("client", 42), 1))
    q(("checkout", "handle-1", 1))
    q(("return", ServerId("srv", "n1"), (1,)))
    q(Down(("client", 42), "noproc"))
    state = copy.deepcopy(q.state)
    assert normalise(state) == state
    assert normalise(fifo.overview(state)) == fifo.overview(state)
    assert normalise(fifo.consumers(state)) == fifo.consumers(state)


def test_queries():
    q = Queue()
    q.enqueue("a", "b", "c")
    q(("checkout", "c1", 2))
    q(("settle", "c1", (1,)))
    assert fifo.depth(q.state) == 2
    assert fifo.consumers(q.state) == (("c1", 2, (2, 3)),)
    assert fifo.overview_query(q.state) == {
        "type": "fifo", "messages_ready": 0, "messages_checked_out": 2, "consumers": 1,
        "enqueued_total": 3, "settled_total": 1, "returned_total": 0, "purged_total": 0,
        "next_msg_id": 4, "delivery_timeout_ms": 0, "release_cursor_every": 0,
    }


def test_apply_is_deterministic():
    commands = [("enqueue", "a"), ("checkout", "c1", 1), ("enqueue", "b"), ("checkout", "c2", 1),
                Down("c1", "noproc"), ("settle", "c2", (2,)), ("enqueue", "c"), TimerFired(DELIVERY_TIMEOUT)]
    runs = []
    for _ in range(2):
        q = Queue(delivery_timeout_ms=10)
        runs.append(([q(c) for c in commands], q.state))
    assert runs[0] == runs[1]


# ======================================================== property test
CONSUMERS = ("c0", "c1", ServerId("c2", "n1"), ("c", 3))
TIMEOUT_MS = 50

consumer_ix = st.integers(0, len(CONSUMERS) - 1)
picks = st.lists(st.integers(0, 40), max_size=4)
operation = st.one_of(
    st.tuples(st.just("enqueue")),
    st.tuples(st.just("checkout"), consumer_ix, st.integers(1, 4)),
    st.tuples(st.just("cancel"), consumer_ix),
    st.tuples(st.just("settle"), consumer_ix, picks, st.booleans()),
    st.tuples(st.just("return"), consumer_ix, picks, st.booleans()),
    st.tuples(st.just("down"), consumer_ix),
    st.tuples(st.just("purge")),
    st.tuples(st.just("timer"), st.integers(0, 2 * TIMEOUT_MS)),
)


class Model:
    """What must be true of every message, maintained from the commands sent
    and the deliveries seen (never from the machine's state)."""

    def __init__(self) -> None:
        self.enqueued: list[int] = []
        self.ready: set[int] = set()
        self.held: dict[int, tuple[Any, int]] = {}  # msg_id -> (consumer, checkout time)
        self.settled: set[int] = set()
        self.purged: set[int] = set()
        self.deliveries: dict[int, int] = {}  # msg_id -> times delivered

    def held_by(self, consumer: Any) -> list[int]:
        return sorted(i for i, (c, _) in self.held.items() if c == consumer)

    def give_back(self, ids) -> None:
        for i in ids:
            del self.held[i]
            self.ready.add(i)

    def see(self, effects: list, now: int, prefetch: dict) -> None:
        for e in effects:
            if not isinstance(e, SendMsg):
                continue
            tag, _name, msgs = e.msg
            assert tag == "delivery"
            for msg_id, body, count in msgs:
                # Never to two consumers at once, never after settle/purge.
                assert msg_id in self.ready, f"delivered {msg_id} which is not ready"
                assert body == f"m{msg_id}"
                assert count == self.deliveries.get(msg_id, 0)
                self.ready.discard(msg_id)
                self.held[msg_id] = (e.to, now)
                self.deliveries[msg_id] = count + 1
            # Deliveries never take a consumer beyond its prefetch (it may be
            # above it only after checking out again with a lower one).
            assert len(self.held_by(e.to)) <= prefetch[e.to]


def check(q: Queue, model: Model) -> None:
    state = q.state
    ready_ids = set(state["messages"]) | {m[0] for m in state["returns"]}
    assert len(ready_ids) == len(state["messages"]) + len(state["returns"])
    assert ready_ids == model.ready
    held = {}
    for consumer, prefetch, ids in fifo.consumers(state):
        for i in ids:
            assert i not in held, f"{i} checked out twice"
            held[i] = consumer
        # No ready message while a consumer has credit.
        assert not (ready_ids and len(ids) < prefetch)
    assert held == {i: c for i, (c, _) in model.held.items()}
    # Every enqueued message is in exactly one place.
    places = [model.ready, set(model.held), model.settled, model.purged]
    assert sum(len(p) for p in places) == len(model.enqueued)
    assert set().union(*places) == set(model.enqueued)
    o = fifo.overview(state)
    assert o["enqueued_total"] == fifo.depth(state) + o["settled_total"] + o["purged_total"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, max_size=50))
def test_no_message_is_lost_or_duplicated(ops):
    q = Queue(check_round_trip=False, delivery_timeout_ms=TIMEOUT_MS)
    model = Model()
    live: set[Any] = set()
    for op in ops:
        kind = op[0]
        if kind == "enqueue":
            msg_id = q.state["next_msg_id"]
            reply, effects = q(("enqueue", f"m{msg_id}"))
            assert reply == ("ok", msg_id)
            model.enqueued.append(msg_id)
            model.ready.add(msg_id)
        elif kind == "checkout":
            consumer = CONSUMERS[op[1]]
            reply, effects = q(("checkout", consumer, op[2]))
            assert reply == "ok"
            assert (Monitor("process", consumer) in effects) == (consumer not in live)
            live.add(consumer)
        elif kind in ("cancel", "down"):
            consumer = CONSUMERS[op[1]]
            reply, effects = q(("cancel", consumer) if kind == "cancel" else Down(consumer, "noproc"))
            if consumer in live or kind == "down":
                assert reply == "ok"
            else:
                assert reply == ("error", "unknown_consumer")
            model.give_back(model.held_by(consumer))
            live.discard(consumer)
        elif kind in ("settle", "return"):
            consumer = CONSUMERS[op[1]]
            mine = model.held_by(consumer)
            if op[3] or not mine:  # raw ids: unknown, foreign, settled, ...
                ids = list(op[2])
            else:
                ids = [mine[p % len(mine)] for p in op[2]]
            reply, effects = q((kind, consumer, tuple(ids)))
            known = list(dict.fromkeys(i for i in ids if i in mine))
            unknown = list(ids)
            for i in known:
                unknown.remove(i)
            assert reply == (("error", "unknown_msg_ids", tuple(unknown)) if unknown else "ok")
            if kind == "settle":
                for i in known:
                    del model.held[i]
                    model.settled.add(i)
            else:
                model.give_back(known)
        elif kind == "purge":
            reply, effects = q(("purge",))
            assert reply == ("ok", len(model.ready))
            model.purged |= model.ready
            model.ready = set()
        else:  # the leader clock moves on and the delivery timer fires
            q.now += op[1]
            reply, effects = q(TimerFired("delivery_timeout"))
            assert reply == "ok"
            model.give_back(sorted(i for i, (_, since) in model.held.items()
                                   if q.now - since >= TIMEOUT_MS))
        model.see(effects, q.now, {c: p for c, p, _ in fifo.consumers(q.state)})
        check(q, model)
    assert normalise(q.state) == q.state
