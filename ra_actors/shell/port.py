"""The two seams of a :class:`~ra_actors.shell.server.ServerShell`.

Rules:

* :class:`ServerPort` is everything a server does *outside* its own files:
  reaching peers, clients, the node's WAL and snapshot writer, monitors,
  timers, the clock, randomness, and leaving (exit or crash).  Three
  implementations exist: the server actor (placement ``process``), the host
  actor (placement ``shared``, one port per hosted server), and the
  simulator (virtual network, disks and clock).  Nothing here imports
  Thespian.
* :class:`ServerStore` is the server's own durable state: recovery, its mem
  table, meta, snapshots on disk.  The actors use a
  :class:`ra_actors.actors.storage.ServerStore` over real files; the
  simulator keeps it in :class:`ra_actors.testing.disk.NodeDisk`.
* Asynchronous answers come back into the shell through its ``on_*``
  methods (``on_wal_result``, ``on_snapshot_written``, ``on_wakeup``,
  ``on_watch_down``, ``on_node_event``, ...), never as return values.
* Times are integer milliseconds on every port (the simulator's clock is
  virtual); ``wakeup`` payloads are opaque to the port and handed back as
  they were given.
"""
from __future__ import annotations

import random
from typing import Any, Protocol

from ..core.server import Recovered
from ..core.types import ServerId, SnapshotMeta


class ServerPort(Protocol):
    """What a server needs from its runtime (see the module rules)."""

    rng: random.Random

    # -- peers and clients --------------------------------------------------
    def send_rpcs(self, to: ServerId, rpcs: tuple) -> None:
        """Deliver ``rpcs`` (one round's RPCs for ``to``, in order) to the
        current incarnation of server ``to``; may drop them (Raft resends)."""

    def forward_commands(self, to: ServerId, commands: tuple) -> None:
        """Hand client commands this server cannot take to ``to`` (its leader)."""

    def reply(self, to: Any, reply: Any, leader: ServerId | None) -> None:
        """Answer a synchronous caller; ``to`` is the ``from_`` the port put in
        the request."""

    def applied(self, client: Any, leader: ServerId, results: tuple) -> None:
        """One ``applied`` event to a pipelining client: ``((correlation, reply), ...)``."""

    def rejected(self, client: Any, server: ServerId, leader: ServerId | None, correlation: Any,
                 reason: str) -> None:
        """A pipelined command was not taken: ``reason`` is ``"not_leader"``
        (``leader``: where to send it) or a session error kind."""

    def send_message(self, to: Any, msg: Any, options: tuple = (), leader: ServerId | None = None) -> None:
        """A machine's ``SendMsg`` to something that is not a Raft server: a
        client handle, an actor reference or address.  ``options`` (already
        checked, see ``SendMsg``): ``ra_event`` delivers
        ``ra_actors.events.RaEvent(leader, msg)``, ``cast`` wraps what goes
        to an actor in ``ra_actors.events.Cast``; ``local`` was the core's
        to decide."""

    # -- storage services ---------------------------------------------------------
    def wal_write(self, appends: tuple) -> None:
        """Hand one round's appends (from ``ServerStore.append``) to the node's
        WAL; durability comes back through ``ServerShell.on_wal_result``."""

    def write_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        """Write a snapshot durably; the answer is ``on_snapshot_written`` or
        ``on_snapshot_failed``."""

    # -- monitors, timers, clock -----------------------------------------------
    def watch(self, target: Any, ref: Any) -> None:
        """Report the exit of ``target`` (a server, a client, an actor) with
        ``on_watch_down(ref, reason)``; at once if it is not running."""

    def unwatch(self, target: Any, ref: Any) -> None: ...

    def wakeup(self, delay_ms: int, payload: Any) -> None:
        """Call ``on_wakeup(payload)`` after ``delay_ms`` (not cancellable)."""

    def now_ms(self) -> int: ...

    def log(self, text: str) -> None: ...

    # -- leaving --------------------------------------------------------------------
    def exit(self, why: str) -> None:
        """The server stops: ``"normal"`` (operator stop), ``"removed"`` (its
        removal from the cluster committed) or ``"deleted"`` (its cluster was
        deleted; its data is to be removed)."""

    def crash(self, reason: str, exc: BaseException | None) -> None:
        """An exception escaped the core or an effect: the server is gone and
        restarts from its store."""


class ServerStore(Protocol):
    """A server's own durable state (see the module rules)."""

    def recover(self) -> Recovered: ...

    def append(self, entries: tuple) -> Any:
        """Entries into the mem table; returns the WAL append to pass to
        ``ServerPort.wal_write``."""

    def written(self, msg: Any) -> list:
        """A WAL report (``Written``, ``ResendWrite``): the core messages to
        feed (none if it concerns entries this log no longer holds, or waits
        for a report that it overtook)."""

    def segments_written(self, refs: Any) -> None: ...

    def truncate_below(self, index: int, keep_above: bool) -> None:
        """Entries ``<= index`` are covered by a durable snapshot."""

    def persist_meta(self, term: int, voted_for: ServerId | None) -> Any:
        """Record term and vote: the ``MetaWritten`` at once if written
        synchronously, else None (it comes later through ``ServerShell.deliver``)."""

    def persist_last_applied(self, index: int) -> None: ...

    def snapshot_written(self, meta: SnapshotMeta) -> None:
        """The snapshot writer made ``meta`` durable."""

    def snapshot_bytes(self, meta: SnapshotMeta) -> bytes | None:
        """The encoded machine state of durable snapshot ``meta`` (None: not here)."""

    def write_checkpoint(self, meta: SnapshotMeta, data: bytes) -> None:
        """Durably keep checkpoint ``meta`` (encoded state ``data``) before returning."""

    def promote_checkpoint(self, meta: SnapshotMeta) -> bytes | None:
        """Make durable checkpoint ``meta`` the snapshot (older snapshots go,
        the log is untouched until ``truncate_below``); returns its encoded
        state if at hand."""

    def delete_checkpoints(self, metas: tuple) -> None:
        """Remove these checkpoints (missing ones are ignored)."""

    def machine_dir(self) -> Any:
        """Where a disk machine keeps its files (created if missing, removed
        with the server's data): a path on real files; a store that has none
        raises ``MachineError``."""

    def overview(self) -> dict: ...

    def close(self) -> None: ...


class ServerObserver(Protocol):
    """What a server publishes for readers that must not wait for its turn
    (the third seam; the actors provide one, the simulator none).

    * :meth:`publish`: the server's counters, one value per name of
      :data:`ra_actors.shell.server.SERVER_COUNTERS`, in that order; called
      at the end of every round (and before a round's first reply leaves,
      so a client that got an answer reads counters at least that fresh).
    * :meth:`record_leader`: the leader and members this server now knows
      (Ra's ``ra_leaderboard:record``): called when either changes."""

    def publish(self, values: tuple) -> None: ...

    def record_leader(self, leader: ServerId | None, members: tuple, term: int) -> None: ...


class NullObserver:
    """Publishes nothing (the simulator, and a server before it is wired)."""

    def publish(self, values: tuple) -> None:
        pass

    def record_leader(self, leader: ServerId | None, members: tuple, term: int) -> None:
        pass
