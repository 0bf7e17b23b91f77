"""Operator tools behind ``ra-actors log check`` and ``ra-actors log dump``.

Rules:

* Read-only: nothing is repaired, truncated, moved or locked, so a check may
  run beside a live node (its current WAL file may then show an in-flight
  tail, and a file deleted while the check runs is skipped).
* ``check_data_dir`` checks the files *and* the log they add up to, over
  every WAL directory of the node (``wal_dirs``; a directory a server's
  record names is checked too, even if not given): each server's log is
  read from its own WAL only, as recovery reads it.  A server whose WAL
  directory holds another WAL or none (an unmounted volume) is *corrupt*,
  as is a damaged ``WAL_ID``; records of a server in another WAL than its
  own are *suspicious* (recovery does not read them).

  Files: every WAL, segment and snapshot file and every meta/config file,
  all checksums, all structure.  A torn tail of the **newest** WAL file is
  reported but is *sound* (recovery sets it aside and truncates it; it was
  never acknowledged).  In any other WAL file the same damage is *corrupt*:
  its batches were all synced and acknowledged.  A checksum failure with
  valid data after it, or any bad segment/snapshot/meta/config file, is
  *corrupt*.  The report names the file, the byte offset and, where known,
  the server and index range.  An unreadable ``last_applied`` hint is only
  a warning.

  Servers: per server, the index range recoverable from snapshot + segments
  + WAL (:mod:`.integrity`), holes (*corrupt*: an acknowledged entry is
  gone), entries overwritten with another term (information), a term
  decrease (entries a restart drops: *suspicious*), the meta's term against
  the last entry's term (a meta term below it is *suspicious*), a vote
  without a term (*suspicious*) and the ``last_applied`` hint against the
  recoverable range (a hint above it means applied entries are missing:
  *suspicious*).  Each server gets a verdict: sound, suspicious or corrupt.
* The data is sound (exit status 0) when no file and no server is corrupt;
  suspicious findings are printed but do not fail the check.
* ``dump_file`` prints a WAL or segment file's records one per line
  (server, index, term, size), like Ra's ``ra_dbg``; for a damaged WAL file
  it prints the readable records, then raises the LogCorruption.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import LogCorruption
import ra_actors.log.fileio as fileio
from .common import (iter_server_uids, list_numbered, read_checked_file, segments_dir, server_dir,
                     snapshots_dir, wal_dir)
from .config_store import MAGIC as CONFIG_MAGIC, VERSION as CONFIG_VERSION
from .integrity import Analysis, Source, analyse
from .meta import LAST_APPLIED_MAGIC, META_MAGIC, VERSION as META_VERSION, MetaStore
from .segment import MAGIC as SEGMENT_MAGIC, SEGMENT_SUFFIX, Segment
from .segment_writer import final_runs
from .snapshot import MAGIC as SNAPSHOT_MAGIC, decode_snapshot, snapshot_files
from .wal import WAL_SUFFIX
from .wal_dirs import assigned_wal_dir, read_assignment, read_wal_id, same_dir
from .wal_format import MAGIC as WAL_MAGIC, TORN_SUFFIX, WalScan, examine_wal_file

__all__ = ["FileReport", "ServerReport", "CheckReport", "check_data_dir", "dump_file",
           "format_report"]


@dataclass
class FileReport:
    path: str
    kind: str  # wal | segment | snapshot | meta | config | last_applied | aside
    status: str = "ok"  # ok | torn | corrupt | warning
    message: str = ""
    records: int = 0
    servers: dict = field(default_factory=dict)  # uid -> {"records": n, "first": i, "last": j}
    offset: int | None = None
    newest: bool | None = None  # WAL files: is it the newest (the only one that may be torn)


@dataclass
class ServerReport:
    """What one server's files add up to (see the module rules)."""

    uid: str
    verdict: str = "sound"  # sound | suspicious | corrupt
    first_index: int = 1
    last_index: int = 0  # last index reached by the files
    recoverable_last: int = 0  # last index a restart keeps
    last_term: int = 0
    snapshot: dict | None = None  # {"index", "term"}
    segments: list = field(default_factory=list)  # [[first, last, file]] effective ranges
    wal: list = field(default_factory=list)  # [[first, last, file]] effective ranges
    holes: list = field(default_factory=list)  # [[lo, hi]]
    overwrites: list = field(default_factory=list)  # [{"from", "to", "old_term", "new_term", ...}]
    meta: dict = field(default_factory=dict)  # current_term, voted_for, last_applied
    problems: list = field(default_factory=list)  # why corrupt
    warnings: list = field(default_factory=list)  # why suspicious
    wal_dir: str | None = None  # the WAL directory it writes to


