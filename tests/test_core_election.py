"""Elections in the pure core: pre-vote, votes, terms, election triggers.

Each test drives a RaftServer with direct ``handle`` calls and asserts the
complete ``(role, effects)`` result.  Docstrings cite the Raft paper
(Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm")
or the Raft thesis (Ongaro 2014) for pre-vote.
"""
from __future__ import annotations

from core_helpers import (
    config, MEMBERS3, N1, N2, N3, N4, N5, KvMachine, VersionedKv, aer, ae_ok, make_follower, make_leader, new_server,
    noop, send, usr,
)
from ra_actors.core import effects as fx
from ra_actors.core import messages as m
from ra_actors.core.server import RaftServer, Recovered
from ra_actors.core.machine import Machine


def _pre_vote(term, frm, token, last_index, last_term, version=0):
    return m.PreVoteRpc(term, frm, token, last_index, last_term, version)


def _candidate(sid=N1, members=MEMBERS3, **kw):
    srv = new_server(sid, members, **kw)
    srv.handle(m.TriggerElection())
    srv.handle(m.PreVoteResult(srv.current_term, N2 if sid != N2 else N1, srv.pre_vote_token, True))
    assert srv.role == "candidate"
    return srv


# ============================================================ start of life
def test_brand_new_server_has_no_election_timer_until_trigger_election():
    """Ra (no idle heartbeats; Raft §5.2 "servers start as followers"): a
    brand-new server starts as a follower without an election timer and
    waits for TriggerElection (or a leader)."""
    srv = RaftServer(config(N1), Machine(KvMachine()))
    assert srv.init() == ("follower", [fx.RoleChanged("follower")])
    # Nothing else arms a timer: a tick on a follower does nothing.
    assert srv.handle(m.Tick(1000)) == ("follower", [])

    pre = _pre_vote(0, N1, 1, 0, 0)
    assert srv.handle(m.TriggerElection()) == ("pre_vote", [
        fx.RoleChanged("pre_vote"),
        fx.SetElectionTimer("long"),
        send(N2, pre),
        send(N3, pre),
    ])
    assert srv.current_term == 0 and srv.voted_for is None


def test_server_with_history_arms_election_timer_on_start():
    """Raft §5.2: a restarted server with a log/term takes part in elections
    on its own: init arms the (long) election timer."""
    rec = Recovered(current_term=2, voted_for=N2, entries=(noop(1, 1), noop(2, 2)))
    srv = RaftServer(config(N1), Machine(KvMachine()), rec)
    assert srv.init() == ("follower", [fx.RoleChanged("follower"), fx.SetElectionTimer("long")])
    assert (srv.current_term, srv.voted_for) == (2, N2)


def test_init_enters_recovered_then_follower_in_the_machine():
    """Ra semantics (ra_machine state_enter, see ra-inventory §2.1): the
    machine sees ``recovered`` and then ``follower`` on start, in order.
    (Raft §5.2: a server starts as a follower.)"""
    machine = KvMachine(enter_effects={"recovered": [fx.Aux("rec")], "follower": [fx.Aux("fol")]})
    srv = RaftServer(config(N1), Machine(machine))
    role, effects = srv.init()
    assert role == "follower"
    assert machine.entered() == ["recovered", "follower"]
    assert effects == [
        fx.RoleChanged("follower"),
        fx.MachineEffects((fx.Aux("rec"),), leader_only=False),
        fx.MachineEffects((fx.Aux("fol"),), leader_only=False),
    ]


# ================================================================ pre-vote
def test_pre_vote_quorum_makes_candidate_that_bumps_term_and_persists_meta():
    """Raft §5.2: to begin an election a follower increments its term, votes
    for itself (persisted before answering anyone, Figure 2) and sends
    RequestVote RPCs to the other servers — here after a pre-vote quorum."""
    srv = new_server(N1)
    srv.handle(m.TriggerElection())
    rv = m.RequestVoteRpc(1, N1, 0, 0)
    assert srv.handle(m.PreVoteResult(0, N2, srv.pre_vote_token, True)) == ("candidate", [
        fx.RoleChanged("candidate"),
        fx.PersistMeta(1, N1),
        fx.SetElectionTimer("long"),
        send(N2, rv),
        send(N3, rv),
    ])
    assert (srv.current_term, srv.voted_for) == (1, N1)


