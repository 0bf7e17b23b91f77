"""Applying committed entries to the machine (Raft §5.3 "state machine
safety", Ra's ra_machine semantics): order, reply forms, machine effects,
state_enter/tick/overview, versions, built-in commands, recovery."""
from __future__ import annotations

from core_helpers import (
    config, N1, N2, N3, KvMachine, VersionedKv, aer, ae_ok, kv_state, make_follower, make_leader, mach,
    new_server, noop, send, sync_cmd, usr,
)
from ra_actors.core.types import Ok  # noqa: E402
from ra_actors.core import effects as fx
from ra_actors.core import messages as m
from ra_actors.core.machine import Machine
from ra_actors.core.server import RaftServer, Recovered
from ra_actors.core.types import AwaitConsensus, Entry, NoReply, SnapshotMeta, Usr, VOTER

ALL_KINDS = (fx.SendMsg("p", "hi"), fx.ModCall("mod:fun", (1,)), fx.Monitor("process", "p"),
             fx.Timer("t", 100), fx.Aux("a"), fx.Demonitor("process", "q"))
LEADER_ONLY = ALL_KINDS[:4]
ANYONE = ALL_KINDS[4:]


def _commit_one(srv, data, frm="c1"):
    """Append ``data`` as a sync command on leader ``srv`` and return the
    (role, effects) of the ack that commits it."""
    srv.handle(sync_cmd(data, frm))
    idx = srv.log.last_index
    srv.handle(m.Written(srv.current_term, idx, idx))
    return srv.handle(ae_ok(srv.current_term, N2, idx))


def _commit_effects_tail(idx, term=1):
    return [fx.PersistLastApplied(idx), send(N2, aer(term, N1, idx, term, (), commit=idx)),
            send(N3, aer(term, N1, idx, term, (), commit=idx))]


def test_committed_entries_are_applied_in_log_order_and_answered_in_order():
    """Raft §5.3 (State Machine Safety): every server applies committed
    entries in log index order; the leader answers each caller (Ra
    await_consensus) in that order."""
    srv = make_leader(N1)
    cmds = (m.Command(("put", "k", 1), AwaitConsensus("a")), m.Command(("put", "k", 2), AwaitConsensus("b")),
            m.Command(("get", "k"), AwaitConsensus("c")))
    srv.handle(m.Commands(cmds))
    srv.handle(m.Written(1, 2, 4))
    assert srv.handle(ae_ok(1, N2, 4)) == ("leader", [
        fx.Reply("a", Ok(None), N1),
        fx.Reply("b", Ok(1), N1),
        fx.Reply("c", Ok(2), N1),
    ] + _commit_effects_tail(4))
    assert [a[0] for a in srv.machine_state["applied"]] == [2, 3, 4]


def test_apply_may_return_state_and_reply_or_also_effects():
    """Ra ra_machine:apply/3: ``(state, reply)`` or ``(state, reply, effects)``
    where effects is a list or a single effect."""
    srv = make_leader(N1)
    assert _commit_one(srv, ("fx2", "two")) == ("leader", [fx.Reply("c1", Ok("two"), N1)] + _commit_effects_tail(2))
    assert _commit_one(srv, ("fx", "three", [fx.Aux("x")])) == ("leader", [
        fx.MachineEffects((fx.Aux("x"),), leader_only=False),
        fx.Reply("c1", Ok("three"), N1),
    ] + _commit_effects_tail(3))
    assert _commit_one(srv, ("fx", "single", fx.Aux("y"))) == ("leader", [
        fx.MachineEffects((fx.Aux("y"),), leader_only=False),
        fx.Reply("c1", Ok("single"), N1),
    ] + _commit_effects_tail(4))


def test_no_reply_result_sends_no_reply():
    """Ra: a machine reply of '$ra_no_reply' suppresses the caller's reply."""
    srv = make_leader(N1)
    assert _commit_one(srv, ("noreply",)) == ("leader", _commit_effects_tail(2))


def test_leader_emits_leader_only_machine_effects_and_followers_only_the_rest():
    """Ra effect semantics (ra-inventory §2.3): send_msg, mod_call, monitor,
    timer and append run only on the leader; aux and demonitor run on every
    member (the follower applies the same entry, §5.3).  The follower's
    last_applied hint is capped at its durable index (entry 2 is not yet
    Written there), so it persists 1, not 2."""
    leader = make_leader(N1)
    data = ("fx", "r", ALL_KINDS)
    assert _commit_one(leader, data) == ("leader", [
        fx.MachineEffects(LEADER_ONLY, leader_only=True),
        fx.MachineEffects(ANYONE, leader_only=False),
        fx.Reply("c1", Ok("r"), N1),
    ] + _commit_effects_tail(2))

    follower = make_follower(N2)
    e2 = Entry(2, 1, Usr(data, AwaitConsensus("c1"), 0))
    assert follower.handle(aer(1, N1, 1, 1, (e2,), commit=2)) == ("follower", [
        fx.LogAppend((e2,)),
        fx.MachineEffects(ANYONE, leader_only=False),
        fx.PersistLastApplied(1),                 # hint capped at the durable index
    ])


