"""Results of a Jepsen run: merged history, checks, figures and the summary.

Rules:

* :func:`merge_histories` merges the clients' (and the harness's) history
  files into one, ordered by time; events with the same time keep their
  file order, so each process's own order is kept.
* Linearizability is checked per key by :mod:`ra_actors.testing.lincheck`
  with a time budget per key; a key over budget is ``unknown``, which fails
  the run as inconclusive rather than passing it.
* Durability (:func:`lost_writes`): for every key, the final read after
  healing must show the value of an acknowledged write (or cas), or of a
  write of unknown outcome, that is not older (in real time) than the last
  acknowledged one; an acknowledged write followed by a final read of
  ``None`` or of an older value is lost.
* Availability (:func:`fault_windows`): for each fault, the longest stretch
  with no acknowledged write, cas or add that overlaps it (``max_gap_s``), and
  the recovery time: from the end of the fault (heal, restart, resume; the
  kill itself for instant faults) until the first acknowledged write or cas
  invoked after it completes (``recovery_s``).
"""
from __future__ import annotations

import bisect
import json
import os
from typing import Any, Iterable, Optional

from ..history import FAIL, INFO, OK, pair_operations, parse_lines, write_history
from ..lincheck import LINEARIZABLE, check_history


def merge_histories(paths: Iterable[str], out_path: str) -> list[dict]:
    events: list[tuple[int, int, int, dict]] = []
    for file_no, path in enumerate(paths):
        if not os.path.exists(path):
            continue
        with open(path, "r", encoding="utf-8") as handle:
            lines = handle.readlines()
        # A client killed mid-write may leave a torn last line: drop it.
        while lines and not lines[-1].endswith("\n"):
            lines.pop()
        for line_no, event in enumerate(parse_lines(lines, path)):
            events.append((event["time"], file_no, line_no, event))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    merged = [e[3] for e in events]
    write_history(out_path, merged)
    return merged


def op_counts(events: list[dict]) -> dict:
    """``{"read": {"ok": n, "fail": n, "info": n}, ..., "total": {...}}``."""
    counts: dict[str, dict[str, int]] = {}
    for op in pair_operations(events):
        per = counts.setdefault(op.f, {OK: 0, FAIL: 0, INFO: 0})
        per[op.type] += 1
    total = {OK: 0, FAIL: 0, INFO: 0}
    for per in counts.values():
        for k in total:
            total[k] += per[k]
    counts["total"] = total
    return counts


def check(events: list[dict], time_limit: Optional[float]) -> dict:
    result = check_history(events, time_limit=time_limit)
    keys = {r.verdict: 0 for r in result.keys}
    for r in result.keys:
        keys[r.verdict] = keys.get(r.verdict, 0) + 1
    slowest = max(result.keys, key=lambda r: r.elapsed, default=None)
    bad = [r for r in result.keys if r.verdict != LINEARIZABLE]
    return {
        "verdict": result.verdict,
        "keys": len(result.keys),
        "keys_by_verdict": keys,
        "operations_checked": sum(r.operations for r in result.keys),
        "max_operations_per_key": max((r.operations for r in result.keys), default=0),
        "check_seconds": round(sum(r.elapsed for r in result.keys), 3),
        "slowest_key": None if slowest is None else
        {"key": slowest.key, "operations": slowest.operations, "seconds": round(slowest.elapsed, 3)},
        "problems": [{"key": r.key, "verdict": r.verdict, "explanation": r.explanation} for r in bad[:10]],
        "explanation": result.explanation,
    }


