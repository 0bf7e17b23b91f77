"""Cluster deletion in the pure core (Ra delete_cluster: a DeleteCluster
entry, once committed and applied, stops every member and deletes its data;
the machine sees state_enter(eol))."""
from __future__ import annotations

from core_helpers import N1, N2, N3, KvMachine, aer, ae_ok, make_follower, make_leader, mach, send
from ra_actors.core.types import Ok, Redirect  # noqa: E402
from ra_actors.core import effects as fx
from ra_actors.core import messages as m
from ra_actors.core.types import DeleteCluster, Entry


def test_leader_deletes_cluster_once_every_follower_has_the_commit():
    """Raft §5.3 (the delete is an ordinary log entry, applied once
    committed); Ra: the leader answers the caller, enters
    terminating_leader and stops once every member knows the commit."""
    srv = make_leader(N1, machine=KvMachine(enter_effects={"eol": [fx.Aux("bye")]}))
    entry = Entry(2, 1, DeleteCluster("d"))
    assert srv.handle(m.DeleteClusterCmd("d")) == ("leader", [
        fx.LogAppend((entry,)),
        send(N2, aer(1, N1, 1, 1, (entry,), commit=1)),
        send(N3, aer(1, N1, 1, 1, (entry,), commit=1)),
    ])
    srv.handle(m.Written(1, 2, 2))
    assert srv.handle(ae_ok(1, N2, 2)) == ("terminating_leader", [
        fx.MachineEffects((fx.Aux("bye"),), leader_only=False),
        fx.Reply("d", Ok(N1), N1),
        fx.RoleChanged("terminating_leader"),
        send(N2, aer(1, N1, 2, 1, (), commit=2)),
        send(N3, aer(1, N1, 2, 1, (), commit=2)),
        fx.PersistLastApplied(2),
    ])
    assert "eol" in mach(srv).entered()
    assert srv.handle(ae_ok(1, N3, 2)) == ("stopped", [
        fx.CancelElectionTimer(), fx.RoleChanged("stopped"), fx.DeleteData()])
    assert srv.handle(m.Tick(1)) == ("stopped", [])


def test_follower_applying_delete_stops_and_deletes_its_data():
    """Ra delete_cluster on a follower: eol, terminating_follower, and once
    the DeleteCluster entry is durable it acknowledges it (the terminating
    leader waits for every member) and stops."""
    srv = make_follower(N2, machine=KvMachine(enter_effects={"eol": [fx.Aux("bye")]}))
    entry = Entry(2, 1, DeleteCluster("d"))
    assert srv.handle(aer(1, N1, 1, 1, (entry,), commit=2)) == ("terminating_follower", [
        fx.LogAppend((entry,)),
        fx.MachineEffects((fx.Aux("bye"),), leader_only=False),
        fx.RoleChanged("terminating_follower"),
        fx.PersistLastApplied(1),
    ])
    assert srv.handle(m.Written(1, 2, 2)) == ("stopped", [
        send(N1, ae_ok(1, N2, 2, 1)),
        fx.CancelElectionTimer(),
        fx.RoleChanged("stopped"),
        fx.DeleteData(),
    ])
    assert srv.handle(aer(1, N1, 2, 1, (), commit=2)) == ("stopped", [])


def test_a_terminating_follower_stays_terminating_while_its_leader_sends_again():
    """Ra delete_cluster: a member that applied the DeleteCluster entry is
    deleting for good.  A lagging member (just restarted) gets the entry
    with the commit before it is durable; the terminating leader's forced
    resend and heartbeats arrive meanwhile.  It must still acknowledge the
    entry once durable and stop -- not fall back to follower, outlive the
    leader and stand for election in a cluster that no longer exists."""
    srv = make_follower(N3)
    entry = Entry(2, 1, DeleteCluster("d"))
    assert srv.handle(aer(1, N1, 1, 1, (entry,), commit=2))[0] == "terminating_follower"
    assert srv.handle(aer(1, N1, 2, 1, (), commit=2)) == ("terminating_follower", [])
    assert srv.handle(m.HeartbeatRpc(1, N1, 0))[0] == "terminating_follower"
    assert srv.handle(m.ElectionTimeout()) == ("terminating_follower", [])
    assert srv.handle(m.Written(1, 2, 2)) == ("stopped", [
        send(N1, ae_ok(1, N3, 2, 1)),
        fx.CancelElectionTimer(),
        fx.RoleChanged("stopped"),
        fx.DeleteData(),
    ])


def test_a_terminating_follower_that_hears_of_a_new_term_still_goes():
    """The deletion is committed, so every later leader has it: a new term
    (the terminating leader gone, another member campaigning) does not
    bring a deleting member back; once its entry is durable it stops."""
    srv = make_follower(N3)
    srv.handle(aer(1, N1, 1, 1, (Entry(2, 1, DeleteCluster("d")),), commit=2))
    assert srv.handle(m.RequestVoteRpc(2, N2, 2, 1))[0] == "terminating_follower"
    assert srv.handle(m.ElectionTimeout()) == ("terminating_follower", [])
    assert srv.handle(m.Written(1, 2, 2))[0] == "stopped"


def test_a_terminating_leader_that_hears_of_a_new_term_stops():
    """A terminating leader deposed by a higher term has the deletion
    applied and durable: it goes at once instead of following."""
    srv = make_leader(N1)
    srv.handle(m.DeleteClusterCmd("d"))
    srv.handle(m.Written(1, 2, 2))
    assert srv.handle(ae_ok(1, N2, 2))[0] == "terminating_leader"     # N3 has not answered
    role, effects = srv.handle(m.AppendEntriesRpc(2, N2, 2, 2, 1, ()))
    assert role == "stopped" and fx.DeleteData() in effects


def test_terminating_leader_gives_up_waiting_for_down_members():
    """Ra bounds the terminating leader's wait: members that never answer
    must not keep it alive for ever."""
    srv = make_leader(N1)
    srv.handle(m.DeleteClusterCmd("d"))
    srv.handle(m.Written(1, 2, 2))
    srv.handle(ae_ok(1, N2, 2))                       # N3 never answers
    roles = [srv.handle(m.Tick(t))[0] for t in range(200)]
    assert roles[-1] == "stopped" and "terminating_leader" in roles


def test_delete_on_follower_is_redirected():
    """Raft §8: only the leader appends."""
    srv = make_follower(N2)
    assert srv.handle(m.DeleteClusterCmd("d")) == ("follower", [fx.Reply("d", Redirect(N1), N1)])
