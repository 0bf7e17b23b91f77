"""Checkpoints in the pure core (Ra 2.x): a ``Checkpoint`` effect keeps the
machine state at an index durably without truncating the log; a later
``ReleaseCursor`` promotes one instead of writing the state again; a
restart starts from the newest checkpoint and replays only what follows."""
from __future__ import annotations

from core_helpers import N1, N2, N3, KvMachine, aer, make_follower, mach, new_server, noop, of_type, usr
from ra_actors import codec
from ra_actors.core import effects as fx
from ra_actors.core import messages as m
from ra_actors.core.server import Recovered
from ra_actors.core.types import VOTER, SnapshotMeta, cluster_tuple

THREE = cluster_tuple({N1: VOTER, N2: VOTER, N3: VOTER})


def _meta(index: int, term: int = 1) -> SnapshotMeta:
    return SnapshotMeta(index, term, THREE, 0)


def _fx_entry(index: int, *effects) -> object:
    return usr(index, 1, ("fx", "ok", list(effects)))


def _feed(srv, *entries) -> list:
    """Replicate ``entries`` (after the follower's last) and make them durable
    and committed; returns the effects."""
    prev = srv.log.last_index
    out = srv.handle(aer(1, N1, prev, srv.log.term_at(prev), entries, entries[-1].index))[1]
    out += srv.handle(m.Written(1, entries[0].index, entries[-1].index))[1]
    return out


def test_a_checkpoint_is_written_and_the_log_is_kept():
    srv = make_follower(N2)
    effects = _feed(srv, _fx_entry(2, fx.Checkpoint(2, "state-at-2")))
    assert of_type(effects, fx.WriteCheckpoint) == [fx.WriteCheckpoint(_meta(2), codec.pack("state-at-2"))]
    assert not of_type(effects, fx.WriteSnapshot) and not of_type(effects, fx.TruncateLogBelow)
    assert srv.handle(m.CheckpointWritten(_meta(2)))[1] == []
    assert srv.checkpoints == [_meta(2)]
    assert (srv.log.snapshot_index, srv.log.first_index) == (0, 1)
    assert srv.overview()["checkpoints"] == [2] and srv.key_metrics()["checkpoint_index"] == 2


def test_a_stateless_release_cursor_promotes_the_newest_checkpoint_at_or_below_it():
    srv = make_follower(N2)
    _feed(srv, _fx_entry(2, fx.Checkpoint(2, "s2")))
    srv.handle(m.CheckpointWritten(_meta(2)))
    _feed(srv, _fx_entry(3, fx.Checkpoint(3, "s3")))
    srv.handle(m.CheckpointWritten(_meta(3)))
    _feed(srv, _fx_entry(4, fx.Checkpoint(4, "s4")))
    srv.handle(m.CheckpointWritten(_meta(4)))
    effects = _feed(srv, _fx_entry(5, fx.ReleaseCursor(3)))
    assert of_type(effects, fx.PromoteCheckpoint) == [fx.PromoteCheckpoint(_meta(3))]
    assert not of_type(effects, fx.WriteSnapshot)
    # promoted: the log goes below 3 and the older checkpoint with it; 4 stays
    assert srv.handle(m.SnapshotWritten(_meta(3)))[1] == [
        fx.TruncateLogBelow(3), fx.DeleteCheckpoints((_meta(2),))]
    assert (srv.log.snapshot_index, srv.snapshot_meta) == (3, _meta(3))
    assert srv.checkpoints == [_meta(4)]


def test_a_stateless_release_cursor_without_a_checkpoint_does_nothing():
    srv = make_follower(N2)
    effects = _feed(srv, _fx_entry(2, fx.ReleaseCursor(2)))
    assert not of_type(effects, fx.PromoteCheckpoint) and not of_type(effects, fx.WriteSnapshot)


def test_a_release_cursor_with_state_at_a_checkpoint_promotes_it_instead_of_writing_again():
    srv = make_follower(N2)
    _feed(srv, _fx_entry(2, fx.Checkpoint(2, "s2")))
    srv.handle(m.CheckpointWritten(_meta(2)))
    effects = _feed(srv, _fx_entry(3, fx.ReleaseCursor(2, "s2")))
    assert of_type(effects, fx.PromoteCheckpoint) == [fx.PromoteCheckpoint(_meta(2))]
    assert not of_type(effects, fx.WriteSnapshot)


