"""Messages of the Thespian shell (pickled between actors and clients).

The Raft core's own messages (``ra_actors.core.messages``) travel inside
these envelopes.  Every class is defined at module level so that every node
and client can unpickle it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.messages import Command, Rpc
from ..core.types import ServerId


def _short_repr(obj, items, **fields) -> str:
    """``repr`` of a batch message without its contents.

    Thespian builds ``str(message)`` for its debug log lines on every send
    (``TransmitIntent.identify``), whether or not debug logging is on.  The
    generated dataclass ``repr`` of an ``Rpcs`` carrying 256 entries took
    0.8-1.6 ms, twice per send; the profile of a pipelined leader showed
    ~12 % of its time there.  Batches therefore show their kinds and sizes only.
    """
    kinds: dict = {}
    for it in items:
        name = type(it).__name__
        kinds[name] = kinds.get(name, 0) + 1
    inner = ", ".join(f"{k}={v!r}" for k, v in fields.items())
    summary = " ".join(f"{n}x{k}" for k, n in kinds.items())
    return f"{type(obj).__name__}({inner}{', ' if inner else ''}[{summary}])"


# ------------------------------------------------------------- node start
@dataclass(frozen=True, slots=True)
class SupervisorInit:
    cfg: dict


@dataclass(frozen=True, slots=True)
class SupervisorReady:
    node: str
    incarnation: int
    error: str | None = None


# ------------------------------------------------------- node membership
@dataclass(frozen=True, slots=True)
class NodeInfo:
    name: str
    incarnation: int
    sup: Any            # ActorAddress of the node's supervisor
    admin: tuple        # (host, port) of the node's admin


@dataclass(frozen=True, slots=True)
class NodeHello:
    """Supervisor -> supervisor: here I am (and the nodes I know)."""

    info: NodeInfo
    known: tuple = ()
    reply: bool = True


@dataclass(frozen=True, slots=True)
class NodeHeartbeat:
    node: str
    incarnation: int


# ------------------------------------------------------------ directory
@dataclass(frozen=True, slots=True)
class Lookup:
    """Where is ``key`` (a ServerId, or a client handle string)?  The answer
    (``LookupReply``) goes to ``reply_to`` (default: the sender)."""

    key: Any
    req: Any = None
    reply_to: Any = None


@dataclass(frozen=True, slots=True)
class LookupReply:
    key: Any
    address: Any        # None: no such server / client on that node
    incarnation: int
    req: Any = None
    status: str = "running"   # running | stopped | unknown | nodedown
    host: bool = False        # ``address`` is the node's host actor (placement "shared"):
                              # it carries every server of that node


# ------------------------------------------------------------- monitors
@dataclass(frozen=True, slots=True)
class Watch:
    """Monitor ``target`` (a ServerId or a client handle) for ``watcher``."""

    target: Any
    watcher: Any        # ActorAddress that gets WatchDown
    ref: Any = None


@dataclass(frozen=True, slots=True)
class Unwatch:
    target: Any
    watcher: Any
    ref: Any = None


@dataclass(frozen=True, slots=True)
class WatchDown:
    target: Any
    reason: Any
    ref: Any = None


@dataclass(frozen=True, slots=True)
class ServiceAddresses:
    """Supervisor -> server actors: the node's shared actors (after a restart).

    A node has one WAL per WAL directory (``wal_dirs``); each server writes
    to one of them (``ServerInit.wal``).

    ``storage``: the node's storage as the supervisor sees it
    (:mod:`.storage_health`): ``"ok"``; ``"failing"`` (a storage service
    failed and is being reopened, with back-off); ``"error"`` (it gave up:
    the node's servers halt, answer clients ``StorageError`` and wait for the
    disk to come back).  ``storage_error`` says why."""

    wals: tuple           # the address of each WAL of the node, in ``wal_dirs`` order (None: not open)
    segment_writer: Any
    snapshot_writer: Any
    wal_restarted: tuple = ()   # the WALs (indexes) that reopened: their servers write again
    storage: str = "ok"
    storage_error: str | None = None
    wal_errors: tuple = ()      # a node with several WALs: per WAL, why it is in error (None: it is not)

    def wal(self, k: int) -> Any:
        """The address of WAL ``k`` (None: it does not run)."""
        return self.wals[k] if 0 <= k < len(self.wals) else None

    def halt_reason(self, k: int) -> str | None:
        """Why a server writing to WAL ``k`` must halt (None: it need not):
        the node's storage is in error, or that WAL's."""
        if self.storage == "error":
            return self.storage_error or "storage error"
        return self.wal_errors[k] if 0 <= k < len(self.wal_errors) else None


# ------------------------------------------------- requests to supervisors
@dataclass(frozen=True, slots=True)
class SupervisorRequest:
    """Base of the requests a node's supervisor answers, each with one
    ``SupResponse(req_id, value, error)`` to its sender.

    ``req_id`` is the sender's and keyword-only: a request's own fields come
    first, and a client fills in the id when it sends
    (``dataclasses.replace(request, req_id=...)``).  ``None``: nobody waits
    for the answer."""

    req_id: Any = field(default=None, kw_only=True)


@dataclass(frozen=True, slots=True)
class PingRequest(SupervisorRequest):
    """Answered ``("pong", node, incarnation)``."""


@dataclass(frozen=True, slots=True)
class ListNodesRequest(SupervisorRequest):
    """Answered ``{node: (supervisor address, admin (host, port), up)}`` for
    every node the supervisor knows, itself included."""


@dataclass(frozen=True, slots=True)
class OverviewRequest(SupervisorRequest):
    """Answered with the node's view (``client.overview(node)``)."""