def test_pre_vote_denials_do_not_change_the_term():
    """Raft thesis §9.6: a pre-vote round changes nobody's term: denied
    pre-votes leave the pre-voter in its term."""
    srv = new_server(N1)
    srv.handle(m.TriggerElection())
    assert srv.handle(m.PreVoteResult(0, N2, 1, False)) == ("pre_vote", [])
    assert srv.handle(m.PreVoteResult(0, N3, 1, False)) == ("pre_vote", [])
    assert srv.current_term == 0 and srv.voted_for is None


def test_granting_pre_vote_never_changes_the_voters_term_or_vote():
    """Raft thesis §9.6: answering a pre-vote (even one with a higher term)
    changes neither the term nor votedFor of the voter."""
    rec = Recovered(current_term=3, entries=(noop(1, 1), noop(2, 3)))
    srv = new_server(N2, recovered=rec)
    assert srv.handle(_pre_vote(3, N3, 9, 2, 3)) == ("follower", [send(N3, m.PreVoteResult(3, N2, 9, True))])
    assert srv.handle(_pre_vote(7, N3, 10, 2, 3)) == ("follower", [send(N3, m.PreVoteResult(3, N2, 10, True))])
    assert (srv.current_term, srv.voted_for) == (3, None)


def test_pre_vote_refused_for_candidate_with_stale_log():
    """Raft thesis §9.6 with §5.4.1: a pre-vote is granted only if the
    candidate's log is at least as up to date."""
    rec = Recovered(current_term=3, entries=(noop(1, 1), noop(2, 3)))
    srv = new_server(N2, recovered=rec)
    assert srv.handle(_pre_vote(3, N3, 1, 5, 2)) == ("follower", [send(N3, m.PreVoteResult(3, N2, 1, False))])


def test_cut_off_node_coming_back_cannot_bump_the_cluster_term():
    """Raft thesis §9.6 (pre-vote): a node that was partitioned away keeps
    pre-voting without bumping its term; followers that know a live leader
    refuse, the leader refuses and reminds it who leads, nobody's term moves."""
    follower = make_follower(N2)           # knows leader N1, term 1
    leader = make_leader(N1)               # term 1, noop committed
    cut_off = make_follower(N3)
    cut_off.handle(m.ServerDown(N1))       # it lost its leader
    cut_off.handle(m.ElectionTimeout())
    assert cut_off.role == "pre_vote"
    # It keeps retrying: still no term bump.
    role, effects = cut_off.handle(m.ElectionTimeout())
    token = cut_off.pre_vote_token
    pre = _pre_vote(1, N3, token, 1, 1)
    assert (role, effects) == ("pre_vote", [fx.SetElectionTimer("long"), send(N1, pre), send(N2, pre)])

    assert follower.handle(pre) == ("follower", [send(N3, m.PreVoteResult(1, N2, token, False))])
    assert leader.handle(pre) == ("leader", [
        send(N3, m.PreVoteResult(1, N1, token, False)),
        send(N3, aer(1, N1, 1, 1, (), commit=1)),
    ])
    assert cut_off.handle(m.PreVoteResult(1, N2, token, False)) == ("pre_vote", [])
    assert cut_off.handle(m.PreVoteResult(1, N1, token, False)) == ("pre_vote", [])
    # The leader's reminder brings it back as a follower, same term.
    role, effects = cut_off.handle(aer(1, N1, 1, 1, (), commit=1))
    assert role == "follower" and cut_off.leader_id == N1
    assert effects == [
        fx.RoleChanged("follower"),
        fx.LeaderChanged(N1, 1),
        fx.MonitorServer(N1),
        fx.CancelElectionTimer(),
        send(N1, ae_ok(1, N3, 1, 1)),
    ]
    assert (leader.current_term, follower.current_term, cut_off.current_term) == (1, 1, 1)


