"""A Raft server on Thespian: the actor-side port of a :class:`ServerShell`.

:class:`ActorServerPort` is what both placements share: it turns Thespian
messages into the shell's inputs and the shell's port calls into Thespian
messages.  :class:`ServerActor` hosts one port and shell per OS process
(placement ``process``, Ra's one Erlang process per server);
:class:`ra_actors.actors.host.HostActor` hosts many (placement ``shared``).

Rules:

* The interpreter is :mod:`ra_actors.shell.server`; nothing here decides
  anything about Raft.  Peer and client addresses are the
  :class:`~.peers.PeerRouter`'s.
* Every message meant for one server names it (``Rpcs.to``, ``ClientCall.to``,
  ``Pipeline.to``); one that reaches the wrong server is answered
  ``Misdelivered`` (or an ``Unavailable("misdelivered")`` reply) so the sender
  looks the address up again.
* A client's request is a typed record (``protocol.CLIENT_REQUESTS``) with
  one handler each (``ActorServerPort._CLIENT_REQUESTS``).  The port builds
  the core message itself: replies go to the envelope's ``(handle, req_id)``
  and commands carry this server's clock, never values the client chose.  A
  request it cannot build (unknown type, bad arguments, a query function
  that does not resolve; a session that is not a name with whole numbers
  ``1 <= low <= seq``, see :func:`session_seq`) is answered
  ``Error("InvalidCommand")`` (``InvalidQuery`` for a query) and changes
  nothing; such a pipelined command is answered ``Rejected(server,
  CommandRefused("InvalidCommand", correlation))`` and the others of its
  ``Pipeline`` go on.  A command the cluster cannot store or that is too
  large (:mod:`.admission`) is refused the same way (``CommandTooLarge``).
* WAL appends go to the server's WAL (one of the node's, ``ServerInit.wal``)
  as one ``WalWrite`` per round, numbered
  ``(incarnation, WAL epoch, n)``: the WAL puts them back in order and drops
  repeats (Thespian may reorder or repeat messages, see
  :mod:`.sequencing`); the epoch grows whenever the server starts writing
  to a WAL afresh.  While the WAL is restarting, appends wait; a restarted
  WAL lost what it had not confirmed, and the shell writes it again.
* Snapshots are written by the node's snapshot writer (or inline while it
  restarts); a write the writer lost when it died is sent again.
* A sick disk (:mod:`.storage_supervision`): a crash on a ``StorageError``
  says so (``ServerCrash.storage``); when the node's storage is in
  ``error`` the server *halts*: every request the core still owed an answer
  is answered ``Error("StorageError")`` (a pipelined command:
  ``Rejected(StorageFailed)``), the core gets nothing more and the store is
  released; from then on it answers every request ``StorageError``, except
  ``key_metrics`` (``state`` is ``"error"``, ``error`` the reason), the
  member overview and pings, until its supervisor stops it (and starts it
  again from disk once the storage is back).  The port remembers the
  requests the core owes an answer (``(handle, req_id)`` and pipelined
  ``(handle, correlation)``) for ``CALL_MEMORY_S`` seconds at most.
* An exception outside the shell's own guard is a crash too: the server is
  restarted from disk by its supervisor.
* Placement ``process``: the server actor opens a direct stream of its own
  once its shell has started (:mod:`.streamside`): Raft's RPCs, its
  clients' traffic and its ``WalWrite``s travel there whenever a
  connection is up, Thespian otherwise; a ``WalResult`` is taken from the
  stream only when it comes from this server's WAL.
"""
from __future__ import annotations

import os
import random
import time
from typing import Any

from thespian.actors import (Actor, ActorAddress, ActorExitRequest, ChildActorExited, DeadEnvelope,
                             PoisonMessage, ThespianWatch, WakeupMessage, WatchMessage)

from .. import events as ev
from ..core.types import (ActorRef, AfterLogAppend, AwaitConsensus, Error, NoReply, NotifyReply, Ok, ServerId,
                          SessionSeq, Unavailable)
from ..core import messages as m
from ..core.codec import record_builder
from ..errors import MachineError, RaError, StorageError
from ..shell.names import ModulePolicy
from ..shell.server import SERVER_DEFAULTS, ServerShell, TickWakeup, validate_settings
from .admission import command_refusal
from .observer import ActorObserver
from .peers import PeerRouter
from .protocol import (MAX_QUERY_WAIT_MS, ActorSend, AddMemberRequest, AuxRequest, Bundle, ClientCall, ClientReply,
                       CommandRequest, DeleteClusterRequest, ForceShrinkRequest, Forwarded, InitialMembersRequest,
                       KeyMetricsRequest, LeaderboardRecord, LeaderboardUpdate, LookupReply, MemberOverviewRequest,
                       MembersInfoRequest, MembersRequest, Misdelivered, Pipeline, PipelinedColumns, QueryRequest,
                       RemoveMemberRequest, RetireServerRequest, Rpcs, SegmentsWritten, ServerCrash, ServerInit,
                       ServerPingRequest, ServerStarted, ServiceAddresses, SnapshotDone, SnapshotWrite, StopServer,
                       StreamOffer, SupResponse, TransferLeadershipRequest, TriggerElectionRequest, Unwatch, WalResult,
                       WalWrite, Watch, WatchDown, pipeline_correlations)
