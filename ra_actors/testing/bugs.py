"""Deliberate bugs: cores that each break one Raft rule, to prove that the
simulator, the transcript tests and the Jepsen harness catch the violation.

Rules:

* Each bug is a subclass of :class:`~ra_actors.core.server.RaftServer` that
  overrides exactly one of the core's rule methods (``_self_match``,
  ``_vote_is_durable``, ``_first_new_entry``, ``_answer_consistent_query``,
  ``_admit_session_command``, ``_durable_prefix_grew``);
  production code has no switch for them.
* :func:`core_class` combines the named bugs into one class (``RaftServer``
  itself for none); an unknown name is a ``ValueError``.
* Used by tests, ``scripts/sim.py --bugs``, ``scripts/soak.py --bugs`` and the
  Jepsen harness (``--unsafe``, installed in node processes by its shim).
"""
from __future__ import annotations

from ..core.server import RaftServer
from ..core.types import ServerId


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


def core_class(bugs=frozenset()) -> type[RaftServer]:
    """The core with the deliberate ``bugs`` (names of :data:`KNOWN_BUGS`)."""
    names = sorted(set(bugs))
    unknown = [n for n in names if n not in KNOWN_BUGS]
    if unknown:
        raise ValueError(f"unknown deliberate bugs {unknown} (known: {sorted(KNOWN_BUGS)})")
    if not names:
        return RaftServer
    if len(names) == 1:
        return KNOWN_BUGS[names[0]]
    return type("RaftServerWith_" + "_".join(names), tuple(KNOWN_BUGS[n] for n in names), {})
