"""NodeSupervisor: the root actor of a node (Ra's ``ra_system`` plus aten).

The supervisor is a composition: it owns one object per concern and routes
each message to the one it concerns.

* :mod:`.supervision` — the node's servers and storage services: start,
  stop, restart, delete (:mod:`.services`, :mod:`.registry`);
* :mod:`.storage_supervision` — storage faults: reopen with back-off, the
  ``error`` state, probes, coming back (:mod:`.storage_health`);
* :mod:`.user_actors` — the actors clients start (``client.start_actor``);
* :mod:`.directory` — name -> address, incarnation and status; ``Lookup``;
* :mod:`.monitors` — ``Watch``/``Unwatch``/``WatchDown``, local and remote;
* :mod:`.clients` — the client handles attached through this node;
* :mod:`.failure_detector` — node-pair heartbeats, ``NodeUp``/``NodeDown``;
* :mod:`.transmit` — at most one heartbeat or probe in flight per target;
* :mod:`.children`, :mod:`.restart_policy`, :mod:`.node_context` — what
  they share.

Rules:

* Routing is by type, through two tables: :attr:`NodeSupervisor._messages`
  (``{message type: handler}``) and :attr:`NodeSupervisor._requests`
  (``{SupervisorRequest type: handler}``).  Nothing here decides what a
  concern decides; what is here is the wiring between them (a node down
  goes to the servers and the monitors, a child's exit to whoever
  supervises its kind) and the node's start (``SupervisorInit`` ->
  ``SupervisorReady`` once the storage services run).
* Every request gets exactly one ``SupResponse``: the handler's value, or
  its ``ra_actors.errors`` exception encoded (``util.encode_error``), or
  later from whoever finishes the job (:data:`~.node_context.DEFERRED`).
* One bad message never kills the node's root: an exception out of a
  handler is logged and the message dropped.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from thespian.actors import (Actor, ActorExitRequest, ChildActorExited, DeadEnvelope, PoisonMessage,
                             WakeupMessage)

from .. import errors
from ..core import messages as m
from .admin import RaRegisterSupervisor, RaSupervisorInfo
from .children import EXITED, RUNNING, STARTING, ChildActors
from .clients import ClientHandles
from .directory import Directory
from .failure_detector import FailureDetector
from .leaderboard import Leaderboard
from .monitors import Monitors
from .node_context import DEFERRED, NodeContext
from .protocol import (ActorSend, Bundle, CheckMachineRequest, ForceDeleteServerRequest, LeaderboardRequest,
                       LeaderboardUpdate, ListActorsRequest,
                       ListNodesRequest, ListServersRequest, Lookup, NodeHeartbeat, NodeHello,
                       OverviewRequest, PingRequest, RegisterClientRequest, RestartServerRequest,
                       RetireServerRequest, SegmentsWritten, SendToActorRequest, ServerCrash, ServerExited,
                       ServerInit, ServerMetricsRequest, ServerStarted, ServiceFailed, ServiceFault, ServiceReady,
                       StartActorRequest,
                       StartServerRequest, StartServersRequest,
                       StopActorRequest, StopServerRequest, SupervisorInit, SupervisorReady,
                       SupervisorRequest, SupResponse, UnregisterClientRequest, Unwatch, Watch, WatchDown,
                       LookupReply)
from .registry import ServerRegistry
from .services import WAL, NodeServices, ServiceReopenDue
from .storage import wal_kind
from .storage_health import StorageHealth
from .storage_supervision import StorageProbeDue, StorageSupervision
from .supervision import SERVER_KIND, ServerRestartDue, ServerSupervision, StartBatchDue
from .transmit import PeriodicSender
from .user_actors import ACTOR_KIND, ActorRestartDue, UserActors
from .util import admin_address, encode_error, log, log_exc

Handler = Callable[[Any, Any], Any]

# Per-server messages that one event turns into one message per server (a
# node down: a ``WatchDown`` for every watch of it, then the new leaders'
# ``Watch``/``Unwatch``, the ``Lookup``/``LookupReply`` of every follower; a
# batch of starts: a ``ServerInit`` for each): what one turn of the
# supervisor produces of them for one destination leaves as one ``Bundle``
# at the end of the turn (see ``NodeSupervisor.send``).  Their receivers
# (hosts, server actors, supervisors, clients) all take bundles.
_COALESCED = frozenset({Watch, Unwatch, WatchDown, Lookup, LookupReply, ServerInit})


@dataclass(frozen=True, slots=True)
class Tick:
    """Wakeup payload: the periodic tick (heartbeats, probes, client checks)."""


def _refused_connections() -> dict[str, int]:
    """Connections the node's processes refused, by kind (:mod:`.refusals`)."""
    from . import netpatch
    record = netpatch.refusals()
    return record.counts() if record is not None else {}


