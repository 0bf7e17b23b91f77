"""etcd reference benchmark: a production Raft store measured beside ra_actors.

``scripts/bench.py`` runs it in the same run as ra_actors and PySyncObj
when an ``etcd`` binary is on ``PATH`` (Debian: ``apt-get install
etcd-server``).  Without one, :func:`run_etcd` returns a result marked
``skipped`` with the reason and how to get it; nothing is silently left out.

Rules and choices (also in ``docs/performance.rst``):

* **Topology.** A fresh three-member cluster per run: three ``etcd``
  processes on 127.0.0.1, client and peer ports picked free at run time,
  a unique ``--initial-cluster-token``, data directories and logs in a
  temporary directory (removed afterwards; with ``root=`` they are kept
  there).  Every other setting is etcd's default; ``ETCD_*`` variables are
  removed from the members' environment so they cannot change it.
* **Durability.** etcd fsyncs its WAL on every Raft batch by default (and
  commits its bbolt backend every 100 ms): an acknowledged put is on disk
  on a quorum.  That is the same promise as ra_actors's ``fdatasync`` per
  WAL batch, and unlike PySyncObj, which never fsyncs.
* **Client.** Python, standard library only: ``http.client`` over one
  keep-alive HTTP/1.1 connection (TCP_NODELAY) per client thread to the v3
  JSON gateway of the **leader** (``POST /v3/kv/put``, base64 key and
  value).  The gateway runs inside the member and forwards to its own gRPC
  server over loopback, so each put pays a JSON translation and one more
  loopback hop than a Go gRPC client would; the figures are etcd as seen
  from Python, not etcd's ceiling.
* **Put.** Value: 16 bytes (8-byte little-endian sequence number + 8 fixed
  bytes), like the commands of the other two systems.  Key: ``k0000`` ..
  ``k1023`` (``seq % 1024``), like the ``machines.kv`` commands, so the key
  space stays bounded.
* **Sync latency.** One client, one connection, to the leader: ``warmup``
  puts (also before the throughput run), then ``sync`` puts one after
  another (each waits for its reply); nearest-rank p50/p99
  (:mod:`ra_actors.bench.stats`), mean and max.  This is the same
  measurement as ra_actors's ``process_command`` loop.
* **Concurrent throughput.** Driven as ra_actors's pipelined runs are:
  ``clients`` client OS processes (:mod:`ra_actors.bench.workers`: connect,
  ready, go together), each submitting for ``duration`` seconds and then
  waiting for what is in flight; ops/s = acknowledged puts / (last
  acknowledgement - start), summed over the clients.  The difference is the
  window: HTTP/1.1 answers one request at a time per connection, so each
  client process runs ``connections`` threads with a connection each, and
  ``clients x connections`` puts are in flight (ra_actors pipelines W
  commands on one connection).  etcd batches concurrent proposals into
  one Raft round and one fsync, so in-flight puts are what lets it batch.
  The result also gives the CPU of the etcd members and of the clients per
  put: with Python clients on the same two cores the client is often the
  limit, and the CPU figures say so.
* **What is compared** (``scripts/bench.py``'s comparison table): etcd's
  sync p50/p99 with ra_actors's (one client, one command at a time, to the
  leader, a quorum fsynced before the reply: like for like, except the
  client path above and that a put writes an MVCC key-value store, closer
  to ra_actors's ``kv`` machine than to its null machine); etcd's ops/s
  at ``clients x connections`` puts in flight with ra_actors's pipelined
  ops/s (W = 1024 from one client): not the same window, and on a 2-core
  machine the Python clients share the CPU with the members, so etcd's
  ops/s is a lower bound for etcd; ``etcd_cpu_ms_per_put`` is the figure
  to set beside ra_actors's node CPU per command.
* **Consistency check.** After the throughput phase every member must
  report the same store revision, and the revision must have grown by
  exactly the number of acknowledged puts (each put makes one revision);
  a failed put (outcome unknown) widens that to a range.
* **Hygiene.** Members are started in their own session with
  ``PR_SET_PDEATHSIG`` (SIGKILL when the starting thread dies, so start
  them from the main thread) and stopped by their PIDs (SIGTERM to the
  followers, then to the leader; SIGKILL to any still running 5 s later)
  in a ``finally``, on success, failure or ``KeyboardInterrupt``;
  nothing is killed by name.  (A driver killed with SIGKILL takes its
  members with it but cannot remove its temporary directory,
  ``/tmp/ra-etcd-bench-*``.)  A member that exits or never becomes healthy
  is an :class:`EtcdError` naming its log file (kept for that, with the
  last lines in the message).

Benchmarks report speed, they never assert it.
"""
from __future__ import annotations

