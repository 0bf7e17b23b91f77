"""WAL format and writer: round trip, refs, rollover, rewrites, gaps, torn tails, corruption."""
from __future__ import annotations

import os
import threading

import pytest

from ra_actors.codec import unpack
from ra_actors.core.messages import ResendWrite, Written
from ra_actors.core.types import Entry
from ra_actors.errors import DataDirLocked, LogCorruption
from ra_actors.log.common import LogUsageError, list_numbered
from ra_actors.log.wal import Wal
from ra_actors.log.wal_format import FILE_HEADER, KIND_REF, KIND_UID, scan_wal_file


def entries(first: int, last: int, term: int = 1, tag: str = "c") -> list[Entry]:
    return [Entry(i, term, (tag, i)) for i in range(first, last + 1)]


def wal_files(d) -> list:
    return [p for _, p in list_numbered(d / "wal", ".wal")]


def test_round_trip_many_writers_one_sync(tmp_path):
    wal = Wal(tmp_path, sync_method="datasync")
    try:
        res = wal.write_batch([("s1", entries(1, 3)), ("s2", entries(1, 2, term=4)),
                               ("s1", entries(4, 5, term=2))])
        assert res.synced and res.records == 7
        assert res.written == {"s1": ((1, 1, 3), (2, 4, 5)), "s2": ((4, 1, 2),)}
        assert res.messages("s1") == [Written(1, 1, 3), Written(2, 4, 5)]
        assert wal.stats["syncs"] == 1 and wal.stats["batches"] == 1
        path = wal.path
    finally:
        wal.close()
    scan = scan_wal_file(path)
    assert scan.torn is None
    got = [(r.uid, r.index, r.term, unpack(r.payload)) for r in scan.records()]
    assert got == ([("s1", i, 1, ("c", i)) for i in (1, 2, 3)]
                   + [("s2", i, 4, ("c", i)) for i in (1, 2)]
                   + [("s1", i, 2, ("c", i)) for i in (4, 5)])


def test_uid_inline_first_then_short_reference(tmp_path):
    with Wal(tmp_path) as wal:
        wal.write_batch([("server-with-a-long-uid", entries(1, 1))])
        wal.write_batch([("server-with-a-long-uid", entries(2, 2))])
        path = wal.path
        data = path.read_bytes()
    first_block = data[FILE_HEADER.size]
    assert first_block == KIND_UID
    assert data.count(b"server-with-a-long-uid") == 1  # later blocks use the ref
    scan = scan_wal_file(path)
    assert [b.uid for b in scan.blocks] == ["server-with-a-long-uid"] * 2
    assert data[scan.blocks[1].offset] == KIND_REF


def test_records_columns_and_entries_apis_agree(tmp_path):
    with Wal(tmp_path) as wal:
        wal.append("a", [(1, 1, b"\x01"), (2, 1, b"\x02")])
        wal.append_run("b", 7, [3, 3, 4], [b"x", b"y", b"z"], overwrite=True)   # (a first write above 1)
        wal.append_encoded(Wal.encode_run("c", 1, 9, [b"q"]))
        res = wal.flush()
        assert res.written == {"a": ((1, 1, 2),), "b": ((3, 7, 8), (4, 9, 9)), "c": ((9, 1, 1),)}
        with pytest.raises(LogUsageError):
            wal.append("a", [(3, 1, b""), (5, 1, b"")])  # not consecutive
        with pytest.raises(LogUsageError):
            wal.append_run("a", 3, [2, 1], [b"", b""])  # terms decrease
        with pytest.raises(LogUsageError):
            wal.append_run("../x", 1, 1, [b""])  # uid names a directory
        with pytest.raises(LogUsageError):
            wal.append_run("a", 0, 1, [b""])  # indexes start at 1
        with pytest.raises(LogUsageError):
            wal.append_run("a", 3, 1, ["not bytes"])


def test_tampered_encoded_append_is_refused(tmp_path):
    from dataclasses import replace
    with Wal(tmp_path) as wal:
        enc = Wal.encode_run("a", 1, 1, [b"abc", b"de"])
        with pytest.raises(LogUsageError):
            wal.append_encoded(replace(enc, blob=enc.blob + b"!"))
        with pytest.raises(LogUsageError):
            wal.append_encoded(replace(enc, table_crc=enc.table_crc ^ 1))
        with pytest.raises(LogUsageError):
            wal.append_encoded(replace(enc, first=2))
        assert wal.flush().records == 0