def lost_writes(events: list[dict], final_process: Any) -> dict:
    """Check every acknowledged write against the final reads (see module doc)."""
    ops = pair_operations(events)
    writers: dict[tuple, Any] = {}      # (key, value written) -> operation
    acked: dict[Any, list] = {}         # key -> acknowledged writes/cas
    finals: dict[Any, Any] = {}         # key -> final read operation (last ok one)
    for op in ops:
        if op.f in ("write", "cas") and op.type != FAIL:
            value = op.value if op.f == "write" else op.value[1]
            writers[(op.key, json.dumps(value))] = op
            if op.type == OK:
                acked.setdefault(op.key, []).append(op)
        elif op.f == "read" and op.process == final_process and op.type == OK:
            finals[op.key] = op
    lost = []
    unread = []
    for key, writes in acked.items():
        final = finals.get(key)
        if final is None:
            unread.append(key)
            continue
        last_acked = max(writes, key=lambda o: o.return_index)
        source = writers.get((key, json.dumps(final.value)))
        if final.value is None or source is None:
            lost.append({"key": key, "final": final.value,
                         "last_acknowledged": _value_of(last_acked),
                         "reason": "final read shows no value any write wrote"})
            continue
        # ``source`` must not have completed before the last acknowledged
        # write was invoked: otherwise that write was overwritten by nothing
        # newer, i.e. it was lost.
        newest_first = sorted(writes, key=lambda o: o.invoke_index, reverse=True)
        for w in newest_first:
            if w is source:
                break
            if source.type == OK and source.return_index < w.invoke_index:
                lost.append({"key": key, "final": final.value, "lost": _value_of(w),
                             "reason": f"acknowledged {w.f} of {_value_of(w)!r} is missing: the final "
                                       f"value was written before it"})
                break
    return {"keys_with_acknowledged_writes": len(acked), "acknowledged_writes":
            sum(len(w) for w in acked.values()), "lost": lost, "unread_keys": sorted(map(str, unread))}


def _value_of(op) -> Any:
    return op.value if op.f == "write" else op.value[1]


def fault_windows(events: list[dict], nemesis_events: list[dict], t0_ns: int,
                  end_ns: int) -> list[dict]:
    """Per-fault unavailability and recovery figures (see module doc)."""
    ops = pair_operations(events)
    acked = sorted((op.invoke_time, op.return_time) for op in ops
                   if op.f in ("write", "cas", "add", "transfer") and op.type in (OK, FAIL) and op.return_time is not None)
    # A failed cas was applied by the machine: the cluster was available.
    done_times = sorted(r for _i, r in acked)
    starts: dict[int, dict] = {}
    out = []
    for ev in nemesis_events:
        if ev.get("event") == "start":
            starts[ev["id"]] = ev
        elif ev.get("event") == "end" and ev.get("id") in starts:
            s = starts.pop(ev["id"])
            out.append(_window(s, ev, acked, done_times, t0_ns, end_ns))
    return out


def _window(start: dict, end: dict, acked, done_times, t0_ns: int, end_ns: int) -> dict:
    t_start, t_end = start["time"], end["time"]
    # recovery: first acknowledged write/cas invoked at or after the end
    recovery = None
    for inv, ret in acked:
        if inv >= t_end:
            recovery = (ret - t_end) / 1e9
            break
    # longest gap between acknowledged completions that overlaps the fault
    i = bisect.bisect_right(done_times, t_start) - 1
    prev = done_times[i] if i >= 0 else t0_ns
    gap = 0.0
    j = i + 1
    horizon = t_end if recovery is None else t_end + int(recovery * 1e9)
    while True:
        nxt = done_times[j] if j < len(done_times) else end_ns
        gap = max(gap, (nxt - prev) / 1e9)
        if nxt >= horizon or j >= len(done_times):
            break
        prev, j = nxt, j + 1
    return {
        "id": start["id"], "fault": start["fault"], "mode": start.get("mode"),
        "nodes": start.get("nodes"), "start_s": round((t_start - t0_ns) / 1e9, 2),
        "duration_s": round((t_end - t_start) / 1e9, 2), "max_gap_s": round(gap, 2),
        "recovery_s": None if recovery is None else round(recovery, 2),
    }


