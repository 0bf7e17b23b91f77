"""Snapshots: machine state at an index, durable, checksummed, sent in chunks.

File ``<server>/snapshots/<index:016x>_<term:016x>.snapshot``::

    b"RASN" | version u8 (=1) | 3 zero bytes | crc32 u32 | meta_len u32   (16 bytes)
    meta:  msgpack of SnapshotMeta(index, term, cluster, machine_version)
    state: msgpack of the machine state
    crc32 covers meta_len (4 bytes, big-endian), meta and state.

Rules:

* Written as a temp file, fsynced, renamed to its final name, directory
  fsynced; only then is it durable, and only then are the server's older
  snapshots deleted (so at most one survives, plus one more during a crash
  window, in which case the highest index wins at open).
* A snapshot never replaces a newer one: one that arrives after a snapshot
  with a higher index is durable (superseded) and discarded at once; the
  log below the newer one may already be gone.
* The whole file image is what travels: :meth:`SnapshotStore.read_chunk`
  returns slices of at most 1 MiB, the receiving side feeds them to a
  :class:`SnapshotAcceptor` (or hands the concatenation to
  :meth:`SnapshotStore.write_image`), which verifies the checksum and the
  meta before installing.  ``WriteSnapshot.data`` is such an image.
* Reading a snapshot verifies its checksum; a mismatch is LogCorruption
  naming the file and offset (never a silent fallback: the log below it may
  be gone).
* Leftover ``*.tmp`` / ``.partial-*`` files are crash debris, removed at open.
* Checkpoints (:class:`CheckpointStore`, ``<server>/checkpoints/``) are
  files of the same format, written the same way, but several are kept and
  none truncates the log.  Promoting one renames it into the snapshot
  directory (it was fsynced when written), which then drops the older
  snapshots as any new snapshot does.
* A failed write or fsync raises :class:`ra_actors.errors.StorageError`
  and leaves no file that counts as a snapshot: the tmp (or partial) file is
  removed, never renamed, and a chunked transfer must start over from
  chunk 1.  All I/O goes through :mod:`.fileio`.
"""
from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import Any

from ..codec import pack, unpack
from ..core.types import SnapshotMeta
from ..errors import LogCorruption
import ra_actors.log.fileio as fileio
from .common import LogUsageError, SnapshotNotFound, crc32, remove_hidden_leftovers

__all__ = ["SnapshotStore", "CheckpointStore", "SnapshotAcceptor", "MAX_CHUNK_SIZE", "encode_snapshot",
           "decode_snapshot", "snapshot_name", "snapshot_files", "snapshot_index_on_disk"]

MAGIC = b"RASN"
VERSION = 1
HEADER = struct.Struct(">4sB3xII")  # magic, version, crc, meta_len: 16 bytes
MAX_CHUNK_SIZE = 1 << 20  # 1 MiB: Thespian reassembles bigger messages slowly
SUFFIX = ".snapshot"
_NAME_RE = re.compile(r"^([0-9a-f]{16})_([0-9a-f]{16})\.snapshot$")


def snapshot_name(index: int, term: int) -> str:
    return f"{index:016x}_{term:016x}{SUFFIX}"


def snapshot_files(directory: str | os.PathLike) -> list[tuple[int, int, Path]]:
    """``[(index, term, path), ...]`` of the snapshot files in ``directory``,
    ascending, from their names alone (nothing is read or verified)."""
    directory = Path(directory)
    try:
        names = fileio.listdir(directory)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        m = _NAME_RE.match(name)
        if m:
            out.append((int(m.group(1), 16), int(m.group(2), 16), directory / name))
    out.sort()
    return out


def snapshot_index_on_disk(directory: str | os.PathLike) -> int:
    """Index of the newest snapshot file in ``directory`` by name (0 if none)."""
    files = snapshot_files(directory)
    return files[-1][0] if files else 0


def _meta_tuple(meta: SnapshotMeta) -> tuple:
    return (meta.index, meta.term, tuple(meta.cluster), meta.machine_version)


def encode_snapshot(meta: SnapshotMeta, state_bytes: bytes) -> bytes:
    """The file image of a snapshot whose machine state is already msgpacked."""
    meta_bytes = pack(_meta_tuple(meta))
    ml = struct.pack(">I", len(meta_bytes))
    crc = crc32(state_bytes, crc32(meta_bytes, crc32(ml)))
    return HEADER.pack(MAGIC, VERSION, crc, len(meta_bytes)) + meta_bytes + state_bytes


