"""Log replication in the pure core (Raft §5.3): leader side and follower side.

Every test asserts the complete ``(role, effects)`` of the transition it is
about.
"""
from __future__ import annotations

from core_helpers import (
    N1, N2, N3, VersionedKv, aer, ae_fail, ae_ok, log_of, make_follower, make_leader, new_server, noop,
    send, usr,
)
from ra_actors.core import effects as fx
from ra_actors.core import messages as m
from ra_actors.core.server import Recovered
from ra_actors.core.types import AwaitConsensus, Entry, Usr


def _cmds(n, start=0):
    return tuple(m.Command(("put", f"k{start + i}", i), AwaitConsensus(f"c{start + i}")) for i in range(n))


def _entries(cmds, first_index, term=1):
    return tuple(Entry(first_index + i, term, Usr(c.data, c.reply_mode, c.ts)) for i, c in enumerate(cmds))


# ================================================================ leader side
def test_new_leader_appends_noop_with_its_machine_version_and_replicates_it():
    """Raft §5.4.2 / §8 (and Ra): a new leader appends a no-op entry of its
    term — carrying its machine version — and sends AppendEntries to every
    follower, with prevLogIndex/prevLogTerm of its last entry (§5.3)."""
    rec = Recovered(current_term=1, entries=(noop(1, 1), usr(2, 1)))
    srv = new_server(N1, machine=VersionedKv(), recovered=rec)
    srv.handle(m.TriggerElection())
    srv.handle(m.PreVoteResult(1, N2, srv.pre_vote_token, True))
    srv.handle(m.MetaWritten(2, N1))
    the_noop = noop(3, 2, version=1)
    a = aer(2, N1, 2, 1, (the_noop,), commit=0)
    assert srv.handle(m.RequestVoteResult(2, N3, True)) == ("leader", [
        fx.RoleChanged("leader"),
        fx.LeaderChanged(N1, 2),
        fx.CancelElectionTimer(),
        fx.LogAppend((the_noop,)),
        send(N2, a),
        send(N3, a),
    ])


def test_append_entries_batches_are_bounded_by_max_append_entries_batch():
    """Raft §5.3 with Ra's max_append_entries_batch: one AppendEntries
    carries at most that many entries; the rest follows as acks arrive."""
    srv = make_leader(N1, max_append_entries_batch=2)
    cmds = _cmds(5)
    es = _entries(cmds, 2)
    assert srv.handle(m.Commands(cmds)) == ("leader", [
        fx.LogAppend(es),
        send(N2, aer(1, N1, 1, 1, es[0:2], commit=1)),
        send(N3, aer(1, N1, 1, 1, es[0:2], commit=1)),
    ])
    assert srv.handle(ae_ok(1, N2, 3)) == ("leader", [send(N2, aer(1, N1, 3, 1, es[2:4], commit=1))])
    assert srv.handle(ae_ok(1, N2, 5)) == ("leader", [send(N2, aer(1, N1, 5, 1, es[4:5], commit=1))])
    assert srv.handle(ae_ok(1, N2, 6)) == ("leader", [])


def test_pipeline_window_limits_entries_in_flight_per_follower():
    """Raft §5.3 pipelined (Ra's max_pipeline_count): at most that many
    unacknowledged entries are in flight to one follower."""
    srv = make_leader(N1, max_append_entries_batch=2, max_pipeline_count=3)
    cmds = _cmds(5)
    es = _entries(cmds, 2)
    srv.handle(m.Commands(cmds))                       # 2..3 in flight to each follower
    c6 = _cmds(1, start=10)
    e7 = _entries(c6, 7)
    assert srv.handle(m.Commands(c6)) == ("leader", [
        fx.LogAppend(e7),
        send(N2, aer(1, N1, 3, 1, es[2:3], commit=1)),  # window room 1
        send(N3, aer(1, N1, 3, 1, es[2:3], commit=1)),
    ])
    c7 = _cmds(1, start=20)
    assert srv.handle(m.Commands(c7)) == ("leader", [fx.LogAppend(_entries(c7, 8))])  # window full
    # An ack opens the window again.
    assert srv.handle(ae_ok(1, N2, 4)) == ("leader", [send(N2, aer(1, N1, 4, 1, es[3:5], commit=1))])


