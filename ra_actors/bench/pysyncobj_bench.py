"""PySyncObj reference benchmark: the library ra_actors is compared against.

It runs in the same shape as our own benchmark (``scripts/bench.py``): three
Raft nodes as three OS processes on 127.0.0.1, 16-byte commands, a replicated
counter, async throughput with a bounded number of commands in flight, then
the latency of one synchronous client.

Rules and choices (also printed with the results):

* **Topology.** Each run starts a fresh 3-node cluster: three child processes
  (``python -m ra_actors.bench.pysyncobj_bench --node ...``), each holding one
  :class:`BenchCounter` (a ``SyncObj`` subclass with one ``@replicated``
  method).  Ports are free 127.0.0.1 ports picked at run time.  The parent
  talks to each child over a private socketpair (pickled control messages);
  the children's stdout/stderr are inherited, never piped.
* **Configurations.** ``default`` is ``SyncObjConf()`` unchanged: AppendEntries
  go out on the ``appendEntriesPeriod`` timer (100 ms), so one synchronous
  client waits about 100 ms per command.  ``nobatch`` is
  ``SyncObjConf(appendEntriesUseBatch=False)``: every command is sent at once.
  ``journalFile`` and ``fullDumpFile`` are off in both (they are the
  defaults).  PySyncObj **never fsyncs**, journal or not, so ``fsync`` is
  reported as ``False``; with the journal off a node's state lives only in its
  memory (a restarted node recovers from its peers, nothing survives the loss
  of all three processes).  Log compaction runs with its defaults (in memory,
  every 5000 entries).
* **Command.** ``BenchCounter.add(payload)`` with a 16-byte ``bytes`` payload
  (8-byte little-endian sequence number + 8 fixed bytes).  Applying it
  increments the counter and chains a CRC-32 over the payloads, so the digest
  checks order and exactly-once application, not just the count.  PySyncObj
  pickles ``(method id, args)`` into the log entry, so the entry on the wire is
  a few tens of bytes, as it would be for any caller of the library.
* **Client.** PySyncObj has no client protocol: a caller is code running in a
  node's process that calls a ``@replicated`` method (a call on a follower is
  forwarded to the leader, one extra hop).  The client therefore runs **in the
  leader's process**, which is how an application uses the library and its
  best case.  It is driven by the control message; the clock runs inside that
  process, so control traffic is not timed.
* **Async throughput.** ``commands`` calls with ``callback=``, at most
  ``inflight`` (W) unacknowledged at any time (a semaphore released by the
  callback).  ops/s = successful callbacks / (last callback - first submit).
  With the default configuration a command waits for the 100 ms
  AppendEntries timer, so async throughput is bounded by about W per 100 ms
  (W=1024: about 10k ops/s) whatever the CPU; larger W gives more.
* **Sync latency.** ``sync_commands`` calls one after another, each submitted
  with a callback and waited for on a fresh ``threading.Event``: exactly what
  ``sync=True`` does inside PySyncObj, but with the same log entry as the
  async phase.  p50/p99 are nearest-rank (:mod:`ra_actors.bench.stats`).
* **Warm-up.** A few hundred async and a few sync commands before measuring;
  they count in the consistency check, not in the figures.
* **Consistency check.** After the phases the parent waits (up to 15 s) until
  all three replicas report the same counter, digest and ``last_applied``.  A
  run is ``consistent`` when the replicas agree, the counter equals the number
  of acknowledged commands and no command failed; ``digest_ok`` additionally
  compares the digest with the one computed from the submitted payloads.
* **Warnings.** PySyncObj's own log records of WARNING and above are counted
  per node (not printed); ``truncations`` counts its CRITICAL "truncating
  already-applied log entries" records (a known PySyncObj behaviour: a
  follower truncates entries it already holds when the leader re-sends).
* **Figures.** Each configuration is run ``repeats`` times, each on a fresh
  cluster; the reported figures are medians over the runs (per-run values are
  in ``runs``).  Speed is reported, never asserted.
* **Process hygiene.** Every child is stopped in a ``finally``: a ``stop``
  message, then SIGTERM, then SIGKILL, by the PIDs this module started (and
  their descendants, found with psutil), and always reaped.  Children exit on
  their own when the control socket closes or the parent PID changes.
  Nothing is ever killed by name.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
import zlib
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Optional

import socket

import psutil

# pysyncobj's import replaces socket.inet_ntop/inet_pton with pure-Python
# Windows fallbacks, which breaks psutil in the same process: restore them.
_INET_NTOP, _INET_PTON = socket.inet_ntop, socket.inet_pton
import pysyncobj  # noqa: E402
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated  # noqa: E402

socket.inet_ntop, socket.inet_pton = _INET_NTOP, _INET_PTON

from ra_actors.bench.stats import format_table, median, summarize_latencies

__all__ = ["run_pysyncobj", "BenchCounter", "CONFIGS", "PAYLOAD_BYTES", "BenchError", "main"]

try:  # 0.3.x keeps the version in pysyncobj/version.py
    from pysyncobj.version import VERSION as PYSYNCOBJ_VERSION
except ImportError:  # pragma: no cover - other releases
    PYSYNCOBJ_VERSION = str(getattr(pysyncobj, "__version__", "unknown"))

PAYLOAD_BYTES = 16
_PAYLOAD_TAIL = b"pysyncob"  # 8 bytes; with the 8-byte sequence number: 16
_LEADER_STATE = 2  # pysyncobj.syncobj._RAFT_STATE.LEADER

#: name -> (description, SyncObjConf keyword arguments).  Journal and full dump
#: are off in both (``None`` is PySyncObj's default; stated for the record).
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("SyncObjConf() (batched, 100 ms AppendEntries timer)",
                {"journalFile": None, "fullDumpFile": None}),
    "nobatch": ("SyncObjConf(appendEntriesUseBatch=False)",
                {"journalFile": None, "fullDumpFile": None, "appendEntriesUseBatch": False}),
}

CLIENT_DESCRIPTION = (
    "in the leader's process (PySyncObj has no client protocol: callers live in a node "
    "process; a follower forwards to the leader)")
DURABILITY_DESCRIPTION = (
    "PySyncObj never fsyncs; journalFile and fullDumpFile off, so state is in memory only")

# Plan defaults: (async commands, sync commands, warm-up async, warm-up sync, repeats)
_FULL = {"commands": 20000, "sync_commands": 2000, "warmup_async": 500, "warmup_sync": 20, "repeats": 3}
_QUICK = {"commands": 2000, "sync_commands": 50, "warmup_async": 100, "warmup_sync": 3, "repeats": 1}

_REPO_ROOT = Path(__file__).resolve().parents[2]


class BenchError(RuntimeError):
    """A benchmark run could not be carried out (no leader, a node died, ...)."""


def _payload(seq: int) -> bytes:
    return struct.pack("<Q8s", seq, _PAYLOAD_TAIL)


def expected_digest(count: int, start: int = 0) -> int:
    """CRC-32 chain over the payloads ``start .. start+count-1`` (what the replicas hold)."""
    digest = 0
    for seq in range(start, start + count):
        digest = zlib.crc32(_payload(seq), digest)
    return digest


# --------------------------------------------------------------------------
# Node side (runs in the child processes)
# --------------------------------------------------------------------------

class BenchCounter(SyncObj):
    """Replicated counter plus an order-sensitive digest of the applied payloads."""

    def __init__(self, self_addr: str, partners: list[str], conf: SyncObjConf) -> None:
        super().__init__(self_addr, partners, conf)
        # Set after SyncObj.__init__: attributes present before it are treated
        # as SyncObj internals and left out of snapshots.
        self.counter = 0
        self.digest = 0

    @replicated
    def add(self, payload: bytes) -> int:
        self.counter += 1
        self.digest = zlib.crc32(payload, self.digest)
        return self.counter


class _WarningCounter(logging.Handler):
    """Counts PySyncObj log records of WARNING and above and keeps a few."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.truncations = 0
        self.samples: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        try:
            text = f"{record.levelname} {record.getMessage()}"
        except Exception:  # a broken log call must not kill the node
            text = f"{record.levelname} <unformattable>"
        if "truncating already-applied" in text:
            self.truncations += 1
        if len(self.samples) < 5:
            self.samples.append(text[:300])


