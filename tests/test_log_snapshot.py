"""Snapshots: durable write, chunked transfer, checksum, replacement, truncation of segments."""
from __future__ import annotations

import os

import pytest

from ra_actors.core.types import Entry, ServerConfig, ServerId, SnapshotMeta
from ra_actors.errors import LogCorruption
from ra_actors.log.common import LogUsageError, SnapshotNotFound, list_numbered, segments_dir
from ra_actors.log.recovery import recover_node
from ra_actors.log.snapshot import MAX_CHUNK_SIZE, SnapshotStore

A, B = ServerId("a", "n1"), ServerId("b", "n2")
CLUSTER = ((A, "voter"), (B, "voter"))


def meta(index, term=1):
    return SnapshotMeta(index, term, CLUSTER, machine_version=2)


def test_write_read_and_older_removed(tmp_path):
    store = SnapshotStore(tmp_path / "snaps")
    assert store.latest() is None
    store.write(meta(10), {"k": [1, 2]})
    store.write(meta(20, 2), {"k": "v"})
    files = sorted(os.listdir(tmp_path / "snaps"))
    assert files == [f"{20:016x}_{2:016x}.snapshot"]
    m, state = store.latest()
    assert m == meta(20, 2) and state == {"k": "v"}
    assert store.latest_meta() == meta(20, 2)
    # A fresh store (restart) cleans crash leftovers and reads the same.
    (tmp_path / "snaps" / "x.snapshot.tmp").write_bytes(b"junk")
    (tmp_path / "snaps" / ".partial-y").write_bytes(b"junk")
    store = SnapshotStore(tmp_path / "snaps")
    assert sorted(os.listdir(tmp_path / "snaps")) == files


def test_chunked_transfer_reassembles_and_installs(tmp_path):
    src = SnapshotStore(tmp_path / "src")
    state = {"blob": os.urandom(2_500_000)}
    src.write(meta(7, 3), state)
    chunks = []
    n = 1
    while True:
        data, last = src.read_chunk(meta(7, 3), n, MAX_CHUNK_SIZE)
        assert len(data) <= MAX_CHUNK_SIZE
        chunks.append(data)
        if last:
            break
        n += 1
    assert len(chunks) == 3 == src.chunk_count(meta(7, 3))
    dst = SnapshotStore(tmp_path / "dst")
    acc = dst.begin_accept(meta(7, 3))
    assert acc.accept_chunk(1, chunks[0], False) is False
    assert acc.accept_chunk(1, chunks[0], False) is False  # duplicate ignored
    with pytest.raises(LogUsageError):
        acc.accept_chunk(3, chunks[2], True)  # out of order
    assert acc.accept_chunk(2, chunks[1], False) is False
    assert acc.accept_chunk(3, chunks[2], True) is True
    m, got = dst.latest()
    assert m.index == 7 and got == state
    with pytest.raises(LogUsageError):
        src.read_chunk(meta(7, 3), 1, MAX_CHUNK_SIZE + 1)
    with pytest.raises(LogUsageError):
        src.read_chunk(meta(7, 3), 0)
    with pytest.raises(SnapshotNotFound):
        src.read_chunk(meta(8, 3), 1)


