"""Raft safety invariants, checked online by the simulator after every event.

Rules:

* Every check is incremental and cheap: the simulator calls a hook when
  something relevant happens (a server became leader, its commit index
  advanced, it applied a command, it wrote entries, it sent an ack or a
  vote) and the hook compares against compact global records.
* A broken invariant appends a human-readable line to :attr:`violations`
  (prefixed with the virtual time); the simulator stops at the first one.
* The invariants (Raft paper numbering):

  - **election safety** (§5.2): at most one leader per (cluster, term);
  - **log matching** (§5.3): two entries with the same index and term carry
    the same command, anywhere, ever; and a server's entries up to its
    commit index equal the committed ones;
  - **no rewriting of committed entries**: a server never writes a log index
    at or below its own commit index;
  - **leader completeness** (§5.4): when a server becomes leader its log
    holds every entry committed so far (above its snapshot);
  - **state machine safety** (§5.4.3): every member applies the same
    command at each index, and each member applies indexes in increasing
    order;
  - **durable before acknowledged / voted** (``ARCHITECTURE.md`` §5): a
    successful ``AppendEntriesReply`` or snapshot ack names only entries the
    node's disk would recover; a granted vote is durable (term and
    ``voted_for``) before it is sent;
  - **commit is durable on a majority**: when a leader's commit index
    advances, a majority of its voters can recover that entry from disk;
  - **monotonic progress**: commit and applied indexes of a live server
    never go backwards (a restart starts a new incarnation).

* An "index is committed" as soon as any server's commit index reaches it;
  its term is read from that server's log at that moment.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from ..core.log import RaftLog
from ..core.types import ServerId


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class Invariants:
    """Global records and the checks over them (see the module rules)."""

    def __init__(self, clock: Callable[[], int] = lambda: 0) -> None:
        self.clock = clock
        self.violations: list[str] = []
        self.leaders: dict[tuple[str, int], ServerId] = {}
        self.committed: dict[str, dict[int, int]] = {}      # cluster -> index -> term
        self.max_committed: dict[str, int] = {}
        self.applied: dict[str, dict[int, tuple[int, Any]]] = {}  # cluster -> index -> (term, command)
        self.entries: dict[str, dict[tuple[int, int], Any]] = {}  # cluster -> (index, term) -> command
        # (cluster, session, number) -> the index it was applied at
        self.session_applies: dict[tuple[str, str, int], int] = {}
        self.checks = 0

    # ---------------------------------------------------------------- utils
    def fail(self, message: str) -> None:
        self.violations.append(f"t={self.clock()}ms {message}")

    @property
    def ok(self) -> bool:
        return not self.violations

    # --------------------------------------------------------- elections
    def on_leader(self, cluster: str, sid: ServerId, term: int, log: RaftLog) -> None:
        """``sid`` just became (or resumed as) leader of ``term``."""
        self.checks += 1
        key = (cluster, term)
        other = self.leaders.get(key)
        if other is None:
            self.leaders[key] = sid
        elif other != sid:
            self.fail(f"election safety: {cluster} has two leaders in term {term}: {other} and {sid}")
            return
        # Leader completeness: every committed entry above our snapshot.
        committed = self.committed.get(cluster, {})
        snap = log.snapshot_index
        for index in range(snap + 1, self.max_committed.get(cluster, 0) + 1):
            want = committed.get(index)
            if want is None:
                continue
            have = log.term_at(index)
            if have != want:
                self.fail(f"leader completeness: {sid} became leader of {cluster} in term {term} "
                          f"without committed entry {index} (term {want}); its log has "
                          f"{'nothing' if have is None else f'term {have}'} there "
                          f"(last index {log.last_index})")
                return

    # ------------------------------------------------------------ commits
    def on_commit(self, cluster: str, sid: ServerId, log: RaftLog, checked: int, commit_index: int) -> int:
        """Record/compare committed entries ``checked+1 .. commit_index`` of
        ``sid``'s log; returns the new watermark (entries it does not hold yet
        are checked on a later call)."""
        self.checks += 1
        committed = self.committed.setdefault(cluster, {})
        top = min(commit_index, log.last_index)
        start = max(checked, log.snapshot_index) + 1
        for index in range(start, top + 1):
            term = log.term_at(index)
            if term is None:
                continue
            known = committed.get(index)
            if known is None:
                committed[index] = term
            elif known != term:
                self.fail(f"log matching: {sid} has term {term} at committed index {index} of "
                          f"{cluster}, but term {known} was committed there")
                return top
        if top > self.max_committed.get(cluster, 0):
            self.max_committed[cluster] = top
        return max(checked, top)

    def on_leader_commit(self, cluster: str, sid: ServerId, index: int, term: int | None,
                         voters: Iterable[ServerId], covered: Callable[[ServerId], bool]) -> None:
        """The leader ``sid`` advanced its commit index to ``index``: a majority
        of its voters must be able to recover (index, term) from disk."""
        self.checks += 1
        if term is None:
            return
        voters = sorted(voters)
        holders = [v for v in voters if covered(v)]
        if len(holders) < len(voters) // 2 + 1:
            self.fail(f"commit not durable: leader {sid} committed {cluster} index {index} "
                      f"(term {term}) but only {[str(h) for h in holders]} of voters "
                      f"{[str(v) for v in voters]} hold it on disk")

    # ---------------------------------------------------------- the log
    def on_log_append(self, cluster: str, sid: ServerId, entries: tuple, commit_before: int) -> None:
        """``sid`` emitted ``LogAppend(entries)`` while its commit index was
        ``commit_before``."""
        self.checks += 1
        if not entries:
            return
        first = entries[0].index
        if first <= commit_before:
            self.fail(f"log rewrite: {sid} rewrote {cluster} index {first} (and after) although "
                      f"its commit index was {commit_before}")
            return
        # (A stale entry at an index committed elsewhere is fine: a deposed
        # leader that has not heard of its successor still appends.  It
        # cannot commit, and leader completeness catches the harm.)
        seen = self.entries.setdefault(cluster, {})
        for e in entries:
            key = (e.index, e.term)
            cmd = seen.get(key)
            if cmd is None:
                seen[key] = e.command
            elif cmd is not e.command and cmd != e.command:
                self.fail(f"log matching: two entries at {cluster} index {e.index} term {e.term}: "
                          f"{_short(cmd)} and {_short(e.command)} (written by {sid})")
                return

    # ------------------------------------------------------------ applying
    def on_apply(self, cluster: str, sid: ServerId, index: int, term: int, command: Any,
                 last_applied: int | None) -> None:
        """``sid`` applied ``command`` at ``index``; ``last_applied`` is the
        previous index this incarnation applied (None: first since start)."""
        self.checks += 1
        if last_applied is not None and index <= last_applied:
            self.fail(f"state machine safety: {sid} applied {cluster} index {index} after "
                      f"index {last_applied}")
            return
        applied = self.applied.setdefault(cluster, {})
        known = applied.get(index)
        if known is None:
            applied[index] = (term, command)
        elif known[0] != term or known[1] != command:
            self.fail(f"state machine safety: {sid} applied {_short(command)} (term {term}) at "
                      f"{cluster} index {index}, but {_short(known[1])} (term {known[0]}) was "
                      f"applied there before")

    def on_session_apply(self, cluster: str, sid: ServerId, index: int, session: Any,
                         member_last: dict) -> None:
        """``sid`` applied command ``session`` (a ``SessionSeq``) at
        ``index``.  Exactly once: no (session, number) is applied at two
        indexes anywhere in the cluster.  In order: on one member (one
        incarnation, ``member_last`` its per-session record), a session's
        numbers only grow."""
        self.checks += 1
        key = (cluster, session.session, session.seq)
        first = self.session_applies.setdefault(key, index)
        if first != index:
            self.fail(f"exactly once: {cluster} command {session.seq} of session {session.session!r} "
                      f"applied at index {index} by {sid}, and at index {first} before")
            return
        last = member_last.get(session.session)
        if last is not None and session.seq <= last:
            self.fail(f"session order: {sid} applied command {session.seq} of session "
                      f"{session.session!r} after command {last}")
        member_last[session.session] = session.seq

    # ----------------------------------------------------- durability acks
    def on_append_ack(self, sid: ServerId, leader: ServerId, last_index: int, last_term: int,
                      covered: bool, what: str = "AppendEntriesReply") -> None:
        self.checks += 1
        if not covered:
            self.fail(f"ack before durable: {sid} sent {what}(success, last_index={last_index}, "
                      f"last_term={last_term}) to {leader} but its disk cannot recover that entry")

    def on_vote_granted(self, sid: ServerId, candidate: ServerId, term: int,
                        durable: tuple[int, ServerId | None]) -> None:
        self.checks += 1
        if durable != (term, candidate):
            self.fail(f"vote before durable: {sid} granted its term-{term} vote to {candidate} "
                      f"but its durable meta is term {durable[0]}, voted_for {durable[1]}")

    # ------------------------------------------------------- monotonicity
    def on_progress(self, sid: ServerId, what: str, before: int, after: int) -> None:
        if after < before:
            self.fail(f"{what} went backwards on live server {sid}: {before} -> {after}")
