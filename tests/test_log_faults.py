"""Disk faults injected through the I/O seam (:mod:`ra_actors.log.fileio`):
EIO and ENOSPC on write and on sync, for the WAL, segments, snapshots and
meta.  What must hold every time:

* the failure is a StorageError naming the file, the operation and the errno;
* a WAL whose write or sync failed refuses all further work, never retries
  the sync on that descriptor and never reports the batch written;
* reopening the node's log (recovery) keeps every acknowledged entry and
  never leaves a hole;
* no half-written file ever counts as a segment or a snapshot.
"""
from __future__ import annotations

import errno
import os

import pytest

from ra_actors.actors.util import decode_error, encode_error
from ra_actors.core.types import Entry, ServerConfig, ServerId, SnapshotMeta
from ra_actors.errors import LogCorruption, RaError, StorageError
from ra_actors.log import fileio
from ra_actors.log.common import list_numbered, segments_dir, snapshots_dir
from ra_actors.log.fileio import Fault
from ra_actors.log.meta import MetaStore
from ra_actors.log.recovery import recover_node
from ra_actors.log.segment_writer import SegmentWriter
from ra_actors.log.snapshot import SnapshotStore
from ra_actors.log.wal import Wal

A, B = ServerId("a", "n1"), ServerId("b", "n2")
CLUSTER = ((A, "voter"), (B, "voter"))


def cfg(uid="s1"):
    return ServerConfig(A, uid, "c", "machines.kv", (A, B))


def put(node, slog, first, last, term=1):
    """Append ``first..last`` and flush (one write + one sync); returns the messages."""
    req = slog.append([Entry(i, term, ("v", i)) for i in range(first, last + 1)])
    node.wal.append_run(req.uid, req.first_index, req.terms, req.payloads, truncate=req.truncate, overwrite=req.overwrite)
    _res, msgs = node.flush()
    return msgs.get(slog.uid, [])


def recovered_indexes(d, uid="s1"):
    with recover_node(d) as node:
        rec = node.open_server(uid).recovered()
        for e in rec.entries:
            assert e.command == ("v", e.index)
        return [e.index for e in rec.entries]


# ------------------------------------------------------------------ the seam
def test_storage_error_names_op_path_errno_and_round_trips_to_clients(tmp_path):
    path = tmp_path / "x.bin"
    with fileio.inject(Fault("write", errno.ENOSPC, path="*/x.bin")):
        fd = fileio.open(path, os.O_WRONLY | os.O_CREAT)
        try:
            with pytest.raises(StorageError) as err:
                fileio.write_all(fd, b"hello")
        finally:
            fileio.close(fd)
    exc = err.value
    assert isinstance(exc, RaError)
    assert (exc.op, exc.path, exc.errno) == ("write", str(path), errno.ENOSPC)
    assert "ENOSPC" in str(exc) and str(path) in str(exc)
    back = decode_error(encode_error(exc))
    assert type(back) is StorageError and str(back) == str(exc)


def test_real_os_errors_become_storage_errors_but_enoent_stays(tmp_path):
    with pytest.raises(StorageError) as err:
        fileio.open(tmp_path, os.O_WRONLY)  # a directory: EISDIR from the kernel
    assert err.value.errno == errno.EISDIR and err.value.path == str(tmp_path)
    with pytest.raises(FileNotFoundError):
        fileio.read_file(tmp_path / "missing")


def test_fault_after_and_times_and_partial_write(tmp_path):
    path = tmp_path / "f"
    with fileio.inject(Fault("write", errno.EIO, path="*/f", after=1, times=1, partial=True)) as log:
        fd = fileio.open(path, os.O_WRONLY | os.O_CREAT)
        fileio.write_all(fd, b"aaaa")          # 1st matching call: allowed
        with pytest.raises(StorageError):
            fileio.write_all(fd, b"bbbbbbbb")  # 2nd: half written, then EIO
        fileio.write_all(fd, b"cc")            # times=1: the fault is spent
        fileio.close(fd)
    assert path.read_bytes() == b"aaaabbbbcc"
    assert log.ops("write") == [str(path)] * 3
    with pytest.raises(ValueError):
        with fileio.inject(Fault("frobnicate", errno.EIO)):
            pass


# ------------------------------------------------------------------ the WAL
@pytest.mark.parametrize("op,code", [("write", errno.EIO), ("write", errno.ENOSPC),
                                     ("fdatasync", errno.EIO), ("fdatasync", errno.ENOSPC)])
