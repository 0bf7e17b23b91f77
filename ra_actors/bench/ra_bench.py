"""The ra_actors side of the benchmark (``scripts/bench.py``).

Shape (the same as :mod:`ra_actors.bench.pysyncobj_bench`):

* **Topology.** Three local nodes (``local_nodes(["n1", "n2", "n3"])``), WAL
  ``sync_method="datasync"``: every WAL batch is ``fdatasync``-ed before any
  server counts its entries as written.
* **Commands.** 16 bytes: an 8-byte little-endian sequence number plus 8
  fixed bytes.  To :mod:`ra_actors.bench.null_machine` (counts and chains a
  CRC-32 over the payloads) the command is the 16-byte ``bytes`` itself; to
  ``machines.kv`` it is ``("write", seq % 1024, payload)``.
* **Pipelined throughput.** Each client is a separate OS process
  (``python -m ra_actors.bench.ra_bench --worker``) using the public client
  API: ``pipeline_command(leader, cmd, correlation)`` with at most ``W``
  commands not yet acknowledged by an ``Applied`` event.  Clients connect
  first, then start together; each submits for ``duration`` seconds, then
  stops submitting and waits for what is in flight.  ops/s = acknowledged
  commands / (last acknowledgement - start), summed over clients.
* **Sync latency.** One client (in the driver process), ``process_command``
  to the leader, one after another; p50/p99/max nearest-rank.
* **Durability check.** At the end every member of every cluster is asked
  (``local_query``) for its machine state: for the null machine all members
  must hold ``count == acknowledged commands`` and the same digest; for kv all
  members must hold the same digest of the store and the same last index.
* **Placement.** ``RaBench(placement=...)`` is passed to ``local_nodes``:
  ``"process"`` (one OS process per Raft server) or ``"shared"`` (one host
  actor per node carries every server of the node and the node's WAL).
* **Scale.** ``C`` clusters of three servers (one per node) of the null
  machine: time to start them all (``start_clusters``: several client
  threads in parallel, each with its own ``Client``, which is not
  thread-safe), memory (RSS and USS summed over every process of the three
  nodes), CPU used by those processes during an idle window, Thespian
  messages received per second by servers and supervisors in that window
  (their ``msgs_in`` counters; for many servers a fixed random sample of
  the servers, extrapolated), then the aggregate pipelined throughput with
  every cluster (or a given subset) busy.  The reading helpers
  (``durability``, ``liveness``, ``server_messages``, leader lookups) take
  ``workers``: that many client threads share the requests.

Benchmarks report speed, they never assert it.  Every process this module
starts is stopped by its PID (worker clients, :mod:`ra_actors.bench.workers`)
or through ``local_nodes`` (nodes, by process group); nothing is killed by
name.
"""
from __future__ import annotations

import argparse
import random
import struct
import sys
import threading
import time
from typing import Any, Callable, Optional

import psutil

from ..client.clusters import START_BATCH
from ..core.types import ServerId
from .stats import summarize_latencies
from .workers import WorkerProcesses, wait_for_go, worker_entry

__all__ = ["payload", "command_for", "RaBench", "NULL_MACHINE", "KV_MACHINE"]

NULL_MACHINE = "ra_actors.bench.null_machine"
KV_MACHINE = "machines.kv"
MACHINES = {"null": NULL_MACHINE, "kv": KV_MACHINE}
PAYLOAD_BYTES = 16
_TAIL = b"ra_actor"
NODES = ("n1", "n2", "n3")


def payload(seq: int) -> bytes:
    return struct.pack("<Q8s", seq, _TAIL)


def command_for(kind: str, seq: int):
    p = payload(seq)
    if kind == "null":
        return p
    return ("write", seq % 1024, p)


# ------------------------------------------------------------------ worker
def _worker_run(spec: dict) -> dict:
    """Body of one client process: pipeline to ``spec["targets"]``."""
    import ra_actors as ra
    # pipeline_batch: a client flush carries up to the whole window (one
    # Pipeline message per leader per flush)
    client = ra.connect([tuple(a) for a in spec["addrs"]], timeout=30.0, cookie_file=spec["cookie_file"],
                        pipeline_batch=int(spec.get("pipeline_batch") or 256))
    try:
        worker = _PipelineWorker(client, spec)
        if not wait_for_go():
            return {"error": "no go"}
        return worker.run()
    finally:
        client.close()


