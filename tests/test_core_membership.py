"""Membership changes and leadership transfer in the pure core (Raft §6 with
single-server changes, thesis §4.1-§4.3 and §3.10)."""
from __future__ import annotations

from unittest.mock import ANY

from core_helpers import (
    N1, N2, N3, N4, N5, aer, ae_fail, ae_ok, make_follower, make_leader, new_server, noop, send, sync_cmd,
)
from ra_actors.core.types import Error, Redirect, Ok  # noqa: E402
from ra_actors.core import effects as fx
from ra_actors.core import messages as m
from ra_actors.core.types import (
    NON_VOTER, PROMOTABLE, VOTER, AwaitConsensus, ClusterChange, Entry, NotifyReply, Usr, cluster_tuple,
)


def _cluster(**members):
    """``_cluster(n1="voter", ...)`` -> canonical cluster tuple."""
    ids = {"n1": N1, "n2": N2, "n3": N3, "n4": N4, "n5": N5}
    return cluster_tuple({ids[k]: v for k, v in members.items()})


THREE = dict(n1=VOTER, n2=VOTER, n3=VOTER)


def _cc_entry(index, term, frm, **members):
    return Entry(index, term, ClusterChange(_cluster(**members), frm))


def _err(frm, kind, leader=N1):
    """The reply of a refused cluster operation (its wording aside)."""
    return fx.Reply(frm, Error(kind, ANY), leader)


# ======================================================= permission & errors
def test_cluster_change_not_permitted_before_the_noop_of_the_term_commits():
    """Raft thesis §4.1 (the single-server change bug fix) / Ra: a new
    leader may change the membership only once an entry of its term (its
    noop) is committed."""
    srv = make_leader(N1, commit_noop=False)
    assert srv.handle(m.AddMember(N4, VOTER, "a")) == ("leader", [_err("a", "ClusterChangeNotPermitted")])
    assert srv.handle(m.RemoveMember(N3, "r")) == ("leader", [_err("r", "ClusterChangeNotPermitted")])
    assert srv.log.last_index == 1


def test_only_one_cluster_change_at_a_time():
    """Raft thesis §4.1: a new change may start only once the previous one
    is committed."""
    srv = make_leader(N1)
    srv.handle(m.AddMember(N4, VOTER, "a"))
    assert srv.handle(m.AddMember(N5, VOTER, "b")) == ("leader", [_err("b", "ClusterChangeNotPermitted")])
    assert srv.handle(m.RemoveMember(N3, "c")) == ("leader", [_err("c", "ClusterChangeNotPermitted")])
    assert srv.log.last_index == 2


def test_already_member_and_not_member_errors():
    """Ra join/leave errors: adding a member twice or removing a stranger."""
    srv = make_leader(N1)
    assert srv.handle(m.AddMember(N2, VOTER, "a")) == ("leader", [_err("a", "AlreadyMember")])
    assert srv.handle(m.RemoveMember(N5, "r")) == ("leader", [_err("r", "NotMember")])


def test_membership_commands_on_follower_are_redirected():
    """Raft §6 (only the leader changes the configuration), §8 redirect."""
    srv = make_follower(N2)
    assert srv.handle(m.AddMember(N4, VOTER, "a")) == ("follower", [fx.Reply("a", Redirect(N1), N1)])
    assert srv.handle(m.RemoveMember(N3, "r")) == ("follower", [fx.Reply("r", Redirect(N1), N1)])
    assert srv.handle(m.Members("who")) == ("follower", [fx.Reply("who", Ok(((N1, N2, N3), N1)), N1)])


def test_last_voter_cannot_be_removed():
    """Raft §6: a configuration needs at least one voter to make progress."""
    srv = new_server(N1, members=(N1,))
    srv.handle(m.TriggerElection())
    srv.handle(m.MetaWritten(1, N1))
    srv.handle(m.Written(1, 1, 1))
    assert srv.handle(m.RemoveMember(N1, "r")) == ("leader", [_err("r", "LastVoter")])