from .stream import addr_key
from .streamside import FROM_STREAM, STREAMED, WAL_RESULTS, WAL_STREAMED, StreamSide
from .util import encode_error, is_client_handle, log, log_exc, now_ms, tune_gc

__all__ = ["ActorServerPort", "ServerActor", "SERVER_DEFAULTS", "load_machine"]

# RA_ACTORS_TRACE=1 in a node's environment logs every message a server gets.
_TRACE = bool(os.environ.get("RA_ACTORS_TRACE"))

_REPLY_MODES = {"await_consensus": AwaitConsensus, "after_log_append": AfterLogAppend}

# How long the port remembers a request the core owes an answer (to answer
# it StorageError if the server halts): longer than any client waits.
CALL_MEMORY_S = 300.0

# What a server actor (placement ``process``) sends on its stream: Raft's
# RPCs, client traffic, and its writes to the node's WAL actor.
_PROCESS_STREAMED = STREAMED | WAL_STREAMED

# What a halted server still answers itself (everything else: StorageError).
_HALTED_ANSWERS = frozenset({KeyMetricsRequest, MemberOverviewRequest, ServerPingRequest})


def load_machine(path: str, policy: ModulePolicy):
    """Import a machine by path, ``"pkg.module"`` or ``"pkg.module:Class"``,
    if the node's ``policy`` allows its module (``NameRefused`` otherwise,
    before anything is imported)."""
    import importlib
    mod_name, attr = policy.machine(path)
    module = importlib.import_module(mod_name)
    if attr:
        obj: Any = getattr(module, attr)
        return obj() if isinstance(obj, type) else obj
    return module


def _query(fun, args, state):
    return fun(state, *args)


def _query_with_context(fun, args, state, context):
    return fun(state, *args, context=context)


def query_condition(kind: Any, condition: Any, wait_ms: Any) -> tuple | None:
    """A query request's condition, checked (it came from the network):
    None, or ``(index, term)`` whole numbers >= 0 on a local or leader query
    with ``1 <= wait_ms <= MAX_QUERY_WAIT_MS``; ``ValueError`` otherwise."""
    if condition is None:
        return None
    if kind not in ("local", "leader"):
        raise ValueError(f"only local and leader queries take a condition, not a {kind!r:.20} query")
    if (type(condition) not in (tuple, list) or len(condition) != 2
            or any(type(x) is not int or not 0 <= x <= _MAX_SEQ for x in condition)):
        raise ValueError(f"a query condition is (index, term), whole numbers >= 0, not {condition!r:.80}")
    if type(wait_ms) is not int or not 1 <= wait_ms <= MAX_QUERY_WAIT_MS:
        raise ValueError(f"a query with a condition waits 1 to {MAX_QUERY_WAIT_MS} ms, not {wait_ms!r:.40}")
    return (condition[0], condition[1])


_PRIORITIES = ("normal", "low")
MAX_SESSION_NAME = 256      # characters of a session name a server accepts
_MAX_SEQ = 2 ** 63 - 1      # (msgpack's int64: what the log can hold)
# Built per pipelined command, of fields checked here: without the frozen
# __init__'s per-field setattr (see codec.record_builder).
_session_seq = record_builder(SessionSeq)
_notify_reply = record_builder(NotifyReply)
_command = record_builder(m.Command)


def session_seq(session: Any, seq: Any, low: Any, known: Any) -> SessionSeq | None:
    """A command's session as a client's request gives it, checked: None
    without a session; ``ValueError`` for anything but a non-empty name, whole
    numbers ``1 <= low <= seq`` and a boolean ``known`` (a request is
    unpickled from the network: nothing in it is trusted)."""
    if session is None:
        return None
    if type(session) is not str or not 0 < len(session) <= MAX_SESSION_NAME:
        raise ValueError(f"a session is a name of 1 to {MAX_SESSION_NAME} characters, not {session!r:.80}")
    if type(seq) is not int or type(low) is not int or not 1 <= low <= seq <= _MAX_SEQ:
        raise ValueError(f"a session command needs whole numbers 1 <= low <= seq, not seq={seq!r:.40} "
                         f"low={low!r:.40}")
    if type(known) is not bool:
        raise ValueError(f"known is True or False, not {known!r:.40}")
    return _session_seq(session, seq, low, known)


def priority(value: Any) -> str:
    if value not in _PRIORITIES or type(value) is not str:
        raise ValueError(f"priority is 'normal' or 'low', not {value!r:.40}")
    return value


