#!/usr/bin/env python
"""ra_actors benchmark, with PySyncObj and etcd measured in the same run.

    python scripts/bench.py [--quick] [--json OUT.json]      (also: ra-actors bench ...)

What it measures (see ``ra_actors/bench/ra_bench.py``,
``ra_actors/bench/pysyncobj_bench.py`` and ``ra_actors/bench/etcd_bench.py``
for the exact rules):

1. ra_actors on three local nodes, WAL ``fdatasync`` on, 16-byte commands,
   once per placement of ``--placements`` (default ``shared,process``;
   ``shared``: one host actor per node carries every server of the node and
   its WAL, ``process``: one OS process per Raft server): pipelined
   throughput with W = 1, 64, 1024 commands in flight, from one client and
   from 8 clients (each client its own process), to the null machine
   (counts commands) and to ``machines.kv``; synchronous latency of one
   client (p50/p99/max); a durability check (every acknowledged command is
   applied on every member).  The JSON's ``ra_actors`` is the first
   placement's summary, ``ra_actors_by_placement`` has them all.
2. PySyncObj, same shape: default configuration and
   ``appendEntriesUseBatch=False``: async throughput (W = 1024) and sync latency.
3. etcd, when an ``etcd`` binary is on ``PATH`` (Debian: ``apt-get install
   etcd-server``): three members on loopback, fsync per Raft batch (its
   default), 16-byte puts from Python over keep-alive HTTP to the leader's
   v3 JSON gateway: sync latency of one client (as many puts as
   ra_actors's sync commands) and concurrent throughput (8 client
   processes x 8 connections, one put in flight per connection), then a
   consistency check.  Without ``etcd`` (or with ``--no-etcd``) the report
   and the JSON's ``etcd`` say it was skipped and why.
4. Scale: C clusters of 3 servers on 3 fresh nodes, for each C of
   ``--clusters`` (placement ``process``) and of ``--shared-clusters``
   (placement ``shared``; only the placements of ``--placements``): time to
   start them all (``client.start_clusters`` from ``--starters`` client
   threads, default 1: it starts 32 clusters per round itself), memory of
   every node process (RSS and USS), CPU and Thespian messages while idle
   (servers' counters: a fixed random sample of ``--idle-sample`` servers
   when there are more, extrapolated), aggregate throughput with every
   cluster busy (at most ``--busy-clusters`` of them: the others get a
   liveness check on a sample), durability check of the driven clusters.
   A failing C skips the larger C of the same placement only.

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
import random
import signal
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ra_actors.bench import etcd_bench  # noqa: E402
from ra_actors.bench.ra_bench import RaBench  # noqa: E402
from ra_actors.bench.stats import format_table  # noqa: E402

PLACEMENTS = ("shared", "process")
# etcd_clients x etcd_connections: client processes x keep-alive connections
# (HTTP/1.1: one put in flight per connection); its sync run uses "sync"
# and its throughput run "duration", as ra_actors's
FULL = {"duration": 5.0, "windows": [1, 64, 1024], "client_counts": [1, 8], "kv_windows": [1, 64, 1024],
        "sync": 2000, "clusters": [10, 100, 300], "shared_clusters": [10, 100, 300, 1000, 3000, 10000],
        "idle_s": 30.0, "busy_s": 8.0, "busy_window": 16, "busy_clusters": 1000, "starters": 1,
        "workers": 4, "idle_server_sample": 3000, "liveness_sample": 300,
        "pysyncobj_commands": 20000, "pysyncobj_sync": 500, "pysyncobj_repeats": 1,
        "etcd_clients": 8, "etcd_connections": 8, "etcd_warmup": 100}
QUICK = {"duration": 1.0, "windows": [1, 64, 1024], "client_counts": [1, 8], "kv_windows": [1024],
         "sync": 200, "clusters": [10], "shared_clusters": [10, 100], "idle_s": 3.0, "busy_s": 2.0,
         "busy_window": 16, "busy_clusters": 1000, "starters": 1, "workers": 4, "idle_server_sample": 3000,
         "liveness_sample": 300,
         "pysyncobj_commands": 2000, "pysyncobj_sync": 20, "pysyncobj_repeats": 1,
         "etcd_clients": 8, "etcd_connections": 8, "etcd_warmup": 100}
TINY = {"duration": 0.5, "windows": [1, 64], "client_counts": [1, 2], "kv_windows": [64],
        "sync": 20, "clusters": [2], "shared_clusters": [2], "idle_s": 1.0, "busy_s": 0.5, "busy_window": 8,
        "busy_clusters": 1000, "starters": 1, "workers": 2, "idle_server_sample": 3000, "liveness_sample": 300,
        "pysyncobj_commands": 50, "pysyncobj_sync": 3, "pysyncobj_repeats": 1,
        "etcd_clients": 2, "etcd_connections": 2, "etcd_warmup": 5}
PLACEMENT_TEXT = {"process": "one OS process per Raft server",
                  "shared": "one host actor per node carries every server of the node and its WAL"}


def progress(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ phases
def _data_root(plan: dict, tag: str):
    """``--data-root DIR``: the nodes' directories (logs included) are kept
    under ``DIR/<tag>``; by default a temporary directory, removed."""
    if not plan.get("data_root"):
        return None
    path = Path(plan["data_root"]) / f"{tag}-{time.strftime('%H%M%S')}"
    path.mkdir(parents=True, exist_ok=True)
    progress(f"{tag}: node directories in {path}")
    return str(path)


def _tune(b: RaBench, plan: dict) -> None:
    # Thespian costs per message, not per entry: let a client flush carry a
    # whole window and an AppendEntries carry up to 1024 entries (Client and
    # ServerConfig defaults: 256 and 128).  Measured: node CPU per command
    # 0.29 -> 0.19 ms at W=1024.
    b.pipeline_batch = plan["pipeline_batch"]
    b.server_config = {"max_append_entries_batch": plan["max_append_entries_batch"]}


def run_ra(plan: dict, placement: str) -> dict:
    out: dict = {"placement": placement, "runs": [], "errors": []}
    tag = f"ra_actors [{placement}]"
    with RaBench(progress=progress, placement=placement, data_root=_data_root(plan, f"main-{placement}")) as b:
        _tune(b, plan)
        out["nodes_start_s"] = b.node_start_s
        progress(f"{tag}: starting clusters null0 (null machine) and kv0 (machines.kv)")
        b.start_cluster("null0", "null")
        b.start_cluster("kv0", "kv")
        for kind, name, windows in (("null", "null0", plan["windows"]), ("kv", "kv0", plan["kv_windows"])):
            for clients in plan["client_counts"]:
                for w in windows:
                    progress(f"{tag}: pipelined {kind} W={w} clients={clients} ({plan['duration']} s)")
                    try:
                        r = b.pipelined([name], w, clients, plan["duration"])
                    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                        out["errors"].append(f"pipelined {kind} W={w} clients={clients}: {exc}")
                        continue
                    r["machine"] = kind
                    out["runs"].append(r)
        progress(f"{tag}: sync latency ({plan['sync']} commands, one client)")
        out["sync"] = b.sync_latency("null0", plan["sync"])
        out["sync_kv"] = b.sync_latency("kv0", max(1, plan["sync"] // 4))
        progress(f"{tag}: durability check")
        out["durability"] = b.durability()
        out["memory"] = b.memory()
    return out


def _truncate(d: dict, n: int = 20) -> dict:
    """At most ``n`` entries of a per-cluster failure dict (the others: names only)."""
    bad = d.get("bad") or {}
    if len(bad) <= n:
        return d
    keep = dict(list(bad.items())[:n])
    return dict(d, bad=keep, bad_count=len(bad), bad_truncated=True, bad_names=list(bad))


def scale_row(plan: dict, placement: str, c: int) -> dict:
    starters = max(1, int(plan["starters"]))
    workers = max(1, int(plan["workers"]))     # client threads of the idle, busy and check phases
    row: dict = {"placement": placement, "clusters": c, "servers": 3 * c, "starters": starters,
                 "leaders": "spread (cluster i elected from node i % 3)"}
    tag = f"scale [{placement}] C={c}"
    try:
        with RaBench(progress=progress, placement=placement,
                     data_root=_data_root(plan, f"scale-{placement}-{c}")) as b:
            _tune(b, plan)
            names = [f"s{i}" for i in range(c)]
            progress(f"{tag}: starting {c} clusters ({starters} client thread(s), start_clusters)")
            row["start_s"] = b.start_clusters(names, "null", starters=starters, every=100, label=f"{tag}: ")
            progress(f"{tag}: {c} started in {row['start_s']:.1f} s")
            time.sleep(1.0)   # let the last elections' messages settle
            mem = b.memory()
            row.update(processes=mem["processes"], rss_mb=mem["rss_mb"], uss_mb=mem["uss_mb"])
            sample = plan.get("idle_server_sample") or None
            progress(f"{tag}: idle for {plan['idle_s']} s"
                     + (f" (servers' counters: a sample of {sample})" if sample and 3 * c > sample else ""))
            idle = b.idle(plan["idle_s"], server_sample=sample, workers=workers)
            row.update(idle_cpu_pct=idle["cpu_pct"], idle_msgs_per_s=idle["msgs_per_s"],
                       idle_msgs=idle["msgs"], idle_server_msgs=idle["server_msgs"],
                       idle_supervisor_msgs=idle["supervisor_msgs"], idle_s=idle["seconds"],
                       idle_servers_read=idle["servers_read"], idle_server_read_s=idle["server_read_s"],
                       # None: every server was read; else the sample's size
                       # (server msgs extrapolated from it to every server)
                       idle_server_sample=idle["servers_read"] if idle["sampled"] else None,
                       idle_server_msgs_sampled=idle["server_msgs_sampled"])
            limit = int(plan.get("busy_clusters") or c)
            driven = names[:limit]
            others = names[limit:]
            row["busy_clusters"] = len(driven)
            row["busy_driven"] = f"s0..s{len(driven) - 1}" if driven else ""
            clients = min(8, len(driven))
            progress(f"{tag}: {len(driven)} of {c} clusters busy ({plan['busy_s']} s, "
                     f"W={plan['busy_window']} per cluster, {clients} clients)")
            busy = b.pipelined(driven, plan["busy_window"], clients, plan["busy_s"], workers=workers)
            row["busy_ops_per_s"] = busy["ops_per_s"]
            row["busy_node_cpu_ms_per_cmd"] = busy["node_cpu_ms_per_cmd"]
            row.update(busy_acked=busy["acked"], busy_unacknowledged=busy["unacknowledged"],
                       busy_rejected=busy["rejected"], busy_elapsed_s=busy["elapsed_s"])
            progress(f"{tag}: durability check of the {len(driven)} driven clusters")
            t0 = time.monotonic()
            # 30 s per cluster to catch up, at most 180 s in all (then one look each)
            d = b.durability(driven, workers=workers, total_timeout=180.0)
            row["durability_check_s"] = time.monotonic() - t0
            row["durable"] = d["ok"]
            row["durability"] = _truncate(d)
            if others:
                n = min(len(others), int(plan.get("liveness_sample") or len(others)))
                picked = sorted(random.Random(11).sample(others, n), key=lambda x: int(x[1:]))
                progress(f"{tag}: liveness of {n} of the {len(others)} clusters not driven")
                lv = b.liveness(picked, workers=workers)
                row["live"] = lv["ok"]
                row["liveness"] = _truncate(lv)
    except Exception as exc:  # noqa: BLE001 - recorded; larger C would fail too
        row["error"] = f"{type(exc).__name__}: {exc}"
        progress(f"{tag} failed: {row['error']}")
    return row


def run_scale(plan: dict) -> list:
    """Scale rows for every placement of the plan; a failing C stops the
    larger C of the same placement only."""
    rows = []
    for placement in plan["placements"]:
        for c in plan["shared_clusters" if placement == "shared" else "clusters"]:
            row = scale_row(plan, placement, c)
            rows.append(row)
            if "error" in row:
                break
    return rows


def run_pysyncobj(plan: dict) -> dict:
    from ra_actors.bench.pysyncobj_bench import run_pysyncobj as run
    return run(quick=plan["mode"] != "full", repeats=plan["pysyncobj_repeats"], commands=plan["pysyncobj_commands"],
               inflight=1024, sync_commands=plan["pysyncobj_sync"], progress=progress)


def run_etcd(plan: dict) -> dict:
    """The etcd side (``skipped`` with the reason when there is no etcd)."""
    return etcd_bench.run_etcd(sync=plan["sync"], warmup=plan["etcd_warmup"], clients=plan["etcd_clients"],
                               connections=plan["etcd_connections"], duration=plan["duration"],
                               root=_data_root(plan, "etcd"), progress=progress)


# ------------------------------------------------------------------ report
def _pick(runs, machine, window, clients):
    for r in runs:
        if r["machine"] == machine and r["window"] == window and r["clients"] == clients:
            return r
    return None


def summarise_ra(ra: dict, plan: dict) -> dict:
    runs = ra.get("runs", [])
    head = _pick(runs, "null", max(plan["windows"]), 1) or (runs[0] if runs else None)
    best = max((r for r in runs if r["machine"] == "null"), key=lambda r: r["ops_per_s"], default=None)
    sync = ra.get("sync", {})
    return {
        "placement": ra.get("placement"),
        "pipelined_ops_per_s": head["ops_per_s"] if head else None,
        "pipelined_window": head["window"] if head else None,
        "best_pipelined_ops_per_s": best["ops_per_s"] if best else None,
        "best_pipelined": {"window": best["window"], "clients": best["clients"]} if best else None,
        "sync_p50_ms": sync.get("p50_ms"),
        "sync_p99_ms": sync.get("p99_ms"),
        "sync_max_ms": sync.get("max_ms"),
        "sync_mean_ms": sync.get("mean_ms"),
        "sync_n": sync.get("acked"),
        "kv_sync_p50_ms": ra.get("sync_kv", {}).get("p50_ms"),
        "fsync": "fdatasync per WAL batch",
        "durable": ra.get("durability", {}).get("ok"),
        "durability": ra.get("durability"),
        "runs": runs,
        "errors": ra.get("errors", []),
        "memory": ra.get("memory"),
        "nodes_start_s": ra.get("nodes_start_s"),
    }


def summarise(ras: list, pso: dict | None, scale: list, plan: dict, elapsed: float,
              etcd: dict | None = None) -> dict:
    """``ras``: the main phase's result per placement, in the plan's order
    (empty with ``--only-scale``); ``etcd``: :func:`run_etcd`'s result (or a
    skipped one: the JSON's ``etcd`` is always there, measured or not)."""
    by = {ra["placement"]: summarise_ra(ra, plan) for ra in ras}
    first = summarise_ra(ras[0], plan) if ras else summarise_ra({"durability": {"ok": True}}, plan)
    result = {
        "ra_actors": first,
        "ra_actors_by_placement": by,
        "pysyncobj": None,
        "etcd": etcd if etcd is not None else etcd_bench.skipped("not run"),
        "throughput_ratio": None,
        "throughput_ratio_by_placement": {},
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
            "nobatch_sync_p50_ms", "nobatch_sync_p99_ms", "nobatch_sync_max_ms", "consistent", "version",
            "fsync")}
        result["pysyncobj"]["runs"] = pso.get("runs")
        base = pso.get("async_ops_per_s")
        if base:
            for placement, summ in by.items():
                if summ["pipelined_ops_per_s"] is not None:
                    result["throughput_ratio_by_placement"][placement] = summ["pipelined_ops_per_s"] / base
            if first["pipelined_ops_per_s"] is not None:
                result["throughput_ratio"] = first["pipelined_ops_per_s"] / base
    return result


