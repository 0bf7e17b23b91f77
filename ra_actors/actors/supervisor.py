"""NodeSupervisor: the root of a node's actors (Ra's ``ra_system`` + aten).

Responsibilities:

* parent of every server actor on the node and of the node's shared actors
  (WAL, segment writer, snapshot writer); restarts a crashed child (a server
  recovers from disk; after a WAL restart every server resends what the WAL
  has not confirmed);
* the node directory: server name -> (address, incarnation, status), and the
  registry of client handles attached through this node; answers ``Lookup``
  from anyone, forwarding lookups for other nodes to their supervisors;
* monitors: ``Watch`` of a local server or client handle registers a
  watcher; its death becomes ``WatchDown`` to every watcher, on any node.
  Watches of remote targets are forwarded, and fire with ``noconnection``
  when the target's node goes down;
* failure detection: one heartbeat stream per node pair; ``NodeEvent`` up or
  down to every local server within ``node_down_after`` seconds;
* the client API's node-level operations (start/stop/restart/delete a
  server, check that a machine module imports, overview);
* parent of the actors clients start (``client.start_actor``), which
  machines can monitor and send to: :mod:`.user_actors` (a mixin).
"""
from __future__ import annotations

import importlib
import json
import os
import socket
import time
from collections import deque

from thespian.actors import (Actor, ActorExitRequest, ChildActorExited, DeadEnvelope,
                             PoisonMessage, WakeupMessage)
from thespian.system.transport import TransmitIntent

from ..core import messages as m
from ..core.types import ServerConfig, ServerId
from .. import errors
from .admin import RaRegisterSupervisor, RaSupervisorInfo, RaWhereIsSupervisor
from .protocol import (ClientInfo, Lookup, LookupReply, NodeHeartbeat, NodeHello, NodeInfo,
                       ServerCrash, ServerExited, ServerInit, ServerStarted, ServiceAddresses, ServiceInit,
                       ServiceFailed, ServiceReady, SegmentsWritten, StopServer,
                       SupervisorInit, SupervisorReady, SupRequest, SupResponse, Unwatch, Watch,
                       WatchDown)
from .user_actors import ActorRef, ActorSend, UserActorsMixin
from .util import admin_address, encode_error, is_client_handle, log, log_exc, target_node

DEFAULTS = {
    "heartbeat_interval": 0.4,    # seconds between heartbeats to each live node (3 per down verdict)
    "node_down_after": 1.2,       # silence before a node is declared down
    "probe_interval": 1.0,        # how often down/unknown nodes are probed
    "client_check_interval": 0.5,
    "max_restarts": 10,           # restart intensity: at most this many ...
    "restart_period": 10.0,       # ... within this many seconds
}

# _send_once: how long a heartbeat or probe may stay in flight before the next
# one to the same target goes anyway, in heartbeat / probe intervals.
HEARTBEAT_PATIENCE = 2   # a node believed up is declared down after 1.2 s anyway
PROBE_PATIENCE = 5       # down nodes, seeds: one probe per target per 5 s at most


PLACEMENTS = ("process", "shared")
"""``process``: one actor process per server (Ra's one Erlang process per
server).  ``shared``: one host actor per node carries every server of the
node and the node's WAL (:mod:`ra_actors.actors.host`)."""


class _Child:
    __slots__ = ("kind", "name", "local", "addr", "incarnation", "status", "config", "waiters",
                 "restarts", "watchers", "started_at", "exit_reason", "new")

    def __init__(self, kind, name, local):
        self.kind = kind          # "server" | "wal" | "segment_writer" | "snapshot_writer"
        self.name = name
        self.local = local        # address returned by createActor
        self.addr = None          # real address, once the child said hello
        self.incarnation = 0
        self.status = "starting"  # starting | running | stopping | deleting | exited
        self.config = None
        self.waiters = []         # (address, req_id) waiting for start/stop
        self.restarts = deque()
        self.watchers = []        # [(watcher, ref)]
        self.started_at = time.time()
        self.exit_reason = None
        self.new = False

    def matches(self, addr) -> bool:
        return (self.local is not None and self.local == addr) or (self.addr is not None and self.addr == addr)


class _Node:
    __slots__ = ("info", "up", "last_heard", "last_probe", "last_hb")

    def __init__(self, info):
        self.info = info
        self.up = False
        self.last_heard = 0.0
        self.last_probe = 0.0
        self.last_hb = 0.0


