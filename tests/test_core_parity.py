"""Ra features the core carries beyond the paper (ra-inventory §1-§2):
members_info, the query condition and context, forced shrink, the simple
machine form, snapshot_installed with the old meta and state, Down at low
priority, try_append."""
from __future__ import annotations

from core_helpers import (
    N1, N2, N3, N4, KvMachine, ae_ok, aer, kv_state, make_follower, make_leader, new_server, noop, of_type, rpcs, usr,
)
from ra_actors.core import codec
from ra_actors.core import effects as fx
from ra_actors.core import messages as m
from ra_actors.core.machine import Machine, SimpleMachine
from ra_actors.core.types import VOTER, Ok, QueryContext, Redirect, SnapshotMeta, cluster_tuple


def _get(key):
    return lambda state: state["kv"].get(key)


def test_members_info_shows_each_members_replication_state_from_the_leader():
    srv = make_leader(N1)
    role, (reply,) = srv.handle(m.MembersInfo("who"))
    info, leader = reply.reply.value
    assert leader == N1 and set(info) == {N1, N2, N3}
    assert info[N2] == {"membership": VOTER, "status": "normal", "next_index": 2, "match_index": 1,
                        "query_index": 0, "machine_version": None}
    assert info[N1]["status"] == "leader"
    follower = make_follower(N2)
    assert follower.handle(m.MembersInfo("who")) == ("follower", [fx.Reply("who", Redirect(N1), N1)])


def test_a_query_with_a_condition_waits_until_that_entry_is_applied_here():
    """Read-your-writes on any member (Ra's condition {applied, {Idx, Term}})."""
    srv = make_follower(N2)                      # applied 1 (the noop)
    query = m.Query("local", _get("a"), "q", condition=(2, 1))
    assert srv.handle(query) == ("follower", [])
    role, effects = srv.handle(aer(1, N1, 1, 1, (usr(2, 1, ("put", "a", 7)),), commit=2))
    (reply,) = of_type(effects, fx.Reply)
    assert reply.to == "q" and reply.reply == Ok(((2, 1), 7))


def test_a_condition_on_an_overwritten_entry_keeps_waiting():
    srv = make_follower(N2, entries=(noop(1, 1), usr(2, 1, ("put", "a", 7))), commit=2)
    assert srv.handle(m.Query("local", _get("a"), "q", condition=(2, 5))) == ("follower", [])
    assert len(srv.conditional_queries) == 1


def test_a_query_whose_wait_ran_out_is_answered_timeout_and_forgotten():
    srv = make_follower(N2)                      # applied 1 (the noop)
    srv.handle(m.Query("local", _get("a"), "q", condition=(2, 1)))
    role, (reply,) = srv.handle(m.QueryExpired("q"))
    assert reply.to == "q" and reply.reply.kind == "Timeout"
    assert "had not applied index 2 of term 1" in reply.reply.detail
    assert srv.conditional_queries == []
    role, effects = srv.handle(aer(1, N1, 1, 1, (usr(2, 1, ("put", "a", 7)),), commit=2))
    assert of_type(effects, fx.Reply) == []      # answered once: the timeout was its answer


def test_the_expiry_of_a_query_already_answered_changes_nothing():
    srv = make_follower(N2, entries=(noop(1, 1), usr(2, 1, ("put", "a", 7))), commit=2)
    role, (reply,) = srv.handle(m.Query("local", _get("a"), "q", condition=(2, 1)))
    assert reply.reply == Ok(((2, 1), 7))
    assert srv.handle(m.QueryExpired("q")) == ("follower", [])


def test_a_leader_query_with_a_condition_is_redirected_by_a_follower_at_once():
    """Ra checks a leader query's condition on the leader."""
    srv = make_follower(N2)
    role, effects = srv.handle(m.Query("leader", _get("a"), "q", condition=(9, 1)))
    assert effects == [fx.Reply("q", Redirect(N1), N1)] and srv.conditional_queries == []


def test_a_query_function_with_context_learns_where_its_state_stands():
    srv = make_leader(N1)
    role, (reply,) = srv.handle(m.Query("local", lambda state, ctx: ctx, "q", with_context=True))
    (_index_term, ctx) = reply.reply.value
    assert ctx == QueryContext(index=1, term=1, machine_version=0, leader=N1)


