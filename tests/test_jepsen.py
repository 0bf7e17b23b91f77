"""The Jepsen-style harness (scripts/jepsen.py): its parts, a short real run,
and proof that it catches a deliberately broken system.

The two end-to-end tests start real nodes and take about a minute each.
Partitions need root, ``ip`` and ``iptables`` (a private network namespace
per run); without them the broken-mode test is skipped and the short run
checks only kill faults.
"""
from __future__ import annotations

import errno
import json
import os
import random
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from ra_actors.testing.history import HistoryRecorder, read_history
from ra_actors.testing.jepsen import partition as part
from ra_actors.testing.jepsen import report
from ra_actors.testing.jepsen.counter import check_counter
from ra_actors.testing.jepsen.clients import all_keys, current_generation, key_name
from ra_actors.testing.jepsen.cluster import JepsenCluster, install_shim, node_host
from ra_actors.testing.jepsen import disk
from ra_actors.testing.jepsen.nemesis import DISK, FAULTS, parse_nemesis

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "jepsen.py")
NETNS = part.netns_unavailable() is None


# ------------------------------------------------------------------ parts
def test_parse_nemesis():
    assert parse_nemesis("kill,partition") == ["kill", "partition"]
    assert parse_nemesis("combined") == list(FAULTS)
    assert parse_nemesis("kill, kill,none") == ["kill"]
    assert parse_nemesis("partition-leader") == ["partition-leader"]
    assert parse_nemesis("pause-leader") == ["pause-leader"]
    assert "pause-leader" not in parse_nemesis("combined")
    assert parse_nemesis("disk") == list(DISK) == ["disk-full", "disk-corrupt"]
    assert parse_nemesis("disk-corrupt,kill") == ["disk-corrupt", "kill"]
    assert not set(DISK) & set(parse_nemesis("combined"))
    with pytest.raises(ValueError):
        parse_nemesis("kill,flood")


def test_partition_grudges():
    nodes = [f"n{i}" for i in range(1, 6)]
    rng = random.Random(1)
    a, b = part.halves(nodes, rng)
    assert sorted(a + b) == nodes and len(a) == 2
    cuts = part.components_to_cuts([a, b])
    assert len(cuts) == 6 and all(len(c) == 2 for c in cuts)
    assert part.components_to_cuts(part.isolate("n3", nodes)) == {frozenset(("n3", n)) for n in nodes if n != "n3"}
    for seed in range(20):
        ring = part.majorities_ring(nodes, random.Random(seed))
        hears = part.describe_cuts(ring, nodes)
        # everyone sees a majority (itself and two others), nobody the same one
        assert all(len(v) == 2 for v in hears.values())
        assert len({frozenset(v + [k]) for k, v in hears.items()}) == 5


def test_key_rotation():
    t0 = 10**12
    assert key_name(3, 7, 0) == "k3"
    assert key_name(3, 7, 30) == "k3@7"
    assert current_generation(t0 + int(65e9), t0, 30) == 2
    assert all_keys(2, t0, t0 + int(65e9), 30) == ["k0@0", "k1@0", "k0@1", "k1@1", "k0@2", "k1@2"]
    assert all_keys(2, t0, t0 + int(65e9), 0) == ["k0", "k1"]


def _history(tmp_path, steps):
    """Build a history from (process, f, key, value, outcome[, read value])."""
    clock = iter(range(1, 10**6))
    rec = HistoryRecorder(tmp_path / "h.jsonl", clock=lambda: next(clock))
    for step in steps:
        proc, f, key, value, outcome = step[:5]
        op = rec.invoke(proc, f, key, value)
        if outcome == "ok" and f == "read":
            rec.complete(op, "ok", step[5])
        else:
            rec.complete(op, outcome)
    rec.close()
    return read_history(tmp_path / "h.jsonl")


