"""The Raft server (Ra's ``ra_server``): messages in, ``(role, effects)`` out.

Usage by a shell (the Thespian actor or the simulator)::

    srv = RaftServer(config, Machine(module), recovered)   # recovered: from disk, or None
    role, effects = srv.init()
    role, effects = srv.handle(msg)                        # every message, in order

Rules this module keeps (each has tests citing the Raft paper):

* Terms and votes (§5.1, §5.2): a higher term in any RPC turns the server
  into a follower of that term; a vote is granted only to a candidate whose
  log is at least as up to date (§5.4.1), once per term, and the grant is
  sent only after ``MetaWritten`` confirms the vote is durable.
* Pre-vote (thesis §9.6): elections start in ``pre_vote`` without bumping
  the term; a follower that knows a live leader refuses pre-votes, so a
  server that was cut off and comes back cannot disturb the cluster.
* No idle heartbeats (Ra): followers start a pre-vote when told their
  leader's process or node is down, or on an election timeout while no
  leader is known.  Brand-new servers wait for ``TriggerElection`` or an RPC.
* Replication (§5.3): the leader appends a ``Noop`` on election, sends
  batched ``AppendEntriesRpc`` with a bounded window per follower, and jumps
  ``next_index`` using the follower's hint.  A follower truncates only on a
  real term conflict and acknowledges only durable entries (``Written``).
* Commitment (§5.4.2): the leader's own match index is its last *durable*
  index; an index commits when a quorum of voters hold it and it belongs to
  the current term.
* Membership (§6, single-server changes): one change at a time, effective
  when appended, reverted if truncated; non-voters and promotables do not
  count; promotables are promoted once caught up.
* Queries: local (any role), leader, consistent (ReadIndex: a heartbeat
  round to a quorum after the leader has committed in its term).
* Aux (Ra's ``handle_aux``): a member-local handler with its own state,
  run in any role for client calls and casts, ``Aux`` effects, ``AuxEval``
  after every applied batch and ``AuxTick`` at every member's ticks; a
  consistent aux call runs on the leader after a ReadIndex round, as a
  consistent query.  Its effects follow the rules of applied ones.
* Machine versions (Ra): the leader's noop carries the version to run;
  under the "all" strategy it waits until every member reported
  (``InfoReply``) that its code runs it.  Pre-votes go only to candidates
  whose code runs our effective version or a newer one ours runs too; a
  member whose code cannot run the version a noop switches to applies
  nothing from that noop on.
* Snapshots (§7): ``ReleaseCursor`` makes a snapshot and truncates the log;
  followers behind the leader's first index receive it in chunks.  One with
  a condition (Ra's ``written`` / ``no_snapshot_sends``) waits, encoded,
  until the condition holds (checked after every message); a newer one
  replaces it.  One that comes while a snapshot or checkpoint is being
  written waits, encoded, for that write to end (the newest such one).
* Checkpoints (Ra 2.x): ``Checkpoint`` keeps the state at an index durably
  without truncating anything; ``ReleaseCursor`` promotes one (a rename)
  instead of writing the same state again; a restart starts from the newest
  of snapshot and checkpoint and replays the log after it.  One snapshot or
  checkpoint write at a time.

Dispatch (as etcd's ``Step``, with Ra's one clause per message per role):
``handle`` first applies the term rules once for every RPC
(:meth:`RaftServer._step_term`: adopt a newer term, answer or drop an older
one), then calls the handler that the current role's table in :data:`STEP`
has for the message type; a role whose table lacks the type ignores it.
"What does a candidate accept?" is one look at ``STEP[CANDIDATE]``.

The object is mutable for speed, but all change happens inside ``handle``:
it is a function of (state, message) with no I/O, clock or randomness.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from . import codec, readonly
from . import effects as fx
from . import messages as m
from .aux import AuxView
from .log import RaftLog
from .machine import NO_REPLY, Machine
from .sessions import APPLY, DUPLICATE, EXPIRED, NOT_CACHED, Resequencer, SessionTable
from .types import (AWAIT_CONDITION, CANDIDATE, FOLLOWER, FOLLOWER_ROLES, LEADER, LEADING_ROLES, LOW, NON_VOTER,
                    PRE_VOTE, PROMOTABLE, RECEIVE_SNAPSHOT, STOPPED, TERMINATING_FOLLOWER,
                    TERMINATING_LEADER, VOTER, AfterLogAppend, AwaitConsensus, ClusterChange,
                    CommandMeta, DeleteCluster, Entry, Error, NoReply, Noop, NotifyReply, Redirect, Ok,
                    QueryContext, ServerConfig, SnapshotState, UPGRADE_STRATEGIES, InvalidConfig,
                    ServerId, SnapshotMeta, Usr, cluster_dict, cluster_tuple)

AWAIT_CONDITION_TIMEOUT_MS = 3000
MAX_CONDITIONAL_QUERIES = 4096
TERMINATING_LEADER_MAX_TICKS = 50

# Built per command on the leader, of fields already checked: without the
# frozen __init__'s per-field setattr (see codec.record_builder).
_usr = codec.record_builder(Usr)
_entry = codec.record_builder(Entry)


@dataclass(frozen=True, slots=True)
class Recovered:
    """What a shell read back from durable storage for a restarting server."""

    current_term: int = 0
    voted_for: ServerId | None = None
    last_applied: int = 0
    snapshot: tuple[SnapshotMeta, Any] | None = None  # (meta, machine state)
    entries: tuple = ()  # durable Entry objects after the snapshot, ascending, consecutive
    checkpoints: tuple = ()  # SnapshotMeta of the durable checkpoints above the snapshot, ascending
    checkpoint: tuple[SnapshotMeta, Any] | None = None  # the newest of them: (meta, machine state)


class Peer:
    """Leader-side replication state of one follower."""

    __slots__ = ("next_index", "match_index", "commit_index_sent", "query_index",
                 "snapshot", "progress_mark", "snapshot_mark", "snapshot_stalls", "machine_version")

    def __init__(self, next_index: int):
        self.next_index = next_index
        self.match_index = 0
        self.commit_index_sent = 0
        self.query_index = 0
        # (meta, chunk_no) while a snapshot is being sent, else None.
        self.snapshot: tuple[SnapshotMeta, int] | None = None
        # match_index seen at the previous tick: no progress over a whole tick
        # means messages were lost, so replication restarts from match_index.
        self.progress_mark = -1
        # The snapshot position seen at the previous tick, and how many ticks
        # in a row it did not move.
        self.snapshot_mark: tuple | None = None
        self.snapshot_stalls = 0
        # The newest machine version the member's code runs (its InfoReply);
        # None until it answered (the "all" upgrade strategy asks).
        self.machine_version: int | None = None

    def start_snapshot(self, meta: SnapshotMeta) -> None:
        self.snapshot = (meta, 1)
        self.snapshot_mark = None
        self.snapshot_stalls = 0


_CHANGE_NOT_PERMITTED = Error("ClusterChangeNotPermitted",
                              "a cluster change is in progress, or this term's noop has not committed")


def _ok(value: Any) -> Ok:
    return Ok(value)


@dataclass(frozen=True, slots=True)
class _AuxRead:
    """A consistent aux command waiting, like a consistent query, for its
    heartbeat round (it runs ``handle_aux`` instead of a query function)."""

    command: Any


def _check_config(config: ServerConfig) -> None:
    """What a server config may hold beyond its types (``InvalidConfig``)."""
    if config.machine_upgrade_strategy not in UPGRADE_STRATEGIES:
        raise InvalidConfig(f"machine_upgrade_strategy is one of {', '.join(UPGRADE_STRATEGIES)}, "
                            f"not {config.machine_upgrade_strategy!r:.60}")


class RaftServer:
    """See the module rules.  Five methods state a safety rule each and are
    the only ones :mod:`ra_actors.testing.bugs` overrides, to prove the
    simulator and the Jepsen harness catch their violation:
    :meth:`_self_match`, :meth:`_vote_is_durable`, :meth:`_first_new_entry`,
    :meth:`_answer_consistent_query`, :meth:`_admit_session_command`."""

    def __init__(self, config: ServerConfig, machine: Machine, recovered: Recovered | None = None):
        _check_config(config)
        self.config = config
        self.id: ServerId = ServerId(*config.server_id)
        self.machine = machine
        rec = recovered or Recovered()
        self.role = FOLLOWER
        self.leader_id: ServerId | None = None
        self.votes: set = set()
        self.pre_vote_token = 0
        self.pending_vote_reply: tuple[ServerId, int] | None = None
        self.peers: dict[ServerId, Peer] = {}
        self.query_index = 0
        self.pending_queries: list[tuple[int, int, Any, Any]] = []  # (query_index, read_index, fun, from)
        self.waiting_queries: list[tuple[Any, Any]] = []  # consistent queries before the noop commits
        self.low_queue: list[m.Command] = []
        self.transfer_target: ServerId | None = None
        self.pending_snapshot: SnapshotMeta | None = None   # own snapshot being written (or promoted)
        self.pending_checkpoint: SnapshotMeta | None = None  # own checkpoint being written
        self.pending_release_cursor: tuple | None = None  # (index, payload, version, conditions) waiting
        self.deferred_snapshot: tuple | None = None       # (index, payload, version) behind a write under way
        self.receiving: tuple[SnapshotMeta, list] | None = None  # chunks of an incoming snapshot
        self.installing: tuple[SnapshotMeta, Any] | None = None  # received, being written
        self.verified_index = 0  # highest index known to match the current leader's log
        self.last_reply_index = -1
        self.applied_batch: dict[Any, list] = {}
        self.conditional_queries: list[m.Query] = []   # waiting for an (index, term) to be applied here
        self.sessions = SessionTable(config.session_timeout_ms)          # replicated (applied) state
        self.resequencer = Resequencer(config.session_gap_timeout_ms, config.max_parked_per_session)
        self.deleting_index: int | None = None
        self.deleting_ticks = 0
        self._effects: list = []
        # What the shell publishes as counters (Ra's ra_server counters): entries
        # applied and snapshots installed in this incarnation, and the leader's
        # receipt time of the last user command applied (commit latency).
        self.counters: dict[str, int] = {"applied": 0, "snapshots_installed": 0}
        self.last_applied_ts = 0
        # -- durable state --------------------------------------------------------
        if rec.snapshot is not None:
            snap_meta, snap_state = rec.snapshot
            snap_state = self._unwrap_snapshot_state(snap_state)
            self.log = RaftLog(snap_meta.index, snap_meta.term,
                               [e for e in rec.entries if e.index > snap_meta.index])
            if machine.disk:
                snap_state = self._open_disk_machine(config, snap_meta.index, snap_state)
            self.machine_state = snap_state
            self.snapshot_meta: SnapshotMeta | None = snap_meta
            self.machine_version = snap_meta.machine_version
            base_cluster = cluster_dict(snap_meta.cluster)
            base_index = snap_meta.index
        else:
            self.log = RaftLog(0, 0, rec.entries)
            self.machine_version = 0
            self.machine_state = machine.init(dict(config.machine_config, name=config.cluster_name))
            self.snapshot_meta = None
            # A joining server knows no configuration until the leader's log
            # or snapshot carries one: an empty one (no voters) until then.
            base_cluster = ({} if config.joining
                            else {ServerId(*s): VOTER for s in config.initial_members})
            base_index = 0
        # (index, cluster) of every configuration still in the log: the last is
        # in force; popping reverts a truncated change.
        self.cluster_history: list[tuple[int, dict]] = [(base_index, base_cluster)]
        for e in self.log.entries:
            if isinstance(e.command, ClusterChange):
                self.cluster_history.append((e.index, cluster_dict(e.command.cluster)))
        self.current_term = max(rec.current_term, self.log.last_term)
        self.voted_for = rec.voted_for if rec.current_term == self.current_term else None
        self.durable_meta = (rec.current_term, rec.voted_for)
        self.commit_index = max(self.log.snapshot_index, min(rec.last_applied, self.log.last_index))
        self.last_applied = self.log.snapshot_index
        self._recover_checkpoints(rec)
        # Re-apply what was applied before the restart; effects are discarded
        # (they were carried out by whoever was leader then).
        self._apply_to(self.commit_index, replay=True)
        # The version this leader's noops asked for ("all": one more once every member runs it).
        self.noop_version = 0
        # Ra: aux state is this member's alone, made afresh at every start
        # by the effective machine module.
        self.aux_state = machine.init_aux(self.machine_version, self.id.name)

    def _open_disk_machine(self, config: ServerConfig, snapshot_index: int, image: Any) -> Any:
        """A disk machine's files, at or above the snapshot: the log below it
        is gone, so files that are behind it (a power loss took the last
        transactions, or the install of a received snapshot was cut short)
        are replaced by the snapshot's image."""
        handle = self.machine.init(dict(config.machine_config, name=config.cluster_name))
        if self.machine.applied_index(handle) < snapshot_index:
            if not isinstance(image, (bytes, bytearray)):
                raise TypeError(f"the snapshot at {snapshot_index} holds no disk image for a disk machine")
            handle = self.machine.install(handle, bytes(image), snapshot_index)
        return handle

    def _recover_checkpoints(self, rec: Recovered) -> None:
        """Durable checkpoints above the snapshot (ascending); the machine
        starts from the newest one when the log still holds its (index, term)."""
        self.checkpoints: list[SnapshotMeta] = sorted(
            (c for c in rec.checkpoints if c.index > self.log.snapshot_index), key=lambda c: c.index)
        # Where this incarnation's machine state started (snapshot or checkpoint index).
        self.recovered_from = self.log.snapshot_index
        if rec.checkpoint is not None:
            cp_meta, cp_state = rec.checkpoint
            if (cp_meta.index > self.log.snapshot_index
                    and self.log.term_at(cp_meta.index) == cp_meta.term):
                self.machine_state = self._unwrap_snapshot_state(cp_state)
                self.machine_version = cp_meta.machine_version
                self.last_applied = cp_meta.index
                self.commit_index = max(self.commit_index, cp_meta.index)
                self.recovered_from = cp_meta.index

    # =============================================================== helpers
    @property
    def cluster(self) -> dict:
        return self.cluster_history[-1][1]

    def _cluster_at(self, index: int) -> dict:
        for idx, cl in reversed(self.cluster_history):
            if idx <= index:
                return cl
        return self.cluster_history[0][1]

    def voters(self) -> list[ServerId]:
        return [s for s, mem in self.cluster.items() if mem == VOTER]

    def _quorum(self) -> int:
        return len(self.voters()) // 2 + 1

    def _is_voter(self) -> bool:
        return self.cluster.get(self.id) == VOTER

    def _can_campaign(self) -> bool:
        """Voters campaign; so does a server whose removal is appended but not
        yet committed (Raft thesis §4.1): it may hold the only up-to-date log,
        and without it the old configuration could have no electable member."""
        if self._is_voter():
            return True
        index, _ = self.cluster_history[-1]
        if index > self.commit_index and len(self.cluster_history) > 1:
            return self.cluster_history[-2][1].get(self.id) == VOTER
        return False

    def _has_quorum(self, ids: set) -> bool:
        """Do ``ids`` hold a majority of the voters of the latest configuration?
        (A candidate outside that configuration does not count itself.)"""
        voters = self.voters()
        return sum(1 for v in ids if v in voters) >= len(voters) // 2 + 1

    def _emit(self, effect) -> None:
        self._effects.append(effect)

    def _send(self, to: ServerId, rpc) -> None:
        self._effects.append(fx.SendRpc(to, rpc))

    def _leading(self) -> bool:
        return self.role in LEADING_ROLES

    def _set_role(self, role: str) -> None:
        if role == self.role:
            return
        self.role = role
        self._emit(fx.RoleChanged(role))
        if role != STOPPED:
            effs = self.machine.state_enter(self.machine_version, role, self.machine_state)
            if effs:
                self._emit_machine_effects(effs, from_apply=False)

    def _set_leader(self, leader: ServerId | None) -> None:
        if leader != self.leader_id:
            self.leader_id = leader
            # What we verified and acknowledged was against the previous leader.
            self.verified_index = 0
            self.last_reply_index = -1
            self._emit(fx.LeaderChanged(leader, self.current_term))
            if leader is not None and leader != self.id:
                self._emit(fx.MonitorServer(leader))

    def _update_term(self, term: int) -> None:
        if term > self.current_term:
            self.current_term = term
            self.voted_for = None
            self._emit(fx.PersistMeta(term, None))

    # ================================================================ entry
    def init(self) -> tuple[str, list]:
        """Effects to run once the server starts (after construction)."""
        self._effects = []
        self._emit(fx.RoleChanged(self.role))
        # Ra's servers pass through recovered, then enter follower.
        for role in ("recovered", self.role):
            effs = self.machine.state_enter(self.machine_version, role, self.machine_state)
            if effs:
                self._emit_machine_effects(effs, from_apply=False)
        # A server with history takes part in elections on its own; a brand-new
        # one waits for TriggerElection or a leader (Ra).
        if self._can_campaign() and (self.log.last_index > 0 or self.current_term > 0):
            self._emit(fx.SetElectionTimer("long"))
        return self.role, self._take()

    def _take(self) -> list:
        effects, self._effects = self._effects, []
        return effects

    def handle(self, msg) -> tuple[str, list]:
        """One step: term handling (:meth:`_step_term`), then the handler that
        the current role's table (:data:`STEP`) has for the message's type;
        a role without one ignores the message."""
        self._effects = []
        kind = type(msg)
        if kind not in KNOWN_MESSAGES:
            raise TypeError(f"unknown message {kind.__name__}")
        if self.role == STOPPED:
            return self.role, []
        if self._step_term(msg):
            handler = STEP[self.role].get(kind)
            if handler is not None:
                handler(self, msg)
        if self.role == LEADER and self.low_queue:
            self._flush_low_priority()
        if self.pending_release_cursor is not None:
            self._release_pending_cursor()
        if self.deferred_snapshot is not None and not self._snapshot_busy():
            index, payload, version = self.deferred_snapshot
            self.deferred_snapshot = None
            self._snapshot_at(index, lambda: payload, version)
        self._flush_applied()
        return self.role, self._take()

    # ============================================================ term logic
    def _step_term(self, msg) -> bool:
        """Raft §5.1, in one place: whether ``msg`` goes on to its handler.

        * A term newer than ours is adopted (we become a follower with no
          leader known); a request is then handled in that term, a result of
          an older exchange is dropped.
        * A request of an older term gets its stale answer (so the sender
          learns our term) or nothing; an older result is dropped.
        * Pre-votes never change anyone's term (thesis §9.6): a PreVoteRpc is
          judged by its handler whatever its term, and a PreVoteResult carries
          the responder's term, which may be below ours.
        """
        kind = type(msg)
        if kind not in m.RPC_REQUESTS and kind not in m.RPC_RESULTS:
            return True
        if kind is m.PreVoteRpc:
            return True
        if msg.term > self.current_term:
            self._adopt_term(msg.term)
            return kind in m.RPC_REQUESTS
        if msg.term < self.current_term and kind is not m.PreVoteResult:
            answer = STALE_ANSWERS.get(kind)
            if answer is not None:
                answer(self, msg)
            return False
        return True

    def _adopt_term(self, term: int) -> None:
        was_leading = self._leading()
        self._update_term(term)
        if self.role != FOLLOWER or was_leading:
            self._become_follower(None)
        else:
            self._set_leader(None)
            if self._can_campaign():
                # Whoever bumped the term may never win: do not wait for ever.
                self._emit(fx.SetElectionTimer("long"))

    # -- stale requests: tell the sender our term --------------------------------
    def _stale_append_entries(self, msg: m.AppendEntriesRpc) -> None:
        self._reject_append(msg.from_id, self.log.last_index + 1)

    def _stale_request_vote(self, msg: m.RequestVoteRpc) -> None:
        self._send(msg.from_id, m.RequestVoteResult(self.current_term, self.id, False))

    def _stale_heartbeat(self, msg: m.HeartbeatRpc) -> None:
        self._send(msg.from_id, m.HeartbeatReply(self.current_term, self.id, msg.query_index))

    def _stale_install_snapshot(self, msg: m.InstallSnapshotRpc) -> None:
        self._send(msg.from_id, m.InstallSnapshotResult(self.current_term, self.id, msg.chunk_no,
                                                        self.log.last_index, self.log.last_term))

    def _reject_append(self, to: ServerId, next_index: int) -> None:
        self._send(to, m.AppendEntriesReply(self.current_term, self.id, False, next_index,
                                            self.log.last_written, self.log.term_at(self.log.last_written) or 0))

    def _become_follower(self, leader: ServerId | None) -> None:
        if self._leading():
            self._abandon_leadership()
        self.votes = set()
        self.receiving = None
        if self.deleting_index is not None:
            # The cluster's deletion is applied here, so it is committed:
            # whoever leads now has it too.  This member only waits for
            # the entry to be durable (the leader counts on its
            # acknowledgement), then goes; it never campaigns again.
            self._set_role(TERMINATING_FOLLOWER)
            self._set_leader(leader)
            self._emit(fx.CancelElectionTimer())
            self._maybe_finish_follower_delete()
            return
        self._set_role(FOLLOWER)
        self._set_leader(leader)
        if leader is None and self._can_campaign():
            self._emit(fx.SetElectionTimer("long"))
        else:
            self._emit(fx.CancelElectionTimer())

    def _abandon_leadership(self) -> None:
        for _, _, _, caller in self.pending_queries:
            self._emit(fx.Reply(caller, Redirect(None), None))
        for _, caller in self.waiting_queries:
            self._emit(fx.Reply(caller, Redirect(None), None))
        for cmd in self.low_queue + self.resequencer.reset({}):
            self._reject(cmd, None)
        self.pending_queries = []
        self.waiting_queries = []
        self.low_queue = []
        self.peers = {}
        self.transfer_target = None

    # ============================================================= elections
    def _start_pre_vote(self) -> None:
        if not self._can_campaign():
            return
        self.pre_vote_token += 1
        self._set_role(PRE_VOTE)
        self._set_leader(None)
        self.votes = {self.id}
        self._emit(fx.SetElectionTimer("long"))
        if self._has_quorum(self.votes):
            self._start_election()
            return
        rpc = m.PreVoteRpc(self.current_term, self.id, self.pre_vote_token, self.log.last_index,
                           self.log.last_term, self.machine.version())
        for peer in self.voters():
            if peer != self.id:
                self._send(peer, rpc)

    def _start_election(self) -> None:
        self._set_role(CANDIDATE)
        self._set_leader(None)
        self.current_term += 1
        self.voted_for = self.id
        self._emit(fx.PersistMeta(self.current_term, self.id))
        # Our own vote counts once it is durable (MetaWritten), like a vote
        # granted to anyone else: a candidate that crashed before that could
        # restart without it and vote for another candidate of this term.
        self.votes = set()
        self._emit(fx.SetElectionTimer("long"))
        if self._vote_is_durable(self.id):
            self._count_own_vote()
            if self.role != CANDIDATE:
                return
        rpc = m.RequestVoteRpc(self.current_term, self.id, self.log.last_index, self.log.last_term)
        for peer in self.voters():
            if peer != self.id:
                self._send(peer, rpc)

    def _on_pre_vote_rpc(self, msg: m.PreVoteRpc) -> None:
        # Pre-votes never change our term.  Refuse while we know a live leader
        # (leader stickiness) or when the candidate's log or term is behind.
        # A pre-vote from our own leader, or carrying a newer term, means our
        # idea of the leader is stale (it stepped down without our hearing).
        knows_leader = ((self.role == FOLLOWER and self.leader_id is not None
                         and self.leader_id != msg.from_id and msg.term <= self.current_term)
                        or self._leading())
        # Ra: the candidate's code runs our effective version, or a newer
        # one that our code runs too (so a leader never switches to a
        # version a quorum of voters cannot run).
        mv = msg.machine_version
        grant = (msg.term >= self.current_term and not knows_leader
                 and (mv == self.machine_version or self.machine_version <= mv <= self.machine.version())
                 and self.log.is_up_to_date(msg.last_log_index, msg.last_log_term))
        self._send(msg.from_id, m.PreVoteResult(self.current_term, self.id, msg.token, grant))
        if self._leading() and msg.from_id in self.peers:
            # The asker lost track of us: remind it who leads.
            self._replicate(msg.from_id, force=True)

    def _on_pre_vote_result(self, msg: m.PreVoteResult) -> None:
        if msg.token != self.pre_vote_token or not msg.vote_granted:
            return
        self.votes.add(msg.from_id)  # _has_quorum counts voters only
        if self._has_quorum(self.votes):
            self._start_election()

    def _on_request_vote_rpc(self, msg: m.RequestVoteRpc) -> None:
        grant = (self.voted_for in (None, msg.from_id) and not self._leading()
                 and self.log.is_up_to_date(msg.last_log_index, msg.last_log_term))
        if not grant:
            self._send(msg.from_id, m.RequestVoteResult(self.current_term, self.id, False))
            if self._leading() and msg.from_id in self.peers:
                self._replicate(msg.from_id, force=True)
            return
        if self.voted_for is None:
            self.voted_for = msg.from_id
            self._emit(fx.PersistMeta(self.current_term, msg.from_id))
            self._emit(fx.SetElectionTimer("long"))
        if self._vote_is_durable(msg.from_id):
            self._send(msg.from_id, m.RequestVoteResult(self.current_term, self.id, True))
        else:
            # Granted only once MetaWritten says the vote is durable.
            self.pending_vote_reply = (msg.from_id, self.current_term)

    def _vote_is_durable(self, candidate: ServerId) -> bool:
        """Raft Figure 2: a vote -- granted, or a candidate's own -- counts only
        once it is on disk (the shell answers PersistMeta with MetaWritten)."""
        return self.durable_meta == (self.current_term, candidate)

    def _count_own_vote(self) -> None:
        self.votes.add(self.id)  # _has_quorum counts voters only
        if self._has_quorum(self.votes):
            self._become_leader()

    def _on_meta_written(self, msg: m.MetaWritten) -> None:
        self.durable_meta = (msg.term, msg.voted_for)
        if self.role == CANDIDATE and self.durable_meta == (self.current_term, self.id):
            self._count_own_vote()
            return
        pending = self.pending_vote_reply
        if pending and pending == (msg.voted_for, msg.term) and msg.term == self.current_term:
            self.pending_vote_reply = None
            self._send(pending[0], m.RequestVoteResult(self.current_term, self.id, True))

    def _on_request_vote_result(self, msg: m.RequestVoteResult) -> None:
        if not msg.vote_granted:
            return
        self.votes.add(msg.from_id)  # _has_quorum counts voters only
        if self._has_quorum(self.votes):
            self._become_leader()

    def _on_follower_election_timeout(self, _msg) -> None:
        if self.leader_id is None:
            self._start_pre_vote()

    def _on_campaign_timeout(self, _msg) -> None:
        # A failed pre-vote or a split vote: try again (via pre-vote, as Ra).
        self._start_pre_vote()

    def _on_receive_snapshot_timeout(self, _msg) -> None:
        # No chunk for a whole election timeout: give up on this transfer.
        self.receiving = None
        self._set_role(FOLLOWER)
        self._leader_lost()

    def _on_trigger_election(self, _msg) -> None:
        self._start_pre_vote()

    def _on_timeout_now(self, msg: m.TimeoutNowRpc) -> None:
        if self._can_campaign():
            self._start_election()

    def _leader_lost(self) -> None:
        if self.role == RECEIVE_SNAPSHOT:
            # The sender is gone: drop the partial snapshot.
            self.receiving = None
            self._set_role(FOLLOWER)
        self._set_leader(None)
        if self.role == FOLLOWER and self._can_campaign():
            # Randomised short delay so that followers do not all pre-vote at once.
            self._emit(fx.SetElectionTimer("short"))

    def _on_server_down(self, msg: m.ServerDown) -> None:
        if msg.server_id == self.leader_id:
            self._leader_lost()

    def _on_follower_node_event(self, msg: m.NodeEvent) -> None:
        if not msg.up and self.leader_id is not None and self.leader_id.node == msg.node:
            self._leader_lost()

    def _on_leader_node_event(self, msg: m.NodeEvent) -> None:
        if msg.up:
            for peer in sorted(self.peers):
                if peer.node == msg.node:
                    self._replicate(peer, force=True)

    # ============================================================ leadership
    def _become_leader(self) -> None:
        self._set_role(LEADER)
        self._set_leader(self.id)
        self._emit(fx.CancelElectionTimer())
        self.votes = set()
        self.peers = {}
        for sid in self.cluster:
            if sid != self.id:
                self.peers[sid] = Peer(self.log.last_index + 1)
        # The noop commits every earlier entry (§5.4.2) and gates cluster
        # changes and consistent queries.  It carries the machine version to
        # run from then on: under "quorum" the newest our code runs; under
        # "all" the effective one, until every member said it runs a newer
        # one (Ra's machine_upgrade_strategy).
        self.resequencer.reset(self._session_tails())
        if self.config.machine_upgrade_strategy == "quorum" or not self.peers:
            self.noop_version = max(self.machine.version(), self.machine_version)
        else:
            self.noop_version = self.machine_version
        self._append_local([Noop(self.noop_version)])
        self._replicate_all()
        self._ask_machine_versions()

    def _append_local(self, commands: list) -> list[Entry]:
        new = []
        for cmd in commands:
            entry = _entry(self.log.last_index + 1, self.current_term, cmd)
            self.log.append(entry)
            new.append(entry)
            if isinstance(cmd, ClusterChange):
                self._cluster_changed(entry.index, cluster_dict(cmd.cluster))
        if new:
            self._emit(fx.LogAppend(tuple(new)))
        return new

    def _cluster_changed(self, index: int, cluster: dict) -> None:
        self.cluster_history.append((index, cluster))
        if self._leading():
            for sid in cluster:
                if sid != self.id and sid not in self.peers:
                    self.peers[sid] = Peer(self.log.last_index + 1)
            for sid in list(self.peers):
                if sid not in cluster:
                    del self.peers[sid]

    def _revert_cluster(self, last_index: int) -> None:
        while len(self.cluster_history) > 1 and self.cluster_history[-1][0] > last_index:
            self.cluster_history.pop()

    def _replicate_all(self, force: bool = False) -> None:
        for peer in sorted(self.peers):
            self._replicate(peer, force)

    def _replicate(self, sid: ServerId, force: bool = False) -> None:
        """Send ``sid`` what it lacks: one AppendEntriesRpc (bounded batch,
        bounded window) or the next snapshot chunk."""
        p = self.peers.get(sid)
        if p is None:
            return
        if p.snapshot is not None:
            if force:
                self._send_snapshot_chunk(sid, p)
            return
        if p.next_index <= self.log.snapshot_index:
            p.start_snapshot(self.snapshot_meta)
            self._send_snapshot_chunk(sid, p)
            return
        last = self.log.last_index
        in_flight = p.next_index - 1 - p.match_index
        room = self.config.max_pipeline_count - in_flight
        entries: list[Entry] = []
        if p.next_index <= last and room > 0:
            upto = min(last, p.next_index + min(self.config.max_append_entries_batch, room) - 1)
            entries = self.log.slice(p.next_index, upto)
        if not entries and not force and p.commit_index_sent >= self.commit_index:
            return
        prev = p.next_index - 1
        prev_term = self.log.term_at(prev)
        if prev_term is None:  # prev fell below the snapshot: send the snapshot instead
            p.start_snapshot(self.snapshot_meta)
            self._send_snapshot_chunk(sid, p)
            return
        self._send(sid, m.AppendEntriesRpc(self.current_term, self.id, self.commit_index, prev,
                                           prev_term, tuple(entries)))
        p.commit_index_sent = self.commit_index
        if entries:
            p.next_index = entries[-1].index + 1

    def _send_snapshot_chunk(self, sid: ServerId, p: Peer) -> None:
        meta, chunk_no = p.snapshot
        self._emit(fx.SendSnapshotChunk(sid, meta, self.current_term, chunk_no,
                                        min(self.config.snapshot_chunk_size, 1 << 20)))

    def _on_append_entries_reply(self, msg: m.AppendEntriesReply) -> None:
        p = self.peers.get(msg.from_id)
        if p is None:
            return
        if p.snapshot is not None:
            # A follower being sent a snapshot may still acknowledge entries
            # (a reply that crossed the decision, or an AppendEntriesRpc that
            # overtook a chunk and made it drop the chunks it had).  Once it
            # holds our first index, the log can serve it: stop the transfer.
            if not (msg.success and msg.last_index >= self.log.snapshot_index
                    and msg.last_index <= self.log.last_index
                    and self.log.term_at(msg.last_index) == msg.last_term):
                return
            p.snapshot = None
        if msg.success:
            if (msg.last_index > p.match_index and msg.last_index <= self.log.last_index
                    and self.log.term_at(msg.last_index) in (msg.last_term, None)):
                p.match_index = msg.last_index
            p.next_index = max(p.next_index, p.match_index + 1)
            self._maybe_commit()
            self._maybe_promote(msg.from_id, p)
            self._maybe_transfer()
        else:
            p.next_index = max(p.match_index + 1, min(msg.next_index, self.log.last_index + 1))
            p.commit_index_sent = -1  # make sure the retry is sent even if empty
        if self.role != STOPPED:
            self._replicate(msg.from_id)
            self._maybe_finish_delete()

    def _self_match(self) -> int:
        """§5.4.2 with durability: the leader counts only entries on its own
        disk towards a quorum."""
        return self.log.last_written

    def _maybe_commit(self) -> None:
        if not self._leading():
            return
        voters = self.voters()
        matches = []
        for sid in voters:
            if sid == self.id:
                matches.append(self._self_match())
            else:
                p = self.peers.get(sid)
                matches.append(p.match_index if p else 0)
        if not matches:
            return
        matches.sort(reverse=True)
        candidate = matches[self._quorum() - 1]
        # §5.4.2: only entries of the current term commit by counting replicas.
        if candidate > self.commit_index and self.log.term_at(candidate) == self.current_term:
            self.commit_index = candidate
            self._apply_to(candidate)
            # Tell followers the new commit index (empty AERs where nothing else is due).
            if self._leading():
                self._replicate_all()
                self._serve_waiting_queries()

    # ====================================================== machine upgrades
    def _upgrade_waits_for_peers(self) -> bool:
        """Under "all", while our code runs a newer version than the
        effective one: every member's answer is needed."""
        return (self.config.machine_upgrade_strategy == "all" and self.role == LEADER
                and self.machine.version() > max(self.machine_version, self.noop_version))

    def _ask_machine_versions(self) -> None:
        """Ra's info_rpc: ask each member that has not said it runs our
        version (again: it may have restarted with newer code since)."""
        if not self._upgrade_waits_for_peers():
            return
        ours = self.machine.version()
        rpc = m.InfoRpc(self.current_term, self.id)
        for sid in sorted(self.peers):
            known = self.peers[sid].machine_version
            if known is None or known < ours:
                self._send(sid, rpc)

    def _on_info_rpc(self, msg: m.InfoRpc) -> None:
        self._send(msg.from_id, m.InfoReply(self.current_term, self.id, self.machine.version()))

    def _on_info_reply(self, msg: m.InfoReply) -> None:
        p = self.peers.get(msg.from_id)
        if p is None:
            return   # removed since it was asked
        p.machine_version = msg.machine_version
        self._maybe_upgrade()

    def _maybe_upgrade(self) -> None:
        """Ra's "all": switch to the newest version every member's code
        runs -- ours included -- once each has answered."""
        if not self._upgrade_waits_for_peers():
            return
        target = self.machine.version()
        for sid in self.cluster:
            if sid == self.id:
                continue
            p = self.peers.get(sid)
            if p is None or p.machine_version is None:
                return   # not every member answered yet
            target = min(target, p.machine_version)
        if target > max(self.machine_version, self.noop_version):
            self.noop_version = target
            self._append_local([Noop(target)])
            self._replicate_all()

    # ============================================================ followers
    def _on_append_entries_rpc(self, msg: m.AppendEntriesRpc) -> None:
        if self.role not in FOLLOWER_ROLES or self.leader_id != msg.from_id:
            self._become_follower(msg.from_id)
            if self.role == STOPPED:
                return
        prev, prev_term, entries = msg.prev_log_index, msg.prev_log_term, msg.entries
        if prev < self.log.snapshot_index:
            # Everything up to our snapshot is committed, hence matches.
            skip = self.log.snapshot_index - prev
            entries = entries[skip:]
            prev, prev_term = self.log.snapshot_index, self.log.snapshot_term
        if prev > self.log.last_index:
            self._reject_append(msg.from_id, self.log.last_index + 1)
            return
        if self.log.term_at(prev) != prev_term:
            hint = prev
            ours = self.log.term_at(prev)
            while hint - 1 > max(self.commit_index, self.log.snapshot_index) and self.log.term_at(hint - 1) == ours:
                hint -= 1
            hint = max(hint, self.commit_index + 1)
            self._reject_append(msg.from_id, hint)
            return
        new_from = self._first_new_entry(entries)
        if new_from is not None:
            first = entries[new_from]
            if first.index <= self.log.last_index:
                self.log.truncate_after(first.index - 1)
                self._revert_cluster(first.index - 1)
            to_write = entries[new_from:]
            for e in to_write:
                self.log.append(e)
                if isinstance(e.command, ClusterChange):
                    self._cluster_changed(e.index, cluster_dict(e.command.cluster))
            self._emit(fx.LogAppend(tuple(to_write)))
        top = msg.prev_log_index + len(msg.entries)
        self.verified_index = max(self.verified_index, top) if new_from is None else top
        new_commit = min(msg.leader_commit, top)
        if new_commit > self.commit_index:
            self.commit_index = new_commit
            self._apply_to(new_commit)
        # Nothing new to write: answer now.  Otherwise answer only if the
        # durable, verified prefix grew (first contact with a new leader); the
        # Written for the new entries triggers the next acknowledgement.
        # An AppendEntriesRpc that only carries the commit index needs no
        # answer unless our acknowledged index moved: halves the messages per
        # command.  Resent entries (all matching) are always answered, so a
        # leader that lost our reply learns our match index on its next tick.
        self._reply_append(force=new_from is None and bool(msg.entries))

    def _first_new_entry(self, entries: tuple) -> int | None:
        """§5.3: the position in ``entries`` of the first one we do not hold
        (None: we hold them all).  Matching entries are never rewritten: a
        reordered, older AppendEntriesRpc must not truncate newer entries."""
        for i, e in enumerate(entries):
            ours = self.log.term_at(e.index)
            if ours is None or ours != e.term:
                return i
        return None

    def _reply_append(self, force: bool = False) -> None:
        """Acknowledge what is durable and verified against the leader."""
        if self.role not in FOLLOWER_ROLES or self.leader_id is None:
            return
        idx = min(self.log.last_written, self.verified_index)
        idx = max(idx, self.log.snapshot_index) if self.verified_index >= self.log.snapshot_index else idx
        if idx <= self.last_reply_index and not force:
            return
        self.last_reply_index = max(self.last_reply_index, idx)
        self._send(self.leader_id, m.AppendEntriesReply(self.current_term, self.id, True,
                                                        self.log.last_index + 1, idx,
                                                        self.log.term_at(idx) or 0))

    def _on_written(self, msg: m.Written) -> bool:
        """The log's durable prefix grew (True) or the report was stale."""
        return self._durable_prefix_grew(msg)

    def _durable_prefix_grew(self, msg: m.Written) -> bool:
        """Rule: only a contiguous durable prefix counts (``RaftLog.written``);
        a report above a hole left by a lost write proves nothing."""
        return self.log.written(msg.term, msg.from_index, msg.to_index)

    def _on_leader_written(self, msg: m.Written) -> None:
        if self._on_written(msg):
            self._maybe_commit()
            self._maybe_transfer()

    def _on_follower_written(self, msg: m.Written) -> None:
        if self._on_written(msg):
            self._reply_append()

    def _on_terminating_follower_written(self, msg: m.Written) -> None:
        if self._on_written(msg):
            self._maybe_finish_follower_delete()

    def _on_resend_write(self, msg: m.ResendWrite) -> None:
        # From the WAL's index or from the end of what is known durable,
        # whichever is lower: the WAL may ask from above a write it lost
        # (one it took for out of sequence), and everything above
        # ``last_written`` may be missing.
        first = min(msg.from_index, self.log.last_written + 1)
        entries = self.log.slice(first, self.log.last_index)
        if entries:
            self._emit(fx.LogAppend(tuple(entries)))

    def _on_heartbeat_rpc(self, msg: m.HeartbeatRpc) -> None:
        if self.role not in FOLLOWER_ROLES or self.leader_id != msg.from_id:
            if self.role == RECEIVE_SNAPSHOT and self.leader_id == msg.from_id:
                pass
            else:
                self._become_follower(msg.from_id)
                if self.role == STOPPED:
                    return
        self._send(msg.from_id, m.HeartbeatReply(self.current_term, self.id, msg.query_index))

    # ============================================================== applying
    def _apply_to(self, index: int, replay: bool = False) -> None:
        index = min(index, self.log.last_index)
        applied_from = self.last_applied
        while self.last_applied < index and self.role != STOPPED:
            entry = self.log.get(self.last_applied + 1)
            if entry is None:  # covered by the snapshot
                self.last_applied += 1
                continue
            if isinstance(entry.command, Noop) and entry.command.machine_version > self.machine.version():
                # Ra: our code cannot run the version the cluster switches
                # to here; apply nothing more until restarted with newer code.
                break
            self.last_applied = entry.index
            self._apply_entry(entry, replay)
            if not replay:
                self.counters["applied"] += 1
        if not replay and self.last_applied > applied_from and self.role != STOPPED \
                and self.machine.has_aux(self.machine_version):
            self._run_aux("cast", fx.AuxEval(), None)   # Ra's aux eval
        if not replay and self.role != STOPPED:
            # A recovery hint: never ahead of what is durable here, or a crash
            # could replay a stale (not yet overwritten) entry as committed.
            hint = max(min(self.last_applied, self.log.last_written), self.log.snapshot_index)
            self._emit(fx.PersistLastApplied(hint))
            self._serve_pending_queries()
            self._serve_conditional_queries()

    def _apply_entry(self, entry: Entry, replay: bool) -> None:
        cmd = entry.command
        if isinstance(cmd, Usr):
            if cmd.session is not None and not self._admit_session_command(cmd, replay):
                return
            meta = CommandMeta(entry.index, entry.term, cmd.ts, self.machine_version, cmd.reply_mode,
                               cmd.session)
            self.machine_state, reply, effs = self.machine.apply(self.machine_version, meta, cmd.data,
                                                                 self.machine_state)
            if cmd.session is not None:
                self.sessions.applied(cmd.session, reply)
            if replay:
                return
            self.last_applied_ts = cmd.ts
            self._handle_apply_effects(effs, entry.index)
            self._reply_applied(cmd.reply_mode, reply)
        elif isinstance(cmd, Noop):
            if cmd.machine_version > self.machine_version:
                old = self.machine_version
                self.machine_version = cmd.machine_version
                meta = CommandMeta(entry.index, entry.term, 0, self.machine_version, None)
                from .effects import MachineVersion
                self.machine_state, _reply, effs = self.machine.apply(
                    self.machine_version, meta, MachineVersion(old, cmd.machine_version), self.machine_state)
                if not replay:
                    self._handle_apply_effects(effs, entry.index)
        elif isinstance(cmd, ClusterChange):
            if not replay and self._leading() and self.id not in cluster_dict(cmd.cluster):
                if entry.index == self.cluster_history[-1][0]:
                    self._step_down_removed()
        elif isinstance(cmd, DeleteCluster):
            if replay:
                return
            effs = self.machine.state_enter(self.machine_version, "eol", self.machine_state)
            if effs:
                self._emit_machine_effects(effs, from_apply=False)
            if self._leading():
                if cmd.from_ is not None:
                    self._emit(fx.Reply(cmd.from_, _ok(self.id), self.id))
                self.deleting_index = entry.index
                self._set_role(TERMINATING_LEADER)
                self._replicate_all(force=True)
                self._maybe_finish_delete()
            else:
                # Acknowledge the DeleteCluster entry durably before going, or
                # the terminating leader would wait for us in vain.
                self.deleting_index = entry.index
                self._set_role(TERMINATING_FOLLOWER)
                self._maybe_finish_follower_delete()

    def _maybe_finish_follower_delete(self) -> None:
        if self.role == TERMINATING_FOLLOWER and self.log.last_written >= (self.deleting_index or 0):
            self._reply_append(force=True)
            self._stop_and_delete()

    def _stop_and_delete(self) -> None:
        self._emit(fx.CancelElectionTimer())
        self._set_role(STOPPED)
        self._emit(fx.DeleteData())

    def _maybe_finish_delete(self) -> None:
        if self.role != TERMINATING_LEADER or self.deleting_index is None:
            return
        if self.deleting_ticks >= TERMINATING_LEADER_MAX_TICKS or all(p.match_index >= self.deleting_index and p.commit_index_sent >= self.deleting_index
               for p in self.peers.values()):
            self._stop_and_delete()

    def _step_down_removed(self) -> None:
        """A leader removed from the cluster hands over once the removal commits."""
        best = None
        for sid in sorted(self.peers):
            if self.cluster.get(sid) == VOTER:
                p = self.peers[sid]
                if best is None or p.match_index > self.peers[best].match_index:
                    best = sid
        if best is not None:
            self._send(best, m.TimeoutNowRpc(self.current_term, self.id))
        self._become_follower(None)
        # As Ra, a removed leader stops; its death (reported to monitors) makes
        # the others elect even if the TimeoutNowRpc was lost.
        self._emit(fx.CancelElectionTimer())
        self._set_role(STOPPED)
        self._emit(fx.StopServer("removed"))

    def _reply_applied(self, mode, reply) -> None:
        """Answer an applied command: the leader does, unless an
        ``AwaitConsensus`` names another member to (``reply_from``)."""
        if isinstance(mode, AwaitConsensus):
            if reply != NO_REPLY and self._replies_here(mode.reply_from):
                self._emit(fx.Reply(mode.from_, _ok(reply), self.leader_id))
        elif isinstance(mode, NotifyReply):
            if reply != NO_REPLY and self._leading():
                self.applied_batch.setdefault(mode.client, []).append((mode.correlation, reply))

    def _replies_here(self, reply_from: Any) -> bool:
        """Ra's reply_from: the leader by default; ``("local", node)``: the
        voter on that node, or the leader if none is there;
        ``("member", id)``: that member, or the leader if it is no member."""
        leading = self._leading()
        if isinstance(reply_from, tuple) and len(reply_from) == 2:
            kind, where = reply_from
            if kind == "local":
                if leading:
                    return where == self.id.node or not any(s.node == where for s in self.voters())
                return where == self.id.node and self.cluster.get(self.id) == VOTER
            if kind == "member":
                target = ServerId(*where)
                if target == self.id:
                    return True
                return leading and target not in self.cluster
        return leading

    def _flush_applied(self) -> None:
        if self.applied_batch:
            for client, results in self.applied_batch.items():
                self._emit(fx.Applied(client, self.id, tuple(results)))
            self.applied_batch = {}

    def _handle_apply_effects(self, effs: list, index: int) -> None:
        rest = []
        for e in effs:
            if isinstance(e, fx.ReleaseCursor):
                self._release_cursor(e.index, e.state, e.condition)
            elif isinstance(e, fx.Checkpoint):
                self._checkpoint(e.index, e.state)
            elif isinstance(e, fx.Append):
                if self._leading():
                    self._append_local([Usr(e.command, e.reply_mode or NoReply(), 0)])
            elif isinstance(e, fx.Log):
                if rest:   # (keep the machine's order)
                    self._emit_machine_effects(rest, from_apply=True)
                    rest = []
                if self._runs_log_here(e.node):
                    self._handle_apply_effects(self._read_log_effects(e), index)
            elif isinstance(e, fx.TryAppend):
                # as if a client had sent it here, in whatever role this member is
                handler = STEP[self.role].get(m.Command)
                if handler is not None:
                    handler(self, m.Command(e.command, e.reply_mode or NoReply(), "normal", 0))
            else:
                rest.append(e)
        if rest:
            self._emit_machine_effects(rest, from_apply=True)

    def _runs_log_here(self, node: str | None) -> bool:
        if node is None:
            return self._leading()
        return self._sends_locally((None, node), self._leading())

    def _read_log_effects(self, e: fx.Log) -> list:
        """The effects ``e.fun`` makes of the user commands at ``e.indexes``."""
        commands = []
        for i in e.indexes:
            entry = self.log.get(i) if self.log.snapshot_index < i <= self.log.last_index else None
            if entry is not None and isinstance(entry.command, Usr):
                commands.append(entry.command.data)
        out = e.fun(commands)
        if out is None:
            return []
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def _emit_machine_effects(self, effs: list, from_apply: bool) -> None:
        if not from_apply:
            # state_enter/tick/snapshot_installed effects are meant for this member
            # (a Log among them runs here under the same rules).
            expanded = []
            for e in effs:
                if isinstance(e, fx.Log):
                    if self._runs_log_here(e.node):
                        expanded.extend(self._read_log_effects(e))
                else:
                    expanded.append(e)
            allowed = tuple(e for e in expanded
                            if not isinstance(e, (fx.ReleaseCursor, fx.Checkpoint, fx.Append, fx.TryAppend,
                                                  fx.Log)))
            if allowed:
                self._emit(fx.MachineEffects(allowed, leader_only=False))
            return
        # Keep the machine's order (Demonitor then Monitor must stay so): emit
        # consecutive runs that share the same tag.  Leader-only runs are kept
        # while this server holds leadership of its term (LEADING_ROLES): a
        # leader handing over still commits and answers, and no other member
        # will ever run the effects of what it applies.  The shell runs
        # whatever it is given.
        leading = self._leading()
        run: list = []
        run_tag = None
        for e in effs:
            if isinstance(e, (fx.ReleaseCursor, fx.Checkpoint)):
                continue
            if isinstance(e, fx.SendMsg) and "local" in e.options:
                if not self._sends_locally(e.to, leading):
                    continue
                tag = False     # this member runs it, whatever its role
            else:
                tag = isinstance(e, fx.LEADER_ONLY_EFFECTS)
            if run and tag != run_tag:
                if leading or not run_tag:
                    self._emit(fx.MachineEffects(tuple(run), leader_only=run_tag))
                run = []
            run_tag = tag
            run.append(e)
        if run and (leading or not run_tag):
            self._emit(fx.MachineEffects(tuple(run), leader_only=run_tag))

    def _sends_locally(self, to: Any, leading: bool) -> bool:
        """Ra's ``local`` send: the voter on the target's node sends it; the
        leader sends it only when no voter is there (or it is there itself)."""
        node = fx.target_node(to)
        if leading:
            return (node is None or node == self.id.node
                    or not any(s.node == node for s in self.voters()))
        return node == self.id.node and self.cluster.get(self.id) == VOTER

    # ============================================================= snapshots
    def _release_cursor(self, index: int, state: Any, condition: tuple = ()) -> None:
        if self.machine.disk:
            # (its files move on: a release whose condition does not hold
            # now cannot be taken later at that index, so it is skipped)
            if not condition or self._release_conditions_met(condition):
                self._release_disk_cursor()
            return
        if state is fx.NO_STATE:
            self._promote_checkpoint(index)
            return
        if condition and not self._release_conditions_met(condition):
            # Ra stashes it until the conditions hold, a newer one replacing
            # it.  Encoded now: the session table and version are this index's.
            self.pending_release_cursor = (index, self._snapshot_payload(state), self.machine_version, condition)
            return
        self._snapshot_at(index, lambda: self._snapshot_payload(state), self.machine_version)

    def _release_conditions_met(self, condition: tuple) -> bool:
        """Ra's release cursor conditions: ``("written", i)`` -- the log is
        durable up to ``i`` here; ``"no_snapshot_sends"`` -- no follower is
        being sent a snapshot by this member."""
        for c in condition:
            if c == "no_snapshot_sends":
                if self._leading() and any(p.snapshot is not None for p in self.peers.values()):
                    return False
            elif self.log.last_written < c[1]:
                return False
        return True

    def _release_pending_cursor(self) -> None:
        index, payload, version, condition = self.pending_release_cursor
        if self._release_conditions_met(condition):
            self.pending_release_cursor = None
            self._snapshot_at(index, lambda: payload, version)

    def _snapshot_at(self, index: int, payload: Callable[[], bytes], version: int) -> None:
        """Take the snapshot at ``index`` (``payload()``: the encoded state
        of machine ``version`` there) unless one is under way or it would
        not move the snapshot forward."""
        if any(c.index == index for c in self.checkpoints):
            # The same state is already durable: rename it, write nothing.
            self._promote_checkpoint(index)
            return
        if (index <= self.log.snapshot_index
                or index > self.last_applied
                or index < self.log.snapshot_index + self.config.min_snapshot_interval):
            return
        # One snapshot write at a time: a received snapshot being written
        # (``installing``) is newer than anything applied here, and an older
        # write landing after it would replace it on disk below a log that
        # the install already truncated.  A release behind a write under way
        # is kept (encoded now, a newer one replacing it) and taken once the
        # write is done: dropping it would leave the log untruncated until
        # the machine's next release, however far away that is.
        if self._snapshot_busy():
            if self.deferred_snapshot is None or self.deferred_snapshot[0] < index:
                self.deferred_snapshot = (index, payload(), version)
            return
        term = self.log.term_at(index)
        if term is None:
            return
        cluster = self._cluster_at(index)
        if not cluster:
            return  # a joining server does not know the configuration at that index
        meta = SnapshotMeta(index, term, cluster_tuple(cluster), version)
        self.pending_snapshot = meta
        self._emit(fx.WriteSnapshot(meta, data=payload()))

    def _snapshot_busy(self) -> bool:
        """A snapshot or checkpoint write (or a received snapshot) is under way."""
        return (self.pending_snapshot is not None or self.installing is not None
                or self.pending_checkpoint is not None)

    def _release_disk_cursor(self) -> None:
        """A disk machine's snapshot: its files' copy at the entry being
        applied (the machine takes it now, inside this apply, so the copy and
        the session table packed with it are at the same index)."""
        index = self.last_applied
        if (self.pending_snapshot is not None or self.installing is not None
                or index <= self.log.snapshot_index
                or index < self.log.snapshot_index + self.config.min_snapshot_interval
                or self.machine.applied_index(self.machine_state) != index):
            return
        term = self.log.term_at(index)
        cluster = self._cluster_at(index)
        if term is None or not cluster:
            return
        meta = SnapshotMeta(index, term, cluster_tuple(cluster), self.machine_version)
        self.pending_snapshot = meta
        image = self.machine.snapshot_image(self.machine_state)
        self._emit(fx.WriteSnapshot(meta, data=self._snapshot_payload(image)))

    def _snapshot_payload(self, state: Any) -> bytes:
        # Encode now: a machine that mutates its state in place would otherwise
        # change the snapshot before the shell gets to write it.
        if len(self.sessions):
            # (the session table is the one at the entry being applied, see
            # _apply_entry)
            state = SnapshotState(state, self.sessions.records(), self.sessions.log_clock)
        return codec.pack(state)

    def _checkpoint(self, index: int, state: Any) -> None:
        if self.machine.disk:
            return   # a disk machine's files are a recovery point that is always current
        newest = self.checkpoints[-1].index if self.checkpoints else 0
        if (self.pending_snapshot is not None or self.installing is not None
                or self.pending_checkpoint is not None
                or index <= self.log.snapshot_index
                or index > self.last_applied
                or index <= newest + self.config.min_checkpoint_interval):
            return
        term = self.log.term_at(index)
        cluster = self._cluster_at(index)
        if term is None or not cluster:
            return
        meta = SnapshotMeta(index, term, cluster_tuple(cluster), self.machine_version)
        self.pending_checkpoint = meta
        self._emit(fx.WriteCheckpoint(meta, self._snapshot_payload(state)))

    def _on_checkpoint_written(self, msg: m.CheckpointWritten) -> None:
        if msg.meta != self.pending_checkpoint:
            return
        self.pending_checkpoint = None
        meta = msg.meta
        if meta.index <= self.log.snapshot_index:
            self._emit(fx.DeleteCheckpoints((meta,)))   # a snapshot overtook it
            return
        self.checkpoints.append(meta)
        self.checkpoints.sort(key=lambda c: c.index)
        extra = []
        while len(self.checkpoints) > max(1, self.config.max_checkpoints):
            extra.append(self.checkpoints.pop(self._checkpoint_to_thin()))
        if extra:
            self._emit(fx.DeleteCheckpoints(tuple(extra)))

    def _checkpoint_to_thin(self) -> int:
        """Position of the checkpoint to drop when there are too many: never
        the oldest or the newest; the one closest to its older neighbour,
        so the survivors stay spread over the log (Ra thins them too)."""
        cps = self.checkpoints
        if len(cps) <= 2:
            return 0
        return min(range(1, len(cps) - 1), key=lambda i: (cps[i].index - cps[i - 1].index, i))

    def _promote_checkpoint(self, index: int) -> None:
        if self.pending_snapshot is not None or self.installing is not None:
            return
        found = [c for c in self.checkpoints if self.log.snapshot_index < c.index <= index]
        if not found:
            return
        meta = found[-1]
        self.checkpoints.remove(meta)
        self.pending_snapshot = meta
        self._emit(fx.PromoteCheckpoint(meta))

    def _drop_checkpoints_below(self, index: int) -> None:
        old = [c for c in self.checkpoints if c.index <= index]
        if old:
            self.checkpoints = [c for c in self.checkpoints if c.index > index]
            self._emit(fx.DeleteCheckpoints(tuple(old)))

    def _on_snapshot_written(self, msg: m.SnapshotWritten) -> None:
        if self.installing is not None and msg.meta == self.installing[0]:
            self._finish_install()
            return
        if self.pending_snapshot is None or msg.meta != self.pending_snapshot:
            return
        self.pending_snapshot = None
        meta = msg.meta
        if meta.index <= self.log.snapshot_index:
            return
        self.log.install_snapshot(meta.index, meta.term)
        self.snapshot_meta = meta
        self._compact_cluster_history(meta.index)
        self._emit(fx.TruncateLogBelow(meta.index))
        self.machine.released(self.machine_state, meta.index)
        self._drop_checkpoints_below(meta.index)
        # The shell keeps only the newest snapshot: restart transfers of older ones.
        for sid in sorted(self.peers):
            p = self.peers[sid]
            if p.snapshot is not None and p.snapshot[0] != meta:
                p.start_snapshot(meta)
                self._send_snapshot_chunk(sid, p)

    def _compact_cluster_history(self, index: int) -> None:
        base = self._cluster_at(index)
        self.cluster_history = [(index, base)] + [(i, c) for i, c in self.cluster_history if i > index]

    def _on_install_snapshot_rpc(self, msg: m.InstallSnapshotRpc) -> None:
        meta = msg.meta
        if self.leader_id != msg.from_id:
            self._set_leader(msg.from_id)
        if meta.index <= self.commit_index:
            # We already hold (committed) everything the snapshot covers: tell
            # the leader how far we are durable, as if it were installed.
            if meta.index <= self.log.snapshot_index:
                idx = self.log.snapshot_index
            else:
                idx = min(meta.index, max(self.log.last_written, self.log.snapshot_index))
            self._set_role(FOLLOWER)
            self._send(msg.from_id, m.InstallSnapshotResult(self.current_term, self.id, -1, idx,
                                                            self.log.term_at(idx) or 0))
            return
        if meta.machine_version > self.machine.version():
            return  # our code is too old for this snapshot (Ra refuses it too)
        if self.installing is not None:
            return  # the last chunk is being written
        if msg.chunk_no == 1:
            self.receiving = (meta, [msg.data])
        elif self.receiving is not None and self.receiving[0] == meta and len(self.receiving[1]) + 1 == msg.chunk_no:
            self.receiving[1].append(msg.data)
        elif self.receiving is not None and self.receiving[0] == meta and msg.chunk_no <= len(self.receiving[1]):
            pass  # a duplicate: ack again
        else:
            return  # out of order: the leader resends on its tick
        self._set_role(RECEIVE_SNAPSHOT)
        self._emit(fx.SetElectionTimer("long"))  # re-armed by every chunk
        if not msg.last:
            self._send(msg.from_id, m.InstallSnapshotResult(self.current_term, self.id, msg.chunk_no, 0, 0))
            return
        data = b"".join(self.receiving[1])
        self.receiving = None
        state = codec.unpack(data)
        self.installing = (meta, state)
        self._emit(fx.WriteSnapshot(meta, data=data))

    def _finish_install(self) -> None:
        meta, state = self.installing
        self.installing = None
        if meta.index <= self.last_applied:
            # Replicated entries overtook the snapshot while it was being
            # written: installing it now would move last_applied backwards.
            # Keep the log; the durable snapshot is still a valid recovery point.
            if self.role == RECEIVE_SNAPSHOT:
                self._set_role(FOLLOWER)
            if self.leader_id is not None:
                idx = min(meta.index, max(self.log.last_written, self.log.snapshot_index))
                self._send(self.leader_id, m.InstallSnapshotResult(self.current_term, self.id, -1, idx,
                                                                   self.log.term_at(idx) or 0))
            return
        keep = self.log.term_at(meta.index) == meta.term
        self.counters["snapshots_installed"] += 1
        old_meta, old_state = self.snapshot_meta, self.machine_state
        self.log.install_snapshot(meta.index, meta.term)
        self.snapshot_meta = meta
        state = self._unwrap_snapshot_state(state)
        if self.machine.disk:
            state = self.machine.install(self.machine_state, state, meta.index)
        self.machine_state = state
        self.machine_version = meta.machine_version
        self.commit_index = max(self.commit_index, meta.index)
        self.last_applied = meta.index
        self.cluster_history = [(meta.index, cluster_dict(meta.cluster))]
        for e in self.log.entries:
            if isinstance(e.command, ClusterChange):
                self.cluster_history.append((e.index, cluster_dict(e.command.cluster)))
        self.verified_index = max(self.verified_index, meta.index)
        self._emit(fx.TruncateLogBelow(meta.index, keep_above=keep))
        self._drop_checkpoints_below(meta.index)
        self._emit(fx.PersistLastApplied(meta.index))
        effs = self.machine.snapshot_installed(self.machine_version, meta, state, old_meta, old_state)
        if effs:
            self._emit_machine_effects(effs, from_apply=False)
        self._set_role(FOLLOWER)
        self._emit(fx.CancelElectionTimer())
        if self.leader_id is not None:
            self.last_reply_index = max(self.last_reply_index, meta.index)
            self._send(self.leader_id, m.InstallSnapshotResult(self.current_term, self.id, -1,
                                                               meta.index, meta.term))

    def _on_install_snapshot_result(self, msg: m.InstallSnapshotResult) -> None:
        p = self.peers.get(msg.from_id)
        if p is None:
            return
        if p.snapshot is None:
            if msg.last_index > p.match_index and self.log.term_at(msg.last_index) in (msg.last_term, None):
                p.match_index = msg.last_index
                p.next_index = max(p.next_index, p.match_index + 1)
            return
        meta, chunk_no = p.snapshot
        if msg.chunk_no == -1:
            # Installed (or the follower already held it): resume entries.
            p.snapshot = None
            if msg.last_index > p.match_index and self.log.term_at(msg.last_index) in (msg.last_term, None):
                p.match_index = msg.last_index
            p.next_index = p.match_index + 1
            self._maybe_commit()
            self._replicate(msg.from_id, force=True)
        elif msg.chunk_no == chunk_no:
            p.snapshot = (meta, chunk_no + 1)
            self._send_snapshot_chunk(msg.from_id, p)

    # ================================================================ clients
    def _reject(self, cmd: m.Command, leader: ServerId | None) -> None:
        mode = cmd.reply_mode
        if isinstance(mode, (AwaitConsensus, AfterLogAppend)):
            self._emit(fx.Reply(mode.from_, Redirect(leader), leader))
        elif isinstance(mode, NotifyReply):
            # Ra rejects only when a leader is known; the client times out otherwise.
            if leader is not None or self.role == AWAIT_CONDITION:
                self._emit(fx.Rejected(mode.client, self.id, leader, mode.correlation))
        elif leader is not None and leader != self.id:
            self._emit(fx.ForwardCommand(leader, cmd))

    def _on_command(self, cmd: m.Command) -> None:
        if cmd.priority == LOW:
            self.low_queue.append(cmd)
            return
        self._append_commands([cmd])

    def _on_commands(self, msg: m.Commands) -> None:
        normal = []
        for cmd in msg.commands:
            if cmd.priority == LOW:
                self.low_queue.append(cmd)
            else:
                normal.append(cmd)
        if normal:
            self._append_commands(normal)

    def _reject_command(self, cmd: m.Command) -> None:
        self._reject(cmd, self.leader_id if self.leader_id != self.id else None)

    def _reject_commands(self, msg: m.Commands) -> None:
        for cmd in msg.commands:
            self._reject_command(cmd)

    def _not_leader(self, msg) -> None:
        """A cluster operation reached a server that does not lead."""
        self._emit(fx.Reply(msg.from_, Redirect(self.leader_id), self.leader_id))

    def _append_commands(self, cmds: list) -> None:
        if any(c.session is not None for c in cmds):
            cmds = self._resequence(cmds)
            if not cmds:
                return
        entries = self._append_local([_usr(c.data, c.reply_mode, c.ts, c.session) for c in cmds])
        for c, e in zip(cmds, entries):
            if isinstance(c.reply_mode, AfterLogAppend):
                self._emit(fx.Reply(c.reply_mode.from_, _ok((e.index, e.term)), self.id))
        self._replicate_all()

    def _flush_low_priority(self) -> None:
        batch = self.low_queue[:self.config.low_priority_flush_size]
        del self.low_queue[:len(batch)]
        self._append_commands(batch)

    # =============================================================== sessions
    def _resequence(self, cmds: list) -> list:
        """The leader's hold (sessions.Resequencer): session commands leave in
        their session's order; the others pass."""
        out, refused = self.resequencer.offer_all(cmds)
        for cmd in refused:
            self._refuse_session_command(cmd, "SequenceGap", "too many commands held behind a gap")
        return out

    def _session_tails(self) -> dict:
        """Per session, the highest number in this server's log (applied or not)."""
        tails = {sid: s.next_seq - 1 for sid, s in self.sessions.sessions.items()}
        for e in self.log.slice(self.last_applied + 1, self.log.last_index):
            s = getattr(e.command, "session", None)
            if s is not None and s.seq > tails.get(s.session, 0):
                tails[s.session] = s.seq
        return tails

    def _admit_session_command(self, cmd: Usr, replay: bool) -> bool:
        """Apply-time rules of sessions.SessionTable, on every member: True if
        the machine applies ``cmd``; else it was answered here (leader only)."""
        verdict, cached = self.sessions.admit(cmd.session, cmd.ts)
        if verdict == APPLY:
            return True
        if replay or not self._leading():
            return False
        if verdict == DUPLICATE:
            if cached is not NOT_CACHED:
                self._reply_applied(cmd.reply_mode, cached)
        elif verdict == EXPIRED:
            self._refuse_session_command(cmd, "SessionExpired", f"session {cmd.session.session!r} expired")
        else:
            self._refuse_session_command(cmd, "SequenceGap", f"command {cmd.session.seq} of session "
                                         f"{cmd.session.session!r} came before the ones it follows")
        return False

    def _refuse_session_command(self, cmd, kind: str, detail: str) -> None:
        mode = cmd.reply_mode
        if isinstance(mode, (AwaitConsensus, AfterLogAppend)):
            self._emit(fx.Reply(mode.from_, Error(kind, detail), self.id))
        elif isinstance(mode, NotifyReply):
            self._emit(fx.Rejected(mode.client, self.id, self.id, mode.correlation, kind))

    def _unwrap_snapshot_state(self, state: Any) -> Any:
        """A snapshot's machine state; its session table, if it has one,
        becomes ours."""
        if isinstance(state, SnapshotState):
            self.sessions.restore(state.sessions, state.log_clock)
            return state.machine
        self.sessions.restore((), self.sessions.log_clock)
        return state

    # ================================================================ queries
    def _run_query(self, fun, caller, with_index: bool) -> None:
        if isinstance(fun, _AuxRead):           # a consistent aux call, now confirmed
            self._run_aux("call", fun.command, caller)
            return
        # The query sees a read-only view: it runs outside Raft, so a change
        # it made would fork this replica from the others.
        try:
            result = readonly.unwrap(fun(self.machine.query_state(self.machine_state)))
        except Exception as exc:  # a query bug must not kill the server
            self._emit(fx.Reply(caller, Error("QueryFailed", f"the query raised {exc!r}"), self.leader_id))
            return
        value = ((self.last_applied, self.current_term), result) if with_index else result
        self._emit(fx.Reply(caller, _ok(value), self.leader_id))

    def _on_query(self, q: m.Query) -> None:
        if q.with_context:
            user_fun = q.fun
            q = dataclasses.replace(q, fun=lambda state: user_fun(state, self._query_context()), with_context=False)
        if q.kind == "leader" and self.role != LEADER:
            # (Ra checks a leader query's condition on the leader)
            self._emit(fx.Reply(q.from_, Redirect(self.leader_id), self.leader_id))
            return
        if q.condition is not None and q.kind in ("local", "leader") and not self._condition_met(q.condition):
            if len(self.conditional_queries) >= MAX_CONDITIONAL_QUERIES:
                self._emit(fx.Reply(q.from_, Error("InvalidQuery", "too many queries wait for a condition"),
                                    self.leader_id))
            else:
                self.conditional_queries.append(q)
            return
        if q.kind == "local":
            self._run_query(q.fun, q.from_, with_index=True)
        elif q.kind == "leader":
            if self.role == LEADER:
                self._run_query(q.fun, q.from_, with_index=True)
            else:
                self._emit(fx.Reply(q.from_, Redirect(self.leader_id), self.leader_id))
        elif q.kind == "consistent":
            if self.role != LEADER:
                self._emit(fx.Reply(q.from_, Redirect(self.leader_id if self.leader_id != self.id else None),
                                    self.leader_id))
                return
            self._answer_consistent_query(q.fun, q.from_)
        else:
            self._emit(fx.Reply(q.from_, Error("InvalidQuery", f"unknown query kind {q.kind!r}"), self.leader_id))

    def _query_context(self) -> QueryContext:
        return QueryContext(self.last_applied, self.current_term, self.machine_version, self.leader_id)

    def _condition_met(self, condition: tuple) -> bool:
        """Ra's ``{applied, {Index, Term}}``: applied here, and the entry there
        has that term (below the snapshot it was committed: taken as met)."""
        index, term = condition
        if index > self.last_applied:
            return False
        if index < self.log.snapshot_index:
            return True
        return self.log.term_at(index) == term

    def _on_query_expired(self, msg: m.QueryExpired) -> None:
        for i, q in enumerate(self.conditional_queries):
            if q.from_ == msg.from_:
                del self.conditional_queries[i]
                index, term = q.condition
                self._emit(fx.Reply(q.from_, Error("Timeout", f"{self.id} had not applied index {index} of "
                                                   f"term {term} when the query's wait ran out (it has "
                                                   f"applied {self.last_applied})"), self.leader_id))
                return

    def _serve_conditional_queries(self) -> None:
        if not self.conditional_queries:
            return
        waiting, self.conditional_queries = self.conditional_queries, []
        for q in waiting:
            if self._condition_met(q.condition):
                self._on_query(dataclasses.replace(q, condition=None))
            else:
                self.conditional_queries.append(q)

    def _on_members_info(self, msg: m.MembersInfo) -> None:
        self._emit(fx.Reply(msg.from_, _ok((self.members_info(), self.id)), self.id))

    def members_info(self) -> dict:
        """Ra's ``members_info``: every member with its membership and, seen
        from the leader, its replication state and the newest machine
        version its code runs (None: not known; known only while the leader
        waits for an "all" upgrade).  Elsewhere: the membership only."""
        info = {}
        leading = self._leading()
        for sid, membership in self.cluster.items():
            if not leading:
                info[sid] = {"membership": membership}
            elif sid == self.id:
                info[sid] = {"membership": membership, "status": "leader", "next_index": self.log.last_index + 1,
                             "match_index": self.log.last_written, "query_index": self.query_index,
                             "machine_version": self.machine.version()}
            else:
                p = self.peers.get(sid)
                info[sid] = {"membership": membership,
                             "status": "snapshot" if p is not None and p.snapshot is not None else "normal",
                             "next_index": p.next_index if p else None,
                             "match_index": p.match_index if p else None,
                             "query_index": p.query_index if p else None,
                             "machine_version": p.machine_version if p else None}
        return info

    def _on_initial_members(self, msg: m.InitialMembers) -> None:
        """Ra's ``initial_members``: the leader's configured members (for a
        server started to join a running cluster: the peers it was given)."""
        members = tuple(ServerId(*s) for s in self.config.initial_members)
        self._emit(fx.Reply(msg.from_, _ok(members), self.id))

    def _on_force_shrink(self, msg: m.ForceShrink) -> None:
        """Disaster recovery (Ra's force_member_change): this server becomes
        the only voter of the configuration in its log and stands for
        election at once; the other members' data no longer counts.  Not
        while it takes in a snapshot or the cluster is being deleted (as Ra:
        only a leader, candidate or follower does it)."""
        if self.role in (RECEIVE_SNAPSHOT, TERMINATING_FOLLOWER, TERMINATING_LEADER):
            self._emit(fx.Reply(msg.from_, Error("ClusterChangeNotPermitted",
                                                 f"{self.id} is {self.role}: force shrink it once that ends"),
                                self.leader_id))
            return
        if self.role in LEADING_ROLES:
            self._become_follower(None)
        self._append_local([ClusterChange(cluster_tuple({self.id: VOTER}), None)])
        self._emit(fx.Reply(msg.from_, _ok(None), self.id))
        self._start_election()

    # ==================================================================== aux
    def _on_aux_command(self, msg: m.AuxCommand) -> None:
        self._run_aux(msg.kind, msg.command, msg.from_)

    def _on_consistent_aux(self, msg: m.ConsistentAux) -> None:
        if self.role != LEADER:
            self._emit(fx.Reply(msg.from_, Redirect(self.leader_id if self.leader_id != self.id else None),
                                self.leader_id))
            return
        self._answer_consistent_query(_AuxRead(msg.command), msg.from_)

    def _run_aux(self, kind: str, command: Any, caller: Any) -> None:
        """Ra's handle_aux on this member: a call is answered (``NO_REPLY``
        answers None: there is no later reply effect here); the effects run
        under the rules of applied ones, in this member's role."""
        if kind not in ("call", "cast"):
            self._emit(fx.Reply(caller, Error("InvalidCommand", f"an aux command is a call or a cast, "
                                              f"not {kind!r:.40}"), self.leader_id))
            return
        version = self.machine_version
        if not self.machine.has_aux(version):
            if kind == "call":
                self._emit(fx.Reply(caller, Error("AuxNotImplemented", "the machine has no handle_aux"),
                                    self.leader_id))
            return
        try:
            aux_state, reply, effects = self.machine.handle_aux(version, str(self.role), kind, command,
                                                                self.aux_state, AuxView(self))
        except Exception as exc:  # the machine's bug must not kill the server
            reason = f"handle_aux raised {exc!r:.300}"
            self._emit(fx.AuxFailure(kind, command, reason))
            if kind == "call":
                self._emit(fx.Reply(caller, Error("AuxFailed", reason), self.leader_id))
            return
        self.aux_state = aux_state
        if kind == "call":
            # (views of the machine state in the reply become plain values)
            self._emit(fx.Reply(caller, _ok(None if reply == NO_REPLY else readonly.unwrap(reply)),
                                self.leader_id))
        if effects:
            self._handle_apply_effects([e for e in map(self._aux_snapshot_state, effects) if e is not None],
                                       self.last_applied)

    def _aux_snapshot_state(self, e: Any) -> Any:
        """A snapshot or checkpoint asked for by ``handle_aux`` is of this
        member's state at its last applied index -- the only state (and
        session table) the core can vouch for outside ``apply`` -- and is
        skipped at any other index; the machine's copy (a read-only view) is
        not what gets written."""
        if isinstance(e, (fx.ReleaseCursor, fx.Checkpoint)) and e.state is not fx.NO_STATE:
            return dataclasses.replace(e, state=self.machine_state) if e.index == self.last_applied else None
        return e

    def _answer_consistent_query(self, fun, caller) -> None:
        """§8 (ReadIndex): a leader answers a consistent query only after its
        term's noop committed and a heartbeat round confirmed its leadership."""
        if self.log.term_at(self.commit_index) != self.current_term:
            self.waiting_queries.append((fun, caller))
            return
        self._start_read(fun, caller)

    def _start_read(self, fun, caller) -> None:
        """ReadIndex: remember the commit index, confirm leadership with one
        heartbeat round to a quorum, answer once applied that far."""
        self.query_index += 1
        self.pending_queries.append((self.query_index, self.commit_index, fun, caller))
        for sid in self.voters():
            if sid != self.id:
                self._send(sid, m.HeartbeatRpc(self.current_term, self.id, self.query_index))
        self._serve_pending_queries()

    def _serve_waiting_queries(self) -> None:
        if self.waiting_queries and self.role == LEADER and self.log.term_at(self.commit_index) == self.current_term:
            waiting, self.waiting_queries = self.waiting_queries, []
            for fun, caller in waiting:
                self._start_read(fun, caller)

    def _confirmed_query_index(self) -> int:
        idx = []
        for sid in self.voters():
            if sid == self.id:
                idx.append(self.query_index)
            else:
                p = self.peers.get(sid)
                idx.append(p.query_index if p else 0)
        idx.sort(reverse=True)
        return idx[self._quorum() - 1] if idx else 0

    def _serve_pending_queries(self) -> None:
        if not self.pending_queries or self.role != LEADER:
            return
        confirmed = self._confirmed_query_index()
        keep = []
        for qi, read_index, fun, caller in self.pending_queries:
            if qi <= confirmed and read_index <= self.last_applied:
                self._run_query(fun, caller, with_index=False)
            else:
                keep.append((qi, read_index, fun, caller))
        self.pending_queries = keep

    def _on_heartbeat_reply(self, msg: m.HeartbeatReply) -> None:
        p = self.peers.get(msg.from_id)
        if p is not None and msg.query_index > p.query_index:
            p.query_index = msg.query_index
            self._serve_pending_queries()

    def _on_members(self, msg: m.Members) -> None:
        members = sorted(self.cluster, key=lambda s: (s.node, s.name))
        self._emit(fx.Reply(msg.from_, _ok((tuple(members), self.leader_id)), self.leader_id))

    # ============================================================ membership
    def _cluster_change_permitted(self) -> bool:
        return (self.role == LEADER
                and self.log.term_at(self.commit_index) == self.current_term
                and self.cluster_history[-1][0] <= self.commit_index)

    def _change_cluster(self, new: dict, caller) -> None:
        self._append_local([ClusterChange(cluster_tuple(new), caller)])
        entry = self.log.get(self.log.last_index)
        self._emit(fx.Reply(caller, _ok((entry.index, entry.term)), self.id))
        self._replicate_all()

    def _on_add_member(self, msg: m.AddMember) -> None:
        sid = ServerId(*msg.server_id)
        if sid in self.cluster:
            self._emit(fx.Reply(msg.from_, Error("AlreadyMember", f"{sid} is already a member"), self.id))
            return
        if msg.membership not in (VOTER, NON_VOTER, PROMOTABLE):
            self._emit(fx.Reply(msg.from_, Error("InvalidMembership", f"membership is one of {VOTER}, "
                                                 f"{NON_VOTER}, {PROMOTABLE}, not {msg.membership!r}"), self.id))
            return
        if not self._cluster_change_permitted():
            self._emit(fx.Reply(msg.from_, _CHANGE_NOT_PERMITTED, self.id))
            return
        new = dict(self.cluster)
        new[sid] = msg.membership
        self._change_cluster(new, msg.from_)

    def _on_remove_member(self, msg: m.RemoveMember) -> None:
        sid = ServerId(*msg.server_id)
        if sid not in self.cluster:
            self._emit(fx.Reply(msg.from_, Error("NotMember", f"{sid} is not a member"), self.id))
            return
        if not self._cluster_change_permitted():
            self._emit(fx.Reply(msg.from_, _CHANGE_NOT_PERMITTED, self.id))
            return
        new = dict(self.cluster)
        del new[sid]
        if not any(mem == VOTER for mem in new.values()):
            self._emit(fx.Reply(msg.from_, Error("LastVoter", f"{sid} is the last voter"), self.id))
            return
        self._change_cluster(new, msg.from_)

    def _maybe_promote(self, sid: ServerId, p: Peer) -> None:
        if (self.cluster.get(sid) == PROMOTABLE and p.match_index >= self.commit_index
                and self._cluster_change_permitted()):
            new = dict(self.cluster)
            new[sid] = VOTER
            self._append_local([ClusterChange(cluster_tuple(new), None)])
            self._replicate_all()

    def _on_transfer_leadership(self, msg: m.TransferLeadership) -> None:
        target = ServerId(*msg.target)
        if target == self.id:
            self._emit(fx.Reply(msg.from_, _ok("already_leader"), self.id))
        elif target not in self.cluster:
            self._emit(fx.Reply(msg.from_, Error("NotMember", f"{target} is not a member"), self.id))
        elif self.cluster[target] != VOTER:
            self._emit(fx.Reply(msg.from_, Error("NonVoter", f"{target} is not a voter"), self.id))
        elif not self._transfer_target_up_to_date(target):
            # Ra: only a target whose next index is the leader's (everything
            # sent to it, no snapshot transfer under way) may take over.
            p = self.peers.get(target)
            self._emit(fx.Reply(msg.from_, Error(
                "NotUpToDate", f"{target} is not up to date: its next index is "
                f"{p.next_index if p else 'unknown'}, the leader's {self.log.last_index + 1}"), self.id))
        else:
            # Stop taking commands, bring the target up to date, then tell it
            # to stand (await_condition, as Ra).
            self.transfer_target = target
            self._set_role(AWAIT_CONDITION)
            self._emit(fx.SetAwaitConditionTimer(AWAIT_CONDITION_TIMEOUT_MS))
            self._emit(fx.Reply(msg.from_, _ok("ok"), self.id))
            self._replicate(target, force=True)
            self._maybe_transfer()

    def _transfer_target_up_to_date(self, target: ServerId) -> bool:
        p = self.peers.get(target)
        return p is not None and p.snapshot is None and p.next_index == self.log.last_index + 1

    def _maybe_transfer(self) -> None:
        if self.role != AWAIT_CONDITION or self.transfer_target is None:
            return
        p = self.peers.get(self.transfer_target)
        if p is not None and p.match_index >= self.log.last_index:
            self._send(self.transfer_target, m.TimeoutNowRpc(self.current_term, self.id))
            self.transfer_target = None

    def _on_await_condition_timeout(self, _msg) -> None:
        # The transfer did not happen in time: lead again (same term, so
        # no other leader can exist).
        self.transfer_target = None
        self._set_role(LEADER)
        self._replicate_all(force=True)

    def _on_delete_cluster(self, msg: m.DeleteClusterCmd) -> None:
        self._append_local([DeleteCluster(msg.from_)])
        self._replicate_all()

    def _on_machine_event(self, msg: m.MachineEvent) -> None:
        # Only a leader taking commands appends it (not one handing over or
        # deleting: their tables drop it); the machine re-establishes monitors
        # and timers in state_enter on the next leader, which then hears of a
        # Down at once.
        # A Down waits behind earlier low-priority commands (Ra appends it
        # with low priority); node events and timers are normal.
        priority = LOW if isinstance(msg.event, fx.Down) else "normal"
        self._on_command(m.Command(msg.event, NoReply(), priority, msg.ts))

    def _on_step_down(self, _msg) -> None:
        self._become_follower(None)

    # =================================================================== tick
    def wants_tick(self) -> bool:
        """Whether a ``Tick`` now would do anything: the shell ticks only
        then, so an idle leader costs no timer at all (Ra ticks every leader;
        here an idle cluster with thousands of siblings on a node would pay
        for it).  True while leading and: the machine has a ``tick``, the
        role is transitional (leadership transfer, deletion), a query waits
        for its heartbeat round, a follower is behind (entries not
        acknowledged, commit index not sent, a snapshot in flight), or an
        "all" upgrade waits for members to run the new version (they are
        asked again at every tick).  In every role (as Ra: every member
        casts ``AuxTick`` to its aux handler at each tick) while the machine
        has a ``handle_aux``."""
        if self.role == STOPPED:
            return False
        if self.machine.has_aux(self.machine_version):
            return True
        if not self._leading():
            return False
        if self.role != LEADER or self.pending_queries or self.resequencer.holding():
            return True
        if self.machine.has_tick(self.machine_version) or self._upgrade_waits_for_peers():
            return True
        last, commit = self.log.last_index, self.commit_index
        for p in self.peers.values():
            if p.snapshot is not None or p.match_index < last or p.commit_index_sent < commit:
                return True
        return False

    def _on_following_tick(self, _msg: m.Tick) -> None:
        if self.machine.has_aux(self.machine_version):
            self._run_aux("cast", fx.AuxTick(), None)    # Ra's aux tick, every member

    def _on_tick(self, msg: m.Tick) -> None:
        if self.role == LEADER:
            effs = self.machine.tick(self.machine_version, msg.now_ms, self.machine_state)
            if effs:
                self._emit_machine_effects(effs, from_apply=False)
            if self.machine.has_aux(self.machine_version):
                self._run_aux("cast", fx.AuxTick(), None)    # Ra's aux tick
            self._ask_machine_versions()
        for sid in sorted(self.peers):
            p = self.peers[sid]
            if p.snapshot is not None:
                if p.snapshot_mark == p.snapshot:
                    # No chunk acknowledged for a whole tick: resend it.  A
                    # second such tick restarts the transfer from chunk 1:
                    # the follower may have dropped the chunks it held (it
                    # ignores a chunk it cannot place).
                    p.snapshot_stalls += 1
                    if p.snapshot_stalls >= 2:
                        p.start_snapshot(p.snapshot[0])
                    self._send_snapshot_chunk(sid, p)
                else:
                    p.snapshot_stalls = 0
                p.snapshot_mark = p.snapshot
                continue
            lagging = p.match_index < self.log.last_index or p.commit_index_sent < self.commit_index
            if lagging and p.progress_mark == p.match_index:
                # Nothing acknowledged for a whole tick: assume loss, resend.
                p.next_index = p.match_index + 1
                self._replicate(sid, force=True)
            p.progress_mark = p.match_index if lagging else -1
            self._maybe_promote(sid, p)
        for cmd in self.resequencer.expired(msg.now_ms):
            self._refuse_session_command(cmd, "SequenceGap", "the commands before it in its session did not arrive")
        if self.pending_queries:
            for sid in self.voters():
                if sid != self.id:
                    self._send(sid, m.HeartbeatRpc(self.current_term, self.id, self.query_index))
        if self.role == TERMINATING_LEADER:
            # Members that are down would keep us waiting for ever (Ra bounds it too).
            self.deleting_ticks += 1
        self._maybe_finish_delete()

    # ============================================================== metrics
    def key_metrics(self) -> dict:
        return {
            "last_applied": self.last_applied,
            "commit_index": self.commit_index,
            "snapshot_index": self.log.snapshot_index,
            "checkpoint_index": self.checkpoints[-1].index if self.checkpoints else 0,
            "last_written_index": self.log.last_written,
            "last_index": self.log.last_index,
            "term": self.current_term,
            "state": self.role,
            "membership": self.cluster.get(self.id, "unknown"),
        }

    def overview(self) -> dict:
        ov = dict(self.key_metrics())
        ov.update({
            "id": self.id,
            "leader_id": self.leader_id,
            "voted_for": self.voted_for,
            "cluster": {s: mem for s, mem in self.cluster.items()},
            "machine_version": self.machine_version,
            "checkpoints": [c.index for c in self.checkpoints],
            "recovered_from": self.recovered_from,
            "machine": self.machine.overview(self.machine_version, self.machine_state),
            "sessions": self.sessions.overview(),
        })
        if self._leading():
            ov["peers"] = {s: {"next_index": p.next_index, "match_index": p.match_index,
                               "status": "snapshot" if p.snapshot else "normal"}
                           for s, p in self.peers.items()}
        return ov


