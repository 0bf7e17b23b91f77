"""Every message a Raft server consumes.

Rules:

* Frozen, slotted dataclasses at module level (they pickle over Thespian).
* Inter-server RPCs are named after Ra and the Raft paper and carry the
  sender's ``ServerId`` (``from_id``) and its ``incarnation`` (a number the
  shell gives each start of a server; Thespian reuses ports, so the shell
  drops messages addressed to an older incarnation).  The core itself
  ignores ``incarnation``.
* Time and randomness never come from the core: ``Tick.now_ms`` and
  ``Command.ts`` carry time; election timeouts are chosen by the shell.
* Messages from the shell (WAL, timers, failure detector, clients) carry no
  ``from_id``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .types import Entry, ReplyMode, ServerId, SessionSeq, SnapshotMeta, fast_pickle


# ------------------------------------------------------------------ RPCs
@dataclass(frozen=True, slots=True)
class AppendEntriesRpc:
    """Raft §5.3.  ``entries`` is a tuple of ``Entry`` (possibly empty)."""

    term: int
    from_id: ServerId
    leader_commit: int
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]
    incarnation: int = 0


@dataclass(frozen=True, slots=True)
class AppendEntriesReply:
    """``last_index``/``last_term``: the follower's last *durable* entry that
    matches the leader; ``next_index``: the next index it expects."""

    term: int
    from_id: ServerId
    success: bool
    next_index: int
    last_index: int
    last_term: int
    incarnation: int = 0


@dataclass(frozen=True, slots=True)
class PreVoteRpc:
    """Pre-vote (Raft thesis §9.6): asks without bumping anyone's term."""

    term: int
    from_id: ServerId
    token: int
    last_log_index: int
    last_log_term: int
    machine_version: int = 0
    incarnation: int = 0


@dataclass(frozen=True, slots=True)
class PreVoteResult:
    term: int
    from_id: ServerId
    token: int
    vote_granted: bool
    incarnation: int = 0


@dataclass(frozen=True, slots=True)
class RequestVoteRpc:
    """Raft §5.2."""

    term: int
    from_id: ServerId
    last_log_index: int
    last_log_term: int
    incarnation: int = 0


@dataclass(frozen=True, slots=True)
class RequestVoteResult:
    term: int
    from_id: ServerId
    vote_granted: bool
    incarnation: int = 0


@dataclass(frozen=True, slots=True)
class HeartbeatRpc:
    """Only for consistent queries (ReadIndex); never sent while idle."""

    term: int
    from_id: ServerId
    query_index: int
    incarnation: int = 0


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    term: int
    from_id: ServerId
    query_index: int
    incarnation: int = 0


@dataclass(frozen=True, slots=True)
class InstallSnapshotRpc:
    """One chunk (``chunk_no`` from 1) of the snapshot described by ``meta``."""

    term: int
    from_id: ServerId
    meta: SnapshotMeta
    chunk_no: int
    last: bool
    data: bytes
    incarnation: int = 0


@dataclass(frozen=True, slots=True)
class InstallSnapshotResult:
    """Ack of chunk ``chunk_no``; after the last chunk, ``last_index``/``last_term``
    are the installed (durable) snapshot's."""

    term: int
    from_id: ServerId
    chunk_no: int
    last_index: int
    last_term: int
    incarnation: int = 0


@dataclass(frozen=True, slots=True)
class TimeoutNowRpc:
    """Leadership transfer: the target starts an election at once (no pre-vote)."""

    term: int
    from_id: ServerId
    incarnation: int = 0


@dataclass(frozen=True, slots=True)
class InfoRpc:
    """Ra's ``info_rpc``: a leader asks a member for the newest machine
    version its code can run (the ``all`` upgrade strategy)."""

    term: int
    from_id: ServerId
    incarnation: int = 0


@dataclass(frozen=True, slots=True)
class InfoReply:
    """Ra's ``info_reply``: ``machine_version`` is the newest version the
    member's code can run (its machine's ``version()``)."""

    term: int
    from_id: ServerId
    machine_version: int
    incarnation: int = 0


RPC_TYPES = (AppendEntriesRpc, AppendEntriesReply, PreVoteRpc, PreVoteResult,
             RequestVoteRpc, RequestVoteResult, HeartbeatRpc, HeartbeatReply,
             InstallSnapshotRpc, InstallSnapshotResult, TimeoutNowRpc, InfoRpc, InfoReply)
# Every RPC carries its sender's term (Raft §5.1).  A request is handled in
# the newer term it brings; a result belongs to an exchange of its term and
# is dropped once the term moved on (see RaftServer._step_term).
RPC_REQUESTS = frozenset({AppendEntriesRpc, PreVoteRpc, RequestVoteRpc, HeartbeatRpc,
                          InstallSnapshotRpc, TimeoutNowRpc, InfoRpc})
RPC_RESULTS = frozenset({AppendEntriesReply, PreVoteResult, RequestVoteResult, HeartbeatReply,
                         InstallSnapshotResult, InfoReply})


# Any RPC (what ``Rpcs`` carries between servers).
Rpc = (AppendEntriesRpc | AppendEntriesReply | PreVoteRpc | PreVoteResult | RequestVoteRpc | RequestVoteResult
       | HeartbeatRpc | HeartbeatReply | InstallSnapshotRpc | InstallSnapshotResult | TimeoutNowRpc | InfoRpc
       | InfoReply)


# --------------------------------------------------- from the shell: storage
@dataclass(frozen=True, slots=True)
class Written:
    """The WAL made entries ``from_index..to_index`` of ``term`` durable."""

    term: int
    from_index: int
    to_index: int


@dataclass(frozen=True, slots=True)
class ResendWrite:
    """The WAL saw a gap: resend every entry from ``from_index`` on."""

    from_index: int


