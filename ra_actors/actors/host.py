"""The host actor: placement mode ``shared`` (many servers per process).

One OS process per Raft server (placement ``process``, Ra's one Erlang
process per server) costs a Thespian loop, ~8 MB of private memory and a
scheduler slot each, which limits a 2-vCPU machine to a few hundred
servers.  In placement mode ``shared`` a node runs **one** host actor that
carries every server of the node *and* the node's WALs:

* each server is still its own :class:`~ra_actors.shell.server.ServerShell`
  (behind a :class:`HostedPort`) addressed as ``ServerId(name, node)``: the node directory maps it to the
  host's address and the server's own incarnation; every message meant for
  a server names it (``Rpcs.to``, ``ClientCall.to``, ``Pipeline.to``,
  ``Forwarded.to``, ``StopServer.name``, ``WalResult.uid``, a Lookup's
  ``req``, a monitor ref's incarnation) and the host routes it; messages
  for the node as a whole (``NodeEvent``, ``ServiceAddresses``, dead
  letters) go to every server;
* a server that crashes (an exception out of its core or its effects) is
  removed from the host alone; the host tells the supervisor
  (``ServerExited``), which fires ``Down`` to the server's monitors and
  restarts it in the host, recovered from disk, exactly as it restarts a
  server process.  If the host process itself dies, every server in it is
  down (as when an Erlang VM loses a scheduler, or a node dies) and they
  are all restarted with the host;
* the node's WALs (:class:`~ra_actors.actors.storage.WalService`, one per
  WAL directory) live in the host: each shared by the servers assigned to
  it (a server's ``WalWrite`` goes to its own, by uid) and synced once per
  batch, but a server's write and the WAL's answer cost a function call
  instead of two Thespian hops (each ~0.7 ms, ten times an fsync here).  At
  the end of a turn one WAL with a small batch syncs inline; when several
  have work their sync threads are kicked, so their disks sync at once.  A
  write or sync the disk refuses ends that WAL, not the host nor its other
  WALs: the host abandons it (as the WAL actor does, :mod:`.storage`),
  tells its servers that WAL is gone (their appends wait) and the
  supervisor (``ServiceFault("wal")``), and on the next ``ServiceInit``
  reopens every WAL that is closed; their servers (``wal_restarted``) then
  write again what the failed WAL had not confirmed.  The
  storage's state reaches every server through the host
  (``ServiceAddresses``);
* what the servers tell their supervisor while the host handles one
  message (``ServerStarted``, ``ServerExited``, monitors) leaves as one
  ``Bundle``, in order, at the end of that turn: starting a batch of
  servers (one ``Bundle`` of ``ServerInit`` messages) costs one message back;
* timers: servers' wakeups are kept in one heap and the host asks Thespian
  for at most one wakeup per 10 ms slot (leader ticks: 100 ms slots), so a
  thousand idle leaders' ticks cost ten wakeups a second, not a thousand.
  Thespian drops a wakeup that falls due while the process drains an
  overfull send queue ("tx-only mode"); a wakeup overdue by 0.5 s is
  therefore asked for again at the end of the next turn, and a watchdog
  thread pokes the actor through a pipe if timers are overdue and no
  message came.

Idle servers cost nothing but memory: no message, no wakeup beyond a
leader's tick.
"""
from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
import os
import sys
import threading
import time

from thespian.actors import (Actor, ActorExitRequest, ChildActorExited, DeadEnvelope,
                             PoisonMessage, ThespianWatch, WakeupMessage, WatchMessage)

from .. import events as ev
from ..core import messages as m
from ..core.types import ServerId, Unavailable
from ..errors import RaError, StorageError
from .protocol import (Bundle, ClientCall, ClientReply, ForgetServer, Forwarded, LeaderboardRecord,
                       LeaderboardUpdate, Lookup, LookupReply,
                       Misdelivered, Pipeline, Rpcs, SegmentsWritten, ServerExited, ServerInit,
                       ServiceAddresses, ServiceFailed, ServiceFault, ServiceInit, ServiceReady, SnapshotDone,
                       StopServer, StreamOffer, SupResponse, WalResult, WalWrite, WatchDown, pipeline_correlations)
