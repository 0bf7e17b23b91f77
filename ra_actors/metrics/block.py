"""The node's counters file: one slot per server and per storage service,
written by its owner, read by anyone without asking the owner.

Why a file in the data directory, mapped into memory (and not a message to
the server, nor POSIX shared memory):

* Ra keeps its counters in seshat (atomic arrays in the VM's memory) so that
  ``key_metrics`` and the Prometheus exporter never wait for a busy server.
  Here a server is a Thespian actor: anything that asks it waits for its
  turn.  A memory-mapped file gives the same property across processes: the
  server (or the host actor carrying it, in placement ``shared``) stores its
  counters into its own slot at the end of each round (a ``struct.pack_into``
  of ~25 integers, under a microsecond), and a reader maps the file
  read-only.
* The file lives in the node's data directory (``counters``, mode 0600),
  so a reader needs nothing but the data directory (``ra-actors metrics
  --data-dir``), the node's privacy rules (0700/0600) cover it, and a node
  killed with SIGKILL leaves no segment behind in ``/dev/shm``: the next
  start of the node replaces the file.  It is *not* durable state: the
  kernel writes its dirty pages back lazily, nothing ever fsyncs it, and
  nothing reads it at recovery.  The file is sparse: only slots in use
  take pages.

Layout (little-endian)::

    header (4096 bytes): "RACN" | version u16 | 0 u16 | slot size u32 |
        capacity u32 | slots used u32 (@16) | 0 u32 | created ns u64 (@24) |
        schema length u32 (@32) | ... | schema (msgpack, @64): node name and
        the field names of each slot kind
    slot i at 4096 + i * 1024:
        @0   seq u64          the writer's sequence lock (odd while writing)
        @8   gen u64          owner: allocation number, 0 = free
        @16  status u64       owner: STATUS_* (running, stopped, ...)
        @24  incarnation u64  owner
        @32  kind u64         owner: KIND_*
        @64  label            owner: u16 length + msgpack [name, cluster]
        @512 values           the writer: up to 64 signed 64-bit integers

Rules:

* One writer per slot (the server's process, or the host actor; a service's
  own process), one owner (the node's supervisor: allocation, status,
  label).  Slots 0..2 belong to the WAL, the segment writer and the
  snapshot writer; servers get the others, by name, and keep their slot
  across restarts on the node (counters go on from where they were).
* Readers never block a writer: a write bumps ``seq`` to odd, stores the
  values, bumps it to even; a reader retries while it sees an odd or a
  changed ``seq`` (a writer killed mid-write leaves an odd ``seq`` that its
  next incarnation repairs; a reader gives up after a few tries and takes
  what it read).
* A full file (65,536 slots) is not an error: the server runs without
  counters and the supervisor logs it.
"""
from __future__ import annotations

import mmap
import os
import struct
import time
from typing import Any, Iterator, NamedTuple, Sequence

import msgpack

__all__ = ["COUNTERS_FILE", "CountersFile", "SlotWriter", "CountersReader", "SlotView", "counters_path",
           "SERVICE_SLOTS", "KIND_SERVER", "STATUS_NAMES"]

COUNTERS_FILE = "counters"
MAGIC = b"RACN"
VERSION = 1
HEADER_SIZE = 4096
SLOT_SIZE = 1024
CAPACITY = 65536
LABEL_AT = 64
LABEL_MAX = 446
VALUES_AT = 512
MAX_VALUES = (SLOT_SIZE - VALUES_AT) // 8

KIND_SERVER = 1
SERVICE_SLOTS: dict[str, int] = {"wal": 0, "segment_writer": 1, "snapshot_writer": 2}
_KIND_OF_SERVICE = {"wal": 2, "segment_writer": 3, "snapshot_writer": 4}
KIND_NAMES = {KIND_SERVER: "server", **{v: k for k, v in _KIND_OF_SERVICE.items()}}

STATUS_FREE, STATUS_STARTING, STATUS_RUNNING, STATUS_STOPPED, STATUS_EXITED = range(5)
STATUS_NAMES = {STATUS_FREE: "free", STATUS_STARTING: "starting", STATUS_RUNNING: "running",
                STATUS_STOPPED: "stopped", STATUS_EXITED: "exited"}

_HEAD = struct.Struct("<4sHHIIII Q I")
_U64 = struct.Struct("<Q")
_OWNER = struct.Struct("<QQQQ")        # gen, status, incarnation, kind at @8
_LABEL_LEN = struct.Struct("<H")
_READ_TRIES = 50


def counters_path(data_dir: str | os.PathLike) -> str:
    return os.path.join(os.fspath(data_dir), COUNTERS_FILE)


def _slot_offset(slot: int) -> int:
    return HEADER_SIZE + slot * SLOT_SIZE


def _values_struct(n: int) -> struct.Struct:
    if n > MAX_VALUES:
        raise ValueError(f"a slot holds at most {MAX_VALUES} values, not {n}")
    return struct.Struct(f"<{n}q")


