"""The deliberate bugs (``ra_actors.testing.bugs``) change exactly the
transition they name; each test asserts the correct and the buggy result
side by side, so the simulator's ability to catch the bugs rests on a real
difference."""
from __future__ import annotations

import pytest

from core_helpers import (
    KvMachine, N1, N2, N3, aer, ae_ok, config, log_of, make_follower, make_leader, send, sync_cmd,
)
from ra_actors.core.types import Ok  # noqa: E402
from ra_actors.core import effects as fx
from ra_actors.core import messages as m
from ra_actors.core.machine import Machine
from ra_actors.core.server import RaftServer
from ra_actors.testing.bugs import KNOWN_BUGS, core_class


def test_known_bugs_and_unknown_names_are_refused():
    assert set(KNOWN_BUGS) == {"commit_undurable", "vote_before_durable", "truncate_matching", "stale_reads",
                               "ignore_sessions", "written_above_hole"}
    with pytest.raises(ValueError, match="no_such_bug"):
        core_class({"no_such_bug"})
    assert core_class() is RaftServer
    both = core_class({"stale_reads", "commit_undurable"})
    assert issubclass(both, KNOWN_BUGS["stale_reads"]) and issubclass(both, KNOWN_BUGS["commit_undurable"])


def test_production_code_has_no_deliberate_bug_switch():
    """The core states each rule in one method; only the testing package
    overrides them."""
    import inspect
    import ra_actors.core.server as core
    source = inspect.getsource(core)
    for name in KNOWN_BUGS:
        assert name not in source


def test_commit_undurable_counts_the_leaders_unwritten_entries():
    """Raft §5.4.2 / Figure 2: the correct leader counts only its durable
    entries; with ``commit_undurable`` one follower's ack commits an entry
    the leader has not written (its last_applied hint still stays at the
    durable index 1: the hint is never ahead of the durable log)."""
    correct = make_leader(N1)
    buggy = make_leader(N1, bugs={"commit_undurable"})
    for srv in (correct, buggy):
        srv.handle(sync_cmd(("put", "a", 1), "c1"))
    assert correct.handle(ae_ok(1, N2, 2)) == ("leader", [])
    assert buggy.handle(ae_ok(1, N2, 2)) == ("leader", [
        fx.Reply("c1", Ok(None), N1),
        fx.PersistLastApplied(1),
        send(N2, aer(1, N1, 2, 1, (), commit=2)),
        send(N3, aer(1, N1, 2, 1, (), commit=2)),
    ])
    assert (correct.commit_index, buggy.commit_index) == (1, 2)


def test_vote_before_durable_grants_before_meta_written():
    """Raft Figure 2 (persist votedFor before responding): the correct
    follower defers the grant until MetaWritten; with
    ``vote_before_durable`` it answers at once.  (Adopting the higher term
    without a leader arms the long election timer, then the grant re-arms it.)"""
    correct = make_follower(N2)
    buggy = make_follower(N2, bugs={"vote_before_durable"})
    common = [fx.PersistMeta(2, None), fx.LeaderChanged(None, 2), fx.SetElectionTimer("long"),
              fx.PersistMeta(2, N3), fx.SetElectionTimer("long")]
    assert correct.handle(m.RequestVoteRpc(2, N3, 1, 1)) == ("follower", common)
    assert buggy.handle(m.RequestVoteRpc(2, N3, 1, 1)) == (
        "follower", common + [send(N3, m.RequestVoteResult(2, N2, True))])


def test_truncate_matching_truncates_entries_that_match():
    """Raft §5.3: only a real conflict truncates; with ``truncate_matching``
    an old, shorter AppendEntries cuts off matching (here: committed)
    entries."""
    log = log_of(1, 1, 1, 1, 1)
    correct = make_follower(N2, entries=log, commit=1)
    buggy = make_follower(N2, entries=log, commit=1, bugs={"truncate_matching"})
    old = aer(1, N1, 1, 1, log[1:3], commit=1)
    assert correct.handle(old) == ("follower", [send(N1, ae_ok(1, N2, 5, 1))])
    assert buggy.handle(old) == ("follower", [fx.LogAppend(log[1:3])])
    assert (correct.log.last_index, buggy.log.last_index) == (5, 3)
    assert (correct.log.last_written, buggy.log.last_written) == (5, 1)


def test_stale_reads_skips_the_read_index_round():
    """Raft §8 (linearizable reads): a correct leader confirms its
    leadership with a heartbeat round before answering a consistent query;
    with ``stale_reads`` it answers from local state at once, so a deposed
    leader could serve stale data (the Jepsen harness must catch this)."""
    def read(state):
        return state.get("a")
    correct = make_leader(N1)
    buggy = make_leader(N1, bugs={"stale_reads"})
    q = m.Query("consistent", read, "q1")
    role, effects = correct.handle(q)
    assert role == "leader" and not any(isinstance(e, fx.Reply) for e in effects)
    assert any(isinstance(e, fx.SendRpc) and isinstance(e.rpc, m.HeartbeatRpc) for e in effects)
    assert buggy.handle(q) == ("leader", [fx.Reply("q1", Ok(None), N1)])


def test_ignore_sessions_applies_a_repeated_command_twice():
    """Thesis §6.3: the correct core applies a session's repeated command
    once; with ``ignore_sessions`` the repeat is applied again."""
    from ra_actors.core.types import AwaitConsensus, SessionSeq
    repeat = SessionSeq("s", 1, 1)
    correct = make_leader(N1)
    buggy = make_leader(N1, bugs={"ignore_sessions"})
    for srv in (correct, buggy):
        for caller in ("first", "retry"):
            srv.handle(m.Command(("put", "k", 1), AwaitConsensus(caller), "normal", 0, repeat))
        last = srv.log.last_index
        srv.handle(m.Written(1, 1, last))
        srv.handle(ae_ok(1, N2, last))
    applied = lambda srv: sum(1 for (_i, _t, c) in srv.machine_state["applied"] if c == ("put", "k", 1))
    assert (applied(correct), applied(buggy)) == (1, 2)