import argparse
import base64
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

import psutil

from .stats import format_table, summarize_latencies
from .workers import WorkerProcesses, wait_for_go, worker_entry

__all__ = ["run_etcd", "skipped", "failed", "find_etcd", "etcd_version", "EtcdCluster", "Gateway", "EtcdError",
           "INSTALL_HINT", "MISSING_REASON", "RESULT_KEYS", "format_report", "main"]

INSTALL_HINT = "Debian/Ubuntu: apt-get install etcd-server"
MISSING_REASON = f"no etcd binary on PATH ({INSTALL_HINT})"
FSYNC_DESCRIPTION = "WAL fsync per Raft batch (etcd's default)"
CLIENT_DESCRIPTION = ("Python http.client, one keep-alive HTTP/1.1 connection per client thread "
                      "to the leader's v3 JSON gateway (POST /v3/kv/put)")
PAYLOAD_BYTES = 16
KEY_SPACE = 1024
_TAIL = b"etcd-put"          # 8 bytes; with the 8-byte sequence number: 16
_SEQ_SPAN = 1_000_000_000    # disjoint sequence ranges per client thread
_PR_SET_PDEATHSIG = 1

#: every key a result has, measured or skipped (``None`` when not measured)
RESULT_KEYS = ("skipped", "reason", "error", "version", "binary", "members", "fsync", "client",
               "sync_p50_ms", "sync_p99_ms", "sync_mean_ms", "sync_max_ms", "sync_n", "sync_failed",
               "ops_per_s", "clients", "connections", "inflight", "duration_s", "acked", "failed",
               "etcd_cpu_ms_per_put", "client_cpu_ms_per_put", "consistent", "start_s")


class EtcdError(RuntimeError):
    """etcd could not be started or measured."""


def payload(seq: int) -> bytes:
    return struct.pack("<Q8s", seq, _TAIL)


def key_for(seq: int) -> bytes:
    return b"k%04d" % (seq % KEY_SPACE)


def find_etcd() -> Optional[str]:
    """Path of the ``etcd`` binary on ``PATH``, or ``None``."""
    return shutil.which("etcd")


def etcd_version(binary: str) -> str:
    """``"3.4.23"`` from ``etcd --version`` (the whole first line if it is
    not in the usual form)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30,
                         env=_member_env()).stdout
    first = out.splitlines()[0] if out else ""
    return first.split("Version:", 1)[1].strip() if "Version:" in first else first.strip()


def skipped(reason: str, **extra: Any) -> dict:
    """The result of an etcd side that was not measured, with every key."""
    out: dict[str, Any] = {k: None for k in RESULT_KEYS}
    out.update(skipped=True, reason=reason, fsync=FSYNC_DESCRIPTION)
    out.update(extra)
    return out


def failed(error: str, **extra: Any) -> dict:
    """The result of an etcd side that could not be measured, with every key."""
    return skipped("", **extra) | {"skipped": False, "reason": None, "error": error}


def _member_env() -> dict:
    # etcd reads every flag from ETCD_<FLAG> too: a stray one would change
    # the measured configuration (or clash with our flags)
    return {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}


def _free_ports(count: int, host: str) -> list[int]:
    """``count`` distinct ports that were free on ``host`` a moment ago
    (all bound at once, so they are distinct)."""
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


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the parent thread dies, so a
    killed benchmark leaves no etcd behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(log unreadable: {exc})"


# ------------------------------------------------------------------ client
class _Connection(http.client.HTTPConnection):
    """A keep-alive connection that counts how often it (re)connects."""

    connects = 0

    def connect(self) -> None:
        super().connect()
        # one small request per round trip: never wait for Nagle
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connects += 1


class Gateway:
    """One keep-alive HTTP connection to a member's v3 JSON gateway.  Not
    thread-safe: one per thread."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.conn = _Connection(host, port, timeout=timeout)

    @property
    def connects(self) -> int:
        return self.conn.connects

    def call(self, path: str, doc: dict) -> dict:
        body = json.dumps(doc).encode()
        try:
            self.conn.request("POST", path, body, {"Content-Type": "application/json"})
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            # the next request reconnects (and the caller counts a failure)
            self.conn.close()
            raise
        if resp.status != 200:
            raise EtcdError(f"{path}: HTTP {resp.status}: {data[:300]!r}")
        return json.loads(data)

    def put(self, key: bytes, value: bytes) -> int:
        """One put; the store revision it made."""
        doc = self.call("/v3/kv/put", {"key": base64.b64encode(key).decode(),
                                       "value": base64.b64encode(value).decode()})
        return int(doc["header"]["revision"])

    def status(self) -> dict:
        """``/v3/maintenance/status`` of this member (uint64s come as strings)."""
        return self.call("/v3/maintenance/status", {})

    def close(self) -> None:
        self.conn.close()


