"""A node's WAL directories, and which one each server writes to.

API::

    dirs = check_wal_dirs(data_dir, wal_dirs)     # absolute Paths (None: [<data_dir>/wal])
    k = choose_wal(uid, len(dirs), wal=None)      # the cluster config's wal=, else crc32(uid) % n
    record_assignment(data_dir, uid, dirs[k])     # durable, before the server's first entry
    wdir = assigned_wal_dir(data_dir, uid)        # what was recorded (no record: <data_dir>/wal)
    k = wal_index_of(data_dir, uid, dirs)         # WalNotFound unless among dirs, same WAL
    check_wal_identity(data_dir, uid, wdir)       # WalNotFound if wdir holds another WAL (or none)
    ensure_wal_id(wdir); read_wal_id(wdir)        # the WAL's identity file

Rules:

* A node has one or more WAL directories (``wal_dirs``, default
  ``[<data_dir>/wal]``), each with its own WAL writer.  They are distinct,
  none inside another, none inside ``<data_dir>/servers``.
* Each server writes to exactly one of them, chosen when the server is
  created: ``wal=k`` of its config, else ``crc32(uid) % len(wal_dirs)``
  (stable across processes, unlike ``hash``).  The choice is recorded in
  ``<data_dir>/servers/<uid>/wal`` (b"RAWL" v1 framing around msgpack
  ``{"dir": ..., "id": ...}``), durably and before the config (a server
  without a config is unknown), so recovery reads the one WAL that holds the
  server's entries whatever ``wal_dirs`` says later.  ``dir`` is relative to
  the data directory when inside it (a data directory that moves keeps its
  own WALs), absolute otherwise.  A server without a record writes to
  ``<data_dir>/wal``: one assigned there gets none (a node with the default
  WAL pays no extra sync per new server), nor has one made before there
  were several WALs.
* A WAL directory holds ``WAL_ID`` (same framing, a random id), written when
  a WAL first opens there.  A record names the id too: a directory that
  shows another id or none -- a volume that is not mounted shows an empty
  directory -- is :class:`~ra_actors.errors.WalNotFound`, never a server
  recovered without the entries its WAL holds.  So is a recorded directory
  that is not among the node's ``wal_dirs``.
* Directories are compared by ``realpath``.  File I/O goes through
  :mod:`.fileio`.
"""
from __future__ import annotations

import os
import secrets
import zlib
from pathlib import Path
from typing import Iterable

from ..codec import pack, unpack
from ..errors import LogCorruption, WalNotFound
import ra_actors.log.fileio as fileio
from .common import (LogUsageError, atomic_write, encode_checked_file, read_checked_file, server_dir,
                     servers_dir, wal_dir)

__all__ = ["check_wal_dirs", "choose_wal", "record_assignment", "read_assignment", "assigned_wal_dir",
           "wal_index_of", "check_wal_identity", "ensure_wal_id", "read_wal_id", "same_dir",
           "WAL_ID_NAME"]

WAL_ID_NAME = "WAL_ID"
_ID_MAGIC = b"RAWI"
_REC_MAGIC = b"RAWL"
_VERSION = 1


def _real(path: str | os.PathLike) -> str:
    return os.path.realpath(os.path.abspath(path))


