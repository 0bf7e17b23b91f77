"""The server actor (Ra's ``ra_server_proc``): one per Raft server.

It hosts the pure core (:class:`ra_actors.core.server.RaftServer`) and
carries out its effects:

* RPCs are batched per peer per round (one Thespian message per peer for
  everything one ``handle`` produced), addressed by ``ServerId`` and
  incarnation; addresses come from the node supervisors' directories and
  are cached (refreshed when a message from the peer shows a new address, on
  a dead letter, and when the peer's node comes back).  A message for an
  older incarnation of this server is dropped and answered with an empty
  envelope so the sender refreshes its cache.  Peers that do not answer get
  at most ``max_unanswered`` messages queued; peers on a node that is down
  get none (Raft retries).
* Log appends of one round go to the node's WAL actor as one message; the
  WAL answers once per sync.  Meta (term, vote) is written synchronously
  before anything of the round is sent.
* Timers use ``wakeupAfter`` with epochs (a Thespian wakeup cannot be
  cancelled): a wakeup whose epoch is not current is ignored.
* Snapshots are written by the node's snapshot writer and sent to lagging
  followers in chunks of at most 1 MiB.
* Machine effects: ``SendMsg``, ``ModCall``, ``Monitor``/``Demonitor``
  (servers, client handles, nodes), ``Timer``, ``Aux``; leader-only ones
  run only on the leader.  Monitors are dropped when leadership is lost
  (the machine re-establishes them in ``state_enter``).

Any exception out of the core is a crash: the actor exits and its supervisor
restarts it; the new incarnation recovers from disk.
"""
from __future__ import annotations

import functools
import importlib
import os
import random
import time
from collections import deque

from thespian.actors import (Actor, ActorExitRequest, ActorAddress, ChildActorExited, DeadEnvelope,
                             PoisonMessage, WakeupMessage)

from .. import codec
from .. import events as ev
from ..core import effects as fx
from ..core import messages as m
from ..core.machine import Machine
from ..core.server import RaftServer
from ..core.types import LEADER, AfterLogAppend, AwaitConsensus, NoReply, NotifyReply, ServerId
from .protocol import (Bundle, ClientCall, ClientReply, Forwarded, Lookup, LookupReply, Misdelivered,
                       Pipeline, Rpcs, SegmentsWritten,
                       ServerCrash, ServerInit, ServerStarted, ServiceAddresses, SnapshotDone,
                       SnapshotWrite, StopServer, StreamOffer, SupRequest, SupResponse, Unwatch, WalResult,
                       WalWrite, Watch, WatchDown)
from .util import encode_error, is_client_handle, log, log_exc, now_ms

SERVER_DEFAULTS = {
    "election_timeout_ms": (1000, 2000),     # "long": no leader known
    "election_short_ms": (80, 300),          # "short": the leader is known to be gone
    "tick_ms": 1000,                         # leader tick (resends, machine tick): Ra's tick_timeout
    "max_unanswered": 256,                   # messages queued to a silent peer
    "peer_silence_s": 5.0,                   # re-resolve a peer silent this long
    "last_applied_every_ms": 200,
}


# RA_ACTORS_TRACE=1 in a node's environment logs every message a server gets.
_TRACE = bool(os.environ.get("RA_ACTORS_TRACE"))


UNSAFE_BUGS_ENV = "RA_ACTORS_UNSAFE_BUGS"


_LEADING = ("leader", "await_condition", "terminating_leader")


def unsafe_bugs() -> frozenset:
    """Deliberate core bugs named in ``$RA_ACTORS_UNSAFE_BUGS`` (comma
    separated).  Only the Jepsen harness sets it, to prove it catches them;
    an unknown name makes the server refuse to start."""
    raw = os.environ.get(UNSAFE_BUGS_ENV, "")
    return frozenset(b.strip() for b in raw.split(",") if b.strip())


def _brief(msg):
    if isinstance(msg, Rpcs):
        return " ".join(type(r).__name__ for r in msg.rpcs)
    if isinstance(msg, WalResult):
        return repr(msg.msgs)[:80]
    return ""