@dataclass(frozen=True, slots=True)
class ServerMetricsRequest(SupervisorRequest):
    """Answered with the key metrics of server ``name`` read from the node's
    counters file (``client.key_metrics``): the server's turn is not needed."""

    name: str


@dataclass(frozen=True, slots=True)
class LeaderboardRequest(SupervisorRequest):
    """Answered from the node's leaderboard: ``(leader, members)`` that the
    node's member of ``cluster`` recorded (the one with the newest term), or
    that server ``server`` of the node recorded; ``None`` if there is none.
    With ``servers`` (names of the node's servers), a tuple of those
    answers, one per name."""

    cluster: str | None = None
    server: str | None = None
    servers: tuple = ()


@dataclass(frozen=True, slots=True)
class ListServersRequest(SupervisorRequest):
    """Answered ``{name: (address, incarnation, status)}`` of the node's servers."""


@dataclass(frozen=True, slots=True)
class RegisterClientRequest(SupervisorRequest):
    """A client attaches its handle to this node; the node watches the
    client's process (``pid`` and ``create_time`` on ``host``)."""

    handle: str
    pid: int
    host: str
    create_time: float | None = None


@dataclass(frozen=True, slots=True)
class UnregisterClientRequest(SupervisorRequest):
    """The client closes: its watchers get ``Down(handle, "normal")``."""

    handle: str


@dataclass(frozen=True, slots=True)
class CheckMachineRequest(SupervisorRequest):
    """Does machine ``machine`` (an import path) load on this node?"""

    machine: str


@dataclass(frozen=True, slots=True)
class StartServerRequest(SupervisorRequest):
    """Create server ``config.server_id`` (a ``ServerConfig``) on this node;
    answered ``("ok", incarnation)`` once it runs."""

    config: Any


MAX_START_BATCH = 1024
"""The most servers one :class:`StartServersRequest` may create."""


@dataclass(frozen=True, slots=True)
class StartServersRequest(SupervisorRequest):
    """Create several servers on this node (``configs``: a tuple of
    ``ServerConfig``, at most :data:`MAX_START_BATCH`) with one registry
    write and one message to the host; answered once every one of them
    runs or failed, with a tuple in ``configs``' order of ``("ok",
    incarnation, address)`` or ``("error", encoded error)``."""

    configs: tuple


