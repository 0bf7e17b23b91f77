"""Effects: everything the core asks its shell to do, as data.

Two families live here:

* **server effects** — produced by the Raft core for the shell (send an RPC,
  write entries to the WAL, persist meta, reply to a client, set a timer,
  write or send a snapshot, ...).  The shell carries them out *in order*.
* **machine effects** — returned by a machine's ``apply``/``state_enter``/
  ``tick`` (Ra's ``ra_machine:effect()``): ``SendMsg``, ``ModCall``,
  ``Monitor``, ``Demonitor``, ``Timer``, ``ReleaseCursor``, ``Checkpoint``,
  ``Append``, ``Aux``.  The core handles ``ReleaseCursor``/``Checkpoint``/
  ``Append``/``TryAppend``/``Log`` itself (snapshots and checkpoints become
  ``WriteSnapshot``/``WriteCheckpoint``/``PromoteCheckpoint``) and hands the rest to the shell inside
  ``MachineEffects(effects, leader_only)``, only those that are to run:
  leader-only ones only while it holds leadership (``LEADING_ROLES``).

Built-in machine commands (``Down``, ``NodeUp``, ``NodeDown``, ``TimerFired``,
``MachineVersion``) are defined here too: the shell reports them to the core
(``MachineEvent``), the leader appends them and the machine receives them in
``apply``.  ``AuxEval`` and ``AuxTick`` are Ra's built-in aux commands: the
core casts them to ``handle_aux`` itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .types import NO_STATE, InvalidEffect, ServerId, SnapshotMeta


# =========================================================== server effects
@dataclass(frozen=True, slots=True)
class SendRpc:
    """Send ``rpc`` (a message from :mod:`messages`) to server ``to``."""

    to: ServerId
    rpc: Any


@dataclass(frozen=True, slots=True)
class LogAppend:
    """Write ``entries`` (consecutive ``Entry``) to the WAL.  If the first
    index is at or below entries previously written, those are overwritten
    (a later record for the same index wins).  The shell answers with
    ``Written`` once they are durable."""

    entries: tuple


@dataclass(frozen=True, slots=True)
class PersistMeta:
    """Durably record ``current_term``/``voted_for``; answer ``MetaWritten``."""

    term: int
    voted_for: ServerId | None


@dataclass(frozen=True, slots=True)
class PersistLastApplied:
    """Record ``last_applied`` (no fsync needed: it is only a recovery hint)."""

    index: int


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer a synchronous caller ``to`` with ``reply``; ``leader`` is the
    leader as this server knows it (clients cache it)."""

    to: Any
    reply: Any
    leader: ServerId | None


@dataclass(frozen=True, slots=True)
class Applied:
    """One ``applied`` event to a pipelining ``client``: ``results`` is
    ``((correlation, reply), ...)`` in apply order (one per apply batch)."""

    client: Any
    leader: ServerId
    results: tuple


@dataclass(frozen=True, slots=True)
class Rejected:
    """A pipelined command was not taken: ``reason`` is ``"not_leader"``
    (``leader``: where to send it), or an error kind of its session
    (``"SessionExpired"``, ``"SequenceGap"``)."""

    client: Any
    from_id: ServerId
    leader: ServerId | None
    correlation: Any
    reason: str = "not_leader"


@dataclass(frozen=True, slots=True)
class ForwardCommand:
    """A ``NoReply`` command reached a follower: pass it to ``leader``."""

    leader: ServerId
    command: Any


@dataclass(frozen=True, slots=True)
class SetElectionTimer:
    """(Re)arm the election timer; the shell picks a random duration in the
    range of ``kind`` (``short`` after a failure signal, ``long`` otherwise).
    A later ``SetElectionTimer`` or ``CancelElectionTimer`` supersedes it."""

    kind: str = "long"


@dataclass(frozen=True, slots=True)
class CancelElectionTimer:
    pass


@dataclass(frozen=True, slots=True)
class SetAwaitConditionTimer:
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class WriteSnapshot:
    """Persist a snapshot durably, then answer ``SnapshotWritten(meta)``.

    ``data`` always holds the machine state already encoded with
    :func:`ra_actors.codec.pack` (the core encodes its own snapshots at once,
    so a machine that mutates state in place cannot change them later);
    ``state`` is kept for shells that want the decoded value and may be None."""

    meta: SnapshotMeta
    state: Any = None
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class WriteCheckpoint:
    """Persist a checkpoint durably (like ``WriteSnapshot``, but it truncates
    nothing and several are kept), then answer ``CheckpointWritten(meta)``.
    ``data`` is the machine state encoded with :func:`ra_actors.codec.pack`."""

    meta: SnapshotMeta
    data: bytes


