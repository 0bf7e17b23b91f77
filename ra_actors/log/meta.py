"""Durable Raft metadata of one server: current term, voted_for, last_applied.

Files in the server directory (framing of :func:`.common.encode_checked_file`)::

    meta          b"RAMT" v1, msgpack (current_term, voted_for)
    last_applied  b"RALA" v1, msgpack last_applied

Rules:

* ``store(term, voted_for)`` returns only once the pair is durable (tmp
  file, fsync, rename, directory fsync): the core grants a vote only after
  ``MetaWritten``, so a vote can never be forgotten by a crash.
* ``last_applied`` is a recovery hint (how far to re-apply the log at
  restart); it is written atomically (tmp + rename) but not fsynced, like
  Ra's auto-saved DETS.  A missing or unreadable hint after a crash reads as
  0 with a warning: re-applying less is always safe.
* A corrupt ``meta`` file is LogCorruption: the term and vote must never be
  guessed.
* A failed write, sync or rename raises :class:`ra_actors.errors.StorageError`
  and leaves the stored term and vote as they were, in memory and in the
  file (the core never gets ``MetaWritten``, so it grants no vote).  Each
  store writes a fresh tmp file, so nothing is ever synced again on a
  descriptor whose sync failed.  File I/O goes through :mod:`.fileio`.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ..codec import pack, unpack
from ..core.types import ServerId
from ..errors import LogCorruption
from .common import LogUsageError, atomic_write, encode_checked_file, read_checked_file

__all__ = ["MetaStore"]

log = logging.getLogger(__name__)

META_MAGIC = b"RAMT"
LAST_APPLIED_MAGIC = b"RALA"
VERSION = 1


class MetaStore:
    """Term, vote and last_applied of the server whose directory is ``directory``."""

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        self.meta_path = self.dir / "meta"
        self.last_applied_path = self.dir / "last_applied"
        self.current_term = 0
        self.voted_for: ServerId | None = None
        self.last_applied = 0
        if self.meta_path.exists():
            body = read_checked_file(self.meta_path, META_MAGIC, VERSION)
            try:
                term, voted_for = unpack(body)
            except Exception as exc:
                raise LogCorruption(f"meta does not decode: {exc}", str(self.meta_path)) from None
            self.current_term = term
            self.voted_for = ServerId(*voted_for) if voted_for is not None else None
        if self.last_applied_path.exists():
            try:
                self.last_applied = int(unpack(read_checked_file(self.last_applied_path,
                                                                 LAST_APPLIED_MAGIC, VERSION)))
            except (LogCorruption, ValueError, TypeError) as exc:
                log.warning("ignoring unreadable last_applied hint (%s); re-applying from the "
                            "snapshot", exc)
                self.last_applied = 0

    def store(self, current_term: int, voted_for: ServerId | None) -> None:
        """Durably record term and vote (returns after fsync)."""
        if not isinstance(current_term, int) or current_term < 0:
            raise LogUsageError(f"current_term must be an int >= 0, not {current_term!r}")
        if voted_for is not None and not isinstance(voted_for, tuple):
            raise LogUsageError(f"voted_for must be a ServerId or None, not {voted_for!r}")
        vote = ServerId(*voted_for) if voted_for is not None else None
        atomic_write(self.meta_path, encode_checked_file(META_MAGIC, VERSION,
                                                         pack((current_term, vote))))
        self.current_term = current_term
        self.voted_for = vote

    def store_last_applied(self, index: int) -> None:
        """Record the recovery hint (atomic, not fsynced)."""
        if not isinstance(index, int) or index < 0:
            raise LogUsageError(f"last_applied must be an int >= 0, not {index!r}")
        if index == self.last_applied and self.last_applied_path.exists():
            return
        atomic_write(self.last_applied_path,
                     encode_checked_file(LAST_APPLIED_MAGIC, VERSION, pack(index)), durable=False)
        self.last_applied = index
