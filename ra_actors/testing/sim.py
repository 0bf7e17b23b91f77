"""Deterministic simulation of Ra clusters: many servers, one process, one seed.

Rules:

* **One seed, one run.**  A single ``random.Random(seed)`` drives every
  choice (network, disk, timers, failure detector, nemesis, clients); time
  is virtual, in integer milliseconds; events sit in a heap ordered by
  ``(time, sequence number)``, so ties break in scheduling order.  Nothing
  reads the wall clock and nothing iterates a set of server ids unsorted:
  the same seed prints the same transcript.
* **Production's interpreter.**  Every simulated server is a real
  :class:`~ra_actors.shell.server.ServerShell` (the class the actors run in
  both placements) whose port and store are the simulator's
  (:mod:`.sim_port`): the shell feeds the core and carries out its effects;
  the simulator only moves messages, disk writes and timers on virtual
  time.  A seed therefore exercises production's effect handling, timers,
  lazy leader ticks and batching, not a cousin of them.
* **World model.**  Nodes ``n1..nK`` each have a :class:`~.disk.NodeDisk`
  (one WAL shared by all servers of the node, of every cluster); the
  :class:`~.network.Network` links the nodes and a ``clients`` node.
  Server processes can crash alone (the WAL survives) or with their node
  (unsynced writes are lost, see :mod:`.disk`).  ``MonitorServer`` works
  like an Erlang monitor on the incarnation the watcher talks to: it fires
  ``ServerDown`` once that incarnation exits (crash, node crash, deletion),
  as soon as the two nodes can talk, and at once if it is already gone.  A
  per-node-pair failure detector (like Ra's aten) sends ``NodeEvent(node,
  up)`` after a delay when reachability changes (a node restart is always
  noticed), plus occasional false suspicions.  Messages addressed to a
  server are dropped if it restarted while they were in flight; a client
  addressing a server that is not running fails at once.  Until a cluster
  has had its first leader the harness re-triggers elections, as an
  operator retrying ``start_cluster`` would.
* **Faults** (names for ``faults``): ``partition`` (splits, isolating a
  node or the leader's node, one-way cuts, bridges; healed after a while),
  ``crash`` (node or single process, restarted later; now and then every
  node), ``torn-write`` (node crashes land in the middle of an fsync and
  keep a random prefix of the batch), ``drop`` / ``duplicate`` /
  ``reorder`` (per message, between server nodes), ``membership`` (remove
  a member, delete it once the removal commits, add a fresh server as
  voter or promotable), ``transfer`` (leadership transfers), ``snapshot``
  (the KV machine releases its cursor every few commands; small snapshot
  chunks), ``checkpoint`` (the KV machine checkpoints every few indexes and
  its release cursors promote checkpoints; members restart from them),
  ``false-suspicion`` (the detector wrongly reports a node down
  for a while), ``wal-loss`` (a server's WAL write or the WAL's report is
  lost on the way, and reports arrive out of order, as between Thespian
  actors under load).
* **Disk machines.**  ``disk_machine=True`` runs the KV machine as a disk
  machine (:mod:`.disk_kv`): its state lives in the node disk's simulated
  files (:class:`~.disk.MachineFiles`), commits are atomic but unsynced, so
  a node crash may take the last ones back, and restarts replay only what
  the files do not hold.
* **Phases.**  During the fault phase (``steps`` events or ``duration_ms``)
  the nemesis injects the faults named in ``faults`` (see :data:`FAULTS`).
  Then everything is healed, crashed nodes restart, clients run a little
  longer and stop, and within ``liveness_ms`` every cluster must have a
  leader and every acknowledged command must be applied on every member of
  the leader's configuration.
* **Checks.**  The invariants of :mod:`.invariants` run online after every
  event (the run stops at the first violation); at the end each cluster's
  KV history goes through :func:`~ra_actors.testing.lincheck.check_history`.
  :class:`SimResult` carries the verdict, the violations, statistics and
  the transcript.
"""
from __future__ import annotations

import heapq
import random
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..core import effects as fx
from ..core import messages as msgs
from ..core.server import RaftServer
from ..core.types import (LEADER, LEADING_ROLES, VOTER, AwaitConsensus, NotifyReply, Ok, ServerConfig,
                          ServerId, SnapshotMeta)
from ..shell.server import ServerShell
from . import disk_kv, lincheck
from .bugs import core_class, wal_sequencer_class
from .disk import DiskConfig, NodeDisk
from .invariants import Invariants
from .network import Network, NetworkConfig
from .sim_port import RpcBatch, SimPort, SimStore
from .workload import Workload, WorkloadConfig

import machines.kv as kv_machine

FAULTS = ("partition", "crash", "torn-write", "drop", "duplicate", "reorder", "membership",
          "transfer", "snapshot", "false-suspicion", "wal-loss", "checkpoint")
DEFAULT_FAULTS = frozenset({"partition", "crash"})
CLIENT_NODE = "clients"
# what a run counts as it goes (SimResult.stats adds totals at the end)
_COUNTERS = ("elections", "crashes", "node_crashes", "process_crashes", "partitions", "heals", "suspicions",
             "membership_changes", "transfers", "snapshots", "machine_messages_dropped", "chunks_unavailable",
             "wal_writes_lost", "wal_reports_lost", "wal_resends", "checkpoints_written",
             "checkpoints_promoted", "checkpoint_restarts")

DEFAULT_ELECTION_TIMERS = {"really_short": (20, 100), "short": (100, 300), "medium": (200, 600),
                           "long": (300, 900)}


@dataclass
class Timing:
    """Virtual-time knobs (integer ms; ranges are inclusive and drawn
    uniformly from the seeded RNG)."""

    # Election delays: "long" (no leader known) and "short" (the leader is
    # gone) are the shells' election_timeout_ms / election_short_ms.
    elections: dict[str, tuple[int, int]] = field(default_factory=lambda: dict(DEFAULT_ELECTION_TIMERS))
    tick_ms: int = 100                                # a leader's tick, while it wants one
    wal_stall_ms: int = 200                           # no WAL progress this long: the shell writes again
    last_applied_ms: int = 50                         # how often the last-applied hint is written
    detector_down_ms: tuple[int, int] = (80, 400)     # node unreachable -> NodeEvent(up=False)
    detector_up_ms: tuple[int, int] = (20, 200)       # reachable again -> NodeEvent(up=True)
    monitor_ms: tuple[int, int] = (5, 60)             # process exit -> ServerDown to its watchers
    suspicion_ms: tuple[int, int] = (100, 800)        # length of a false suspicion
    partition_ms: tuple[int, int] = (200, 3000)       # how long a partition lasts
    node_restart_ms: tuple[int, int] = (300, 3000)    # node crash -> restart
    process_restart_ms: tuple[int, int] = (50, 1500)  # process crash -> restart
    nemesis_ms: tuple[int, int] | None = None         # between nemesis actions (None: per seed)
    client_tail_ms: int = 2000                        # clients keep running after the faults


