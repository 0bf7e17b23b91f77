"""Unit tests of the lock machine (``machines/lock.py``): ``apply`` driven
directly, command by command, with exact replies and effects.

Commands go through :func:`ra_actors.codec.normalise` first, as they would
on their way into the log, and every returned state must survive msgpack
unchanged.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the clone itself must be importable
    sys.path.insert(0, str(REPO))

from machines import lock  # noqa: E402
from ra_actors.codec import normalise  # noqa: E402
from ra_actors.core.effects import (  # noqa: E402
    Demonitor, Down, MachineVersion, Monitor, ReleaseCursor, SendMsg, TimerFired,
)
from ra_actors.core.types import CommandMeta, ServerId  # noqa: E402

ALICE, BOB, CAROL = "alice", ServerId("bob", "n2"), ("carol", 3)


class Locks:
    """One lock machine plus the log position it runs at."""

    def __init__(self, **config: Any):
        self.state = lock.init(config)
        self.index = 0

    def __call__(self, command: Any) -> tuple[Any, list]:
        self.index += 1
        self.state, reply, effects = lock.apply(CommandMeta(self.index, 1, 0, 0),
                                                normalise(command), self.state)
        assert normalise(self.state) == self.state
        return reply, effects


def granted(owner: Any, name: Any) -> SendMsg:
    return SendMsg(owner, ("lock_granted", name))


def test_acquiring_a_free_lock_grants_it_and_monitors_the_owner():
    locks = Locks()
    assert locks(("acquire", "db", ALICE)) == (("ok", "acquired"), [Monitor("process", ALICE)])
    assert lock.holder(locks.state, "db") == ALICE
    # A second lock for the same owner: already monitored.
    assert locks(("acquire", "cache", ALICE)) == (("ok", "acquired"), [])
    # Acquiring again what one holds is harmless (a retried command).
    assert locks(("acquire", "db", ALICE)) == (("ok", "acquired"), [])
    assert lock.overview(locks.state) == {"type": "lock", "locks_held": 2, "waiting": 0,
                                          "owners": 1, "release_cursor_every": 0}


def test_waiters_queue_in_fifo_order_and_the_lock_passes_on_release():
    locks = Locks()
    locks(("acquire", "db", ALICE))
    assert locks(("acquire", "db", BOB)) == (("ok", "queued", 1), [Monitor("process", BOB)])
    assert locks(("acquire", "db", CAROL)) == (("ok", "queued", 2), [Monitor("process", CAROL)])
    assert locks(("acquire", "db", BOB)) == (("ok", "queued", 1), [])  # retry: same place
    assert lock.waiters(locks.state, "db") == (BOB, CAROL)
    # Alice holds nothing else: she is no longer watched.
    assert locks(("release", "db", ALICE)) == ("ok", [granted(BOB, "db"),
                                                      Demonitor("process", ALICE)])
    assert lock.holder(locks.state, "db") == BOB
    assert lock.waiters(locks.state, "db") == (CAROL,)
    assert locks(("release", "db", BOB)) == ("ok", [granted(CAROL, "db"), Demonitor("process", BOB)])
    assert locks(("release", "db", CAROL)) == ("ok", [Demonitor("process", CAROL)])
    assert lock.holder(locks.state, "db") is None
    assert locks.state["locks"] == {} and locks.state["owners"] == {}


def test_only_the_holder_may_release():
    locks = Locks()
    assert locks(("release", "db", ALICE)) == (("error", "not_holder"), [])
    locks(("acquire", "db", ALICE))
    locks(("acquire", "db", BOB))
    assert locks(("release", "db", BOB)) == (("error", "not_holder"), [])
    assert lock.holder(locks.state, "db") == ALICE


def test_try_acquire_never_queues():
    locks = Locks()
    assert locks(("try_acquire", "db", ALICE)) == (("ok", "acquired"), [Monitor("process", ALICE)])
    assert locks(("try_acquire", "db", ALICE)) == (("ok", "acquired"), [])
    assert locks(("try_acquire", "db", BOB)) == (("error", "locked"), [])
    assert lock.waiters(locks.state, "db") == ()
    assert lock.overview(locks.state)["owners"] == 1


def test_a_waiter_can_give_up():
    locks = Locks()
    locks(("acquire", "db", ALICE))
    locks(("acquire", "db", BOB))
    locks(("acquire", "db", CAROL))
    assert locks(("cancel", "db", BOB)) == ("ok", [Demonitor("process", BOB)])
    assert locks(("cancel", "db", BOB)) == (("error", "not_waiting"), [])
    assert locks(("cancel", "db", ALICE)) == (("error", "not_waiting"), [])  # the holder
    assert locks(("release", "db", ALICE)) == ("ok", [granted(CAROL, "db"), Demonitor("process", ALICE)])


def test_a_dead_holder_releases_every_lock_and_leaves_every_queue():
    locks = Locks()
    locks(("acquire", "db", ALICE))
    locks(("acquire", "cache", ALICE))
    locks(("acquire", "db", BOB))
    locks(("acquire", "files", CAROL))
    locks(("acquire", "files", ALICE))
    locks(("acquire", "files", BOB))
    # Alice dies: "db" passes to Bob, "cache" is freed, she leaves the queue
    # of "files" (Bob moves up).  No Demonitor: her monitor already fired.
    reply, effects = locks(Down(ALICE, "noproc"))
    assert (reply, effects) == ("ok", [granted(BOB, "db")])
    assert lock.holder(locks.state, "db") == BOB
    assert lock.holder(locks.state, "cache") is None
    assert lock.waiters(locks.state, "files") == (BOB,)
    assert locks.state["owners"] == {BOB: 2, CAROL: 1}
    # Carol dies too: Bob gets "files" as well.
    assert locks(Down(CAROL, "noconnection")) == ("ok", [granted(BOB, "files")])
    assert lock.overview(locks.state) == {"type": "lock", "locks_held": 2, "waiting": 0,
                                          "owners": 1, "release_cursor_every": 0}
    # A Down for someone who holds and waits on nothing changes nothing.
    before = normalise(locks.state)
    assert locks(Down(ALICE, "noproc")) == ("ok", [])
    assert locks.state == before


def test_a_new_leader_re_monitors_every_owner():
    locks = Locks()
    locks(("acquire", "db", ALICE))
    locks(("acquire", "db", BOB))
    locks(("try_acquire", "x", CAROL))
    assert lock.state_enter("leader", locks.state) == [Monitor("process", ALICE),
                                                       Monitor("process", BOB),
                                                       Monitor("process", CAROL)]
    for role in ("follower", "candidate", "recovered", "eol"):
        assert lock.state_enter(role, locks.state) == []


def test_release_cursor_every_n_commands():
    locks = Locks(release_cursor_every=2)
    assert locks(("acquire", "db", ALICE))[1] == [Monitor("process", ALICE)]
    assert locks(("acquire", "db", ALICE))[1] == [ReleaseCursor(2, locks.state)]
    assert locks(("bogus",))[1] == []
    assert locks(("release", "db", ALICE))[1] == [Demonitor("process", ALICE),
                                                  ReleaseCursor(4, locks.state)]


def test_unknown_and_malformed_commands_change_nothing():
    locks = Locks()
    locks(("acquire", "db", ALICE))
    before = normalise(locks.state)
    cases = [
        (("bogus", "db", ALICE), ("error", "unknown_command")),
        (("acquire", "db"), ("error", "unknown_command")),
        ("acquire", ("error", "unknown_command")),
        (TimerFired("t"), ("error", "unknown_command")),
        (MachineVersion(0, 1), ("error", "unknown_command")),
        (("acquire", {"not": "hashable"}, BOB), ("error", "bad_command")),
        (("release", "db", {"x": 1}), ("error", "bad_command")),
    ]
    for command, expected in cases:
        assert locks(command) == (expected, []), command
        assert locks.state == before, command


def test_init_rejects_bad_config():
    with pytest.raises(ValueError):
        lock.init({"release_cursor_every": -2})


def test_state_and_queries_survive_msgpack():
    locks = Locks()
    locks(("acquire", ("tuple", "name"), BOB))
    locks(("acquire", ("tuple", "name"), ALICE))
    locks(("acquire", 7, CAROL))
    assert normalise(locks.state) == locks.state
    assert lock.holder(locks.state, ("tuple", "name")) == BOB
    assert lock.holder(locks.state, {"unhashable": 1}) is None
    assert normalise(lock.waiters(locks.state, ("tuple", "name"))) == (ALICE,)
    assert normalise(lock.overview(locks.state)) == lock.overview(locks.state)


# ======================================================== property test
OWNERS = (ALICE, BOB, CAROL, "dave")
NAMES = ("a", "b", "c")

operation = st.tuples(st.sampled_from(("acquire", "try_acquire", "release", "cancel", "down")),
                      st.sampled_from(NAMES), st.sampled_from(OWNERS))


@settings(max_examples=150, deadline=None)
@given(st.lists(operation, max_size=40))
def test_locks_pass_in_fifo_order_and_owners_are_watched_exactly_while_involved(ops):
    """A reference model (plain dict of queues) against the machine: same
    holders and queues, grants to the first waiter, a Monitor exactly when an
    owner becomes involved and a Demonitor exactly when it stops being."""
    locks = Locks()
    queues: dict[str, list] = {n: [] for n in NAMES}  # holder first, then waiters
    watched: set = set()
    for op, name, owner in ops:
        command = Down(owner, "noproc") if op == "down" else (op, name, owner)
        previous_heads = {n: (q[0] if q else None) for n, q in queues.items()}
        reply, effects = locks(command)
        q = queues[name]
        if op == "acquire":
            if owner not in q:
                q.append(owner)
            assert reply == (("ok", "acquired") if q[0] == owner else ("ok", "queued", q.index(owner)))
        elif op == "try_acquire":
            if not q:
                q.append(owner)
            assert reply == (("ok", "acquired") if q[0] == owner else ("error", "locked"))
        elif op == "release":
            assert reply == ("ok" if q and q[0] == owner else ("error", "not_holder"))
            if reply == "ok":
                q.pop(0)
        elif op == "cancel":
            assert reply == ("ok" if owner in q[1:] else ("error", "not_waiting"))
            if reply == "ok":
                q.remove(owner)
        else:
            assert reply == "ok"
            for other in queues.values():
                if owner in other:
                    other.remove(owner)
        involved = {o for other in queues.values() for o in other}
        grants = [granted(q[0], n) for n, q in queues.items()
                  if q and q[0] != previous_heads[n] and previous_heads[n] is not None]
        expected = [e for e in effects if isinstance(e, SendMsg)]
        assert sorted(map(repr, expected)) == sorted(map(repr, grants))
        assert {e.target for e in effects if isinstance(e, Monitor)} == involved - watched
        demonitored = {e.target for e in effects if isinstance(e, Demonitor)}
        assert demonitored == ((watched - involved) if op != "down" else set())
        watched = involved
        for n in NAMES:
            assert lock.holder(locks.state, n) == (queues[n][0] if queues[n] else None)
            assert lock.waiters(locks.state, n) == tuple(queues[n][1:])
        assert set(locks.state["owners"]) == watched
