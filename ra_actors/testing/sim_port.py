"""The simulator's side of a :class:`~ra_actors.shell.server.ServerShell`.

The simulator runs production's interpreter: every simulated server is a
real ``ServerShell`` whose port and store are these two classes, one pair
per incarnation.  Rules:

* **Everything goes through the world.**  RPCs, forwarded commands and
  client replies travel on the simulated :class:`~.network.Network` (one
  message per round and destination, as the actors batch them); the WAL,
  meta and snapshot writes go to the node's :class:`~.disk.NodeDisk`, which
  answers later on virtual time; timers are events on the simulator's heap.
* **The invariants watch the seams.**  An acknowledgement or vote is checked
  against what the disk could recover when it is *sent*; a log append
  against the commit index the server had before the message that caused
  it; a truncation against the durable snapshot.
* **What the simulator does not model** it refuses loudly or counts: a
  machine ``SendMsg`` to something that is not a Raft server is counted and
  dropped (simulated clients get replies, not messages); monitors of
  anything but Raft servers never fire (simulated clients never die).
* A port belongs to one incarnation: after a crash its calls are ignored
  (the world has already forgotten that process).
"""
from __future__ import annotations

import random
from typing import Any, NamedTuple, Protocol

from .. import codec
from ..core import messages as msgs
from ..core.server import Recovered
from ..core.types import ServerId, SnapshotMeta
from .disk import NodeDisk
from .invariants import Invariants


class Slot(Protocol):
    """What a port needs of the simulator's record of one server."""

    sid: ServerId
    uid: str
    cluster: str
    incarnation: int
    shell: Any
    commit_before: int


class World(Protocol):
    """What a port needs of the simulator (:class:`~.sim.Simulation`)."""

    rng: random.Random
    now: int
    disks: dict[str, NodeDisk]
    inv: Invariants
    stats: dict[str, Any]
    wal_loss: float       # chance that one WAL write is lost (fault "wal-loss")
    faulting: bool        # the fault phase is on

    def note(self, text: str, always: bool = True) -> None: ...
    def schedule_at(self, time: int, kind: str, *args: Any) -> None: ...
    def wal_wakeup(self, node: str, delay: int | None) -> None: ...
    def rpcs_sent(self, slot: Slot, to: ServerId, rpcs: tuple) -> None: ...
    def send_server(self, src_node: str, to: ServerId, msg: Any, sender: Any = None) -> None: ...
    def send_client(self, src_node: str, to: Any, kind: str, payload: tuple) -> None: ...
    def watch(self, slot: Slot, target: Any, ref: Any) -> None: ...
    def unwatch(self, slot: Slot, target: Any, ref: Any) -> None: ...
    def server_exited(self, slot: Slot, why: str) -> None: ...
    def server_crashed(self, slot: Slot, reason: str, exc: BaseException | None) -> None: ...


class SimAppend(NamedTuple):
    """One append on its way to the simulated WAL, flagged as the real
    ``ServerLog`` flags it (the WAL's sequencing rule, ``testing/disk.py``)."""

    entries: tuple
    truncate: bool      # the first entry of the log after its snapshot
    overwrite: bool     # replaces entries the log held
    prev_term: int      # the term of the entry before the first
    durable: int        # the log's durable prefix (as ServerLog's last_written)