@dataclass(frozen=True, slots=True)
class RestartServerRequest(SupervisorRequest):
    """Start the stopped (or given-up) server ``name`` again from its data,
    with ``config`` (``{key: value}`` of ``MUTABLE_CONFIG_KEYS``) changed
    in its persisted config first."""

    name: str
    config: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StopServerRequest(SupervisorRequest):
    """Stop server ``name`` and keep it stopped (across node restarts);
    answered once it has exited.  Not :class:`StopServer`, which is the
    supervisor's order to the server itself."""

    name: str


@dataclass(frozen=True, slots=True)
class ForceDeleteServerRequest(SupervisorRequest):
    """Stop server ``name`` and delete its data, without the cluster's consent."""

    name: str


@dataclass(frozen=True, slots=True)
class RetireServerRequest(SupervisorRequest):
    """Server -> its supervisor, just before it exits for good: do not
    restart it; ``delete_data``: it applied ``DeleteCluster`` and its data
    goes once it is gone; otherwise its own removal committed and it stays
    stopped with its data, as Ra's removed leader."""

    name: str
    delete_data: bool


@dataclass(frozen=True, slots=True)
class StartActorRequest(SupervisorRequest):
    """Start an instance of Thespian actor class ``actor_class``
    (``"pkg.module:Class"``) named ``name`` (``client.start_actor``)."""

    actor_class: str
    name: str
    init: Any = None
    restart: str = "temporary"


@dataclass(frozen=True, slots=True)
class StopActorRequest(SupervisorRequest):
    """Stop actor ``name``; answered once it has exited."""

    name: str


@dataclass(frozen=True, slots=True)
class SendToActorRequest(SupervisorRequest):
    """Hand ``msg`` to actor ``name`` (``client.send_actor``)."""

    name: str
    msg: Any


@dataclass(frozen=True, slots=True)
class ListActorsRequest(SupervisorRequest):
    """Answered ``{name: status}`` of the node's client-started actors."""


@dataclass(frozen=True, slots=True)
class SupResponse:
    req_id: Any
    value: Any = None
    error: tuple | None = None   # (exception class name, message, extra)


# -------------------------------------------------------- server actors
@dataclass(frozen=True, slots=True)
class ServerInit:
    config: Any            # ServerConfig
    incarnation: int
    node_incarnation: int
    supervisor: Any
    services: ServiceAddresses
    data_dir: str
    settings: dict
    nodes_down: tuple = ()
    new: bool = False
    allowed_modules: tuple | None = None   # the node's (shell/names.py); None: the default
    counters_slot: int | None = None    # the server's slot in the node's counters file
    wal: int = 0                        # the node's WAL it writes to (its index in wal_dirs)
    wal_dir: str | None = None          # ... and that WAL's directory (None: <data_dir>/wal)


@dataclass(frozen=True, slots=True)
class LeaderboardRecord:
    """What server ``server`` (of cluster ``cluster``) now knows: ``leader``
    (None: none) and ``members`` in ``term`` (Ra's ``ra_leaderboard:record``).
    ``(incarnation, seq)`` orders the records of one server."""

    server: str
    cluster: str
    incarnation: int
    seq: int
    leader: Any
    members: tuple
    term: int


@dataclass(frozen=True, slots=True)
class LeaderboardUpdate:
    """Server (or host) -> its supervisor: leaderboard records, in order."""

    records: tuple


@dataclass(frozen=True, slots=True)
class ServerStarted:
    name: str
    incarnation: int
    error: tuple | None = None


@dataclass(frozen=True, slots=True, repr=False)
class Rpcs:
    """Raft RPCs from one server to another, batched per round."""

    to: ServerId
    to_inc: int      # incarnation the sender believes the target has (0: unknown)
    from_: ServerId
    from_inc: int
    rpcs: tuple[Rpc, ...]

    def __repr__(self):  # short: see _short_repr
        return _short_repr(self, self.rpcs, to=self.to, from_=self.from_)