@dataclass(frozen=True, slots=True)
class PromoteCheckpoint:
    """Make the durable checkpoint ``meta`` the server's snapshot without
    writing the state again (a rename), then answer ``SnapshotWritten(meta)``."""

    meta: SnapshotMeta


@dataclass(frozen=True, slots=True)
class DeleteCheckpoints:
    """The checkpoints ``metas`` are no longer needed (covered by a snapshot,
    or thinned out above ``max_checkpoints``): remove their files."""

    metas: tuple


@dataclass(frozen=True, slots=True)
class SendSnapshotChunk:
    """Read chunk ``chunk_no`` (from 1, ``chunk_size`` bytes each) of the
    durable snapshot described by ``meta`` and send it to ``to`` as an
    ``InstallSnapshotRpc(term, ..., chunk_no, last, data)``."""

    to: ServerId
    meta: SnapshotMeta
    term: int
    chunk_no: int
    chunk_size: int


@dataclass(frozen=True, slots=True)
class TruncateLogBelow:
    """Entries ``<= index`` are covered by a durable snapshot: delete the
    segments and WAL references that hold only such entries.

    ``keep_above=False`` (after installing a snapshot received from the
    leader whose point the local log did not contain) additionally discards
    every entry above ``index``: the log now starts empty after the snapshot,
    and recovery must not resurrect the old entries."""

    index: int
    keep_above: bool = True


@dataclass(frozen=True, slots=True)
class MonitorServer:
    """Watch a peer server's process (followers watch their leader)."""

    server_id: ServerId


@dataclass(frozen=True, slots=True)
class LeaderChanged:
    """Informational: this server now believes ``leader`` leads (for caches)."""

    leader: ServerId | None
    term: int


@dataclass(frozen=True, slots=True)
class RoleChanged:
    """Informational: new role (the shell updates its metrics)."""

    role: str


@dataclass(frozen=True, slots=True)
class StopServer:
    """This server left the cluster (its removal committed): stop its
    process and keep its data.  Its death is reported to its monitors, so
    the remaining members elect a leader even if a handover was lost."""

    reason: str = "removed"


@dataclass(frozen=True, slots=True)
class DeleteData:
    """The cluster was deleted: stop this server and remove all its data."""


@dataclass(frozen=True, slots=True)
class AuxFailure:
    """The machine's ``handle_aux`` raised on ``command`` (``kind``:
    ``"call"`` or ``"cast"``); its aux state is unchanged and the server
    goes on.  The shell logs it (a call's caller also gets ``AuxFailed``)."""

    kind: str
    command: Any
    reason: str


@dataclass(frozen=True, slots=True)
class MachineEffects:
    """Machine effects for the shell to run, in the machine's order.  The core
    emits leader-only ones (``leader_only``) only while it holds leadership."""

    effects: tuple
    leader_only: bool


# ========================================================== machine effects
SEND_MSG_OPTIONS = ("ra_event", "cast", "local")


@dataclass(frozen=True, slots=True)
class SendMsg:
    """Send ``msg`` to ``to`` (an actor address or ``ActorRef``, a ServerId or
    a client handle id).  ``options`` (Ra's ``send_msg`` options; a name or
    a tuple of names, kept as a sorted tuple):

    * ``"ra_event"``: deliver ``ra_actors.events.RaEvent(leader, msg)``;
    * ``"cast"``: deliver ``ra_actors.events.Cast(...)`` around it (to
      actors; a client handle's events are casts already);
    * ``"local"``: run on the member on ``to``'s node if a voter is there
      (any role), else on the leader -- saves a hop between nodes.

    Without ``local`` it runs on the leader only.  An unknown option, or
    ``ra_event``/``cast`` to a server (which takes ``msg`` as a command), is
    ``ra_actors.errors.InvalidEffect`` at construction."""

    to: Any
    msg: Any
    options: tuple = ()

    def __post_init__(self) -> None:
        opts = self.options
        if isinstance(opts, str):
            opts = (opts,)
        if not isinstance(opts, (tuple, list, frozenset, set)):
            raise InvalidEffect(f"SendMsg options must be a name or a tuple of names, not {opts!r}")
        unknown = sorted(repr(o) for o in opts if o not in SEND_MSG_OPTIONS)
        if unknown:
            raise InvalidEffect(f"unknown SendMsg option(s) {', '.join(unknown)}; "
                                f"known: {', '.join(SEND_MSG_OPTIONS)}")
        opts = tuple(sorted(set(opts)))
        if ({"ra_event", "cast"} & set(opts)) and _names_a_server(self.to):
            raise InvalidEffect(f"SendMsg options {opts} have no meaning for a server ({self.to!r}): "
                                "a server takes the message as a command")
        object.__setattr__(self, "options", opts)


