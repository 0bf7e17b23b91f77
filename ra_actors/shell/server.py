"""One Raft server's runtime: the core, fed one message at a time, and the
one interpreter of its effects (Ra's ``ra_server_proc`` without the process).

Rules:

* **One interpreter.**  The actors (both placements) and the simulator run
  this class; they differ only in their :class:`~.port.ServerPort` and
  :class:`~.port.ServerStore`.  Every effect of the core's closed vocabulary
  (:data:`SERVER_EFFECTS`, :data:`MACHINE_EFFECT_HANDLERS`) has exactly one
  handler here; an effect without one is a crash, never ignored.
* **No decisions by role.**  Which machine effects run, and whether a
  ``Down``, ``NodeUp``/``NodeDown`` or ``TimerFired`` becomes a command, is
  the core's business (``MachineEffects`` holds only effects to run;
  ``MachineEvent`` goes to the core, which appends it only as leader).  The
  shell keeps bookkeeping that follows the core's ``RoleChanged``: a server
  ticks while :meth:`RaftServer.wants_tick` says so (a leader with work, any
  member of a machine with an aux handler), and machine monitors and
  timers end with leadership (the machine re-establishes them in
  ``state_enter``, as in Ra).
* **Rounds.**  Inputs are queued; one pump runs the queue through the core
  and carries out each message's effects in order.  At the end of the round
  the RPCs for each peer, the commands forwarded to each server and the WAL
  appends leave as one batch each.
* **Timers** are port wakeups carrying an epoch; a wakeup whose epoch is not
  current is ignored (no port can cancel one).  Election delays are drawn
  from the port's ``rng``.
* **Crashes.**  An exception out of the core or an effect while handling an
  input ends the server: ``port.crash``; the port restarts it from its store.
  A failing *machine* effect (``SendMsg``, ``ModCall``, ...) is logged and
  skipped: the machine's own mistake must not kill the server.  An ``Aux``
  effect goes back to the core at once (``AuxCommand`` cast, Ra's
  ``handle_effect({aux, Cmd})``) and the effects it yields run then; the
  core reports a failing ``handle_aux`` (``AuxFailure``, logged).
* **Lost writes are written again.**  While the log holds entries the WAL
  has not reported durable, a ``WalStallWakeup`` checks every
  ``wal_stall_ms``: if ``last_written`` has not moved since the previous
  check, the unwritten suffix is written again (a ``ResendWrite`` from
  ``last_written + 1``).  A WAL write or its report can be lost on the way
  (a message dropped, a WAL that died); the WAL's own gap detection asks
  only once, so this is what guarantees progress.  An idle server arms no
  such timer.
* **Counters and the leaderboard** go to the ``observer``
  (:class:`~.port.ServerObserver`): the counters of
  :data:`SERVER_COUNTERS` at the end of every round (and before the round's
  first reply, so a client that got an answer never reads older counters),
  and the leader and members whenever the core's change.  Publishing costs
  one tuple per round; it decides nothing.
* **Disk machines** get their directory from the store
  (``ServerStore.machine_dir``); their files are closed when the server
  closes or crashes.
* No I/O, no Thespian, no wall clock here: time is ``port.now_ms()``.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from ..core import codec
from ..core import effects as fx
from ..core import messages as m
from ..core.machine import Machine, is_disk_machine
from ..core.server import RaftServer
from ..core.types import (CANDIDATE, LEADER, LEADING_ROLES, MEMBERSHIPS, MUTABLE_CONFIG_KEYS, PRE_VOTE, ROLES,
                          NoReply, ServerConfig,
                          ServerId, TERMINATING_LEADER)
from .names import ModulePolicy, query_function
from .port import NullObserver, ServerObserver, ServerPort, ServerStore

SERVER_DEFAULTS: dict[str, Any] = {
    "election_timeout_ms": (1000, 2000),     # "long": no leader known
    "election_short_ms": (80, 300),          # "short": the leader is known to be gone
    "tick_ms": 1000,                         # leader tick (resends, machine tick): Ra's tick_timeout
    "terminating_tick_ms": 100,              # a deletion is bounded by ticks: do not wait long
    "last_applied_every_ms": 200,            # the last-applied hint is written at most this often
    "wal_stall_ms": 1000,                    # no WAL progress this long: write the unwritten suffix again
    "max_unanswered": 256,                   # (ports) messages queued to a silent peer
    "peer_silence_s": 5.0,                   # (ports) re-resolve a peer silent this long
}


#: The counters a server publishes (``ServerObserver.publish``), in this
#: order; what each means: :mod:`ra_actors.metrics.fields`.
SERVER_COUNTERS: tuple[str, ...] = (
    "last_applied", "commit_index", "snapshot_index", "last_index", "last_written_index",
    "commit_latency", "term", "machine_version", "state", "membership",
    "commands", "applied", "queries", "rpcs_received", "rpcs_sent", "wal_writes", "wal_resends",
    "snapshots_written", "snapshots_installed", "snapshot_chunks_received", "snapshot_chunks_sent",
    "elections", "pre_vote_elections", "term_and_vote_writes", "leader_changes")
#: ``state`` and ``membership`` as published (0: not known yet).
ROLE_CODES: dict[str, int] = {str(role): i for i, role in enumerate(ROLES, 1)}
MEMBERSHIP_CODES: dict[str, int] = {name: i for i, name in enumerate(MEMBERSHIPS, 1)}

# The core every shell builds unless told otherwise.
DEFAULT_CORE: Callable[..., RaftServer] = RaftServer


def validate_settings(settings: dict | None) -> dict:
    """``SERVER_DEFAULTS`` updated with ``settings``; unknown keys are an error."""
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(SERVER_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown server settings {unknown}; known: {', '.join(sorted(SERVER_DEFAULTS))}")
    return {**SERVER_DEFAULTS, **settings}


# ------------------------------------------------------------- wakeups
@dataclass(frozen=True, slots=True)
class ElectionWakeup:
    epoch: int


@dataclass(frozen=True, slots=True)
class AwaitConditionWakeup:
    epoch: int


@dataclass(frozen=True, slots=True)
class TickWakeup:
    epoch: int


@dataclass(frozen=True, slots=True)
class MachineTimerWakeup:
    name: Any
    epoch: int


@dataclass(frozen=True, slots=True)
class LastAppliedWakeup:
    pass


@dataclass(frozen=True, slots=True)
class QueryWaitWakeup:
    from_: Any            # the caller of a query that waits for its condition


@dataclass(frozen=True, slots=True)
class WalStallWakeup:
    last_written: int     # the core's last_written when the check was armed


def _is_server_id(value: Any) -> bool:
    return isinstance(value, ServerId) or (
        type(value) is tuple and len(value) == 2 and all(isinstance(x, str) for x in value))


class ServerShell:
    """See the module rules.  Build with a port, then :meth:`recover` and
    :meth:`start`; feed it with :meth:`deliver` and the ``on_*`` methods.
    ``core_factory`` builds the core (``RaftServer``; the simulator and the
    Jepsen harness pass variants with deliberate bugs to prove they catch them)."""

    def __init__(self, port: ServerPort, core_factory: Callable[..., RaftServer] | None = None) -> None:
        self.port = port
        # (looked up now, not at definition: the Jepsen harness's node shim
        # puts a core with deliberate bugs here to prove it catches them)
        self.core_factory = core_factory or DEFAULT_CORE
        self.core: RaftServer | None = None
        self.store: ServerStore | None = None
        self.config: ServerConfig | None = None
        self.id: ServerId | None = None
        self.uid: str | None = None
        self.incarnation = 0
        self.settings: dict[str, Any] = dict(SERVER_DEFAULTS)
        self.machine_impl: Any = None
        self.modules = ModulePolicy()                          # what names from the network may import
        self.closed = False
        self.crashed = False
        # What the core said last (kept from LeaderChanged / RoleChanged effects).
        self.role: str | None = None
        self.leader: ServerId | None = None
        self.term = 0
        self.nodes_down: set[str] = set()
        self.stats = {"commands": 0, "rpcs_in": 0, "rpcs_out": 0, "wal_writes": 0,
                      "snapshot_chunks_in": 0, "snapshot_chunks_out": 0, "snapshots_written": 0,
                      "checkpoints_written": 0, "checkpoints_promoted": 0, "machine_messages_sent": 0,
                      "wal_resends": 0, "queries": 0, "elections": 0, "pre_vote_elections": 0,
                      "term_and_vote_writes": 0, "leader_changes": 0}
        self.observer: ServerObserver = NullObserver()
        self.commit_latency = 0                                # ms (Ra's commit_latency)
        self._latency_ts = 0
        self._unpublished = False                              # the core moved since the last publish
        self._board: tuple | None = None                       # what the leaderboard was last told
        self._queue: deque = deque()
        self._pumping = False
        # This round's batches.
        self._outbox: dict[ServerId, list] = {}
        self._forwards: dict[ServerId, list] = {}
        self._wal_appends: list = []
        # Timer epochs (a wakeup of an older epoch is stale).
        self._election_epoch = 0
        self._await_epoch = 0
        self._tick_epoch = 0
        self._ticking = False
        # Monitors: the core watches its leader; the machine watches what it asks for.
        self._leader_watches: dict[ServerId, Any] = {}       # server -> ref
        self._machine_watches: dict[Any, Any] = {}            # target -> ref
        self._watch_kind: dict[Any, tuple[str, Any]] = {}     # ref -> ("leader" | "machine", target)
        self._node_monitors: set[str] = set()
        self._machine_timers: dict[Any, int] = {}             # name -> epoch
        self._refs = 0
        self._snapshot_cache: tuple | None = None             # (meta, encoded state)
        self._last_applied_written = 0
        self._last_applied_due: int | None = None
        self._last_applied_armed = False
        self._wal_check_armed = False

    # ============================================================ lifecycle
    def recover(self, config: ServerConfig, incarnation: int, store: ServerStore, machine_impl: Any,
                settings: dict | None = None, nodes_down=(), allowed_modules=None) -> None:
        """Build the core from what ``store`` recovers.  Raises what recovery
        or the machine raise; then nothing has started.  ``allowed_modules``:
        the node's (see :mod:`.names`)."""
        self.modules = ModulePolicy(allowed_modules)
        self.config = config
        self.id = ServerId(*config.server_id)
        self.uid = config.uid
        self.incarnation = incarnation
        self.settings = validate_settings(settings)
        self.store = store
        self.machine_impl = machine_impl
        self.nodes_down = set(nodes_down)
        directory = store.machine_dir() if is_disk_machine(machine_impl) else None
        self.core = self.core_factory(config, Machine(machine_impl, directory), store.recover())
        self._last_applied_written = self.core.last_applied
        meta = self.core.snapshot_meta
        if meta is not None:
            data = store.snapshot_bytes(meta)
            self._snapshot_cache = (meta, data) if data is not None else None

    def start(self) -> None:
        """Carry out the core's start-up effects (after ``recover``)."""
        def run():
            _role, effects = self.core.init()
            self._run(effects)
            for node in sorted(self.nodes_down):
                self._queue.append(m.NodeEvent(node, False))
            self._pump()
        self._guard("start", run)

    def stop(self) -> None:
        """Operator stop: keep the data, leave."""
        self._guard("stop", self._leave, "normal")

    def close(self) -> None:
        """The server is going away (any reason): write the last-applied hint
        and release the store.  Safe to call twice."""
        if self.core is None or self.closed:
            return
        self.closed = True
        self._write_last_applied()
        self._close_machine()
        try:
            self.store.close()
        except Exception as exc:  # noqa: BLE001 - closing is best effort
            self.port.log(f"closing the store failed: {exc!r}")

    def _close_machine(self) -> None:
        """A disk machine's files are released with the server (closing twice is harmless)."""
        core = self.core
        if core is None or not core.machine.disk:
            return
        try:
            core.machine.close(core.machine_state)
        except Exception as exc:  # noqa: BLE001 - closing is best effort
            self.port.log(f"closing the machine's files failed: {exc!r}")

    @property
    def running(self) -> bool:
        return self.core is not None and not self.closed and not self.crashed

    # ================================================================ inputs
    def deliver(self, msg: Any) -> None:
        """One core message (RPC, client request, durability report, ...)."""
        self._guard(type(msg).__name__, self._deliver_all, (msg,))

    def deliver_rpcs(self, rpcs: tuple) -> None:
        """A batch of RPCs from one peer, in its order."""
        self.stats["rpcs_in"] += len(rpcs)
        self.stats["snapshot_chunks_in"] += sum(1 for r in rpcs if isinstance(r, m.InstallSnapshotRpc))
        self._guard("rpcs", self._deliver_all, rpcs)

    def on_wal_result(self, msgs: tuple) -> None:
        def run():
            for msg in msgs:
                self._queue.extend(self.store.written(msg))
            self._pump()
        self._guard("WAL result", run)

    def on_wal_restarted(self) -> None:
        """The node's WAL lost what it had not confirmed: write it again."""
        def run():
            log = self.core.log
            self.port.log(f"WAL restarted: resending from {log.last_written + 1}")
            if log.last_index > log.last_written:
                self._deliver_all((m.ResendWrite(log.last_written + 1),))
        self._guard("WAL restart", run)

    def on_snapshot_written(self, meta: Any, data: bytes | None = None) -> None:
        def run():
            if data is not None:
                self._snapshot_cache = (meta, data)
            self.store.snapshot_written(meta)
            self.stats["snapshots_written"] += 1
            self._deliver_all((m.SnapshotWritten(meta),))
        self._guard("snapshot written", run)

    def on_snapshot_failed(self, meta: Any, error: str) -> None:
        if self.running:
            self._crash(f"snapshot {meta.index}/{meta.term} could not be written: {error}", None)

    def on_segments_written(self, refs: Any) -> None:
        self._guard("segments written", self.store.segments_written, refs)

    def on_wakeup(self, payload: Any) -> None:
        handler = self._WAKEUPS.get(type(payload))
        if handler is not None:
            self._guard(type(payload).__name__, handler, self, payload)

    def on_watch_down(self, ref: Any, reason: Any) -> None:
        def run():
            entry = self._watch_kind.pop(ref, None)
            if entry is None:
                return
            kind, target = entry
            if kind == "leader":
                if self._leader_watches.get(target) == ref:
                    del self._leader_watches[target]
                self._deliver_all((m.ServerDown(ServerId(*target), reason),))
            elif self._machine_watches.get(target) == ref:
                del self._machine_watches[target]
                self._deliver_all((m.MachineEvent(fx.Down(target, reason), self.port.now_ms()),))
        self._guard("monitor down", run)

    def on_node_event(self, node: str, up: bool) -> None:
        """The node failure detector changed its mind about ``node``."""
        def run():
            if up:
                self.nodes_down.discard(node)
            else:
                self.nodes_down.add(node)
            self._queue.append(m.NodeEvent(node, up))
            if node in self._node_monitors:
                event = fx.NodeUp(node) if up else fx.NodeDown(node)
                self._queue.append(m.MachineEvent(event, self.port.now_ms()))
            self._pump()
        self._guard("node event", run)

    # ------------------------------------------------------------- readings
    def key_metrics(self) -> dict:
        return dict(self.core.key_metrics(), commit_latency=self.commit_latency)

    def query_function(self, name: Any):
        """The function a client's query names (``names.NameRefused`` if it
        may not be called)."""
        return query_function(self.config.machine, name)

    def overview(self) -> dict:
        ov = self.core.overview()
        ov.update({"incarnation": self.incarnation, "uid": self.uid, "log": self.store.overview(),
                   "machine_module": self.config.machine, "stats": dict(self.stats),
                   "config": {k: getattr(self.config, k) for k in MUTABLE_CONFIG_KEYS}})
        return ov

    # ========================================================== core driving
    def _guard(self, what: str, fn: Callable, *args) -> None:
        if not self.running:
            return
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - any error is a crash of this server
            self._crash(f"{type(exc).__name__} while handling {what}: {exc}", exc)

    def _crash(self, reason: str, exc: BaseException | None) -> None:
        if self.crashed:
            return
        self.crashed = True
        self._close_machine()
        self.port.crash(reason, exc)

    def _deliver_all(self, msgs) -> None:
        self._queue.extend(msgs)
        self._pump()

    def _pump(self) -> None:
        if self._pumping:
            return   # an effect fed the queue: the running pump takes it
        self._pumping = True
        try:
            while self._queue and self.running:
                _role, effects = self.core.handle(self._queue.popleft())
                self._unpublished = True
                self._run(effects)
        finally:
            self._pumping = False
        if self.running:
            if not self._ticking and self.core.wants_tick():
                self._start_ticking()
            self._flush()
            self._observe()

    # ============================================================ observing
    def _observe(self) -> None:
        """End of a round: publish the counters, tell the leaderboard what changed."""
        self._publish()
        core = self.core
        history = core.cluster_history
        board = (core.leader_id, history[-1][0], len(history))
        if board != self._board:
            self._board = board
            members = tuple(sorted(core.cluster, key=lambda s: (s.node, s.name)))
            self.observer.record_leader(core.leader_id, members, core.current_term)

    def _publish(self) -> None:
        self._unpublished = False
        core = self.core
        log = core.log
        st = self.stats
        ts = core.last_applied_ts
        if ts != self._latency_ts:
            self._latency_ts = ts
            self.commit_latency = max(0, self.port.now_ms() - ts)
        cc = core.counters
        self.observer.publish((
            core.last_applied, core.commit_index, log.snapshot_index, log.last_index, log.last_written,
            self.commit_latency, core.current_term, core.machine_version, ROLE_CODES.get(core.role, 0),
            MEMBERSHIP_CODES.get(core.cluster.get(self.id), 0),
            st["commands"], cc["applied"], st["queries"], st["rpcs_in"], st["rpcs_out"], st["wal_writes"],
            st["wal_resends"], st["snapshots_written"], cc["snapshots_installed"], st["snapshot_chunks_in"],
            st["snapshot_chunks_out"], st["elections"], st["pre_vote_elections"], st["term_and_vote_writes"],
            st["leader_changes"]))

    def _run(self, effects: list) -> None:
        for effect in effects:
            handler = self._EFFECTS.get(type(effect))
            if handler is None:
                raise TypeError(f"no handler for effect {type(effect).__name__}")
            handler(self, effect)
            if not self.running:
                return   # the server stopped or was deleted: nothing after that runs

    def _flush(self) -> None:
        if self._wal_appends:
            appends, self._wal_appends = tuple(self._wal_appends), []
            self.stats["wal_writes"] += 1
            self.port.wal_write(appends)
            if not self._wal_check_armed:
                self._arm_wal_check()
        if self._outbox:
            outbox, self._outbox = self._outbox, {}
            for to, rpcs in outbox.items():
                self.stats["rpcs_out"] += len(rpcs)
                self.port.send_rpcs(to, tuple(rpcs))
        if self._forwards:
            forwards, self._forwards = self._forwards, {}
            for to, cmds in forwards.items():
                self.port.forward_commands(to, tuple(cmds))

    # ======================================================== server effects
    def _send_rpc(self, e: fx.SendRpc) -> None:
        self._outbox.setdefault(ServerId(*e.to), []).append(e.rpc)

    def _log_append(self, e: fx.LogAppend) -> None:
        if e.entries:
            self._wal_appends.append(self.store.append(e.entries))

    def _persist_meta(self, e: fx.PersistMeta) -> None:
        self.stats["term_and_vote_writes"] += 1
        written = self.store.persist_meta(e.term, e.voted_for)
        if written is not None:
            self._queue.append(written)

    def _persist_last_applied(self, e: fx.PersistLastApplied) -> None:
        self._last_applied_due = e.index
        if not self._last_applied_armed:
            self._last_applied_armed = True
            self.port.wakeup(self.settings["last_applied_every_ms"], LastAppliedWakeup())

    def _write_last_applied(self) -> None:
        index = self._last_applied_due
        if self.core is None or index is None or index == self._last_applied_written:
            return
        try:
            self.store.persist_last_applied(index)
            self._last_applied_written = index
        except Exception as exc:  # noqa: BLE001 - only a recovery hint
            self.port.log(f"could not write last_applied: {exc!r}")

    def _reply(self, e: fx.Reply) -> None:
        if self._unpublished:
            self._publish()
        self.port.reply(e.to, e.reply, e.leader)

    def _applied(self, e: fx.Applied) -> None:
        if self._unpublished:
            self._publish()
        self.port.applied(e.client, e.leader, e.results)

    def _rejected(self, e: fx.Rejected) -> None:
        self.port.rejected(e.client, e.from_id, e.leader, e.correlation, e.reason)

    def _forward(self, e: fx.ForwardCommand) -> None:
        self._forwards.setdefault(ServerId(*e.leader), []).append(e.command)

    def _set_election_timer(self, e: fx.SetElectionTimer) -> None:
        self._election_epoch += 1
        lo, hi = self.settings["election_short_ms" if e.kind == "short" else "election_timeout_ms"]
        self.port.wakeup(self.port.rng.randint(int(lo), int(hi)), ElectionWakeup(self._election_epoch))

    def _cancel_election_timer(self, _e: fx.CancelElectionTimer) -> None:
        self._election_epoch += 1

    def _set_await_timer(self, e: fx.SetAwaitConditionTimer) -> None:
        self._await_epoch += 1
        self.port.wakeup(e.timeout_ms, AwaitConditionWakeup(self._await_epoch))

    def _write_snapshot(self, e: fx.WriteSnapshot) -> None:
        data = e.data if e.data is not None else codec.pack(e.state)
        self.port.write_snapshot(e.meta, data)

    def _write_checkpoint(self, e: fx.WriteCheckpoint) -> None:
        # In this process, synchronously: a checkpoint is one file write and
        # fsync, and the core starts no other snapshot work until it lands.
        self.store.write_checkpoint(e.meta, e.data)
        self.stats["checkpoints_written"] += 1
        self._queue.append(m.CheckpointWritten(e.meta))

    def _promote_checkpoint(self, e: fx.PromoteCheckpoint) -> None:
        data = self.store.promote_checkpoint(e.meta)
        if data is not None:
            self._snapshot_cache = (e.meta, data)
        self.stats["checkpoints_promoted"] += 1
        self._queue.append(m.SnapshotWritten(e.meta))

    def _delete_checkpoints(self, e: fx.DeleteCheckpoints) -> None:
        self.store.delete_checkpoints(e.metas)

    def _send_snapshot_chunk(self, e: fx.SendSnapshotChunk) -> None:
        cache = self._snapshot_cache
        if cache is None or cache[0] != e.meta:
            data = self.store.snapshot_bytes(e.meta)
            if data is None:
                return   # superseded and gone: the core starts over on its tick
            cache = self._snapshot_cache = (e.meta, data)
        data = cache[1]
        size = max(1, min(e.chunk_size, 1 << 20))
        start = (e.chunk_no - 1) * size
        if start >= len(data) and start > 0:
            return
        self.stats["snapshot_chunks_out"] += 1
        self._outbox.setdefault(ServerId(*e.to), []).append(
            m.InstallSnapshotRpc(e.term, self.id, e.meta, e.chunk_no, start + size >= len(data),
                                 data[start:start + size]))

    def _truncate_below(self, e: fx.TruncateLogBelow) -> None:
        self.store.truncate_below(e.index, e.keep_above)

    def _monitor_server(self, e: fx.MonitorServer) -> None:
        target = ServerId(*e.server_id)
        if target not in self._leader_watches:
            ref = self._new_ref()
            self._leader_watches[target] = ref
            self._watch_kind[ref] = ("leader", target)
            self.port.watch(target, ref)

    def _leader_changed(self, e: fx.LeaderChanged) -> None:
        self.stats["leader_changes"] += 1
        self.leader = e.leader
        self.term = e.term
        # Only the current leader needs watching.
        for target, ref in list(self._leader_watches.items()):
            if target != e.leader:
                del self._leader_watches[target]
                self._watch_kind.pop(ref, None)
                self.port.unwatch(target, ref)

    def _role_changed(self, e: fx.RoleChanged) -> None:
        was_leader = self.role == LEADER
        self.role = e.role
        if e.role == CANDIDATE:
            self.stats["elections"] += 1
        elif e.role == PRE_VOTE:
            self.stats["pre_vote_elections"] += 1
        if e.role in LEADING_ROLES:
            if not self._ticking:
                self._start_ticking()
        elif self._ticking:
            self._ticking = False
            self._tick_epoch += 1
        if was_leader and e.role != LEADER:
            self._end_machine_monitors()

    def _stop_server(self, e: fx.StopServer) -> None:
        self.port.log(f"stopping: {e.reason}")
        self._leave("removed")

    def _delete_data(self, _e: fx.DeleteData) -> None:
        self.port.log("cluster deleted: removing this server")
        self._leave("deleted")

    def _leave(self, why: str) -> None:
        # What this round produced still goes out (a removed leader's
        # TimeoutNowRpc, a deleted follower's last acknowledgement); then the
        # server handles nothing more and its files are released before the
        # port (and the supervisor, for "deleted") hear of it.
        self._flush()
        self.close()
        self.port.exit(why)

    def _machine_effects(self, e: fx.MachineEffects) -> None:
        for effect in e.effects:
            handler = self._MACHINE_EFFECTS.get(type(effect))
            if handler is None:
                raise TypeError(f"no handler for machine effect {type(effect).__name__}")
            if type(effect) is fx.Aux:
                # the core runs it (a failing handle_aux is reported there); what
                # fails in the server effects it produces is the server's failure
                handler(self, effect)
                continue
            try:
                handler(self, effect)
            except Exception as exc:  # noqa: BLE001 - see the module rules
                self.port.log(f"machine effect {type(effect).__name__} failed: {exc!r}")

    # ---------------------------------------------------------------- ticks
    def _start_ticking(self) -> None:
        self._ticking = True
        self._tick_epoch += 1
        self.port.wakeup(self._tick_interval(), TickWakeup(self._tick_epoch))

    def _tick_interval(self) -> int:
        if self.role == TERMINATING_LEADER:
            return min(self.settings["tick_ms"], self.settings["terminating_tick_ms"])
        return self.settings["tick_ms"]

    # ======================================================= machine effects
    def _send_msg(self, e: fx.SendMsg) -> None:
        if _is_server_id(e.to):
            sid = ServerId(*e.to)
            cmd = m.Command(e.msg, NoReply(), "normal", self.port.now_ms())
            if sid == self.id:
                self._queue.append(cmd)
            else:
                self._forwards.setdefault(sid, []).append(cmd)
        else:
            self.stats["machine_messages_sent"] += 1
            self.port.send_message(e.to, e.msg, e.options, self.leader)

    def _mod_call(self, e: fx.ModCall) -> None:
        self.modules.call(e.fun)(*e.args)

    def _monitor(self, e: fx.Monitor) -> None:
        if e.kind == "node":
            self._node_monitors.add(e.target)
            if e.target in self.nodes_down:
                self._queue.append(m.MachineEvent(fx.NodeDown(e.target), self.port.now_ms()))
            return
        target = ServerId(*e.target) if _is_server_id(e.target) else e.target
        if target not in self._machine_watches:
            ref = self._new_ref()
            self._machine_watches[target] = ref
            self._watch_kind[ref] = ("machine", target)
            self.port.watch(target, ref)

    def _demonitor(self, e: fx.Demonitor) -> None:
        if e.kind == "node":
            self._node_monitors.discard(e.target)
            return
        target = ServerId(*e.target) if _is_server_id(e.target) else e.target
        ref = self._machine_watches.pop(target, None)
        if ref is not None:
            self._watch_kind.pop(ref, None)
            self.port.unwatch(target, ref)

    def _timer(self, e: fx.Timer) -> None:
        self._refs += 1
        if e.ms is None:
            self._machine_timers.pop(e.name, None)
            return
        self._machine_timers[e.name] = self._refs
        delay = e.ms - self.port.now_ms() if e.absolute else e.ms
        self.port.wakeup(max(0, int(delay)), MachineTimerWakeup(e.name, self._refs))

    def _aux(self, e: fx.Aux) -> None:
        # Ra's {aux, Cmd} effect: back to the core as a cast, at once, so
        # that handle_aux runs at this effect's place and its effects follow.
        _role, effects = self.core.handle(m.AuxCommand("cast", e.command))
        self._unpublished = True
        self._run(effects)

    def _aux_failure(self, e: fx.AuxFailure) -> None:
        self.port.log(f"handle_aux failed on the {e.kind} {e.command!r:.200}: {e.reason}")

    def _handled_by_core(self, _e: Any) -> None:
        """ReleaseCursor / Checkpoint / Append / TryAppend / Log never reach a shell
        (the core takes them out of MachineEffects); listed for the closed
        vocabulary."""

    def _end_machine_monitors(self) -> None:
        for target, ref in list(self._machine_watches.items()):
            self._watch_kind.pop(ref, None)
            self.port.unwatch(target, ref)
        self._machine_watches = {}
        self._node_monitors = set()
        self._machine_timers = {}

    def _new_ref(self) -> tuple[int, int]:
        self._refs += 1
        return (self.incarnation, self._refs)

    # =============================================================== wakeups
    def _on_election_wakeup(self, w: ElectionWakeup) -> None:
        if w.epoch == self._election_epoch:
            self._deliver_all((m.ElectionTimeout(),))

    def _on_await_wakeup(self, w: AwaitConditionWakeup) -> None:
        if w.epoch == self._await_epoch:
            self._deliver_all((m.AwaitConditionTimeout(),))

    def _on_tick_wakeup(self, w: TickWakeup) -> None:
        if w.epoch != self._tick_epoch or not self._ticking:
            return
        self._deliver_all((m.Tick(self.port.now_ms()),))
        if self._ticking and w.epoch == self._tick_epoch:
            if self.core.wants_tick():
                self.port.wakeup(self._tick_interval(), TickWakeup(self._tick_epoch))
            else:
                self._ticking = False   # idle: no timer until there is work

    def _on_machine_timer_wakeup(self, w: MachineTimerWakeup) -> None:
        if self._machine_timers.get(w.name) == w.epoch:
            del self._machine_timers[w.name]
            self._deliver_all((m.MachineEvent(fx.TimerFired(w.name), self.port.now_ms()),))

    def limit_query_wait(self, wait_ms: int, caller: Any) -> None:
        """A query with a condition waits at most ``wait_ms`` (then the core
        answers it ``Timeout`` if it still waits; nothing if answered)."""
        self.port.wakeup(wait_ms, QueryWaitWakeup(caller))

    def _on_query_wait_wakeup(self, w: QueryWaitWakeup) -> None:
        self._deliver_all((m.QueryExpired(w.from_),))

    def _on_last_applied_wakeup(self, _w: LastAppliedWakeup) -> None:
        self._last_applied_armed = False
        self._write_last_applied()

    def _arm_wal_check(self) -> None:
        self._wal_check_armed = True
        self.port.wakeup(self.settings["wal_stall_ms"], WalStallWakeup(self.core.log.last_written))

    def _on_wal_stall_wakeup(self, w: WalStallWakeup) -> None:
        self._wal_check_armed = False
        log = self.core.log
        if log.last_index <= log.last_written:
            return   # everything is durable: no timer until the next write
        if log.last_written == w.last_written:
            self.stats["wal_resends"] += 1
            self.port.log(f"no WAL progress for {self.settings['wal_stall_ms']} ms: writing again "
                          f"from {log.last_written + 1} (last index {log.last_index})")
            self._deliver_all((m.ResendWrite(log.last_written + 1),))
        if self.running and not self._wal_check_armed:
            self._arm_wal_check()

    _EFFECTS: dict[type, Callable] = {
        fx.SendRpc: _send_rpc,
        fx.LogAppend: _log_append,
        fx.PersistMeta: _persist_meta,
        fx.PersistLastApplied: _persist_last_applied,
        fx.Reply: _reply,
        fx.Applied: _applied,
        fx.Rejected: _rejected,
        fx.ForwardCommand: _forward,
        fx.SetElectionTimer: _set_election_timer,
        fx.CancelElectionTimer: _cancel_election_timer,
        fx.SetAwaitConditionTimer: _set_await_timer,
        fx.WriteSnapshot: _write_snapshot,
        fx.WriteCheckpoint: _write_checkpoint,
        fx.PromoteCheckpoint: _promote_checkpoint,
        fx.DeleteCheckpoints: _delete_checkpoints,
        fx.SendSnapshotChunk: _send_snapshot_chunk,
        fx.TruncateLogBelow: _truncate_below,
        fx.MonitorServer: _monitor_server,
        fx.LeaderChanged: _leader_changed,
        fx.RoleChanged: _role_changed,
        fx.StopServer: _stop_server,
        fx.DeleteData: _delete_data,
        fx.MachineEffects: _machine_effects,
        fx.AuxFailure: _aux_failure,
    }

    _MACHINE_EFFECTS: dict[type, Callable] = {
        fx.SendMsg: _send_msg,
        fx.ModCall: _mod_call,
        fx.Monitor: _monitor,
        fx.Demonitor: _demonitor,
        fx.Timer: _timer,
        fx.Aux: _aux,
        fx.ReleaseCursor: _handled_by_core,
        fx.Checkpoint: _handled_by_core,
        fx.Append: _handled_by_core,
        fx.TryAppend: _handled_by_core,
        fx.Log: _handled_by_core,
    }

    _WAKEUPS: dict[type, Callable] = {
        ElectionWakeup: _on_election_wakeup,
        AwaitConditionWakeup: _on_await_wakeup,
        TickWakeup: _on_tick_wakeup,
        MachineTimerWakeup: _on_machine_timer_wakeup,
        LastAppliedWakeup: _on_last_applied_wakeup,
        WalStallWakeup: _on_wal_stall_wakeup,
        QueryWaitWakeup: _on_query_wait_wakeup,
    }


SERVER_EFFECTS = frozenset(ServerShell._EFFECTS)
MACHINE_EFFECT_HANDLERS = frozenset(ServerShell._MACHINE_EFFECTS)