def test_wal_failure_is_fatal_never_retried_never_reported(tmp_path, op, code):
    with recover_node(tmp_path) as node:
        slog = node.create_server(cfg())
        for i in range(1, 11):
            put(node, slog, i, i)
        acked = slog.last_written[0]
        assert acked == 10
        wal_path = str(node.wal.path)
        with fileio.inject(Fault(op, code, path="*.wal")) as log:
            with pytest.raises(StorageError) as err:
                put(node, slog, 11, 13)
            assert (err.value.op, err.value.path, err.value.errno) == (op, wal_path, code)
            # Never reported written: the server's durable index did not move.
            assert slog.last_written[0] == 10
            assert node.wal.failed is err.value
            # Dead from now on: every call refuses, naming the first failure.
            for attempt in (lambda: node.wal.append("s1", [(11, 1, b"x")]),
                            lambda: node.wal.append_run("s1", 11, 1, [b"x"]),
                            lambda: node.wal.append_encoded(Wal.encode_run("s1", 11, 1, [b"x"])),
                            node.wal.flush, node.wal.roll_over):
                with pytest.raises(StorageError) as again:
                    attempt()
                assert again.value.errno == code and "failed earlier" in str(again.value)
        # The sync was never tried again on that file (after a failed write
        # there is no sync at all; after a failed sync, no second one).
        syncs = log.ops("fdatasync", wal_path) + log.ops("fsync", wal_path)
        assert syncs == ([] if op == "write" else [wal_path])
        # The file was cut back to what the last good sync covered: after a
        # failed sync the page cache may still show the batch while the disk
        # never got it, and recovery must not take it for durable entries.
        assert log.ops("ftruncate", wal_path) == [wal_path] and node.wal.unsynced_kept is None
    # Reopening runs recovery: every acknowledged entry is there, no hole, and
    # nothing of the failed batch.
    assert recovered_indexes(tmp_path) == list(range(1, 11))


@pytest.mark.parametrize("op", ["write", "fdatasync"])
def test_a_wal_that_cannot_cut_its_unsynced_tail_says_so(tmp_path, op):
    with recover_node(tmp_path) as node:
        slog = node.create_server(cfg())
        put(node, slog, 1, 5)
        synced = node.wal.current_size
        with fileio.inject(Fault(op, errno.EIO, path="*.wal"), Fault("ftruncate", errno.EIO, path="*.wal")):
            with pytest.raises(StorageError):
                put(node, slog, 6, 9)
        assert node.wal.unsynced_kept == (str(node.wal.path), synced)


def test_enospc_half_written_batch_is_cut_off_by_the_wal(tmp_path):
    with recover_node(tmp_path) as node:
        slog = node.create_server(cfg())
        put(node, slog, 1, 5)
        synced = node.wal.current_size
        with fileio.inject(Fault("write", errno.ENOSPC, path="*.wal", partial=True)):
            with pytest.raises(StorageError):
                put(node, slog, 6, 9)
        wal_path = node.wal.path
        assert wal_path.stat().st_size == synced
    with recover_node(tmp_path) as node:
        assert node.warnings == []
        assert [e.index for e in node.open_server("s1").recovered().entries] == [1, 2, 3, 4, 5]


def test_enospc_half_written_batch_left_in_place_is_a_torn_tail_set_aside(tmp_path):
    """The same, when the disk refuses even the truncation: recovery sees the
    half batch as the newest file's torn tail."""
    with recover_node(tmp_path) as node:
        slog = node.create_server(cfg())
        put(node, slog, 1, 5)
        with fileio.inject(Fault("write", errno.ENOSPC, path="*.wal", partial=True),
                           Fault("ftruncate", errno.EIO, path="*.wal")):
            with pytest.raises(StorageError):
                put(node, slog, 6, 9)
        wal_path = node.wal.path
    with recover_node(tmp_path) as node:
        assert len(node.warnings) == 1 and "torn tail" in node.warnings[0]
        assert str(wal_path) in node.warnings[0] and "never acknowledged" in node.warnings[0]
        aside = list(wal_path.parent.glob(wal_path.name + ".torn-*"))
        assert len(aside) == 1 and aside[0].stat().st_size > 0   # the dropped bytes, kept
        assert [e.index for e in node.open_server("s1").recovered().entries] == [1, 2, 3, 4, 5]


def test_rollover_that_cannot_create_the_next_file_kills_the_wal(tmp_path):
    with recover_node(tmp_path, wal_max_size_bytes=1024) as node:
        slog = node.create_server(cfg())
        with fileio.inject(Fault("open", errno.ENOSPC, path="*.wal")):
            with pytest.raises(StorageError) as err:
                put(node, slog, 1, 40)   # the batch is synced, then the rollover fails
        assert err.value.op == "open" and node.wal.failed is not None
        assert slog.last_written[0] == 0  # not reported: the writer resends after reopening
        with pytest.raises(StorageError):
            node.wal.flush()
    assert recovered_indexes(tmp_path) == list(range(1, 41))  # synced, so recovered


