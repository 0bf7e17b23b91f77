"""Operator tools behind ``ra-actors log check`` and ``ra-actors log dump``.

Rules:

* Read-only: nothing is repaired, truncated or locked, so a check may run
  beside a live node (its current WAL file may then show an in-flight tail).
* ``check_data_dir`` verifies every WAL, segment and snapshot file and every
  meta/config file: all checksums, all structure.  A torn WAL tail is
  reported but is *sound* (recovery truncates it; it was never
  acknowledged).  A checksum failure with valid data after it, or any bad
  segment/snapshot/meta/config file, is *corrupt*: the report names the file
  and byte offset.  An unreadable ``last_applied`` hint is only a warning.
* ``dump_file`` prints a WAL or segment file's records one per line
  (server, index, term, size), like Ra's ``ra_dbg``.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import LogCorruption
from .common import iter_server_uids, list_numbered, read_checked_file, segments_dir, server_dir, \
    snapshots_dir, wal_dir
from .config_store import MAGIC as CONFIG_MAGIC, VERSION as CONFIG_VERSION
from .meta import LAST_APPLIED_MAGIC, META_MAGIC, VERSION as META_VERSION
from .segment import MAGIC as SEGMENT_MAGIC, SEGMENT_SUFFIX, Segment
from .snapshot import MAGIC as SNAPSHOT_MAGIC, decode_snapshot
from .wal import WAL_SUFFIX
from .wal_format import MAGIC as WAL_MAGIC, scan_wal_file

__all__ = ["FileReport", "CheckReport", "check_data_dir", "dump_file", "format_report"]


@dataclass
class FileReport:
    path: str
    kind: str  # wal | segment | snapshot | meta | config | last_applied
    status: str = "ok"  # ok | torn | corrupt | warning
    message: str = ""
    records: int = 0
    servers: dict = field(default_factory=dict)  # uid -> {"records": n, "first": i, "last": j}
    offset: int | None = None


@dataclass
class CheckReport:
    data_dir: str
    files: list = field(default_factory=list)

    @property
    def corrupt(self) -> list:
        return [f for f in self.files if f.status == "corrupt"]

    @property
    def torn(self) -> list:
        return [f for f in self.files if f.status == "torn"]

    @property
    def sound(self) -> bool:
        return not self.corrupt

    def as_dict(self) -> dict:
        return {"data_dir": self.data_dir, "sound": self.sound,
                "files": [asdict(f) for f in self.files],
                "totals": {"files": len(self.files), "corrupt": len(self.corrupt),
                           "torn_tails": len(self.torn),
                           "records": sum(f.records for f in self.files)}}


def _note(servers: dict, uid: str, index: int) -> None:
    s = servers.get(uid)
    if s is None:
        servers[uid] = {"records": 1, "first": index, "last": index}
    else:
        s["records"] += 1
        s["first"] = min(s["first"], index)
        s["last"] = max(s["last"], index)


def _check_wal(path: Path) -> FileReport:
    rep = FileReport(str(path), "wal")
    try:
        scan = scan_wal_file(path)
    except LogCorruption as exc:
        rep.status, rep.message, rep.offset = "corrupt", str(exc), exc.offset
        return rep
    for rec in scan.records():
        _note(rep.servers, rec.uid, rec.index)
    rep.records = scan.record_count
    if scan.torn is not None:
        rep.status = "torn"
        rep.offset = scan.torn.offset
        rep.message = (f"torn tail at byte offset {scan.torn.offset}: {scan.torn.dropped_bytes} "
                       f"bytes ({scan.torn.reason}); recovery truncates it")
    return rep


def _check_segment(path: Path, uid: str) -> FileReport:
    rep = FileReport(str(path), "segment")
    try:
        with Segment(path) as seg:
            seg.verify()
            rep.records = seg.count
            rep.servers[uid] = {"records": seg.count, "first": seg.first, "last": seg.last}
    except LogCorruption as exc:
        rep.status, rep.message, rep.offset = "corrupt", str(exc), exc.offset
    return rep


def _check_snapshot(path: Path, uid: str) -> FileReport:
    rep = FileReport(str(path), "snapshot")
    try:
        meta, _state = decode_snapshot(path.read_bytes(), str(path))
        rep.message = f"index {meta.index} term {meta.term}, {path.stat().st_size} bytes"
        rep.servers[uid] = {"records": 0, "first": meta.index, "last": meta.index}
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


def check_data_dir(data_dir: str | os.PathLike) -> CheckReport:
    """Verify everything under a node's data directory (see the module rules)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"no such data directory: {data_dir}")
    report = CheckReport(str(data_dir))
    for _n, path in list_numbered(wal_dir(data_dir), WAL_SUFFIX):
        report.files.append(_check_wal(path))
    for uid in iter_server_uids(data_dir):
        sdir = server_dir(data_dir, uid)
        for name, kind, magic, version, hint in (("config", "config", CONFIG_MAGIC, CONFIG_VERSION, False),
                                                 ("meta", "meta", META_MAGIC, META_VERSION, False),
                                                 ("last_applied", "last_applied", LAST_APPLIED_MAGIC,
                                                  META_VERSION, True)):
            if (sdir / name).exists():
                report.files.append(_check_small(sdir / name, kind, magic, version, hint))
        for _n, path in list_numbered(segments_dir(data_dir, uid), SEGMENT_SUFFIX):
            report.files.append(_check_segment(path, uid))
        sn = snapshots_dir(data_dir, uid)
        if sn.is_dir():
            for name in sorted(os.listdir(sn)):
                if name.endswith(".snapshot") and not name.startswith("."):
                    report.files.append(_check_snapshot(sn / name, uid))
    return report