# ==================================================== effective when appended
def test_added_member_is_effective_when_appended_and_replicated_to_at_once():
    """Raft §6 / thesis §4.1: a server uses the latest configuration in its
    log whether or not it is committed; the leader starts replicating to the
    new member at once (probing from its own last index, §5.3)."""
    srv = make_leader(N1)
    cc = _cc_entry(2, 1, "a", **THREE, n4=VOTER)
    assert srv.handle(m.AddMember(N4, VOTER, "a")) == ("leader", [
        fx.LogAppend((cc,)),
        fx.Reply("a", Ok((2, 1)), N1),
        send(N2, aer(1, N1, 1, 1, (cc,), commit=1)),
        send(N3, aer(1, N1, 1, 1, (cc,), commit=1)),
        send(N4, aer(1, N1, 2, 1, (), commit=1)),
    ])
    assert srv.cluster == {N1: VOTER, N2: VOTER, N3: VOTER, N4: VOTER}
    # The new member's empty log makes it reject; the leader sends it everything.
    assert srv.handle(ae_fail(1, N4, next_index=1)) == ("leader", [
        send(N4, aer(1, N1, 0, 0, (noop(1, 1), cc), commit=1))])
    # Four voters: a quorum is three, the new member included.
    srv.handle(m.Written(1, 2, 2))
    assert srv.handle(ae_ok(1, N2, 2)) == ("leader", [])
    assert srv.commit_index == 1
    assert srv.handle(ae_ok(1, N4, 2)) == ("leader", [
        fx.PersistLastApplied(2),
        send(N2, aer(1, N1, 2, 1, (), commit=2)),
        send(N3, aer(1, N1, 2, 1, (), commit=2)),
        send(N4, aer(1, N1, 2, 1, (), commit=2)),
    ])


def test_follower_switches_configuration_when_it_appends_the_change():
    """Raft §6: each server uses the latest configuration in its log, so a
    follower that appended a change already pre-votes among the new
    members."""
    srv = make_follower(N2)
    cc = _cc_entry(2, 1, "a", **THREE, n4=VOTER)
    assert srv.handle(aer(1, N1, 1, 1, (cc,), commit=1)) == ("follower", [fx.LogAppend((cc,))])
    assert srv.cluster == {N1: VOTER, N2: VOTER, N3: VOTER, N4: VOTER}
    srv.handle(m.ServerDown(N1))
    pre = m.PreVoteRpc(1, N2, 1, 2, 1, 0)
    assert srv.handle(m.ElectionTimeout()) == ("pre_vote", [
        fx.RoleChanged("pre_vote"), fx.SetElectionTimer("long"), send(N1, pre), send(N3, pre), send(N4, pre)])


def test_follower_reverts_configuration_when_the_change_is_truncated():
    """Raft §6 / thesis §4.1: if the configuration entry is removed from the
    log (conflict with a new leader, §5.3), the previous configuration is in
    force again."""
    srv = make_follower(N2)
    srv.handle(aer(1, N1, 1, 1, (_cc_entry(2, 1, "a", **THREE, n4=VOTER),), commit=1))
    assert N4 in srv.cluster
    assert srv.handle(aer(2, N3, 1, 1, (noop(2, 2),), commit=1)) == ("follower", [
        fx.PersistMeta(2, None),
        fx.LeaderChanged(None, 2),
        fx.SetElectionTimer("long"),
        fx.LeaderChanged(N3, 2),
        fx.MonitorServer(N3),
        fx.CancelElectionTimer(),
        fx.LogAppend((noop(2, 2),)),
        send(N3, ae_ok(2, N2, 1, 1, next_index=3)),
    ])
    assert srv.cluster == {N1: VOTER, N2: VOTER, N3: VOTER}


# ======================================================= voters and others
def test_non_voter_acks_do_not_count_towards_commit():
    """Raft thesis §4.2.1 (non-voting members) / Ra: only voters form
    quorums."""
    srv = make_leader(N1)
    srv.handle(m.AddMember(N4, NON_VOTER, "a"))
    srv.handle(m.Written(1, 2, 2))
    srv.handle(ae_ok(1, N2, 2))                       # change committed by voters N1, N2
    assert srv.commit_index == 2
    srv.handle(ae_fail(1, N4, next_index=1))
    srv.handle(sync_cmd(("put", "a", 1), "c"))
    srv.handle(m.Written(1, 3, 3))
    assert srv.handle(ae_ok(1, N4, 3)) == ("leader", [])
    assert srv.commit_index == 2                      # N1 + non-voter N4 is no majority
    role, effects = srv.handle(ae_ok(1, N3, 3))
    assert srv.commit_index == 3 and fx.Reply("c", Ok(None), N1) in effects