class ActorServerPort:
    """One server's port on Thespian (see the module rules).  Subclasses say
    how to send, wake up, exit and crash in their placement."""

    def __init__(self) -> None:
        self.shell = ServerShell(self)
        self.rng = random.Random()
        self.router: PeerRouter | None = None
        self.supervisor: Any = None
        self.data_dir: str | None = None
        self.wal: Any = None
        self.wal_index = 0                      # the node's WAL this server writes to (ServerInit.wal)
        self.snapshot_writer: Any = None
        self.segment_writer: Any = None
        self._unsent_wal: list = []
        self._wal_epoch = 0
        self._wal_seq = 0
        self._pending_snapshots: dict = {}     # meta -> data, until the writer answers
        self.exiting = False
        self.msgs_in = 0                        # messages received (not wakeups): bench's idle check
        # Requests the core owes an answer: (handle, req_id) or (handle, correlation)
        # of a pipelined command -> when it came (see the module rules).
        self._owed_calls: dict = {}
        self._owed_commands: dict = {}
        self.halted: str | None = None          # the storage error this server halted for
        self.crash_storage = False              # the crash was the disk's (a StorageError)

    # -- what a placement provides ---------------------------------------------------
    @property
    def my_address(self) -> Any:
        raise NotImplementedError

    def _send(self, addr: Any, msg: Any) -> None:
        raise NotImplementedError

    def _wakeup_after(self, seconds: float, payload: Any) -> None:
        raise NotImplementedError

    def _leave(self, reason: str) -> None:
        """Remove this server from its placement (the shell is closed)."""
        raise NotImplementedError

    def _die(self, reason: str) -> None:
        """The server crashed: tell the supervisor and go."""
        raise NotImplementedError

    @property
    def who(self) -> str:
        sid = self.shell.id
        return f"server {sid.name if sid else '?'}"

    # ================================================================ inbound
    def receive(self, msg: Any, sender: Any) -> None:
        if type(msg) is not WakeupMessage:
            self.msgs_in += 1
        if _TRACE:
            log(self.who, f"<- {type(msg).__name__}")
        try:
            self._dispatch(msg, sender)
        except Exception as exc:  # noqa: BLE001 - a crash: the supervisor restarts us from disk
            self.crash(f"{type(exc).__name__} while handling {type(msg).__name__}: {exc}", exc)

    def _dispatch(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, ServerInit):
            self._on_init(msg, sender)
            return
        if self.halted is not None:
            self._halted_dispatch(msg, sender)
            return
        if self.shell.core is None:
            if isinstance(msg, ClientCall):
                self._send(sender, ClientReply(msg.req_id, Unavailable("starting"), None))
            return
        handler = self._HANDLERS.get(type(msg))
        if handler is not None:
            handler(self, msg, sender)
        elif isinstance(msg, m.NodeEvent):
            self.router.on_node_event(msg.node, msg.up)
            self.shell.on_node_event(msg.node, msg.up)
        elif isinstance(msg, ActorExitRequest):
            self.shell.close()
        elif isinstance(msg, PoisonMessage):
            log(self.who, f"poison message returned: {str(msg.poisonMessage)[:200]}")
        elif not isinstance(msg, (ChildActorExited, SupResponse, StreamOffer)):
            log(self.who, f"unexpected message {type(msg).__name__}")

    def _on_init(self, msg: ServerInit, sender: Any) -> None:
        if self.shell.core is not None:
            return
        from . import storage
        config = msg.config
        sid = ServerId(*config.server_id)
        self.supervisor = msg.supervisor
        self.data_dir = msg.data_dir
        self.wal_index = msg.wal
        self.wal = msg.services.wal(msg.wal)
        self.snapshot_writer = msg.services.snapshot_writer
        self.segment_writer = msg.services.segment_writer
        store = None
        try:
            settings = validate_settings(msg.settings)
            self.router = PeerRouter(sid, msg.incarnation, self._send, msg.supervisor, settings,
                                     msg.nodes_down, lambda text: log(self.who, text))
            policy = ModulePolicy(msg.allowed_modules)
            impl = load_machine(config.machine, policy)
            store = storage.ServerStore(self.data_dir, config.uid, new=bool(msg.new), wal_dir=msg.wal_dir)
            self.shell.recover(config, msg.incarnation, store, impl, msg.settings, msg.nodes_down,
                               allowed_modules=policy.allowed)
            self.shell.observer = self._observer(msg, sid, config)
        except Exception as exc:  # noqa: BLE001
            log_exc(f"server {sid.name}", "start failed")
            if store is not None:
                store.close()
            err = exc if isinstance(exc, RaError) else MachineError(
                f"machine {config.machine!r} failed: {type(exc).__name__}: {exc}")
            self.shell.core = None
            self._send(sender, ServerStarted(sid.name, msg.incarnation, encode_error(err)))
            self._leave(f"start failed: {err}")
            return
        core = self.shell.core
        log(self.who, f"started (incarnation {msg.incarnation}, term {core.current_term}, "
                      f"last index {core.log.last_index}, applied {core.last_applied})")
        self._send(sender, ServerStarted(sid.name, msg.incarnation))
        reason = msg.services.halt_reason(self.wal_index)
        if reason is not None:
            self._halt(reason)
            return
        self.shell.start()

    def _observer(self, msg: ServerInit, sid: ServerId, config: Any) -> ActorObserver:
        from ..metrics.writers import server_writer
        try:
            writer = server_writer(self.data_dir, msg.counters_slot)
        except Exception as exc:  # noqa: BLE001 - a server runs without counters rather than not at all
            log(self.who, f"no counters: {exc!r}")
            writer = None
        return ActorObserver(self.who, writer, self._record_leader, sid.name, config.cluster_name,
                             msg.incarnation)

    def _record_leader(self, record: LeaderboardRecord) -> None:
        """A leaderboard record for the supervisor (a host collects them per turn)."""
        self._send(self.supervisor, LeaderboardUpdate((record,)))

    def _close_observer(self) -> None:
        observer = self.shell.observer
        if isinstance(observer, ActorObserver):
            observer.close()

    def _on_rpcs(self, msg: Rpcs, sender: Any) -> None:
        if self.router.accept_rpcs(msg, sender):
            self.shell.deliver_rpcs(tuple(msg.rpcs))

    def _on_wal_result(self, msg: WalResult, sender: Any) -> None:
        self.shell.on_wal_result(tuple(msg.msgs))

    def _on_segments_written(self, msg: SegmentsWritten, sender: Any) -> None:
        refs = msg.segments.get(self.shell.uid)
        if refs:
            self.shell.on_segments_written(refs)

    def _on_services(self, msg: ServiceAddresses, sender: Any) -> None:
        reason = msg.halt_reason(self.wal_index)
        if reason is not None:
            self._halt(reason)
            return
        if msg.snapshot_writer is not None and msg.snapshot_writer != self.snapshot_writer:
            self.snapshot_writer = msg.snapshot_writer
            # a snapshot writer that died took our pending writes with it
            for meta, data in self._pending_snapshots.items():
                self._send(self.snapshot_writer, SnapshotWrite(self.shell.uid, meta, data))
        self.segment_writer = msg.segment_writer or self.segment_writer
        wal = msg.wal(self.wal_index)
        if wal is None:
            self.wal = None
            return
        restarted = self.wal_index in msg.wal_restarted or self.wal is None or self.wal != wal
        self.wal = wal
        if restarted:
            self._unsent_wal = []
            self._wal_epoch += 1
            self._wal_seq = 0
            self.shell.on_wal_restarted()
        elif self._unsent_wal:
            appends, self._unsent_wal = tuple(self._unsent_wal), []
            self._send_wal(appends)

    def _on_snapshot_done(self, msg: SnapshotDone, sender: Any) -> None:
        data = self._pending_snapshots.pop(msg.meta, None)
        if msg.error:
            self.crash_storage = msg.storage
            self.shell.on_snapshot_failed(msg.meta, msg.error)
        else:
            self.shell.on_snapshot_written(msg.meta, data)

    def _on_wakeup(self, msg: WakeupMessage, sender: Any) -> None:
        if isinstance(msg.payload, TickWakeup):
            self.router.check_silent()
        self.shell.on_wakeup(msg.payload)

    def _on_watch_down(self, msg: WatchDown, sender: Any) -> None:
        self.shell.on_watch_down(msg.ref, msg.reason)

    def _on_lookup_reply(self, msg: LookupReply, sender: Any) -> None:
        self.router.on_lookup_reply(msg)

    def _on_misdelivered(self, msg: Misdelivered, sender: Any) -> None:
        self.router.on_misdelivered(msg, sender)

    def _on_dead_envelope(self, msg: DeadEnvelope, sender: Any) -> None:
        self.router.on_dead_letter(msg.deadAddress)

    def _on_stop(self, msg: StopServer, sender: Any) -> None:
        self.shell.stop()

    def _on_bundle(self, msg: Bundle, sender: Any) -> None:
        for inner in msg.msgs:
            self._dispatch(inner, sender)

    # -------------------------------------------------------------- clients
    def _on_client_call(self, msg: ClientCall, sender: Any) -> None:
        shell = self.shell
        if msg.to is not None and ServerId(*msg.to) != shell.id:
            self._send(sender, ClientReply(msg.req_id, Unavailable("misdelivered"), None))
            return
        self.router.client_called(msg.handle, sender)
        request = msg.request
        try:
            handler = self._CLIENT_REQUESTS.get(type(request))
            if handler is None:
                raise ValueError(f"unknown request {type(request).__name__}")
            # replies go to this envelope's caller: a request names no destination
            core_msg = handler(self, request, (msg.handle, msg.req_id))
        except _Refused as exc:
            self._send(sender, ClientReply(msg.req_id, Error(exc.kind, exc.message), shell.leader))
            return
        except Exception as exc:  # noqa: BLE001 - a bad request is the caller's error
            kind = "InvalidQuery" if type(request) is QueryRequest else "InvalidCommand"
            self._send(sender, ClientReply(msg.req_id, Error(kind, f"{type(exc).__name__}: {exc}"), shell.leader))
            return
        if isinstance(core_msg, _Immediate):
            self._send(sender, ClientReply(msg.req_id, Ok(core_msg.value), shell.leader))
            if core_msg.then is not None:
                shell.deliver(core_msg.then)
        else:
            self._owe(self._owed_calls, (msg.handle, msg.req_id))
            shell.deliver(core_msg)

    # One handler per client request (protocol.CLIENT_REQUESTS): each returns
    # the core message for it, or an _Immediate answer.  ``caller`` is
    # ``(handle, req_id)`` of the envelope; the clock is this server's.
    def _request_command(self, req: CommandRequest, caller: tuple) -> m.Command:
        session = session_seq(req.session, req.seq, req.low, req.known)
        refusal = command_refusal(req.data, self.shell.config.max_command_bytes)
        if refusal is not None:
            raise _Refused(*refusal)
        reply_mode = NoReply() if req.reply_mode == "noreply" else _REPLY_MODES[req.reply_mode](caller)
        if req.reply_from is not None:
            reply_mode = AwaitConsensus(caller, _reply_from(req.reply_from, req.reply_mode))
        cmd = m.Command(req.data, reply_mode, priority(req.priority), now_ms(), session)
        self.shell.stats["commands"] += 1
        return cmd

    def _request_query(self, req: QueryRequest, caller: tuple) -> m.Query:
        # only a function the cluster's machine declares (shell/names.py);
        # a refused name is the caller's InvalidQuery, nothing imported
        fun = self.shell.query_function(req.function)
        condition = query_condition(req.kind, req.condition, req.wait_ms)
        if type(req.context) is not bool:
            raise ValueError(f"a query's context is True or False, not {req.context!r:.40}")
        self.shell.stats["queries"] += 1
        args = tuple(req.args)
        if req.context:
            query = m.Query(req.kind, lambda state, ctx, _f=fun, _a=args: _query_with_context(_f, _a, state, ctx),
                            caller, condition, with_context=True)
        else:
            query = m.Query(req.kind, lambda state, _f=fun, _a=args: _query(_f, _a, state), caller, condition)
        if condition is not None:
            self.shell.limit_query_wait(req.wait_ms, caller)
        return query

    def _request_members(self, req: MembersRequest, caller: tuple) -> m.Members:
        return m.Members(caller)

    def _request_members_info(self, req: MembersInfoRequest, caller: tuple) -> m.MembersInfo:
        return m.MembersInfo(caller)

    def _request_initial_members(self, req: InitialMembersRequest, caller: tuple) -> m.InitialMembers:
        return m.InitialMembers(caller)

    def _request_force_shrink(self, req: ForceShrinkRequest, caller: tuple) -> m.ForceShrink:
        # (Ra warns too: the other members' data no longer counts)
        log(self.who, "asked to force the cluster down to this member alone")
        return m.ForceShrink(caller)

    def _request_add_member(self, req: AddMemberRequest, caller: tuple) -> m.AddMember:
        return m.AddMember(ServerId(*req.server), req.membership, caller)

    def _request_remove_member(self, req: RemoveMemberRequest, caller: tuple) -> m.RemoveMember:
        return m.RemoveMember(ServerId(*req.server), caller)

    def _request_transfer_leadership(self, req: TransferLeadershipRequest, caller: tuple) -> m.TransferLeadership:
        return m.TransferLeadership(ServerId(*req.target), caller)

    def _request_delete_cluster(self, req: DeleteClusterRequest, caller: tuple) -> m.DeleteClusterCmd:
        return m.DeleteClusterCmd(caller)

    def _request_trigger_election(self, req: TriggerElectionRequest, caller: tuple) -> _Immediate:
        return _Immediate(None, m.TriggerElection())

    def _request_key_metrics(self, req: KeyMetricsRequest, caller: tuple) -> _Immediate:
        return _Immediate(self.shell.key_metrics())

    def _request_member_overview(self, req: MemberOverviewRequest, caller: tuple) -> _Immediate:
        return _Immediate(self.overview())

    def _request_ping(self, req: ServerPingRequest, caller: tuple) -> _Immediate:
        return _Immediate(("pong", str(self.shell.role)))

    def _request_aux(self, req: AuxRequest, caller: tuple) -> Any:
        refusal = command_refusal(req.command, self.shell.config.max_command_bytes)
        if refusal is not None:
            raise _Refused(*refusal)
        if req.kind == "call":
            return m.AuxCommand("call", req.command, caller)
        if req.kind == "cast":
            return _Immediate(None, m.AuxCommand("cast", req.command))
        if req.kind == "consistent":
            return m.ConsistentAux(req.command, caller)
        raise ValueError(f"an aux request is a call, a cast or consistent, not {req.kind!r:.40}")

    _CLIENT_REQUESTS = {
        CommandRequest: _request_command,
        QueryRequest: _request_query,
        MembersRequest: _request_members,
        MembersInfoRequest: _request_members_info,
        InitialMembersRequest: _request_initial_members,
        ForceShrinkRequest: _request_force_shrink,
        AddMemberRequest: _request_add_member,
        RemoveMemberRequest: _request_remove_member,
        TransferLeadershipRequest: _request_transfer_leadership,
        DeleteClusterRequest: _request_delete_cluster,
        TriggerElectionRequest: _request_trigger_election,
        KeyMetricsRequest: _request_key_metrics,
        MemberOverviewRequest: _request_member_overview,
        ServerPingRequest: _request_ping,
        AuxRequest: _request_aux,
    }

    def overview(self) -> dict:
        ov = self.shell.overview()
        ov.update({"pid": os.getpid(), "stats": dict(self.shell.stats, msgs_in=self.msgs_in),
                   "peers_shell": self.router.stats(), "host": None})
        return ov

    def _on_pipeline(self, msg: Pipeline, sender: Any) -> None:
        if msg.to is not None and ServerId(*msg.to) != self.shell.id:
            self._send(sender, Misdelivered(msg.to))
            for correlation in pipeline_correlations(msg.commands):
                self._send(sender, ev.Rejected(ServerId(*msg.to), ev.NotLeader(None, correlation)))
            return
        self.router.client_called(msg.handle, sender)
        commands = msg.commands
        if type(commands) is PipelinedColumns:
            try:
                rows = commands.rows()
            except ValueError as exc:
                log(self.who, f"pipelined commands refused: {exc}")
                for correlation in pipeline_correlations(commands):
                    self._send(sender, ev.Rejected(self.shell.id, ev.CommandRefused("InvalidCommand", correlation)))
                return
            name, low = commands.session, commands.low
            rows = [(correlation, data, prio, name, seq, low, known)
                    for correlation, data, prio, seq, known in rows]
        else:
            rows = [(getattr(c, "correlation", None), c) for c in commands]    # (unpacked below)
        ts = now_ms()
        handle = msg.handle
        limit = self.shell.config.max_command_bytes
        cmds = []
        owed = self._owed_commands
        since = time.monotonic()
        for row in rows:
            # each bad command is refused alone; the others go on
            try:
                if len(row) == 2:       # a PipelinedCommand (earlier clients)
                    correlation, c = row
                    row = (correlation, c.data, c.priority, c.session, c.seq, c.low, c.known)
                correlation, data, prio, name, seq, low, known = row
                session = session_seq(name, seq, low, known)
                refusal = command_refusal(data, limit)
                prio = priority(prio)
            except (ValueError, AttributeError) as exc:
                log(self.who, f"pipelined command refused: {exc}")
                refusal = ("InvalidCommand", str(exc))
            if refusal is not None:
                self._send(sender, ev.Rejected(self.shell.id, ev.CommandRefused(refusal[0], correlation)))
                continue
            cmds.append(_command(data, _notify_reply(correlation, handle), prio, ts, session))
            key = (handle, correlation)
            owed.pop(key, None)         # (a repeat: owed from now on)
            owed[key] = since
        self.shell.stats["commands"] += len(cmds)
        if cmds:
            self._forget_owed(owed, since)
            self.shell.deliver(m.Commands(tuple(cmds)))

    def _on_forwarded(self, msg: Forwarded, sender: Any) -> None:
        self.shell.deliver(m.Commands(tuple(msg.commands)))

    # ============================================== the ServerPort (outbound)
    def send_rpcs(self, to: ServerId, rpcs: tuple) -> None:
        self.router.send_rpcs(to, rpcs)

    def forward_commands(self, to: ServerId, commands: tuple) -> None:
        self.router.send_to_server(to, Forwarded(commands, to))

    def reply(self, to: Any, reply: Any, leader: ServerId | None) -> None:
        if isinstance(to, tuple) and len(to) == 2 and is_client_handle(to[0]):
            self._owed_calls.pop(to, None)
            self.router.send_to_client(to[0], ClientReply(to[1], reply, leader))
        elif to is not None:
            log(self.who, f"reply to unknown caller {to!r:.100}")

    def applied(self, client: Any, leader: ServerId, results: tuple) -> None:
        owed = self._owed_commands
        if owed:
            for correlation, _reply in results:
                owed.pop((client, correlation), None)
        self.router.send_to_client(client, ev.Applied(leader, list(results)))

    def rejected(self, client: Any, server: ServerId, leader: ServerId | None, correlation: Any,
                 reason: str = "not_leader") -> None:
        self._owed_commands.pop((client, correlation), None)
        why = (ev.NotLeader(leader, correlation) if reason == "not_leader"
               else ev.SessionRefused(reason, correlation))
        self.router.send_to_client(client, ev.Rejected(server, why))

    def send_message(self, to: Any, msg: Any, options: tuple = (), leader: Any = None) -> None:
        if "ra_event" in options:
            msg = ev.RaEvent(leader, msg)
        if is_client_handle(to):
            # (its events are casts already: ``cast`` changes nothing here)
            self.router.send_to_client(to, msg if "ra_event" in options else ev.Message(msg))
            return
        if "cast" in options:
            msg = ev.Cast(msg)
        if isinstance(to, ActorAddress):
            self._send(to, msg)
        elif isinstance(to, ActorRef):
            # an actor started by a client: the supervisors know where its
            # current incarnation is (see user_actors)
            self._send(self.supervisor, ActorSend(to, msg))
        else:
            log(self.who, f"SendMsg to unknown destination {to!r:.100}")

    def wal_write(self, appends: tuple) -> None:
        if self.wal is not None and not self._unsent_wal:
            self._send_wal(appends)
        else:
            self._unsent_wal.extend(appends)

    def _send_wal(self, appends: tuple) -> None:
        self._wal_seq += 1
        self._send(self.wal, WalWrite(self.shell.uid, appends,
                                      (self.shell.incarnation, self._wal_epoch, self._wal_seq)))

    def write_snapshot(self, meta: Any, data: bytes) -> None:
        if self.snapshot_writer is None:
            # no snapshot writer (restarting): write it here
            self.shell.store.write_snapshot(meta, data)
            self.shell.on_snapshot_written(meta, data)
            return
        self._pending_snapshots[meta] = data
        self._send(self.snapshot_writer, SnapshotWrite(self.shell.uid, meta, data))

    def watch(self, target: Any, ref: Any) -> None:
        self._send(self.supervisor, Watch(target, self.my_address, ref))

    def unwatch(self, target: Any, ref: Any) -> None:
        self._send(self.supervisor, Unwatch(target, self.my_address, ref))

    def wakeup(self, delay_ms: int, payload: Any) -> None:
        self._wakeup_after(max(0, delay_ms) / 1000.0, payload)

    def now_ms(self) -> int:
        return now_ms()

    def log(self, text: str) -> None:
        log(self.who, text)

    def exit(self, why: str) -> None:
        # Closed first: nothing more is handled and the files are released
        # before the supervisor (told next) deletes them.
        self.exiting = True
        self.shell.close()
        self._close_observer()
        name = self.shell.id.name
        if why in ("deleted", "removed"):
            # not to be restarted; a deleted server's data goes once it is gone
            self._send(self.supervisor, RetireServerRequest(name, delete_data=why == "deleted"))
        self._leave(why)

    def crash(self, reason: str, exc: BaseException | None) -> None:
        self.crash_storage = self.crash_storage or isinstance(exc, StorageError)
        if exc is not None:
            log(self.who, f"crash: {reason}")
            log_exc(self.who, "traceback")
        else:
            log(self.who, f"crash: {reason}")
        self.shell.crashed = True
        self._close_observer()
        self._die(reason)

    # ----------------------------------------------------------- a sick disk
    @staticmethod
    def _owe(table: dict, key: tuple) -> None:
        now = time.monotonic()
        table.pop(key, None)
        table[key] = now
        ActorServerPort._forget_owed(table, now)

    @staticmethod
    def _forget_owed(table: dict, now: float) -> None:
        """Drop what has been owed for ``CALL_MEMORY_S`` (oldest first: the
        table is in the order the requests came)."""
        oldest = next(iter(table.values()), None)
        if oldest is None or now - oldest < CALL_MEMORY_S:
            return
        for key in [k for k, since in table.items() if now - since >= CALL_MEMORY_S]:
            del table[key]

    def _storage_detail(self) -> str:
        node = self.shell.id.node if self.shell.id else "?"
        return (f"{self.shell.id}: the storage of node {node} failed ({self.halted}); the server "
                "halted until the disk is back")

    def _halt(self, reason: str) -> None:
        """The node's storage is in error (see the module rules)."""
        if self.halted is not None:
            return
        self.halted = reason
        log(self.who, f"halting: the node's storage failed: {reason}")
        detail = self._storage_detail()
        owed = f"{detail}; the request may or may not have taken effect"
        for handle, req_id in list(self._owed_calls):
            self.router.send_to_client(handle, ClientReply(req_id, Error("StorageError", owed), None))
        for handle, correlation in list(self._owed_commands):
            self.router.send_to_client(handle, ev.Rejected(self.shell.id, ev.StorageFailed(owed, correlation)))
        self._owed_calls.clear()
        self._owed_commands.clear()
        self.shell.close()

    def _halted_dispatch(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, ClientCall):
            request = msg.request
            if type(request) in _HALTED_ANSWERS:
                if type(request) is KeyMetricsRequest:
                    value = dict(self.shell.key_metrics(), state="error", error=self.halted)
                elif type(request) is MemberOverviewRequest:
                    value = dict(self.overview(), state="error", error=self.halted)
                else:
                    value = (self.shell.id, self.shell.incarnation)
                self._send(sender, ClientReply(msg.req_id, Ok(value), None))
            else:
                # not taken: the client may ask another member
                self._send(sender, ClientReply(msg.req_id, Error("StorageError", self._storage_detail(), True),
                                               None))
        elif isinstance(msg, Pipeline):
            detail = self._storage_detail()
            for correlation in pipeline_correlations(msg.commands):
                self._send(sender, ev.Rejected(self.shell.id, ev.StorageFailed(detail, correlation)))
        elif isinstance(msg, StopServer):
            self.exit("normal")
        elif isinstance(msg, Bundle):
            for inner in msg.msgs:
                self._halted_dispatch(inner, sender)
        # everything else (RPCs, WAL results, timers...) is for a server that runs

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
        Bundle: _on_bundle,
        SegmentsWritten: _on_segments_written,
        Misdelivered: _on_misdelivered,
    }


