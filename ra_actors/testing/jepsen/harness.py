"""Jepsen-style runs against real ra_actors nodes (``scripts/jepsen.py``).

Usage::

    python scripts/jepsen.py --short --nemesis kill,partition --out OUT
    python scripts/jepsen.py --time 1200 --nemesis combined --out OUT
    python scripts/jepsen.py --short --nemesis partition-leader --unsafe stale_reads --out OUT
    python scripts/jepsen.py --workload counter --short --nemesis kill,pause,partition --out OUT

What a run does:

1. As root with ``ip`` and ``iptables``, create a network namespace
   ``ra_jepsen_<pid>`` and re-run itself inside it (``ip netns exec``);
   the namespace is deleted at the end, also on errors and Ctrl-C, after
   killing anything of the run still inside it.  Otherwise run in place and
   report the partition nemesis as unavailable.
2. Start ``--nodes`` real nodes (own process group, data dir
   ``OUT/nodes/<name>`` and loopback address each; see :mod:`.cluster`; a
   64 MiB tmpfs each when the nemesis fills disks, see :mod:`.disk`), a
   cluster on them -- ``machines.kv`` (``--workload kv``, the default),
   ``machines.counter`` (``--workload counter``, :mod:`.counter`) or
   ``machines.sqlite`` with its accounts (``--workload bank``, :mod:`.bank`) -- and
   ``--clients`` client processes (:mod:`.clients`) for ``--time`` seconds.
3. Meanwhile the nemesis (:mod:`.nemesis`) injects the ``--nemesis`` faults
   and logs them to ``OUT/nemesis.jsonl``.
4. Heal everything, wait for the cluster to converge, read every key (the
   counter) once more (recorded in the history as process ``--clients``),
   stop every process and check that none is left (``RA_JEPSEN_RUN`` marker).
5. Merge the histories into ``OUT/history.jsonl``; kv: check
   linearizability per key and durability of every acknowledged write;
   counter: check that the counter holds every acknowledged add once and
   at most the uncertain ones on top (:func:`.counter.check_counter`);
   bank: every read a consistent cut, the final transfers exactly the
   acknowledged ones plus some uncertain ones, each applied once
   (:func:`.bank.check_bank`).
   Write ``OUT/summary.json`` and print the summary (``--json``: print the
   JSON).

Exit status: 0 linearizable (counter: valid) and nothing acknowledged lost;
1 not linearizable, an acknowledged write lost, (counter) an add lost or
applied twice, or a damaged member that did not report its corruption
(``--nemesis disk``); 2 usage error; 3 inconclusive (checker budget
exceeded, no recovery, final reads incomplete, processes left over,
harness error or interrupted).
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from typing import Optional

import psutil

from ..history import FAIL, OK, HistoryRecorder
from . import disk, report
from .cluster import (CLUSTER, MACHINE, RUN_MARKER, JepsenCluster, connect_any, install_shim,
                      leader_by_metrics, wait_until)
from . import bank, counter
from .clients import READ_FUNCTION
from .nemesis import DISK, NAMES, Nemesis, NemesisLog, Timing, parse_nemesis
from .partition import IptablesPartitioner, Netns, PartitionError, UnavailablePartitioner, netns_unavailable

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

SHORT = {"time": 45.0, "nodes": 5, "clients": 10, "keys": 5, "key_period": 30.0}
LONG = {"time": 300.0, "nodes": 5, "clients": 10, "keys": 5, "key_period": 30.0}


# ------------------------------------------------------------------ options
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--time", type=float, default=None,
                   help="seconds of workload (default 300; 45 with --short)")
    p.add_argument("--nodes", type=int, default=None, help="number of nodes (default 5)")
    p.add_argument("--clients", type=int, default=None, help="client processes (default 10)")
    p.add_argument("--keys", type=int, default=None, help="keys in use at any time (default 5)")
    p.add_argument("--key-period", type=float, default=None,
                   help="seconds before each key slot moves to a fresh key (default 30; 0 = never)")
    p.add_argument("--nemesis", default=None,
                   help=f"comma-separated faults: {', '.join(NAMES)} (default kill,partition; "
                        f"kill,pause,partition for the counter workload)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    p.add_argument("--out", default=None, help="output directory (default jepsen-out/<time>)")
    p.add_argument("--short", action="store_true",
                   help="CI mode: 45 s of workload and short faults")
    p.add_argument("--workload", choices=("kv", "counter", "bank"), default="kv",
                   help="kv: read/write/cas registers, checked for linearizability (default); counter: "
                        "increments sent until answered, checked for exactly-once; bank: transfers "
                        "between accounts as SQL transactions on machines.sqlite, checked for "
                        "consistent reads and an unchanged total")
    p.add_argument("--op-timeout", type=float, default=None,
                   help="timeout of each operation (s; default 3, 10 for the counter workload)")
    p.add_argument("--snapshot-every", type=int, default=500,
                   help="kv machine release_cursor_every (snapshot every N commands; 0 = never)")
    p.add_argument("--check-time-limit", type=float, default=60.0,
                   help="linearizability search budget per key (s); exceeded = inconclusive")
    p.add_argument("--unsafe", default="",
                   help="deliberate core bugs to switch on in the nodes (e.g. stale_reads): "
                        "the run is then expected to FAIL")
    p.add_argument("--duplicate-sends", action="store_true",
                   help="clients send every command message twice, as a transport that redelivers "
                        "may: the cluster's sessions must still apply each command once")
    p.add_argument("--node-env", action="append", default=[], metavar="NAME=VALUE",
                   help="environment variable for the node processes (repeatable), e.g. "
                        "THESPIAN_MAX_PENDING_TRANSMITS=100000")
    p.add_argument("--partition-mode", choices=("drop", "reject"), default="drop",
                   help="partitions drop packets silently (default, as Jepsen does) or reject "
                        "TCP with a reset")
    p.add_argument("--no-netns", action="store_true",
                   help="do not create a network namespace (partitions become unavailable)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--placement", choices=("process", "shared"), default="process",
                   help="where the nodes run their servers (start_node placement); with "
                        "'shared', kill-wal kills the host actor that carries the node's servers")
    p.add_argument("--wal-dirs", type=int, default=1, metavar="K",
                   help="WAL directories per node (default 1): the data directory's and OUT/wal<j>/<node> "
                        "for j in 1..K-1 (start_node wal_dirs); the cluster's members write to the one "
                        "their uid hashes to, and kill-wal kills one of the node's WALs")
    p.add_argument("--inside-netns", default=None, help=argparse.SUPPRESS)
    p.add_argument("--args-file", default=None, help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jepsen.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def add_parser(subparsers) -> None:
    """Hook for ``ra-actors jepsen`` (the CLI's group convention)."""
    p = subparsers.add_parser("jepsen", help="Jepsen-style run: real nodes, faults, linearizability",
                              description="Jepsen-style run against real nodes (see docs/testing.rst).")
    add_arguments(p)
    p.set_defaults(func=run_from_args)


def _resolve(args: argparse.Namespace) -> argparse.Namespace:
    base = SHORT if args.short else LONG
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 2**31)
    if args.nemesis is None:
        args.nemesis = "kill,pause,partition" if args.workload in ("counter", "bank") else "kill,partition"
    if args.op_timeout is None:
        args.op_timeout = 10.0 if args.workload in ("counter", "bank") else 3.0
    if args.out is None:
        args.out = os.path.join("jepsen-out", time.strftime("%Y%m%d-%H%M%S"))
    args.out = os.path.abspath(args.out)
    if os.path.isdir(args.out) and os.listdir(args.out) and not any(
            os.path.exists(os.path.join(args.out, f)) for f in ("args.json", "harness.log", "summary.json")):
        # A run clears OUT/nodes, OUT/clients, ...: never in someone else's directory.
        raise ValueError(f"--out {args.out} is a non-empty directory that holds no earlier run")
    if args.nodes < 1 or args.clients < 1 or args.keys < 1 or args.time <= 0:
        raise ValueError("--nodes, --clients, --keys and --time must be positive")
    if args.nodes > 250:
        raise ValueError("at most 250 nodes")
    args.faults = parse_nemesis(args.nemesis)
    if args.wal_dirs < 1:
        raise ValueError("--wal-dirs must be at least 1")
    if args.wal_dirs > 1 and any(f in DISK for f in args.faults):
        # disk-full fills the data directory's file system and disk-corrupt wipes the data
        # directory only: with WALs elsewhere neither would do what its name says.
        raise ValueError("--wal-dirs above 1 does not combine with the disk nemeses (disk-full, disk-corrupt)")
    env = {}
    for item in args.node_env or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--node-env wants NAME=VALUE, got {item!r}")
        env[name.strip()] = value
    args.node_env_vars = env
    args.unsafe_bugs = sorted({b.strip() for b in (args.unsafe or "").split(",") if b.strip()})
    if args.unsafe_bugs:
        from ..bugs import KNOWN_BUGS
        unknown = set(args.unsafe_bugs) - set(KNOWN_BUGS)
        if unknown:
            raise ValueError(f"unknown deliberate bugs {sorted(unknown)} (known: {sorted(KNOWN_BUGS)})")
    return args