def test_a_release_cursor_with_state_above_the_checkpoints_writes_a_snapshot_and_drops_them():
    srv = make_follower(N2)
    _feed(srv, _fx_entry(2, fx.Checkpoint(2, "s2")))
    srv.handle(m.CheckpointWritten(_meta(2)))
    effects = _feed(srv, _fx_entry(3, fx.ReleaseCursor(3, "s3")))
    assert of_type(effects, fx.WriteSnapshot) == [fx.WriteSnapshot(_meta(3), data=codec.pack("s3"))]
    assert srv.handle(m.SnapshotWritten(_meta(3)))[1] == [
        fx.TruncateLogBelow(3), fx.DeleteCheckpoints((_meta(2),))]
    assert srv.checkpoints == []


def test_one_write_at_a_time_and_min_checkpoint_interval():
    srv = make_follower(N2, min_checkpoint_interval=3)
    effects = _feed(srv, _fx_entry(2, fx.Checkpoint(2, "s2")))
    assert not of_type(effects, fx.WriteCheckpoint)        # 2 <= 0 + 3
    effects = _feed(srv, _fx_entry(3, fx.Checkpoint(3, "s3")))
    assert not of_type(effects, fx.WriteCheckpoint)        # 3 <= 0 + 3
    effects = _feed(srv, _fx_entry(4, fx.Checkpoint(4, "s4")))
    assert of_type(effects, fx.WriteCheckpoint) == [fx.WriteCheckpoint(_meta(4), codec.pack("s4"))]
    # while it is being written neither a checkpoint nor a snapshot starts
    effects = _feed(srv, _fx_entry(5, fx.Checkpoint(5, "s5"), fx.ReleaseCursor(5, "s5")))
    assert not of_type(effects, fx.WriteCheckpoint) and not of_type(effects, fx.WriteSnapshot)


def test_too_many_checkpoints_are_thinned_keeping_the_oldest_and_newest():
    srv = make_follower(N2, max_checkpoints=3)
    deleted = []
    for i in (2, 3, 4, 5, 6):
        if i == 4:
            _feed(srv, usr(4, 1, ("put", "k", 4)))
            continue
        _feed(srv, _fx_entry(i, fx.Checkpoint(i, f"s{i}")))
        deleted += srv.handle(m.CheckpointWritten(_meta(i)))[1]
    assert [c.index for c in srv.checkpoints] == [2, 5, 6]
    assert deleted == [fx.DeleteCheckpoints((_meta(3),))]


def _recovered(entries, checkpoint_meta, checkpoint_state, last_applied=0):
    return Recovered(1, None, last_applied, None, entries, (checkpoint_meta,), (checkpoint_meta, checkpoint_state))


def test_a_restart_starts_from_the_newest_checkpoint_and_replays_only_what_follows():
    entries = (noop(1, 1), usr(2, 1, ("put", "a", 1)), usr(3, 1, ("put", "b", 2)), usr(4, 1, ("put", "c", 3)))
    at3 = {"kv": {"a": 1, "b": 2}, "applied": ((2, 1, ("put", "a", 1)), (3, 1, ("put", "b", 2)))}
    machine = KvMachine()
    srv = new_server(N2, machine=machine, recovered=_recovered(entries, _meta(3), at3, last_applied=4))
    assert [c for c in machine.calls if c[0] == "apply"] == [("apply", "v0", 4)]   # only after the checkpoint
    assert srv.machine_state["kv"] == {"a": 1, "b": 2, "c": 3}
    assert srv.last_applied == 4 and srv.log.first_index == 1   # the log was not truncated
    assert srv.checkpoints == [_meta(3)] and srv.overview()["checkpoints"] == [3]
    assert srv.overview()["recovered_from"] == 3


def test_a_checkpoint_whose_entry_the_log_no_longer_holds_is_not_a_starting_point():
    entries = (noop(1, 1), usr(2, 1, ("put", "a", 1)))
    machine = KvMachine()
    srv = new_server(N2, machine=machine, recovered=_recovered(entries, _meta(3, term=2), {"kv": {"x": 9},
                                                                                          "applied": ()}, 2))
    assert srv.machine_state["kv"] == {"a": 1}                      # replayed from the start
    assert mach(srv) is machine
