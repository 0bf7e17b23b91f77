"""ServerLog: one server's view of the node storage, as its shell uses it.

This is the real counterpart of the simulator's disk: the same core runs on
both.  The shell turns core effects into calls here and results into core
messages::

    slog = ServerLog.create(data_dir, config)        # new server (config made durable)
    slog = ServerLog.open(data_dir, uid)             # restart: recover from disk alone
    core = RaftServer(slog.config, machine, slog.recovered())

    LogAppend(entries)      -> req = slog.append(entries)      # mem table + WalAppend
                               wal.append_run(req.uid, req.first_index, req.terms,
                                              req.payloads, truncate=req.truncate,
                                              overwrite=req.overwrite, prev_term=req.prev_term,
                                              durable=req.durable)
                               # or, encoding in the server's process (faster WAL):
                               wal.append_encoded(req.encode())
    WAL flush result        -> msgs = slog.handle_written(term, from_, to)  (a list; or handle_flush_result)
    ResendWrite(i)          -> core re-emits LogAppend; or slog.resend_from(i)
    segment writer result   -> slog.handle_segments(refs)
    PersistMeta(t, v)       -> slog.persist_meta(t, v)     -> MetaWritten (after fsync)
    PersistLastApplied(i)   -> slog.persist_last_applied(i)
    WriteSnapshot(m, state) -> slog.write_snapshot(m, state)    -> SnapshotWritten
    WriteSnapshot(m, data=) -> slog.write_snapshot_image(m, data)
    InstallSnapshotRpc      -> slog.accept_snapshot_chunk(m, n, data, last)
    SendSnapshotChunk       -> slog.read_snapshot_chunk(m, n, size) -> (data, is_last)
    TruncateLogBelow(i)     -> slog.truncate_below(i)
    WriteCheckpoint(m, d)   -> slog.write_checkpoint_image(m, image)  -> CheckpointWritten
    PromoteCheckpoint(m)    -> slog.promote_checkpoint(m)       -> SnapshotWritten
    DeleteCheckpoints(ms)   -> slog.delete_checkpoints(ms)
    DeleteData              -> slog.delete()

Rules:

* The log is ``first_index .. last_index``: ``first_index`` is the snapshot
  index + 1 (1 without a snapshot); entries come from the mem table (this
  server's entries not yet in segments, newest) or from segments.  Mem-table
  entries supersede segment entries at and above the mem table's first
  index; a newer segment supersedes older ones at and above its first index.
* ``append`` takes consecutive entries starting anywhere in
  ``first_index .. last_index + 1``; starting at or below ``last_index`` is an
  overwrite that drops everything above.  Entries are msgpacked here, so the
  WAL process only checksums and writes.
* Every append tells the WAL where it stands (:mod:`.wal_sequence`): the
  term of the entry before it and the durable prefix (``last_written``,
  lowered first when the append replaces entries at or below it).  The
  WAL takes it only where it continues what the WAL holds of this log, so
  a lost write is resent instead of splicing two logs on disk.  The first
  append after the log is opened is also flagged an overwrite wherever it
  starts.
* ``last_written`` follows the WAL's reports, clipped to what is still in the
  log (an overwrite makes older reports partly stale), and only grows as a
  prefix: a report that overtook an earlier one waits for it.
* Installing a received snapshot keeps the entries after it only when the
  log holds the snapshot's (index, term) (Raft figure 13); otherwise the log
  restarts after the snapshot and the next append carries the WAL truncate
  flag.  After a crash such a restart is re-derived: entries after the
  snapshot whose term is below the snapshot's, or that break term order,
  are dropped with a warning.
* A server's entries not yet in segments are in the files of one WAL, the
  one its record names (:mod:`.wal_dirs`); a directory that holds another
  WAL or none is WalNotFound, never a log recovered without them.
* Recovery refuses to invent data: a hole between the snapshot and the last
  entry, or any checksum failure, is LogCorruption.  WAL files are read
  without modifying them; only the newest may end in a torn (in-flight)
  tail, damage in an older one is LogCorruption.  A ``last_applied`` hint
  above the recovered log is logged as a warning (applied entries missing).
* A snapshot transfer whose write fails (StorageError) is dropped with its
  partial file; the sender starts over from chunk 1.  File I/O goes through
  :mod:`.fileio`.
* Checkpoints live beside the snapshots; recovery hands the core those above
  the snapshot (metas) and the newest one with its state, and removes those
  at or below the snapshot (a crash between a snapshot and their deletion).
* Only the newest segment is never deleted by ``truncate_below`` (the segment
  writer may be extending it); older ones go once every entry they still
  hold is covered by the snapshot, oldest first.
"""
from __future__ import annotations