# ------------------------------------------------------------------ entry
def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_from_args(args)


def run_from_args(args: argparse.Namespace) -> int:
    if args.args_file:
        with open(args.args_file, "r", encoding="utf-8") as handle:
            saved = json.load(handle)
        inside = args.inside_netns
        args = argparse.Namespace(**saved)
        args.inside_netns = inside
    else:
        try:
            args = _resolve(args)
        except ValueError as exc:
            print(f"jepsen: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.inside_netns:
        return run(args, netns=args.inside_netns)
    reason = "--no-netns given" if args.no_netns else netns_unavailable()
    if reason:
        return run(args, netns=None, partition_reason=reason)
    return _run_in_netns(args)


def _run_in_netns(args: argparse.Namespace) -> int:
    ns = Netns(f"ra_jepsen_{os.getpid()}")
    try:
        ns.create()
    except (PartitionError, OSError, subprocess.SubprocessError) as exc:
        return run(args, netns=None, partition_reason=f"network namespace not available: {exc}")
    os.makedirs(args.out, exist_ok=True)
    args_file = os.path.join(args.out, "args.json")
    saved = {k: v for k, v in vars(args).items() if k not in ("func",)}
    saved["args_file"] = None
    with open(args_file, "w", encoding="utf-8") as handle:
        json.dump(saved, handle, indent=1)
    env = dict(os.environ)
    env["RA_JEPSEN_NETNS"] = ns.name
    env["PYTHONPATH"] = os.pathsep.join([REPO_ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    cmd = ["ip", "netns", "exec", ns.name, sys.executable, "-m", "ra_actors.testing.jepsen",
           "--inside-netns", ns.name, "--args-file", args_file]
    child = None
    previous = {}

    def forward(signum, _frame):
        # The child runs in a session of its own (a Ctrl-C in the terminal
        # reaches only us), so each signal is passed on exactly once.
        if child is not None and child.poll() is None:
            try:
                child.send_signal(signum)
            except ProcessLookupError:
                pass

    rc = EXIT_INCONCLUSIVE
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, forward)
        child = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, cwd=os.getcwd(),
                                 start_new_session=True)
        while True:
            try:
                rc = child.wait()
                break
            except KeyboardInterrupt:  # pragma: no cover - handler forwards instead
                forward(signal.SIGINT, None)
    finally:
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(10)
        leftover = [p for p in ns.pids()]
        ns.kill_all()
        deleted = ns.delete()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _amend_summary(args.out, ns.name, deleted, leftover)
        note = (f"network namespace {ns.name} deleted: {deleted}; processes left inside it: "
                f"{len(leftover)}" + (f" (killed: {leftover})" if leftover else ""))
        print(note, file=sys.stderr)
    if (leftover or not deleted) and rc == EXIT_PASS:
        rc = EXIT_INCONCLUSIVE
    return rc


def _amend_summary(out: str, netns: str, deleted: bool, leftover: list) -> None:
    path = os.path.join(out, "summary.json")
    try:
        with open(path, "r", encoding="utf-8") as handle:
            summary = json.load(handle)
    except (OSError, ValueError):
        return
    hyg = summary.setdefault("processes", {})
    hyg["netns"] = netns
    hyg["netns_deleted"] = deleted
    hyg["left_in_netns"] = leftover
    if leftover or not deleted:
        summary["passed"] = False
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=1, default=str)


