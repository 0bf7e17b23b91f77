"""Snapshots in the pure core (Raft §7): taking them on ReleaseCursor,
sending them chunk by chunk, receiving and installing them."""
from __future__ import annotations

import pytest

from core_helpers import (
    N1, N2, N3, KvMachine, aer, ae_fail, ae_ok, kv_state, log_of, make_follower, make_leader,
    new_server, noop, of_type, send, sync_cmd, usr,
)
from ra_actors.core.types import Ok  # noqa: E402
from ra_actors import codec
from ra_actors.core import effects as fx
from ra_actors.core import messages as m
from ra_actors.core.server import Recovered
from ra_actors.core.types import VOTER, AwaitConsensus, Entry, InvalidEffect, SnapshotMeta, Usr, cluster_tuple

THREE = cluster_tuple({N1: VOTER, N2: VOTER, N3: VOTER})
META5 = SnapshotMeta(5, 1, THREE, 0)
STATE5 = kv_state({"a": 1, "b": 2})
DATA5 = codec.pack(STATE5)


def _chunk(term, meta, no, last, data, frm=N1):
    return m.InstallSnapshotRpc(term, frm, meta, no, last, data)


# ============================================================ taking snapshots
def test_release_cursor_writes_snapshot_then_truncates_the_log():
    """Raft §7: a server snapshots its machine state up to an applied index
    and then discards the log prefix — here only once the snapshot is
    durable (SnapshotWritten)."""
    srv = make_leader(N1)
    srv.handle(sync_cmd(("release",), "c1"))
    srv.handle(m.Written(1, 2, 2))
    state2 = kv_state(applied=((2, 1, ("release",)),))
    meta2 = SnapshotMeta(2, 1, THREE, 0)
    assert srv.handle(ae_ok(1, N2, 2)) == ("leader", [
        fx.WriteSnapshot(meta2, data=codec.pack(state2)),   # encoded at once
        fx.Reply("c1", Ok("released"), N1),
        fx.PersistLastApplied(2),
        send(N2, aer(1, N1, 2, 1, (), commit=2)),
        send(N3, aer(1, N1, 2, 1, (), commit=2)),
    ])
    assert srv.log.snapshot_index == 0                 # not before it is durable
    assert srv.handle(m.SnapshotWritten(meta2)) == ("leader", [fx.TruncateLogBelow(2)])
    assert (srv.log.snapshot_index, srv.log.snapshot_term, srv.log.entries) == (2, 1, [])
    assert srv.snapshot_meta == meta2


def test_followers_take_their_own_snapshots_on_release_cursor():
    """Raft §7: each server snapshots independently (Ra: release_cursor runs
    on all members).  The last_applied hint stays at the durable index 1
    (entry 2 is not Written yet)."""
    srv = make_follower(N2)
    e2 = Entry(2, 1, Usr(("release",), AwaitConsensus("c1"), 0))
    meta2 = SnapshotMeta(2, 1, THREE, 0)
    assert srv.handle(aer(1, N1, 1, 1, (e2,), commit=2)) == ("follower", [
        fx.LogAppend((e2,)),
        fx.WriteSnapshot(meta2, data=codec.pack(kv_state(applied=((2, 1, ("release",)),)))),
        fx.PersistLastApplied(1),
    ])
    assert srv.handle(m.SnapshotWritten(meta2)) == ("follower", [fx.TruncateLogBelow(2)])
    assert srv.log.first_index == 3


def test_a_release_cursor_with_a_written_condition_waits_until_the_log_is_durable_there():
    """Ra's condition {written, Idx}: a follower applies entries the leader
    committed before its own copy is durable; the snapshot waits for it."""
    srv = make_follower(N2)
    release = fx.ReleaseCursor(2, "S", condition=(("written", 2),))
    e2 = usr(2, 1, ("fx", "r", [release]))
    role, effects = srv.handle(aer(1, N1, 1, 1, (e2,), commit=2))
    assert srv.last_applied == 2 and of_type(effects, fx.WriteSnapshot) == []
    role, effects = srv.handle(m.Written(1, 2, 2))
    assert of_type(effects, fx.WriteSnapshot) == [fx.WriteSnapshot(SnapshotMeta(2, 1, THREE, 0),
                                                                   data=codec.pack("S"))]
    assert srv.pending_release_cursor is None


