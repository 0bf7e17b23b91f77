"""The nemesis of a Jepsen run: a schedule of faults on real nodes.

Faults (``--nemesis`` names):

* ``kill``: SIGKILL the process groups of one or more random nodes (a
  minority, now and then a majority or all of them), restart them later;
* ``kill-leader``: SIGKILL the leader's server actor (its supervisor
  restarts it);
* ``kill-wal``: SIGKILL a node's WAL actor (the leader's node half the time);
* ``pause``: SIGSTOP a node's process group (the leader's half the time),
  SIGCONT later; ``pause-leader``: always the leader's (selectable on its
  own, not part of ``combined``);
* ``partition``: one of ``partition-halves`` (random halves),
  ``partition-ring`` (majorities ring) and ``partition-leader`` (isolate
  the leader), each also selectable on its own;
* ``member``: remove a member (a follower, now and then the leader) from
  the cluster, later delete its data and add it back as a new server;
* ``combined``: all of the above, and now and then a ``kill-leader`` or
  ``kill-wal`` in the middle of another fault;
* ``disk``: ``disk-full`` (fill a follower's tmpfs until ``ENOSPC``, free
  it later) and ``disk-corrupt`` (stop a follower, flip a byte of a closed
  WAL file or a segment, check that the member refuses to serve and names
  the corruption, then repair it from its peers: remove, wipe, start
  empty, add back), each also selectable on its own (see :mod:`.disk`);
  not part of ``combined``.

Rules:

* One fault (plus, in combined mode, an instant one nested in it) at a
  time: quiet period, fault, heal, quiet period, ...; faults are chosen by
  the run's seeded RNG, the first ones in a shuffled round so that every
  requested kind runs early.
* Every step is written to ``nemesis.jsonl`` as it happens: ``{"time":
  monotonic ns, "t": seconds since the run started, "event": "start" |
  "end" | "error" | "note" | "heal", "fault": ..., "id": n, ...}``.  A fault
  that could not be injected (no leader known, a membership change refused)
  is an ``error`` event, not a fault.
* Signals go only to processes of this run: node process groups it created
  and pids it checked belong to one of them.
* :meth:`Nemesis.heal_all` undoes everything still in effect (resume, heal,
  free the disk, repair, restart, re-add); the harness calls it at the end
  and on every failure.
* A damaged member that did not report its corruption (it started and
  served, or ``log check`` called it sound) is recorded in the fault's
  ``end`` event (``reported: false``): the run fails on it.
"""
from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from typing import Optional

from ... import errors
from ...core.types import ServerId
from . import disk
from . import partition as part
from .cluster import JepsenCluster, find_leader, wait_until

INSTANT = ("kill-leader", "kill-wal")
PARTITIONS = ("partition-halves", "partition-ring", "partition-leader")
FAULTS = ("kill", "kill-leader", "kill-wal", "pause", "partition", "member")
DISK = ("disk-full", "disk-corrupt")
FULL_DISK_FELT_S = 10.0   # a full disk is held this much longer until its node has felt it
NAMES = FAULTS + PARTITIONS + DISK + ("pause-leader", "combined", "disk", "none")


def parse_nemesis(text: str) -> list[str]:
    """``"kill,partition"`` -> the fault kinds to schedule (validated)."""
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise ValueError(f"unknown nemesis {', '.join(unknown)} (known: {', '.join(NAMES)})")
    out: list[str] = []
    for n in names:
        if n == "combined":
            expanded = list(FAULTS)
        elif n == "disk":
            expanded = list(DISK)
        elif n == "none":
            expanded = []
        else:
            expanded = [n]
        for e in expanded:
            if e not in out:
                out.append(e)
    return out