import bisect
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..codec import pack, unpack
from ..core.messages import CheckpointWritten, MetaWritten, SnapshotWritten, Written
from ..core.server import Recovered
from ..core.types import Entry, ServerConfig, ServerId, SnapshotMeta
from ..errors import LogCorruption, ServerAlreadyExists
import ra_actors.log.fileio as fileio
from .common import (LogUsageError, check_uid, checkpoints_dir, fsync_dir, list_numbered, remove_tree_durably,
                     segments_dir, server_dir, servers_dir, snapshots_dir, wal_dir as default_wal_dir)
from .config_store import config_path, load_config, save_config
from .meta import MetaStore
from .segment import SEGMENT_SUFFIX, Segment, SegmentRef, effective_ranges
from .snapshot import MAX_CHUNK_SIZE, CheckpointStore, SnapshotAcceptor, SnapshotStore
from .wal import WAL_SUFFIX
from .wal_dirs import assigned_wal_dir, check_wal_identity, record_assignment, same_dir
from .wal_format import scan_wal_file

__all__ = ["ServerLog", "WalAppend", "delete_server_data"]

log = logging.getLogger(__name__)

_MAX_OPEN_SEGMENTS = 16
# WAL reports kept while an earlier one has not arrived (see handle_written)
MAX_REPORTS_AHEAD = 64


@dataclass(frozen=True, slots=True)
class WalAppend:
    """What to hand the node's WAL for one ``append``::

        wal.append_run(a.uid, a.first_index, a.terms, a.payloads, truncate=a.truncate,
                       overwrite=a.overwrite, prev_term=a.prev_term, durable=a.durable)
    """

    uid: str
    first_index: int
    terms: tuple  # one per payload
    payloads: tuple  # msgpack of each entry's command
    truncate: bool = False
    overwrite: bool = False   # replaces entries this log held
    prev_term: int = 0        # term of entry first_index - 1 (the WAL's sequencing rule)
    durable: int = 0          # this log's durable prefix when it was made (likewise)

    @property
    def records(self) -> tuple:
        """``((index, term, payload), ...)``"""
        return tuple((self.first_index + k, t, p)
                     for k, (t, p) in enumerate(zip(self.terms, self.payloads)))

    def encode(self):
        """The WAL block body (:class:`~.wal.EncodedAppend`), computed here so the
        server's process pays for the crc32s; the WAL takes it with
        ``wal.append_encoded(...)``."""
        from .wal import Wal
        return Wal.encode_run(self.uid, self.first_index, self.terms, self.payloads,
                              truncate=self.truncate, overwrite=self.overwrite,
                              prev_term=self.prev_term, durable=self.durable)

    @classmethod
    def of(cls, uid: str, entries: Sequence[Entry], truncate: bool, overwrite: bool = False,
           prev_term: int = 0, durable: int = 0) -> "WalAppend":
        return cls(uid, entries[0].index, tuple(e.term for e in entries),
                   tuple(pack(e.command) for e in entries), truncate, overwrite, prev_term, durable)


@dataclass(slots=True)
class _Seg:
    number: int
    path: Path
    first: int
    last: int


def delete_server_data(data_dir: str | os.PathLike, uid: str) -> None:
    """Remove every file of server ``uid`` (crash-safe: rename away, fsync, delete)."""
    path = server_dir(data_dir, uid)
    remove_tree_durably(path)