def parse_faults(text: str | Iterable[str]) -> frozenset[str]:
    """``"partition,crash"`` (or an iterable) -> validated fault names."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n and n != "none"]
    if names == ["all"]:
        return frozenset(FAULTS)
    unknown = sorted(set(names) - set(FAULTS))
    if unknown:
        raise ValueError(f"unknown faults {unknown}; known: {', '.join(FAULTS)}")
    return frozenset(names)


@dataclass
class SimResult:
    """Outcome of :meth:`Simulation.run`: ``violations`` is empty when clean;
    ``histories`` maps each cluster to its KV history (JSON-lines events)
    and ``lincheck`` to the checker's verdict for it."""

    seed: int
    verdict: str                      # "ok" | "violation"
    violations: list[str]
    stats: dict[str, Any]
    transcript: list[str]
    histories: dict[str, list[dict]]
    lincheck: dict[str, str]

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    def summary(self) -> str:
        s = self.stats
        ops = f"{s['ops_ok']}/{s['ops_fail']}/{s['ops_info']}"
        lin = sorted(set(self.lincheck.values()))
        lin_text = "history " + ("/".join(lin) if lin else "not checked")
        if self.ok:
            return (f"seed {self.seed}: OK (elections={s['elections']}, committed={s['committed']}, "
                    f"ops ok/fail/info={ops}, crashes={s['crashes']}, partitions={s['partitions']}, "
                    f"{lin_text})")
        return f"seed {self.seed}: VIOLATION {self.violations[0]}"


@dataclass
class Slot:
    """One Raft server (a ``ServerId``) across its incarnations."""

    sid: ServerId
    cluster: str
    uid: str
    config: ServerConfig
    incarnation: int = 0
    shell: ServerShell | None = None   # the running incarnation (None: not running)
    deleted: bool = False
    # Per-incarnation bookkeeping for the invariants.
    commit_before: int = 0             # commit index before the message being handled
    prev_role: str = ""
    prev_commit: int = 0
    prev_applied: int = 0
    commit_checked: int = 0
    hook_last_applied: int | None = None
    session_last: dict = field(default_factory=dict)   # session -> last number applied (this incarnation)

    @property
    def token(self) -> tuple[ServerId, int]:
        return (self.sid, self.incarnation)

    @property
    def srv(self) -> RaftServer | None:
        """The running incarnation's core."""
        return self.shell.core if self.shell is not None else None


@dataclass
class ClusterInfo:
    name: str
    sids: list[ServerId]               # every server ever created, in creation order
    size: int                          # the configured membership size
    workload: Workload | None = None
    applied_index: dict = field(default_factory=dict)   # reply key -> log index
    acked_max: int = 0
    generation: int = 0
    membership: tuple = ("idle",)      # nemesis state of membership changes
    admin_serial: int = 0


class _RecordingMachine:
    """Wraps a machine module to report every ``apply`` to the simulator
    (the state machine safety hook); everything else is delegated."""

    def __init__(self, impl: Any, sink: Callable[[Any, Any, Any], None]) -> None:
        self._impl = impl
        self._sink = sink

    def init(self, config: dict) -> Any:
        return self._impl.init(config)

    def apply(self, meta: Any, command: Any, state: Any):
        result = self._impl.apply(meta, command, state)
        self._sink(meta, command, result[0])
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._impl, name)