def test_a_release_cursor_with_no_snapshot_sends_waits_until_the_transfer_ends():
    """Ra's no_snapshot_sends: the leader keeps the log a follower that is
    being sent a snapshot may need next."""
    srv = _leader_with_snapshot_at_5()
    srv.handle(ae_fail(2, N3, next_index=1))                 # N3 is sent the snapshot
    release = fx.ReleaseCursor(7, "S", condition="no_snapshot_sends")
    srv.handle(sync_cmd(("fx", "r", [release])))
    srv.handle(m.Written(2, 7, 7))
    role, effects = srv.handle(ae_ok(2, N2, 7))
    assert srv.last_applied == 7 and of_type(effects, fx.WriteSnapshot) == []
    role, effects = srv.handle(ae_ok(2, N3, 7, 2))           # the transfer ends
    assert srv.peers[N3].snapshot is None
    assert of_type(effects, fx.WriteSnapshot) == [fx.WriteSnapshot(SnapshotMeta(7, 2, THREE, 0),
                                                                   data=codec.pack("S"))]


def test_a_release_cursor_condition_met_at_once_snapshots_at_once():
    srv = make_follower(N2)
    e2 = usr(2, 1, ("fx", "r", [fx.ReleaseCursor(2, "S", condition=(("written", 1), "no_snapshot_sends"))]))
    role, effects = srv.handle(aer(1, N1, 1, 1, (e2,), commit=2))
    assert len(of_type(effects, fx.WriteSnapshot)) == 1


def test_release_cursor_conditions_are_ras_or_invalid():
    assert fx.ReleaseCursor(3, "S", condition=[["written", 3]]).condition == (("written", 3),)
    assert fx.ReleaseCursor(3, "S", condition="no_snapshot_sends").condition == ("no_snapshot_sends",)
    for bad in (("written",), (("written", -1),), (("written", "3"),), ("soon",), 5):
        with pytest.raises(InvalidEffect):
            fx.ReleaseCursor(3, "S", condition=bad)
    with pytest.raises(InvalidEffect, match="without a state"):
        fx.ReleaseCursor(3, condition="no_snapshot_sends")


def test_release_cursor_below_min_snapshot_interval_is_ignored():
    """Ra min_snapshot_interval: no snapshot until enough entries accumulated."""
    srv = make_follower(N2, min_snapshot_interval=5)
    e2 = usr(2, 1, ("release",))
    assert srv.handle(aer(1, N1, 1, 1, (e2,), commit=2)) == (
        "follower", [fx.LogAppend((e2,)), fx.PersistLastApplied(1)])   # hint: durable index


def test_a_release_cursor_while_a_snapshot_is_written_waits_for_that_write():
    """Raft §7, one snapshot write at a time: a release cursor that comes
    while a snapshot is being written is kept, encoded at its own index,
    and written once that write ends (a SnapshotWritten for another
    snapshot ends nothing).  Dropping it would leave the log untruncated
    until the machine's next release."""
    srv = make_follower(N2)
    e2, e3 = usr(2, 1, ("release",)), usr(3, 1, ("release",))
    srv.handle(aer(1, N1, 1, 1, (e2,), commit=2))
    meta2 = SnapshotMeta(2, 1, THREE, 0)
    assert srv.handle(aer(1, N1, 2, 1, (e3,), commit=3)) == (
        "follower", [fx.LogAppend((e3,)), fx.PersistLastApplied(1)])   # no second write yet
    assert srv.handle(m.SnapshotWritten(SnapshotMeta(3, 1, THREE, 0))) == ("follower", [])
    assert srv.log.snapshot_index == 0
    state3 = kv_state(applied=((2, 1, ("release",)), (3, 1, ("release",))))
    role, effects = srv.handle(m.SnapshotWritten(meta2))
    assert srv.log.snapshot_index == 2
    assert of_type(effects, fx.WriteSnapshot) == [fx.WriteSnapshot(SnapshotMeta(3, 1, THREE, 0),
                                                                   data=codec.pack(state3))]
    role, effects = srv.handle(m.SnapshotWritten(SnapshotMeta(3, 1, THREE, 0)))
    assert srv.log.snapshot_index == 3