# ------------------------------------------------- requests to servers
# What a client asks one Raft server, one record per operation, carried in a
# ClientCall.  A request holds only what the caller chooses: the server
# builds the core message itself (ActorServerPort._CLIENT_REQUESTS), with the
# reply destination taken from the envelope (handle, req_id) and its own
# clock, so nothing a client sends can direct a reply elsewhere.  The names
# end in "Request" and differ from every core message and supervisor
# request: the replication stream's codec tags records by class name.
@dataclass(frozen=True, slots=True)
class ClientRequest:
    """Base of the requests a server answers with one ``ClientReply``."""


@dataclass(frozen=True, slots=True)
class CommandRequest(ClientRequest):
    """Apply ``data`` through the leader.  ``reply_mode``:
    ``"await_consensus"`` (answer once applied), ``"after_log_append"``
    (once appended) or ``"noreply"``; ``priority``: ``"normal"`` or ``"low"``.

    ``session`` (None: no session) names the client's session in this
    cluster; ``seq`` is the command's number in it, ``low`` the lowest
    number the client still waits for, ``known`` whether the client has seen
    the session applied (``ra_actors.core.types.SessionSeq``).

    ``reply_from`` (with ``await_consensus``): which member answers, see
    ``AwaitConsensus``."""

    data: Any
    reply_mode: str = "await_consensus"
    priority: str = "normal"
    session: str | None = None
    seq: int = 0
    low: int = 0
    known: bool = False
    reply_from: Any = None     # None, ("local", node) or ("member", (name, node))


MAX_QUERY_WAIT_MS = 24 * 3600 * 1000     # the longest a query waits for its condition


@dataclass(frozen=True, slots=True)
class QueryRequest(ClientRequest):
    """``function(state, *args)``; ``kind``: ``"local"``, ``"leader"`` or
    ``"consistent"``.  ``function`` is a ``"module:function"`` name, resolved
    by the server (functions do not cross processes; names do).

    ``condition`` (local and leader queries): ``(index, term)`` -- answered
    once the server has applied ``index`` and its entry there has ``term``;
    it waits at most ``wait_ms`` (then ``Error("Timeout")``).  ``context``:
    call ``function(state, *args, context=QueryContext(...))``."""

    kind: str
    function: str
    args: tuple = ()
    condition: tuple | None = None
    wait_ms: int = 0
    context: bool = False


@dataclass(frozen=True, slots=True)
class AuxRequest(ClientRequest):
    """Run the machine's ``handle_aux`` on the addressed server: ``kind``
    ``"call"`` (Ra's ``aux_command``: answered with the reply), ``"cast"``
    (``cast_aux_command``: answered at once, handled right after) or
    ``"consistent"`` (``consistent_aux``: the leader answers the call after
    a consistent read barrier; a follower redirects)."""

    kind: str
    command: Any


@dataclass(frozen=True, slots=True)
class MembersRequest(ClientRequest):
    """Answered ``(members, leader)`` as the server knows them."""


@dataclass(frozen=True, slots=True)
class MembersInfoRequest(ClientRequest):
    """Answered by the leader: every member with its membership and
    replication state (Ra's ``members_info``)."""


@dataclass(frozen=True, slots=True)
class InitialMembersRequest(ClientRequest):
    """Answered by the leader: the members its cluster was started with
    (Ra's ``initial_members``)."""


@dataclass(frozen=True, slots=True)
class ForceShrinkRequest(ClientRequest):
    """Disaster recovery (Ra's ``force_shrink_members_to_current_member``):
    the addressed server makes itself the only voter and stands for
    election."""


@dataclass(frozen=True, slots=True)
class AddMemberRequest(ClientRequest):
    """Add ``server`` with ``membership`` (voter, non_voter, promotable)."""

    server: ServerId
    membership: str


@dataclass(frozen=True, slots=True)
class RemoveMemberRequest(ClientRequest):
    server: ServerId


@dataclass(frozen=True, slots=True)
class TransferLeadershipRequest(ClientRequest):
    target: ServerId


@dataclass(frozen=True, slots=True)
class DeleteClusterRequest(ClientRequest):
    """Delete the whole cluster through the log."""


@dataclass(frozen=True, slots=True)
class TriggerElectionRequest(ClientRequest):
    """Start an election now; answered at once."""


