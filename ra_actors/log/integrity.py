"""A server's log as a whole: what snapshot + segments + WAL add up to.

Recovery and ``ra-actors log check`` both ask the same question of a
server's files: which index range can be recovered, and is it contiguous?
This module answers it from index/term information alone (no payload is
decoded), with the same rules the rest of the package applies:

* Sources are ordered oldest to newest: the segments by number, then each
  WAL file's final run for the server, by file number (a WAL file's run
  becomes a segment when it is flushed, so it obeys the segment rule).  A
  source starting at index ``s`` supersedes every entry ``>= s`` of all older
  sources (:func:`.segment.effective_ranges`).
* The log starts after the snapshot (``snapshot index + 1``, or 1 without
  one) and ends at the highest index any effective range reaches.  Every
  index in between must be held by some source: a missing one is a *hole*,
  and a hole is corruption (an acknowledged entry is gone), never something
  to paper over.
* Terms never decrease along the log.  A decrease after the snapshot is
  what a log restarted after an installed snapshot looks like before its new
  entries reach segments; :class:`~.server_log.ServerLog` drops the older
  entries from there with a warning, and :func:`analyse` reports it.
* A superseded entry whose term differs from the entry that replaced it is
  an *overwrite* (a new leader replaced uncommitted entries): normal in Raft,
  reported for information.

Rules: read-only; cheap enough for recovery (:func:`check_contiguous` reads
only file names and segment headers).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import LogCorruption
from .common import list_numbered, segments_dir, snapshots_dir
from .segment import SEGMENT_SUFFIX, effective_ranges, segment_range
from .snapshot import snapshot_files

__all__ = ["Source", "Analysis", "effective_view", "find_holes", "analyse", "check_contiguous"]


@dataclass(frozen=True)
class Source:
    """Consecutive entries of one file: ``terms[k]`` is the term of ``first + k``
    (``terms`` may be None when only the range is known)."""

    label: str
    first: int
    last: int
    terms: Sequence[int] | None = None


@dataclass
class Analysis:
    """What a server's files add up to (see the module rules)."""

    base: int  # snapshot index (0 without a snapshot): the log starts at base + 1
    base_term: int
    last_index: int  # highest index reached (base when the log is empty)
    last_term: int
    holes: list = field(default_factory=list)  # [(lo, hi)]
    term_break: tuple | None = None  # (index, term, previous term): recovery drops index..last
    overwrites: list = field(default_factory=list)  # [(lo, hi, old_term, new_term, old, new)]
    ranges: list = field(default_factory=list)  # [(lo, hi, label)] effective, ascending

    @property
    def first_index(self) -> int:
        return self.base + 1

    @property
    def recoverable_last(self) -> int:
        """Last index a restart keeps (entries after a term break are dropped)."""
        return self.term_break[0] - 1 if self.term_break else self.last_index


def effective_view(sources: Sequence[Source]) -> list[tuple[int, int, Source]]:
    """``[(lo, hi, source), ...]`` ascending: which source serves which indexes."""
    eff = effective_ranges([(s.first, s.last) for s in sources])
    return sorted(((r[0], r[1], s) for r, s in zip(eff, sources) if r is not None),
                  key=lambda t: t[0])


def find_holes(base: int, view: Sequence[tuple[int, int, object]]) -> list[tuple[int, int]]:
    """Index ranges after ``base`` and below the view's end that no range holds."""
    holes = []
    expected = base + 1
    for lo, hi, _src in view:
        if hi < expected:
            continue
        if lo > expected:
            holes.append((expected, lo - 1))
        expected = hi + 1
    return holes


def analyse(sources: Sequence[Source], snapshot: tuple[int, int] | None = None) -> Analysis:
    """Holes, term order and overwrites of the log made of ``sources`` (oldest
    first) after ``snapshot`` = ``(index, term)``."""
    base, base_term = snapshot if snapshot else (0, 0)
    view = effective_view(sources)
    last = max([base] + [hi for _lo, hi, _s in view])
    out = Analysis(base, base_term, last, base_term if last == base else 0,
                   holes=find_holes(base, view),
                   ranges=[(max(lo, base + 1), hi, s.label) for lo, hi, s in view if hi > base])

    def term_at(src: Source, i: int) -> int | None:
        return None if src.terms is None else src.terms[i - src.first]

    final: dict[int, int] = {}
    prev = base_term
    for lo, hi, src in view:
        for i in range(max(lo, base + 1), hi + 1):
            t = term_at(src, i)
            if t is None:
                continue
            final[i] = t
            if out.term_break is None and t < prev:
                out.term_break = (i, t, prev)
            prev = t
    if last > base:
        out.last_term = final.get(last, 0)
    # Overwrites: superseded entries whose replacement has another term.
    ceiling = None
    for src in reversed(sources):
        if ceiling is not None and src.terms is not None:
            run = None
            for i in range(max(src.first, ceiling, base + 1), src.last + 1):
                new = final.get(i)
                old = term_at(src, i)
                if new is None or new == old:
                    run = None
                    continue
                if run is not None and run[1] == i - 1 and run[2] == old and run[3] == new:
                    run[1] = i
                else:
                    run = [i, i, old, new, src.label, None]
                    out.overwrites.append(run)
        ceiling = src.first if ceiling is None else min(ceiling, src.first)
    by_index = [(lo, hi, s.label) for lo, hi, s in view]
    for run in out.overwrites:
        run[5] = next((label for lo, hi, label in by_index if lo <= run[0] <= hi), "?")
    out.overwrites = [tuple(r) for r in out.overwrites]
    return out


def check_contiguous(data_dir: str | os.PathLike, uid: str) -> Analysis:
    """Recovery's check of one server after its WAL files went into segments:
    snapshot (by file name) + segments (by header) must hold every index from
    the snapshot to the end, else LogCorruption names the missing range.
    Payloads and checksums are verified later, when the server opens."""
    snaps = snapshot_files(snapshots_dir(data_dir, uid))
    snapshot = (snaps[-1][0], snaps[-1][1]) if snaps else None
    sources = []
    for _n, path in list_numbered(segments_dir(data_dir, uid), SEGMENT_SUFFIX):
        first, last = segment_range(path)
        sources.append(Source(path.name, first, last))
    result = analyse(sources, snapshot)
    if result.holes:
        lo, hi = result.holes[0]
        where = ", ".join(f"{a}..{b} in {label}" for a, b, label in result.ranges) or "no entries"
        raise LogCorruption(
            f"server {uid}: entries {lo}..{hi} are missing from its log (snapshot at "
            f"{result.base}; segments hold {where}); recovery never leaves a hole",
            str(Path(segments_dir(data_dir, uid))))
    return result