def same_dir(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    return _real(a) == _real(b)


def _inside(path: str, parent: str) -> bool:
    return path != parent and path.startswith(parent.rstrip(os.sep) + os.sep)


def check_wal_dirs(data_dir: str | os.PathLike, wal_dirs: Iterable | None) -> list[Path]:
    """``wal_dirs`` as absolute paths, checked (see the module rules);
    LogUsageError (a ValueError) naming what is wrong."""
    if wal_dirs is None:
        return [wal_dir(data_dir)]
    if isinstance(wal_dirs, (str, bytes, os.PathLike)):
        raise LogUsageError("wal_dirs must be a list of directories, not one path")
    out: list[Path] = []
    for d in wal_dirs:
        if not isinstance(d, (str, os.PathLike)) or not str(d):
            raise LogUsageError(f"a WAL directory must be a path, not {d!r}")
        out.append(Path(os.path.abspath(d)))
    if not out:
        raise LogUsageError("wal_dirs must name at least one directory")
    real = [_real(d) for d in out]
    servers = _real(servers_dir(data_dir))
    for k, r in enumerate(real):
        if r in real[:k]:
            raise LogUsageError(f"WAL directory {out[k]} is named twice in wal_dirs")
        for other in real:
            if _inside(r, other):
                raise LogUsageError(f"WAL directory {out[k]} is inside another WAL directory ({other})")
        if r == servers or _inside(r, servers):
            raise LogUsageError(f"WAL directory {out[k]} is inside the servers' directory {servers}")
    return out


def choose_wal(uid: str, count: int, wal: int | None = None) -> int:
    """The index of the WAL a new server ``uid`` writes to (module rules)."""
    if wal is None:
        return zlib.crc32(uid.encode("utf-8")) % count
    if isinstance(wal, bool) or not isinstance(wal, int) or not 0 <= wal < count:
        raise LogUsageError(f"wal={wal!r}: this node has {count} WAL director{'y' if count == 1 else 'ies'} "
                            f"(wal_dirs), so wal must be an integer in 0..{count - 1}")
    return wal


# ------------------------------------------------------------- identity
def _id_path(wdir: str | os.PathLike) -> Path:
    return Path(wdir) / WAL_ID_NAME


def read_wal_id(wdir: str | os.PathLike) -> str | None:
    """The id of the WAL in ``wdir`` (None: no WAL ever opened there)."""
    path = _id_path(wdir)
    try:
        body = read_checked_file(path, _ID_MAGIC, _VERSION)
    except FileNotFoundError:
        return None
    try:
        value = unpack(body)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is damage
        raise LogCorruption(f"WAL id does not decode: {exc}", str(path)) from None
    if not isinstance(value, str) or not value:
        raise LogCorruption("WAL id is not a non-empty string", str(path))
    return value


def ensure_wal_id(wdir: str | os.PathLike) -> str:
    """The id of the WAL in ``wdir``, made (durably) if it has none."""
    wid = read_wal_id(wdir)
    if wid is None:
        wid = secrets.token_hex(8)
        atomic_write(_id_path(wdir), encode_checked_file(_ID_MAGIC, _VERSION, pack(wid)))
    return wid


# ----------------------------------------------------------- assignment
def _record_path(data_dir: str | os.PathLike, uid: str) -> Path:
    return server_dir(data_dir, uid) / "wal"


def record_assignment(data_dir: str | os.PathLike, uid: str, wdir: str | os.PathLike) -> None:
    """Durably record that server ``uid`` writes to the WAL in ``wdir``
    (with that WAL's id, if it has one yet)."""
    data_real, wreal = _real(data_dir), _real(wdir)
    shown = os.path.relpath(wreal, data_real) if _inside(wreal, data_real) else str(Path(wdir).absolute())
    path = _record_path(data_dir, uid)
    fileio.mkdir(path.parent)
    body = pack({"dir": shown, "id": read_wal_id(wdir)})
    atomic_write(path, encode_checked_file(_REC_MAGIC, _VERSION, body))


def read_assignment(data_dir: str | os.PathLike, uid: str) -> tuple[Path, str | None] | None:
    """``(wal dir, WAL id)`` recorded for ``uid``; None without a record."""
    path = _record_path(data_dir, uid)
    try:
        body = read_checked_file(path, _REC_MAGIC, _VERSION)
    except FileNotFoundError:
        return None
    try:
        rec = unpack(body)
        shown, wid = rec["dir"], rec["id"]
    except Exception as exc:  # noqa: BLE001 - any decoding failure is damage
        raise LogCorruption(f"WAL assignment does not decode: {exc!r}", str(path)) from None
    if not isinstance(shown, str) or not shown or not (wid is None or isinstance(wid, str)):
        raise LogCorruption("WAL assignment holds no directory", str(path))
    return (Path(shown) if os.path.isabs(shown) else Path(data_dir) / shown), wid


def assigned_wal_dir(data_dir: str | os.PathLike, uid: str) -> Path:
    rec = read_assignment(data_dir, uid)
    return wal_dir(data_dir) if rec is None else rec[0]


def check_wal_identity(data_dir: str | os.PathLike, uid: str, wdir: str | os.PathLike) -> None:
    """WalNotFound unless ``wdir`` holds the WAL server ``uid`` recorded."""
    rec = read_assignment(data_dir, uid)
    if rec is None or rec[1] is None:
        return   # made before WALs had ids, or before its WAL first opened
    found = read_wal_id(wdir)
    if found != rec[1]:
        raise WalNotFound(f"server {uid}: its WAL directory {wdir} holds "
                          + ("no WAL" if found is None else f"another WAL (id {found})")
                          + f", not the one it wrote to (id {rec[1]}): is its volume mounted?  "
                          "The server does not start without the entries its WAL holds")


def wal_index_of(data_dir: str | os.PathLike, uid: str, wal_dirs: list) -> int:
    """The index in ``wal_dirs`` of the WAL server ``uid`` writes to, or
    WalNotFound naming the recorded directory (module rules)."""
    wdir = assigned_wal_dir(data_dir, uid)
    for k, d in enumerate(wal_dirs):
        if same_dir(d, wdir):
            check_wal_identity(data_dir, uid, d)
            return k
    raise WalNotFound(f"server {uid} writes to the WAL in {wdir}, which is not among this node's "
                      f"wal_dirs ({', '.join(str(d) for d in wal_dirs)}): start the node with that "
                      "directory in wal_dirs (--wal-dir) to recover the server")
