"""The WAL file format: encoding of blocks and the validating scanner.

A WAL file is a header followed by *blocks*; a block holds consecutive
records of one writer (server uid) from one batch::

    file header (8 bytes):  b"RAWL" | version u8 (=1) | 3 zero bytes
    block:
      kind u8        0xB1: the writer's uid follows inline (first block of that
                     writer in this file, which binds ``ref`` to the uid);
                     0xB2: ``ref`` alone names the writer (the short reference)
      flags u8       bit 0 = truncate: the writer's log restarts here (first
                     entry after an installed snapshot); everything it wrote
                     before is superseded
      ref u32        per-file number of the writer (1, 2, ...)
      batch u32      per-file number of the write+fsync batch (1, 2, ...)
      count u32      number of records (>= 1)
      [uid_len u16 | uid utf-8]                  only when kind == 0xB1
      hcrc u32       crc32 of the block header bytes above
      record table, one column per field, ``count`` values each:
        index u64[count] | term u64[count] | length u32[count] | crc u32[count]
        (record k is index[k], term[k], length[k], crc[k] = crc32 of its payload)
      tcrc u32       crc32 of the record table
      payloads       count msgpack payloads, concatenated, lengths as above

Every byte of a block is covered by a crc32: the header (hcrc), every
record's index, term, length and payload crc (tcrc) and each payload (crc).
Storing the record fields as columns is what makes encoding cheap (a few C
loops over arrays, one crc32 call per record, no per-record Python work),
so the WAL keeps up with a bare write + fdatasync loop.

Rules of the scanner (:func:`scan_wal_file`):

* A block that fails validation or runs past the end of the file is a
  *torn tail* when nothing valid from a later batch follows it: everything
  from the start of that block is dropped (and truncated away with
  ``repair=True``), and the scan reports it.  Blocks after the failure that
  belong to the same batch (a power loss may persist a batch's pages out of
  order) are dropped with it; they were never acknowledged.
* A failure followed by a valid block of a later batch is *corruption*:
  :class:`ra_actors.errors.LogCorruption` names the file and byte offset.
  Data is never skipped silently.
* Nothing on disk is unpickled: payloads stay bytes; callers decode them
  with :func:`ra_actors.codec.unpack`.
"""
from __future__ import annotations

import os
import struct
import sys
from array import array
from dataclasses import dataclass
from pathlib import Path

from ..errors import LogCorruption
from .common import crc32, fsync_dir

__all__ = [
    "MAGIC", "VERSION", "FILE_HEADER", "KIND_UID", "KIND_REF", "FLAG_TRUNCATE", "WalRecord",
    "encode_table", "decode_table", "table_columns", "ROW_SIZE",
    "WalBlock", "TornTail", "WalScan", "file_header", "scan_wal_file", "scan_wal_bytes",
]

MAGIC = b"RAWL"
VERSION = 1
FILE_HEADER = struct.Struct(">4sB3x")  # 8 bytes
KIND_UID = 0xB1
KIND_REF = 0xB2
FLAG_TRUNCATE = 0x01
BLOCK = struct.Struct(">BBIII")  # kind, flags, ref, batch, count: 14 bytes
UID_LEN = struct.Struct(">H")
U32 = struct.Struct(">I")
ROW_SIZE = 24  # bytes of record table per record: index u64, term u64, length u32, crc u32
MAX_BLOCK_RECORDS = 1 << 22  # sanity bound for a garbage count field
_SWAP = sys.byteorder == "little"  # tables are big-endian on disk
assert array("Q").itemsize == 8 and array("I").itemsize == 4


_SMALL_N = 8
_SMALL_TABLES = [struct.Struct(f">{2 * n}Q{2 * n}I") for n in range(_SMALL_N + 1)]


def encode_table(first: int, terms, payloads) -> bytes:
    """The record table of consecutive records from ``first``; ``terms`` is an int
    (one term for all) or a sequence with one term per payload."""
    n = len(payloads)
    if n <= _SMALL_N:
        # Small batches: one precompiled struct call beats four array round trips.
        if n == 1:
            p = payloads[0]
            return _SMALL_TABLES[1].pack(first, terms if isinstance(terms, int) else terms[0],
                                         len(p), crc32(p))
        term_list = [terms] * n if isinstance(terms, int) else list(terms)
        return _SMALL_TABLES[n].pack(*range(first, first + n), *term_list,
                                     *map(len, payloads), *map(crc32, payloads))
    cols = [array("Q", range(first, first + n)),
            array("Q", [terms]) * n if isinstance(terms, int) else array("Q", terms),
            array("I", map(len, payloads)),
            array("I", map(crc32, payloads))]
    if _SWAP:
        for col in cols:
            col.byteswap()
    return b"".join([c.tobytes() for c in cols])


