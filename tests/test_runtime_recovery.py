"""The members a cluster started with, and disaster recovery, on real
nodes in both placements: ``initial_members`` answers ``start_cluster``'s
server ids from the leader, whoever joined or left since; when two of
three members are lost for good, ``force_shrink_members_to_current_member``
on the survivor makes it a cluster of one that leads and takes writes."""
from __future__ import annotations

import pytest

import ra_actors as ra
from ra_actors import aio, errors
from runtime_helpers import wait_for

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


def test_the_survivor_of_a_lost_majority_is_forced_to_lead_alone(cluster, nodes):
    c = cluster
    survivor = SIDS[0]
    leader = c.members(survivor)[1]
    assert c.process_command(leader, ("write", "before", 1))[0] == "ok"
    wait_for(lambda: c.local_query(survivor, "machines.kv:read", "before")[0][1] == 1,
             what="the survivor applies the write")
    nodes.kill("n2")                                     # lost for good
    nodes.kill("n3")
    c.force_shrink_members_to_current_member(survivor)
    members, _leader = wait_for(lambda: (r := c.members(survivor))[1] == survivor and r,
                                what="the survivor leads alone")
    assert members == [survivor]
    assert c.process_command(survivor, ("write", "after", 2)) == ("ok", survivor)
    assert c.consistent_query(survivor, "machines.kv:read", "before") == (1, survivor)
    info, _ = c.members_info(survivor)
    assert set(info) == {survivor} and (info[survivor]["membership"], info[survivor]["status"]) == ("voter", "leader")
    assert sorted(c.initial_members(survivor)[0]) == sorted(SIDS)   # how it started, still


def test_force_shrink_names_a_member_that_exists(cluster):
    with pytest.raises(errors.NoSuchServer):
        cluster.force_shrink_members_to_current_member(ra.ServerId("nope", "n1"), timeout=3)
