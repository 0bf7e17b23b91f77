"""Segments: format, flushing closed WAL files, overwrites, re-flush after a crash, corruption."""
from __future__ import annotations

import pytest

from ra_actors.codec import pack, unpack
from ra_actors.core.types import Entry, ServerConfig, ServerId
from ra_actors.errors import LogCorruption
from ra_actors.log.common import list_numbered, segments_dir, server_dir
from ra_actors.log.config_store import save_config
from ra_actors.log.segment import Segment, effective_ranges, encode_segment, write_segment
from ra_actors.log.segment_writer import SegmentWriter
from ra_actors.log.wal import Wal
from ra_actors.log.common import crc32


def raw(first, last, term=1):
    out = []
    for i in range(first, last + 1):
        p = pack(("v", i))
        out.append((i, term, p, crc32(p)))
    return out


def make_server(d, uid):
    save_config(d, ServerConfig(ServerId(uid, "n1"), uid, "c", "machines.kv", ()))


def segs(d, uid):
    return [Segment(p) for _, p in list_numbered(segments_dir(d, uid), ".segment")]


def test_segment_round_trip(tmp_path):
    path = tmp_path / "0000000000000001.segment"
    write_segment(path, raw(5, 9, term=3))
    with Segment(path) as seg:
        assert (seg.first, seg.last, seg.count) == (5, 9, 5)
        assert seg.term_at(7) == 3 and seg.term_at(10) is None
        assert [(i, t, unpack(p)) for i, t, p in seg.read(6, 8)] == [(i, 3, ("v", i)) for i in (6, 7, 8)]
        assert seg.read(1, 4) == []
        seg.verify()
    with pytest.raises(ValueError):
        encode_segment(raw(1, 2) + raw(4, 4))


def test_effective_ranges_newer_segment_supersedes_from_its_first_index():
    assert effective_ranges([(1, 100), (50, 60), (61, 70)]) == [(1, 49), (50, 60), (61, 70)]
    assert effective_ranges([(1, 10), (1, 5)]) == [None, (1, 5)]
    assert effective_ranges([(1, 10), (11, 20)]) == [(1, 10), (11, 20)]
    assert effective_ranges([(1, 50), (1001, 1010)]) == [(1, 50), (1001, 1010)]


@pytest.mark.parametrize("where", ["payload", "index", "header"])
def test_flipped_byte_in_segment_is_detected_and_named(tmp_path, where):
    path = tmp_path / "0000000000000001.segment"
    write_segment(path, raw(1, 20))
    with Segment(path) as seg:
        row = seg.rows[10]
    data = bytearray(path.read_bytes())
    pos = {"payload": row[2] + 1, "index": 16 + 10 * 32 + 9, "header": 9}[where]
    data[pos] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(LogCorruption) as err:
        with Segment(path) as seg:
            seg.read(1, 20)
    assert err.value.path == str(path) and "corrupt" in str(err.value)
    if where == "payload":
        assert err.value.offset == row[2]


def test_truncated_segment_is_corrupt(tmp_path):
    path = tmp_path / "0000000000000001.segment"
    write_segment(path, raw(1, 3))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(LogCorruption):
        Segment(path)


def test_flush_wal_file_moves_entries_and_deletes_wal(tmp_path):
    make_server(tmp_path, "s1")
    make_server(tmp_path, "s2")
    with Wal(tmp_path, max_size_bytes=10_000_000) as wal:
        wal.write_batch([("s1", [Entry(i, 1, ("v", i)) for i in range(1, 11)]),
                         ("s2", [Entry(i, 2, ("v", i)) for i in range(1, 4)]),
                         ("ghost", [Entry(1, 1, "x")])])
        closed = wal.roll_over()
    sw = SegmentWriter(tmp_path, max_count=4)
    res = sw.flush_wal_file(closed)
    assert not closed.exists()
    assert res.skipped_uids == ("ghost",)
    assert not server_dir(tmp_path, "ghost").exists()
    assert [(r.first, r.last) for r in res.segments["s1"]] == [(1, 4), (5, 8), (9, 10)]
    assert [(r.first, r.last) for r in res.segments["s2"]] == [(1, 3)]
    got = [unpack(p) for s in segs(tmp_path, "s1") for _i, _t, p in s.read(s.first, s.last)]
    assert got == [("v", i) for i in range(1, 11)]
    assert [(r.first, r.last) for r in sw.segments_for("s1")] == [(1, 4), (5, 8), (9, 10)]


def test_continuing_run_extends_newest_segment_until_full(tmp_path):
    make_server(tmp_path, "s1")
    sw = SegmentWriter(tmp_path, max_count=5)
    with Wal(tmp_path) as wal:
        for lo, hi in ((1, 2), (3, 4), (5, 7)):
            wal.write_batch([("s1", [Entry(i, 1, i) for i in range(lo, hi + 1)])])
            sw.flush_wal_file(wal.roll_over())
    assert [(s.number, s.first, s.last) for s in segs(tmp_path, "s1")] == [(1, 1, 5), (2, 6, 7)]


def test_overwrite_goes_to_new_segment_that_supersedes(tmp_path):
    make_server(tmp_path, "s1")
    sw = SegmentWriter(tmp_path)
    with Wal(tmp_path) as wal:
        wal.write_batch([("s1", [Entry(i, 1, ("old", i)) for i in range(1, 11)])])
        sw.flush_wal_file(wal.roll_over())
        wal.write_batch([("s1", [Entry(i, 2, ("new", i)) for i in range(6, 8)], False, True)])   # an overwrite
        res = sw.flush_wal_file(wal.roll_over())
    assert [(r.first, r.last) for r in res.segments["s1"]] == [(6, 7)]
    ranges = [(s.first, s.last) for s in segs(tmp_path, "s1")]
    assert effective_ranges(ranges) == [(1, 5), (6, 7)]


def test_reflush_after_crash_before_wal_delete_is_harmless(tmp_path):
    make_server(tmp_path, "s1")
    sw = SegmentWriter(tmp_path)
    with Wal(tmp_path) as wal:
        wal.write_batch([("s1", [Entry(i, 1, i) for i in range(1, 6)])])
        closed = wal.roll_over()
    copy = closed.read_bytes()
    sw.flush_wal_file(closed)
    closed.write_bytes(copy)  # as if we crashed after the segments but before the unlink
    res = sw.flush_wal_file(closed)
    assert res.already_present == ("s1",) and not closed.exists()
    # The copy left by the interrupted flush is not trusted (its fsync may have
    # failed): the run is written again into a fresh segment that supersedes it.
    found = segs(tmp_path, "s1")
    assert [(s.first, s.last) for s in found] == [(1, 5), (1, 5)]
    assert effective_ranges([(s.first, s.last) for s in found]) == [None, (1, 5)]
    assert [(i, t, unpack(p)) for i, t, p in found[-1].read(1, 5)] == [(i, 1, i) for i in range(1, 6)]


def test_segment_tmp_leftover_is_ignored_and_removed(tmp_path):
    make_server(tmp_path, "s1")
    sdir = segments_dir(tmp_path, "s1")
    sdir.mkdir(parents=True)
    (sdir / "0000000000000001.segment.tmp").write_bytes(b"half written")
    sw = SegmentWriter(tmp_path)
    with Wal(tmp_path) as wal:
        wal.write_batch([("s1", [Entry(1, 1, 1)])])
        sw.flush_wal_file(wal.roll_over())
    assert sorted(p.name for p in sdir.iterdir()) == ["0000000000000001.segment"]
