"""Identities, log entries and the commands they carry.

Rules:

* Everything here is a frozen, slotted dataclass (or a NamedTuple) defined at
  module level, so it pickles across Thespian and round-trips through
  :mod:`ra_actors.codec` (msgpack) on disk.
* A log entry is ``Entry(index, term, command)``; ``command`` is one of the
  entry command classes below (``Usr``, ``Noop``, ``ClusterChange``,
  ``DeleteCluster``).  User data lives inside ``Usr.data``.
* Client references (``from_``, ``client``) are opaque, hashable,
  msgpack-serialisable values chosen by the shell (strings in practice);
  the core only hands them back in reply effects.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple


class ServerId(NamedTuple):
    """A Raft server: cluster-local ``name`` on ``node`` (Ra's ``{Name, Node}``)."""

    name: str
    node: str

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return f"{self.name}@{self.node}"


@dataclass(frozen=True, slots=True, order=True)
class ActorRef:
    """An actor started through ``client.start_actor``: ``name`` on ``node``.

    Not a tuple, on purpose: ``ActorRef("a", "n1")`` never equals
    ``ServerId("a", "n1")`` (so both can key the same dict), and code that
    treats any 2-tuple as a server id leaves it alone.  It unpacks like one
    (``name, node = ref``) and round-trips through :mod:`ra_actors.codec`.
    """

    name: str
    node: str

    def __iter__(self):
        return iter((self.name, self.node))

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return f"actor {self.name}@{self.node}"


# Membership kinds (Ra: voter | promotable | non_voter).  Only voters count
# towards quorums and may become leader.
#: ``ServerConfig.max_command_bytes`` and a client's limit, unless configured.
DEFAULT_MAX_COMMAND_BYTES = 1 << 20

VOTER = "voter"
NON_VOTER = "non_voter"
PROMOTABLE = "promotable"
MEMBERSHIPS = (VOTER, NON_VOTER, PROMOTABLE)


class Role(enum.StrEnum):
    """A server's role (Ra's gen_statem states).  Members are strings, so
    ``role == "leader"`` holds and machines receive plain names."""

    FOLLOWER = "follower"
    PRE_VOTE = "pre_vote"
    CANDIDATE = "candidate"
    LEADER = "leader"
    AWAIT_CONDITION = "await_condition"       # a leader handing over (transfer_leadership)
    RECEIVE_SNAPSHOT = "receive_snapshot"     # a follower receiving a snapshot's chunks
    TERMINATING_LEADER = "terminating_leader"   # a leader deleting its cluster
    TERMINATING_FOLLOWER = "terminating_follower"
    STOPPED = "stopped"  # deleted: the shell stops the server and removes its data


FOLLOWER = Role.FOLLOWER
PRE_VOTE = Role.PRE_VOTE
CANDIDATE = Role.CANDIDATE
LEADER = Role.LEADER
AWAIT_CONDITION = Role.AWAIT_CONDITION
RECEIVE_SNAPSHOT = Role.RECEIVE_SNAPSHOT
TERMINATING_LEADER = Role.TERMINATING_LEADER
TERMINATING_FOLLOWER = Role.TERMINATING_FOLLOWER
STOPPED = Role.STOPPED
ROLES = tuple(Role)
# The roles of a server that holds leadership of its term: the leader, one
# handing over (await_condition) and one deleting its cluster.  They keep
# followers' replication state and tick; only LEADER takes commands.
LEADING_ROLES = frozenset({LEADER, AWAIT_CONDITION, TERMINATING_LEADER})
# The roles of a server that takes a known leader's log and acknowledges
# it: a follower, and one whose cluster is being deleted (until its
# DeleteCluster entry is durable).
FOLLOWER_ROLES = frozenset({FOLLOWER, TERMINATING_FOLLOWER})

# Priorities of client commands.
NORMAL = "normal"
LOW = "low"


@dataclass(frozen=True, slots=True)
class QueryContext:
    """What a query function with a ``context`` parameter is told: where the
    state it sees stands in the log."""

    index: int             # last applied
    term: int              # current term
    machine_version: int
    leader: Any            # the leader as this member knows it


# -------------------------------------------------------------------- replies
# What a server answers a synchronous request with (``fx.Reply.reply``): one
# of these records, never a bare value.  The client API turns them
# into results or into the ``ra_actors.errors`` class an Error's kind names.
@dataclass(frozen=True, slots=True)
class Ok:
    """The request succeeded; ``value`` is its result."""

    value: Any = None


@dataclass(frozen=True, slots=True)
class Redirect:
    """This server does not lead; ``leader`` is where to ask (None: unknown).
    (Not "NotLeader": that is the public event of a rejected pipelined
    command, ``ra_actors.events.NotLeader``, and records travel by name.)"""

    leader: Any = None


@dataclass(frozen=True, slots=True)
class Error:
    """The request failed: ``kind`` is one of :data:`ERROR_KINDS`, the name of
    the ``ra_actors.errors`` class the caller raises; ``detail`` says why.
    ``refused``: the server did not take the request at all (nothing
    happened), so another member of the cluster may be asked instead."""

    kind: str
    detail: str = ""
    refused: bool = False


@dataclass(frozen=True, slots=True)
class Unavailable:
    """The addressed server cannot take requests now (``reason``: it is
    ``"starting"``, or the address is ``"misdelivered"``: it belongs to
    another server now).  The caller asks again."""

    reason: str


ERROR_KINDS = frozenset({
    "AlreadyMember", "NotMember", "LastVoter", "InvalidMembership", "ClusterChangeNotPermitted",
    "NonVoter", "NotUpToDate", "QueryFailed", "InvalidQuery", "InvalidCommand", "CommandTooLarge",
    "StorageError",
    "SessionExpired", "SequenceGap", "AuxNotImplemented", "AuxFailed", "Timeout",
})


# ------------------------------------------------------------------ sessions
@dataclass(frozen=True, slots=True)
class SessionSeq:
    """A command's place in its client's session (Raft thesis §6.3): the
    session's id, the command's number in it (from 1), the lowest number the
    client still waits for (everything below it is acknowledged or abandoned:
    never applied from now on, its reply may be forgotten), and whether the
    client has seen the session applied at least once (then a cluster that
    does not know the session has expired it)."""

    session: str
    seq: int
    low: int
    known: bool = False


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One session in a snapshot: what apply needs to answer a repeated
    command (``replies``: ``((seq, reply), ...)`` for seq >= low)."""

    session: str
    next_seq: int
    low: int
    last_active: int
    replies: tuple


@dataclass(frozen=True, slots=True)
class SnapshotState:
    """What a snapshot holds when the cluster has sessions: the machine's
    state and the session table at the snapshot's index (a snapshot without
    sessions holds the machine state alone)."""

    machine: Any
    sessions: tuple[SessionRecord, ...]
    log_clock: int


# ---------------------------------------------------------------- reply modes
@dataclass(frozen=True, slots=True)
class AwaitConsensus:
    """Synchronous command: reply to ``from_`` once applied.  ``reply_from``
    (Ra's ``reply_from``) says which member answers, when it applies it:
    None (the leader), ``("local", node)`` (the voter on ``node``, else the
    leader) or ``("member", server_id)`` (that member, else the leader when
    it is not a member)."""

    from_: Any
    reply_from: Any = None


@dataclass(frozen=True, slots=True)
class NotifyReply:
    """Pipelined command: ``Applied`` event with ``correlation`` to ``client``."""

    correlation: Any
    client: Any


@dataclass(frozen=True, slots=True)
class NoReply:
    """Fire and forget."""


@dataclass(frozen=True, slots=True)
class AfterLogAppend:
    """Reply ``(index, term)`` to ``from_`` as soon as the leader appended it."""

    from_: Any


ReplyMode = AwaitConsensus | NotifyReply | NoReply | AfterLogAppend


# ------------------------------------------------------------ entry commands
@dataclass(frozen=True, slots=True)
class Usr:
    """A user (or built-in machine) command; ``ts`` is the clock (ms) of the
    server that took it; ``session``: see :class:`SessionSeq`."""

    data: Any
    reply_mode: ReplyMode
    ts: int = 0
    session: SessionSeq | None = None


@dataclass(frozen=True, slots=True)
class Noop:
    """Appended by every new leader; carries the machine version it runs."""

    machine_version: int = 0


@dataclass(frozen=True, slots=True)
class ClusterChange:
    """The complete new membership ``((ServerId, membership), ...)``.

    Effective as soon as it is appended (Raft §6 single-server changes);
    reverted if the entry is truncated.  ``from_`` receives the reply.
    """

    cluster: tuple
    from_: Any = None


@dataclass(frozen=True, slots=True)
class DeleteCluster:
    """Once applied, every member shuts down and deletes its data."""

    from_: Any = None


# What a log entry holds.
EntryCommand = Usr | Noop | ClusterChange | DeleteCluster


@dataclass(frozen=True, slots=True)
class Entry:
    index: int
    term: int
    command: EntryCommand


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """What a snapshot covers: everything up to ``index`` (of ``term``)."""

    index: int
    term: int
    cluster: tuple  # ((ServerId, membership), ...)
    machine_version: int = 0


@dataclass(frozen=True, slots=True)
class CommandMeta:
    """The ``meta`` argument of ``Machine.apply`` (Ra's command meta map)."""

    index: int
    term: int
    system_time: int = 0
    machine_version: int = 0
    reply_mode: Any = None
    session: SessionSeq | None = None   # the command's session, if its client has one

    def __getitem__(self, key: str):
        # Ra's meta is a map; allow ``meta["index"]`` as well as ``meta.index``.
        return getattr(self, key)

    def get(self, key: str, default=None):
        return getattr(self, key, default)


def cluster_dict(cluster: tuple) -> dict:
    """``((sid, membership), ...)`` -> ``{ServerId: membership}``."""
    return {ServerId(*sid): m for sid, m in cluster}


def cluster_tuple(cluster: dict) -> tuple:
    """``{ServerId: membership}`` -> a canonical, sorted tuple."""
    return tuple(sorted(((ServerId(*s), m) for s, m in cluster.items()), key=lambda p: (p[0].node, p[0].name)))


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything needed to (re)start a server; persisted by the shell.

    ``machine`` is an import path (``"machines.kv"`` or ``"pkg.mod:Class"``).

    ``initial_members`` means one of two things, chosen by ``joining``:

    * ``joining=False`` (the servers ``start_cluster`` creates): the
      configuration in force before the first log entry, every member a
      voter -- the same list on every server the cluster starts with.
    * ``joining=True`` (a server started to join a running cluster, before
      ``add_member``): only the peers to know of.  Such a server has *no*
      configuration until the leader's log or snapshot gives it one, so it
      neither campaigns nor counts votes on the strength of a member list
      that was never in any log (Raft thesis section 4.1: a server uses the
      latest configuration in its log).
    """

    server_id: ServerId
    uid: str
    cluster_name: str
    machine: str
    initial_members: tuple  # (ServerId, ...)
    machine_config: dict = field(default_factory=dict)
    # Tunables (Ra defaults where they exist).
    max_append_entries_batch: int = 128
    max_pipeline_count: int = 4096
    low_priority_flush_size: int = 16
    snapshot_chunk_size: int = 1_000_000
    min_snapshot_interval: int = 0
    # Checkpoints (Ra 2.x): a new one only this many entries above the
    # newest; at most this many kept (older ones are thinned out).
    min_checkpoint_interval: int = 0
    max_checkpoints: int = 10
    joining: bool = False
    # Sessions: idle this long (in log time) a session is forgotten; a
    # command parked by the leader behind a gap waits this long for the
    # missing one; a session parks at most this many.
    session_timeout_ms: int = 30 * 60 * 1000
    session_gap_timeout_ms: int = 5000
    max_parked_per_session: int = 4096
    # A command whose msgpack encoding is larger is refused, by the client
    # and again by the server (nothing is appended).
    max_command_bytes: int = DEFAULT_MAX_COMMAND_BYTES
    # When a leader whose code runs a newer machine version switches to it
    # (Ra's machine_upgrade_strategy, see UPGRADE_STRATEGIES).
    machine_upgrade_strategy: str = "quorum"
    # The node's WAL the server writes to: its index in the node's wal_dirs
    # (None: chosen by a hash of the uid).  Used when the server is created;
    # the choice is then recorded on the node, and later changes do nothing.
    wal: int | None = None


#: Ra's ``machine_upgrade_strategy``: ``"quorum"`` -- a new leader switches
#: to the newest version its own code runs, at once (its election needed a
#: quorum whose code runs it too: pre-votes are refused to a candidate
#: whose code is newer than the voter's); ``"all"`` -- the leader switches
#: only once every member has reported (``InfoReply``) that its code runs
#: that version.
UPGRADE_STRATEGIES = ("quorum", "all")


class RaError(Exception):
    """Base class of every ra_actors error (re-exported by
    :mod:`ra_actors.errors`, where the others live)."""


class InvalidEffect(RaError, ValueError):
    """A machine built an effect with an unknown option, or one that has no
    meaning for its target (e.g. ``SendMsg(server_id, msg, ("cast",))``).
    Raised where the effect is constructed; ``ra_actors.errors.InvalidEffect``."""


class InvalidConfig(RaError, ValueError):
    """A server config change that names an unknown key, one that cannot
    change on restart, or a bad value (``restart_server(..., **changes)``);
    ``ra_actors.errors.InvalidConfig``."""


class _NoState:
    """The ``state`` of a ``ReleaseCursor(index)`` given without one."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_STATE"


NO_STATE: Any = _NoState()


#: What ``restart_server`` may change (Ra's mutable config): tunables of
#: this member alone.  Identity, machine, members and the session timeout
#: (log time every member must agree on) are fixed at creation.
MUTABLE_CONFIG_KEYS = ("max_append_entries_batch", "max_pipeline_count", "low_priority_flush_size",
                       "snapshot_chunk_size", "min_snapshot_interval", "min_checkpoint_interval",
                       "max_checkpoints", "session_gap_timeout_ms", "max_parked_per_session",
                       "max_command_bytes")
_MAY_BE_ZERO = ("min_snapshot_interval", "min_checkpoint_interval")


def with_mutable_changes(config: ServerConfig, changes: dict) -> ServerConfig:
    """``config`` with ``changes`` applied (see :func:`check_mutable_changes`)."""
    check_mutable_changes(changes)
    return replace(config, **changes) if changes else config


def check_mutable_changes(changes: dict) -> None:
    """InvalidConfig for a key not in :data:`MUTABLE_CONFIG_KEYS` or a value
    that is not a positive integer (zero allowed for the minimum intervals)."""
    if not isinstance(changes, dict):
        raise InvalidConfig(f"config changes must be a dict, not {type(changes).__name__}")
    for key, value in changes.items():
        if key not in MUTABLE_CONFIG_KEYS:
            raise InvalidConfig(f"{key!r} cannot be changed on restart; these can: "
                                f"{', '.join(MUTABLE_CONFIG_KEYS)}")
        low = 0 if key in _MAY_BE_ZERO else 1
        if type(value) is not int or value < low:
            raise InvalidConfig(f"{key} must be an integer >= {low}, not {value!r}")


# ------------------------------------------------------------ fast pickling
def fast_pickle(namespace: dict) -> None:
    """Give every slotted dataclass defined in ``namespace`` (a module's
    ``globals()``) a ``__reduce__`` that pickles it as ``(cls, field values)``.

    Why: these records cross Thespian hops pickled, and a frozen slotted
    dataclass otherwise pickles through the Python-level
    ``_dataclass_getstate``/``_dataclass_setstate`` (``fields()`` and one
    ``object.__setattr__`` per field, per record).  Measured on an
    ``Rpcs`` carrying 256 entries: dumps 2.2 -> 0.6 ms, loads 1.6 -> 0.7 ms,
    16.2 -> 13.1 kB.  The unpickled value is equal to the original (it is
    rebuilt through ``__init__``; no class here has ``__post_init__``).
    """
    import dataclasses
    import operator

    module = namespace.get("__name__")
    for obj in list(namespace.values()):
        if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)
                and obj.__module__ == module and "__slots__" in obj.__dict__):
            continue
        names = tuple(f.name for f in dataclasses.fields(obj) if f.init)
        if len(names) != len(dataclasses.fields(obj)):
            continue  # a field outside __init__: keep the default protocol
        if not names:
            obj.__reduce__ = lambda self: (type(self), ())
        elif len(names) == 1:
            get = operator.attrgetter(names[0])
            obj.__reduce__ = lambda self, _g=get: (type(self), (_g(self),))
        else:
            get = operator.attrgetter(*names)
            obj.__reduce__ = lambda self, _g=get: (type(self), _g(self))


fast_pickle(globals())