def _label_bytes(name: str, cluster: str) -> bytes:
    data = msgpack.packb([name, cluster])
    while len(data) > LABEL_MAX:
        # too long for the slot: keep the beginning of each, marked as cut
        name, cluster = (name[:len(name) * 3 // 4] + "…", cluster[:len(cluster) // 2] + "…")
        data = msgpack.packb([name, cluster])
    return data


def _read_values(mm: Any, off: int, values: struct.Struct) -> tuple:
    """The slot's values, consistent unless its writer keeps writing (or died
    mid-write) for every try."""
    vals: tuple = ()
    for _ in range(_READ_TRIES):
        s1 = _U64.unpack_from(mm, off)[0]
        vals = values.unpack_from(mm, off + VALUES_AT)
        if not s1 & 1 and _U64.unpack_from(mm, off)[0] == s1:
            return vals
        time.sleep(0)
    return vals


class CountersFile:
    """The owner's side (the node's supervisor): creates the file, allocates
    and frees slots, records each slot's status (see the module rules)."""

    def __init__(self, path: str, mm: mmap.mmap, fd: int) -> None:
        self.path = path
        self._mm = mm
        self._fd = fd
        self.used = 0
        self._free: list[int] = []
        self._gen = 0
        self.by_name: dict[str, int] = {}
        self._schema = CountersReader.schema_of(mm)
        self._server_values = _values_struct(len(self._schema["server"]))

    @classmethod
    def create(cls, data_dir: str, node: str, server_fields: Sequence[str],
               service_fields: dict[str, Sequence[str]]) -> "CountersFile":
        """A new, empty counters file for ``node`` (replacing any old one:
        readers that still map the old one keep reading it, nobody writes it)."""
        path = counters_path(data_dir)
        schema = msgpack.packb({"version": VERSION, "node": node, "server": list(server_fields),
                                "services": {k: list(v) for k, v in service_fields.items()}})
        if 64 + len(schema) > HEADER_SIZE:
            raise ValueError("counters schema too large")
        tmp = f"{path}.tmp.{os.getpid()}"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, _HEAD.pack(MAGIC, VERSION, 0, SLOT_SIZE, CAPACITY, len(SERVICE_SLOTS), 0,
                                    time.time_ns(), len(schema)))
            os.pwrite(fd, schema, 64)
            os.ftruncate(fd, HEADER_SIZE + CAPACITY * SLOT_SIZE)
            os.replace(tmp, path)
        except BaseException:
            os.close(fd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        mm = mmap.mmap(fd, HEADER_SIZE + CAPACITY * SLOT_SIZE)
        self = cls(path, mm, fd)
        self.used = len(SERVICE_SLOTS)
        for kind, slot in SERVICE_SLOTS.items():
            self._claim(slot, _KIND_OF_SERVICE[kind], kind, node)
        return self

    def _claim(self, slot: int, kind: int, name: str, cluster: str) -> None:
        off = _slot_offset(slot)
        self._gen += 1
        self._mm[off:off + SLOT_SIZE] = bytes(SLOT_SIZE)
        label = _label_bytes(name, cluster)
        _LABEL_LEN.pack_into(self._mm, off + LABEL_AT, len(label))
        self._mm[off + LABEL_AT + 2:off + LABEL_AT + 2 + len(label)] = label
        _OWNER.pack_into(self._mm, off + 8, self._gen, STATUS_STARTING, 0, kind)

    def allocate(self, name: str, cluster: str) -> int | None:
        """The slot of server ``name`` (its old one if it has one), or None
        when the file is full."""
        slot = self.by_name.get(name)
        if slot is not None:
            return slot
        if self._free:
            slot = self._free.pop()
        elif self.used < CAPACITY:
            slot = self.used
            self.used += 1
            struct.pack_into("<I", self._mm, 16, self.used)
        else:
            return None
        self._claim(slot, KIND_SERVER, name, cluster)
        self.by_name[name] = slot
        return slot

    def set_status(self, name: str, status: int, incarnation: int | None = None) -> None:
        slot = self.by_name.get(name)
        if slot is None:
            return
        off = _slot_offset(slot)
        _U64.pack_into(self._mm, off + 16, status)
        if incarnation is not None:
            _U64.pack_into(self._mm, off + 24, incarnation)

    def set_service_status(self, kind: str, status: int) -> None:
        _U64.pack_into(self._mm, _slot_offset(SERVICE_SLOTS[kind]) + 16, status)

    def free(self, name: str) -> None:
        """Server ``name`` is deleted: its slot (and counters) go."""
        slot = self.by_name.pop(name, None)
        if slot is None:
            return
        off = _slot_offset(slot)
        _OWNER.pack_into(self._mm, off + 8, 0, STATUS_FREE, 0, 0)
        self._free.append(slot)

    def read_server(self, name: str) -> tuple[dict[str, int], int] | None:
        """``({field: value}, status)`` of server ``name``, or None."""
        slot = self.by_name.get(name)
        if slot is None:
            return None
        off = _slot_offset(slot)
        vals = _read_values(self._mm, off, self._server_values)
        status = _U64.unpack_from(self._mm, off + 16)[0]
        return dict(zip(self._schema["server"], vals)), status

    def close(self) -> None:
        try:
            self._mm.close()
        finally:
            os.close(self._fd)


class SlotWriter:
    """One slot's writer (see the module rules).  ``counters`` names the
    fields that are counters: they go on from the slot's current values."""

    def __init__(self, mm: mmap.mmap, off: int, n: int, counters: Sequence[bool]) -> None:
        self._mm = mm
        self._off = off
        self._values = _values_struct(n)
        seq = _U64.unpack_from(mm, off)[0]
        self._seq = seq + 1 if seq & 1 else seq           # repair a writer that died mid-write
        old = _read_values(mm, off, self._values)
        base = tuple(v if c else 0 for v, c in zip(old, counters))
        self._base = base if any(base) else None

    @classmethod
    def open(cls, data_dir: str, slot: int, n: int, counters: Sequence[bool]) -> "SlotWriter | None":
        """The writer of ``slot`` of ``data_dir``'s counters file; None if the
        file does not exist (a node started without one: no counters)."""
        try:
            fd = os.open(counters_path(data_dir), os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            start = _slot_offset(slot)
            page = start - start % mmap.ALLOCATIONGRANULARITY
            mm = mmap.mmap(fd, start - page + SLOT_SIZE, offset=page)
        finally:
            os.close(fd)
        return cls(mm, start - page, n, counters)

    def publish(self, values: Sequence[int]) -> None:
        """Store ``values`` (one per field, in order) as the slot's current ones."""
        mm, off = self._mm, self._off
        base = self._base
        if base is not None:
            values = [v + b for v, b in zip(values, base)]
        seq = self._seq
        _U64.pack_into(mm, off, seq + 1)
        self._values.pack_into(mm, off + VALUES_AT, *values)
        self._seq = seq + 2
        _U64.pack_into(mm, off, seq + 2)

    def close(self) -> None:
        self._mm.close()


class SlotView(NamedTuple):
    """One slot as a reader sees it."""

    kind: str                 # "server", "wal", "segment_writer", "snapshot_writer"
    name: str                 # the server's name (the service's kind for a service)
    cluster: str              # the server's cluster name (the node's name for a service)
    status: str               # STATUS_NAMES
    incarnation: int
    values: dict[str, int]


class CountersReader:
    """A read-only view of a node's counters file (``ra-actors metrics``,
    the HTTP exporter).  Raises ``FileNotFoundError`` if there is none."""

    def __init__(self, data_dir: str | os.PathLike) -> None:
        self.path = counters_path(data_dir)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            self._ino = os.fstat(fd).st_ino
            self._mm = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        head = _HEAD.unpack_from(self._mm, 0)
        if head[0] != MAGIC or head[1] != VERSION or head[3] != SLOT_SIZE:
            self._mm.close()
            raise ValueError(f"{self.path} is not a counters file of version {VERSION}")
        self.schema = self.schema_of(self._mm)
        self.node: str = self.schema["node"]

    @staticmethod
    def schema_of(mm: Any) -> dict:
        length = struct.unpack_from("<I", mm, 32)[0]
        return msgpack.unpackb(bytes(mm[64:64 + length]))

    def replaced(self) -> bool:
        """True if the node replaced the file since it was opened (a restart)."""
        try:
            return os.stat(self.path).st_ino != self._ino
        except FileNotFoundError:
            return True

    def slots(self) -> Iterator[SlotView]:
        """Every slot in use: the services first, then the servers."""
        mm = self._mm
        used = struct.unpack_from("<I", mm, 16)[0]
        server = _values_struct(len(self.schema["server"]))
        services = {k: _values_struct(len(v)) for k, v in self.schema["services"].items()}
        for slot in range(min(used, CAPACITY)):
            off = _slot_offset(slot)
            gen, status, incarnation, kind = _OWNER.unpack_from(mm, off + 8)
            if not gen:
                continue
            n = _LABEL_LEN.unpack_from(mm, off + LABEL_AT)[0]
            name, cluster = msgpack.unpackb(bytes(mm[off + LABEL_AT + 2:off + LABEL_AT + 2 + n]))
            kind_name = KIND_NAMES.get(kind, "unknown")
            if kind == KIND_SERVER:
                fields, values = self.schema["server"], server
            elif kind_name in services:
                fields, values = self.schema["services"][kind_name], services[kind_name]
            else:
                continue
            vals = _read_values(mm, off, values)
            yield SlotView(kind_name, name, cluster, STATUS_NAMES.get(status, "unknown"), incarnation,
                           dict(zip(fields, vals)))

    def close(self) -> None:
        self._mm.close()

    def __enter__(self) -> "CountersReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