def test_pre_vote_refused_to_candidate_with_older_machine_version():
    """Ra (ra-inventory §2.5) on top of Raft thesis §9.6: pre-votes are
    granted only to candidates running at least our effective machine
    version."""
    machine = VersionedKv()
    srv = make_follower(N2, entries=(noop(1, 1, version=1),), machine=machine)
    assert srv.machine_version == 1
    srv.handle(m.ServerDown(N1))  # the leader is gone: pre-votes are considered
    assert srv.handle(_pre_vote(1, N3, 4, 1, 1, version=0)) == (
        "follower", [send(N3, m.PreVoteResult(1, N2, 4, False))])
    assert srv.handle(_pre_vote(1, N3, 5, 1, 1, version=1)) == (
        "follower", [send(N3, m.PreVoteResult(1, N2, 5, True))])


def test_pre_vote_result_with_stale_token_is_ignored():
    """Raft thesis §9.6: results of an earlier pre-vote round do not count
    towards the current one."""
    srv = new_server(N1)
    srv.handle(m.TriggerElection())
    srv.handle(m.ElectionTimeout())  # second round, token 2
    assert srv.pre_vote_token == 2
    assert srv.handle(m.PreVoteResult(0, N2, 1, True)) == ("pre_vote", [])
    assert srv.current_term == 0


def test_pre_vote_result_with_higher_term_makes_follower():
    """Raft §5.1: a reply carrying a higher term updates the term and turns
    the pre-voter into a follower."""
    srv = new_server(N1)
    srv.handle(m.TriggerElection())
    assert srv.handle(m.PreVoteResult(4, N2, 1, False)) == ("follower", [
        fx.PersistMeta(4, None),
        fx.RoleChanged("follower"),
        fx.SetElectionTimer("long"),
    ])
    assert srv.current_term == 4


# =================================================================== votes
def test_vote_granted_only_to_candidate_with_up_to_date_log():
    """Raft §5.4.1: the voter denies its vote if its own log is more up to
    date (later last term, or same last term and longer)."""
    srv = make_follower(N2, entries=(noop(1, 1), usr(2, 1)))
    # Same last term, shorter log: denied (the higher term is still adopted,
    # and, left without a leader, the voter arms its election timer).
    assert srv.handle(m.RequestVoteRpc(2, N3, 1, 1)) == ("follower", [
        fx.PersistMeta(2, None),
        fx.LeaderChanged(None, 2),
        fx.SetElectionTimer("long"),
        send(N3, m.RequestVoteResult(2, N2, False)),
    ])
    assert (srv.current_term, srv.voted_for) == (2, None)
    # Same last term, same length: granted (persisted first, no reply yet).
    assert srv.handle(m.RequestVoteRpc(2, N3, 2, 1)) == ("follower", [
        fx.PersistMeta(2, N3),
        fx.SetElectionTimer("long"),
    ])
    assert srv.voted_for == N3


def test_vote_granted_to_shorter_log_with_later_last_term():
    """Raft §5.4.1: if the last entries have different terms, the log with
    the later term is more up to date, whatever the lengths."""
    srv = make_follower(N2, entries=(noop(1, 1), usr(2, 1), usr(3, 1)))
    srv.handle(m.MetaWritten(1, None))
    role, effects = srv.handle(m.RequestVoteRpc(3, N3, 2, 2))
    assert role == "follower"
    assert effects == [fx.PersistMeta(3, None), fx.LeaderChanged(None, 3), fx.SetElectionTimer("long"),
                       fx.PersistMeta(3, N3), fx.SetElectionTimer("long")]


