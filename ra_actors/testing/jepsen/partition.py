"""Network partitions for Jepsen runs: a private network namespace and iptables.

Rules:

* Every node binds its own loopback address (127.0.0.2, 127.0.0.3, ...) and
  its outgoing connections carry that address as their source (see
  :mod:`.node_shim`); clients use 127.0.0.1.  A partition is a set of cut
  node pairs (Jepsen's *grudge*); for each cut pair ``(a, b)`` packets from
  ``a``'s address to ``b``'s and from ``b``'s to ``a``'s are dropped on
  INPUT.  Clients are never cut off, so they can reach the majority side.
* The rules live in a chain of their own (``RA_JEPSEN``) inside a network
  namespace that the harness creates for the run (``ra_jepsen_<pid>``) and
  deletes at the end, so they can never touch the host's networking.
  Healing flushes the chain.
* :func:`netns_unavailable` says why namespaces cannot be used (not root,
  no ``ip``/``iptables``, creation refused); the harness then runs without
  a namespace and the partition nemesis is reported as unavailable: the
  transport has no injectable partition hook, and a partition that drops
  nothing would be a fake.
"""
from __future__ import annotations

import itertools
import os
import random
import shutil
import signal
import subprocess
import time
from typing import Iterable, Optional

CHAIN = "RA_JEPSEN"


class PartitionError(RuntimeError):
    pass


def _run(cmd: list[str], timeout: float = 20.0, check: bool = True) -> subprocess.CompletedProcess:
    # Never inherit our stdout/stderr pipes into long-lived processes: these
    # commands all exit at once, so capturing their output is safe.
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise PartitionError(f"{' '.join(cmd)} failed ({proc.returncode}): "
                             f"{(proc.stderr or proc.stdout).strip()}")
    return proc


# ------------------------------------------------------------- namespaces
def netns_unavailable() -> Optional[str]:
    """None when this process can create network namespaces with iptables,
    else the reason it cannot."""
    if os.geteuid() != 0:
        return "not running as root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool!r} not found on PATH"
    return None


class Netns:
    """A network namespace created (and later deleted) by this process."""

    def __init__(self, name: str):
        self.name = name
        self.created = False

    def create(self) -> None:
        _run(["ip", "netns", "add", self.name])
        self.created = True
        try:
            _run(["ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up"])
            _run(["ip", "netns", "exec", self.name, "iptables", "-w", "5", "-S"])
        except BaseException:
            self.delete()
            raise

    def pids(self) -> list[int]:
        if not self.created:
            return []
        proc = _run(["ip", "netns", "pids", self.name], check=False)
        return [int(p) for p in proc.stdout.split() if p.strip().isdigit()]

    def kill_all(self, timeout: float = 10.0) -> list[int]:
        """SIGKILL every process still inside the namespace (all of them were
        started by this run); returns what was found."""
        found = self.pids()
        me = os.getpid()
        for pid in found:
            if pid == me:
                continue
            try:
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.time() + timeout
        while time.time() < deadline and [p for p in self.pids() if p != me]:
            time.sleep(0.05)
        return found

    def delete(self) -> bool:
        if not self.created:
            return True
        self.kill_all()
        proc = _run(["ip", "netns", "del", self.name], check=False)
        if proc.returncode == 0:
            self.created = False
        return not self.created

    def exists(self) -> bool:
        proc = _run(["ip", "netns", "list"], check=False)
        return any(line.split()[0] == self.name for line in proc.stdout.splitlines() if line.split())


# ------------------------------------------------------------- grudges
def halves(nodes: list[str], rng: random.Random) -> list[list[str]]:
    """Two random sides, the smaller one of floor(n/2) nodes."""
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    cut = len(shuffled) // 2
    return [sorted(shuffled[:cut]), sorted(shuffled[cut:])]


def isolate(node: str, nodes: list[str]) -> list[list[str]]:
    return [[node], sorted(n for n in nodes if n != node)]