def test_lost_write_detection(tmp_path):
    final = 9
    good = _history(tmp_path, [(0, "write", "a", 1, "ok"), (1, "write", "a", 2, "ok"),
                               (0, "write", "a", 3, "info"), (final, "read", "a", None, "ok", 3)])
    assert report.lost_writes(good, final)["lost"] == []
    lost = _history(tmp_path, [(0, "write", "a", 1, "ok"), (1, "write", "a", 2, "ok"),
                               (final, "read", "a", None, "ok", 1)])
    out = report.lost_writes(lost, final)
    assert len(out["lost"]) == 1 and out["lost"][0]["lost"] == 2
    gone = _history(tmp_path, [(0, "cas", "a", [None, 5], "ok"), (final, "read", "a", None, "ok", None)])
    assert len(report.lost_writes(gone, final)["lost"]) == 1
    unread = _history(tmp_path, [(0, "write", "b", 1, "ok"), (final, "read", "b", None, "fail")])
    assert report.lost_writes(unread, final)["unread_keys"] == ["b"]


def test_merge_orders_by_time_and_keeps_process_order(tmp_path):
    files = []
    for proc, times in ((0, [5, 9]), (1, [1, 7])):
        clock = iter(times)
        path = tmp_path / f"p{proc}.jsonl"
        rec = HistoryRecorder(path, clock=lambda: next(clock))
        rec.complete(rec.invoke(proc, "write", "k", proc), "ok")
        rec.close()
        files.append(str(path))
    with open(files[1], "a") as torn:
        torn.write('{"process": 1, "type": "inv')        # a client killed mid-line
    merged = report.merge_histories(files, str(tmp_path / "history.jsonl"))
    assert [e["time"] for e in merged] == [1, 5, 7, 9]
    assert read_history(tmp_path / "history.jsonl") == merged