def test_vote_reply_sent_only_after_vote_is_durable():
    """Raft §5.2 / Figure 2 ("persistent state ... updated on stable storage
    before responding to RPCs"): the grant goes out only after MetaWritten
    confirms votedFor; unrelated MetaWritten do not release it."""
    srv = make_follower(N2)
    role, effects = srv.handle(m.RequestVoteRpc(2, N3, 1, 1))
    assert role == "follower"
    assert effects == [fx.PersistMeta(2, None), fx.LeaderChanged(None, 2), fx.SetElectionTimer("long"),
                       fx.PersistMeta(2, N3), fx.SetElectionTimer("long")]
    assert srv.handle(m.MetaWritten(2, None)) == ("follower", [])
    assert srv.handle(m.MetaWritten(2, N3)) == ("follower", [send(N3, m.RequestVoteResult(2, N2, True))])
    # Only once.
    assert srv.handle(m.MetaWritten(2, N3)) == ("follower", [])


def test_one_vote_per_term():
    """Raft §5.2: each server votes for at most one candidate in a term (first
    come first served); asking again gets the same (durable) answer."""
    srv = make_follower(N2)
    srv.handle(m.RequestVoteRpc(2, N3, 1, 1))
    srv.handle(m.MetaWritten(2, N3))
    assert srv.handle(m.RequestVoteRpc(2, N1, 1, 1)) == ("follower", [send(N1, m.RequestVoteResult(2, N2, False))])
    assert srv.handle(m.RequestVoteRpc(2, N3, 1, 1)) == ("follower", [send(N3, m.RequestVoteResult(2, N2, True))])
    assert srv.voted_for == N3


def test_candidate_does_not_vote_for_another_candidate_of_its_term():
    """Raft §5.2: a candidate has voted for itself in its term."""
    srv = _candidate(N1)
    assert srv.handle(m.RequestVoteRpc(1, N3, 0, 0)) == ("candidate", [send(N3, m.RequestVoteResult(1, N1, False))])


def test_candidate_with_majority_of_votes_becomes_leader():
    """Raft §5.2: a candidate that receives votes from a majority wins, and
    (§5.4.2, Ra) appends a noop of its term and replicates it at once."""
    srv = _candidate(N1)
    srv.handle(m.MetaWritten(1, N1))
    assert srv.handle(m.RequestVoteResult(1, N3, False)) == ("candidate", [])
    a = aer(1, N1, 0, 0, (noop(1, 1),), commit=0)
    assert srv.handle(m.RequestVoteResult(1, N2, True)) == ("leader", [
        fx.RoleChanged("leader"),
        fx.LeaderChanged(N1, 1),
        fx.CancelElectionTimer(),
        fx.LogAppend((noop(1, 1),)),
        send(N2, a),
        send(N3, a),
    ])


def test_candidate_counts_its_own_vote_only_once_it_is_durable():
    """Raft §5.2 with durable votes (Figure 2: votedFor is persisted before
    responding): a candidate's vote for itself is a vote like any other.
    Counted before MetaWritten, a candidate could win, crash before its vote
    reached the disk, restart in the old term without it and vote for a
    second candidate of the same term: two leaders in one term.  (Found by
    the transcript tests; the actors write meta before a round's RPCs leave,
    the simulator's disk does not.)"""
    srv = _candidate(N1)
    assert srv.handle(m.RequestVoteResult(1, N2, True)) == ("candidate", [])
    assert srv.votes == {N2}
    a = aer(1, N1, 0, 0, (noop(1, 1),), commit=0)
    assert srv.handle(m.MetaWritten(1, N1)) == ("leader", [
        fx.RoleChanged("leader"),
        fx.LeaderChanged(N1, 1),
        fx.CancelElectionTimer(),
        fx.LogAppend((noop(1, 1),)),
        send(N2, a),
        send(N3, a),
    ])


