"""Ra's storage for one node, as plain Python (no Thespian here).

One write-ahead log per WAL directory (one by default), each shared by the
servers assigned to it, per-server segment
files, snapshots, durable Raft metadata and server configs, with crash
recovery that never loses an acknowledged entry and never skips a corrupt
one.  The runtime's WAL, segment-writer and snapshot-writer actors drive
these classes; each module's docstring states its rules:

* :mod:`.common`         layout of the data directory, durable file helpers
* :mod:`.fileio`         the one seam for file I/O (StorageError; fault injection for tests)
* :mod:`.lock`           the data-directory lock (one WAL per directory)
* :mod:`.wal_format`     WAL file format and the validating scanner
* :mod:`.wal`            :class:`Wal`: batched write + one sync, gap detection, rollover
* :mod:`.wal_dirs`       a node's WAL directories and which one each server writes to
* :mod:`.segment`        segment file format, :class:`Segment` reader
* :mod:`.segment_writer` :class:`SegmentWriter`: closed WAL files -> segments
* :mod:`.snapshot`       :class:`SnapshotStore`, chunked transfer
* :mod:`.meta`           :class:`MetaStore`: term, vote (fsynced), last_applied
* :mod:`.config_store`   persisted ServerConfig, listing of a node's servers
* :mod:`.server_log`     :class:`ServerLog`: the per-server facade the shell uses
* :mod:`.integrity`      what snapshot + segments + WAL add up to: range, holes, overwrites
* :mod:`.options`        the node's ``log_options``: unknown keys refused
* :mod:`.recovery`       :func:`recover_node`: node start in the right order
* :mod:`.tools`          ``ra-actors log check`` / ``dump``

Nothing on disk is ever unpickled: payloads, metadata and configs are msgpack
(:mod:`ra_actors.codec`), every record carries a crc32.  Bad bytes are
:class:`ra_actors.errors.LogCorruption` naming the file and offset (only the
newest WAL file's torn tail is ever repaired); a disk that refuses an
operation is :class:`ra_actors.errors.StorageError`, and a failed write or
sync is never retried on the same file.
"""
from .common import LogUsageError, SnapshotNotFound
from .config_store import list_configs, load_config, save_config
from .lock import DataDirLock
from .meta import MetaStore
from .recovery import NodeStorage, recover_node, recover_node_with_options
from .segment import Segment, SegmentRef
from .segment_writer import SegmentFlush, SegmentWriter
from .server_log import ServerLog, WalAppend, delete_server_data
from .snapshot import MAX_CHUNK_SIZE, SnapshotAcceptor, SnapshotStore
from .wal import FlushResult, Wal
from .wal_format import scan_wal_file

__all__ = [
    "LogUsageError", "SnapshotNotFound", "list_configs", "load_config", "save_config",
    "DataDirLock", "MetaStore", "NodeStorage", "recover_node", "recover_node_with_options", "Segment", "SegmentRef",
    "SegmentFlush", "SegmentWriter", "ServerLog", "WalAppend", "delete_server_data",
    "MAX_CHUNK_SIZE", "SnapshotAcceptor", "SnapshotStore", "FlushResult", "Wal", "scan_wal_file",
]
