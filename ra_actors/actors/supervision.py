"""Supervision of the node's servers (Ra's ``ra_server_sup``): start, stop,
restart and delete them, alongside the storage services they need.

Rules:

* A server is registered (:mod:`.registry`) before it is started and
  recovers from its files on every start (a ``StartServersRequest``
  registers its servers with one write and hands the host their starts in
  one message); a restarted server is a new
  incarnation (unique and increasing on the node: placement ``shared``
  routes monitor refs and timers by it) and announces its new address.
* A server that crashes is restarted within the node's
  :class:`~.restart_policy.RestartPolicy`; one that was asked to stop, that
  retired itself (``RetireServerRequest``) or that failed to start is not.
  A server that failed on its very first start leaves nothing behind.
* Every exit fires ``WatchDown`` to the server's watchers (reason: what the
  server said before exiting, else ``normal`` for a requested stop and
  ``killed`` otherwise) and answers whoever waits for its start or stop.
* Data goes only once the server has exited (it holds its files until then).
* A server writes to one WAL of the node, the one its record names
  (:mod:`ra_actors.log.wal_dirs`): chosen when it is created, looked up at
  every start.  One that cannot start where it is (``WalNotFound``: its
  WAL directory is not among the node's, or holds another WAL) stays
  exited with the reason; nothing of it is deleted.
* A WAL restart: the servers first learn that there is no WAL (their appends
  wait), then its new address with ``wal_restarted`` naming it (they
  resend what it had not confirmed).  In placement ``shared`` the host actor is the WAL and
  carries the servers: when it dies every server is gone too (monitors see
  ``Down`` first), and the new host gets each server started again.
* A message for every server goes to each running server, or once to the
  host in placement ``shared`` (it hands it to each of its servers).
* The node's storage (:mod:`.storage_supervision`): a server that crashed
  on a ``StorageError`` is a storage fault, restarted after the storage's
  back-off, or not before the storage is back when it is in ``error``.  In
  ``error`` every server halts (:meth:`ServerSupervision.halt_servers`: it
  answers clients ``StorageError``, its watchers see it ``Down``) and no
  server starts; once the storage is back, halted servers are stopped and
  started again from what is on disk, and those that waited start
  (:meth:`ServerSupervision.storage_back`).
* Counters: a server gets its slot of the node's counters file when it
  starts (the same one on every restart) and loses it when its data is
  deleted; the slot's status follows the server's (starting, running,
  stopped, exited).  ``key_metrics`` is read from there
  (``ServerMetricsRequest``), so it never waits for the server.  Its
  leaderboard entry goes with each exit.
"""
from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from thespian.actors import DeadEnvelope

from .. import errors
from ..core.machine import check_machine
from ..metrics import block as counters_block
from ..metrics.fields import KEY_METRICS, MEMBERSHIP_NAMES, STATE_NAMES
from ..core.types import ServerConfig, ServerId, with_mutable_changes
from ..log.config_store import save_config
from ..shell.names import NameRefused
from .children import DELETING, EXITED, RUNNING, STARTING, STOPPING, Child, ChildActors
from .directory import Directory
from .failure_detector import FailureDetector
from .monitors import Monitors
from .node_context import DEFERRED, BatchWaiter, NodeContext, Waiter
from .protocol import (MAX_START_BATCH, CheckMachineRequest, ForceDeleteServerRequest, ForgetServer,
                       ListServersRequest, RestartServerRequest, RetireServerRequest, Rpcs, SegmentsWritten,
                       ServerCrash, ServerExited, ServerInit, ServerMetricsRequest, ServerStarted,
                       ServiceReady, StartServerRequest, StartServersRequest, StopServer,
                       StopServerRequest)
from .registry import RegisteredServer, ServerRegistry
from .server import ServerActor, load_machine
from .services import WAL, NodeServices
from .util import encode_error, log, log_exc

SERVER_KIND = "server"
_BUSY = (RUNNING, STARTING, STOPPING, DELETING)


@dataclass(frozen=True, slots=True)
class ServerRestartDue:
    """Wakeup payload: restart server ``name`` if ``child_id`` is still its
    current, exited incarnation."""

    name: str
    child_id: int