class NodeSupervisor(Actor):
    """The root actor of a node (see the module rules)."""

    @staticmethod
    def actorSystemCapabilityCheck(capabilities, requirements):
        return bool(requirements) and capabilities.get("ra_node") == requirements.get("ra_node")

    def __init__(self, capabilities: dict | None = None, requirements: dict | None = None) -> None:
        super().__init__()
        node = (requirements or {}).get("ra_node") or (capabilities or {}).get("ra_node")
        self.ctx = NodeContext(self, node)
        self.started = False
        self.init_reply: Any = None      # node_main, waiting for SupervisorReady
        self.msgs_in = 0                 # Thespian messages received (not wakeups): bench's idle check
        self.periodic = PeriodicSender(self)
        self.children = ChildActors(self.ctx)
        self.registry = ServerRegistry()
        self.detector = FailureDetector(self.ctx, self.periodic, self._node_up, self._node_down)
        self.directory = Directory(self.ctx, self.registry, self.detector)
        self.monitors = Monitors(self.ctx, self.directory, self.detector)
        self.clients = ClientHandles(self.ctx, self.directory, self.monitors)
        self.health = StorageHealth(self.ctx.storage_policy)
        self.services = NodeServices(self.ctx, self.children, self.health)
        self.leaderboard = Leaderboard(self._server_runs)
        self.supervision = ServerSupervision(self.ctx, self.children, self.services, self.registry,
                                             self.directory, self.monitors, self.detector, self.leaderboard)
        self.storage = StorageSupervision(self.ctx, self.services, self.supervision, self.health)
        self.supervision.storage = self.storage
        self.actors = UserActors(self.ctx, self.children, self.directory, self.monitors, self.detector)
        self._turn_out: dict[str, tuple[Any, list]] | None = None   # this turn's coalesced sends, by target
        self._messages: dict[type, Handler] = self._message_table()
        self._requests: dict[type, Handler] = self._request_table()
        self._wakeups: dict[type, Callable[[Any], None]] = {
            Tick: self._tick,
            ServerRestartDue: self.supervision.restart_due,
            StartBatchDue: self.supervision.start_batch_due,
            ActorRestartDue: self.actors.restart_due,
            ServiceReopenDue: self.storage.reopen_due,
            StorageProbeDue: self.storage.probe_due,
        }

    def _message_table(self) -> dict[type, Handler]:
        return {
            SupervisorInit: self._on_init,
            NodeHello: self.detector.on_hello,
            NodeHeartbeat: self.detector.on_heartbeat,
            RaSupervisorInfo: self.detector.on_supervisor_info,
            Lookup: self.directory.on_lookup,
            Watch: self.monitors.on_watch,
            Unwatch: self.monitors.on_unwatch,
            ServerStarted: self.supervision.on_server_started,
            ServerCrash: self.supervision.on_server_crash,
            ServerExited: self.supervision.on_server_exited,
            SegmentsWritten: self.supervision.on_segments_written,
            ServiceReady: self._on_service_ready,
            ServiceFailed: self._on_service_failed,
            ServiceFault: self.storage.on_service_fault,
            ChildActorExited: self._on_child_exited,
            DeadEnvelope: self._on_dead_letter,
            ActorSend: self.actors.on_actor_send,
            LeaderboardUpdate: self.leaderboard.on_update,
            ActorExitRequest: self._on_exit_request,
            PoisonMessage: self._on_poison,
            Bundle: self._on_bundle,
        }

    def _request_table(self) -> dict[type, Handler]:
        return {
            PingRequest: self._ping,
            ListNodesRequest: self._list_nodes,
            OverviewRequest: self._overview,
            RegisterClientRequest: self.clients.register,
            UnregisterClientRequest: self.clients.unregister,
            CheckMachineRequest: self.supervision.check_machine,
            StartServerRequest: self.supervision.start_server,
            StartServersRequest: self.supervision.start_servers,
            RestartServerRequest: self.supervision.restart_server,
            StopServerRequest: self.supervision.stop_server,
            ForceDeleteServerRequest: self.supervision.force_delete_server,
            RetireServerRequest: self.supervision.retire_server,
            ListServersRequest: self.supervision.list_servers,
            StartActorRequest: self.actors.start,
            StopActorRequest: self.actors.stop,
            SendToActorRequest: self.actors.send_to,
            ListActorsRequest: self.actors.list,
            ServerMetricsRequest: self.supervision.server_metrics,
            LeaderboardRequest: self.leaderboard.lookup,
        }

    # ================================================================ entry
    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if not isinstance(msg, WakeupMessage):
            self.msgs_in += 1
        self._turn_out = {}
        try:
            self._route(msg, sender)
        except Exception:  # noqa: BLE001 - never let one bad message kill the node's root
            log_exc(self.ctx.who, f"error handling {type(msg).__name__}")
        finally:
            self._end_turn()

    def _end_turn(self) -> None:
        """Send what this turn coalesced (see :meth:`send`)."""
        out, self._turn_out = self._turn_out, None
        for addr, msgs in (out or {}).values():
            self._send_now(addr, msgs)

    def send(self, targetAddr: Any, msg: Any) -> None:
        """Thespian's ``send``, except that the per-server messages of
        ``_COALESCED`` wait for the end of the turn and leave as one
        ``Bundle`` per target: Thespian sends to a target one message at a
        time, each waiting for the target's acknowledgement (a turn of the
        target's loop), so a thousand separate messages to the node's host
        or to another supervisor queue for tens of seconds, and every pass
        of this process's loop walks that queue (the heartbeats stall, the
        nodes declare each other down, which makes more such messages, and
        what waits behind them, e.g. a batch's ``ServerInit`` bundle, times
        out after ``THESPIAN_TRANSMIT_TIMEOUT_PERIOD``).  Any other message
        to a target first sends what waits for that target, so the order
        of each target's messages is kept."""
        out = self._turn_out
        if out is None:
            super().send(targetAddr, msg)
            return
        key = str(targetAddr)
        waiting = out.get(key)
        if type(msg) in _COALESCED:
            if waiting is None:
                out[key] = (targetAddr, [msg])
            else:
                waiting[1].append(msg)
            return
        if waiting is not None:
            del out[key]
            self._send_now(targetAddr, waiting[1])
        super().send(targetAddr, msg)

    def _send_now(self, addr: Any, msgs: list) -> None:
        super().send(addr, msgs[0] if len(msgs) == 1 else Bundle(tuple(msgs)))

    def _route(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, WakeupMessage):
            on_wakeup = self._wakeups.get(type(msg.payload))
            if on_wakeup is not None:
                on_wakeup(msg.payload)
            return
        if isinstance(msg, SupervisorRequest):
            self._on_request(msg, sender)
            return
        handler = self._messages.get(type(msg))
        if handler is not None:
            handler(msg, sender)
        else:
            log(self.ctx.who, f"unexpected message {type(msg).__name__}")

    def _on_request(self, request: SupervisorRequest, sender: Any) -> None:
        handler = self._requests.get(type(request))
        if handler is None:
            error = ("RaError", f"unknown operation {type(request).__name__}", None)
            self.send(sender, SupResponse(request.req_id, None, error))
            return
        try:
            result = handler(request, sender)
        except errors.RaError as exc:
            self.send(sender, SupResponse(request.req_id, None, encode_error(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - answered, not raised: the caller waits
            log_exc(self.ctx.who, f"operation {type(request).__name__} failed")
            self.send(sender, SupResponse(request.req_id, None, ("RaError", f"{type(exc).__name__}: {exc}", None)))
            return
        if result is not DEFERRED:
            self.send(sender, SupResponse(request.req_id, result))

    # ================================================================ start
    def _on_init(self, msg: SupervisorInit, sender: Any) -> None:
        if self.started:
            self.send(sender, SupervisorReady(self.ctx.node, self.ctx.incarnation))
            return
        cfg = msg.cfg
        self.ctx.configure(cfg)
        self.health.policy = self.ctx.storage_policy
        self._create_counters()
        self.started = True
        self.init_reply = sender
        self.send(admin_address(*self.ctx.admin_hostport), RaRegisterSupervisor(self.ctx.node, self.ctx.incarnation))
        self.handleDeadLetters(True)
        try:
            self.registry.load(self.ctx.data_dir)
        except errors.LogCorruption as exc:
            # the node would forget servers: it refuses to start, naming the file
            self.send(sender, SupervisorReady(self.ctx.node, self.ctx.incarnation, error=str(exc)))
            self.init_reply = None
            return
        if cfg.get("services", True):
            for kind in self.services.kinds():
                self.services.start(kind)
        else:
            self._maybe_ready()
        self.detector.start(tuple(cfg["convention"]), [tuple(s) for s in cfg.get("seeds") or ()])
        self.wakeupAfter(self.ctx.settings["heartbeat_interval"], Tick())

    def _create_counters(self) -> None:
        """The node's counters file, new at every node start (module
        :mod:`ra_actors.metrics.block`); a node runs without one if it
        cannot be made."""
        from ..metrics.block import CountersFile
        from ..metrics.fields import SERVICE_COUNTERS
        from ..shell.server import SERVER_COUNTERS
        try:
            self.ctx.counters = CountersFile.create(self.ctx.data_dir, self.ctx.node, SERVER_COUNTERS,
                                                    SERVICE_COUNTERS)
        except Exception:  # noqa: BLE001 - counters are never worth the node
            log_exc(self.ctx.who, "no counters file: the node runs without counters")

    def _server_runs(self, name: str, incarnation: int) -> bool:
        child = self.supervision.servers.get(name)
        return child is not None and child.incarnation == incarnation and child.status in (RUNNING, STARTING)

    def _maybe_ready(self) -> None:
        """Once every storage service runs: tell node_main, bring servers back."""
        if self.init_reply is None or not self.services.all_running():
            return
        self.send(self.init_reply, SupervisorReady(self.ctx.node, self.ctx.incarnation))
        self.init_reply = None
        self.storage.node_up = True
        log(self.ctx.who, f"node {self.ctx.node} up (incarnation {self.ctx.incarnation})")
        self.supervision.recover_registered()

    def _on_service_ready(self, msg: ServiceReady, sender: Any) -> None:
        if self.ctx.counters is not None:
            from ..metrics.block import SERVICE_SLOTS, STATUS_RUNNING
            if msg.kind in SERVICE_SLOTS:     # (one WAL slot: the first WAL's)
                self.ctx.counters.set_service_status(msg.kind, STATUS_RUNNING)
        self.supervision.on_service_ready(msg, sender)
        self._maybe_ready()
        if self.init_reply is None:
            self.storage.maybe_settled()

    def _on_service_failed(self, msg: ServiceFailed, sender: Any) -> None:
        """A storage service cannot open the data.  While the node starts:
        fail the start with its error (e.g. ``corrupt: ...``) instead of
        restarting it in a loop.  Later (a reopen): a storage fault."""
        if self.init_reply is None and self.services.fatal is None:
            self.storage.on_service_failed(msg, sender)
            return
        self.services.mark_failed(msg)
        if self.init_reply is not None:
            self.send(self.init_reply, SupervisorReady(self.ctx.node, self.ctx.incarnation, error=msg.error))
            self.init_reply = None

    # =============================================================== wiring
    def _tick(self, tick: Tick) -> None:
        now = time.time()
        self.detector.tick(now)
        self.clients.check(now)
        self.wakeupAfter(self.ctx.settings["heartbeat_interval"], tick)

    def _node_up(self, node: str) -> None:
        self.supervision.to_servers(m.NodeEvent(node, True))

    def _node_down(self, node: str) -> None:
        self.supervision.to_servers(m.NodeEvent(node, False))
        self.monitors.node_down(node)

    def _on_child_exited(self, msg: ChildActorExited, sender: Any) -> None:
        child = self.children.pop_exited(msg.childAddress)
        if child is None:
            return
        prev, child.status = child.status, EXITED
        if self.ctx.exiting:
            return
        if child.kind == ACTOR_KIND:
            self.actors.exited(child, prev)
        elif child.kind == SERVER_KIND:
            self.supervision.server_exited(child, prev)
        elif self.services.fatal is None and self.services.is_current(child):
            # (a node that fails to start restarts nothing)
            self.storage.service_exited(child)

    def _on_dead_letter(self, msg: DeadEnvelope, sender: Any) -> None:
        # A message of one of our actors could not be delivered (connection
        # refused): a client there is gone; a server drops the stale address.
        self.clients.on_dead_letter(msg.deadAddress)
        self.supervision.on_dead_letter(msg)

    def _on_exit_request(self, msg: ActorExitRequest, sender: Any) -> None:
        self.ctx.exiting = True
        self.supervision.stopping_all()

    def _on_poison(self, msg: PoisonMessage, sender: Any) -> None:
        log(self.ctx.who, f"poison message returned: {msg.poisonMessage!r:.200}")

    def _on_bundle(self, msg: Bundle, sender: Any) -> None:
        """What the host's servers told us in one turn: each in order."""
        for inner in msg.msgs:
            if type(inner) is Bundle:
                log(self.ctx.who, "a bundle inside a bundle is dropped")
                continue
            self._route(inner, sender)

    # ============================================================= requests
    def _ping(self, request: PingRequest, sender: Any) -> tuple:
        return ("pong", self.ctx.node, self.ctx.incarnation)

    def _list_nodes(self, request: ListNodesRequest, sender: Any) -> dict[str, tuple]:
        return self.detector.table()

    def _wals_overview(self) -> list[dict[str, Any]]:
        """Each WAL of the node: its directory, the service that runs it
        (placement ``shared``: the host) and the servers writing to it."""
        out = []
        for k, wdir in enumerate(self.ctx.wal_dirs):
            kind = WAL if self.ctx.shared else wal_kind(k)
            child = self.services.get(kind)
            out.append({"wal": k, "dir": wdir, "service": kind, "status": child.status if child else None,
                        "servers": sorted(name for name, c in self.supervision.servers.items()
                                          if c.wal == k and c.status != EXITED)})
        return out

    def _overview(self, request: OverviewRequest, sender: Any) -> dict[str, Any]:
        return {
            "node": self.ctx.node,
            "incarnation": self.ctx.incarnation,
            "admin": self.ctx.admin_hostport,
            "data_dir": self.ctx.data_dir,
            "pid": os.getpid(),
            "servers": self.supervision.overview(),
            "nodes": self.detector.overview(),
            "clients": len(self.directory.clients),
            "services": self.services.overview(),
            "wals": self._wals_overview(),
            "storage": self.storage.overview(),
            "actors": self.actors.overview(),
            "leaderboard": self.leaderboard.overview(),
            "msgs_in": self.msgs_in,
            "refused": _refused_connections(),
        }