class ServerLog:
    """Storage facade of one server (see the module docstring)."""

    # ------------------------------------------------------------ opening
    @classmethod
    def exists(cls, data_dir: str | os.PathLike, uid: str) -> bool:
        return config_path(data_dir, uid).exists()

    @classmethod
    def create(cls, data_dir: str | os.PathLike, config: ServerConfig,
               wal_dir: str | os.PathLike | None = None) -> "ServerLog":
        """Make a new server's directory and durable config, then open it.
        ``wal_dir``: the WAL it writes to, recorded first (:mod:`.wal_dirs`;
        None or ``<data_dir>/wal``: no record, which means that directory)."""
        check_uid(config.uid)
        if cls.exists(data_dir, config.uid):
            raise ServerAlreadyExists(f"server uid {config.uid} already has data in {data_dir}")
        fileio.mkdir(servers_dir(data_dir))
        if wal_dir is not None and not same_dir(wal_dir, default_wal_dir(data_dir)):
            # (no record is the default directory: nothing more to sync per new server there)
            record_assignment(data_dir, config.uid, wal_dir)
        save_config(data_dir, config)
        fsync_dir(servers_dir(data_dir))
        # new: nothing of it in the WAL
        return cls.open(data_dir, config.uid, read_wal=False, wal_dir=wal_dir)

    @classmethod
    def open(cls, data_dir: str | os.PathLike, uid: str, *, read_wal: bool = True,
             wal_dir: str | os.PathLike | None = None) -> "ServerLog":
        """Recover server ``uid`` from disk: meta, snapshot, segments and (with
        ``read_wal``) its entries still in its WAL's files, read without
        modifying them.  ``wal_dir``: where its WAL is (default: what its
        record says, :mod:`.wal_dirs`); WalNotFound if that directory holds
        another WAL or none."""
        return cls(data_dir, uid, read_wal=read_wal, wal_dir=wal_dir)

    def __init__(self, data_dir: str | os.PathLike, uid: str, *, read_wal: bool = True,
                 wal_dir: str | os.PathLike | None = None):
        self.data_dir = Path(data_dir)
        self.uid = check_uid(uid)
        self.dir = server_dir(self.data_dir, uid)
        if not self.dir.is_dir():
            raise LogUsageError(f"no server {uid} in {self.data_dir}")
        self.wal_dir = Path(wal_dir) if wal_dir is not None else assigned_wal_dir(self.data_dir, uid)
        if read_wal:
            check_wal_identity(self.data_dir, uid, self.wal_dir)
        self.config: ServerConfig | None = (load_config(self.data_dir, uid)
                                            if config_path(self.data_dir, uid).exists() else None)
        self.meta = MetaStore(self.dir)
        self.snapshots = SnapshotStore(snapshots_dir(self.data_dir, uid))
        latest = self.snapshots.latest()
        self.snapshot_meta: SnapshotMeta | None = latest[0] if latest else None
        self._recovered_state = latest  # handed out once by recovered()
        self.checkpoints = CheckpointStore(checkpoints_dir(self.data_dir, uid))
        self.checkpoints.remove_through(self.snapshot_index)
        self._acceptor: SnapshotAcceptor | None = None
        self._mem: list[Entry] = []
        self._mem_first = 0
        # Segment entries at or above this index are stale (the log restarted after
        # an installed snapshot) until our own entries from there reach segments.
        self._reset_ceiling: int | None = None
        self._open: dict[int, Segment] = {}
        self._segs: list[_Seg] = []
        self._eff: list[tuple[int, int, _Seg]] = []
        self._eff_los: list[int] = []
        # WAL files first, then segments: a WAL file flushed while we read it
        # then shows up in the segment listing, never in neither.
        if read_wal:
            self._load_wal_entries()
        self._load_segments()
        self._drop_flushed_mem()
        self._last_written = 0
        self._check_recovered_log()
        self._last_written = self.last_index
        self._ahead: list[tuple[int, int, int]] = []   # WAL reports above a hole (term, from, to)
        self._closed = False
        self._appended = False     # an append since opening (see the rules: the first overwrites)

    def _load_wal_entries(self) -> None:
        files = list_numbered(self.wal_dir, WAL_SUFFIX)
        for k, (_n, path) in enumerate(files):
            try:
                # Only the newest file (the live one) may end in an in-flight or
                # torn tail; in an older, closed file that is damage.
                scan = scan_wal_file(path, only_uid=self.uid, tail_ok=k == len(files) - 1)
            except FileNotFoundError:
                continue  # flushed to segments meanwhile
            for block in scan.blocks:
                if block.records:
                    entries = [Entry(r.index, r.term, unpack(r.payload)) for r in block.records]
                    self._mem_apply(entries, block.truncate)

    def _load_segments(self) -> None:
        segs = []
        for number, path in list_numbered(segments_dir(self.data_dir, self.uid), SEGMENT_SUFFIX):
            seg = Segment(path)  # validates header and index
            segs.append(_Seg(number, path, seg.first, seg.last))
            self._cache_segment(number, seg)
        self._segs = segs
        self._recompute_effective()

    def _check_recovered_log(self) -> None:
        """Walk the recovered log once: no holes, terms never decrease, nothing older
        than the snapshot's term after it (a log restart not yet in segments)."""
        first, last = self.first_index, self.last_index
        if last < first:
            return
        prev_term = self.snapshot_meta.term if self.snapshot_meta else 0
        index = first
        cut = None
        for entry in self._iter_terms(first, last):
            i, term = entry
            if i != index:
                raise LogCorruption(f"server {self.uid}: entries {index}..{i - 1} are missing "
                                    "between the snapshot and the end of the log", str(self.dir))
            if term < prev_term:
                cut = i
                break
            prev_term = term
            index += 1
        if cut is None and index <= last:
            raise LogCorruption(f"server {self.uid}: entries {index}..{last} are missing",
                                str(self.dir))
        if cut is not None:
            log.warning("server %s: entries %d..%d are older than the entries before them (a log "
                        "restarted after a snapshot): dropped", self.uid, cut, last)
            self._restart_log_at(cut)

    def _iter_terms(self, lo: int, hi: int):
        seg_hi = min(hi, self._seg_limit())
        for e_lo, e_hi, seg in self._eff:
            a, b = max(lo, e_lo), min(seg_hi, e_hi)
            if a > b:
                continue
            s = self._segment(seg)
            for i in range(a, b + 1):
                yield i, s.rows[i - s.first][1]
        if self._mem:
            for e in self._mem[max(0, lo - self._mem_first): hi - self._mem_first + 1]:
                yield e.index, e.term

    # ------------------------------------------------------------ segments
    def _cache_segment(self, number: int, seg: Segment) -> None:
        old = self._open.pop(number, None)
        if old is not None and old is not seg:
            old.close()
        self._open[number] = seg
        while len(self._open) > _MAX_OPEN_SEGMENTS:
            victim = next(iter(self._open))
            self._open.pop(victim).close()

    def _segment(self, info: _Seg) -> Segment:
        seg = self._open.get(info.number)
        if seg is None:
            seg = Segment(info.path)
            self._cache_segment(info.number, seg)
        else:  # LRU order
            self._open[info.number] = self._open.pop(info.number)
        return seg

    def _recompute_effective(self) -> None:
        eff = effective_ranges([(s.first, s.last) for s in self._segs])
        pairs = sorted((r[0], r[1], s) for r, s in zip(eff, self._segs) if r is not None)
        self._eff = [(lo, hi, s) for lo, hi, s in pairs]
        self._eff_los = [p[0] for p in self._eff]

    def _seg_limit(self) -> int:
        """Highest index segments may still serve (mem table and log restarts supersede)."""
        limit = 1 << 63
        if self._mem:
            limit = self._mem_first - 1
        if self._reset_ceiling is not None:
            limit = min(limit, self._reset_ceiling - 1)
        return limit

    def _seg_lookup(self, index: int, limit: int | None = None) -> tuple[_Seg, Segment] | None:
        if limit is None:
            limit = self._seg_limit()
        if index > limit:
            return None
        k = bisect.bisect_right(self._eff_los, index) - 1
        if k < 0:
            return None
        lo, hi, info = self._eff[k]
        if index > hi:
            return None
        return info, self._segment(info)

    def _seg_last(self) -> int:
        limit = self._seg_limit()
        best = 0
        for lo, hi, _s in self._eff:
            if lo <= limit:
                best = max(best, min(hi, limit))
        return best

    def handle_segments(self, refs: Iterable[SegmentRef]) -> None:
        """The segment writer made these segments durable: serve reads from them and
        drop the mem-table entries they now hold."""
        changed = False
        for ref in refs:
            if ref.uid != self.uid:
                continue
            stale = self._open.pop(ref.number, None)
            if stale is not None:
                stale.close()
            for s in self._segs:
                if s.number == ref.number:
                    s.path, s.first, s.last = Path(ref.path), ref.first, ref.last
                    break
            else:
                self._segs.append(_Seg(ref.number, Path(ref.path), ref.first, ref.last))
                self._segs.sort(key=lambda s: s.number)
            changed = True
        if changed:
            self._recompute_effective()
            self._drop_flushed_mem()

    def _drop_flushed_mem(self) -> None:
        """Drop mem-table entries from the front while the segments hold the same
        (index, term) — by Raft's log matching, the same entries."""
        if not self._mem:
            return
        k = 0
        for e in self._mem:
            # The plain segment view, without mem-table or restart ceilings.
            hit = self._seg_lookup(e.index, 1 << 63)
            if hit is None or hit[1].term_at(e.index) != e.term:
                break
            k += 1
        if k:
            first = self._mem_first
            del self._mem[:k]
            self._mem_first += k
            if self._reset_ceiling is not None and first <= self._reset_ceiling < first + k:
                # Our own entries from the restart point are in segments now.
                self._reset_ceiling = None

    # ------------------------------------------------------------ positions
    @property
    def first_index(self) -> int:
        return self.snapshot_meta.index + 1 if self.snapshot_meta else 1

    @property
    def snapshot_index(self) -> int:
        return self.snapshot_meta.index if self.snapshot_meta else 0

    @property
    def last_index(self) -> int:
        if self._mem:
            return max(self._mem_first + len(self._mem) - 1, self.snapshot_index)
        return max(self._seg_last(), self.snapshot_index)

    @property
    def last_term(self) -> int:
        return self.fetch_term(self.last_index) or 0

    def last_index_term(self) -> tuple[int, int]:
        i = self.last_index
        return i, self.fetch_term(i) or 0

    @property
    def last_written(self) -> tuple[int, int]:
        """``(index, term)`` of the last entry the WAL reported durable."""
        i = min(self._last_written, self.last_index)
        return i, self.fetch_term(i) or 0

    def fetch_term(self, index: int) -> int | None:
        """Term of entry ``index``: the snapshot's term at its index, None below it
        or past the end."""
        snap = self.snapshot_meta
        if snap is not None and index <= snap.index:
            return snap.term if index == snap.index else None
        if index < 1:
            return 0 if index == 0 else None
        if self._mem and self._mem_first <= index < self._mem_first + len(self._mem):
            return self._mem[index - self._mem_first].term
        hit = self._seg_lookup(index)
        if hit is not None:
            return hit[1].term_at(index)
        return None

    # ------------------------------------------------------------ writes
    def _mem_apply(self, entries: Sequence[Entry], truncate: bool) -> None:
        first = entries[0].index
        mem = self._mem
        if truncate:
            mem.clear()
            self._reset_ceiling = first
        if not mem:
            mem.extend(entries)
            self._mem_first = first
            return
        mem_last = self._mem_first + len(mem) - 1
        if first < self._mem_first or first > mem_last + 1:
            mem.clear()
            mem.extend(entries)
            self._mem_first = first
            return
        del mem[first - self._mem_first:]
        mem.extend(entries)

    def _restart_log_at(self, index: int) -> None:
        """Everything at or above ``index`` is gone (until appended again)."""
        if self._mem:
            if index <= self._mem_first:
                self._mem.clear()
            else:
                del self._mem[index - self._mem_first:]
        self._reset_ceiling = index if self._reset_ceiling is None else min(index, self._reset_ceiling)

    def append(self, entries: Sequence[Entry]) -> WalAppend:
        """Add consecutive entries to the log (overwriting from their first index)."""
        self._check_open()
        if not entries:
            raise LogUsageError("append needs at least one entry")
        first = entries[0].index
        for k, e in enumerate(entries):
            if not isinstance(e, Entry):
                raise LogUsageError(f"append takes Entry objects, not {type(e).__name__}")
            if e.index != first + k:
                raise LogUsageError(f"entries must be consecutive ({e.index} at position {k} "
                                    f"after {first})")
        last = self.last_index
        if not self.first_index <= first <= last + 1:
            raise LogUsageError(f"append at {first} outside {self.first_index}..{last + 1} "
                                f"of server {self.uid}")
        prev_term = before = self.fetch_term(first - 1) or 0
        for e in entries:
            if e.term < prev_term:
                raise LogUsageError(f"entry {e.index} has term {e.term} below the previous "
                                    f"entry's {prev_term}")
            prev_term = e.term
        # An append at the first index rewrites the whole log after the snapshot:
        # the WAL truncate flag lets it through whatever the WAL saw of this writer
        # before (e.g. a log restarted after an installed snapshot).  One at or
        # below the last index replaces entries: the WAL takes it only so
        # flagged, so a lost overwrite cannot be followed by an append that
        # splices the old log's head to the new log's tail.
        if self._last_written >= first:
            self._last_written = first - 1
        req = WalAppend.of(self.uid, entries, first == self.first_index,
                           overwrite=first <= last or not self._appended, prev_term=before,
                           durable=self._last_written)
        self._appended = True
        self._mem_apply(entries, req.truncate)
        return req

    def resend_from(self, index: int) -> WalAppend:
        """Entries from ``index`` to the end again (after a WAL ``ResendWrite``)."""
        entries = self.read(index, self.last_index)
        if not entries:
            raise LogUsageError(f"nothing to resend from {index} (last index {self.last_index})")
        return WalAppend.of(self.uid, entries, index == self.first_index, overwrite=True,
                            prev_term=self.fetch_term(index - 1) or 0, durable=self._last_written)

    def handle_written(self, term: int, from_index: int, to_index: int) -> list[Written]:
        """Note a WAL report; return what it makes durable, as ``Written``
        messages for the core (the part still in the log; empty if none).

        Reports may overtake each other on the way from the WAL: one that
        starts above ``last_written + 1`` waits here (at most
        :data:`MAX_REPORTS_AHEAD` of them) until the reports below it arrive,
        since durability only counts as a prefix."""
        out: list[Written] = []
        msg = self._written(term, from_index, to_index)
        if msg is not None:
            out.append(msg)
        while self._ahead and msg is not None:
            ready = [r for r in self._ahead if r[1] <= self._last_written + 1]
            if not ready:
                break
            self._ahead = [r for r in self._ahead if r[1] > self._last_written + 1]
            for t, f, l in sorted(ready, key=lambda r: r[1]):
                msg = self._written(t, f, l)
                if msg is not None:
                    out.append(msg)
        return out

    def _written(self, term: int, from_index: int, to_index: int) -> Written | None:
        hi = min(to_index, self.last_index)
        if hi < from_index:
            return None
        if hi < self.first_index:
            # Already covered by a durable snapshot.
            self._last_written = max(self._last_written, hi)
            return Written(term, from_index, hi)
        from_index = max(from_index, self.first_index)
        if from_index > self._last_written + 1:
            self._ahead.append((term, from_index, to_index))
            if len(self._ahead) > MAX_REPORTS_AHEAD:
                # (the oldest is written again: the shell resends what the
                # WAL never reports)
                self._ahead.pop(0)
            return None
        if self.fetch_term(hi) != term:
            # Overwritten since: find the end of the run that still has ``term``
            # (terms never decrease, so the matching part is a prefix).
            lo = from_index
            if self.fetch_term(lo) != term:
                return None
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self.fetch_term(mid) == term:
                    lo = mid
                else:
                    hi = mid - 1
            hi = lo
        if hi > self._last_written:
            self._last_written = hi
        return Written(term, from_index, hi)

    def handle_flush_result(self, result) -> list:
        """All core messages for this server from a :class:`~.wal.FlushResult`."""
        out = []
        for msg in result.messages(self.uid):
            if isinstance(msg, Written):
                out.extend(self.handle_written(msg.term, msg.from_index, msg.to_index))
            else:
                out.append(msg)
        return out

    # ------------------------------------------------------------ reads
    def read(self, from_index: int, to_index: int) -> list[Entry]:
        """Entries ``from_index..to_index`` (``to_index`` clipped to the last index)."""
        self._check_open()
        if from_index < self.first_index:
            raise LogUsageError(f"index {from_index} is below the first index {self.first_index} "
                                f"of server {self.uid}")
        to_index = min(to_index, self.last_index)
        if from_index > to_index:
            return []
        out: list[Entry] = []
        seg_hi = min(to_index, self._seg_limit())
        i = from_index
        while i <= seg_hi:
            hit = self._seg_lookup(i)
            if hit is None:
                raise LogCorruption(f"server {self.uid}: entry {i} is in no segment",
                                    str(segments_dir(self.data_dir, self.uid)))
            info, seg = hit
            k = bisect.bisect_right(self._eff_los, i) - 1
            hi = min(seg_hi, self._eff[k][1])
            out.extend(Entry(idx, term, unpack(payload)) for idx, term, payload in seg.read(i, hi))
            i = hi + 1
        if i <= to_index:
            if not self._mem or i < self._mem_first:
                raise LogCorruption(f"server {self.uid}: entry {i} is neither in memory nor in a "
                                    "segment", str(self.dir))
            out.extend(self._mem[i - self._mem_first: to_index - self._mem_first + 1])
        return out

    def recovered(self) -> Recovered:
        """What the core needs to restart: meta, snapshot, the log after it."""
        snapshot = self._recovered_state
        self._recovered_state = None
        if snapshot is None and self.snapshot_meta is not None:
            snapshot = self.snapshots.latest()
        entries = tuple(self.read(self.first_index, self.last_index))
        if self.meta.last_applied > self.last_index:
            # The hint is written only for entries already durable here, so a log
            # ending below it lost applied entries: never pass that in silence.
            log.warning("server %s: the last_applied hint (%d) is above the last recoverable "
                        "index (%d): entries %d..%d were applied before but are not in the log "
                        "(see `ra-actors log check`)", self.uid, self.meta.last_applied,
                        self.last_index, self.last_index + 1, self.meta.last_applied)
        last_applied = min(self.meta.last_applied, self.last_index)
        cps = tuple(c for c in self.checkpoints.metas() if c.index > self.snapshot_index)
        newest = self.checkpoints.read(cps[-1]) if cps else None
        return Recovered(self.meta.current_term, self.meta.voted_for, last_applied, snapshot, entries,
                         cps, newest)

    # ------------------------------------------------------------ checkpoints
    def write_checkpoint_image(self, meta: SnapshotMeta, image: bytes) -> CheckpointWritten:
        """Durably keep checkpoint ``meta`` (a snapshot file image); the log is untouched."""
        self._check_open()
        if meta.index > self.last_index:
            raise LogUsageError(f"checkpoint at {meta.index} is beyond the last index {self.last_index}")
        self.checkpoints.write_image(meta, image)
        return CheckpointWritten(meta)

    def promote_checkpoint(self, meta: SnapshotMeta) -> SnapshotWritten:
        """Make checkpoint ``meta`` the snapshot (a rename); the log is
        untouched until ``truncate_below``."""
        self._check_open()
        self.checkpoints.promote(meta, self.snapshots)
        self._installed(meta)
        return SnapshotWritten(meta)

    def delete_checkpoints(self, metas: Iterable[SnapshotMeta]) -> None:
        self._check_open()
        for meta in metas:
            self.checkpoints.remove(meta)
        fsync_dir(self.checkpoints.dir)

    # ------------------------------------------------------------ snapshots
    def latest_snapshot(self) -> tuple[SnapshotMeta, Any] | None:
        return self.snapshots.latest()

    def write_snapshot(self, meta: SnapshotMeta, state: Any) -> SnapshotWritten:
        """Durably store this server's own snapshot (entries stay until truncate_below)."""
        self._check_open()
        if meta.index > self.last_index:
            raise LogUsageError(f"snapshot at {meta.index} is beyond the last index {self.last_index}")
        self.snapshots.write(meta, state)
        if self.snapshot_meta is None or meta.index > self.snapshot_meta.index:
            self.snapshot_meta = meta   # (an older one is superseded: the store dropped it)
        return SnapshotWritten(meta)

    def write_snapshot_image(self, meta: SnapshotMeta, data: bytes) -> SnapshotWritten:
        """Durably store a snapshot received from the leader (its file image)."""
        self._check_open()
        self.snapshots.write_image(meta, data)
        self._installed(meta)
        return SnapshotWritten(meta)

    def accept_snapshot_chunk(self, meta: SnapshotMeta, chunk_no: int, data: bytes,
                              last: bool) -> SnapshotWritten | None:
        """Feed one received chunk; returns SnapshotWritten once the last one is durable."""
        self._check_open()
        acc = self._acceptor
        if acc is None or (acc.meta.index, acc.meta.term) != (meta.index, meta.term):
            if acc is not None:
                acc.abort()
            if chunk_no != 1:
                raise LogUsageError(f"snapshot chunk {chunk_no} without chunk 1 first")
            acc = self._acceptor = self.snapshots.begin_accept(meta)
        try:
            done = acc.accept_chunk(chunk_no, data, last)
        except BaseException:
            # The acceptor aborted (partial file removed): the transfer starts
            # over from chunk 1 with a fresh one.
            self._acceptor = None
            raise
        if not done:
            return None
        self._acceptor = None
        self._installed(meta)
        return SnapshotWritten(meta)

    def _installed(self, meta: SnapshotMeta) -> None:
        if self.snapshot_meta is not None and meta.index <= self.snapshot_meta.index:
            return  # superseded: the store kept the newer snapshot
        keep = meta.index <= self.last_index and self.fetch_term(meta.index) == meta.term
        self.snapshot_meta = meta
        if not keep:
            self._restart_log_at(meta.index + 1)
            self._last_written = meta.index
        elif self._last_written < meta.index:
            self._last_written = meta.index

    def read_snapshot_chunk(self, meta: SnapshotMeta, chunk_no: int,
                            chunk_size: int = MAX_CHUNK_SIZE) -> tuple[bytes, bool]:
        return self.snapshots.read_chunk(meta, chunk_no, min(chunk_size, MAX_CHUNK_SIZE))

    def truncate_below(self, index: int) -> list[SegmentRef]:
        """Delete whole segments (never the newest) whose remaining entries are all
        ``<= index``; ``index`` must be covered by a durable snapshot."""
        self._check_open()
        if index > self.snapshot_index:
            raise LogUsageError(f"truncate below {index} but the snapshot is at {self.snapshot_index}")
        eff = effective_ranges([(s.first, s.last) for s in self._segs])
        doomed = [s for s, r in zip(self._segs[:-1], eff[:-1]) if r is None or r[1] <= index]
        deleted = []
        for s in doomed:  # oldest first: a crash midway never resurrects superseded entries
            seg = self._open.pop(s.number, None)
            if seg is not None:
                seg.close()
            fileio.unlink(s.path, missing_ok=True)
            deleted.append(SegmentRef(self.uid, s.number, s.path, s.first, s.last))
        if deleted:
            fsync_dir(segments_dir(self.data_dir, self.uid))
            gone = {s.number for s in doomed}
            self._segs = [s for s in self._segs if s.number not in gone]
            self._recompute_effective()
        return deleted

    # ------------------------------------------------------------ meta
    @property
    def current_term(self) -> int:
        return self.meta.current_term

    @property
    def voted_for(self) -> ServerId | None:
        return self.meta.voted_for

    @property
    def last_applied(self) -> int:
        return self.meta.last_applied

    def persist_meta(self, term: int, voted_for: ServerId | None) -> MetaWritten:
        """Durable before it returns: only then may the core grant the vote."""
        self.meta.store(term, voted_for)
        return MetaWritten(term, self.meta.voted_for)

    def persist_last_applied(self, index: int) -> None:
        # Never claim more than is durable locally (as Ra caps at last_written).
        self.meta.store_last_applied(max(0, min(index, self.last_written[0])))

    def save_config(self, config: ServerConfig) -> None:
        if config.uid != self.uid:
            raise LogUsageError(f"config is for uid {config.uid}, not {self.uid}")
        save_config(self.data_dir, config)
        self.config = config

    def machine_dir(self) -> str:
        """``<server dir>/machine``, created if missing: a disk machine's
        files (what is in it is the machine's business; it goes with the
        server's data)."""
        path = self.dir / "machine"
        if not path.is_dir():
            fileio.mkdir(path)
            fsync_dir(self.dir)
        return str(path)

    # ------------------------------------------------------------ lifecycle
    def overview(self) -> dict:
        return {"uid": self.uid, "wal_dir": str(self.wal_dir),
                "first_index": self.first_index, "last_index": self.last_index,
                "last_written_index": self.last_written[0], "snapshot_index": self.snapshot_index,
                "checkpoints": [i for i, _t, _p in self.checkpoints._files()],
                "mem_table_entries": len(self._mem), "segments": len(self._segs),
                "current_term": self.current_term, "last_applied": self.last_applied}

    def _check_open(self) -> None:
        if getattr(self, "_closed", False):
            raise LogUsageError(f"server log {self.uid} is closed")

    def close(self) -> None:
        self._closed = True
        if self._acceptor is not None:
            self._acceptor.abort()
            self._acceptor = None
        for seg in self._open.values():
            seg.close()
        self._open.clear()

    def delete(self) -> None:
        """Remove all of this server's data (the WAL drops its records at the next flush)."""
        self.close()
        delete_server_data(self.data_dir, self.uid)

    def __enter__(self) -> "ServerLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