class SimStore:
    """A server's durable state, kept by its node's simulated disk."""

    def __init__(self, sim: World, slot: Slot, incarnation: int) -> None:
        self.sim = sim
        self.slot = slot
        self.incarnation = incarnation
        self.disk = sim.disks[slot.sid.node]
        self._appended: dict[int, int] = {}   # index -> term of what this process wrote
        self._first_index = 1                  # the log's, as ServerLog keeps them
        self._last_index = 0
        self._wrote = False                    # ServerLog flags its first append an overwrite
        # The log's terms and durable prefix, as ServerLog keeps them (the
        # WAL's sequencing rule needs both with every append).
        self._terms: dict[int, int] = {}
        self._durable = 0

    @property
    def _token(self) -> tuple[ServerId, int]:
        return (self.slot.sid, self.incarnation)

    def recover(self) -> Recovered:
        data = self.disk.recover(self.slot.uid)
        snapshot = None
        if data.snapshot is not None:
            meta, blob = data.snapshot
            snapshot = (meta, codec.unpack(blob))
        # Round-trip the entries through msgpack, as a real log reader would.
        entries = tuple(codec.normalise(e) for e in data.entries)
        base = snapshot[0].index if snapshot is not None else 0
        self._first_index = base + 1
        self._last_index = entries[-1].index if entries else base
        self._terms = {e.index: e.term for e in entries}
        if snapshot is not None:
            self._terms[base] = snapshot[0].term
        self._durable = self._last_index
        cps = tuple(meta for meta, _blob in data.checkpoints)
        newest = (cps[-1], codec.unpack(data.checkpoints[-1][1])) if cps else None
        if newest is not None:
            self.sim.stats["checkpoint_restarts"] += 1
        return Recovered(data.term, data.voted_for, data.last_applied, snapshot, entries, cps, newest)

    def append(self, entries: tuple) -> SimAppend:
        first = entries[0].index
        flags = (first == self._first_index, first <= self._last_index or not self._wrote)
        self._wrote = True
        terms = self._terms
        for i in range(first, self._last_index + 1):
            terms.pop(i, None)
        for e in entries:
            terms[e.index] = e.term
        self._durable = min(self._durable, first - 1)
        where = (terms.get(first - 1, 0), self._durable)
        self._last_index = entries[-1].index
        # Writing entries again that this process wrote before (a resend
        # after a lost WAL write) changes nothing: only the rest is checked
        # as a log append.
        appended = self._appended
        k = 0
        while k < len(entries) and appended.get(entries[k].index) == entries[k].term:
            k += 1
        if k < len(entries):
            self.sim.inv.on_log_append(self.slot.cluster, self.slot.sid, entries[k:], self.slot.commit_before)
        for e in entries:
            appended[e.index] = e.term
        return SimAppend(entries, *flags, *where)

    def written(self, msg: Any) -> list:
        if isinstance(msg, msgs.Written) and msg.from_index <= self._durable + 1:
            # the durable prefix grows by the part of the report still in the log
            hi = min(msg.to_index, self._last_index)
            while hi > self._durable and self._terms.get(hi) != msg.term:
                hi -= 1
            self._durable = max(self._durable, hi)
        return [msg]

    def segments_written(self, refs: Any) -> None:
        return None

    def truncate_below(self, index: int, keep_above: bool) -> None:
        durable = self.disk.durable_snapshot_index(self.slot.uid)
        if durable < index:
            self.sim.inv.fail(f"truncation below an undurable snapshot: {self.slot.sid.name}@{self.slot.sid.node} "
                              f"truncated below {index} but its durable snapshot is at {durable}")
        self._first_index = max(self._first_index, index + 1)
        for i in [i for i in self._terms if i < index]:
            del self._terms[i]
        if not keep_above:
            self._last_index = index          # the log restarts after the snapshot
            self._durable = index
            for i in [i for i in self._terms if i > index]:
                del self._terms[i]
        else:
            self._durable = max(self._durable, index)
        delay = self.disk.truncate_below(self.slot.uid, self._token, index, keep_above)
        self.sim.wal_wakeup(self.slot.sid.node, delay)

    def persist_meta(self, term: int, voted_for: ServerId | None) -> None:
        due = self.disk.persist_meta(self.slot.uid, self._token, term, voted_for, self.sim.now)
        self.sim.schedule_at(due, "meta_done", self.slot.sid.node, self.disk.epoch)
        return None   # MetaWritten comes when the (virtual) fsync ends

    def persist_last_applied(self, index: int) -> None:
        self.disk.persist_last_applied(self.slot.uid, index)

    def snapshot_written(self, meta: SnapshotMeta) -> None:
        return None

    def snapshot_bytes(self, meta: SnapshotMeta) -> bytes | None:
        store = self.disk.stores.get(self.slot.uid)
        found = store.snapshots.get((meta.index, meta.term)) if store is not None else None
        if found is None:
            self.sim.stats["chunks_unavailable"] += 1
            return None
        return found[1]

    def write_checkpoint(self, meta: SnapshotMeta, data: bytes) -> None:
        self.disk.store(self.slot.uid).checkpoints[(meta.index, meta.term)] = (meta, data)
        self.sim.stats["checkpoints_written"] += 1

    def promote_checkpoint(self, meta: SnapshotMeta) -> bytes | None:
        store = self.disk.store(self.slot.uid)
        found = store.checkpoints.pop((meta.index, meta.term), None)
        if found is None:
            self.sim.inv.fail(f"{self.slot.sid.name}@{self.slot.sid.node} promoted checkpoint "
                              f"{meta.index}/{meta.term} that is not on its disk")
            return None
        store.add_snapshot(*found)
        self.sim.stats["checkpoints_promoted"] += 1
        return found[1]

    def delete_checkpoints(self, metas: tuple) -> None:
        store = self.disk.store(self.slot.uid)
        for meta in metas:
            store.checkpoints.pop((meta.index, meta.term), None)

    def machine_dir(self) -> Any:
        """The node disk's :class:`~.disk.MachineFiles` of this server."""
        return self.disk.machine_files(self.slot.uid)

    def overview(self) -> dict:
        return {}

    def close(self) -> None:
        return None