def test_promotable_member_is_promoted_once_caught_up():
    """Raft thesis §4.2.1 (catch up as non-voter, then become a voter) / Ra
    promotable membership: the leader appends the promotion itself."""
    srv = make_leader(N1)
    srv.handle(m.AddMember(N4, PROMOTABLE, "a"))
    srv.handle(m.Written(1, 2, 2))
    srv.handle(ae_ok(1, N2, 2))
    assert srv.commit_index == 2 and srv.cluster[N4] == PROMOTABLE
    srv.handle(ae_fail(1, N4, next_index=1))
    cc2 = _cc_entry(3, 1, None, **THREE, n4=VOTER)
    a = aer(1, N1, 2, 1, (cc2,), commit=2)
    assert srv.handle(ae_ok(1, N4, 2)) == ("leader", [
        fx.LogAppend((cc2,)), send(N2, a), send(N3, a), send(N4, a)])
    assert srv.cluster[N4] == VOTER


def test_removed_leader_steps_down_once_removal_commits_and_hands_over():
    """Raft §6: a leader removed from the configuration manages the cluster
    without counting itself until the change commits, then steps down
    (thesis §4.2.2); Ra sends TimeoutNow to the most caught-up voter and
    the removed server stops (StopServer("removed")): no election timer,
    role "stopped", so no last_applied hint either, and later messages are
    ignored."""
    srv = make_leader(N1)
    cc = _cc_entry(2, 1, "r", n2=VOTER, n3=VOTER)
    assert srv.handle(m.RemoveMember(N1, "r")) == ("leader", [
        fx.LogAppend((cc,)),
        fx.Reply("r", Ok((2, 1)), N1),
        send(N2, aer(1, N1, 1, 1, (cc,), commit=1)),
        send(N3, aer(1, N1, 1, 1, (cc,), commit=1)),
    ])
    srv.handle(sync_cmd(("put", "a", 1), "c"))
    srv.handle(m.Written(1, 2, 3))                    # the leader's copy does not count any more
    assert srv.handle(ae_ok(1, N3, 3)) == ("leader", [])
    assert srv.commit_index == 1
    assert srv.handle(ae_ok(1, N2, 2)) == ("stopped", [
        send(N3, m.TimeoutNowRpc(1, N1)),
        fx.RoleChanged("follower"),
        fx.LeaderChanged(None, 1),
        fx.CancelElectionTimer(),             # from becoming a non-voting follower
        fx.CancelElectionTimer(),             # from stopping
        fx.RoleChanged("stopped"),
        fx.StopServer("removed"),
    ])
    assert (srv.commit_index, srv.last_applied) == (2, 2)
    assert srv.handle(ae_ok(1, N2, 3)) == ("stopped", [])


# =================================================== leadership transfer
def test_transfer_to_caught_up_voter_sends_timeout_now_at_once():
    """Raft thesis §3.10: the leader stops accepting commands, makes sure the
    target is up to date, then sends it TimeoutNow."""
    srv = make_leader(N1)
    assert srv.handle(m.TransferLeadership(N2, "t")) == ("await_condition", [
        fx.RoleChanged("await_condition"),
        fx.SetAwaitConditionTimer(3000),
        fx.Reply("t", Ok("ok"), N1),
        send(N2, aer(1, N1, 1, 1, (), commit=1)),
        send(N2, m.TimeoutNowRpc(1, N1)),
    ])


def test_transfer_waits_until_target_caught_up():
    """Raft thesis §3.10: TimeoutNow goes out only once the target's log
    matches the leader's."""
    srv = make_leader(N1)
    srv.handle(sync_cmd(("put", "a", 1), "c"))
    assert srv.handle(m.TransferLeadership(N2, "t")) == ("await_condition", [
        fx.RoleChanged("await_condition"),
        fx.SetAwaitConditionTimer(3000),
        fx.Reply("t", Ok("ok"), N1),
        send(N2, aer(1, N1, 2, 1, (), commit=1)),
    ])
    assert srv.handle(ae_ok(1, N2, 2)) == ("await_condition", [send(N2, m.TimeoutNowRpc(1, N1))])


