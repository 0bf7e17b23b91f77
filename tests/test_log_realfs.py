"""Real file-system refusals, no injection: EACCES from ``chmod`` on real
directories, ENOSPC from a size-limited tmpfs and EROFS from a read-only one.

* EACCES: ``chmod`` does not stop root (CAP_DAC_OVERRIDE).  As root the
  scenario runs in a child process whose capability bounding set lacks
  CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so the permission bits apply; if
  that cannot be arranged the test is skipped and says why.
* ENOSPC/EROFS: the test mounts its own tmpfs (root only; skipped, saying
  why, where mount is not permitted) and unmounts it in a ``finally``, even
  when the test fails.

Each time: StorageError naming the path and errno, no WAL file lost or
rewritten, and once the disk is fixed recovery gives back every
acknowledged entry without a hole.
"""
from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from ra_actors.cli import main
from ra_actors.core.types import Entry, ServerConfig, ServerId
from ra_actors.errors import StorageError
from ra_actors.log.common import list_numbered, wal_dir
from ra_actors.log.recovery import recover_node

A = ServerId("a", "n1")

EACCES_SCENARIO = r'''
import errno, os, stat, sys
from pathlib import Path
from ra_actors.cli import main
from ra_actors.core.types import Entry, ServerConfig, ServerId
from ra_actors.errors import StorageError
from ra_actors.log.common import list_numbered, wal_dir
from ra_actors.log.meta import MetaStore
from ra_actors.log.recovery import recover_node

d = Path(sys.argv[1])
A = ServerId("a", "n1")

def put(node, slog, first, last):
    req = slog.append([Entry(i, 1, ("v", i)) for i in range(first, last + 1)])
    node.wal.append_run(req.uid, req.first_index, req.terms, req.payloads, truncate=req.truncate, overwrite=req.overwrite)
    node.flush()

def wal_bytes():
    return {p.name: p.read_bytes() for _n, p in list_numbered(wal_dir(d), ".wal")}

def expect_eacces(fn, where):
    try:
        fn()
    except StorageError as exc:
        assert exc.errno == errno.EACCES, exc
        assert str(exc.path).startswith(str(where)), (exc.path, where)
        assert "EACCES" in str(exc), exc
        print("refused:", exc)
        return exc
    raise AssertionError(f"no EACCES under {where}")

with recover_node(d) as node:
    slog = node.create_server(ServerConfig(A, "s1", "c", "machines.kv", (A,)))
    slog.persist_meta(1, A)
    put(node, slog, 1, 5)
    node.wal.roll_over()
    put(node, slog, 6, 9)
sdir = d / "servers" / "s1"
before = wal_bytes()
assert len(before) == 2

# 1. The server directory is read-only: the segment directory cannot be made.
os.chmod(sdir, 0o500)
try:
    expect_eacces(lambda: recover_node(d), sdir)
finally:
    os.chmod(sdir, 0o700)
assert wal_bytes() == before

# 2. The WAL directory is read-only: segments are written, the WAL file cannot go.
os.chmod(wal_dir(d), 0o500)
try:
    expect_eacces(lambda: recover_node(d), wal_dir(d))
finally:
    os.chmod(wal_dir(d), 0o700)
assert wal_bytes() == before

# 3. The lock file may not be opened for writing.
os.chmod(d / "LOCK", 0o400)
try:
    expect_eacces(lambda: recover_node(d), d / "LOCK")
finally:
    os.chmod(d / "LOCK", 0o644)

# 4. Fixed: everything acknowledged comes back, no hole.
with recover_node(d) as node:
    slog = node.open_server("s1")
    assert [e.index for e in slog.recovered().entries] == list(range(1, 10))
    # 5. A vote cannot be made durable in a read-only server directory.
    os.chmod(sdir, 0o500)
    try:
        expect_eacces(lambda: slog.persist_meta(2, A), sdir)
    finally:
        os.chmod(sdir, 0o700)
    assert (slog.current_term, MetaStore(sdir).current_term) == (1, 1)

# 6. log check on an unreadable segment: one-line error, exit 1.
seg = next((sdir / "segments").glob("*.segment"))
os.chmod(seg, 0o000)
try:
    assert main(["log", "check", str(d)]) == 1
finally:
    os.chmod(seg, 0o644)
print("OK")
'''


