"""Bit flips in every kind of file of a real data directory, at the start,
middle and end, and random flips in WAL files (hypothesis).

The exact outcome is asserted every time:

* a flip in the newest WAL file's last batch is a torn tail: recovery drops
  exactly that batch (with a warning, keeping its bytes aside) and nothing
  else;
* a flip anywhere else — an older WAL file (even at its very end), earlier in
  the newest WAL file, a segment, a snapshot, the meta or the config — is
  LogCorruption naming that file, ``ra-actors log check`` exits 1 naming it,
  and the damaged file is left exactly as it was (nothing is truncated,
  rewritten or deleted on a guess);
* the recovered log never has a hole.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ra_actors.cli import main
from ra_actors.core.types import Entry, ServerConfig, ServerId, SnapshotMeta
from ra_actors.errors import LogCorruption
from ra_actors.log.integrity import check_contiguous
from ra_actors.log.common import list_numbered, segments_dir, server_dir, snapshots_dir, wal_dir
from ra_actors.log.recovery import recover_node
from ra_actors.log.wal_format import scan_wal_file

A = ServerId("a", "n1")
UIDS = ("s1", "s2")


def put(node, slogs, first, last):
    """One batch: entries first..last of every server, one write + one sync."""
    for slog in slogs:
        req = slog.append([Entry(i, 1, (slog.uid, i)) for i in range(first, last + 1)])
        node.wal.append_run(req.uid, req.first_index, req.terms, req.payloads, truncate=req.truncate, overwrite=req.overwrite)
    _res, msgs = node.flush()
    for slog in slogs:
        assert slog.last_written[0] == last  # acknowledged


def build(d: Path) -> dict:
    """Snapshot at 4, segments 1..12, a closed WAL file with 13..18 and the newest
    WAL file with 19..24 (batches of 2), for two servers; every entry acknowledged."""
    with recover_node(d, segment_max_count=5) as node:
        slogs = [node.create_server(ServerConfig(A, uid, "c", "machines.kv", (A,))) for uid in UIDS]
        for first in range(1, 13, 3):
            put(node, slogs, first, first + 2)
        node.flush_segments(node.wal.roll_over())
        for slog in slogs:
            slog.persist_meta(1, A)
            slog.write_snapshot(SnapshotMeta(4, 1, ((A, "voter"),), 1), {"n": 4})
            slog.persist_last_applied(10)
        for first in range(13, 19, 2):
            put(node, slogs, first, first + 1)
        closed = node.wal.roll_over()     # closed, not yet in segments (as after a crash)
        for first in range(19, 25, 2):
            put(node, slogs, first, first + 1)
        newest = node.wal.path
    return {"closed": closed, "newest": newest}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    d = tmp_path_factory.mktemp("pristine") / "node"
    files = build(d)
    return d, files


def copy_of(pristine, where: Path) -> Path:
    d, _files = pristine
    shutil.copytree(d, where)
    return where


def flip(path: Path, offset: int, mask: int = 0x01) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def digest(d: Path) -> dict:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file() and p.name != "LOCK"}


def recover_all(d: Path) -> tuple[dict, list]:
    """Node start + every server's recovery: ``({uid: [indexes]}, warnings)``."""
    with recover_node(d, segment_max_count=5) as node:
        out = {}
        for uid in UIDS:
            rec = node.open_server(uid).recovered()
            for e in rec.entries:
                assert e.command == (uid, e.index)
            out[uid] = [e.index for e in rec.entries]
        return out, list(node.warnings)


def target(d: Path, kind: str) -> Path:
    wals = [p for _n, p in list_numbered(wal_dir(d), ".wal")]
    sdir = server_dir(d, "s1")
    return {"wal_closed": wals[0], "wal_newest": wals[-1],
            "segment": list_numbered(segments_dir(d, "s1"), ".segment")[1][1],
            "snapshot": next(snapshots_dir(d, "s1").glob("*.snapshot")),
            "meta": sdir / "meta", "config": sdir / "config"}[kind]


def check_exit(d: Path, capsys) -> tuple[int, str, dict]:
    code = main(["log", "check", str(d)])
    text = capsys.readouterr().out
    assert main(["log", "check", str(d), "--json"]) == code
    return code, text, json.loads(capsys.readouterr().out)


