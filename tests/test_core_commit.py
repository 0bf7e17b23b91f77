"""Commitment in the pure core (Raft §5.3, §5.4.2) on leader and follower."""
from __future__ import annotations

from core_helpers import (
    N1, N2, N3, aer, ae_fail, ae_ok, log_of, make_follower, make_leader, mach, noop, send, sync_cmd, usr,
)
from ra_actors.core.types import Ok  # noqa: E402
from ra_actors.core import effects as fx
from ra_actors.core import messages as m
from ra_actors.core.server import Recovered
from ra_actors.core.types import AwaitConsensus, Entry, Usr


def _e(index, term, data, frm):
    return Entry(index, term, Usr(data, AwaitConsensus(frm), 0))


def test_leader_match_index_is_its_last_durable_index():
    """Raft §5.4.2 with Ra's WAL (Figure 2 "persist before responding"
    applied to the leader): the leader counts itself only up to what its
    own Written confirmed; a follower's ack plus an undurable leader copy is
    no majority."""
    srv = make_leader(N1)
    e2 = _e(2, 1, ("put", "a", 1), "c1")
    assert srv.handle(sync_cmd(("put", "a", 1), "c1")) == ("leader", [
        fx.LogAppend((e2,)),
        send(N2, aer(1, N1, 1, 1, (e2,), commit=1)),
        send(N3, aer(1, N1, 1, 1, (e2,), commit=1)),
    ])
    assert srv.handle(ae_ok(1, N2, 2)) == ("leader", [])       # leader copy not durable yet
    assert srv.commit_index == 1
    assert srv.handle(m.Written(1, 2, 2)) == ("leader", [
        fx.Reply("c1", Ok(None), N1),
        fx.PersistLastApplied(2),
        send(N2, aer(1, N1, 2, 1, (), commit=2)),
        send(N3, aer(1, N1, 2, 1, (), commit=2)),
    ])


def test_majority_of_followers_commits_without_leaders_own_write():
    """Raft §5.3: an entry is committed once stored on a majority — two
    followers of three are a majority even if the leader's write is slow.
    The last_applied hint is capped at the leader's durable index (1) until
    its own Written arrives."""
    srv = make_leader(N1)
    srv.handle(sync_cmd(("put", "a", 1), "c1"))
    assert srv.handle(ae_ok(1, N2, 2)) == ("leader", [])
    assert srv.handle(ae_ok(1, N3, 2)) == ("leader", [
        fx.Reply("c1", Ok(None), N1),
        fx.PersistLastApplied(1),
        send(N2, aer(1, N1, 2, 1, (), commit=2)),
        send(N3, aer(1, N1, 2, 1, (), commit=2)),
    ])


def test_figure_8_older_term_entry_commits_only_through_current_term_entry():
    """Raft §5.4.2 (figure 8): a leader never commits an entry from a previous
    term by counting replicas, even once a majority stores it; it commits
    when an entry of its own term is on a majority, and the earlier entry
    with it (Log Matching)."""
    old = usr(2, 2, ("put", "old", 2))
    rec = Recovered(current_term=3, entries=(noop(1, 1), old))
    srv = make_leader(N1, recovered=rec, commit_noop=False, max_append_entries_batch=1)
    assert srv.current_term == 4
    new_noop = noop(3, 4)
    assert srv.handle(m.Written(4, 3, 3)) == ("leader", [])          # leader holds 1..3 durably
    # N2 only had index 1: it rejects, then is sent index 2 (of term 2) alone.
    assert srv.handle(ae_fail(4, N2, next_index=2, last=1, last_term=1)) == (
        "leader", [send(N2, aer(4, N1, 1, 1, (old,), commit=0))])
    # Index 2 now on a majority (N1, N2), but it is of term 2: not committed.
    assert srv.handle(ae_ok(4, N2, 2, 2)) == ("leader", [send(N2, aer(4, N1, 2, 2, (new_noop,), commit=0))])
    assert srv.commit_index == 0 and mach(srv).calls.count(("apply", "v0", 2)) == 0
    # The term-4 noop on a majority commits both.
    assert srv.handle(ae_ok(4, N2, 3, 4)) == ("leader", [
        fx.PersistLastApplied(3),
        send(N2, aer(4, N1, 3, 4, (), commit=3)),
        send(N3, aer(4, N1, 3, 4, (), commit=3)),
    ])
    assert srv.commit_index == 3
    assert srv.machine_state["applied"] == ((2, 2, ("put", "old", 2)),)


def test_ack_for_entry_of_a_different_term_does_not_count():
    """Raft §5.3 (Log Matching: same index *and term* identify an entry): a
    success reply whose last entry has another term than ours at that index
    does not raise the follower's match index."""
    srv = make_leader(N1)
    srv.handle(sync_cmd(("put", "a", 1), "c1"))
    srv.handle(m.Written(1, 2, 2))
    assert srv.handle(ae_ok(1, N2, 2, last_term=7)) == ("leader", [])
    assert srv.peers[N2].match_index == 1 and srv.commit_index == 1


def test_follower_commit_index_is_min_of_leader_commit_and_last_new_entry():
    """Raft §5.3 / Figure 2 (AppendEntries rule 5): commitIndex =
    min(leaderCommit, index of last new entry); committed entries are applied
    in order.  (The last_applied hint stays at the durable index 1: entries
    2 and 3 are not Written yet.)"""
    log = log_of(1, 1, 1, 1)
    srv = make_follower(N2, entries=log[:1])
    assert srv.handle(aer(1, N1, 1, 1, log[1:3], commit=9)) == ("follower", [
        fx.LogAppend(log[1:3]),
        fx.PersistLastApplied(1),
    ])
    assert (srv.commit_index, srv.last_applied) == (3, 3)
    assert [a[0] for a in srv.machine_state["applied"]] == [2, 3]