def test_failed_reply_hint_makes_leader_jump_next_index():
    """Raft §5.3 (the optimisation at the end of the section): on a rejected
    AppendEntries the follower's hint lets the leader skip back in one step
    instead of decrementing nextIndex one by one."""
    log = log_of(1, 1, 1, 1, 1)
    srv = make_leader(N1, recovered=Recovered(current_term=1, entries=log), commit_noop=False)
    assert srv.peers[N2].next_index == 7
    assert srv.handle(ae_fail(2, N2, next_index=3, last=2, last_term=1)) == ("leader", [
        send(N2, aer(2, N1, 2, 1, log[2:5] + (noop(6, 2),), commit=0)),
    ])
    assert srv.peers[N2].next_index == 7


def test_failed_reply_hint_beyond_leader_log_is_clipped():
    """Raft §5.3: nextIndex never goes past the leader's last index + 1."""
    srv = make_leader(N1)
    assert srv.handle(ae_fail(1, N2, next_index=50)) == ("leader", [send(N2, aer(1, N1, 1, 1, (), commit=1))])
    assert srv.peers[N2].next_index == 2


def test_resend_write_reemits_log_append_from_that_index():
    """Ra WAL protocol (durability behind Raft §5.3): on a gap the WAL asks
    for every entry from an index on, and gets them in one LogAppend."""
    srv = make_leader(N1, commit_noop=False)
    cmds = _cmds(3)
    srv.handle(m.Commands(cmds))
    es = _entries(cmds, 2)
    srv.handle(m.Written(1, 1, 2))                       # noop and the first command are durable
    assert srv.handle(m.ResendWrite(3)) == ("leader", [fx.LogAppend(es[1:])])
    srv.handle(m.Written(1, 3, 4))
    assert srv.handle(m.ResendWrite(9)) == ("leader", [])     # nothing above the log


def test_resend_write_starts_no_higher_than_the_durable_prefix():
    """Durability is a prefix: when the WAL asks from an index above what
    it reported durable (it refused a write that followed a lost one), every
    entry above ``last_written`` is written again, as one overwrite."""
    srv = make_leader(N1, commit_noop=False)
    cmds = _cmds(3)
    srv.handle(m.Commands(cmds))
    es = _entries(cmds, 2)
    srv.handle(m.Written(1, 1, 1))                       # only the noop is durable
    assert srv.handle(m.ResendWrite(4)) == ("leader", [fx.LogAppend(es)])


def test_tick_resends_from_match_index_to_follower_without_progress():
    """Raft §5.3 ("the leader retries AppendEntries indefinitely"): Ra has
    no idle heartbeats, so a follower that acknowledged nothing for a whole
    tick is sent everything after its match index again."""
    srv = make_leader(N1)
    cmds = _cmds(1)
    e2 = _entries(cmds, 2)
    srv.handle(m.Commands(cmds))
    srv.handle(m.Written(1, 2, 2))
    srv.handle(ae_ok(1, N2, 2))                         # commits 2; N3 silent
    assert srv.handle(m.Tick(1000)) == ("leader", [])   # first tick only marks progress
    assert srv.handle(m.Tick(2000)) == ("leader", [send(N3, aer(1, N1, 1, 1, e2, commit=2))])


# ============================================================== follower side
def test_follower_rejects_append_entries_with_missing_prev_entry():
    """Raft §5.3: reply false if the log has no entry at prevLogIndex; the
    reply tells the leader where our log ends."""
    srv = make_follower(N2)
    assert srv.handle(aer(1, N1, 4, 1, (usr(5, 1),), commit=1)) == (
        "follower", [send(N1, m.AppendEntriesReply(1, N2, False, 2, 1, 1))])
    assert srv.log.last_index == 1


def test_follower_conflict_hint_skips_the_whole_conflicting_term():
    """Raft §5.3: on a term mismatch at prevLogIndex the follower rejects and
    hints the first index of the conflicting term (not below its commit)."""
    srv = make_follower(N2, term=2, entries=(noop(1, 1), usr(2, 2), usr(3, 2), usr(4, 2)), commit=1)
    assert srv.handle(aer(3, N3, 4, 3, (), commit=1)) == ("follower", [
        fx.PersistMeta(3, None),
        fx.LeaderChanged(None, 3),
        fx.SetElectionTimer("long"),
        fx.LeaderChanged(N3, 3),
        fx.MonitorServer(N3),
        fx.CancelElectionTimer(),
        send(N3, m.AppendEntriesReply(3, N2, False, 2, 4, 2)),
    ])
    assert srv.log.last_index == 4  # nothing truncated on a rejection


