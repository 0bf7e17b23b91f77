"""The node's leaderboard (Ra's ``ra_leaderboard``): who leads each cluster
that has a member on this node, as those members see it.

Rules:

* Kept by the node's members, not asked of anyone: a server sends a
  :class:`~.protocol.LeaderboardRecord` whenever the leader or the members
  it knows change (:class:`~.observer.ActorObserver`); its entry goes when
  it stops, crashes or is deleted.  A record of a server that does not run
  (any more), or older than the one kept (``(incarnation, seq)``), is
  dropped: records may arrive late or out of order.
* ``lookup`` of a cluster answers the entry with the newest term among the
  node's members of that cluster (one that knows a leader first, at equal
  terms); of a server, that server's own entry; of several servers, each
  one's entry (``start_clusters`` polls a batch's elections so).  ``None``:
  no entry.
* It answers from memory, in the supervisor's turn: no server and no leader
  is asked (``client.leader``, ``client.members(..., local=True)``).
"""
from __future__ import annotations

from typing import Any, Callable

from ..errors import InvalidConfig
from .protocol import LeaderboardRecord, LeaderboardRequest, LeaderboardUpdate

__all__ = ["Leaderboard"]


class Leaderboard:
    """See the module rules.  ``current(name, incarnation)`` tells whether
    that incarnation of server ``name`` runs on the node."""

    def __init__(self, current: Callable[[str, int], bool]) -> None:
        self.current = current
        self.entries: dict[str, LeaderboardRecord] = {}     # server name -> its latest record
        self.by_cluster: dict[str, set[str]] = {}           # cluster -> its servers with an entry

    def on_update(self, msg: LeaderboardUpdate, sender: Any) -> None:
        for record in msg.records:
            if not isinstance(record, LeaderboardRecord) or not self.current(record.server, record.incarnation):
                continue
            old = self.entries.get(record.server)
            if old is None or (record.incarnation, record.seq) > (old.incarnation, old.seq):
                if old is not None and old.cluster != record.cluster:
                    self._unindex(old)
                self.entries[record.server] = record
                self.by_cluster.setdefault(record.cluster, set()).add(record.server)

    def clear(self, server: str) -> None:
        """Server ``server`` stopped, crashed or was deleted."""
        old = self.entries.pop(server, None)
        if old is not None:
            self._unindex(old)

    def _unindex(self, record: LeaderboardRecord) -> None:
        names = self.by_cluster.get(record.cluster)
        if names is not None:
            names.discard(record.server)
            if not names:
                del self.by_cluster[record.cluster]

    def lookup(self, request: LeaderboardRequest, sender: Any) -> tuple | None:
        if request.servers:
            if type(request.servers) is not tuple or not all(type(s) is str for s in request.servers):
                raise InvalidConfig("LeaderboardRequest.servers is a tuple of server names")
            return tuple(None if (r := self.entries.get(s)) is None else (r.leader, r.members)
                         for s in request.servers)
        if request.server is not None:
            record = self.entries.get(request.server)
        else:
            found = [self.entries[s] for s in self.by_cluster.get(request.cluster, ())]
            record = max(found, key=lambda r: (r.term, r.leader is not None), default=None)
        return None if record is None else (record.leader, record.members)

    def overview(self) -> dict[str, dict[str, Any]]:
        return {r.server: {"cluster": r.cluster, "leader": r.leader, "members": list(r.members), "term": r.term}
                for r in self.entries.values()}