# ------------------------------------------------------------------ cluster
class _Member:
    def __init__(self, name: str, host: str, client_port: int, peer_port: int, root: Path) -> None:
        self.name = name
        self.host = host
        self.client_port = client_port
        self.client_url = f"http://{host}:{client_port}"
        self.peer_url = f"http://{host}:{peer_port}"
        self.data_dir = root / f"{name}.etcd"
        self.log_path = root / f"{name}.log"
        self.proc: Optional[subprocess.Popen] = None


class EtcdCluster:
    """Three (``size``) etcd members on loopback, started and always stopped
    by this object (a context manager)."""

    def __init__(self, binary: str, size: int = 3, root: Optional[str] = None, host: str = "127.0.0.1",
                 start_timeout: float = 30.0) -> None:
        self.binary = binary
        self.size = size
        self.host = host
        self.start_timeout = start_timeout
        self.keep = root is not None
        self.root = Path(root) if root else None
        self.members: list[_Member] = []
        self.leader: Optional[int] = None
        self.start_s: Optional[float] = None
        self._failed = False

    def __enter__(self) -> "EtcdCluster":
        try:
            self.start()
        except BaseException:
            self._failed = True
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> bool:
        self.stop()
        return False

    @property
    def pids(self) -> list[int]:
        return [m.proc.pid for m in self.members if m.proc is not None]

    def start(self) -> None:
        t0 = time.monotonic()
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="ra-etcd-bench-"))
        else:
            self.root.mkdir(parents=True, exist_ok=True)
        ports = _free_ports(2 * self.size, self.host)
        self.members = [_Member(f"e{i}", self.host, ports[2 * i], ports[2 * i + 1], self.root)
                        for i in range(self.size)]
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        # unique, so a member can never join another cluster on this machine
        token = f"ra-bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        for m in self.members:
            cmd = [self.binary, "--name", m.name, "--data-dir", str(m.data_dir),
                   "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
                   "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
                   "--initial-cluster", initial, "--initial-cluster-state", "new",
                   "--initial-cluster-token", token, "--logger", "zap", "--log-outputs", "stderr"]
            with open(m.log_path, "wb") as log:
                # own session: a terminal's Ctrl-C reaches the benchmark only,
                # which then stops the members itself
                m.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          env=_member_env(), start_new_session=True,
                                          preexec_fn=_die_with_parent)
        self.leader = self.wait_healthy(self.start_timeout)
        self.start_s = time.monotonic() - t0

    def _check_alive(self) -> None:
        for m in self.members:
            rc = m.proc.poll() if m.proc else None
            if rc is not None:
                raise EtcdError(f"etcd member {m.name} exited with code {rc} while starting; "
                                f"its log: {m.log_path}\n{_tail(m.log_path)}")

    def wait_healthy(self, timeout: float) -> int:
        """Index of the leader once every member answers and names the same
        leader; :class:`EtcdError` naming the logs otherwise."""
        deadline = time.monotonic() + timeout
        last: dict[str, str] = {}
        while True:
            self._check_alive()
            statuses = []
            for m in self.members:
                g = Gateway(m.host, m.client_port, timeout=2.0)
                try:
                    statuses.append(g.status())
                except (OSError, http.client.HTTPException, EtcdError, ValueError) as exc:
                    last[m.name] = f"{type(exc).__name__}: {exc}"
                    statuses.append(None)
                finally:
                    g.close()
            if all(statuses):
                leaders = {s.get("leader") for s in statuses}
                if len(leaders) == 1 and leaders != {None} and leaders != {"0"}:
                    leader = leaders.pop()
                    for i, s in enumerate(statuses):
                        if s["header"]["member_id"] == leader:
                            return i
                last = {"cluster": f"leaders named: {sorted(map(str, leaders))}"}
            if time.monotonic() > deadline:
                logs = ", ".join(str(m.log_path) for m in self.members)
                raise EtcdError(f"etcd cluster not healthy within {timeout:.0f} s ({last}); "
                                f"member logs: {logs}\n{_tail(self.members[0].log_path)}")
            time.sleep(0.1)

    def gateway(self, i: Optional[int] = None, timeout: float = 10.0) -> Gateway:
        m = self.members[self.leader if i is None else i]
        return Gateway(m.host, m.client_port, timeout=timeout)

    def revisions(self) -> list[int]:
        out = []
        for i in range(len(self.members)):
            g = self.gateway(i)
            try:
                out.append(int(g.status()["header"]["revision"]))
            finally:
                g.close()
        return out

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self.pids:
            try:
                t = psutil.Process(pid).cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def stop(self) -> None:
        """Stop and reap every member (by PID), then remove the data (and,
        unless a start failed or ``root`` was given, the logs)."""
        procs = [m.proc for m in self.members if m.proc is not None]
        # Followers first, then the leader: a leader told to stop hands its
        # leadership to a follower first, and with the followers stopping too
        # that waits for a timeout (7 s measured); alone, it exits at once.
        # A stale leader index costs one quick hand-over, nothing more.
        lead = self.members[self.leader].proc if self.leader is not None else None
        stages = [[p for p in procs if p is not lead], [p for p in procs if p is lead]]
        try:
            for stage in stages:
                for p in stage:
                    if p.poll() is None:
                        p.terminate()
                deadline = time.monotonic() + 5.0
                for p in stage:
                    try:
                        p.wait(max(0.0, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        pass
        finally:
            # also reached on a Ctrl-C during the polite stop
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.wait()
            self._remove_files()

    def _remove_files(self) -> None:
        if self.root is None or self.keep:
            return
        if self._failed:
            # the error names the logs: keep them, drop the data
            for m in self.members:
                shutil.rmtree(m.data_dir, ignore_errors=True)
        else:
            shutil.rmtree(self.root, ignore_errors=True)


# ------------------------------------------------------------------ phases
def sync_latency(gw: Gateway, n: int, warmup: int, start_seq: int) -> dict:
    """``warmup`` then ``n`` puts one after another on one connection."""
    for i in range(warmup):
        gw.put(key_for(start_seq + i), payload(start_seq + i))
    connects = gw.connects
    base = start_seq + warmup
    lat: list[float] = []
    failed = 0
    first_error = None
    t_start = time.perf_counter()
    for i in range(n):
        k, v = key_for(base + i), payload(base + i)
        t0 = time.perf_counter()
        try:
            gw.put(k, v)
        except (OSError, http.client.HTTPException, EtcdError, ValueError) as exc:
            failed += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"
            continue
        lat.append(time.perf_counter() - t0)
    out: dict[str, Any] = {"n": n, "acked": len(lat), "failed": failed, "warmup": warmup,
                           "elapsed_s": time.perf_counter() - t_start,
                           # 0: every timed put went over the warm-up's connection
                           "reconnects": gw.connects - connects}
    if first_error:
        out["first_error"] = first_error
    if lat:
        out.update(summarize_latencies(lat))
    return out


def _worker_run(spec: dict) -> dict:
    """Body of one client process: ``connections`` threads, each putting
    on its own keep-alive connection for ``duration`` seconds."""
    conns = [Gateway(spec["host"], spec["port"]) for _ in range(int(spec["connections"]))]
    for g in conns:
        g.conn.connect()   # set-up is not timed
    go = threading.Event()
    box: dict[str, float] = {}
    results: list[dict] = [{"acked": 0, "failed": 0, "t_last": 0.0, "error": None} for _ in conns]

    def run(i: int, g: Gateway) -> None:
        go.wait()
        if "t0" not in box:   # no go: the driver gave up
            return
        t0, stop_at = box["t0"], box["t0"] + float(spec["duration"])
        seq = int(spec["start_seq"]) + i * _SEQ_SPAN
        acked = failed = 0
        t_last = t0
        err = None
        while time.perf_counter() < stop_at:
            try:
                g.put(key_for(seq), payload(seq))
                acked += 1
                t_last = time.perf_counter()
            except (OSError, http.client.HTTPException, EtcdError, ValueError) as exc:
                failed += 1
                err = err or f"{type(exc).__name__}: {exc}"
                time.sleep(0.01)   # a failing server must not be hammered
            seq += 1
        results[i] = {"acked": acked, "failed": failed, "t_last": t_last, "error": err}

    threads = [threading.Thread(target=run, args=(i, g), daemon=True) for i, g in enumerate(conns)]
    for t in threads:
        t.start()
    try:
        if not wait_for_go():
            return {"error": "no go"}
        cpu0 = time.process_time()
        box["t0"] = time.perf_counter()
        go.set()
        for t in threads:
            t.join()
        cpu = time.process_time() - cpu0
    finally:
        go.set()
        for g in conns:
            g.close()
    acked = sum(r["acked"] for r in results)
    elapsed = max(r["t_last"] for r in results) - box["t0"]
    errors = [r["error"] for r in results if r["error"]]
    return {"acked": acked, "failed": sum(r["failed"] for r in results), "elapsed_s": elapsed,
            "ops_per_s": acked / elapsed if elapsed > 0 else 0.0, "cpu_s": cpu,
            "first_error": errors[0] if errors else None,
            "connects": sum(g.connects for g in conns)}


def worker_main(spec_json: str) -> int:
    return worker_entry(spec_json, _worker_run)


def throughput(cluster: EtcdCluster, clients: int, connections: int, duration: float,
               start_seq: int) -> dict:
    """``clients`` processes x ``connections`` threads putting to the leader."""
    m = cluster.members[cluster.leader]
    specs = [{"host": m.host, "port": m.client_port, "connections": connections, "duration": duration,
              "start_seq": start_seq + c * connections * _SEQ_SPAN} for c in range(clients)]
    with WorkerProcesses("ra_actors.bench.etcd_bench") as w:
        w.start(specs)
        box: dict[str, float] = {}
        # etcd's CPU from the go line on (connection set-up not counted)
        results = w.run(timeout=duration + 120.0, on_go=lambda: box.setdefault("cpu0", cluster.cpu_seconds()))
        cpu = cluster.cpu_seconds() - box["cpu0"]
    for r in results:
        if "error" in r:
            raise EtcdError(f"client failed: {r['error']}\n{r.get('traceback', '')}")
    acked = sum(r["acked"] for r in results)
    errors = [r["first_error"] for r in results if r.get("first_error")]
    return {"clients": clients, "connections": connections, "inflight": clients * connections,
            "duration_s": duration, "acked": acked, "failed": sum(r["failed"] for r in results),
            "elapsed_s": max(r["elapsed_s"] for r in results),
            "ops_per_s": sum(r["ops_per_s"] for r in results),
            "etcd_cpu_ms_per_put": 1000.0 * cpu / acked if acked else None,
            "client_cpu_ms_per_put": 1000.0 * sum(r["cpu_s"] for r in results) / acked if acked else None,
            "first_error": errors[0] if errors else None}


def consistency(cluster: EtcdCluster, rev0: int, acked: int, failed: int, timeout: float = 15.0) -> dict:
    """Every member at the same revision, grown by the acknowledged puts
    (plus at most the failed ones, whose outcome is unknown)."""
    deadline = time.monotonic() + timeout
    while True:
        revs = cluster.revisions()
        grown = revs[0] - rev0
        same = len(set(revs)) == 1
        ok = same and acked <= grown <= acked + failed
        if ok or time.monotonic() > deadline:
            return {"ok": ok, "revisions": revs, "revision_before": rev0, "grown": grown, "acked": acked,
                    "failed": failed}
        time.sleep(0.1)


# ------------------------------------------------------------------ run
def run_etcd(sync: int = 2000, warmup: int = 100, clients: int = 8, connections: int = 8,
             duration: float = 5.0, binary: Optional[str] = None, root: Optional[str] = None,
             progress: Callable[[str], None] = lambda s: None) -> dict:
    """Start a 3-member cluster, measure, stop it; the result has every key
    of :data:`RESULT_KEYS` (``skipped`` when there is no ``etcd``).
    Failures to start or measure raise :class:`EtcdError`."""
    binary = binary or find_etcd()
    if binary is None:
        return skipped(MISSING_REASON)
    version = etcd_version(binary)
    out = skipped("")
    out.update(skipped=False, reason=None, version=version, binary=binary, members=3,
               client=CLIENT_DESCRIPTION)
    progress(f"etcd {version}: starting 3 members on loopback")
    with EtcdCluster(binary, root=root) as cluster:
        out["start_s"] = cluster.start_s
        gw = cluster.gateway()
        try:
            progress(f"etcd: warm-up ({warmup} puts)")
            sync_latency(gw, 0, warmup, start_seq=0)
            rev0 = cluster.revisions()[cluster.leader]
            progress(f"etcd: throughput {clients} clients x {connections} connections ({duration} s)")
            tp = throughput(cluster, clients, connections, duration, start_seq=_SEQ_SPAN)
            progress("etcd: consistency check")
            cons = consistency(cluster, rev0, tp["acked"], tp["failed"])
            progress(f"etcd: sync latency ({sync} puts, one client)")
            # warmed up again: the connection sat idle through the throughput run
            sy = sync_latency(gw, sync, warmup, start_seq=10_000 * _SEQ_SPAN)
        finally:
            gw.close()
    out.update({k: tp[k] for k in ("ops_per_s", "clients", "connections", "inflight", "duration_s", "acked",
                                   "failed", "etcd_cpu_ms_per_put", "client_cpu_ms_per_put")})
    out.update(sync_p50_ms=sy.get("p50_ms"), sync_p99_ms=sy.get("p99_ms"), sync_mean_ms=sy.get("mean_ms"),
               sync_max_ms=sy.get("max_ms"), sync_n=sy["acked"], sync_failed=sy["failed"],
               consistent=cons["ok"], sync=sy, throughput=tp, consistency=cons)
    return out


def format_report(res: dict) -> str:
    """The etcd section of the benchmark's text report."""
    if res.get("skipped"):
        return f"etcd: not measured: {res.get('reason')}"
    if res.get("error"):
        return f"etcd: FAILED: {res['error']}"
    head = (f"etcd {res['version']}: 3 members on loopback, {res['fsync']}; 16-byte values; "
            f"client: {res['client']}")
    tp = format_table(["clients x connections", "in flight", "ops/s", "etcd CPU ms/put", "client CPU ms/put",
                       "acked", "failed"],
                      [[f"{res['clients']} x {res['connections']}", res["inflight"], res["ops_per_s"],
                        res["etcd_cpu_ms_per_put"], res["client_cpu_ms_per_put"], res["acked"], res["failed"]]])
    sy = format_table(["sync (1 client, leader)", "n", "p50 ms", "p99 ms", "mean ms", "max ms"],
                      [["put", res["sync_n"], res["sync_p50_ms"], res["sync_p99_ms"], res["sync_mean_ms"],
                        res["sync_max_ms"]]])
    c = res.get("consistency") or {}
    cons = (f"consistency [etcd]: {'OK' if res.get('consistent') else 'FAILED'} (revision grew by "
            f"{c.get('grown')} for {c.get('acked')} acknowledged puts; members at {c.get('revisions')})")
    return "\n".join([head, "", tp, "", sy, "", cons])


def _raise_system_exit(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)   # so the finally blocks stop the members


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ra_actors.bench.etcd_bench",
                                 description="etcd side of scripts/bench.py on its own")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--sync", type=int, default=2000, help="synchronous puts (default 2000)")
    ap.add_argument("--warmup", type=int, default=100, help="puts before measuring (default 100)")
    ap.add_argument("--clients", type=int, default=8, help="client processes (default 8)")
    ap.add_argument("--connections", type=int, default=8, help="connections (threads) per client (default 8)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of the throughput run (default 5)")
    ap.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    signal.signal(signal.SIGTERM, _raise_system_exit)
    res = run_etcd(sync=args.sync, warmup=args.warmup, clients=args.clients, connections=args.connections,
                   duration=args.duration,
                   progress=lambda s: print(f"[{time.strftime('%H:%M:%S')}] {s}", file=sys.stderr, flush=True))
    print(format_report(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    return 0 if res.get("skipped") or res.get("consistent") else 1


if __name__ == "__main__":
    sys.exit(main())