def _names_a_server(to: Any) -> bool:
    return isinstance(to, ServerId) or (
        type(to) is tuple and len(to) == 2 and all(isinstance(x, str) for x in to))


def target_node(to: Any) -> str | None:
    """The node of a ``SendMsg``/``Monitor`` target when its name says it: a
    ServerId or ``(name, node)``, an ``ActorRef``, a client handle
    (``"client:<node>:<id>"``); None otherwise (a raw actor address)."""
    if isinstance(to, str):
        if to.startswith("client:"):
            return to[len("client:"):].rsplit(":", 1)[0]
        return None
    node = getattr(to, "node", None)
    if isinstance(node, str):
        return node
    if type(to) is tuple and len(to) == 2 and isinstance(to[1], str):
        return to[1]
    return None


@dataclass(frozen=True, slots=True)
class ModCall:
    """Call ``"module:function"`` (or a callable) with ``args`` on the leader."""

    fun: Any
    args: tuple = ()


@dataclass(frozen=True, slots=True)
class Monitor:
    """``kind`` is ``process`` (a ServerId or client handle id) or ``node``."""

    kind: str
    target: Any


@dataclass(frozen=True, slots=True)
class Demonitor:
    kind: str
    target: Any


@dataclass(frozen=True, slots=True)
class Timer:
    """Fire ``TimerFired(name)`` through the log after ``ms``; None cancels.
    With ``absolute`` (Ra's ``{abs, true}``) ``ms`` is a point in time
    (milliseconds since the epoch, as ``meta.system_time``): it fires then,
    at once if that is past (as a negative ``ms`` does).  Setting a name
    again replaces its timer."""

    name: Any
    ms: int | None
    absolute: bool = False

    def __post_init__(self) -> None:
        if self.ms is not None and type(self.ms) not in (int, float):
            raise InvalidEffect(f"Timer ms must be a number or None, not {self.ms!r}")
        if type(self.absolute) is not bool:
            raise InvalidEffect(f"Timer absolute must be True or False, not {self.absolute!r}")


@dataclass(frozen=True, slots=True)
class ReleaseCursor:
    """Entries ``<= index`` are no longer needed (all members).

    With ``state`` (the machine state at ``index``) the core takes a snapshot
    there and truncates the log -- unless a durable checkpoint sits at
    exactly ``index``: that one is promoted instead of writing the same state
    again.  Without ``state`` (Ra's ``{release_cursor, Index}``) the newest
    checkpoint at or below ``index`` is promoted; nothing happens if there is
    none.

    ``condition`` (with ``state`` only; Ra's ``#{condition => [...]}``):
    conditions that must all hold before the snapshot is taken --
    ``("written", i)``: this member's log is durable up to ``i``;
    ``"no_snapshot_sends"``: this member (as leader) is sending no snapshot
    to a follower.  Until they hold, the release waits on the member (the
    state as it is now, encoded at once); a newer release with a condition
    replaces a waiting one.  ``InvalidEffect`` for anything else."""

    index: int
    state: Any = NO_STATE
    condition: tuple = ()

    def __post_init__(self) -> None:
        conditions = self.condition
        if isinstance(conditions, str):
            conditions = (conditions,)
        if not isinstance(conditions, (tuple, list)):
            raise InvalidEffect(f"a ReleaseCursor condition is a tuple of conditions, not {conditions!r:.80}")
        checked = []
        for c in conditions:
            if c == "no_snapshot_sends":
                checked.append(c)
            elif (isinstance(c, (tuple, list)) and len(c) == 2 and c[0] == "written"
                  and type(c[1]) is int and c[1] >= 0):
                checked.append(("written", c[1]))
            else:
                raise InvalidEffect(f"unknown ReleaseCursor condition {c!r:.80}; known: "
                                    "\"no_snapshot_sends\", (\"written\", index)")
        if checked and self.state is NO_STATE:
            raise InvalidEffect("a ReleaseCursor without a state takes no condition (as Ra's "
                                "{release_cursor, Index})")
        object.__setattr__(self, "condition", tuple(checked))


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """``state`` is the machine state at ``index``: keep it durably as a
    recovery point without truncating the log (all members).  A later
    ``ReleaseCursor`` can promote it to the snapshot."""

    index: int
    state: Any