def test_a_stale_meta_written_does_not_count_as_the_candidates_vote():
    """Only the durable record of *this* term's vote for itself counts."""
    srv = _candidate(N1)
    srv.handle(m.RequestVoteResult(1, N2, True))
    assert srv.handle(m.MetaWritten(0, None)) == ("candidate", [])
    assert srv.handle(m.MetaWritten(1, N2)) == ("candidate", [])
    assert srv.votes == {N2}


def test_vote_from_stale_term_does_not_count():
    """Raft §5.1: replies from an older term are ignored."""
    srv = _candidate(N1)
    srv.handle(m.ElectionTimeout())
    srv.handle(m.PreVoteResult(1, N3, srv.pre_vote_token, True))
    assert (srv.role, srv.current_term) == ("candidate", 2)
    assert srv.handle(m.RequestVoteResult(1, N2, True)) == ("candidate", [])


def test_single_member_cluster_elects_itself():
    """Raft §5.2: with one voter, the candidate's own vote is a majority --
    once it is durable."""
    srv = new_server(N1, members=(N1,))
    assert srv.handle(m.TriggerElection()) == ("candidate", [
        fx.RoleChanged("pre_vote"),
        fx.SetElectionTimer("long"),
        fx.RoleChanged("candidate"),
        fx.PersistMeta(1, N1),
        fx.SetElectionTimer("long"),
    ])
    assert srv.handle(m.MetaWritten(1, N1)) == ("leader", [
        fx.RoleChanged("leader"),
        fx.LeaderChanged(N1, 1),
        fx.CancelElectionTimer(),
        fx.LogAppend((noop(1, 1),)),
    ])
    assert srv.handle(m.Written(1, 1, 1)) == ("leader", [fx.PersistLastApplied(1)])
    assert srv.commit_index == 1


def test_split_vote_retries_with_a_new_pre_vote_and_a_higher_term():
    """Raft §5.2: if no candidate wins, the election times out and a new one
    starts with a higher term (through pre-vote again, thesis §9.6)."""
    srv = _candidate(N1)
    assert srv.handle(m.RequestVoteResult(1, N2, False)) == ("candidate", [])
    assert srv.handle(m.RequestVoteResult(1, N3, False)) == ("candidate", [])
    pre = _pre_vote(1, N1, 2, 0, 0)
    assert srv.handle(m.ElectionTimeout()) == ("pre_vote", [
        fx.RoleChanged("pre_vote"), fx.SetElectionTimer("long"), send(N2, pre), send(N3, pre)])
    rv = m.RequestVoteRpc(2, N1, 0, 0)
    assert srv.handle(m.PreVoteResult(1, N3, 2, True)) == ("candidate", [
        fx.RoleChanged("candidate"), fx.PersistMeta(2, N1), fx.SetElectionTimer("long"),
        send(N2, rv), send(N3, rv)])


def test_candidate_steps_down_on_append_entries_from_leader_of_its_term():
    """Raft §5.2: a candidate receiving AppendEntries from a leader whose term
    is at least its own returns to follower; the ack waits for durability."""
    srv = _candidate(N1)
    role, effects = srv.handle(aer(1, N2, 0, 0, (noop(1, 1),), commit=0))
    assert role == "follower"
    assert effects == [
        fx.RoleChanged("follower"),
        fx.LeaderChanged(N2, 1),
        fx.MonitorServer(N2),
        fx.CancelElectionTimer(),
        fx.LogAppend((noop(1, 1),)),
        send(N2, ae_ok(1, N1, 0, 0, next_index=2)),   # nothing durable yet
    ]
    assert srv.handle(m.Written(1, 1, 1)) == ("follower", [send(N2, ae_ok(1, N1, 1, 1))])


