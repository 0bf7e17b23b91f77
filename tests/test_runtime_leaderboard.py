"""The leaderboard on real nodes, in both placements (Ra's ra_leaderboard):
each node keeps who leads the clusters it has members of, kept current by
those members; ``client.leader`` and ``client.members(..., local=True)``
answer from it without asking a server or a leader."""
from __future__ import annotations

import os
import signal
import time

import pytest

import ra_actors as ra
from ra_actors import errors
from runtime_helpers import wait_for as _wait


@pytest.fixture(params=("process", "shared"))
def nodes(request, tmp_path):
    with ra.local_nodes(["n1", "n2", "n3"], data_root=str(tmp_path / "nodes"), placement=request.param) as nodes:
        yield nodes


def _start(c, name):
    sids = [ra.ServerId(name, n) for n in ("n1", "n2", "n3")]
    c.start_cluster(name, "machines.kv", sids)
    return sids


def test_the_leaderboard_follows_leadership(nodes):
    c = nodes.client()
    sids = _start(c, "kv")
    _r, leader = c.process_command(sids[0], ("write", "a", 1))
    _wait(lambda: c.leader("kv") == leader, what="the leaderboard names the leader")
    members, board_leader = c.members("kv", local=True)
    assert sorted(members) == sorted(sids) and board_leader == leader

    target = next(s for s in sids if s != leader)
    assert c.transfer_leadership(leader, target) == ("ok", target)
    _wait(lambda: c.leader("kv") == target, what="the leaderboard follows the transfer")
    for sid in sids:
        _wait(lambda sid=sid: c.members(sid, local=True)[1] == target, what=f"{sid} recorded the new leader")

    c.stop_server(target)        # the leader goes: its node forgets it, a new one is recorded
    new = _wait(lambda: (lambda l: l not in (None, target) and l)(c.leader("kv")), what="a new leader")
    assert new in sids and new != target
    with pytest.raises(errors.NoSuchServer):
        c.members(target, local=True, timeout=2)
    c.restart_server(target)


def test_answers_come_from_the_node_not_the_server(nodes):
    """With a member's (or its host's) process stopped, asking it times
    out, but its node's leaderboard still answers for it and its cluster."""
    c = nodes.client()
    sids = _start(c, "kv")
    _r, leader = c.process_command(sids[0], ("write", "a", 1))
    follower = next(s for s in sids if s != leader)
    _wait(lambda: c.members(follower, local=True)[1] == leader, what="the follower recorded its leader")
    pid = c.member_overview(follower)["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(errors.Timeout):
            c.member_overview(follower, timeout=1.0)
        t0 = time.monotonic()
        members, known = c.members(follower, local=True, timeout=2.0)
        assert known == leader and sorted(members) == sorted(sids)
        assert time.monotonic() - t0 < 1.5
    finally:
        os.kill(pid, signal.SIGCONT)


def test_members_asks_the_leader_by_default(nodes):
    """A follower paused while it is removed still counts itself a member:
    its own view (``local=True``) says so, the default answer is its
    leader's, which does not."""
    c = nodes.client()
    sids = _start(c, "kv")
    _r, leader = c.process_command(sids[0], ("write", "a", 1))
    follower = next(s for s in sids if s != leader)
    _wait(lambda: c.members(follower, local=True)[1] == leader, what="the follower recorded its leader")
    pid = c.member_overview(follower)["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        c.remove_member(leader, follower)
        _wait(lambda: follower not in c.members(leader, local=True)[0], what="the leader's view")
    finally:
        os.kill(pid, signal.SIGCONT)
    own, own_leader = c.members(follower, local=True)
    assert follower in own and own_leader == leader, "the removed follower never heard of it"
    members, known = c.members(follower)
    assert follower not in members and known == leader, "the default answer is the leader's"
    assert sorted(members) == sorted(c.members("kv")[0])


def test_unknown_and_deleted_clusters(nodes):
    c = nodes.client()
    with pytest.raises(errors.NoSuchCluster):
        c.leader("nope", timeout=3)
    with pytest.raises(errors.NoSuchServer):      # NoSuchCluster is one
        c.members("nope", local=True, timeout=3)
    with pytest.raises(ValueError):
        c.leader(ra.ServerId("kv", "n1"))
    sids = _start(c, "gone")
    _wait(lambda: c.leader("gone") is not None, what="a leader recorded")
    c.delete_cluster(sids, timeout=15)

    def forgotten() -> bool:
        try:
            c.leader("gone", timeout=3)
        except errors.NoSuchCluster:
            return True
        return False      # (the supervisors hear of the deletion a moment after it is done)

    _wait(forgotten, what="the deleted cluster forgotten")
