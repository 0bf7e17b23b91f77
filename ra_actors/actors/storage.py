"""The node's storage actors and each server's view of its files.

* :class:`WalActor` — one per WAL directory of the node (``wal_dirs``; one
  by default), shared by the servers assigned to it (service kind
  :func:`wal_kind`).  It opens its WAL with
  :func:`ra_actors.log.recovery.recover_node` (its lock, crash leftovers,
  its old WAL files into segments), then queues the
  appends servers send (pre-encoded in the servers' processes) while a
  background thread does one ``write`` + one sync per batch (everything that
  arrived during the previous sync goes into the next one) and wakes the
  actor through a pipe watched with ``ThespianWatch``; the actor then answers
  every writer once (``WalResult``) and hands closed WAL files to the segment
  writer.  Each server numbers its ``WalWrite``s; the actor puts them back
  in order (:mod:`.sequencing`: Thespian may reorder or repeat messages,
  and writes switch between Thespian and the stream) and gives up on a
  hole after ``WAL_HOLE_WAIT_S``.  Writes and results travel on a direct
  stream (:mod:`.streamside`) once the writer has connected; the WAL's
  listener takes connections from its own host only.
* A write or sync the disk refuses ends that WAL (:meth:`WalService.abandon`:
  nothing of the failed batch is reported written, its unsynced bytes are
  cut off the file, the file is closed without another sync, the lock is
  released); the actor tells the supervisor (``ServiceFault``) and waits,
  alive, for a ``ServiceInit`` that reopens the node's log from what
  recovery can prove (:mod:`.storage_supervision` decides when).  Writes
  that arrive meanwhile are dropped: the servers write them again.
* :class:`SegmentWriterActor` — moves closed WAL files (of every WAL of the
  node) into per-server segments; the supervisor forwards what was written to each server (so its
  mem table can let go of those entries).  On (re)start it first moves every
  closed WAL file it finds (the ones its predecessor was handed, or was
  flushing when it died); a file already moved, or named by a stale
  ``FlushWalFiles``, is skipped (:mod:`ra_actors.log.segment_writer` moves
  files under the data directory's flush lock).  A disk that refuses is a
  ``ServiceFault`` too.
* :class:`SnapshotWriterActor` — writes snapshots durably, answers
  ``SnapshotDone``.
* :class:`ServerStore` — a server's files as its shell sees them (the
  :class:`ra_actors.shell.port.ServerStore` seam), over
  :class:`ra_actors.log.server_log.ServerLog`.

All formats, paths and recovery rules belong to :mod:`ra_actors.log`.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from datetime import timedelta
from pathlib import Path

from thespian.actors import Actor, ActorExitRequest, DeadEnvelope, ThespianWatch, WakeupMessage, WatchMessage

from ..core.server import Recovered
from ..core.types import ServerConfig
from ..errors import DataDirLocked, RaError, StorageError
from .sequencing import Resequencer
from .protocol import (FlushWalFiles, ForgetServer, SegmentsWritten, ServiceAddresses, ServiceFault, ServiceInit,
                       ServiceFailed, ServiceReady, SnapshotDone, SnapshotWrite, StreamOffer, WalResult, WalWrite)
from .streamside import WAL_STREAMED, StreamSide
from .util import log, log_exc


# A WAL write that is missing while later ones wait is given up after this
# long (the WAL then asks the server to write the gap again).
WAL_HOLE_WAIT_S = 0.5


def wal_kind(k: int) -> str:
    """The service kind of the node's WAL ``k`` (its index in ``wal_dirs``):
    ``"wal"`` for the first (the only one by default), ``"wal:1"``, ...
    for the others."""
    return "wal" if k == 0 else f"wal:{k}"


def wal_index(kind: str) -> int | None:
    """The WAL index of service kind ``kind`` (None: not a WAL)."""
    if kind == "wal":
        return 0
    if kind.startswith("wal:") and kind[4:].isdigit():
        return int(kind[4:])
    return None


def _node_local(capabilities, requirements):
    return bool(requirements) and capabilities.get("ra_node") == requirements.get("ra_node")


# ------------------------------------------------------------ config store
def read_server_config(data_dir: str, uid: str) -> ServerConfig:
    from ..log.config_store import load_config
    return load_config(data_dir, uid)


def create_server(data_dir: str, config: ServerConfig, wal_dir: str | None = None) -> None:
    """Make a new server's directory and durable config (ServerAlreadyExists
    if the uid has data), recording the WAL it writes to (``wal_dir``)."""
    from ..log.server_log import ServerLog
    ServerLog.create(data_dir, config, wal_dir=wal_dir).close()


def delete_server_data(data_dir: str, uid: str) -> None:
    from ..log.server_log import delete_server_data as _delete
    _delete(data_dir, uid)


def reopen_may_help(exc: BaseException) -> bool:
    """Whether opening the node's log again later may succeed after ``exc``:
    yes for a disk that said no (it may come back) or a lock still held by a
    process on its way out; no for a corrupt log or bad options."""
    return isinstance(exc, (StorageError, DataDirLocked))


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
def _service_writer(data_dir: str, kind: str):
    """The counters slot of storage service ``kind`` (None: no counters file)."""
    from ..metrics.writers import service_writer
    try:
        return service_writer(data_dir, kind)
    except Exception as exc:  # noqa: BLE001 - a service runs without counters rather than not at all
        log(kind, f"no counters: {exc!r}")
        return None


def _segments_report(flushes) -> dict:
    out: dict = {}
    for f in flushes:
        for uid, refs in f.segments.items():
            out.setdefault(uid, []).extend(refs)
    return {uid: tuple(refs) for uid, refs in out.items()}


# ================================================================== WAL
INLINE_SYNC_RECORDS = 64   # WAL batches up to this many entries are synced in the actor's thread


class WalService:
    """The node's WAL inside whichever actor hosts it: the :class:`WalActor`
    (placement ``process``) or the host actor that also carries the node's
    servers (placement ``shared``, where a write costs no Thespian hop).

    ``write`` queues pre-encoded appends; a background thread does one
    ``write`` + one sync per batch (everything that arrived during the
    previous sync goes into the next one) and wakes the hosting actor
    through the pipe ``rfd`` (watch it with ``ThespianWatch``); ``drain``
    then returns what became durable, per writer."""

    def __init__(self, data_dir: str, options: dict | None, wal_dir: str | None = None, counters: bool = True):
        from ..log.recovery import recover_node
        from ..log.options import check_log_options
        # Unknown keys are refused (LogUsageError, a RaError: the node start
        # fails with it) instead of being dropped.  Recovery may also raise
        # StorageError (the disk refused a file operation): the same path.
        node = recover_node(data_dir, wal_dir=wal_dir, **check_log_options(options))
        self.warnings = list(node.warnings)
        self.node_storage = node   # keeps the data-dir lock
        self.wal = node.wal
        self.recovered_segments = _segments_report(node.recovered_flushes)
        self.rfd, self.wfd = os.pipe()
        os.set_blocking(self.rfd, False)
        self.work = threading.Event()
        self.done = queue.SimpleQueue()
        self.stop = False
        self.syncing = False
        self.pending_records = 0
        self.failure: BaseException | None = None   # the failed write or sync (see drain)
        # (the node's counters file has one WAL slot: the first WAL's)
        self.counters = _service_writer(data_dir, "wal") if counters else None
        self._counters_lock = threading.Lock()
        self._publish()
        self.thread = threading.Thread(target=self._syncer, name="wal-sync", daemon=True)
        self.thread.start()

    def _publish(self) -> None:
        """The WAL's counters into its slot of the node's counters file
        (from whichever thread flushed: the lock keeps one writer at a time)."""
        if self.counters is None:
            return
        wal = self.wal
        st = wal.stats
        with self._counters_lock:
            try:
                self.counters.publish((st["files"], st["batches"], st["records"], st["bytes_written"],
                                       st["syncs"], st["dropped"], wal.current_size, wal.max_size_bytes))
            except Exception as exc:  # noqa: BLE001 - counters are never worth the WAL
                log("wal", f"counters no longer published: {exc!r}")
                self.counters = None

    def write(self, appends, writer: int = 0) -> None:
        """Queue ``appends``; the hosting actor syncs or kicks once per turn
        (:meth:`sync_small_inline`).  ``writer``: the writing server's
        incarnation (the WAL's sequencing is per writer life).
        Once the WAL failed they are dropped (the failure reaches the actor
        through :meth:`drain`; the writers write them again)."""
        wal = self.wal
        if wal.failed is not None:
            return
        for enc in appends:
            wal.append_encoded(enc, writer)
            self.pending_records += enc.count

    def kick(self) -> None:
        """Wake the sync thread: it syncs everything queued."""
        self.pending_records = 0
        self.work.set()

    def sync_small_inline(self, max_records: int):
        """Sync now, in the caller's thread, if the sync thread is idle and
        at most ``max_records`` wait: returns ``drain``'s answer, or None
        (then the thread was kicked).  A lone synchronous command then pays
        the fdatasync (~0.1 ms here) instead of two thread hand-offs (each
        up to a GIL switch interval); big batches still overlap with the
        actor's work in the thread."""
        pending, self.pending_records = self.pending_records, 0
        if not pending:
            return None
        if self.syncing or pending > max_records or self.failure is not None:
            self.work.set()
            return None
        try:
            result = self.wal.flush()
        except BaseException as exc:  # noqa: BLE001 - see drain
            self.failure = exc
            return None
        self._publish()
        replies: dict = {}
        for uid in set(result.written) | set(result.resend):
            replies.setdefault(uid, []).extend(result.messages(uid))
        return replies, list(result.closed_files)

    def forget(self, uid: str) -> None:
        self.wal.forget_writer(uid)

    def close(self) -> None:
        self.stop = True
        self.work.set()

    def abandon(self) -> list[str]:
        """Give the log up after a failed write or sync: the sync thread
        stops, the WAL file is closed without another sync (the WAL already
        cut off the bytes no sync covered), the data-dir lock is released and
        whatever was queued is dropped (it was never reported written).
        Returns what went wrong on the way (logged by the caller)."""
        problems = []
        self.close()
        self.thread.join(5.0)
        try:
            self.node_storage.close()
        except Exception as exc:  # noqa: BLE001 - giving up anyway
            problems.append(f"closing the log: {exc!r}")
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass
        return problems

    def _syncer(self):
        wal = self.wal
        while not self.stop:
            self.work.wait()
            self.work.clear()
            if self.stop:
                return
            self.syncing = True
            try:
                result = wal.flush()
            except BaseException as exc:  # noqa: BLE001
                self.done.put(exc)
                self._wake()
                return
            finally:
                self.syncing = False
            self._publish()
            if result.written or result.resend or result.closed_files:
                self.done.put(result)
                self._wake()

    def _wake(self) -> None:
        try:
            os.write(self.wfd, b"x")
        except OSError:
            pass   # abandoned meanwhile

    def drain(self):
        """``({uid: (core messages)}, [closed WAL files])`` since the last
        drain: what the batches synced before a failure made durable.  A
        failed write or sync is then in :attr:`failure`: the WAL is unusable
        and its host must :meth:`abandon` it (writers write again to the
        reopened one)."""
        try:
            os.read(self.rfd, 65536)
        except (BlockingIOError, OSError):
            pass
        closed = []
        replies: dict = {}
        while self.failure is None:
            try:
                result = self.done.get_nowait()
            except queue.Empty:
                break
            if isinstance(result, BaseException):
                self.failure = result
                break
            for uid in set(result.written) | set(result.resend):
                replies.setdefault(uid, []).extend(result.messages(uid))
            closed.extend(result.closed_files)
        return replies, closed


class ClosedWalFiles:
    """Closed WAL files on their way to the node's segment writer: sent at
    once when its address is known, kept until it is (shared by the
    :class:`WalActor` and the host actor, whichever runs the WAL)."""

    def __init__(self):
        self.segment_writer = None
        self.pending: list = []

    def hand_over(self, send, closed) -> None:
        if not closed:
            return
        if self.segment_writer is None:
            self.pending.extend(closed)
        else:
            send(self.segment_writer, FlushWalFiles(tuple(str(p) for p in closed)))

    def set_segment_writer(self, send, addr) -> None:
        if addr is None:
            return
        self.segment_writer = addr
        files, self.pending = self.pending, []
        self.hand_over(send, files)


class WalActor(Actor):
    actorSystemCapabilityCheck = staticmethod(_node_local)

    def __init__(self, capabilities=None, requirements=None):
        super().__init__()
        self.svc = None
        self.supervisor = None
        self.kind = "wal"                  # wal_kind(its index), known from ServiceInit
        self.writers = {}
        self.sequencer = Resequencer()     # each server's WalWrites, in its order
        self._hole_check_armed = False
        self.closed_files = ClosedWalFiles()
        self.stream = None                 # StreamSide: the servers' writes and our results

    def _watch(self):
        fds = [self.svc.rfd] if self.svc is not None else []
        if self.stream is not None:
            fds.extend(self.stream.fds())
        return ThespianWatch(fds) if fds else None

    def receiveMessage(self, msg, sender):
        try:
            self._dispatch(msg, sender)
            self._sync()
        except Exception:  # noqa: BLE001 - a bug, not the disk: crash, the supervisor restarts us
            log_exc("wal", f"error handling {type(msg).__name__}")
            os._exit(70)
        if self.stream is not None:
            self.stream.expire()
        return self._watch()   # re-armed on every message (Thespian clears it otherwise)

    def _dispatch(self, msg, sender):
        if isinstance(msg, WalWrite):
            if self.stream is not None:
                self.stream.offer_client(sender)
            self._on_write(msg, sender)
        elif isinstance(msg, WatchMessage):
            if self.stream is not None:
                self.stream.on_ready(msg.ready, self._on_write)
            self._drain()
        elif isinstance(msg, StreamOffer):
            if self.stream is not None:
                self.stream.on_offer(msg, sender)
        elif isinstance(msg, DeadEnvelope):
            if self.stream is not None:
                self.stream.on_dead(msg.deadAddress)
        elif isinstance(msg, WakeupMessage):
            self._hole_check_armed = False
            if self.svc is None:
                return
            for uid, writes in self.sequencer.skip_holes(time.monotonic(), WAL_HOLE_WAIT_S).items():
                log("wal", f"a write of {uid} did not arrive in {WAL_HOLE_WAIT_S} s: taking the "
                           f"{len(writes)} after it (the gap is written again)")
                for write in writes:
                    self.svc.write(write.appends, writer=write.seq[0])
            self._arm_hole_check()
        elif isinstance(msg, ServiceInit):
            self.supervisor = sender
            self.kind = wal_kind(msg.wal)
            if self.svc is not None:
                self.send(sender, ServiceReady(self.kind))   # already open (a repeated init)
                return
            try:
                self._init(msg, sender)
            except RaError as exc:
                # Corrupt log, locked data dir, a disk that refuses: tell the
                # supervisor (a node that starts fails with this error; later
                # it is a storage fault) and wait to be reopened.
                log_exc(self.kind, "cannot open the node's log")
                self.send(sender, ServiceFailed(self.kind, describe(exc), reopen_may_help(exc)))
        elif isinstance(msg, ServiceAddresses):
            self.closed_files.set_segment_writer(self.send, msg.segment_writer)
        elif isinstance(msg, ForgetServer):
            if self.svc is not None:
                self.svc.forget(msg.uid)
            self.writers.pop(msg.uid, None)
            self.sequencer.forget(msg.uid)
        elif isinstance(msg, ActorExitRequest):
            if self.svc is not None:
                self.svc.close()
            if self.stream is not None:
                self.stream.close()
                self.stream = None

    def _on_write(self, msg: WalWrite, sender) -> None:
        if self.svc is None:
            return   # failed, waiting to be reopened: the writer writes it again then
        self.writers[msg.uid] = sender
        for write in self.sequencer.offer(msg.uid, msg.seq, msg, time.monotonic()):
            self.svc.write(write.appends, writer=write.seq[0])
        self._arm_hole_check()

    def _arm_hole_check(self) -> None:
        if not self._hole_check_armed and self.sequencer.has_holes():
            self._hole_check_armed = True
            self.wakeupAfter(timedelta(seconds=WAL_HOLE_WAIT_S / 2))

    def _init(self, msg: ServiceInit, sender):
        wal_dir = msg.wal_dirs[msg.wal] if msg.wal_dirs else None
        self.svc = WalService(msg.data_dir, msg.options, wal_dir, counters=msg.wal == 0)
        for warning in self.svc.warnings:
            log(self.kind, warning)
        self.closed_files.set_segment_writer(self.send, msg.services.segment_writer)
        if self.svc.recovered_segments:
            # old WAL files (a WAL that crashed or failed) are in segments now
            self.send(sender, SegmentsWritten(self.svc.recovered_segments))
        if self.stream is None:
            self.stream = StreamSide(self.myAddress, self.send, lambda text: log(self.kind, text),
                                     accepted=WAL_STREAMED, local_only=True)
        self.send(sender, ServiceReady(self.kind))

    def _sync(self) -> None:
        """End of a turn: sync what arrived.  A small batch with the sync
        thread idle is synced here, in the actor's thread (a lone command
        then pays the sync, not two thread hand-offs); anything bigger goes
        to the sync thread, which overlaps with the next turn's work."""
        svc = self.svc
        if svc is None or not svc.pending_records:
            return
        done = svc.sync_small_inline(INLINE_SYNC_RECORDS)
        if svc.failure is not None:
            self._fail(svc.failure)
        elif done is not None:
            self._answer(*done)

    def _drain(self):
        if self.svc is None:
            return
        self._answer(*self.svc.drain())
        if self.svc.failure is not None:
            self._fail(self.svc.failure)

    def _answer(self, replies: dict, closed: list) -> None:
        """Tell each writer what became durable; closed WAL files go to the
        segment writer."""
        for uid, msgs in replies.items():
            writer = self.writers.get(uid)
            if writer is not None:
                if self.stream is not None:
                    self.stream.send(writer, WalResult(uid, tuple(msgs)))
                else:
                    self.send(writer, WalResult(uid, tuple(msgs)))
        self.closed_files.hand_over(self.send, closed)

    def _fail(self, exc: BaseException) -> None:
        """The disk refused a write or sync: give the log up, say so, wait
        for a reopen (see the module rules)."""
        reason = describe(exc)
        log(self.kind, f"WAL write failed: {reason}; giving the log up until it is reopened "
                       "(nothing of the failed batch was acknowledged)")
        svc, self.svc = self.svc, None
        for problem in svc.abandon():
            log(self.kind, problem)
        # a reopened WAL knows no writer: each starts afresh (a new epoch)
        self.sequencer = Resequencer()
        self.writers = {}
        if self.supervisor is not None:
            self.send(self.supervisor, ServiceFault(self.kind, reason, isinstance(exc, StorageError)))


# ======================================================= segment writer
class SegmentWriterActor(Actor):
    actorSystemCapabilityCheck = staticmethod(_node_local)

    def __init__(self, capabilities=None, requirements=None):
        super().__init__()
        self.sw = None
        self.supervisor = None
        self.counters = None
        self.flushed = [0, 0]        # WAL files, entries

    def receiveMessage(self, msg, sender):
        try:
            if isinstance(msg, ServiceInit):
                self.counters = _service_writer(msg.data_dir, "segment_writer")
                self.supervisor = sender
                self._init(msg)
            elif isinstance(msg, FlushWalFiles):
                if self.sw is None:
                    return   # failed: the next (re)start moves every closed file
                self._report([self.sw.flush_wal_file(p) for p in msg.paths])
        except StorageError as exc:
            self._fail(exc)
        except Exception:  # noqa: BLE001
            log_exc("segment writer", f"error handling {type(msg).__name__}")
            os._exit(70)

    def _init(self, msg: ServiceInit) -> None:
        from ..log.segment_writer import SegmentWriter
        opts = msg.options or {}
        kw = {}
        if "segment_max_entries" in opts:
            kw["max_count"] = int(opts["segment_max_entries"])
        if "segment_max_size_bytes" in opts:
            kw["max_size_bytes"] = int(opts["segment_max_size_bytes"])
        sw = SegmentWriter(msg.data_dir, wal_dirs=msg.wal_dirs or None, **kw)
        try:
            # what a predecessor was handed (or was moving when it died)
            flushed = sw.flush_closed_files()
        except RaError as exc:
            log_exc("segment writer", "cannot move the closed WAL files")
            self.send(self.supervisor, ServiceFailed("segment_writer", describe(exc), reopen_may_help(exc)))
            return
        self.sw = sw
        self._report(flushed)
        self.send(self.supervisor, ServiceReady("segment_writer"))

    def _report(self, flushes) -> None:
        self.flushed[0] += len(flushes)
        self.flushed[1] += sum(f.records for f in flushes)
        if self.counters is not None:
            self.counters.publish(tuple(self.flushed))
        report = _segments_report(flushes)
        if report and self.supervisor is not None:
            self.send(self.supervisor, SegmentsWritten(report))

    def _fail(self, exc: StorageError) -> None:
        log("segment writer", f"moving a WAL file to segments failed: {describe(exc)}; waiting to "
                              "be reopened (the WAL file stays)")
        self.sw = None
        if self.supervisor is not None:
            self.send(self.supervisor, ServiceFault("segment_writer", describe(exc), True))


# ====================================================== snapshot writer
class SnapshotWriterActor(Actor):
    actorSystemCapabilityCheck = staticmethod(_node_local)

    def __init__(self, capabilities=None, requirements=None):
        super().__init__()
        self.data_dir = None
        self.counters = None
        self.written = [0, 0]        # snapshots, bytes

    def receiveMessage(self, msg, sender):
        if isinstance(msg, ServiceInit):
            self.data_dir = msg.data_dir
            self.counters = _service_writer(msg.data_dir, "snapshot_writer")
            self.send(sender, ServiceReady("snapshot_writer"))
        elif isinstance(msg, SnapshotWrite):
            try:
                write_snapshot(self.data_dir, msg.uid, msg.meta, msg.data)
                self.written[0] += 1
                self.written[1] += len(msg.data)
                if self.counters is not None:
                    self.counters.publish(tuple(self.written))
                self.send(sender, SnapshotDone(msg.uid, msg.meta))
            except Exception as exc:  # noqa: BLE001
                log_exc("snapshot writer", f"snapshot of {msg.uid} at {msg.meta.index} failed")
                self.send(sender, SnapshotDone(msg.uid, msg.meta, describe(exc), isinstance(exc, StorageError)))


def write_snapshot(data_dir, uid, meta, state_bytes: bytes) -> None:
    """Durably store the snapshot ``meta`` whose machine state is ``state_bytes``
    (encoded, as the core hands it over)."""
    from ..log import common as lc
    from ..log.snapshot import SnapshotStore, encode_snapshot
    SnapshotStore(lc.snapshots_dir(data_dir, uid)).write_image(meta, encode_snapshot(meta, state_bytes))


# ========================================================= server store
class ServerStore:
    """One server's durable state, as its server actor sees it: a thin layer
    over :class:`ra_actors.log.server_log.ServerLog` (recovery, mem table,
    appends, durability tracking, meta), plus the two things the actor does
    differently: snapshots are written by the node's snapshot writer, and the
    core sends snapshots as chunks of the encoded machine state."""

    def __init__(self, data_dir: str, uid: str, new: bool = False, wal_dir: str | None = None):
        from ..log.server_log import ServerLog
        self.data_dir = data_dir
        self.uid = uid
        # A server that was just created has nothing in the WAL (uids are
        # never reused): skip scanning its WAL's files, which costs
        # O(WAL size) per start when thousands of clusters start on a node.
        # ``wal_dir``: the supervisor checked it is the one the server's
        # record names (ra_actors.log.wal_dirs).
        self.slog = ServerLog.open(data_dir, uid, read_wal=not new, wal_dir=wal_dir)

    def recover(self) -> Recovered:
        return self.slog.recovered()

    def close(self):
        self.slog.close()

    # -- the log ---------------------------------------------------------------------
    def append(self, entries):
        """Entries into the mem table; returns the pre-encoded WAL append."""
        return self.slog.append(entries).encode()

    def written(self, msg) -> list:
        """A WAL report: the core messages it makes (see ``ServerLog.handle_written``)."""
        from ..core.messages import Written
        if isinstance(msg, Written):
            return self.slog.handle_written(msg.term, msg.from_index, msg.to_index)
        return [msg]

    def segments_written(self, refs):
        self.slog.handle_segments(refs)

    def truncate_below(self, index: int, keep_above: bool = True):
        # (``keep_above`` is already known to the log: when an installed
        # snapshot replaced it, the next append carries the WAL's truncate flag)
        self.slog.truncate_below(min(index, self.slog.snapshot_index))

    # -- meta -------------------------------------------------------------------------
    def persist_meta(self, term, voted_for):
        return self.slog.persist_meta(term, voted_for)

    def persist_last_applied(self, index):
        self.slog.persist_last_applied(index)

    # -- snapshots ----------------------------------------------------------------------
    def write_snapshot(self, meta, data: bytes):
        """Write it here (when the node's snapshot writer is restarting)."""
        from ..log.snapshot import encode_snapshot
        self.slog.write_snapshot_image(meta, encode_snapshot(meta, data))

    def write_checkpoint(self, meta, data: bytes):
        from ..log.snapshot import encode_snapshot
        self.slog.write_checkpoint_image(meta, encode_snapshot(meta, data))

    def promote_checkpoint(self, meta):
        self.slog.promote_checkpoint(meta)
        return None   # read back from the file when a follower needs it

    def delete_checkpoints(self, metas):
        self.slog.delete_checkpoints(metas)

    def overview(self) -> dict:
        return self.slog.overview()

    def machine_dir(self) -> str:
        """``<server dir>/machine``: a disk machine's files (removed with the server's data)."""
        return self.slog.machine_dir()

    def snapshot_written(self, meta):
        """The snapshot writer made ``meta`` durable: the log now starts after it
        (or restarts after it, when it replaced a log that does not hold it)."""
        self.slog._installed(meta)   # the bookkeeping of ServerLog.write_snapshot_image

    def snapshot_bytes(self, meta) -> bytes | None:
        """The encoded machine state of the durable snapshot ``meta`` (what the
        core sends in chunks and decodes on the other side); None if it is
        gone (a newer one replaced it)."""
        from ..log.snapshot import HEADER, decode_snapshot
        path = self.slog.snapshots.path_for(meta.index, meta.term)
        try:
            image = Path(path).read_bytes()
        except FileNotFoundError:
            return None
        decode_snapshot(image, str(path), with_state=False)   # verifies the checksum
        _magic, _v, _crc, meta_len = HEADER.unpack_from(image, 0)
        return image[HEADER.size + meta_len:]
