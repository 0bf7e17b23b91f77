"""What a node's supervisor does when its storage fails: a sick disk stops
the node cleanly, and the node comes back when the disk does.

Rules:

* Every fault goes to the node's :class:`~.storage_health.StorageHealth`:
  a storage service that gave its files up (``ServiceFault``) or could not
  reopen them (``ServiceFailed`` once the node runs), a storage service that
  exited, a server that crashed on a ``StorageError``
  (:mod:`.supervision` asks :meth:`StorageSupervision.server_fault`).  The
  failed service is reopened after the delay the health gives
  (:class:`~.services.ServiceReopenDue`); the server is restarted after it.
* Every change of the storage's state reaches the servers
  (``ServiceAddresses`` with the state and the reason: in placement
  ``shared`` through the host actor) and, once the node is up, best effort,
  ``node.status`` (the disk may refuse that write too; ``ra-actors node
  status`` also asks the running node).  Until then the file is node-main's:
  the reason of a failed start is never replaced.
* ``error``: the node's servers halt (:meth:`.supervision.ServerSupervision.halt_servers`:
  watchers see them ``Down``, clients get ``StorageError`` naming the
  reason, nothing spins) and, unless the log is corrupt, the disk is probed
  every ``storage_probe_interval`` seconds.
* Back: a probe that passes reopens every service that does not run; once
  they all run the storage is ``ok``, halted servers restart from what is
  on disk and servers that waited for the storage start
  (:meth:`.supervision.ServerSupervision.storage_back`).
* A node with several WALs: each WAL has a health of its own (a *domain*:
  its faults, reopens, ``error``, probes of its directory alone, coming
  back), and the node's health covers the rest (the data directory: the
  segment and snapshot writers, servers that crashed on the disk).  A WAL
  in ``error`` halts only the servers writing to it
  (``ServiceAddresses.wal_errors``); the node's ``error`` halts them all.
  The overview's ``state`` and ``node.status`` show the worst of them,
  ``wals`` each WAL's.  A node with one WAL has one health, as before.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from .children import EXITED, RUNNING
from .node_context import NodeContext
from .protocol import ServiceFailed, ServiceFault
from .services import FAILED, WAL, NodeServices, ServiceReopenDue
from .storage import wal_index
from .storage_health import ERROR, FAILING, OK, StorageHealth
from .util import log

# A failed probe is logged the first time and then every this many probes.
PROBE_LOG_EVERY = 12


@dataclass(frozen=True, slots=True)
class StorageProbeDue:
    """Wakeup payload: probe the disk (the storage is in ``error``): the
    node's (``wal`` None), or WAL ``wal``'s directory."""

    wal: int | None = None


class StorageSupervision:
    """The node's answer to storage faults (see the module rules)."""

    def __init__(self, ctx: NodeContext, services: NodeServices, supervision: Any,
                 health: StorageHealth) -> None:
        self.ctx = ctx
        self.services = services
        self.supervision = supervision
        self.health = health
        self.probe_armed: set = set()     # domains (None: the node's; k: WAL k's) with a probe due
        # node.status is node-main's until the node is up (a start that
        # failed keeps node-main's reason); the supervisor sets this
        self.node_up = False

    # ============================================================= domains
    def _domain(self, kind: str, wal: int | None = None) -> int | None:
        """Whose health a fault of service ``kind`` counts towards: WAL k's
        when the node has several WALs and it is WAL k's, else the node's."""
        if len(self.ctx.wal_dirs) < 2:
            return None
        if self.ctx.shared:
            return wal if kind == WAL else None
        return wal_index(kind)

    def health_of(self, domain: int | None) -> StorageHealth:
        if domain is None:
            return self.health
        health = self.services.wal_health.get(domain)
        if health is None:
            health = self.services.wal_health[domain] = StorageHealth(self.ctx.storage_policy)
        return health

    def _domains(self) -> list:
        return [None, *sorted(self.services.wal_health)]

    # ============================================================== faults
    def on_service_fault(self, msg: ServiceFault, sender: Any) -> None:
        child = self.services.failed(msg.kind, sender, msg.error)
        if child is not None:
            self._fault(child.kind, id(child), msg.error, msg.retry, self._domain(msg.kind, msg.wal))

    def on_service_failed(self, msg: ServiceFailed, sender: Any) -> None:
        """A reopen failed (the node's start is not waiting for it)."""
        child = self.services.failed(msg.kind, sender, msg.error)
        if child is not None:
            self._fault(child.kind, id(child), msg.error, msg.retry, self._domain(msg.kind, msg.wal))

    def service_exited(self, child: Any) -> None:
        """A storage service's process is gone (``ChildActorExited``)."""
        reason = f"the {child.kind} process exited" + (f" ({child.exit_reason})" if child.exit_reason else "")
        if child.kind == WAL and self.ctx.shared:
            # the host carried every server: they are gone with it
            self.supervision.host_died()
        self._fault(child.kind, id(child), reason, True, self._domain(child.kind))

    def server_fault(self, name: str, reason: str) -> float | None:
        """A server crashed on a StorageError: the delay before restarting
        it, or None (the storage is in ``error``: it waits)."""
        delay = self.health.fault(f"server {name}", reason, True, time.time())
        self._changed(None)
        return delay

    def _fault(self, kind: str, child_id: int, error: str, retry: bool, domain: int | None) -> None:
        health = self.health_of(domain)
        delay = health.fault(kind, error, retry, time.time())
        self._changed(domain)
        if delay is not None:
            log(self.ctx.who, f"storage {health.state}" + ("" if domain is None else f" (WAL {domain})")
                              + f": {kind} reopens in {delay:.2f}s")
            self.ctx.wakeup_after(delay, ServiceReopenDue(kind, child_id, domain))

    def reopen_due(self, due: ServiceReopenDue) -> None:
        child = self.services.get(due.kind)
        if child is None or id(child) != due.child_id or child.status not in (FAILED, EXITED):
            return
        if self.health.state == ERROR or self.health_of(due.wal).state == ERROR:
            return   # a probe that passes reopens it
        self.services.reopen(due.kind)

    # ============================================================== states
    def _changed(self, domain: int | None) -> None:
        """Tell the servers the storage's state (and halt them on error)."""
        if self.health_of(domain).state == ERROR:
            self._enter_error(domain)
        self.supervision.to_servers(self.services.addresses())
        self._write_status()

    def _enter_error(self, domain: int | None) -> None:
        health = self.health_of(domain)
        if self.supervision.halted.get(domain) == health.reason:
            return
        whose = "the node's servers halt" if domain is None else f"the servers of WAL {domain} halt"
        log(self.ctx.who, f"storage error, {whose}: {health.reason}"
                          + ("" if health.curable else " (not probed: the operator must repair it)"))
        self.supervision.halt_servers(health.reason, wal=domain)
        if health.curable and domain not in self.probe_armed:
            self.probe_armed.add(domain)
            self.ctx.wakeup_after(health.policy.probe_interval, StorageProbeDue(domain))

    def probe_due(self, due: StorageProbeDue) -> None:
        domain = due.wal
        self.probe_armed.discard(domain)
        health = self.health_of(domain)
        if health.state != ERROR or not health.curable:
            return
        from ..log.common import probe_storage
        several = len(self.ctx.wal_dirs) > 1
        dirs = (list(self.ctx.wal_dirs) if not several else [] if domain is None
                else [self.ctx.wal_dirs[domain]])
        try:
            probe_storage(self.ctx.data_dir, health.policy.probe_bytes, dirs, servers=domain is None)
        except Exception as exc:  # noqa: BLE001 - StorageError (or worse): the disk still refuses
            self._probe_failed(domain, exc)
            return
        log(self.ctx.who, f"the disk works again ({health.probes} failed probes): reopening the storage"
                          + ("" if domain is None else f" of WAL {domain}"))
        health.probe_passed(time.time())
        for kind in self.services.domain_kinds(domain):
            if self.services.get(kind).status != RUNNING:
                self.services.reopen(kind)
        self.supervision.storage_probed(domain)
        self.maybe_settled()

    def _probe_failed(self, domain: int | None, exc: BaseException) -> None:
        health = self.health_of(domain)
        if health.probes % PROBE_LOG_EVERY == 0:
            log(self.ctx.who, f"storage probe failed: {type(exc).__name__}: {exc}")
        health.probe_failed()
        self.probe_armed.add(domain)
        self.ctx.wakeup_after(health.policy.probe_interval, StorageProbeDue(domain))

    def maybe_settled(self) -> None:
        """After a service became ready or a server started: ``failing`` ->
        ``ok`` once every service (of the node, or of a WAL) runs again;
        halted servers restart."""
        changed = False
        for domain in self._domains():
            health = self.health_of(domain)
            if health.state != FAILING or not self.services.domain_running(domain):
                continue
            # halted servers restart, servers that waited for the storage start
            # (idempotent); the storage is ok once they all did
            self.supervision.storage_back(domain)
            if self.supervision.waiting_for_storage(domain):
                continue
            health.settled(time.time())
            log(self.ctx.who, "storage ok" + ("" if domain is None else f" (WAL {domain})"))
            changed = True
        if changed:
            self.supervision.to_servers(self.services.addresses())
            self._write_status()

    # ============================================================ overview
    def worst(self) -> StorageHealth:
        """The health in the worst state (the node's on a tie)."""
        rank = {OK: 0, FAILING: 1, ERROR: 2}
        return max((self.health_of(d) for d in self._domains()), key=lambda h: rank[h.state])

    def overview(self) -> dict[str, Any]:
        ov = self.health.overview()
        worst = self.worst()
        if worst is not self.health:
            ov.update(state=worst.state, reason=worst.reason)
        ov["services"] = self.services.reasons()
        if self.services.wal_health:
            ov["wals"] = {k: h.overview() for k, h in sorted(self.services.wal_health.items())}
        return ov

    def _write_status(self) -> None:
        """``node.status`` says ``error`` (with the reason) while the storage
        (the node's, or a WAL's) is in error, ``ready`` otherwise; best
        effort: the disk may refuse."""
        from .node_files import read_json, set_status
        if not self.node_up:
            return
        path = os.path.join(self.ctx.data_dir, "node.status")
        current = read_json(path) or {}
        if current.get("state") not in ("ready", "error"):
            return    # (starting, or stopping: not ours to change)
        worst = self.worst()
        state = "error" if worst.state == ERROR else "ready"
        error = f"storage: {worst.reason}" if state == "error" else None
        if current.get("state") == state and current.get("error") == error:
            return
        extra = {k: v for k, v in current.items() if k not in ("state", "time", "error")}
        try:
            set_status(self.ctx.data_dir, state, error=error, **extra)
        except OSError as exc:
            log(self.ctx.who, f"could not write node.status ({state}): {exc!r}")


__all__ = ["StorageSupervision", "StorageProbeDue", "OK", "FAILING", "ERROR"]
