"""ra_actors: Ra (RabbitMQ's Raft library) on the Thespian actor framework.

Quick start::

    import ra_actors as ra

    with ra.local_nodes(["n1", "n2", "n3"]) as nodes:
        client = nodes.client()
        sids = [ra.ServerId("kv", n) for n in ("n1", "n2", "n3")]
        started, not_started = client.start_cluster("kv", "machines.kv", sids)
        reply, leader = client.process_command(sids[0], ("write", "k", 1))
        value, leader = client.consistent_query(leader, "machines.kv:read", "k")
"""
from typing import Any

from .core.types import ActorRef, ServerId  # noqa: F401

__version__ = "0.1.0"

_LAZY = {
    "connect": ("api", "connect"),
    "Client": ("api", "Client"),
    "start_node": ("nodes", "start_node"),
    "stop_node": ("nodes", "stop_node"),
    "local_nodes": ("nodes", "local_nodes"),
    "node_status": ("nodes", "node_status"),
    "Node": ("nodes", "Node"),
    "LocalNodes": ("nodes", "LocalNodes"),
    "Applied": ("events", "Applied"),
    "Rejected": ("events", "Rejected"),
    "Message": ("events", "Message"),
    "ActorInit": ("actors.protocol", "ActorInit"),
}

__all__ = ["ServerId", "ActorRef", "__version__", "errors", "events", "aio", *_LAZY]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing ra_actors (e.g. from the core or the simulator)
    # does not import Thespian.
    if name in _LAZY:
        import importlib
        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{mod}", __name__), attr)
        globals()[name] = value
        return value
    if name in ("errors", "events", "codec", "aio"):
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'ra_actors' has no attribute {name!r}")
