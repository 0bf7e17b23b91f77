"""The segment writer: moves a closed WAL file's entries into per-server segments.

API (what the runtime's segment-writer actor calls)::

    sw = SegmentWriter(data_dir, max_count=4096, max_size_bytes=64_000_000)
    result = sw.flush_wal_file(path)      # for every closed WAL file, in file order
    result.segments                       # {uid: (SegmentRef, ...)} to tell each server
    sw.segments_for(uid)                  # every segment of a server (oldest first)

Rules:

* WAL files are flushed strictly in their numeric order (the WAL's
  ``pending_files`` first, then each ``closed_files`` as rollovers happen).
* For each writer the file's records are replayed in order into one final
  run (an overwrite truncates, a truncate flag restarts), so a segment never
  holds two versions of an index; the run is written after the server's
  newest segment when it continues it, otherwise into a new segment, which
  then supersedes older entries at and above its first index.
* Segment files are written as tmp + fsync + rename; each touched segment
  directory is fsynced; only then is the WAL file deleted (and the WAL
  directory fsynced).  A crash anywhere in between leaves the WAL file, and
  flushing it again is harmless: a run already present as the tail of the
  server's segments is skipped, anything else is rewritten into a new
  segment that supersedes the partial copy.
* Records of a server without a directory (deleted, or never created) are
  dropped: its data is gone on purpose.
* A torn tail of the WAL file is ignored (it was never acknowledged) and
  truncated before the flush; corruption raises LogCorruption and leaves the
  file in place.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .common import (check_uid, fsync_dir, list_numbered, numbered_name, remove_hidden_leftovers,
                     segments_dir, server_dir)
from .segment import SEGMENT_SUFFIX, Segment, SegmentRef, write_segment
from .wal_format import TornTail, WalScan, scan_wal_file

__all__ = ["SegmentWriter", "SegmentFlush", "final_runs", "DEFAULT_SEGMENT_MAX_COUNT",
           "DEFAULT_SEGMENT_MAX_SIZE_BYTES"]

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_MAX_COUNT = 4096  # Ra's segment_max_entries
DEFAULT_SEGMENT_MAX_SIZE_BYTES = 64_000_000  # Ra's segment_max_size_bytes


@dataclass(frozen=True, slots=True)
class SegmentFlush:
    """Outcome of flushing one WAL file."""

    wal_file: Path
    segments: dict  # uid -> (SegmentRef, ...) written or extended, oldest first
    skipped_uids: tuple  # writers without a server directory: their records were dropped
    already_present: tuple  # writers whose run was already in segments (re-flush after a crash)
    torn: TornTail | None
    records: int


def final_runs(scan: WalScan) -> dict[str, list[tuple[int, int, bytes, int]]]:
    """Each writer's final run in a WAL file: ``{uid: [(index, term, payload, crc), ...]}``."""
    runs: dict[str, list] = {}
    for block in scan.blocks:
        recs = block.records
        if not recs:
            continue
        first = recs[0].index
        run = runs.get(block.uid)
        if run is None or block.truncate:
            run = []
        elif run:
            run_first, run_last = run[0][0], run[-1][0]
            if first <= run_first:
                run = []
            elif first <= run_last:
                del run[first - run_first:]
            elif first > run_last + 1:
                # A gap inside one file can only come from a restarted log.
                run = []
        run.extend((r.index, r.term, r.payload, r.crc) for r in recs)
        runs[block.uid] = run
    return {uid: run for uid, run in runs.items() if run}