def test_corrupted_transfer_is_refused(tmp_path):
    src = SnapshotStore(tmp_path / "src")
    src.write(meta(5), list(range(1000)))
    image = bytearray(src.read_chunk(meta(5), 1)[0])
    image[len(image) // 2] ^= 1
    dst = SnapshotStore(tmp_path / "dst")
    acc = dst.begin_accept(meta(5))
    with pytest.raises(LogCorruption):
        acc.accept_chunk(1, bytes(image), True)
    assert dst.latest() is None and os.listdir(tmp_path / "dst") == []
    with pytest.raises(LogCorruption):
        dst.write_image(meta(5), bytes(image))
    with pytest.raises(LogUsageError):  # a valid image of another snapshot
        dst.write_image(meta(6), src.read_chunk(meta(5), 1)[0])


def test_flipped_byte_in_snapshot_file_is_detected_and_named(tmp_path):
    store = SnapshotStore(tmp_path / "s")
    path = store.write(meta(3), {"x": list(range(100))})
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x20
    path.write_bytes(bytes(data))
    with pytest.raises(LogCorruption) as err:
        store.latest()
    assert err.value.path == str(path) and "checksum" in str(err.value)


def test_truncate_below_snapshot_deletes_whole_segments_only(tmp_path):
    with recover_node(tmp_path, wal_max_size_bytes=1024, segment_max_count=10) as node:
        slog = node.create_server(ServerConfig(A, "s1", "c", "machines.kv", (A,)))
        for i in range(1, 36):
            req = slog.append([Entry(i, 1, ("v", i))])
            node.wal.append_run(req.uid, req.first_index, req.terms, req.payloads, truncate=req.truncate, overwrite=req.overwrite)
            node.flush()
        node.flush_segments(node.wal.roll_over())
        assert slog.overview()["mem_table_entries"] == 0
        ranges = [(r.first, r.last) for r in node.segment_writer.segments_for("s1")]
        assert ranges[0] == (1, 10) and ranges[-1][1] == 35
        with pytest.raises(LogUsageError):
            slog.truncate_below(25)  # no snapshot covers it yet
        slog.write_snapshot(meta(25), {"state": 25})
        deleted = slog.truncate_below(25)
        assert [(r.first, r.last) for r in deleted] == [(1, 10), (11, 20)]  # 21..30 holds 26..30
        left = [(r.first, r.last) for r in node.segment_writer.segments_for("s1")]
        assert left[0] == (21, 30)
        assert slog.first_index == 26
        assert [e.index for e in slog.read(26, 35)] == list(range(26, 36))
        with pytest.raises(LogUsageError):
            slog.read(20, 30)
        # The newest segment is kept even when the snapshot covers it.
        slog.write_snapshot(meta(35), {"state": 35})
        slog.truncate_below(35)
        assert len(list_numbered(segments_dir(tmp_path, "s1"), ".segment")) == 1
        assert slog.last_index == 35 and slog.read(36, 40) == []


def test_an_older_snapshot_never_replaces_a_newer_one(tmp_path):
    """Two snapshot writes of one server can finish out of order (a received
    snapshot and the server's own, older one).  The older one, finishing
    last, is discarded: the log below the newer one may already be gone."""
    store = SnapshotStore(tmp_path / "snaps")
    newer = store.write(meta(20, 2), {"k": 20})
    assert store.write(meta(10), {"k": 10}) == newer
    assert sorted(os.listdir(tmp_path / "snaps")) == [newer.name]
    assert store.latest() == (meta(20, 2), {"k": 20})


def test_server_log_keeps_its_newest_snapshot_when_an_older_one_lands_later(tmp_path):
    """The same rule one level up: ``ServerLog`` keeps the newer snapshot as
    its snapshot point, whichever order the two writes report in."""
    from ra_actors.log.snapshot import encode_snapshot
    from ra_actors import codec
    with recover_node(tmp_path) as node:
        slog = node.create_server(ServerConfig(A, "s1", "c", "machines.kv", (A,)))
        for i in range(1, 9):
            req = slog.append([Entry(i, 1, ("v", i))])
            node.wal.append_run(req.uid, req.first_index, req.terms, req.payloads, truncate=req.truncate, overwrite=req.overwrite)
        node.flush()
        slog.write_snapshot_image(meta(6), encode_snapshot(meta(6), codec.pack({"at": 6})))
        slog.write_snapshot(meta(4), {"at": 4})
        slog.write_snapshot_image(meta(3), encode_snapshot(meta(3), codec.pack({"at": 3})))
        assert slog.snapshot_index == 6
        assert slog.latest_snapshot() == (meta(6), {"at": 6})
        assert slog.recovered().snapshot == (meta(6), {"at": 6})