@dataclass(frozen=True, slots=True)
class KeyMetricsRequest(ClientRequest):
    """Answered at once with the server's key metrics."""


@dataclass(frozen=True, slots=True)
class MemberOverviewRequest(ClientRequest):
    """Answered at once with the server's overview (not :class:`OverviewRequest`,
    which asks a node's supervisor)."""


@dataclass(frozen=True, slots=True)
class ServerPingRequest(ClientRequest):
    """Answered at once ``("pong", role)`` (Ra's ``ping``; not
    :class:`PingRequest`, which asks a node's supervisor)."""


# Every request a server answers: the server's dispatch table has exactly
# these keys, and the replication stream's codec registers them.
CLIENT_REQUESTS: tuple = (CommandRequest, QueryRequest, MembersRequest, MembersInfoRequest, AddMemberRequest,
                          RemoveMemberRequest,
                          TransferLeadershipRequest, DeleteClusterRequest, TriggerElectionRequest,
                          KeyMetricsRequest, MemberOverviewRequest, ServerPingRequest, AuxRequest,
                          InitialMembersRequest, ForceShrinkRequest)


@dataclass(frozen=True, slots=True)
class ClientCall:
    """Client -> server actor: ``request`` (a :class:`ClientRequest`) from
    the client ``handle``, answered by one ``ClientReply(req_id, ...)``."""

    req_id: Any
    handle: str
    request: ClientRequest
    to: ServerId | None = None   # the server meant (ports are reused after a restart)


@dataclass(frozen=True, slots=True)
class ClientReply:
    req_id: Any
    result: Any          # Ok | NotLeader | Error | Unavailable (ra_actors.core.types)
    leader: Any = None


@dataclass(frozen=True, slots=True)
class PipelinedCommand:
    """One command of a :class:`Pipeline`: the leader answers ``correlation``
    in an ``Applied`` event (a non-leader with ``Rejected``).  ``session``,
    ``seq``, ``low`` and ``known``: as in :class:`CommandRequest`."""

    correlation: Any
    data: Any
    priority: str = "normal"
    session: str | None = None
    seq: int = 0
    low: int = 0
    known: bool = False


@dataclass(frozen=True, slots=True, repr=False)
class PipelinedColumns:
    """The commands of a :class:`Pipeline` column by column: command ``i``
    is ``PipelinedCommand(correlations[i], datas[i], priorities[i],
    session, seqs[i], low, knowns[i])``.  A client's batch is one session
    stream with one ``low``, so one record carries it instead of one
    :class:`PipelinedCommand` per command: a record fewer to build and
    encode on the client and to decode and check on the server, per
    command.  Columns of different lengths are a malformed batch
    (:meth:`rows` says so)."""

    correlations: tuple
    datas: tuple
    priorities: tuple[str, ...]
    session: str | None
    seqs: tuple[int, ...]
    low: int
    knowns: tuple[bool, ...]

    def rows(self):
        """``(correlation, data, priority, seq, known)`` per command;
        ``ValueError`` unless every column is a tuple of one length."""
        n = len(self.correlations) if type(self.correlations) is tuple else -1
        for column in (self.datas, self.priorities, self.seqs, self.knowns):
            if type(column) is not tuple or len(column) != n:
                raise ValueError("pipelined columns of different lengths")
        return zip(self.correlations, self.datas, self.priorities, self.seqs, self.knowns)

    # Read as a sequence, the columns are the PipelinedCommands they stand for.
    def __iter__(self):
        session, low = self.session, self.low
        return (PipelinedCommand(correlation, data, prio, session, seq, low, known)
                for correlation, data, prio, seq, known in self.rows())

    def __len__(self) -> int:
        return len(self.correlations)

    def __getitem__(self, i: int) -> PipelinedCommand:
        return PipelinedCommand(self.correlations[i], self.datas[i], self.priorities[i], self.session,
                                self.seqs[i], self.low, self.knowns[i])

    def __repr__(self):
        n = len(self.correlations) if type(self.correlations) is tuple else "?"
        return f"PipelinedColumns({n} commands, session={self.session!r:.80})"