class SegmentWriter:
    """Writes per-server segment files from closed WAL files (see the module rules)."""

    def __init__(self, data_dir: str | os.PathLike, *, max_count: int = DEFAULT_SEGMENT_MAX_COUNT,
                 max_size_bytes: int = DEFAULT_SEGMENT_MAX_SIZE_BYTES):
        if max_count < 1 or max_size_bytes < 1:
            raise ValueError("max_count and max_size_bytes must be positive")
        self.data_dir = Path(data_dir)
        self.max_count = max_count
        self.max_size_bytes = max_size_bytes

    def segments_for(self, uid: str) -> list[SegmentRef]:
        """Every segment of ``uid``, oldest first (each file's header and index validated)."""
        refs = []
        for _num, path in list_numbered(segments_dir(self.data_dir, uid), SEGMENT_SUFFIX):
            with Segment(path) as seg:
                refs.append(seg.ref(uid))
        return refs

    def flush_wal_file(self, path: str | os.PathLike) -> SegmentFlush:
        path = Path(path)
        scan = scan_wal_file(path, repair=True)
        if scan.torn is not None:
            log.warning("WAL %s: torn tail of %d bytes at offset %d dropped (%s)", path,
                        scan.torn.dropped_bytes, scan.torn.offset, scan.torn.reason)
        written: dict[str, tuple] = {}
        skipped = []
        present = []
        touched_dirs: set[Path] = set()
        records = 0
        for uid, run in final_runs(scan).items():
            try:
                check_uid(uid)
            except ValueError:
                skipped.append(uid)
                continue
            if not server_dir(self.data_dir, uid).is_dir():
                skipped.append(uid)
                continue
            refs = self._write_run(uid, run, touched_dirs)
            if refs:
                written[uid] = refs
                records += len(run)
            else:
                present.append(uid)
        for d in sorted(touched_dirs):
            fsync_dir(d)
        # Only now are the entries durable elsewhere: the WAL file may go.
        path.unlink()
        fsync_dir(path.parent)
        return SegmentFlush(path, written, tuple(skipped), tuple(present), scan.torn, records)

    # ----------------------------------------------------------- internals
    def _write_run(self, uid: str, run: list, touched: set) -> tuple:
        sdir = segments_dir(self.data_dir, uid)
        if not sdir.is_dir():
            sdir.mkdir(parents=True)
            touched.add(sdir.parent)
        remove_hidden_leftovers(sdir)
        existing = list_numbered(sdir, SEGMENT_SUFFIX)
        newest: Segment | None = Segment(existing[-1][1]) if existing else None
        try:
            run_first, run_last, last_term = run[0][0], run[-1][0], run[-1][1]
            if newest is not None and newest.last == run_last and newest.term_at(run_last) == last_term:
                # Already flushed before a crash: the same (index, term) at the log's
                # end means the same entries (Raft's log matching).
                return ()
            refs = []
            number = existing[-1][0] if existing else 0
            pos = 0
            if (newest is not None and run_first == newest.last + 1
                    and newest.count < self.max_count and newest.size < self.max_size_bytes):
                # Continue the newest segment: write a longer version under its name.
                old = newest.read_all_raw()
                take = self._fit(run, 0, newest.count, newest.size)
                entries = old + run[:take]
                write_segment(newest.path, entries)
                refs.append(SegmentRef(uid, newest.number, newest.path, entries[0][0], entries[-1][0]))
                pos = take
            while pos < len(run):
                take = self._fit(run, pos, 0, 0)
                number += 1
                seg_path = sdir / numbered_name(number, SEGMENT_SUFFIX)
                chunk = run[pos:pos + take]
                write_segment(seg_path, chunk)
                refs.append(SegmentRef(uid, number, seg_path, chunk[0][0], chunk[-1][0]))
                pos += take
            touched.add(sdir)
            return tuple(refs)
        finally:
            if newest is not None:
                newest.close()

    def _fit(self, run: list, pos: int, count: int, size: int) -> int:
        """How many entries of ``run[pos:]`` fit in a segment already holding
        ``count`` entries / ``size`` bytes (at least one, so progress is made)."""
        take = 0
        n = len(run)
        while pos + take < n and count + take < self.max_count:
            size += 32 + len(run[pos + take][2])
            if take and size > self.max_size_bytes:
                break
            take += 1
        return max(take, 1)