# ============================================================ sending snapshots
def _leader_with_snapshot_at_5(**kw):
    """Leader of term 2 whose log starts after a snapshot at 5; noop at 6
    committed by N1+N2; N3 has not answered yet."""
    rec = Recovered(current_term=1, last_applied=5, snapshot=(META5, STATE5))
    srv = make_leader(N1, recovered=rec, commit_noop=False, snapshot_chunk_size=10, **kw)
    srv.handle(m.Written(2, 6, 6))
    srv.handle(ae_ok(2, N2, 6))
    assert srv.commit_index == 6
    return srv


def test_follower_behind_leaders_first_index_is_sent_the_snapshot_chunk_by_chunk():
    """Raft §7 (InstallSnapshot): when the leader has discarded the entries a
    follower needs, it sends its snapshot, in chunks, each chunk after the
    previous one was acknowledged; then normal replication resumes."""
    srv = _leader_with_snapshot_at_5()
    assert srv.handle(ae_fail(2, N3, next_index=1)) == ("leader", [fx.SendSnapshotChunk(N3, META5, 2, 1, 10)])
    assert srv.handle(ae_ok(2, N3, 0, 0)) == ("leader", [])                      # ignored while sending
    assert srv.handle(m.InstallSnapshotResult(2, N3, 1, 0, 0)) == (
        "leader", [fx.SendSnapshotChunk(N3, META5, 2, 2, 10)])
    assert srv.handle(m.InstallSnapshotResult(2, N3, 1, 0, 0)) == ("leader", [])  # duplicate ack
    assert srv.handle(m.InstallSnapshotResult(2, N3, -1, 5, 1)) == (
        "leader", [send(N3, aer(2, N1, 5, 1, (noop(6, 2),), commit=6))])
    assert (srv.peers[N3].match_index, srv.peers[N3].next_index) == (5, 7)


def test_leader_resends_the_current_chunk_after_a_tick_without_progress():
    """Raft §7 with lossy networks: an unacknowledged chunk is sent again."""
    srv = _leader_with_snapshot_at_5()
    srv.handle(ae_fail(2, N3, next_index=1))
    assert srv.handle(m.Tick(1000)) == ("leader", [])
    assert srv.handle(m.Tick(2000)) == ("leader", [fx.SendSnapshotChunk(N3, META5, 2, 1, 10)])


# ========================================================= receiving snapshots
def test_follower_receives_chunks_writes_installs_and_acknowledges_the_snapshot():
    """Raft §7 (InstallSnapshot receiver): accumulate chunks; on the last one
    save the snapshot, discard the log that it does not extend, reset the
    state machine from it; Ra then calls snapshot_installed and the
    follower acknowledges with the snapshot's last index; entries flow."""
    machine = KvMachine(installed_effects=[fx.Aux("installed")])
    srv = new_server(N3, machine=machine)
    assert srv.handle(_chunk(2, META5, 1, False, DATA5[:10])) == ("receive_snapshot", [
        fx.PersistMeta(2, None),
        fx.SetElectionTimer("long"),                 # higher term adopted, no leader yet
        fx.LeaderChanged(N1, 2),
        fx.MonitorServer(N1),
        fx.RoleChanged("receive_snapshot"),
        fx.SetElectionTimer("long"),                 # re-armed by every chunk
        send(N1, m.InstallSnapshotResult(2, N3, 1, 0, 0)),
    ])
    # A duplicate of the chunk just received is acknowledged again, not appended twice.
    assert srv.handle(_chunk(2, META5, 1, False, DATA5[:10])) == ("receive_snapshot", [
        fx.SetElectionTimer("long"),
        send(N1, m.InstallSnapshotResult(2, N3, 1, 0, 0)),
    ])
    assert srv.handle(_chunk(2, META5, 2, True, DATA5[10:])) == ("receive_snapshot", [
        fx.SetElectionTimer("long"),
        fx.WriteSnapshot(META5, data=DATA5),
    ])
    assert srv.machine_state == kv_state()          # not installed before it is durable
    assert srv.handle(m.SnapshotWritten(META5)) == ("follower", [
        fx.TruncateLogBelow(5, keep_above=False),
        fx.PersistLastApplied(5),
        fx.MachineEffects((fx.Aux("installed"),), leader_only=False),
        fx.RoleChanged("follower"),
        fx.CancelElectionTimer(),
        send(N1, m.InstallSnapshotResult(2, N3, -1, 5, 1)),
    ])
    assert srv.machine_state == STATE5
    assert (srv.commit_index, srv.last_applied, srv.log.snapshot_index) == (5, 5, 5)
    assert ("snapshot_installed", 5) in machine.calls
    # The last_applied hint stays at the snapshot (durable) until 6 is Written.
    assert srv.handle(aer(2, N1, 5, 1, (noop(6, 2),), commit=6)) == (
        "follower", [fx.LogAppend((noop(6, 2),)), fx.PersistLastApplied(5)])
    assert srv.handle(m.Written(2, 6, 6)) == ("follower", [send(N1, ae_ok(2, N3, 6, 2))])