def test_the_leader_answers_the_members_its_cluster_was_started_with():
    srv = make_leader(N1)
    srv.handle(m.AddMember(N4, VOTER, "op"))     # in force once appended; not an initial member
    assert N4 in srv.cluster
    role, (reply,) = srv.handle(m.InitialMembers("who"))
    assert reply == fx.Reply("who", Ok((N1, N2, N3)), N1)
    follower = make_follower(N2)
    assert follower.handle(m.InitialMembers("who")) == ("follower", [fx.Reply("who", Redirect(N1), N1)])


def test_force_shrink_makes_this_server_the_only_voter_and_it_leads():
    """A majority is lost for good: the operator shrinks the cluster to one
    member, which elects itself and commits the new configuration."""
    srv = make_follower(N2)
    role, effects = srv.handle(m.ForceShrink("op"))
    assert srv.cluster == {N2: VOTER} and role == "candidate"
    assert fx.Reply("op", Ok(None), N2) in effects
    srv.handle(m.MetaWritten(srv.current_term, N2))
    assert srv.role == "leader"


def test_force_shrink_waits_while_a_snapshot_comes_in():
    """As Ra: only a leader, candidate or follower forces the change."""
    srv = new_server(N3)
    meta = SnapshotMeta(5, 1, cluster_tuple({N1: VOTER, N2: VOTER, N3: VOTER}), 0)
    role, _ = srv.handle(m.InstallSnapshotRpc(2, N1, meta, 1, False, b"x"))
    assert role == "receive_snapshot"
    role, effects = srv.handle(m.ForceShrink("op"))
    (reply,) = of_type(effects, fx.Reply)
    assert reply.reply.kind == "ClusterChangeNotPermitted" and N1 in srv.cluster and role == "receive_snapshot"


def test_the_simple_machine_form_replies_with_the_next_state():
    machine = Machine(SimpleMachine(lambda cmd, state: state + cmd))
    assert machine.init({"initial_state": 10}) == 10
    state, reply, effects = machine.apply(0, None, 5, 10)
    assert (state, reply, effects) == (15, 15, [])


def test_snapshot_installed_gets_the_old_meta_and_state_when_it_asks_for_them():
    seen = []

    class Four(KvMachine):
        def snapshot_installed(self, meta, state, old_meta, old_state):
            seen.append((meta.index, old_meta, old_state))
            return []

    meta5 = SnapshotMeta(5, 1, cluster_tuple({N1: VOTER, N2: VOTER, N3: VOTER}), 0)
    srv = new_server(N3, machine=Four())
    srv.handle(m.InstallSnapshotRpc(2, N1, meta5, 1, True, codec.pack(kv_state({"a": 1}))))
    srv.handle(m.SnapshotWritten(meta5))
    assert seen == [(5, None, kv_state())]


def test_a_down_is_appended_behind_earlier_low_priority_commands():
    """Ra appends a monitor's DOWN as a low-priority command: it waits behind
    the low-priority commands queued before it (the queue drains
    ``low_priority_flush_size`` per step)."""
    srv = make_leader(N1, low_priority_flush_size=2)
    from ra_actors.core.types import NoReply
    low = tuple(m.Command(("put", f"k{i}", i), NoReply(), "low") for i in range(4))
    srv.handle(m.Commands(low))                       # k0, k1 appended; k2, k3 wait
    srv.handle(m.MachineEvent(fx.Down("client:n1:c", "noconnection"), 10))
    srv.handle(m.Tick(0))
    data = [e.command.data for e in srv.log.entries[1:]]
    assert data == [("put", "k0", 0), ("put", "k1", 1), ("put", "k2", 2), ("put", "k3", 3),
                    fx.Down("client:n1:c", "noconnection")]


def test_try_append_on_a_follower_is_forwarded_like_a_clients_command():
    """Ra's try_append: in any role, as if a client had sent it."""
    machine = KvMachine()
    srv = make_follower(N2, machine=machine)
    e2 = usr(2, 1, ("fx", "r", (fx.TryAppend(("put", "z", 1)),)))
    role, effects = srv.handle(aer(1, N1, 1, 1, (e2,), commit=2))
    forwards = of_type(effects, fx.ForwardCommand)
    assert [(f.leader, f.command.data) for f in forwards] == [(N1, ("put", "z", 1))]
