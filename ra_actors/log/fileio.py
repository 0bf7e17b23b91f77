"""The storage layer's one door to the file system, and where tests inject disk faults.

Every open, read, write, sync, truncate, rename, unlink, mkdir and listdir
of a WAL, segment, snapshot, meta, config or lock file goes through a
function of this module; nothing else in :mod:`ra_actors.log` calls
``os.write``/``os.fsync``/``open`` on its files.

Rules:

* Errors: an :class:`OSError` from the operating system becomes
  :class:`ra_actors.errors.StorageError` naming the operation, the path and
  the errno (``write of /data/wal/0000000000000003.wal failed: ENOSPC (No
  space left on device)``), except ``ENOENT``, which stays
  :class:`FileNotFoundError`: callers use it for files that were legitimately
  deleted under them (a WAL file flushed to segments while a reader listed it).
* A failed ``fsync``/``fdatasync`` is final for that file (the "fsyncgate"
  lesson of PostgreSQL and etcd): Linux may drop the dirty pages and report
  the error once, so a retried sync on the same descriptor can succeed
  without the data ever reaching the disk.  This module never retries; its
  callers never sync a descriptor again after a failure, never report that
  data durable, and only ever trust data they can re-verify after reopening
  (recovery reads the files back and checks every checksum, and rewrites
  anything it keeps into fresh, freshly synced files).
* Fault injection for tests, without patching :mod:`os`::

      with fileio.inject(Fault("fdatasync", errno.EIO, path="*.wal")) as faults:
          ...                      # the first fdatasync of a WAL file raises EIO
      faults.calls                 # [(op, path), ...] every operation seen meanwhile

  A :class:`Fault` matches an operation name (or a tuple of names) and an
  ``fnmatch`` pattern on the path, lets ``after`` matching calls succeed,
  then fails ``times`` of them (``None``: all later ones).  ``partial=True``
  on ``write`` first writes half of the bytes, like a disk that fills up in
  the middle of a write.  Injected faults are raised as the same
  :class:`StorageError` a real one gives.  Without an active injector the
  only cost is one ``if`` per call.

Operation names: ``open read write fsync fdatasync ftruncate rename unlink
fsync_dir mkdir listdir close``.

Modules of the package import it as ``import ra_actors.log.fileio as
fileio``: ``from . import fileio`` would count as importing the package
``ra_actors.log``, whose ``__init__`` imports every module (an import cycle
for ``scripts/check_layout.py``).  It imports nothing of the package itself.
"""
from __future__ import annotations

import errno as _errno
import fnmatch
import os
import shutil
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import StorageError

__all__ = ["OPS", "Fault", "FaultLog", "inject", "storage_error", "open", "close", "path_of",
           "read_file", "pread", "fstat_size", "write_all", "writev_all", "pwrite", "fsync",
           "fdatasync", "sync_fd", "ftruncate", "replace", "unlink", "fsync_dir", "mkdir",
           "listdir", "rmtree"]

OPS = ("open", "read", "write", "fsync", "fdatasync", "ftruncate", "rename", "unlink",
       "fsync_dir", "mkdir", "listdir", "close")

_builtin_open = open


# ------------------------------------------------------------ fault injection
@dataclass
class Fault:
    """One injected failure rule (see the module docstring)."""

    op: str | tuple
    errno: int
    path: str = "*"
    after: int = 0
    times: int | None = 1
    partial: bool = False
    seen: int = 0  # matching calls so far
    fired: int = 0  # failures raised so far

    def matches(self, op: str, path: str) -> bool:
        ops = (self.op,) if isinstance(self.op, str) else tuple(self.op)
        return (op in ops or "*" in ops) and fnmatch.fnmatch(path, self.path)


@dataclass
class FaultLog:
    """What an :func:`inject` block saw: its faults and every operation."""

    faults: tuple
    calls: list = field(default_factory=list)  # [(op, path)]
    record: bool = True  # keep ``calls`` (not for a whole process's life)

    def ops(self, op: str, pattern: str = "*") -> list[str]:
        """Paths of the ``op`` calls whose path matches ``pattern``."""
        return [p for o, p in self.calls if o == op and fnmatch.fnmatch(p, pattern)]


_active: list[FaultLog] = []
_fault_lock = threading.Lock()


@contextmanager
def inject(*faults: Fault) -> Iterator[FaultLog]:
    """Make matching operations fail inside the ``with`` block (tests only)."""
    for f in faults:
        ops = (f.op,) if isinstance(f.op, str) else tuple(f.op)
        unknown = [o for o in ops if o not in OPS and o != "*"]
        if unknown:
            raise ValueError(f"unknown operation(s) {unknown}; valid: {', '.join(OPS)}")
    log = FaultLog(tuple(faults))
    with _fault_lock:
        _active.append(log)
    try:
        yield log
    finally:
        with _fault_lock:
            _active.remove(log)


