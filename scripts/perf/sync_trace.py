"""Where a synchronous command's time goes, from the kernel's clock: ``python scripts/perf/sync_trace.py [N]``.

Starts three fresh local nodes in placement ``shared`` (where a node's
servers and WAL are one process, so a node's system calls are its host's) with one
cluster of the null machine, and records with ftrace (``/sys/kernel/tracing``:
root, and a kernel with syscall trace events) the socket, write and sync
system calls of the client and of every node process while it sends N
(default 300) ``process_command`` calls one after another.  Each command is
then cut into the steps of its path, from the client's send to its read of
the reply, and the median and mean of each step are printed:

* client -> leader: the leader's read of the call;
* leader: from that read to its first ``AppendEntries`` on the wire;
* leader -> follower, follower's work before its WAL write, its
  ``fdatasync``, its work after the sync until its reply is on the wire
  (the follower whose reply left first);
* follower -> leader: the leader's read of that reply; leader: from that
  read to the reply to the client; leader -> client;
* beside them: the leader's own ``fdatasync`` and the other follower's.

The steps are told apart by the sizes of the frames (a call, an
``AppendEntries`` of one entry, a reply, the client's reply), which the
script learns from the first commands; a command whose steps cannot all
be found (a frame split or merged by TCP, a retry) is left out and
counted.  ftrace's own cost is small (a record per traced system call),
but the figures are for comparing steps and runs, not absolute.  Every
node is stopped on exit (``RaBench``), and tracing is switched off and
its filters cleared whatever happens.
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import sys

import psutil

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from ra_actors.bench.ra_bench import RaBench  # noqa: E402

TRACING = "/sys/kernel/tracing"
EVENTS = ["sys_enter_sendto", "sys_exit_recvfrom", "sys_enter_fdatasync", "sys_exit_fdatasync",
          "sys_enter_writev"]
_LINE = re.compile(r"\s*\S+-(\d+)\s+\[\d+\]\s+\S+\s+([\d.]+): (\w+)(.*)")
_SIZE = re.compile(r"len: (0x[0-9a-f]+)")
_RET = re.compile(r"-> (0x[0-9a-f]+)")


def _write(name: str, value: str) -> None:
    with open(os.path.join(TRACING, name), "w") as f:
        f.write(value)


def record(bench: RaBench, cluster: str, n: int) -> tuple[str, dict]:
    """Trace ``n`` synchronous commands; returns the raw trace and
    ``{thread id: role}`` (``client`` or the node's name)."""
    me = psutil.Process()
    roles = {}
    for p in [me] + me.children(recursive=True):
        cmd = " ".join(p.cmdline())
        role = "client" if p.pid == me.pid else (cmd.split("/")[-2] if cmd.endswith("node.json") else None)
        if role:
            for t in p.threads():
                roles[t.id] = role
    try:
        _write("tracing_on", "0")
        _write("trace", "")
        _write("trace_clock", "mono")
        _write("buffer_size_kb", "65536")
        _write("set_event_pid", " ".join(map(str, roles)))
        _write("set_event", " ".join("syscalls:" + e for e in EVENTS))
        _write("tracing_on", "1")
        bench.sync_latency(cluster, n)
        _write("tracing_on", "0")
        with open(os.path.join(TRACING, "trace")) as f:
            return f.read(), roles
    finally:
        _write("tracing_on", "0")
        _write("set_event", "")
        _write("set_event_pid", "")


def parse(trace: str, roles: dict) -> list[tuple[float, str, str, int]]:
    """``(microseconds, role, event, bytes)``: bytes sent, bytes read, or 0."""
    out = []
    for line in trace.splitlines():
        m = _LINE.match(line)
        if not m or int(m.group(1)) not in roles:
            continue
        call, rest = m.group(3), m.group(4)
        size = 0
        if call == "sys_sendto":
            size = int(_SIZE.search(rest).group(1), 16)
        elif call == "sys_recvfrom" and "->" in rest:
            size = int(_RET.search(rest).group(1), 16)
        kind = call + ("_exit" if "->" in rest and call == "sys_fdatasync" else "")
        out.append((float(m.group(2)) * 1e6, roles[int(m.group(1))], kind, size))
    return out


def steps(events: list) -> tuple[dict, int]:
    """Each command's steps (see the module's docstring), and how many
    commands were left out."""
    sends = collections.Counter(size for _t, who, kind, size in events if who == "client" and kind == "sys_sendto")
    call = sends.most_common(1)[0][0]
    starts = [i for i, (_t, who, kind, size) in enumerate(events)
              if who == "client" and kind == "sys_sendto" and size == call]
    out: dict = collections.defaultdict(list)
    missing: collections.Counter = collections.Counter()
    skipped = 0
    for i, j in zip(starts, starts[1:]):
        try:
            one = _one_command(events[i:j], call)
        except LookupError as exc:
            skipped += 1
            missing[str(exc)] += 1
            continue
        for k, v in one.items():
            out[k].append(v)
    if missing:
        print("left out, by the first step not found:", dict(missing))
    return out, skipped


def _one_command(win: list, call: int) -> dict:
    def first(after: float, who, kind: str, size: int | None = None):
        for t, w, k, s in win:
            if t >= after and (w == who if isinstance(who, str) else w in who) and k == kind and (
                    size is None or s == size):
                return t, w, s
        raise LookupError(kind)
    t0 = win[0][0]
    nodes = {w for _t, w, _k, _s in win if w != "client"}
    t_lr, leader, _ = first(t0, nodes, "sys_recvfrom", call)
    followers = nodes - {leader}
    t_ae, _, ae = first(t_lr, leader, "sys_sendto")
    t_rep, fol, rep = first(t_ae, followers, "sys_sendto")
    t_fr, _, _ = first(t_ae, fol, "sys_recvfrom", ae)
    t_fw, _, _ = first(t_fr, fol, "sys_writev")
    t_fs, _, _ = first(t_fr, fol, "sys_fdatasync")
    t_fe, _, _ = first(t_fs, fol, "sys_fdatasync_exit")
    t_lrr, _, _ = first(t_rep, leader, "sys_recvfrom", rep)
    t_cr, _, answer = first(t_lrr, leader, "sys_sendto")
    t_crr, _, _ = first(t_cr, "client", "sys_recvfrom", answer)
    t_ls, _, _ = first(t_lr, leader, "sys_fdatasync")
    t_le, _, _ = first(t_ls, leader, "sys_fdatasync_exit")
    other = (followers - {fol}).pop()
    t_os, _, _ = first(t_ae, other, "sys_fdatasync")
    t_oe, _, _ = first(t_os, other, "sys_fdatasync_exit")
    return {"client -> leader": t_lr - t0, "leader: call read -> AppendEntries sent": t_ae - t_lr,
            "leader -> follower": t_fr - t_ae, "follower: read -> WAL write": t_fw - t_fr,
            "follower: fdatasync": t_fe - t_fs, "follower: synced -> reply sent": t_rep - t_fe,
            "follower -> leader": t_lrr - t_rep, "leader: reply read -> client reply sent": t_cr - t_lrr,
            "leader -> client": t_crr - t_cr, "whole command (client's clock)": t_crr - t0,
            "beside: leader's fdatasync": t_le - t_ls, "beside: other follower's fdatasync": t_oe - t_os}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=300)
    args = ap.parse_args()
    if not os.access(os.path.join(TRACING, "set_event"), os.W_OK):
        sys.exit(f"needs write access to {TRACING} (root, tracefs mounted)")
    with RaBench(placement="shared") as b:
        b.start_cluster("null0", "null")
        b.sync_latency("null0", 300)                   # warm up
        trace, roles = record(b, "null0", args.n)
    found, skipped = steps(parse(trace, roles))
    whole = found.get("whole command (client's clock)", [])
    print(f"shared: {len(whole)} commands, {skipped} left out; microseconds")
    for name, values in found.items():
        print(f"  {name:42} median {statistics.median(values):6.0f}   mean {statistics.mean(values):6.0f}")


if __name__ == "__main__":
    main()