def test_installed_snapshot_keeps_the_log_suffix_it_matches():
    """Raft §7: if the follower's log has an entry with the snapshot's last
    index and term, the entries after it are retained."""
    srv = make_follower(N2, entries=log_of(1, 1, 1, 1, 1, 1), commit=3)
    assert srv.handle(_chunk(1, META5, 1, True, DATA5)) == ("receive_snapshot", [
        fx.RoleChanged("receive_snapshot"),
        fx.SetElectionTimer("long"),
        fx.WriteSnapshot(META5, data=DATA5),
    ])
    assert srv.handle(m.SnapshotWritten(META5)) == ("follower", [
        fx.TruncateLogBelow(5, keep_above=True),
        fx.PersistLastApplied(5),
        fx.RoleChanged("follower"),
        fx.CancelElectionTimer(),
        send(N1, m.InstallSnapshotResult(1, N2, -1, 5, 1)),
    ])
    assert [e.index for e in srv.log.entries] == [6]
    assert (srv.log.snapshot_index, srv.commit_index, srv.last_applied) == (5, 5, 5)


def test_installed_snapshot_discards_a_conflicting_log():
    """Raft §7: if the follower's entry at the snapshot index has another
    term, the whole log is discarded (TruncateLogBelow keep_above=False)."""
    srv = make_follower(N2, entries=log_of(1, 1, 1, 1, 1, 1), commit=3)
    meta = SnapshotMeta(5, 2, THREE, 0)
    srv.handle(aer(2, N1, 3, 1, (), commit=3))
    srv.handle(_chunk(2, meta, 1, True, DATA5))
    role, effects = srv.handle(m.SnapshotWritten(meta))
    assert role == "follower"
    assert effects == [
        fx.TruncateLogBelow(5, keep_above=False),
        fx.PersistLastApplied(5),
        fx.RoleChanged("follower"),
        fx.CancelElectionTimer(),
        send(N1, m.InstallSnapshotResult(2, N2, -1, 5, 2)),
    ]
    assert srv.log.entries == [] and srv.log.last_index == 5 and srv.log.last_term == 2


def test_snapshot_not_beyond_commit_index_is_not_installed():
    """Raft §7: a snapshot the follower already covers (committed) is not
    installed; the follower answers as if it were installed (chunk -1, the
    snapshot's index, which it holds durably) so the leader resumes entries."""
    srv = make_follower(N2, entries=log_of(1, 1, 1, 1, 1), commit=5)
    meta3 = SnapshotMeta(3, 1, THREE, 0)
    assert srv.handle(_chunk(1, meta3, 1, True, DATA5)) == (
        "follower", [send(N1, m.InstallSnapshotResult(1, N2, -1, 3, 1))])
    assert srv.log.snapshot_index == 0


def test_snapshot_of_a_newer_machine_version_is_refused():
    """Ra machine versioning (ra-inventory §2.5): a follower refuses snapshots
    with a higher machine version than its code supports."""
    srv = make_follower(N2)
    meta = SnapshotMeta(5, 1, THREE, 3)
    assert srv.handle(_chunk(1, meta, 1, True, DATA5)) == ("follower", [])
    assert srv.installing is None and srv.role == "follower"