def decode_snapshot(image: bytes, path: str = "<snapshot image>", *, with_state: bool = True):
    """Validate an image; return ``(SnapshotMeta, state)`` (state None unless ``with_state``)."""
    if len(image) < HEADER.size:
        raise LogCorruption(f"snapshot too short ({len(image)} bytes)", path, 0)
    magic, version, crc, meta_len = HEADER.unpack_from(image, 0)
    if magic != MAGIC:
        raise LogCorruption(f"not a snapshot (magic {magic!r})", path, 0)
    if version != VERSION:
        raise LogCorruption(f"unsupported snapshot version {version}", path, 4)
    if any(image[5:8]):
        raise LogCorruption("snapshot header: reserved bytes are not zero", path, 5)
    if HEADER.size + meta_len > len(image):
        raise LogCorruption("snapshot meta length beyond end of file", path, 12)
    if crc32(image[12:]) != crc:
        raise LogCorruption("snapshot checksum mismatch", path, HEADER.size)
    try:
        index, term, cluster, machine_version = unpack(image[HEADER.size:HEADER.size + meta_len])
        meta = SnapshotMeta(index, term, tuple(cluster), machine_version)
        state = unpack(image[HEADER.size + meta_len:]) if with_state else None
    except Exception as exc:  # the crc matched, so this is a writer bug: still refuse it
        raise LogCorruption(f"snapshot does not decode: {exc}", path, HEADER.size) from None
    return meta, state


