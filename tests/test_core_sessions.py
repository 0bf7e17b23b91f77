"""Client sessions in the pure core (Raft thesis §6.3): a command is applied
at most once however often it is sent, and a session's commands in the
order its client issued them."""
from __future__ import annotations

from core_helpers import (
    N1, N2, N3, KvMachine, ae_ok, make_follower, make_leader, new_server, of_type,
)
from ra_actors.core import effects as fx
from ra_actors.core import messages as m
from ra_actors.core.machine import Machine
from ra_actors.core.server import RaftServer, Recovered
from ra_actors.core.types import (AwaitConsensus, Entry, Error, NotifyReply, Ok, SessionSeq, SnapshotState, Usr)

from core_helpers import config

SID = "client-session-1"


def cmd(seq, data=None, low=None, caller=None, known=False, ts=0, notify=False):
    s = SessionSeq(SID, seq, seq if low is None else low, known)
    mode = NotifyReply(seq, "pipeliner") if notify else AwaitConsensus(caller or f"call-{seq}")
    return m.Command(data or ("put", f"k{seq}", seq), mode, "normal", ts, s)


def commit_all(srv):
    """Make everything the leader appended durable and acknowledged."""
    t, last = srv.current_term, srv.log.last_index
    effects = srv.handle(m.Written(t, 1, last))[1]
    for peer in (N2, N3):
        effects += srv.handle(ae_ok(t, peer, last, t))[1]
    return effects


def applied_commands(srv):
    return [c for (_i, _t, c) in srv.machine_state["applied"]]


def replies(effects):
    return {e.to: e.reply for e in effects if isinstance(e, fx.Reply)}


# ===================================================== applied at most once
def test_a_repeated_command_is_applied_once_and_the_repeat_gets_the_first_reply():
    """A client that timed out sends the same command (same number) again;
    both end up in the log, the machine applies one, and the repeat is
    answered with the reply of the first."""
    srv = make_leader(N1)
    srv.handle(cmd(1, caller="first"))
    srv.handle(cmd(1, caller="retry"))
    effects = commit_all(srv)
    assert applied_commands(srv) == [("put", "k1", 1)]
    assert replies(effects) == {"first": Ok(None), "retry": Ok(None)}


def test_a_repeat_from_before_a_restart_is_still_not_applied_again():
    """The table is rebuilt by replay: a restarted member applies the log
    exactly as before (the repeat is skipped again)."""
    srv = make_leader(N1)
    srv.handle(cmd(1))
    srv.handle(cmd(1, caller="retry"))
    commit_all(srv)
    log = tuple(srv.log.entries)
    again = RaftServer(config(N1), Machine(KvMachine()),
                       Recovered(current_term=srv.current_term, last_applied=log[-1].index, entries=log))
    assert applied_commands(again) == [("put", "k1", 1)]
    assert again.sessions.next_seq(SID) == 2


# ===================================================================== order
def test_commands_ahead_of_a_gap_wait_at_the_leader_and_enter_the_log_in_order():
    """Pipelined commands 3 and 2 arrive before 1 (a lost message, a leader
    change): the leader holds them and appends 1, 2, 3 when 1 arrives."""
    srv = make_leader(N1)
    noop_index = srv.log.last_index
    srv.handle(cmd(3, low=1))
    srv.handle(cmd(2, low=1))
    assert srv.log.last_index == noop_index and srv.wants_tick()
    srv.handle(cmd(1))
    seqs = [e.command.session.seq for e in srv.log.entries if isinstance(e.command, Usr)]
    assert seqs == [1, 2, 3]
    commit_all(srv)
    assert applied_commands(srv) == [("put", "k1", 1), ("put", "k2", 2), ("put", "k3", 3)]


def test_a_command_held_too_long_behind_a_gap_is_refused():
    """The missing command never came (within session_gap_timeout_ms of the
    leader's clock): the held one is answered SequenceGap, not applied."""
    srv = make_leader(N1, session_gap_timeout_ms=1000)
    srv.handle(cmd(2, low=1, ts=100))
    srv.handle(cmd(3, low=1, ts=100, notify=True))
    role, effects = srv.handle(m.Tick(500))
    assert not of_type(effects, fx.Reply)
    role, effects = srv.handle(m.Tick(1200))
    gap = [e.reply for e in of_type(effects, fx.Reply)]
    assert [(r.kind) for r in gap] == ["SequenceGap"]
    assert fx.Rejected("pipeliner", N1, N1, 3, "SequenceGap") in effects
    assert not srv.resequencer.holding()