def fault_summary(windows: list[dict], nemesis_events: list[dict]) -> dict:
    by_kind: dict[str, dict] = {}
    for w in windows:
        k = w["fault"] + (f"-{w['mode']}" if w.get("mode") else "")
        e = by_kind.setdefault(k, {"count": 0, "max_gap_s": [], "recovery_s": [], "unrecovered": 0})
        e["count"] += 1
        e["max_gap_s"].append(w["max_gap_s"])
        if w["recovery_s"] is None:
            e["unrecovered"] += 1
        else:
            e["recovery_s"].append(w["recovery_s"])
    out = {}
    for k, e in sorted(by_kind.items()):
        out[k] = {"count": e["count"], "unrecovered": e["unrecovered"],
                  "max_gap_s": _stats(e["max_gap_s"]), "recovery_s": _stats(e["recovery_s"])}
    errors = [ev for ev in nemesis_events if ev.get("event") == "error"]
    return {"injected": len(windows), "by_kind": out, "errors": len(errors),
            "error_messages": [f"{e['fault']}: {e.get('message')}" for e in errors[:10]]}


def disk_summary(nemesis_events: list[dict]) -> dict:
    """What the disk faults did: each full disk (what the node said meanwhile,
    how long until its storage was ok again) and each flipped byte (the file,
    whether the damaged member reported it)."""
    full, corrupt = [], []
    starts = {ev["id"]: ev for ev in nemesis_events if ev.get("event") == "start"}
    for ev in nemesis_events:
        if ev.get("event") != "end" or ev.get("id") not in starts:
            continue
        s = starts[ev["id"]]
        if ev.get("fault") == "disk-full":
            full.append({"node": s["nodes"][0], "bytes": s.get("bytes"), "during": ev.get("during"),
                         "storage_ok_after_s": ev.get("storage_ok_after_s")})
        elif ev.get("fault") == "disk-corrupt":
            corrupt.append({"node": s["nodes"][0], "kind": s.get("kind"), "file": s.get("file"),
                            "offset": s.get("offset"), "size": s.get("size"),
                            "refused_start": ev.get("refused_start"),
                            "log_check_exit": ev.get("log_check_exit"),
                            "reported": bool(ev.get("reported")),
                            "reason": ev.get("reason") or ev.get("seen")})
    return {"full": full, "corrupt": corrupt,
            "corrupt_unreported": sum(1 for c in corrupt if not c["reported"])}