def resolve_function(name: str):
    """``"pkg.mod:fun"`` -> the function (queries and ModCall name functions)."""
    if callable(name):
        return name
    mod_name, sep, attr = str(name).partition(":")
    if not sep or not attr:
        raise ValueError(f"function names are 'module:function', got {name!r}")
    obj = importlib.import_module(mod_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{name} is not callable")
    return obj


def _query(fun, args, state):
    return fun(state, *args)


class _Peer:
    __slots__ = ("address", "incarnation", "unanswered", "last_heard", "dropped")

    def __init__(self, address=None, incarnation=0):
        self.address = address
        self.incarnation = incarnation
        self.unanswered = 0
        self.last_heard = time.time()
        self.dropped = 0


class ServerShell:
    """One Raft server's runtime: the core, its store, peers, timers and the
    interpretation of effects.  It is not an actor itself: a *port* (the
    actor that hosts it) gives it ``send``, ``wakeup``, its address, and what
    to do on exit and on a crash.  :class:`ServerActor` hosts one shell per
    OS process; :class:`ra_actors.actors.host.HostActor` hosts many
    (placement mode ``shared``), each still its own ``ServerId``."""

    def __init__(self, port):
        self.port = port
        self.core = None
        self.id = None
        self.uid = None
        self.incarnation = 0
        self.supervisor = None
        self.exiting = False
        self.closed = False
        self._queue = deque()
        self._busy = False
        self.msgs_in = 0        # Thespian messages received (not wakeups): bench's idle check

    # ------------------------------------------------------------ port glue
    def send(self, addr, msg):
        self.port.send(addr, msg)

    def wakeupAfter(self, delay, payload):
        self.port.shell_wakeup(self, delay, payload)

    @property
    def myAddress(self):
        return self.port.myAddress

    def _exit_self(self, reason="normal"):
        """Stop this server (the port removes it; the supervisor is told)."""
        self.port.shell_exit(self, reason)

    # ================================================================ entry
    def receive(self, msg, sender):
        if type(msg) is not WakeupMessage:
            self.msgs_in += 1
        if _TRACE:
            log(self.who, f"<- {type(msg).__name__} {_brief(msg)}")
        try:
            self._dispatch(msg, sender)
        except SystemExit:
            raise
        except BaseException as exc:  # a crash: exit, the supervisor restarts us
            log_exc(self.who, f"crash while handling {type(msg).__name__}")
            self._crash(f"{type(exc).__name__}: {exc}")

    @property
    def who(self):
        return f"server {self.id.name if self.id else '?'}"

    def _crash(self, reason):
        self.port.shell_crash(self, reason)

    def _dispatch(self, msg, sender):
        if isinstance(msg, ServerInit):
            self._on_init(msg, sender)
            return
        if self.core is None:
            if isinstance(msg, ActorExitRequest):
                return
            if isinstance(msg, ClientCall):
                self.send(sender, ClientReply(msg.req_id, ("error", "starting"), None))
            return
        handler = self._HANDLERS.get(type(msg))
        if handler is not None:
            handler(self, msg, sender)
            return
        if isinstance(msg, m.NodeEvent):
            self._on_node_event(msg)
        elif isinstance(msg, ActorExitRequest):
            self._on_exit()
        elif isinstance(msg, PoisonMessage):
            log(self.who, f"poison message returned: {str(msg.poisonMessage)[:200]}")
        elif isinstance(msg, ChildActorExited):
            pass
        else:
            log(self.who, f"unexpected message {type(msg).__name__}")

    # ================================================================= init
    def _on_init(self, msg: ServerInit, sender):
        if self.core is not None:
            return
        from . import storage
        self.supervisor = msg.supervisor
        self.config = msg.config
        self.id = ServerId(*msg.config.server_id)
        self.uid = msg.config.uid
        self.incarnation = msg.incarnation
        self.settings = dict(SERVER_DEFAULTS)
        self.settings.update({k: v for k, v in (msg.settings or {}).items() if k in SERVER_DEFAULTS})
        self.data_dir = msg.data_dir
        self.wal = msg.services.wal
        self.snapshot_writer = msg.services.snapshot_writer
        self.segment_writer = msg.services.segment_writer
        self.peers: dict[ServerId, _Peer] = {}
        self.nodes_down = set(msg.nodes_down)
        self.pending_out: dict = {}       # key -> [messages] awaiting a lookup
        self.lookups: dict = {}           # key -> time of the lookup request
        self.clients: dict = {}           # handle -> address
        self.outbox: dict = {}            # ServerId -> [rpc] (this round)
        self.forwards: dict = {}          # ServerId -> [Command] (this round)
        self.wal_appends: list = []       # encoded appends of this round
        self.unsent_wal: list = []        # appends waiting for a WAL
        self.epochs = {"election": 0, "await": 0, "tick": 0}
        self.ticking = False
        self.role = None
        self.leader = None
        self.term = 0
        self.core_watch = {}              # ServerId -> ref
        self.machine_watch = {}           # target -> ref
        self.watch_refs = {}              # ref -> ("core"|"machine", target)
        self.node_monitors = set()
        self.machine_timers = {}          # name -> epoch
        self.aux_state = None
        self.snapshot_cache = None        # (meta, bytes)
        self.pending_snapshots = {}
        self.last_applied_written = 0
        self.last_applied_due = None
        self.la_timer = False
        self.ref_counter = 0
        self.stats = {"commands": 0, "rpcs_in": 0, "rpcs_out": 0, "wal_writes": 0,
                      "snapshot_chunks_in": 0, "snapshot_chunks_out": 0, "snapshots_written": 0}
        try:
            impl = load_machine(self.config.machine)
            machine = Machine(impl)
            self.machine_impl = impl
            self.store = storage.ServerStore(self.data_dir, self.uid, new=bool(msg.new))
            recovered = self.store.recover()
            self.core = RaftServer(self.config, machine, recovered, bugs=unsafe_bugs())
        except Exception as exc:  # noqa: BLE001
            log_exc(self.who, "start failed")
            from ..errors import RaError
            err = exc if isinstance(exc, RaError) else _machine_error(self.config.machine, exc)
            self.send(sender, ServerStarted(self.id.name, self.incarnation, encode_error(err)))
            self.core = None
            self._exit_self(f"start failed: {err}")
            return
        self.last_applied_written = self.core.last_applied
        if self.core.snapshot_meta is not None:
            try:
                self.snapshot_cache = (self.core.snapshot_meta, self.store.snapshot_bytes(self.core.snapshot_meta))
            except Exception:  # noqa: BLE001
                self.snapshot_cache = None
        log(self.who, f"started (incarnation {self.incarnation}, term {self.core.current_term}, "
                      f"last index {self.core.log.last_index}, applied {self.core.last_applied})")
        self.send(sender, ServerStarted(self.id.name, self.incarnation))
        role, effects = self.core.init()
        self._run(effects)
        self._pump()
        for node in self.nodes_down:
            self._feed(m.NodeEvent(node, False))

    # ========================================================== core driving
    def _feed(self, msg):
        self._queue.append(msg)
        self._pump()

    def _pump(self):
        if self._busy:
            return
        self._busy = True
        try:
            while self._queue:
                msg = self._queue.popleft()
                _role, effects = self.core.handle(msg)
                self._run(effects)
        finally:
            self._busy = False
        if not self.ticking and self.role in _LEADING and self.core.wants_tick():
            self._start_ticking()
        self._flush()

    def _run(self, effects):
        for e in effects:
            h = self._EFFECTS.get(type(e))
            if h is None:
                log(self.who, f"ERROR: unknown effect {type(e).__name__}: {e!r:.200}")
                continue
            h(self, e)

    # ---------------------------------------------------------------- sends
    def _flush(self):
        if self.wal_appends:
            appends, self.wal_appends = self.wal_appends, []
            if self.wal is not None and not self.unsent_wal:
                self.send(self.wal, WalWrite(self.uid, tuple(appends), self._wal_seq()))
                self.stats["wal_writes"] += 1
            else:
                self.unsent_wal.extend(appends)
        if self.outbox:
            outbox, self.outbox = self.outbox, {}
            for to, rpcs in outbox.items():
                self._send_peer(to, rpcs)
        if self.forwards:
            forwards, self.forwards = self.forwards, {}
            for to, cmds in forwards.items():
                self._send_to_server(to, Forwarded(tuple(cmds), to))

    def _send_peer(self, to, rpcs):
        peer = self.peers.get(to)
        if to.node in self.nodes_down:
            return  # Raft retries once the node is back
        if peer is not None and peer.address is not None:
            if peer.unanswered >= self.settings["max_unanswered"]:
                peer.dropped += len(rpcs)
                if time.time() - peer.last_heard > self.settings["peer_silence_s"]:
                    peer.address = None   # re-resolve: it may have moved
                    peer.unanswered = 0
                return
            peer.unanswered += 1
            self.stats["rpcs_out"] += len(rpcs)
            self.send(peer.address, Rpcs(to, peer.incarnation, self.id, self.incarnation, tuple(rpcs)))
            return
        self._defer(to, ("rpcs", tuple(rpcs)))

    def _wal_seq(self):
        self.wal_seq = getattr(self, "wal_seq", 0) + 1
        return (self.incarnation, self.wal_seq)

    def _send_to_server(self, to, msg):
        peer = self.peers.get(to)
        if peer is not None and peer.address is not None:
            self.send(peer.address, msg)
        else:
            self._defer(to, ("raw", msg))

    def _defer(self, key, item):
        q = self.pending_out.setdefault(key, [])
        if len(q) < 64:
            q.append(item)
        last = self.lookups.get(key)
        if last is None or time.time() - last > 1.0:
            self.lookups[key] = time.time()
            self.send(self.supervisor, Lookup(key, self.id.name))

    def _send_client(self, handle, msg):
        addr = self.clients.get(handle)
        if isinstance(handle, ActorAddress):
            self.send(handle, msg)
        elif addr is not None:
            self.send(addr, msg)
        elif is_client_handle(handle):
            self._defer(handle, ("raw", msg))
        else:
            log(self.who, f"no route to client {handle!r}")

    def _on_lookup_reply(self, msg: LookupReply, sender):
        key = msg.key
        self.lookups.pop(key, None)
        pending = self.pending_out.pop(key, [])
        if msg.address is None:
            return
        if is_client_handle(key):
            self.clients[key] = msg.address
            for kind, item in pending:
                self.send(msg.address, item)
            return
        sid = ServerId(*key)
        peer = self.peers.get(sid)
        if peer is None or msg.incarnation >= peer.incarnation:
            peer = self.peers[sid] = _Peer(msg.address, msg.incarnation)
        elif msg.incarnation == 0:
            # (a host's answer for a whole node carries no incarnation: the
            # peer's first reply teaches it, or refuses an older one)
            peer.address = msg.address
            peer.unanswered = 0
        for kind, item in pending:
            if kind == "rpcs":
                self._send_peer(sid, item)
            else:
                self.send(peer.address, item)

    # ============================================================== inbound
    def _on_rpcs(self, msg: Rpcs, sender):
        if ServerId(*msg.to) != self.id:
            self.send(sender, Misdelivered(msg.to))
            return
        frm = ServerId(*msg.from_)
        peer = self.peers.get(frm)
        if peer is not None and msg.from_inc < peer.incarnation:
            return  # from an older incarnation of that peer
        if peer is None or msg.from_inc > peer.incarnation or peer.address != sender:
            peer = self.peers[frm] = _Peer(sender, msg.from_inc)
            pend = self.pending_out.pop(frm, None)
            if pend:
                for kind, item in pend:
                    if kind == "rpcs":
                        self._send_peer(frm, item)
                    else:
                        self.send(sender, item)
        peer.unanswered = 0
        peer.last_heard = time.time()
        if msg.to_inc and msg.to_inc != self.incarnation:
            if msg.to_inc < self.incarnation:
                # meant for an earlier life of this server: drop it, but tell the
                # sender who we are now
                self.send(sender, Rpcs(frm, msg.from_inc, self.id, self.incarnation, ()))
                return
        self.stats["rpcs_in"] += len(msg.rpcs)
        for rpc in msg.rpcs:
            if isinstance(rpc, m.InstallSnapshotRpc):
                self.stats["snapshot_chunks_in"] += 1
            self._queue.append(rpc)
        self._pump()

    def _on_wal_result(self, msg: WalResult, sender):
        for x in msg.msgs:
            x = self.store.written(x)
            if x is not None:
                self._queue.append(x)
        self._pump()

    def _on_segments_written(self, msg: SegmentsWritten, sender):
        refs = msg.segments.get(self.uid)
        if refs:
            self.store.segments_written(refs)

    def _on_services(self, msg: ServiceAddresses, sender):
        if msg.snapshot_writer is not None and msg.snapshot_writer != self.snapshot_writer:
            self.snapshot_writer = msg.snapshot_writer
            # a snapshot writer that died took our pending writes with it
            for meta, data in self.pending_snapshots.items():
                self.send(self.snapshot_writer, SnapshotWrite(self.uid, meta, data))
        self.segment_writer = msg.segment_writer or self.segment_writer
        if msg.wal is None:
            self.wal = None
            return
        restarted = msg.wal_restarted or self.wal is None or self.wal != msg.wal
        self.wal = msg.wal
        if restarted:
            # The WAL restarted: whatever it did not confirm must be written again.
            self.unsent_wal = []
            log(self.who, f"WAL restarted: resending from {self.core.log.last_written + 1}")
            if self.core.log.last_index > self.core.log.last_written:
                self._feed(m.ResendWrite(self.core.log.last_written + 1))
        elif self.unsent_wal:
            appends, self.unsent_wal = self.unsent_wal, []
            self.send(self.wal, WalWrite(self.uid, tuple(appends), self._wal_seq()))

    def _on_snapshot_done(self, msg: SnapshotDone, sender):
        data = self.pending_snapshots.pop(msg.meta, None)
        if msg.error:
            log(self.who, f"snapshot {msg.meta} failed: {msg.error}")
            self._crash(f"snapshot write failed: {msg.error}")
            return
        if data is not None:
            self.snapshot_cache = (msg.meta, data)
        self.store.snapshot_written(msg.meta)
        self.stats["snapshots_written"] += 1
        self._feed(m.SnapshotWritten(msg.meta))

    def _on_wakeup(self, msg: WakeupMessage, sender):
        p = msg.payload
        if not isinstance(p, tuple):
            return
        kind = p[0]
        if kind == "election":
            if p[1] == self.epochs["election"]:
                self._feed(m.ElectionTimeout())
        elif kind == "await":
            if p[1] == self.epochs["await"]:
                self._feed(m.AwaitConditionTimeout())
        elif kind == "tick":
            if p[1] == self.epochs["tick"] and self.ticking:
                self._check_peers()
                self._feed(m.Tick(now_ms()))
                if self.ticking and p[1] == self.epochs["tick"]:
                    if self.core.wants_tick():
                        self.wakeupAfter(self._tick_interval(), ("tick", self.epochs["tick"]))
                    else:
                        self.ticking = False   # idle: no timer until there is work
        elif kind == "mtimer":
            name, epoch = p[1], p[2]
            if self.machine_timers.get(name) == epoch:
                del self.machine_timers[name]
                if self.role == LEADER:
                    self._feed(m.Command(fx.TimerFired(name), NoReply(), "normal", now_ms()))
        elif kind == "last_applied":
            self.la_timer = False
            self._write_last_applied()

    def _check_peers(self):
        now = time.time()
        for sid, peer in self.peers.items():
            if peer.address is not None and peer.unanswered and now - peer.last_heard > self.settings["peer_silence_s"]:
                peer.address = None
                peer.unanswered = 0

    def _on_watch_down(self, msg: WatchDown, sender):
        entry = self.watch_refs.pop(msg.ref, None)
        if entry is None:
            return
        kind, target = entry
        if kind == "core":
            if self.core_watch.get(target) == msg.ref:
                del self.core_watch[target]
            self._feed(m.ServerDown(ServerId(*target), msg.reason))
        else:
            if self.machine_watch.get(target) == msg.ref:
                del self.machine_watch[target]
                if self.role == LEADER:
                    self._feed(m.Command(fx.Down(target, msg.reason), NoReply(), "normal", now_ms()))

    def _on_node_event(self, msg: m.NodeEvent):
        if msg.up:
            self.nodes_down.discard(msg.node)
            for sid, peer in self.peers.items():
                if sid.node == msg.node:
                    peer.address = None   # it may have restarted: look it up again
                    peer.unanswered = 0
        else:
            self.nodes_down.add(msg.node)
            for key in [k for k in self.pending_out if not is_client_handle(k) and ServerId(*k).node == msg.node]:
                self.pending_out.pop(key, None)
        self._queue.append(msg)
        if msg.node in self.node_monitors and self.role == LEADER:
            self._queue.append(m.Command(fx.NodeUp(msg.node) if msg.up else fx.NodeDown(msg.node),
                                         NoReply(), "normal", now_ms()))
        self._pump()

    def _on_misdelivered(self, msg: Misdelivered, sender):
        peer = self.peers.get(ServerId(*msg.to))
        if peer is not None and peer.address is not None and peer.address == sender:
            peer.address = None
            peer.unanswered = 0

    def _on_dead_envelope(self, msg: DeadEnvelope, sender):
        dead = msg.deadAddress
        for sid, peer in self.peers.items():
            if peer.address is not None and peer.address == dead:
                peer.address = None
                peer.unanswered = 0
        for handle, addr in list(self.clients.items()):
            if addr == dead:
                del self.clients[handle]

    # -------------------------------------------------------------- clients
    def _on_client_call(self, msg: ClientCall, sender):
        if msg.to is not None and ServerId(*msg.to) != self.id:
            self.send(sender, ClientReply(msg.req_id, ("error", "misdelivered"), None))
            return
        handle = msg.handle
        if handle:
            self.clients[handle] = sender
        frm = (handle, msg.req_id)
        op, args = msg.body[0], msg.body[1:]
        try:
            core_msg = self._client_message(op, args, frm, sender, msg.req_id)
        except Exception as exc:  # noqa: BLE001
            self.send(sender, ClientReply(msg.req_id, ("error", f"{type(exc).__name__}: {exc}"), self.leader))
            return
        if core_msg is not None:
            self._feed(core_msg)

    def _client_message(self, op, args, frm, sender, req_id):
        if op == "command":
            data, mode, priority = args
            self.stats["commands"] += 1
            rm = {"await_consensus": AwaitConsensus(frm), "after_log_append": AfterLogAppend(frm),
                  "noreply": NoReply()}[mode]
            return m.Command(data, rm, priority, now_ms())
        if op == "query":
            kind, fun_name, qargs = args
            fun = resolve_function(fun_name)
            return m.Query(kind, functools.partial(_query, fun, tuple(qargs)), frm)
        if op == "members":
            return m.Members(frm)
        if op == "add_member":
            return m.AddMember(ServerId(*args[0]), args[1], frm)
        if op == "remove_member":
            return m.RemoveMember(ServerId(*args[0]), frm)
        if op == "transfer_leadership":
            return m.TransferLeadership(ServerId(*args[0]), frm)
        if op == "delete_cluster":
            return m.DeleteClusterCmd(frm)
        if op == "trigger_election":
            self.send(sender, ClientReply(req_id, ("ok", None), self.leader))
            return m.TriggerElection()
        if op == "key_metrics":
            self.send(sender, ClientReply(req_id, ("ok", self.core.key_metrics()), self.leader))
            return None
        if op == "overview":
            ov = self.core.overview()
            ov.update({"incarnation": self.incarnation, "pid": os.getpid(), "uid": self.uid,
                       "log": self.store.slog.overview(),
                       "machine_module": self.config.machine,
                       "stats": dict(self.stats, msgs_in=self.msgs_in),
                       # placement "shared": the host actor's own count (a
                       # message for the whole node reaches every server)
                       "host": ({"msgs_in": self.port.msgs_in, "servers": len(self.port.shells),
                                 "stream": self.port.stream.stats() if self.port.stream else None}
                                if isinstance(getattr(self.port, "shells", None), dict) else None),
                       "peers_shell": {str(s): {"unanswered": p.unanswered, "dropped": p.dropped}
                                       for s, p in self.peers.items()}})
            self.send(sender, ClientReply(req_id, ("ok", ov), self.leader))
            return None
        if op == "ping":
            self.send(sender, ClientReply(req_id, ("ok", (self.id, self.incarnation)), self.leader))
            return None
        raise ValueError(f"unknown operation {op!r}")

    def _on_pipeline(self, msg: Pipeline, sender):
        if msg.to is not None and ServerId(*msg.to) != self.id:
            self.send(sender, Misdelivered(msg.to))
            for corr, _data, _prio in msg.commands:
                self.send(sender, ev.Rejected(ServerId(*msg.to), ev.NotLeader(None, corr)))
            return
        self.clients[msg.handle] = sender
        ts = now_ms()
        cmds = tuple(m.Command(data, NotifyReply(corr, msg.handle), prio, ts)
                     for corr, data, prio in msg.commands)
        self.stats["commands"] += len(cmds)
        self._feed(m.Commands(cmds))

    def _on_forwarded(self, msg: Forwarded, sender):
        self._feed(m.Commands(tuple(msg.commands)))

    def _on_stop(self, msg: StopServer, sender):
        self._write_last_applied(force=True)
        self.exiting = True
        self._exit_self("normal")

    def _on_exit(self):
        if self.core is not None and not self.closed:
            self.closed = True
            self._write_last_applied(force=True)
            try:
                self.store.close()
            except Exception:  # noqa: BLE001
                pass

    def _on_sup_response(self, msg: SupResponse, sender):
        pass

    def _on_stream_offer(self, msg, sender):
        pass   # a host offering its replication stream: server processes do not take it

    def _on_bundle(self, msg: Bundle, sender):
        # from a host (placement "shared") to this server actor
        for inner in msg.msgs:
            self._dispatch(inner, sender)

    # ============================================================== effects
    def _e_send_rpc(self, e: fx.SendRpc):
        self.outbox.setdefault(ServerId(*e.to), []).append(e.rpc)

    def _e_log_append(self, e: fx.LogAppend):
        if e.entries:
            # into the mem table; encoded here so that the WAL only writes
            self.wal_appends.append(self.store.append(e.entries))

    def _e_persist_meta(self, e: fx.PersistMeta):
        self._queue.append(self.store.persist_meta(e.term, e.voted_for))   # durable: MetaWritten

    def _e_persist_last_applied(self, e: fx.PersistLastApplied):
        self.last_applied_due = e.index
        if not self.la_timer:
            self.la_timer = True
            self.wakeupAfter(self.settings["last_applied_every_ms"] / 1000.0, ("last_applied",))

    def _write_last_applied(self, force=False):
        idx = self.last_applied_due
        if idx is not None and idx != self.last_applied_written:
            try:
                self.store.persist_last_applied(idx)
                self.last_applied_written = idx
            except Exception:  # noqa: BLE001 - only a hint
                log_exc(self.who, "could not write last_applied")

    def _e_reply(self, e: fx.Reply):
        to = e.to
        if isinstance(to, tuple) and len(to) == 2 and is_client_handle(to[0]):
            self._send_client(to[0], ClientReply(to[1], e.reply, e.leader))
        elif to is not None:
            log(self.who, f"reply to unknown caller {to!r:.100}")

    def _e_applied(self, e: fx.Applied):
        self._send_client(e.client, ev.Applied(e.leader, list(e.results)))

    def _e_rejected(self, e: fx.Rejected):
        self._send_client(e.client, ev.Rejected(e.from_id, ev.NotLeader(e.leader, e.correlation)))

    def _e_forward(self, e: fx.ForwardCommand):
        self.forwards.setdefault(ServerId(*e.leader), []).append(e.command)

    def _e_set_election_timer(self, e: fx.SetElectionTimer):
        self.epochs["election"] += 1
        lo, hi = self.settings["election_short_ms" if e.kind == "short" else "election_timeout_ms"]
        self.wakeupAfter(random.uniform(lo, hi) / 1000.0, ("election", self.epochs["election"]))

    def _e_cancel_election_timer(self, e):
        self.epochs["election"] += 1

    def _e_await_timer(self, e: fx.SetAwaitConditionTimer):
        self.epochs["await"] += 1
        self.wakeupAfter(e.timeout_ms / 1000.0, ("await", self.epochs["await"]))

    def _e_write_snapshot(self, e: fx.WriteSnapshot):
        data = e.data if e.data is not None else codec.pack(e.state)
        self.pending_snapshots[e.meta] = data
        if self.snapshot_writer is None:
            # no snapshot writer (restarting): write it ourselves
            try:
                self.store.write_snapshot(e.meta, data)
                self._queue.append(m.SnapshotWritten(e.meta))
                self.snapshot_cache = (e.meta, data)
                self.pending_snapshots.pop(e.meta, None)
            except Exception as exc:  # noqa: BLE001
                self._crash(f"snapshot write failed: {exc!r}")
            return
        self.send(self.snapshot_writer, SnapshotWrite(self.uid, e.meta, data))

    def _e_send_snapshot_chunk(self, e: fx.SendSnapshotChunk):
        if self.snapshot_cache is None or self.snapshot_cache[0] != e.meta:
            self.snapshot_cache = (e.meta, self.store.snapshot_bytes(e.meta))
        data = self.snapshot_cache[1]
        size = max(1, min(e.chunk_size, 1 << 20))
        start = (e.chunk_no - 1) * size
        chunk = data[start:start + size]
        last = start + size >= len(data)
        self.stats["snapshot_chunks_out"] += 1
        self.outbox.setdefault(ServerId(*e.to), []).append(
            m.InstallSnapshotRpc(e.term, self.id, e.meta, e.chunk_no, last, chunk))

    def _e_truncate_below(self, e: fx.TruncateLogBelow):
        # (when the log restarts after an installed snapshot, ServerLog already
        # knows: the next append carries the WAL truncate flag)
        self.store.truncate_below(e.index)

    def _e_monitor_server(self, e: fx.MonitorServer):
        target = ServerId(*e.server_id)
        if target in self.core_watch:
            return
        ref = self._new_ref()
        self.core_watch[target] = ref
        self.watch_refs[ref] = ("core", target)
        self.send(self.supervisor, Watch(target, self.myAddress, ref))

    def _e_leader_changed(self, e: fx.LeaderChanged):
        self.leader = e.leader
        self.term = e.term
        # Only the current leader needs watching.
        for target, ref in list(self.core_watch.items()):
            if target != e.leader:
                del self.core_watch[target]
                self.watch_refs.pop(ref, None)
                self.send(self.supervisor, Unwatch(target, self.myAddress, ref))

    def _e_role_changed(self, e: fx.RoleChanged):
        was_leader = self.role == LEADER
        self.role = e.role
        if e.role in _LEADING:
            if not self.ticking:
                self._start_ticking()
        elif self.ticking:
            self.ticking = False
            self.epochs["tick"] += 1
        if was_leader and e.role != LEADER:
            self._drop_machine_monitors()

    def _start_ticking(self):
        self.ticking = True
        self.epochs["tick"] += 1
        self.wakeupAfter(self._tick_interval(), ("tick", self.epochs["tick"]))

    def _tick_interval(self) -> float:
        ms = self.settings["tick_ms"]
        if self.role == "terminating_leader":
            # the core bounds a deletion by ticks: do not make it wait long
            ms = min(ms, 100)
        return ms / 1000.0

    def _drop_machine_monitors(self):
        for target, ref in list(self.machine_watch.items()):
            self.watch_refs.pop(ref, None)
            self.send(self.supervisor, Unwatch(target, self.myAddress, ref))
        self.machine_watch = {}
        self.node_monitors = set()
        self.machine_timers = {}

    def _e_delete_data(self, e: fx.DeleteData):
        log(self.who, "cluster deleted: removing this server")
        self.send(self.supervisor, SupRequest(None, "server_deleted", (self.id.name,)))
        self.exiting = True
        self._exit_self("normal")

    def _e_stop_server(self, e: fx.StopServer):
        log(self.who, f"stopping: {e.reason}")
        self.send(self.supervisor, SupRequest(None, "server_removed", (self.id.name,)))
        self.exiting = True
        self._exit_self("normal")

    def _e_machine_effects(self, e: fx.MachineEffects):
        if e.leader_only and self.role != LEADER:
            return
        for eff in e.effects:
            h = self._MACHINE_EFFECTS.get(type(eff))
            if h is None:
                log(self.who, f"ERROR: unknown machine effect {type(eff).__name__}: {eff!r:.200}")
                continue
            try:
                h(self, eff)
            except Exception:  # noqa: BLE001 - a bad effect must not kill the server
                log_exc(self.who, f"machine effect {type(eff).__name__} failed")

    # ------------------------------------------------------ machine effects
    def _me_send_msg(self, e: fx.SendMsg):
        from ..core.types import ActorRef   # (local: keeps this edit out of the import block)
        to = e.to
        if isinstance(to, ActorAddress):
            self.send(to, e.msg)
        elif isinstance(to, ActorRef):
            # an actor started by a client: the supervisors know where its
            # current incarnation is (see user_actors)
            from .protocol import ActorSend
            self.send(self.supervisor, ActorSend(to, e.msg))
        elif is_client_handle(to):
            self._send_client(to, ev.Message(e.msg))
        elif isinstance(to, tuple) and len(to) == 2:
            sid = ServerId(*to)
            cmd = m.Command(e.msg, NoReply(), "normal", now_ms())
            if sid == self.id:
                self._queue.append(cmd)
            else:
                self.forwards.setdefault(sid, []).append(cmd)
        else:
            log(self.who, f"SendMsg to unknown destination {to!r:.100}")

    def _me_mod_call(self, e: fx.ModCall):
        resolve_function(e.fun)(*e.args)

    def _me_monitor(self, e: fx.Monitor):
        if e.kind == "node":
            node = e.target
            self.node_monitors.add(node)
            if node in self.nodes_down and self.role == LEADER:
                self._queue.append(m.Command(fx.NodeDown(node), NoReply(), "normal", now_ms()))
            return
        target = ServerId(*e.target) if isinstance(e.target, tuple) else e.target
        if target in self.machine_watch:
            return
        ref = self._new_ref()
        self.machine_watch[target] = ref
        self.watch_refs[ref] = ("machine", target)
        self.send(self.supervisor, Watch(target, self.myAddress, ref))

    def _me_demonitor(self, e: fx.Demonitor):
        if e.kind == "node":
            self.node_monitors.discard(e.target)
            return
        target = ServerId(*e.target) if isinstance(e.target, tuple) else e.target
        ref = self.machine_watch.pop(target, None)
        if ref is not None:
            self.watch_refs.pop(ref, None)
            self.send(self.supervisor, Unwatch(target, self.myAddress, ref))

    def _me_timer(self, e: fx.Timer):
        self.ref_counter += 1
        if e.ms is None:
            self.machine_timers.pop(e.name, None)
            return
        epoch = self.ref_counter
        self.machine_timers[e.name] = epoch
        self.wakeupAfter(max(0, e.ms) / 1000.0, ("mtimer", e.name, epoch))

    def _me_aux(self, e: fx.Aux):
        fn = getattr(self.machine_impl, "handle_aux", None)
        if callable(fn):
            result = fn(self.role, e.command, self.aux_state)
            if isinstance(result, tuple) and len(result) == 2:
                self.aux_state, effects = result
                self._e_machine_effects(fx.MachineEffects(tuple(effects or ()), False))
            else:
                self.aux_state = result

    def _me_ignore(self, e):
        pass

    def _new_ref(self):
        self.ref_counter += 1
        return (self.incarnation, self.ref_counter)

    _EFFECTS = {
        fx.SendRpc: _e_send_rpc,
        fx.LogAppend: _e_log_append,
        fx.PersistMeta: _e_persist_meta,
        fx.PersistLastApplied: _e_persist_last_applied,
        fx.Reply: _e_reply,
        fx.Applied: _e_applied,
        fx.Rejected: _e_rejected,
        fx.ForwardCommand: _e_forward,
        fx.SetElectionTimer: _e_set_election_timer,
        fx.CancelElectionTimer: _e_cancel_election_timer,
        fx.SetAwaitConditionTimer: _e_await_timer,
        fx.WriteSnapshot: _e_write_snapshot,
        fx.SendSnapshotChunk: _e_send_snapshot_chunk,
        fx.TruncateLogBelow: _e_truncate_below,
        fx.MonitorServer: _e_monitor_server,
        fx.LeaderChanged: _e_leader_changed,
        fx.RoleChanged: _e_role_changed,
        fx.DeleteData: _e_delete_data,
        fx.StopServer: _e_stop_server,
        fx.MachineEffects: _e_machine_effects,
    }

    _MACHINE_EFFECTS = {
        fx.SendMsg: _me_send_msg,
        fx.ModCall: _me_mod_call,
        fx.Monitor: _me_monitor,
        fx.Demonitor: _me_demonitor,
        fx.Timer: _me_timer,
        fx.Aux: _me_aux,
        fx.ReleaseCursor: _me_ignore,   # handled by the core
        fx.Checkpoint: _me_ignore,
        fx.Append: _me_ignore,
    }

    _HANDLERS = {
        Rpcs: _on_rpcs,
        WalResult: _on_wal_result,
        ServiceAddresses: _on_services,
        SnapshotDone: _on_snapshot_done,
        WakeupMessage: _on_wakeup,
        WatchDown: _on_watch_down,
        LookupReply: _on_lookup_reply,
        ClientCall: _on_client_call,
        Pipeline: _on_pipeline,
        Forwarded: _on_forwarded,
        StopServer: _on_stop,
        DeadEnvelope: _on_dead_envelope,
        SupResponse: _on_sup_response,
        Bundle: _on_bundle,
        StreamOffer: _on_stream_offer,
        SegmentsWritten: _on_segments_written,
        Misdelivered: _on_misdelivered,
    }


class ServerActor(Actor):
    """Placement mode ``process``: one OS process (Thespian actor) per Raft
    server, as Ra's one Erlang process per server.  A crash ends the
    process; its supervisor (parent) sees ``ChildActorExited`` and
    restarts it."""

    @staticmethod
    def actorSystemCapabilityCheck(capabilities, requirements):
        return bool(requirements) and capabilities.get("ra_node") == requirements.get("ra_node")

    def __init__(self, capabilities=None, requirements=None):
        super().__init__()
        self.shell = ServerShell(self)

    def receiveMessage(self, msg, sender):
        self.shell.receive(msg, sender)

    # ------------------------------------------------------------ the port
    def shell_wakeup(self, shell, delay, payload):
        self.wakeupAfter(delay, payload)

    def shell_exit(self, shell, reason):
        self.send(self.myAddress, ActorExitRequest())

    def shell_crash(self, shell, reason):
        try:
            if shell.supervisor is not None:
                self.send(shell.supervisor, ServerCrash(shell.id.name if shell.id else "?", reason))
        except Exception:  # pragma: no cover
            pass
        os._exit(70)


def load_machine(path: str):
    from .supervisor import load_machine as _load
    return _load(path)


def _machine_error(module, exc):
    from ..errors import MachineError
    return MachineError(f"machine {module!r} failed: {type(exc).__name__}: {exc}")
