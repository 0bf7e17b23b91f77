"""The segment writer: moves a closed WAL file's entries into per-server segments.

API (what the runtime's segment-writer actor calls)::

    sw = SegmentWriter(data_dir, max_count=4096, max_size_bytes=64_000_000,
                       wal_dirs=None)             # the node's WAL directories (None: <data_dir>/wal)
    result = sw.flush_wal_file(path)      # for every closed WAL file, in file order
    result.segments                       # {uid: (SegmentRef, ...)} to tell each server
    sw.flush_closed_files()               # every WAL file but the newest, in each WAL directory
    sw.segments_for(uid)                  # every segment of a server (oldest first)
    with sw.lock: ...                     # the data directory's flush lock (recovery holds it)

Rules:

* WAL files are flushed strictly in their numeric order: the WAL's
  ``pending_files`` first (recovery), then each ``closed_files`` as
  rollovers happen; a file is never flushed while an older one is still in
  the WAL directory (those are flushed first, whatever the caller asked).
* A WAL file handed to the segment writer is closed, so all its batches were
  synced and acknowledged: any damage in it, at its end too, is
  LogCorruption and the file is left in place.  Only recovery, for the
  newest file while no WAL is open, passes ``newest=True``: then a torn tail
  is set aside in ``<name>.torn-<n>`` and truncated (:mod:`.wal_format`).
* For each writer the file's records are replayed in order into one final
  run (an overwrite truncates, a truncate flag restarts), so a segment never
  holds two versions of an index; the run is written after the server's
  newest segment when it continues it, otherwise into a new segment, which
  then supersedes older entries at and above its first index.
* A run that starts above the end of the server's log (newest segment's
  last index, or the snapshot's index) would leave a hole: LogCorruption,
  raised before anything is written or deleted.
* Segment files are written as tmp + fsync + rename; each touched segment
  directory is fsynced; only then is the WAL file deleted (and the WAL
  directory fsynced).  A crash anywhere in between leaves the WAL file, and
  flushing it again is harmless.  A run already present as the tail of the
  server's segments (re-flush after a crash) is written again into a fresh
  segment all the same (``already_present`` names those servers): the
  earlier flush may have died on a failed fsync, and after that the page
  cache can show data the disk never got (the "fsyncgate" lesson).
* A failed write or sync raises :class:`ra_actors.errors.StorageError`;
  the writer then refuses further work until a new one is made (after
  recovery).  The WAL file stays, so nothing is lost.
* Records of a server without a directory (deleted, or never created) are
  dropped: its data is gone on purpose.
* Files move under the data directory's flush lock (:class:`.lock.FlushLock`,
  waited for): a segment writer and the recovery of a WAL being reopened
  never write segments at once.  A file that is gone once the lock is held
  was moved already (a repeated or stale request): nothing to do.
  ``flush_closed_files`` moves every WAL file but the newest of each WAL
  directory, which is either that WAL's current file or, while it is not
  open, the one whose torn tail only recovery may repair: what a restarted
  segment writer does first, for the files its predecessor was handed.
* A node with several WALs (:mod:`.wal_dirs`) has one segment writer for
  all: "in order" is per WAL directory (a server's entries are all in one
  WAL), and the one flush lock serialises the moves of every WAL.
* All file I/O goes through :mod:`.fileio`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import LogCorruption, StorageError
import ra_actors.log.fileio as fileio
from .common import (check_uid, list_numbered, numbered_name, remove_hidden_leftovers, segments_dir,
                     server_dir, snapshots_dir, wal_dir)
from .lock import FlushLock
from .segment import SEGMENT_SUFFIX, Segment, SegmentRef, segment_range, write_segment
from .snapshot import snapshot_index_on_disk
from .wal_format import TornTail, WalScan, scan_wal_file

WAL_SUFFIX = ".wal"

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
    aside: Path | None = None  # where a repaired torn tail's bytes were kept


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
                 max_size_bytes: int = DEFAULT_SEGMENT_MAX_SIZE_BYTES, wal_dirs=None):
        if max_count < 1 or max_size_bytes < 1:
            raise ValueError("max_count and max_size_bytes must be positive")
        self.data_dir = Path(data_dir)
        self.wal_dirs = [Path(d) for d in wal_dirs] if wal_dirs else [wal_dir(self.data_dir)]
        self.max_count = max_count
        self.max_size_bytes = max_size_bytes
        self.failed: StorageError | None = None
        self.lock = FlushLock(self.data_dir)

    def segments_for(self, uid: str) -> list[SegmentRef]:
        """Every segment of ``uid``, oldest first (each file's header and index validated)."""
        refs = []
        for _num, path in list_numbered(segments_dir(self.data_dir, uid), SEGMENT_SUFFIX):
            with Segment(path) as seg:
                refs.append(seg.ref(uid))
        return refs

    def flush_closed_files(self) -> list[SegmentFlush]:
        """Move every WAL file but the newest of each WAL directory into
        segments (module rules)."""
        out = []
        with self.lock:
            for wdir in self.wal_dirs:
                files = list_numbered(wdir, WAL_SUFFIX)
                if len(files) >= 2:
                    out.append(self.flush_wal_file(files[-2][1]))
        return out

    def flush_wal_file(self, path: str | os.PathLike, *, newest: bool = False) -> SegmentFlush:
        """Move WAL file ``path`` into segments and delete it.

        ``newest=True`` only from recovery, for the newest file of the WAL
        directory while no WAL is open: the one file whose torn tail may be
        repaired.  Older WAL files still in the directory are flushed first
        (files are flushed strictly in order; the result includes theirs).
        """
        if self.failed is not None:
            f = self.failed
            raise StorageError(f"the segment writer failed earlier and refuses further work "
                               f"({f}); reopen the node's log", f.path, f.errno, f.op)
        path = Path(path)
        try:
            with self.lock:
                older = [p for n, p in list_numbered(path.parent, WAL_SUFFIX) if p.name < path.name]
                flushes = [self._flush_one(p, newest=False) for p in older]
                if path.exists():
                    flushes.append(self._flush_one(path, newest=newest))
                elif not flushes:
                    return SegmentFlush(path, {}, (), (), None, 0)
        except StorageError as exc:
            self.failed = exc
            raise
        if len(flushes) == 1:
            return flushes[0]
        merged: dict = {}
        for f in flushes:
            for uid, refs in f.segments.items():
                merged[uid] = merged.get(uid, ()) + tuple(refs)
        last = flushes[-1]
        return SegmentFlush(path, merged, tuple(u for f in flushes for u in f.skipped_uids),
                            tuple(u for f in flushes for u in f.already_present), last.torn,
                            sum(f.records for f in flushes), last.aside)

    def _flush_one(self, path: Path, *, newest: bool) -> SegmentFlush:
        scan = scan_wal_file(path, tail_ok=newest, repair=newest)
        if scan.torn is not None:
            log.warning("WAL %s: torn tail of %d bytes at offset %d dropped (%s)%s", path,
                        scan.torn.dropped_bytes, scan.torn.offset, scan.torn.reason,
                        f"; the bytes are kept in {scan.aside}" if scan.aside else "")
        runs = {}
        skipped = []
        for uid, run in final_runs(scan).items():
            try:
                check_uid(uid)
            except ValueError:
                skipped.append(uid)
                continue
            if not server_dir(self.data_dir, uid).is_dir():
                skipped.append(uid)
                continue
            runs[uid] = run
        # Refuse before writing anything: a run that starts above the end of the
        # server's log would leave a hole (and, once the WAL file is deleted,
        # lose the entries in between for good).
        for uid, run in runs.items():
            self._check_continues(path, uid, run, scan)
        written: dict[str, tuple] = {}
        present = []
        touched_dirs: set[Path] = set()
        records = 0
        for uid, run in runs.items():
            refs, was_present = self._write_run(uid, run, touched_dirs)
            written[uid] = refs
            records += len(run)
            if was_present:
                present.append(uid)
        for d in sorted(touched_dirs):
            fileio.fsync_dir(d)
        # Only now are the entries durable elsewhere: the WAL file may go.
        fileio.unlink(path)
        fileio.fsync_dir(path.parent)
        return SegmentFlush(path, written, tuple(skipped), tuple(present), scan.torn, records,
                            scan.aside)

    # ----------------------------------------------------------- internals
    def _log_end(self, uid: str) -> tuple[int, int, int]:
        """``(end, segments_last, snapshot_index)`` of a server's log on disk: the
        newest segment's last index (it supersedes everything above its first
        index) or the snapshot's index, whichever is higher."""
        existing = list_numbered(segments_dir(self.data_dir, uid), SEGMENT_SUFFIX)
        seg_last = segment_range(existing[-1][1])[1] if existing else 0
        snap = snapshot_index_on_disk(snapshots_dir(self.data_dir, uid))
        return max(seg_last, snap), seg_last, snap

    def _check_continues(self, path: Path, uid: str, run: list, scan: WalScan) -> None:
        first = run[0][0]
        end, seg_last, snap = self._log_end(uid)
        if first > end + 1:
            offset = next((b.offset for b in scan.blocks if b.uid == uid and b.records
                           and b.records[0].index <= first <= b.records[-1].index), None)
            raise LogCorruption(
                f"server {uid}: this WAL file holds entries {first}..{run[-1][0]} but the server's "
                f"log ends at {end} (segments up to {seg_last}, snapshot at {snap}): entries "
                f"{end + 1}..{first - 1} are missing; flushing would leave a hole, so nothing "
                "was written or deleted", str(path), offset)

    def _write_run(self, uid: str, run: list, touched: set) -> tuple[tuple, bool]:
        """Write ``run`` into segments; return ``(refs, already_present)``."""
        sdir = segments_dir(self.data_dir, uid)
        if not sdir.is_dir():
            fileio.mkdir(sdir)
            touched.add(sdir.parent)
        remove_hidden_leftovers(sdir)
        existing = list_numbered(sdir, SEGMENT_SUFFIX)
        newest: Segment | None = Segment(existing[-1][1]) if existing else None
        try:
            run_first, run_last, last_term = run[0][0], run[-1][0], run[-1][1]
            # Already flushed before a crash (the same (index, term) at the log's
            # end means the same entries, by Raft's log matching)?  The copy is
            # still not trusted: the earlier flush may have died on a failed
            # fsync, whose pages the kernel may have dropped while the file reads
            # back fine.  The run is written again into a fresh, freshly synced
            # segment, which supersedes the old copy.
            present = (newest is not None and newest.last == run_last
                       and newest.term_at(run_last) == last_term)
            refs = []
            number = existing[-1][0] if existing else 0
            pos = 0
            if (not present and newest is not None and run_first == newest.last + 1
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
            return tuple(refs), present
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
