"""Shared pieces of the storage layer: directory layout, durable file I/O, errors.

Rules:

* Layout of a node's data directory (every path is built here, nowhere else)::

      <data_dir>/LOCK                                  exclusive lock of the node's WAL
                                                       (another WAL directory: <wal_dir>/LOCK)
      <data_dir>/FLUSH                                 lock held while WAL files move into segments
      <data_dir>/wal/<n:016d>.wal                      write-ahead log files, in order (the
                                                       default WAL directory; see .wal_dirs)
      <wal_dir>/WAL_ID                                 the WAL's identity (.wal_dirs)
      <data_dir>/servers/<uid>/config                  ServerConfig (msgpack, crc)
      <data_dir>/servers/<uid>/wal                     the WAL directory it writes to (.wal_dirs)
      <data_dir>/servers/<uid>/meta                    current_term + voted_for (durable)
      <data_dir>/servers/<uid>/last_applied            recovery hint (not fsynced)
      <data_dir>/servers/<uid>/segments/<n:016d>.segment
      <data_dir>/servers/<uid>/snapshots/<index:016x>_<term:016x>.snapshot

* Anything created, renamed or deleted is followed by an fsync of its
  directory before it is reported durable; replacing a file always goes
  through ``<name>.tmp`` + fsync + ``rename`` + directory fsync.
* Files whose name starts with ``.`` or ends in ``.tmp`` are leftovers of a
  crash mid-write: readers ignore them and owners delete them at open.
* Errors a caller can provoke with bad arguments are :class:`LogUsageError`;
  bad bytes on disk are :class:`ra_actors.errors.LogCorruption`; a file
  operation the disk refused (EIO, ENOSPC, EROFS, EACCES...) is
  :class:`ra_actors.errors.StorageError`.
* All file I/O goes through :mod:`.fileio` (the one seam where tests inject
  disk faults); the durable helpers here are built on it.
"""
from __future__ import annotations

import os
import re
import struct
import zlib
from pathlib import Path
from typing import Iterable

from ..errors import LogCorruption, RaError
import ra_actors.log.fileio as fileio

__all__ = [
    "LogUsageError", "SnapshotNotFound", "SYNC_METHODS", "check_uid", "wal_dir", "servers_dir",
    "server_dir", "segments_dir", "snapshots_dir", "checkpoints_dir", "lock_path", "flush_lock_path",
    "wal_lock_path",
    "numbered_name", "list_numbered", "probe_storage",
    "fsync_dir", "write_all", "writev_all", "sync_fd", "atomic_write", "read_checked_file", "encode_checked_file",
    "remove_tree_durably", "remove_hidden_leftovers", "iter_server_uids", "crc32",
]

crc32 = zlib.crc32

SYNC_METHODS = fileio.SYNC_METHODS

# A uid names a directory: keep it to a portable, shell-safe alphabet.
_UID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$")


class LogUsageError(RaError, ValueError):
    """A storage call got an argument it cannot honour (bad uid, chunk size, range...)."""


class SnapshotNotFound(RaError, LookupError):
    """The snapshot asked for is not (or no longer) on disk."""


def check_uid(uid: str) -> str:
    """Return ``uid`` if it can name a server directory, else raise LogUsageError."""
    if not isinstance(uid, str) or not _UID_RE.match(uid) or uid in (".", ".."):
        raise LogUsageError(f"invalid server uid {uid!r}: use 1-200 characters of [A-Za-z0-9_.-], "
                            "not starting with '.' or '-'")
    return uid


