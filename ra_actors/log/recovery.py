"""Node start: take the lock, move old WAL files into segments, check, open the WAL.

API::

    node = recover_node(data_dir, sync_method="datasync", wal_max_size_bytes=...)
    node = recover_node(data_dir, wal_dir=wdir)   # one WAL of a node with several (.wal_dirs)
    node.wal                     # the open Wal (holds the data-dir lock, or its directory's)
    node.segment_writer          # the SegmentWriter for closed WAL files
    node.warnings                # torn tails repaired, leftovers removed
    node.configs()               # every server configured on the node
    slog = node.open_server(uid) # a ServerLog recovered from disk alone
    node.write(...)/node.flush() # in-process driving (tests, tools, benchmarks)
    node.close()

Rules:

* Order matters and is fixed here: lock, remove crash leftovers, flush every
  old WAL file to segments in file order, check the result, and only then
  open the WAL (which starts a new file, numbered after the old ones, and
  never appends to an old file); then servers open.  Leftovers and flushes
  happen under the flush lock (:class:`.lock.FlushLock`): when a running
  node reopens its WAL, its segment writer may be moving a closed file.
* Only the newest old WAL file may have a torn tail (the batch being written
  when the node died, never acknowledged): its bytes are set aside in
  ``<name>.torn-<n>`` and truncated, with a warning.  Damage anywhere else
  (an older WAL file, a bad checksum with valid data after it) stops the
  start with LogCorruption naming the file and offset; nothing is truncated
  or deleted on a guess.
* Never a hole: a WAL run that would start above the end of a server's log
  is refused before anything is written (:mod:`.segment_writer`), and every
  server the flushes touched is checked to hold every index from its
  snapshot to its end (:func:`.integrity.check_contiguous`).
* A file operation the disk refuses (EIO, ENOSPC, EROFS, EACCES) raises
  StorageError and leaves every WAL file in place: recovery can run again
  once the disk is fixed, and it trusts only what it reads back and verifies
  (every checksum; runs re-written into fresh, freshly synced segments).
* Options: :func:`recover_node_with_options` takes a node's ``log_options``
  dict and refuses unknown keys (:mod:`.options`).
* One WAL at a time: a node with several WAL directories recovers each
  with its own ``recover_node(..., wal_dir=...)`` (its own lock, under the
  one flush lock), which flushes that directory's old files only.  Servers
  created through a ``NodeStorage`` are assigned to its WAL.
* After that, every durable entry of a server is in its segments or in the
  current file of its WAL, and ``ServerLog.open`` finds it.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core.types import ServerConfig
import ra_actors.log.fileio as fileio
from .common import list_numbered, remove_hidden_leftovers, servers_dir, wal_dir as default_wal_dir, wal_lock_path
from .config_store import list_configs
from .integrity import check_contiguous
from .lock import DataDirLock
from .options import check_log_options
from .segment_writer import (DEFAULT_SEGMENT_MAX_COUNT, DEFAULT_SEGMENT_MAX_SIZE_BYTES, SegmentFlush,
                             SegmentWriter)
from .server_log import ServerLog
from .wal import DEFAULT_MAX_SIZE_BYTES, WAL_SUFFIX, FlushResult, Wal

__all__ = ["recover_node", "recover_node_with_options", "NodeStorage"]

log = logging.getLogger(__name__)


@dataclass
class NodeStorage:
    """A node's open storage after recovery (see the module docstring)."""

    data_dir: Path
    wal: Wal
    segment_writer: SegmentWriter
    lock: DataDirLock
    recovered_flushes: tuple = ()
    warnings: list = field(default_factory=list)
    servers: dict = field(default_factory=dict)  # uid -> ServerLog opened through this object

    def configs(self) -> list[ServerConfig]:
        return list_configs(self.data_dir)

    def create_server(self, config: ServerConfig) -> ServerLog:
        slog = ServerLog.create(self.data_dir, config, wal_dir=self.wal.dir)
        self.servers[config.uid] = slog
        return slog

    def open_server(self, uid: str) -> ServerLog:
        slog = ServerLog.open(self.data_dir, uid)
        self.servers[uid] = slog
        return slog

    def delete_server(self, uid: str) -> None:
        slog = self.servers.pop(uid, None) or ServerLog.open(self.data_dir, uid, read_wal=False)
        slog.delete()
        self.wal.forget_writer(uid)

    def flush(self) -> tuple[FlushResult, dict]:
        """Flush the WAL, feed the results to the open ServerLogs, move closed
        WAL files to segments.  Returns ``(result, {uid: [core messages]})``."""
        result = self.wal.flush()
        messages = {uid: slog.handle_flush_result(result) for uid, slog in self.servers.items()
                    if uid in result.written or uid in result.resend}
        for path in result.closed_files:
            self.flush_segments(path)
        return result, messages

    def flush_segments(self, path: os.PathLike) -> SegmentFlush:
        flushed = self.segment_writer.flush_wal_file(path)
        for uid, refs in flushed.segments.items():
            slog = self.servers.get(uid)
            if slog is not None:
                slog.handle_segments(refs)
        return flushed

    def close(self) -> None:
        for slog in self.servers.values():
            slog.close()
        self.servers.clear()
        self.wal.close()
        self.lock.release()

    def __enter__(self) -> "NodeStorage":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def recover_node(data_dir: str | os.PathLike, *, sync_method: str = "datasync",
                 wal_max_size_bytes: int = DEFAULT_MAX_SIZE_BYTES,
                 segment_max_count: int = DEFAULT_SEGMENT_MAX_COUNT,
                 segment_max_size_bytes: int = DEFAULT_SEGMENT_MAX_SIZE_BYTES,
                 wal_dir: str | os.PathLike | None = None) -> NodeStorage:
    """Open a node's storage (see the module rules); LogCorruption or StorageError
    if it cannot be opened without guessing.  ``wal_dir``: the WAL to open
    (default ``<data_dir>/wal``)."""
    check_log_options({"sync_method": sync_method, "wal_max_size_bytes": wal_max_size_bytes,
                       "segment_max_entries": segment_max_count,
                       "segment_max_size_bytes": segment_max_size_bytes})
    data_dir = Path(data_dir)
    wdir = Path(wal_dir) if wal_dir is not None else default_wal_dir(data_dir)
    fileio.mkdir(data_dir)
    lock = DataDirLock(data_dir, wal_lock_path(data_dir, wdir))
    try:
        writer = SegmentWriter(data_dir, max_count=segment_max_count,
                               max_size_bytes=segment_max_size_bytes, wal_dirs=[wdir])
        with writer.lock:
            flushes, warnings, files = _flush_old_files(data_dir, writer, wdir)
        wal = Wal(data_dir, sync_method=sync_method, max_size_bytes=wal_max_size_bytes, lock=lock,
                  number_after=files[-1][0] if files else 0, wal_dir=wdir)
    except BaseException:
        lock.release()
        raise
    return NodeStorage(data_dir, wal, writer, lock, tuple(flushes), warnings)


