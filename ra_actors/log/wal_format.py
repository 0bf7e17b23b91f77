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

* Only the **newest** WAL file of a directory may end in a torn tail (the
  batch being written when the node died).  Every older file was closed by
  a rollover after its last batch was synced, so all of its batches were
  acknowledged: any failure in it, at its end too, is *corruption*.
  Callers say which file is the newest (``tail_ok``); recovery and the
  segment writer never guess.
* In the newest file, a block that fails validation or runs past the end of
  the file is a *torn tail* only when nothing valid of a later batch follows
  it anywhere in the rest of the file (every offset is tried): everything
  from the start of that block is dropped and the scan reports it.  Blocks
  after the failure that belong to the same batch (a power loss may persist
  a batch's pages out of order) are dropped with it; they were never
  acknowledged.  That batch is known only when the failing block's header
  verified; when it did not, the block may be the rest of the previous
  block's batch, so any valid block of a later batch after it is corruption.
* A failure followed by a valid block of a later batch is *corruption*, in
  any file.  :class:`ra_actors.errors.LogCorruption` names the file, the
  byte offset and, where the bytes tell, the server and index range hit.
  Data is never skipped silently.
* ``repair=True`` (newest file only) keeps the dropped bytes in
  ``<name>.torn-<n>`` (fsynced) before truncating them away: a bit flip in
  the last synced batch of the newest file looks exactly like a torn write,
  and the kept bytes are the evidence.
* All reads and writes go through :mod:`.fileio`.
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
import ra_actors.log.fileio as fileio
from .common import LogUsageError, crc32

__all__ = [
    "MAGIC", "VERSION", "FILE_HEADER", "KIND_UID", "KIND_REF", "FLAG_TRUNCATE", "WalRecord",
    "encode_table", "decode_table", "table_columns", "ROW_SIZE",
    "WalBlock", "TornTail", "WalScan", "file_header", "scan_wal_file", "scan_wal_bytes",
    "examine_wal_file", "TORN_SUFFIX",
]

TORN_SUFFIX = ".torn-"  # <wal name>.torn-<n>: bytes a repair set aside

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
    damage: LogCorruption | None = None  # examine_wal_file only: what scan_wal_file raises
    aside: Path | None = None  # repair: where the dropped bytes were kept
    damaged: tuple | None = None  # examine_wal_file: (uid, first, last) the damage hits, if known

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

    def __init__(self, reason: str, offset: int, resume: int, batch: int | None = None, *,
                 ref: int | None = None, uid: bytes | str | None = None,
                 first: int | None = None, last: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.offset = offset
        self.resume = resume
        self.batch = batch  # the failing block's batch number, when its header is valid
        self.ref = ref  # its writer reference / uid / index range, when known
        self.uid = uid
        self.first = first
        self.last = last


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
        raise _Bad("incomplete record table", pos, pos + 1, batch, ref=ref, uid=uid_bytes)
    (tcrc,) = U32.unpack_from(data, table_end)
    if crc32(data[p:table_end]) != tcrc:
        raise _Bad("record table checksum mismatch", p, pos + 1, batch, ref=ref, uid=uid_bytes)
    rows = decode_table(data[p:table_end], count)
    return kind, flags, ref, batch, count, uid_bytes, rows, table_end + 4


def _later_batch_follows(data, start: int, size: int, failed_batch: int):
    """``(offset, header)`` of the first valid block header of a batch >
    ``failed_batch`` at or after ``start``, or None.

    A power loss can persist any subset of the pages of the last (unacknowledged)
    batch, so valid blocks of the failing block's own batch after a failure are
    still a torn tail; a valid block of a later batch proves that the failure is
    in the middle of durable data (a batch is written only after the previous
    one was synced).  Every offset holding a block-kind byte is tried, so a
    valid block is found wherever it starts.
    """
    pos = start
    while pos < size:
        candidates = [i for i in (data.find(b"\xb1", pos), data.find(b"\xb2", pos)) if i >= 0]
        if not candidates:
            return None
        cand = min(candidates)
        try:
            header = _parse_header(data, cand, size)
        except _Bad:
            pos = cand + 1
            continue
        if header[3] > failed_batch:
            return cand, header
        pos = cand + 1
    return None


def _uid_text(uid) -> str | None:
    if isinstance(uid, bytes):
        try:
            return uid.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return uid


def _where(bad: _Bad, refs: dict, last_block) -> str:
    """Which entries a failure hits, as far as the bytes tell."""
    uid = _uid_text(bad.uid) or (refs.get(bad.ref) if bad.ref is not None else None)
    if uid is not None and bad.first is not None:
        return f" (server {uid}, entries {bad.first}..{bad.last})"
    if uid is not None:
        return f" (server {uid}, entries unknown)"
    if last_block is not None and last_block.records:
        return (f" (writer unknown; after server {last_block.uid} entry "
                f"{last_block.records[-1].index})")
    return " (writer unknown)"


def _later_where(header, refs: dict) -> str:
    kind, _flags, ref, batch, _count, uid_bytes, rows, _p = header
    uid = _uid_text(uid_bytes) if uid_bytes is not None else refs.get(ref, f"ref {ref}")
    return f" (batch {batch}, server {uid}, entries {rows[0][0]}..{rows[-1][0]})"


def _scan(data, path: Path, only_uid: str | None, tail_ok: bool):
    """The scanner: ``(blocks, valid_size, torn, damage, damaged)``; ``damage``
    is the LogCorruption to raise (None when the file is sound or only torn),
    ``damaged`` the ``(uid, first, last)`` it hits as far as known."""
    size = len(data)
    if size < FILE_HEADER.size:
        # A crash between creating the file and writing its header.
        reason = "incomplete file header" if size else "empty file"
        if not tail_ok:
            return [], 0, None, LogCorruption(
                f"{reason} in a WAL file that is not the newest (a closed file always has "
                "its header and every batch synced)", str(path), 0), None
        return [], 0, TornTail(0, size, reason), None, None
    magic, version = FILE_HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        return [], 0, None, LogCorruption(f"not a WAL file (magic {bytes(magic)!r})", str(path),
                                          0), None
    if version != VERSION:
        return [], 0, None, LogCorruption(f"unsupported WAL version {version}", str(path), 4), None
    if any(data[5:FILE_HEADER.size]):
        # Written as zeros: anything else is damage, however harmless it looks.
        return [], 0, None, LogCorruption("WAL file header: reserved bytes are not zero", str(path),
                                          5), None
    refs: dict[int, str] = {}
    blocks: list[WalBlock] = []
    pos = FILE_HEADER.size
    last_batch = 0
    while pos < size:
        try:
            block, pos = _read_block(data, pos, size, refs, last_batch, only_uid)
        except _Bad as bad:
            return _failure(data, path, bad, refs, blocks, pos, last_batch, tail_ok)
        blocks.append(block)
        last_batch = block.batch
    return blocks, pos, None, None, None


def _read_block(data, pos: int, size: int, refs: dict, last_batch: int,
                only_uid: str | None) -> tuple[WalBlock, int]:
    """Validate the block at ``pos``: ``(block, end)``; raises _Bad.  Binds its
    writer reference in ``refs``."""
    kind, flags, ref, batch, count, uid_bytes, rows, p = _parse_header(data, pos, size)
    first, last = rows[0][0], rows[-1][0]
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
            raise _Bad(f"unknown writer reference {ref}", pos, pos + 1, batch,
                       ref=ref, first=first, last=last)
    end = p + sum(r[2] for r in rows)
    if end > size:
        raise _Bad("incomplete block payload", pos, pos + 1, batch, uid=uid, first=first, last=last)
    records = []
    if only_uid is None or uid == only_uid:
        prev = None
        for index, term, length, crc in rows:
            if prev is not None and index != prev + 1:
                raise _Bad(f"record index {index} after {prev} in one block", pos, end,
                           batch, uid=uid, first=first, last=last)
            prev = index
            payload = bytes(data[p:p + length])
            if crc32(payload) != crc:
                raise _Bad(f"payload checksum mismatch (index {index})", p, end, batch,
                           uid=uid, first=first, last=last)
            records.append(WalRecord(uid, index, term, payload, crc, p))
            p += length
    return WalBlock(pos, uid, bool(flags & FLAG_TRUNCATE), batch, tuple(records)), end


def _failure(data, path: Path, bad: _Bad, refs: dict, blocks: list, pos: int,
             last_batch: int, tail_ok: bool):
    """What a failed block at ``pos`` means: a torn tail or damage (module rules)."""
    # Without a trustworthy header the failing block's batch is unknown:
    # it may be the rest of the last good block's batch, so valid data of
    # any later batch after it proves damage (the safe side: a power
    # loss that tore the first block of the last batch but kept a later
    # block of it then stops with LogCorruption instead of a guess).
    failed_batch = bad.batch if bad.batch is not None else last_batch
    where = _where(bad, refs, blocks[-1] if blocks else None)
    damaged = (_uid_text(bad.uid) or (refs.get(bad.ref) if bad.ref is not None else None),
               bad.first, bad.last)
    size = len(data)
    later = _later_batch_follows(data, bad.resume, size, failed_batch)
    if later is not None:
        return blocks, pos, None, LogCorruption(
            f"{bad.reason}{where}; valid data of a later batch follows at byte "
            f"{later[0]}{_later_where(later[1], refs)}", str(path), bad.offset), damaged
    if not tail_ok:
        # Only the newest file can end in a batch that was being written
        # when the node died: every batch of an older file was synced
        # (and acknowledged) before the file was closed.
        return blocks, pos, None, LogCorruption(
            f"{bad.reason}{where} in a WAL file that is not the newest: its batches "
            "were all synced and acknowledged, so this is damage, not a torn tail",
            str(path), bad.offset), damaged
    return blocks, pos, TornTail(pos, size - pos, bad.reason), None, None


def scan_wal_bytes(data, path: Path, *, only_uid: str | None = None,
                   tail_ok: bool = True) -> tuple[list, int, TornTail | None]:
    """Validate WAL bytes; return ``(blocks, valid_size, torn)`` or raise
    LogCorruption (see the module rules; ``tail_ok``: may the file end in a
    torn tail, i.e. is it the newest WAL file).

    With ``only_uid`` the payloads of other writers are not extracted or
    checksummed (their block headers and record tables still are), which is
    how a restarting server reads its own entries from a live WAL.
    """
    blocks, valid, torn, damage, _damaged = _scan(data, path, only_uid, tail_ok)
    if damage is not None:
        raise damage
    return blocks, valid, torn


def examine_wal_file(path: str | os.PathLike, *, tail_ok: bool,
                     only_uid: str | None = None) -> WalScan:
    """Like :func:`scan_wal_file` but never raises LogCorruption: damage is in
    ``scan.damage`` and ``scan.blocks`` holds the valid blocks before it (for
    ``ra-actors log check`` and ``dump``).  Read-only."""
    path = Path(path)
    data = fileio.read_file(path)
    blocks, valid, torn, damage, damaged = _scan(data, path, only_uid, tail_ok)
    return WalScan(path, len(data), valid, tuple(blocks), torn, False, damage, None, damaged)


def scan_wal_file(path: str | os.PathLike, *, repair: bool = False,
                  only_uid: str | None = None, tail_ok: bool = True) -> WalScan:
    """Read and validate one WAL file (see the module rules).

    ``tail_ok`` says whether the file is the newest of its WAL directory, the
    only one that may end in a torn tail; in any other file a damaged last
    batch is LogCorruption.  ``repair=True`` (newest file only, no writer may
    have it open) sets the torn bytes aside in ``<name>.torn-<n>`` (fsynced),
    then truncates them away (and fsyncs), rewriting a missing header.
    """
    path = Path(path)
    if repair and not tail_ok:
        raise LogUsageError("only the newest WAL file (tail_ok=True) may be repaired")
    data = fileio.read_file(path)
    blocks, valid, torn, damage, _damaged = _scan(data, path, only_uid, tail_ok)
    if damage is not None:
        raise damage
    repaired = False
    aside = None
    if repair and torn is not None:
        aside = _repair_tail(path, data, valid)
        valid = max(valid, FILE_HEADER.size)
        repaired = True
    return WalScan(path, len(data), valid, tuple(blocks), torn, repaired, None, aside)


def _repair_tail(path: Path, data, valid: int) -> Path | None:
    """Set the bytes from ``valid`` on aside (durably), then truncate them away.

    Nothing is lost on a guess: the scanner has shown that nothing valid of a
    later batch follows, and the dropped bytes are kept in ``<name>.torn-<n>``
    for an operator (a bit flip in the last synced batch of the newest file
    looks exactly like a torn write; the kept bytes are the evidence).
    """
    aside = None
    tail = bytes(data[valid:])
    if tail:
        n = 1
        while (path.with_name(f"{path.name}.torn-{n}")).exists():
            n += 1
        aside = path.with_name(f"{path.name}.torn-{n}")
        tmp = aside.with_name(aside.name + ".tmp")
        fd = fileio.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            try:
                fileio.write_all(fd, tail)
                fileio.fsync(fd)
            finally:
                fileio.close(fd)
            fileio.replace(tmp, aside)
        except BaseException:
            # Nothing was truncated yet: the WAL file still holds every byte.
            try:
                fileio.unlink(tmp, missing_ok=True)
            except Exception:  # noqa: BLE001 - a leftover .tmp is removed at the next open
                pass
            raise
        fileio.fsync_dir(path.parent)
    fd = fileio.open(path, os.O_WRONLY)
    try:
        if valid < FILE_HEADER.size:
            fileio.ftruncate(fd, 0)
            fileio.pwrite(fd, file_header(), 0)
        else:
            fileio.ftruncate(fd, valid)
        fileio.fsync(fd)
    finally:
        fileio.close(fd)
    fileio.fsync_dir(path.parent)
    return aside