def pipeline_correlations(commands: Any) -> tuple:
    """The correlations of a :class:`Pipeline`'s commands, whichever form
    they came in (to refuse them all)."""
    if type(commands) is PipelinedColumns:
        return commands.correlations if type(commands.correlations) is tuple else ()
    return tuple(getattr(c, "correlation", None) for c in commands)


@dataclass(frozen=True, slots=True, repr=False)
class Pipeline:
    """Client -> server: pipelined commands, one :class:`PipelinedCommand`
    each (what earlier clients send) or :class:`PipelinedColumns`."""

    handle: str
    commands: tuple[PipelinedCommand, ...] | PipelinedColumns
    to: ServerId | None = None

    def __repr__(self):
        commands = self.commands
        return _short_repr(self, commands if type(commands) is tuple else (commands,), to=self.to)


@dataclass(frozen=True, slots=True, repr=False)
class Forwarded:
    """Server -> leader: fire-and-forget commands forwarded by a follower."""

    commands: tuple[Command, ...]
    to: ServerId | None = None   # the leader meant (placement ``shared``: many servers per actor)

    def __repr__(self):
        return _short_repr(self, self.commands, to=self.to)


@dataclass(frozen=True, slots=True, repr=False)
class Bundle:
    """Messages for one actor sent as one Thespian message (the transport
    charges per message, not per byte): host -> host (placement
    ``shared``), the ``Rpcs`` and ``Forwarded`` that the servers of one
    host produced for the same destination while the host handled one
    message; supervisor -> host, the ``ServerInit`` messages of one
    ``StartServersRequest``; host -> supervisor, what the host's servers
    told their supervisor in one turn, in order."""

    msgs: tuple

    def __repr__(self):
        return _short_repr(self, self.msgs)


@dataclass(frozen=True, slots=True)
class StreamOffer:
    """Host -> host (placement ``shared``): connect to my replication
    stream at ``endpoint`` (``(ip, port)``); see :mod:`.stream`."""

    endpoint: tuple


@dataclass(frozen=True, slots=True)
class ServerCrash:
    """A server actor tells its supervisor it is about to exit abnormally
    (``storage``: because the disk refused a file operation, a
    ``StorageError``: the node's storage health counts it)."""

    name: str
    reason: str
    storage: bool = False


@dataclass(frozen=True, slots=True)
class StopServer:
    """Supervisor -> server actor: stop (``delete``: also remove its data)."""

    delete: bool = False
    name: str | None = None   # the server meant (a host actor carries many)


@dataclass(frozen=True, slots=True)
class ServerExited:
    """Host actor -> supervisor (placement ``shared``): server ``name`` of
    ``incarnation`` is gone from the host (stopped, failed to start, or
    crashed with ``reason``).  Stands in for the ``ChildActorExited`` a
    server that is its own actor produces."""

    name: str
    incarnation: int
    reason: str
    crashed: bool = False
    storage: bool = False     # crashed on a StorageError (see ServerCrash)


@dataclass(frozen=True, slots=True)
class ClientInfo:
    handle: str
    address: Any
    pid: int
    host: str
    create_time: float | None = None
    registered_at: float = field(default=0.0)


# ------------------------------------------------- node services (storage)
@dataclass(frozen=True, slots=True)
class ServiceInit:
    """Supervisor -> a storage service: open the node's data.  ``wal_dirs``:
    the node's WAL directories; ``wal``: the one a WAL actor opens (a host
    actor opens them all)."""

    node: str
    data_dir: str
    options: dict
    services: ServiceAddresses
    wal_dirs: tuple = ()
    wal: int = 0


@dataclass(frozen=True, slots=True)
class ServiceReady:
    kind: str


@dataclass(frozen=True, slots=True)
class ServiceFailed:
    """A storage service cannot open the node's data (corrupt log, locked
    data dir, a disk that refuses): a node that is starting fails to start
    with this error, not crash-loop.  Later (a reopen), ``retry`` says
    whether trying again may help (a ``StorageError``: the disk may come
    back) or not (``LogCorruption``: the node's storage goes to ``error``)."""

    kind: str
    error: str
    retry: bool = False
    wal: int | None = None      # the host actor: which of its WALs


