"""``ra-actors log check`` checks the log, not only the files: per server the
recoverable range from snapshot + segments + WAL, holes, overwrites with
another term, the meta's term and vote, the last_applied hint; and recovery
refuses to leave a hole."""
from __future__ import annotations

import json
import logging

import pytest

from ra_actors.cli import main
from ra_actors.core.types import Entry, ServerConfig, ServerId
from ra_actors.errors import LogCorruption
from ra_actors.log.common import list_numbered, segments_dir, wal_dir
from ra_actors.log.integrity import Source, analyse
from ra_actors.log.recovery import recover_node
from ra_actors.log.tools import check_data_dir

A = ServerId("a", "n1")


def put(node, slog, first, last, term=1):
    req = slog.append([Entry(i, term, ("v", i)) for i in range(first, last + 1)])
    node.wal.append_run(req.uid, req.first_index, req.terms, req.payloads, truncate=req.truncate, overwrite=req.overwrite)
    node.flush()


def new_server(node, uid="s1"):
    return node.create_server(ServerConfig(A, uid, "c", "machines.kv", (A,)))


def check(d, capsys):
    code = main(["log", "check", str(d), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert main(["log", "check", str(d)]) == code
    return code, report, capsys.readouterr().out


def server(report, uid="s1"):
    return next(s for s in report["servers"] if s["uid"] == uid)


def with_segments(d):
    """Segments (1..5), (6..10), (11..12) for s1; meta term 1."""
    with recover_node(d, segment_max_count=5) as node:
        slog = new_server(node)
        slog.persist_meta(1, A)
        for first in range(1, 13, 3):
            put(node, slog, first, first + 2)
        node.flush_segments(node.wal.roll_over())
    return [p for _n, p in list_numbered(segments_dir(d, "s1"), ".segment")]


def test_sound_log_reports_range_and_sources(tmp_path, capsys):
    with_segments(tmp_path)
    with recover_node(tmp_path) as node:
        slog = node.open_server("s1")
        put(node, slog, 13, 15)
    code, report, text = check(tmp_path, capsys)
    assert code == 0 and report["sound"] and report["verdict"] == "sound"
    s1 = server(report)
    assert s1["verdict"] == "sound" and (s1["first_index"], s1["last_index"]) == (1, 15)
    assert [r[:2] for r in s1["segments"]] == [[1, 5], [6, 10], [11, 12]]
    assert [r[:2] for r in s1["wal"]] == [[13, 15]]
    assert s1["holes"] == [] and s1["meta"]["current_term"] == 1
    assert report["totals"]["servers"] == 1 and report["totals"]["servers_corrupt"] == 0
    assert "server s1: SOUND - log 1..15" in text and "1 server: 1 sound" in text


def test_missing_segment_is_a_hole_in_check_and_recovery_refuses(tmp_path, capsys):
    segs = with_segments(tmp_path)
    with recover_node(tmp_path) as node:
        put(node, node.open_server("s1"), 13, 14)   # a WAL file recovery will flush
    segs[1].unlink()                                 # entries 6..10 gone
    code, report, text = check(tmp_path, capsys)
    assert code == 1 and not report["sound"]
    s1 = server(report)
    assert s1["verdict"] == "corrupt" and s1["holes"] == [[6, 10]]
    assert "server s1: entries 6..10 are missing" in text.split("CORRUPT\n", 1)[1]
    with pytest.raises(LogCorruption) as err:
        recover_node(tmp_path)
    assert "entries 6..10 are missing" in str(err.value)
    assert err.value.path == str(segments_dir(tmp_path, "s1"))


def test_wal_run_past_the_end_of_the_log_is_refused_before_anything_changes(tmp_path, capsys):
    with_segments(tmp_path)
    with recover_node(tmp_path, wal_max_size_bytes=1024) as node:
        slog = node.open_server("s1")
        put(node, slog, 13, 16)
        first_wal = node.wal.roll_over()
        put(node, slog, 17, 18)
    first_wal.unlink()                                # someone removed a WAL file
    code, report, _text = check(tmp_path, capsys)
    assert code == 1 and server(report)["holes"] == [[13, 16]]
    wal_files = [p for _n, p in list_numbered(wal_dir(tmp_path), ".wal")]
    before = {p: p.read_bytes() for p in wal_files}
    with pytest.raises(LogCorruption) as err:
        recover_node(tmp_path)
    assert err.value.path == str(wal_files[0])
    assert "entries 13..16 are missing" in str(err.value) and "nothing was written" in str(err.value)
    assert {p: p.read_bytes() for p in wal_files} == before
    assert len(list_numbered(segments_dir(tmp_path, "s1"), ".segment")) == 3


def test_overwrite_with_another_term_is_reported_but_sound(tmp_path, capsys):
    with recover_node(tmp_path) as node:
        slog = new_server(node)
        slog.persist_meta(2, None)
        put(node, slog, 1, 6, term=1)
        node.flush_segments(node.wal.roll_over())
        put(node, slog, 4, 7, term=2)                 # a new leader replaced 4..6
    code, report, text = check(tmp_path, capsys)
    assert code == 0
    s1 = server(report)
    assert s1["verdict"] == "sound" and (s1["last_index"], s1["last_term"]) == (7, 2)
    assert [(o["from"], o["to"], o["old_term"], o["new_term"]) for o in s1["overwrites"]] == [(4, 6, 1, 2)]
    assert "3 entries overwritten with another term" in text


def test_meta_term_below_the_log_and_vote_without_term_are_suspicious(tmp_path, capsys):
    with recover_node(tmp_path) as node:
        slog = new_server(node)
        slog.persist_meta(1, A)
        put(node, slog, 1, 3, term=2)
        other = new_server(node, "s2")
        other.persist_meta(0, A)
    code, report, text = check(tmp_path, capsys)
    assert code == 0 and report["sound"]                 # suspicious is not corrupt
    s1, s2 = server(report, "s1"), server(report, "s2")
    assert s1["verdict"] == "suspicious"
    assert any("meta term 1 is below the last entry's term 2" in w for w in s1["warnings"])
    assert s2["verdict"] == "suspicious" and any("without a term" in w for w in s2["warnings"])
    assert report["totals"]["servers_suspicious"] == 2
    assert "server s1: SUSPICIOUS" in text and "suspicious: s1, s2" in text


def test_last_applied_above_what_is_recoverable_is_never_silent(tmp_path, capsys, caplog):
    """A bit flip in the newest WAL file's last batch looks like a torn tail, but
    the last_applied hint can tell that applied entries went with it."""
    with recover_node(tmp_path) as node:
        slog = new_server(node)
        slog.persist_meta(1, A)
        put(node, slog, 1, 8)
        put(node, slog, 9, 10)
        slog.persist_last_applied(10)
        path = node.wal.path
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    code, report, text = check(tmp_path, capsys)
    assert code == 0 and "TORN TAIL" in text
    s1 = server(report)
    assert s1["verdict"] == "suspicious" and s1["recoverable_last"] == 8
    assert any("last_applied hint 10 is above the last recoverable index 8" in w for w in s1["warnings"])
    with caplog.at_level(logging.WARNING):
        with recover_node(tmp_path) as node:
            rec = node.open_server("s1").recovered()
    assert [e.index for e in rec.entries] == list(range(1, 9))
    assert any("last_applied hint (10) is above the last recoverable index (8)" in r.getMessage()
               for r in caplog.records)


def test_usage_errors_exit_2(tmp_path):
    for argv in (["log", "check"], ["log", "check", str(tmp_path), "--bogus"], ["log", "frob"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2


def test_analyse_rules():
    seg = Source("segment 1", 1, 10, [1] * 10)
    later = Source("segment 2", 6, 12, [2] * 7)
    out = analyse([seg, later])
    assert out.holes == [] and (out.last_index, out.last_term) == (12, 2)
    assert out.overwrites == [(6, 10, 1, 2, "segment 1", "segment 2")]
    gap = analyse([Source("a", 1, 2, [1, 1]), Source("b", 4, 4, [1])])
    assert gap.holes == [(3, 3)]
    assert analyse([Source("a", 8, 9, [3, 3])], snapshot=(7, 3)).holes == []
    assert analyse([Source("a", 9, 9, [3])], snapshot=(7, 3)).holes == [(8, 8)]
    assert analyse([Source("a", 3, 4, [1, 1])]).holes == [(1, 2)]        # no snapshot: from 1
    restart = analyse([Source("a", 8, 10, [1, 1, 1])], snapshot=(7, 2))
    assert restart.term_break == (8, 1, 2) and restart.recoverable_last == 7


def test_check_skips_files_that_vanish_beside_a_live_node(tmp_path, monkeypatch):
    with_segments(tmp_path)
    with recover_node(tmp_path) as node:
        slog = node.open_server("s1")
        put(node, slog, 13, 14)
        from ra_actors.log import tools
        real = tools.examine_wal_file

        def vanish(path, **kw):
            raise FileNotFoundError(path)   # flushed to segments while we looked
        monkeypatch.setattr(tools, "examine_wal_file", vanish)
        report = check_data_dir(tmp_path)
        monkeypatch.setattr(tools, "examine_wal_file", real)
    assert not [f for f in report.files if f.kind == "wal"]
    assert report.servers[0].last_index == 12 and report.sound