def _drop_dac_caps():
    """preexec_fn: lose CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH for the exec'd child."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_eacces_from_chmod_on_real_directories(tmp_path):
    root = os.geteuid() == 0
    preexec = _drop_dac_caps if root else None
    if root:
        probe = tmp_path / "probe"
        probe.mkdir(mode=0o500)
        try:
            r = subprocess.run([sys.executable, "-c", f"open({str(probe / 'x')!r}, 'w')"],
                               preexec_fn=preexec, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            pytest.skip(f"running as root: cannot drop CAP_DAC_OVERRIDE in a child ({exc}), "
                        "so chmod would not stop it")
        finally:
            probe.chmod(0o700)
        if "PermissionError" not in r.stderr:
            pytest.skip("running as root and chmod stays ineffective even without "
                        f"CAP_DAC_OVERRIDE: {r.stderr.strip()[-200:]}")
    d = tmp_path / "node"
    proc = subprocess.run([sys.executable, "-c", EACCES_SCENARIO, str(d)], preexec_fn=preexec,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith("OK"), proc.stdout + proc.stderr
    assert proc.stdout.count("refused:") == 4


# ----------------------------------------------------------------- tmpfs
@contextmanager
def tmpfs(size: str):
    """A tmpfs of ``size`` mounted on a fresh directory; unmounted and removed
    on exit, whatever happens in between."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; this test runs only as root")
    mnt = tempfile.mkdtemp(prefix="ra_tmpfs_")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", mnt],
                       capture_output=True, text=True)
    if r.returncode != 0:
        os.rmdir(mnt)
        pytest.skip(f"mount -t tmpfs is not permitted here: {r.stderr.strip()}")
    try:
        yield Path(mnt)
    finally:
        for _ in range(50):
            if subprocess.run(["umount", mnt], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)   # a descriptor still closing
        else:
            subprocess.run(["umount", "-l", mnt], capture_output=True)
        os.rmdir(mnt)


def remount(mnt: Path, options: str) -> None:
    r = subprocess.run(["mount", "-o", f"remount,{options}", str(mnt)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def put(node, slog, first, last, pad=0):
    req = slog.append([Entry(i, 1, ("v", i, "x" * pad)) for i in range(first, last + 1)])
    node.wal.append_run(req.uid, req.first_index, req.terms, req.payloads, truncate=req.truncate, overwrite=req.overwrite)
    node.flush()


def recovered(d: Path) -> list[int]:
    with recover_node(d) as node:
        entries = node.open_server("s1").recovered().entries
    for e in entries:
        assert e.command[:2] == ("v", e.index)
    return [e.index for e in entries]


def test_enospc_on_a_full_tmpfs(capsys):
    with tmpfs("384k") as mnt:
        d = mnt / "node"
        acked = 0
        with recover_node(d) as node:
            slog = node.create_server(ServerConfig(A, "s1", "c", "machines.kv", (A,)))
            with pytest.raises(StorageError) as err:
                for first in range(1, 100_000, 4):
                    put(node, slog, first, first + 3, pad=3000)
                    acked = slog.last_written[0]
            exc = err.value
            assert exc.errno == errno.ENOSPC and exc.path == str(node.wal.path), exc
            assert slog.last_written[0] == acked > 0       # the failed batch: not reported
            with pytest.raises(StorageError):
                node.wal.flush()                           # dead
        wal_files = [p for _n, p in list_numbered(wal_dir(d), ".wal")]
        # Still full: recovery cannot write segments, so it stops without losing anything.
        with pytest.raises(StorageError) as err:
            recover_node(d)
        assert err.value.errno == errno.ENOSPC
        assert [p for _n, p in list_numbered(wal_dir(d), ".wal")] == wal_files
        remount(mnt, "size=8m")
        got = recovered(d)
        assert got == list(range(1, len(got) + 1)) and len(got) >= acked
        assert main(["log", "check", str(d)]) == 0
        capsys.readouterr()


def test_erofs_on_a_read_only_tmpfs(capsys):
    with tmpfs("2m") as mnt:
        d = mnt / "node"
        with recover_node(d) as node:
            slog = node.create_server(ServerConfig(A, "s1", "c", "machines.kv", (A,)))
            put(node, slog, 1, 5)
        remount(mnt, "ro")
        with pytest.raises(StorageError) as err:
            recover_node(d)
        assert err.value.errno == errno.EROFS and err.value.path == str(d / "LOCK")
        assert main(["log", "check", str(d)]) == 0        # the check only reads
        assert "SOUND" in capsys.readouterr().out
        remount(mnt, "rw")
        assert recovered(d) == [1, 2, 3, 4, 5]