class SimPort:
    """A server's runtime in the simulated world (see the module rules)."""

    def __init__(self, sim: World, slot: Slot, incarnation: int) -> None:
        self.sim = sim
        self.slot = slot
        self.incarnation = incarnation
        self.rng: random.Random = sim.rng

    @property
    def _current(self) -> bool:
        return self.slot.incarnation == self.incarnation and self.slot.shell is not None

    @property
    def _token(self) -> tuple[ServerId, int]:
        return (self.slot.sid, self.incarnation)

    # -- peers and clients --------------------------------------------------
    def send_rpcs(self, to: ServerId, rpcs: tuple) -> None:
        self.sim.rpcs_sent(self.slot, to, rpcs)
        self.sim.send_server(self.slot.sid.node, to, RpcBatch(rpcs), self._token)

    def forward_commands(self, to: ServerId, commands: tuple) -> None:
        self.sim.send_server(self.slot.sid.node, to, msgs.Commands(commands))

    def reply(self, to: Any, reply: Any, leader: ServerId | None) -> None:
        self.sim.send_client(self.slot.sid.node, to, "reply", (to, reply, leader))

    def applied(self, client: Any, leader: ServerId, results: tuple) -> None:
        self.sim.send_client(self.slot.sid.node, client, "applied", (leader, results))

    def rejected(self, client: Any, server: ServerId, leader: ServerId | None, correlation: Any,
                 reason: str) -> None:
        self.sim.send_client(self.slot.sid.node, client, "rejected", (server, leader, correlation, reason))

    def send_message(self, to: Any, msg: Any, options: tuple = (), leader: Any = None) -> None:
        self.sim.stats["machine_messages_dropped"] += 1

    # -- storage services ---------------------------------------------------------
    def wal_write(self, appends: tuple) -> None:
        if self.sim.wal_loss and self.sim.faulting and self.rng.random() < self.sim.wal_loss:
            self.sim.stats["wal_writes_lost"] += 1
            self.sim.note(f"{self.slot.sid.name}@{self.slot.sid.node}: wal-loss: a WAL write of "
                          f"{sum(len(a.entries) for a in appends)} entries is lost", always=False)
            return
        disk = self.sim.disks[self.slot.sid.node]
        for a in appends:
            self.sim.wal_wakeup(self.slot.sid.node, disk.log_append(
                self.slot.uid, self._token, a.entries, truncate=a.truncate, overwrite=a.overwrite,
                prev_term=a.prev_term, durable=a.durable))

    def write_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        disk = self.sim.disks[self.slot.sid.node]
        due = disk.write_snapshot(self.slot.uid, self._token, meta, data, self.sim.now)
        self.sim.schedule_at(due, "snap_done", self.slot.sid.node, disk.epoch)

    # -- monitors, timers, clock -----------------------------------------------
    def watch(self, target: Any, ref: Any) -> None:
        self.sim.watch(self.slot, target, ref)

    def unwatch(self, target: Any, ref: Any) -> None:
        self.sim.unwatch(self.slot, target, ref)

    def wakeup(self, delay_ms: int, payload: Any) -> None:
        self.sim.schedule_at(self.sim.now + max(0, int(delay_ms)), "wakeup", self.slot.sid, self.incarnation,
                             payload)

    def now_ms(self) -> int:
        return self.sim.now

    def log(self, text: str) -> None:
        self.sim.note(f"{self.slot.sid.name}@{self.slot.sid.node}: {text}", always=False)

    # -- leaving --------------------------------------------------------------------
    def exit(self, why: str) -> None:
        if self._current:
            self.sim.server_exited(self.slot, why)

    def crash(self, reason: str, exc: BaseException | None) -> None:
        if self._current:
            self.sim.server_crashed(self.slot, reason, exc)


class RpcBatch:
    """One round's RPCs from one server to another (one network message)."""

    __slots__ = ("rpcs",)

    def __init__(self, rpcs: tuple) -> None:
        self.rpcs = rpcs