class _PipelineWorker:
    """What one client process keeps per target cluster while it pipelines:
    the server it sends to, the next sequence number, and how many commands
    are submitted, in flight and acknowledged.

    A command's correlation is ``seq * 1024 + target index``, so an
    ``Applied`` or ``Rejected`` event is attributed to its cluster whoever
    leads it now.  ``run`` submits for ``duration`` seconds, keeping
    ``window`` commands in flight per target, then waits for what is in
    flight (at most ``DRAIN_S``)."""

    CORRELATION_SPAN = 1024
    DRAIN_S = 60.0

    def __init__(self, client, spec: dict) -> None:
        self.client = client
        self.targets = [ServerId(*t["leader"]) for t in spec["targets"]]
        self.kinds = [t["kind"] for t in spec["targets"]]
        self.seqs = [t["start_seq"] for t in spec["targets"]]
        self.window = int(spec["window"])
        self.duration = float(spec["duration"])
        self.inflight = [0] * len(self.targets)
        self.acked = [0] * len(self.targets)
        self.submitted = [0] * len(self.targets)
        self.rejected = 0
        self.duplicates = 0
        self.seen: set = set()
        if len(self.targets) >= self.CORRELATION_SPAN:
            raise ValueError("at most 1023 clusters per client")

    def _owner(self, corr: int) -> int:
        return corr % self.CORRELATION_SPAN

    def run(self) -> dict:
        from ra_actors import events as ev
        t0 = time.perf_counter()
        t_last = t0
        stop_at = t0 + self.duration
        deadline = stop_at + self.DRAIN_S
        while True:
            now = time.perf_counter()
            if now < stop_at:
                self._fill_windows()
            elif not any(self.inflight) or now > deadline:
                break
            for e in self.client.events(timeout=1.0):
                if isinstance(e, ev.Applied):
                    self._count_applied(e.results)
                    t_last = time.perf_counter()
                elif isinstance(e, (ev.Rejected, ev.TimedOut)):
                    self._follow_rejection(e)
        return self._result(t_last - t0)

    def _fill_windows(self) -> None:
        """Top every target up to ``window`` commands in flight."""
        client, window, inflight, seqs = self.client, self.window, self.inflight, self.seqs
        span = self.CORRELATION_SPAN
        for i, sid in enumerate(self.targets):
            free = window - inflight[i]
            if free > 0:
                kind = self.kinds[i]
                s = seqs[i]
                for _ in range(free):
                    client.pipeline_command(sid, command_for(kind, s), s * span + i)
                    s += 1
                seqs[i] = s
                self.submitted[i] += free
                inflight[i] = window

    def _count_applied(self, results) -> None:
        """Attributed by correlation (= sequence number): every target has
        its own range, whoever leads it now."""
        seen, acked, inflight = self.seen, self.acked, self.inflight
        for corr, _reply in results:
            if corr in seen:
                # one entry, two Applied events: the leader that
                # applied it and a new leader that applied it again
                # after taking over (Ra does the same) -- one command
                self.duplicates += 1
                continue
            seen.add(corr)
            i = self._owner(corr)
            acked[i] += 1
            inflight[i] -= 1

    def _follow_rejection(self, event) -> None:
        """A command the client gave up on (``TimedOut``) or the cluster
        refused: no longer in flight.  (The client itself sends commands a
        non-leader turned away on to the leader; a program speaking to the
        servers directly would see ``NotLeader`` here: the next ones go to
        the leader it names.)"""
        from ra_actors import events as ev
        self.rejected += 1
        reason = event.reason if isinstance(event, ev.Rejected) else event
        i = self._owner(reason.correlation)
        self.inflight[i] -= 1
        if isinstance(reason, ev.NotLeader) and reason.leader is not None:
            self.targets[i] = ServerId(*reason.leader)

    def _result(self, elapsed: float) -> dict:
        return {"acked": self.acked, "submitted": self.submitted, "rejected": self.rejected,
                "duplicate_acks": self.duplicates,
                "inflight_left": self.inflight, "elapsed_s": elapsed,
                "ops_per_s": sum(self.acked) / elapsed if elapsed > 0 else 0.0}