from ..shell.server import TickWakeup
from .server import ActorServerPort
from .storage import INLINE_SYNC_RECORDS
from .streamside import STREAMED, SWITCH_INTERVAL, StreamSide
from .util import log, log_exc, tune_gc

TIMER_SLOT = 0.010     # seconds: wakeups of all servers are coalesced into slots this long
TICK_SLOT = 0.100      # ... and leader ticks into slots this long
LOST_WAKEUP_S = 0.5    # a wakeup overdue this long is presumed lost
WATCHDOG_S = 1.0       # how often the timer watchdog thread looks
LOOKUP_PATIENCE = 2.0  # seconds before a node lookup in flight is asked again
# Messages collected per destination while the host handles one message,
# then sent as one (a Bundle) on the stream or through Thespian: Raft's
# RPCs between hosts, and what servers send their clients.
_BATCHED = STREAMED


class HostActor(Actor):
    @staticmethod
    def actorSystemCapabilityCheck(capabilities, requirements):
        return bool(requirements) and capabilities.get("ra_node") == requirements.get("ra_node")

    def __init__(self, capabilities=None, requirements=None):
        super().__init__()
        # The WAL's sync thread and the stream writers wait for the GIL while
        # this thread works; CPython hands it over only every switch interval
        # (5 ms by default).  A shorter interval bounds that wait.
        sys.setswitchinterval(SWITCH_INTERVAL)
        tune_gc()
        self.shells: dict[str, HostedPort] = {}         # server name -> its port (and shell)
        self.by_uid: dict[str, HostedPort] = {}
        self.by_incarnation: dict[int, HostedPort] = {}
        self.wals: list = []                            # WalService per WAL directory (None: not open)
        self.wal_opened: set = set()                    # WALs open once (their next open is a reopen)
        self.services = None                            # the last ServiceAddresses from the supervisor
        self.supervisor = None
        self.closed_files = None                        # ClosedWalFiles
        self.timers: list = []                          # heap of (due, seq, name, incarnation, payload)
        self.seq = itertools.count()
        self.armed = None                               # slot of the earliest wakeup asked for
        self.msgs_in = 0
        self.exiting = False
        self.poke_r, self.poke_w = os.pipe()           # the timer watchdog's wake-up
        os.set_blocking(self.poke_r, False)
        os.set_blocking(self.poke_w, False)
        threading.Thread(target=self._timer_watchdog, name="host-timers", daemon=True).start()
        self.outbox: list = []                          # [(address, [Rpcs|Forwarded])] this turn
        self.to_supervisor: list = []                   # what our servers told the supervisor this turn
        self.batching = False
        self.stream: StreamSide | None = None           # the direct replication stream
        self.node_hosts: dict = {}                      # node -> its host actor's address
        self.lookups: dict = {}                         # node -> [(server name, key)] waiting
        self.local_inbox: list = []                     # replies for our servers, this turn
        self.board: list = []                           # this turn's leaderboard records

    # ================================================================ entry
    def receiveMessage(self, msg, sender):
        if type(msg) is not WakeupMessage:
            self.msgs_in += 1
        self.batching = True
        try:
            self._dispatch(msg, sender)
            self._run_local_inbox()
            self.batching = False
            self._flush_outbox()          # RPCs leave before our own WAL sync
            if self.wals:
                self._sync_wal()
            if self.local_inbox:
                self.batching = True
                self._run_local_inbox()
                self.batching = False
                self._flush_outbox()
            self._arm()
            if self.board:
                records, self.board = tuple(self.board), []
                super().send(self.supervisor, LeaderboardUpdate(records))
            if self.stream is not None:
                self.stream.expire()
        except Exception:  # noqa: BLE001 - the host (WAL) is unusable: crash, all restart
            log_exc("host", f"error handling {type(msg).__name__}")
            os._exit(70)
        return self._watch()

    def _watch(self):
        fds = [self.poke_r]
        fds.extend(w.rfd for w in self.wals if w is not None)
        if self.stream is not None:
            fds.extend(self.stream.fds())
        return ThespianWatch(fds) if fds else None

    def _dispatch(self, msg, sender):
        handler = self._HANDLERS.get(type(msg))
        if handler is not None:
            handler(self, msg, sender)
        elif isinstance(msg, m.NodeEvent):
            self._on_node_event(msg, sender)
        elif isinstance(msg, ActorExitRequest):
            self._on_exit()
        elif isinstance(msg, PoisonMessage):
            log("host", f"poison message returned: {str(msg.poisonMessage)[:200]}")
        elif isinstance(msg, (ChildActorExited, SupResponse)):
            pass
        else:
            log("host", f"unexpected message {type(msg).__name__}")

    def _on_bundle(self, msg: Bundle, sender):
        for inner in msg.msgs:
            self._dispatch(inner, sender)

    def _flush_outbox(self):
        if self.to_supervisor:
            msgs, self.to_supervisor = self.to_supervisor, []
            super().send(self.supervisor, msgs[0] if len(msgs) == 1 else Bundle(tuple(msgs)))
        outbox, self.outbox = self.outbox, []
        stream = self.stream
        for addr, msgs in outbox:
            msg = msgs[0] if len(msgs) == 1 else Bundle(tuple(msgs))
            if stream is not None:
                stream.send(addr, msg)
            else:
                super().send(addr, msg)

    def _offer_client(self, sender):
        if self.stream is not None:
            self.stream.offer_client(sender)

    def _on_stream_offer(self, msg: StreamOffer, sender):
        if self.stream is not None:
            self.stream.on_offer(msg, sender)

    def _on_dead_envelope(self, msg: DeadEnvelope, sender):
        if self.stream is not None:
            self.stream.on_dead(msg.deadAddress)
        for node, addr in list(self.node_hosts.items()):
            if addr == msg.deadAddress:
                del self.node_hosts[node]
        self._broadcast(msg, sender)

    def _broadcast(self, msg, sender):
        for shell in list(self.shells.values()):
            shell.receive(msg, sender)

    def _shell(self, to) -> "HostedPort | None":
        if to is None:
            return None
        try:
            return self.shells.get(ServerId(*to).name)
        except TypeError:
            return None

    # ============================================================ the WAL
    def _on_service_init(self, msg: ServiceInit, sender):
        """Open every WAL of the node that is not open (all of them at the
        node's start; after a fault, the one that failed)."""
        from .storage import ClosedWalFiles
        self.supervisor = sender
        if self.closed_files is None:
            self.closed_files = ClosedWalFiles()
        self.closed_files.set_segment_writer(self.send, msg.services.segment_writer)
        dirs = tuple(msg.wal_dirs) or (None,)
        if not self.wals:
            self.wals = [None] * len(dirs)
        reopened: list = []
        try:
            opened = all(self._open_wal(msg, sender, k, wdir, reopened)
                         for k, wdir in enumerate(dirs) if self.wals[k] is None)
        finally:
            if reopened:
                # reopened WALs lost what the failed ones had not confirmed
                self._broadcast(self._addresses(msg.services, wal_restarted=tuple(reopened)), self.myAddress)
        if not opened:
            return
        if self.stream is None:
            self.stream = StreamSide(self.myAddress, super().send, lambda text: log("host", text))
        super().send(sender, ServiceReady("wal"))

    def _open_wal(self, msg: ServiceInit, sender, k: int, wdir, reopened: list) -> bool:
        """Open WAL ``k``; False (the supervisor told) if it cannot be."""
        from .storage import WalService, describe, reopen_may_help
        try:
            svc = WalService(msg.data_dir, msg.options, wdir, counters=k == 0)
        except RaError as exc:
            # Corrupt log, locked directory, a disk that refuses: the node's
            # start fails with it; later it is a storage fault.  Wait to be
            # reopened (the WALs that did open stay open).
            log_exc("host", f"cannot open the node's WAL {wdir or k}")
            super().send(sender, ServiceFailed("wal", describe(exc), reopen_may_help(exc), wal=k))
            return False
        self.wals[k] = svc
        for warning in svc.warnings:
            log("host", warning)
        if svc.recovered_segments:
            super().send(sender, SegmentsWritten(svc.recovered_segments))
        if k in self.wal_opened:
            reopened.append(k)
        self.wal_opened.add(k)
        return True

    def _addresses(self, services: ServiceAddresses, wal_restarted: tuple = ()) -> ServiceAddresses:
        """What the host's servers see: the host as each WAL that is open,
        and the storage's state as the supervisor last said."""
        seen = self.services or services
        return ServiceAddresses(self._wal_view(), services.segment_writer, services.snapshot_writer,
                                tuple(wal_restarted), seen.storage, seen.storage_error, seen.wal_errors)

    def _wal_view(self) -> tuple:
        me = self.myAddress
        return tuple(me if w is not None else None for w in self.wals)

    def _wal_failed(self, k: int, exc: BaseException) -> None:
        """The disk refused a write or sync of WAL ``k`` (see the module
        docstring): that WAL is given up; the others go on."""
        from .storage import describe
        reason = describe(exc)
        log("host", f"WAL {k} write failed: {reason}; giving that log up until it is reopened "
                    "(nothing of the failed batch was acknowledged)")
        svc, self.wals[k] = self.wals[k], None
        for problem in svc.abandon():
            log("host", problem)
        current = self.services or ServiceAddresses((), None, None)
        self._broadcast(ServiceAddresses(self._wal_view(), current.segment_writer, current.snapshot_writer, (),
                                         current.storage if len(self.wals) > 1 else "failing",
                                         current.storage_error if len(self.wals) > 1 else reason,
                                         current.wal_errors), self.myAddress)
        if self.supervisor is not None:
            super().send(self.supervisor, ServiceFault("wal", reason, isinstance(exc, StorageError), wal=k))

    def _on_watch(self, msg: WatchMessage, sender):
        if self.poke_r in msg.ready:
            try:
                os.read(self.poke_r, 4096)
            except BlockingIOError:
                pass
            self._fire_due()
        if self.stream is not None:
            self.stream.on_ready(msg.ready, self._dispatch)
        for k, wal in enumerate(self.wals):
            if wal is not None and wal.rfd in msg.ready:
                self._drain_wal(k)

    def _sync_wal(self):
        """End of a turn: sync what the servers appended, and hand the
        results over.  One WAL with a small batch and an idle sync thread
        syncs inline; when several WALs have work their threads sync them at
        once (the point of several WALs: their disks sync in parallel)."""
        busy = [k for k, w in enumerate(self.wals) if w is not None and w.pending_records]
        if len(busy) > 1:
            for k in busy:
                self.wals[k].kick()
            return
        for k in busy:
            self._sync_inline(k)
        for wal in self.wals:
            if wal is not None and wal.pending_records:
                wal.kick()   # (appended by what the inline sync delivered)

    def _sync_inline(self, k: int) -> None:
        for _ in range(4):   # results may append more (bounded: then the thread takes over)
            wal = self.wals[k]
            if wal is None:
                return
            done = wal.sync_small_inline(INLINE_SYNC_RECORDS)
            if wal.failure is not None:
                self._wal_failed(k, wal.failure)
                return
            if done is None:
                return
            self.batching = True
            self._deliver_wal(*done)
            self._run_local_inbox()
            self.batching = False
            self._flush_outbox()

    def _drain_wal(self, k: int):
        wal = self.wals[k]
        replies, closed = wal.drain()
        self._deliver_wal(replies, closed)
        if self.wals[k] is wal and wal.failure is not None:
            self._wal_failed(k, wal.failure)

    def _deliver_wal(self, replies, closed):
        me = self.myAddress
        for uid, msgs in replies.items():
            shell = self.by_uid.get(uid)
            if shell is not None:
                shell.receive(WalResult(uid, tuple(msgs)), me)
        self.closed_files.hand_over(self.send, closed)

    def _on_services(self, msg: ServiceAddresses, sender):
        """The supervisor's news (a service restarted, the storage's state):
        for the servers, the WAL is this host's own while it is open."""
        if self.closed_files is not None:
            self.closed_files.set_segment_writer(self.send, msg.segment_writer)
        self.services = msg
        self._broadcast(self._addresses(msg), sender)

    def _on_forget(self, msg: ForgetServer, sender):
        for wal in self.wals:
            if wal is not None:
                wal.forget(msg.uid)

    def _on_wal_write(self, msg: WalWrite, sender):
        """Into the writer's WAL (none: it failed and waits to be reopened;
        the server writes again then)."""
        shell = self.by_uid.get(msg.uid)
        k = shell.wal_index if shell is not None else 0
        wal = self.wals[k] if k < len(self.wals) else None
        if wal is not None:
            wal.write(msg.appends, writer=msg.seq[0])

    # ============================================================ servers
    def _on_server_init(self, msg: ServerInit, sender):
        name = msg.config.server_id[0]
        old = self.shells.get(name)
        if old is not None:
            self._remove(old)
            old.shell.close()
        shell = HostedPort(self, name, msg.config.uid, msg.incarnation)
        self.shells[name] = shell
        self.by_uid[shell.uid] = shell
        self.by_incarnation[shell.incarnation] = shell
        # the host is each of its open WALs
        msg = dataclasses.replace(msg, services=dataclasses.replace(msg.services, wals=self._wal_view()))
        shell.receive(msg, sender)

    def _remove(self, shell):
        if self.shells.get(shell.name) is shell:
            del self.shells[shell.name]
        if self.by_uid.get(shell.uid) is shell:
            del self.by_uid[shell.uid]
        if self.by_incarnation.get(shell.incarnation) is shell:
            del self.by_incarnation[shell.incarnation]

    def _on_rpcs(self, msg: Rpcs, sender):
        shell = self._shell(msg.to)
        if shell is None:
            self.send(sender, Misdelivered(msg.to))
        else:
            shell.receive(msg, sender)

    def _on_client_call(self, msg: ClientCall, sender):
        self._offer_client(sender)
        shell = self._shell(msg.to)
        if shell is None:
            self.send(sender, ClientReply(msg.req_id, Unavailable("misdelivered"), None))
        else:
            shell.receive(msg, sender)

    def _on_pipeline(self, msg: Pipeline, sender):
        self._offer_client(sender)
        shell = self._shell(msg.to)
        if shell is None:
            self.send(sender, Misdelivered(msg.to))
            to = ServerId(*msg.to) if msg.to is not None else None
            for correlation in pipeline_correlations(msg.commands):
                self.send(sender, ev.Rejected(to, ev.NotLeader(None, correlation)))
        else:
            shell.receive(msg, sender)

    def _on_forwarded(self, msg: Forwarded, sender):
        shell = self._shell(msg.to)
        if shell is not None:
            shell.receive(msg, sender)

    def _by_uid(self, msg, sender):
        shell = self.by_uid.get(msg.uid)
        if shell is not None:
            shell.receive(msg, sender)

    def _on_segments_written(self, msg: SegmentsWritten, sender):
        for uid, refs in msg.segments.items():
            shell = self.by_uid.get(uid)
            if shell is not None:
                shell.receive(SegmentsWritten({uid: refs}), sender)

    def _on_watch_down(self, msg: WatchDown, sender):
        ref = msg.ref
        if isinstance(ref, tuple) and ref:
            shell = self.by_incarnation.get(ref[0])
            if shell is not None:
                shell.receive(msg, sender)

    # -- where are other nodes' servers?  One lookup per node with a host --------
    # A LookupReply that says the address is a node's host actor holds for
    # every server of that node: later lookups of our servers for that node
    # are answered here (incarnation 0: the first reply teaches the real
    # one), and concurrent ones wait for the one in flight.  At a thousand
    # clusters this is the difference between thousands of lookups through
    # the supervisors (which then time out) and two.  The cache entry goes
    # when that node goes down or up, or its address is dead.

    def _lookup(self, msg: Lookup) -> bool:
        """A server's Lookup: answered or queued here (True), or to be sent."""
        key = msg.key
        if not (isinstance(key, tuple) and len(key) == 2 and isinstance(msg.req, str)):
            return False
        node = key[1]
        addr = self.node_hosts.get(node)
        if addr is not None:
            self.local_inbox.append(LookupReply(key, addr, 0, msg.req, "running", True))
            return True
        pending = self.lookups.get(node)
        if pending is not None and time.monotonic() - pending[0] < LOOKUP_PATIENCE:
            pending[1].append((msg.req, key))
            return True
        # (a lookup unanswered for that long is asked again; its waiters stay)
        self.lookups[node] = (time.monotonic(), pending[1] if pending else [])
        return False

    def _on_lookup_reply(self, msg: LookupReply, sender):
        key = msg.key
        node = key[1] if isinstance(key, tuple) and len(key) == 2 else None
        pending = self.lookups.pop(node, None) if node is not None else None
        waiting = pending[1] if pending else ()
        if msg.host and msg.address is not None:
            self.node_hosts[node] = msg.address
        shell = self.shells.get(msg.req) if isinstance(msg.req, str) else None
        if shell is not None:
            shell.receive(msg, sender)
        for req, wkey in waiting:
            if msg.host and msg.address is not None:
                self.local_inbox.append(LookupReply(wkey, msg.address, 0, req, "running", True))
            elif self.batching:
                # not a host (or not running): each asks for itself, all in
                # one message (a thousand followers of a node that went down)
                self.to_supervisor.append(Lookup(wkey, req))
            else:
                super().send(self.supervisor, Lookup(wkey, req))

    def _run_local_inbox(self):
        me = self.myAddress
        while self.local_inbox:
            inbox, self.local_inbox = self.local_inbox, []
            for reply in inbox:
                shell = self.shells.get(reply.req)
                if shell is not None:
                    shell.receive(reply, me)

    def _forget_node(self, node):
        self.node_hosts.pop(node, None)

    def _on_node_event(self, msg, sender):
        self._forget_node(msg.node)     # down, or up again (maybe a new host)
        self._broadcast(msg, sender)

    def _on_stop(self, msg: StopServer, sender):
        shell = self.shells.get(msg.name)
        if shell is not None:
            shell.receive(msg, sender)
        elif self.supervisor is not None and msg.name is not None:
            # already gone: say so, the supervisor is waiting for the exit
            self.send(self.supervisor, ServerExited(msg.name, 0, "normal"))

    def _on_exit(self):
        self.exiting = True
        for shell in list(self.shells.values()):
            try:
                shell.shell.close()
            except Exception:  # noqa: BLE001
                log_exc("host", f"closing {shell.who}")
        for wal in self.wals:
            if wal is not None:
                wal.close()
        if self.stream is not None:
            self.stream.close()

    # ============================================== the port of every shell
    def send(self, addr, msg):
        kind = type(msg)
        if kind is WalWrite:
            self._on_wal_write(msg, None)   # the node's WALs are here: no hop
            return
        if kind is Lookup and self._lookup(msg):
            return
        if self.batching:
            if kind in _BATCHED:
                # one message per destination for everything this turn produced
                for dest, msgs in self.outbox:
                    if dest == addr:
                        msgs.append(msg)
                        return
                self.outbox.append((addr, [msg]))
                return
            if addr == self.supervisor:
                # e.g. a batch of starts' ServerStarted: one Thespian message, in order
                self.to_supervisor.append(msg)
                return
        super().send(addr, msg)

    def shell_wakeup(self, shell, delay, payload):
        # due times are rounded up to their slot, so that many servers' timers
        # share one Thespian wakeup; leader ticks need no precision
        step = TICK_SLOT if type(payload) is TickWakeup else TIMER_SLOT
        due = math.ceil((time.monotonic() + max(0.0, delay)) / step) * step
        heapq.heappush(self.timers, (due, next(self.seq), shell.name, shell.incarnation, payload))
        self._arm()

    def _arm(self):
        if not self.timers:
            return
        slot = self.timers[0][0]
        now = time.monotonic()
        if self.armed is not None and self.armed <= slot and self.armed > now - LOST_WAKEUP_S:
            return   # a wakeup at or before that slot is already asked for
        # (a wakeup overdue by LOST_WAKEUP_S is presumed lost: Thespian drops
        # wakeups that fall due while a process drains an overfull send
        # queue in "tx-only mode")
        self.armed = slot
        super().wakeupAfter(max(0.0, slot - now), ("host-timers", slot))

    def _timer_watchdog(self):
        """Thread: if timers are overdue (their wakeup was lost and no
        message came to re-arm it), poke the actor through its watch pipe."""
        while not self.exiting:
            time.sleep(WATCHDOG_S)
            timers = self.timers
            if timers and timers[0][0] < time.monotonic() - LOST_WAKEUP_S:
                try:
                    os.write(self.poke_w, b"t")
                except OSError:
                    pass

    def _on_wakeup(self, msg: WakeupMessage, sender):
        p = msg.payload
        if not (isinstance(p, tuple) and p and p[0] == "host-timers"):
            return
        if p[1] == self.armed:
            self.armed = None   # (an older, later wakeup may still come: harmless)
        self._fire_due()

    def _fire_due(self):
        now = time.monotonic() + TIMER_SLOT / 10
        me = self.myAddress
        while self.timers and self.timers[0][0] <= now:
            _due, _seq, name, incarnation, payload = heapq.heappop(self.timers)
            shell = self.shells.get(name)
            if shell is not None and shell.incarnation == incarnation:
                shell.receive(WakeupMessage(0, payload), me)
        self._arm()

    def shell_exit(self, shell, reason):
        self._remove(shell)
        if self.supervisor is not None and not self.exiting:
            self.send(self.supervisor, ServerExited(shell.name, shell.incarnation, str(reason)))

    def shell_crash(self, shell, reason):
        self._remove(shell)
        try:
            if shell.shell.store is not None:
                shell.shell.store.close()    # release its files; the restart recovers from disk
        except Exception:  # noqa: BLE001
            pass
        if self.supervisor is not None:
            self.send(self.supervisor, ServerExited(shell.name, shell.incarnation, str(reason), True,
                                                    shell.crash_storage))

    _HANDLERS = {
        Bundle: _on_bundle,
        ServiceInit: _on_service_init,
        WatchMessage: _on_watch,
        ServiceAddresses: _on_services,
        ForgetServer: _on_forget,
        WalWrite: _on_wal_write,
        ServerInit: _on_server_init,
        Rpcs: _on_rpcs,
        ClientCall: _on_client_call,
        Pipeline: _on_pipeline,
        Forwarded: _on_forwarded,
        WalResult: _by_uid,
        SnapshotDone: _by_uid,
        SegmentsWritten: _on_segments_written,
        WatchDown: _on_watch_down,
        LookupReply: _on_lookup_reply,
        StopServer: _on_stop,
        WakeupMessage: _on_wakeup,
        DeadEnvelope: _on_dead_envelope,
        StreamOffer: _on_stream_offer,
        Misdelivered: _broadcast,
    }


