"""Putting a server's WAL writes back in order (ra_actors/actors/sequencing.py)
and the WAL actor that relies on it: Thespian may deliver one actor's
messages to another out of order, or twice."""
from __future__ import annotations

import random

from ra_actors.actors import storage
from ra_actors.actors.protocol import ForgetServer, WalWrite
from ra_actors.actors.sequencing import Resequencer

GEN = (7, 1)


def offer(seq: Resequencer, n: int, now: float = 0.0, sender="s1", gen=GEN) -> list:
    return seq.offer(sender, (*gen, n), f"m{n}", now)


def test_in_order_messages_pass_at_once():
    seq = Resequencer()
    assert [offer(seq, n) for n in (1, 2, 3)] == [["m1"], ["m2"], ["m3"]]
    assert not seq.has_holes()


def test_a_late_message_releases_the_ones_that_overtook_it():
    seq = Resequencer()
    assert offer(seq, 1) == ["m1"]
    assert offer(seq, 3) == [] and offer(seq, 4) == []
    assert seq.has_holes()
    assert offer(seq, 2) == ["m2", "m3", "m4"]
    assert not seq.has_holes()
    assert seq.stats["reordered"] == 2


def test_repeats_are_dropped_whether_delivered_or_waiting():
    seq = Resequencer()
    offer(seq, 1)
    offer(seq, 3)
    assert offer(seq, 1) == [] and offer(seq, 3) == []
    assert seq.stats["duplicates"] == 2
    assert offer(seq, 2) == ["m2", "m3"]


def test_any_shuffle_comes_out_in_the_order_sent():
    rng = random.Random(5)
    for _ in range(50):
        order = list(range(1, 40))
        rng.shuffle(order)
        order += rng.sample(order, 5)            # and a few repeats, late
        seq = Resequencer()
        out = [m for n in order for m in offer(seq, n)]
        assert out == [f"m{n}" for n in range(1, 40)]


def test_a_new_generation_supersedes_the_old_one():
    """A restarted server (or one writing to a restarted WAL) counts from 1
    again; what was left of the old generation, waiting or late, is dropped."""
    seq = Resequencer()
    offer(seq, 1)
    offer(seq, 3)                                  # waits for 2
    assert offer(seq, 1, gen=(7, 2)) == ["m1"]     # the new epoch starts over
    assert offer(seq, 2) == []                     # the old epoch's 2: stale
    assert offer(seq, 2, gen=(7, 2)) == ["m2"]
    assert offer(seq, 5, gen=(6, 9)) == []         # an older incarnation: stale
    assert seq.stats["stale"] == 2
    assert not seq.has_holes()


def test_a_hole_is_given_up_after_the_callers_limit():
    seq = Resequencer()
    offer(seq, 1, now=10.0)
    offer(seq, 3, now=10.1)
    offer(seq, 4, now=10.2)
    assert seq.skip_holes(now=10.3, older_than=0.5) == {}
    assert seq.skip_holes(now=10.6, older_than=0.5) == {"s1": ["m3", "m4"]}
    assert offer(seq, 2) == []                     # too late now: a repeat
    assert offer(seq, 5) == ["m5"]


def test_a_hole_with_too_many_waiting_is_given_up_at_once():
    seq = Resequencer(max_waiting=3)
    offer(seq, 1)
    assert [offer(seq, n) for n in (3, 4, 5)] == [[], [], []]
    assert offer(seq, 6) == ["m3", "m4", "m5", "m6"]
    assert seq.stats["holes_skipped"] == 1


def test_a_second_hole_waits_its_own_time():
    seq = Resequencer()
    offer(seq, 1, now=0.0)
    offer(seq, 3, now=0.0)
    offer(seq, 5, now=0.0)
    assert offer(seq, 2, now=0.4) == ["m2", "m3"]     # 4 is missing now, since 0.4
    assert seq.skip_holes(now=0.6, older_than=0.5) == {}
    assert seq.skip_holes(now=0.9, older_than=0.5) == {"s1": ["m5"]}


def test_senders_are_independent():
    seq = Resequencer()
    offer(seq, 1, sender="a")
    assert offer(seq, 2, sender="b") == []
    assert offer(seq, 2, sender="a") == ["m2"]
    assert offer(seq, 1, sender="b") == ["m1", "m2"]


# ------------------------------------------------------------ the WAL actor
class _Service:
    """What the WAL actor hands its writes to (the real one writes and syncs)."""

    def __init__(self):
        self.appends: list = []

    def write(self, appends, writer=0):
        self.appends.extend(appends)

    def forget(self, uid):
        pass


def _wal_actor():
    actor = storage.WalActor()
    actor.svc = _Service()
    actor.wakeups = []
    actor.wakeupAfter = actor.wakeups.append          # no actor system here
    return actor


def test_the_wal_actor_writes_each_servers_appends_in_the_order_sent():
    """The bug this replaced: under load a write overtaken by later ones was
    dropped as "stale", the WAL asked once for the gap and dropped the
    answer too, and the server never had those entries written."""
    actor = _wal_actor()
    writes = [WalWrite("s1", (f"a{n}",), (9, 1, n)) for n in range(1, 30)]
    shuffled = writes[:]
    random.Random(3).shuffle(shuffled)
    for w in shuffled + shuffled[:4]:                  # reordered, and a few twice
        actor._dispatch(w, "server-address")
    assert actor.svc.appends == [f"a{n}" for n in range(1, 30)]
    assert actor.writers["s1"] == "server-address"


def test_the_wal_actor_gives_up_on_a_lost_write_after_a_while(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(storage.time, "monotonic", lambda: clock[0])
    actor = _wal_actor()
    actor._dispatch(WalWrite("s1", ("a1",), (9, 1, 1)), "srv")
    actor._dispatch(WalWrite("s1", ("a3",), (9, 1, 3)), "srv")     # 2 is lost
    assert actor.svc.appends == ["a1"] and len(actor.wakeups) == 1
    clock[0] += storage.WAL_HOLE_WAIT_S
    actor._dispatch(storage.WakeupMessage(actor.wakeups[0]), None)
    # the WAL itself now sees the gap and asks the server to write it again
    assert actor.svc.appends == ["a1", "a3"]
    assert len(actor.wakeups) == 1                                   # no holes: no timer


def test_a_forgotten_server_starts_over():
    actor = _wal_actor()
    actor._dispatch(WalWrite("s1", ("a1",), (9, 1, 1)), "srv")
    actor._dispatch(ForgetServer("s1"), None)
    actor._dispatch(WalWrite("s1", ("b1",), (9, 1, 1)), "srv")
    assert actor.svc.appends == ["a1", "b1"]
