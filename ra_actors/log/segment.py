"""Segment files: a server's entries after they left the WAL.

Format (all integers big-endian)::

    header (16 bytes): b"RASG" | version u16 (=1) | reserved u16 | count u32 | index_crc u32
    index: count x 32 bytes: index u64 | term u64 | offset u64 | length u32 | crc u32
           (offset from the start of the file; crc = crc32 of the payload)
    data:  the msgpack payloads, back to back, right after the index

``index_crc`` is the crc32 of the whole index, so a flipped byte in an
index, term, offset or length is caught when the file is opened; a flipped
payload byte is caught when that entry is read (or by :meth:`Segment.verify`).

Rules:

* A segment file is immutable once it has its final name.  It is written as
  ``<name>.tmp``, fsynced and renamed (the writer fsyncs the directory);
  "appending" to the newest segment writes a longer version under the same
  name.  A crash therefore never leaves a torn segment, only an ignorable
  ``.tmp`` leftover, and a reader holding the old version keeps valid data.
* Inside a segment indexes are consecutive and terms never decrease.
* A failed write or fsync of the tmp file raises
  :class:`ra_actors.errors.StorageError`; the tmp file is removed, never
  renamed, and the next attempt writes a fresh one.  All I/O goes through
  :mod:`.fileio`.
* Segments are ordered by their number (the file name).  A segment starting
  at index ``s`` supersedes every entry ``>= s`` of all older segments (a
  rewrite after a leader change, or a log restarting after a snapshot);
  :func:`effective_ranges` applies that rule.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import LogCorruption
import ra_actors.log.fileio as fileio
from .common import crc32

__all__ = ["SEGMENT_SUFFIX", "SegmentRef", "Segment", "encode_segment", "write_segment",
           "effective_ranges", "segment_range"]

MAGIC = b"RASG"
VERSION = 1
SEGMENT_SUFFIX = ".segment"
HEADER = struct.Struct(">4sHHII")  # 16 bytes
ROW = struct.Struct(">QQQII")  # 32 bytes


@dataclass(frozen=True, slots=True)
class SegmentRef:
    """Where a server's entries ``first..last`` live: segment ``number`` of ``uid``."""

    uid: str
    number: int
    path: Path
    first: int
    last: int


def encode_segment(entries: Sequence[tuple[int, int, bytes, int]]) -> bytes:
    """Encode ``(index, term, payload, crc32(payload))`` entries as a segment file image."""
    if not entries:
        raise ValueError("a segment holds at least one entry")
    count = len(entries)
    offset = HEADER.size + count * ROW.size
    rows = []
    prev_index = None
    prev_term = -1
    for index, term, payload, crc in entries:
        if prev_index is not None and index != prev_index + 1:
            raise ValueError(f"segment entries must be consecutive ({index} after {prev_index})")
        if term < prev_term:
            raise ValueError(f"segment terms must not decrease ({term} after {prev_term})")
        prev_index, prev_term = index, term
        rows.append(ROW.pack(index, term, offset, len(payload), crc))
        offset += len(payload)
    index_bytes = b"".join(rows)
    header = HEADER.pack(MAGIC, VERSION, 0, count, crc32(index_bytes))
    return b"".join([header, index_bytes, *(e[2] for e in entries)])


def write_segment(path: Path, entries: Sequence[tuple[int, int, bytes, int]]) -> None:
    """Write (or replace) segment ``path`` durably, except for the directory fsync,
    which the caller does once for everything it wrote."""
    tmp = path.with_name(path.name + ".tmp")
    data = encode_segment(entries)
    fd = fileio.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        try:
            fileio.write_all(fd, data)
            fileio.fsync(fd)
        finally:
            fileio.close(fd)
        fileio.replace(tmp, path)
    except BaseException:
        # A tmp file whose write or fsync failed is never renamed or reused.
        try:
            fileio.unlink(tmp, missing_ok=True)
        except Exception:  # noqa: BLE001 - best effort: leftovers go at the next open
            pass
        raise


