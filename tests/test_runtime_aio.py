"""The asyncio client (ra_actors.aio) on real nodes: the same calls, replies
and errors as the sync client, awaited; events as an async iterator; the
event loop never blocks on the network."""
from __future__ import annotations

import asyncio
import time

import pytest

import ra_actors as ra
from ra_actors import aio, errors
from ra_actors.events import Applied, Message


@pytest.fixture(params=("process", "shared"))
def nodes(request, tmp_path):
    with ra.local_nodes(["n1", "n2", "n3"], data_root=str(tmp_path / "nodes"), placement=request.param) as nodes:
        yield nodes


SIDS = [ra.ServerId("kv", n) for n in ("n1", "n2", "n3")]


@pytest.mark.asyncio
async def test_calls_replies_and_events(nodes):
    async with await aio.connect(nodes.addresses()["n1"]) as client:
        assert client.handle
        started, not_started = await client.start_cluster("kv", "machines.kv", SIDS)
        assert sorted(started) == sorted(SIDS) and not_started == []
        reply, leader = await client.process_command(SIDS[0], ("write", "a", 1))
        assert reply == "ok" and leader in SIDS
        ((index, _term), value), _l = await client.local_query(leader, "machines.kv:read", "a")
        assert value == 1 and index >= 2
        assert (await client.consistent_query(SIDS[1], "machines.kv:read", "a"))[0] == 1
        assert (await client.leader_query(SIDS[2], "machines.kv:read", "a"))[0][1] == 1
        members, known = await client.members(SIDS[1])
        assert sorted(members) == sorted(SIDS) and known == leader
        assert (await client.key_metrics(leader))["state"] == "leader"
        assert await client.leader("kv") == leader
        assert (await client.overview("n1"))["servers"]["kv"]["status"] == "running"

        client.pipeline_command(leader, ("write", "b", 2), correlation="c1")
        follower = next(s for s in SIDS if s != leader)
        client.pipeline_command(follower, ("write", "c", 3), correlation="c2")
        results: dict = {}
        async for event in client.events(timeout=10):
            assert isinstance(event, Applied) and event.leader == leader, event
            results.update(event.results)
            if len(results) == 2:
                break
        assert results == {"c1": "ok", "c2": "ok"}, "the follower's command was sent on to the leader"


@pytest.mark.asyncio
async def test_the_same_errors_as_the_sync_client(nodes):
    async with await aio.connect(nodes.addresses()["n1"]) as client:
        await client.start_cluster("kv", "machines.kv", SIDS)
        with pytest.raises(errors.InvalidCommand):
            await client.process_command(SIDS[0], ("write", "k", object()))
        with pytest.raises(errors.InvalidCommand):
            client.pipeline_command(SIDS[0], object())
        with pytest.raises(ValueError):
            client.pipeline_command(SIDS[0], 1, priority="urgent")
        with pytest.raises(errors.NoSuchServer):
            await client.process_command(ra.ServerId("nope", "n1"), ("write", "k", 1), timeout=3)
        with pytest.raises(errors.NoSuchCluster):
            await client.leader("nope", timeout=3)
        with pytest.raises(errors.AlreadyMember):
            await client.add_member(SIDS[0], SIDS[1])
        # the client still works after errors
        assert (await client.process_command(SIDS[0], ("write", "k", 1)))[0] == "ok"
    with pytest.raises(RuntimeError):
        await client.process_command(SIDS[0], ("write", "k", 2))


@pytest.mark.asyncio
async def test_concurrent_awaits_and_a_loop_that_never_blocks(nodes):
    async with await aio.connect(nodes.addresses()["n1"]) as client:
        await client.start_cluster("kv", "machines.kv", SIDS)
        replies = await asyncio.gather(*(client.process_command(SIDS[i % 3], ("write", f"k{i}", i))
                                         for i in range(30)))
        assert [r for r, _leader in replies] == ["ok"] * 30
        values = await asyncio.gather(*(client.consistent_query(SIDS[0], "machines.kv:read", f"k{i}")
                                        for i in range(30)))
        assert [v for v, _leader in values] == list(range(30))

        # a call that waits for a paused node keeps its I/O thread busy, not the loop
        _r, leader = replies[-1]
        follower = next(s for s in SIDS if s != leader)
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        task = asyncio.create_task(ticker())
        nodes.pause(follower.node)
        try:
            t0 = time.monotonic()
            with pytest.raises(errors.Timeout):
                await client.member_overview(follower, timeout=1.5)
            elapsed = time.monotonic() - t0
        finally:
            nodes.resume(follower.node)
            task.cancel()
        assert elapsed >= 1.4 and ticks >= 0.5 * elapsed / 0.05, (ticks, elapsed)