def test_rollover_past_max_size(tmp_path):
    with Wal(tmp_path, max_size_bytes=2000) as wal:
        closed = []
        for i in range(1, 41):
            res = wal.write_batch([("s1", [Entry(i, 1, b"x" * 100)])])
            closed.extend(res.closed_files)
        files = wal_files(tmp_path)
        assert len(closed) >= 2 and len(files) == len(closed) + 1
        assert all(p.stat().st_size >= 2000 for p in closed)
        indexes = [r.index for p in files for r in scan_wal_file(p).records()]
        assert indexes == list(range(1, 41))
        # A new file starts with the uid inline again.
        assert scan_wal_file(closed[1]).blocks[0].offset == FILE_HEADER.size
        assert scan_wal_file(closed[1]).path.read_bytes()[FILE_HEADER.size] == KIND_UID
        assert wal.roll_over() is not None  # the current file holds records
        assert wal.roll_over() is None  # nothing written to the fresh file


def test_rewrite_after_leader_change_later_record_wins(tmp_path):
    with Wal(tmp_path) as wal:
        wal.write_batch([("s1", entries(1, 10, term=1))])
        # Same batch: an overwrite trims the earlier range.
        res = wal.write_batch([("s1", entries(11, 12, term=1)), ("s1", entries(8, 9, term=2), False, True)])
        # Ranges are the writer's final state: 11..12 were superseded in the same batch.
        assert res.written["s1"] == ((2, 8, 9),)
        assert wal.last_writer_index("s1") == 9
        path = wal.path
    from ra_actors.log.segment_writer import final_runs
    run = final_runs(scan_wal_file(path))["s1"]
    assert [(i, t) for i, t, _p, _c in run] == [(i, 1) for i in range(1, 8)] + [(8, 2), (9, 2)]


def test_an_append_into_written_entries_must_say_it_overwrites(tmp_path):
    """The WAL's half of durability-as-a-prefix: a follower's log 1..10
    (term 1) is cut back to 7 by a new leader, whose entries 8..9 are
    written as an overwrite -- and that write is lost.  Entry 10 of the new
    leader, a plain append, must not be taken: the WAL would hold the old
    8..9 before the new 10, a log no leader ever had.  The WAL refuses it
    and asks for a resend; the writer resends from its durable prefix, as
    an overwrite."""
    with Wal(tmp_path) as wal:
        wal.write_batch([("s1", entries(1, 10, term=1))])
        # (the overwrite of 8..9 with term 2 never arrives)
        res = wal.write_batch([("s1", entries(10, 10, term=2))])
        assert res.written == {} and res.dropped == {"s1": 1} and res.messages("s1") == [ResendWrite(10)]
        res = wal.write_batch([("s1", entries(8, 10, term=2), False, True)])     # the resend
        assert res.written == {"s1": ((2, 8, 10),)} and res.resend == {}
        path = wal.path
    from ra_actors.log.segment_writer import final_runs
    run = final_runs(scan_wal_file(path))["s1"]
    assert [(i, t) for i, t, _p, _c in run] == [(i, 1) for i in range(1, 8)] + [(8, 2), (9, 2), (10, 2)]


def test_a_first_plain_append_above_index_1_is_refused_whatever_came_before(tmp_path):
    """A restarted node's follower had 1..10 (term 1) on disk; a new leader
    cut it back to 7 and its overwrite of 8..9 (term 2), the writer's first
    write of this WAL life, was lost.  The WAL cannot know that: a plain
    append of 10 as the first write it sees is refused and a resend asked
    from 10, else the old 8..9 would stand before the new 10 after a crash."""
    with Wal(tmp_path) as wal:
        wal.write_batch([("s1", entries(1, 10, term=1))])
    with Wal(tmp_path) as wal:                      # the node restarted
        res = wal.write_batch([("s1", entries(10, 10, term=2))])
        assert res.written == {} and res.dropped == {"s1": 1} and res.messages("s1") == [ResendWrite(10)]
        res = wal.write_batch([("s1", entries(11, 11, term=2))])      # still dropped, no second ask
        assert res.written == {} and res.resend == {}
        res = wal.write_batch([("s1", entries(8, 11, term=2), False, True)])     # the resend
        assert res.written == {"s1": ((2, 8, 11),)}
        # a first plain append at index 1 has nothing below it to splice: taken
        assert wal.write_batch([("s2", entries(1, 2))]).written == {"s2": ((1, 1, 2),)}


