"""Mistakes a type checker must catch in a user's program (tests/test_typing.py
expects exactly the errors marked ``# error: <text>`` on their lines).  Never run."""
from __future__ import annotations

import ra_actors as ra
from ra_actors import aio, errors


def sync_mistakes(client: ra.Client) -> None:
    client.process_command(ra.ServerId("kv", "n1"))  # error: Missing positional argument "command"
    client.leader(42)  # error: Argument 1 to "leader" of "Client" has incompatible type "int"
    ra.conect(("127.0.0.1", 9000))  # error: Module has no attribute "conect"
    ra.start_node("n1", "/tmp/n1", "9000")  # error: Argument 3 to "start_node" has incompatible type "str"
    try:
        pass
    except errors.Timout:  # error: Module has no attribute "Timout"
        pass


async def async_mistakes(client: aio.AsyncClient) -> None:
    reply, leader = client.process_command(ra.ServerId("kv", "n1"), "x")  # error: "Coroutine[Any, Any, tuple[Any, ServerId | None]]" object is not iterable
    await client.members(ra.ServerId("kv", "n1"), timeout="soon")  # error: Argument "timeout" to "members" of "AsyncClient" has incompatible type "str"
