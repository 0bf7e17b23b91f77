"""Ra's aux handler (v2: ``init_aux/1``, ``handle_aux/5``, ``ra_aux``) in
the pure core: a member-local handler with its own state, run in any role
for calls and casts, ``Aux`` effects, ``AuxEval`` after applied batches and
``AuxTick`` at every member's ticks; a consistent aux call waits for a
ReadIndex round like a consistent query (Raft §8)."""
from __future__ import annotations

import pytest

from core_helpers import (N1, N2, N3, AuxKv, KvMachine, ae_ok, aer, make_follower, make_leader, new_server,
                          noop, of_type, rpcs, usr)
from ra_actors.core import effects as fx
from ra_actors.core import messages as m
from ra_actors.core.machine import Machine
from ra_actors.core.types import VOTER, Error, NoReply, Ok, Redirect


def _aux_machine(srv) -> AuxKv:
    return srv.machine.impl


def call(srv, command, caller="c1"):
    return srv.handle(m.AuxCommand("call", command, caller))


def cast(srv, command):
    return srv.handle(m.AuxCommand("cast", command))


# ================================================================= calls, casts
def test_init_aux_gets_the_servers_name_and_makes_the_aux_state_at_every_start():
    srv = new_server(N2, machine=AuxKv())
    assert ("init_aux", "c") in _aux_machine(srv).calls
    assert srv.aux_state == {"n": 0, "seen": ()}


def test_an_aux_call_runs_on_this_member_in_its_role_and_answers_with_the_reply():
    """Ra's aux_command: any member, any role; the aux state is its own."""
    follower = make_follower(N2, machine=AuxKv())
    assert call(follower, ("inc",)) == ("follower", [fx.Reply("c1", Ok(1), N1)])
    assert call(follower, ("inc",), "c2") == ("follower", [fx.Reply("c2", Ok(2), N1)])
    leader = make_leader(N1, machine=AuxKv())
    assert call(leader, ("get",)) == ("leader", [fx.Reply("c1", Ok(0), N1)])
    assert [c[:2] for c in _aux_machine(follower).aux_calls if c[2] == ("inc",)] == [
        ("follower", "call"), ("follower", "call")]
    candidate = new_server(N3, machine=AuxKv())
    candidate.handle(m.TriggerElection())
    assert call(candidate, ("inc",))[1] == [fx.Reply("c1", Ok(1), None)]
    assert _aux_machine(candidate).aux_calls[-1] == ("pre_vote", "call", ("inc",))


def test_an_aux_cast_changes_the_aux_state_and_answers_nobody():
    srv = make_follower(N2, machine=AuxKv())
    assert cast(srv, ("inc",)) == ("follower", [])
    assert srv.aux_state["n"] == 1


def test_no_reply_to_a_call_answers_none():
    """Ra leaves the caller waiting for a later reply effect; there is none
    here, so the call is answered None rather than left to time out."""
    srv = make_follower(N2, machine=AuxKv())
    assert call(srv, ("noreply",))[1] == [fx.Reply("c1", Ok(None), N1)]


def test_a_machine_without_handle_aux_answers_a_call_aux_not_implemented():
    """Ra: {error, aux_handler_not_implemented} for a call; a cast does nothing."""
    srv = make_follower(N2)
    assert call(srv, ("inc",))[1] == [fx.Reply("c1", Error("AuxNotImplemented", "the machine has no handle_aux"),
                                               N1)]
    assert cast(srv, ("inc",)) == ("follower", [])


def test_a_raising_handler_is_reported_and_leaves_the_aux_state_and_the_server_as_they_were():
    srv = make_follower(N2, machine=AuxKv())
    cast(srv, ("inc",))
    role, effects = call(srv, ("boom",))
    reason = "handle_aux raised RuntimeError('aux bug')"
    assert (role, effects) == ("follower", [fx.AuxFailure("call", ("boom",), reason),
                                            fx.Reply("c1", Error("AuxFailed", reason), N1)])
    assert cast(srv, ("boom",))[1] == [fx.AuxFailure("cast", ("boom",), reason)]
    assert srv.aux_state["n"] == 1 and call(srv, ("get",))[1] == [fx.Reply("c1", Ok(1), N1)]