def test_failed_wal_releases_nothing_it_should_not_and_reopens(tmp_path):
    """A Wal that fails to create its first file gives the data-dir lock back."""
    with fileio.inject(Fault("fsync_dir", errno.EIO, path="*/wal")):
        with pytest.raises(StorageError):
            Wal(tmp_path)
    Wal(tmp_path).close()  # the lock was released


# ------------------------------------------------------------------ segments
@pytest.mark.parametrize("fault", [Fault("write", errno.ENOSPC, path="*.segment.tmp"),
                                   Fault("fsync", errno.EIO, path="*.segment.tmp"),
                                   Fault("fsync_dir", errno.EIO, path="*/segments")])
def test_segment_write_failure_keeps_the_wal_file_and_no_half_segment(tmp_path, fault):
    with recover_node(tmp_path) as node:
        slog = node.create_server(cfg())
        put(node, slog, 1, 8)
        closed = node.wal.roll_over()
        before = closed.read_bytes()
        with fileio.inject(fault):
            with pytest.raises(StorageError) as err:
                node.flush_segments(closed)
        assert err.value.errno == fault.errno
        assert closed.read_bytes() == before            # the WAL file is untouched
        sdir = segments_dir(tmp_path, "s1")
        assert not list(sdir.glob("*.tmp"))              # no half-written segment left
        # The writer refuses further work until a new one is made.
        with pytest.raises(StorageError) as again:
            node.segment_writer.flush_wal_file(closed)
        assert "failed earlier" in str(again.value)
        put(node, slog, 9, 10)
    assert recovered_indexes(tmp_path) == list(range(1, 11))


def test_reflush_after_failed_dir_fsync_rewrites_instead_of_trusting(tmp_path):
    """fsyncgate: after a failed fsync the page cache can show a segment the
    disk never got; the re-flush must write and sync it afresh before the WAL
    file goes (it used to find it "already present" and delete the WAL file)."""
    d = tmp_path
    with recover_node(d) as node:
        node.create_server(cfg()).close()
    with Wal(d) as wal:
        wal.write_batch([("s1", [Entry(i, 1, ("v", i)) for i in range(1, 6)])])
        closed = wal.roll_over()
    with fileio.inject(Fault("fsync_dir", errno.EIO, path="*/segments")):
        with pytest.raises(StorageError):
            SegmentWriter(d).flush_wal_file(closed)
    assert closed.exists()
    with fileio.inject() as log:
        res = SegmentWriter(d).flush_wal_file(closed)
    assert res.already_present == ("s1",) and not closed.exists()
    new_seg = str(res.segments["s1"][-1].path)
    # A fresh segment file was written and fsynced, and its directory fsynced,
    # before the WAL file was deleted.
    order = [(op, p) for op, p in log.calls if op in ("fsync", "fsync_dir", "unlink")]
    assert order.index(("fsync", new_seg + ".tmp")) < order.index(("unlink", str(closed)))
    sdir = str(segments_dir(d, "s1"))
    assert order.index(("fsync_dir", sdir)) < order.index(("unlink", str(closed)))
    assert recovered_indexes(d) == [1, 2, 3, 4, 5]


# ----------------------------------------------------------------- snapshots
@pytest.mark.parametrize("op,code", [("write", errno.ENOSPC), ("fsync", errno.EIO),
                                     ("rename", errno.EIO)])
def test_failed_snapshot_write_leaves_no_snapshot(tmp_path, op, code):
    store = SnapshotStore(tmp_path / "snaps")
    store.write(SnapshotMeta(5, 1, CLUSTER, 1), {"old": True})
    with fileio.inject(Fault(op, code, path="*.snapshot*")):
        with pytest.raises(StorageError) as err:
            store.write(SnapshotMeta(9, 1, CLUSTER, 1), {"new": True})
    assert err.value.errno == code
    assert sorted(os.listdir(tmp_path / "snaps")) == [f"{5:016x}_{1:016x}.snapshot"]
    assert store.latest()[1] == {"old": True}