def test_commands_rejected_while_transferring_leadership():
    """Raft thesis §3.10 (the leader stops accepting client requests during
    a transfer) / Ra await_condition rejects with no leader."""
    srv = make_leader(N1)
    srv.handle(sync_cmd(("put", "a", 1), "c"))
    srv.handle(m.TransferLeadership(N2, "t"))
    assert srv.handle(sync_cmd(("put", "b", 2), "c2")) == (
        "await_condition", [fx.Reply("c2", Redirect(None), None)])
    assert srv.handle(m.Command(("put", "b", 2), NotifyReply(5, "cl"))) == (
        "await_condition", [fx.Rejected("cl", N1, None, 5)])
    assert srv.log.last_index == 2


def test_transfer_timeout_returns_to_leader():
    """Raft thesis §3.10: if the transfer does not complete within an
    election timeout, the leader resumes accepting requests (same term)."""
    srv = make_leader(N1)
    srv.handle(sync_cmd(("put", "a", 1), "c"))
    srv.handle(m.TransferLeadership(N2, "t"))
    assert srv.handle(m.AwaitConditionTimeout()) == ("leader", [
        fx.RoleChanged("leader"),
        send(N2, aer(1, N1, 2, 1, (), commit=1)),
        send(N3, aer(1, N1, 2, 1, (), commit=1)),
    ])
    assert srv.current_term == 1
    role, effects = srv.handle(sync_cmd(("put", "b", 2), "c2"))
    assert role == "leader"
    assert effects[0] == fx.LogAppend((Entry(3, 1, Usr(("put", "b", 2), AwaitConsensus("c2"), 0)),))


def test_transfer_target_election_deposes_the_transferring_leader():
    """Raft §5.1: the target's RequestVote of a higher term makes the old
    leader a follower that can vote for it."""
    srv = make_leader(N1)
    srv.handle(m.TransferLeadership(N2, "t"))
    assert srv.handle(m.RequestVoteRpc(2, N2, 1, 1)) == ("follower", [
        fx.PersistMeta(2, None),
        fx.RoleChanged("follower"),
        fx.LeaderChanged(None, 2),
        fx.SetElectionTimer("long"),
        fx.PersistMeta(2, N2),
        fx.SetElectionTimer("long"),
    ])


def test_transfer_errors():
    """Ra transfer_leadership: unknown_member, non_voter (only voters can
    lead, thesis §4.2.1), already_leader; followers redirect."""
    srv = make_leader(N1)
    assert srv.handle(m.TransferLeadership(N5, "t")) == ("leader", [_err("t", "NotMember")])
    assert srv.handle(m.TransferLeadership(N1, "t")) == ("leader", [fx.Reply("t", Ok("already_leader"), N1)])
    srv.handle(m.AddMember(N4, NON_VOTER, "a"))
    assert srv.handle(m.TransferLeadership(N4, "t")) == ("leader", [_err("t", "NonVoter")])
    follower = make_follower(N2)
    assert follower.handle(m.TransferLeadership(N3, "t")) == ("follower", [fx.Reply("t", Redirect(N1), N1)])


def test_transfer_to_a_voter_that_is_not_up_to_date_is_refused():
    """Ra transfer_leadership: {error, not_up_to_date} unless the target's
    next index is the leader's; the leader keeps leading."""
    srv = make_leader(N1, max_pipeline_count=1)
    for i in range(3):
        srv.handle(sync_cmd(("put", "a", i), "c"))       # only index 2 may be in flight
    assert srv.peers[N2].next_index == 3 and srv.log.last_index == 4
    role, effects = srv.handle(m.TransferLeadership(N2, "t"))
    assert role == "leader" and len(effects) == 1
    assert effects[0].reply.kind == "NotUpToDate" and "next index is 3" in effects[0].reply.detail
    # once it has everything the transfer goes ahead
    srv.handle(m.Written(1, 2, 4))
    srv.handle(ae_ok(1, N2, 2))
    srv.handle(ae_ok(1, N2, 4))
    assert srv.handle(m.TransferLeadership(N2, "t"))[0] == "await_condition"


