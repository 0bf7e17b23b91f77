"""Node start: take the lock, repair, move old WAL files into segments, open the WAL.

API::

    node = recover_node(data_dir, sync_method="datasync", wal_max_size_bytes=...)
    node.wal                     # the open Wal (holds the data-dir lock)
    node.segment_writer          # the SegmentWriter for closed WAL files
    node.warnings                # torn tails repaired, leftovers removed
    node.configs()               # every server configured on the node
    slog = node.open_server(uid) # a ServerLog recovered from disk alone
    node.write(...)/node.flush() # in-process driving (tests, tools, benchmarks)
    node.close()

Rules:

* Order matters and is fixed here: lock, remove crash leftovers, open the WAL
  (which never appends to an old file), flush every old WAL file to segments
  in file order (each is validated: a torn tail is truncated with a warning,
  corruption stops the start with LogCorruption), then servers open.
* After that, every durable entry of a server is in its segments or in the
  current WAL file, and ``ServerLog.open`` finds it.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core.types import ServerConfig
from .common import remove_hidden_leftovers, servers_dir
from .config_store import list_configs
from .lock import DataDirLock
from .segment_writer import (DEFAULT_SEGMENT_MAX_COUNT, DEFAULT_SEGMENT_MAX_SIZE_BYTES, SegmentFlush,
                             SegmentWriter)
from .server_log import ServerLog
from .wal import DEFAULT_MAX_SIZE_BYTES, FlushResult, Wal

__all__ = ["recover_node", "NodeStorage"]

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
        slog = ServerLog.create(self.data_dir, config)
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
                 segment_max_size_bytes: int = DEFAULT_SEGMENT_MAX_SIZE_BYTES) -> NodeStorage:
    data_dir = Path(data_dir)
    lock = DataDirLock(data_dir)
    try:
        servers_dir(data_dir).mkdir(parents=True, exist_ok=True)
        remove_hidden_leftovers(servers_dir(data_dir))
        wal = Wal(data_dir, sync_method=sync_method, max_size_bytes=wal_max_size_bytes, lock=lock)
        try:
            writer = SegmentWriter(data_dir, max_count=segment_max_count,
                                   max_size_bytes=segment_max_size_bytes)
            warnings = []
            flushes = []
            for path in wal.pending_files:
                flushed = writer.flush_wal_file(path)
                flushes.append(flushed)
                if flushed.torn is not None:
                    msg = (f"WAL {path}: torn tail at byte offset {flushed.torn.offset} "
                           f"({flushed.torn.dropped_bytes} bytes, {flushed.torn.reason}) truncated")
                    warnings.append(msg)
                    log.warning(msg)
            wal.pending_files = ()
        except BaseException:
            wal.close()
            raise
    except BaseException:
        lock.release()
        raise
    return NodeStorage(data_dir, wal, writer, lock, tuple(flushes), warnings)