def test_follower_truncates_conflicting_suffix_and_acks_after_written():
    """Raft §5.3: if an existing entry conflicts with a new one (same index,
    different terms), delete it and all that follow; the new entry is
    acknowledged once durable; a late Written for the replaced entries
    (older term) is ignored."""
    srv = make_follower(N2, term=2, entries=(noop(1, 1), usr(2, 2), usr(3, 2), usr(4, 2)), commit=1)
    srv.handle(aer(3, N3, 4, 3, (), commit=1))                  # rejected, see above
    new2 = usr(2, 3, ("put", "new", 2))
    assert srv.handle(aer(3, N3, 1, 1, (new2,), commit=1)) == ("follower", [
        fx.LogAppend((new2,)),
        send(N3, ae_ok(3, N2, 1, 1, next_index=3)),             # only index 1 is durable
    ])
    assert [e.term for e in srv.log.entries] == [1, 3]
    assert srv.log.last_written == 1
    assert srv.handle(m.Written(2, 2, 4)) == ("follower", [])   # replaced entries
    assert srv.handle(m.Written(3, 2, 2)) == ("follower", [send(N3, ae_ok(3, N2, 2, 3))])


def test_follower_never_truncates_matching_entries_on_old_reordered_append():
    """Raft §5.3 ("if an existing entry conflicts ... delete"; only then): an
    old, shorter AppendEntries arriving late must not truncate the later
    entries that match the leader's log."""
    log = log_of(1, 1, 1, 1, 1)
    srv = make_follower(N2, entries=log, commit=1)
    assert srv.handle(aer(1, N1, 1, 1, log[1:3], commit=1)) == ("follower", [send(N1, ae_ok(1, N2, 5, 1))])
    assert srv.log.last_index == 5 and srv.log.last_written == 5


def test_follower_appends_only_the_entries_it_lacks():
    """Raft §5.3 ("append any new entries not already in the log")."""
    log = log_of(1, 1, 1, 1)
    srv = make_follower(N2, entries=log[:2], commit=1)
    assert srv.handle(aer(1, N1, 1, 1, log[1:4], commit=1)) == ("follower", [fx.LogAppend(log[2:4])])


def test_follower_acknowledges_only_durable_entries():
    """Raft Figure 2 (persist before responding) with Ra's WAL: the reply to
    AppendEntries goes out only after Written and carries the last durable
    index."""
    log = log_of(1, 1, 1, 1)
    srv = make_follower(N2, entries=log[:1])
    assert srv.handle(aer(1, N1, 1, 1, log[1:4], commit=1)) == ("follower", [fx.LogAppend(log[1:4])])
    assert srv.handle(m.Written(1, 2, 3)) == ("follower", [send(N1, ae_ok(1, N2, 3, 1, next_index=5))])
    assert srv.handle(m.Written(1, 4, 4)) == ("follower", [send(N1, ae_ok(1, N2, 4, 1))])
    assert srv.handle(m.Written(1, 4, 4)) == ("follower", [])


def test_follower_does_not_ack_unverified_durable_entries_to_a_new_leader():
    """Raft §5.3 (log matching): entries from an old leader that the new
    leader has not confirmed are not acknowledged, even if durable."""
    srv = make_follower(N2, entries=log_of(1, 1, 1), commit=1)
    assert srv.handle(aer(2, N3, 1, 1, (), commit=1)) == ("follower", [
        fx.PersistMeta(2, None),
        fx.LeaderChanged(None, 2),
        fx.SetElectionTimer("long"),
        fx.LeaderChanged(N3, 2),
        fx.MonitorServer(N3),
        fx.CancelElectionTimer(),
        send(N3, ae_ok(2, N2, 1, 1, next_index=4)),
    ])


def test_follower_resend_write_reemits_log_append():
    """Ra WAL protocol: a follower resends what the WAL asks for (and what
    it never heard was durable)."""
    log = log_of(1, 1, 1)
    srv = make_follower(N2, entries=log, durable=False)
    srv.handle(m.Written(1, 1, 1))
    assert srv.handle(m.ResendWrite(2)) == ("follower", [fx.LogAppend(log[1:])])