@dataclass
class CheckReport:
    data_dir: str
    files: list = field(default_factory=list)
    servers: list = field(default_factory=list)
    wal_dirs: list = field(default_factory=list)  # [{"dir", "exists", "listed", "id", "problem"}]

    @property
    def corrupt(self) -> list:
        return [f for f in self.files if f.status == "corrupt"]

    @property
    def torn(self) -> list:
        return [f for f in self.files if f.status == "torn"]

    @property
    def corrupt_servers(self) -> list:
        return [s for s in self.servers if s.verdict == "corrupt"]

    @property
    def suspicious_servers(self) -> list:
        return [s for s in self.servers if s.verdict == "suspicious"]

    @property
    def sound(self) -> bool:
        return (not self.corrupt and not self.corrupt_servers
                and not any(w["problem"] for w in self.wal_dirs))

    def as_dict(self) -> dict:
        return {"data_dir": self.data_dir, "sound": self.sound, "wal_dirs": self.wal_dirs,
                "verdict": "sound" if self.sound else "corrupt",
                "files": [asdict(f) for f in self.files],
                "servers": [asdict(s) for s in self.servers],
                "totals": {"files": len(self.files), "corrupt": len(self.corrupt),
                           "torn_tails": len(self.torn),
                           "records": sum(f.records for f in self.files),
                           "servers": len(self.servers),
                           "servers_corrupt": len(self.corrupt_servers),
                           "servers_suspicious": len(self.suspicious_servers)}}


def _note(servers: dict, uid: str, index: int) -> None:
    s = servers.get(uid)
    if s is None:
        servers[uid] = {"records": 1, "first": index, "last": index}
    else:
        s["records"] += 1
        s["first"] = min(s["first"], index)
        s["last"] = max(s["last"], index)


# ------------------------------------------------------------------ files
def _check_wal(path: Path, newest: bool) -> tuple[FileReport, WalScan] | None:
    rep = FileReport(str(path), "wal", newest=newest)
    try:
        scan = examine_wal_file(path, tail_ok=newest)
    except FileNotFoundError:
        return None  # flushed to segments while we looked: they are read later
    for rec in scan.records():
        _note(rep.servers, rec.uid, rec.index)
    rep.records = scan.record_count
    if scan.damage is not None:
        rep.status, rep.message, rep.offset = "corrupt", str(scan.damage), scan.damage.offset
    elif scan.torn is not None:
        rep.status = "torn"
        rep.offset = scan.torn.offset
        rep.message = (f"torn tail at byte offset {scan.torn.offset}: {scan.torn.dropped_bytes} "
                       f"bytes ({scan.torn.reason}); recovery truncates it")
    return rep, scan


def _check_segment(path: Path, uid: str) -> tuple[FileReport, Source | None] | None:
    rep = FileReport(str(path), "segment")
    try:
        with Segment(path) as seg:
            rep.records = seg.count
            rep.servers[uid] = {"records": seg.count, "first": seg.first, "last": seg.last}
            source = Source(f"segment {path.name}", seg.first, seg.last, [r[1] for r in seg.rows])
            seg.verify()
    except FileNotFoundError:
        return None
    except LogCorruption as exc:
        rep.status, rep.message, rep.offset = "corrupt", str(exc), exc.offset
        # An index that verified still tells which entries the file holds.
        return rep, (source if rep.records else None)
    return rep, source


def _check_snapshot(path: Path, uid: str) -> FileReport | None:
    rep = FileReport(str(path), "snapshot")
    try:
        meta, _state = decode_snapshot(fileio.read_file(path), str(path))
        rep.message = f"index {meta.index} term {meta.term}, {os.path.getsize(path)} bytes"
        rep.servers[uid] = {"records": 0, "first": meta.index, "last": meta.index}
    except FileNotFoundError:
        return None
    except LogCorruption as exc:
        rep.status, rep.message, rep.offset = "corrupt", str(exc), exc.offset
    return rep


