"""The node's storage services: the WAL, the segment writer and the snapshot
writer (Ra's ``ra_log_wal``, ``ra_log_segment_writer``, snapshot writer).

Rules:

* One of each per node, children of the supervisor.  In placement
  ``shared`` the WAL's place is taken by the host actor, which carries the
  WAL and every server of the node (:mod:`.host`).
* Each gets a ``ServiceInit`` when it starts.  While the node starts, a
  service that cannot open the node's data (``ServiceFailed``: a corrupt
  log, a locked data dir, a disk that refuses) makes the node fail to start
  with its error; it is not retried (it would fail the same way, forever).
* Once the node runs, a failing service is a fault of the node's storage
  (:mod:`.storage_health`, driven by :mod:`.storage_supervision`): a service
  that gave its files up (``ServiceFault``) or could not reopen them
  (``ServiceFailed``) stays alive as ``failed`` and is *reopened* (a new
  ``ServiceInit`` to the same actor) after the back-off; one that exited is
  started again after it.  Nothing is reopened while the storage is in
  ``error``.
* Every restart or reopen is recorded in the service's history, which is
  how a ``ServiceReady`` is known to come after one (the servers then write
  again what the WAL had not confirmed).
* Whenever a service becomes ready, every running service learns the
  current addresses (``ServiceAddresses``, with the storage's state); what
  the servers learn is :mod:`.supervision`'s business.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from . import storage
from .children import EXITED, RUNNING, STARTING, Child, ChildActors
from .host import HostActor
from .node_context import NodeContext
from .protocol import ServiceAddresses, ServiceFailed, ServiceInit, ServiceReady
from .storage_health import StorageHealth
from .util import log

SERVICE_KINDS = ("wal", "segment_writer", "snapshot_writer")
WAL = "wal"
FAILED = "failed"   # a service that gave its files up and waits to be reopened

_SERVICE_CLASSES = {"wal": storage.WalActor, "segment_writer": storage.SegmentWriterActor,
                    "snapshot_writer": storage.SnapshotWriterActor}


@dataclass(frozen=True, slots=True)
class ServiceReopenDue:
    """Wakeup payload: reopen (or start again) service ``kind`` if
    ``child_id`` is still its current, failed incarnation."""

    kind: str
    child_id: int


class NodeServices:
    """The three storage services of the node (see the module rules)."""

    def __init__(self, ctx: NodeContext, children: ChildActors, health: StorageHealth) -> None:
        self.ctx = ctx
        self.children = children
        self.health = health
        self.services: dict[str, Child] = {}
        self.fatal: str | None = None   # why a service could not open the data at the node's start

    def get(self, kind: str) -> Child | None:
        return self.services.get(kind)

    def is_current(self, child: Child) -> bool:
        return self.services.get(child.kind) is child

    def host(self) -> Child | None:
        """Placement ``shared``: the host actor (in the WAL's place)."""
        return self.services.get(WAL)

    def all_running(self) -> bool:
        return all(c.status == RUNNING for c in self.services.values())

    def not_running(self) -> list[str]:
        return [kind for kind, c in self.services.items() if c.status != RUNNING]

    def start(self, kind: str) -> None:
        """Start (or start again) service ``kind`` as a new actor."""
        actor_class = HostActor if kind == WAL and self.ctx.shared else _SERVICE_CLASSES[kind]
        old = self.services.get(kind)
        child = self.children.spawn(kind, kind, actor_class)
        if old is not None:
            child.inherit(old)
            child.restarts.append(time.time())
        self.services[kind] = child
        self._init(child)

    def reopen(self, kind: str) -> None:
        """Service ``kind`` opens the node's data again: the same actor if it
        is alive (a failed one waits for this), a new one if it exited."""
        child = self.services.get(kind)
        if child is None or child.status == EXITED:
            self.start(kind)
            return
        log(self.ctx.who, f"reopening {kind}")
        child.status = STARTING
        child.restarts.append(time.time())
        self._init(child)

    def _init(self, child: Child) -> None:
        self.ctx.send(child.local, ServiceInit(self.ctx.node, self.ctx.data_dir, dict(self.ctx.log_options),
                                               self.addresses()))

    def addresses(self, wal_restarted: bool = False) -> ServiceAddresses:
        """The addresses of the services that run now (None for the others)
        and the storage's state."""
        def address(kind: str):
            c = self.services.get(kind)
            return c.addr if c is not None and c.status == RUNNING else None
        return ServiceAddresses(address("wal"), address("segment_writer"), address("snapshot_writer"),
                                wal_restarted, self.health.state, self.health.reason)

    def mark_ready(self, msg: ServiceReady, sender) -> ServiceAddresses | None:
        """A service runs: tell every running service the addresses.  Returns
        them when it was a restart or reopen (the servers need them too),
        else None."""
        child = self.services.get(msg.kind)
        if child is None or not child.matches(sender):
            return None
        child.addr = sender
        restarted = bool(child.restarts)
        child.status = RUNNING
        child.exit_reason = None
        log(self.ctx.who, f"{msg.kind} running")
        addresses = self.addresses(wal_restarted=restarted and msg.kind == WAL)
        for c in self.services.values():
            if c.status == RUNNING:
                self.ctx.send(c.addr, addresses)
        return addresses if restarted else None

    def mark_failed(self, msg: ServiceFailed) -> None:
        """The node's start fails with this service's error."""
        log(self.ctx.who, f"{msg.kind} failed: {msg.error}")
        self.fatal = msg.error
        child = self.services.get(msg.kind)
        if child is not None:
            child.status = FAILED
            child.exit_reason = msg.error

    def failed(self, kind: str, sender, error: str) -> Child | None:
        """Service ``kind`` (if ``sender`` is its current actor) gave its files
        up or could not reopen them: it is ``failed`` now."""
        child = self.services.get(kind)
        if child is None or not child.matches(sender) or child.status == EXITED:
            return None
        log(self.ctx.who, f"{kind} failed: {error}")
        child.status = FAILED
        child.exit_reason = error
        return child

    def overview(self) -> dict[str, str]:
        return {kind: c.status for kind, c in self.services.items()}

    def reasons(self) -> dict[str, str]:
        """Why each service that does not run stopped (what it said last)."""
        return {kind: str(c.exit_reason) for kind, c in self.services.items()
                if c.status != RUNNING and c.exit_reason}
