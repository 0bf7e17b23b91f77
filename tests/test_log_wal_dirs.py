"""Several WALs per node, in the storage layer: which WAL a server writes to,
that the choice is recorded and recovery reads that WAL (and only it), and
that a server whose WAL is not there is a clear error, never a log
recovered without its entries."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from ra_actors.cli import main
from ra_actors.core.types import Entry, ServerConfig, ServerId
from ra_actors.errors import DataDirLocked, WalNotFound
from ra_actors.log.common import LogUsageError, wal_dir
from ra_actors.log.recovery import recover_node
from ra_actors.log.segment_writer import SegmentWriter
from ra_actors.log.server_log import ServerLog
from ra_actors.log.tools import check_data_dir
from ra_actors.log.wal import WAL_SUFFIX
from ra_actors.log.wal_dirs import (assigned_wal_dir, check_wal_dirs, choose_wal, read_assignment,
                                    read_wal_id, record_assignment, wal_index_of)
from ra_actors.log.wal_format import scan_wal_file


def _config(uid: str) -> ServerConfig:
    sid = ServerId(uid, "n1")
    return ServerConfig(sid, uid, "c", "machines.kv", (sid,))


def _write(node, slog, values) -> None:
    """Append ``values`` to ``slog`` through its node's WAL and sync them."""
    first = slog.last_index + 1
    req = slog.append([Entry(first + k, 1, v) for k, v in enumerate(values)])
    node.wal.append_encoded(req.encode())
    node.flush()


def _commands(slog) -> list:
    return [e.command for e in slog.read(slog.first_index, slog.last_index)]


def _uids_in(wdir: Path) -> set:
    out = set()
    for path in sorted(wdir.glob("*" + WAL_SUFFIX)):
        out.update(b.uid for b in scan_wal_file(path, tail_ok=True).blocks)
    return out


# ------------------------------------------------------------ choosing
def test_wal_dirs_default_to_the_data_directory_and_bad_lists_are_refused(tmp_path):
    data = tmp_path / "n1"
    assert check_wal_dirs(data, None) == [wal_dir(data)]
    assert check_wal_dirs(data, [tmp_path / "a", str(tmp_path / "b")]) == [tmp_path / "a", tmp_path / "b"]
    with pytest.raises(LogUsageError, match="named twice"):
        check_wal_dirs(data, [tmp_path / "a", str(tmp_path / "x" / ".." / "a")])
    with pytest.raises(LogUsageError, match="inside another"):
        check_wal_dirs(data, [tmp_path / "a", tmp_path / "a" / "b"])
    with pytest.raises(LogUsageError, match="servers' directory"):
        check_wal_dirs(data, [data / "servers" / "w"])
    with pytest.raises(LogUsageError, match="a list"):
        check_wal_dirs(data, str(tmp_path / "a"))
    with pytest.raises(LogUsageError, match="at least one"):
        check_wal_dirs(data, [])


def test_a_server_goes_to_the_wal_its_config_names_else_to_a_stable_hash_of_its_uid():
    uids = [f"c{i}_s_{i:04x}" for i in range(200)]
    chosen = [choose_wal(u, 2) for u in uids]
    assert set(chosen) == {0, 1}                         # both WALs get servers
    assert 60 < chosen.count(0) < 140                    # ... in roughly equal shares
    assert chosen == [choose_wal(u, 2) for u in uids]    # the same choice every time
    assert all(choose_wal(u, 1) == 0 for u in uids)
    assert choose_wal(uids[0], 3, wal=2) == 2
    for bad in (3, -1, True, "1"):
        with pytest.raises(LogUsageError, match=r"0\.\.2"):
            choose_wal(uids[0], 3, wal=bad)


def test_the_assignment_is_recorded_relative_inside_the_data_directory_absolute_outside(tmp_path):
    data = tmp_path / "n1"
    (data / "servers" / "s1").mkdir(parents=True)
    (data / "servers" / "s2").mkdir(parents=True)
    (data / "servers" / "s3").mkdir(parents=True)
    record_assignment(data, "s1", data / "wal")
    record_assignment(data, "s2", tmp_path / "disk2" / "wal")
    assert assigned_wal_dir(data, "s1") == data / "wal"
    assert assigned_wal_dir(data, "s2") == tmp_path / "disk2" / "wal"
    assert assigned_wal_dir(data, "s3") == data / "wal"      # no record: made before several WALs
    # the data directory moves: its own WAL moves with it, the other stays where it is
    moved = tmp_path / "moved"
    data.rename(moved)
    assert assigned_wal_dir(moved, "s1") == moved / "wal"
    assert assigned_wal_dir(moved, "s2") == tmp_path / "disk2" / "wal"


