"""The node's storage services: the WAL, the segment writer and the snapshot
writer (Ra's ``ra_log_wal``, ``ra_log_segment_writer``, snapshot writer).

Rules:

* One of each per node, children of the supervisor.  In placement
  ``shared`` the WAL's place is taken by the host actor, which carries the
  WAL and every server of the node (:mod:`.host`).
* A service that exits is restarted at once, without an intensity limit:
  the node cannot run without it.  Each restart is recorded in its history,
  which is how a ``ServiceReady`` is known to come from a restart.
* A service that cannot open the node's data (``ServiceFailed``: a corrupt
  log, a locked data dir) makes the node fail to start with its error; it
  is not restarted (it would fail the same way, forever).
* Whenever a service becomes ready, every running service learns the
  current addresses (``ServiceAddresses``); what the servers learn is
  :mod:`.supervision`'s business.
"""
from __future__ import annotations

import time

from . import storage
from .children import RUNNING, Child, ChildActors
from .host import HostActor
from .node_context import NodeContext
from .protocol import ServiceAddresses, ServiceFailed, ServiceInit, ServiceReady
from .util import log

SERVICE_KINDS = ("wal", "segment_writer", "snapshot_writer")
WAL = "wal"

_SERVICE_CLASSES = {"wal": storage.WalActor, "segment_writer": storage.SegmentWriterActor,
                    "snapshot_writer": storage.SnapshotWriterActor}


class NodeServices:
    """The three storage services of the node (see the module rules)."""

    def __init__(self, ctx: NodeContext, children: ChildActors) -> None:
        self.ctx = ctx
        self.children = children
        self.services: dict[str, Child] = {}
        self.fatal: str | None = None   # why a service could not open the data

    def get(self, kind: str) -> Child | None:
        return self.services.get(kind)

    def is_current(self, child: Child) -> bool:
        return self.services.get(child.kind) is child

    def host(self) -> Child | None:
        """Placement ``shared``: the host actor (in the WAL's place)."""
        return self.services.get(WAL)

    def all_running(self) -> bool:
        return all(c.status == RUNNING for c in self.services.values())

    def start(self, kind: str) -> None:
        """Start (or restart) service ``kind``."""
        actor_class = HostActor if kind == WAL and self.ctx.shared else _SERVICE_CLASSES[kind]
        old = self.services.get(kind)
        child = self.children.spawn(kind, kind, actor_class)
        if old is not None:
            child.inherit(old)
            child.restarts.append(time.time())
        self.services[kind] = child
        self.ctx.send(child.local, ServiceInit(self.ctx.node, self.ctx.data_dir, dict(self.ctx.log_options),
                                               self.addresses()))

    def addresses(self, wal_restarted: bool = False) -> ServiceAddresses:
        """The addresses of the services that run now (None for the others)."""
        def address(kind: str):
            c = self.services.get(kind)
            return c.addr if c is not None and c.status == RUNNING else None
        return ServiceAddresses(address("wal"), address("segment_writer"), address("snapshot_writer"),
                                wal_restarted)

    def mark_ready(self, msg: ServiceReady, sender) -> ServiceAddresses | None:
        """A service runs: tell every running service the addresses.  Returns
        them when it was a restart (the servers need them too), else None."""
        child = self.services.get(msg.kind)
        if child is None or not child.matches(sender):
            return None
        child.addr = sender
        restarted = bool(child.restarts)
        child.status = RUNNING
        log(self.ctx.who, f"{msg.kind} running")
        addresses = self.addresses(wal_restarted=restarted and msg.kind == WAL)
        for c in self.services.values():
            if c.status == RUNNING:
                self.ctx.send(c.addr, addresses)
        return addresses if restarted else None

    def mark_failed(self, msg: ServiceFailed) -> None:
        log(self.ctx.who, f"{msg.kind} failed: {msg.error}")
        self.fatal = msg.error

    def overview(self) -> dict[str, str]:
        return {kind: c.status for kind, c in self.services.items()}