@dataclass(frozen=True, slots=True)
class MetaWritten:
    """``PersistMeta(term, voted_for)`` is durable."""

    term: int
    voted_for: ServerId | None


@dataclass(frozen=True, slots=True)
class SnapshotWritten:
    """A ``WriteSnapshot(meta, ...)`` is durable (or a ``PromoteCheckpoint(meta)``
    made that checkpoint the snapshot)."""

    meta: SnapshotMeta


@dataclass(frozen=True, slots=True)
class CheckpointWritten:
    """A ``WriteCheckpoint(meta, ...)`` is durable."""

    meta: SnapshotMeta


# ------------------------------------------------------- from the shell: time
@dataclass(frozen=True, slots=True)
class ElectionTimeout:
    """The election timer (epoch-checked by the shell) expired."""


@dataclass(frozen=True, slots=True)
class Tick:
    """Periodic tick (leader: machine ``tick``, retries; others: housekeeping)."""

    now_ms: int


@dataclass(frozen=True, slots=True)
class AwaitConditionTimeout:
    """The ``await_condition`` timer expired."""


# ---------------------------------------- from the shell: failure detection
@dataclass(frozen=True, slots=True)
class ServerDown:
    """A monitored Raft server's process died (Ra: ``'DOWN'`` of a peer)."""

    server_id: ServerId
    reason: Any = "noproc"


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """The node failure detector (aten) says ``node`` is ``up`` or ``down``."""

    node: str
    up: bool


@dataclass(frozen=True, slots=True)
class MachineEvent:
    """Something the machine asked to hear of: ``event`` is a ``Down`` (a
    monitored process exited), ``NodeUp``/``NodeDown`` (a monitored node) or
    ``TimerFired`` (a machine timer).  The core appends it as a command only
    while it is the leader (Ra: monitors and timers are the leader's); other
    roles drop it.  ``ts`` is the shell's clock, as for commands."""

    event: Any
    ts: int = 0


@dataclass(frozen=True, slots=True)
class StepDownIfLeader:
    """Shell-initiated step down (e.g. WAL failure on the leader's node)."""


# ------------------------------------------------------------- from clients
@dataclass(frozen=True, slots=True)
class Command:
    """A command for the machine.  ``reply_mode`` is a reply mode from
    :mod:`ra_actors.core.types`; ``ts`` is wall-clock ms stamped by the shell."""

    data: Any
    reply_mode: ReplyMode
    priority: str = "normal"
    ts: int = 0
    session: SessionSeq | None = None


@dataclass(frozen=True, slots=True)
class Commands:
    """Many pipelined commands coalesced into one message (one client flush)."""

    commands: tuple[Command, ...]


@dataclass(frozen=True, slots=True)
class Query:
    """``kind`` is ``local``, ``leader`` or ``consistent``; ``fun(state)`` is a
    callable resolved by the shell (queries name ``"module:function"``).
    ``condition``: ``(index, term)`` -- a local or leader query waits until
    this member has applied ``index`` and its entry there has ``term``
    (read-your-writes on any member; Ra's ``{applied, {Idx, Term}}``).
    ``with_context``: call ``fun(state, context)`` with a
    :class:`~ra_actors.core.types.QueryContext`."""

    kind: str
    fun: Any
    from_: Any
    condition: tuple | None = None
    with_context: bool = False


@dataclass(frozen=True, slots=True)
class QueryExpired:
    """The wait of the query answering ``from_`` ran out (the shell's timer,
    armed for the caller's timeout): if it still waits for its condition it
    is dropped and answered ``Error("Timeout")``; otherwise nothing."""

    from_: Any


@dataclass(frozen=True, slots=True)
class AuxCommand:
    """Ra's ``aux_command`` (``kind`` ``"call"``: answer ``from_``) or
    ``cast_aux_command`` (``"cast"``, ``from_`` None): run the machine's
    ``handle_aux`` on this member, in any role.  The shell also turns an
    ``Aux`` effect into a cast."""

    kind: str
    command: Any
    from_: Any = None


@dataclass(frozen=True, slots=True)
class ConsistentAux:
    """Ra's ``consistent_aux``: the leader runs ``handle_aux`` as a call
    once a heartbeat round confirmed its leadership and it has applied up to
    the commit index it had when asked (as a consistent query)."""

    command: Any
    from_: Any


@dataclass(frozen=True, slots=True)
class MembersInfo:
    """Ask the leader for every member and its replication state (Ra's
    ``members_info``)."""

    from_: Any


@dataclass(frozen=True, slots=True)
class InitialMembers:
    """Ask the leader for the members its cluster was started with (Ra's
    ``initial_members``: its server config's ``initial_members``)."""

    from_: Any


@dataclass(frozen=True, slots=True)
class ForceShrink:
    """Disaster recovery when a majority is lost for good (Ra's
    ``force_shrink_members_to_current_member``): this server makes itself
    the only voter and stands for election.  Operators only."""

    from_: Any


@dataclass(frozen=True, slots=True)
class AddMember:
    server_id: ServerId
    membership: str
    from_: Any


@dataclass(frozen=True, slots=True)
class RemoveMember:
    server_id: ServerId
    from_: Any


@dataclass(frozen=True, slots=True)
class TransferLeadership:
    target: ServerId
    from_: Any


@dataclass(frozen=True, slots=True)
class TriggerElection:
    """Enter pre-vote now (Ra's ``trigger_election``; needed for new clusters)."""


@dataclass(frozen=True, slots=True)
class DeleteClusterCmd:
    from_: Any


@dataclass(frozen=True, slots=True)
class Members:
    """Ask for the membership and leader."""

    from_: Any


fast_pickle(globals())   # see ra_actors.core.types.fast_pickle