@dataclass(frozen=True, slots=True)
class StartBatchDue:
    """Wakeup payload: the start batch ``batch`` (an id) has had
    :data:`START_BATCH_PATIENCE` seconds; the servers of it that have not
    answered are answered as not started, and the next batch goes."""

    batch: int


START_BATCH_PATIENCE = 30.0


@dataclass(slots=True)
class _QueuedBatch:
    """A ``StartServersRequest`` waiting for its turn, or starting (then
    ``waiter`` collects its servers' outcomes)."""

    request: StartServersRequest
    sender: Any
    waiter: BatchWaiter | None = None


class ServerSupervision:
    """The node's servers and their storage services (see the module rules)."""

    def __init__(self, ctx: NodeContext, children: ChildActors, services: NodeServices,
                 registry: ServerRegistry, directory: Directory, monitors: Monitors,
                 detector: FailureDetector, leaderboard: Any = None) -> None:
        self.ctx = ctx
        self.storage: Any = None              # StorageSupervision (set by the supervisor)
        # the storage errors servers halted for: the node's (None), a WAL's (its index)
        self.halted: dict[int | None, str] = {}
        self.leaderboard = leaderboard
        self.children = children
        self.services = services
        self.registry = registry
        self.directory = directory
        self.monitors = monitors
        self.detector = detector
        self.servers = directory.servers     # name -> current incarnation (the directory's table)
        self.last_incarnation = 0
        self.start_queue: deque[_QueuedBatch] = deque()   # StartServersRequests: the first is starting
        self.batch_ids = itertools.count(1)

    # ============================================================= requests
    def check_machine(self, request: CheckMachineRequest, sender: Any) -> tuple:
        self._check_machine(request.machine)
        return ("ok", None)

    def blocked(self, wal: int | None) -> str | None:
        """Why a server writing to WAL ``wal`` may not run now (None: it may):
        the node's storage, or that WAL's, is in error."""
        return self.halted.get(None) or (self.halted.get(wal) if wal is not None else None)

    def _in_scope(self, child: Child, wal: int | None) -> bool:
        return wal is None or child.wal == wal

    def _refuse_in_storage_error(self, wal: int | None = None) -> None:
        reason = self.blocked(wal)
        if reason is not None:
            raise errors.StorageError(f"node {self.ctx.node}: the storage failed ({reason}); "
                                      "no server starts until it is back")

    def start_server(self, request: StartServerRequest, sender: Any) -> Any:
        config: ServerConfig = request.config
        self._create(config)
        self.registry.add(config.server_id.name, config.uid)
        self._start(config, new=True, waiter=(sender, request.req_id))
        return DEFERRED

    def start_servers(self, request: StartServersRequest, sender: Any) -> Any:
        """Several new servers: each is checked and created as by
        ``start_server`` (one that cannot be gets its error, the others
        start), then registered with one durable write, and the host gets
        all their ``ServerInit`` messages in one.  One batch starts at a
        time: the next waits until every server of this one has answered,
        so that concurrent batches neither hold the supervisor (its
        heartbeats) nor flood the host."""
        configs = request.configs
        if type(configs) is not tuple or not configs or len(configs) > MAX_START_BATCH:
            raise errors.InvalidConfig(f"StartServersRequest carries 1 to {MAX_START_BATCH} server configs")
        if not all(isinstance(c, ServerConfig) for c in configs):
            raise errors.InvalidConfig("StartServersRequest carries something that is not a ServerConfig")
        names = [c.server_id.name for c in configs]
        if len(set(names)) != len(names):
            raise errors.ServerAlreadyExists(f"StartServersRequest names a server twice on node {self.ctx.node}")
        self.start_queue.append(_QueuedBatch(request, sender))
        if len(self.start_queue) == 1:
            self._next_batch()
        return DEFERRED

    def _batch_done(self) -> None:
        self.start_queue.popleft()
        if self.start_queue:
            self._next_batch()

    def start_batch_due(self, due: StartBatchDue) -> None:
        if not self.start_queue:
            return
        batch = self.start_queue[0].waiter
        if batch is None or batch.ident != due.batch:
            return
        log(self.ctx.who, f"a batch of starts waited {START_BATCH_PATIENCE:.0f}s: "
                          f"{len(batch.order) - len(batch.results)} servers answered as not started")
        for name in batch.order:
            batch.failed(name, encode_error(errors.Timeout(f"server {name} did not start within "
                                                           f"{START_BATCH_PATIENCE:.0f}s")))
        batch.answer_if_done(self.ctx)

    def _next_batch(self) -> None:
        entry = self.start_queue[0]
        request = entry.request
        batch = BatchWaiter((entry.sender, request.req_id), [c.server_id.name for c in request.configs],
                            self._batch_done, next(self.batch_ids))
        entry.waiter = batch
        self.ctx.wakeup_after(START_BATCH_PATIENCE, StartBatchDue(batch.ident))
        try:
            self._start_batch(request.configs, batch)
        except Exception as exc:  # noqa: BLE001 - answered, and the next batch goes
            log_exc(self.ctx.who, "a batch of starts failed")
            err = encode_error(exc if isinstance(exc, errors.RaError) else
                               errors.RaError(f"{type(exc).__name__}: {exc}"))
            for name in batch.order:
                batch.failed(name, err)
            batch.answer_if_done(self.ctx)

    def _start_batch(self, configs: tuple, batch: BatchWaiter) -> None:
        created = []
        for config in configs:
            try:
                self._create(config)
            except errors.RaError as exc:
                batch.failed(config.server_id.name, encode_error(exc))
            else:
                created.append(config)
        self.registry.add_many([(c.server_id.name, c.uid) for c in created])
        for config in created:
            # (the supervisor's turn sends their ServerInits to the host as one Bundle)
            self._start(config, new=True, waiter=batch)
        batch.answer_if_done(self.ctx)

    def _create(self, config: ServerConfig) -> None:
        """Check that new server ``config`` may start here, then write its
        directory and durable config (it is not registered yet)."""
        name, node = config.server_id.name, self.ctx.node
        if ServerId(*config.server_id).node != node:
            raise errors.RaError(f"server {config.server_id} does not belong to node {node}")
        if name in self.servers and self.servers[name].status in _BUSY:
            raise errors.ServerAlreadyExists(f"server {name} already runs on node {node}")
        if name in self.registry:
            raise errors.ServerAlreadyExists(f"server {name} already has data on node {node}")
        self._check_machine(config.machine)
        wal_dir = self._choose_wal(config)
        self._refuse_in_storage_error(self.ctx.wal_dirs.index(wal_dir))
        self.registry.write_config(config, wal_dir)

    def _choose_wal(self, config: ServerConfig) -> str:
        """The WAL directory a new server writes to (``wal=`` of its config,
        else a hash of its uid; ``ra_actors.log.wal_dirs``)."""
        from ..log.common import LogUsageError
        from ..log.wal_dirs import choose_wal
        try:
            return self.ctx.wal_dirs[choose_wal(config.uid, len(self.ctx.wal_dirs), config.wal)]
        except LogUsageError as exc:
            raise errors.InvalidConfig(f"node {self.ctx.node}: {exc}") from None

    def _wal_of(self, config: ServerConfig) -> int:
        """The index of the WAL the server's record names (WalNotFound:
        not one of the node's, or not the same WAL)."""
        from ..log.wal_dirs import wal_index_of
        return wal_index_of(self.ctx.data_dir, config.uid, list(self.ctx.wal_dirs))

    def restart_server(self, request: RestartServerRequest, sender: Any) -> Any:
        name = request.name
        rec = self._registered(name)
        child = self.servers.get(name)
        if child is not None and child.status in (RUNNING, STARTING) and not child.halted:
            if request.config:
                raise errors.RaError(f"server {name} on node {self.ctx.node} is running: "
                                     "stop it before restarting it with a changed config")
            return ("ok", child.incarnation)
        self._refuse_in_storage_error(child.wal if child is not None else None)
        if child is not None and child.status in (STOPPING, DELETING):
            raise errors.RaError(f"server {name} on node {self.ctx.node} is {child.status}")
        config = child.config if child is not None else self.registry.read_config(rec.uid)
        if request.config:
            config = with_mutable_changes(config, request.config)
            save_config(self.ctx.data_dir, config)
        self.registry.set_stopped(name, False)
        if child is not None:
            child.restarts.clear()   # asked for: a fresh intensity budget
        self._start(config, new=False, waiter=(sender, request.req_id))
        return DEFERRED

    def stop_server(self, request: StopServerRequest, sender: Any) -> Any:
        self._registered(request.name)
        self.registry.set_stopped(request.name, True)
        child = self.servers.get(request.name)
        if child is None or child.status == EXITED:
            return ("ok", None)
        if child.status != DELETING:
            child.status = STOPPING
        self._ask_to_stop(child, delete=False, waiter=(sender, request.req_id))
        return DEFERRED

    def force_delete_server(self, request: ForceDeleteServerRequest, sender: Any) -> Any:
        name = request.name
        child = self.servers.get(name)
        if child is not None and child.status != EXITED:
            child.status = DELETING
            self._ask_to_stop(child, delete=True, waiter=(sender, request.req_id))
            return DEFERRED
        self._registered(name)
        self._delete_data(name)
        return ("ok", None)

    def retire_server(self, request: RetireServerRequest, sender: Any) -> tuple:
        """The server is about to exit for good (see ``RetireServerRequest``):
        no restart, and its data goes after its exit if ``delete_data``."""
        child = self.servers.get(request.name)
        if child is not None and child.matches(sender):
            child.status = DELETING if request.delete_data else STOPPING
            self.registry.set_stopped(request.name, True)
        return ("ok", None)

    def server_metrics(self, request: ServerMetricsRequest, sender: Any) -> dict:
        """Ra's ``key_metrics``, read from the counters file (see the module rules)."""
        name = request.name
        child = self.servers.get(name)
        read = self.ctx.counters.read_server(name) if self.ctx.counters is not None else None
        if child is None or child.status not in (RUNNING, STARTING) or read is None:
            raise errors.NoSuchServer(f"no server {name} runs on node {self.ctx.node}")
        values, _status = read
        out = {k: values[k] for k in KEY_METRICS}
        out["state"] = STATE_NAMES.get(values["state"], "unknown")
        out["membership"] = MEMBERSHIP_NAMES.get(values["membership"], "unknown")
        if child.halted:
            # halted for the node's storage: say so, with the reason
            out["state"] = "error"
            out["error"] = self.blocked(child.wal) or "the node's storage is in error"
        return out

    def _counters_status(self, name: str, status: int, incarnation: int | None = None) -> None:
        if self.ctx.counters is not None:
            self.ctx.counters.set_status(name, status, incarnation)

    def list_servers(self, request: ListServersRequest, sender: Any) -> dict:
        return {name: (c.addr, c.incarnation, c.status) for name, c in self.servers.items()}

    def overview(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, rec in self.registry.servers.items():
            child = self.servers.get(name)
            if child is not None and child.halted and child.status in (RUNNING, STARTING):
                status = "error"
            elif child is not None:
                status = child.status
            else:
                status = "stopped" if rec.stopped else "exited"
            out[name] = {
                "uid": rec.uid,
                "status": status,
                "wal": child.wal if child is not None else None,
                "incarnation": child.incarnation if child is not None else 0,
                "restarts": len(child.restarts) if child is not None else 0,
            }
            if child is not None and child.status == EXITED and child.exit_reason:
                # why it does not run: a crash, or a start refused (LogCorruption...)
                why = child.exit_reason
                out[name]["reason"] = (f"{why[0]}: {why[1]}" if isinstance(why, (tuple, list)) and len(why) > 1
                                       else str(why))
        return out

    def _check_machine(self, machine: str) -> None:
        try:
            self.ctx.modules.machine(machine)
        except NameRefused as exc:
            raise errors.MachineError(f"node {self.ctx.node}: {exc}") from None
        try:
            check_machine(load_machine(machine, self.ctx.modules))
        except Exception as exc:  # noqa: BLE001 - any import failure is the user's
            raise errors.MachineError(f"node {self.ctx.node}: machine {machine!r} cannot be loaded: "
                                      f"{type(exc).__name__}: {exc}") from None

    def _registered(self, name: str) -> RegisteredServer:
        rec = self.registry.get(name)
        if rec is None:
            raise errors.NoSuchServer(f"no server {name} on node {self.ctx.node}")
        return rec

    def _ask_to_stop(self, child: Child, delete: bool, waiter: Waiter) -> None:
        child.waiters.append(waiter)
        self.ctx.send(child.local if child.addr is None else child.addr, StopServer(delete=delete, name=child.name))

    # ============================================================ lifecycle
    def recover_registered(self) -> None:
        """The node is up: the servers that ran before it stopped come back."""
        for name, rec in sorted(self.registry.servers.items()):
            if rec.stopped or name in self.servers:
                continue
            try:
                config = self.registry.read_config(rec.uid)
            except Exception as exc:  # noqa: BLE001 - one bad server must not stop the others
                log(self.ctx.who, f"cannot recover server {name}: {exc!r}")
                continue
            self._start(config, new=False)

    def _start(self, config: ServerConfig, new: bool, waiter: Waiter | BatchWaiter | None = None) -> None:
        """Start a server from ``config`` (its ``ServerInit`` leaves with
        the supervisor's turn, bundled with the others to the same host)."""
        name = config.server_id.name
        old = self.servers.get(name)
        try:
            wal = self._wal_of(config)
        except errors.RaError as exc:   # WalNotFound, or a damaged record (LogCorruption)
            self._not_started(config, old, exc, waiter)
            return
        if self.ctx.shared:
            # not a Thespian child of ours: a shell inside the node's host actor
            host = self.services.host()
            child = Child(SERVER_KIND, name, host.local)
            child.addr = host.addr
        else:
            child = self.children.spawn(SERVER_KIND, name, ServerActor)
        if old is not None:
            child.inherit(old)
        child.config = config
        child.new = new
        child.wal = wal
        self.last_incarnation = max(time_us(), self.last_incarnation + 1)
        child.incarnation = self.last_incarnation
        if waiter:
            child.waiters.append(waiter)
        self.servers[name] = child
        slot = None
        if self.ctx.counters is not None:
            slot = self.ctx.counters.allocate(name, config.cluster_name)
            if slot is None:
                log(self.ctx.who, f"the counters file is full: server {name} runs without counters")
            self._counters_status(name, counters_block.STATUS_STARTING, child.incarnation)
        init = ServerInit(config, child.incarnation, self.ctx.incarnation, self.ctx.my_address,
                          self.services.addresses(), self.ctx.data_dir, dict(self.ctx.server_settings),
                          self.detector.down_nodes(), new, self.ctx.modules.allowed,
                          counters_slot=slot, wal=wal, wal_dir=self.ctx.wal_dirs[wal])
        self.ctx.send(child.addr or child.local, init)

    def _not_started(self, config: ServerConfig, old: Child | None, exc: Exception, waiter: Waiter | None) -> None:
        """The server cannot start where it is (its WAL is not there): it
        stays exited, with the reason in the overview, and a waiter gets the
        error.  Nothing is deleted."""
        name = config.server_id.name
        log(self.ctx.who, f"server {name} does not start: {exc}")
        child = Child(SERVER_KIND, name, None)
        if old is not None:
            child.inherit(old)
        child.config = config
        child.status = EXITED
        child.exit_reason = encode_error(exc)
        self.servers[name] = child
        if waiter is not None:
            child.waiters.append(waiter)
            child.answer_waiters(self.ctx, error=encode_error(exc))

    def on_server_started(self, msg: ServerStarted, sender: Any) -> None:
        child = self.servers.get(msg.name)
        if child is None or not child.matches(sender) or msg.incarnation != child.incarnation:
            return
        if msg.error:
            child.exit_reason = msg.error
            log(self.ctx.who, f"server {msg.name} failed to start: {msg.error}")
            child.answer_waiters(self.ctx, error=msg.error)
            # It exits by itself and is not restarted; one that never ran
            # leaves nothing behind.  One the disk refused starts again once
            # the storage is back.
            child.status = DELETING if child.new else STOPPING
            if not child.new and msg.error[0] == "StorageError" and self.storage is not None:
                child.storage_wait = True
                self.storage.server_fault(child.name, msg.error[1])
            self._counters_status(msg.name, counters_block.STATUS_EXITED)
            return
        child.addr = sender
        child.status = RUNNING
        child.storage_wait = False
        self._counters_status(msg.name, counters_block.STATUS_RUNNING)
        child.answer_waiters(self.ctx, ("ok", msg.incarnation))
        if self.storage is not None:
            self.storage.maybe_settled()

    def server_exited(self, child: Child, prev: str) -> None:
        """``ChildActorExited`` of a server actor (placement ``process``)."""
        if self.servers.get(child.name) is child:
            self._gone(child, prev)

    def on_server_exited(self, msg: ServerExited, sender: Any) -> None:
        """Placement ``shared``: a server left the host (stopped, failed to
        start, or crashed): the same as a server process's exit."""
        child = self.servers.get(msg.name)
        if child is None or child.status == EXITED:
            return
        if msg.incarnation and msg.incarnation != child.incarnation:
            return
        if msg.crashed:
            child.exit_reason = msg.reason
            child.storage_crash = msg.storage
        prev, child.status = child.status, EXITED
        if not self.ctx.exiting:
            self._gone(child, prev)

    def on_server_crash(self, msg: ServerCrash, sender: Any) -> None:
        child = self.servers.get(msg.name)
        if child is not None and child.matches(sender):
            child.exit_reason = msg.reason
            child.storage_crash = msg.storage

    def _gone(self, child: Child, prev: str) -> None:
        asked = prev in (STOPPING, DELETING)
        reason = child.exit_reason or ("normal" if asked else "killed")
        if self.leaderboard is not None:
            self.leaderboard.clear(child.name)
        self._counters_status(child.name, counters_block.STATUS_STOPPED if asked else counters_block.STATUS_EXITED)
        self.monitors.fire(ServerId(child.name, self.ctx.node), reason)
        if asked:
            child.answer_waiters(self.ctx, ("ok", None))
        else:
            child.answer_waiters(self.ctx, error=("NoSuchServer", f"{child.name} exited during start", None))
        if prev == DELETING:
            self._delete_data(child.name)
            return
        if child.then_restart:
            # halted for a storage error that is over: back from what is on disk
            child.then_restart = False
            child.halted = False
            self._start(child.config, new=False)
            return
        if asked or (prev == STARTING and child.exit_reason):
            return
        if child.storage_crash and self.storage is not None:
            delay = self.storage.server_fault(child.name, str(reason))
            if delay is None or self.blocked(child.wal) is not None:
                child.storage_wait = True
                log(self.ctx.who, f"server {child.name} crashed on the disk ({reason}); it starts "
                                  "again when the storage is back")
                return
            log(self.ctx.who, f"server {child.name} crashed on the disk ({reason}); restarting in {delay:.2f}s")
            self.ctx.wakeup_after(delay, ServerRestartDue(child.name, id(child)))
            return
        delay = self.ctx.restart_policy.next_delay(child.restarts)
        if delay is None:
            log(self.ctx.who, f"server {child.name} crashed too often; not restarting it")
            return
        log(self.ctx.who, f"server {child.name} exited ({reason}); restarting in {delay:.2f}s")
        due = ServerRestartDue(child.name, id(child))
        if delay:
            self.ctx.wakeup_after(delay, due)
        else:
            self.restart_due(due)

    def restart_due(self, due: ServerRestartDue) -> None:
        child = self.servers.get(due.name)
        if child is None or id(child) != due.child_id or child.status != EXITED:
            return
        rec = self.registry.get(due.name)
        if rec is None or rec.stopped:
            return
        if self.blocked(child.wal) is not None:
            child.storage_wait = True   # storage_back starts it
            return
        self._start(child.config, new=False)

    def _delete_data(self, name: str) -> None:
        rec = self.registry.remove(name)
        self.servers.pop(name, None)
        if self.ctx.counters is not None:
            self.ctx.counters.free(name)
        if self.leaderboard is not None:
            self.leaderboard.clear(name)
        if rec is not None:
            for kind in self.services.wal_kinds():
                wal = self.services.get(kind)
                if wal is not None and wal.status == RUNNING:
                    self.ctx.send(wal.addr, ForgetServer(rec.uid))
            try:
                self.registry.delete_data(rec.uid)
            except Exception:  # noqa: BLE001 - the server is gone either way
                log_exc(self.ctx.who, f"could not delete the data of {name}")
        log(self.ctx.who, f"server {name} deleted")

    def stopping_all(self) -> None:
        """The node stops (``ActorExitRequest``): no server is restarted."""
        for child in self.servers.values():
            if child.status in (RUNNING, STARTING):
                child.status = STOPPING

    # ============================================================= services
    def on_service_ready(self, msg: ServiceReady, sender: Any) -> None:
        addresses = self.services.mark_ready(msg, sender)
        if addresses is not None and not (self.ctx.shared and msg.kind == WAL):
            self.to_servers(addresses)

    def host_died(self) -> None:
        """Placement ``shared``: the host actor died with every server in
        it.  Each is gone (monitors see ``Down``); those not asked to stop
        start again once the new host runs (:meth:`storage_back`)."""
        for server in list(self.servers.values()):
            if server.status == EXITED:
                continue
            prev, server.status = server.status, EXITED
            restart = server.then_restart
            server.then_restart = server.halted = False
            self.monitors.fire(ServerId(server.name, self.ctx.node), server.exit_reason or "killed")
            if prev == DELETING:
                server.answer_waiters(self.ctx, ("ok", None))
                self._delete_data(server.name)
            elif prev == STOPPING and not restart:
                server.answer_waiters(self.ctx, ("ok", None))
            else:
                server.answer_waiters(self.ctx, error=("NoSuchServer", f"{server.name} exited during start", None))
                server.storage_wait = True

    # ============================================================== storage
    def halt_servers(self, reason: str, wal: int | None = None) -> None:
        """The storage is in ``error`` (the node's, or WAL ``wal``'s): every
        server (of that WAL) halts (it is told by the ``ServiceAddresses``
        that follows); its watchers see it ``Down`` now, so that its peers
        elsewhere elect a leader without it."""
        self.halted[wal] = reason
        for child in list(self.servers.values()):
            if self._in_scope(child, wal) and child.status in (RUNNING, STARTING) and not child.halted:
                child.halted = True
                self.monitors.fire(ServerId(child.name, self.ctx.node), f"storage error: {reason}")

    def storage_probed(self, wal: int | None = None) -> None:
        """The disk works again (a probe passed): servers may start again."""
        self.halted.pop(wal, None)

    def waiting_for_storage(self, wal: int | None = None) -> bool:
        return any(self._in_scope(c, wal)
                   and (c.storage_wait or c.then_restart or (c.halted and c.status in (RUNNING, STARTING)))
                   for c in self.servers.values())

    def storage_back(self, wal: int | None = None) -> None:
        """Every service (of the node, or of WAL ``wal``) runs again: halted
        servers are stopped and started again from what is on disk; those
        that waited for the storage start.  A server still blocked by
        another error (the node's, or its WAL's) waits for that one."""
        self.halted.pop(wal, None)
        for child in list(self.servers.values()):
            if not self._in_scope(child, wal) or self.blocked(child.wal) is not None:
                continue
            rec = self.registry.get(child.name)
            if child.halted and child.status in (RUNNING, STARTING):
                child.then_restart = True
                child.status = STOPPING
                self.ctx.send(child.addr or child.local, StopServer(delete=False, name=child.name))
            elif child.status == EXITED and child.storage_wait:
                child.storage_wait = False
                child.halted = False
                if rec is not None and not rec.stopped:
                    self._start(child.config, new=False)
            elif child.storage_wait and child.status not in (RUNNING, STARTING):
                child.storage_wait = False

    def on_segments_written(self, msg: SegmentsWritten, sender: Any) -> None:
        if self.ctx.shared:
            self.to_servers(msg)    # the host routes each uid's refs
            return
        name_of = self.registry.name_of_uid()
        for uid, refs in msg.segments.items():
            child = self.servers.get(name_of.get(uid))
            if child is not None and child.status == RUNNING:
                self.ctx.send(child.addr, SegmentsWritten({uid: refs}))

    def on_dead_letter(self, msg: DeadEnvelope) -> None:
        """A server's ``Rpcs`` could not be delivered: the server drops the
        stale address it sent to."""
        inner = msg.deadMessage
        if isinstance(inner, Rpcs):
            child = self.servers.get(ServerId(*inner.from_).name)
            if child is not None and child.status == RUNNING:
                self.ctx.send(child.addr, DeadEnvelope(msg.deadAddress, None))

    def to_servers(self, msg: Any) -> None:
        """``msg`` to every running server (see the module rules)."""
        if self.ctx.shared:
            host = self.services.host()
            if host is not None and host.status != EXITED and (host.addr or host.local) is not None:
                # (a host whose WAL failed still carries its servers)
                self.ctx.send(host.addr or host.local, msg)
            return
        for child in self.directory.running_servers():
            self.ctx.send(child.addr, msg)


def time_us() -> int:
    """Wall-clock microseconds: a server incarnation stays unique across node restarts."""
    return time.time_ns() // 1000

