"""A server's observer on Thespian: its counters into the node's counters
file, its leaderboard records to its supervisor.

Rules:

* The counters go into the server's own slot (:mod:`ra_actors.metrics.block`),
  written in the process that runs the server (its own, or the host
  actor's).  A failure to write them is logged once and ends the
  publishing, never the server.
* Leaderboard records (:class:`~.protocol.LeaderboardRecord`) are numbered
  per incarnation, so the supervisor keeps the newest whatever order they
  arrive in; ``send`` says how they leave (a server process sends each at
  once, a host collects a turn's records into one message).
"""
from __future__ import annotations

from typing import Any, Callable

from ..core.types import ServerId
from .protocol import LeaderboardRecord
from .util import log

__all__ = ["ActorObserver"]


class ActorObserver:
    """See the module rules (a :class:`ra_actors.shell.port.ServerObserver`)."""

    def __init__(self, who: str, writer: Any, send: Callable[[LeaderboardRecord], None], server: str,
                 cluster: str, incarnation: int) -> None:
        self.who = who
        self.writer = writer
        self.send = send
        self.server = server
        self.cluster = cluster
        self.incarnation = incarnation
        self.seq = 0

    def publish(self, values: tuple) -> None:
        writer = self.writer
        if writer is None:
            return
        try:
            writer.publish(values)
        except Exception as exc:  # noqa: BLE001 - counters are never worth a server
            log(self.who, f"counters no longer published: {exc!r}")
            self.writer = None

    def record_leader(self, leader: ServerId | None, members: tuple, term: int) -> None:
        self.seq += 1
        self.send(LeaderboardRecord(self.server, self.cluster, self.incarnation, self.seq, leader,
                                    tuple(members), term))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
