"""The nodes of a Jepsen run: real ``ra_actors`` nodes, one address each.

Rules:

* Node ``n<i>`` binds ``127.0.0.<i+1>`` (n1 on 127.0.0.2, ...), on a port
  free there, with its own data directory ``<out>/nodes/n<i>`` and its own
  process group (``ra_actors.start_node``).  n1 leads the Thespian
  convention; every node allows connections from every node address (and
  127.0.0.1, the clients').
* Nodes start with the node shim on their ``PYTHONPATH`` (source-address
  binding, deliberate bugs; see :mod:`.node_shim`) and with the run's
  marker ``RA_JEPSEN_RUN`` in their environment, which is how the harness
  finds every process of the run at the end.
* Faults act on the processes this run started and nothing else: a node's
  process group, the pid of a server actor as the server reports it
  (``member_overview``), the pid of a WAL actor (the node process that
  holds the WAL's lock file open; the runtime does not report it).
* ``wal_dirs=k`` (``--wal-dirs``) gives every node ``k`` WAL directories:
  the default ``<data_dir>/wal`` and ``OUT/wal<j>/<name>`` for ``j`` in
  ``1..k-1`` (another "volume" per WAL), the same at every restart.
"""
from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from typing import Optional

import psutil

from ... import errors
from ...core.types import ServerId
from ...log.common import wal_dir, wal_lock_path
from ...nodes import Node, free_port, start_node, stop_node

CLUSTER = "jepsen_kv"
MACHINE = "machines.kv"
RUN_MARKER = "RA_JEPSEN_RUN"


def node_names(count: int) -> list[str]:
    return [f"n{i}" for i in range(1, count + 1)]


def node_host(index: int) -> str:
    """Address of the ``index``-th node (0-based): 127.0.0.2, 127.0.0.3, ..."""
    if not 0 <= index < 250:
        raise ValueError("at most 250 nodes")
    return f"127.0.0.{index + 2}"


def install_shim(out_dir: str) -> str:
    """Copy the node shim as ``sitecustomize.py`` into ``<out>/shim``."""
    shim_dir = os.path.join(out_dir, "shim")
    os.makedirs(shim_dir, exist_ok=True)
    shutil.copyfile(os.path.join(os.path.dirname(os.path.abspath(__file__)), "node_shim.py"),
                    os.path.join(shim_dir, "sitecustomize.py"))
    return shim_dir