def test_a_restarted_writer_starts_afresh_and_its_old_life_cannot_write(tmp_path):
    """The WAL outlives a server's process: incarnation 7 wrote 1..15 (term
    2); incarnation 8 cut back to 14 and its overwrite of 15 (term 3) was
    lost.  Its plain append of 16 follows on from what incarnation 7 wrote,
    but it is a new life: refused, a resend asked.  A late write of
    incarnation 7 is dropped, even as an overwrite."""
    with Wal(tmp_path) as wal:
        wal.append_encoded(Wal.encode_run("s1", 1, 2, [b"old"] * 15), writer=7)
        assert wal.flush().written == {"s1": ((2, 1, 15),)}
        wal.append_encoded(Wal.encode_run("s1", 16, 3, [b"new"]), writer=8)
        res = wal.flush()
        assert res.written == {} and res.messages("s1") == [ResendWrite(16)]
        wal.append_encoded(Wal.encode_run("s1", 9, 2, [b"late"], overwrite=True), writer=7)
        assert wal.flush().written == {}
        wal.append_encoded(Wal.encode_run("s1", 15, 3, [b"new", b"new"], overwrite=True), writer=8)
        assert wal.flush().written == {"s1": ((3, 15, 16),)}
        path = wal.path
    from ra_actors.log.segment_writer import final_runs
    run = final_runs(scan_wal_file(path))["s1"]
    assert [(i, t) for i, t, _p, _c in run] == [(i, 2) for i in range(1, 15)] + [(15, 3), (16, 3)]


def run_of(wal, uid: str, first: int, term: int, n: int, *, prev_term: int, durable: int):
    """A write as a server's log makes it: where it stands declared."""
    wal.append_run(uid, first, term, [b"x"] * n, prev_term=prev_term, durable=durable)


def test_a_lost_overwrite_of_the_last_entry_is_caught_by_the_next_appends_prev_term(tmp_path):
    """Regression (sim seed 698787393): a follower held 1..99, entry 99 of
    term 9, all reported durable.  A new leader replaced 99 with its own
    (term 10); that overwrite was lost.  The follower's next append, 100 of
    term 10, starts at last + 1, so indexes alone cannot tell: taken, a
    crash would leave 99 of term 9 below 100 of term 10, and a leader's
    AppendEntries matching at 100 would commit the wrong 99 there.  The
    append says the entry before it has term 10; the WAL holds term 9 at
    99: refused, a resend asked from the durable prefix."""
    with Wal(tmp_path) as wal:
        run_of(wal, "s1", 1, 9, 99, prev_term=0, durable=0)
        assert wal.flush().written == {"s1": ((9, 1, 99),)}
        # (the overwrite of 99 with term 10, durable prefix now 98, is lost)
        run_of(wal, "s1", 100, 10, 1, prev_term=10, durable=98)
        res = wal.flush()
        assert res.written == {} and res.messages("s1") == [ResendWrite(99)]
        run_of(wal, "s1", 101, 10, 1, prev_term=10, durable=98)      # dropped quietly, no second ask
        res = wal.flush()
        assert res.written == {} and res.resend == {}
        run_of(wal, "s1", 99, 10, 3, prev_term=9, durable=98)        # the resend
        assert wal.flush().written == {"s1": ((10, 99, 101),)}
        path = wal.path
    from ra_actors.log.segment_writer import final_runs
    run = final_runs(scan_wal_file(path))["s1"]
    assert [(i, t) for i, t, _p, _c in run] == [(i, 9) for i in range(1, 99)] + [(99, 10), (100, 10), (101, 10)]


def test_an_overwrite_is_checked_below_where_it_starts_too(tmp_path):
    """1..100 of term 9 are durable; an overwrite of 98..99 (term 10) is
    lost; then a third leader replaces 99 (term 11).  That overwrite starts
    below the WAL's last index, which indexes alone allow, but the WAL holds
    term 9 at 98 where the writer has 10: refused, resent from 98."""
    with Wal(tmp_path) as wal:
        run_of(wal, "s1", 1, 9, 100, prev_term=0, durable=0)
        wal.flush()
        wal.append_run("s1", 99, 11, [b"y"], overwrite=True, prev_term=10, durable=97)
        res = wal.flush()
        assert res.written == {} and res.messages("s1") == [ResendWrite(98)]
        wal.append_run("s1", 98, [10, 11], [b"x", b"y"], overwrite=True, prev_term=9, durable=97)
        assert wal.flush().written == {"s1": ((10, 98, 98), (11, 99, 99))}