def _stats(values: list[float]) -> Optional[dict]:
    if not values:
        return None
    s = sorted(values)
    return {"median": s[len(s) // 2], "max": s[-1]}


# ------------------------------------------------------------------ text
def _config_line(cfg: dict) -> str:
    # the counter and bank workloads have no keys
    workload = (f"workload {cfg.get('workload')}" if cfg.get("workload") in ("counter", "bank")
                else f"{cfg.get('keys')} keys (period {cfg.get('key_period')}s)")
    return (f"  config: {cfg.get('nodes')} nodes, {cfg.get('clients')} clients, {workload},"
            f" {cfg.get('time')}s, nemesis {cfg.get('nemesis')},"
            f" seed {cfg.get('seed')}" + (f", UNSAFE bugs {cfg.get('unsafe')}" if cfg.get("unsafe") else "")
            + (f", node env {cfg.get('node_env')}" if cfg.get("node_env") else "")
            + (f", {cfg.get('wal_dirs')} WALs per node" if (cfg.get("wal_dirs") or 1) > 1 else ""))


def render(summary: dict) -> str:
    lines = []
    add = lines.append
    verdict = summary.get("verdict", {})
    add("Jepsen-style run: " + ("PASS" if summary.get("passed") else "FAIL")
        + (f" ({summary['failure']})" if summary.get("failure") else ""))
    cfg = summary.get("config", {})
    add(_config_line(cfg))
    add(f"  partitions: {summary.get('partition_backend')}")
    ops = summary.get("operations", {})
    tot = ops.get("total", {})
    add(f"  operations: {sum(tot.values())} (ok {tot.get('ok', 0)}, fail {tot.get('fail', 0)},"
        f" info {tot.get('info', 0)}); {summary.get('throughput_ops_s', 0)} ops/s")
    for f in ("read", "write", "cas", "add", "transfer"):
        if f in ops:
            o = ops[f]
            add(f"    {f:5s}: ok {o['ok']:6d}  fail {o['fail']:6d}  info {o['info']:6d}")
    faults = summary.get("faults", {})
    add(f"  faults injected: {faults.get('injected', 0)}"
        + (f" ({faults.get('errors')} could not be injected)" if faults.get("errors") else ""))
    for kind, e in faults.get("by_kind", {}).items():
        gap = e["max_gap_s"] or {}
        rec = e["recovery_s"] or {}
        add(f"    {kind:18s} x{e['count']:3d}  unavailable (longest gap) median {gap.get('median')}s"
            f" max {gap.get('max')}s; recovery median {rec.get('median')}s max {rec.get('max')}s"
            + (f"; {e['unrecovered']} not recovered before the next fault" if e["unrecovered"] else ""))
    for m in faults.get("error_messages", []):
        add(f"    ! {m}")
    for f, why in summary.get("skipped_faults", {}).items():
        add(f"    skipped {f}: {why}")
    dsk = summary.get("disk") or {}
    for f in dsk.get("full", []):
        during = f.get("during") or {}
        add(f"    disk full on {f['node']}: storage {during.get('storage')}, server {during.get('server')};"
            f" storage ok {f.get('storage_ok_after_s')}s after the space came back")
    for c in dsk.get("corrupt", []):
        how = "refused to start" if c.get("refused_start") else "started"
        add(f"    byte flipped in {c['node']}:{c.get('file')} at {c.get('offset')}/{c.get('size')}: {how},"
            f" log check exit {c.get('log_check_exit')}, "
            + ("reported the corruption" if c.get("reported") else "DID NOT REPORT the corruption"))
    rec = summary.get("recovery", {})
    took = "-" if rec.get("seconds") is None else f"{rec.get('seconds')}s"
    add(f"  final recovery: {took} ({rec.get('state')}); final reads "
        f"{summary.get('final_reads', {}).get('read')}/{summary.get('final_reads', {}).get('keys')} keys")
    if cfg.get("workload") == "counter":
        add(f"  exactly once: {verdict.get('verdict')}: {verdict.get('acknowledged')} acknowledged adds,"
            f" {verdict.get('uncertain')} uncertain, {verdict.get('failed')} refused; final counter"
            f" {verdict.get('final')}; {verdict.get('reads')} reads checked")
        for problem in verdict.get("problems", [])[:5]:
            add(f"    ! {problem}")
    elif cfg.get("workload") == "bank":
        add(f"  bank: {verdict.get('verdict')}: {verdict.get('acknowledged')} acknowledged transfers,"
            f" {verdict.get('uncertain')} uncertain, {verdict.get('refused')} refused; {verdict.get('applied')}"
            f" in the final table; {verdict.get('reads')} reads, each a consistent cut")
        for problem in verdict.get("problems", [])[:5]:
            add(f"    ! {problem}")
    else:
        add(f"  linearizability: {verdict.get('verdict')} ({verdict.get('keys')} keys,"
            f" {verdict.get('operations_checked')} operations, largest key {verdict.get('max_operations_per_key')},"
            f" {verdict.get('check_seconds')}s)")
    if verdict.get("explanation"):
        add(f"    {verdict['explanation'][:600]}")
    dur = summary.get("durability", {})
    add(f"  acknowledged writes: {dur.get('acknowledged_writes')} on {dur.get('keys_with_acknowledged_writes')}"
        f" keys; lost {len(dur.get('lost', []))}"
        + (f"; keys without a final read: {len(dur.get('unread_keys', []))}" if dur.get("unread_keys") else ""))
    for item in dur.get("lost", [])[:5]:
        add(f"    ! {item}")
    hyg = summary.get("processes", {})
    add(f"  processes left running: {hyg.get('left', '?')}" +
        (f" (killed: {hyg.get('killed')})" if hyg.get("killed") else "") +
        (f"; network namespace {hyg['netns']} deleted: {hyg.get('netns_deleted')}" if hyg.get("netns") else ""))
    add(f"  files: {summary.get('out')}/history.jsonl, nemesis.jsonl, summary.json")
    return "\n".join(lines)
