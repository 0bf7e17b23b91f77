"""The members a cluster started with, on real nodes in both placements:
``initial_members`` answers ``start_cluster``'s server ids from the
leader, whoever joined or left since."""
from __future__ import annotations

import pytest

import ra_actors as ra
from ra_actors import aio

SIDS = [ra.ServerId("kv", n) for n in ("n1", "n2", "n3")]


@pytest.fixture(params=["process", "shared"])
def nodes(request, tmp_path):
    with ra.local_nodes(["n1", "n2", "n3", "n4"], data_root=str(tmp_path / "nodes"),
                        placement=request.param) as nodes:
        yield nodes


@pytest.fixture
def cluster(nodes):
    c = nodes.client()
    started, _ = c.start_cluster("kv", "machines.kv", SIDS)
    assert sorted(started) == sorted(SIDS)
    return c


def test_initial_members_are_those_the_cluster_started_with(cluster, nodes):
    c = cluster
    leader = c.members(SIDS[0])[1]
    follower = next(s for s in SIDS if s != leader)
    members, answered_by = c.initial_members(follower)            # the leader answers
    assert sorted(members) == sorted(SIDS) and answered_by == leader
    new = ra.ServerId("kv", "n4")
    c.start_server("kv", "machines.kv", new, SIDS)
    c.add_member(leader, new)
    gone = next(s for s in SIDS if s not in (leader, follower))
    c.remove_member(leader, gone)
    assert sorted(c.members(leader)[0]) == sorted({leader, follower, new})
    assert sorted(c.initial_members(new)[0]) == sorted(SIDS)        # not who is in it now


@pytest.mark.asyncio
async def test_initial_members_awaited(cluster, nodes):
    async with await aio.connect(nodes.addresses()["n1"]) as client:
        members, leader = await client.initial_members(SIDS[2])
        assert sorted(members) == sorted(SIDS) and leader in SIDS