def test_out_of_order_chunk_is_ignored():
    """Raft §7: chunks are written in order (offset); a chunk that does not
    follow the last one received is dropped (the leader resends)."""
    srv = make_follower(N2, entries=(), commit=0)
    assert srv.handle(_chunk(1, META5, 2, False, DATA5[10:])) == ("follower", [])
    assert srv.receiving is None


def test_leader_lost_while_receiving_snapshot_lets_follower_stand_for_election():
    """Raft §5.2 (liveness: a follower that stops hearing from its leader
    starts an election) with Ra's failure detection: a member in
    receive_snapshot whose leader goes down must not stay stuck without an
    election timer (the timer was cancelled when the transfer began)."""
    srv = make_follower(N2, entries=(), commit=0)
    srv.handle(_chunk(1, META5, 1, False, DATA5[:10]))
    assert srv.role == "receive_snapshot"
    assert srv.handle(m.ServerDown(N1)) == ("follower", [
        fx.RoleChanged("follower"),
        fx.LeaderChanged(None, 1),
        fx.SetElectionTimer("short"),
    ])
    assert srv.receiving is None


def test_receive_snapshot_without_chunks_for_an_election_timeout_gives_up():
    """Raft §5.2 (liveness): a member stuck in receive_snapshot (no chunk for
    a whole election timeout) drops the partial snapshot, forgets the
    leader and arms a short election timer."""
    srv = make_follower(N2, entries=(), commit=0)
    srv.handle(_chunk(1, META5, 1, False, DATA5[:10]))
    assert srv.handle(m.ElectionTimeout()) == ("follower", [
        fx.RoleChanged("follower"),
        fx.LeaderChanged(None, 1),
        fx.SetElectionTimer("short"),
    ])
    assert srv.receiving is None


def test_leader_restarts_a_snapshot_transfer_when_it_takes_a_newer_snapshot():
    """Raft §7: the leader always sends its current snapshot; once a newer
    one is durable the shell keeps only it, so a transfer in progress starts
    over from chunk 1 of the new snapshot."""
    srv = _leader_with_snapshot_at_5()
    srv.handle(ae_fail(2, N3, next_index=1))                    # sending META5 to N3
    srv.handle(sync_cmd(("release",), "c1"))
    srv.handle(m.Written(2, 7, 7))
    role, effects = srv.handle(ae_ok(2, N2, 7))
    meta7 = SnapshotMeta(7, 2, THREE, 0)
    state7 = {"kv": STATE5["kv"], "applied": ((7, 2, ("release",)),)}
    assert effects[0] == fx.WriteSnapshot(meta7, data=codec.pack(state7))
    assert srv.handle(m.SnapshotWritten(meta7)) == ("leader", [
        fx.TruncateLogBelow(7),
        fx.SendSnapshotChunk(N3, meta7, 2, 1, 10),
    ])


def test_snapshot_overtaken_by_entries_while_being_written_is_not_installed():
    """Raft §7 with Ra's asynchronous snapshot write: if replicated entries
    commit past the snapshot's index while it is being written, installing
    it would move last_applied backwards (simulator seed 60372).  The
    follower keeps its log and only acknowledges."""
    srv = new_server(N3)
    srv.handle(_chunk(2, META5, 1, True, DATA5))          # the whole snapshot in one chunk
    # The leader meanwhile replicates entries 1..7 and commits them.
    entries = log_of(1, 1, 1, 1, 1) + (noop(6, 2), noop(7, 2))
    srv.handle(aer(2, N1, 0, 0, entries, commit=7))
    assert srv.last_applied == 7
    srv.handle(m.Written(1, 1, 5))
    role, effects = srv.handle(m.SnapshotWritten(META5))
    assert (role, srv.last_applied, srv.log.snapshot_index) == ("follower", 7, 0)
    assert effects[-1] == send(N1, m.InstallSnapshotResult(2, N3, -1, 5, 1))
    assert not of_type(effects, fx.TruncateLogBelow)