class NodeSupervisor(UserActorsMixin, Actor):
    @staticmethod
    def actorSystemCapabilityCheck(capabilities, requirements):
        return bool(requirements) and capabilities.get("ra_node") == requirements.get("ra_node")

    def __init__(self, capabilities=None, requirements=None):
        super().__init__()
        self.node = (requirements or {}).get("ra_node") or (capabilities or {}).get("ra_node")
        self.cfg = None
        self.started = False
        self.exiting = False
        self.fatal: str | None = None   # a service could not open the data
        self.children: list[_Child] = []
        self.servers: dict[str, _Child] = {}
        self.services: dict[str, _Child] = {}
        self.nodes: dict[str, _Node] = {}
        self.seeds: set = set()
        self.remote_watches: dict = {}   # target -> [(watcher, ref)]
        self.clients: dict[str, ClientInfo] = {}
        self.client_watchers: dict[str, list] = {}
        self.registry: dict = {}         # name -> {"uid", "stopped"}
        self.init_reply = None
        self.hostname = socket.gethostname()
        self.last_client_check = 0.0
        self.msgs_in = 0                 # Thespian messages received (not wakeups): bench's idle check
        self.in_flight: dict[str, float] = {}   # str(target) -> when its periodic send left
        self.in_flight_skips = 0         # periodic sends skipped: the previous one was in flight
        self.actors: dict = {}           # client-started actors: name -> _Child (user_actors)

    # ================================================================= entry
    def receiveMessage(self, msg, sender):
        if not isinstance(msg, WakeupMessage):
            self.msgs_in += 1
        try:
            self._dispatch(msg, sender)
        except Exception:  # never let one bad message kill the node's root
            log_exc(f"supervisor {self.node}", f"error handling {type(msg).__name__}")

    def _dispatch(self, msg, sender):
        if isinstance(msg, WakeupMessage):
            if msg.payload == "tick":
                self._tick()
                self.wakeupAfter(self.settings["heartbeat_interval"], "tick")
            elif isinstance(msg.payload, tuple) and msg.payload[0] == "restart":
                self._restart_child(msg.payload[1], msg.payload[2])
            elif isinstance(msg.payload, tuple) and msg.payload[0] == "restart_actor":
                self._restart_actor(msg.payload[1], msg.payload[2])
            return
        if isinstance(msg, NodeHeartbeat):
            self._heard(msg.node, msg.incarnation, sender)
            return
        handler = self._HANDLERS.get(type(msg))
        if handler is not None:
            handler(self, msg, sender)
        elif isinstance(msg, ActorExitRequest):
            self._on_exit_request()
        elif isinstance(msg, PoisonMessage):
            log(self.who, f"poison message returned: {msg.poisonMessage!r:.200}")
        else:
            log(self.who, f"unexpected message {type(msg).__name__}")

    @property
    def who(self):
        return f"supervisor {self.node}"

    # ================================================================= start
    def _on_init(self, msg: SupervisorInit, sender):
        if self.started:
            self.send(sender, SupervisorReady(self.node, self.incarnation))
            return
        self.cfg = cfg = msg.cfg
        self.node = cfg["name"]
        self.incarnation = int(cfg["incarnation"])
        self.data_dir = cfg["data_dir"]
        self.settings = dict(DEFAULTS)
        self.settings.update({k: v for k, v in (cfg.get("settings") or {}).items() if k in DEFAULTS})
        self.server_settings = dict(cfg.get("server_settings") or {})
        self.placement = cfg.get("placement") or "process"
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {self.placement!r}")
        self.admin_hostport = (cfg["host"], int(cfg["port"]))
        self.my_info = NodeInfo(self.node, self.incarnation, self.myAddress, self.admin_hostport)
        self.started = True
        self.init_reply = sender
        self.send(admin_address(*self.admin_hostport), RaRegisterSupervisor(self.node, self.incarnation))
        conv = tuple(cfg["convention"])
        if conv != self.admin_hostport:
            self.seeds.add(conv)
        for seed in cfg.get("seeds") or ():
            self.seeds.add(tuple(seed))
        for peer in self._load_peers():
            if tuple(peer) != self.admin_hostport:
                self.seeds.add(tuple(peer))
        self.handleDeadLetters(True)
        self._load_registry()
        if cfg.get("services", True):
            for kind in ("wal", "segment_writer", "snapshot_writer"):
                self._start_service(kind)
        else:
            self._maybe_ready()
        self._probe_seeds(force=True)
        self.wakeupAfter(self.settings["heartbeat_interval"], "tick")

    def _maybe_ready(self):
        if self.init_reply is None:
            return
        if any(c.status != "running" for c in self.services.values()):
            return
        self.send(self.init_reply, SupervisorReady(self.node, self.incarnation))
        self.init_reply = None
        log(self.who, f"node {self.node} up (incarnation {self.incarnation})")
        # Servers that were running before the node stopped come back.
        for name, rec in sorted(self.registry.items()):
            if not rec.get("stopped") and name not in self.servers:
                try:
                    config = self._read_config(rec["uid"])
                except Exception as exc:
                    log(self.who, f"cannot recover server {name}: {exc!r}")
                    continue
                self._start_server(config, new=False)

    # ---------------------------------------------------------- persistence
    def _path(self, name):
        return os.path.join(self.data_dir, name)

    def _load_registry(self):
        try:
            with open(self._path("node.servers.json")) as f:
                self.registry = json.load(f)
        except (OSError, ValueError):
            self.registry = {}

    def _save_registry(self):
        tmp = self._path("node.servers.json.tmp")
        with open(tmp, "w") as f:
            json.dump(self.registry, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path("node.servers.json"))

    def _load_peers(self):
        try:
            with open(self._path("node.peers.json")) as f:
                return [tuple(p) for p in json.load(f)]
        except (OSError, ValueError):
            return []

    def _save_peers(self):
        peers = sorted({tuple(n.info.admin) for n in self.nodes.values()} | set(self.seeds))
        try:
            tmp = self._path("node.peers.json.tmp")
            with open(tmp, "w") as f:
                json.dump(peers, f)
            os.replace(tmp, self._path("node.peers.json"))
        except OSError:
            pass

    def _read_config(self, uid: str) -> ServerConfig:
        from . import storage
        return storage.read_server_config(self.data_dir, uid)

    def _write_config(self, config: ServerConfig) -> None:
        from . import storage
        storage.create_server(self.data_dir, config)

    # ============================================================= children
    def _new_child(self, kind, name, cls):
        local = self.createActor(cls, {"ra_node": self.node})
        child = _Child(kind, name, local)
        self.children.append(child)
        return child

    def _find_child(self, addr):
        for c in self.children:
            if c.matches(addr):
                return c
        return None

    def _start_service(self, kind):
        from . import storage
        cls = {"wal": storage.WalActor, "segment_writer": storage.SegmentWriterActor,
               "snapshot_writer": storage.SnapshotWriterActor}[kind]
        if kind == "wal" and self.placement == "shared":
            from .host import HostActor
            cls = HostActor   # the host is the node's WAL and carries its servers
        old = self.services.get(kind)
        child = self._new_child(kind, kind, cls)
        if old is not None:
            child.restarts = old.restarts
            child.restarts.append(time.time())
        self.services[kind] = child
        self.send(child.local, ServiceInit(self.node, self.data_dir, dict(self.cfg.get("log") or {}),
                                                   self._service_addresses(partial=True)))

    def _service_addresses(self, partial=False, wal_restarted=False):
        def addr(kind):
            c = self.services.get(kind)
            return c.addr if c is not None and c.status == "running" else None
        return ServiceAddresses(addr("wal"), addr("segment_writer"), addr("snapshot_writer"), wal_restarted)

    def _on_service_ready(self, msg, sender):
        child = self.services.get(msg.kind)
        if child is None or not child.matches(sender):
            return
        child.addr = sender
        restarted = bool(child.restarts)
        child.status = "running"
        log(self.who, f"{msg.kind} running")
        addrs = self._service_addresses(wal_restarted=restarted and msg.kind == "wal")
        # every service and every server learns the current addresses
        for c in self.services.values():
            if c.status == "running":
                self.send(c.addr, addrs)
        if restarted and not (self.placement == "shared" and msg.kind == "wal"):
            self._to_servers(addrs)
        self._maybe_ready()

    def _on_service_failed(self, msg, sender):
        """A storage service cannot open the data: fail the node's start with
        its error (e.g. ``corrupt: ...``) instead of restarting it in a loop."""
        log(self.who, f"{msg.kind} failed: {msg.error}")
        self.fatal = msg.error
        if self.init_reply is not None:
            self.send(self.init_reply, SupervisorReady(self.node, self.incarnation, error=msg.error))
            self.init_reply = None

    def _start_server(self, config: ServerConfig, new: bool, waiter=None):
        name = config.server_id.name
        old = self.servers.get(name)
        if self.placement == "shared":
            # not a Thespian child of ours: a shell inside the node's host actor
            host = self.services["wal"]
            child = _Child("server", name, host.local)
            child.addr = host.addr
        else:
            from .server import ServerActor
            child = self._new_child("server", name, ServerActor)
        if old is not None:
            child.restarts = old.restarts
            child.watchers = old.watchers if old.status != "exited" else []
        child.config = config
        child.new = new
        # unique and increasing: in placement "shared" monitor refs and
        # timers are routed by it
        self.last_incarnation = max(time.time_ns() // 1000, getattr(self, "last_incarnation", 0) + 1)
        child.incarnation = self.last_incarnation
        if waiter:
            child.waiters.append(waiter)
        self.servers[name] = child
        self.send(child.addr or child.local, ServerInit(config, child.incarnation, self.incarnation, self.myAddress,
                                          self._service_addresses(), self.data_dir,
                                          dict(self.server_settings),
                                          tuple(n for n, st in self.nodes.items() if not st.up), new))

    def _on_server_started(self, msg: ServerStarted, sender):
        child = self.servers.get(msg.name)
        if child is None or not child.matches(sender) or msg.incarnation != child.incarnation:
            return
        if msg.error:
            child.exit_reason = msg.error
            log(self.who, f"server {msg.name} failed to start: {msg.error}")
            for who, req in child.waiters:
                self.send(who, SupResponse(req, None, msg.error))
            child.waiters = []
            # it exits by itself; do not restart it.  A server that never ran
            # leaves nothing behind.
            child.status = "deleting" if child.new else "stopping"
            return
        child.addr = sender
        child.status = "running"
        for who, req in child.waiters:
            self.send(who, SupResponse(req, ("ok", msg.incarnation)))
        child.waiters = []

    def _on_child_exited(self, msg: ChildActorExited, sender):
        child = self._find_child(msg.childAddress)
        if child is None:
            return
        self.children.remove(child)
        prev = child.status
        child.status = "exited"
        if self.exiting:
            return
        if child.kind == "actor":        # started by a client (user_actors)
            self._actor_exited(child, prev)
            return
        if child.kind != "server":
            if self.fatal is not None:
                return  # the node is failing to start; do not loop
            if self.services.get(child.kind) is child:
                log(self.who, f"{child.kind} exited: restarting it")
                if child.kind == "wal" and self.placement == "shared":
                    # the host died with every server in it: restart the
                    # host, then each server (monitors see Down first)
                    self._start_service(child.kind)
                    for s in list(self.servers.values()):
                        if s.status != "exited":
                            s_prev, s.status = s.status, "exited"
                            self._server_gone(s, s_prev)
                    return
                if child.kind == "wal":
                    self._to_servers(ServiceAddresses(None, None, None, False))
                self._start_service(child.kind)
            return
        if self.servers.get(child.name) is not child:
            return
        self._server_gone(child, prev)

    def _on_server_exited(self, msg, sender):
        """Placement ``shared``: a server left the host (stopped, failed to
        start, or crashed): the same as a server process's exit."""
        child = self.servers.get(msg.name)
        if child is None or child.status == "exited":
            return
        if msg.incarnation and msg.incarnation != child.incarnation:
            return
        if msg.crashed:
            child.exit_reason = msg.reason
        prev, child.status = child.status, "exited"
        if self.exiting:
            return
        self._server_gone(child, prev)

    def _to_servers(self, msg):
        """``msg`` to every running server: once to the host in placement
        ``shared`` (it hands it to each of its servers)."""
        if self.placement == "shared":
            host = self.services.get("wal")
            if host is not None and host.status == "running":
                self.send(host.addr, msg)
            return
        for s in self.servers.values():
            if s.status == "running":
                self.send(s.addr, msg)

    def _server_gone(self, child, prev):
        reason = child.exit_reason or ("normal" if prev in ("stopping", "deleting") else "killed")
        self._fire_down(ServerId(child.name, self.node), child.watchers, reason)
        child.watchers = []
        for who, req in child.waiters:
            if prev in ("stopping", "deleting"):
                self.send(who, SupResponse(req, ("ok", None)))
            else:
                self.send(who, SupResponse(req, None, ("NoSuchServer", f"{child.name} exited during start", None)))
        child.waiters = []
        if prev == "deleting":
            self._delete_server_data(child.name)
            return
        if prev == "stopping":
            return
        if prev == "starting" and child.exit_reason:
            return
        # crashed: restart within the intensity limit
        now = time.time()
        while child.restarts and now - child.restarts[0] > self.settings["restart_period"]:
            child.restarts.popleft()
        if len(child.restarts) >= self.settings["max_restarts"]:
            log(self.who, f"server {child.name} crashed too often; not restarting it")
            return
        child.restarts.append(now)
        delay = 0.0 if len(child.restarts) <= 1 else min(1.0, 0.05 * 2 ** len(child.restarts))
        log(self.who, f"server {child.name} exited ({reason}); restarting in {delay:.2f}s")
        if delay:
            self.wakeupAfter(delay, ("restart", child.name, id(child)))
        else:
            self._restart_child(child.name, id(child))

    def _restart_child(self, name, child_id):
        child = self.servers.get(name)
        if child is None or id(child) != child_id or child.status != "exited":
            return
        rec = self.registry.get(name)
        if rec is None or rec.get("stopped"):
            return
        self._start_server(child.config, new=False)

    def _on_segments_written(self, msg, sender):
        if self.placement == "shared":
            self._to_servers(msg)    # the host routes each uid's refs
            return
        by_uid = {rec["uid"]: name for name, rec in self.registry.items()}
        for uid, refs in msg.segments.items():
            child = self.servers.get(by_uid.get(uid))
            if child is not None and child.status == "running":
                self.send(child.addr, type(msg)({uid: refs}))

    def _on_server_crash(self, msg: ServerCrash, sender):
        child = self.servers.get(msg.name)
        if child is not None and child.matches(sender):
            child.exit_reason = msg.reason

    def _on_exit_request(self):
        self.exiting = True
        for c in self.servers.values():
            if c.status in ("running", "starting"):
                c.status = "stopping"

    # ================================================================ nodes
    def _tick(self):
        now = time.time()
        hb = NodeHeartbeat(self.node, self.incarnation)
        hb_patience = HEARTBEAT_PATIENCE * self.settings["heartbeat_interval"]
        probe_patience = PROBE_PATIENCE * self.settings["probe_interval"]
        changed = False
        for name, st in list(self.nodes.items()):
            if st.up and now - st.last_heard > self.settings["node_down_after"]:
                st.up = False
                changed = True
                self._node_down(name, "timeout")
            # at most one heartbeat / probe in flight per target (_send_once)
            if st.up:
                if self._send_once(st.info.sup, hb, hb_patience):
                    st.last_hb = now
            elif now - st.last_probe >= self.settings["probe_interval"]:
                st.last_probe = now
                self._send_once(st.info.sup, hb, probe_patience)
                self._send_once(admin_address(*st.info.admin), RaWhereIsSupervisor(self.node),
                                probe_patience)
        self._probe_seeds()
        if now - self.last_client_check >= self.settings["client_check_interval"]:
            self.last_client_check = now
            self._check_clients()
        if changed:
            self._save_peers()

    def _probe_seeds(self, force=False):
        known = {tuple(n.info.admin) for n in self.nodes.values()}
        now = time.time()
        if not force and now - getattr(self, "_last_seed_probe", 0.0) < self.settings["probe_interval"]:
            return
        self._last_seed_probe = now
        for seed in self.seeds:
            if seed not in known and seed != self.admin_hostport:
                self._send_once(admin_address(*seed), RaWhereIsSupervisor(self.node),
                                PROBE_PATIENCE * self.settings["probe_interval"])

    def _send_once(self, addr, msg, patience: float) -> bool:
        """Send a periodic message (heartbeat, probe) to ``addr`` unless the
        previous one to that target is still in flight and was sent less than
        ``patience`` seconds ago; return whether it sent.

        Thespian sends to one target at a time, and a transmit to a silent
        node (SIGSTOPped, partitioned) completes only when it times out
        (``THESPIAN_TRANSMIT_TIMEOUT_PERIOD``, 20 s): heartbeats every 0.2 s
        and probes every second would pile up behind it, about 50 intents per
        silent node, each costing memory and work in every pass of the
        process's select loop (and, with Thespian's default of 20 pending
        transmits, blocking every other send: see ``node_main``).  A skipped
        message loses nothing: it would only have waited behind the one in
        flight.  A transmit to a live node completes in about a millisecond
        and one to a dead port (connection refused) at once, so failure
        detection and NodeUp keep their timing.

        ``patience`` bounds the wait because Thespian can also leave a
        transmit to a *live* node pending until its timeout: when the
        connection breaks under it, it retries only after 35 s, while new
        transmits to that target go out on a fresh connection.  Heartbeats to
        a node believed up therefore wait at most ``HEARTBEAT_PATIENCE``
        intervals (the node is declared down after 1.2 s anyway), probes
        ``PROBE_PATIENCE`` probe intervals: a silent node gets a few
        messages per transmit timeout instead of about fifty.

        In flight means "Thespian has not completed the transmit".
        ``Actor.send`` takes no completion callbacks, so this goes one level
        down, to the actor manager's ``_send_intent`` with a
        ``TransmitIntent`` (the client endpoint in ``api.py`` builds its own
        intents too), keeping ``actor_send_fail`` as the error callback so
        dead letters work as for ``self.send``."""
        key = str(addr)
        now = time.time()
        since = self.in_flight.get(key)
        if since is not None and now - since < patience:
            self.in_flight_skips += 1
            return False
        mgr = getattr(self, "_myRef", None)
        send_intent = getattr(mgr, "_send_intent", None)
        send_fail = getattr(mgr, "actor_send_fail", None)
        if send_intent is None or send_fail is None:  # another Thespian: no callbacks
            self.send(addr, msg)
            return True
        self.in_flight[key] = now

        def done(result, intent):
            if self.in_flight.get(key) == now:
                del self.in_flight[key]

        def failed(result, intent):
            done(result, intent)
            send_fail(result, intent)

        send_intent(TransmitIntent(addr, msg, onSuccess=done, onError=failed))
        return True

    def _on_supervisor_info(self, msg: RaSupervisorInfo, sender):
        if msg.node is None or msg.node == self.node or msg.address is None:
            return
        st = self.nodes.get(msg.node)
        if st is not None and st.up and st.info.incarnation == msg.incarnation:
            return
        self.send(msg.address, NodeHello(self.my_info, self._known(), reply=True))

    def _known(self):
        return tuple(n.info for n in self.nodes.values())

    def _on_hello(self, msg: NodeHello, sender):
        info = msg.info
        if info.name == self.node:
            return
        info = NodeInfo(info.name, info.incarnation, sender, tuple(info.admin))
        st = self.nodes.get(info.name)
        if st is None or st.info.incarnation != info.incarnation:
            self._register_node(info)
        else:
            self._heard(info.name, info.incarnation, sender)
        if msg.reply:
            self.send(sender, NodeHello(self.my_info, self._known(), reply=False))
        for other in msg.known:
            if other.name != self.node and other.name not in self.nodes:
                self._send_once(admin_address(*other.admin), RaWhereIsSupervisor(self.node),
                                PROBE_PATIENCE * self.settings["probe_interval"])

    def _register_node(self, info: NodeInfo):
        st = self.nodes.get(info.name)
        if st is not None and st.up and st.info.incarnation != info.incarnation:
            # restarted faster than we noticed: its processes are gone
            st.up = False
            self._node_down(info.name, "restarted")
        if st is None:
            st = self.nodes[info.name] = _Node(info)
        st.info = info
        self._save_peers()
        self._heard(info.name, info.incarnation, info.sup)

    def _heard(self, node, incarnation, sender):
        st = self.nodes.get(node)
        if st is None or st.info.incarnation != incarnation:
            if node != self.node:
                # unknown node or a new incarnation: ask it to introduce itself
                self.send(sender, NodeHello(self.my_info, self._known(), reply=True))
            return
        st.last_heard = time.time()
        if not st.up:
            st.up = True
            log(self.who, f"node {node} up")
            self._publish(m.NodeEvent(node, True))

    def _node_down(self, node, why):
        log(self.who, f"node {node} down ({why})")
        self._publish(m.NodeEvent(node, False))
        for target in [t for t in self.remote_watches if target_node(t) == node]:
            self._fire_down(target, self.remote_watches.pop(target), "noconnection")

    def _publish(self, event):
        self._to_servers(event)

    # ============================================================ directory
    def _on_lookup(self, msg: Lookup, sender):
        reply_to = msg.reply_to or sender
        key = msg.key
        node = target_node(key)
        if node == self.node:
            self.send(reply_to, self._local_lookup(key, msg.req))
            return
        st = self.nodes.get(node)
        if st is None or not st.up:
            self.send(reply_to, LookupReply(key, None, 0, msg.req, "nodedown" if st else "unknown"))
            return
        self.send(st.info.sup, Lookup(key, msg.req, reply_to))

    def _local_lookup(self, key, req):
        if isinstance(key, ActorRef):
            return self._lookup_actor(key, req)
        if is_client_handle(key):
            c = self.clients.get(key)
            return LookupReply(key, c.address if c else None, 0, req, "running" if c else "unknown")
        child = self.servers.get(key[0])
        if child is not None and child.status == "running":
            return LookupReply(key, child.addr, child.incarnation, req, "running",
                               host=self.placement == "shared")
        rec = self.registry.get(key[0])
        if rec is None:
            status = "unknown"
        elif rec.get("stopped"):
            status = "stopped"
        else:
            status = "starting"   # (re)starting, or crashed and waiting for a restart
        return LookupReply(key, None, 0, req, status)

    # ============================================================= monitors
    def _on_watch(self, msg: Watch, sender):
        target = msg.target
        node = target_node(target)
        if node == self.node:
            if is_client_handle(target):
                if target in self.clients:
                    self.client_watchers.setdefault(target, []).append((msg.watcher, msg.ref))
                else:
                    self.send(msg.watcher, WatchDown(target, "noproc", msg.ref))
                return
            if isinstance(target, ActorRef):
                self._watch_actor(msg)
                return
            child = self.servers.get(target[0])
            if child is None or child.status not in ("running", "starting"):
                self.send(msg.watcher, WatchDown(ServerId(*target), "noproc", msg.ref))
            else:
                child.watchers.append((msg.watcher, msg.ref))
            return
        st = self.nodes.get(node)
        if st is None or not st.up:
            self.send(msg.watcher, WatchDown(target, "noconnection", msg.ref))
            return
        self.remote_watches.setdefault(target, []).append((msg.watcher, msg.ref))
        self.send(st.info.sup, msg)

    def _on_unwatch(self, msg: Unwatch, sender):
        target = msg.target
        node = target_node(target)
        key = (msg.watcher, msg.ref)

        def _drop(lst):
            return [w for w in lst if not (w[0] == key[0] and w[1] == key[1])]

        if node == self.node:
            if is_client_handle(target):
                if target in self.client_watchers:
                    self.client_watchers[target] = _drop(self.client_watchers[target])
            elif isinstance(target, ActorRef):
                self._unwatch_actor(msg)
            else:
                child = self.servers.get(target[0])
                if child is not None:
                    child.watchers = _drop(child.watchers)
            return
        if target in self.remote_watches:
            self.remote_watches[target] = _drop(self.remote_watches[target])
            if not self.remote_watches[target]:
                del self.remote_watches[target]
        st = self.nodes.get(node)
        if st is not None and st.up:
            self.send(st.info.sup, msg)

    def _fire_down(self, target, watchers, reason):
        for watcher, ref in watchers:
            self.send(watcher, WatchDown(target, reason, ref))

    # ============================================================== clients
    def _check_clients(self):
        if not self.clients:
            return
        import psutil
        for handle, info in list(self.clients.items()):
            alive = True
            if info.host == self.hostname:
                try:
                    p = psutil.Process(info.pid)
                    alive = p.status() != psutil.STATUS_ZOMBIE and (
                        info.create_time is None or abs(p.create_time() - info.create_time) < 0.01)
                except psutil.Error:
                    alive = False
            else:
                alive = _tcp_alive(info.address)
            if not alive:
                self._client_gone(handle, "noproc")

    def _client_gone(self, handle, reason):
        self.clients.pop(handle, None)
        log(self.who, f"client {handle} is gone ({reason})")
        self._fire_down(handle, self.client_watchers.pop(handle, []), reason)

    # ========================================================== dead letters
    def _on_dead_letter(self, msg: DeadEnvelope, sender):
        # A message of one of our actors could not be delivered (connection
        # refused).  If it was for a client, the client is gone; if a server
        # sent it, the server drops the stale address from its cache.
        target = msg.deadAddress
        for handle, info in list(self.clients.items()):
            if info.address == target:
                self._client_gone(handle, "noproc")
        inner = msg.deadMessage
        from .protocol import Rpcs
        if isinstance(inner, Rpcs):
            child = self.servers.get(ServerId(*inner.from_).name)
            if child is not None and child.status == "running":
                self.send(child.addr, DeadEnvelope(target, None))

    # ============================================================= requests
    def _on_request(self, msg: SupRequest, sender):
        op = getattr(self, "_op_" + msg.op, None)
        if op is None:
            self.send(sender, SupResponse(msg.req_id, None, ("RaError", f"unknown operation {msg.op!r}", None)))
            return
        try:
            result = op(sender, msg.req_id, *msg.args)
        except errors.RaError as exc:
            self.send(sender, SupResponse(msg.req_id, None, encode_error(exc)))
            return
        except Exception as exc:  # noqa: BLE001
            log_exc(self.who, f"operation {msg.op} failed")
            self.send(sender, SupResponse(msg.req_id, None, ("RaError", f"{type(exc).__name__}: {exc}", None)))
            return
        if result is not _DEFER:
            self.send(sender, SupResponse(msg.req_id, result))

    def _op_ping(self, sender, req):
        return ("pong", self.node, self.incarnation)

    def _op_nodes(self, sender, req):
        """Every node this supervisor knows: {name: (sup address, admin, up)}."""
        out = {self.node: (self.myAddress, self.admin_hostport, True)}
        for name, st in self.nodes.items():
            out[name] = (st.info.sup, st.info.admin, st.up)
        return out

    def _op_register_client(self, sender, req, handle, pid, host, create_time):
        self.clients[handle] = ClientInfo(handle, sender, pid, host, create_time, time.time())
        return ("ok", handle)

    def _op_unregister_client(self, sender, req, handle):
        if handle in self.clients:
            self.clients.pop(handle)
            self._fire_down(handle, self.client_watchers.pop(handle, []), "normal")
        return ("ok", None)

    def _op_check_machine(self, sender, req, module):
        from ..core.machine import Machine
        try:
            Machine(load_machine(module))
        except Exception as exc:  # noqa: BLE001
            raise errors.MachineError(f"node {self.node}: machine {module!r} cannot be loaded: "
                                      f"{type(exc).__name__}: {exc}") from None
        return ("ok", None)

    def _op_start_server(self, sender, req, config: ServerConfig):
        name = config.server_id.name
        if ServerId(*config.server_id).node != self.node:
            raise errors.RaError(f"server {config.server_id} does not belong to node {self.node}")
        if name in self.servers and self.servers[name].status in ("running", "starting", "stopping", "deleting"):
            raise errors.ServerAlreadyExists(f"server {name} already runs on node {self.node}")
        if name in self.registry:
            raise errors.ServerAlreadyExists(f"server {name} already has data on node {self.node}")
        self._op_check_machine(sender, req, config.machine)
        self._write_config(config)
        self.registry[name] = {"uid": config.uid, "stopped": False}
        self._save_registry()
        self._start_server(config, new=True, waiter=(sender, req))
        return _DEFER

    def _op_restart_server(self, sender, req, name):
        rec = self.registry.get(name)
        if rec is None:
            raise errors.NoSuchServer(f"no server {name} on node {self.node}")
        child = self.servers.get(name)
        if child is not None and child.status in ("running", "starting"):
            return ("ok", child.incarnation)
        if child is not None and child.status in ("stopping", "deleting"):
            raise errors.RaError(f"server {name} on node {self.node} is {child.status}")
        if rec.get("stopped"):
            rec["stopped"] = False
            self._save_registry()
        config = child.config if child is not None else self._read_config(rec["uid"])
        if child is not None:
            child.restarts.clear()
        self._start_server(config, new=False, waiter=(sender, req))
        return _DEFER

    def _op_stop_server(self, sender, req, name):
        rec = self.registry.get(name)
        if rec is None:
            raise errors.NoSuchServer(f"no server {name} on node {self.node}")
        rec["stopped"] = True
        self._save_registry()
        child = self.servers.get(name)
        if child is None or child.status == "exited":
            return ("ok", None)
        if child.status != "deleting":
            child.status = "stopping"
        child.waiters.append((sender, req))
        self.send(child.local if child.addr is None else child.addr, StopServer(delete=False, name=name))
        return _DEFER

    def _op_force_delete_server(self, sender, req, name):
        child = self.servers.get(name)
        if child is not None and child.status != "exited":
            child.status = "deleting"
            child.waiters.append((sender, req))
            self.send(child.local if child.addr is None else child.addr, StopServer(delete=True, name=name))
            return _DEFER
        if name not in self.registry:
            raise errors.NoSuchServer(f"no server {name} on node {self.node}")
        self._delete_server_data(name)
        return ("ok", None)

    def _op_server_deleted(self, sender, req, name):
        """A server applied DeleteCluster: it exits, then its data goes."""
        child = self.servers.get(name)
        if child is not None and child.matches(sender):
            child.status = "deleting"
            rec = self.registry.get(name)
            if rec is not None:
                rec["stopped"] = True
                self._save_registry()
        return ("ok", None)

    def _op_server_removed(self, sender, req, name):
        """A leader's own removal committed (core effect ``StopServer``): it
        exits and stays stopped, keeping its data, as Ra's removed leader."""
        child = self.servers.get(name)
        if child is not None and child.matches(sender):
            child.status = "stopping"
            rec = self.registry.get(name)
            if rec is not None:
                rec["stopped"] = True
                self._save_registry()
        return ("ok", None)

    def _delete_server_data(self, name):
        rec = self.registry.pop(name, None)
        self._save_registry()
        self.servers.pop(name, None)
        if rec is not None:
            from . import storage
            from .protocol import ForgetServer
            wal = self.services.get("wal")
            if wal is not None and wal.status == "running":
                self.send(wal.addr, ForgetServer(rec["uid"]))
            try:
                storage.delete_server_data(self.data_dir, rec["uid"])
            except Exception:  # noqa: BLE001
                log_exc(self.who, f"could not delete the data of {name}")
        log(self.who, f"server {name} deleted")

    def _op_overview(self, sender, req):
        servers = {}
        for name, rec in self.registry.items():
            child = self.servers.get(name)
            servers[name] = {
                "uid": rec["uid"],
                "status": child.status if child is not None else ("stopped" if rec.get("stopped") else "exited"),
                "incarnation": child.incarnation if child is not None else 0,
                "restarts": len(child.restarts) if child is not None else 0,
            }
        return {
            "node": self.node,
            "incarnation": self.incarnation,
            "admin": self.admin_hostport,
            "data_dir": self.data_dir,
            "pid": os.getpid(),
            "servers": servers,
            "nodes": {n: ("up" if st.up else "down") for n, st in self.nodes.items()},
            "clients": len(self.clients),
            "services": {k: c.status for k, c in self.services.items()},
            "actors": self._actors_overview(),
            "msgs_in": self.msgs_in,
        }

    def _op_servers(self, sender, req):
        return {name: (c.addr, c.incarnation, c.status) for name, c in self.servers.items()}

    _HANDLERS = {
        SupervisorInit: _on_init,
        NodeHello: _on_hello,
        RaSupervisorInfo: _on_supervisor_info,
        Lookup: _on_lookup,
        Watch: _on_watch,
        Unwatch: _on_unwatch,
        SupRequest: _on_request,
        ServerStarted: _on_server_started,
        ServerCrash: _on_server_crash,
        ServiceReady: _on_service_ready,
        ServiceFailed: _on_service_failed,
        SegmentsWritten: _on_segments_written,
        ChildActorExited: _on_child_exited,
        ServerExited: _on_server_exited,
        DeadEnvelope: _on_dead_letter,
        ActorSend: UserActorsMixin._on_actor_send,
    }


class _Defer:
    pass


_DEFER = _Defer()


def load_machine(path: str):
    """Import a machine by path: ``"pkg.module"`` or ``"pkg.module:Class"``."""
    mod_name, _, attr = path.partition(":")
    module = importlib.import_module(mod_name)
    if attr:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj() if isinstance(obj, type) else obj
    return module


def _tcp_alive(address) -> bool:
    try:
        host, port = address.addressDetails.sockname[:2]
    except Exception:
        return True
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect((host, port))
        return True
    except ConnectionRefusedError:
        return False
    except OSError:
        return True
    finally:
        s.close()