def _check_small(path: Path, kind: str, magic: bytes, version: int, hint: bool = False) -> FileReport:
    rep = FileReport(str(path), kind)
    try:
        read_checked_file(path, magic, version)
    except LogCorruption as exc:
        rep.status = "warning" if hint else "corrupt"
        rep.message = str(exc) + ("; it is only a hint: ignored at startup" if hint else "")
        rep.offset = exc.offset
    return rep


def _aside_files(directory: Path) -> list[FileReport]:
    out = []
    try:
        names = sorted(fileio.listdir(directory))
    except FileNotFoundError:
        return out
    for name in names:
        if TORN_SUFFIX in name or ".corrupt-" in name:
            out.append(FileReport(str(directory / name), "aside", message=(
                "bytes set aside by recovery (a torn tail) or by an operator; not part of the "
                "log: keep it for analysis or delete it")))
    return out


# ---------------------------------------------------------------- servers
def _server_report(uid: str, sdir: Path, files: list[FileReport], sources: list[Source],
                   snapshot: tuple | None, wal_damage: list[str]) -> ServerReport:
    rep = ServerReport(uid)
    for f in files:
        if f.status == "corrupt":
            rep.problems.append(f"{f.kind} file {f.path} is corrupt")
    rep.problems.extend(wal_damage)
    result: Analysis = analyse(sources, snapshot)
    rep.first_index, rep.last_index = result.first_index, result.last_index
    rep.recoverable_last, rep.last_term = result.recoverable_last, result.last_term
    if snapshot:
        rep.snapshot = {"index": snapshot[0], "term": snapshot[1]}
    for lo, hi, label in result.ranges:
        kind, _, name = label.partition(" ")
        (rep.wal if kind == "wal" else rep.segments).append([lo, hi, name])
    rep.holes = [[lo, hi] for lo, hi in result.holes]
    for lo, hi in result.holes:
        rep.problems.append(f"entries {lo}..{hi} are missing (a hole between "
                            f"{'the snapshot' if lo == result.base + 1 and result.base else lo - 1}"
                            f" and {hi + 1}): acknowledged entries are gone")
    rep.overwrites = [{"from": lo, "to": hi, "old_term": old, "new_term": new, "old": a, "new": b}
                      for lo, hi, old, new, a, b in result.overwrites]
    if result.term_break:
        i, t, prev = result.term_break
        rep.warnings.append(f"entry {i} has term {t}, below the term {prev} before it: a restart "
                            f"drops entries {i}..{result.last_index} (a log restarted after a "
                            "snapshot, or damage)")
    # Meta against the log.
    try:
        meta = MetaStore(sdir)
    except LogCorruption:
        meta = None  # the meta file's report says why
    if meta is not None:
        rep.meta = {"current_term": meta.current_term,
                    "voted_for": list(meta.voted_for) if meta.voted_for else None,
                    "last_applied": meta.last_applied}
        if meta.current_term < result.last_term:
            rep.warnings.append(f"meta term {meta.current_term} is below the last entry's term "
                                f"{result.last_term}: the term was not made durable before entries "
                                "of that term were written (recovery uses the higher term)")
        if meta.voted_for is not None and meta.current_term == 0:
            rep.warnings.append(f"a vote for {tuple(meta.voted_for)} is recorded without a term")
        if meta.last_applied > rep.recoverable_last:
            rep.warnings.append(f"last_applied hint {meta.last_applied} is above the last "
                                f"recoverable index {rep.recoverable_last}: entries "
                                f"{rep.recoverable_last + 1}..{meta.last_applied} were applied "
                                "but are not in the log")
    rep.verdict = "corrupt" if rep.problems else "suspicious" if rep.warnings else "sound"
    return rep


