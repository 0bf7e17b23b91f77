"""A server's view of its Raft log, in memory (no I/O).

Rules:

* The log holds every entry above the latest snapshot (``snapshot_index``);
  the shell persists them (``LogAppend``) and reports durability with
  ``Written``; ``last_written`` is the highest index known durable *and*
  still part of this log.  Memory stays bounded because machines release
  cursors (snapshots), as in Ra.
* Truncation (a real term conflict) lowers ``last_written`` to the
  truncation point: entries above it are no longer ours, durable or not.
* ``Written(term, from, to)`` only counts for indexes whose entry still has
  that term: a late notification for entries that were replaced is ignored
  (same index and term means the same entry — Raft's log matching).
* ``last_written`` only grows over a contiguous prefix: a ``Written`` that
  starts above ``last_written + 1`` is ignored, because an entry below it
  may never have reached the disk (a lost WAL write) and recovery stops at
  the first gap.  The shell writes the gap again (``ResendWrite``).
"""
from __future__ import annotations

from .types import Entry


class RaftLog:
    __slots__ = ("snapshot_index", "snapshot_term", "entries", "last_written")

    def __init__(self, snapshot_index: int = 0, snapshot_term: int = 0, entries=(),
                 last_written: int | None = None):
        self.snapshot_index = snapshot_index
        self.snapshot_term = snapshot_term
        self.entries: list[Entry] = list(entries)
        for offset, e in enumerate(self.entries):
            if e.index != snapshot_index + 1 + offset:
                raise ValueError(f"log entries are not consecutive after snapshot {snapshot_index}: "
                                 f"found index {e.index} at position {offset}")
        self.last_written = self.last_index if last_written is None else last_written

    # -- inspection ----------------------------------------------------------
    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot_term

    @property
    def first_index(self) -> int:
        """First index still held in the log (``snapshot_index + 1``)."""
        return self.snapshot_index + 1

    def term_at(self, index: int) -> int | None:
        """Term of ``index``; None if unknown (beyond the end or compacted away)."""
        if index == self.snapshot_index:
            return self.snapshot_term
        if index < self.snapshot_index or index > self.last_index:
            return None
        return self.entries[index - self.snapshot_index - 1].term

    def get(self, index: int) -> Entry | None:
        if index <= self.snapshot_index or index > self.last_index:
            return None
        return self.entries[index - self.snapshot_index - 1]

    def slice(self, first: int, last: int) -> list[Entry]:
        """Entries ``first..last`` inclusive, clipped to what the log holds."""
        first = max(first, self.snapshot_index + 1)
        last = min(last, self.last_index)
        if first > last:
            return []
        base = self.snapshot_index + 1
        return self.entries[first - base:last - base + 1]

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: is a log ending at (last_index, last_term) at least as
        up to date as ours?"""
        ours = self.last_term
        return last_term > ours or (last_term == ours and last_index >= self.last_index)

    # -- mutation --------------------------------------------------------------
    def append(self, entry: Entry) -> None:
        if entry.index != self.last_index + 1:
            raise ValueError(f"append of index {entry.index} but last index is {self.last_index}")
        self.entries.append(entry)

    def truncate_after(self, index: int) -> None:
        """Drop every entry above ``index`` (never below the snapshot)."""
        index = max(index, self.snapshot_index)
        del self.entries[index - self.snapshot_index:]
        self.last_written = min(self.last_written, index)

    def written(self, term: int, from_index: int, to_index: int) -> bool:
        """Apply a ``Written`` notification; True if ``last_written`` advanced."""
        if from_index > self.last_written + 1:
            return False
        top = min(to_index, self.last_index)
        while top >= from_index and top > self.snapshot_index and self.term_at(top) != term:
            top -= 1
        if top < from_index or top <= self.last_written:
            return False
        self.last_written = top
        return True

    def install_snapshot(self, index: int, term: int) -> None:
        """Make ``(index, term)`` the snapshot point.  Entries after it are
        kept only when the log holds ``index`` with ``term`` (Raft §7)."""
        if self.term_at(index) == term and index <= self.last_index:
            del self.entries[:index - self.snapshot_index]
            self.last_written = max(self.last_written, index)
        else:
            self.entries = []
            self.last_written = index
        self.snapshot_index = index
        self.snapshot_term = term