def _node_status(obj: BenchCounter, addr: str, warnings: _WarningCounter) -> dict[str, Any]:
    st = obj.getStatus()
    leader = st.get("leader")
    return {
        "self": addr,
        "pid": os.getpid(),
        "state": st["state"],
        "is_leader": st["state"] == _LEADER_STATE,
        "leader": getattr(leader, "id", None) if leader is not None else None,
        "term": st["raft_term"],
        "commit_idx": st["commit_idx"],
        "last_applied": st["last_applied"],
        "log_len": st["log_len"],
        "ready": obj.isReady(),
        "counter": getattr(obj, "counter", 0),
        "digest": getattr(obj, "digest", 0),
        "warnings": warnings.count,
        "truncations": warnings.truncations,
        "warning_samples": list(warnings.samples),
        "cpu_s": time.process_time(),
    }


def _async_phase(obj: BenchCounter, start_seq: int, n: int, inflight: int,
                 timeout_s: float) -> dict[str, Any]:
    sem = threading.Semaphore(inflight)
    lock = threading.Lock()
    done = threading.Event()
    counts = {"completed": 0, "acked": 0, "failed": 0}
    errors: dict[str, int] = {}
    t_last = [0.0]

    def callback(_result: Any, err: int) -> None:
        now = time.perf_counter()
        with lock:
            counts["completed"] += 1
            if err == FAIL_REASON.SUCCESS:
                counts["acked"] += 1
            else:
                counts["failed"] += 1
                errors[str(err)] = errors.get(str(err), 0) + 1
            t_last[0] = now
            if counts["completed"] == n:
                done.set()
        sem.release()

    leader_before = obj._isLeader()
    deadline = time.monotonic() + timeout_s
    submitted = 0
    add = obj.add
    t0 = time.perf_counter()
    for i in range(n):
        if not sem.acquire(timeout=max(0.0, deadline - time.monotonic())):
            break
        add(_payload(start_seq + i), callback=callback)
        submitted += 1
    t_submitted = time.perf_counter()
    if n > 0:
        done.wait(max(0.0, deadline - time.monotonic()))
    with lock:
        snapshot = dict(counts)
        last = t_last[0]
    elapsed = last - t0 if last > t0 else 0.0
    return {
        "n": n,
        "inflight": inflight,
        "submitted": submitted,
        "completed": snapshot["completed"],
        "acked": snapshot["acked"],
        "failed": snapshot["failed"],
        "errors": errors,
        "timed_out": n > 0 and not done.is_set(),
        "submit_s": t_submitted - t0,
        "elapsed_s": elapsed,
        "ops_per_s": snapshot["acked"] / elapsed if elapsed > 0 else 0.0,
        "leader_before": leader_before,
        "leader_after": obj._isLeader(),
    }