# ================================================================ the step table
# What each role does with each message (after _step_term).  A message type
# missing from a role's table is ignored in that role.
S = RaftServer

# Every role: durability reports, pre-vote and vote requests (judged by
# their own rules), reads of the server's state.
_EVERY_ROLE = {
    m.ResendWrite: S._on_resend_write,
    m.MetaWritten: S._on_meta_written,
    m.SnapshotWritten: S._on_snapshot_written,
    m.CheckpointWritten: S._on_checkpoint_written,
    m.PreVoteRpc: S._on_pre_vote_rpc,
    m.RequestVoteRpc: S._on_request_vote_rpc,
    m.Query: S._on_query,
    m.QueryExpired: S._on_query_expired,
    m.Members: S._on_members,
    m.ForceShrink: S._on_force_shrink,
    m.AuxCommand: S._on_aux_command,
    m.ConsistentAux: S._on_consistent_aux,
    m.InfoRpc: S._on_info_rpc,
}
# Roles that do not lead: entries, heartbeats and snapshots come in;
# commands and cluster operations are turned away.
_FOLLOWING = {
    **_EVERY_ROLE,
    m.AppendEntriesRpc: S._on_append_entries_rpc,
    m.HeartbeatRpc: S._on_heartbeat_rpc,
    m.InstallSnapshotRpc: S._on_install_snapshot_rpc,
    m.Written: S._on_written,
    m.Tick: S._on_following_tick,
    m.Command: S._reject_command,
    m.Commands: S._reject_commands,
    m.AddMember: S._not_leader,
    m.RemoveMember: S._not_leader,
    m.TransferLeadership: S._not_leader,
    m.DeleteClusterCmd: S._not_leader,
    m.MembersInfo: S._not_leader,
    m.InitialMembers: S._not_leader,
}
# Roles that hold leadership of their term: followers' answers come in, the
# tick drives resends.  (Two leaders of one term cannot exist, so entries,
# heartbeats and snapshots from another server are ignored.)
_LEADING = {
    **_EVERY_ROLE,
    m.AppendEntriesReply: S._on_append_entries_reply,
    m.InstallSnapshotResult: S._on_install_snapshot_result,
    m.InfoReply: S._on_info_reply,
    m.Written: S._on_leader_written,
    m.Tick: S._on_tick,
    m.NodeEvent: S._on_leader_node_event,
    m.StepDownIfLeader: S._on_step_down,
    m.Command: S._reject_command,
    m.Commands: S._reject_commands,
    m.AddMember: S._not_leader,
    m.RemoveMember: S._not_leader,
    m.TransferLeadership: S._not_leader,
    m.DeleteClusterCmd: S._not_leader,
    m.MembersInfo: S._not_leader,
    m.InitialMembers: S._not_leader,
}