def table_columns(table, count: int) -> tuple[array, array, array, array]:
    """``(indexes, terms, lengths, crcs)`` arrays of a record table."""
    q = array("Q")
    q.frombytes(table[:16 * count])
    i = array("I")
    i.frombytes(table[16 * count:24 * count])
    if _SWAP:
        q.byteswap()
        i.byteswap()
    return q[:count], q[count:], i[:count], i[count:]


def decode_table(table, count: int) -> list[tuple[int, int, int, int]]:
    """``[(index, term, length, crc), ...]`` from a record table."""
    return list(zip(*table_columns(table, count)))


_KINDS = (KIND_UID, KIND_REF)


@dataclass(frozen=True, slots=True)
class WalRecord:
    """One entry as stored: ``payload`` is the msgpack encoding of its command."""

    uid: str
    index: int
    term: int
    payload: bytes
    crc: int  # crc32 of the payload (verified)
    offset: int  # byte offset of the payload in the file


@dataclass(frozen=True, slots=True)
class WalBlock:
    offset: int
    uid: str
    truncate: bool
    batch: int
    records: tuple  # (WalRecord, ...)


@dataclass(frozen=True, slots=True)
class TornTail:
    """An incomplete or unverifiable tail: bytes from ``offset`` on are not valid data."""

    offset: int
    dropped_bytes: int
    reason: str


@dataclass(frozen=True, slots=True)
class WalScan:
    path: Path
    file_size: int
    valid_size: int  # bytes of the file that hold valid data (header included)
    blocks: tuple  # (WalBlock, ...)
    torn: TornTail | None
    repaired: bool  # the torn tail was truncated away

    def records(self):
        for block in self.blocks:
            yield from block.records

    @property
    def record_count(self) -> int:
        return sum(len(b.records) for b in self.blocks)


def file_header() -> bytes:
    return FILE_HEADER.pack(MAGIC, VERSION)


