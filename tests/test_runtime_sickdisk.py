"""A sick disk under real nodes: ENOSPC from a full tmpfs, EROFS from a
read-only remount, EACCES from chmod, EIO and a failed fsync through the
I/O seam.  Every time: clients get a clear StorageError (never a Timeout
for a disk that is full), the node stops cleanly in an ``error`` state that
``overview``, ``key_metrics`` and ``node status`` show with the reason,
nothing spins, and once the disk is well again the node resumes and every
acknowledged write reads back.

Mounting needs root: without it these tests skip and say so.  As root,
chmod does not stop the node (CAP_DAC_OVERRIDE), so the EACCES scenario
runs in a child process whose capability bounding set lacks
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH.  Nothing here times anything: the
CPU bound over an idle window is generous and only catches spinning.
"""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

import ra_actors as ra
from ra_actors import errors
from ra_actors.log.fileio import ENV_FAULTS
from ra_actors.nodes import node_status

NAMES = ["n1", "n2", "n3"]
VALUE = "x" * 1000
READ = "machines.kv:read"


# ---------------------------------------------------------------- helpers
@contextmanager
def tmpfs(size: str, at: Path | None = None):
    """A tmpfs of ``size`` mounted on ``at`` (or a fresh directory);
    unmounted on exit, whatever happens in between."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; this test runs only as root")
    mnt = Path(at) if at is not None else Path(tempfile.mkdtemp(prefix="ra_sick_"))
    mnt.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        for _ in range(100):
            if subprocess.run(["umount", str(mnt)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)   # a node's descriptor still closing
        else:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        if at is None:
            os.rmdir(mnt)


def remount(mnt: Path, options: str) -> None:
    for _ in range(50):   # a write in progress makes a read-only remount busy
        r = subprocess.run(["mount", "-o", f"remount,{options}", str(mnt)], capture_output=True, text=True)
        if r.returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"remount,{options} {mnt}: {r.stderr}")


def storage(client, node: str) -> dict:
    return client.overview(node, timeout=10)["storage"]


def wait_for(what: str, check, timeout: float, every: float = 0.25, show=None):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f": {show()}" if show else ""))
        time.sleep(every)


def write_until_ok(client, sid, key: str, timeout: float) -> None:
    """One write, asked again until the cluster takes it (the disk comes back)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.process_command(sid, ("write", key, VALUE), timeout=5)
            return
        except errors.RaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def cpu_seconds(pids) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def episode_over(client, node: str) -> bool:
    """Whether ``node``'s disk episode is over, so that its fault count is
    final: its storage is in ``error`` (nothing new is tried) and no reopen
    asked for before that is still under way.  A fault counts when the
    supervisor learns of it (``storage_health``'s rules), so a node still
    ``failing``, or with a service ``starting``, may count one more later,
    however long the test has waited."""
    ov = client.overview(node, timeout=10)
    return ov["storage"]["state"] == "error" and "starting" not in ov["services"].values()


def episodes(client) -> dict:
    """Every node's storage state, fault count and services (for a failure message)."""
    out = {}
    for node in NAMES:
        ov = client.overview(node, timeout=10)
        out[node] = (ov["storage"]["state"], ov["storage"]["faults"], ov["services"], ov["storage"]["reason"])
    return out


def assert_reads_back(client, sid, keys, local: bool = False) -> None:
    for key in keys:
        if local:
            (_idx, value), _ = client.local_query(sid, READ, key, timeout=10)
        else:
            value, _ = client.consistent_query(sid, READ, key, timeout=10)
        assert value == VALUE, f"acknowledged write {key} reads back as {value!r:.40} on {sid}"


def assert_shows_the_error(client, nodes, node: str, reason: str) -> None:
    """``overview``, ``key_metrics`` and ``node status`` show the error and its reason."""
    ov = client.overview(node, timeout=10)
    assert ov["storage"]["state"] == "error" and reason in ov["storage"]["reason"], ov["storage"]
    assert ov["servers"]["kv"]["status"] == "error", ov["servers"]
    km = client.key_metrics(ra.ServerId("kv", node), timeout=10)
    assert km["state"] == "error" and reason in km["error"], km
    st = node_status(nodes.data_dir(node), ask=True)
    assert st["running"] and st["state"] == "error" and reason in st["error"], st