def test_fault_windows():
    s = 10**9
    events = []
    for i, t in enumerate([1, 2, 3, 9, 10]):     # acknowledged writes complete at t+0.1
        events.append({"process": i, "type": "invoke", "f": "write", "key": "k", "value": i, "time": t * s})
        events.append({"process": i, "type": "ok", "f": "write", "key": "k", "value": i,
                       "time": t * s + s // 10})
    events.sort(key=lambda e: e["time"])
    nemesis = [{"event": "start", "id": 1, "fault": "pause", "time": 4 * s},
               {"event": "end", "id": 1, "fault": "pause", "time": 8 * s}]
    (w,) = report.fault_windows(events, nemesis, 0, 12 * s)
    assert w["fault"] == "pause" and w["duration_s"] == 4.0
    assert w["max_gap_s"] == 6.0          # from the ack at 3.1 to the one at 9.1
    assert w["recovery_s"] == 1.1         # first write invoked after 8 s completes at 9.1


def test_node_shim_binds_the_node_address(tmp_path):
    """Outgoing loopback connections of a node carry its own address."""
    shim = install_shim(str(tmp_path))
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    code = textwrap.dedent(f"""
        import socket
        s = socket.socket(); s.connect(("127.0.0.1", {port})); print(s.getsockname()[0])
    """)
    env = dict(os.environ, PYTHONPATH=shim, RA_JEPSEN_BIND_SOURCE="1",
               THESPIAN_BASE_IPADDR=node_host(1))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    server.close()
    assert out.stdout.strip() == "127.0.0.3", out.stderr
    env.pop("RA_JEPSEN_BIND_SOURCE")
    server = socket.socket()
    server.bind(("127.0.0.1", port))
    server.listen()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    server.close()
    assert out.stdout.strip() == "127.0.0.1", out.stderr


def test_usage_errors(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "precious.txt").write_text("not a jepsen run")
    for bad in (["--nemesis", "flood"], ["--unsafe", "no_such_bug"], ["--node-env", "X"],
                ["--out", str(busy)], ["--wal-dirs", "0"], ["--wal-dirs", "2", "--nemesis", "kill,disk"]):
        proc = subprocess.run([sys.executable, SCRIPT, "--out", str(tmp_path / "o"), *bad],
                              capture_output=True, text=True, timeout=60, cwd=REPO)
        assert proc.returncode == 2, (bad, proc.stderr)
    assert (busy / "precious.txt").exists()


def test_with_two_wal_dirs_each_node_gets_a_second_volume_and_kill_wal_finds_either_wal(tmp_path):
    """``--wal-dirs 2``: node n gets its data directory's WAL and
    ``OUT/wal1/n``; the WAL process kill-wal picks is one holding either
    WAL's lock (two stand-in processes here, as the two WAL actors of a
    node in placement ``process``), never another process of the node."""
    cluster = JepsenCluster(2, str(tmp_path), shim_dir=str(tmp_path), wal_dirs=2)
    assert cluster.wal_dirs("n1") == [str(tmp_path / "nodes" / "n1" / "wal"), str(tmp_path / "wal1" / "n1")]
    assert JepsenCluster(2, str(tmp_path), shim_dir=str(tmp_path)).wal_dirs("n1") is None
    with pytest.raises(ValueError, match="WAL directories"):
        JepsenCluster(2, str(tmp_path), shim_dir=str(tmp_path), wal_dirs=0)
    locks = [tmp_path / "nodes" / "n1" / "LOCK", tmp_path / "wal1" / "n1" / "LOCK"]
    procs = []
    try:
        for i, lock in enumerate(locks):
            lock.parent.mkdir(parents=True)
            ready = tmp_path / f"ready{i}"
            code = (f"import time; f = open({str(lock)!r}, 'a'); open({str(ready)!r}, 'w').close(); "
                    "time.sleep(60)")
            procs.append(subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            deadline = time.monotonic() + 20
            while not ready.exists():
                assert time.monotonic() < deadline and procs[-1].poll() is None, "the lock holder did not start"
                time.sleep(0.05)
        bystander = os.getpid()     # a process of the "node" that holds no WAL lock
        cluster.pids = lambda name: [bystander] + [p.pid for p in procs] if name == "n1" else [bystander]
        picked = {cluster.wal_pid("n1", random.Random(seed)) for seed in range(30)}
        assert picked == {p.pid for p in procs}
        assert cluster.wal_pid("n2") is None
        config = {"nodes": 2, "clients": 1, "workload": "bank", "time": 5.0, "nemesis": "kill-wal", "seed": 1}
        assert "2 WALs per node" in report.render({"config": {**config, "wal_dirs": 2}, "passed": True})
        assert "WALs per node" not in report.render({"config": config, "passed": True})
    finally:
        for p in procs:
            p.kill()
            p.wait(10)


def _counter_history(ops):
    """``ops``: (process, f, outcome, reply) in invoke order, each completed
    before the next is invoked unless its outcome is None (never completed)."""
    rec = HistoryRecorder(clock=iter(range(10**6)).__next__)
    for process, f, outcome, reply in ops:
        op = rec.invoke(process, f, None, 1 if f == "add" else None)
        if outcome is not None:
            rec.complete(op, outcome, reply)
    return rec.events()


def test_the_counter_check_accepts_acknowledged_adds_plus_some_uncertain_ones():
    events = _counter_history([(0, "add", "ok", 1), (1, "add", "info", 1), (2, "add", None, None),
                               (0, "read", "ok", 2), (0, "add", "ok", 3), (3, "add", "fail", 1)])
    for final in (3, 4):            # (the second ok add was answered 3: the counter reached 3)
        verdict = check_counter(events, final)
        assert verdict["verdict"] == "valid", verdict
        assert (verdict["acknowledged"], verdict["uncertain"], verdict["failed"]) == (2, 2, 1)
    assert check_counter(events, None)["verdict"] == "unknown"


@pytest.mark.parametrize("ops, final, problem", [
    ([(0, "add", "ok", 1), (1, "add", "info", 1)], 3, "applied twice"),           # one add applied twice
    ([(0, "add", "ok", 1), (1, "add", "fail", 1)], 2, "applied twice"),           # a refused add applied
    ([(0, "add", "ok", 1), (1, "add", "ok", 2)], 1, "lost"),
    ([(0, "add", "ok", 1), (1, "add", "ok", 1)], 2, "both answered 1"),
    ([(0, "add", "ok", 3), (1, "add", "info", 1)], 2, "above the final counter"),
    ([(0, "add", "ok", 1), (0, "read", "ok", 0)], 1, "read 0"),                   # misses a completed add
    ([(0, "add", "ok", 1), (0, "read", "ok", 2), (1, "add", "info", 1)], 2, "read 2"),  # sees an add not yet invoked
])
def test_the_counter_check_finds_adds_lost_or_applied_twice(ops, final, problem):
    verdict = check_counter(_counter_history(ops), final)
    assert verdict["verdict"] == "invalid" and problem in verdict["explanation"] + " ".join(verdict["problems"])


def test_the_report_of_a_counter_run_names_the_workload_not_keys():
    config = {"nodes": 5, "clients": 10, "keys": 5, "key_period": 30.0, "time": 45.0, "nemesis": "pause", "seed": 1}
    kv = report.render({"config": config, "passed": True}).splitlines()[1]
    counter = report.render({"config": {**config, "workload": "counter"}, "passed": True}).splitlines()[1]
    assert "5 keys (period 30.0s)" in kv and "workload counter" not in kv
    assert "workload counter" in counter and "keys" not in counter


# ------------------------------------------------------------------ real runs
def _run(tmp_path, *args, timeout=420):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, SCRIPT, "--json", "--out", str(out), *args],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, cwd=str(tmp_path))
    summary_path = out / "summary.json"
    assert summary_path.exists(), proc.stderr[-3000:]
    with open(summary_path) as f:
        summary = json.load(f)
    return proc, summary, out


def _faults(out):
    with open(out / "nemesis.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.slow
def test_short_run_is_linearizable(tmp_path):
    proc, summary, out = _run(tmp_path, "--short", "--nemesis", "kill,partition", "--seed", "11")
    assert proc.returncode == 0, (summary.get("failure"), summary.get("verdict"), proc.stderr[-3000:])
    assert summary["passed"] and summary["verdict"]["verdict"] == "linearizable"
    assert summary["durability"]["lost"] == [] and summary["durability"]["acknowledged_writes"] > 20
    assert summary["final_reads"]["read"] == summary["final_reads"]["keys"] > 0
    assert summary["processes"]["left"] == 0
    history = read_history(out / "history.jsonl")
    assert len(history) > 500
    started = {e["fault"] for e in _faults(out) if e["event"] == "start"}
    assert "kill" in started
    if NETNS:
        assert summary["partition_backend"].startswith("iptables")
        assert "partition" in started
        assert summary["processes"]["netns_deleted"] is True
        assert summary["processes"]["left_in_netns"] == []
    else:
        assert summary["partition_backend"].startswith("unavailable")


@pytest.mark.slow
@pytest.mark.skipif(not NETNS, reason=f"partitions need a network namespace: {part.netns_unavailable()}")
def test_broken_mode_is_caught(tmp_path):
    """Leaders that answer consistent queries from local state (the core's
    deliberate bug ``stale_reads``), isolated from their cluster while
    clients keep reading from them and writing through the majority: the
    checker must find the stale reads.

    THESPIAN_MAX_PENDING_TRANSMITS is raised for the nodes because, with
    Thespian's default of 20 transmits in flight per actor, an isolated
    leader stops answering clients within about a second (its sends to the
    unreachable peers block everything else), which hides the bug.
    """
    proc, summary, out = _run(tmp_path, "--short", "--time", "40", "--nemesis", "partition-leader",
                              "--unsafe", "stale_reads", "--seed", "3",
                              "--node-env", "THESPIAN_MAX_PENDING_TRANSMITS=100000")
    assert summary["verdict"]["verdict"] == "not linearizable", (summary["verdict"], proc.stderr[-3000:])
    assert proc.returncode == 1
    assert not summary["passed"]
    assert any(e["event"] == "start" and e["fault"] == "partition" for e in _faults(out))
    assert summary["processes"]["left"] == 0


@pytest.mark.slow
def test_short_counter_run_applies_every_add_once(tmp_path):
    """Clients that send each add until answered, and every message of it
    twice, through kill, pause and (with a network namespace) partition
    faults: the counter holds every acknowledged add once, and no more
    than the uncertain ones on top."""
    proc, summary, out = _run(tmp_path, "--workload", "counter", "--short", "--duplicate-sends", "--seed", "5")
    assert proc.returncode == 0, (summary.get("failure"), summary.get("verdict"), proc.stderr[-3000:])
    verdict = summary["verdict"]
    assert summary["passed"] and verdict["verdict"] == "valid"
    assert verdict["acknowledged"] > 100 and verdict["reads"] > 10
    assert verdict["acknowledged"] <= verdict["final"] <= verdict["acknowledged"] + verdict["uncertain"]
    started = {e["fault"] for e in _faults(out) if e["event"] == "start"}
    assert {"kill", "pause"} <= started and ("partition" in started or not NETNS)
    assert summary["processes"]["left"] == 0


@pytest.mark.slow
def test_short_bank_run_keeps_the_books(tmp_path):
    """Transfers as SQL transactions on machines.sqlite through kill, pause
    and (with a network namespace) partition faults: every read is a
    consistent cut, every acknowledged transfer is in the final table once."""
    proc, summary, out = _run(tmp_path, "--workload", "bank", "--short", "--seed", "7")
    assert proc.returncode == 0, (summary.get("failure"), summary.get("verdict"), proc.stderr[-3000:])
    verdict = summary["verdict"]
    assert summary["passed"] and verdict["verdict"] == "valid", verdict
    assert verdict["acknowledged"] > 50 and verdict["reads"] > 10 and verdict["applied"] >= verdict["acknowledged"]
    started = {e["fault"] for e in _faults(out) if e["event"] == "start"}
    assert {"kill", "pause"} <= started and ("partition" in started or not NETNS)
    assert summary["processes"]["left"] == 0


def _run_ignoring_sessions(tmp_path, workload):
    """A 10 s run of ``workload`` whose clients send every command twice,
    on nodes with the core's deliberate bug ``ignore_sessions``."""
    return _run(tmp_path, "--workload", workload, "--short", "--time", "10", "--nodes", "3", "--clients", "4",
                "--nemesis", "none", "--duplicate-sends", "--unsafe", "ignore_sessions", "--seed", "3")


@pytest.mark.slow
def test_a_cluster_that_ignores_sessions_is_caught(tmp_path):
    """The core's deliberate bug ``ignore_sessions`` applies both copies of
    a command a client sends twice (as a redelivering transport may): the
    counter ends above the acknowledged plus uncertain adds, and the
    checker says so."""
    proc, summary, _out = _run_ignoring_sessions(tmp_path, "counter")
    assert summary["verdict"]["verdict"] == "invalid", (summary["verdict"], proc.stderr[-3000:])
    assert "applied twice" in " ".join(summary["verdict"]["problems"])
    assert proc.returncode == 1 and not summary["passed"]


@pytest.mark.slow
def test_a_bank_that_ignores_sessions_is_caught(tmp_path):
    """The same deliberate bug under the bank workload: a transfer whose
    command arrives twice is applied twice (its table has no unique key on
    the transfer's id, so the copy is not refused), and the checker names
    it."""
    proc, summary, _out = _run_ignoring_sessions(tmp_path, "bank")
    assert summary["verdict"]["verdict"] == "invalid", (summary["verdict"], proc.stderr[-3000:])
    assert "more than once" in " ".join(summary["verdict"]["problems"])
    assert proc.returncode == 1 and not summary["passed"]


# ------------------------------------------------------------------ disk nemesis
def test_disk_corrupt_damages_a_closed_wal_file_or_a_segment_never_the_newest_wal(tmp_path):
    d = tmp_path / "n1"
    (d / "wal").mkdir(parents=True)
    for n in (1, 2, 3):
        (d / "wal" / f"{n:016d}.wal").write_bytes(b"w" * 100)
    (d / "wal" / f"{4:016d}.wal").write_bytes(b"")       # empty: nothing to flip
    segs = d / "servers" / "uid1" / "segments"
    segs.mkdir(parents=True)
    (segs / f"{1:016d}.segment").write_bytes(bytes(range(200)))
    found = disk.damage_candidates(str(d))
    assert [p.name for p in found["wal_closed"]] == [f"{n:016d}.wal" for n in (1, 2, 3)]
    assert [p.name for p in found["segment"]] == [f"{1:016d}.segment"]
    # the newest WAL file alone is never a candidate
    for n in (1, 2, 3):
        (d / "wal" / f"{n:016d}.wal").unlink()
    (d / "wal" / f"{4:016d}.wal").write_bytes(b"w" * 100)
    assert disk.damage_candidates(str(d))["wal_closed"] == []
    seg = segs / f"{1:016d}.segment"
    offset, before, after = disk.flip_byte(seg, random.Random(5))
    data = seg.read_bytes()
    assert after == before ^ 0xFF and data[offset] == after
    assert [i for i in range(200) if data[i] != i] == [offset]


def test_a_damaged_directory_is_set_aside_then_emptied(tmp_path):
    d = tmp_path / "n1"
    (d / "wal").mkdir(parents=True)
    (d / "wal" / "x.wal").write_bytes(b"abc")
    (d / "LOCK").write_bytes(b"")
    disk.set_aside(str(d), str(tmp_path / "damaged" / "n1-3"))
    assert list(d.iterdir()) == []
    assert (tmp_path / "damaged" / "n1-3" / "wal" / "x.wal").read_bytes() == b"abc"


@pytest.mark.skipif(disk.tmpfs_unavailable() is not None, reason=f"{disk.tmpfs_unavailable()}")
def test_fill_writes_until_enospc_and_unfill_frees_it(tmp_path):
    mnt = tmp_path / "mnt"
    disk.mount_tmpfs(str(mnt), size=1 << 20)
    try:
        (mnt / "data").write_bytes(b"d" * 10_000)
        written = disk.fill(str(mnt))
        assert written > 900_000
        with pytest.raises(OSError) as err:
            with open(mnt / "more", "wb") as f:
                f.write(b"x" * 4096)
                f.flush()
        assert err.value.errno == errno.ENOSPC
        assert disk.unfill(str(mnt)) and not disk.unfill(str(mnt))
        (mnt / "more").write_bytes(b"x" * 100_000)         # room again
        assert (mnt / "data").read_bytes() == b"d" * 10_000
    finally:
        assert disk.umount(str(mnt))


def test_disk_summary_fails_a_damaged_member_that_did_not_report():
    events = [
        {"event": "start", "fault": "disk-corrupt", "id": 1, "nodes": ["n2"], "kind": "segment",
         "file": "servers/u/segments/0000000000000001.segment", "offset": 10, "size": 99},
        {"event": "end", "fault": "disk-corrupt", "id": 1, "nodes": ["n2"], "log_check_exit": 1,
         "refused_start": True, "reason": "LogCorruption: ...", "reported": True},
        {"event": "start", "fault": "disk-corrupt", "id": 2, "nodes": ["n3"], "kind": "wal_closed",
         "file": "wal/0000000000000002.wal", "offset": 6, "size": 500},
        {"event": "end", "fault": "disk-corrupt", "id": 2, "nodes": ["n3"], "log_check_exit": 0,
         "refused_start": False, "seen": {"server": "follower"}, "reported": False},
        {"event": "start", "fault": "disk-full", "id": 3, "nodes": ["n4"], "bytes": 5},
        {"event": "end", "fault": "disk-full", "id": 3, "nodes": ["n4"],
         "during": {"storage": "error", "server": "error"}, "storage_ok_after_s": 2.5},
    ]
    got = report.disk_summary(events)
    assert got["corrupt_unreported"] == 1
    assert [(c["node"], c["reported"]) for c in got["corrupt"]] == [("n2", True), ("n3", False)]
    assert got["full"] == [{"node": "n4", "bytes": 5, "during": {"storage": "error", "server": "error"},
                            "storage_ok_after_s": 2.5}]
    text = report.render({"disk": got})
    assert "n3:wal/0000000000000002.wal at 6/500: started, log check exit 0, DID NOT REPORT" in text


@pytest.mark.slow
def test_disk_nemesis_run(tmp_path):
    """Followers' disks filled and freed, bytes flipped in their closed WAL
    files and segments: linearizable, nothing acknowledged lost, every
    damaged member named its corruption and was repaired from its peers."""
    proc, summary, out = _run(tmp_path, "--short", "--time", "40", "--nemesis", "disk", "--seed", "7")
    assert proc.returncode == 0, (summary.get("failure"), summary.get("disk"), proc.stderr[-3000:])
    assert summary["passed"] and summary["verdict"]["verdict"] == "linearizable"
    assert summary["durability"]["lost"] == [] and summary["durability"]["acknowledged_writes"] > 20
    dsk = summary["disk"]
    assert dsk["corrupt"] and dsk["corrupt_unreported"] == 0
    for c in dsk["corrupt"]:
        assert c["reported"] and c["log_check_exit"] == 1
        assert (out / "damaged").is_dir()
    if disk.tmpfs_unavailable() is None:
        assert dsk["full"]
        # the full disk was felt (the worst storage state seen while it was full) ...
        assert any(f["during"]["storage"] in ("failing", "error") for f in dsk["full"]), dsk["full"]
        # ... and the node came back by itself once the space was freed
        assert all(f["storage_ok_after_s"] is not None for f in dsk["full"]), dsk["full"]
    else:
        assert "disk-full" in summary["skipped_faults"]
    # the repaired members are members again, caught up
    assert summary["recovery"]["converged"]
    assert summary["processes"]["left"] == 0
