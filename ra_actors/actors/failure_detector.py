"""The node-pair failure detector (Ra's aten): which other nodes are up.

Rules:

* One heartbeat stream per node pair, never per cluster: a supervisor sends
  ``NodeHeartbeat`` to every node it believes up every
  ``heartbeat_interval`` and declares a node down after ``node_down_after``
  seconds without hearing from it, so an idle cluster costs nothing more.
* The silence allowed follows what the node's heartbeats have shown: a node
  is declared down after ``node_down_after`` or ``GAP_FACTOR`` times the
  longest of the last ``GAP_HISTORY`` gaps between its heartbeats, whichever
  is longer, and never after more than ``MAX_DOWN_FACTOR`` times
  ``node_down_after``.  On an overloaded machine heartbeats arrive late
  without any node being down; declaring nodes down then makes every
  server of the node react (elections, monitors), which loads the machine
  more: without this, hundreds of server processes on two cores kept the
  nodes declaring each other down and up for minutes.  A healthy pair's
  gaps are one interval, so its verdict still comes after
  ``node_down_after``.
* A tick that comes more than ``node_down_after`` after the previous one
  (this process was paused or starved) declares no node down: the silence
  was this node's, and the heartbeats it has not read yet are read before
  the next tick.
* Down and unknown nodes are probed every ``probe_interval``, through their
  supervisor and their admin (whose address never changes); seeds, the
  convention address and the peers remembered in ``node.peers.json`` are
  probed until they answer.  Heartbeats and probes go through
  :class:`~.transmit.PeriodicSender`: at most one in flight per target.
* A node is known by its ``NodeInfo`` from a ``NodeHello``.  A node that
  comes back with a new incarnation (it restarted faster than the detector
  noticed) is declared down, then up: its processes are new.
* The detector decides; it does not act.  Up and down go to the callbacks
  it was given (the supervisor tells the servers and the monitors).
* Thespian's own convention updates are not used: they take minutes to
  notice a dead admin.
"""
from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from .admin import RaSupervisorInfo, RaWhereIsSupervisor
from .node_context import NodeContext
from .protocol import NodeHeartbeat, NodeHello, NodeInfo
from .transmit import PeriodicSender
from .util import admin_address, log

# How long a heartbeat or probe may stay in flight before the next one to
# the same target goes anyway, in heartbeat / probe intervals.
HEARTBEAT_PATIENCE = 2   # a node believed up is declared down after 1.2 s anyway
PROBE_PATIENCE = 5       # down nodes, seeds: one probe per target per 5 s at most

# The silence allowed (module rules): GAP_FACTOR x the longest of the last
# GAP_HISTORY heartbeat gaps (8 s at the default interval), at least
# node_down_after and at most MAX_DOWN_FACTOR x node_down_after.
GAP_HISTORY = 20
GAP_FACTOR = 2.5
MAX_DOWN_FACTOR = 8

PEERS_FILE = "node.peers.json"

HostPort = tuple[str, int]


@dataclass(slots=True)
class PeerNode:
    """What the detector knows of another node."""

    info: NodeInfo
    up: bool = False
    last_heard: float = 0.0    # the detector's clock at its last heartbeat or hello
    last_probe: float = 0.0
    gaps: deque = field(default_factory=lambda: deque(maxlen=GAP_HISTORY))   # between heartbeats, while up