def test_empty_append_entries_carrying_only_the_commit_index_is_not_answered():
    """Ra's message budget: an AppendEntries with no entries that only moves
    the commit index is not answered when the follower has nothing new to
    acknowledge (it already acked its match); one that resends entries is."""
    srv = make_follower(N2)
    assert srv.handle(aer(1, N1, 1, 1, (), commit=1)) == ("follower", [])
    assert srv.handle(aer(1, N1, 0, 0, log_of(1), commit=1)) == ("follower", [send(N1, ae_ok(1, N2, 1, 1))])


def test_first_empty_append_entries_from_a_new_leader_is_answered():
    """Raft §5.3: a new leader learns the follower's durable match from the
    first contact, even an empty AppendEntries."""
    srv = make_follower(N2, entries=log_of(1, 1))
    assert srv.handle(aer(2, N3, 2, 1, (), commit=2))[1][-1] == send(N3, ae_ok(2, N2, 2, 1))


def test_follower_acks_new_leader_after_leader_change_by_heartbeat():
    """Raft §5.3 / Figure 2: once an entry from the current leader is
    durable the follower acknowledges it.  Here the new leader's first
    message is a (ReadIndex) heartbeat, so the follower switches leader on
    it; the acknowledgement bookkeeping of the old leader's era (last index
    acked: 5) must not suppress the ack of the new leader's entry 4."""
    srv = make_follower(N2, entries=log_of(1, 1, 1, 1, 1), commit=3)
    srv.handle(m.HeartbeatRpc(2, N3, 1))
    assert srv.leader_id == N3
    # The verified durable prefix (index 3) is acknowledged to the new leader at once...
    assert srv.handle(aer(2, N3, 3, 1, (noop(4, 2),), commit=3)) == ("follower", [
        fx.LogAppend((noop(4, 2),)), send(N3, ae_ok(2, N2, 3, 1, next_index=5))])
    # ...and the new entry once it is durable.
    assert srv.handle(m.Written(2, 4, 4)) == ("follower", [send(N3, ae_ok(2, N2, 4, 2))])


def test_leader_replicates_at_once_to_members_on_a_node_that_comes_back_up():
    """Raft §5.3 (retry until the follower has the entries) with Ra's node
    monitor: a node-up event makes the leader send its members there what
    they lack without waiting for a tick; followers ignore node-up."""
    srv = make_leader(N1)
    assert srv.handle(m.NodeEvent("n3", up=True)) == ("leader", [send(N3, aer(1, N1, 1, 1, (), commit=1))])
    follower = make_follower(N2)
    assert follower.handle(m.NodeEvent("n3", up=True)) == ("follower", [])


class _NoTickMachine:
    """A machine without ``tick``: an idle leader of it has nothing to tick for."""

    def init(self, config):
        return 0

    def apply(self, meta, command, state):
        return state + 1, "ok"


def test_a_leader_wants_ticks_only_while_a_follower_is_behind():
    """Ra sends no idle heartbeats; the shell also arms no tick timer for an
    idle leader (``wants_tick``): a tick would only resend to followers
    that are behind (Raft §5.3 retries), run the machine's ``tick``, or
    repeat a query's heartbeat round."""
    srv = make_leader(N1, machine=_NoTickMachine())
    assert srv.wants_tick() is False, "noop committed, acknowledged and its commit index sent"
    srv.handle(m.Commands(_cmds(1)))
    assert srv.wants_tick() is True, "an entry no follower has acknowledged"
    srv.handle(m.Written(1, 2, 2))
    srv.handle(ae_ok(1, N2, 2))          # commits 2; N3 has not acknowledged it
    assert srv.wants_tick() is True
    srv.handle(ae_ok(1, N3, 2))
    assert srv.wants_tick() is False, "everything acknowledged, the commit index sent to both"
    srv.handle(m.Query("consistent", lambda state: state, "q1"))
    assert srv.wants_tick() is True, "a consistent query waits for its heartbeat round"


def test_a_machine_with_tick_keeps_its_leader_ticking_and_followers_never_tick():
    assert make_leader(N1).wants_tick() is True      # KvMachine has tick()
    assert make_follower(N2).wants_tick() is False
