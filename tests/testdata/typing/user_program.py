"""A user's program written against ra_actors' public API; tests/test_typing.py
type-checks it with ``mypy --strict`` and expects no error.  It is never run."""
from __future__ import annotations

import asyncio

import ra_actors as ra
from ra_actors import aio, errors
from ra_actors.events import Applied, Message, NotLeader, Rejected


def sync_main(address: tuple[str, int]) -> int:
    kv = [ra.ServerId("kv", n) for n in ("n1", "n2", "n3")]
    with ra.connect(address, timeout=5.0) as client:
        started, not_started = client.start_cluster("kv", "machines.kv", kv, config={"release_cursor_every": 10})
        reply, leader = client.process_command(kv[0], ("write", "a", 1), timeout=2.0)
        if leader is not None:
            print(leader.name, leader.node)
        ((index, term), value), leader = client.local_query(kv[1], "machines.kv:read", "a")
        value, leader = client.consistent_query(kv[2], "machines.kv:read", "a")
        client.pipeline_command(kv[0], ("write", "b", 2), correlation="c1", priority="low")
        client.flush()
        for event in client.events(timeout=1.0):
            match event:
                case Applied(leader, results):
                    print(leader, results)
                case Rejected(server, NotLeader(leader, corr)):
                    print(server, leader, corr)
                case Message(msg):
                    print(msg)
        members, leader = client.members(kv[0], local=True)
        chief: ra.ServerId | None = client.leader("kv")
        metrics: dict[str, object] = client.key_metrics(kv[0])
        try:
            client.process_command(kv[0], ("write", "k", 1), timeout=1.0)
        except errors.Timeout as exc:
            print("unknown outcome:", exc)
        except errors.NoSuchServer:
            pass
        return len(members) + len(started) + len(not_started) + len(metrics) + int(chief is None)


def local_main() -> None:
    with ra.local_nodes(["n1", "n2", "n3"], placement="shared") as nodes:
        node: ra.Node = nodes["n1"]
        print(node.address, node.metrics_port, sync_main(nodes.addresses()["n1"]))
        client: ra.Client = nodes.client()
        client.close()


async def async_main(address: tuple[str, int]) -> None:
    async with await aio.connect(address) as client:
        sid = ra.ServerId("kv", "n1")
        reply, leader = await client.process_command(sid, ("write", "k", 1))
        value, leader = await client.consistent_query(sid, "machines.kv:read", "k")
        members, leader = await client.members(sid)
        chief = await client.leader("kv")
        print(reply, value, members, chief)
        client.pipeline_command(sid, ("write", "k", 2), correlation=1)
        async for event in client.events(timeout=5):
            if isinstance(event, Applied):
                print(event.results)
                break


if __name__ == "__main__":
    local_main()
    asyncio.run(async_main(("127.0.0.1", 1)))