def test_a_restarted_wal_takes_a_write_only_from_the_writers_durable_prefix(tmp_path):
    """A WAL that restarted knows nothing of its writers.  A server that
    outlived it had 1..10 (term 1) durable, and its overwrite of 10 (term 2)
    went to the old WAL and was lost.  Its next write, an overwrite of 11,
    cannot be checked: refused, a resend asked from 10; the resend starts
    at the durable prefix and is taken."""
    with Wal(tmp_path) as wal:
        run_of(wal, "s1", 1, 1, 10, prev_term=0, durable=0)
        wal.flush()
    with Wal(tmp_path) as wal:
        wal.append_run("s1", 11, 3, [b"z"], overwrite=True, prev_term=2, durable=9)
        res = wal.flush()
        assert res.written == {} and res.messages("s1") == [ResendWrite(10)]
        wal.append_run("s1", 10, [2, 3], [b"x", b"z"], overwrite=True, prev_term=1, durable=9)
        assert wal.flush().written == {"s1": ((2, 10, 10), (3, 11, 11))}


def test_prev_term_and_durable_must_be_indexes(tmp_path):
    with Wal(tmp_path) as wal:
        for bad in ({"prev_term": -1}, {"prev_term": "1"}, {"durable": -2}, {"durable": None}):
            with pytest.raises(LogUsageError):
                wal.append_run("s1", 1, 1, [b"x"], **bad)
        enc = Wal.encode_run("s1", 1, 1, [b"x"], prev_term=0, durable=0)
        import dataclasses
        with pytest.raises(LogUsageError, match="prev_term or durable"):
            wal.append_encoded(dataclasses.replace(enc, durable=-1))


def test_gap_detection_asks_for_resend_and_drops_until_filled(tmp_path):
    with Wal(tmp_path) as wal:
        # first write: anywhere, as an overwrite
        assert wal.write_batch([("s1", entries(5, 6), False, True)]).written == {"s1": ((1, 5, 6),)}
        res = wal.write_batch([("s1", entries(9, 10))])
        assert res.resend == {"s1": 7} and res.written == {} and res.dropped == {"s1": 2}
        assert res.messages("s1") == [ResendWrite(7)]
        res = wal.write_batch([("s1", entries(11, 11))])  # still out of sequence: dropped, no 2nd resend
        assert res.resend == {} and res.dropped == {"s1": 1}
        res = wal.write_batch([("s1", entries(7, 11))])  # the resend fills the gap
        assert res.written == {"s1": ((1, 7, 11),)} and res.resend == {}
        # A truncating write (log restarted after a snapshot) is accepted anywhere.
        res = wal.write_batch([("s1", entries(100, 100), True)])
        assert res.written == {"s1": ((1, 100, 100),)}
        records = [(r.index) for r in scan_wal_file(wal.path).records()]
        assert records == [5, 6, 7, 8, 9, 10, 11, 100]
        assert scan_wal_file(wal.path).blocks[-1].truncate


def test_gap_and_fix_in_same_batch(tmp_path):
    with Wal(tmp_path) as wal:
        wal.write_batch([("s1", entries(1, 2))])
        res = wal.write_batch([("s1", entries(5, 5)), ("s1", entries(3, 5))])
        assert res.resend == {} and res.written == {"s1": ((1, 3, 5),)} and res.dropped == {"s1": 1}


def test_background_flush_with_concurrent_appends(tmp_path):
    """The actor appends in its thread while a helper thread flushes."""
    with Wal(tmp_path) as wal:
        stop = threading.Event()
        results = []

        def flusher():
            while not stop.is_set():
                results.append(wal.flush())
            results.append(wal.flush())

        th = threading.Thread(target=flusher)
        th.start()
        for i in range(1, 501):
            wal.append_run("s1", i, 1, [b"%d" % i])
            wal.append_run("s2", i, 1, [b"%d" % i])
        stop.set()
        th.join()
        durable = {"s1": 0, "s2": 0}
        for r in results:
            for uid, runs in r.written.items():
                assert runs[0][1] == durable[uid] + 1  # contiguous, in order
                durable[uid] = runs[-1][2]
            assert not r.resend
        assert durable == {"s1": 500, "s2": 500}
        assert wal.stats["syncs"] <= wal.stats["batches"] < 1000  # batching happened
        got = [(r.uid, r.index) for r in scan_wal_file(wal.path).records()]
        assert sorted(got) == sorted([(u, i) for u in ("s1", "s2") for i in range(1, 501)])


@pytest.mark.parametrize("method", ["datasync", "sync", "none"])
def test_sync_methods(tmp_path, method):
    with Wal(tmp_path, sync_method=method) as wal:
        res = wal.write_batch([("s1", entries(1, 2))])
        assert res.written == {"s1": ((1, 1, 2),)}
        assert wal.stats["syncs"] == (0 if method == "none" else 1)
    with pytest.raises(LogUsageError):
        Wal(tmp_path / "x", sync_method="fsync")


