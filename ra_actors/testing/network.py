"""Simulated network between nodes: delay, loss, duplication, reordering, cuts.

Rules:

* The network only decides *when* (and whether) a message sent at virtual
  time ``now`` from node ``src`` arrives at node ``dst``: :meth:`Network.plan`
  returns the arrival times (none if dropped, two if duplicated).  The
  simulator owns the event queue; the network owns no clock.
* Every random choice comes from the ``random.Random`` given at construction
  (the simulation's single seeded RNG), so a seed replays exactly.
* Links are directed node pairs.  A message between two servers of the same
  node is local: short delay, never lost, duplicated, reordered or cut.
* Without reordering a link is FIFO (like the TCP connection Thespian uses):
  an arrival is never scheduled before the previous arrival on that link.
  With reordering on, a message may take an extra random delay and overtake
  or fall behind others.
* Loss, duplication and reordering apply only to links between two
  *faulty* nodes (the server nodes).  Client links are reliable FIFO: Ra has
  no client-side de-duplication, so a duplicated client command would be
  applied twice, which is a test-harness artefact, not a Raft bug.
* Cuts are directed (``src -> dst``); a partition into groups cuts both
  directions between groups; :meth:`Network.heal` removes every cut.  A cut
  is checked when a message is sent *and* when it arrives
  (:meth:`Network.deliverable`): a message in flight across a new cut is lost.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable


@dataclass
class NetworkConfig:
    """Delays in integer milliseconds, probabilities in [0, 1]."""

    local_delay: tuple[int, int] = (0, 1)
    remote_delay: tuple[int, int] = (1, 10)
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_extra: tuple[int, int] = (1, 60)


class Network:
    """Directed links between named nodes (see the module rules)."""

    def __init__(self, rng: random.Random, config: NetworkConfig | None = None,
                 faulty_nodes: Iterable[str] = ()) -> None:
        self.rng = rng
        self.config = config or NetworkConfig()
        self.faulty_nodes: frozenset[str] = frozenset(faulty_nodes)
        self._cuts: set[tuple[str, str]] = set()
        self._last_arrival: dict[tuple[str, str], int] = {}
        # Counters for the simulation's statistics.
        self.sent = 0
        self.dropped = 0
        self.duplicated = 0
        self.reordered = 0

    # ------------------------------------------------------------ topology
    def cut(self, src: str, dst: str) -> None:
        """One-way cut: nothing from ``src`` reaches ``dst``."""
        if src != dst:
            self._cuts.add((src, dst))

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Cut every link (both directions) between nodes of different groups."""
        sets = [sorted(set(g)) for g in groups]
        for i, a in enumerate(sets):
            for b in sets[i + 1:]:
                for x in a:
                    for y in b:
                        self.cut(x, y)
                        self.cut(y, x)

    def isolate(self, node: str, others: Iterable[str]) -> None:
        """Cut ``node`` from every node in ``others`` in both directions."""
        for other in sorted(set(others)):
            if other != node:
                self.cut(node, other)
                self.cut(other, node)

    def heal(self) -> None:
        self._cuts.clear()

    def cuts(self) -> list[tuple[str, str]]:
        return sorted(self._cuts)

    def reachable(self, src: str, dst: str) -> bool:
        return src == dst or (src, dst) not in self._cuts

    # ---------------------------------------------------------- messages
    def deliverable(self, src: str, dst: str) -> bool:
        """May a message that is arriving now from ``src`` be handed to ``dst``?"""
        return self.reachable(src, dst)

    def plan(self, src: str, dst: str, now: int) -> list[int]:
        """Arrival times (ascending) of a message sent now from ``src`` to ``dst``."""
        self.sent += 1
        cfg = self.config
        rng = self.rng
        if src == dst:
            return [now + rng.randint(*cfg.local_delay)]
        if not self.reachable(src, dst):
            self.dropped += 1
            return []
        faulty = src in self.faulty_nodes and dst in self.faulty_nodes
        if faulty and cfg.drop and rng.random() < cfg.drop:
            self.dropped += 1
            return []
        copies = 1
        if faulty and cfg.duplicate and rng.random() < cfg.duplicate:
            copies = 2
            self.duplicated += 1
        link = (src, dst)
        arrivals = []
        for _ in range(copies):
            at = now + rng.randint(*cfg.remote_delay)
            if faulty and cfg.reorder and rng.random() < cfg.reorder:
                # Overtaking (or being overtaken) is only possible off the
                # FIFO track, so a reordered message does not move the link's
                # arrival watermark.
                self.reordered += 1
                at += rng.randint(*cfg.reorder_extra)
            else:
                at = max(at, self._last_arrival.get(link, 0))
                self._last_arrival[link] = at
            arrivals.append(at)
        arrivals.sort()
        return arrivals