ENV_FAULTS = "RA_ACTORS_FILEIO_FAULTS"


def _faults_from_environment() -> None:
    """Install the faults of ``RA_ACTORS_FILEIO_FAULTS`` (see the module rules)."""
    import json
    text = os.environ.get(ENV_FAULTS)
    if not text:
        return
    try:
        specs = json.loads(text)
        faults = tuple(Fault(**spec) for spec in specs)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{ENV_FAULTS}: not a JSON list of Fault fields ({exc})") from None
    for f in faults:
        ops = (f.op,) if isinstance(f.op, str) else tuple(f.op)
        if any(o not in OPS and o != "*" for o in ops):
            raise ValueError(f"{ENV_FAULTS}: unknown operation in {f.op!r}; valid: {', '.join(OPS)}")
    _active.append(FaultLog(faults, record=False))


def _injected(op: str, path: str) -> Fault | None:
    """Record the call; return the fault to raise now, if any."""
    with _fault_lock:
        hit = None
        for log in _active:
            if log.record:
                log.calls.append((op, path))
            for f in log.faults:
                if hit is None and f.matches(op, path):
                    f.seen += 1
                    if f.seen > f.after and (f.times is None or f.fired < f.times):
                        f.fired += 1
                        hit = f
        return hit


def _raise_injected(fault: Fault, op: str, path: str):
    raise storage_error(op, path, OSError(fault.errno, os.strerror(fault.errno)))


_faults_from_environment()


# ------------------------------------------------------------------ errors
def storage_error(op: str, path, exc: OSError) -> StorageError:
    """The StorageError for ``exc`` raised by ``op`` on ``path``."""
    code = exc.errno
    name = _errno.errorcode.get(code, str(code)) if code is not None else "error"
    reason = os.strerror(code) if code is not None else str(exc)
    return StorageError(f"{op} of {path} failed: {name} ({reason})", str(path), code, op)


def _convert(op: str, path, exc: OSError):
    if isinstance(exc, FileNotFoundError):
        raise exc
    raise storage_error(op, path, exc) from None


# fd -> path of every descriptor opened here (names the file in errors and faults)
_paths: dict[int, str] = {}


def path_of(fd: int) -> str:
    return _paths.get(fd, f"<fd {fd}>")


# A node's data is its owner's alone: the log holds every command of every
# cluster on the node.
FILE_MODE = 0o600
DIR_MODE = 0o700


# ------------------------------------------------------------------ files
def open(path, flags: int, mode: int = FILE_MODE) -> int:  # noqa: A001 - the seam's name for it
    """``os.open``; the descriptor is remembered with its path."""
    p = str(path)
    if _active and (f := _injected("open", p)) is not None:
        _raise_injected(f, "open", p)
    try:
        fd = os.open(p, flags, mode)
    except OSError as exc:
        _convert("open", p, exc)
    _paths[fd] = p
    return fd


def close(fd: int) -> None:
    p = _paths.pop(fd, None) or f"<fd {fd}>"
    if _active and (f := _injected("close", p)) is not None:
        os.close(fd)
        _raise_injected(f, "close", p)
    try:
        os.close(fd)
    except OSError as exc:
        _convert("close", p, exc)


def read_file(path) -> bytes:
    """The whole content of ``path``."""
    p = str(path)
    if _active and (f := _injected("read", p)) is not None:
        _raise_injected(f, "read", p)
    try:
        with _builtin_open(p, "rb") as fh:
            return fh.read()
    except OSError as exc:
        _convert("read", p, exc)


def pread(fd: int, n: int, offset: int) -> bytes:
    if _active and (f := _injected("read", path_of(fd))) is not None:
        _raise_injected(f, "read", path_of(fd))
    try:
        return os.pread(fd, n, offset)
    except OSError as exc:
        _convert("read", path_of(fd), exc)


def fstat_size(fd: int) -> int:
    try:
        return os.fstat(fd).st_size
    except OSError as exc:
        _convert("stat", path_of(fd), exc)


