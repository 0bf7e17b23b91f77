"""The internal-state handle a machine's ``handle_aux`` is given (Ra's
``ra_aux``).

``handle_aux(role, kind, command, aux_state, internal)`` runs on one member,
outside Raft: its aux state is that member's alone (made by ``init_aux(name)``
when the server starts, never replicated or snapshotted), and ``internal``
lets it read the member's replicated state and log.

Rules:

* Read-only: the machine state is given through :func:`readonly.view`, as
  to a query (a change would fork this replica from the others); every
  other accessor returns a fresh value.
* A handle reads the server it was made for, as it is when read: it is
  meant for the call it is given to (keeping it for later reads the state
  of that later moment).
* No I/O: everything is the core's own memory (the log holds every entry
  above the snapshot).  Ra's ``wal_fill_ratio`` and ``snapshot_size`` are
  questions for the node's storage, not the server: ``member_overview``
  and the node's counters answer them.
"""
from __future__ import annotations

from typing import Any

from . import readonly
from .types import ServerId, Usr

__all__ = ["AuxView"]


class AuxView:
    """What ``handle_aux`` may read of its server (Ra's ``ra_aux``)."""

    __slots__ = ("_srv",)

    def __init__(self, server: Any) -> None:    # a RaftServer (not imported: no cycle)
        self._srv = server

    def server_id(self) -> ServerId:
        """This member's id."""
        return self._srv.id

    def machine_state(self) -> Any:
        """The machine state as this member has applied it (a read-only view)."""
        return readonly.view(self._srv.machine_state)

    def effective_machine_version(self) -> int:
        """The machine version the cluster runs (Ra's effective version)."""
        return self._srv.machine_version

    def leader_id(self) -> ServerId | None:
        """The leader as this member knows it (None: unknown)."""
        return self._srv.leader_id

    def last_applied(self) -> int:
        return self._srv.last_applied

    def current_term(self) -> int:
        return self._srv.current_term

    def members(self) -> list[ServerId]:
        """The members of the configuration in force here, sorted."""
        return sorted(self._srv.cluster, key=lambda s: (s.node, s.name))

    def members_info(self) -> dict[ServerId, dict]:
        """Every member with its ``membership``; on the leader also its
        replication state (as ``client.members_info``)."""
        return self._srv.members_info()

    def overview(self) -> dict:
        """The member's overview (as ``member_overview`` without the shell's part)."""
        return self._srv.overview()

    def log_last_index_term(self) -> tuple[int, int]:
        log = self._srv.log
        return log.last_index, log.last_term

    def log_stats(self) -> dict:
        """Where the log stands: ``first_index`` (the first entry held),
        ``last_index``, ``last_written_index``, ``snapshot_index``,
        ``checkpoint_index`` (0: none)."""
        srv = self._srv
        log = srv.log
        return {"first_index": log.snapshot_index + 1, "last_index": log.last_index,
                "last_written_index": log.last_written, "snapshot_index": log.snapshot_index,
                "checkpoint_index": srv.checkpoints[-1].index if srv.checkpoints else 0}

    def log_fetch(self, index: int) -> tuple[int, dict, Any] | None:
        """Ra's ``log_fetch``: ``(term, meta, command)`` of the user command
        at ``index``, where ``meta`` is ``{"index", "term", "system_time"}``;
        None when the entry holds no user command (a noop, a membership
        change) or is not in the log (below the snapshot, above the end)."""
        if type(index) is not int:
            raise TypeError(f"log_fetch takes an index (int), not {index!r:.60}")
        log = self._srv.log
        if not log.snapshot_index < index <= log.last_index:
            return None
        entry = log.get(index)
        if entry is None or not isinstance(entry.command, Usr):
            return None
        return entry.term, {"index": entry.index, "term": entry.term, "system_time": entry.command.ts}, \
            entry.command.data