def _wal_dirs_to_check(data_dir: Path, wal_dirs) -> list[Path]:
    """The node's WAL directories (given, else ``<data_dir>/wal``) and every
    directory a server's record names (a WAL the node no longer lists is
    still where that server's entries are)."""
    out = [Path(d) for d in (wal_dirs or [wal_dir(data_dir)])]
    for uid in iter_server_uids(data_dir):
        try:
            wdir = assigned_wal_dir(data_dir, uid)
        except LogCorruption:
            continue   # the record's own report says why
        if not any(same_dir(wdir, d) for d in out):
            out.append(wdir)
    return out


def _scan_wal_dir(report: CheckReport, wdir: Path) -> tuple[dict, dict]:
    """Check every file of one WAL directory: ``({uid: [Source]}, {uid|None: [damage]})``."""
    wal_files = list_numbered(wdir, WAL_SUFFIX)
    wal_sources: dict[str, list[Source]] = {}
    wal_damage: dict[str | None, list[str]] = {}
    for k, (_n, path) in enumerate(wal_files):
        checked = _check_wal(path, newest=k == len(wal_files) - 1)
        if checked is None:
            continue
        rep, scan = checked
        report.files.append(rep)
        for uid, run in final_runs(scan).items():
            wal_sources.setdefault(uid, []).append(
                Source(f"wal {path.name}", run[0][0], run[-1][0], [r[1] for r in run]))
        if scan.damage is not None:
            uid = scan.damaged[0] if scan.damaged else None
            rng = (f"entries {scan.damaged[1]}..{scan.damaged[2]}"
                   if scan.damaged and scan.damaged[1] is not None else "some entries")
            wal_damage.setdefault(uid, []).append(
                f"{rng} in WAL file {path} are unreadable"
                + ("" if uid else " (the damaged block's writer is unknown)"))
    report.files.extend(_aside_files(wdir))
    return wal_sources, wal_damage


def _wal_dir_report(wdir: Path, listed: bool) -> dict:
    entry = {"dir": str(wdir), "exists": wdir.is_dir(), "listed": listed, "id": None, "problem": None}
    try:
        entry["id"] = read_wal_id(wdir)
    except LogCorruption as exc:
        entry["problem"] = str(exc)
    return entry


def _assignment(data_dir: Path, uid: str, dirs: list[Path], wal_ids: list) -> tuple[int | None, list, list]:
    """``(index of the server's WAL in dirs, problems, files)`` (see the module rules)."""
    problems, files = [], []
    rec_path = server_dir(data_dir, uid) / "wal"
    try:
        rec = read_assignment(data_dir, uid)
    except LogCorruption as exc:
        files.append(FileReport(str(rec_path), "wal_assignment", "corrupt", str(exc), offset=exc.offset))
        return None, [f"its WAL assignment {rec_path} is corrupt"], files
    if rec is not None:
        files.append(FileReport(str(rec_path), "wal_assignment", message=f"WAL {rec[0]}"))
    wdir = wal_dir(data_dir) if rec is None else rec[0]
    k = next(i for i, d in enumerate(dirs) if same_dir(d, wdir))
    if not dirs[k].is_dir():
        problems.append(f"its WAL directory {wdir} does not exist: is its volume mounted?")
    elif rec is not None and rec[1] is not None and wal_ids[k] != rec[1]:
        problems.append(f"its WAL directory {wdir} holds " + ("no WAL" if wal_ids[k] is None else
                        f"another WAL (id {wal_ids[k]})") + f", not the one it wrote to (id {rec[1]}): "
                        "is its volume mounted?")
    return k, problems, files