def test_pristine_directory_recovers_everything(pristine, tmp_path, capsys):
    d = copy_of(pristine, tmp_path / "node")
    code, text, report = check_exit(d, capsys)
    assert code == 0 and report["sound"], text
    assert {s["uid"]: s["verdict"] for s in report["servers"]} == {"s1": "sound", "s2": "sound"}
    s1 = next(s for s in report["servers"] if s["uid"] == "s1")
    assert (s1["first_index"], s1["last_index"], s1["snapshot"]) == (5, 24, {"index": 4, "term": 1})
    assert [w[:2] for w in s1["wal"]] == [[13, 18], [19, 24]]
    got, warnings = recover_all(d)
    assert got == {uid: list(range(5, 25)) for uid in UIDS} and warnings == []


CASES = [(kind, where) for kind in ("wal_closed", "wal_newest", "segment", "snapshot", "meta", "config")
         for where in ("start", "middle", "end")]


@pytest.mark.parametrize("kind,where", CASES)
def test_bit_flip(pristine, tmp_path, capsys, kind, where):
    d = copy_of(pristine, tmp_path / "node")
    path = target(d, kind)
    closed_wal = target(d, "wal_closed")
    size = path.stat().st_size
    offset = {"start": 0, "middle": size // 2, "end": size - 1}[where]
    flip(path, offset)
    code, text, report = check_exit(d, capsys)
    if (kind, where) == ("wal_newest", "end"):
        # The newest file's last batch: a torn tail (never acknowledged, as far
        # as the bytes can tell): dropped, and only it.
        assert code == 0 and "TORN TAIL" in text, text
        got, warnings = recover_all(d)
        # The last block (s2's half of the last batch) is dropped; s1's block of
        # that batch came before the damage and is kept.
        assert got == {"s1": list(range(5, 25)), "s2": list(range(5, 23))}
        assert len(warnings) == 1 and str(path) in warnings[0]
        assert list(path.parent.glob(path.name + ".torn-*"))
        return
    # Everything else is corruption naming the file, found by check and by recovery.
    assert code == 1, text
    assert any(f["path"] == str(path) and f["status"] == "corrupt" for f in report["files"])
    assert str(path) in text.split("CORRUPT\n", 1)[1]
    before = digest(d)
    with pytest.raises(LogCorruption) as err:
        recover_all(d)
    assert err.value.path == str(path), err.value
    assert err.value.offset is not None or kind in ("meta", "config")
    after = digest(d)
    rel = str(path.relative_to(d))
    assert after[rel] == before[rel]              # the damaged file is untouched
    if kind == "wal_closed":
        assert after == before                    # nothing at all was written or deleted
    elif kind == "wal_newest":
        # Older WAL files were flushed (durably) before the damaged one was read;
        # the segments they produced continue the logs without a hole.
        assert set(before) - set(after) == {str(closed_wal.relative_to(d))}
        for uid in UIDS:
            assert check_contiguous(d, uid).last_index == 18


@pytest.mark.parametrize("kind", ["wal_closed", "segment", "snapshot", "meta", "config"])
def test_no_bit_of_a_closed_file_changes_unnoticed(pristine, tmp_path, capsys, kind):
    """Every byte, the header's reserved padding included: a Jepsen disk
    nemesis flipping a random byte must always meet LogCorruption."""
    d = copy_of(pristine, tmp_path / "node")
    path = target(d, kind)
    clean = path.read_bytes()
    missed = []
    for offset in range(len(clean)):
        flip(path, offset)
        if main(["log", "check", str(d)]) != 1:
            missed.append(offset)
        path.write_bytes(clean)
        capsys.readouterr()
    assert missed == [], f"flips at {missed} of {path.name} ({len(clean)} bytes) went unnoticed"


def test_the_reported_case_closed_wal_damage_at_its_end(tmp_path, capsys):
    """The issue's reproduction: 1-3 acknowledged in WAL file 1, roll over, 4 in
    file 2, one byte flipped at the end of file 1.  It used to be "SOUND ... torn",
    recovery truncated file 1 and the log became (1, 2) + (4, 4)."""
    d = tmp_path / "node"
    with recover_node(d) as node:
        slog = node.create_server(ServerConfig(A, "s1", "c", "machines.kv", (A,)))
        for i in (1, 2, 3):
            put(node, [slog], i, i)
        first = node.wal.roll_over()
        put(node, [slog], 4, 4)
    assert first.name == "0000000000000001.wal"
    flip(first, first.stat().st_size - 1)
    before = digest(d)
    code, text, report = check_exit(d, capsys)
    assert code == 1 and "SOUND" not in text
    bad = [f for f in report["files"] if f["status"] == "corrupt"]
    assert [f["path"] for f in bad] == [str(first)]
    assert "not the newest" in bad[0]["message"] and "entries 3..3" in bad[0]["message"]
    s1 = report["servers"][0]
    assert s1["verdict"] == "corrupt" and s1["holes"] == [[3, 3]]
    with pytest.raises(LogCorruption) as err:
        recover_node(d)
    assert err.value.path == str(first) and "0000000000000001.wal" in str(err.value)
    assert digest(d) == before                    # not truncated, nothing deleted
    assert not segments_dir(d, "s1").exists()    # and no segment with a hole


def test_last_applied_hint_flip_is_only_a_warning(pristine, tmp_path, capsys):
    d = copy_of(pristine, tmp_path / "node")
    flip(server_dir(d, "s1") / "last_applied", 10)
    code, text, _report = check_exit(d, capsys)
    assert code == 0 and "WARNING" in text
    got, _ = recover_all(d)
    assert got["s1"] == list(range(5, 25))


# --------------------------------------------------------------- hypothesis
@pytest.fixture(scope="module")
def wal_layout(pristine):
    """Byte ranges of the WAL files: where each flip should land."""
    d, _ = pristine
    wals = [p for _n, p in list_numbered(wal_dir(d), ".wal")]
    newest = scan_wal_file(wals[-1])
    last_batch = newest.blocks[-1].batch
    last_blocks = [b for b in newest.blocks if b.batch == last_batch]
    return {"sizes": [p.stat().st_size for p in wals], "last_blocks": last_blocks}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(["closed", "newest"]), pos=st.floats(0, 1, exclude_max=True),
       mask=st.integers(1, 255))