def test_removed_leader_stops_with_stop_server_removed():
    """Raft §6 / thesis §4.2.2 (a removed leader steps down once the change
    commits) and thesis §3.10 (TimeoutNow to the most up-to-date voter),
    as Ra: the removed leader then stops — CancelElectionTimer, role
    "stopped", StopServer("removed") — so its death, reported to monitors,
    makes the others elect even if the TimeoutNow is lost.  A stopped
    server ignores every later message."""
    srv = make_leader(N1)
    srv.handle(m.RemoveMember(N1, "r"))
    srv.handle(sync_cmd(("put", "a", 1), "c"))
    srv.handle(m.Written(1, 2, 3))
    assert srv.handle(ae_ok(1, N2, 3)) == ("leader", [])          # N2 alone is no quorum of {N2, N3}
    assert srv.handle(ae_ok(1, N3, 2)) == ("stopped", [
        send(N2, m.TimeoutNowRpc(1, N1)),                         # N2 is the most caught up
        fx.RoleChanged("follower"),
        fx.LeaderChanged(None, 1),
        fx.CancelElectionTimer(),
        fx.CancelElectionTimer(),
        fx.RoleChanged("stopped"),
        fx.StopServer("removed"),
    ])
    assert srv.role == "stopped" and srv.cluster == {N2: VOTER, N3: VOTER}
    assert srv.handle(m.ElectionTimeout()) == ("stopped", [])
    assert srv.handle(m.RequestVoteRpc(2, N2, 3, 1)) == ("stopped", [])
    assert srv.handle(sync_cmd(("put", "b", 2), "c2")) == ("stopped", [])


def test_server_whose_removal_is_uncommitted_still_campaigns_and_counts_only_voters():
    """Raft thesis §4.1: a server that is not part of its own latest
    configuration should still start elections until that configuration is
    committed — it may hold the only up-to-date log.  It does not count its
    own vote (it is outside the configuration it uses)."""
    from ra_actors.core.types import ClusterChange, VOTER, cluster_tuple
    from ra_actors.core.server import RaftServer, Recovered
    from ra_actors.core.machine import Machine
    from core_helpers import KvMachine, Entry, config, noop, usr, rpcs, of_type
    removal = Entry(3, 1, ClusterChange(cluster_tuple({N1: VOTER, N2: VOTER})))
    # N3 led term 1, appended its own removal (index 3) and crashed before it committed.
    srv = RaftServer(config(N3), Machine(KvMachine()),
                     Recovered(current_term=1, voted_for=N3, last_applied=2,
                               entries=(noop(1, 1), usr(2, 1), removal)))
    role, effects = srv.init()
    assert (role, fx.SetElectionTimer("long") in effects) == ("follower", True)
    role, effects = srv.handle(m.ElectionTimeout())
    assert role == "pre_vote"
    assert sorted(to for to, _ in rpcs(effects, m.PreVoteRpc)) == [N1, N2]
    # One pre-vote from N1 is not a majority of {N1, N2}: its own vote does not count.
    role, _ = srv.handle(m.PreVoteResult(1, N1, srv.pre_vote_token, True))
    assert role == "pre_vote"
    role, effects = srv.handle(m.PreVoteResult(1, N2, srv.pre_vote_token, True))
    assert role == "candidate" and srv.current_term == 2


def test_removed_server_whose_removal_committed_does_not_campaign():
    """Raft thesis §4.2.3: once its removal has committed, a removed server
    must not disrupt the cluster with elections."""
    from ra_actors.core.types import ClusterChange, VOTER, cluster_tuple
    from ra_actors.core.server import RaftServer, Recovered
    from ra_actors.core.machine import Machine
    from core_helpers import KvMachine, Entry, config, noop, usr, rpcs, of_type
    removal = Entry(3, 1, ClusterChange(cluster_tuple({N1: VOTER, N2: VOTER})))
    srv = RaftServer(config(N3), Machine(KvMachine()),
                     Recovered(current_term=1, voted_for=N1, last_applied=3,
                               entries=(noop(1, 1), usr(2, 1), removal)))
    role, effects = srv.init()
    assert not of_type(effects, fx.SetElectionTimer)
    assert srv.handle(m.ElectionTimeout()) == ("follower", [])


# ============================================================ joining servers
FOUR = (N1, N2, N3, N4)


def _joiner_holding_a_prefix(recovered=None):
    """N4, started to join {N1, N2, N3} (``joining``: its member list is not a
    configuration), has received entries 1..4 from the leader N1 and made
    them durable, but not yet the entry that adds it."""
    from core_helpers import log_of
    srv = new_server(N4, FOUR, joining=True)
    srv.handle(aer(1, N1, 0, 0, log_of(1, 1, 1, 1), commit=4))
    srv.handle(m.Written(1, 1, 4))
    return srv


