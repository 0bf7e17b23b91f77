"""Connections a node refused: counted node-wide, logged once per address.

Any process of a node may refuse a connection (the admin, the supervisor,
every server or host actor, the WAL: each listens on a port of its own).
Their counts add up in the node's ``overview`` (``refused``), and each peer
address is written to ``node.log`` once, not once per process or per
attempt, so that a scan of every port is one line per scanner.

Rules:

* **Kinds.**  ``secret``: the peer did not prove the cluster secret (wrong
  secret, no handshake, garbage, too slow); ``host``: the peer's address is
  outside the node's allowed hosts; ``busy``: too many connections were
  still in their handshake.
* **Shared by fork.**  node-main creates the record before Thespian starts,
  so every process of the node (all forked from it) writes to the same
  page of shared memory; updates are serialised by a POSIX record lock on
  an unlinked file, which the kernel releases when its holder dies, so a
  process killed mid-update never blocks the others.
* At most ``MAX_LOGGED`` addresses are remembered; refusals from further
  addresses are counted, not logged.
* A client process keeps a record of its own (nothing else shares it).
"""
from __future__ import annotations

import fcntl
import ipaddress
import mmap
import struct
import tempfile
from typing import Callable

__all__ = ["KINDS", "Refusals"]

KINDS = ("secret", "host", "busy")
MAX_LOGGED = 200
_COUNTS = struct.Struct(f"<{len(KINDS)}Q")
_N = struct.Struct("<I")
_ADDR = 16
_TABLE_AT = _COUNTS.size + _N.size
_SIZE = _TABLE_AT + MAX_LOGGED * _ADDR


def _packed(ip: str) -> bytes:
    try:
        return ipaddress.ip_address(ip).packed.rjust(_ADDR, b"\0")
    except ValueError:
        return b"\xff" * _ADDR       # not an address (a unix socket, say): one shared entry


class Refusals:
    """The refusals of one node (see the module rules)."""

    def __init__(self, log: Callable[[str], None] | None = None) -> None:
        self._lockfile = tempfile.TemporaryFile(prefix="ra_refusals_")
        self._mem = mmap.mmap(-1, _SIZE)          # MAP_SHARED: forked processes see every update
        self.log = log

    def refused(self, kind: str, peer: str, why: str) -> None:
        """Count a refusal of ``kind`` from ``peer`` and log it if it is the
        first from that address."""
        if kind not in KINDS:
            raise ValueError(f"unknown refusal kind {kind!r}")
        first = self._record(KINDS.index(kind), _packed(peer))
        if first and self.log is not None:
            self.log(f"refused a connection from {peer}: {why} "
                     f"(further refusals of this address are counted in overview, not logged)")

    def _record(self, index: int, addr: bytes) -> bool:
        fd = self._lockfile.fileno()
        fcntl.lockf(fd, fcntl.LOCK_EX)
        try:
            counts = list(_COUNTS.unpack_from(self._mem, 0))
            counts[index] += 1
            _COUNTS.pack_into(self._mem, 0, *counts)
            (n,) = _N.unpack_from(self._mem, _COUNTS.size)
            for i in range(n):
                at = _TABLE_AT + i * _ADDR
                if self._mem[at:at + _ADDR] == addr:
                    return False
            if n >= MAX_LOGGED:
                return False
            at = _TABLE_AT + n * _ADDR
            self._mem[at:at + _ADDR] = addr
            _N.pack_into(self._mem, _COUNTS.size, n + 1)
            return True
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)

    def counts(self) -> dict[str, int]:
        """``{kind: refusals so far}`` across every process of the node."""
        return dict(zip(KINDS, _COUNTS.unpack_from(self._mem, 0)))

    def close(self) -> None:
        self._mem.close()
        self._lockfile.close()

    def __reduce__(self):
        # (forked processes inherit it; it must never be pickled into a message)
        raise TypeError("a Refusals record is shared by fork, never pickled")


def process_log(who: str) -> Callable[[str], None]:
    """A log function writing to this process's stderr (node.log on a node)."""
    from .util import log
    return lambda text, _who=who: log(_who, text)