@dataclass(frozen=True, slots=True)
class Append:
    """Append a new command (leader only), optionally with a reply mode."""

    command: Any
    reply_mode: Any = None


@dataclass(frozen=True, slots=True)
class TryAppend:
    """Send ``command`` through this member as a client would (any role: a
    leader appends it, a follower turns it away or forwards it, as it does
    a client's command).  Ra's backwards-compatible ``try_append``."""

    command: Any
    reply_mode: Any = None


@dataclass(frozen=True, slots=True)
class Log:
    """Ra's ``{log, Idxs, Fun}`` / ``{log, Idxs, Fun, {local, Node}}``: read
    the user commands at ``indexes`` from the member's log and run the
    effects ``fun(commands)`` returns there (a list, or one effect).  The
    leader runs it; with ``node`` the voter on that node does, in any role
    (the leader when no voter is there).  Indexes no longer in the log
    (below its snapshot) or holding no user command are left out."""

    indexes: tuple
    fun: Any
    node: str | None = None

    def __post_init__(self) -> None:
        idxs = self.indexes
        if not isinstance(idxs, (tuple, list, range)) or not all(type(i) is int and i > 0 for i in idxs):
            raise InvalidEffect(f"Log indexes must be a sequence of positive integers, not {idxs!r:.100}")
        if not callable(self.fun):
            raise InvalidEffect(f"Log fun must be callable, not {self.fun!r:.100}")
        if self.node is not None and not isinstance(self.node, str):
            raise InvalidEffect(f"Log node must be a node name or None, not {self.node!r:.100}")
        object.__setattr__(self, "indexes", tuple(idxs))


@dataclass(frozen=True, slots=True)
class Aux:
    """Ra's ``{aux, Cmd}``: hand ``command`` to this member's
    ``handle_aux`` as a cast, in whatever role it is, at this effect's
    place among the effects (the shell gives it back to the core as an
    ``AuxCommand``).  A machine without ``handle_aux`` ignores it."""

    command: Any


# The closed vocabularies: every effect the core emits is one of SERVER_EFFECTS
# (a MachineEffects carries MACHINE_EFFECTS); a shell handles exactly these.
SERVER_EFFECTS = (SendRpc, LogAppend, PersistMeta, PersistLastApplied, Reply, Applied, Rejected,
                  ForwardCommand, SetElectionTimer, CancelElectionTimer, SetAwaitConditionTimer,
                  WriteSnapshot, WriteCheckpoint, PromoteCheckpoint, DeleteCheckpoints,
                  SendSnapshotChunk, TruncateLogBelow, MonitorServer, LeaderChanged,
                  RoleChanged, StopServer, DeleteData, MachineEffects, AuxFailure)
MACHINE_EFFECTS = (SendMsg, ModCall, Monitor, Demonitor, Timer, ReleaseCursor,
                   Checkpoint, Append, TryAppend, Log, Aux)
LEADER_ONLY_EFFECTS = (SendMsg, ModCall, Monitor, Timer, Append)


# ================================================== built-in machine commands
@dataclass(frozen=True, slots=True)
class Down:
    """A monitored process died (``reason`` e.g. ``"noproc"``, ``"noconnection"``)."""

    target: Any
    reason: Any = "noproc"


@dataclass(frozen=True, slots=True)
class NodeUp:
    node: str


@dataclass(frozen=True, slots=True)
class NodeDown:
    node: str


@dataclass(frozen=True, slots=True)
class TimerFired:
    name: Any


@dataclass(frozen=True, slots=True)
class MachineVersion:
    from_version: int
    to_version: int


@dataclass(frozen=True, slots=True)
class AuxEval:
    """Ra's aux ``eval``: cast to ``handle_aux`` on every member after it
    applied entries (once per batch)."""


@dataclass(frozen=True, slots=True)
class AuxTick:
    """Ra's aux ``tick``: cast to ``handle_aux`` on every member, in any
    role, at each of its ticks."""


BUILTIN_COMMANDS = (Down, NodeUp, NodeDown, TimerFired, MachineVersion, AuxEval, AuxTick)