class SnapshotStore:
    """The snapshots of one server, in ``directory``."""

    keep_older = False   # a new snapshot makes every older one garbage

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        fileio.mkdir(self.dir)
        remove_hidden_leftovers(self.dir)

    # ----------------------------------------------------------- listing
    def _files(self) -> list[tuple[int, int, Path]]:
        return snapshot_files(self.dir)

    def path_for(self, index: int, term: int) -> Path:
        return self.dir / snapshot_name(index, term)

    def latest_path(self) -> Path | None:
        files = self._files()
        return files[-1][2] if files else None

    def latest(self) -> tuple[SnapshotMeta, Any] | None:
        """``(meta, state)`` of the newest snapshot, checksum verified; None if none."""
        path = self.latest_path()
        if path is None:
            return None
        return decode_snapshot(fileio.read_file(path), str(path))

    def latest_meta(self) -> SnapshotMeta | None:
        path = self.latest_path()
        if path is None:
            return None
        return decode_snapshot(fileio.read_file(path), str(path), with_state=False)[0]

    # ----------------------------------------------------------- writing
    def write(self, meta: SnapshotMeta, state: Any) -> Path:
        """Durably store the machine ``state`` at ``meta`` (state msgpacked via codec)."""
        return self._install(meta, encode_snapshot(meta, pack(state)))

    def write_image(self, meta: SnapshotMeta, image: bytes) -> Path:
        """Durably store a received file image after checking it matches ``meta``."""
        got, _ = decode_snapshot(image, with_state=False)
        if (got.index, got.term) != (meta.index, meta.term):
            raise LogUsageError(f"snapshot image is for index {got.index} term {got.term}, "
                                f"not {meta.index}/{meta.term}")
        return self._install(got, image)

    def _install(self, meta: SnapshotMeta, image: bytes) -> Path:
        final = self.path_for(meta.index, meta.term)
        tmp = final.with_name(final.name + ".tmp")
        fd = fileio.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            try:
                fileio.write_all(fd, image)
                fileio.fsync(fd)
            finally:
                fileio.close(fd)
        except BaseException:
            # Never renamed, never retried: a failed write leaves no snapshot.
            _discard(tmp)
            raise
        return self._publish(tmp, final)

    def _publish(self, tmp: Path, final: Path) -> Path:
        """Make ``tmp`` the snapshot ``final``; returns the newest snapshot's
        path afterwards (``final`` unless a newer one was already there)."""
        index = int(_NAME_RE.match(final.name).group(1), 16)
        newer = [path for i, _t, path in self._files() if i > index]
        if newer and not self.keep_older:
            fileio.unlink(tmp, missing_ok=True)
            return newer[-1]
        try:
            fileio.replace(tmp, final)
        except BaseException:
            _discard(tmp)
            raise
        # If this directory fsync fails the caller gets StorageError and the
        # snapshot is not reported written; the older snapshots stay, so the
        # log below the new one is still covered whatever the disk kept.
        fileio.fsync_dir(self.dir)
        if self.keep_older:
            return final
        # The new snapshot is durable: every older one is now garbage.
        removed = False
        for _i, _t, path in self._files():
            if path != final:
                fileio.unlink(path, missing_ok=True)
                removed = True
        if removed:
            fileio.fsync_dir(self.dir)
        return final

    def begin_accept(self, meta: SnapshotMeta) -> "SnapshotAcceptor":
        """Start receiving the image of ``meta`` chunk by chunk."""
        return SnapshotAcceptor(self, meta)

    # ----------------------------------------------------------- reading
    def read_chunk(self, meta: SnapshotMeta, chunk_no: int,
                   chunk_size: int = MAX_CHUNK_SIZE) -> tuple[bytes, bool]:
        """Chunk ``chunk_no`` (from 1) of the image of ``meta``: ``(data, is_last)``."""
        if not isinstance(chunk_size, int) or not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise LogUsageError(f"chunk_size must be 1..{MAX_CHUNK_SIZE} bytes, not {chunk_size!r}")
        if not isinstance(chunk_no, int) or chunk_no < 1:
            raise LogUsageError(f"chunk_no counts from 1, not {chunk_no!r}")
        path = self.path_for(meta.index, meta.term)
        try:
            fd = fileio.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise SnapshotNotFound(f"no snapshot at index {meta.index} term {meta.term} "
                                   f"in {self.dir}") from None
        try:
            size = fileio.fstat_size(fd)
            start = (chunk_no - 1) * chunk_size
            if start >= size:
                raise LogUsageError(f"chunk {chunk_no} of {chunk_size} bytes is past the end of "
                                    f"the {size}-byte snapshot")
            data = fileio.pread(fd, chunk_size, start)
        finally:
            fileio.close(fd)
        return data, start + len(data) >= size

    def chunk_count(self, meta: SnapshotMeta, chunk_size: int = MAX_CHUNK_SIZE) -> int:
        size = self.path_for(meta.index, meta.term).stat().st_size
        return max(1, -(-size // chunk_size))


class CheckpointStore(SnapshotStore):
    """The checkpoints of one server, in ``directory``: several kept, each a
    snapshot file that truncates nothing (see the module rules)."""

    keep_older = True

    def metas(self) -> list[SnapshotMeta]:
        """The metas of every checkpoint here, ascending, checksums verified."""
        return [decode_snapshot(fileio.read_file(path), str(path), with_state=False)[0]
                for _i, _t, path in self._files()]

    def read(self, meta: SnapshotMeta) -> tuple[SnapshotMeta, Any]:
        """``(meta, state)`` of checkpoint ``meta``, checksum verified."""
        path = self.path_for(meta.index, meta.term)
        try:
            image = fileio.read_file(path)
        except FileNotFoundError:
            raise SnapshotNotFound(f"no checkpoint at index {meta.index} term {meta.term} "
                                   f"in {self.dir}") from None
        return decode_snapshot(image, str(path))

    def remove(self, meta: SnapshotMeta) -> None:
        fileio.unlink(self.path_for(meta.index, meta.term), missing_ok=True)

    def remove_through(self, index: int) -> None:
        """Remove every checkpoint at or below ``index`` (covered by a snapshot)."""
        removed = False
        for i, _t, path in self._files():
            if i <= index:
                fileio.unlink(path, missing_ok=True)
                removed = True
        if removed:
            fileio.fsync_dir(self.dir)

    def promote(self, meta: SnapshotMeta, snapshots: SnapshotStore) -> Path:
        """Rename checkpoint ``meta`` into ``snapshots`` as its newest snapshot
        (older snapshots are then removed); returns the newest snapshot's path."""
        path = self.path_for(meta.index, meta.term)
        if not path.exists():
            raise SnapshotNotFound(f"no checkpoint at index {meta.index} term {meta.term} "
                                   f"in {self.dir}")
        final = snapshots._publish(path, snapshots.path_for(meta.index, meta.term))
        fileio.fsync_dir(self.dir)
        return final


class SnapshotAcceptor:
    """Receives a snapshot image in chunks (numbered from 1) and installs it.

    A repeated chunk number is ignored (the sender retried); a chunk out of
    order raises LogUsageError.  ``accept_chunk(..., last=True)`` verifies,
    fsyncs and installs, returning True.
    """

    def __init__(self, store: SnapshotStore, meta: SnapshotMeta):
        self.store = store
        self.meta = meta
        self.next_chunk = 1
        self.done = False
        self.partial = store.dir / f".partial-{snapshot_name(meta.index, meta.term)}"
        self.failed = False
        self._fd: int | None = fileio.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)

    def accept_chunk(self, chunk_no: int, data: bytes, last: bool) -> bool:
        if self.done:
            return True
        if chunk_no < self.next_chunk:
            return False
        if chunk_no != self.next_chunk:
            raise LogUsageError(f"snapshot chunk {chunk_no} arrived, expected {self.next_chunk}")
        if self._fd is None:
            raise LogUsageError("snapshot transfer was aborted")
        try:
            fileio.write_all(self._fd, data)
            if last:
                fileio.fsync(self._fd)
        except BaseException:
            # The partial file's content is unknown now: never retried or
            # synced again, the transfer must start over from chunk 1.
            self.failed = True
            self.abort()
            raise
        self.next_chunk += 1
        if not last:
            return False
        fd, self._fd = self._fd, None
        fileio.close(fd)
        image = fileio.read_file(self.partial)
        try:
            got, _ = decode_snapshot(image, str(self.partial), with_state=False)
            if (got.index, got.term) != (self.meta.index, self.meta.term):
                raise LogUsageError(f"received snapshot is for index {got.index} term "
                                    f"{got.term}, not {self.meta.index}/{self.meta.term}")
        except BaseException:
            self.abort()
            raise
        final = self.store.path_for(got.index, got.term)
        self.store._publish(self.partial, final)
        self.done = True
        return True

    def abort(self) -> None:
        """Forget a transfer (the partial file is deleted)."""
        fd, self._fd = self._fd, None
        try:
            if fd is not None:
                fileio.close(fd)
        finally:
            _discard(self.partial)


def _discard(path: Path) -> None:
    """Best-effort removal of a partial or tmp file after a failure (leftovers
    are removed at the next open anyway)."""
    try:
        fileio.unlink(path, missing_ok=True)
    except Exception:  # noqa: BLE001
        pass