def _flush_old_files(data_dir: Path, writer: SegmentWriter, wdir: Path) -> tuple[list, list, list]:
    """Leftovers out, every old WAL file of ``wdir`` into segments, the result
    checked (the caller holds the flush lock).  ``(flushes, warnings, files)``."""
    fileio.mkdir(servers_dir(data_dir))
    remove_hidden_leftovers(servers_dir(data_dir))
    fileio.mkdir(wdir)
    remove_hidden_leftovers(wdir)
    files = list_numbered(wdir, WAL_SUFFIX)
    warnings = []
    flushes = []
    touched: set[str] = set()
    # Every old WAL file goes to segments *before* a new one is created, so
    # the newest file on disk is still the one the last life was writing:
    # the only one whose tail may be torn.  (Creating the new file first
    # would make it the newest, and a crash then would leave the torn file
    # looking like a damaged closed one.)
    for k, (_n, path) in enumerate(files):
        flushed = writer.flush_wal_file(path, newest=k == len(files) - 1)
        flushes.append(flushed)
        touched.update(flushed.segments)
        if flushed.torn is not None:
            msg = (f"WAL {path}: torn tail at byte offset {flushed.torn.offset} "
                   f"({flushed.torn.dropped_bytes} bytes, {flushed.torn.reason}) truncated; it "
                   "was never acknowledged" + (f"; its bytes are kept in {flushed.aside}"
                                               if flushed.aside else ""))
            warnings.append(msg)
            log.warning(msg)
    # Never a hole: what the flushes produced must be contiguous.
    for uid in sorted(touched):
        check_contiguous(data_dir, uid)
    return flushes, warnings, files


def recover_node_with_options(data_dir: str | os.PathLike, options: dict | None,
                              wal_dir: str | os.PathLike | None = None) -> NodeStorage:
    """:func:`recover_node` from a node's ``log_options`` dict (unknown keys are
    refused, see :mod:`.options`)."""
    return recover_node(data_dir, wal_dir=wal_dir, **check_log_options(options))