def _fmt(key: str, value: Any) -> str:
    if isinstance(value, ServerId):
        return f"{value.name}@{value.node}"
    if key == "entries" and isinstance(value, tuple):
        return f"[{value[0].index}..{value[-1].index}]" if value else "[]"
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)}B>"
    if key == "fun":
        return "fun"
    if isinstance(value, SnapshotMeta):
        return f"{value.index}/{value.term}"
    if hasattr(value, "__dataclass_fields__"):
        return describe(value)
    if key == "cluster" and isinstance(value, tuple):
        return ",".join(f"{s[0]}@{s[1]}" for s, _ in value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(msg: Any) -> str:
    """Compact one-line form of a message or effect for the trace."""
    if not hasattr(msg, "__dataclass_fields__"):
        return repr(msg)
    parts = [f"{key}={_fmt(key, getattr(msg, key))}" for key in msg.__dataclass_fields__
             if key != "incarnation"]
    return f"{type(msg).__name__}({', '.join(parts)})"


def _sid(s: ServerId) -> str:
    return f"{s.name}@{s.node}"


@dataclass(frozen=True)
class _SeedParameters:
    network: NetworkConfig
    disk: DiskConfig
    release_every: int           # the KV machine's ReleaseCursor period (0: never)
    chunk_size: int              # snapshot chunk size
    batch: int                   # max_append_entries_batch
    pipeline: int                # max_pipeline_count
    nemesis_every: tuple[int, int]
    wal_loss: float              # chance that a WAL write, or a WAL report, is lost
    checkpoint_every: int = 0    # the KV machine's Checkpoint period (0: never)


def _draw_parameters(rng: random.Random, faults: frozenset[str], timing: Timing) -> _SeedParameters:
    """A seed's world, drawn in a fixed order (changing it changes every seed)."""
    network = NetworkConfig(
        remote_delay=(1, rng.choice([3, 6, 10])),
        drop=rng.choice([0.01, 0.03, 0.08]) if "drop" in faults else 0.0,
        duplicate=rng.choice([0.01, 0.03, 0.08]) if "duplicate" in faults else 0.0,
        reorder=rng.choice([0.02, 0.05, 0.15]) if "reorder" in faults else 0.0,
    )
    release_every = rng.choice([3, 7, 15, 30]) if "snapshot" in faults else 0
    chunk_size = rng.choice([16, 64, 256, 4096]) if "snapshot" in faults else 1_000_000
    batch = rng.choice([4, 16, 128])
    pipeline = rng.choice([16, 256, 4096])
    nemesis_choice = (100, rng.choice([400, 800, 1600]))
    wal_loss = rng.choice([0.005, 0.02, 0.05]) if "wal-loss" in faults else 0.0
    checkpoint_every = 0
    if "checkpoint" in faults:   # (drawn last: seeds without it keep their world)
        checkpoint_every = rng.choice([2, 3, 5, 11])
        release_every = release_every or rng.choice([7, 15, 30])
    return _SeedParameters(network, DiskConfig(torn_writes="torn-write" in faults), release_every, chunk_size,
                           batch, pipeline, timing.nemesis_ms or nemesis_choice, wal_loss, checkpoint_every)


class Simulation:
    """One seeded run (see the module rules).  ``run()`` returns a :class:`SimResult`."""

    def __init__(self, seed: int, members: int = 3, clusters: int = 1,
                 faults: Iterable[str] | str = DEFAULT_FAULTS, steps: int | None = 4000,
                 duration_ms: int | None = None, bugs: Iterable[str] = frozenset(),
                 trace: bool = False, echo: Callable[[str], None] | None = None,
                 timing: Timing | None = None,
                 liveness_ms: int = 30_000, lincheck_steps: int = 50_000_000,
                 workload: WorkloadConfig | None = None, disk_machine: bool = False) -> None:
        if members < 1:
            raise ValueError("members must be >= 1")
        if steps is None and duration_ms is None:
            raise ValueError("give steps or duration_ms")
        self.seed = seed
        self.members = members
        self.n_clusters = clusters
        self.faults = parse_faults(faults)
        self.steps = steps
        self.duration_ms = duration_ms
        self.bugs = frozenset(bugs)
        self._core_class = core_class(self.bugs)   # (an unknown bug is a ValueError here)
        self.trace = trace
        self.echo = echo
        self.timing = timing or Timing()
        self.timers = self.timing.elections
        self.liveness_ms = liveness_ms
        self.lincheck_steps = lincheck_steps
        self.machine_impl = disk_kv if disk_machine else kv_machine   # (disk_kv: files on the node disk)
        self.disk_digests: dict[tuple[str, int], Any] = {}

        rng = self.rng = random.Random(seed)
        self.now = 0
        self._queue: list = []
        self._seq = 0
        self.events = 0
        self.transcript: list[str] = []
        self.inv = Invariants(clock=lambda: self.now)
        self.faulting = True
        self.finished = False
        self.stats: dict[str, Any] = dict.fromkeys(_COUNTERS, 0)

        drawn = _draw_parameters(rng, self.faults, self.timing)
        self.node_names = [f"n{i + 1}" for i in range(members)]
        self.network = Network(rng, drawn.network, faulty_nodes=self.node_names)
        self.disks = {n: NodeDisk(n, rng, drawn.disk, wal_sequencer_class(self.bugs)) for n in self.node_names}
        self.node_up = {n: True for n in self.node_names}
        self.release_every = drawn.release_every
        self.checkpoint_every = drawn.checkpoint_every
        self.chunk_size = drawn.chunk_size
        self.batch = drawn.batch
        self.pipeline = drawn.pipeline
        self.nemesis_every = drawn.nemesis_every
        self.wal_loss = drawn.wal_loss
        self.tick_ms = self.timing.tick_ms
        self.fd_down_ms = self.timing.detector_down_ms
        self.fd_up_ms = self.timing.detector_up_ms

        self.slots: dict[ServerId, Slot] = {}
        self.clusters: dict[str, ClusterInfo] = {}
        self.fd_view: dict[tuple[str, str], bool] = {}
        self.fd_pending: set[tuple[str, str]] = set()
        self.suspect_until: dict[tuple[str, str], int] = {}
        self.partition_active = False
        self.partition_id = 0
        self.crash_armed: set[str] = set()
        # (watched server, incarnation) -> [((watcher, incarnation), ref)]
        self.monitors: dict[tuple[ServerId, int], list[tuple[tuple[ServerId, int], Any]]] = {}
        self._sender: tuple[ServerId, int] | None = None
        self.admin_owners: dict[str, str] = {}
        self.client_owners: dict[str, Any] = {}
        self.fault_end_time: int | None = None
        self.deadline: int | None = None
        self._workload_cfg = workload
        self._admin_purpose: dict[str, tuple] = {}

        # Every shell runs with the simulator's timing (production defaults otherwise).
        self.shell_settings = {
            "election_timeout_ms": self.timers["long"], "election_short_ms": self.timers["short"],
            "tick_ms": self.tick_ms, "terminating_tick_ms": min(100, self.tick_ms),
            "last_applied_every_ms": self.timing.last_applied_ms,
            "wal_stall_ms": self.timing.wal_stall_ms,
        }

    # ================================================================= output
    def note(self, text: str, always: bool = True) -> None:
        if not always and not self.trace:
            return
        line = f"{self.now:>8}ms  {text}"
        self.transcript.append(line)
        if self.echo is not None:
            self.echo(line)

    # ================================================================ events
    def _at(self, time: int, kind: str, *args: Any) -> None:
        heapq.heappush(self._queue, (time, self._seq, kind, args))
        self._seq += 1

    def _after(self, delay: int, kind: str, *args: Any) -> None:
        self._at(self.now + delay, kind, *args)

    # ================================================================== run
    def run(self) -> SimResult:
        self._bootstrap()
        fault_end = self.duration_ms
        while self._queue and not self.finished:
            time, _, kind, args = heapq.heappop(self._queue)
            self.now = time
            self.events += 1
            getattr(self, "_ev_" + kind)(*args)
            if self.inv.violations:
                break
            if self.faulting and ((self.steps is not None and self.events >= self.steps)
                                  or (fault_end is not None and self.now >= fault_end)):
                self._end_faults()
            elif self.deadline is not None and self.now > self.deadline:
                self._liveness_failure()
                break
        return self._result()

    def _result(self) -> SimResult:
        histories: dict[str, list[dict]] = {}
        verdicts: dict[str, str] = {}
        for name, info in sorted(self.clusters.items()):
            if info.workload is None:
                continue
            events = info.workload.events()
            histories[name] = events
            if self.inv.violations:
                continue  # the run stopped early: the history is incomplete
            res = lincheck.check_history(events, max_steps=self.lincheck_steps)
            verdicts[name] = res.verdict
            if res.verdict == lincheck.NOT_LINEARIZABLE:
                self.inv.fail(f"linearizability: the {name} KV history is not linearizable: "
                              f"{res.explanation}")
            self.note(f"{name}: {len(events)} history events, {res.verdict}")
        st = self.stats
        st["events"] = self.events
        st["virtual_ms"] = self.now
        st["committed"] = sum(self.inv.max_committed.values())
        st["ops_ok"] = sum(c.workload.stats["ok"] for c in self.clusters.values() if c.workload)
        st["ops_fail"] = sum(c.workload.stats["fail"] for c in self.clusters.values() if c.workload)
        st["ops_info"] = sum(c.workload.stats["info"] for c in self.clusters.values() if c.workload)
        st["messages"] = self.network.sent
        st["dropped"] = self.network.dropped
        st["duplicated"] = self.network.duplicated
        st["reordered"] = self.network.reordered
        st["fsync_batches"] = sum(d.batches for d in self.disks.values())
        st["torn_batches"] = sum(d.torn for d in self.disks.values())
        st["wal_refused"] = sum(d.refused for d in self.disks.values())
        st["wal_resends"] = sum(sl.shell.stats["wal_resends"] for sl in self.slots.values() if sl.shell)
        st["invariant_checks"] = self.inv.checks
        verdict = "violation" if self.inv.violations else "ok"
        for v in self.inv.violations:
            self.note(f"VIOLATION {v}")
        return SimResult(self.seed, verdict, list(self.inv.violations), dict(st),
                         list(self.transcript), histories, verdicts)

    # ============================================================ bootstrap
    def _bootstrap(self) -> None:
        rng = self.rng
        self.note(f"seed {self.seed}: {self.members} members x {self.n_clusters} cluster(s) on "
                  f"{','.join(self.node_names)}; faults {','.join(sorted(self.faults)) or 'none'}"
                  + (f"; bugs {','.join(sorted(self.bugs))}" if self.bugs else "")
                  + (f"; release_cursor_every={self.release_every} chunk={self.chunk_size}B"
                     if self.release_every else "")
                  + (f"; checkpoint_every={self.checkpoint_every}" if self.checkpoint_every else ""))
        for obs in self.node_names:
            for tgt in self.node_names:
                if obs != tgt:
                    self.fd_view[(obs, tgt)] = True
        for c in range(self.n_clusters):
            name = "kv" if c == 0 else f"kv{c + 1}"
            sids = [ServerId(name, n) for n in self.node_names]
            info = ClusterInfo(name, [], len(sids))
            self.clusters[name] = info
            for sid in sids:
                self._new_slot(info, sid, tuple(sids))
            for sid in sids:
                self._start(self.slots[sid], fresh=True)
            # Ra's start_cluster triggers an election on one member.
            self._after(rng.randint(0, 30), "local", sids[0], 1, msgs.TriggerElection())
            self._after(1000, "form", name)
            wcfg = self._workload_cfg or WorkloadConfig(clients=rng.randint(3, 5))
            info.workload = Workload(name, rng, self, lambda n=name: self._live_members(n), wcfg)
            self.client_owners.update(info.workload.by_owner)
            info.workload.start()
        if self.faults - {"torn-write", "drop", "duplicate", "reorder", "snapshot", "checkpoint"}:
            self._after(rng.randint(*self.nemesis_every), "nemesis")

    def _ev_form(self, cluster: str) -> None:
        """Until the cluster has had a leader, re-trigger an election now and
        then, as an operator retrying ``start_cluster`` would: brand-new
        servers (empty log, term 0) never start one themselves."""
        if any(key[0] == cluster for key in self.inv.leaders):
            return
        live = [s for s in self.clusters[cluster].sids if self.slots[s].srv is not None]
        if live:
            sid = self.rng.choice(live)
            self.note(f"{cluster} has no leader yet: trigger an election on {_sid(sid)}")
            self._after(0, "local", sid, self.slots[sid].incarnation, msgs.TriggerElection())
        self._after(1000, "form", cluster)

    def _new_slot(self, info: ClusterInfo, sid: ServerId, members: tuple, joining: bool = False) -> Slot:
        info.generation += 1
        uid = f"{sid.name}_{sid.node}_{info.generation}"
        cfg = ServerConfig(
            server_id=sid, uid=uid, cluster_name=info.name, machine=self.machine_impl.__name__,
            initial_members=members,
            machine_config=({"release_cursor_every": self.release_every}
                            | ({"checkpoint_every": self.checkpoint_every} if self.checkpoint_every else {})),
            max_append_entries_batch=self.batch, max_pipeline_count=self.pipeline,
            snapshot_chunk_size=self.chunk_size, joining=joining)
        slot = Slot(sid, info.name, uid, cfg)
        self.slots[sid] = slot
        info.sids.append(sid)
        return slot

    def _live_members(self, cluster: str) -> list[ServerId]:
        info = self.clusters[cluster]
        live = [s for s in info.sids if not self.slots[s].deleted]
        return live or list(info.sids)

    # ======================================================= server lifecycle
    def _start(self, slot: Slot, fresh: bool) -> None:
        """Start the next incarnation of ``slot``: a real ``ServerShell`` on a
        simulated port and store (``fresh``: a brand-new server)."""
        slot.incarnation += 1
        slot.prev_role = ""
        slot.commit_checked = 0
        slot.hook_last_applied = None
        slot.session_last = {}
        inc = slot.incarnation
        machine = _RecordingMachine(self.machine_impl,
                                    lambda meta, cmd, state, s=slot, i=inc: self._on_apply(s, i, meta, cmd, state))
        shell = ServerShell(SimPort(self, slot, inc), self._core_factory)
        try:
            shell.recover(slot.config, inc, SimStore(self, slot, inc), machine, self.shell_settings)
        except Exception as exc:  # a core crash is a finding, not a harness error
            self._core_exception(slot, "start", exc)
            return
        slot.shell = shell
        self._instrument(slot, shell.core)
        srv = shell.core
        slot.prev_commit = srv.commit_index
        slot.prev_applied = srv.last_applied
        if not fresh:
            self.note(f"{_sid(slot.sid)} restarted (incarnation {inc}): term {srv.current_term}, "
                      f"log {srv.log.snapshot_index}+{len(srv.log.entries)}, applied {srv.last_applied}")
        shell.start()
        if slot.shell is shell:
            self._observe(slot)

    def _core_factory(self, config: ServerConfig, machine: Any, recovered: Any) -> RaftServer:
        return self._core_class(config, machine, recovered)

    def _instrument(self, slot: Slot, core: RaftServer) -> None:
        """Watch every step of this incarnation's core: the commit index
        before it (for the log-rewrite check), the trace, and the invariants
        after it.  (Testing code wraps the instance; the shell has no hooks.)"""
        handle = core.handle

        def observed(msg: Any):
            slot.commit_before = core.commit_index
            if self.trace:
                self.note(f"  -> {_sid(slot.sid)} {describe(msg)}")
            role, effects = handle(msg)
            if self.trace:
                for eff in effects:
                    if not isinstance(eff, (fx.LeaderChanged, fx.MonitorServer)):
                        self.note(f"     {_sid(slot.sid)} {describe(eff)}")
            if slot.srv is core:
                self._observe(slot)
            return role, effects

        core.handle = observed

    def _core_exception(self, slot: Slot, what: str, exc: BaseException | None) -> None:
        if exc is None:
            self.inv.fail(f"core exception in {_sid(slot.sid)} ({what})")
            return
        tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
        where = "".join(tb[-3:]).strip().replace("\n", " | ")
        self.inv.fail(f"core exception in {_sid(slot.sid)} ({what}): {type(exc).__name__}: {exc} [{where}]")

    def server_crashed(self, slot: Slot, reason: str, exc: BaseException | None) -> None:
        """The shell crashed (an exception out of the core or an effect)."""
        self._core_exception(slot, reason, exc)

    def server_exited(self, slot: Slot, why: str) -> None:
        """The shell left: removed from its cluster, or its cluster deleted."""
        self.note(f"{_sid(slot.sid)} " + ("deleted its data and stopped" if why == "deleted" else f"stopped ({why})"))
        slot.shell.close()
        self._stop_slot(slot)

    def _on_apply(self, slot: Slot, inc: int, meta: Any, command: Any, state: Any = None) -> None:
        if inc != slot.incarnation:
            return
        if self.machine_impl is disk_kv:
            # A disk machine's files after entry i are the same on every
            # member (one that skipped or lost entries would differ).
            digest = kv_machine.digest(state.committed[0])
            first = self.disk_digests.setdefault((slot.cluster, meta.index), digest)
            if first != digest:
                self.inv.fail(f"disk machine: {_sid(slot.sid)}'s files after entry {meta.index} differ from "
                              f"another member's ({digest} != {first})")
        self.inv.on_apply(slot.cluster, slot.sid, meta.index, meta.term, command, slot.hook_last_applied)
        slot.hook_last_applied = meta.index
        if meta.session is not None:
            self.inv.on_session_apply(slot.cluster, slot.sid, meta.index, meta.session, slot.session_last)
        mode = getattr(meta, "reply_mode", None)
        info = self.clusters[slot.cluster]
        if isinstance(mode, AwaitConsensus):
            info.applied_index.setdefault(mode.from_, meta.index)
        elif isinstance(mode, NotifyReply):
            info.applied_index.setdefault((mode.client, mode.correlation), meta.index)

    def _observe(self, slot: Slot) -> None:
        """After a step: monotonicity, role changes, commit advance."""
        srv = slot.srv
        if srv is None:
            return
        inv = self.inv
        if srv.commit_index < slot.prev_commit:
            inv.on_progress(slot.sid, "commit index", slot.prev_commit, srv.commit_index)
        if srv.last_applied < slot.prev_applied:
            inv.on_progress(slot.sid, "last applied", slot.prev_applied, srv.last_applied)
        role = srv.role
        if role == LEADER and slot.prev_role not in LEADING_ROLES:
            self.stats["elections"] += 1
            self.note(f"{_sid(slot.sid)} is leader of term {srv.current_term} "
                      f"(last index {srv.log.last_index}, commit {srv.commit_index})")
            inv.on_leader(slot.cluster, slot.sid, srv.current_term, srv.log)
        if srv.commit_index > slot.commit_checked:
            before = self.inv.max_committed.get(slot.cluster, 0)
            slot.commit_checked = inv.on_commit(slot.cluster, slot.sid, srv.log, slot.commit_checked,
                                                srv.commit_index)
            after = self.inv.max_committed.get(slot.cluster, 0)
            if after // 100 > before // 100:
                self.note(f"{slot.cluster} committed up to {after} "
                          f"(seen by {_sid(slot.sid)}, term {srv.current_term})")
        if srv.commit_index > slot.prev_commit and role in LEADING_ROLES:
            c = srv.commit_index
            term = srv.log.term_at(c)
            voters = [s for s, mem in srv.cluster.items() if mem == VOTER]
            inv.on_leader_commit(slot.cluster, slot.sid, c, term, voters,
                                 lambda v: self._durably_holds(v, c, term))
        slot.prev_role = role
        slot.prev_commit = srv.commit_index
        slot.prev_applied = srv.last_applied

    def _durably_holds(self, sid: ServerId, index: int, term: int) -> bool:
        slot = self.slots.get(sid)
        if slot is None or slot.deleted:
            return False
        return self.disks[sid.node].durable_covers(slot.uid, index, term)

    # ============================================== the world, for SimPort
    def schedule_at(self, time: int, kind: str, *args: Any) -> None:
        self._at(time, kind, *args)

    def wal_wakeup(self, node: str, delay: int | None) -> None:
        """The node's WAL was idle and has work: start a batch after ``delay``."""
        if delay is not None:
            self._after(delay, "wal_start", node, self.disks[node].epoch)

    def rpcs_sent(self, slot: Slot, to: ServerId, rpcs: tuple) -> None:
        """Check acknowledgements and votes against the sender's disk."""
        disk = self.disks[slot.sid.node]
        for rpc in rpcs:
            if isinstance(rpc, msgs.AppendEntriesReply) and rpc.success:
                self.inv.on_append_ack(slot.sid, to, rpc.last_index, rpc.last_term,
                                       disk.durable_covers(slot.uid, rpc.last_index, rpc.last_term))
            elif isinstance(rpc, msgs.RequestVoteResult) and rpc.vote_granted:
                self.inv.on_vote_granted(slot.sid, ServerId(*to), rpc.term, disk.durable_meta(slot.uid))
            elif isinstance(rpc, msgs.InstallSnapshotResult) and rpc.chunk_no == -1:
                self.inv.on_append_ack(slot.sid, to, rpc.last_index, rpc.last_term,
                                       disk.durable_covers(slot.uid, rpc.last_index, rpc.last_term),
                                       what="InstallSnapshotResult")

    def send_server(self, src_node: str, to: ServerId, msg: Any,
                    sender: tuple[ServerId, int] | None = None) -> None:
        dst = self.slots.get(ServerId(*to))
        if dst is None or dst.shell is None:
            # No live process under that name: the node directory has no
            # address, so the message goes nowhere.
            self.network.sent += 1
            self.network.dropped += 1
            return
        for at in self.network.plan(src_node, dst.sid.node, self.now):
            self._at(at, "deliver", src_node, dst.sid, dst.incarnation, msg, sender)

    def send_client(self, src_node: str, to: Any, kind: str, payload: tuple) -> None:
        owner = to.rsplit("#", 1)[0] if isinstance(to, str) and "#" in to else to
        for at in self.network.plan(src_node, CLIENT_NODE, self.now):
            self._at(at, "client", owner, kind, payload)

    def watch(self, slot: Slot, target: Any, ref: Any) -> None:
        """Monitor the incarnation of ``target`` this server talks to: the one
        that sent the message being handled, else the running one.  Only Raft
        servers are watched (simulated clients never die)."""
        if not (isinstance(target, ServerId) or (isinstance(target, tuple) and len(target) == 2)):
            return
        target = ServerId(*target)
        other = self.slots.get(target)
        if self._sender is not None and self._sender[0] == target:
            inc = self._sender[1]
        else:
            inc = other.incarnation if other is not None and other.shell is not None else None
        if other is None or other.shell is None or other.incarnation != inc:
            # Monitoring a process that is already gone: DOWN at once (Erlang's noproc).
            self._after(self.rng.randint(1, 5), "server_down", slot.sid, slot.incarnation, target, ref, "noproc")
            return
        self.monitors.setdefault((target, inc), []).append((slot.token, ref))

    def unwatch(self, slot: Slot, target: Any, ref: Any) -> None:
        if not (isinstance(target, ServerId) or (isinstance(target, tuple) and len(target) == 2)):
            return
        target = ServerId(*target)
        for key in [k for k in self.monitors if k[0] == target]:
            self.monitors[key] = [w for w in self.monitors[key] if w != (slot.token, ref)]

    # =========================================================== event kinds
    def _alive(self, sid: ServerId, inc: int) -> Slot | None:
        slot = self.slots.get(sid)
        if slot is None or slot.shell is None or slot.incarnation != inc:
            return None
        return slot

    def _ev_deliver(self, src_node: str, sid: ServerId, inc: int, msg: Any,
                    sender: tuple[ServerId, int] | None) -> None:
        slot = self._alive(sid, inc)
        if slot is None:
            return
        if not self.network.deliverable(src_node, sid.node):
            self.network.dropped += 1
            return
        self._sender = sender
        if isinstance(msg, RpcBatch):
            slot.shell.deliver_rpcs(msg.rpcs)
        else:
            slot.shell.deliver(msg)
        self._sender = None

    def _ev_local(self, sid: ServerId, inc: int, msg: Any) -> None:
        slot = self._alive(sid, inc)
        if slot is not None:
            slot.shell.deliver(msg)

    def _ev_wakeup(self, sid: ServerId, inc: int, payload: Any) -> None:
        slot = self._alive(sid, inc)
        if slot is not None:
            slot.shell.on_wakeup(payload)

    def _ev_wal_result(self, sid: ServerId, inc: int, written: tuple) -> None:
        slot = self._alive(sid, inc)
        if slot is not None:
            slot.shell.on_wal_result(written)

    def _ev_snapshot_written(self, sid: ServerId, inc: int, meta: SnapshotMeta) -> None:
        slot = self._alive(sid, inc)
        if slot is not None:
            slot.shell.on_snapshot_written(meta)

    def _ev_node_event(self, sid: ServerId, inc: int, node: str, up: bool) -> None:
        slot = self._alive(sid, inc)
        if slot is not None:
            slot.shell.on_node_event(node, up)

    def _ev_wal_start(self, node: str, epoch: int) -> None:
        disk = self.disks[node]
        if disk.epoch != epoch or not self.node_up[node]:
            return
        duration = disk.start_batch()
        if duration is not None:
            if node in self.crash_armed and self.faulting:
                self.crash_armed.discard(node)
                self._after(self.rng.randint(0, duration - 1), "crash_now", node, epoch)
            self._after(duration, "wal_done", node, epoch)

    def _ev_crash_now(self, node: str, epoch: int) -> None:
        if self.faulting and self.node_up[node] and self.disks[node].epoch == epoch:
            self._crash_node(node)

    def _ev_wal_done(self, node: str, epoch: int) -> None:
        disk = self.disks[node]
        if disk.epoch != epoch or not self.node_up[node]:
            return
        notes, duration = disk.finish_batch()
        # One answer per writer and batch, as the WAL actor sends WalResult.
        per_writer: dict = {}
        for token, written in notes:
            per_writer.setdefault(token, []).append(written)
        for (sid, inc), written in per_writer.items():
            delay = 0
            if self.wal_loss and self.faulting:
                if self.rng.random() < self.wal_loss:
                    self.stats["wal_reports_lost"] += 1
                    self.note(f"wal-loss: the WAL report {written} to {_sid(sid)} is lost", always=False)
                    continue
                delay = self.rng.randint(0, 3)   # reports of successive batches may overtake
            self._after(delay, "wal_result", sid, inc, tuple(written))
        if duration is not None:
            if node in self.crash_armed and self.faulting:
                self.crash_armed.discard(node)
                self._after(self.rng.randint(0, duration - 1), "crash_now", node, epoch)
            self._after(duration, "wal_done", node, epoch)

    def _ev_meta_done(self, node: str, epoch: int) -> None:
        disk = self.disks[node]
        if disk.epoch != epoch or not self.node_up[node]:
            return
        done = disk.finish_meta()
        if done is not None:
            (sid, inc), written = done
            self._after(0, "local", sid, inc, written)

    def _ev_snap_done(self, node: str, epoch: int) -> None:
        disk = self.disks[node]
        if disk.epoch != epoch or not self.node_up[node]:
            return
        done = disk.finish_snapshot()
        if done is not None:
            self.stats["snapshots"] += 1
            (sid, inc), written = done
            self._after(0, "snapshot_written", sid, inc, written.meta)

    def _ev_client(self, owner: Any, kind: str, payload: tuple) -> None:
        if isinstance(owner, str) and owner in self.admin_owners:
            if kind == "reply":
                self._admin_reply(owner, *payload)
            return
        client = self.client_owners.get(owner) if isinstance(owner, str) else None
        if client is None:
            return  # a reply to nobody we know (e.g. a promotion's internal change)
        if kind == "reply":
            client.on_reply(*payload)
        elif kind == "applied":
            client.on_applied(*payload)
        elif kind == "rejected":
            client.on_rejected(*payload)
        elif kind == "unreachable":
            client.on_unreachable(*payload)

    def _ev_client_wake(self, owner: str, token: tuple) -> None:
        self.client_owners[owner].on_wake(token)

    # ---------------------------------------------- the ClientEnv protocol
    def send_to_server(self, owner: str, sid: ServerId, msg: Any) -> None:
        sid = ServerId(*sid)
        if self.trace:
            self.note(f"  {owner} sends {describe(msg)} to {_sid(sid)}")
        dst = self.slots.get(sid)
        if dst is None or dst.srv is None:
            # The client API fails at once for a server that is not running
            # (NoSuchServer / NodeDown): nothing was appended.
            self._after(self.rng.randint(1, 5), "client", owner, "unreachable", (msg,))
            return
        self.send_server(CLIENT_NODE, sid, msg)

    def wake(self, owner: str, delay_ms: int, token: Any) -> None:
        self._after(delay_ms, "client_wake", owner, token)

    def acked(self, cluster: str, from_key: Any) -> None:
        info = self.clusters[cluster]
        index = info.applied_index.get(from_key)
        if index is not None and index > info.acked_max:
            info.acked_max = index

    def clock(self) -> int:
        return self.now

    # ================================================= failure detection
    def _fd_actual(self, obs: str, tgt: str) -> bool:
        return (self.node_up[tgt] and self.network.reachable(tgt, obs)
                and self.now >= self.suspect_until.get((obs, tgt), 0))

    def _fd_recheck(self) -> None:
        for obs in self.node_names:
            if not self.node_up[obs]:
                continue
            for tgt in self.node_names:
                if tgt == obs or (obs, tgt) in self.fd_pending:
                    continue
                actual = self._fd_actual(obs, tgt)
                if actual != self.fd_view[(obs, tgt)]:
                    self.fd_pending.add((obs, tgt))
                    delay = self.fd_up_ms if actual else self.fd_down_ms
                    self._after(self.rng.randint(*delay), "fd", obs, tgt)

    def _ev_fd(self, obs: str, tgt: str) -> None:
        self.fd_pending.discard((obs, tgt))
        if not self.node_up[obs]:
            return
        actual = self._fd_actual(obs, tgt)
        if actual == self.fd_view[(obs, tgt)]:
            return
        self.fd_view[(obs, tgt)] = actual
        self._deliver_node_event(obs, tgt, actual)

    def _ev_fd_bounce(self, obs: str, tgt: str) -> None:
        if not self.node_up[obs] or not self.fd_view[(obs, tgt)]:
            return
        self.fd_view[(obs, tgt)] = False
        self._deliver_node_event(obs, tgt, False)
        if self._fd_actual(obs, tgt):
            self.fd_view[(obs, tgt)] = True
            self._deliver_node_event(obs, tgt, True)
        else:
            self._fd_recheck()

    def _deliver_node_event(self, obs: str, tgt: str, up: bool) -> None:
        self.note(f"detector on {obs}: {tgt} is {'up' if up else 'down'}", always=False)
        for sid in self._sids_on(obs):
            slot = self.slots[sid]
            if slot.shell is not None:
                self._after(0, "node_event", sid, slot.incarnation, tgt, up)

    def _sids_on(self, node: str) -> list[ServerId]:
        return sorted((s for s in self.slots if s.node == node), key=lambda s: (s.name, s.node))

    def _ev_server_down(self, watcher: ServerId, inc: int, dead: ServerId, ref: Any, reason: str) -> None:
        slot = self._alive(watcher, inc)
        if slot is None:
            return
        if not self.network.reachable(dead.node, watcher.node):
            # The DOWN cannot cross a cut; it arrives once the nodes talk again
            # (meanwhile the node failure detector may already have spoken).
            self._after(100, "server_down", watcher, inc, dead, ref, "noconnection")
            return
        slot.shell.on_watch_down(ref, reason)

    # ============================================================ nemesis
    def _ev_nemesis(self) -> None:
        if not self.faulting:
            return
        rng = self.rng
        actions = []
        if "partition" in self.faults and not self.partition_active:
            actions.append("partition")
        if "crash" in self.faults:
            actions.append("crash")
        if "membership" in self.faults:
            actions.append("membership")
        if "transfer" in self.faults:
            actions.append("transfer")
        if "false-suspicion" in self.faults:
            actions.append("suspect")
        if actions:
            action = rng.choice(actions)
            getattr(self, "_nemesis_" + action)()
        self._after(rng.randint(*self.nemesis_every), "nemesis")

    def _leader_of(self, cluster: str) -> Slot | None:
        best = None
        for sid in self.clusters[cluster].sids:
            slot = self.slots[sid]
            srv = slot.srv
            if srv is not None and srv.role == LEADER:
                if best is None or srv.current_term > best.srv.current_term:
                    best = slot
        return best

    def _nemesis_partition(self) -> None:
        rng = self.rng
        nodes = list(self.node_names)
        if len(nodes) < 2:
            return
        kind = rng.choice(["split", "isolate", "isolate-leader", "one-way", "bridge"])
        self.partition_id += 1
        self.partition_active = True
        self.stats["partitions"] += 1
        if kind == "split":
            rng.shuffle(nodes)
            k = rng.randint(1, max(1, (len(nodes) - 1) // 2))
            groups = [sorted(nodes[:k]), sorted(nodes[k:])]
            self.network.partition(groups)
            text = f"partition {groups[0]} | {groups[1]}"
        elif kind in ("isolate", "isolate-leader"):
            victim = rng.choice(nodes)
            if kind == "isolate-leader":
                leader = self._leader_of(rng.choice(sorted(self.clusters)))
                if leader is not None:
                    victim = leader.sid.node
            self.network.isolate(victim, nodes)
            text = f"isolate {victim}"
        elif kind == "one-way":
            src, dst = rng.sample(nodes, 2)
            self.network.cut(src, dst)
            text = f"one-way cut {src} -> {dst}"
        else:
            rng.shuffle(nodes)
            bridge = nodes[0]
            rest = nodes[1:]
            half = max(1, len(rest) // 2)
            a, b = sorted(rest[:half]), sorted(rest[half:])
            if b:
                for x in a:
                    for y in b:
                        self.network.cut(x, y)
                        self.network.cut(y, x)
            text = f"bridge {a} <{bridge}> {b}"
        self.note(f"nemesis: {text}")
        self._fd_recheck()
        self._after(rng.randint(*self.timing.partition_ms), "heal", self.partition_id)

    def _ev_heal(self, pid: int) -> None:
        if pid != self.partition_id or not self.partition_active:
            return
        self._heal()

    def _heal(self) -> None:
        self.network.heal()
        self.partition_active = False
        self.stats["heals"] += 1
        self.note("nemesis: heal network")
        self._fd_recheck()

    def _nemesis_crash(self) -> None:
        rng = self.rng
        down = [n for n in self.node_names if not self.node_up[n]]
        up = [n for n in self.node_names if self.node_up[n]]
        roll = rng.random()
        if roll < 0.05 and not down:
            self.note("nemesis: crash every node")
            for n in up:
                self._crash_node(n)
            return
        if roll < 0.6:
            if len(down) + len(self.crash_armed) + 1 > (self.members - 1) // 2 or not up:
                return
            victim = rng.choice(up)
            if rng.random() < 0.4:
                leader = self._leader_of(rng.choice(sorted(self.clusters)))
                if leader is not None and self.node_up[leader.sid.node]:
                    victim = leader.sid.node
            if "torn-write" in self.faults and rng.random() < 0.6:
                # Crash in the middle of the node's next fsync, so that the
                # batch in flight is torn (see _ev_wal_start).
                self.crash_armed.add(victim)
                self.note(f"nemesis: crash node {victim} during its next fsync")
                return
            self.note(f"nemesis: crash node {victim}")
            self._crash_node(victim)
        else:
            live = [s for s in sorted(self.slots, key=lambda s: (s.name, s.node))
                    if self.slots[s].srv is not None]
            if not live:
                return
            victim = rng.choice(live)
            if rng.random() < 0.4:
                leader = self._leader_of(self.slots[victim].cluster)
                if leader is not None:
                    victim = leader.sid
            self._crash_process(self.slots[victim])

    def _crash_node(self, node: str) -> None:
        self.stats["crashes"] += 1
        self.stats["node_crashes"] += 1
        self.node_up[node] = False
        report = self.disks[node].crash()
        for sid in self._sids_on(node):
            slot = self.slots[sid]
            if slot.shell is not None:
                self._report_down(slot, "noconnection")
            slot.shell = None
        self.note(f"node {node} crashed (lost {report['pending_lost']} pending WAL records, "
                  f"{report['in_flight']} in flight"
                  + (f", {report['in_flight_durable']} of them durable" if "in_flight_durable" in report else "")
                  + (f"; {report['machine_commits_lost']} machine(s) lost unsynced commits"
                     if "machine_commits_lost" in report else "")
                  + ")")
        if "machine_commits_lost" in report:
            self.stats["machine_commits_lost"] = (self.stats.get("machine_commits_lost", 0)
                                                  + report["machine_commits_lost"])
        self._fd_recheck()
        self._after(self.rng.randint(*self.timing.node_restart_ms), "node_restart", node)

    def _ev_node_restart(self, node: str) -> None:
        if self.node_up[node]:
            return
        self.node_up[node] = True
        self.note(f"node {node} restarts")
        for tgt in self.node_names:
            if tgt != node:
                self.fd_view[(node, tgt)] = True
        # A restart breaks every connection of the node: observers that had
        # not noticed the crash yet still learn it (down, then up), as they
        # would from Erlang distribution or a new node incarnation.
        for obs in self.node_names:
            if obs != node and self.node_up[obs] and self.fd_view[(obs, node)]:
                self._after(self.rng.randint(*self.fd_up_ms), "fd_bounce", obs, node)
        for sid in self._sids_on(node):
            slot = self.slots[sid]
            if not slot.deleted:
                slot.shell = None
                self._start(slot, fresh=False)
                if self.inv.violations:
                    return
        self._fd_recheck()

    def _crash_process(self, slot: Slot) -> None:
        self.stats["crashes"] += 1
        self.stats["process_crashes"] += 1
        inc = slot.incarnation
        slot.shell = None
        self.note(f"process {_sid(slot.sid)} crashed")
        self._report_down(slot, "noproc")
        self._after(self.rng.randint(*self.timing.process_restart_ms), "server_restart", slot.sid, inc)

    def _report_down(self, slot: Slot, reason: str) -> None:
        """The running incarnation of ``slot`` died: fire every monitor on it
        (``MonitorServer`` watches), after a short delay."""
        for (watcher, winc), ref in self.monitors.pop(slot.token, []):
            self._after(self.rng.randint(*self.timing.monitor_ms), "server_down", watcher, winc,
                        slot.sid, ref, reason)

    def _ev_server_restart(self, sid: ServerId, inc: int) -> None:
        slot = self.slots[sid]
        if slot.deleted or slot.srv is not None or slot.incarnation != inc or not self.node_up[sid.node]:
            return
        if self.disks[sid.node].has_pending(slot.uid):
            # Its writes are still in the (live) WAL; in Ra the restarted
            # server would find them in its mem table.  Wait until durable.
            self._after(5, "server_restart", sid, inc)
            return
        self._start(slot, fresh=False)

    def _stop_slot(self, slot: Slot) -> None:
        if slot.shell is not None:
            self._report_down(slot, "shutdown")
        slot.shell = None
        slot.deleted = True
        self.disks[slot.sid.node].delete(slot.uid)

    def _nemesis_suspect(self) -> None:
        rng = self.rng
        pairs = [(o, t) for o in self.node_names for t in self.node_names
                 if o != t and self.node_up[o] and self._fd_actual(o, t)]
        if not pairs:
            return
        obs, tgt = rng.choice(pairs)
        until = self.now + rng.randint(*self.timing.suspicion_ms)
        self.suspect_until[(obs, tgt)] = until
        self.stats["suspicions"] += 1
        self.note(f"nemesis: {obs} falsely suspects {tgt} until {until}ms")
        self._after(rng.randint(5, 50), "fd", obs, tgt)
        self._at(until + 1, "fd", obs, tgt)

    # -- admin operations (membership, transfer) -----------------------------
    def _admin_send(self, info: ClusterInfo, leader: Slot, msg_factory: Callable[[str], Any],
                    purpose: tuple) -> None:
        info.admin_serial += 1
        owner = f"{info.name}/admin{info.admin_serial}"
        from_ = f"{owner}#1"
        self.admin_owners[owner] = info.name
        self._admin_purpose[owner] = purpose
        self.send_server(CLIENT_NODE, leader.sid, msg_factory(from_))
        self._after(3000, "admin_deadline", owner)

    def _ev_admin_deadline(self, owner: str) -> None:
        purpose = self._admin_purpose.pop(owner, None)
        if purpose is None:
            return
        info = self.clusters[self.admin_owners[owner]]
        self.note(f"{info.name}: {purpose[0]} got no answer")
        if purpose[0] in ("remove", "add") and info.membership[0] in ("removing", "adding"):
            info.membership = ("idle",) if purpose[0] == "remove" else ("joining", purpose[1])

    def _admin_reply(self, owner: str, to: str, reply: Any, leader: Any) -> None:
        purpose = self._admin_purpose.pop(owner, None)
        if purpose is None:
            return
        info = self.clusters[self.admin_owners[owner]]
        ok = isinstance(reply, Ok)
        self.note(f"{info.name}: {purpose[0]} {_sid(purpose[1])} -> {reply!r}")
        if purpose[0] == "remove":
            if ok and isinstance(reply.value, tuple):
                info.membership = ("removed", purpose[1], reply.value[0], reply.value[1])
                self._after(200, "reap", info.name)
            else:
                info.membership = ("idle",)
        elif purpose[0] == "add":
            if ok:
                self.stats["membership_changes"] += 1
                info.membership = ("idle",)
            else:
                info.membership = ("joining", purpose[1])
        elif purpose[0] == "transfer" and ok:
            self.stats["transfers"] += 1

    def _ev_reap(self, cluster: str) -> None:
        info = self.clusters[cluster]
        if info.membership[0] != "removed":
            return
        _, victim, index, term = info.membership
        known = self.inv.committed.get(cluster, {}).get(index)
        if known is None:
            self._after(200, "reap", cluster)
            return
        if known != term:
            self.note(f"{cluster}: removal of {_sid(victim)} was lost (index {index} holds term {known})")
            info.membership = ("idle",)
            return
        slot = self.slots[victim]
        if not slot.deleted:
            self.stats["membership_changes"] += 1
            self.note(f"{cluster}: removal of {_sid(victim)} committed; deleting the server")
            self._stop_slot(slot)
        info.membership = ("idle",)

    def _nemesis_membership(self) -> None:
        rng = self.rng
        info = self.clusters[rng.choice(sorted(self.clusters))]
        leader = self._leader_of(info.name)
        if leader is None:
            return
        state = info.membership
        cluster = leader.srv.cluster
        if state[0] == "idle" and len(cluster) >= info.size:
            members = sorted(cluster, key=lambda s: (s.name, s.node))
            victim = rng.choice(members)
            info.membership = ("removing", victim)
            self._admin_send(info, leader, lambda f, v=victim: msgs.RemoveMember(v, f), ("remove", victim))
        elif state[0] in ("idle", "joining") and len(cluster) < info.size:
            if state[0] == "joining" and not self.slots[state[1]].deleted and self.slots[state[1]].srv is not None:
                new_sid = state[1]
            else:
                used = {s.node for s in cluster}
                free = [n for n in self.node_names if n not in used and self.node_up[n]]
                if not free:
                    return
                node = rng.choice(free)
                gen = info.generation + 1
                new_sid = ServerId(f"{info.name}_{gen}", node)
                members = tuple(sorted(list(cluster) + [new_sid], key=lambda s: (s.name, s.node)))
                slot = self._new_slot(info, new_sid, members, joining=True)
                self._start(slot, fresh=True)
                self.note(f"{info.name}: started new server {_sid(new_sid)}")
            membership = rng.choice([VOTER, VOTER, "promotable"])
            info.membership = ("adding", new_sid)
            self._admin_send(info, leader, lambda f, s=new_sid, mm=membership: msgs.AddMember(s, mm, f),
                             ("add", new_sid))

    def _nemesis_transfer(self) -> None:
        rng = self.rng
        info = self.clusters[rng.choice(sorted(self.clusters))]
        leader = self._leader_of(info.name)
        if leader is None:
            return
        voters = sorted((s for s, mem in leader.srv.cluster.items() if mem == VOTER and s != leader.sid),
                        key=lambda s: (s.name, s.node))
        if not voters:
            return
        target = rng.choice(voters)
        self.note(f"nemesis: transfer leadership of {info.name} from {_sid(leader.sid)} to {_sid(target)}")
        self._admin_send(info, leader, lambda f, t=target: msgs.TransferLeadership(t, f), ("transfer", target))

    # ========================================================= fault phase end
    def _end_faults(self) -> None:
        self.faulting = False
        self.fault_end_time = self.now
        self.crash_armed.clear()
        self.deadline = self.now + self.liveness_ms
        self.network.config.drop = self.network.config.duplicate = self.network.config.reorder = 0.0
        self.suspect_until.clear()
        self.note(f"faults end after {self.events} events: heal, restart, check liveness")
        if self.network.cuts():
            self._heal()
        for node in self.node_names:
            if not self.node_up[node]:
                self._after(self.rng.randint(0, 200), "node_restart", node)
        for sid in sorted(self.slots, key=lambda s: (s.name, s.node)):
            slot = self.slots[sid]
            if slot.srv is None and not slot.deleted and self.node_up[sid.node]:
                self._after(self.rng.randint(0, 200), "server_restart", sid, slot.incarnation)
        self._fd_recheck()
        self._after(self.timing.client_tail_ms, "stop_clients")
        self._after(self.timing.client_tail_ms + 100, "liveness")

    def _ev_stop_clients(self) -> None:
        for info in self.clusters.values():
            if info.workload is not None:
                info.workload.stop()

    def _live_status(self) -> list[str]:
        """What still prevents the liveness condition (empty: satisfied)."""
        problems = []
        for name, info in sorted(self.clusters.items()):
            if info.workload is not None and not info.workload.idle():
                problems.append(f"{name}: clients still busy")
                continue
            leader = self._leader_of(name)
            if leader is None:
                states = []
                for sid in info.sids:
                    srv = self.slots[sid].srv
                    if srv is not None:
                        known = _sid(srv.leader_id) if srv.leader_id is not None else "none"
                        states.append(f"{_sid(sid)} {srv.role} term {srv.current_term} "
                                      f"leader {known} last {srv.log.last_index}/{srv.log.last_term}")
                problems.append(f"{name}: no leader ({'; '.join(states)})")
                continue
            for sid in sorted(leader.srv.cluster, key=lambda s: (s.name, s.node)):
                slot = self.slots.get(sid)
                if slot is None or slot.srv is None:
                    problems.append(f"{name}: member {_sid(sid)} is not running")
                elif slot.srv.last_applied < info.acked_max:
                    problems.append(f"{name}: {_sid(sid)} applied {slot.srv.last_applied} < "
                                    f"acknowledged {info.acked_max}")
        return problems

    def _ev_liveness(self) -> None:
        if self._live_status():
            self._after(100, "liveness")
            return
        self.note(f"liveness: every cluster has a leader and applied all acknowledged commands "
                  f"{self.now - (self.fault_end_time or 0)}ms after the faults ended")
        self.finished = True

    def _liveness_failure(self) -> None:
        problems = self._live_status()
        self.inv.fail(f"liveness: {self.liveness_ms}ms after the faults ended: " + "; ".join(problems[:4]))
