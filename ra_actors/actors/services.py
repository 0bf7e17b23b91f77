"""The node's storage services: the WAL, the segment writer and the snapshot
writer (Ra's ``ra_log_wal``, ``ra_log_segment_writer``, snapshot writer).

Rules:

* One of each per node, children of the supervisor, except the WAL: one
  per WAL directory of the node (``wal_dirs``), kinds ``wal``, ``wal:1``,
  ... (:func:`.storage.wal_kind`), each opened, failed and reopened on its
  own.  In placement ``shared`` the host actor takes the place of kind
  ``wal``: it carries every WAL and every server of the node (:mod:`.host`);
  a WAL of it that fails is reported as the ``wal`` service's fault, and
  the host's reopen opens again whichever of its WALs is closed.
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
from .storage import wal_index, wal_kind
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
    wal: int | None = None    # whose health: WAL k's (a node with several WALs), else the node's


class NodeServices:
    """The three storage services of the node (see the module rules)."""

    def __init__(self, ctx: NodeContext, children: ChildActors, health: StorageHealth) -> None:
        self.ctx = ctx
        self.children = children
        self.health = health
        self.services: dict[str, Child] = {}
        self.fatal: str | None = None   # why a service could not open the data at the node's start
        # A node with several WALs: each WAL's own health (storage_supervision);
        # ``health`` is then the rest's (data directory, segment and snapshot writers).
        self.wal_health: dict[int, StorageHealth] = {}

    def get(self, kind: str) -> Child | None:
        return self.services.get(kind)

    def is_current(self, child: Child) -> bool:
        return self.services.get(child.kind) is child

    def host(self) -> Child | None:
        """Placement ``shared``: the host actor (in the WAL's place)."""
        return self.services.get(WAL)

    def kinds(self) -> list[str]:
        """The node's services: a WAL actor per WAL directory (placement
        ``process``; the host carries them all in ``shared``), the segment
        writer, the snapshot writer."""
        wals = 1 if self.ctx.shared else len(self.ctx.wal_dirs)
        return [wal_kind(k) for k in range(wals)] + [k for k in SERVICE_KINDS if k != WAL]

    def wal_kinds(self) -> list[str]:
        return [k for k in self.services if wal_index(k) is not None]

    def domain_kinds(self, wal: int | None) -> list[str]:
        """The services whose health is WAL ``wal``'s (None: the node's)."""
        if len(self.ctx.wal_dirs) < 2:
            return list(self.services)
        if wal is None:
            return [k for k in self.services if self.ctx.shared or wal_index(k) is None]
        return [WAL if self.ctx.shared else wal_kind(wal)]

    def domain_running(self, wal: int | None) -> bool:
        return all(self.services[k].status == RUNNING for k in self.domain_kinds(wal) if k in self.services)

    def all_running(self) -> bool:
        return all(c.status == RUNNING for c in self.services.values())

    def not_running(self) -> list[str]:
        return [kind for kind, c in self.services.items() if c.status != RUNNING]

    def start(self, kind: str) -> None:
        """Start (or start again) service ``kind`` as a new actor."""
        if kind == WAL and self.ctx.shared:
            actor_class = HostActor
        elif wal_index(kind) is not None:
            actor_class = storage.WalActor
        else:
            actor_class = _SERVICE_CLASSES[kind]
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
                                               self.addresses(), tuple(self.ctx.wal_dirs),
                                               wal_index(child.kind) or 0))

    def addresses(self, wal_restarted: tuple = ()) -> ServiceAddresses:
        """The addresses of the services that run now (None for the others)
        and the storage's state.  Placement ``shared``: the host for every
        WAL (the host tells its servers which of its WALs are open)."""
        def address(kind: str):
            c = self.services.get(kind)
            return c.addr if c is not None and c.status == RUNNING else None
        n = len(self.ctx.wal_dirs)
        wals = (address(WAL),) * n if self.ctx.shared else tuple(address(wal_kind(k)) for k in range(n))
        errors = tuple((h.reason or "storage error") if (h := self.wal_health.get(k)) is not None
                       and h.state == "error" else None for k in range(n)) if self.wal_health else ()
        return ServiceAddresses(wals, address("segment_writer"), address("snapshot_writer"),
                                tuple(wal_restarted), self.health.state, self.health.reason, errors)

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
        k = wal_index(msg.kind)
        addresses = self.addresses(wal_restarted=(k,) if restarted and k is not None else ())
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