def test_machine_effects_keep_the_machines_order():
    """Ra executes a machine's effects in the order returned (ra_server_proc
    folds over the list): a demonitor followed by a monitor of the same
    process must leave it monitored, so the leader-only/anyone split must
    not reorder them."""
    srv = make_leader(N1)
    effs = (fx.Demonitor("process", "p"), fx.Monitor("process", "p"))
    assert _commit_one(srv, ("fx", "r", effs)) == ("leader", [
        fx.MachineEffects((fx.Demonitor("process", "p"),), leader_only=False),
        fx.MachineEffects((fx.Monitor("process", "p"),), leader_only=True),
        fx.Reply("c1", Ok("r"), N1),
    ] + _commit_effects_tail(2))


def test_append_effect_appends_a_new_command_on_the_leader_only():
    """Ra {append, Cmd}: the leader appends the command as a new entry (and
    replicates it with the commit index); followers ignore it (and persist
    a last_applied hint capped at their durable index)."""
    srv = make_leader(N1)
    data = ("fx", "r", (fx.Append(("put", "z", 9)),))
    e3 = Entry(3, 1, Usr(("put", "z", 9), NoReply(), 0))
    assert _commit_one(srv, data) == ("leader", [
        fx.LogAppend((e3,)),
        fx.Reply("c1", Ok("r"), N1),
        fx.PersistLastApplied(2),
        send(N2, aer(1, N1, 2, 1, (e3,), commit=2)),
        send(N3, aer(1, N1, 2, 1, (e3,), commit=2)),
    ])
    follower = make_follower(N2)
    e2 = Entry(2, 1, Usr(data, NoReply(), 0))
    assert follower.handle(aer(1, N1, 1, 1, (e2,), commit=2)) == (
        "follower", [fx.LogAppend((e2,)), fx.PersistLastApplied(1)])   # 2 not yet Written
    assert follower.log.last_index == 2


def test_leader_only_effects_still_emitted_while_transferring_leadership():
    """Ra effect semantics: the member that applies an entry as leader runs
    its leader-only effects.  While in await_condition (leadership
    transfer) the core keeps committing and answering clients as leader,
    so the entry's send_msg must not be lost (no other member will ever
    run it: followers drop leader-only effects)."""
    srv = make_leader(N1)
    srv.handle(sync_cmd(("fx", "r", (fx.SendMsg("p", "hi"),)), "c1"))
    srv.handle(m.TransferLeadership(N3, "t"))      # N3 not caught up: wait
    assert srv.role == "await_condition"
    srv.handle(m.Written(1, 2, 2))
    assert srv.handle(ae_ok(1, N2, 2)) == ("await_condition", [
        fx.MachineEffects((fx.SendMsg("p", "hi"),), leader_only=True),
        fx.Reply("c1", Ok("r"), N1),
    ] + _commit_effects_tail(2))


def test_state_enter_called_on_every_role_change_with_its_effects():
    """Ra ra_machine:state_enter/2 (on every role entry, every member); the
    roles follow Raft §5.2 (follower -> candidate -> leader) with pre-vote."""
    machine = KvMachine(enter_effects={"leader": [fx.Monitor("node", "n9")], "follower": [fx.Aux("f")]})
    srv = new_server(N1, machine=machine)
    srv.handle(m.TriggerElection())
    srv.handle(m.PreVoteResult(0, N2, 1, True))
    srv.handle(m.MetaWritten(1, N1))
    a = aer(1, N1, 0, 0, (noop(1, 1),), commit=0)
    assert srv.handle(m.RequestVoteResult(1, N2, True)) == ("leader", [
        fx.RoleChanged("leader"),
        fx.MachineEffects((fx.Monitor("node", "n9"),), leader_only=False),
        fx.LeaderChanged(N1, 1),
        fx.CancelElectionTimer(),
        fx.LogAppend((noop(1, 1),)),
        send(N2, a),
        send(N3, a),
    ])
    assert machine.entered()[-3:] == ["pre_vote", "candidate", "leader"]
    assert srv.handle(m.StepDownIfLeader()) == ("follower", [
        fx.RoleChanged("follower"),
        fx.MachineEffects((fx.Aux("f"),), leader_only=False),
        fx.LeaderChanged(None, 1),
        fx.SetElectionTimer("long"),
    ])
    assert machine.entered()[-1] == "follower"


def test_tick_calls_machine_tick_on_leader_only():
    """Ra ra_machine:tick/2 runs only on the leader, with the shell's time."""
    leader = make_leader(N1, machine=KvMachine(tick_effects=[fx.Timer("t", 10), fx.Aux("tick")]))
    assert leader.handle(m.Tick(5000)) == ("leader", [
        fx.MachineEffects((fx.Timer("t", 10), fx.Aux("tick")), leader_only=False)])
    assert ("tick", 5000) in mach(leader).calls
    follower = make_follower(N2, machine=KvMachine(tick_effects=[fx.Aux("tick")]))
    assert follower.handle(m.Tick(5000)) == ("follower", [])
    assert not [c for c in mach(follower).calls if c[0] == "tick"]