def test_joining_server_has_no_configuration_until_the_log_gives_it_one():
    """Raft thesis §4.1: a server uses the latest configuration in its log.
    A server started to join a running cluster has none yet: the member
    list it was started with was never in any log (it may count a
    promotable member as a voter, or miss one), so the server reports no
    members and counts nobody as a voter."""
    srv = _joiner_holding_a_prefix()
    assert srv.cluster == {} and srv.voters() == []
    assert srv.handle(m.Members("cl")) == ("follower", [fx.Reply("cl", Ok(((), N1)), N1)])


def test_joining_server_does_not_campaign_when_its_leader_dies():
    """Regression (sim seeds 877187950, 209396330): a joiner holding only a
    prefix of the log was elected with the vote of another joiner, both
    believing in the member list they were started with, and truncated
    committed entries everywhere.  Without a configuration from the log it
    does not stand: not on the leader's death, an election timeout, or
    TriggerElection."""
    srv = _joiner_holding_a_prefix()
    assert srv.handle(m.ServerDown(N1, "noconnection")) == ("follower", [fx.LeaderChanged(None, 1)])
    assert srv.handle(m.ElectionTimeout()) == ("follower", [])
    assert srv.handle(m.TriggerElection()) == ("follower", [])
    assert srv.role == "follower" and srv.current_term == 1


def test_joining_server_restarted_from_disk_still_does_not_campaign():
    """The same after a restart: the recovered log holds no configuration
    entry, so the joiner arms no election timer and ignores timeouts."""
    from core_helpers import KvMachine, config, log_of
    from ra_actors.core.machine import Machine
    from ra_actors.core.server import RaftServer, Recovered
    srv = RaftServer(config(N4, FOUR, joining=True), Machine(KvMachine()),
                     Recovered(current_term=1, last_applied=4, entries=log_of(1, 1, 1, 1)))
    role, effects = srv.init()
    assert role == "follower" and not [e for e in effects if isinstance(e, fx.SetElectionTimer)]
    assert srv.handle(m.ElectionTimeout()) == ("follower", [])


def test_joining_server_campaigns_once_the_change_adding_it_is_in_its_log():
    """Once the entry that makes it a voter is in its log (committed or not,
    thesis §4.1), the joiner uses that configuration like everyone else:
    it stands when its leader dies and asks the voters of that
    configuration."""
    from core_helpers import rpcs
    srv = _joiner_holding_a_prefix()
    srv.handle(aer(1, N1, 4, 1, (_cc_entry(5, 1, None, n1=VOTER, n2=VOTER, n3=VOTER, n4=VOTER),), commit=4))
    assert srv.voters() == [N1, N2, N3, N4]
    assert srv.handle(m.ServerDown(N1, "noconnection")) == (
        "follower", [fx.LeaderChanged(None, 1), fx.SetElectionTimer("short")])
    role, effects = srv.handle(m.ElectionTimeout())
    assert role == "pre_vote"
    assert sorted(to for to, _ in rpcs(effects, m.PreVoteRpc)) == [N1, N2, N3]


def test_joining_server_added_as_promotable_does_not_campaign():
    """A promotable member (Ra) holds a copy but is no voter until the leader
    promotes it: the configuration in its log says so."""
    srv = _joiner_holding_a_prefix()
    srv.handle(aer(1, N1, 4, 1, (_cc_entry(5, 1, None, n1=VOTER, n2=VOTER, n3=VOTER, n4=PROMOTABLE),),
                   commit=4))
    srv.handle(m.ServerDown(N1, "noconnection"))
    assert srv.handle(m.ElectionTimeout()) == ("follower", [])


def test_joining_server_takes_no_snapshot_where_it_does_not_know_the_configuration():
    """A snapshot records the configuration at its index; a joiner that has
    not seen one there takes no snapshot (it would record an empty
    configuration, and a follower installing it would lose its own)."""
    from core_helpers import usr
    srv = _joiner_holding_a_prefix()
    e5 = usr(5, 1, ("release",))
    role, effects = srv.handle(aer(1, N1, 4, 1, (e5,), commit=5))
    assert srv.last_applied == 5 and not [e for e in effects if isinstance(e, fx.WriteSnapshot)]
