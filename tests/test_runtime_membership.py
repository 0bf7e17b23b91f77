"""Membership, leadership transfer, queries and pipelining on real nodes."""
from __future__ import annotations

import time

import pytest

import ra_actors as ra
from ra_actors import errors
from ra_actors.events import Applied, Rejected


@pytest.fixture
def kv4(tmp_path):
    """Four nodes; a kv cluster on n1..n3, n4 spare."""
    with ra.local_nodes(["n1", "n2", "n3", "n4"], data_root=str(tmp_path / "nodes")) as nodes:
        c = nodes.client()
        sids = [ra.ServerId("kv", n) for n in ("n1", "n2", "n3")]
        c.start_cluster("kv", "machines.kv", sids, config={"release_cursor_every": 400})
        yield nodes, c, sids


def _wait(pred, timeout=10.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_add_and_remove_member_and_snapshot_catch_up(kv4):
    nodes, c, sids = kv4
    _r, leader = c.process_command(sids[0], ("write", "first", 1))
    # thousands of commands, several snapshots, state > 1 MiB
    blob = "v" * 1000
    corr = 0
    pending = set()
    for i in range(3000):
        corr += 1
        pending.add(corr)
        c.pipeline_command(leader, ("write", f"k{i}", blob + str(i)), correlation=corr)
        if i % 200 == 199:
            for e in c.events(0.0):
                for cr, _ in getattr(e, "results", ()):
                    pending.discard(cr)
    deadline = time.time() + 30
    while pending and time.time() < deadline:
        for e in c.events(0.5):
            assert isinstance(e, Applied), e
            for cr, _ in e.results:
                pending.discard(cr)
    assert not pending
    # (snapshots are written beside the applies: the last may still be on its way)
    _wait(lambda: c.key_metrics(leader)["snapshot_index"] >= 1200, 10, "a snapshot at 1200 or later")
    new = ra.ServerId("kv", "n4")
    c.start_server("kv", "machines.kv", new, sids, config={"release_cursor_every": 400})
    (idx_term, lead) = c.add_member(leader, new)
    assert isinstance(idx_term, tuple) and lead in sids
    target = c.key_metrics(leader)["commit_index"]
    _wait(lambda: c.key_metrics(new)["last_applied"] >= target, 30, "the new member to catch up")
    stats = c.member_overview(new)["stats"]
    assert stats["snapshot_chunks_in"] >= 3, stats     # > 1 MiB of state: several 1 MiB chunks
    # then entries: commands after the snapshot reach the new member too
    for i in range(20):
        c.process_command(leader, ("write", f"after{i}", i))
    target = c.key_metrics(leader)["commit_index"]
    _wait(lambda: c.key_metrics(new)["last_applied"] >= target, 10, "entries after the snapshot")
    assert c.local_query(new, "machines.kv:read", "k2999")[0][1] == blob + "2999"
    assert c.local_query(new, "machines.kv:read", "after19")[0][1] == 19
    members, _ = c.members(new)
    assert sorted(members) == sorted(sids + [new])
    assert c.key_metrics(new)["membership"] == "voter"
    # adding it again is an error and changes nothing
    with pytest.raises(errors.AlreadyMember):
        c.add_member(leader, new)
    # remove an original member; the cluster keeps working with the rest
    gone = next(s for s in sids if s != leader)
    c.remove_member(leader, gone)
    members, _ = c.members(leader)
    assert gone not in members and len(members) == 3
    reply, _ = c.process_command(new, ("write", "post-remove", 1))
    assert reply == "ok"
    with pytest.raises(errors.NotMember):
        c.remove_member(leader, gone)


def test_transfer_leadership(kv3):
    c = kv3.client
    _r, leader = c.process_command(kv3.sids[0], ("write", "a", 1))
    target = next(s for s in kv3.sids if s != leader)
    result, new_leader = c.transfer_leadership(leader, target)
    assert result == "ok" and new_leader == target
    assert c.key_metrics(target)["state"] == "leader"
    reply, lead = c.process_command(leader, ("write", "b", 2))
    assert reply == "ok" and lead == target
    assert c.transfer_leadership(target, target)[0] == "already_leader"


def test_consistent_query_sees_every_acknowledged_write(kv3):
    c = kv3.client
    for i in range(50):
        c.process_command(kv3.sids[i % 3], ("write", "reg", i))
        # a query started after the write was acknowledged, on any member
        value, leader = c.consistent_query(kv3.sids[(i + 1) % 3], "machines.kv:read", "reg")
        assert value == i
    (idx_term, value), _ = c.leader_query(kv3.sids[1], "machines.kv:read", "reg")
    assert value == 49 and idx_term[0] >= 50


def test_pipelined_commands_are_applied_and_the_client_follows_rejections(kv3):
    c = kv3.client
    _r, leader = c.process_command(kv3.sids[0], ("write", "a", 1))
    follower = next(s for s in kv3.sids if s != leader)
    for corr in range(1, 301):
        c.pipeline_command(leader, ("write", f"p{corr}", corr), correlation=corr)
    # the follower turns it away (Rejected NotLeader); the client sends it on to the leader
    c.pipeline_command(follower, ("write", "via-follower", 1), correlation="f1")
    applied, rejected = {}, []
    deadline = time.time() + 15
    while len(applied) < 301 and time.time() < deadline:
        for e in c.events(0.5):
            if isinstance(e, Applied):
                assert e.leader == leader
                for corr, reply in e.results:
                    assert corr not in applied
                    applied[corr] = reply
            elif isinstance(e, Rejected):
                rejected.append(e)
    assert sorted(applied, key=str) == sorted(list(range(1, 301)) + ["f1"], key=str)
    assert set(applied.values()) == {"ok"} and rejected == []
    assert c.consistent_query(follower, "machines.kv:read", "via-follower")[0] == 1
    # low priority commands are applied too
    c.pipeline_command(leader, ("write", "low", 1), correlation="low", priority="low")
    got = []
    deadline = time.time() + 5
    while not got and time.time() < deadline:
        got = [e for e in c.events(0.5) if isinstance(e, Applied)]
    assert got[0].results == [("low", "ok")]


def test_stop_restart_and_delete(kv3):
    c = kv3.client
    _r, leader = c.process_command(kv3.sids[0], ("write", "a", 1))
    follower = next(s for s in kv3.sids if s != leader)
    c.stop_server(follower)
    assert c.overview(follower.node)["servers"]["kv"]["status"] in ("stopped", "exited")
    with pytest.raises(errors.NoSuchServer):
        c.key_metrics(follower, timeout=2)
    c.process_command(leader, ("write", "b", 2))
    c.restart_server(follower)
    _wait(lambda: c.key_metrics(follower)["last_applied"] >= c.key_metrics(leader)["commit_index"],
          10, "restarted follower")
    c.delete_cluster(kv3.sids, timeout=15)
    for sid in kv3.sids:
        _wait(lambda sid=sid: "kv" not in c.overview(sid.node)["servers"], 15, f"{sid} deleted")
        with pytest.raises(errors.NoSuchServer):
            c.key_metrics(sid, timeout=2)
    # its name can be used again
    started, _ = c.start_cluster("kv", "machines.kv", kv3.sids)
    assert c.consistent_query(kv3.sids[0], "machines.kv:read", "a")[0] is None


def test_a_promotable_member_is_promoted_once_caught_up_and_members_info_shows_it(kv4):
    """Ra's answer to a fresh member electing a leader without the committed
    log: it joins as ``promotable`` (a non-voter), the leader promotes it
    once it has caught up, and ``members_info`` shows both stages."""
    nodes, c, sids = kv4
    _r, leader = c.process_command(sids[0], ("write", "a", 1))
    for i in range(200):
        c.process_command(leader, ("write", f"k{i}", i))
    info, via = c.members_info(sids[1])
    assert via == leader and set(info) == set(sids)
    assert info[leader]["status"] == "leader" and all(v["membership"] == "voter" for v in info.values())
    new = ra.ServerId("kv", "n4")
    c.start_server("kv", "machines.kv", new, sids, config={"release_cursor_every": 400})
    c.add_member(leader, new, membership="promotable")
    seen = set()

    def promoted():
        members, _ = c.members_info(leader)
        seen.add(members[new]["membership"])
        return members[new]["membership"] == "voter" and members[new]["match_index"] >= 201
    _wait(promoted, 20, "the promotable member to be promoted")
    assert seen <= {"promotable", "voter"}            # never anything else on the way
    assert c.consistent_query(new, "machines.kv:read", "k199")[0] == 199
    with pytest.raises(ValueError):
        c.add_member(leader, ra.ServerId("kv", "n5"), membership="observer")