# =============================================================== terms
def test_higher_term_reply_turns_leader_into_follower():
    """Raft §5.1: if a server sees a larger term it updates its term and, if
    leader or candidate, reverts to follower."""
    srv = make_leader(N1)
    assert srv.handle(ae_ok(3, N2, 0, 0)) == ("follower", [
        fx.PersistMeta(3, None),
        fx.RoleChanged("follower"),
        fx.LeaderChanged(None, 3),
        fx.SetElectionTimer("long"),
    ])
    assert (srv.current_term, srv.voted_for, srv.leader_id) == (3, None, None)


def test_higher_term_append_entries_turns_leader_into_follower_of_new_leader():
    """Raft §5.1 / §5.3: a deposed leader becomes a follower of the leader of
    the newer term and accepts its entries."""
    srv = make_leader(N1)
    role, effects = srv.handle(aer(2, N3, 1, 1, (noop(2, 2),), commit=1))
    assert role == "follower"
    assert effects == [
        fx.PersistMeta(2, None),
        fx.RoleChanged("follower"),
        fx.LeaderChanged(None, 2),
        fx.SetElectionTimer("long"),
        fx.LeaderChanged(N3, 2),
        fx.MonitorServer(N3),
        fx.CancelElectionTimer(),
        fx.LogAppend((noop(2, 2),)),
        send(N3, ae_ok(2, N1, 1, 1, next_index=3)),
    ]


def test_higher_term_vote_request_turns_candidate_into_voting_follower():
    """Raft §5.1 + §5.2: a candidate seeing a higher-term RequestVote becomes
    a follower of that term and may vote in it."""
    srv = _candidate(N1)
    srv.handle(m.MetaWritten(1, N1))
    role, effects = srv.handle(m.RequestVoteRpc(2, N3, 0, 0))
    assert role == "follower"
    assert effects == [
        fx.PersistMeta(2, None),
        fx.RoleChanged("follower"),
        fx.SetElectionTimer("long"),
        fx.PersistMeta(2, N3),
        fx.SetElectionTimer("long"),
    ]


def test_leader_refuses_vote_in_its_term_and_reasserts_itself():
    """Raft §5.2 (one leader per term): a leader never votes in its own term;
    Ra re-sends AppendEntries to the asker."""
    srv = make_leader(N1)
    assert srv.handle(m.RequestVoteRpc(1, N3, 5, 1)) == ("leader", [
        send(N3, m.RequestVoteResult(1, N1, False)),
        send(N3, aer(1, N1, 1, 1, (), commit=1)),
    ])


def test_stale_term_rpcs_are_rejected_with_current_term():
    """Raft §5.1: a request with a stale term is rejected; the reply carries
    our term so the sender updates itself."""
    srv = make_follower(N2, term=2, entries=(noop(1, 2),))
    assert srv.handle(aer(1, N3, 0, 0, (usr(1, 1),))) == (
        "follower", [send(N3, m.AppendEntriesReply(2, N2, False, 2, 1, 2))])
    assert srv.handle(m.RequestVoteRpc(1, N3, 9, 1)) == ("follower", [send(N3, m.RequestVoteResult(2, N2, False))])
    assert srv.handle(m.HeartbeatRpc(1, N3, 4)) == ("follower", [send(N3, m.HeartbeatReply(2, N2, 4))])
    assert srv.handle(_pre_vote(1, N3, 6, 9, 1)) == ("follower", [send(N3, m.PreVoteResult(2, N2, 6, False))])
    assert srv.handle(m.TimeoutNowRpc(1, N3)) == ("follower", [])
    assert (srv.current_term, srv.leader_id, srv.log.last_index) == (2, N1, 1)


def test_stale_term_reply_does_not_affect_leader():
    """Raft §5.1: replies from an older term are ignored."""
    srv = make_leader(N1, recovered=Recovered(current_term=1, entries=(noop(1, 1),)))
    assert srv.current_term == 2
    assert srv.handle(ae_ok(1, N2, 5, 1)) == ("leader", [])
    assert srv.peers[N2].match_index == 2


