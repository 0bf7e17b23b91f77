"""The Raft server (Ra's ``ra_server``): messages in, ``(role, effects)`` out.

INTERFACE (implementation in progress)::

    srv = RaftServer(config: ServerConfig, machine: Machine, recovered: Recovered | None = None)
    role, effects = srv.init()          # call once after construction
    role, effects = srv.handle(msg)     # for every message, in arrival order

Attributes for shells, metrics and invariant checks: ``id``, ``role``,
``current_term``, ``voted_for``, ``leader_id``, ``commit_index``,
``last_applied``, ``machine_state``, ``cluster`` (``{ServerId: membership}``),
``log`` (a :class:`ra_actors.core.log.RaftLog`), ``snapshot_meta``;
methods ``key_metrics()`` and ``overview()``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .types import Entry, ServerId, SnapshotMeta


@dataclass(frozen=True, slots=True)
class Recovered:
    """What a shell read back from durable storage for a restarting server."""

    current_term: int = 0
    voted_for: ServerId | None = None
    last_applied: int = 0
    snapshot: tuple[SnapshotMeta, Any] | None = None  # (meta, machine state)
    entries: tuple = ()  # durable Entry objects after the snapshot, ascending, consecutive