def test_follower_does_not_commit_unverified_entries_it_holds():
    """Raft §5.3 (rule 5 uses the last *new* entry): leaderCommit beyond what
    this AppendEntries verified does not commit stale entries the follower
    happens to hold from an older leader."""
    srv = make_follower(N2, entries=log_of(1, 1, 1), commit=1)
    role, effects = srv.handle(aer(2, N3, 1, 1, (), commit=3))
    assert role == "follower"
    assert effects == [
        fx.PersistMeta(2, None),
        fx.LeaderChanged(None, 2),
        fx.SetElectionTimer("long"),          # higher term, no leader yet ...
        fx.LeaderChanged(N3, 2),
        fx.MonitorServer(N3),
        fx.CancelElectionTimer(),             # ... until the sender is followed
        send(N3, ae_ok(2, N2, 1, 1, next_index=4)),
    ]
    assert (srv.commit_index, srv.last_applied) == (1, 1)


def test_follower_applies_commit_update_from_empty_append_entries():
    """Raft §5.3: the leader's commit index reaches followers in later
    AppendEntries (here an empty one) and they apply up to it."""
    log = log_of(1, 1, 1)
    srv = make_follower(N2, entries=log, commit=1)
    # Nothing new to acknowledge (index 3 was acked already): no reply.
    assert srv.handle(aer(1, N1, 3, 1, (), commit=3)) == ("follower", [
        fx.PersistLastApplied(3),
    ])
    assert srv.last_applied == 3


def test_commit_index_never_decreases_on_follower():
    """Raft Figure 2: commitIndex increases monotonically; an older
    AppendEntries with a smaller leaderCommit does not lower it."""
    log = log_of(1, 1, 1)
    srv = make_follower(N2, entries=log, commit=3)
    assert srv.handle(aer(1, N1, 1, 1, log[1:2], commit=1)) == ("follower", [send(N1, ae_ok(1, N2, 3, 1))])
    assert srv.commit_index == 3


# ============================================= last_applied recovery hint
def test_follower_last_applied_hint_is_capped_at_its_durable_index():
    """Raft Figure 2 ("persist before responding", extended to the
    last_applied recovery hint; lastApplied itself is volatile): the hint
    PersistLastApplied is max(min(last_applied, last_written),
    snapshot_index), never ahead of the durable log, or a crash could
    replay a stale, not-yet-overwritten entry as committed.  Applying a
    committed entry that is not durable here yet emits the lower hint;
    the Written alone emits no hint; the next apply, once durable, emits
    the full value."""
    log = log_of(1, 1, 1)
    srv = make_follower(N2, entries=log[:1])
    assert srv.handle(aer(1, N1, 1, 1, log[1:2], commit=2)) == ("follower", [
        fx.LogAppend(log[1:2]),
        fx.PersistLastApplied(1),            # 2 is applied but not yet Written
    ])
    assert (srv.commit_index, srv.last_applied, srv.log.last_written) == (2, 2, 1)
    assert srv.handle(m.Written(1, 2, 2)) == ("follower", [send(N1, ae_ok(1, N2, 2, 1))])
    assert srv.handle(aer(1, N1, 2, 1, log[2:3], commit=2)) == ("follower", [fx.LogAppend(log[2:3])])
    assert srv.handle(m.Written(1, 3, 3)) == ("follower", [send(N1, ae_ok(1, N2, 3, 1))])
    assert srv.handle(aer(1, N1, 3, 1, (), commit=3)) == ("follower", [
        fx.PersistLastApplied(3),            # durable now: the full value (3 was acked already)
    ])
    assert srv.last_applied == 3


def test_leader_last_applied_hint_is_capped_at_its_durable_index():
    """Raft §5.3 (a majority of followers commits) with the hint rule
    (PersistLastApplied never ahead of the durable log): a leader whose own
    write is slow persists its durable index as the hint; after its Written,
    the next apply emits the full value."""
    srv = make_leader(N1)
    srv.handle(sync_cmd(("put", "a", 1), "c1"))
    srv.handle(ae_ok(1, N2, 2))
    assert srv.handle(ae_ok(1, N3, 2)) == ("leader", [
        fx.Reply("c1", Ok(None), N1),
        fx.PersistLastApplied(1),                                # 2 applied, not durable here
        send(N2, aer(1, N1, 2, 1, (), commit=2)),
        send(N3, aer(1, N1, 2, 1, (), commit=2)),
    ])
    assert (srv.commit_index, srv.last_applied, srv.log.last_written) == (2, 2, 1)
    assert srv.handle(m.Written(1, 2, 2)) == ("leader", [])     # nothing newly applied
    e3 = _e(3, 1, ("put", "b", 2), "c2")
    srv.handle(sync_cmd(("put", "b", 2), "c2"))
    srv.handle(m.Written(1, 3, 3))
    assert srv.handle(ae_ok(1, N2, 3)) == ("leader", [
        fx.Reply("c2", Ok(None), N1),
        fx.PersistLastApplied(3),
        send(N2, aer(1, N1, 3, 1, (), commit=3)),
        send(N3, aer(1, N1, 3, 1, (), commit=3)),
    ])
    assert srv.log.get(3) == e3