STEP: dict[str, dict] = {
    FOLLOWER: {
        **_FOLLOWING,
        m.Written: S._on_follower_written,
        m.TimeoutNowRpc: S._on_timeout_now,
        m.ElectionTimeout: S._on_follower_election_timeout,
        m.TriggerElection: S._on_trigger_election,
        m.ServerDown: S._on_server_down,
        m.NodeEvent: S._on_follower_node_event,
    },
    PRE_VOTE: {
        **_FOLLOWING,
        m.PreVoteResult: S._on_pre_vote_result,
        m.ElectionTimeout: S._on_campaign_timeout,
        m.TriggerElection: S._on_trigger_election,
    },
    CANDIDATE: {
        **_FOLLOWING,
        m.RequestVoteResult: S._on_request_vote_result,
        m.ElectionTimeout: S._on_campaign_timeout,
        m.TriggerElection: S._on_trigger_election,
    },
    RECEIVE_SNAPSHOT: {
        **_FOLLOWING,
        m.ElectionTimeout: S._on_receive_snapshot_timeout,
        m.ServerDown: S._on_server_down,
        m.NodeEvent: S._on_follower_node_event,
    },
    TERMINATING_FOLLOWER: {
        **_FOLLOWING,
        m.Written: S._on_terminating_follower_written,
    },
    LEADER: {
        **_LEADING,
        m.HeartbeatReply: S._on_heartbeat_reply,
        m.Command: S._on_command,
        m.Commands: S._on_commands,
        m.AddMember: S._on_add_member,
        m.RemoveMember: S._on_remove_member,
        m.TransferLeadership: S._on_transfer_leadership,
        m.DeleteClusterCmd: S._on_delete_cluster,
        m.MachineEvent: S._on_machine_event,
        m.MembersInfo: S._on_members_info,
        m.InitialMembers: S._on_initial_members,
    },
    AWAIT_CONDITION: {
        **_LEADING,
        m.AwaitConditionTimeout: S._on_await_condition_timeout,
    },
    TERMINATING_LEADER: {
        **_LEADING,
    },
    STOPPED: {},
}

# The answer to a request of an older term: it tells the sender our term.
STALE_ANSWERS = {
    m.AppendEntriesRpc: S._stale_append_entries,
    m.RequestVoteRpc: S._stale_request_vote,
    m.HeartbeatRpc: S._stale_heartbeat,
    m.InstallSnapshotRpc: S._stale_install_snapshot,
}

KNOWN_MESSAGES = frozenset(t for table in STEP.values() for t in table) | m.RPC_REQUESTS | m.RPC_RESULTS \
    | frozenset({m.ElectionTimeout, m.TriggerElection, m.AwaitConditionTimeout, m.ServerDown, m.NodeEvent,
                 m.StepDownIfLeader, m.MachineEvent, m.Tick, m.Written})
del S
