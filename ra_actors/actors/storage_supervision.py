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
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from .children import EXITED
from .node_context import NodeContext
from .protocol import ServiceFailed, ServiceFault
from .services import FAILED, WAL, NodeServices, ServiceReopenDue
from .storage_health import ERROR, FAILING, OK, StorageHealth
from .util import log

# A failed probe is logged the first time and then every this many probes.
PROBE_LOG_EVERY = 12


@dataclass(frozen=True, slots=True)
class StorageProbeDue:
    """Wakeup payload: probe the disk (the storage is in ``error``)."""


class StorageSupervision:
    """The node's answer to storage faults (see the module rules)."""

    def __init__(self, ctx: NodeContext, services: NodeServices, supervision: Any,
                 health: StorageHealth) -> None:
        self.ctx = ctx
        self.services = services
        self.supervision = supervision
        self.health = health
        self.probe_armed = False
        # node.status is node-main's until the node is up (a start that
        # failed keeps node-main's reason); the supervisor sets this
        self.node_up = False

    # ============================================================== faults
    def on_service_fault(self, msg: ServiceFault, sender: Any) -> None:
        child = self.services.failed(msg.kind, sender, msg.error)
        if child is not None:
            self._fault(child.kind, id(child), msg.error, msg.retry)

    def on_service_failed(self, msg: ServiceFailed, sender: Any) -> None:
        """A reopen failed (the node's start is not waiting for it)."""
        child = self.services.failed(msg.kind, sender, msg.error)
        if child is not None:
            self._fault(child.kind, id(child), msg.error, msg.retry)

    def service_exited(self, child: Any) -> None:
        """A storage service's process is gone (``ChildActorExited``)."""
        reason = f"the {child.kind} process exited" + (f" ({child.exit_reason})" if child.exit_reason else "")
        if child.kind == WAL and self.ctx.shared:
            # the host carried every server: they are gone with it
            self.supervision.host_died()
        self._fault(child.kind, id(child), reason, True)

    def server_fault(self, name: str, reason: str) -> float | None:
        """A server crashed on a StorageError: the delay before restarting
        it, or None (the storage is in ``error``: it waits)."""
        delay = self.health.fault(f"server {name}", reason, True, time.time())
        self._changed()
        return delay

    def _fault(self, kind: str, child_id: int, error: str, retry: bool) -> None:
        delay = self.health.fault(kind, error, retry, time.time())
        self._changed()
        if delay is not None:
            log(self.ctx.who, f"storage {self.health.state}: {kind} reopens in {delay:.2f}s")
            self.ctx.wakeup_after(delay, ServiceReopenDue(kind, child_id))

    def reopen_due(self, due: ServiceReopenDue) -> None:
        child = self.services.get(due.kind)
        if child is None or id(child) != due.child_id or child.status not in (FAILED, EXITED):
            return
        if self.health.state == ERROR:
            return   # a probe that passes reopens it
        self.services.reopen(due.kind)

    # ============================================================== states
    def _changed(self) -> None:
        """Tell the servers the storage's state (and halt them on error)."""
        if self.health.state == ERROR:
            self._enter_error()
        self.supervision.to_servers(self.services.addresses())
        self._write_status()

    def _enter_error(self) -> None:
        if self.supervision.halted_reason == self.health.reason:
            return
        log(self.ctx.who, f"storage error, the node's servers halt: {self.health.reason}"
                          + ("" if self.health.curable else " (not probed: the operator must repair it)"))
        self.supervision.halt_servers(self.health.reason)
        if self.health.curable and not self.probe_armed:
            self.probe_armed = True
            self.ctx.wakeup_after(self.health.policy.probe_interval, StorageProbeDue())

    def probe_due(self, _due: StorageProbeDue) -> None:
        self.probe_armed = False
        if self.health.state != ERROR or not self.health.curable:
            return
        from ..log.common import probe_storage
        try:
            probe_storage(self.ctx.data_dir, self.health.policy.probe_bytes)
        except Exception as exc:  # noqa: BLE001 - StorageError (or worse): the disk still refuses
            self._probe_failed(exc)
            return
        log(self.ctx.who, f"the disk works again ({self.health.probes} failed probes): reopening the storage")
        self.health.probe_passed(time.time())
        for kind in self.services.not_running():
            self.services.reopen(kind)
        self.supervision.storage_probed()
        self.maybe_settled()

    def _probe_failed(self, exc: BaseException) -> None:
        if self.health.probes % PROBE_LOG_EVERY == 0:
            log(self.ctx.who, f"storage probe failed: {type(exc).__name__}: {exc}")
        self.health.probe_failed()
        self.probe_armed = True
        self.ctx.wakeup_after(self.health.policy.probe_interval, StorageProbeDue())

    def maybe_settled(self) -> None:
        """After a service became ready or a server started: ``failing`` ->
        ``ok`` once every service runs again; halted servers restart."""
        if self.health.state != FAILING or not self.services.all_running():
            return
        # halted servers restart, servers that waited for the storage start
        # (idempotent); the storage is ok once they all did
        self.supervision.storage_back()
        if self.supervision.waiting_for_storage():
            return
        self.health.settled(time.time())
        log(self.ctx.who, "storage ok")
        self.supervision.to_servers(self.services.addresses())
        self._write_status()

    # ============================================================ overview
    def overview(self) -> dict[str, Any]:
        ov = self.health.overview()
        ov["services"] = self.services.reasons()
        return ov

    def _write_status(self) -> None:
        """``node.status`` says ``error`` (with the reason) while the storage
        is in error, ``ready`` otherwise; best effort: the disk may refuse."""
        from .node_files import read_json, set_status
        if not self.node_up:
            return
        path = os.path.join(self.ctx.data_dir, "node.status")
        current = read_json(path) or {}
        if current.get("state") not in ("ready", "error"):
            return    # (starting, or stopping: not ours to change)
        state = "error" if self.health.state == ERROR else "ready"
        error = f"storage: {self.health.reason}" if state == "error" else None
        if current.get("state") == state and current.get("error") == error:
            return
        extra = {k: v for k, v in current.items() if k not in ("state", "time", "error")}
        try:
            set_status(self.ctx.data_dir, state, error=error, **extra)
        except OSError as exc:
            log(self.ctx.who, f"could not write node.status ({state}): {exc!r}")


__all__ = ["StorageSupervision", "StorageProbeDue", "OK", "FAILING", "ERROR"]