def components_to_cuts(components: Iterable[Iterable[str]]) -> set[frozenset]:
    """Cut every pair of nodes that are in different components."""
    comps = [list(c) for c in components]
    cuts = set()
    for a_side, b_side in itertools.combinations(comps, 2):
        for a in a_side:
            for b in b_side:
                cuts.add(frozenset((a, b)))
    return cuts


def majorities_ring(nodes: list[str], rng: random.Random) -> set[frozenset]:
    """Jepsen's majorities ring: in a random ring, each node hears exactly
    its nearest neighbours, so every node sees a majority (itself included)
    but no two nodes see the same majority.  (With fewer than 5 nodes this
    is no partition at all; the caller falls back to halves.)"""
    ring = list(nodes)
    rng.shuffle(ring)
    n = len(ring)
    majority = n // 2 + 1
    reach = (majority - 1 + 1) // 2     # neighbours on each side
    cuts = set()
    for i, a in enumerate(ring):
        for j, b in enumerate(ring):
            if i < j:
                distance = min(j - i, n - (j - i))
                if distance > reach:
                    cuts.add(frozenset((a, b)))
    return cuts


def describe_cuts(cuts: set[frozenset], nodes: list[str]) -> dict[str, list[str]]:
    """``{node: [nodes it can still hear]}`` for the nemesis log."""
    return {n: sorted(m for m in nodes if m != n and frozenset((n, m)) not in cuts) for n in nodes}


# ------------------------------------------------------------- backends
class IptablesPartitioner:
    """Drops packets between node addresses with iptables (inside the run's
    network namespace only)."""

    available = True

    def __init__(self, hosts: dict[str, str], netns: str, mode: str = "drop"):
        if mode not in ("drop", "reject"):
            raise ValueError(f"partition mode is drop or reject, not {mode!r}")
        self.hosts = dict(hosts)
        self.netns = netns
        self.mode = mode
        self.name = f"iptables ({mode}) in network namespace {netns}"
        self.active: set[frozenset] = set()

    def _ipt(self, *args: str, check: bool = True):
        return _run(["iptables", "-w", "5", *args], check=check)

    def setup(self) -> None:
        if os.environ.get("RA_JEPSEN_NETNS") != self.netns:
            raise PartitionError("refusing to touch iptables outside the run's network namespace")
        self._ipt("-N", CHAIN, check=False)
        self._ipt("-F", CHAIN)
        if self._ipt("-C", "INPUT", "-j", CHAIN, check=False).returncode != 0:
            self._ipt("-I", "INPUT", "1", "-j", CHAIN)

    def cut(self, cuts: set[frozenset]) -> None:
        self.heal()
        for pair in sorted(cuts, key=sorted):
            a, b = sorted(pair)
            ha, hb = self.hosts[a], self.hosts[b]
            for src, dst in ((ha, hb), (hb, ha)):
                if self.mode == "reject":
                    self._ipt("-A", CHAIN, "-s", src, "-d", dst, "-p", "tcp",
                              "-j", "REJECT", "--reject-with", "tcp-reset")
                self._ipt("-A", CHAIN, "-s", src, "-d", dst, "-j", "DROP")
        self.active = set(cuts)

    def heal(self) -> None:
        self._ipt("-F", CHAIN)
        self.active = set()

    def rules(self) -> list[str]:
        return [line for line in self._ipt("-S", CHAIN, check=False).stdout.splitlines()
                if line.startswith("-A")]


class UnavailablePartitioner:
    """No way to partition: the nemesis skips partitions and says why."""

    available = False

    def __init__(self, reason: str):
        self.reason = reason
        self.name = f"unavailable ({reason})"
        self.active: set[frozenset] = set()

    def setup(self) -> None:
        pass

    def cut(self, cuts) -> None:  # pragma: no cover - never called
        raise PartitionError(self.name)

    def heal(self) -> None:
        pass

    def rules(self) -> list[str]:
        return []