class Segment:
    """A read-only view of one segment file.

    Opening reads and validates the header and index (LogCorruption on any
    mismatch); entries are read on demand and checked against their crc.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.number = int(self.path.name[:16])
        fd = fileio.open(self.path, os.O_RDONLY)
        try:
            size = fileio.fstat_size(fd)
            header = fileio.pread(fd, HEADER.size, 0)
            if len(header) < HEADER.size:
                raise LogCorruption("segment header incomplete", str(self.path), 0)
            magic, version, _reserved, count, index_crc = HEADER.unpack(header)
            if magic != MAGIC:
                raise LogCorruption(f"not a segment file (magic {magic!r})", str(self.path), 0)
            if version != VERSION:
                raise LogCorruption(f"unsupported segment version {version}", str(self.path), 4)
            if _reserved != 0:
                raise LogCorruption("segment header: reserved bytes are not zero", str(self.path), 6)
            if count < 1:
                raise LogCorruption("segment holds no entries", str(self.path), 8)
            index_len = count * ROW.size
            index_bytes = fileio.pread(fd, index_len, HEADER.size) if HEADER.size + index_len <= size else b""
            if len(index_bytes) != index_len or crc32(index_bytes) != index_crc:
                raise LogCorruption("segment index checksum mismatch", str(self.path), HEADER.size)
        except BaseException:
            fileio.close(fd)
            raise
        self._fd: int | None = fd
        rows = list(ROW.iter_unpack(index_bytes))
        expect_offset = HEADER.size + index_len
        prev_term = -1
        first = rows[0][0]
        for k, (index, term, offset, length, _crc) in enumerate(rows):
            # The index crc matched, so a mismatch here is a writer bug or a
            # collision; either way the file cannot be trusted.
            if index != first + k or offset != expect_offset or term < prev_term:
                fileio.close(fd)
                self._fd = None
                raise LogCorruption(f"segment index row {k} is inconsistent", str(self.path),
                                    HEADER.size + k * ROW.size)
            prev_term = term
            expect_offset += length
        if expect_offset != size:
            fileio.close(fd)
            self._fd = None
            raise LogCorruption(f"segment data ends at byte {expect_offset} but the file has "
                                f"{size} bytes", str(self.path), min(expect_offset, size))
        self.rows = rows  # [(index, term, offset, length, crc), ...]
        self.first = first
        self.last = first + count - 1
        self.count = count
        self.size = size

    def ref(self, uid: str) -> SegmentRef:
        return SegmentRef(uid, self.number, self.path, self.first, self.last)

    def term_at(self, index: int) -> int | None:
        if self.first <= index <= self.last:
            return self.rows[index - self.first][1]
        return None

    def read(self, lo: int, hi: int) -> list[tuple[int, int, bytes]]:
        """Entries ``lo..hi`` (clamped to this segment) as ``(index, term, payload)``."""
        lo = max(lo, self.first)
        hi = min(hi, self.last)
        if lo > hi:
            return []
        if self._fd is None:
            raise ValueError(f"segment {self.path} is closed")
        r0 = self.rows[lo - self.first]
        r1 = self.rows[hi - self.first]
        start = r0[2]
        blob = fileio.pread(self._fd, r1[2] + r1[3] - start, start)
        out = []
        for index, term, offset, length, crc in self.rows[lo - self.first: hi - self.first + 1]:
            payload = blob[offset - start: offset - start + length]
            if len(payload) != length or crc32(payload) != crc:
                raise LogCorruption(f"entry {index} checksum mismatch", str(self.path), offset)
            out.append((index, term, payload))
        return out

    def read_all_raw(self) -> list[tuple[int, int, bytes, int]]:
        """Every entry as ``(index, term, payload, crc)`` (crc verified)."""
        return [(i, t, p, crc32(p)) for i, t, p in self.read(self.first, self.last)]

    def verify(self) -> None:
        """Check every payload's crc (LogCorruption names the entry's offset)."""
        self.read(self.first, self.last)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fileio.close(fd)

    def __enter__(self) -> "Segment":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - descriptor safety net
        try:
            self.close()
        except Exception:
            pass


def segment_range(path: str | os.PathLike) -> tuple[int, int]:
    """``(first, last)`` of a segment from its header and first index row only
    (cheap: no checksum is verified; :class:`Segment` verifies at open)."""
    path = Path(path)
    fd = fileio.open(path, os.O_RDONLY)
    try:
        head = fileio.pread(fd, HEADER.size + ROW.size, 0)
    finally:
        fileio.close(fd)
    if len(head) < HEADER.size + ROW.size:
        raise LogCorruption("segment header incomplete", str(path), 0)
    magic, _version, _reserved, count, _crc = HEADER.unpack_from(head, 0)
    if magic != MAGIC or count < 1:
        raise LogCorruption(f"not a segment file (magic {magic!r}, {count} entries)", str(path), 0)
    first = ROW.unpack_from(head, HEADER.size)[0]
    return first, first + count - 1


def effective_ranges(ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int] | None]:
    """For segments ``[(first, last), ...]`` ordered oldest to newest, the part of
    each that is still valid: entries at or above the first index of any newer
    segment are superseded.  ``None`` where nothing is left."""
    out: list = [None] * len(ranges)
    ceiling = None
    for k in range(len(ranges) - 1, -1, -1):
        first, last = ranges[k]
        hi = last if ceiling is None else min(last, ceiling - 1)
        out[k] = (first, hi) if hi >= first else None
        ceiling = first if ceiling is None else min(ceiling, first)
    return out