def test_overview_includes_the_machine_overview_and_raft_state():
    """Ra overview/1 (ra_machine) inside the member overview."""
    srv = make_leader(N1)
    _commit_one(srv, ("put", "a", 1))
    ov = srv.overview()
    assert ov["machine"] == {"keys": 1, "tag": "v0"}
    assert (ov["state"], ov["term"], ov["commit_index"], ov["last_applied"], ov["leader_id"]) == (
        "leader", 1, 2, 2, N1)
    assert ov["cluster"] == {N1: VOTER, N2: VOTER, N3: VOTER}
    assert ov["peers"][N2] == {"next_index": 3, "match_index": 2, "status": "normal"}


def test_versioned_machine_switches_module_at_the_noop_with_higher_version():
    """Ra machine versioning (ra-inventory §2.5): entries before the noop of
    a higher version are applied by the old module; at that noop the new
    module gets MachineVersion(old, new), and later entries are its own."""
    machine = VersionedKv()
    entries = (noop(1, 1, version=0), usr(2, 1, ("put", "a", 1)), noop(3, 2, version=1),
               usr(4, 2, ("put", "b", 2)))
    srv = make_follower(N2, term=2, entries=entries, machine=machine)
    assert srv.machine_version == 1
    assert [c for c in machine.v0.calls if c[0] == "apply"] == [("apply", "v0", 2)]
    assert [c for c in machine.calls if c[0] == "apply"] == [("apply", "v1", 3), ("apply", "v1", 4)]
    assert srv.machine_state["applied"] == ((2, 1, ("put", "a", 1)), (3, 2, fx.MachineVersion(0, 1)),
                                            (4, 2, ("put", "b", 2)))
    # A noop with the same version changes nothing (the last_applied hint
    # stays at the durable index 4 until the noop is Written).
    assert srv.handle(aer(2, N1, 4, 2, (noop(5, 2, version=1),), commit=5)) == (
        "follower", [fx.LogAppend((noop(5, 2, version=1),)), fx.PersistLastApplied(4)])
    assert len(srv.machine_state["applied"]) == 3


def test_new_leader_with_newer_code_upgrades_machine_through_its_noop():
    """Ra machine versioning: the leader's noop carries version() and, once
    applied, the machine receives MachineVersion(0, 1)."""
    srv = make_leader(N1, machine=VersionedKv())
    assert srv.machine_version == 1
    assert srv.machine_state["applied"] == ((1, 1, fx.MachineVersion(0, 1)),)


def test_builtin_commands_reach_apply_as_command_data():
    """Ra built-in commands ({down,..}, {nodeup,..}, {nodedown,..},
    {timeout,..}) go through the log (§5.3) and reach apply/3."""
    srv = make_leader(N1)
    builtins = (fx.Down("p", "noconnection"), fx.NodeUp("n4"), fx.NodeDown("n4"), fx.TimerFired("t"))
    srv.handle(m.Commands(tuple(m.Command(b, NoReply()) for b in builtins)))
    srv.handle(m.Written(1, 2, 5))
    assert srv.handle(ae_ok(1, N2, 5)) == ("leader", _commit_effects_tail(5))
    assert tuple(a[2] for a in srv.machine_state["applied"]) == builtins


def test_recovery_reapplies_up_to_last_applied_without_effects():
    """Ra recovery (ra-inventory §4.9) on top of Raft §5.3: a restarted
    server re-applies its log up to the persisted last_applied to rebuild
    the machine state, without emitting effects or replies again."""
    data = ("fx", "r", (fx.SendMsg("p", "again?"), fx.Aux("again?")))
    entries = (noop(1, 1), usr(2, 1, data, AwaitConsensus("c")), usr(3, 1, ("put", "a", 1)),
               usr(4, 1, ("put", "b", 2)))
    srv = RaftServer(config(N1), Machine(KvMachine()),
                     Recovered(current_term=1, voted_for=N1, last_applied=3, entries=entries))
    assert srv.init() == ("follower", [fx.RoleChanged("follower"), fx.SetElectionTimer("long")])
    assert (srv.last_applied, srv.commit_index) == (3, 3)
    assert srv.machine_state["kv"] == {"a": 1}


def test_recovery_from_snapshot_uses_the_snapshot_state_not_init():
    """Raft §7: a snapshot replaces the log prefix; on restart the machine
    starts from the snapshot state (init is not called) and re-applies the
    entries after it up to last_applied."""
    meta = SnapshotMeta(2, 1, ((N1, VOTER), (N2, VOTER), (N3, VOTER)), 0)
    machine = KvMachine()
    srv = RaftServer(config(N1), Machine(machine),
                     Recovered(current_term=1, last_applied=3, snapshot=(meta, kv_state({"s": 1})),
                               entries=(usr(3, 1, ("put", "a", 1)),)))
    assert not [c for c in machine.calls if c[0] == "init"]
    assert srv.machine_state["kv"] == {"s": 1, "a": 1}
    assert (srv.last_applied, srv.log.snapshot_index, srv.log.last_index) == (3, 2, 3)