# ------------------------------------------------------------------ ENOSPC
@pytest.mark.parametrize("placement", ["process", "shared"])
def test_a_full_disk_stops_the_nodes_cleanly_and_they_come_back(placement):
    with tmpfs("3m") as mnt:
        with ra.local_nodes(NAMES, data_root=str(mnt), placement=placement,
                            settings={"storage_probe_interval": 1.0}) as nodes:
            client = nodes.client()
            sids = [ra.ServerId("kv", n) for n in NAMES]
            client.start_cluster("kv", "machines.kv", sids)
            acked, failures = [], []
            for i in range(20_000):
                try:
                    client.process_command(sids[0], ("write", f"k{i}", VALUE), timeout=10)
                    acked.append(f"k{i}")
                except errors.RaError as exc:
                    failures.append(exc)
                    if len(failures) == 3:
                        break
            assert acked and failures, "the 3 MB tmpfs never filled"
            # a clear error, never a silent client
            assert all(isinstance(f, errors.StorageError) for f in failures), [repr(f) for f in failures]
            assert "ENOSPC" in str(failures[-1])

            # every node shares the full disk: each that wrote to it since it filled stops
            # cleanly in error, with the reason (one that has not written since, e.g. a
            # leader whose followers failed first, cannot know and stays untouched);
            # the client's failures mean a majority could not write
            def settled(n: str) -> bool:
                st = storage(client, n)
                return episode_over(client, n) or (st["state"] == "ok" and st["faults"] == 0)
            wait_for("every node's disk episode over", lambda: all(settled(n) for n in NAMES), 60,
                     show=lambda: episodes(client))
            sick = [n for n in NAMES if episode_over(client, n)]
            assert len(sick) >= 2, episodes(client)
            for node in sick:
                assert_shows_the_error(client, nodes, node, "ENOSPC")
            cli = subprocess.run([sys.executable, "-m", "ra_actors.cli", "node", "status", "--data-dir",
                                  nodes.data_dir(sick[0])], capture_output=True, text=True, timeout=60)
            assert cli.returncode == 1 and "storage: error" in cli.stdout and "ENOSPC" in cli.stdout, cli

            # idle: nothing restarts, no process comes or goes, nothing spins, nothing
            # more is counted (every node's episode is over)
            pids = set(nodes.all_pids())
            faults = {n: storage(client, n)["faults"] for n in NAMES}
            before = cpu_seconds(pids)
            time.sleep(8.0)
            used = cpu_seconds(pids) - before
            assert set(nodes.all_pids()) == pids
            assert {n: storage(client, n)["faults"] for n in NAMES} == faults
            assert all(f <= 20 for f in faults.values()), faults          # bounded restarts
            assert used < 4.0, f"{len(pids)} node processes used {used:.2f} s of CPU in 8 s idle"

            # space returns: the nodes resume by themselves
            remount(mnt, "size=64m")
            write_until_ok(client, sids[0], "after", timeout=90)
            for node in NAMES:
                wait_for(f"{node}'s storage ok", lambda node=node: storage(client, node)["state"] == "ok", 60)
            assert_reads_back(client, sids[0], acked + ["after"])


# ------------------------------------------------- a sick follower's disk
def sick_follower(root: Path, make_sick, make_well, reason: str, **node_options) -> dict:
    """Three nodes; n3's disk turns sick (``make_sick(root)``) while clients
    write: the others carry on, n3 stops in error naming ``reason``; then
    ``make_well(root)``: n3 comes back and holds every acknowledged write.
    Returns what happened (for a child process to report)."""
    out: dict = {}
    with ra.local_nodes(NAMES, data_root=str(root), settings={"storage_probe_interval": 1.0},
                        log_options={"wal_max_size_bytes": 65536}, **node_options) as nodes:
        client = nodes.client()
        sids = [ra.ServerId("kv", n) for n in NAMES]
        client.start_cluster("kv", "machines.kv", sids)
        acked = []
        for i in range(50):
            write_until_ok(client, sids[0], f"k{i}", timeout=30)
            acked.append(f"k{i}")
        make_sick(root)
        i = 50
        deadline = time.monotonic() + 90
        while storage(client, "n3")["state"] != "error":
            assert time.monotonic() < deadline, f"n3 never went to error: {storage(client, 'n3')}"
            write_until_ok(client, sids[0], f"k{i}", timeout=30)   # the majority carries on
            acked.append(f"k{i}")
            i += 1
        assert_shows_the_error(client, nodes, "n3", reason)
        out["error"] = storage(client, "n3")["reason"]
        for j in range(i, i + 20):   # n3 halted: still no loss of availability
            write_until_ok(client, sids[0], f"k{j}", timeout=30)
            acked.append(f"k{j}")
        make_well(root)
        wait_for("n3's storage ok", lambda: storage(client, "n3")["state"] == "ok", 90)
        leader = client.members(sids[0], timeout=10)[1]
        commit = client.key_metrics(leader, timeout=10)["commit_index"]
        wait_for("n3 caught up", lambda: client.key_metrics(sids[2], timeout=10)["last_applied"] >= commit, 60)
        assert_reads_back(client, sids[2], acked, local=True)
        out["acked"] = len(acked)
        out["faults"] = storage(client, "n3")["faults"]
    return out