def test_random_flip_in_a_wal_file_never_loses_in_silence(pristine, wal_layout, which, pos, mask):
    with tempfile.TemporaryDirectory() as tmp:
        d = copy_of(pristine, Path(tmp) / "node")
        wals = [p for _n, p in list_numbered(wal_dir(d), ".wal")]
        path = wals[0] if which == "closed" else wals[-1]
        offset = int(pos * path.stat().st_size)
        flip(path, offset, mask)
        before = digest(d)
        blocks = wal_layout["last_blocks"]
        if which == "closed" or offset < blocks[0].offset:
            expect = "corrupt"       # the header's reserved bytes too: they must be zero
        elif offset >= blocks[-1].offset:
            expect = "torn"          # the last block of the last batch: always a torn tail
        else:
            expect = "torn or corrupt"  # earlier in the last batch: see wal_format's rules
        try:
            got, warnings = recover_all(d)
        except LogCorruption as exc:
            # Detected: named, and nothing was changed.
            assert "corrupt" in expect, (offset, exc)
            assert exc.path == str(path)
            after = digest(d)
            rel = str(path.relative_to(d))
            assert after[rel] == before[rel]
            if which == "closed":
                assert after == before   # the first file: nothing was flushed before it
            return
        # A torn tail of the newest file: exactly the blocks from the flipped one
        # on are dropped (never acknowledged), with a warning; never a hole.
        assert "torn" in expect, (offset, got)
        hit = max(k for k, b in enumerate(blocks) if b.offset <= offset)
        dropped = {b.uid for b in blocks[hit:]}
        for uid in UIDS:
            assert got[uid] == list(range(5, 23 if uid in dropped else 25)), (offset, got)
        assert len(warnings) == 1 and "torn tail" in warnings[0]


def test_unreadable_header_inside_an_acknowledged_batch_is_corruption(pristine, tmp_path):
    """A flipped header byte of the *second* block of a batch that later batches
    follow: its batch number cannot be trusted, so it may belong to the earlier
    (acknowledged) batch; a later batch after it proves damage.  (Taking it for
    the start of a new batch made this a "torn tail" that dropped two
    acknowledged batches.)"""
    d = copy_of(pristine, tmp_path / "node")
    path = target(d, "wal_newest")
    blocks = scan_wal_file(path).blocks
    middle = [b for b in blocks if b.batch == blocks[-1].batch - 1]
    assert len(middle) == 2
    flip(path, middle[1].offset + 1)            # the flags byte of s2's block header
    with pytest.raises(LogCorruption) as err:
        recover_all(d)
    assert err.value.path == str(path) and "later batch follows" in str(err.value)