def _reply_from(value: Any, reply_mode: str) -> tuple:
    """A request's ``reply_from``, checked (it came from the network)."""
    if reply_mode != "await_consensus":
        raise ValueError(f"reply_from goes with await_consensus, not {reply_mode!r}")
    if (type(value) in (tuple, list) and len(value) == 2 and value[0] == "local"
            and isinstance(value[1], str)):
        return ("local", value[1])
    if (type(value) in (tuple, list) and len(value) == 2 and value[0] == "member"
            and type(value[1]) in (tuple, list, ServerId) and len(value[1]) == 2
            and all(isinstance(x, str) for x in value[1])):
        return ("member", ServerId(*value[1]))
    raise ValueError(f"reply_from must be ('local', node) or ('member', server id), not {value!r:.100}")


class _Refused(Exception):
    """A client request the port refuses with ``kind`` (an ``ra_actors.errors`` class name)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class _Immediate:
    """A client request the port answers itself (``then``: feed this after)."""

    __slots__ = ("value", "then")

    def __init__(self, value: Any, then: Any = None) -> None:
        self.value = value
        self.then = then


class ServerActor(Actor):
    """Placement ``process``: one OS process (Thespian actor) per Raft
    server.  A crash ends the process; its supervisor (parent) sees
    ``ChildActorExited`` and restarts it.  Raft's RPCs and the client
    traffic travel on the server's own direct stream (:mod:`.streamside`)
    whenever one is up, as a host actor's do."""

    @staticmethod
    def actorSystemCapabilityCheck(capabilities, requirements):
        return bool(requirements) and capabilities.get("ra_node") == requirements.get("ra_node")

    def __init__(self, capabilities=None, requirements=None):
        super().__init__()
        tune_gc()
        self.port = _ProcessPort(self)

    def receiveMessage(self, msg, sender):
        port = self.port
        stream = port.stream
        kind = type(msg)
        if kind is not WakeupMessage and kind is not WatchMessage:
            port.thespian_in += 1
        if stream is None:
            port.receive(msg, sender)
            if kind is ServerInit and not port.exiting:
                port.open_stream()
                return port.stream_watch()
            return None
        if kind is WatchMessage:
            stream.on_ready(msg.ready, port.from_stream)
        elif kind is StreamOffer:
            stream.on_offer(msg, sender)
        else:
            if kind is ClientCall or kind is Pipeline:
                stream.offer_client(sender)
            elif kind is DeadEnvelope:
                stream.on_dead(msg.deadAddress)
            elif kind is ActorExitRequest:
                stream.close()
                port.stream = None
                port.receive(msg, sender)
                return None
            port.receive(msg, sender)
        stream.expire()
        return port.stream_watch()