@pytest.mark.asyncio
async def test_membership_and_leadership_awaited(nodes):
    two, third = SIDS[:2], SIDS[2]
    async with await aio.connect(nodes.addresses()["n1"]) as client:
        started, _ = await client.start_cluster("kv", "machines.kv", two)
        assert sorted(started) == sorted(two)
        members, leader = await client.members(two[0])
        assert sorted(members) == sorted(two) and leader in two
        assert await client.start_server("kv", "machines.kv", third, members) == third
        (index, _term), leader = await client.add_member(leader, third, membership="promotable")
        assert index > 0
        members, leader = await client.members(leader)
        assert sorted(members) == sorted(SIDS)
        info, leader = await client.members_info(leader)
        assert set(info) == set(SIDS) and info[leader]["status"] == "leader"
        await client.process_command(leader, ("write", "x", 1))   # third catches up, is promoted

        async def leads(target) -> bool:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    return (await client.transfer_leadership(leader, target, timeout=3))[1] == target
                except (errors.NotUpToDate, errors.NonVoter, errors.Timeout):
                    await asyncio.sleep(0.2)
            return False

        assert await leads(third)
        # the node's leaderboard learns the new leader soon after (until
        # then it may still name the old one, or none)
        deadline = time.monotonic() + 10
        while await client.leader("kv") != third and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert await client.leader("kv") == third
        await client.remove_member(third, two[0])
        members, leader = await client.members(third)
        assert sorted(members) == sorted([two[1], third]) and leader == third
        ((_it, value), _l) = await client.local_query(third, "machines.kv:read", "x")
        assert value == 1


@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")   # the failure we cause
async def test_closing_ends_the_events_and_a_failed_io_thread_fails_calls(nodes):
    client = await aio.connect(nodes.addresses()["n1"])
    seen = []

    async def listen():
        async for event in client.events():          # no timeout: only close() ends it
            seen.append(event)

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0.2)
    await client.close()
    await asyncio.wait_for(listener, 5)
    assert seen == [] and listener.done()

    # an I/O thread that dies outside a call fails what is queued and what
    # comes after, instead of leaving awaits hanging
    client = await aio.connect(nodes.addresses()["n1"])
    sync = client._io.client

    def broken_pump(timeout=0.0):
        raise OSError("socket gone")

    sync._conn.pump = broken_pump
    client._io.thread.join(10)                       # its next wait on the network fails
    assert not client._io.thread.is_alive()
    with pytest.raises(RuntimeError, match="closed") as failed:
        await asyncio.wait_for(client.nodes(), 10)
    assert "I/O thread failed" in str(failed.value.__cause__)
    with pytest.raises(RuntimeError, match="closed"):
        client.pipeline_command(SIDS[0], ("write", "k", 1))
    await client.close()


@pytest.mark.asyncio
async def test_a_machines_message_arrives_as_an_event(nodes):
    locks = [ra.ServerId("locks", n) for n in ("n1", "n2", "n3")]
    async with await aio.connect(nodes.addresses()["n1"]) as first, \
            await aio.connect(nodes.addresses()["n2"]) as second:
        await first.start_cluster("locks", "machines.lock", locks)
        assert (await first.process_command(locks[0], ("acquire", "L", first.handle)))[0] == ("ok", "acquired")
        queued, _leader = await second.process_command(locks[1], ("acquire", "L", second.handle))
        assert queued == ("ok", "queued", 1)
        assert (await first.process_command(locks[2], ("release", "L", first.handle)))[0] == "ok"
        received = [event async for event in second.events(timeout=5)]
        assert received == [Message(("lock_granted", "L"))]


@pytest.mark.asyncio
async def test_a_session_goes_on_in_a_new_async_client(nodes):
    sids = [ra.ServerId("ctr", n) for n in ("n1", "n2", "n3")]
    async with await aio.connect(nodes.addresses()["n1"], session="aio-worker") as first:
        assert first.session == "aio-worker"
        await first.start_cluster("ctr", "machines.counter", sids)
        seq = await first.next_seq(sids[0])
        assert (await first.process_command(sids[0], ("add", 1)))[0] == 1
    async with await aio.connect(nodes.addresses()["n2"], session="aio-worker") as again:
        # sent again under its number: the first reply, not a second apply
        assert (await again.process_command(sids[0], ("add", 1), seq=seq))[0] == 1
        assert (await again.consistent_query(sids[0], "machines.counter:read"))[0] == 1
        assert await again.next_seq(sids[0]) > seq


@pytest.mark.asyncio
async def test_aux_commands_awaited(nodes):
    tally = [ra.ServerId("tally", n) for n in ("n1", "n2", "n3")]
    async with await aio.connect(nodes.addresses()["n1"]) as client:
        await client.start_cluster("tally", "machines.tally", tally)
        await client.process_command(tally[0], ("add", 2))
        value, leader = await client.consistent_aux(tally[1], ("value",))
        assert value == 2 and leader in tally
        role, name, _applied = await client.aux_command(leader, ("whoami",))
        assert (role, name) == ("leader", "tally")
        assert await client.cast_aux_command(leader, ("whoami",)) is None
        assert await client.aux_command(leader, ("asked",)) == 2      # two calls before this one
        await client.start_cluster("kv", "machines.kv", SIDS)
        with pytest.raises(errors.AuxNotImplemented):
            await client.aux_command(SIDS[0], ("stats",))