def _sync_phase(obj: BenchCounter, start_seq: int, n: int, call_timeout_s: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    failed = 0
    timed_out = False
    leader_before = obj._isLeader()
    add = obj.add
    t_start = time.perf_counter()
    for i in range(n):
        event = threading.Event()
        box: list[int] = []

        def callback(_result: Any, err: int, _box: list[int] = box, _ev: threading.Event = event) -> None:
            _box.append(err)
            _ev.set()

        t0 = time.perf_counter()
        add(_payload(start_seq + i), callback=callback)
        if not event.wait(call_timeout_s):
            timed_out = True  # outcome unknown; stop rather than pile up
            break
        t1 = time.perf_counter()
        if box[0] == FAIL_REASON.SUCCESS:
            latencies.append(t1 - t0)
        else:
            failed += 1
            errors[str(box[0])] = errors.get(str(box[0]), 0) + 1
    return {
        "n": n,
        "acked": len(latencies),
        "failed": failed,
        "errors": errors,
        "timed_out": timed_out,
        "elapsed_s": time.perf_counter() - t_start,
        "latencies_s": latencies,
        "leader_before": leader_before,
        "leader_after": obj._isLeader(),
    }


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(3)  # orphaned: the benchmark driver is gone


def node_main(index: int, addrs: list[str], conf_kwargs: dict[str, Any], ctl_fd: int,
              parent_pid: int) -> int:
    """Body of one node process.  Serves control messages until ``stop`` or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when we stop
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True,
                     name="parent-watch").start()
    warnings = _WarningCounter()
    pl = logging.getLogger("pysyncobj")
    pl.addHandler(warnings)
    pl.propagate = False
    conn = Connection(ctl_fd)
    conf = SyncObjConf(**conf_kwargs)
    me = addrs[index]
    obj = BenchCounter(me, [a for a in addrs if a != me], conf)
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return 0
            op = msg[0]
            try:
                if op == "status":
                    reply: Any = _node_status(obj, me, warnings)
                elif op == "async":
                    reply = _async_phase(obj, *msg[1:])
                elif op == "sync":
                    reply = _sync_phase(obj, *msg[1:])
                elif op == "stop":
                    conn.send(("ok", None))
                    return 0
                else:
                    raise ValueError(f"unknown control message {op!r}")
                conn.send(("ok", reply))
            except (EOFError, OSError, BrokenPipeError):
                return 0
            except Exception:
                try:
                    conn.send(("error", traceback.format_exc()))
                except OSError:
                    return 0
    finally:
        obj.destroy()  # the tick thread stops at its next tick
        conn.close()


# --------------------------------------------------------------------------
# Driver side
# --------------------------------------------------------------------------

def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that were free on ``host`` a moment ago."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class _Cluster:
    """Three PySyncObj node processes, started and always stopped by this object."""

    def __init__(self, conf_kwargs: dict[str, Any], size: int = 3) -> None:
        self.conf_kwargs = conf_kwargs
        self.size = size
        self.addrs: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.conns: list[Connection] = []

    def __enter__(self) -> "_Cluster":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        ports = free_ports(self.size)
        self.addrs = [f"127.0.0.1:{p}" for p in ports]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(_REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        conf_json = json.dumps(self.conf_kwargs)
        for i in range(self.size):
            parent_sock, child_sock = socket.socketpair()
            try:
                cmd = [sys.executable, "-m", "ra_actors.bench.pysyncobj_bench", "--node", str(i),
                       "--addrs", ",".join(self.addrs), "--conf", conf_json,
                       "--ctl-fd", str(child_sock.fileno()), "--parent-pid", str(os.getpid())]
                proc = subprocess.Popen(cmd, env=env, cwd=str(_REPO_ROOT), stdin=subprocess.DEVNULL,
                                        pass_fds=(child_sock.fileno(),), close_fds=True)
            except BaseException:
                parent_sock.close()
                raise
            finally:
                child_sock.close()
            self.procs.append(proc)
            self.conns.append(Connection(parent_sock.detach()))

    def call(self, i: int, msg: tuple[Any, ...], timeout: float) -> Any:
        conn = self.conns[i]
        try:
            conn.send(msg)
            if not conn.poll(timeout):
                raise BenchError(f"node {i} ({self.addrs[i]}) did not answer {msg[0]!r} in {timeout:.0f} s")
            status, payload = conn.recv()
        except (EOFError, OSError) as exc:
            rc = self.procs[i].poll()
            raise BenchError(f"node {i} ({self.addrs[i]}) is gone (exit code {rc}): {exc!r}") from exc
        if status != "ok":
            raise BenchError(f"node {i} failed {msg[0]!r}:\n{payload}")
        return payload

    def statuses(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        return [self.call(i, ("status",), timeout) for i in range(self.size)]

    def wait_leader(self, timeout: float = 30.0) -> int:
        """Index of the node that every node agrees is the (ready) leader."""
        deadline = time.monotonic() + timeout
        last: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            last = self.statuses()
            leaders = [i for i, s in enumerate(last) if s["is_leader"]]
            if len(leaders) == 1:
                li = leaders[0]
                if last[li]["ready"] and all(s["leader"] == self.addrs[li] for s in last):
                    return li
            time.sleep(0.02)
        raise BenchError(f"no agreed leader within {timeout:.0f} s: "
                         f"{[(s['self'], s['state'], s['leader'], s['term']) for s in last]}")

    def wait_converged(self, timeout: float = 15.0) -> tuple[bool, list[dict[str, Any]]]:
        """Wait until all replicas report the same counter, digest and last_applied."""
        deadline = time.monotonic() + timeout
        while True:
            sts = self.statuses()
            keys = {(s["counter"], s["digest"], s["last_applied"]) for s in sts}
            if len(keys) == 1:
                return True, sts
            if time.monotonic() >= deadline:
                return False, sts
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop and reap every process this cluster started (by PID), whatever happened."""
        descendants: list[psutil.Process] = []
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    descendants.extend(psutil.Process(proc.pid).children(recursive=True))
                except psutil.Error:
                    pass
        for i, proc in enumerate(self.procs):
            if proc.poll() is None and i < len(self.conns):
                try:
                    self.conns[i].send(("stop",))
                except (OSError, ValueError):
                    pass
        deadline = time.monotonic() + 5.0
        for proc in self.procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(3.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for child in descendants:  # PySyncObj forks only to write dumps (off here)
            try:
                if child.is_running():
                    child.kill()
            except psutil.Error:
                pass
        if descendants:
            psutil.wait_procs(descendants, timeout=3.0)
        for conn in self.conns:
            try:
                conn.close()
            except OSError:
                pass
        self.conns = []


def _plan(quick: bool, repeats: Optional[int], commands: Optional[int],
          sync_commands: Optional[int], inflight: int) -> dict[str, int]:
    base = dict(_QUICK if quick else _FULL)
    if inflight < 1:
        raise ValueError("inflight must be >= 1")
    if repeats is not None:
        if repeats < 1:
            raise ValueError("repeats must be >= 1")
        base["repeats"] = repeats
    if commands is not None:
        if commands < 1:
            raise ValueError("commands must be >= 1")
        base["commands"] = commands
        # A small count bounds every phase, so a tiny run stays tiny.
        base["warmup_async"] = min(base["warmup_async"], commands)
        base["warmup_sync"] = min(base["warmup_sync"], max(1, commands // 10))
        if sync_commands is None:
            base["sync_commands"] = min(base["sync_commands"], commands)
    if sync_commands is not None:
        if sync_commands < 1:
            raise ValueError("sync_commands must be >= 1")
        base["sync_commands"] = sync_commands
    base["inflight"] = inflight
    return base


def _run_once(config: str, plan: dict[str, int], repeat: int,
              progress: Callable[[str], None]) -> dict[str, Any]:
    _desc, conf_kwargs = CONFIGS[config]
    run: dict[str, Any] = {"config": config, "repeat": repeat}
    t_run = time.monotonic()
    seq = 0
    acked_total = 0
    failed_total = 0
    uncertain = False
    with _Cluster(conf_kwargs) as cluster:
        run["addrs"] = list(cluster.addrs)
        leader = cluster.wait_leader()
        run["startup_s"] = time.monotonic() - t_run
        run["leader"] = cluster.addrs[leader]
        term_start = cluster.statuses()[leader]["term"]
        phases: dict[str, dict[str, Any]] = {}
        steps = [
            ("warmup_async", "async", plan["warmup_async"]),
            ("warmup_sync", "sync", plan["warmup_sync"]),
            ("async", "async", plan["commands"]),
            ("sync", "sync", plan["sync_commands"]),
        ]
        for name, kind, n in steps:
            if n <= 0:
                continue
            progress(f"  {config} #{repeat + 1}: {name} ({n} commands)")
            if kind == "async":
                timeout = 60.0 + n / 200.0
                res = cluster.call(leader, ("async", seq, n, plan["inflight"], timeout), timeout + 30.0)
                seq += n
                uncertain |= res["completed"] != res["submitted"] or res["timed_out"]
            else:
                res = cluster.call(leader, ("sync", seq, n, 10.0), 60.0 + 10.0 * n)
                seq += n
                uncertain |= res["timed_out"]
            acked_total += res["acked"]
            failed_total += res["failed"]
            phases[name] = res
        converged, sts = cluster.wait_converged()
    run["elapsed_s"] = time.monotonic() - t_run

    a = phases["async"]
    s = phases["sync"]
    lat = s.pop("latencies_s")
    run["async"] = {k: a[k] for k in ("n", "inflight", "acked", "failed", "errors", "timed_out",
                                     "elapsed_s", "ops_per_s", "leader_before", "leader_after")}
    run["sync"] = {k: s[k] for k in ("n", "acked", "failed", "errors", "timed_out", "elapsed_s",
                                    "leader_before", "leader_after")}
    if lat:
        summary = summarize_latencies(lat)
        run["sync"].update(summary)
        run["sync"]["ops_per_s"] = len(lat) / sum(lat)
    else:
        run["sync"].update({"p50_ms": None, "p99_ms": None, "max_ms": None, "ops_per_s": 0.0})
    counter = sts[0]["counter"]
    replicas_agree = converged
    clean = failed_total == 0 and not uncertain
    run["acked_total"] = acked_total
    run["failed_total"] = failed_total
    run["submitted_total"] = seq
    run["replicas"] = [{k: st[k] for k in ("self", "pid", "state", "term", "counter", "digest",
                                           "last_applied", "commit_idx", "warnings",
                                           "truncations", "warning_samples", "cpu_s")} for st in sts]
    run["replicas_agree"] = replicas_agree
    run["counter"] = counter
    run["consistent"] = replicas_agree and clean and all(st["counter"] == acked_total for st in sts)
    want = expected_digest(seq)
    run["digest_ok"] = replicas_agree and clean and all(st["digest"] == want for st in sts)
    run["leader_changed"] = any(st["term"] != term_start for st in sts) or not (
        a["leader_before"] and a["leader_after"] and s["leader_before"] and s["leader_after"])
    run["warnings"] = sum(st["warnings"] for st in sts)
    run["truncations"] = sum(st["truncations"] for st in sts)
    return run


def _median_of(runs: list[dict[str, Any]], phase: str, key: str) -> Optional[float]:
    values = [r[phase][key] for r in runs if r[phase].get(key) is not None]
    return median(values) if values else None


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run_pysyncobj(quick: bool = False, repeats: Optional[int] = None, commands: Optional[int] = None,
                  inflight: int = 1024, *, sync_commands: Optional[int] = None,
                  progress: Optional[Callable[[str], None]] = None) -> dict[str, Any]:
    """Run the PySyncObj benchmark; return medians over ``repeats`` runs per configuration.

    :param quick: smaller defaults (2000 async, 50 sync commands, 1 repeat)
        instead of 20000 async, 2000 sync, 3 repeats.
    :param repeats: runs per configuration, each on a fresh cluster.
    :param commands: async commands per run.  When given without
        ``sync_commands`` it also caps the sync and warm-up counts, so a small
        number gives a small run.
    :param inflight: W, the most async commands unacknowledged at once.
    :param sync_commands: synchronous commands per run (per configuration).
        The default configuration needs about 100 ms per synchronous command.
    :param progress: called with one line of text per step (``None``: silent).
    :raises BenchError: if no run of a configuration could be completed.

    The result holds the medians (``async_ops_per_s``, ``sync_p50_ms`` ... for
    ``SyncObjConf()``, ``nobatch_*`` for ``appendEntriesUseBatch=False``),
    ``fsync`` (always ``False``), ``version``, ``consistent`` (every run
    passed the consistency check) and the per-run details in ``runs``.
    """
    plan = _plan(quick, repeats, commands, sync_commands, inflight)
    say: Callable[[str], None] = progress or (lambda _line: None)
    t0 = time.monotonic()
    runs: list[dict[str, Any]] = []
    for r in range(plan["repeats"]):
        for config in CONFIGS:
            say(f"run {r + 1}/{plan['repeats']} {config}: starting 3 nodes")
            try:
                runs.append(_run_once(config, plan, r, say))
            except BenchError as exc:
                say(f"  {config} #{r + 1} failed: {exc}")
                runs.append({"config": config, "repeat": r, "error": str(exc), "consistent": False})

    ok = {c: [x for x in runs if x["config"] == c and "error" not in x] for c in CONFIGS}
    for c, good in ok.items():
        if not good:
            errs = [x["error"] for x in runs if x["config"] == c]
            raise BenchError(f"every {c} run failed: {errs}")
    d, nb = ok["default"], ok["nobatch"]
    return {
        "async_ops_per_s": _median_of(d, "async", "ops_per_s"),
        "sync_p50_ms": _median_of(d, "sync", "p50_ms"),
        "sync_p99_ms": _median_of(d, "sync", "p99_ms"),
        "sync_max_ms": _median_of(d, "sync", "max_ms"),
        "nobatch_async_ops_per_s": _median_of(nb, "async", "ops_per_s"),
        "nobatch_sync_p50_ms": _median_of(nb, "sync", "p50_ms"),
        "nobatch_sync_p99_ms": _median_of(nb, "sync", "p99_ms"),
        "nobatch_sync_max_ms": _median_of(nb, "sync", "max_ms"),
        "fsync": False,
        "journal": False,
        "version": PYSYNCOBJ_VERSION,
        "consistent": all(x.get("consistent") for x in runs),
        "failed_runs": sum(1 for x in runs if "error" in x),
        "quick": quick,
        "repeats": plan["repeats"],
        "commands": plan["commands"],
        "sync_commands": plan["sync_commands"],
        "inflight": plan["inflight"],
        "payload_bytes": PAYLOAD_BYTES,
        "nodes": 3,
        "configs": {c: desc for c, (desc, _kw) in CONFIGS.items()},
        "client": CLIENT_DESCRIPTION,
        "durability": DURABILITY_DESCRIPTION,
        "machine": _machine(),
        "elapsed_s": time.monotonic() - t0,
        "runs": runs,
    }


def format_report(result: dict[str, Any]) -> str:
    """Readable text report of a :func:`run_pysyncobj` result."""
    lines = [
        f"PySyncObj {result['version']}: 3 nodes = 3 processes on 127.0.0.1, "
        f"{result['payload_bytes']}-byte commands, replicated counter",
        f"fsync: never (journal/fullDump off)   client: {result['client']}",
        f"async: {result['commands']:,} commands, W={result['inflight']} in flight   "
        f"sync: {result['sync_commands']:,} sequential commands   "
        f"medians of {result['repeats']} run(s)   {result['machine']['cpus']} CPUs",
        "",
        format_table(
            ["config", "async ops/s", "sync p50 ms", "sync p99 ms", "sync max ms"],
            [
                [result["configs"]["default"], result["async_ops_per_s"], result["sync_p50_ms"],
                 result["sync_p99_ms"], result["sync_max_ms"]],
                [result["configs"]["nobatch"], result["nobatch_async_ops_per_s"],
                 result["nobatch_sync_p50_ms"], result["nobatch_sync_p99_ms"],
                 result["nobatch_sync_max_ms"]],
            ]),
        "",
    ]
    rows = []
    for r in result["runs"]:
        if "error" in r:
            rows.append([r["config"], r["repeat"] + 1, None, None, None, None, None, None, False,
                         None, None, None, None])
            continue
        rows.append([r["config"], r["repeat"] + 1, r["async"]["ops_per_s"], r["sync"]["p50_ms"],
                     r["sync"]["p99_ms"], r["sync"]["max_ms"], r["acked_total"], r["failed_total"],
                     r["consistent"], r["leader_changed"], r["warnings"], r["truncations"],
                     r["startup_s"]])
    lines.append(format_table(
        ["config", "run", "async ops/s", "p50 ms", "p99 ms", "max ms", "acked", "failed",
         "consistent", "leader changed", "warnings", "truncations", "startup s"], rows))
    errors = [f"  {r['config']} #{r['repeat'] + 1}: {r['error']}" for r in result["runs"] if "error" in r]
    if errors:
        lines += ["", "failed runs:"] + errors
    lines += ["", f"all runs consistent: {'yes' if result['consistent'] else 'NO'}   "
                  f"elapsed {result['elapsed_s']:.1f} s"]
    return "\n".join(lines)


def _raise_system_exit(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ra_actors.bench.pysyncobj_bench",
        description="PySyncObj 3-node benchmark (async throughput, sync latency, consistency).")
    parser.add_argument("--quick", action="store_true", help="small counts, 1 repeat")
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--commands", type=int, help="async commands per run")
    parser.add_argument("--sync-commands", type=int, help="sync commands per run")
    parser.add_argument("--inflight", type=int, default=1024, help="async commands in flight (W)")
    # Internal: node process mode.
    parser.add_argument("--node", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--addrs", help=argparse.SUPPRESS)
    parser.add_argument("--conf", help=argparse.SUPPRESS)
    parser.add_argument("--ctl-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.node is not None:
        return node_main(args.node, args.addrs.split(","), json.loads(args.conf), args.ctl_fd,
                         args.parent_pid)

    # SIGTERM must unwind through the finally blocks that stop the nodes.
    signal.signal(signal.SIGTERM, _raise_system_exit)
    result = run_pysyncobj(quick=args.quick, repeats=args.repeats, commands=args.commands,
                           inflight=args.inflight, sync_commands=args.sync_commands,
                           progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(format_report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0 if result["consistent"] else 1


if __name__ == "__main__":
    sys.exit(main())