def _etcd_row(e: dict) -> list:
    """The comparison table's etcd row: figures, or why there are none."""
    if e.get("skipped"):
        return [f"etcd: not measured, {e.get('reason')}", None, None, None, None, None]
    if e.get("error"):
        return ["etcd: FAILED (see above)", None, None, None, None, None]
    return [f"etcd {e.get('version')} (fsync)", e.get("ops_per_s"),
            f"{e.get('inflight')} in flight: {e.get('clients')} clients x {e.get('connections')} conns",
            e.get("sync_p50_ms"), e.get("sync_p99_ms"), e.get("sync_max_ms")]


def report(res: dict) -> str:
    lines: list[str] = []
    by = res.get("ra_actors_by_placement") or {}
    for placement, ra in by.items():
        lines += [f"ra_actors, placement {placement} ({PLACEMENT_TEXT.get(placement, '?')}): "
                  "3 local nodes, WAL fdatasync per batch, 16-byte commands", ""]
        rows = [[r["machine"], r["window"], r["clients"], r["ops_per_s"], r["node_cpu_ms_per_cmd"], r["acked"]]
                for r in ra["runs"]]
        lines.append(format_table(["machine", "W", "clients", "ops/s", "node CPU ms/cmd", "acked"], rows))
        lines += ["", format_table(
            [f"sync (1 client, {placement})", "n", "p50 ms", "p99 ms", "max ms"],
            [["null machine", ra["sync_n"], ra["sync_p50_ms"], ra["sync_p99_ms"], ra["sync_max_ms"]]])]
        d = ra.get("durability") or {}
        lines += ["", f"durability [{placement}]: {'OK' if d.get('ok') else 'FAILED'} "
                      f"({d.get('clusters_checked')} clusters, "
                      f"{d.get('acked_total')} acknowledged commands applied on every member)"]
        for e in ra.get("errors", []):
            lines.append(f"error [{placement}]: {e}")
        lines.append("")
    p = res.get("pysyncobj")
    e = res.get("etcd") or etcd_bench.skipped("not run")
    lines += [etcd_bench.format_report(e), ""]
    if by or p or not e.get("skipped"):
        rows = [[f"ra_actors {placement} (fdatasync)", ra["pipelined_ops_per_s"],
                 f"W={ra['pipelined_window']}, 1 client", ra["sync_p50_ms"],
                 ra["sync_p99_ms"], ra["sync_max_ms"]] for placement, ra in by.items()]
        if p:
            rows += [["PySyncObj default (no fsync)", p["async_ops_per_s"], "W=1024, 1 client", p["sync_p50_ms"],
                      p["sync_p99_ms"], p["sync_max_ms"]],
                     ["PySyncObj appendEntriesUseBatch=False", p["nobatch_async_ops_per_s"], "W=1024, 1 client",
                      p["nobatch_sync_p50_ms"], p["nobatch_sync_p99_ms"], p.get("nobatch_sync_max_ms")]]
        rows.append(_etcd_row(e))
        lines += ["comparison (same run; PySyncObj: 3 processes, client in the leader's process, never fsyncs; "
                  "etcd: 3 members, fsync per batch, Python client over HTTP)",
                  format_table(["system", "ops/s", "throughput driven by", "sync p50 ms", "sync p99 ms",
                                "sync max ms"], rows)]
    ratios = res.get("throughput_ratio_by_placement") or {}
    if ratios:
        lines += ["", "throughput ratio (ra_actors 1 client / PySyncObj default async): "
                  + ", ".join(f"{pl} {r:.2f}" for pl, r in ratios.items())]
    if res.get("scale"):
        rows = []
        for s in res["scale"]:
            sample = s.get("idle_server_sample")
            rows.append([s.get("placement"), s["clusters"], s.get("starters"), s.get("start_s"), s.get("rss_mb"),
                         s.get("uss_mb"), s.get("idle_cpu_pct"), s.get("idle_msgs_per_s"),
                         f"{sample} (sample)" if sample else s.get("idle_servers_read"),
                         s.get("busy_clusters"), s.get("busy_ops_per_s"), s.get("durable"), s.get("live"),
                         s.get("error", "")])
        lines += ["", "scale (C clusters x 3 servers on 3 nodes)", format_table(
            ["placement", "C", "starters", "start s", "RSS MB", "USS MB", "idle CPU %", "idle msgs/s",
             "servers read", "busy C", "busy ops/s", "durable", "live", "error"], rows)]
        notes = []
        for s in res["scale"]:
            if s.get("idle_server_sample"):
                notes.append(f"[{s['placement']}] C={s['clusters']}: idle server messages read from a fixed "
                             f"random sample of {s['idle_server_sample']} of {s['servers']} servers "
                             f"({s.get('idle_server_msgs_sampled')} messages), extrapolated to "
                             f"{s.get('idle_server_msgs'):.0f}")
            if s.get("busy_clusters") is not None and s["busy_clusters"] < s["clusters"]:
                lv = s.get("liveness") or {}
                notes.append(f"[{s['placement']}] C={s['clusters']}: busy phase drove {s['busy_driven']} "
                             f"(durability checked on those); liveness (members() with a leader) of "
                             f"{lv.get('checked')} of the others: {'OK' if lv.get('ok') else 'FAILED'}")
        if notes:
            lines += [""] + notes
    lines += ["", f"elapsed {res['elapsed_s']:.0f} s; load average at end "
                  f"{', '.join(f'{x:.1f}' for x in res['machine']['loadavg_at_end'] or [])}"]
    return "\n".join(lines)