def test_a_read_only_remount_halts_the_node_and_it_comes_back(tmp_path):
    servers = tmp_path / "n3" / "servers"     # n3's segments, snapshots, meta
    with tmpfs("64m", at=servers):
        result = sick_follower(tmp_path, lambda root: remount(servers, "ro"),
                               lambda root: remount(servers, "rw"), "EROFS")
    assert "EROFS" in result["error"] and result["acked"] >= 70


def test_a_failed_fsync_stops_the_node_and_nothing_unsynced_is_acknowledged(tmp_path, monkeypatch):
    """n3's WAL: fdatasync fails with EIO 8 times from its 40th sync on (the
    I/O seam in n3's processes, :data:`ra_actors.log.fileio.ENV_FAULTS`).  The
    WAL gives the file up each time and is reopened from what recovery can
    prove; n3 goes to error, and once the faults are spent it comes back and
    holds every write the cluster acknowledged."""
    fault = {"op": "fdatasync", "errno": 5, "path": f"{tmp_path}/n3/wal/*.wal", "after": 40, "times": 8}
    monkeypatch.setenv(ENV_FAULTS, json.dumps([fault]))
    result = sick_follower(tmp_path, lambda root: None, lambda root: None, "EIO")
    assert "fdatasync" in result["error"] and result["faults"] >= 8
    log = (tmp_path / "n3" / "node.log").read_text()
    assert "nothing of the failed batch was acknowledged" in log


# ------------------------------------------------------------------ EACCES
def _drop_dac_caps():
    """preexec_fn: lose CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH for the exec'd child."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _chmod_tree(directory: Path, mode: int) -> None:
    for d, _subdirs, _files in os.walk(directory):
        os.chmod(d, mode)


def test_a_disk_that_refuses_access_halts_the_node_and_it_comes_back(tmp_path):
    preexec = None
    if os.geteuid() == 0:
        probe = tmp_path / "probe"
        probe.mkdir(mode=0o500)
        try:
            r = subprocess.run([sys.executable, "-c", f"open({str(probe / 'x')!r}, 'w')"],
                               preexec_fn=_drop_dac_caps, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            pytest.skip(f"running as root: cannot drop CAP_DAC_OVERRIDE in a child ({exc}), so chmod "
                        "would not stop the node")
        finally:
            probe.chmod(0o700)
        if "PermissionError" not in r.stderr:
            pytest.skip(f"running as root and chmod stays ineffective without CAP_DAC_OVERRIDE: "
                        f"{r.stderr.strip()[-200:]}")
        preexec = _drop_dac_caps
    root = tmp_path / "nodes"
    root.mkdir()
    proc = subprocess.run([sys.executable, __file__, "eacces", str(root)], preexec_fn=preexec,
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "EACCES" in result["error"] and result["acked"] >= 70


def _eacces_scenario(root: Path) -> dict:
    servers = root / "n3" / "servers"
    return sick_follower(root, lambda _root: _chmod_tree(servers, 0o500),
                         lambda _root: _chmod_tree(servers, 0o700), "EACCES")


if __name__ == "__main__":
    if sys.argv[1:2] == ["eacces"]:
        print(json.dumps(_eacces_scenario(Path(sys.argv[2]))))
