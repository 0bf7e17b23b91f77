"""The node's write-ahead log: one file stream shared by every server on the node.

API (what the runtime's WAL actor calls)::

    wal = Wal(data_dir, sync_method="datasync", max_size_bytes=256_000_000)
    wal.pending_files           # WAL files left by an earlier life: flush them
                                # to segments (SegmentWriter) before servers start;
                                # recover_node does it before the Wal opens, so the
                                # newest old file (the only one that may be torn)
                                # is still the newest when it is read
    wal.append(uid, [(index, term, payload_bytes), ...], truncate=False, overwrite=False,
               prev_term=None, durable=0)     # where the write stands: see Sequencing
    wal.append_entries(uid, [Entry, ...], truncate=False)   # packs commands
    wal.append_run(uid, first_index, terms, payloads)  # columns: terms an int or a sequence
    enc = Wal.encode_run(...); wal.append_encoded(enc)  # encode anywhere, queue later
    result = wal.flush()        # ONE write + ONE sync for everything appended
    result.written              # {uid: ((term, from_index, to_index), ...)} now durable
    result.resend               # {uid: first_missing_index} writers with a gap
    result.closed_files         # files closed by a rollover: hand to the segment writer
    result.messages(uid)        # [Written(...), ResendWrite(...)] for that server's core
    result = wal.write_batch([(uid, entries), (uid, entries, truncate, overwrite), ...])  # append + flush
    wal.roll_over(); wal.forget_writer(uid); wal.close()

Rules:

* ``append*`` only encodes (msgpack payloads, crc32s, record table) and
  queues; it is safe from any thread.  Encoding is a pure function
  (``Wal.encode_run``), so a server's process can do it and the WAL process
  just verifies the record table (``append_encoded``): the per-record crc32
  is the dominant CPU cost.  ``flush`` takes everything queued, decides
  sequencing, does one gather write and one ``fdatasync``/``fsync``/nothing
  (``sync_method``), then reports.  Flushes are serialised by a lock, so an
  actor may run ``flush`` in a background thread while its own thread keeps
  appending (that overlap is where batching comes from: everything appended
  during one sync goes into the next one).
* Entries of one ``append`` are consecutive; a taken append replaces
  whatever the writer wrote from its first index (the later record wins).
* Sequencing (:mod:`.wal_sequence`): each write carries the writer's life
  (``writer``: a server's incarnation), the term of the entry before it in
  the writer's log (``prev_term``) and the writer's durable prefix
  (``durable``); the WAL takes it only where it continues what the WAL
  holds of that writer, the way a follower checks AppendEntries, so a
  lost write (an overwrite above all) can never leave the old log's head
  spliced to the new log's tail.  A write it refuses is dropped and the
  writer asked once to resend (``result.resend``, Ra's ``resend_write``);
  the writer resends from there or from its own durable prefix, whichever
  is lower.  ``truncate=True`` (first entry after an installed snapshot)
  is taken anywhere and restarts the writer's sequence.
* ``written`` ranges are the writer's final state after the batch (a
  later overwrite in the same batch trims earlier ranges), one range per
  contiguous run of one term, in index order.
* After a write the file rolls over once it is at least ``max_size_bytes``
  long; the closed file is complete and synced.  The segment writer deletes
  it once its entries are durable in segments.
* The WAL holds the data directory's exclusive lock (:mod:`.lock`), or its
  own directory's when that is not ``<data_dir>/wal`` (a node with several
  WALs, :mod:`.wal_dirs`: each is a ``Wal`` of its own, with its own files,
  batches and syncs).  It makes the directory's ``WAL_ID`` when there is none.
* A failed write or sync raises :class:`ra_actors.errors.StorageError`
  (path and errno) and the WAL is dead from then on: every later
  ``append*``/``flush``/``roll_over`` raises StorageError too, nothing of the
  failed batch is ever reported written, and the sync is never retried on
  that descriptor (after a failed ``fsync`` Linux may have dropped the dirty
  pages, so a second ``fsync`` could succeed with the data lost: the
  "fsyncgate" lesson).  The file is cut back to the length the last
  successful sync covered (``ftruncate``, best effort: ``unsynced_kept``
  says when that failed too): the page cache may still hold the failed
  batch while the disk does not, and a reader (recovery) must not take it
  for durable entries.  The runtime reopens the node's log, which runs
  recovery (:mod:`.recovery`): it trusts only what it reads back and
  verifies, and writers resend the rest.
* File I/O goes through :mod:`.fileio` (where tests inject faults).
"""
from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..codec import pack
from ..core.messages import ResendWrite, Written
from ..errors import StorageError
import ra_actors.log.fileio as fileio
from .common import (SYNC_METHODS, LogUsageError, check_uid, crc32, list_numbered, numbered_name,
                     wal_dir as default_wal_dir, wal_lock_path)
