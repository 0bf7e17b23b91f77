"""What a client knows about where things are: its address book.

Rules:

* Three tables, all hints that any answer may correct: the nodes
  (supervisor address, admin ``(host, port)``, up or not), the servers
  (address and incarnation, as a node's directory gave them) and the
  clusters (each member -> the members it was last seen with).
* Only learning writes it: :mod:`.discovery` the nodes, :mod:`.resolution`
  the servers and clusters.  Anything that shows an entry wrong (a refused
  send, a ``Misdelivered``, a restarted node) drops it, and the next call
  asks again.  A server address is never guessed.
* No I/O, no clock.
"""
from __future__ import annotations

from typing import Any, Iterable

from ..core.types import ServerId
from .ids import server_id

__all__ = ["AddressBook", "NodeEntry"]


class NodeEntry:
    """One node as the client knows it."""

    __slots__ = ("supervisor", "admin", "up")

    def __init__(self, supervisor: Any, admin: tuple, up: bool) -> None:
        self.supervisor = supervisor      # the node supervisor's address (opaque)
        self.admin = admin                # the node admin's (host, port): it never changes
        self.up = up                      # False: unreachable when last tried


class AddressBook:
    """The client's tables (see the module rules)."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeEntry] = {}
        self.servers: dict[ServerId, tuple] = {}          # -> (address, incarnation)
        self.clusters: dict[ServerId, tuple] = {}         # -> (ServerId, ...) of its cluster

    # -- nodes -----------------------------------------------------------------
    def set_node(self, name: str, supervisor: Any, admin: Iterable, up: bool) -> None:
        self.nodes[name] = NodeEntry(supervisor, tuple(admin), bool(up))

    def mark_down(self, node: str) -> None:
        entry = self.nodes.get(node)
        if entry is not None:
            entry.up = False

    def admins(self) -> set[tuple]:
        return {tuple(e.admin) for e in self.nodes.values() if e.admin}

    # -- servers ---------------------------------------------------------------
    def server(self, sid: ServerId) -> Any:
        """The cached address of ``sid``, or None."""
        cached = self.servers.get(sid)
        return cached[0] if cached is not None else None

    def set_server(self, sid: ServerId, address: Any, incarnation: int) -> None:
        self.servers[sid] = (address, incarnation)

    def forget_server(self, sid: ServerId) -> None:
        self.servers.pop(sid, None)

    def forget_servers_on(self, node: str) -> None:
        """A node's supervisor changed (the node restarted): its servers moved."""
        self.servers = {sid: v for sid, v in self.servers.items() if sid.node != node}

    # -- clusters --------------------------------------------------------------
    def remember_cluster(self, members: Iterable[Any]) -> None:
        """``members`` form one cluster (each may be any form of server id)."""
        members = tuple(server_id(m) for m in members)
        for m in members:
            self.clusters[m] = members

    def cluster_of(self, sid: ServerId) -> tuple | None:
        return self.clusters.get(sid)
