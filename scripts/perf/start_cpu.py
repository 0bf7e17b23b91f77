"""CPU of every process while clusters start: ``python scripts/perf/start_cpu.py C THREADS [PLACEMENT] [--single]``.

Starts C clusters of the null machine on three fresh local nodes (placement
``shared`` by default) from THREADS client threads: with
``client.start_clusters`` (the benchmark's way), or with ``--single`` one
``start_cluster`` per cluster.  Prints the wall time, the clusters per
second, and the CPU each process used during the start (per cluster), so
that the cost of starting can be compared between commits whatever else
the machine does.  Every node is stopped on exit (``RaBench``)."""
from __future__ import annotations

import argparse
import os
import sys
import time

import psutil

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from ra_actors.bench.ra_bench import RaBench  # noqa: E402


def cpu_by_process() -> dict[int, tuple[float, str]]:
    me = psutil.Process()
    out = {}
    for p in [me] + me.children(recursive=True):
        try:
            t = p.cpu_times()
            out[p.pid] = (t.user + t.system, " ".join(p.cmdline())[:90])
        except psutil.Error:
            pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clusters", type=int)
    ap.add_argument("threads", type=int)
    ap.add_argument("placement", nargs="?", default="shared", choices=("shared", "process"))
    ap.add_argument("--single", action="store_true", help="one start_cluster per cluster")
    ap.add_argument("--data-root", help="keep the nodes' directories (and logs) under this directory")
    args = ap.parse_args()
    with RaBench(placement=args.placement, data_root=args.data_root) as b:
        b.start_cluster("warm", "null")
        before = cpu_by_process()
        names = [f"c{i}" for i in range(args.clusters)]
        t0 = time.monotonic()
        if args.single:
            b.parallel(names, lambda c, n: b.start_cluster(n, "null", client=c, find_leader=False),
                       workers=args.threads)
        else:
            b.start_clusters(names, "null", starters=args.threads, every=10**9)
        wall = time.monotonic() - t0
        after = cpu_by_process()
    c = args.clusters
    print(f"C={c} threads={args.threads} {args.placement}{' single' if args.single else ''}: "
          f"{wall:.2f} s, {c / wall:.1f} clusters/s")
    total = 0.0
    rows = []
    for pid, (cpu, cmd) in after.items():
        used = cpu - before.get(pid, (0.0, ""))[0]
        total += used
        if used > 0.05:
            rows.append((used, pid, cmd))
    for used, pid, cmd in sorted(rows, reverse=True):
        print(f"{used:8.2f} s  {1000 * used / c:6.2f} ms/cluster  pid {pid}  {cmd}")
    print(f"total {total:.2f} s CPU, {1000 * total / c:.2f} ms per cluster")


if __name__ == "__main__":
    main()