class _ProcessPort(ActorServerPort):
    def __init__(self, actor: ServerActor) -> None:
        super().__init__()
        self.actor = actor
        self.stream: StreamSide | None = None
        self.thespian_in = 0                # messages Thespian delivered (not wakeups, not the stream's)

    def open_stream(self) -> None:
        """Open this server's direct stream (once its shell has started)."""
        if self.shell.core is None:
            return
        self.stream = StreamSide(self.actor.myAddress, self.actor.send, lambda text: log(self.who, text),
                                 accepted=FROM_STREAM | WAL_RESULTS)

    def from_stream(self, msg: Any, peer: Any) -> None:
        """A message from the stream.  Only this server's WAL may confirm its
        writes; anything the stream layer raises on closes that link."""
        if type(msg) is WalResult and (self.wal is None or addr_key(peer) != addr_key(self.wal)):
            raise ValueError("a WalResult from an actor that is not this server's WAL")
        self.receive(msg, peer)

    def stream_watch(self) -> Any:
        """What Thespian should watch for this server's stream."""
        fds = self.stream.fds() if self.stream is not None else ()
        return ThespianWatch(fds) if fds else None

    def overview(self) -> dict:
        ov = super().overview()
        ov["stream"] = self.stream.stats() if self.stream is not None else None
        ov["stats"]["thespian_in"] = self.thespian_in
        return ov

    @property
    def my_address(self) -> Any:
        return self.actor.myAddress

    def _send(self, addr: Any, msg: Any) -> None:
        stream = self.stream
        if stream is not None and type(msg) in _PROCESS_STREAMED:
            stream.send(addr, msg)
        else:
            self.actor.send(addr, msg)

    def _wakeup_after(self, seconds: float, payload: Any) -> None:
        self.actor.wakeupAfter(seconds, payload)

    def _leave(self, reason: str) -> None:
        self.actor.send(self.actor.myAddress, ActorExitRequest())

    def _die(self, reason: str) -> None:
        try:
            if self.supervisor is not None:
                name = self.shell.id.name if self.shell.id else "?"
                self.actor.send(self.supervisor, ServerCrash(name, reason, self.crash_storage))
        except Exception:  # noqa: BLE001 - dying anyway
            pass
        os._exit(70)
