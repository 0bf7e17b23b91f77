"""Checkpoints on real nodes, in both placements: the KV machine checkpoints
every few indexes (``checkpoint_every``) and its stateless release cursors
promote them; a restarted member starts from its newest checkpoint."""
from __future__ import annotations

from pathlib import Path

import pytest

import ra_actors as ra
from ra_actors.log.common import checkpoints_dir, snapshots_dir
from ra_actors.log.snapshot import snapshot_files
from runtime_helpers import wait_for as _wait


@pytest.fixture(params=["process", "shared"])
def nodes(request, tmp_path):
    with ra.local_nodes(["n1", "n2", "n3"], data_root=str(tmp_path / "nodes"),
                        placement=request.param) as nodes:
        yield nodes, tmp_path / "nodes"


def _files(data_root: Path, sid, uid: str, kind) -> list[int]:
    return [i for i, _t, _p in snapshot_files(kind(data_root / sid.node, uid))]


def test_checkpoints_keep_the_log_restart_from_them_and_are_promoted(nodes):
    nodes, data_root = nodes
    c = nodes.client()
    sids = [ra.ServerId("cp", n) for n in ("n1", "n2", "n3")]
    c.start_cluster("cp", "machines.kv", sids, {"checkpoint_every": 5})
    for i in range(22):
        c.process_command(sids[0], ("write", f"k{i}", i))
    leader = c.members(sids[0])[1]
    follower = next(s for s in sids if s != leader)
    commit = c.key_metrics(leader)["commit_index"]
    ov = _wait(lambda: (o := c.member_overview(follower))["last_applied"] >= commit and o, what="applied")
    # Checkpoints at every fifth index; nothing truncated, no snapshot.
    assert ov["checkpoints"] and all(i % 5 == 0 for i in ov["checkpoints"]), ov["checkpoints"]
    assert ov["snapshot_index"] == 0 and ov["log"]["first_index"] == 1
    assert ov["stats"]["checkpoints_written"] == len(ov["checkpoints"]) and ov["stats"]["snapshots_written"] == 0
    uid = ov["uid"]
    assert _files(data_root, follower, uid, checkpoints_dir) == list(ov["checkpoints"])
    assert _files(data_root, follower, uid, snapshots_dir) == []

    # A restarted member starts from its newest checkpoint and replays the rest.
    newest = ov["checkpoints"][-1]
    c.stop_server(follower)
    c.restart_server(follower)
    ov = _wait(lambda: (o := c.member_overview(follower))["last_applied"] >= commit and o, what="restarted")
    assert ov["recovered_from"] == newest and ov["log"]["first_index"] == 1
    assert c.local_query(follower, "machines.kv:read", "k21")[0][1] == 21


def test_a_stateless_release_cursor_promotes_a_checkpoint_instead_of_writing(nodes):
    nodes, data_root = nodes
    c = nodes.client()
    sids = [ra.ServerId("pr", n) for n in ("n1", "n2", "n3")]
    c.start_cluster("pr", "machines.kv", sids, {"checkpoint_every": 4, "release_cursor_every": 10})
    for i in range(12):
        c.process_command(sids[0], ("write", f"k{i}", i))
    leader = c.members(sids[0])[1]
    commit = c.key_metrics(leader)["commit_index"]
    for sid in sids:
        ov = _wait(lambda sid=sid: (o := c.member_overview(sid))["snapshot_index"] > 0
                   and o["last_applied"] >= commit and o, what=f"{sid} promoted")
        snap = ov["snapshot_index"]
        assert snap % 4 == 0 and ov["stats"]["checkpoints_promoted"] >= 1, ov
        assert ov["stats"]["snapshots_written"] == 0        # nothing written twice
        assert all(i > snap for i in ov["checkpoints"])     # older checkpoints went with the promotion
        uid = ov["uid"]
        assert _files(data_root, sid, uid, snapshots_dir) == [snap]
        assert _files(data_root, sid, uid, checkpoints_dir) == list(ov["checkpoints"])
    assert c.consistent_query(sids[0], "machines.kv:read", "k11")[0] == 11