# ====================================================== election triggers
def test_follower_pre_votes_after_its_leader_process_goes_down():
    """Ra failure detection (instead of §5.2 heartbeats): DOWN of the
    leader's process arms a short election timer; its expiry starts a
    pre-vote."""
    srv = make_follower(N2)
    assert srv.handle(m.ServerDown(N3)) == ("follower", [])          # not our leader
    assert srv.handle(m.ElectionTimeout()) == ("follower", [])       # leader known: ignored
    assert srv.handle(m.ServerDown(N1)) == ("follower", [fx.LeaderChanged(None, 1), fx.SetElectionTimer("short")])
    pre = _pre_vote(1, N2, 1, 1, 1)
    assert srv.handle(m.ElectionTimeout()) == ("pre_vote", [
        fx.RoleChanged("pre_vote"), fx.SetElectionTimer("long"), send(N1, pre), send(N3, pre)])
    assert srv.current_term == 1


def test_follower_pre_votes_after_its_leaders_node_goes_down():
    """Ra failure detection (aten) replacing §5.2 heartbeats: a node-down
    event for the leader's node arms a short election timer."""
    srv = make_follower(N2)
    assert srv.handle(m.NodeEvent("n3", up=False)) == ("follower", [])
    assert srv.handle(m.NodeEvent("n1", up=True)) == ("follower", [])
    assert srv.handle(m.NodeEvent("n1", up=False)) == (
        "follower", [fx.LeaderChanged(None, 1), fx.SetElectionTimer("short")])
    role, effects = srv.handle(m.ElectionTimeout())
    assert role == "pre_vote" and effects[0] == fx.RoleChanged("pre_vote")


def test_timeout_now_starts_election_without_pre_vote():
    """Raft thesis §3.10 (leadership transfer, TimeoutNow): the target starts
    an election at once, skipping pre-vote, bumping the term (§5.2)."""
    srv = make_follower(N2)
    rv = m.RequestVoteRpc(2, N2, 1, 1)
    assert srv.handle(m.TimeoutNowRpc(1, N1)) == ("candidate", [
        fx.RoleChanged("candidate"),
        fx.LeaderChanged(None, 1),
        fx.PersistMeta(2, N2),
        fx.SetElectionTimer("long"),
        send(N1, rv),
        send(N3, rv),
    ])


def test_non_voter_never_starts_an_election():
    """Raft §6 / Ra: non-voting members do not stand for election."""
    srv = new_server(N3, members=(N1, N2))   # N3 is not a voter of this cluster
    assert srv.handle(m.TriggerElection()) == ("follower", [])
    assert srv.handle(m.ElectionTimeout()) == ("follower", [])


def test_restarted_voter_answers_repeat_request_with_its_durable_vote():
    """Raft §5.2 / Figure 2: votedFor survives restarts; the candidate it
    voted for gets the grant again at once (already durable), others not."""
    rec = Recovered(current_term=2, voted_for=N3, entries=(noop(1, 1),))
    srv = new_server(N2, recovered=rec)
    assert srv.handle(m.RequestVoteRpc(2, N3, 1, 1)) == ("follower", [send(N3, m.RequestVoteResult(2, N2, True))])
    assert srv.handle(m.RequestVoteRpc(2, N1, 1, 1)) == ("follower", [send(N1, m.RequestVoteResult(2, N2, False))])


def test_pre_vote_grants_from_non_members_do_not_count():
    """Raft §6: only voters of the configuration form a quorum."""
    srv = new_server(N1)
    srv.handle(m.TriggerElection())
    assert srv.handle(m.PreVoteResult(0, N5, 1, True)) == ("pre_vote", [])
    assert srv.current_term == 0


