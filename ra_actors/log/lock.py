"""The data-directory lock: one writer per node's log.

Rules:

* The node's WAL holds an exclusive ``flock`` on ``<data_dir>/LOCK`` for as
  long as it is open (a WAL in a directory of its own: ``<wal_dir>/LOCK``).  A second holder — another process, or another open
  in the same process — gets :class:`ra_actors.errors.DataDirLocked` naming
  the directory and the pid recorded by the holder, instead of two writers
  interleaving records in one log.
* The kernel drops the lock when the holder dies (even by SIGKILL), so a
  crashed node never needs manual cleanup; the pid in the file is only for
  the error message.
* Readers (``ra-actors log check``/``dump``) do not take the lock.
* A data directory the node may not write (``EACCES``, ``EROFS``) fails
  here with :class:`ra_actors.errors.StorageError` naming ``LOCK``.
* :class:`FlushLock` (``<data_dir>/FLUSH``) is held, waiting for it if need
  be, while WAL files move into segments: recovery in a WAL that is being
  reopened and the node's segment writer may both want to move the same
  closed file, and must not write the same segments at once.  It is
  re-entrant within one holder.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import DataDirLocked
import ra_actors.log.fileio as fileio
from .common import flush_lock_path, lock_path

__all__ = ["DataDirLock", "FlushLock"]


class DataDirLock:
    """Exclusive lock on a data directory (created if missing).

    ``DataDirLock(data_dir)`` acquires immediately or raises DataDirLocked;
    ``release()`` (or leaving a ``with`` block) gives it back.  ``path``: the
    lock file, when it is not ``<data_dir>/LOCK`` (the lock of a WAL
    directory of its own, :func:`.common.wal_lock_path`).
    """

    def __init__(self, data_dir: str | os.PathLike, path: str | os.PathLike | None = None):
        self.data_dir = Path(data_dir)
        self.path = Path(path) if path is not None else lock_path(self.data_dir)
        fileio.mkdir(self.path.parent)
        # A read-only or inaccessible data dir fails here, as StorageError naming LOCK.
        fd = fileio.open(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = fileio.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            fileio.close(fd)
            where = (f"data directory {self.data_dir}" if self.path == lock_path(self.data_dir)
                     else f"WAL directory {self.path.parent}")
            raise DataDirLocked(f"{where} is locked by another ra_actors node (pid {holder}); "
                                "stop it first or use another directory") from None
        except BaseException:
            fileio.close(fd)
            raise
        try:
            fileio.ftruncate(fd, 0)
            fileio.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            fileio.close(fd)
            raise
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            # Closing the descriptor drops the flock; the file itself stays.
            fileio.close(fd)

    def __enter__(self) -> "DataDirLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self):  # pragma: no cover - safety net for forgotten locks
        try:
            self.release()
        except Exception:
            pass


class FlushLock:
    """The data directory's flush lock (see the module rules): ``with lock:``
    blocks until it is held; nested ``with`` blocks of the same object just
    count."""

    def __init__(self, data_dir: str | os.PathLike):
        self.path = flush_lock_path(data_dir)
        self._fd: int | None = None
        self._depth = 0

    def __enter__(self) -> "FlushLock":
        if self._depth == 0:
            fd = fileio.open(self.path, os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                fileio.close(fd)
                raise
            self._fd = fd
        self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0:
            fd, self._fd = self._fd, None
            if fd is not None:
                fileio.close(fd)