class JepsenCluster:
    def __init__(self, count: int, out_dir: str, *, shim_dir: str, settings=None,
                 server_settings=None, log_options=None, start_timeout: float = 60.0,
                 placement: str = "process", cluster_name: str = CLUSTER, machine: str = MACHINE,
                 wal_dirs: int = 1):
        if isinstance(wal_dirs, bool) or not isinstance(wal_dirs, int) or wal_dirs < 1:
            raise ValueError(f"wal_dirs is a number of WAL directories per node (>= 1), not {wal_dirs!r}")
        self.names = node_names(count)
        self.hosts = {n: node_host(i) for i, n in enumerate(self.names)}
        self.ports = {n: free_port(self.hosts[n]) for n in self.names}
        self.data_root = os.path.join(out_dir, "nodes")
        self.out_dir = out_dir
        self.wal_count = wal_dirs
        self.shim_dir = shim_dir
        self.settings = dict(settings or {})
        self.server_settings = dict(server_settings or {})
        self.log_options = dict(log_options or {})
        self.start_timeout = start_timeout
        self.placement = placement
        self.nodes: dict[str, Node] = {}
        self.pgids: set[int] = set()      # every process group this run created
        self.keepers: set[int] = set()
        self.cluster_name = cluster_name
        self.machine = machine
        self.sids = [ServerId(cluster_name, n) for n in self.names]
        self._lock = threading.Lock()

    # ------------------------------------------------------------ addresses
    def address(self, name: str) -> tuple[str, int]:
        return (self.hosts[name], self.ports[name])

    def addresses(self) -> list[tuple[str, int]]:
        return [self.address(n) for n in self.names]

    def data_dir(self, name: str) -> str:
        return os.path.join(self.data_root, name)

    def wal_dirs(self, name: str) -> Optional[list[str]]:
        """Node ``name``'s WAL directories (None: the default one only)."""
        if self.wal_count == 1:
            return None
        return [str(wal_dir(self.data_dir(name)))] + [
            os.path.join(self.out_dir, f"wal{j}", name) for j in range(1, self.wal_count)]

    # ------------------------------------------------------------ lifecycle
    def start(self, name: str) -> Node:
        convention = self.address(self.names[0])
        os.makedirs(self.data_dir(name), exist_ok=True)
        node = start_node(name, self.data_dir(name), self.ports[name], convention=convention,
                          host=self.hosts[name], allowed_hosts=list(self.hosts.values()),
                          settings=self.settings, server_settings=self.server_settings,
                          log_options=self.log_options,
                          seeds=[self.address(n) for n in self.names if n != name],
                          python_path=[self.shim_dir], placement=self.placement,
                          timeout=self.start_timeout, wal_dirs=self.wal_dirs(name))
        with self._lock:
            self.nodes[name] = node
            if node.pgid:
                self.pgids.add(node.pgid)
            if node.keeper_pid:
                self.keepers.add(node.keeper_pid)
        return node

    def start_all(self) -> None:
        self.start(self.names[0])
        failures = {}

        def run(n):
            try:
                self.start(n)
            except BaseException as exc:  # noqa: BLE001
                failures[n] = exc

        threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in self.names[1:]]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.start_timeout + 30)
        if failures:
            name, exc = next(iter(failures.items()))
            raise errors.NodeError(f"node {name} did not start: {exc}")

    def alive(self, name: str) -> bool:
        node = self.nodes.get(name)
        return node is not None and node.alive()

    def kill(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is not None:
            node.kill()

    def restart(self, name: str) -> Node:
        node = self.nodes.get(name)
        if node is not None and node.alive():
            node.kill()
        return self.start(name)

    def pause(self, name: str) -> None:
        self.nodes[name].pause()

    def resume(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is not None:
            try:
                node.resume()
            except ProcessLookupError:
                pass

    def stop_all(self, timeout: float = 15.0) -> None:
        """Stop every node (resumed first), then kill whatever is left of
        every process group this run ever created."""
        for pgid in list(self.pgids):
            try:
                os.killpg(pgid, signal.SIGCONT)
            except (ProcessLookupError, PermissionError):
                pass
        threads = []
        for node in list(self.nodes.values()):
            t = threading.Thread(target=_quiet_stop, args=(node, timeout), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(timeout + 10)
        for pgid in list(self.pgids):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    # ------------------------------------------------------------ processes
    def pids(self, name: str) -> list[int]:
        node = self.nodes.get(name)
        return node.pids() if node is not None else []

    def wal_pid(self, name: str, rng=None) -> Optional[int]:
        """Pid of one of ``name``'s WAL actors: a node process holding a
        WAL's lock file open (each WAL takes its own lock).  With several
        WALs, ``rng`` picks which (else the first found)."""
        data_dir = self.data_dir(name)
        dirs = self.wal_dirs(name) or [str(wal_dir(data_dir))]
        locks = {os.path.realpath(wal_lock_path(data_dir, d)) for d in dirs}
        found: list[int] = []
        for pid in self.pids(name):
            try:
                if any(os.path.realpath(f.path) in locks for f in psutil.Process(pid).open_files()):
                    found.append(pid)
            except psutil.Error:
                continue
        if not found:
            return None
        return rng.choice(sorted(found)) if rng is not None else found[0]


def _quiet_stop(node: Node, timeout: float) -> None:
    try:
        stop_node(node, timeout=timeout)
    except Exception:  # noqa: BLE001
        try:
            node.kill()
        except Exception:  # noqa: BLE001
            pass


def find_leader(client, sids, timeout: float = 1.0) -> Optional[ServerId]:
    """The leader as some member reports it (None if nobody knows one)."""
    votes: dict = {}
    for sid in sids:
        try:
            _members, leader = client.members(sid, timeout=timeout)
        except errors.RaError:
            continue
        except Exception:  # noqa: BLE001
            continue
        if leader is not None:
            votes[leader] = votes.get(leader, 0) + 1
    if not votes:
        return None
    return max(votes, key=votes.get)


def leader_by_metrics(client, sids, timeout: float = 1.0) -> Optional[ServerId]:
    """The member that says it is leader with the highest term."""
    best = None
    for sid in sids:
        try:
            km = client.key_metrics(sid, timeout=timeout)
        except Exception:  # noqa: BLE001
            continue
        if km.get("state") == "leader" and (best is None or km.get("term", 0) > best[0]):
            best = (km.get("term", 0), sid)
    return best[1] if best else None


def connect_any(addresses, timeout: float = 60.0, per_try: float = 3.0, rng=None, stop=None):
    """A Client bootstrapped through one node at a time, trying the nodes in
    turn until one works (``connect`` with every address gives up as soon
    as the first node to answer fails to register the client, e.g. while
    that node is partitioned).  ``stop()`` true ends the attempts early."""
    import random as _random

    from ...api import connect

    order = [tuple(a) for a in addresses]
    (rng or _random).shuffle(order)
    deadline = time.monotonic() + timeout
    last: BaseException = errors.Timeout(f"no node of {order} accepted a client within {timeout}s")
    while True:
        for addr in order:
            left = deadline - time.monotonic()
            if left <= 0 or (stop is not None and stop()):
                raise last
            try:
                return connect([addr], timeout=max(1.0, min(per_try, left)))
            except Exception as exc:  # noqa: BLE001 - try the next node
                last = exc


def wait_until(pred, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            return value
        time.sleep(interval)
