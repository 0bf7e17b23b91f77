"""Queries in the pure core: local, leader and consistent (ReadIndex, Raft §8
and thesis §6.4)."""
from __future__ import annotations

from core_helpers import (
    N1, N2, N3, aer, ae_ok, make_follower, make_leader, new_server, send, sync_cmd,
)
from ra_actors.core.types import Ok, Redirect, Error  # noqa: E402
from ra_actors.core import effects as fx
from ra_actors.core import messages as m


def read_a(state):
    return state["kv"].get("a")


def broken(state):
    raise ValueError("boom")


def _q(kind, frm="q", fun=read_a):
    return m.Query(kind, fun, frm)


def _leader_with_a(value=1):
    srv = make_leader(N1)
    srv.handle(sync_cmd(("put", "a", value)))
    srv.handle(m.Written(1, 2, 2))
    srv.handle(ae_ok(1, N2, 2))
    assert srv.last_applied == 2
    return srv


def test_local_query_is_answered_by_any_role_with_its_applied_index():
    """Ra local_query (no guarantee, Raft §8 notes such reads may be stale):
    any member answers from its own state, with (last_applied, term)."""
    follower = make_follower(N2, entries=(), commit=0)
    assert follower.handle(_q("local")) == ("follower", [fx.Reply("q", Ok(((0, 1), None)), N1)])
    leader = _leader_with_a(5)
    assert leader.handle(_q("local")) == ("leader", [fx.Reply("q", Ok(((2, 1), 5)), N1)])
    candidate = new_server(N3)
    candidate.handle(m.TriggerElection())
    candidate.handle(m.PreVoteResult(0, N1, 1, True))
    assert candidate.handle(_q("local")) == ("candidate", [fx.Reply("q", Ok(((0, 1), None)), None)])


def test_leader_query_redirects_from_followers():
    """Ra leader_query: evaluated on the leader; a follower answers
    not_leader with the leader it knows (Raft §8 redirect)."""
    follower = make_follower(N2)
    assert follower.handle(_q("leader")) == ("follower", [fx.Reply("q", Redirect(N1), N1)])
    leader = _leader_with_a(7)
    assert leader.handle(_q("leader")) == ("leader", [fx.Reply("q", Ok(((2, 1), 7)), N1)])


def test_consistent_query_on_follower_is_redirected():
    """Raft §8: only the leader serves linearizable reads."""
    follower = make_follower(N2)
    assert follower.handle(_q("consistent")) == ("follower", [fx.Reply("q", Redirect(N1), N1)])


def test_consistent_query_waits_for_noop_of_the_term_then_a_heartbeat_quorum():
    """Raft §8 (read-only operations): the leader must have committed an
    entry of its term (its noop) before serving reads, then exchange a
    heartbeat with a majority to confirm it is still leader, then answer
    once applied up to the read index."""
    srv = make_leader(N1, commit_noop=False)
    assert srv.handle(_q("consistent", "q1")) == ("leader", [])          # noop not committed
    assert srv.handle(m.Written(1, 1, 1)) == ("leader", [])
    hb = m.HeartbeatRpc(1, N1, 1)
    assert srv.handle(ae_ok(1, N2, 1)) == ("leader", [
        fx.PersistLastApplied(1),
        send(N2, aer(1, N1, 1, 1, (), commit=1)),
        send(N3, aer(1, N1, 1, 1, (), commit=1)),
        send(N2, hb),
        send(N3, hb),
    ])
    assert srv.handle(m.HeartbeatReply(1, N3, 1)) == ("leader", [fx.Reply("q1", Ok(None), N1)])
    assert srv.handle(m.HeartbeatReply(1, N2, 1)) == ("leader", [])     # answered once


def test_consistent_query_sees_every_write_committed_before_it():
    """Raft §8: the read index is the commit index at the time of the query,
    so the answer reflects every write acknowledged before."""
    srv = _leader_with_a(42)
    assert srv.handle(_q("consistent")) == ("leader", [
        send(N2, m.HeartbeatRpc(1, N1, 1)), send(N3, m.HeartbeatRpc(1, N1, 1))])
    assert srv.handle(m.HeartbeatReply(1, N2, 1)) == ("leader", [fx.Reply("q", Ok(42), N1)])


def test_heartbeat_reply_confirms_only_queries_up_to_its_query_index():
    """Raft §8 / thesis §6.4: a heartbeat round confirms leadership only for
    reads that started before it."""
    srv = _leader_with_a(1)
    srv.handle(_q("consistent", "first"))
    srv.handle(_q("consistent", "second"))
    assert srv.handle(m.HeartbeatReply(1, N2, 1)) == ("leader", [fx.Reply("first", Ok(1), N1)])
    assert srv.handle(m.HeartbeatReply(1, N2, 1)) == ("leader", [])
    assert srv.handle(m.HeartbeatReply(1, N3, 2)) == ("leader", [fx.Reply("second", Ok(1), N1)])