class NemesisLog:
    def __init__(self, path: str, t0_ns: int):
        self.t0_ns = t0_ns
        self._file = open(path, "w", encoding="utf-8")
        self._lock = threading.Lock()
        self.events: list[dict] = []

    def write(self, event: str, fault: str, **fields) -> dict:
        now = time.monotonic_ns()
        record = {"time": now, "t": round((now - self.t0_ns) / 1e9, 3), "event": event, "fault": fault}
        record.update(fields)
        with self._lock:
            self.events.append(record)
            if self._file is not None:
                self._file.write(json.dumps(record, default=str) + "\n")
                self._file.flush()
        return record

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class Timing:
    def __init__(self, quiet=(5.0, 10.0), duration=(5.0, 15.0)):
        self.quiet = quiet
        self.duration = duration

    @classmethod
    def short(cls) -> "Timing":
        return cls(quiet=(3.0, 5.0), duration=(4.0, 7.0))


class Nemesis:
    def __init__(self, cluster: JepsenCluster, admin_factory, partitioner, faults: list[str],
                 rng: random.Random, log: NemesisLog, timing: Timing, machine_config: dict,
                 combined: bool = False, disk_unavailable: Optional[str] = None,
                 damaged_dir: Optional[str] = None):
        self.cluster = cluster
        # The nemesis's own Client; replaced after errors (a Client that saw
        # every node time out never tries them again: see docs/testing.rst).
        self.admin_factory = admin_factory
        self.admin = admin_factory()
        self.partitioner = partitioner
        self.rng = rng
        self.log = log
        self.timing = timing
        self.machine_config = dict(machine_config)
        self.combined = combined
        self.requested = list(faults)
        self.skipped: dict[str, str] = {}
        self.faults = []
        for f in faults:
            if (f == "partition" or f in PARTITIONS) and not partitioner.available:
                self.skipped[f] = partitioner.name
                continue
            if f == "disk-full" and disk_unavailable:
                self.skipped[f] = disk_unavailable
                continue
            self.faults.append(f)
        self.next_id = 0
        self.server_pids: dict[ServerId, int] = {}   # last pid each server reported
        self.killed: set[str] = set()
        self.paused: set[str] = set()
        self.removed: set[ServerId] = set()
        self.partitioned = False
        self.filled: set[str] = set()              # nodes whose disk the nemesis filled
        self.damaged: dict[str, int] = {}          # node -> id of the fault that damaged it
        self.damaged_dir = damaged_dir
        self._round: list[str] = []
        if self.skipped:
            for f, why in self.skipped.items():
                what = "" if f in DISK else "partition backend "
                self.log.write("note", f, message=f"skipped: {what}{why}")

    # ------------------------------------------------------------- schedule
    def _pick(self) -> str:
        if not self._round:
            self._round = list(self.faults)
            self.rng.shuffle(self._round)
        return self._round.pop()

    def run(self, until_ns: int, stop: threading.Event) -> None:
        """Inject faults until ``until_ns`` (monotonic); every fault is healed
        before this returns (except after an error: see heal_all)."""
        if not self.faults:
            return
        while not stop.is_set():
            if not self._sleep(self.rng.uniform(*self.timing.quiet), until_ns, stop):
                return
            if "kill-leader" in self.faults or self.combined:
                self.learn_pids()
            duration = self.rng.uniform(*self.timing.duration)
            if time.monotonic_ns() + int(duration * 1e9) > until_ns:
                return
            self.inject(self._pick(), duration, stop)

    def _sleep(self, seconds: float, until_ns: Optional[int], stop: threading.Event) -> bool:
        end = time.monotonic() + seconds
        if until_ns is not None:
            end = min(end, until_ns / 1e9)
        while not stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                break
            stop.wait(min(left, 0.2))
        return not stop.is_set() and (until_ns is None or time.monotonic_ns() < until_ns)

    def _hold(self, duration: float, stop: threading.Event, nested: bool = True) -> None:
        """Keep a fault in effect for ``duration``; in combined mode maybe
        inject an instant fault half-way."""
        if self.combined and nested and self.rng.random() < 0.35:
            half = duration * self.rng.uniform(0.3, 0.7)
            self._sleep(half, None, stop)
            if not stop.is_set():
                self.inject(self.rng.choice(INSTANT), 0.0, stop, nested=True)
            self._sleep(duration - half, None, stop)
        else:
            self._sleep(duration, None, stop)

    def inject(self, fault: str, duration: float, stop: threading.Event, nested: bool = False) -> None:
        self.next_id += 1
        fid = self.next_id
        try:
            if fault == "kill":
                self._kill(fid, duration, stop)
            elif fault == "kill-leader":
                self._kill_leader(fid)
            elif fault == "kill-wal":
                self._kill_wal(fid)
            elif fault == "pause":
                self._pause(fid, duration, stop)
            elif fault == "pause-leader":
                self._pause(fid, duration, stop, prefer_leader=1.0)
            elif fault == "partition":
                self._partition(fid, self.rng.choice(PARTITIONS), duration, stop)
            elif fault in PARTITIONS:
                self._partition(fid, fault, duration, stop)
            elif fault == "member":
                self._member(fid, duration, stop)
            elif fault == "disk-full":
                self._disk_full(fid, duration, stop)
            elif fault == "disk-corrupt":
                self._disk_corrupt(fid, duration, stop)
            else:  # pragma: no cover
                raise ValueError(fault)
        except Exception as exc:  # noqa: BLE001 - log it, heal, go on
            self.log.write("error", fault, id=fid, message=f"{type(exc).__name__}: {exc}")
            if nested:
                # An instant fault leaves nothing to undo; the fault it is
                # nested in goes on (and replaces the Client if it must).
                return
            # Heal first (that needs no Client), then replace the Client.
            self.heal_all(reason=f"after error in {fault}")
            try:
                self.reconnect()
            except Exception as exc2:  # noqa: BLE001 - the next fault tries again
                self.log.write("note", fault, id=fid, message=f"no new client yet: {exc2}")

    def reconnect(self) -> None:
        """Replace the nemesis's Client by a new one."""
        old, self.admin = self.admin, None
        if old is not None:
            try:
                old.close()
            except Exception:  # noqa: BLE001
                pass
        self.admin = self.admin_factory()

    def close(self) -> None:
        if self.admin is not None:
            try:
                self.admin.close()
            except Exception:  # noqa: BLE001
                pass
            self.admin = None

    # ------------------------------------------------------------- helpers
    def _leader(self) -> Optional[ServerId]:
        sids = [s for s in self.cluster.sids if s not in self.removed]
        leader = find_leader(self.admin, sids, timeout=1.0)
        if leader is None:
            # Maybe our Client gave up on every node (it never retries them):
            # ask again through a new one.
            self.reconnect()
            leader = find_leader(self.admin, sids, timeout=1.0)
        return leader

    def learn_pids(self) -> None:
        """Remember each server's pid (best effort) for kill-leader."""
        for sid in self.cluster.sids:
            try:
                self.server_pids[sid] = self.admin.member_overview(sid, timeout=1.0).get("pid")
            except Exception:  # noqa: BLE001 - not now: never delay the schedule long
                return

    def _live(self) -> list[str]:
        return [n for n in self.cluster.names if n not in self.killed and n not in self.paused]

    def _target_node(self, prefer_leader: float = 0.5) -> Optional[str]:
        live = self._live()
        if not live:
            return None
        if self.rng.random() < prefer_leader:
            leader = self._leader()
            if leader is not None and leader.node in live:
                return leader.node
        return self.rng.choice(live)

    def _own_pid(self, pid: Optional[int], node: str) -> bool:
        """``pid`` belongs to ``node``'s process group (one of ours)."""
        if not pid:
            return False
        n = self.cluster.nodes.get(node)
        try:
            return n is not None and os.getpgid(pid) == n.pgid
        except ProcessLookupError:
            return False

    # ------------------------------------------------------------- faults
    def _kill(self, fid: int, duration: float, stop: threading.Event) -> None:
        names = self.cluster.names
        live = self._live()
        minority = max(1, (len(names) - 1) // 2)
        roll = self.rng.random()
        if roll < 0.1:
            count = len(live)                         # everything at once
        elif roll < 0.2:
            count = len(names) // 2 + 1               # a majority
        else:
            count = self.rng.randint(1, minority)
        victims = sorted(self.rng.sample(live, min(count, len(live))))
        leader = self._leader()
        self.log.write("start", "kill", id=fid, nodes=victims,
                       leader=leader.node if leader else None)
        for v in victims:
            node = self.cluster.nodes[v]
            try:
                os.killpg(node.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.killed.add(v)
        for v in victims:
            self.cluster.kill(v)        # waits until the group is gone
        self._hold(duration, stop)
        self._restart(victims)
        self.log.write("end", "kill", id=fid, nodes=victims)

    def _restart(self, names: list[str], timeout: float = 90.0) -> None:
        pending = [n for n in names if n in self.killed]
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            failed = []
            results: dict[str, BaseException] = {}

            def start(n):
                try:
                    self.cluster.restart(n)
                except BaseException as exc:  # noqa: BLE001
                    results[n] = exc

            threads = [threading.Thread(target=start, args=(n,), daemon=True) for n in pending]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            for n in pending:
                if n in results:
                    failed.append(n)
                    self.log.write("note", "kill", node=n,
                                   message=f"restart failed, retrying: {results[n]}")
                else:
                    self.killed.discard(n)
            pending = failed
            if pending:
                time.sleep(1.0)
        if pending:
            raise errors.NodeError(f"nodes {pending} did not restart within {timeout}s")

    def _kill_leader(self, fid: int) -> None:
        leader = self._leader()
        if leader is None or leader.node not in self._live():
            self.log.write("error", "kill-leader", id=fid, message="no live leader known")
            return
        try:
            pid = self.admin.member_overview(leader, timeout=2.0).get("pid")
            self.server_pids[leader] = pid
        except Exception:  # noqa: BLE001 - a busy leader: use the pid it reported before
            pid = self.server_pids.get(leader)
            if not self._own_pid(pid, leader.node):
                raise
        if not self._own_pid(pid, leader.node):
            self.log.write("error", "kill-leader", id=fid, message=f"pid {pid} is not a process of {leader.node}")
            return
        os.kill(pid, signal.SIGKILL)
        self.log.write("start", "kill-leader", id=fid, nodes=[leader.node], server=str(leader), pid=pid)
        self.log.write("end", "kill-leader", id=fid, nodes=[leader.node])

    def _kill_wal(self, fid: int) -> None:
        node = self._target_node()
        pid = self.cluster.wal_pid(node, self.rng) if node else None
        if not self._own_pid(pid, node):
            self.log.write("error", "kill-wal", id=fid, message=f"no WAL process found on {node}")
            return
        leader = self._leader()
        os.kill(pid, signal.SIGKILL)
        self.log.write("start", "kill-wal", id=fid, nodes=[node], pid=pid,
                       leader=leader.node if leader else None)
        self.log.write("end", "kill-wal", id=fid, nodes=[node])

    def _pause(self, fid: int, duration: float, stop: threading.Event, prefer_leader: float = 0.5) -> None:
        node = self._target_node(prefer_leader)
        if node is None:
            self.log.write("error", "pause", id=fid, message="no live node")
            return
        leader = self._leader()
        self.cluster.pause(node)
        self.paused.add(node)
        self.log.write("start", "pause", id=fid, nodes=[node], leader=leader.node if leader else None)
        self._hold(duration, stop)
        self.cluster.resume(node)
        self.paused.discard(node)
        self.log.write("end", "pause", id=fid, nodes=[node])

    def _partition(self, fid: int, mode: str, duration: float, stop: threading.Event) -> None:
        names = self.cluster.names
        leader = self._leader()
        if mode == "partition-ring" and len(names) < 5:
            mode = "partition-halves"
        if mode == "partition-halves":
            cuts = part.components_to_cuts(part.halves(names, self.rng))
        elif mode == "partition-ring":
            cuts = part.majorities_ring(names, self.rng)
        else:
            target = leader.node if leader is not None else self.rng.choice(names)
            cuts = part.components_to_cuts(part.isolate(target, names))
        self.partitioner.cut(cuts)
        self.partitioned = True
        self.log.write("start", "partition", id=fid, mode=mode.split("-", 1)[1],
                       nodes=sorted({n for pair in cuts for n in pair}),
                       hears=part.describe_cuts(cuts, names), leader=leader.node if leader else None)
        self._hold(duration, stop)
        self.partitioner.heal()
        self.partitioned = False
        self.log.write("end", "partition", id=fid, mode=mode.split("-", 1)[1])

    def _member(self, fid: int, duration: float, stop: threading.Event) -> None:
        leader = self._leader()
        if leader is None:
            self.log.write("error", "member", id=fid, message="no leader known")
            return
        members, leader2 = self.admin.members(leader, timeout=3.0)
        leader = leader2 or leader
        candidates = [m for m in members if m != leader and m.node in self._live()]
        if self.rng.random() < 0.25 or not candidates:
            victim = leader
        else:
            victim = self.rng.choice(candidates)
        self.admin.remove_member(leader, victim, timeout=10.0)
        self.removed.add(victim)
        self.log.write("start", "member", id=fid, nodes=[victim.node], server=str(victim),
                       leader=leader.node)
        self._hold(duration, stop)
        self._readd(victim)
        self.log.write("end", "member", id=fid, nodes=[victim.node], server=str(victim))

    def _readd(self, victim: ServerId, timeout: float = 60.0) -> None:
        """Delete the removed server's data and add it back as a new member."""
        deadline = time.monotonic() + timeout
        last_error = None
        deleted = False
        while time.monotonic() < deadline:
            try:
                if not deleted:
                    try:
                        self.admin.force_delete_server(victim, timeout=5.0)
                    except errors.NoSuchServer:
                        pass
                    deleted = True
                others = [s for s in self.cluster.sids if s not in self.removed]
                leader = find_leader(self.admin, others, timeout=1.0)
                if leader is None:
                    raise errors.Timeout("no leader to add the member back through")
                members, leader = self.admin.members(leader, timeout=3.0)
                if victim not in members:
                    try:
                        self.admin.start_server(self.cluster.cluster_name, self.cluster.machine, victim, members,
                                                config=self.machine_config, timeout=10.0)
                    except errors.ServerAlreadyExists:
                        pass
                    self.admin.add_member(leader, victim, timeout=10.0)
                self.removed.discard(victim)
                return
            except errors.AlreadyMember:
                self.removed.discard(victim)
                return
            except Exception as exc:  # noqa: BLE001 - retry until the deadline
                last_error = exc
                try:
                    self.reconnect()
                except Exception:  # noqa: BLE001
                    pass
                time.sleep(0.5)
        raise errors.RaError(f"could not add {victim} back: {last_error!r}")

    # ------------------------------------------------------------- disk faults
    def _follower(self) -> tuple[Optional[str], Optional[ServerId]]:
        """A live node that does not hold the leader (and the leader)."""
        leader = self._leader()
        live = [n for n in self._live() if ServerId(self.cluster.cluster_name, n) not in self.removed]
        followers = [n for n in live if leader is None or n != leader.node]
        return (self.rng.choice(followers) if followers else None), leader

    def _storage_of(self, node: str) -> dict:
        """What ``node`` and its server say about themselves (best effort)."""
        seen: dict = {}
        try:
            ov = self.admin.overview(node, timeout=2.0)
            st = ov.get("storage") or {}
            seen["storage"] = st.get("state")
            if st.get("reason"):
                seen["storage_reason"] = str(st.get("reason"))[:200]
            srv = (ov.get("servers") or {}).get(self.cluster.cluster_name) or {}
            seen["status"] = srv.get("status")
            if srv.get("reason"):
                seen["status_reason"] = str(srv.get("reason"))[:300]
        except Exception as exc:  # noqa: BLE001
            seen["storage"] = f"no answer ({type(exc).__name__})"
        try:
            km = self.admin.key_metrics(ServerId(self.cluster.cluster_name, node), timeout=2.0)
            seen["server"] = km.get("state")
            if km.get("error"):
                seen["server_error"] = str(km.get("error"))[:200]
        except Exception as exc:  # noqa: BLE001
            seen["server"] = f"no answer ({type(exc).__name__}: {str(exc)[:120]})"
        return seen

    def _disk_full(self, fid: int, duration: float, stop: threading.Event) -> None:
        node, leader = self._follower()
        if node is None:
            self.log.write("error", "disk-full", id=fid, message="no live follower")
            return
        data_dir = self.cluster.data_dir(node)
        self.filled.add(node)
        written = disk.fill(data_dir)
        self.log.write("start", "disk-full", id=fid, nodes=[node], bytes=written,
                       leader=leader.node if leader else None)
        during = self._watch_storage(node, duration, stop, felt_within=FULL_DISK_FELT_S)
        disk.unfill(data_dir)
        self.filled.discard(node)
        # The node probes its disk every storage_probe_interval (5 s): give it
        # a few probes to come back by itself.
        freed = time.monotonic()
        back = wait_until(lambda: self._storage_of(node).get("storage") == "ok", 30.0, interval=0.5)
        self.log.write("end", "disk-full", id=fid, nodes=[node], during=during,
                       storage_ok_after_s=round(time.monotonic() - freed, 2) if back else None)

    def _watch_storage(self, node: str, duration: float, stop: threading.Event, felt_within: float = 0.0) -> dict:
        """Hold for ``duration``, asking ``node`` about its storage meanwhile:
        the worst state seen (a fault can come and go between two looks).
        While the node has not felt the fault (storage still ``ok``: no
        write reached its disk yet, as on a slow machine), hold up to
        ``felt_within`` seconds longer."""
        rank = {"ok": 0, "failing": 1, "error": 2}
        worst: dict = {}
        start = time.monotonic()
        while not stop.is_set():
            seen = self._storage_of(node)
            if not worst or rank.get(seen.get("storage"), -1) > rank.get(worst.get("storage"), -1):
                worst = seen
            felt = rank.get(worst.get("storage"), 0) > 0
            left = start + duration + (0.0 if felt else felt_within) - time.monotonic()
            if left <= 0:
                break
            self._sleep(min(left, 0.5), None, stop)
        return worst

    def _disk_corrupt(self, fid: int, duration: float, stop: threading.Event) -> None:
        node, leader = self._follower()
        if node is None or leader is None:
            self.log.write("error", "disk-corrupt", id=fid, message="no leader or no live follower")
            return
        data_dir = self.cluster.data_dir(node)
        # Small WAL files roll over often (the harness's log options): give the
        # node a moment to have a closed WAL file or a segment to damage.
        wait_until(lambda: any(disk.damage_candidates(data_dir).values()), 10.0, interval=0.5)
        try:
            os.killpg(self.cluster.nodes[node].pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.killed.add(node)
        self.cluster.kill(node)
        candidates = disk.damage_candidates(data_dir)
        kinds = [k for k, paths in candidates.items() if paths]
        if not kinds:
            self.log.write("error", "disk-corrupt", id=fid, nodes=[node],
                           message="no closed WAL file or segment to damage")
            self._restart([node])
            return
        kind = self.rng.choice(kinds)
        path = self.rng.choice(candidates[kind])
        offset, before, after = disk.flip_byte(path, self.rng)
        self.damaged[node] = fid
        self.log.write("start", "disk-corrupt", id=fid, nodes=[node], kind=kind,
                       file=os.path.relpath(path, data_dir), offset=offset,
                       size=path.stat().st_size, byte=[before, after], leader=leader.node)
        verdict = self._damaged_member_reports(node)
        self.log.write("note", "disk-corrupt", id=fid, nodes=[node], **verdict)
        self._hold(duration, stop, nested=False)
        self._repair(node)
        self.log.write("end", "disk-corrupt", id=fid, nodes=[node], **verdict)

    def _damaged_member_reports(self, node: str) -> dict:
        """Start the damaged member again: it must name the corruption and not serve."""
        data_dir = self.cluster.data_dir(node)
        check_exit, check_text = disk.log_check(data_dir)
        out: dict = {"log_check_exit": check_exit}
        try:
            self.cluster.start(node)
        except Exception as exc:  # noqa: BLE001 - the expected outcome
            text = str(exc)
            out.update(refused_start=True, reason=text[:300],
                       reported=check_exit == 1 and "LogCorruption" in text)
            return out
        # The node started: its server must stay out of the cluster and say why
        # (the node's overview: the server could not start, LogCorruption).
        out["refused_start"] = False

        def says_corrupt(s: dict) -> bool:
            return ("LogCorruption" in s.get("status_reason", "")
                    or (s.get("server") == "error" and "corrupt" in s.get("server_error", "").lower()))

        seen = wait_until(lambda: (lambda s: s if says_corrupt(s) else None)(self._storage_of(node)),
                          15.0, interval=0.5) or self._storage_of(node)
        out["seen"] = seen
        serving = seen.get("server") in ("leader", "follower", "candidate", "pre_vote")
        out["reported"] = check_exit == 1 and says_corrupt(seen) and not serving
        self.cluster.kill(node)
        return out

    def _repair(self, node: str, timeout: float = 60.0) -> None:
        """docs/operations.rst, "A data directory is damaged": remove the member,
        set its directory aside, start the node empty, add the member back."""
        victim = ServerId(self.cluster.cluster_name, node)
        fid = self.damaged.get(node)
        self.cluster.kill(node)
        deadline = time.monotonic() + timeout
        while victim not in self.removed:
            try:
                others = [s for s in self.cluster.sids if s != victim and s not in self.removed]
                leader = find_leader(self.admin, others, timeout=1.0)
                if leader is None:
                    raise errors.Timeout("no leader to remove the damaged member through")
                members, leader = self.admin.members(leader, timeout=3.0)
                if victim in members:
                    self.admin.remove_member(leader, victim, timeout=10.0)
                self.removed.add(victim)
            except Exception as exc:  # noqa: BLE001 - retry until the deadline
                if time.monotonic() > deadline:
                    raise errors.RaError(f"could not remove damaged {victim}: {exc!r}") from exc
                try:
                    self.reconnect()
                except Exception:  # noqa: BLE001
                    pass
                time.sleep(0.5)
        data_dir = self.cluster.data_dir(node)
        aside = os.path.join(self.damaged_dir or os.path.join(self.cluster.data_root, "..", "damaged"),
                             f"{node}-{fid}")
        disk.set_aside(data_dir, aside)
        self.damaged.pop(node, None)
        self._restart([node])
        self._readd(victim)

    # ------------------------------------------------------------- healing
    def heal_all(self, reason: str = "final") -> list[str]:
        """Undo every fault still in effect; returns what it did."""
        done = []
        for n in sorted(self.paused):
            self.cluster.resume(n)
            done.append(f"resumed {n}")
        self.paused.clear()
        for n in sorted(self.filled):
            disk.unfill(self.cluster.data_dir(n))
            done.append(f"freed the disk of {n}")
        self.filled.clear()
        try:
            self.partitioner.heal()
            if self.partitioned:
                done.append("healed partition")
            self.partitioned = False
        except Exception as exc:  # noqa: BLE001
            done.append(f"heal failed: {exc}")
        if self.damaged and self.admin is None:
            try:
                self.reconnect()
            except Exception as exc:  # noqa: BLE001
                done.append(f"no client: {exc}")
        for n in sorted(self.damaged):
            try:
                self._repair(n)
                done.append(f"repaired {n}")
            except Exception as exc:  # noqa: BLE001
                done.append(f"repairing {n} failed: {exc}")
        if self.killed:
            names = sorted(self.killed)
            try:
                self._restart(names)
                done.append(f"restarted {', '.join(names)}")
            except Exception as exc:  # noqa: BLE001
                done.append(f"restart failed: {exc}")
        if self.removed and self.admin is None:
            try:
                self.reconnect()
            except Exception as exc:  # noqa: BLE001
                done.append(f"no client: {exc}")
        for victim in sorted(self.removed):
            try:
                self._readd(victim)
                done.append(f"re-added {victim}")
            except Exception as exc:  # noqa: BLE001
                done.append(f"re-adding {victim} failed: {exc}")
        self.log.write("heal", "all", reason=reason, actions=done)
        return done