from .lock import DataDirLock
from .wal_dirs import ensure_wal_id
from .wal_sequence import WalSequencer, term_runs
from .wal_format import (BLOCK, FLAG_TRUNCATE, KIND_REF, KIND_UID, ROW_SIZE, U32, UID_LEN,
                         encode_table, file_header, table_columns)

__all__ = ["Wal", "FlushResult", "EncodedAppend", "DEFAULT_MAX_SIZE_BYTES", "MIN_MAX_SIZE_BYTES"]

DEFAULT_MAX_SIZE_BYTES = 256_000_000  # Ra's WAL_DEFAULT_MAX_SIZE_BYTES
MIN_MAX_SIZE_BYTES = 1024
WAL_SUFFIX = ".wal"


@dataclass(frozen=True, slots=True)
class EncodedAppend:
    """One append encoded as a WAL block body: record table and payloads.

    Made by :meth:`Wal.encode_run` / :meth:`Wal.encode` (pure functions: a
    server process can do this work and send the result to the WAL process).
    """

    uid: str
    first: int
    count: int
    truncate: bool
    table: bytes  # record table (see wal_format)
    table_crc: int
    blob: bytes  # the payloads, concatenated
    overwrite: bool = False  # replaces entries the writer wrote before (see the module rules)
    prev_term: int | None = None  # term of entry first - 1 in the writer's log (:mod:`.wal_sequence`)
    durable: int = 0         # the writer's durable prefix (:mod:`.wal_sequence`)

    @property
    def last(self) -> int:
        return self.first + self.count - 1


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What one flush made durable (see the module rules)."""

    written: dict = field(default_factory=dict)  # uid -> ((term, from, to), ...)
    resend: dict = field(default_factory=dict)  # uid -> first missing index
    dropped: dict = field(default_factory=dict)  # uid -> records dropped (out of sequence)
    closed_files: tuple = ()  # Paths of WAL files closed by a rollover
    records: int = 0
    bytes: int = 0
    synced: bool = False  # a write + sync happened

    def messages(self, uid: str) -> list:
        """The core messages for server ``uid``: ``Written`` per range, then ``ResendWrite``."""
        out: list = [Written(t, f, l) for t, f, l in self.written.get(uid, ())]
        if uid in self.resend:
            out.append(ResendWrite(self.resend[uid]))
        return out


_EMPTY = FlushResult()


def _merge_runs(runs: list, new_runs: tuple, first: int) -> None:
    # An overwrite at ``first`` invalidates everything at or above it.
    while runs and runs[-1][2] >= first:
        term, lo, hi = runs.pop()
        if lo < first:
            runs.append((term, lo, first - 1))
            break
    for term, lo, hi in new_runs:
        if runs and runs[-1][0] == term and runs[-1][2] + 1 == lo:
            runs[-1] = (term, runs[-1][1], hi)
        else:
            runs.append((term, lo, hi))


_known_uids: set[str] = set()


def _check_uid_cached(uid: str) -> None:
    if uid not in _known_uids:
        check_uid(uid)
        if len(_known_uids) < 100_000:
            _known_uids.add(uid)


def _encode(uid: str, first: int, terms, payloads: Sequence[bytes], truncate: bool,
            overwrite: bool = False, prev_term: int | None = None,
            durable: int = 0) -> tuple[EncodedAppend, tuple]:
    """Encode an append; return it with its term runs."""
    _check_uid_cached(uid)
    if not isinstance(first, int) or first < 1:
        raise LogUsageError(f"entry indexes start at 1, got {first!r}")
    n = len(payloads)
    if n == 0:
        raise LogUsageError("an append needs at least one record")
    if isinstance(terms, int):
        runs = ((terms, first, first + n - 1),)
    else:
        if len(terms) != n:
            raise LogUsageError(f"{len(terms)} terms for {n} payloads")
        runs = term_runs(first, terms)
    try:
        table = encode_table(first, terms, payloads)
        blob = b"".join(payloads)
    except (TypeError, OverflowError, struct.error):
        raise LogUsageError("payloads must be bytes, terms and indexes non-negative 64-bit "
                            "integers") from None
    if prev_term is not None and (not isinstance(prev_term, int) or prev_term < 0):
        raise LogUsageError(f"prev_term must be a non-negative int or None, not {prev_term!r}")
    if not isinstance(durable, int) or durable < 0:
        raise LogUsageError(f"durable must be a non-negative int, not {durable!r}")
    return EncodedAppend(uid, first, n, bool(truncate), table, crc32(table), blob, bool(overwrite),
                         prev_term, durable), runs


def _columns(records: Sequence[tuple[int, int, bytes]]) -> tuple[int, tuple, tuple]:
    """``(first_index, terms, payloads)`` of ``(index, term, payload)`` records."""
    if not records:
        raise LogUsageError("nothing to encode")
    try:
        indexes, terms, payloads = zip(*records)
    except (TypeError, ValueError):
        raise LogUsageError("records must be (index, term, payload) tuples") from None
    first = indexes[0]
    if not isinstance(first, int) or indexes != tuple(range(first, first + len(indexes))):
        raise LogUsageError(f"records of one append must have consecutive indexes (from {first!r})")
    return first, terms, payloads


def _verify(enc: EncodedAppend) -> tuple:
    """Check an EncodedAppend from elsewhere keeps the file parseable; return its term runs."""
    if not isinstance(enc, EncodedAppend):
        raise LogUsageError(f"expected an EncodedAppend, not {type(enc).__name__}")
    _check_uid_cached(enc.uid)
    n = enc.count
    if (not isinstance(enc.first, int) or enc.first < 1 or not isinstance(n, int) or n < 1
            or len(enc.table) != n * ROW_SIZE or crc32(enc.table) != enc.table_crc):
        raise LogUsageError(f"malformed EncodedAppend for {enc.uid}: table does not match")
    indexes, terms, lengths, _crcs = table_columns(enc.table, n)
    if indexes[0] != enc.first or indexes[-1] != enc.last or sum(lengths) != len(enc.blob):
        raise LogUsageError(f"malformed EncodedAppend for {enc.uid}: indexes or lengths do not match")
    if ((enc.prev_term is not None and (type(enc.prev_term) is not int or enc.prev_term < 0))
            or type(enc.durable) is not int or enc.durable < 0):
        raise LogUsageError(f"malformed EncodedAppend for {enc.uid}: prev_term or durable is not an index")
    return term_runs(enc.first, terms)


class Wal:
    """The node's shared write-ahead log (see the module docstring)."""

    def __init__(self, data_dir: str | os.PathLike, *, sync_method: str = "datasync",
                 max_size_bytes: int = DEFAULT_MAX_SIZE_BYTES, lock: DataDirLock | None = None,
                 number_after: int = 0, wal_dir: str | os.PathLike | None = None):
        """``number_after``: number new files above this one even if no older file is
        left (recovery deletes the files it flushed before the WAL opens, and a
        file number is never reused: a stale hand-over of an old file's path
        must not name a live file).  ``wal_dir``: the WAL's directory, when it
        is not ``<data_dir>/wal`` (a node with several WALs, :mod:`.wal_dirs`)."""
        if sync_method not in SYNC_METHODS:
            raise LogUsageError(f"sync_method must be one of {SYNC_METHODS}, not {sync_method!r}")
        if not isinstance(max_size_bytes, int) or max_size_bytes < MIN_MAX_SIZE_BYTES:
            raise LogUsageError(f"max_size_bytes must be an int >= {MIN_MAX_SIZE_BYTES}")
        self.data_dir = Path(data_dir)
        self.dir = Path(wal_dir) if wal_dir is not None else default_wal_dir(self.data_dir)
        self.sync_method = sync_method
        self.max_size_bytes = max_size_bytes
        self._own_lock = lock is None
        self._lock_obj = lock if lock is not None else DataDirLock(self.data_dir,
                                                                   wal_lock_path(self.data_dir, self.dir))
        self._lock = threading.Lock()  # guards _pending
        self._flush_lock = threading.RLock()  # serialises flush / roll_over / close
        self._pending: list[tuple[EncodedAppend, tuple, int]] = []  # (append, term runs, writer life)
        self._sequencer = WalSequencer()   # what the WAL knows of each writer
        self._fd: int | None = None
        self._failed: StorageError | None = None
        # After a failure: (path, synced length) when the unsynced tail could
        # not be cut off (see the module rules), else None.
        self.unsynced_kept: tuple[str, int] | None = None
        self.stats = {"files": 0, "batches": 0, "records": 0, "bytes_written": 0, "syncs": 0,
                      "dropped": 0}
        try:
            fileio.mkdir(self.dir)
            self.id = ensure_wal_id(self.dir)
            existing = list_numbered(self.dir, WAL_SUFFIX)
            # Files of an earlier life: never appended to again; the segment writer
            # moves them to segments (in this order) and deletes them.
            self.pending_files: tuple[Path, ...] = tuple(p for _, p in existing)
            self._number = max(existing[-1][0] if existing else 0, number_after)
            self._open_next()
        except BaseException:
            if self._own_lock:
                self._lock_obj.release()
            raise

    # ----------------------------------------------------------- files
    @property
    def path(self) -> Path:
        """The file currently written."""
        return self._path

    @property
    def current_size(self) -> int:
        return self._size

    def _open_next(self) -> None:
        self._number += 1
        self._path = self.dir / numbered_name(self._number, WAL_SUFFIX)
        try:
            fd = fileio.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            try:
                header = file_header()
                fileio.write_all(fd, header)
                fileio.sync_fd(fd, "sync" if self.sync_method != "none" else "none")
                if self.sync_method != "none":
                    fileio.fsync_dir(self.dir)
            except BaseException:
                fileio.close(fd)
                raise
        except StorageError as exc:
            # A file whose header or directory entry may not be durable is never
            # written to: the WAL is dead (see the module rules).
            self._failed = exc
            raise
        self._fd = fd
        self._size = len(header)
        self._refs: dict[str, int] = {}
        self._batch = 0
        self.stats["files"] += 1

    def roll_over(self) -> Path | None:
        """Close the current file (if it holds any record) and start a new one.

        Returns the closed file, for the segment writer.  Appends still queued
        go into the new file at the next flush.
        """
        with self._flush_lock:
            self._check_usable()
            if self._batch == 0:
                return None
            closed = self._path
            fd, self._fd = self._fd, None
            try:
                fileio.close(fd)
            except StorageError as exc:
                self._failed = exc
                raise
            self._open_next()
            return closed

    @property
    def failed(self) -> StorageError | None:
        """The StorageError that killed this WAL, or None."""
        return self._failed

    def _raise_failed(self) -> None:
        f = self._failed
        raise StorageError(f"the WAL failed earlier and refuses further work ({f}); nothing "
                           "of the failed batch was reported written: reopen the node's log "
                           "(recovery keeps only what it can verify)", f.path, f.errno, f.op)

    def _check_usable(self) -> None:
        if self._failed is not None:
            self._raise_failed()
        if self._fd is None:
            raise LogUsageError("the WAL is closed")

    # ----------------------------------------------------------- writes
    # ``prev_term`` and ``durable`` say where a write stands in the writer's
    # log (:mod:`.wal_sequence`); every server's log gives them.
    def append(self, uid: str, records: Sequence[tuple[int, int, bytes]], *,
               truncate: bool = False, overwrite: bool = False, prev_term: int | None = None,
               durable: int = 0) -> None:
        """Queue consecutive ``(index, term, payload)`` records of writer ``uid``."""
        if records:
            self._queue(*_encode(uid, *_columns(records), truncate, overwrite, prev_term, durable))

    def append_run(self, uid: str, first_index: int, terms, payloads: Sequence[bytes], *,
                   truncate: bool = False, overwrite: bool = False, prev_term: int | None = None,
                   durable: int = 0) -> None:
        """Queue records ``first_index, first_index + 1, ...`` with these payloads;
        ``terms`` is one int for all or one per payload.  The fastest form."""
        if payloads:
            self._queue(*_encode(uid, first_index, terms, payloads, truncate, overwrite, prev_term,
                                 durable))

    def append_entries(self, uid: str, entries: Sequence, *, truncate: bool = False,
                       overwrite: bool = False, prev_term: int | None = None,
                       durable: int = 0) -> None:
        """Queue consecutive :class:`~ra_actors.core.types.Entry` objects (commands msgpacked)."""
        if entries:
            first = entries[0].index
            if any(e.index != first + k for k, e in enumerate(entries)):
                raise LogUsageError(f"entries of one append must have consecutive indexes "
                                    f"(from {first})")
            self._queue(*_encode(uid, first, [e.term for e in entries],
                                 [pack(e.command) for e in entries], truncate, overwrite, prev_term,
                                 durable))

    @staticmethod
    def encode(uid: str, records: Sequence[tuple[int, int, bytes]], *,
               truncate: bool = False, overwrite: bool = False, prev_term: int | None = None,
               durable: int = 0) -> EncodedAppend:
        """Encode without queueing (pure: any thread or process may do it)."""
        return _encode(uid, *_columns(records), truncate, overwrite, prev_term, durable)[0]

    @staticmethod
    def encode_run(uid: str, first_index: int, terms, payloads: Sequence[bytes], *,
                   truncate: bool = False, overwrite: bool = False, prev_term: int | None = None,
                   durable: int = 0) -> EncodedAppend:
        """:meth:`append_run`'s encoding without queueing."""
        return _encode(uid, first_index, terms, payloads, truncate, overwrite, prev_term, durable)[0]

    def append_encoded(self, encoded: EncodedAppend, writer: int = 0) -> None:
        """Queue an :meth:`encode_run` result for the next flush (thread-safe).

        The record table and sizes are verified (cheap: no payload is read), so a
        bad producer cannot make the file unparseable; payload crcs are the
        producer's and are checked at recovery.  ``writer``: the writer's
        life (a server's incarnation, growing with each restart of it): see
        the sequencing rules."""
        runs = _verify(encoded)
        self._queue(encoded, runs, writer)

    def _queue(self, encoded: EncodedAppend, runs: tuple, writer: int = 0) -> None:
        if self._failed is not None:
            self._raise_failed()
        with self._lock:
            self._pending.append((encoded, runs, writer))

    def flush(self) -> FlushResult:
        """Write everything appended so far with one write and one sync; report."""
        with self._flush_lock:
            if self._fd is None or self._failed is not None:
                self._check_usable()
            with self._lock:
                pending, self._pending = self._pending, []
            if not pending:
                return _EMPTY
            batch = self._batch + 1
            parts: list = []
            size = 0
            written: dict[str, list] = {}
            resend: dict[str, int] = {}
            dropped: dict[str, int] = {}
            records = 0
            refs = self._refs
            new_refs: dict[str, int] = {}
            admit = self._sequencer.admit
            for w, runs, life in pending:
                uid = w.uid
                first = w.first
                verdict = admit(uid, life, first, runs, prev_term=w.prev_term, durable=w.durable,
                                truncate=w.truncate, overwrite=w.overwrite)
                if not verdict.taken:
                    if verdict.resend_from is not None:
                        resend[uid] = verdict.resend_from
                    dropped[uid] = dropped.get(uid, 0) + w.count
                    continue
                resend.pop(uid, None)
                count = w.count
                flags = FLAG_TRUNCATE if w.truncate else 0
                ref = refs.get(uid) or new_refs.get(uid)
                if ref is None:
                    ref = len(refs) + len(new_refs) + 1
                    new_refs[uid] = ref
                    uid_bytes = uid.encode("utf-8")
                    head = (BLOCK.pack(KIND_UID, flags, ref, batch, count)
                            + UID_LEN.pack(len(uid_bytes)) + uid_bytes)
                else:
                    head = BLOCK.pack(KIND_REF, flags, ref, batch, count)
                parts += (head, U32.pack(crc32(head)), w.table, U32.pack(w.table_crc), w.blob)
                size += len(head) + len(w.table) + len(w.blob) + 8
                records += count
                run_list = written.get(uid)
                if run_list is None:
                    written[uid] = list(runs)
                else:
                    _merge_runs(run_list, runs, first)
            if dropped:
                self.stats["dropped"] += sum(dropped.values())
            if not parts:
                return FlushResult(resend=resend, dropped=dropped)
            self._write_and_sync(parts, size)
            if new_refs:
                refs.update(new_refs)
            self._batch = batch
            self._size += size
            st = self.stats
            st["batches"] += 1
            st["records"] += records
            st["bytes_written"] += size
            if self.sync_method != "none":
                st["syncs"] += 1
            closed: tuple = ()
            if self._size >= self.max_size_bytes:
                closed = (self.roll_over(),)
            return FlushResult({u: tuple(r) for u, r in written.items()}, resend, dropped, closed,
                               records, size, True)

    def _write_and_sync(self, parts: list, size: int) -> None:
        """One gather write + one sync; any failure kills the WAL (module rules)."""
        try:
            fileio.writev_all(self._fd, parts, size)
            fileio.sync_fd(self._fd, self.sync_method)
        except StorageError as exc:
            # Never retried, never reported written.
            self._failed = exc
            self._drop_unsynced()
            raise
        except BaseException as exc:
            # Interrupted mid-write: the file's tail is unknown, so it is dead too.
            self._failed = StorageError(f"write of {self._path} interrupted: {exc!r}",
                                        str(self._path), None, "write")
            self._drop_unsynced()
            raise

    def _drop_unsynced(self) -> None:
        """After a failed write or sync: cut the file back to what the last
        successful sync covered (see the module rules).  Not synced: the
        disk holds at most a torn or an unacknowledged batch there, which
        recovery of the newest file handles."""
        try:
            fileio.ftruncate(self._fd, self._size)
        except (StorageError, OSError):
            self.unsynced_kept = (str(self._path), self._size)

    def write_batch(self, batch: Iterable[tuple]) -> FlushResult:
        """``append_entries`` for each ``(uid, entries[, truncate[, overwrite]])``,
        then one ``flush``."""
        for uid, entries, *flags in batch:
            truncate, overwrite = (list(flags) + [False, False])[:2]
            self.append_entries(uid, entries, truncate=truncate, overwrite=overwrite)
        return self.flush()

    # ----------------------------------------------------------- writers
    def forget_writer(self, uid: str) -> None:
        """Drop ``uid``'s sequence state (server deleted, or its log restarted elsewhere)."""
        with self._flush_lock:
            self._sequencer.forget(uid)

    def last_writer_index(self, uid: str) -> int | None:
        return self._sequencer.last_index(uid)

    # ----------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Close the file and release the lock.  Queued, unflushed appends are
        discarded: they were never reported durable."""
        with self._flush_lock:
            fd, self._fd = self._fd, None
            with self._lock:
                self._pending.clear()
            try:
                if fd is not None:
                    try:
                        fileio.close(fd)
                    except StorageError:
                        if self._failed is None:
                            raise
            finally:
                if self._own_lock:
                    self._lock_obj.release()

    def __enter__(self) -> "Wal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