@dataclass(frozen=True, slots=True)
class ServiceFault:
    """A storage service -> supervisor: the disk refused a write or sync
    (``error``); the service gave its files up (nothing of the failed work
    was reported done, the file is never written or synced again) and waits
    for a ``ServiceInit`` to reopen the node's data from what recovery can
    prove.  The supervisor reopens it with back-off (:mod:`.storage_health`)."""

    kind: str
    error: str
    retry: bool = True
    wal: int | None = None      # the host actor: which of its WALs


@dataclass(frozen=True, slots=True, repr=False)
class WalWrite:
    """Server -> WAL: the appends of one round, encoded by the server
    (``ra_actors.log.wal.EncodedAppend``)."""

    uid: str
    appends: tuple
    # (incarnation, WAL epoch, n): Thespian may reorder or repeat messages,
    # and a late old write would look like a truncating overwrite; the WAL
    # takes each writer's writes in this order (actors/sequencing.py).
    seq: tuple = (0, 0, 0)

    def __repr__(self):
        return _short_repr(self, self.appends, uid=self.uid)


@dataclass(frozen=True, slots=True, repr=False)
class WalResult:
    """WAL -> server, once per sync: ``Written``/``ResendWrite`` core messages."""

    uid: str
    msgs: tuple

    def __repr__(self):
        return _short_repr(self, self.msgs, uid=self.uid)


@dataclass(frozen=True, slots=True, repr=False)
class SnapshotWrite:
    """Server -> snapshot writer: make ``data`` (encoded state) the durable
    snapshot ``meta`` of server ``uid``."""

    uid: str
    meta: Any
    data: bytes

    def __repr__(self):
        return _short_repr(self, (), uid=self.uid, meta=self.meta, bytes=len(self.data))


@dataclass(frozen=True, slots=True)
class SnapshotDone:
    uid: str
    meta: Any
    error: str | None = None
    storage: bool = False     # the error is the disk's (a StorageError)


@dataclass(frozen=True, slots=True)
class FlushWalFiles:
    """WAL -> segment writer: move these closed WAL files into segments."""

    paths: tuple


@dataclass(frozen=True, slots=True)
class ForgetServer:
    """Supervisor -> WAL/segment writer: a server's data was deleted."""

    uid: str


@dataclass(frozen=True, slots=True)
class SegmentsWritten:
    """Segment writer -> supervisor -> each server: these segments are durable
    (``{uid: (SegmentRef, ...)}``); the servers' mem tables let go of them."""

    segments: dict


@dataclass(frozen=True, slots=True)
class Misdelivered:
    """Server -> sender: an ``Rpcs`` for ``to`` reached another server (the
    port was reused): drop the cached address of ``to``."""

    to: Any


@dataclass(frozen=True, slots=True)
class SupervisorLocation:
    """A node's admin -> a client: where the node's supervisor is
    (``address`` None while the node starts).  The client's endpoint
    (:mod:`.endpoint`) hands the admin's Thespian answer on as this record,
    so that the client never handles Thespian's own messages."""

    node: str
    address: Any
    incarnation: Any
    admin: Any           # the admin's (host, port)
    nonce: Any = None


# ------------------------------------------------ actors started by clients
@dataclass(frozen=True, slots=True)
class ActorInit:
    """The first message an actor started through ``client.start_actor``
    receives: its own ``ref`` (an ``ActorRef``) and the ``init`` value the
    client gave.  ``restarts`` counts the restarts of a ``permanent`` actor
    (0 for the first incarnation)."""

    ref: Any
    init: Any = None
    restarts: int = 0


@dataclass(frozen=True, slots=True)
class ActorSend:
    """Server actor -> its supervisor (-> the target node's supervisor):
    deliver ``msg`` to the actor ``ref`` (a machine's ``SendMsg``)."""

    ref: Any
    msg: Any
