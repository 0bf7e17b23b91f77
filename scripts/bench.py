#!/usr/bin/env python
"""ra_actors benchmark, with PySyncObj measured in the same run.

    python scripts/bench.py [--quick] [--json OUT.json]      (also: ra-actors bench ...)

What it measures (see ``ra_actors/bench/ra_bench.py`` and
``ra_actors/bench/pysyncobj_bench.py`` for the exact rules):

1. ra_actors on three local nodes, WAL ``fdatasync`` on, 16-byte commands:
   pipelined throughput with W = 1, 64, 1024 commands in flight, from one
   client and from 8 clients (each client its own process), to the null
   machine (counts commands) and to ``machines.kv``; synchronous latency of
   one client (p50/p99/max); a durability check (every acknowledged command
   is applied on every member).
2. PySyncObj, same shape: default configuration and
   ``appendEntriesUseBatch=False``: async throughput (W = 1024) and sync latency.
3. Scale: C clusters of 3 servers on 3 fresh nodes for each C of ``--clusters``:
   time to start them all, memory of every node process (RSS and USS), CPU
   and Thespian messages while idle, aggregate throughput with every cluster
   busy, durability check.

Speed is reported, never asserted; the exit status is 1 only when a
durability or consistency check fails (or a phase could not run).
``--quick`` finishes in under three minutes on the 2-core development VM.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ra_actors.bench.ra_bench import RaBench  # noqa: E402
from ra_actors.bench.stats import format_table  # noqa: E402

FULL = {"duration": 5.0, "windows": [1, 64, 1024], "client_counts": [1, 8], "kv_windows": [1, 64, 1024],
        "sync": 2000, "clusters": [10, 100, 300], "idle_s": 30.0, "busy_s": 8.0, "busy_window": 16,
        "pysyncobj_commands": 20000, "pysyncobj_sync": 500, "pysyncobj_repeats": 1}
QUICK = {"duration": 1.5, "windows": [1, 64, 1024], "client_counts": [1, 8], "kv_windows": [1024],
         "sync": 300, "clusters": [10], "idle_s": 5.0, "busy_s": 3.0, "busy_window": 16,
         "pysyncobj_commands": 2000, "pysyncobj_sync": 20, "pysyncobj_repeats": 1}
TINY = {"duration": 0.5, "windows": [1, 64], "client_counts": [1, 2], "kv_windows": [64],
        "sync": 20, "clusters": [2], "idle_s": 1.0, "busy_s": 0.5, "busy_window": 8,
        "pysyncobj_commands": 50, "pysyncobj_sync": 3, "pysyncobj_repeats": 1}


def progress(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ phases
def _tune(b: RaBench, plan: dict) -> None:
    # Thespian costs per message, not per entry: let a client flush carry a
    # whole window and an AppendEntries carry up to 1024 entries (Client and
    # ServerConfig defaults: 256 and 128).  Measured: node CPU per command
    # 0.29 -> 0.19 ms at W=1024.
    b.pipeline_batch = plan["pipeline_batch"]
    b.server_config = {"max_append_entries_batch": plan["max_append_entries_batch"]}


def run_ra(plan: dict) -> dict:
    out: dict = {"runs": [], "errors": []}
    with RaBench(progress=progress) as b:
        _tune(b, plan)
        out["nodes_start_s"] = b.node_start_s
        progress("ra_actors: starting clusters null0 (null machine) and kv0 (machines.kv)")
        b.start_cluster("null0", "null")
        b.start_cluster("kv0", "kv")
        for kind, name, windows in (("null", "null0", plan["windows"]), ("kv", "kv0", plan["kv_windows"])):
            for clients in plan["client_counts"]:
                for w in windows:
                    progress(f"ra_actors: pipelined {kind} W={w} clients={clients} ({plan['duration']} s)")
                    try:
                        r = b.pipelined([name], w, clients, plan["duration"])
                    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                        out["errors"].append(f"pipelined {kind} W={w} clients={clients}: {exc}")
                        continue
                    r["machine"] = kind
                    out["runs"].append(r)
        progress(f"ra_actors: sync latency ({plan['sync']} commands, one client)")
        out["sync"] = b.sync_latency("null0", plan["sync"])
        out["sync_kv"] = b.sync_latency("kv0", max(1, plan["sync"] // 4))
        progress("ra_actors: durability check")
        out["durability"] = b.durability()
        out["memory"] = b.memory()
    return out


def run_scale(plan: dict) -> list:
    rows = []
    for c in plan["clusters"]:
        row: dict = {"clusters": c, "servers": 3 * c}
        try:
            with RaBench(progress=progress) as b:
                _tune(b, plan)
                progress(f"scale C={c}: starting {c} clusters")
                t0 = time.monotonic()
                for i in range(c):
                    b.start_cluster(f"s{i}", "null")
                    if (i + 1) % 50 == 0:
                        progress(f"scale C={c}: {i + 1} started ({time.monotonic() - t0:.0f} s)")
                row["start_s"] = time.monotonic() - t0
                time.sleep(1.0)   # let the last elections' messages settle
                mem = b.memory()
                row.update(processes=mem["processes"], rss_mb=mem["rss_mb"], uss_mb=mem["uss_mb"])
                progress(f"scale C={c}: idle for {plan['idle_s']} s")
                idle = b.idle(plan["idle_s"])
                row.update(idle_cpu_pct=idle["cpu_pct"], idle_msgs_per_s=idle["msgs_per_s"],
                           idle_msgs=idle["msgs"], idle_server_msgs=idle["server_msgs"],
                           idle_supervisor_msgs=idle["supervisor_msgs"], idle_s=idle["seconds"])
                progress(f"scale C={c}: every cluster busy ({plan['busy_s']} s, "
                         f"W={plan['busy_window']} per cluster, 8 clients)")
                busy = b.pipelined(list(b.clusters), plan["busy_window"], min(8, c), plan["busy_s"])
                row["busy_ops_per_s"] = busy["ops_per_s"]
                row["busy_node_cpu_ms_per_cmd"] = busy["node_cpu_ms_per_cmd"]
                d = b.durability()
                row["durable"] = d["ok"]
                row["durability"] = d
        except Exception as exc:  # noqa: BLE001 - recorded; larger C would fail too
            row["error"] = f"{type(exc).__name__}: {exc}"
            progress(f"scale C={c} failed: {row['error']}")
            rows.append(row)
            break
        rows.append(row)
    return rows


def run_pysyncobj(plan: dict) -> dict:
    from ra_actors.bench.pysyncobj_bench import run_pysyncobj as run
    return run(quick=plan["mode"] != "full", repeats=plan["pysyncobj_repeats"], commands=plan["pysyncobj_commands"],
               inflight=1024, sync_commands=plan["pysyncobj_sync"], progress=progress)


# ------------------------------------------------------------------ report
def _pick(runs, machine, window, clients):
    for r in runs:
        if r["machine"] == machine and r["window"] == window and r["clients"] == clients:
            return r
    return None


def summarise(ra: dict, pso: dict | None, scale: list, plan: dict, elapsed: float) -> dict:
    runs = ra.get("runs", [])
    head = _pick(runs, "null", max(plan["windows"]), 1) or (runs[0] if runs else None)
    best = max((r for r in runs if r["machine"] == "null"), key=lambda r: r["ops_per_s"], default=None)
    sync = ra.get("sync", {})
    result = {
        "ra_actors": {
            "pipelined_ops_per_s": head["ops_per_s"] if head else None,
            "pipelined_window": head["window"] if head else None,
            "best_pipelined_ops_per_s": best["ops_per_s"] if best else None,
            "best_pipelined": {"window": best["window"], "clients": best["clients"]} if best else None,
            "sync_p50_ms": sync.get("p50_ms"),
            "sync_p99_ms": sync.get("p99_ms"),
            "sync_max_ms": sync.get("max_ms"),
            "sync_n": sync.get("acked"),
            "kv_sync_p50_ms": ra.get("sync_kv", {}).get("p50_ms"),
            "fsync": "fdatasync per WAL batch",
            "durable": ra.get("durability", {}).get("ok"),
            "durability": ra.get("durability"),
            "runs": runs,
            "errors": ra.get("errors", []),
            "memory": ra.get("memory"),
        },
        "pysyncobj": None,
        "throughput_ratio": None,
        "scale": scale,
        "plan": plan,
        "elapsed_s": elapsed,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(),
                    "loadavg_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    if pso is not None:
        result["pysyncobj"] = {k: pso.get(k) for k in (
            "async_ops_per_s", "sync_p50_ms", "sync_p99_ms", "sync_max_ms", "nobatch_async_ops_per_s",
            "nobatch_sync_p50_ms", "nobatch_sync_p99_ms", "consistent", "version", "fsync")}
        result["pysyncobj"]["runs"] = pso.get("runs")
        if head and pso.get("async_ops_per_s"):
            result["throughput_ratio"] = head["ops_per_s"] / pso["async_ops_per_s"]
    return result


def report(res: dict) -> str:
    ra = res["ra_actors"]
    lines = ["ra_actors: 3 local nodes, WAL fdatasync per batch, 16-byte commands", ""]
    rows = [[r["machine"], r["window"], r["clients"], r["ops_per_s"], r["node_cpu_ms_per_cmd"], r["acked"]]
            for r in ra["runs"]]
    lines.append(format_table(["machine", "W", "clients", "ops/s", "node CPU ms/cmd", "acked"], rows))
    lines += ["", format_table(
        ["sync (1 client)", "n", "p50 ms", "p99 ms", "max ms"],
        [["null machine", ra["sync_n"], ra["sync_p50_ms"], ra["sync_p99_ms"], ra["sync_max_ms"]]])]
    d = ra.get("durability") or {}
    lines += ["", f"durability: {'OK' if d.get('ok') else 'FAILED'} ({d.get('clusters_checked')} clusters, "
                  f"{d.get('acked_total')} acknowledged commands applied on every member)"]
    for e in ra.get("errors", []):
        lines.append(f"error: {e}")
    p = res.get("pysyncobj")
    if p:
        lines += ["", "PySyncObj (same run, 3 processes, never fsyncs)", format_table(
            ["config", "async ops/s (W=1024)", "sync p50 ms", "sync p99 ms"],
            [["default", p["async_ops_per_s"], p["sync_p50_ms"], p["sync_p99_ms"]],
             ["appendEntriesUseBatch=False", p["nobatch_async_ops_per_s"], p["nobatch_sync_p50_ms"],
              p["nobatch_sync_p99_ms"]]])]
    if res.get("throughput_ratio") is not None:
        lines += ["", f"throughput ratio (ra_actors W={ra['pipelined_window']} 1 client / PySyncObj "
                      f"default async): {res['throughput_ratio']:.2f}"]
    if res.get("scale"):
        rows = [[s["clusters"], s.get("start_s"), s.get("rss_mb"), s.get("uss_mb"), s.get("idle_cpu_pct"),
                 s.get("idle_msgs_per_s"), s.get("busy_ops_per_s"), s.get("durable"), s.get("error", "")]
                for s in res["scale"]]
        lines += ["", "scale (C clusters x 3 servers on 3 nodes, one process per server)", format_table(
            ["C", "start s", "RSS MB", "USS MB", "idle CPU %", "idle msgs/s", "busy ops/s", "durable", "error"],
            rows)]
    lines += ["", f"elapsed {res['elapsed_s']:.0f} s; load average at end "
                  f"{', '.join(f'{x:.1f}' for x in res['machine']['loadavg_at_end'] or [])}"]
    return "\n".join(lines)


def _raise_system_exit(signum, _frame):
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bench.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts (under three minutes)")
    ap.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)   # tests
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--clusters", help="comma-separated C values for the scale phase (0: skip it)")
    ap.add_argument("--idle", type=float, help="idle window in seconds")
    ap.add_argument("--duration", type=float, help="seconds per pipelined run")
    ap.add_argument("--sync", type=int, help="synchronous commands (ra_actors)")
    ap.add_argument("--no-pysyncobj", action="store_true", help="skip the PySyncObj side")
    ap.add_argument("--only-scale", action="store_true", help="run the scale phase only")
    ap.add_argument("--pysyncobj-sync", type=int, help="PySyncObj sync commands per configuration")
    ap.add_argument("--pipeline-batch", type=int, default=1024,
                    help="client flush size (Client default: 256)")
    ap.add_argument("--max-append-entries-batch", type=int, default=1024,
                    help="ServerConfig.max_append_entries_batch of the benchmark clusters (default: 128)")
    args = ap.parse_args(argv)
    plan = dict(TINY if args.tiny else QUICK if args.quick else FULL)
    if args.clusters is not None:
        plan["clusters"] = [int(x) for x in args.clusters.split(",") if int(x) > 0]
    for key, val in (("idle_s", args.idle), ("duration", args.duration), ("sync", args.sync),
                     ("pysyncobj_sync", args.pysyncobj_sync)):
        if val is not None:
            plan[key] = val
    plan["mode"] = "tiny" if args.tiny else "quick" if args.quick else "full"
    plan["pipeline_batch"] = args.pipeline_batch
    plan["max_append_entries_batch"] = args.max_append_entries_batch
    signal.signal(signal.SIGTERM, _raise_system_exit)
    t0 = time.monotonic()
    ok = True
    ra = {}
    try:
        ra = run_ra(plan) if not args.only_scale else {"runs": [], "errors": [], "durability": {"ok": True}}
    except Exception as exc:  # noqa: BLE001
        ra = {"errors": [f"{type(exc).__name__}: {exc}", traceback.format_exc()]}
        ok = False
    pso = None
    if not (args.no_pysyncobj or args.only_scale):
        progress("PySyncObj: default and appendEntriesUseBatch=False")
        try:
            pso = run_pysyncobj(plan)
        except Exception as exc:  # noqa: BLE001
            progress(f"PySyncObj failed: {exc}")
            ok = False
    scale = run_scale(plan) if plan["clusters"] else []
    res = summarise(ra, pso, scale, plan, time.monotonic() - t0)
    ok = ok and bool(res["ra_actors"]["durable"]) and not res["ra_actors"]["errors"]
    ok = ok and all(s.get("durable") for s in scale)
    ok = ok and (pso is None or bool(pso.get("consistent")))
    print(report(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, sort_keys=True, default=str) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