# ------------------------------------------------------------------ layout
def wal_dir(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / "wal"


def servers_dir(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / "servers"


def server_dir(data_dir: str | os.PathLike, uid: str) -> Path:
    return servers_dir(data_dir) / check_uid(uid)


def segments_dir(data_dir: str | os.PathLike, uid: str) -> Path:
    return server_dir(data_dir, uid) / "segments"


def snapshots_dir(data_dir: str | os.PathLike, uid: str) -> Path:
    return server_dir(data_dir, uid) / "snapshots"


def checkpoints_dir(data_dir: str | os.PathLike, uid: str) -> Path:
    return server_dir(data_dir, uid) / "checkpoints"


def lock_path(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / "LOCK"


def flush_lock_path(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / "FLUSH"


def wal_lock_path(data_dir: str | os.PathLike, wdir: str | os.PathLike) -> Path:
    """The lock of the WAL in ``wdir``: ``<data_dir>/LOCK`` for the default
    WAL directory (as before there were several), ``<wdir>/LOCK`` for any
    other, so that two nodes never write one WAL directory."""
    if os.path.realpath(wdir) == os.path.realpath(wal_dir(data_dir)):
        return lock_path(data_dir)
    return Path(wdir) / "LOCK"


PROBE_NAME = ".probe.tmp"   # hidden (never a server uid), and a leftover recovery removes


def probe_storage(data_dir: str | os.PathLike, size: int = 1 << 20, wal_dirs=None, servers: bool = True) -> None:
    """Whether the disk takes writes again: in each WAL directory
    (``wal_dirs``, default ``[<data_dir>/wal]``; ``[]``: none) and, with
    ``servers``, in the servers' directory, write ``size`` bytes to a file,
    sync it, remove it and sync the directory.  Raises StorageError naming
    what the disk refused (the file is removed if it can be)."""
    dirs = [Path(d) for d in (wal_dirs if wal_dirs is not None else [wal_dir(data_dir)])]
    for directory in dirs + ([servers_dir(data_dir)] if servers else []):
        _probe_directory(directory, size)


def _probe_directory(directory: Path, size: int) -> None:
    path = directory / PROBE_NAME
    fd = fileio.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        chunk = bytes(min(size, 1 << 16))
        left = size
        while left > 0:
            fileio.write_all(fd, chunk[:left])
            left -= len(chunk)
        fileio.sync_fd(fd, "datasync")
    finally:
        try:
            fileio.close(fd)
        finally:
            try:
                fileio.unlink(path, missing_ok=True)
            except RaError:
                pass
    fileio.fsync_dir(directory)


def numbered_name(number: int, suffix: str) -> str:
    """``numbered_name(3, ".wal") == "0000000000000003.wal"`` (sorts by name = by number)."""
    return f"{number:016d}{suffix}"


def list_numbered(directory: Path, suffix: str) -> list[tuple[int, Path]]:
    """``[(number, path), ...]`` of ``<16 digits><suffix>`` files, ascending."""
    out = []
    try:
        names = fileio.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        stem = name[: -len(suffix)] if name.endswith(suffix) else None
        if stem is not None and len(stem) == 16 and stem.isdigit():
            out.append((int(stem), directory / name))
    out.sort()
    return out


# ------------------------------------------------------------ durable I/O
# The primitives live in the I/O seam (:mod:`.fileio`); these names stay here
# for the modules and tests that import them from ``common``.
fsync_dir = fileio.fsync_dir
write_all = fileio.write_all
writev_all = fileio.writev_all
sync_fd = fileio.sync_fd


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data``: tmp file, (fsync), rename, (directory fsync).

    With ``durable=False`` the rename still makes the replacement atomic for
    readers, but a crash may leave the old file, the new one, or (on some
    file systems) an empty one: use it only for hints.  A failure raises
    :class:`~ra_actors.errors.StorageError` and leaves ``path`` as it was
    (the tmp file is removed); nothing is retried on the failed descriptor,
    a later call writes a fresh tmp file.
    """
    tmp = path.with_name(path.name + ".tmp")
    fd = fileio.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        try:
            fileio.write_all(fd, data)
            if durable:
                fileio.fsync(fd)
        finally:
            fileio.close(fd)
        fileio.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise
    if durable:
        fileio.fsync_dir(path.parent)


def _discard(path: Path) -> None:
    """Best-effort removal of a tmp file after a failed write (a leftover is
    removed at the next open anyway)."""
    try:
        fileio.unlink(path, missing_ok=True)
    except (OSError, RaError):
        pass


def remove_tree_durably(path: Path) -> None:
    """Delete directory ``path`` so that a crash never leaves half of it looking valid.

    The directory is first renamed to a hidden name (atomic), the parent is
    fsynced, then the hidden tree is removed.  Hidden leftovers are removed
    by :func:`remove_hidden_leftovers`.
    """
    if not path.exists():
        return
    hidden = path.with_name(f".deleted-{path.name}-{os.getpid()}-{id(path):x}")
    fileio.replace(path, hidden)
    fileio.fsync_dir(path.parent)
    fileio.rmtree(hidden)


def remove_hidden_leftovers(directory: Path) -> None:
    """Delete ``*.tmp`` files and ``.deleted-*`` trees left in ``directory`` by a crash."""
    try:
        names = fileio.listdir(directory)
    except FileNotFoundError:
        return
    removed = False
    for name in names:
        p = directory / name
        if name.startswith(".deleted-"):
            fileio.rmtree(p)
            removed = True
        elif name.endswith(".tmp") or name.startswith(".partial-"):
            try:
                fileio.unlink(p, missing_ok=True)
                removed = True
            except IsADirectoryError:
                fileio.rmtree(p)
                removed = True
    if removed:
        fileio.fsync_dir(directory)


# --------------------------------------------------- small checked files
# meta, last_applied and config share one framing:
#   magic (4) | version u8 | reserved 3 bytes | crc32 u32 | length u32 | msgpack body
_SMALL = struct.Struct(">4sB3xII")


def encode_checked_file(magic: bytes, version: int, body: bytes) -> bytes:
    return _SMALL.pack(magic, version, crc32(body), len(body)) + body


def read_checked_file(path: Path, magic: bytes, version: int) -> bytes:
    """Return the body of a small checked file; raise LogCorruption on any mismatch."""
    data = fileio.read_file(path)
    if len(data) < _SMALL.size:
        raise LogCorruption(f"file too short ({len(data)} bytes)", str(path), 0)
    got_magic, got_version, crc, length = _SMALL.unpack_from(data, 0)
    if got_magic != magic:
        raise LogCorruption(f"bad magic {got_magic!r} (expected {magic!r})", str(path), 0)
    if got_version != version:
        raise LogCorruption(f"unsupported version {got_version}", str(path), 4)
    if any(data[5:8]):
        raise LogCorruption("reserved header bytes are not zero", str(path), 5)
    body = data[_SMALL.size:]
    if len(body) != length:
        raise LogCorruption(f"body is {len(body)} bytes, header says {length}", str(path), _SMALL.size)
    if crc32(body) != crc:
        raise LogCorruption("checksum mismatch", str(path), _SMALL.size)
    return body


def iter_server_uids(data_dir: str | os.PathLike) -> Iterable[str]:
    """Uids of every server directory on the node (hidden leftovers excluded), sorted."""
    try:
        names = sorted(fileio.listdir(servers_dir(data_dir)))
    except FileNotFoundError:
        return []
    return [n for n in names if not n.startswith(".") and _UID_RE.match(n)]