def check_data_dir(data_dir: str | os.PathLike, wal_dirs=None) -> CheckReport:
    """Verify everything under a node's data directory and in each of its WAL
    directories (``wal_dirs``, default ``[<data_dir>/wal]``; see the module
    rules)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"no such data directory: {data_dir}")
    report = CheckReport(str(data_dir))
    dirs = _wal_dirs_to_check(data_dir, wal_dirs)
    listed = len(wal_dirs) if wal_dirs else 1
    report.wal_dirs = [_wal_dir_report(d, k < listed) for k, d in enumerate(dirs)]
    wal_ids = [w["id"] for w in report.wal_dirs]
    # WAL files first, then segments (as ServerLog reads them): a WAL file
    # flushed while we look then shows up in the segments, never in neither.
    scans = [_scan_wal_dir(report, d) for d in dirs]
    for uid in iter_server_uids(data_dir):
        sdir = server_dir(data_dir, uid)
        mine: list[FileReport] = []
        for name, kind, magic, version, hint in (("config", "config", CONFIG_MAGIC, CONFIG_VERSION, False),
                                                 ("meta", "meta", META_MAGIC, META_VERSION, False),
                                                 ("last_applied", "last_applied", LAST_APPLIED_MAGIC,
                                                  META_VERSION, True)):
            if (sdir / name).exists():
                mine.append(_check_small(sdir / name, kind, magic, version, hint))
        k, wal_problems, rec_files = _assignment(data_dir, uid, dirs, wal_ids)
        mine.extend(rec_files)
        sources: list[Source] = []
        for _n, path in list_numbered(segments_dir(data_dir, uid), SEGMENT_SUFFIX):
            checked = _check_segment(path, uid)
            if checked is None:
                continue
            mine.append(checked[0])
            if checked[1] is not None:
                sources.append(checked[1])
        snapshot = None
        for index, term, path in snapshot_files(snapshots_dir(data_dir, uid)):
            rep = _check_snapshot(path, uid)
            if rep is not None:
                mine.append(rep)
                snapshot = (index, term)  # the newest by name is the one recovery uses
        report.files.extend(mine)
        damage = list(wal_problems)
        elsewhere = []
        for j, (wal_sources, wal_damage) in enumerate(scans):
            if j == k:
                sources.extend(wal_sources.get(uid, ()))
                damage += wal_damage.get(uid, []) + wal_damage.get(None, [])
            elif uid in wal_sources:
                elsewhere.append(str(dirs[j]))
        srep = _server_report(uid, sdir, mine, sources, snapshot, damage)
        srep.wal_dir = str(dirs[k]) if k is not None else None
        if elsewhere:
            srep.warnings.append(f"WAL directories {', '.join(elsewhere)} hold records of this server, "
                                 f"which writes to {srep.wal_dir}: recovery does not read them there")
            if srep.verdict == "sound":
                srep.verdict = "suspicious"
        report.servers.append(srep)
    return report


def _ranges_text(ranges: list) -> str:
    return ", ".join(f"{lo}..{hi}" for lo, hi, _name in ranges)


def _server_line(s: ServerReport, several: bool) -> list[str]:
    verdict = {"sound": "SOUND", "suspicious": "SUSPICIOUS", "corrupt": "CORRUPT"}[s.verdict]
    if s.last_index >= s.first_index:
        where = f"log {s.first_index}..{s.last_index} (last term {s.last_term})"
    else:
        where = f"log empty after index {s.first_index - 1}"
    parts = [where]
    if s.snapshot:
        parts.append(f"snapshot {s.snapshot['index']} term {s.snapshot['term']}")
    if s.segments:
        parts.append(f"segments {_ranges_text(s.segments)}")
    if s.wal:
        parts.append(f"WAL {_ranges_text(s.wal)}")
    if s.meta:
        vote = f", voted for {s.meta['voted_for'][0]}@{s.meta['voted_for'][1]}" if s.meta["voted_for"] else ""
        parts.append(f"meta term {s.meta['current_term']}{vote}, last_applied {s.meta['last_applied']}")
    if s.overwrites:
        n = sum(o["to"] - o["from"] + 1 for o in s.overwrites)
        parts.append(f"{n} entries overwritten with another term")
    if s.wal_dir and several:
        parts.append(f"writes to WAL {s.wal_dir}")
    lines = [f"  server {s.uid}: {verdict} - " + "; ".join(parts)]
    lines += [f"      problem: {p}" for p in s.problems]
    lines += [f"      warning: {w}" for w in s.warnings]
    return lines


def format_report(report: CheckReport) -> str:
    lines = [f"checking {report.data_dir}"]
    several = len(report.wal_dirs) > 1
    for k, w in enumerate(report.wal_dirs if several or any(w["problem"] for w in report.wal_dirs) else ()):
        state = ("MISSING" if not w["exists"] else "CORRUPT: " + w["problem"] if w["problem"]
                 else f"WAL {w['id']}" if w["id"] else "no WAL id yet")
        extra = "" if w["listed"] else " (not among the given WAL directories: a server's record names it)"
        n = sum(1 for s in report.servers if s.wal_dir == w["dir"])
        lines.append(f"  WAL directory {k}: {w['dir']}: {state}, {n} server{'s' if n != 1 else ''}{extra}")
    for f in report.files:
        status = {"ok": "ok", "torn": "TORN TAIL", "corrupt": "CORRUPT", "warning": "WARNING"}[f.status]
        head = f"  {f.kind:<12} {f.path}: {status}"
        if f.kind in ("wal", "segment"):
            head += f", {f.records} records"
        if f.message:
            head += f" - {f.message}"
        lines.append(head)
        for uid, s in sorted(f.servers.items()):
            if f.kind in ("wal", "segment"):
                lines.append(f"      server {uid}: {s['records']} records, index {s['first']}..{s['last']}")
    for s in report.servers:
        lines.extend(_server_line(s, several))
    totals = report.as_dict()["totals"]
    per_server: dict = {}
    for f in report.files:
        if f.kind in ("wal", "segment"):
            for uid, s in f.servers.items():
                per_server[uid] = per_server.get(uid, 0) + s["records"]
    lines.append(f"{totals['files']} files, {totals['records']} records "
                 f"({', '.join(f'{u}: {n}' for u, n in sorted(per_server.items())) or 'no servers'}), "
                 f"{totals['torn_tails']} torn tails, {totals['corrupt']} corrupt files")
    n = len(report.servers)
    bad, odd = len(report.corrupt_servers), len(report.suspicious_servers)
    lines.append(f"{n} server{'s' if n != 1 else ''}: {n - bad - odd} sound"
                 + (f", {odd} suspicious" if odd else "") + (f", {bad} with a damaged log" if bad else ""))
    if report.sound:
        lines.append("SOUND" + (" (torn tails are truncated by recovery; they were never "
                                "acknowledged)" if report.torn else "")
                     + (f"; suspicious: {', '.join(s.uid for s in report.suspicious_servers)} "
                        "(see the warnings above)" if odd else ""))
    else:
        lines.append("CORRUPT")
        for w in report.wal_dirs:
            if w["problem"]:
                lines.append(f"WAL directory {w['dir']}: {w['problem']}")
        for f in report.corrupt:
            lines.append(f.message)  # "corrupt: <what> (<file> at byte offset <n>)"
        for s in report.corrupt_servers:
            for p in s.problems:
                lines.append(f"server {s.uid}: {p}")
    return "\n".join(lines)


def dump_file(path: str | os.PathLike) -> Iterator[str]:
    """Yield one line per record of a WAL or segment file (header line first)."""
    path = Path(path)
    magic = _magic(path)
    if magic == WAL_MAGIC:
        siblings = list_numbered(path.parent, WAL_SUFFIX)
        newest = not siblings or siblings[-1][1].name <= path.name
        scan = examine_wal_file(path, tail_ok=newest)
        yield "# server index term size offset"
        for rec in scan.records():
            yield f"{rec.uid} {rec.index} {rec.term} {len(rec.payload)} {rec.offset}"
        if scan.torn is not None:
            yield (f"# torn tail at byte offset {scan.torn.offset}: {scan.torn.dropped_bytes} bytes "
                   f"({scan.torn.reason})")
        if scan.damage is not None:
            raise scan.damage
    elif magic == SEGMENT_MAGIC:
        uid = path.parent.parent.name if path.parent.name == "segments" else "?"
        with Segment(path) as seg:
            yield "# server index term size offset"
            for index, term, offset, length, _crc in seg.rows:
                yield f"{uid} {index} {term} {length} {offset}"
            seg.verify()
    elif magic == SNAPSHOT_MAGIC:
        meta, _ = decode_snapshot(fileio.read_file(path), str(path), with_state=False)
        yield f"# snapshot index {meta.index} term {meta.term} machine_version {meta.machine_version}"
        yield f"# cluster {meta.cluster!r}"
    else:
        raise LogCorruption(f"not a WAL, segment or snapshot file (magic {magic!r})", str(path), 0)


def _magic(path: Path) -> bytes:
    fd = fileio.open(path, os.O_RDONLY)
    try:
        return fileio.pread(fd, 4, 0)
    finally:
        fileio.close(fd)
