"""Simulated per-node storage: one shared WAL, meta files and snapshot files.

Rules (they mirror the real log layer, ``ARCHITECTURE.md`` §5):

* One :class:`NodeDisk` per node, shared by every server on that node (of any
  cluster), keyed by the server's ``uid``.  Nothing here has a clock or an
  event queue: methods return the delays or due times the simulator must
  schedule, and the simulator calls back the matching ``finish_*`` method.
  Each scheduled callback carries the disk's ``epoch``; a crash bumps it, so
  callbacks scheduled before the crash are recognised as stale and ignored.
* **WAL.**  ``LogAppend`` entries (one record per entry) and
  ``TruncateLogBelow`` markers are queued as *pending*.  When the WAL is idle
  the first pending record wakes it after a short gather delay; it then takes
  *everything* pending as one batch, writes and fsyncs it (``fsync`` delay),
  and only then are the records durable.  Records that arrive during an
  fsync go to the next batch, which starts as soon as the fsync ends.
* **Sequencing** is the real WAL's own rule (:mod:`ra_actors.log.wal_sequence`,
  the same code): per writer life, a write is taken only where it
  continues what the WAL holds of that writer (``prev_term`` at
  ``first - 1``, or at or below the writer's durable prefix, or a log
  restarted after a snapshot).  A refused write is counted (``refused``);
  the real WAL also asks the writer to resend, here the shell's stall check
  writes the missing entries again.
* Applying a record ``Entry(i, t, c)`` to a server's durable log sets index
  ``i`` and drops every index above ``i`` (a log append of ``a..b`` leaves
  ``prefix(a-1) + a..b``).  After a batch, each writer gets one
  ``Written(term, from, to)`` per contiguous single-term run of the entries
  it wrote in that batch that are still durable at its end.
* **Meta** (``PersistMeta``) and **snapshots** (``WriteSnapshot``) are
  separate files with their own write+fsync, completed in FIFO order per
  node.  A snapshot that lands after one with a higher index is discarded
  (never replaces it), as in the real snapshot store.  ``PersistLastApplied`` is only a recovery hint and takes effect at
  once (a killed process leaves it in the page cache).
* **Crash** (whole node): pending WAL records are lost; the in-flight batch
  is lost, or made durable whole without notification ("crash after fsync,
  before reply"), or — with torn writes on — a random prefix of it becomes
  durable (the torn last record is discarded by recovery).  The meta or
  snapshot write in progress may land or not; later ones are lost.
* **Recovery** (:meth:`NodeDisk.recover`) returns the durable meta, the
  latest durable snapshot and the durable entries *after* the snapshot index
  that are consecutive from ``snapshot_index + 1`` (anything past a gap is
  unreachable, as for a log reader).
* A durable entry "counts" (:meth:`NodeDisk.durable_covers`) only if recovery
  would return it: the acknowledgement invariants rely on exactly that.
* **Machine files** (:class:`MachineFiles`, a disk machine's directory,
  ``SimStore.machine_dir``): what the machine committed (``committed``) and
  what a node crash keeps (``durable``).  A commit is atomic but not
  synced, as SQLite's ``synchronous=NORMAL``: a process crash keeps every
  commit; the node's page cache reaches the disk now and then (at a
  quarter of the WAL batches that finish, ``durable = committed``); a node
  crash keeps the last commits or goes back to ``durable``, at random (so
  the files may fall behind the log's snapshot).  An install is synced at
  once.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Hashable

from ..core.messages import MetaWritten, SnapshotWritten, Written
from ..core.types import Entry, ServerId, SnapshotMeta
from ..log.wal_sequence import WalSequencer, term_runs


@dataclass
class DiskConfig:
    """Durations in integer milliseconds."""

    gather: tuple[int, int] = (0, 1)        # WAL wake-up until the batch is taken
    fsync: tuple[int, int] = (1, 6)         # WAL write + fsync of one batch
    meta_fsync: tuple[int, int] = (1, 4)    # PersistMeta write + fsync
    snapshot_write: tuple[int, int] = (2, 12)
    torn_writes: bool = False


@dataclass
class MachineFiles:
    """A disk machine's files (see the module rules).  ``committed`` and
    ``durable`` are whatever the machine puts there (never mutated in place:
    the machine replaces them whole)."""

    committed: Any = None
    durable: Any = None
    lost_commits: int = 0      # node crashes that took commits back

    def synced(self) -> None:
        self.durable = self.committed


@dataclass
class ServerStore:
    """What is durable for one server (one ``uid``) on a node."""

    entries: dict[int, Entry] = field(default_factory=dict)
    lo: int = 0  # smallest durable index (0 when empty)
    hi: int = 0  # largest durable index (0 when empty)
    term: int = 0
    voted_for: ServerId | None = None
    last_applied: int = 0
    # Durable snapshots by (index, term); ``current`` is the latest made durable.
    snapshots: dict[tuple[int, int], tuple[SnapshotMeta, bytes]] = field(default_factory=dict)
    current: tuple[int, int] | None = None
    # Durable checkpoints by (index, term): written synchronously by the
    # server's own process, so durable as soon as it is told.
    checkpoints: dict[tuple[int, int], tuple[SnapshotMeta, bytes]] = field(default_factory=dict)
    machine_files: MachineFiles | None = None

    @property
    def snapshot_index(self) -> int:
        return self.current[0] if self.current else 0

    def contiguous(self) -> bool:
        return not self.entries or len(self.entries) == self.hi - self.lo + 1

    # -- mutation ------------------------------------------------------------
    def write(self, entry: Entry) -> None:
        i = entry.index
        if self.entries and i <= self.hi:
            for j in range(i + 1, self.hi + 1):
                self.entries.pop(j, None)
        self.entries[i] = entry
        if len(self.entries) == 1:
            self.lo = self.hi = i
        else:
            self.hi = i
            if i < self.lo:
                self.lo = i

    def truncate_below(self, index: int, keep_above: bool) -> None:
        if not self.entries:
            return
        if not keep_above:
            self.entries.clear()
            self.lo = self.hi = 0
            return
        for j in range(self.lo, min(index, self.hi) + 1):
            self.entries.pop(j, None)
        if self.entries:
            self.lo = min(max(self.lo, index + 1), self.hi)
            while self.lo not in self.entries:
                self.lo += 1
        else:
            self.lo = self.hi = 0

    def add_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        key = (meta.index, meta.term)
        if self.current is not None and meta.index < self.current[0]:
            return  # superseded by a newer snapshot: discarded, as the real store does
        self.snapshots[key] = (meta, data)
        self.current = key
        # Keep the latest few: a follower may still be fetching chunks of the
        # previous one, the real snapshot writer deletes older files.
        while len(self.snapshots) > 3:
            oldest = next(iter(self.snapshots))
            del self.snapshots[oldest]

    # -- queries -------------------------------------------------------------
    def reachable_entry(self, index: int) -> Entry | None:
        """The durable entry at ``index`` if recovery would return it."""
        snap = self.snapshot_index
        if index <= snap:
            return None
        entry = self.entries.get(index)
        if entry is None:
            return None
        if self.contiguous():
            return entry if self.lo <= snap + 1 else None
        for j in range(snap + 1, index):
            if j not in self.entries:
                return None
        return entry

    def recovered_entries(self) -> tuple[Entry, ...]:
        out = []
        i = self.snapshot_index + 1
        while i in self.entries:
            out.append(self.entries[i])
            i += 1
        return tuple(out)


@dataclass(frozen=True)
class RecoveredData:
    """Raw durable state of one server (the simulator builds ``Recovered``)."""

    term: int
    voted_for: ServerId | None
    last_applied: int
    snapshot: tuple[SnapshotMeta, bytes] | None
    entries: tuple[Entry, ...]
    checkpoints: tuple = ()   # ((meta, data), ...) above the snapshot, ascending


# WAL records: ("append", uid, token, entry) or ("truncate", uid, token, index, keep_above)
_Record = tuple


class NodeDisk:
    """The storage of one node (see the module rules)."""

    def __init__(self, node: str, rng: random.Random, config: DiskConfig | None = None,
                 sequencer: type[WalSequencer] = WalSequencer) -> None:
        self.node = node
        self.rng = rng
        self.config = config or DiskConfig()
        self.stores: dict[str, ServerStore] = {}
        self.epoch = 0
        self.pending: list[_Record] = []
        self.in_flight: list[_Record] = []
        self.state = "idle"  # idle | gathering | syncing
        self._meta_queue: list[tuple[str, Hashable, int, ServerId | None, int]] = []
        self._snap_queue: list[tuple[str, Hashable, SnapshotMeta, bytes, int]] = []
        self._sequencer_class = sequencer   # (a deliberate WAL bug's, in tests)
        self.sequencer = sequencer()        # the real WAL's sequencing rule, per WAL life
        # Statistics.
        self.batches = 0
        self.records = 0
        self.torn = 0
        self.refused = 0

    def machine_files(self, uid: str) -> MachineFiles:
        """The files of ``uid``'s disk machine (created empty)."""
        store = self.store(uid)
        if store.machine_files is None:
            store.machine_files = MachineFiles()
        return store.machine_files

    def store(self, uid: str) -> ServerStore:
        s = self.stores.get(uid)
        if s is None:
            s = self.stores[uid] = ServerStore()
        return s

    # ------------------------------------------------------------------ WAL
    def log_append(self, uid: str, token: Hashable, entries: tuple, *, truncate: bool = False,
                   overwrite: bool = False, prev_term: int | None = None, durable: int = 0) -> int | None:
        """Queue entries (if the WAL's sequencing rule takes them); returns a
        gather delay to schedule :meth:`start_batch` if the WAL was idle (else
        None: it will pick them up itself)."""
        if not entries:
            return None
        life = token[1] if isinstance(token, tuple) and len(token) == 2 and isinstance(token[1], int) else 0
        first = entries[0].index
        verdict = self.sequencer.admit(uid, life, first, term_runs(first, [e.term for e in entries]),
                                       prev_term=prev_term, durable=durable, truncate=truncate,
                                       overwrite=overwrite)
        if not verdict.taken:
            self.refused += 1
            return None
        for e in entries:
            self.pending.append(("append", uid, token, e))
        return self._wake()

    def truncate_below(self, uid: str, token: Hashable, index: int, keep_above: bool = True) -> int | None:
        """Queue a truncation marker (ordered with the writes around it)."""
        self.pending.append(("truncate", uid, token, index, keep_above))
        return self._wake()

    def _wake(self) -> int | None:
        if self.state == "idle" and self.pending:
            self.state = "gathering"
            return self.rng.randint(*self.config.gather)
        return None

    def start_batch(self) -> int | None:
        """Take every pending record as the in-flight batch; returns the fsync
        duration to schedule :meth:`finish_batch` (None: nothing to do)."""
        if not self.pending:
            self.state = "idle"
            return None
        self.in_flight, self.pending = self.pending, []
        self.state = "syncing"
        return self.rng.randint(*self.config.fsync)

    def finish_batch(self) -> tuple[list[tuple[Hashable, Written]], int | None]:
        """The in-flight batch is durable.  Returns the ``Written``
        notifications ``(token, Written)`` and, if more records are pending,
        the fsync duration of the next batch (already started)."""
        batch, self.in_flight = self.in_flight, []
        self.batches += 1
        notes = self._apply(batch)
        for uid in sorted(self.stores):
            files = self.stores[uid].machine_files
            if files is not None and self.rng.random() < 0.25:
                files.synced()     # the page cache reached the disk (now and then)
        if self.pending:
            return notes, self.start_batch()
        self.state = "idle"
        return notes, None

    def _apply(self, records: list[_Record]) -> list[tuple[Hashable, Written]]:
        written: dict[Hashable, tuple[str, list[Entry]]] = {}
        for rec in records:
            self.records += 1
            kind, uid, token = rec[0], rec[1], rec[2]
            if uid not in self.stores and kind == "truncate":
                continue
            store = self.store(uid)
            if kind == "append":
                store.write(rec[3])
                written.setdefault(token, (uid, []))[1].append(rec[3])
            else:
                store.truncate_below(rec[3], rec[4])
        notes: list[tuple[Hashable, Written]] = []
        for token, (uid, entries) in written.items():
            store = self.stores.get(uid)
            if store is None:
                continue
            # Only entries still durable at the end of the batch count: a
            # later record of the batch may have overwritten an earlier one.
            alive = sorted({e.index: e for e in entries if store.entries.get(e.index) is e}.values(),
                           key=lambda e: e.index)
            run: list[Entry] = []
            for e in alive:
                if run and (e.index != run[-1].index + 1 or e.term != run[-1].term):
                    notes.append((token, Written(run[0].term, run[0].index, run[-1].index)))
                    run = []
                run.append(e)
            if run:
                notes.append((token, Written(run[0].term, run[0].index, run[-1].index)))
        return notes

    # ----------------------------------------------------------------- meta
    def persist_meta(self, uid: str, token: Hashable, term: int, voted_for: ServerId | None,
                     now: int) -> int:
        """Queue a meta write; returns its absolute due time (FIFO per node)."""
        due = now + self.rng.randint(*self.config.meta_fsync)
        if self._meta_queue:
            due = max(due, self._meta_queue[-1][4])
        self._meta_queue.append((uid, token, term, voted_for, due))
        return due

    def finish_meta(self) -> tuple[Hashable, MetaWritten] | None:
        if not self._meta_queue:
            return None
        uid, token, term, voted_for, _ = self._meta_queue.pop(0)
        store = self.store(uid)
        store.term, store.voted_for = term, voted_for
        return token, MetaWritten(term, voted_for)

    def persist_last_applied(self, uid: str, index: int) -> None:
        self.store(uid).last_applied = index

    # ------------------------------------------------------------ snapshots
    def write_snapshot(self, uid: str, token: Hashable, meta: SnapshotMeta, data: bytes,
                       now: int) -> int:
        """Queue a snapshot write; returns its absolute due time (FIFO per node)."""
        due = now + self.rng.randint(*self.config.snapshot_write)
        if self._snap_queue:
            due = max(due, self._snap_queue[-1][4])
        self._snap_queue.append((uid, token, meta, data, due))
        return due

    def finish_snapshot(self) -> tuple[Hashable, SnapshotWritten] | None:
        if not self._snap_queue:
            return None
        uid, token, meta, data, _ = self._snap_queue.pop(0)
        self.store(uid).add_snapshot(meta, data)
        return token, SnapshotWritten(meta)

    def read_snapshot_chunk(self, uid: str, meta: SnapshotMeta, chunk_no: int,
                            chunk_size: int) -> tuple[bytes, bool] | None:
        """Chunk ``chunk_no`` (from 1) of the durable snapshot ``meta``, and
        whether it is the last; None if that snapshot is not durable here."""
        store = self.stores.get(uid)
        if store is None or chunk_no < 1 or chunk_size < 1:
            return None
        found = store.snapshots.get((meta.index, meta.term))
        if found is None:
            return None
        data = found[1]
        start = (chunk_no - 1) * chunk_size
        if start > len(data) or (start == len(data) and start > 0):
            return None
        chunk = data[start:start + chunk_size]
        return chunk, start + chunk_size >= len(data)

    # ------------------------------------------------------------- queries
    def has_pending(self, uid: str) -> bool:
        """Are writes of ``uid`` still on their way to disk?"""
        return (any(r[1] == uid for r in self.pending) or any(r[1] == uid for r in self.in_flight)
                or any(m[0] == uid for m in self._meta_queue)
                or any(s[0] == uid for s in self._snap_queue))

    def durable_meta(self, uid: str) -> tuple[int, ServerId | None]:
        s = self.stores.get(uid)
        return (s.term, s.voted_for) if s else (0, None)

    def durable_snapshot_index(self, uid: str) -> int:
        s = self.stores.get(uid)
        return s.snapshot_index if s else 0

    def durable_covers(self, uid: str, index: int, term: int) -> bool:
        """Would recovery of ``uid`` yield entry ``index`` with ``term``
        (or a snapshot covering ``index``)?"""
        if index <= 0:
            return True
        s = self.stores.get(uid)
        if s is None:
            return False
        if index <= s.snapshot_index:
            return True
        e = s.reachable_entry(index)
        return e is not None and e.term == term

    def recover(self, uid: str) -> RecoveredData:
        s = self.stores.get(uid)
        if s is None:
            return RecoveredData(0, None, 0, None, ())
        snap = s.snapshots[s.current] if s.current else None
        cps = tuple(s.checkpoints[k] for k in sorted(s.checkpoints) if k[0] > s.snapshot_index)
        return RecoveredData(s.term, s.voted_for, s.last_applied, snap, s.recovered_entries(), cps)

    # ------------------------------------------------------------- failures
    def crash(self) -> dict[str, Any]:
        """The node dies now (see the module rules); returns what happened."""
        report: dict[str, Any] = {"pending_lost": len(self.pending), "in_flight": len(self.in_flight)}
        batch = self.in_flight
        if batch:
            if self.config.torn_writes:
                keep = self.rng.randint(0, len(batch))
                if keep < len(batch):
                    self.torn += 1
            else:
                keep = len(batch) if self.rng.random() < 0.5 else 0
            self._apply(batch[:keep])  # durable, but nobody is told
            report["in_flight_durable"] = keep
        if self._meta_queue and self.rng.random() < 0.5:
            uid, _, term, voted_for, _ = self._meta_queue[0]
            store = self.store(uid)
            store.term, store.voted_for = term, voted_for
            report["meta_landed"] = True
        if self._snap_queue and self.rng.random() < 0.5:
            uid, _, meta, data, _ = self._snap_queue[0]
            self.store(uid).add_snapshot(meta, data)
            report["snapshot_landed"] = True
        lost = 0
        for uid in sorted(self.stores):
            files = self.stores[uid].machine_files
            if files is not None and files.committed is not files.durable and self.rng.random() < 0.5:
                files.committed = files.durable      # the page cache never reached the disk
                files.lost_commits += 1
                lost += 1
        if lost:
            report["machine_commits_lost"] = lost
        self.pending, self.in_flight = [], []
        self._meta_queue, self._snap_queue = [], []
        self.sequencer = self._sequencer_class()    # the next WAL life knows no writer yet
        self.state = "idle"
        self.epoch += 1
        return report

    def delete(self, uid: str) -> None:
        """Remove everything of ``uid`` (``DeleteData``/force delete), at once."""
        self.stores.pop(uid, None)
        self.sequencer.forget(uid)
        self.pending = [r for r in self.pending if r[1] != uid]
        self.in_flight = [r for r in self.in_flight if r[1] != uid]
        self._meta_queue = [m for m in self._meta_queue if m[0] != uid]
        self._snap_queue = [s for s in self._snap_queue if s[0] != uid]
