"""Crash tests with real processes: SIGKILL a writer at random moments, many times.

A child process recovers the node, then appends batches for two servers in a
loop (small WAL files, so rollovers and segment flushes happen all the time)
and prints every acknowledged (fsynced) last index.  The parent kills it with
SIGKILL at a random moment, recovers the node itself and checks that every
acknowledged entry is there and that each server's log is a clean prefix of
exactly what was written.  The next child continues from the recovered log.
"""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ra_actors.log.recovery import recover_node

UIDS = ("s1", "s2")

CHILD = r'''
import random, sys
from ra_actors.core.types import Entry, ServerConfig, ServerId
from ra_actors.log.recovery import recover_node
from ra_actors.log.server_log import ServerLog

data_dir, seed = sys.argv[1], int(sys.argv[2])

def term_for(i):
    return 1 + i // 300

def payload(uid, i):
    return (uid, i, "x" * (i % 97))

node = recover_node(data_dir, wal_max_size_bytes=16_384, segment_max_count=50)
logs = {}
for uid in ("s1", "s2"):
    if ServerLog.exists(data_dir, uid):
        logs[uid] = node.open_server(uid)
    else:
        sid = ServerId(uid, "n1")
        logs[uid] = node.create_server(ServerConfig(sid, uid, "c", "machines.kv", (sid,)))
rng = random.Random(seed)
print("ready", flush=True)
while True:
    for uid, slog in logs.items():
        first = slog.last_index + 1
        req = slog.append([Entry(i, term_for(i), payload(uid, i))
                           for i in range(first, first + rng.randint(1, 30))])
        node.wal.append_run(req.uid, req.first_index, req.terms, req.payloads,
                            truncate=req.truncate, overwrite=req.overwrite)
    _result, msgs = node.flush()  # one write + one fsync; segment flush on rollover
    for uid, slog in logs.items():
        print("ack", uid, slog.last_written[0], flush=True)
'''


def term_for(i: int) -> int:
    return 1 + i // 300


def payload(uid: str, i: int):
    return (uid, i, "x" * (i % 97))


def run_child_and_kill(data_dir: Path, seed: int, rng: random.Random) -> dict[str, int]:
    """Start a writer, SIGKILL it at a random moment; return its acknowledged indexes."""
    acked = {uid: 0 for uid in UIDS}
    ready = threading.Event()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(data_dir), str(seed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def reader():
            for line in proc.stdout:
                parts = line.split()
                if parts == ["ready"]:
                    ready.set()
                elif len(parts) == 3 and parts[0] == "ack":
                    acked[parts[1]] = max(acked[parts[1]], int(parts[2]))

        th = threading.Thread(target=reader, daemon=True)
        th.start()
        if not ready.wait(30):
            raise AssertionError(f"child did not start: {proc.stderr.read() if proc.poll() is not None else ''}")
        time.sleep(rng.uniform(0.0, 0.25))
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        th.join(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return acked


def verify(data_dir: Path, acked: dict[str, int]) -> dict[str, int]:
    """Recover like a node start; every acked entry present, logs a clean prefix."""
    lasts = {}
    with recover_node(data_dir, wal_max_size_bytes=16_384, segment_max_count=50) as node:
        for uid in UIDS:
            rec = node.open_server(uid).recovered()
            indexes = [e.index for e in rec.entries]
            assert indexes == list(range(1, len(indexes) + 1)), f"{uid}: not a prefix"
            assert len(indexes) >= acked[uid], f"{uid}: lost acked entries ({len(indexes)} < {acked[uid]})"
            for e in rec.entries:
                assert (e.term, e.command) == (term_for(e.index), payload(uid, e.index)), \
                    f"{uid}: entry {e.index} differs"
            lasts[uid] = len(indexes)
    return lasts


def test_sigkill_writer_many_times_never_loses_acked_entries(tmp_path):
    rng = random.Random(1234)
    data_dir = tmp_path / "node"
    deadline = time.monotonic() + 14.0
    kills = 0
    prev = {uid: 0 for uid in UIDS}
    total_acked = 0
    while kills < 40 and (kills < 12 or time.monotonic() < deadline):
        acked = run_child_and_kill(data_dir, rng.randrange(1 << 30), rng)
        kills += 1
        lasts = verify(data_dir, acked)
        for uid in UIDS:
            assert lasts[uid] >= prev[uid]  # recovery never shrinks what recovery saw before
            total_acked += max(0, acked[uid] - prev[uid])
        prev = lasts
    print(f"{kills} kills, {total_acked} acknowledged entries, final logs {prev}")
    assert kills >= 12
    assert total_acked > 100  # the children really wrote and acknowledged data
    # Files were rolled and flushed into segments along the way.
    assert any((data_dir / "servers" / "s1" / "segments").iterdir())
    assert not [p for p in data_dir.rglob("*.tmp")]