def test_handle_aux_cannot_change_the_replicated_state():
    """The machine state is given read-only, as to a query: a change would
    fork this replica from the others."""
    srv = make_follower(N2, machine=AuxKv(), entries=(noop(1, 1), usr(2, 1, ("put", "k", 1))))
    _role, effects = call(srv, ("mutate",))
    assert isinstance(effects[-1].reply, Error) and effects[-1].reply.kind == "AuxFailed"
    assert srv.machine_state["kv"] == {"k": 1}


def test_an_unknown_kind_is_an_invalid_command():
    srv = make_follower(N2, machine=AuxKv())
    _role, effects = srv.handle(m.AuxCommand("shout", ("inc",), "c1"))
    assert effects[0].reply.kind == "InvalidCommand" and srv.aux_state["n"] == 0


def test_only_the_v2_handle_aux_is_taken():
    class Old(KvMachine):
        def handle_aux(self, role, command, aux_state):
            return aux_state

    with pytest.raises(TypeError, match="role, kind, command, aux_state, internal"):
        Machine(Old())


# ============================================================== the internal handle
def test_the_internal_handle_reads_the_members_state_and_log():
    """Ra's ra_aux: machine_state, leader_id, last_applied, current_term,
    effective_machine_version, members, log_last_index_term, log_fetch."""
    leader = make_leader(N1, machine=AuxKv())
    leader.handle(m.Command(("put", "k", 7), NoReply()))
    leader.handle(m.Written(1, 2, 2))
    leader.handle(ae_ok(1, N2, 2))
    assert leader.last_applied == 2
    _role, effects = call(leader, ("peek",))
    assert effects == [fx.Reply("c1", Ok({
        "id": N1, "last_applied": 2, "term": 1, "leader": N1, "version": 0, "members": [N1, N2, N3],
        "kv": {"k": 7}, "last": (2, 1),
        "stats": {"first_index": 1, "last_index": 2, "last_written_index": 2, "snapshot_index": 0,
                  "checkpoint_index": 0}}), N1)]
    assert call(leader, ("fetch", 2))[1][0].reply == Ok((1, {"index": 2, "term": 1, "system_time": 0},
                                                          ("put", "k", 7)))
    assert call(leader, ("fetch", 1))[1][0].reply == Ok(None)      # the noop: no user command
    assert call(leader, ("fetch", 9))[1][0].reply == Ok(None)      # beyond the log
    info = call(leader, ("info",))[1][0].reply.value
    assert info[N1]["status"] == "leader" and info[N2]["match_index"] == 2 and info[N3]["membership"] == VOTER
    follower = make_follower(N2, machine=AuxKv())
    assert call(follower, ("info",))[1][0].reply == Ok({N1: {"membership": VOTER}, N2: {"membership": VOTER},
                                                         N3: {"membership": VOTER}})


# ========================================================= eval, tick, effects
def test_eval_is_cast_after_every_applied_batch_on_every_member_and_not_on_replay():
    """Ra casts ``eval`` to handle_aux whenever a member applied entries."""
    srv = make_follower(N2, machine=AuxKv(), entries=(noop(1, 1),), commit=0)
    assert srv.aux_state["seen"] == ()
    srv.handle(aer(1, N1, 1, 1, (usr(2, 1), usr(3, 1)), commit=3))
    assert srv.last_applied == 3 and srv.aux_state["seen"] == (fx.AuxEval(),)   # one per batch
    srv.handle(aer(1, N1, 3, 1, (), commit=3))
    assert srv.aux_state["seen"] == (fx.AuxEval(),)                              # nothing applied
    leader = make_leader(N1, machine=AuxKv())
    assert leader.aux_state["seen"] == (fx.AuxEval(),)                           # its noop
    assert ("leader", "cast", fx.AuxEval()) in _aux_machine(leader).aux_calls


