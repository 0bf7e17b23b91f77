"""The nodes' leaderboards, as a client reads them (Ra's ``ra_leaderboard``).

Rules:

* A node's leaderboard knows the clusters that have a member on it, as
  those members last saw them (:mod:`ra_actors.actors.leaderboard`); asking
  it costs one supervisor call and never reaches a server or a leader.
* A cluster is looked up on the *nearest* node first: the one the client
  registered with (its home), then the other nodes it believes up, in name
  order, until one knows the cluster.  A node that does not answer in time
  is skipped.  No node knowing it is ``None`` here (the caller decides what
  that means).
* A server is looked up on its own node only: the answer is that member's
  own view.
"""
from __future__ import annotations

import time
from typing import Any

from .. import errors
from ..actors.protocol import LeaderboardRequest
from ..core.types import ServerId
from .addresses import AddressBook
from .discovery import Discovery
from .ids import server_id, server_id_or_none

__all__ = ["Leaderboards"]

PER_NODE = 1.0     # seconds one node's leaderboard has to answer before the next is asked


def _entry(value: Any) -> tuple[ServerId | None, list[ServerId]] | None:
    if value is None:
        return None
    leader, members = value
    return server_id_or_none(leader), [server_id(m) for m in members]


class Leaderboards:
    """Leaderboard lookups (see the module rules)."""

    def __init__(self, discovery: Discovery, book: AddressBook) -> None:
        self.discovery = discovery
        self.book = book

    def cluster(self, name: str, timeout: float) -> tuple[ServerId | None, list[ServerId]] | None:
        """``(leader, members)`` of cluster ``name`` from the nearest node that knows it."""
        deadline = time.monotonic() + timeout
        home = self.discovery.home
        nodes = ([home] if home else []) + sorted(n for n, e in self.book.nodes.items() if e.up and n != home)
        for node in nodes:
            left = deadline - time.monotonic()
            if left <= 0:
                raise errors.Timeout(f"no node answered about cluster {name!r} within {timeout}s")
            try:
                found = self.discovery.sup_call(node, LeaderboardRequest(cluster=name), min(left, PER_NODE))
            except (errors.Timeout, errors.NodeDown):
                continue
            if found is not None:
                entry = _entry(found)
                if entry is not None:
                    self.book.remember_cluster(entry[1])
                return entry
        return None

    def server(self, sid: ServerId, timeout: float) -> tuple[ServerId | None, list[ServerId]] | None:
        """``(leader, members)`` as server ``sid`` recorded them on its node."""
        return _entry(self.discovery.sup_call(sid.node, LeaderboardRequest(server=sid.name), timeout))