def test_numbers_below_low_are_never_applied_even_when_they_arrive_late():
    """The client gave up on 2 (it reports low=3 with command 3): 2 is
    abandoned, applied neither now nor when it shows up later."""
    srv = make_leader(N1)
    srv.handle(cmd(1))
    srv.handle(cmd(3, low=3))
    srv.handle(cmd(2, low=2, caller="late"))
    effects = commit_all(srv)
    assert applied_commands(srv) == [("put", "k1", 1), ("put", "k3", 3)]
    assert "late" not in replies(effects), "nobody waits for an abandoned command"


# ================================================================= lifetime
def test_a_session_the_cluster_forgot_is_expired_not_started_again():
    """A client that has seen its session applied (known) and finds the
    cluster does not know it learns SessionExpired; nothing is applied."""
    srv = make_leader(N1)
    srv.handle(cmd(7, low=7, known=True, caller="c"))
    effects = commit_all(srv)
    assert replies(effects)["c"] == Error("SessionExpired", "session 'client-session-1' expired")
    assert applied_commands(srv) == []


def test_an_idle_session_expires_in_log_time_and_then_refuses_its_commands():
    srv = make_leader(N1, session_timeout_ms=10_000)
    srv.handle(cmd(1, ts=1_000))
    commit_all(srv)
    other = m.Command(("put", "x", 0), AwaitConsensus("other"), "normal", 20_000,
                      SessionSeq("another-session", 1, 1))
    srv.handle(other)                            # log time moves to 20 s
    srv.handle(cmd(2, known=True, ts=20_001, caller="late"))
    effects = commit_all(srv)
    assert replies(effects)["late"].kind == "SessionExpired"
    assert srv.sessions.next_seq(SID) is None


# ================================================================ snapshots
def test_the_session_table_travels_in_snapshots_and_survives_a_restart():
    srv = make_leader(N1)
    srv.handle(cmd(1, data=("release",)))
    effects = commit_all(srv)
    (write,) = of_type(effects, fx.WriteSnapshot)
    from ra_actors.core import codec
    state = codec.unpack(write.data)
    assert isinstance(state, SnapshotState) and [r.session for r in state.sessions] == [SID]
    restarted = RaftServer(config(N1), Machine(KvMachine()),
                           Recovered(current_term=srv.current_term, snapshot=(write.meta, state)))
    assert restarted.sessions.next_seq(SID) == 2
    assert restarted.machine_state == state.machine, "the machine gets its own state, not the wrapper"


def test_a_follower_installing_a_snapshot_takes_its_sessions():
    leader = make_leader(N1)
    leader.handle(cmd(1, data=("release",)))
    (write,) = of_type(commit_all(leader), fx.WriteSnapshot)
    follower = new_server(N3)
    follower.handle(m.InstallSnapshotRpc(leader.current_term, N1, write.meta, 1, True, write.data))
    follower.handle(m.SnapshotWritten(write.meta))
    assert follower.sessions.next_seq(SID) == 2
    assert "kv" in follower.machine_state


def test_a_new_leader_knows_the_session_numbers_in_its_log_that_are_not_applied_yet():
    """Tails come from the log: a command appended by the old leader and not
    yet applied here is not held back as if it were missing."""
    s1 = Usr(("put", "a", 1), AwaitConsensus("c1"), 0, SessionSeq(SID, 1, 1))
    srv = make_follower(N2, entries=(Entry(1, 1, s1),), commit=0)
    assert srv.sessions.next_seq(SID) is None
    assert srv._session_tails() == {SID: 1}


def test_the_leaders_hold_takes_a_batch_as_it_takes_its_commands_one_by_one():
    """Resequencer.offer_all (the leader's path for a pipelined batch) gives
    the same commands, in the same order, and refuses the same ones as
    offer called for each command, over sessions that interleave, repeat,
    skip ahead, move their low and overflow the hold."""
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from ra_actors.core.sessions import Resequencer

    command = st.builds(lambda name, seq, back, session: m.Command(
        ("put", "k", seq), NotifyReply(seq, "p"), "normal", 0,
        SessionSeq(name, seq, max(1, seq - back), False) if session else None),
        st.sampled_from(["a", "b"]), st.integers(1, 12), st.integers(0, 4), st.booleans())

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.lists(command, max_size=12), max_size=5))
    def same(batches):
        one, many = Resequencer(1000, 3), Resequencer(1000, 3)
        for batch in batches:
            out, refused = [], []
            for c in batch:
                if c.session is None:
                    out.append(c)
                    continue
                ready, no = one.offer(c)
                out += ready
                refused += [no] if no is not None else []
            assert many.offer_all(batch) == (out, refused)
            assert (many.tails, many.parked) == (one.tails, one.parked)

    same()