# ============================================= stale leader, term bumps
def test_follower_grants_pre_vote_to_its_own_leader_after_it_stepped_down():
    """Raft thesis §9.6 (pre-vote with leader stickiness): a follower that
    knows a live leader refuses pre-votes, except when the pre-vote comes
    FROM that leader (it stepped down without our hearing, so our idea of
    the leader is stale).  Granting still changes neither term nor vote."""
    follower = make_follower(N2)
    leader = make_leader(N1)
    leader.handle(m.StepDownIfLeader())
    role, effects = leader.handle(m.ElectionTimeout())
    token = leader.pre_vote_token
    pre = _pre_vote(1, N1, token, 1, 1)
    assert (role, effects) == ("pre_vote", [
        fx.RoleChanged("pre_vote"), fx.SetElectionTimer("long"), send(N2, pre), send(N3, pre)])
    assert follower.handle(pre) == ("follower", [send(N1, m.PreVoteResult(1, N2, token, True))])
    assert (follower.current_term, follower.voted_for, follower.leader_id) == (1, None, N1)
    # The grant is a pre-vote quorum for the old leader: it stands again.
    rv = m.RequestVoteRpc(2, N1, 1, 1)
    assert leader.handle(m.PreVoteResult(1, N2, token, True)) == ("candidate", [
        fx.RoleChanged("candidate"), fx.PersistMeta(2, N1), fx.SetElectionTimer("long"),
        send(N2, rv), send(N3, rv)])


def test_follower_grants_pre_vote_with_higher_term_but_refuses_same_term_stranger():
    """Raft thesis §9.6: a pre-vote carrying a term higher than ours means a
    newer term exists, so the leader we know is stale: granted (if the log
    is up to date, §5.4.1), without adopting the term.  An unrelated
    candidate of our own term is still refused while we know a leader."""
    srv = make_follower(N2)                                      # leader N1, term 1
    assert srv.handle(_pre_vote(1, N3, 7, 1, 1)) == (
        "follower", [send(N3, m.PreVoteResult(1, N2, 7, False))])
    assert srv.handle(_pre_vote(2, N3, 8, 1, 1)) == (
        "follower", [send(N3, m.PreVoteResult(1, N2, 8, True))])
    # A higher term alone is not enough: the log must still be up to date.
    assert srv.handle(_pre_vote(2, N3, 9, 0, 0)) == (
        "follower", [send(N3, m.PreVoteResult(1, N2, 9, False))])
    assert (srv.current_term, srv.voted_for, srv.leader_id) == (1, None, N1)


def test_follower_refusing_higher_term_vote_arms_the_election_timer():
    """Raft §5.1 (adopt a higher term) + §5.2 (a follower that hears from no
    leader starts an election after its timeout): a voter that adopts a
    candidate's higher term but refuses the vote (§5.4.1, its log is more
    up to date) is left without a leader, so it arms the long election
    timer; if that candidate never wins, the expiry starts a pre-vote in
    the new term instead of waiting for ever."""
    srv = make_follower(N2, entries=(noop(1, 1), usr(2, 1)))
    assert srv.handle(m.RequestVoteRpc(2, N3, 1, 1)) == ("follower", [
        fx.PersistMeta(2, None),
        fx.LeaderChanged(None, 2),
        fx.SetElectionTimer("long"),
        send(N3, m.RequestVoteResult(2, N2, False)),
    ])
    pre = _pre_vote(2, N2, 1, 2, 1)
    assert srv.handle(m.ElectionTimeout()) == ("pre_vote", [
        fx.RoleChanged("pre_vote"), fx.SetElectionTimer("long"), send(N1, pre), send(N3, pre)])


def test_non_voter_adopting_a_higher_term_arms_no_election_timer():
    """Raft §6 / Ra: only voters stand for election, so a non-voting member
    that adopts a higher term (and refuses a stale candidate, §5.4.1) arms
    no election timer."""
    srv = make_follower(N4, entries=(noop(1, 1), usr(2, 1)))    # N4 is not in MEMBERS3
    assert srv.handle(m.RequestVoteRpc(2, N3, 1, 1)) == ("follower", [
        fx.PersistMeta(2, None),
        fx.LeaderChanged(None, 2),
        send(N3, m.RequestVoteResult(2, N4, False)),
    ])
