"""Placement ``process`` on the direct stream: each server actor carries its
Raft RPCs, its clients' calls and replies, and its writes to the node's
WAL actor on connections of its own (ra_actors.actors.streamside), and
falls back to Thespian when there is no stream."""
from __future__ import annotations

import ra_actors as ra
from runtime_helpers import wait_for

COMMANDS = 200


def _counts(client, sid) -> tuple[int, int, int]:
    ov = client.member_overview(sid)
    stream = ov["stream"] or {"frames_in": 0, "links": 0}
    return ov["stats"]["thespian_in"], stream["frames_in"], stream["links"]


def _write(client, sid, n: int) -> None:
    for i in range(n):
        reply, _leader = client.process_command(sid, ("write", i, i))
        assert reply == "ok"


def test_commands_replicate_without_thespian_once_the_streams_are_up(tmp_path):
    with ra.local_nodes(["n1", "n2", "n3"], data_root=str(tmp_path / "nodes"), placement="process") as nodes:
        c = nodes.client()
        sids = [ra.ServerId("kv", n) for n in nodes]
        c.start_cluster("kv", "machines.kv", sids)
        _write(c, sids[0], 20)                 # streams offered, dialled, said hello
        leader = c.members(sids[0])[1]
        before = {sid: _counts(c, sid) for sid in sids}
        _write(c, leader, COMMANDS)
        after = {sid: _counts(c, sid) for sid in sids}
        for sid in sids:
            thespian = after[sid][0] - before[sid][0]
            streamed = after[sid][1] - before[sid][1]
            # Through Thespian each command would bring a server at least a
            # WalResult, and the leader the call and the followers' replies.
            assert thespian < COMMANDS // 10, f"{sid}: {thespian} Thespian messages for {COMMANDS} commands"
            assert streamed >= COMMANDS, f"{sid}: {streamed} frames on its stream"
        # the leader's links: two peers, the client and its WAL
        assert after[leader][2] >= 4
        for sid in sids:
            wait_for(lambda: c.local_query(sid, "machines.kv:read", COMMANDS - 1)[0][1] == COMMANDS - 1,
                     what=f"{sid} applied the last write")


def test_without_a_stream_everything_goes_through_thespian(tmp_path, monkeypatch):
    monkeypatch.setenv("RA_ACTORS_STREAM", "0")
    with ra.local_nodes(["n1", "n2", "n3"], data_root=str(tmp_path / "nodes"), placement="process") as nodes:
        c = nodes.client()
        sids = [ra.ServerId("kv", n) for n in nodes]
        c.start_cluster("kv", "machines.kv", sids)
        leader = c.members(sids[0])[1]
        before = _counts(c, leader)
        _write(c, leader, 50)
        after = _counts(c, leader)
        assert c.member_overview(leader)["stream"] is None
        assert after[0] - before[0] >= 2 * 50, "each call and its WAL result came through Thespian"
        wait_for(lambda: c.local_query(sids[2], "machines.kv:read", 49)[0][1] == 49,
                 what="a follower applied the last write")