# ------------------------------------------------------------ recovery
def _two_wal_node(tmp_path):
    """A data directory whose servers s_a and s_b write to WALs on two
    'volumes' (directories); each WAL holds unflushed entries, as after a
    crash (the WAL files were never moved to segments)."""
    data = tmp_path / "n1"
    wa, wb = tmp_path / "vol_a" / "wal", tmp_path / "vol_b" / "wal"
    node_a = recover_node(data, wal_dir=wa)
    node_b = recover_node(data, wal_dir=wb)      # both open at once: each has its own lock
    try:
        slog_a = node_a.create_server(_config("s_a"))
        slog_b = node_b.create_server(_config("s_b"))
        for slog in (slog_a, slog_b):
            slog.persist_meta(1, None)
        for n in range(3):
            _write(node_a, slog_a, [("a", n, i) for i in range(5)])
            _write(node_b, slog_b, [("b", n, i) for i in range(4)])
    finally:
        node_a.wal._lock_obj.release()   # a crash: the locks go, the WAL files stay as they are
        node_b.wal._lock_obj.release()
    return data, wa, wb


def test_each_server_recovers_from_its_own_wal_after_a_crash(tmp_path):
    data, wa, wb = _two_wal_node(tmp_path)
    assert _uids_in(wa) == {"s_a"} and _uids_in(wb) == {"s_b"}   # each WAL holds its servers' entries only
    assert read_assignment(data, "s_a") == (wa, read_wal_id(wa))
    assert read_assignment(data, "s_b") == (wb, read_wal_id(wb))
    # straight from the WAL files (before any recovery moved them)
    slog_a, slog_b = ServerLog.open(data, "s_a"), ServerLog.open(data, "s_b")
    assert _commands(slog_a) == [("a", n, i) for n in range(3) for i in range(5)]
    assert _commands(slog_b) == [("b", n, i) for n in range(3) for i in range(4)]
    slog_a.close(), slog_b.close()
    # recovery of one WAL moves its files only; the servers still read everything
    with recover_node(data, wal_dir=wb) as node_b:
        assert set(node_b.recovered_flushes[0].segments) == {"s_b"}
        assert list(wa.glob("*" + WAL_SUFFIX)), "WAL a's files are not WAL b's to move"
        assert _commands(node_b.open_server("s_b")) == [("b", n, i) for n in range(3) for i in range(4)]
        with recover_node(data, wal_dir=wa) as node_a:
            assert _commands(node_a.open_server("s_a")) == [("a", n, i) for n in range(3) for i in range(5)]


def test_the_wal_lock_is_per_wal_directory(tmp_path):
    wdir = tmp_path / "shared_wal"
    with recover_node(tmp_path / "n1", wal_dir=wdir):
        with pytest.raises(DataDirLocked, match="WAL directory .*shared_wal"):
            recover_node(tmp_path / "n2", wal_dir=wdir)    # two nodes never write one WAL
        with recover_node(tmp_path / "n1", wal_dir=tmp_path / "other"):
            pass                                           # another WAL of the same node opens


def test_a_server_whose_wal_is_not_among_the_nodes_wal_dirs_is_wal_not_found(tmp_path):
    data, wa, wb = _two_wal_node(tmp_path)
    assert wal_index_of(data, "s_a", [wa, wb]) == 0
    assert wal_index_of(data, "s_b", [wa, wb]) == 1
    assert wal_index_of(data, "s_b", [wb, wa]) == 0        # the record names the directory, not a position
    with pytest.raises(WalNotFound, match=f"{wb}.*not among this node's wal_dirs"):
        wal_index_of(data, "s_b", [wa])


def test_an_unmounted_volume_is_wal_not_found_never_a_log_without_its_entries(tmp_path):
    data, wa, wb = _two_wal_node(tmp_path)
    # the volume is not mounted: its mount point is an empty directory
    shutil.move(str(wb.parent), str(tmp_path / "unmounted"))
    wb.mkdir(parents=True)
    with pytest.raises(WalNotFound, match="holds no WAL.*is its volume mounted"):
        ServerLog.open(data, "s_b")
    with pytest.raises(WalNotFound, match="holds no WAL"):
        wal_index_of(data, "s_b", [wa, wb])
    # a WAL opened there meanwhile (the node started on the empty directory) is another WAL
    recover_node(data, wal_dir=wb).close()
    with pytest.raises(WalNotFound, match="holds another WAL"):
        ServerLog.open(data, "s_b")
    # mounted again: everything is there
    shutil.rmtree(wb.parent)
    shutil.move(str(tmp_path / "unmounted"), str(wb.parent))
    with ServerLog.open(data, "s_b") as slog:
        assert len(_commands(slog)) == 12
    with ServerLog.open(data, "s_a") as slog:
        assert len(_commands(slog)) == 15