# ==================================== transfers that stall, snapshots that race
def test_snapshot_transfer_ends_when_the_follower_acknowledges_the_leaders_first_index():
    """Regression (sim seeds 874408424, 867606193, 777336805, 855337442): an
    AppendEntriesRpc that overtook a chunk turned the receiving follower
    back into a follower holding the entries, and it dropped the chunks it
    had.  The leader ignored its successful replies while sending, and the
    follower ignored the later chunks: the transfer never ended.  A
    successful reply that reaches the leader's first index ends the
    transfer; replication continues from the log."""
    srv = _leader_with_snapshot_at_5()
    srv.handle(ae_fail(2, N3, next_index=1))
    assert srv.peers[N3].snapshot is not None
    assert srv.handle(ae_ok(2, N3, 6, 2)) == ("leader", [send(N3, aer(2, N1, 6, 2, (), commit=6))])
    p = srv.peers[N3]
    assert (p.snapshot, p.match_index, p.next_index) == (None, 6, 7)


def test_snapshot_transfer_goes_on_for_a_reply_below_the_leaders_first_index():
    """A reply below the snapshot (or with a term the leader's log does not
    have there) cannot be served from the log: the transfer goes on."""
    srv = _leader_with_snapshot_at_5()
    srv.handle(ae_fail(2, N3, next_index=1))
    assert srv.handle(ae_ok(2, N3, 4, 1)) == ("leader", [])
    assert srv.handle(ae_ok(2, N3, 6, 1)) == ("leader", [])   # index 6 has term 2 here
    assert srv.peers[N3].snapshot == (META5, 1)


def test_stalled_snapshot_transfer_restarts_from_the_first_chunk():
    """A chunk unacknowledged for a tick is sent again; unacknowledged for a
    second tick, the transfer starts over from chunk 1 (the follower may
    have dropped the chunks before it, and it ignores a chunk it cannot
    place)."""
    srv = _leader_with_snapshot_at_5()
    srv.handle(ae_fail(2, N3, next_index=1))
    srv.handle(m.InstallSnapshotResult(2, N3, 1, 0, 0))               # chunk 2 is out
    assert srv.handle(m.Tick(1000)) == ("leader", [])
    assert srv.handle(m.Tick(2000)) == ("leader", [fx.SendSnapshotChunk(N3, META5, 2, 2, 10)])
    assert srv.handle(m.Tick(3000)) == ("leader", [fx.SendSnapshotChunk(N3, META5, 2, 1, 10)])
    assert srv.handle(m.InstallSnapshotResult(2, N3, 1, 0, 0)) == (
        "leader", [fx.SendSnapshotChunk(N3, META5, 2, 2, 10)])


def test_no_release_cursor_while_a_received_snapshot_is_being_written():
    """Regression (sim seed 496897026): a follower writing a received
    snapshot (at 6) applied entries and released a cursor (at 4).  Its own,
    older snapshot landed last, replaced the received one on disk, and the
    log truncated below 6 then had a hole at 5..6 -- yet the follower
    acknowledged entries after it.  One snapshot write at a time: the
    release is skipped while the install is being written."""
    srv = make_follower(N3, entries=log_of(1, 1, 1), commit=2)
    meta6 = SnapshotMeta(6, 1, THREE, 0)
    data6 = codec.pack(kv_state({"z": 1}))
    role, effects = srv.handle(_chunk(1, meta6, 1, True, data6))
    assert role == "receive_snapshot" and of_type(effects, fx.WriteSnapshot) == [fx.WriteSnapshot(meta6, data=data6)]
    e4 = usr(4, 1, ("release",))
    assert srv.handle(aer(1, N1, 3, 1, (e4,), commit=4)) == ("follower", [
        fx.RoleChanged("follower"), fx.CancelElectionTimer(), fx.LogAppend((e4,)),
        fx.PersistLastApplied(3),                     # applied 4; no WriteSnapshot(4)
    ])
    role, effects = srv.handle(m.SnapshotWritten(meta6))
    assert srv.log.snapshot_index == 6 and fx.TruncateLogBelow(6, keep_above=False) in effects
