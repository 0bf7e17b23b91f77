"""The WAL's sequencing rule: which write of a writer the WAL takes (pure).

A WAL write can be lost (a message between a server and its node's WAL
actor, a WAL that restarted).  Taking the next write anyway could splice
two different logs on disk: the old head, the new tail.  After a crash
that splice is what the server recovers, and it breaks Raft's log
matching property (an entry with the right term at ``i`` above an entry
with the wrong term below it).  So the WAL checks each write the way a
follower checks an AppendEntries RPC, against what it holds of that writer.

A write says where it stands in the writer's log:

* ``prev_term``: the term of entry ``first - 1`` in the writer's log (0 at
  index 1).
* ``durable``: the writer's durable prefix, the highest index the WAL
  reported written that is still part of the writer's log.  The disk holds
  the writer's entries up to there, so a write that starts at or below
  ``durable + 1`` needs no other check.

Rules, per writer (a server's ``uid``):

* **Lives.**  A write carries its writer's life (a server's incarnation,
  growing with each restart of it).  A write of an older life than the one
  the WAL knows is dropped without a resend: that process is gone.  A newer
  life starts the writer afresh.
* **Taken** when it restarts the log after a snapshot (``truncate``), or
  starts at index 1, or at or below ``durable + 1``, or when the WAL holds
  index ``first - 1`` of this writer with term ``prev_term`` (then, by log
  matching, the disk's entries up to ``first - 1`` are the writer's).  A
  taken write replaces whatever the WAL held of the writer from ``first``.
* **Refused** otherwise: a gap, a write the WAL knows nothing before, or a
  term that differs at ``first - 1`` (an overwrite was lost).  The writer is
  asked once to resend from ``durable + 1`` (Ra's ``resend_write``); its
  further refused writes are dropped quietly until one is taken.
* **Without ``prev_term``** (a caller that does not declare it, e.g. a tool
  writing a WAL directly) only indexes can be checked, as before terms were
  carried: a write is taken when it starts at ``last + 1``, or at or below
  ``last`` flagged ``overwrite``, or anywhere as the first write of a life
  flagged ``overwrite``.  A lost overwrite followed by an append at
  ``last + 1`` then goes unnoticed: every server's log declares it.
* **Memory.**  Per writer the WAL keeps the term runs it holds above the
  writer's durable prefix (older ones can never be asked for), at most
  :data:`MAX_RUNS`; a write whose ``first - 1`` falls below what is kept is
  refused and resent from the durable prefix, which is always taken.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import groupby

from .common import LogUsageError

__all__ = ["WalSequencer", "Decision", "TAKEN", "MAX_RUNS", "term_runs"]

MAX_RUNS = 256


def term_runs(first: int, terms) -> tuple:
    """``((term, from, to), ...)`` of consecutive records from ``first`` with
    these ``terms`` (a write's terms as :meth:`WalSequencer.admit` takes
    them); validates that terms never decrease."""
    n = len(terms)
    if terms.count(terms[0]) == n:
        return ((terms[0], first, first + n - 1),)
    runs = []
    i = first
    prev = None
    for term, group in groupby(terms):
        k = sum(1 for _ in group)
        if prev is not None and term < prev:
            raise LogUsageError(f"terms must not decrease within an append (term {term} "
                                f"after {prev} at index {i})")
        runs.append((term, i, i + k - 1))
        prev = term
        i += k
    return tuple(runs)


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one write: ``taken``; else ``resend_from`` (ask the
    writer to write again from there) or None (drop it quietly)."""

    taken: bool
    resend_from: int | None = None


TAKEN = Decision(True)
_DROP = Decision(False)


@dataclass(slots=True)
class _Writer:
    life: int
    last: int                                   # the last index the WAL holds
    runs: list = field(default_factory=list)    # [(from_index, term)], ascending, ending at ``last``
    resend_asked: bool = False

    def term_at(self, index: int) -> int | None:
        if index > self.last or not self.runs or index < self.runs[0][0]:
            return None
        for lo, term in reversed(self.runs):
            if lo <= index:
                return term
        return None

    def take(self, first: int, term_runs: tuple, durable: int, truncate: bool) -> None:
        runs = self.runs
        if truncate:
            runs.clear()        # the log restarts after a snapshot
        while runs and runs[-1][0] >= first:
            runs.pop()
        for term, lo, _hi in term_runs:
            if runs and runs[-1][1] == term:
                continue
            runs.append((lo, term))
        self.last = term_runs[-1][2]
        # Runs wholly at or below the durable prefix are never asked for again.
        keep = 0
        while keep + 1 < len(runs) and runs[keep + 1][0] <= durable + 1:
            keep += 1
        if keep or len(runs) > MAX_RUNS:
            del runs[:max(keep, len(runs) - MAX_RUNS)]
        self.resend_asked = False


class WalSequencer:
    """What one WAL knows of its writers (see the module rules)."""

    __slots__ = ("_writers",)

    def __init__(self) -> None:
        self._writers: dict[str, _Writer] = {}

    def admit(self, uid: str, life: int, first: int, term_runs: tuple, *, prev_term: int | None,
              durable: int = 0, truncate: bool = False, overwrite: bool = False) -> Decision:
        """Decide on a write of ``uid`` (entries ``first..``, whose terms are
        ``term_runs``: ``((term, from, to), ...)``); a taken write updates
        what the WAL knows."""
        state = self._writers.get(uid)
        if state is not None and life != state.life:
            if life < state.life:
                return _DROP            # a late write of a writer's earlier life
            state = None                # a new life: what the WAL knew is not its
        if prev_term is None:
            ok = self._index_rule(state, first, truncate, overwrite)
        else:
            ok = (truncate or first == 1 or first - 1 <= durable
                  or (state is not None and state.term_at(first - 1) == prev_term))
        if ok:
            if state is None:
                state = self._writers[uid] = _Writer(life, first - 1)
            state.take(first, term_runs, durable if prev_term is not None else 0, truncate)
            return TAKEN
        if state is None:
            state = self._writers[uid] = _Writer(life, first - 1 if prev_term is None else durable)
            state.resend_asked = True
            return Decision(False, first if prev_term is None else durable + 1)
        if state.resend_asked:
            return _DROP
        state.resend_asked = True
        if prev_term is None:
            return Decision(False, min(first, state.last + 1))
        return Decision(False, durable + 1)

    @staticmethod
    def _index_rule(state: _Writer | None, first: int, truncate: bool, overwrite: bool) -> bool:
        if truncate:
            return True
        if state is None:
            return overwrite or first == 1
        return first == state.last + 1 or (first <= state.last and overwrite)

    def forget(self, uid: str) -> None:
        """Drop ``uid``'s state (server deleted, or its log reopened)."""
        self._writers.pop(uid, None)

    def last_index(self, uid: str) -> int | None:
        state = self._writers.get(uid)
        return None if state is None else state.last