def test_a_restarted_segment_writer_moves_the_closed_files_of_every_wal(tmp_path):
    data = tmp_path / "n1"
    wa, wb = tmp_path / "a", tmp_path / "b"
    node_a = recover_node(data, wal_dir=wa, wal_max_size_bytes=1024)
    node_b = recover_node(data, wal_dir=wb, wal_max_size_bytes=1024)
    try:
        logs = {"s_a": (node_a, node_a.create_server(_config("s_a"))),
                "s_b": (node_b, node_b.create_server(_config("s_b")))}
        for uid, (node, slog) in logs.items():
            for n in range(6):
                first = slog.last_index + 1
                req = slog.append([Entry(first + i, 1, ("x" * 100, n, i)) for i in range(5)])
                node.wal.append_encoded(req.encode())
                node.wal.flush()    # rolls over; the closed files are NOT handed to a segment writer
        closed = {d: len(list(d.glob("*" + WAL_SUFFIX))) - 1 for d in (wa, wb)}
        assert closed[wa] >= 1 and closed[wb] >= 1
        flushed = SegmentWriter(data, wal_dirs=[wa, wb]).flush_closed_files()
        assert {uid for f in flushed for uid in f.segments} == {"s_a", "s_b"}
        assert all(len(list(d.glob("*" + WAL_SUFFIX))) == 1 for d in (wa, wb))   # the live files stay
    finally:
        node_a.close()
        node_b.close()
    with recover_node(data, wal_dir=wa) as node_a, recover_node(data, wal_dir=wb) as node_b:
        assert len(_commands(node_a.open_server("s_a"))) == 30
        assert len(_commands(node_b.open_server("s_b"))) == 30


# ------------------------------------------------------------ log check
def test_log_check_covers_every_wal_and_names_a_missing_one(tmp_path, capsys):
    data, wa, wb = _two_wal_node(tmp_path)
    report = check_data_dir(data, [wa, wb])
    assert report.sound
    assert [w["dir"] for w in report.wal_dirs] == [str(wa), str(wb)]
    by_uid = {s.uid: s for s in report.servers}
    assert by_uid["s_a"].wal_dir == str(wa) and by_uid["s_a"].last_index == 15
    assert by_uid["s_b"].wal_dir == str(wb) and by_uid["s_b"].last_index == 12
    assert {Path(f.path).parent for f in report.files if f.kind == "wal"} == {wa, wb}
    # without the list, the servers' records still lead to both WALs
    assert check_data_dir(data).sound
    # the CLI takes --wal-dir, else the node.json's wal_dirs
    assert main(["log", "check", str(data), "--wal-dir", str(wa), "--wal-dir", str(wb)]) == 0
    out = capsys.readouterr().out
    assert f"WAL directory 1: {wb}" in out and "SOUND" in out
    (data / "node.json").write_text(json.dumps({"wal_dirs": [str(wa), str(wb)]}))
    assert main(["log", "check", str(data), "--json"]) == 0
    assert [w["dir"] for w in json.loads(capsys.readouterr().out)["wal_dirs"]] == [str(wa), str(wb)]
    # WAL b's volume is gone: s_b's entries are missing, and the check says where
    shutil.rmtree(wb.parent)
    report = check_data_dir(data, [wa, wb])
    assert not report.sound
    bad = {s.uid: s for s in report.servers}["s_b"]
    assert bad.verdict == "corrupt" and any("does not exist" in p for p in bad.problems)
    assert {s.uid: s for s in report.servers}["s_a"].verdict == "sound"
    assert main(["log", "check", str(data)]) == 1


def test_records_of_a_server_in_another_wal_are_suspicious(tmp_path):
    data, wa, wb = _two_wal_node(tmp_path)
    stray = sorted(wa.glob("*" + WAL_SUFFIX))[-1]
    shutil.copy(stray, wb / "0000000000000099.wal")     # s_a's records where recovery never reads them
    report = check_data_dir(data, [wa, wb])
    s_a = {s.uid: s for s in report.servers}["s_a"]
    assert s_a.verdict == "suspicious" and any(str(wb) in w for w in s_a.warnings)
    os.unlink(wb / "0000000000000099.wal")
