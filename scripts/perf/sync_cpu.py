"""Synchronous commands, and the CPU each process spends on one: ``python scripts/perf/sync_cpu.py [PLACEMENT] [N]``.

Starts three fresh local nodes (placement ``shared`` by default) with one
cluster of the null machine, sends N (default 2,000) ``process_command``
calls one after another from one client, and prints the latency (p50,
mean) and the CPU each process used per command (user and system, from
psutil), so that the cost of the synchronous path can be compared between
commits, or with and without a change, whatever else the machine does.
Every node is stopped on exit (``RaBench``)."""
from __future__ import annotations

import argparse
import os
import sys
import time

import psutil

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from ra_actors.bench.ra_bench import RaBench  # noqa: E402


def cpu_by_process() -> dict:
    """``{pid: (user, system, command)}`` of this process and its descendants."""
    me = psutil.Process()
    out = {}
    for p in [me] + me.children(recursive=True):
        try:
            t = p.cpu_times()
            out[p.pid] = (t.user, t.system, "client" if p.pid == me.pid else " ".join(p.cmdline())[-60:])
        except psutil.Error:
            pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("placement", nargs="?", default="shared", choices=("shared", "process"))
    ap.add_argument("n", nargs="?", type=int, default=2000)
    args = ap.parse_args()
    n = args.n
    with RaBench(placement=args.placement) as b:
        b.start_cluster("null0", "null")
        b.sync_latency("null0", 200)                   # warm up
        before = cpu_by_process()
        t0 = time.perf_counter()
        r = b.sync_latency("null0", n)
        wall = time.perf_counter() - t0
        after = cpu_by_process()
    print(f"{args.placement}: p50 {r['p50_ms']:.2f} ms, mean {r['mean_ms']:.2f} ms, "
          f"wall {wall / n * 1000:.2f} ms per command")
    total = 0.0
    for pid, (user, system, cmd) in sorted(after.items()):
        u0, s0, _ = before.get(pid, (0.0, 0.0, ""))
        du, ds = (user - u0) / n * 1000, (system - s0) / n * 1000
        total += du + ds
        if du + ds > 0.01:
            print(f"{du + ds:7.3f} ms/cmd (user {du:.3f}, system {ds:.3f})  pid {pid}  {cmd}")
    print(f"total CPU {total:.3f} ms per command")


if __name__ == "__main__":
    main()