def _raise_system_exit(signum, _frame):
    raise SystemExit(128 + signum)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip() and int(x) > 0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bench.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts (under three minutes)")
    ap.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)   # tests
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--placements", default="shared,process",
                    help="comma-separated placements to measure, the first is the headline "
                         "(default: shared,process)")
    ap.add_argument("--clusters", help="comma-separated C values of the scale phase in placement process "
                                       "(0: none)")
    ap.add_argument("--shared-clusters", help="comma-separated C values of the scale phase in placement "
                                              "shared (0: none)")
    ap.add_argument("--starters", type=int, help="client threads starting the scale clusters, each with "
                                                 "client.start_clusters (default 1)")
    ap.add_argument("--busy-clusters", type=int,
                    help="scale: drive at most this many clusters in the busy phase (default 1000); the "
                         "others get a liveness check on a sample")
    ap.add_argument("--idle-sample", type=int,
                    help="scale: read the idle message counters of at most this many servers, a fixed "
                         "random sample, extrapolated (default 3000: every server up to C = 1000; 0: every server)")
    ap.add_argument("--data-root", metavar="DIR",
                    help="keep the nodes' directories (and logs) under DIR (default: temporary, removed)")
    ap.add_argument("--idle", type=float, help="idle window in seconds")
    ap.add_argument("--busy", type=float, help="seconds of the scale phase's busy window")
    ap.add_argument("--duration", type=float, help="seconds per pipelined run (and of etcd's throughput run)")
    ap.add_argument("--sync", type=int, help="synchronous commands (ra_actors) and puts (etcd)")
    ap.add_argument("--no-pysyncobj", action="store_true", help="skip the PySyncObj side")
    ap.add_argument("--no-etcd", action="store_true",
                    help="skip the etcd side (it is skipped anyway when no etcd binary is on PATH)")
    ap.add_argument("--only-scale", action="store_true", help="run the scale phase only")
    ap.add_argument("--pysyncobj-sync", type=int, help="PySyncObj sync commands per configuration")
    ap.add_argument("--pipeline-batch", type=int, default=1024,
                    help="client flush size (Client default: 256)")
    ap.add_argument("--max-append-entries-batch", type=int, default=1024,
                    help="ServerConfig.max_append_entries_batch of the benchmark clusters (default: 128)")
    args = ap.parse_args(argv)
    plan = dict(TINY if args.tiny else QUICK if args.quick else FULL)
    placements = [p.strip() for p in args.placements.split(",") if p.strip()]
    bad = [p for p in placements if p not in PLACEMENTS]
    if bad or not placements or len(set(placements)) != len(placements):
        ap.error(f"--placements: a list of distinct placements among {', '.join(PLACEMENTS)}")
    plan["placements"] = placements
    if args.clusters is not None:
        plan["clusters"] = _ints(args.clusters)
    if args.shared_clusters is not None:
        plan["shared_clusters"] = _ints(args.shared_clusters)
    for key, val in (("idle_s", args.idle), ("duration", args.duration), ("sync", args.sync),
                     ("pysyncobj_sync", args.pysyncobj_sync), ("starters", args.starters),
                     ("busy_clusters", args.busy_clusters), ("idle_server_sample", args.idle_sample),
                     ("busy_s", args.busy)):
        if val is not None:
            plan[key] = val
    plan["mode"] = "tiny" if args.tiny else "quick" if args.quick else "full"
    plan["data_root"] = os.path.abspath(args.data_root) if args.data_root else None
    plan["pipeline_batch"] = args.pipeline_batch
    plan["max_append_entries_batch"] = args.max_append_entries_batch
    signal.signal(signal.SIGTERM, _raise_system_exit)
    t0 = time.monotonic()
    ok = True
    ras = []
    if not args.only_scale:
        for placement in placements:
            try:
                ras.append(run_ra(plan, placement))
            except Exception as exc:  # noqa: BLE001 - recorded; the other placement still runs
                progress(f"ra_actors [{placement}] failed: {exc}")
                ras.append({"placement": placement,
                            "errors": [f"{type(exc).__name__}: {exc}", traceback.format_exc()]})
                ok = False
    pso = None
    if not (args.no_pysyncobj or args.only_scale):
        progress("PySyncObj: default and appendEntriesUseBatch=False")
        try:
            pso = run_pysyncobj(plan)
        except Exception as exc:  # noqa: BLE001
            progress(f"PySyncObj failed: {exc}")
            ok = False
    if args.no_etcd or args.only_scale:
        etcd = etcd_bench.skipped("--no-etcd" if args.no_etcd else "--only-scale")
    else:
        try:
            etcd = run_etcd(plan)
        except Exception as exc:  # noqa: BLE001 - recorded; the other phases still run
            progress(f"etcd failed: {exc}")
            etcd = etcd_bench.failed(f"{type(exc).__name__}: {exc}")
        if etcd.get("skipped"):
            progress(f"etcd: not measured, {etcd['reason']}")
    scale = run_scale(plan)
    res = summarise(ras, pso, scale, plan, time.monotonic() - t0, etcd=etcd)
    for summ in res["ra_actors_by_placement"].values():
        ok = ok and bool(summ["durable"]) and not summ["errors"]
    ok = ok and all(s.get("durable") and s.get("live", True) for s in scale)
    ok = ok and (pso is None or bool(pso.get("consistent")))
    ok = ok and (bool(etcd.get("skipped")) or bool(etcd.get("consistent")))
    print(report(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, sort_keys=True, default=str) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