def test_torn_tail_is_truncated_and_reported(tmp_path):
    with Wal(tmp_path) as wal:
        for i in range(1, 6):
            wal.write_batch([("s1", entries(i, i))])
        path = wal.path
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 7)
    scan = scan_wal_file(path)
    assert scan.torn is not None and [r.index for r in scan.records()] == [1, 2, 3, 4]
    assert scan.torn.offset == scan.valid_size
    fixed = scan_wal_file(path, repair=True)
    assert fixed.repaired and path.stat().st_size == scan.valid_size
    again = scan_wal_file(path)
    assert again.torn is None and again.record_count == 4


def test_garbage_tail_after_crash_is_torn_not_corrupt(tmp_path):
    with Wal(tmp_path) as wal:
        wal.write_batch([("s1", entries(1, 3))])
        path = wal.path
    with open(path, "ab") as f:
        f.write(b"\x00" * 300 + b"\xb2\x00garbage")
    scan = scan_wal_file(path)
    assert scan.torn is not None and scan.record_count == 3


@pytest.mark.parametrize("where", ["payload", "table", "header"])
def test_flipped_byte_mid_file_is_corruption_naming_file_and_offset(tmp_path, where):
    with Wal(tmp_path) as wal:
        for i in range(1, 21):
            wal.write_batch([("s1", [Entry(i, 1, b"p" * 50)])])
        path = wal.path
    scan = scan_wal_file(path)
    block = scan.blocks[10]
    if where == "payload":
        pos = block.records[0].offset + 10
    elif where == "table":
        pos = block.records[0].offset - 30
    else:
        pos = block.offset + 3
    data = bytearray(path.read_bytes())
    data[pos] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(LogCorruption) as err:
        scan_wal_file(path)
    assert err.value.path == str(path)
    assert block.offset <= err.value.offset <= block.records[0].offset + 50
    assert "corrupt" in str(err.value) and str(err.value.offset) in str(err.value)


def test_power_loss_pages_of_last_batch_out_of_order_is_torn(tmp_path):
    """Blocks of the failing block's own batch after it are still a torn tail."""
    with Wal(tmp_path) as wal:
        wal.write_batch([("s1", entries(1, 2))])
        wal.write_batch([("s1", entries(3, 4)), ("s2", entries(1, 2))])  # one batch, two blocks
        path = wal.path
    scan = scan_wal_file(path)
    victim = scan.blocks[1]
    data = bytearray(path.read_bytes())
    data[victim.records[0].offset] ^= 0xFF  # s1's block of batch 2 lost, s2's survived
    path.write_bytes(bytes(data))
    scan = scan_wal_file(path)
    assert scan.torn is not None and scan.torn.offset == victim.offset
    assert [(r.uid, r.index) for r in scan.records()] == [("s1", 1), ("s1", 2)]


def test_bad_magic_is_corruption(tmp_path):
    (tmp_path / "wal").mkdir()
    p = tmp_path / "wal" / "0000000000000001.wal"
    p.write_bytes(b"NOPE" + b"\x01" * 20)
    with pytest.raises(LogCorruption) as err:
        scan_wal_file(p)
    assert err.value.offset == 0


def test_new_wal_never_appends_to_old_files(tmp_path):
    with Wal(tmp_path) as wal:
        wal.write_batch([("s1", entries(1, 1))])
        first = wal.path
    with Wal(tmp_path) as wal:
        assert wal.pending_files == (first,)
        assert wal.path != first and wal.path.name > first.name
        # New process life: the writer may start anywhere, saying it overwrites.
        assert wal.write_batch([("s1", entries(50, 50), False, True)]).written == {"s1": ((1, 50, 50),)}


def test_data_dir_lock_in_process_and_across_processes(tmp_path):
    import subprocess
    import sys
    wal = Wal(tmp_path)
    try:
        with pytest.raises(DataDirLocked) as err:
            Wal(tmp_path)
        assert str(os.getpid()) in str(err.value)
        code = ("import sys\nfrom ra_actors.log.wal import Wal\nfrom ra_actors.errors import DataDirLocked\n"
                "try:\n    Wal(sys.argv[1])\nexcept DataDirLocked as e:\n    print('LOCKED', e); sys.exit(3)\n")
        proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                              text=True, timeout=30)
        assert proc.returncode == 3 and "LOCKED" in proc.stdout
    finally:
        wal.close()
    Wal(tmp_path).close()  # released on close


def test_closed_wal_refuses_work(tmp_path):
    wal = Wal(tmp_path)
    wal.close()
    with pytest.raises(LogUsageError):
        wal.flush()
