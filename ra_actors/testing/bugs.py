"""Deliberate bugs: cores that each break one Raft rule, to prove that the
simulator, the transcript tests and the Jepsen harness catch the violation.

Rules:

* Each core bug is a subclass of :class:`~ra_actors.core.server.RaftServer`
  that overrides exactly one of the core's rule methods (``_self_match``,
  ``_vote_is_durable``, ``_first_new_entry``, ``_answer_consistent_query``,
  ``_admit_session_command``, ``_durable_prefix_grew``); a WAL bug
  (:data:`WAL_BUGS`, the simulator only) is a subclass of
  :class:`~ra_actors.log.wal_sequence.WalSequencer` that overrides
  ``admit``.  Production code has no switch for them.
* :func:`core_class` combines the named core bugs into one class
  (``RaftServer`` itself for none), :func:`wal_sequencer_class` picks the
  WAL's; a name that is neither is a ``ValueError``.
* Used by tests, ``scripts/sim.py --bugs``, ``scripts/soak.py --bugs`` and the
  Jepsen harness (``--unsafe``, installed in node processes by its shim).
"""
from __future__ import annotations

from ..core.server import RaftServer
from ..core.types import ServerId
from ..log.wal_sequence import Decision, WalSequencer


class CommitUndurable(RaftServer):
    """The leader counts entries it has not yet made durable itself."""

    def _self_match(self) -> int:
        return self.log.last_index


class VoteBeforeDurable(RaftServer):
    """Votes (granted and a candidate's own) count before MetaWritten."""

    def _vote_is_durable(self, candidate: ServerId) -> bool:
        return True


class TruncateMatching(RaftServer):
    """A follower rewrites matching entries: an old AppendEntriesRpc that
    arrives late truncates newer ones."""

    def _first_new_entry(self, entries: tuple) -> int | None:
        return 0 if entries else None


class StaleReads(RaftServer):
    """Consistent queries are answered from local state, without the
    ReadIndex round: a deposed leader serves stale reads."""

    def _answer_consistent_query(self, fun, caller) -> None:
        self._run_query(fun, caller, with_index=False)


class IgnoreSessions(RaftServer):
    """Every session command is applied, repeats included."""

    def _admit_session_command(self, cmd, replay: bool) -> bool:
        self.sessions.admit(cmd.session, cmd.ts)
        return True


class WrittenAboveHole(RaftServer):
    """A WAL report above a hole (a write lost on its way to the WAL) counts:
    the server acknowledges entries its recovery cannot return."""

    def _durable_prefix_grew(self, msg) -> bool:
        log = self.log
        before = log.last_written
        log.last_written = max(before, min(msg.from_index - 1, log.last_index))
        if log.written(msg.term, msg.from_index, msg.to_index):
            return True
        log.last_written = before
        return False


KNOWN_BUGS: dict[str, type[RaftServer]] = {
    "ignore_sessions": IgnoreSessions,
    "commit_undurable": CommitUndurable,
    "vote_before_durable": VoteBeforeDurable,
    "truncate_matching": TruncateMatching,
    "stale_reads": StaleReads,
    "written_above_hole": WrittenAboveHole,
}


class WalChecksIndexesOnly(WalSequencer):
    """The WAL checks a write's indexes, not the term before it: a lost
    overwrite of a follower's last entry, followed by an append at
    ``last + 1``, leaves the old entry below the new ones on disk."""

    def admit(self, uid: str, life: int, first: int, term_runs: tuple, *, prev_term: int | None,
              durable: int = 0, truncate: bool = False, overwrite: bool = False) -> Decision:
        return super().admit(uid, life, first, term_runs, prev_term=None, truncate=truncate,
                             overwrite=overwrite)


WAL_BUGS: dict[str, type[WalSequencer]] = {
    "wal_checks_indexes_only": WalChecksIndexesOnly,
}


def _check_names(bugs) -> list[str]:
    names = sorted(set(bugs))
    unknown = [n for n in names if n not in KNOWN_BUGS and n not in WAL_BUGS]
    if unknown:
        raise ValueError(f"unknown deliberate bugs {unknown} "
                         f"(known: {sorted(KNOWN_BUGS) + sorted(WAL_BUGS)})")
    return names


def wal_sequencer_class(bugs=frozenset()) -> type[WalSequencer]:
    """The simulated WAL's sequencing rule with the deliberate WAL ``bugs``."""
    names = [n for n in _check_names(bugs) if n in WAL_BUGS]
    return WAL_BUGS[names[0]] if names else WalSequencer


def core_class(bugs=frozenset()) -> type[RaftServer]:
    """The core with the deliberate core ``bugs`` (names of :data:`KNOWN_BUGS`;
    WAL bugs are ignored here)."""
    names = [n for n in _check_names(bugs) if n in KNOWN_BUGS]
    if not names:
        return RaftServer
    if len(names) == 1:
        return KNOWN_BUGS[names[0]]
    return type("RaftServerWith_" + "_".join(names), tuple(KNOWN_BUGS[n] for n in names), {})