class HostedPort(ActorServerPort):
    """The port of one server inside a :class:`HostActor`: sends go through
    the host (batched per destination, on the stream when there is one, WAL
    writes straight into the node's WAL), timers into the host's heap, and
    an exit or crash removes just this server."""

    def __init__(self, host: HostActor, name: str, uid: str, incarnation: int) -> None:
        super().__init__()
        self.host = host
        self.name = name
        self.uid = uid
        self.incarnation = incarnation

    @property
    def my_address(self):
        return self.host.myAddress

    def _send(self, addr, msg) -> None:
        self.host.send(addr, msg)

    def _wakeup_after(self, seconds: float, payload) -> None:
        self.host.shell_wakeup(self, seconds, payload)

    def _leave(self, reason: str) -> None:
        self.shell.close()
        self.host.shell_exit(self, reason)

    def _die(self, reason: str) -> None:
        self.host.shell_crash(self, reason)

    def _record_leader(self, record: LeaderboardRecord) -> None:
        self.host.board.append(record)     # one message to the supervisor per turn

    def overview(self) -> dict:
        ov = super().overview()
        # the host's own count: a message for the whole node reaches every server
        ov["host"] = {"msgs_in": self.host.msgs_in, "servers": len(self.host.shells),
                      "stream": self.host.stream.stats() if self.host.stream else None}
        return ov