def test_failed_chunk_write_aborts_the_transfer_which_restarts_from_chunk_1(tmp_path):
    src = SnapshotStore(tmp_path / "src")
    meta = SnapshotMeta(40, 2, CLUSTER, 1)
    src.write(meta, {"blob": "x" * 5000})
    chunks = []
    n = 1
    while True:
        data, last = src.read_chunk(meta, n, 2048)
        chunks.append((n, data, last))
        if last:
            break
        n += 1
    with recover_node(tmp_path / "node") as node:
        slog = node.create_server(cfg())
        assert slog.accept_snapshot_chunk(meta, *chunks[0]) is None
        with fileio.inject(Fault("write", errno.ENOSPC, path="*.partial-*")):
            with pytest.raises(StorageError):
                slog.accept_snapshot_chunk(meta, *chunks[1])
        sdir = snapshots_dir(tmp_path / "node", "s1")
        assert os.listdir(sdir) == []                   # partial file removed
        with pytest.raises(RaError):                     # no resuming in the middle
            slog.accept_snapshot_chunk(meta, *chunks[2])
        # The fsync of the last chunk fails too: still nothing counted.
        for c in chunks[:-1]:
            slog.accept_snapshot_chunk(meta, *c)
        with fileio.inject(Fault("fsync", errno.EIO, path="*.partial-*")):
            with pytest.raises(StorageError):
                slog.accept_snapshot_chunk(meta, *chunks[-1])
        assert os.listdir(sdir) == [] and slog.snapshot_index == 0
        for c in chunks:                                 # the leader starts over
            done = slog.accept_snapshot_chunk(meta, *c)
        assert done is not None and slog.snapshot_index == 40
        assert slog.latest_snapshot()[1] == {"blob": "x" * 5000}


# ---------------------------------------------------------------------- meta
@pytest.mark.parametrize("fault", [Fault("fsync", errno.EIO, path="*/meta.tmp"),
                                   Fault("write", errno.ENOSPC, path="*/meta.tmp"),
                                   Fault("rename", errno.EIO, path="*/meta")])
def test_failed_meta_write_is_not_durable_and_not_believed(tmp_path, fault):
    store = MetaStore(tmp_path)
    store.store(3, A)
    with fileio.inject(fault):
        with pytest.raises(StorageError):
            store.store(4, B)
    # The vote for B was never made durable, so the caller never got MetaWritten
    # and the store still says term 3 / A, as does the disk.
    assert (store.current_term, store.voted_for) == (3, A)
    again = MetaStore(tmp_path)
    assert (again.current_term, again.voted_for) == (3, A)
    assert not list(tmp_path.glob("*.tmp"))
    store.store(4, B)   # a later write uses a fresh file and works
    assert (MetaStore(tmp_path).current_term, MetaStore(tmp_path).voted_for) == (4, B)


def test_recovery_refuses_to_run_on_a_failing_disk_and_changes_nothing(tmp_path):
    with recover_node(tmp_path) as node:
        slog = node.create_server(cfg())
        put(node, slog, 1, 6)
        put(node, slog, 7, 9)
        path = node.wal.path
    before = path.read_bytes()
    for fault in (Fault("write", errno.ENOSPC, path="*.segment.tmp"),
                  Fault("fsync", errno.EIO, path="*.segment.tmp"),
                  Fault("read", errno.EIO, path="*.wal")):
        with fileio.inject(fault):
            with pytest.raises(StorageError):
                recover_node(tmp_path)
        assert path.read_bytes() == before   # nothing of the WAL changed or went
    assert recovered_indexes(tmp_path) == list(range(1, 10))


def test_log_corruption_and_storage_error_are_distinct():
    assert not issubclass(StorageError, LogCorruption) and not issubclass(LogCorruption, StorageError)


def test_recovery_interrupted_after_a_torn_tail_can_run_again(tmp_path):
    """Old WAL files go to segments before the new WAL file exists: if recovery
    dies half-way (here: the disk refuses a segment), the torn file is still the
    newest next time, so its tail is still recognised as torn (had the new file
    been created first, the torn file would now look like a damaged closed one)."""
    with recover_node(tmp_path) as node:
        slog = node.create_server(cfg())
        put(node, slog, 1, 6)
        put(node, slog, 7, 9)
        path = node.wal.path
    path.write_bytes(path.read_bytes()[:-5])             # torn last batch (7..9)
    with fileio.inject(Fault("write", errno.ENOSPC, path="*.segment.tmp")):
        with pytest.raises(StorageError):
            recover_node(tmp_path)
    assert [p.name for _n, p in list_numbered(path.parent, ".wal")] == [path.name]
    with recover_node(tmp_path) as node:
        assert node.wal.path.name == "0000000000000002.wal"   # numbers are never reused
        assert [e.index for e in node.open_server("s1").recovered().entries] == list(range(1, 7))