class _Bad(Exception):
    """Internal: validation failed at ``offset``; ``resume`` is where a later
    valid block could start (the failing block's trustworthy end, if known)."""

    def __init__(self, reason: str, offset: int, resume: int, batch: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.offset = offset
        self.resume = resume
        self.batch = batch  # the failing block's batch number, when its header is valid


def _parse_header(data, pos: int, size: int):
    """Validate a block header + record table at ``pos``.

    Returns ``(kind, flags, ref, batch, count, uid_bytes, rows, payload_start)``;
    raises _Bad.
    """
    if pos + BLOCK.size > size:
        raise _Bad("incomplete block header", pos, pos + 1)
    kind, flags, ref, batch, count = BLOCK.unpack_from(data, pos)
    if kind not in _KINDS:
        raise _Bad(f"invalid block kind 0x{kind:02x}", pos, pos + 1)
    if flags & ~FLAG_TRUNCATE:
        raise _Bad(f"invalid block flags 0x{flags:02x}", pos, pos + 1)
    if not 1 <= count <= MAX_BLOCK_RECORDS:
        raise _Bad(f"invalid record count {count}", pos, pos + 1)
    p = pos + BLOCK.size
    uid_bytes = None
    if kind == KIND_UID:
        if p + UID_LEN.size > size:
            raise _Bad("incomplete block header", pos, pos + 1)
        (uid_len,) = UID_LEN.unpack_from(data, p)
        p += UID_LEN.size
        if p + uid_len > size:
            raise _Bad("incomplete block header", pos, pos + 1)
        uid_bytes = bytes(data[p:p + uid_len])
        p += uid_len
    if p + 4 > size:
        raise _Bad("incomplete block header", pos, pos + 1)
    (hcrc,) = U32.unpack_from(data, p)
    if crc32(data[pos:p]) != hcrc:
        raise _Bad("block header checksum mismatch", pos, pos + 1)
    p += 4
    table_end = p + count * ROW_SIZE
    if table_end + 4 > size:
        raise _Bad("incomplete record table", pos, pos + 1, batch)
    (tcrc,) = U32.unpack_from(data, table_end)
    if crc32(data[p:table_end]) != tcrc:
        raise _Bad("record table checksum mismatch", p, pos + 1, batch)
    rows = decode_table(data[p:table_end], count)
    return kind, flags, ref, batch, count, uid_bytes, rows, table_end + 4


def _later_batch_follows(data, start: int, size: int, failed_batch: int) -> int | None:
    """Offset of a valid block header of a batch > ``failed_batch`` at or after
    ``start``, or None.

    A power loss can persist any subset of the pages of the last (unacknowledged)
    batch, so valid blocks of the failing block's own batch after a failure are
    still a torn tail; a valid block of a later batch proves that the failure is
    in the middle of durable data (a batch is written only after the previous
    one was synced).
    """
    pos = start
    while pos < size:
        candidates = [i for i in (data.find(b"\xb1", pos), data.find(b"\xb2", pos)) if i >= 0]
        if not candidates:
            return None
        cand = min(candidates)
        try:
            _kind, _flags, _ref, batch, _count, _uid, _rows, _p = _parse_header(data, cand, size)
        except _Bad:
            pos = cand + 1
            continue
        if batch > failed_batch:
            return cand
        pos = cand + 1
    return None


def scan_wal_bytes(data, path: Path, *, only_uid: str | None = None) -> tuple[list, int, TornTail | None]:
    """Validate WAL bytes; return ``(blocks, valid_size, torn)``.

    With ``only_uid`` the payloads of other writers are not extracted or
    checksummed (their block headers and record tables still are), which is
    how a restarting server reads its own entries from a live WAL.
    """
    size = len(data)
    if size < FILE_HEADER.size:
        # A crash between creating the file and writing its header.
        torn = TornTail(0, size, "incomplete file header") if size else TornTail(0, 0, "empty file")
        return [], 0, torn
    magic, version = FILE_HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise LogCorruption(f"not a WAL file (magic {bytes(magic)!r})", str(path), 0)
    if version != VERSION:
        raise LogCorruption(f"unsupported WAL version {version}", str(path), 4)
    refs: dict[int, str] = {}
    blocks: list[WalBlock] = []
    pos = FILE_HEADER.size
    last_batch = 0
    while pos < size:
        try:
            kind, flags, ref, batch, count, uid_bytes, rows, p = _parse_header(data, pos, size)
            if batch < last_batch:
                raise _Bad(f"batch number {batch} after batch {last_batch}", pos, pos + 1)
            # From here on the header is verified, so its batch number is trusted.
            if kind == KIND_UID:
                try:
                    uid = uid_bytes.decode("utf-8")
                except UnicodeDecodeError:
                    raise _Bad("writer uid is not utf-8", pos, pos + 1, batch) from None
                if ref in refs and refs[ref] != uid:
                    raise _Bad(f"writer reference {ref} rebound", pos, pos + 1, batch)
                refs[ref] = uid
            else:
                uid = refs.get(ref)
                if uid is None:
                    raise _Bad(f"unknown writer reference {ref}", pos, pos + 1, batch)
            end = p + sum(r[2] for r in rows)
            if end > size:
                raise _Bad("incomplete block payload", pos, pos + 1, batch)
            records = []
            if only_uid is None or uid == only_uid:
                prev = None
                for index, term, length, crc in rows:
                    if prev is not None and index != prev + 1:
                        raise _Bad(f"record index {index} after {prev} in one block", pos, end, batch)
                    prev = index
                    payload = bytes(data[p:p + length])
                    if crc32(payload) != crc:
                        raise _Bad(f"payload checksum mismatch (index {index})", p, end, batch)
                    records.append(WalRecord(uid, index, term, payload, crc, p))
                    p += length
            blocks.append(WalBlock(pos, uid, bool(flags & FLAG_TRUNCATE), batch, tuple(records)))
            last_batch = batch
            pos = end
        except _Bad as bad:
            # Without a trustworthy header the failing block may belong to the
            # batch after the last good block.
            failed_batch = bad.batch if bad.batch is not None else last_batch + 1
            later = _later_batch_follows(data, bad.resume, size, failed_batch)
            if later is not None:
                raise LogCorruption(f"{bad.reason}; valid data of a later batch follows at byte "
                                    f"{later}", str(path), bad.offset) from None
            return blocks, pos, TornTail(pos, size - pos, bad.reason)
    return blocks, pos, None


def scan_wal_file(path: str | os.PathLike, *, repair: bool = False,
                  only_uid: str | None = None) -> WalScan:
    """Read and validate one WAL file (see the module rules).

    ``repair=True`` truncates a torn tail away (and fsyncs), rewriting a
    missing header: use it only on files no writer has open.
    """
    path = Path(path)
    with open(path, "rb") as f:
        data = f.read()
    blocks, valid, torn = scan_wal_bytes(data, path, only_uid=only_uid)
    repaired = False
    if repair and torn is not None:
        fd = os.open(path, os.O_WRONLY)
        try:
            if valid < FILE_HEADER.size:
                os.ftruncate(fd, 0)
                os.pwrite(fd, file_header(), 0)
                valid = FILE_HEADER.size
            else:
                os.ftruncate(fd, valid)
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(path.parent)
        repaired = True
    return WalScan(path, len(data), valid, tuple(blocks), torn, repaired)