def worker_main(spec_json: str) -> int:
    return worker_entry(spec_json, _worker_run)


# ------------------------------------------------------------------ driver
class BenchError(RuntimeError):
    pass


class RaBench:
    """Three local nodes and the clusters started on them (a context manager).

    ``placement`` (``"process"`` or ``"shared"``) goes to ``local_nodes``."""

    def __init__(self, progress: Callable[[str], None] = lambda s: None,
                 data_root: Optional[str] = None, sync_method: str = "datasync",
                 placement: str = "process"):
        if placement not in ("process", "shared"):
            raise ValueError(f"placement must be 'process' or 'shared', got {placement!r}")
        self.progress = progress
        self.data_root = data_root
        self.sync_method = sync_method
        self.placement = placement
        self.nodes = None
        self.client = None
        self._pool: list = []                 # extra clients for worker threads (one each)
        self.clusters: dict[str, dict] = {}   # name -> {kind, members, leader, acked, seq}
        self.pipeline_batch = 256             # client flush size (Client's default)
        self.server_config: dict = {}         # extra ServerConfig fields for start_cluster

    def __enter__(self):
        import ra_actors as ra
        t0 = time.monotonic()
        self.nodes = ra.local_nodes(list(NODES), data_root=self.data_root,
                                    log_options={"sync_method": self.sync_method},
                                    placement=self.placement, allowed_modules=["ra_actors.bench"])
        self.node_start_s = time.monotonic() - t0
        self.client = self.nodes.client()
        return self

    def __exit__(self, *exc):
        if self.nodes is not None:
            self.nodes.close()
        return False

    @property
    def addrs(self):
        return [list(self.nodes.addresses()[n]) for n in NODES]

    # -- client threads -------------------------------------------------------
    def clients(self, n: int) -> list:
        """``n`` clients, one per thread (``self.client`` first; the others
        are created once and closed with the nodes)."""
        n = max(1, int(n))
        while len(self._pool) < n - 1:
            self._pool.append(self.nodes.client())
        return [self.client] + self._pool[:n - 1]

    def parallel(self, items: list, fn: Callable[[Any, Any], Any], workers: int = 1,
                 every: int = 0, label: str = "") -> list:
        """``[fn(client, item) for item in items]`` with ``workers`` threads,
        each with its own client.  The first exception stops every thread and
        is raised.  ``every``: progress line every that many items."""
        items = list(items)
        out: list = [None] * len(items)
        if not items:
            return out
        clients = self.clients(min(workers, len(items)))
        if len(clients) == 1:
            t0 = time.monotonic()
            for i, item in enumerate(items):
                out[i] = fn(clients[0], item)
                if every and (i + 1) % every == 0:
                    self.progress(f"{label}{i + 1} of {len(items)} ({time.monotonic() - t0:.0f} s)")
            return out
        lock = threading.Lock()
        state = {"next": 0, "done": 0, "error": None}
        t0 = time.monotonic()

        def run(client):
            while True:
                with lock:
                    if state["error"] is not None or state["next"] >= len(items):
                        return
                    i = state["next"]
                    state["next"] += 1
                try:
                    out[i] = fn(client, items[i])
                except BaseException as exc:  # noqa: BLE001 - raised by the caller's thread
                    with lock:
                        if state["error"] is None:
                            state["error"] = exc
                    return
                with lock:
                    state["done"] += 1
                    done = state["done"]
                if every and done % every == 0:
                    self.progress(f"{label}{done} of {len(items)} ({time.monotonic() - t0:.0f} s)")

        threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if state["error"] is not None:
            raise state["error"]
        return out

    # -- clusters ----------------------------------------------------------
    def start_cluster(self, name: str, kind: str, client=None, find_leader: bool = True,
                      first: int = 0) -> dict:
        """Start cluster ``name`` (one server per node).  The election is
        triggered on the member of node ``NODES[first]``, which usually
        becomes the leader."""
        import ra_actors as ra
        client = client or self.client
        order = NODES[first % len(NODES):] + NODES[:first % len(NODES)]
        sids = [ra.ServerId(name, n) for n in order]
        started, not_started = client.start_cluster(name, MACHINES[kind], sids, timeout=60.0,
                                                    **self.server_config)
        if not_started:
            raise BenchError(f"cluster {name}: servers not started: {not_started}")
        rec = {"kind": kind, "members": sids,
               "leader": self.leader_of(sids, client=client) if find_leader else None,
               "acked": 0, "seq": 0, "submitted": 0}
        self.clusters[name] = rec
        return rec

    def start_clusters(self, names: list[str], kind: str, starters: int = 1, every: int = 100,
                       label: str = "") -> float:
        """Start ``names`` with ``client.start_clusters``, 16 x ``START_BATCH``
        clusters per call (it starts them ``START_BATCH`` at a time) from
        ``starters`` client threads in parallel; returns the wall time it
        took.  Progress line about every ``every`` clusters.  The leaders
        are spread over the nodes (cluster ``i`` of ``names`` is elected
        from node ``i % 3``), as in a real deployment."""
        import ra_actors as ra
        t0 = time.monotonic()
        chunk = 16 * START_BATCH
        batches = [list(enumerate(names))[i:i + chunk] for i in range(0, len(names), chunk)]

        def start(client, batch):
            specs = {}
            for i, name in batch:
                order = NODES[i % len(NODES):] + NODES[:i % len(NODES)]
                specs[name] = [ra.ServerId(name, n) for n in order]
            formed = client.start_clusters(specs, MACHINES[kind], timeout=120.0, **self.server_config)
            for name, sids in specs.items():
                if formed[name][1]:
                    raise BenchError(f"cluster {name}: servers not started: {formed[name][1]}")
                self.clusters[name] = {"kind": kind, "members": sids, "leader": None,
                                       "acked": 0, "seq": 0, "submitted": 0}

        self.parallel(batches, start, workers=starters, every=max(1, every // chunk),
                      label=f"{label}calls of {chunk} clusters done ")
        return time.monotonic() - t0

    def leader_of(self, sids, timeout: float = 30.0, client=None):
        import ra_actors as ra
        client = client or self.client
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for sid in sids:
                try:
                    _m, leader = client.members(sid, timeout=2.0)
                except ra.errors.RaError:
                    continue
                if leader is not None:
                    return leader
            time.sleep(0.05)
        raise BenchError(f"no leader for {sids}")

    def liveness(self, names: list[str], workers: int = 1, timeout: float = 10.0) -> dict:
        """Cheap check that ``names`` are alive: ``members`` of one member
        answers with a leader (within ``timeout`` per cluster)."""
        def one(client, name):
            try:
                self.leader_of(self.clusters[name]["members"], timeout=timeout, client=client)
                return None
            except Exception as exc:  # noqa: BLE001 - recorded
                return f"{type(exc).__name__}: {exc}"
        res = self.parallel(names, one, workers=workers)
        bad = {n: r for n, r in zip(names, res) if r is not None}
        return {"checked": len(names), "ok": not bad, "bad": bad}

    # -- pipelined ------------------------------------------------------------
    def pipelined(self, names: list[str], window: int, clients: int, duration: float,
                  workers: int = 1) -> dict:
        """``clients`` client processes share ``names`` (each cluster driven by
        exactly one client); ``window`` commands in flight per cluster per client.
        ``workers``: client threads looking up the leaders first."""
        groups: list[list[str]] = [[] for _ in range(clients)]
        if len(names) >= clients:
            for i, n in enumerate(names):
                groups[i % clients].append(n)
        else:   # more clients than clusters: several clients per cluster
            for i in range(clients):
                groups[i].append(names[i % len(names)])
        uniq = sorted(set(names), key=names.index)
        leaders = self.parallel(uniq, lambda c, n: self.leader_of(self.clusters[n]["members"], client=c),
                                workers=workers)
        for n, leader in zip(uniq, leaders):
            self.clusters[n]["leader"] = leader
        specs = []
        owners = []
        for g in groups:
            targets = []
            for n in g:
                rec = self.clusters[n]
                leader = rec["leader"]
                # disjoint sequence ranges: 10^9 per client slot
                start = rec["seq"]
                rec["seq"] += 1_000_000_000
                targets.append({"leader": [leader.name, leader.node], "kind": rec["kind"],
                                "start_seq": start})
            specs.append({"addrs": self.addrs, "cookie_file": self.nodes.cookie_file, "targets": targets,
                          "window": window, "duration": duration, "pipeline_batch": self.pipeline_batch})
            owners.append(g)
        pids = self.node_pids()
        with WorkerProcesses("ra_actors.bench.ra_bench") as w:
            w.start(specs)
            cpu0 = self.cpu_seconds(pids)
            results = w.run(timeout=duration + 120.0)
            cpu1 = self.cpu_seconds(pids)
        total_acked = 0
        rejected = 0
        duplicates = 0
        uncertain = 0
        elapsed = []
        for g, r in zip(owners, results):
            if "error" in r:
                raise BenchError(f"client failed: {r['error']}\n{r.get('traceback', '')}")
            for n, a, s, left in zip(g, r["acked"], r["submitted"], r["inflight_left"]):
                self.clusters[n]["acked"] += a
                self.clusters[n]["submitted"] += s
                uncertain += left
            total_acked += sum(r["acked"])
            rejected += r["rejected"]
            duplicates += r.get("duplicate_acks", 0)
            elapsed.append(r["elapsed_s"])
        ops = sum(r["ops_per_s"] for r in results)
        return {"window": window, "clients": clients, "clusters": len(names), "duration_s": duration,
                "acked": total_acked, "rejected": rejected, "unacknowledged": uncertain,
                "duplicate_acks": duplicates,
                "elapsed_s": max(elapsed), "ops_per_s": ops,
                # CPU of the node processes per command (less sensitive to a
                # busy machine than ops/s; includes clients' connect/close)
                "node_cpu_ms_per_cmd": 1000.0 * (cpu1 - cpu0) / total_acked if total_acked else None}

    # -- sync -----------------------------------------------------------------
    def sync_latency(self, name: str, n: int) -> dict:
        rec = self.clusters[name]
        leader = self.leader_of(rec["members"])
        lat = []
        failed = 0
        base = rec["seq"]
        rec["seq"] += 1_000_000_000
        pc = self.client.process_command
        kind = rec["kind"]
        t_start = time.perf_counter()
        for i in range(n):
            cmd = command_for(kind, base + i)
            t0 = time.perf_counter()
            try:
                pc(leader, cmd, timeout=10.0)
            except Exception:  # noqa: BLE001 - counted, the run goes on
                failed += 1
                rec["submitted"] += 1
                continue
            lat.append(time.perf_counter() - t0)
        rec["acked"] += len(lat)
        rec["submitted"] += len(lat)
        out = {"n": n, "acked": len(lat), "failed": failed, "elapsed_s": time.perf_counter() - t_start}
        if lat:
            out.update(summarize_latencies(lat))
        return out

    # -- durability -------------------------------------------------------------
    def durability(self, names: Optional[list[str]] = None, timeout: float = 30.0,
                   workers: int = 1, total_timeout: Optional[float] = None) -> dict:
        """Every acknowledged command is applied on every member (waits up to
        ``timeout`` per cluster for followers to catch up); ``workers``
        client threads share the clusters.  After ``total_timeout`` (if
        given) the remaining clusters are checked once, without waiting."""
        names = list(self.clusters) if names is None else list(names)
        end = None if total_timeout is None else time.monotonic() + total_timeout

        def one(client, name):
            t = timeout if end is None else max(0.0, min(timeout, end - time.monotonic()))
            return self._durable(client, name, t)
        results = self.parallel(names, one, workers=workers)
        bad = {n: r for n, r in zip(names, results) if r is not None}
        return {"clusters_checked": len(names), "ok": not bad, "bad": bad,
                "acked_total": sum(self.clusters[n]["acked"] for n in names)}

    def _durable(self, client, name: str, timeout: float):
        """None if cluster ``name`` passes the check, else what was seen."""
        # per cluster: a member that lags (e.g. its node was briefly declared
        # down) gets ``timeout`` seconds to catch up
        deadline = time.monotonic() + timeout
        rec = self.clusters[name]
        # (queries name functions of the cluster's own machine)
        fun = "ra_actors.bench.null_machine:read" if rec["kind"] == "null" else "machines.kv:digest"
        while True:
            states = []
            for sid in rec["members"]:
                try:
                    (idx_term, value), _l = client.local_query(sid, fun, timeout=5.0)
                    states.append((tuple(value), idx_term[0]))
                except Exception as exc:  # noqa: BLE001
                    states.append((repr(exc), None))
            values = {s[0] for s in states}
            # same machine state on every member (last indexes may differ by
            # entries that do not change it, e.g. a new leader's noop)
            ok = len(values) == 1 and all(s[1] is not None for s in states)
            if ok and rec["kind"] == "null":
                count = next(iter(values))[0]
                # every acknowledged command applied (and nothing else, unless
                # a command's outcome was unknown)
                ok = count >= rec["acked"] and (count == rec["acked"] or
                                                rec["submitted"] > rec["acked"])
            if ok or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if not ok:
            return {"acked": rec["acked"], "states": [list(map(str, s)) for s in states]}
        return None

    # -- resources --------------------------------------------------------------
    def node_pids(self) -> list[int]:
        return sorted(set(self.nodes.all_pids()))

    def memory(self) -> dict:
        rss = uss = 0
        n = 0
        for pid in self.node_pids():
            try:
                mi = psutil.Process(pid).memory_full_info()
            except psutil.Error:
                continue
            rss += mi.rss
            uss += mi.uss
            n += 1
        return {"processes": n, "rss_mb": rss / 2**20, "uss_mb": uss / 2**20}

    def cpu_seconds(self, pids) -> float:
        total = 0.0
        for pid in pids:
            try:
                t = psutil.Process(pid).cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def supervisor_messages(self) -> int:
        """Thespian messages received so far by the three supervisors."""
        return sum(int(self.client.overview(node, timeout=10.0).get("msgs_in", 0)) for node in NODES)

    def all_servers(self) -> list:
        return [sid for rec in self.clusters.values() for sid in rec["members"]]

    def server_messages(self, sids: Optional[list] = None, workers: int = 1) -> tuple[int, int]:
        """``(messages, servers asked)``: Thespian messages received so far by
        ``sids`` (default: every server; ``msgs_in`` in ``member_overview``)."""
        sids = self.all_servers() if sids is None else list(sids)
        counts = self.parallel(
            sids, lambda c, sid: int(c.member_overview(sid, timeout=10.0).get("stats", {}).get("msgs_in", 0)),
            workers=workers)
        return sum(counts), len(sids)

    def idle(self, seconds: float, server_sample: Optional[int] = None, workers: int = 1,
             seed: int = 7) -> dict:
        """CPU and messages of the nodes over ``seconds`` of idleness.

        Supervisors are read right at both ends of the window.  Servers are
        read before and after that (reading 900 servers takes minutes on a
        busy machine), so their count covers a longer span: the figure is an
        upper bound.  Each actor counts the reading request itself, which is
        subtracted.  With ``server_sample`` (and more servers than that) only
        a fixed random sample of that many servers is read (``seed``) and
        their count is extrapolated to every server (``server_msgs``;
        ``server_msgs_sampled`` is what the sample received)."""
        pids = self.node_pids()
        every = self.all_servers()
        sids = every
        if server_sample and len(every) > server_sample:
            sids = random.Random(seed).sample(every, int(server_sample))
        r0 = time.monotonic()
        s0, _ = self.server_messages(sids, workers)
        read_s = time.monotonic() - r0
        m0 = self.supervisor_messages()
        c0 = self.cpu_seconds(pids)
        t0 = time.monotonic()
        time.sleep(seconds)
        c1 = self.cpu_seconds(pids)
        t1 = time.monotonic()
        m1 = self.supervisor_messages()
        s1, asked = self.server_messages(sids, workers)
        sup = max(0, m1 - m0 - len(NODES))
        sampled = max(0, s1 - s0 - asked)
        srv = sampled * len(every) / asked if asked else 0
        if asked == len(every):
            srv = sampled
        return {"seconds": t1 - t0, "cpu_pct": 100.0 * (c1 - c0) / (t1 - t0),
                "msgs": sup + srv, "supervisor_msgs": sup, "server_msgs": srv,
                "servers": len(every), "servers_read": asked, "server_msgs_sampled": sampled,
                "server_read_s": read_s, "sampled": asked < len(every),
                "msgs_per_s": (sup + srv) / (t1 - t0)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ra_actors.bench.ra_bench")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    ap.error("use scripts/bench.py")
    return 2


if __name__ == "__main__":
    sys.exit(main())