def test_tick_is_cast_to_the_leader_at_its_ticks():
    leader = make_leader(N1, machine=AuxKv())
    leader.handle(m.Tick(1000))
    assert leader.aux_state["seen"][-1] == fx.AuxTick()


def test_every_member_of_an_aux_machine_ticks_and_casts_tick_to_its_handler():
    """As Ra: followers tick too, and their aux handler gets the tick."""
    follower = make_follower(N2, machine=AuxKv())
    assert follower.wants_tick()
    follower.handle(m.Tick(1000))
    assert follower.aux_state["seen"][-1] == fx.AuxTick()
    assert _aux_machine(follower).aux_calls[-1] == ("follower", "cast", fx.AuxTick())
    plain = make_follower(N2)                    # no handle_aux: nothing to tick for
    assert not plain.wants_tick() and plain.handle(m.Tick(1000)) == ("follower", [])


def test_an_aux_effect_reaches_handle_aux_through_the_shell():
    """The core hands Aux effects to the shell like any effect on every
    member (the shell gives them back as an AuxCommand cast)."""
    srv = make_follower(N2, machine=AuxKv(), entries=(noop(1, 1),), commit=0)
    _role, effects = srv.handle(aer(1, N1, 1, 1, (usr(2, 1, ("fx", "r", [fx.Aux(("inc",))])),), commit=2))
    assert fx.MachineEffects((fx.Aux(("inc",)),), leader_only=False) in effects


def test_effects_of_handle_aux_follow_the_rules_of_applied_effects():
    """As in Ra, where aux effects go through the same handler: a leader-only
    SendMsg runs only on the leader; ReleaseCursor makes a snapshot on any
    member."""
    msg = fx.SendMsg("p", "hello")
    follower = make_follower(N2, machine=AuxKv())
    assert call(follower, ("fx", [msg]))[1] == [fx.Reply("c1", Ok("ok"), N1)]
    leader = make_leader(N1, machine=AuxKv())
    assert call(leader, ("fx", [msg]))[1] == [fx.Reply("c1", Ok("ok"), N1),
                                              fx.MachineEffects((msg,), leader_only=True)]
    _role, effects = call(follower, ("fx", [fx.ReleaseCursor(1, {"kv": {}, "applied": ()})]))
    assert [e.meta.index for e in of_type(effects, fx.WriteSnapshot)] == [1]


# ============================================================ consistent aux
def test_consistent_aux_on_a_follower_is_redirected_to_the_leader():
    srv = make_follower(N2, machine=AuxKv())
    assert srv.handle(m.ConsistentAux(("get",), "c1")) == ("follower", [fx.Reply("c1", Redirect(N1), N1)])


def test_consistent_aux_runs_on_the_leader_only_after_a_heartbeat_round_confirmed_it():
    """Ra's consistent_aux: a consistent read barrier (ReadIndex, Raft §8),
    then handle_aux as a call."""
    leader = make_leader(N1, machine=AuxKv())
    calls_before = len(_aux_machine(leader).aux_calls)
    _role, effects = leader.handle(m.ConsistentAux(("inc",), "c1"))
    assert rpcs(effects, m.HeartbeatRpc) == [(N2, m.HeartbeatRpc(1, N1, 1)), (N3, m.HeartbeatRpc(1, N1, 1))]
    assert not of_type(effects, fx.Reply) and len(_aux_machine(leader).aux_calls) == calls_before
    _role, effects = leader.handle(m.HeartbeatReply(1, N2, 1))
    assert effects == [fx.Reply("c1", Ok(1), N1)]
    assert _aux_machine(leader).aux_calls[-1] == ("leader", "call", ("inc",))


def test_consistent_aux_waits_for_the_noop_and_is_redirected_if_leadership_is_lost():
    leader = make_leader(N1, machine=AuxKv(), commit_noop=False)
    assert leader.handle(m.ConsistentAux(("inc",), "c1")) == ("leader", [])
    _role, effects = leader.handle(aer(2, N2, 0, 0, (), commit=0))   # a newer leader
    assert fx.Reply("c1", Redirect(None), None) in effects and leader.aux_state["n"] == 0