class FailureDetector:
    """The other nodes, up or down (see the module rules)."""

    def __init__(self, ctx: NodeContext, periodic: PeriodicSender,
                 on_up: Callable[[str], None], on_down: Callable[[str], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.ctx = ctx
        self.clock = clock
        self.last_tick: float | None = None
        self.periodic = periodic
        self.on_up = on_up
        self.on_down = on_down
        self.nodes: dict[str, PeerNode] = {}
        self.seeds: set[HostPort] = set()
        self.last_seed_probe = 0.0
        self.my_info: NodeInfo | None = None

    # ---------------------------------------------------------------- start
    def start(self, convention: HostPort, seeds: list[HostPort]) -> None:
        """Introduce this node (``SupervisorInit``): seeds are the
        convention address, configured seeds and remembered peers."""
        me = self.ctx.admin_hostport
        self.my_info = NodeInfo(self.ctx.node, self.ctx.incarnation, self.ctx.my_address, me)
        for seed in [tuple(convention), *map(tuple, seeds), *self._load_peers()]:
            if seed != me:
                self.seeds.add(seed)
        self.probe_seeds(force=True)

    # ------------------------------------------------------------- queries
    def supervisor_of(self, node: str) -> Any:
        """The supervisor address of ``node`` if it is up, else None."""
        peer = self.nodes.get(node)
        return peer.info.sup if peer is not None and peer.up else None

    def knows(self, node: str) -> bool:
        return node in self.nodes

    def down_nodes(self) -> tuple[str, ...]:
        return tuple(name for name, peer in self.nodes.items() if not peer.up)

    def table(self) -> dict[str, tuple[Any, HostPort, bool]]:
        """``{node: (supervisor address, admin, up)}``, this node included."""
        out = {self.ctx.node: (self.ctx.my_address, self.ctx.admin_hostport, True)}
        for name, peer in self.nodes.items():
            out[name] = (peer.info.sup, peer.info.admin, peer.up)
        return out

    def overview(self) -> dict[str, str]:
        return {name: ("up" if peer.up else "down") for name, peer in self.nodes.items()}

    def down_after(self, node: str) -> float:
        """The silence after which ``node`` is declared down (module rules)."""
        base = self.ctx.settings["node_down_after"]
        peer = self.nodes.get(node)
        if peer is None or not peer.gaps:
            return base
        return min(base * MAX_DOWN_FACTOR, max(base, GAP_FACTOR * max(peer.gaps)))

    # ---------------------------------------------------------------- ticks
    def tick(self, now: float) -> None:
        """Declare silent nodes down; heartbeat the live ones, probe the rest."""
        settings = self.ctx.settings
        heartbeat = NodeHeartbeat(self.ctx.node, self.ctx.incarnation)
        heartbeat_patience = HEARTBEAT_PATIENCE * settings["heartbeat_interval"]
        probe_patience = PROBE_PATIENCE * settings["probe_interval"]
        changed = False
        deaf = self.last_tick is not None and now - self.last_tick > settings["node_down_after"]
        self.last_tick = now
        for name, peer in list(self.nodes.items()):
            if peer.up and not deaf and now - peer.last_heard > self.down_after(name):
                peer.up = False
                changed = True
                self._declare_down(name, "timeout")
            if peer.up:
                self.periodic.send_once(peer.info.sup, heartbeat, heartbeat_patience)
            elif now - peer.last_probe >= settings["probe_interval"]:
                peer.last_probe = now
                self.periodic.send_once(peer.info.sup, heartbeat, probe_patience)
                self._probe_admin(peer.info.admin)
        self.probe_seeds()
        if changed:
            self._save_peers()

    def probe_seeds(self, force: bool = False) -> None:
        known = {tuple(peer.info.admin) for peer in self.nodes.values()}
        now = self.clock()
        if not force and now - self.last_seed_probe < self.ctx.settings["probe_interval"]:
            return
        self.last_seed_probe = now
        for seed in self.seeds:
            if seed not in known and seed != self.ctx.admin_hostport:
                self._probe_admin(seed)

    def _probe_admin(self, admin: HostPort) -> None:
        """Ask a node's admin where its supervisor is (answered with
        ``RaSupervisorInfo``)."""
        self.periodic.send_once(admin_address(*admin), RaWhereIsSupervisor(self.ctx.node),
                                PROBE_PATIENCE * self.ctx.settings["probe_interval"])

    # ------------------------------------------------------------- messages
    def on_heartbeat(self, msg: NodeHeartbeat, sender: Any) -> None:
        self._heard(msg.node, msg.incarnation, sender)

    def on_supervisor_info(self, msg: RaSupervisorInfo, sender: Any) -> None:
        """An admin answered a probe: introduce ourselves to its supervisor
        unless we already hear from that incarnation."""
        if msg.node is None or msg.node == self.ctx.node or msg.address is None:
            return
        peer = self.nodes.get(msg.node)
        if peer is not None and peer.up and peer.info.incarnation == msg.incarnation:
            return
        self.ctx.send(msg.address, NodeHello(self.my_info, self._known(), reply=True))

    def on_hello(self, msg: NodeHello, sender: Any) -> None:
        info = msg.info
        if info.name == self.ctx.node:
            return
        info = NodeInfo(info.name, info.incarnation, sender, tuple(info.admin))
        peer = self.nodes.get(info.name)
        if peer is None or peer.info.incarnation != info.incarnation:
            self._register(info)
        else:
            self._heard(info.name, info.incarnation, sender)
        if msg.reply:
            self.ctx.send(sender, NodeHello(self.my_info, self._known(), reply=False))
        for other in msg.known:
            if other.name != self.ctx.node and other.name not in self.nodes:
                self._probe_admin(other.admin)

    # ---------------------------------------------------------------- state
    def _known(self) -> tuple[NodeInfo, ...]:
        return tuple(peer.info for peer in self.nodes.values())

    def _register(self, info: NodeInfo) -> None:
        peer = self.nodes.get(info.name)
        if peer is not None and peer.up and peer.info.incarnation != info.incarnation:
            peer.up = False
            self._declare_down(info.name, "restarted")   # its processes are gone
        if peer is None:
            peer = self.nodes[info.name] = PeerNode(info)
        peer.info = info
        self._save_peers()
        self._heard(info.name, info.incarnation, info.sup)

    def _heard(self, node: str, incarnation: int, sender: Any) -> None:
        peer = self.nodes.get(node)
        if peer is None or peer.info.incarnation != incarnation:
            if node != self.ctx.node:
                # unknown node or a new incarnation: ask it to introduce itself
                self.ctx.send(sender, NodeHello(self.my_info, self._known(), reply=True))
            return
        now = self.clock()
        if peer.up and peer.last_heard:
            peer.gaps.append(now - peer.last_heard)
        peer.last_heard = now
        if not peer.up:
            peer.up = True
            log(self.ctx.who, f"node {node} up")
            self.on_up(node)

    def _declare_down(self, node: str, why: str) -> None:
        log(self.ctx.who, f"node {node} down ({why})")
        self.on_down(node)

    # ---------------------------------------------------------- persistence
    def _path(self) -> str:
        return os.path.join(self.ctx.data_dir, PEERS_FILE)

    def _load_peers(self) -> list[HostPort]:
        try:
            with open(self._path()) as f:
                return [tuple(p) for p in json.load(f)]
        except (OSError, ValueError):
            return []

    def _save_peers(self) -> None:
        peers = sorted({tuple(peer.info.admin) for peer in self.nodes.values()} | set(self.seeds))
        try:
            tmp = self._path() + ".tmp"
            with open(tmp, "w") as f:
                json.dump(peers, f)
            os.replace(tmp, self._path())
        except OSError:
            pass