# ------------------------------------------------------------------ the run
class _Interrupted(BaseException):
    pass


def run_processes(run_id: str) -> list[psutil.Process]:
    """Live processes carrying this run's marker (except this one)."""
    me = os.getpid()
    out = []
    for p in psutil.process_iter(["pid"]):
        if p.pid == me:
            continue
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            if p.environ().get(RUN_MARKER) == run_id:
                out.append(p)
        except (psutil.Error, OSError):
            continue
    return out


class Run:
    def __init__(self, args: argparse.Namespace, netns: Optional[str], partition_reason: Optional[str]):
        self.args = args
        self.netns = netns
        self.out = args.out
        self.run_id = uuid.uuid4().hex
        self.rng = random.Random(args.seed)
        self.connect_rng = random.Random(f"{args.seed}-connect")
        self.partition_reason = partition_reason
        self.cluster: Optional[JepsenCluster] = None
        self.admin = None
        self.nemesis: Optional[Nemesis] = None
        self.nlog: Optional[NemesisLog] = None
        self.partitioner = None
        self.clients: list[subprocess.Popen] = []
        self.client_logs = []
        self.stop_file = os.path.join(self.out, "clients", "STOP")
        self.t0_ns = 0
        self.end_ns = 0
        self.failure: Optional[str] = None
        self.recovery = {"state": "not reached", "seconds": None}
        self.final = {"keys": 0, "read": 0}
        self.hygiene: dict = {}
        self.mounts: list[str] = []        # tmpfs data directories (disk-full)
        self.disk_reason: Optional[str] = None
        self._cleaned = False
        self.counter = args.workload == "counter"
        self.bank = args.workload == "bank"
        self.final_bank: Optional[dict] = None
        if self.counter:
            self.cluster_name, self.machine, self.machine_config = counter.CLUSTER, counter.MACHINE, {}
        elif self.bank:
            self.cluster_name, self.machine = bank.CLUSTER, bank.MACHINE
            self.machine_config = {"release_cursor_every": args.snapshot_every}
        else:
            self.cluster_name, self.machine = CLUSTER, MACHINE
            self.machine_config = {"release_cursor_every": args.snapshot_every}
        self.final_counter = None
        # Set by the first SIGINT/SIGTERM: every phase stops at its next safe
        # point (a second signal interrupts at once).
        self.stop = threading.Event()
        self.interrupted: Optional[str] = None

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise _Interrupted(self.interrupted or "stop")

    # -- setup ------------------------------------------------------------
    def prepare(self) -> None:
        os.makedirs(self.out, exist_ok=True)
        nodes_dir = os.path.join(self.out, "nodes")
        if os.path.isdir(nodes_dir):
            for entry in os.scandir(nodes_dir):      # tmpfs left by an interrupted run
                disk.umount(entry.path)
        for name in ("nodes", "clients", "shim", "damaged", "node-logs"):
            shutil.rmtree(os.path.join(self.out, name), ignore_errors=True)
        for name in ("history.jsonl", "nemesis.jsonl", "summary.json", "final.jsonl", "harness.log"):
            try:
                os.unlink(os.path.join(self.out, name))
            except FileNotFoundError:
                pass
        os.makedirs(os.path.join(self.out, "clients"), exist_ok=True)
        # Inherited by every node and client: how we find them all at the end.
        os.environ[RUN_MARKER] = self.run_id
        os.environ["RA_JEPSEN_BIND_SOURCE"] = "1"
        for name, value in self.args.node_env_vars.items():
            os.environ[name] = value
        if self.args.unsafe_bugs:
            os.environ["RA_ACTORS_UNSAFE_BUGS"] = ",".join(self.args.unsafe_bugs)
        else:
            os.environ.pop("RA_ACTORS_UNSAFE_BUGS", None)
        paths = [REPO_ROOT] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
        os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))

    def log(self, msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        with open(os.path.join(self.out, "harness.log"), "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        if not self.args.json:
            print(line, file=sys.stderr, flush=True)

    # -- the run ------------------------------------------------------------
    def execute(self) -> None:
        args = self.args
        disk_faults = [f for f in args.faults if f in DISK]
        # Small WAL files and segments: closed WAL files and many segments exist
        # for disk-corrupt to damage.
        log_options = ({"wal_max_size_bytes": 4096, "segment_max_entries": 64}
                       if disk_faults else None)
        self.cluster = JepsenCluster(args.nodes, self.out, shim_dir=install_shim(self.out),
                                     placement=args.placement, cluster_name=self.cluster_name,
                                     machine=self.machine, log_options=log_options,
                                     wal_dirs=getattr(args, "wal_dirs", 1))
        if "disk-full" in disk_faults:
            self.disk_reason = disk.tmpfs_unavailable()
            if self.disk_reason is None:
                for n in self.cluster.names:
                    disk.mount_tmpfs(self.cluster.data_dir(n))
                    self.mounts.append(self.cluster.data_dir(n))
                self.log(f"data directories on tmpfs of {disk.TMPFS_SIZE >> 20} MiB each")
        if self.netns:
            self.partitioner = IptablesPartitioner(self.cluster.hosts, self.netns,
                                                   self.args.partition_mode)
        else:
            self.partitioner = UnavailablePartitioner(self.partition_reason or "no network namespace")
        self.partitioner.setup()
        self.log(f"starting {args.nodes} nodes ({', '.join(f'{n}@{h}' for n, h in self.cluster.hosts.items())})"
                 f"; partitions: {self.partitioner.name}"
                 + (f"; {self.cluster.wal_count} WAL directories each" if self.cluster.wal_count > 1 else ""))
        self.cluster.start_all()
        self.admin = self.connect_admin()
        self.admin.start_cluster(self.cluster_name, self.machine, self.cluster.sids, config=self.machine_config,
                                 timeout=60.0)
        if self.bank:
            reply, _leader = self.admin.process_command(
                self.cluster.sids[0], ("transaction", bank.opening_statements()), timeout=30.0)
            if not (isinstance(reply, tuple) and reply and reply[0] == "ok"):
                raise RuntimeError(f"the bank's accounts could not be created: {reply!r}")
        if self.cluster.wal_count > 1:
            self.log("WAL of each member: " + ", ".join(
                f"{n}: {self._member_wal(n)}" for n in self.cluster.names))
        self.log(f"cluster {self.cluster_name} started; {args.clients} clients for {args.time:g}s, "
                 f"nemesis {','.join(args.faults) or 'none'}, seed {args.seed}")
        self.t0_ns = time.monotonic_ns()
        self.end_ns = self.t0_ns + int(args.time * 1e9)
        self.nlog = NemesisLog(os.path.join(self.out, "nemesis.jsonl"), self.t0_ns)
        self.start_clients()
        timing = Timing.short() if args.short else Timing()
        combined = "combined" in [n.strip() for n in args.nemesis.split(",")]
        self.nemesis = Nemesis(self.cluster, self.connect_admin, self.partitioner, args.faults,
                               self.rng, self.nlog, timing, self.machine_config, combined=combined,
                               disk_unavailable=self.disk_reason,
                               damaged_dir=os.path.join(self.out, "damaged"))
        tail = max(timing.quiet[1], 5.0)
        self.nemesis.run(self.end_ns - int(tail * 1e9), self.stop)
        self.check_stop()
        actions = self.nemesis.heal_all("end of schedule")
        if actions:
            self.log("healed: " + "; ".join(actions))
        self.nemesis.close()
        self.wait_clients()
        self.check_stop()
        self.new_admin()
        self.wait_recovery()
        self.check_stop()
        self.new_admin()
        self.final_reads()

    def _member_wal(self, node: str):
        """The index of the WAL the cluster's member on ``node`` writes to
        (``?`` if the node does not say)."""
        try:
            return self.admin.overview(node, timeout=10.0)["servers"][self.cluster_name]["wal"]
        except Exception:  # noqa: BLE001 - a log line, never a reason to stop the run
            return "?"

    def connect_admin(self):
        return connect_any(self.cluster.addresses(), timeout=20.0, rng=self.connect_rng,
                           stop=self.stop.is_set)

    def new_admin(self) -> None:
        """A fresh Client for the harness (see Nemesis.reconnect for why)."""
        if self.admin is not None:
            try:
                self.admin.close()
            except Exception:  # noqa: BLE001
                pass
            self.admin = None
        deadline = time.monotonic() + 120.0
        while self.admin is None:
            try:
                self.admin = self.connect_admin()
            except Exception:  # noqa: BLE001
                if time.monotonic() > deadline or self.stop.is_set():
                    raise

    def start_clients(self) -> None:
        args = self.args
        env = dict(os.environ)
        env.pop("RA_ACTORS_UNSAFE_BUGS", None)
        env.pop("RA_JEPSEN_BIND_SOURCE", None)
        for name in self.args.node_env_vars:
            env.pop(name, None)
        for i in range(args.clients):
            cfg = {
                "process": i, "seed": args.seed,
                "sids": [[s.name, s.node] for s in self.cluster.sids],
                "addresses": [list(a) for a in self.cluster.addresses()],
                "op_timeout": args.op_timeout, "t0_ns": self.t0_ns, "end_ns": self.end_ns,
                "key_period": args.key_period, "keys": args.keys, "stop_file": self.stop_file,
                "history": os.path.join(self.out, "clients", f"p{i}.jsonl"),
                "stats": os.path.join(self.out, "clients", f"p{i}.stats.json"),
                "reconnect_after": max(10.0, 2 * args.op_timeout),
                "workload": args.workload, "duplicate_sends": args.duplicate_sends,
            }
            cfg_path = os.path.join(self.out, "clients", f"p{i}.json")
            with open(cfg_path, "w", encoding="utf-8") as handle:
                json.dump(cfg, handle)
            logf = open(os.path.join(self.out, "clients", f"p{i}.log"), "ab")
            self.client_logs.append(logf)
            self.clients.append(subprocess.Popen(
                [sys.executable, "-m", "ra_actors.testing.jepsen.clients", cfg_path],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env, close_fds=True))

    def wait_clients(self) -> None:
        deadline = self.end_ns / 1e9 + self.args.op_timeout + 15
        for proc in self.clients:
            while proc.poll() is None and time.monotonic() < deadline and not self.stop.is_set():
                time.sleep(0.1)
        self.stop_clients()

    def stop_clients(self) -> None:
        try:
            with open(self.stop_file, "w"):
                pass
        except OSError:
            pass
        for proc in self.clients:
            if proc.poll() is None:
                try:
                    proc.wait(self.args.op_timeout + 5)
                except subprocess.TimeoutExpired:
                    proc.terminate()
        for proc in self.clients:
            if proc.poll() is None:
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        for f in self.client_logs:
            f.close()
        self.client_logs = []

    def wait_recovery(self, timeout: float = 120.0) -> None:
        """Wait until a leader exists and every member applied its commit index."""
        started = time.monotonic()
        state = {"state": "no leader", "renewed": time.monotonic()}

        def converged():
            if self.stop.is_set():
                return True
            if time.monotonic() - state["renewed"] > 15.0:
                self.new_admin()            # never trust a Client that stopped answering
                state["renewed"] = time.monotonic()
            leader = leader_by_metrics(self.admin, self.cluster.sids, timeout=2.0)
            if leader is None:
                state["state"] = "no leader"
                return False
            try:
                members, _ = self.admin.members(leader, timeout=2.0)
                commit = self.admin.key_metrics(leader, timeout=2.0)["commit_index"]
                lagging = [str(m) for m in members
                           if self.admin.key_metrics(m, timeout=2.0)["last_applied"] < commit]
            except Exception as exc:  # noqa: BLE001
                state["state"] = f"leader {leader}, members not answering ({type(exc).__name__})"
                return False
            if lagging:
                state["state"] = f"leader {leader}, lagging {lagging}"
                return False
            state["state"] = f"converged: leader {leader}, {len(members)} members at commit {commit}"
            return True

        ok = wait_until(converged, timeout, interval=0.5)
        self.recovery = {"state": state["state"], "seconds": round(time.monotonic() - started, 2),
                         "converged": bool(ok)}
        self.log(f"recovery: {self.recovery['state']} after {self.recovery['seconds']}s")

    def used_keys(self) -> list:
        keys = set()
        for i in range(self.args.clients):
            path = os.path.join(self.out, "clients", f"p{i}.jsonl")
            if not os.path.exists(path):
                continue
            with open(path, "r", encoding="utf-8") as handle:
                for line in handle:
                    try:
                        keys.add(json.loads(line).get("key"))
                    except ValueError:
                        continue
        keys.discard(None)
        return sorted(keys)

    def final_reads(self, timeout: float = 90.0) -> None:
        if self.counter:
            self.final_counter_read(timeout)
            return
        if self.bank:
            self.final_bank_read(timeout)
            return
        keys = self.used_keys()
        self.final = {"keys": len(keys), "read": 0}
        process = self.args.clients
        deadline = time.monotonic() + timeout
        leader = leader_by_metrics(self.admin, self.cluster.sids) or self.cluster.sids[0]
        failures = 0
        with HistoryRecorder(os.path.join(self.out, "final.jsonl")) as rec:
            for key in keys:
                while time.monotonic() < deadline and not self.stop.is_set():
                    op = rec.invoke(process, "read", key)
                    try:
                        value, found = self.admin.consistent_query(leader, READ_FUNCTION, key, timeout=5.0)
                    except Exception:  # noqa: BLE001
                        rec.complete(op, FAIL)
                        failures += 1
                        if failures % 5 == 0:
                            self.new_admin()
                        leader = leader_by_metrics(self.admin, self.cluster.sids) or leader
                        time.sleep(0.2)
                        continue
                    rec.complete(op, OK, value)
                    self.final["read"] += 1
                    if found is not None:
                        leader = found
                    break
        self.log(f"final reads: {self.final['read']} of {len(keys)} keys")

    def final_counter_read(self, timeout: float) -> None:
        """The counter, read once through the log after healing."""
        self.final = {"keys": 1, "read": 0}
        deadline = time.monotonic() + timeout
        leader = leader_by_metrics(self.admin, self.cluster.sids) or self.cluster.sids[0]
        failures = 0
        with HistoryRecorder(os.path.join(self.out, "final.jsonl")) as rec:
            while time.monotonic() < deadline and not self.stop.is_set():
                op = rec.invoke(self.args.clients, "read")
                try:
                    value, _found = self.admin.consistent_query(leader, counter.READ_FUNCTION, timeout=5.0)
                except Exception:  # noqa: BLE001
                    rec.complete(op, FAIL)
                    failures += 1
                    if failures % 5 == 0:
                        self.new_admin()
                    leader = leader_by_metrics(self.admin, self.cluster.sids) or leader
                    time.sleep(0.2)
                    continue
                rec.complete(op, OK, value)
                self.final["read"] = 1
                self.final_counter = value
                break
        self.log(f"final read: counter {self.final_counter}")

    # -- cleanup --------------------------------------------------------------
    def cleanup(self) -> None:
        if self._cleaned:
            return
        self._cleaned = True
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                signal.signal(sig, signal.SIG_IGN)
            except ValueError:  # pragma: no cover - not the main thread
                pass
        try:
            self.stop_clients()
        except Exception:  # noqa: BLE001
            self.log("stopping clients failed:\n" + traceback.format_exc())
        if self.admin is not None:
            try:
                self.admin.close()
            except Exception:  # noqa: BLE001
                pass
        if self.nemesis is not None:
            self.nemesis.close()
        if self.partitioner is not None:
            try:
                self.partitioner.heal()
            except Exception:  # noqa: BLE001
                pass
        if self.cluster is not None:
            try:
                self.cluster.stop_all()
            except Exception:  # noqa: BLE001
                self.log("stopping nodes failed:\n" + traceback.format_exc())
        for path in self.mounts:
            try:
                # the node's log outlives its tmpfs (OUT/node-logs/<name>.log)
                logs = os.path.join(self.out, "node-logs")
                os.makedirs(logs, exist_ok=True)
                if os.path.exists(os.path.join(path, "node.log")):
                    shutil.copyfile(os.path.join(path, "node.log"),
                                    os.path.join(logs, os.path.basename(path) + ".log"))
                disk.umount(path)
            except Exception:  # noqa: BLE001
                self.log(f"unmounting {path} failed:\n" + traceback.format_exc())
        if self.nlog is not None:
            self.nlog.close()
        # Everything this run started carries its marker: nothing may be left.
        found = run_processes(self.run_id)
        killed = []
        for p in found:
            try:
                killed.append(f"{p.pid} {' '.join(p.cmdline())[:100]}")
                p.kill()
            except psutil.Error:
                pass
        wait_until(lambda: not run_processes(self.run_id), 10.0, interval=0.1)
        left = run_processes(self.run_id)
        self.hygiene = {"left": len(left), "killed": killed, "left_pids": [p.pid for p in left]}
        self.log(f"processes left running: {len(left)}" + (f" (had to kill {len(killed)})" if killed else ""))
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                signal.signal(sig, signal.SIG_DFL)
            except ValueError:  # pragma: no cover
                pass

    # -- results ----------------------------------------------------------------
    def final_bank_read(self, timeout: float) -> None:
        """The balances and the applied transfers, read through the log after healing."""
        self.final = {"keys": 1, "read": 0}
        deadline = time.monotonic() + timeout
        leader = leader_by_metrics(self.admin, self.cluster.sids) or self.cluster.sids[0]
        failures = 0
        while time.monotonic() < deadline and not self.stop.is_set():
            try:
                found = {}
                for name, sql in (("balances", bank.READ_SQL), ("transfers", bank.FINAL_IDS_SQL)):
                    reply, _ = self.admin.consistent_query(leader, bank.QUERY_FUNCTION, sql, (), timeout=5.0)
                    if reply[0] != "ok":
                        raise RuntimeError(f"final query refused: {reply!r}")
                    rows = reply[1]["rows"]
                    found[name] = [r[0] for r in rows] if name == "balances" else [list(r) for r in rows]
            except Exception:  # noqa: BLE001
                failures += 1
                if failures % 5 == 0:
                    self.new_admin()
                leader = leader_by_metrics(self.admin, self.cluster.sids) or leader
                time.sleep(0.2)
                continue
            self.final_bank = found
            self.final["read"] = 1
            break
        with open(os.path.join(self.out, "final.jsonl"), "w", encoding="utf-8"):
            pass   # (the merged history has no final operations: the final read is the verdict's input)
        if self.final_bank is not None:
            with open(os.path.join(self.out, "final_bank.json"), "w", encoding="utf-8") as handle:
                json.dump(self.final_bank, handle)
        self.log(f"final read: {len((self.final_bank or {}).get('transfers', ()))} transfers applied")

    def _verdict(self, events: list[dict]) -> tuple[dict, dict, bool, bool]:
        """``(verdict, durability, good, bad)`` of the workload's checker."""
        args = self.args
        if self.counter:
            self.log(f"checking {len(events)} events: every add applied once")
            verdict = counter.check_counter(events, self.final_counter)
            durability = {"keys_with_acknowledged_writes": 1, "acknowledged_writes": verdict["acknowledged"],
                          "lost": [], "unread_keys": [] if self.final_counter is not None else ["counter"]}
            good, bad = verdict["verdict"] == "valid", verdict["verdict"] == "invalid"
        elif self.bank:
            self.log(f"checking {len(events)} events: consistent reads, nothing lost or applied twice")
            verdict = bank.check_bank(events, self.final_bank)
            durability = {"keys_with_acknowledged_writes": 1, "acknowledged_writes": verdict["acknowledged"],
                          "lost": [p for p in verdict.get("problems", ()) if "lost" in p],
                          "unread_keys": [] if self.final_bank is not None else ["bank"]}
            good, bad = verdict["verdict"] == "valid", verdict["verdict"] == "invalid"
        else:
            self.log(f"checking {len(events)} events for linearizability")
            verdict = report.check(events, args.check_time_limit) if events else \
                {"verdict": "unknown", "explanation": "empty history"}
            durability = report.lost_writes(events, args.clients)
            good, bad = verdict.get("verdict") == "linearizable", verdict.get("verdict") == "not linearizable"
        return verdict, durability, good, bad

    def results(self) -> tuple[int, dict]:
        args = self.args
        paths = [os.path.join(self.out, "clients", f"p{i}.jsonl") for i in range(args.clients)]
        paths.append(os.path.join(self.out, "final.jsonl"))
        history_path = os.path.join(self.out, "history.jsonl")
        events = report.merge_histories(paths, history_path)
        nemesis_events = self.nlog.events if self.nlog is not None else []
        end_ns = self.end_ns or time.monotonic_ns()
        windows = report.fault_windows(events, nemesis_events, self.t0_ns, end_ns)
        verdict, durability, good, bad = self._verdict(events)
        counts = report.op_counts(events)
        client_stats = []
        for i in range(args.clients):
            try:
                with open(os.path.join(self.out, "clients", f"p{i}.stats.json"), encoding="utf-8") as h:
                    client_stats.append(json.load(h))
            except (OSError, ValueError):
                client_stats.append(None)
        reconnects = sum(s.get("reconnects", 0) for s in client_stats if s)
        error_kinds: dict = {}
        for s in client_stats:
            for k, v in (s or {}).get("errors", {}).items():
                error_kinds[k] = error_kinds.get(k, 0) + v
        summary = {
            "config": {"nodes": args.nodes, "clients": args.clients, "keys": args.keys,
                       "key_period": args.key_period, "time": args.time, "nemesis": args.nemesis,
                       "faults": args.faults, "seed": args.seed, "short": args.short,
                       "op_timeout": args.op_timeout, "unsafe": ",".join(args.unsafe_bugs) or None,
                       "snapshot_every": args.snapshot_every, "node_env": args.node_env_vars,
                       "partition_mode": args.partition_mode, "workload": args.workload,
                       "placement": args.placement, "wal_dirs": getattr(args, "wal_dirs", 1),
                       "duplicate_sends": args.duplicate_sends},
            "out": self.out,
            "partition_backend": self.partitioner.name if self.partitioner else
            f"unavailable ({self.partition_reason})",
            "skipped_faults": self.nemesis.skipped if self.nemesis else {},
            "operations": counts,
            "throughput_ops_s": round(sum(counts.get("total", {}).values()) / max(args.time, 1e-9), 1),
            "client_errors": error_kinds, "client_reconnects": reconnects,
            "faults": report.fault_summary(windows, nemesis_events),
            "fault_windows": windows,
            "recovery": self.recovery,
            "final_reads": self.final,
            "verdict": verdict,
            "durability": durability,
            "disk": report.disk_summary(nemesis_events),
            "processes": self.hygiene,
            "failure": self.failure,
        }
        lost = bool(durability["lost"])
        unreported = summary["disk"]["corrupt_unreported"]
        if bad or lost or unreported:
            code = EXIT_FAIL
            summary["failure"] = summary["failure"] or (
                ("counter not exactly once" if self.counter else "bank check failed" if self.bank
                 else "not linearizable") if bad
                else "acknowledged writes lost" if lost
                else f"{unreported} damaged member(s) did not report the corruption")
        elif (not good or self.failure or durability["unread_keys"]
              or self.final["read"] < self.final["keys"] or self.hygiene.get("left")):
            code = EXIT_INCONCLUSIVE
            summary["failure"] = summary["failure"] or (
                ("no final read" if self.counter or self.bank else "checker budget exceeded") if not good else
                "final reads incomplete" if self.final["read"] < self.final["keys"] else
                "processes left running" if self.hygiene.get("left") else "inconclusive")
        else:
            code = EXIT_PASS
        summary["passed"] = code == EXIT_PASS
        summary["exit_code"] = code
        with open(os.path.join(self.out, "summary.json"), "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=1, default=str)
        return code, summary


def run(args: argparse.Namespace, netns: Optional[str], partition_reason: Optional[str] = None) -> int:
    """One run in this process (inside the namespace, or without one)."""
    r = Run(args, netns, partition_reason)
    r.prepare()
    atexit.register(r.cleanup)

    def interrupt(signum, _frame):
        name = signal.Signals(signum).name
        if r.stop.is_set():
            raise _Interrupted(name)
        r.interrupted = name
        r.stop.set()
        r.log(f"{name}: stopping at the next safe point (again to stop at once)")

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupt)
    parent = os.getppid()

    def watch_parent():
        # Inside a namespace our parent is the outer harness: if it dies,
        # stop the run in order rather than run on unattended.
        while not r.stop.is_set():
            if os.getppid() != parent:
                r.interrupted = "parent process died"
                r.stop.set()
                return
            time.sleep(1.0)

    if netns:
        threading.Thread(target=watch_parent, daemon=True).start()
    try:
        r.execute()
    except _Interrupted as exc:
        r.failure = f"interrupted ({exc})"
        r.log(r.failure)
    except KeyboardInterrupt:
        r.failure = "interrupted"
        r.log(r.failure)
    except Exception as exc:  # noqa: BLE001
        if r.interrupted:
            r.failure = f"interrupted ({r.interrupted})"
            r.log(r.failure + "; while stopping: " + traceback.format_exc())
        else:
            r.failure = f"harness error: {type(exc).__name__}: {exc}"
            r.log(r.failure + "\n" + traceback.format_exc())
    finally:
        r.cleanup()
    try:
        code, summary = r.results()
    except Exception as exc:  # noqa: BLE001
        r.log("could not produce results:\n" + traceback.format_exc())
        print(f"jepsen: no results: {exc}", file=sys.stderr)
        return EXIT_INCONCLUSIVE
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
    else:
        print(report.render(summary), flush=True)
    return code