def format_report(report: CheckReport) -> str:
    lines = [f"checking {report.data_dir}"]
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
    totals = report.as_dict()["totals"]
    per_server: dict = {}
    for f in report.files:
        if f.kind in ("wal", "segment"):
            for uid, s in f.servers.items():
                per_server[uid] = per_server.get(uid, 0) + s["records"]
    lines.append(f"{totals['files']} files, {totals['records']} records "
                 f"({', '.join(f'{u}: {n}' for u, n in sorted(per_server.items())) or 'no servers'}), "
                 f"{totals['torn_tails']} torn tails, {totals['corrupt']} corrupt files")
    if report.sound:
        lines.append("SOUND" + (" (torn tails are truncated by recovery; they were never "
                                "acknowledged)" if report.torn else ""))
    else:
        lines.append("CORRUPT")
        for f in report.corrupt:
            lines.append(f.message)  # "corrupt: <what> (<file> at byte offset <n>)"
    return "\n".join(lines)


def dump_file(path: str | os.PathLike) -> Iterator[str]:
    """Yield one line per record of a WAL or segment file (header line first)."""
    path = Path(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == WAL_MAGIC:
        scan = scan_wal_file(path)
        yield "# server index term size offset"
        for rec in scan.records():
            yield f"{rec.uid} {rec.index} {rec.term} {len(rec.payload)} {rec.offset}"
        if scan.torn is not None:
            yield (f"# torn tail at byte offset {scan.torn.offset}: {scan.torn.dropped_bytes} bytes "
                   f"({scan.torn.reason})")
    elif magic == SEGMENT_MAGIC:
        uid = path.parent.parent.name if path.parent.name == "segments" else "?"
        with Segment(path) as seg:
            yield "# server index term size offset"
            for index, term, offset, length, _crc in seg.rows:
                yield f"{uid} {index} {term} {length} {offset}"
            seg.verify()
    elif magic == SNAPSHOT_MAGIC:
        meta, _ = decode_snapshot(path.read_bytes(), str(path), with_state=False)
        yield f"# snapshot index {meta.index} term {meta.term} machine_version {meta.machine_version}"
        yield f"# cluster {meta.cluster!r}"
    else:
        raise LogCorruption(f"not a WAL, segment or snapshot file (magic {magic!r})", str(path), 0)