def _write_fault(fd: int, data) -> None:
    p = path_of(fd)
    f = _injected("write", p)
    if f is not None:
        if f.partial and len(data) > 1:
            os.write(fd, bytes(memoryview(data)[: len(data) // 2]))
        _raise_injected(f, "write", p)


def _write_rest(fd: int, data) -> None:
    n = os.write(fd, data)
    if n == len(data):
        return
    view = memoryview(data)[n:]
    while view:
        view = view[os.write(fd, view):]


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """``os.write`` until everything is written (a regular file may take a short write)."""
    if _active:
        _write_fault(fd, data)
    try:
        _write_rest(fd, data)
    except OSError as exc:
        _convert("write", path_of(fd), exc)


_IOV_MAX = min(os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024, 1024)


def writev_all(fd: int, parts: Sequence, total: int | None = None) -> int:
    """Write ``parts`` in order without joining them (gather write); return bytes
    written.  ``total`` (their summed length) may be passed when known."""
    if total is None:
        total = sum(len(p) for p in parts)
    if _active:
        _write_fault(fd, b"".join(parts))
    try:
        for i in range(0, len(parts), _IOV_MAX):
            chunk = parts[i:i + _IOV_MAX] if len(parts) > _IOV_MAX else parts
            size = total if chunk is parts else sum(len(p) for p in chunk)
            got = os.writev(fd, chunk)
            if got != size:  # a short write: finish the simple way
                _write_rest(fd, b"".join(chunk)[got:])
    except OSError as exc:
        _convert("write", path_of(fd), exc)
    return total


def pwrite(fd: int, data: bytes, offset: int) -> None:
    if _active:
        _write_fault(fd, data)
    try:
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, offset)
            view = view[n:]
            offset += n
    except OSError as exc:
        _convert("write", path_of(fd), exc)


def fsync(fd: int) -> None:
    """``os.fsync``.  On failure the caller must give the file up (module rules)."""
    if _active and (f := _injected("fsync", path_of(fd))) is not None:
        _raise_injected(f, "fsync", path_of(fd))
    try:
        os.fsync(fd)
    except OSError as exc:
        _convert("fsync", path_of(fd), exc)


def fdatasync(fd: int) -> None:
    """``os.fdatasync``.  On failure the caller must give the file up (module rules)."""
    if _active and (f := _injected("fdatasync", path_of(fd))) is not None:
        _raise_injected(f, "fdatasync", path_of(fd))
    try:
        os.fdatasync(fd)
    except OSError as exc:
        _convert("fdatasync", path_of(fd), exc)


SYNC_METHODS = ("datasync", "sync", "none")


def sync_fd(fd: int, method: str) -> None:
    """Flush ``fd`` to stable storage according to ``method`` (datasync | sync | none)."""
    if method == "datasync":
        fdatasync(fd)
    elif method == "sync":
        fsync(fd)
    elif method != "none":
        # (the Wal validates its sync_method up front, as LogUsageError)
        raise ValueError(f"sync_method must be one of {SYNC_METHODS}, not {method!r}")


def ftruncate(fd: int, size: int) -> None:
    if _active and (f := _injected("ftruncate", path_of(fd))) is not None:
        _raise_injected(f, "ftruncate", path_of(fd))
    try:
        os.ftruncate(fd, size)
    except OSError as exc:
        _convert("ftruncate", path_of(fd), exc)


# ------------------------------------------------------------- directories
def replace(src, dst) -> None:
    """``os.replace`` (atomic rename); the caller fsyncs the directory."""
    s, d = str(src), str(dst)
    if _active and (f := _injected("rename", d)) is not None:
        _raise_injected(f, "rename", d)
    try:
        os.replace(s, d)
    except OSError as exc:
        _convert("rename", d, exc)


def unlink(path, *, missing_ok: bool = False) -> None:
    p = str(path)
    if _active and (f := _injected("unlink", p)) is not None:
        _raise_injected(f, "unlink", p)
    try:
        os.unlink(p)
    except FileNotFoundError:
        if not missing_ok:
            raise
    except OSError as exc:
        _convert("unlink", p, exc)


def fsync_dir(directory) -> None:
    """Make creates/renames/deletes inside ``directory`` durable."""
    p = str(directory)
    if _active and (f := _injected("fsync_dir", p)) is not None:
        _raise_injected(f, "fsync_dir", p)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        _convert("fsync_dir", p, exc)


def mkdir(path, *, parents: bool = True, exist_ok: bool = True) -> None:
    p = str(path)
    if _active and (f := _injected("mkdir", p)) is not None:
        _raise_injected(f, "mkdir", p)
    try:
        Path(p).mkdir(mode=DIR_MODE, parents=parents, exist_ok=exist_ok)
    except FileExistsError:
        raise
    except OSError as exc:
        _convert("mkdir", p, exc)


def listdir(path) -> list[str]:
    p = str(path)
    if _active and (f := _injected("listdir", p)) is not None:
        _raise_injected(f, "listdir", p)
    try:
        return os.listdir(p)
    except OSError as exc:
        _convert("listdir", p, exc)


def rmtree(path) -> None:
    """Remove a tree that is already out of sight (renamed to a hidden name):
    best effort, a leftover is removed at the next open."""
    shutil.rmtree(str(path), ignore_errors=True)