def test_heartbeat_reply_from_another_term_confirms_nothing():
    """Raft §5.1: stale replies are ignored."""
    srv = _leader_with_a(1)
    srv.handle(_q("consistent"))
    assert srv.handle(m.HeartbeatReply(0, N2, 1)) == ("leader", [])


def test_single_member_cluster_answers_consistent_query_at_once():
    """Raft §8: with one voter the leader is its own majority."""
    srv = new_server(N1, members=(N1,))
    srv.handle(m.TriggerElection())
    srv.handle(m.MetaWritten(1, N1))
    srv.handle(m.Written(1, 1, 1))
    assert srv.handle(_q("consistent")) == ("leader", [fx.Reply("q", Ok(None), N1)])


def test_query_that_raises_returns_an_error_and_keeps_the_server_running():
    """Ra: a failing query function is reported to the caller as an error;
    the server carries on."""
    follower = make_follower(N2)
    assert follower.handle(_q("local", fun=broken)) == ("follower", [
        fx.Reply("q", Error("QueryFailed", "the query raised ValueError('boom')"), N1)])
    leader = _leader_with_a(1)
    leader.handle(_q("consistent", fun=broken))
    assert leader.handle(m.HeartbeatReply(1, N2, 1)) == ("leader", [
        fx.Reply("q", Error("QueryFailed", "the query raised ValueError('boom')"), N1)])
    assert leader.role == "leader"


def test_pending_consistent_queries_get_not_leader_when_leader_steps_down():
    """Raft §5.1 + §8: a deposed leader must not answer reads; callers are
    told not_leader so they retry elsewhere."""
    srv = make_leader(N1, commit_noop=False)
    srv.handle(_q("consistent", "first"))
    srv.handle(m.Written(1, 1, 1))
    srv.handle(ae_ok(1, N2, 1))                     # the noop commits: "first" starts its round
    srv.handle(_q("consistent", "second"))
    assert srv.handle(m.RequestVoteRpc(2, N3, 1, 1)) == ("follower", [
        fx.PersistMeta(2, None),
        fx.Reply("first", Redirect(None), None),
        fx.Reply("second", Redirect(None), None),
        fx.RoleChanged("follower"),
        fx.LeaderChanged(None, 2),
        fx.SetElectionTimer("long"),
        fx.PersistMeta(2, N3),
        fx.SetElectionTimer("long"),
    ])


def test_query_waiting_for_the_noop_gets_not_leader_when_leader_steps_down():
    """Raft §5.1 + §8: reads queued until the term's first commit are also
    answered not_leader when leadership is lost."""
    srv = make_leader(N1, commit_noop=False)
    srv.handle(_q("consistent", "waiting"))
    assert srv.handle(m.StepDownIfLeader()) == ("follower", [
        fx.Reply("waiting", Redirect(None), None),
        fx.RoleChanged("follower"),
        fx.LeaderChanged(None, 1),
        fx.SetElectionTimer("long"),
    ])


def test_tick_resends_heartbeats_for_unconfirmed_queries():
    """Raft §8 (heartbeats may be lost): the leader repeats the heartbeat
    round on its tick while reads wait."""
    srv = _leader_with_a(1)
    srv.handle(_q("consistent"))
    hb = m.HeartbeatRpc(1, N1, 1)
    assert srv.handle(m.Tick(1000)) == ("leader", [send(N2, hb), send(N3, hb)])


def test_follower_answers_heartbeat_and_follows_a_newer_leader():
    """Raft §5.1: a heartbeat from the current leader is answered with its
    query index; one from a newer term makes its sender our leader."""
    srv = make_follower(N2)
    assert srv.handle(m.HeartbeatRpc(1, N1, 5)) == ("follower", [send(N1, m.HeartbeatReply(1, N2, 5))])
    assert srv.handle(m.HeartbeatRpc(2, N3, 1)) == ("follower", [
        fx.PersistMeta(2, None),
        fx.LeaderChanged(None, 2),
        fx.SetElectionTimer("long"),
        fx.LeaderChanged(N3, 2),
        fx.MonitorServer(N3),
        fx.CancelElectionTimer(),
        send(N3, m.HeartbeatReply(2, N2, 1)),
    ])


def test_unknown_query_kind_is_an_error():
    """Ra query API: only local, leader and consistent exist."""
    srv = make_follower(N2)
    assert srv.handle(_q("eventual")) == ("follower", [fx.Reply("q", Error("InvalidQuery", "unknown query kind 'eventual'"), N1)])
