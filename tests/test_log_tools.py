"""``ra-actors log check`` / ``log dump`` on sound, torn and corrupt data directories."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ra_actors.cli import main
from ra_actors.core.types import Entry, ServerConfig, ServerId, SnapshotMeta
from ra_actors.log.common import list_numbered, segments_dir
from ra_actors.log.recovery import recover_node

ROOT = Path(__file__).resolve().parent.parent
A = ServerId("a", "n1")


def build_node(d: Path) -> Path:
    """A node with segments, a snapshot, meta and a current WAL file with records."""
    with recover_node(d, wal_max_size_bytes=4096, segment_max_count=20) as node:
        slog = node.create_server(ServerConfig(A, "s1", "c", "machines.kv", (A,)))
        for i in range(1, 101):
            req = slog.append([Entry(i, 1, ("v", i, "x" * 20))])
            node.wal.append_run(req.uid, req.first_index, req.terms, req.payloads, truncate=req.truncate, overwrite=req.overwrite)
            node.flush()
        slog.persist_meta(1, A)
        slog.persist_last_applied(50)
        slog.write_snapshot(SnapshotMeta(50, 1, ((A, "voter"),)), {"n": 50})
        return node.wal.path


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def test_check_sound_dir(tmp_path, capsys):
    wal = build_node(tmp_path)
    assert wal.stat().st_size > 1000
    assert main(["log", "check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "SOUND" in out and "corrupt" not in out.lower().replace("0 corrupt files", "")
    assert "server s1" in out and "segment" in out and "snapshot" in out
    assert main(["log", "check", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sound"] and report["totals"]["corrupt"] == 0
    kinds = {f["kind"] for f in report["files"]}
    assert kinds >= {"wal", "segment", "snapshot", "meta", "config", "last_applied"}


def test_check_reports_torn_tail_as_sound(tmp_path, capsys):
    wal = build_node(tmp_path)
    wal.write_bytes(wal.read_bytes()[:-7])
    assert main(["log", "check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "TORN TAIL" in out and "1 torn tails" in out and "SOUND" in out


def test_check_flipped_byte_mid_wal_is_corrupt_with_file_and_offset(tmp_path, capsys):
    wal = build_node(tmp_path)
    mid = wal.stat().st_size // 2
    flip(wal, mid)
    assert main(["log", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    line = [ln for ln in out.splitlines() if ln.startswith("corrupt:")][0]
    assert "corrupt" in line and str(wal) in line and "byte offset" in line
    offset = int(line.split("byte offset ")[1].split(")")[0])
    assert abs(offset - mid) < 200


def test_check_flipped_byte_in_segment_and_snapshot(tmp_path, capsys):
    build_node(tmp_path)
    seg = list_numbered(segments_dir(tmp_path, "s1"), ".segment")[0][1]
    flip(seg, seg.stat().st_size - 5)
    snap = next((tmp_path / "servers" / "s1" / "snapshots").glob("*.snapshot"))
    flip(snap, snap.stat().st_size - 3)
    assert main(["log", "check", str(tmp_path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    bad = {f["path"]: f for f in report["files"] if f["status"] == "corrupt"}
    assert set(bad) == {str(seg), str(snap)}
    assert all("corrupt" in f["message"] and f["offset"] is not None for f in bad.values())


def test_dump_wal_and_segment(tmp_path, capsys):
    wal = build_node(tmp_path)
    assert main(["log", "dump", str(wal)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("#")
    rows = [ln.split() for ln in lines[1:]]
    assert rows and all(r[0] == "s1" and int(r[2]) == 1 for r in rows)
    idx = [int(r[1]) for r in rows]
    assert idx == list(range(idx[0], idx[0] + len(idx)))
    seg = list_numbered(segments_dir(tmp_path, "s1"), ".segment")[-1][1]
    assert main(["log", "dump", str(seg)]) == 0
    rows = [ln.split() for ln in capsys.readouterr().out.splitlines()[1:]]
    assert rows[0][0] == "s1" and len(rows) >= 1


def test_errors_are_one_line_unless_debug(tmp_path, capsys):
    assert main(["log", "check", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ra-actors: error:" in err
    with pytest.raises(FileNotFoundError):
        main(["--debug", "log", "check", str(tmp_path / "missing")])
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello world")
    assert main(["log", "dump", str(junk)]) == 1
    assert "corrupt" in capsys.readouterr().err


def test_bench_keep_then_check_flip_and_cut(tmp_path):
    """The issue's done-when, end to end through the installed entry points."""
    d = tmp_path / "bench"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_wal.py"), "--records", "300",
                          "--batch", "10", "--batch", "100", "--dir", str(d), "--keep"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "ratio" in run.stdout

    def check():
        return subprocess.run([sys.executable, "-m", "ra_actors.cli", "log", "check", str(d)],
                              capture_output=True, text=True, timeout=60)

    ok = check()
    assert ok.returncode == 0 and "SOUND" in ok.stdout, ok.stdout + ok.stderr
    wal = list_numbered(d / "wal", ".wal")[-1][1]
    original = wal.read_bytes()
    mid = len(original) // 2
    flip(wal, mid)
    bad = check()
    assert bad.returncode != 0 and "corrupt" in bad.stdout and str(wal) in bad.stdout
    wal.write_bytes(original[:-7])
    torn = check()
    assert torn.returncode == 0 and "torn tail" in torn.stdout.lower(), torn.stdout
