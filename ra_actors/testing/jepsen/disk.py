"""Disk faults of a Jepsen run (``--nemesis disk``): a full disk and a flipped byte.

Rules:

* ``disk-full`` needs each node's data directory on a size-limited tmpfs of
  its own (``mount -t tmpfs -o size=...``, root only), mounted by the
  harness before the nodes start and unmounted once they are stopped;
  elsewhere the fault is skipped with the reason, never faked.  Filling
  writes one file, ``<data_dir>/FILL``, until the file system says
  ``ENOSPC``; healing deletes it.  Nothing else in a data directory is
  written by these helpers, except the one byte a flip changes.
* ``disk-corrupt`` flips one byte of a *closed* WAL file (any but the
  newest) or of a segment of a stopped member.  The newest WAL file is never
  touched: its last batch may legitimately be a torn tail.
* What a damaged member must do is checked by the nemesis, not here:
  refuse to start naming ``LogCorruption`` (or report its server in
  ``error`` with the reason), never serve; ``ra-actors log check`` exits 1.
  The repair is the operator procedure of ``docs/operations.rst``; the
  damaged directory is copied aside (``OUT/damaged``) before it is wiped.
"""
from __future__ import annotations

import errno
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

FILL_NAME = "FILL"
TMPFS_SIZE = 64 << 20          # per node: far more than a run writes, little RAM


def tmpfs_unavailable() -> Optional[str]:
    """Why size-limited tmpfs data directories cannot be had (None: they can)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "no mount/umount command"
    return None


def mount_tmpfs(path: str, size: int = TMPFS_SIZE) -> None:
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", path],
                   check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)


def umount(path: str) -> bool:
    """Unmount ``path`` (lazily if it is still busy); True if it was a mount."""
    if not os.path.ismount(path):
        return False
    done = subprocess.run(["umount", path], stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    if done.returncode != 0:
        subprocess.run(["umount", "-l", path], stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    return True


def fill(data_dir: str) -> int:
    """Write ``<data_dir>/FILL`` until the disk is full; the bytes written."""
    path = os.path.join(data_dir, FILL_NAME)
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for chunk in (1 << 20, 4096, 64):
            block = b"\0" * chunk
            while True:
                try:
                    n = os.write(fd, block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
                written += n
                if n < chunk:
                    break
    finally:
        os.close(fd)
    return written


def unfill(data_dir: str) -> bool:
    try:
        os.unlink(os.path.join(data_dir, FILL_NAME))
        return True
    except FileNotFoundError:
        return False


def damage_candidates(data_dir: str) -> dict[str, list[Path]]:
    """``{"wal_closed": [...], "segment": [...]}``: non-empty files a flip may hit."""
    root = Path(data_dir)
    wals = sorted(p for p in (root / "wal").glob("*.wal") if p.is_file())
    closed = [p for p in wals[:-1] if p.stat().st_size > 0]
    segments = sorted(p for p in root.glob("servers/*/segments/*.segment")
                      if p.is_file() and p.stat().st_size > 0)
    return {"wal_closed": closed, "segment": segments}


def flip_byte(path: Path, rng: random.Random) -> tuple[int, int, int]:
    """Invert one random byte of ``path`` in place (synced): ``(offset, before, after)``."""
    size = path.stat().st_size
    offset = rng.randrange(size)
    fd = os.open(path, os.O_RDWR)
    try:
        before = os.pread(fd, 1, offset)[0]
        after = before ^ 0xFF
        os.pwrite(fd, bytes([after]), offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    return offset, before, after


def log_check(data_dir: str, timeout: float = 60.0) -> tuple[int, str]:
    """``ra-actors log check DATA_DIR``: (exit status, output)."""
    done = subprocess.run([sys.executable, "-m", "ra_actors.cli", "log", "check", data_dir],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    return done.returncode, (done.stdout + done.stderr)


def set_aside(data_dir: str, dest: str) -> None:
    """Copy the damaged ``data_dir`` to ``dest`` and empty it (it may be a mount point)."""
    shutil.copytree(data_dir, dest, symlinks=True, dirs_exist_ok=True)
    for entry in os.scandir(data_dir):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
