"""The failover scenario of issue 15, on real processes: plain
``process_command`` loops ride over paused leaders and restarted followers.

    result = run_counter_scenario(placement="process", clients=4, calls=300)
    assert result.errors == [] and result.final == result.calls

What it does:

* Three local nodes (``local_nodes``, ``placement`` as given), a
  ``machines.counter`` cluster with one server per node.
* ``clients`` threads, each with its own ``Client`` (a Client is not
  thread-safe), each calling ``process_command(server, ("add", 1),
  timeout=call_timeout)`` ``calls`` times, naming the members in turn, and
  recording every exception.
* Meanwhile a fault thread, every ``fault_gap`` seconds (drawn from the
  range), does the next of ``faults`` in turn: pause the leader's node (SIGSTOP of the node's
  process group, which this run started) for ``pause`` seconds (drawn from
  the range), then SIGCONT it; or kill a follower's node (SIGKILL of its
  process group) and start it again on the same data.  One node at most is
  down or paused at any time: a majority is always up.
* At the end every node runs, the counter is read with a consistent query
  and the result says how many calls returned, which raised what, and the
  counter's value.  Exactly once holds if no call raised and the counter
  equals the number of calls.

Rules: every process the scenario starts is stopped, also on failure
(``local_nodes`` is a context manager; a paused node is resumed before it
is stopped); faults act only on the process groups of these nodes.  All
randomness comes from ``seed``.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ..core.types import ServerId

__all__ = ["ScenarioResult", "run_counter_scenario"]

NODES = ("n1", "n2", "n3")
CLUSTER = "counter"


@dataclass
class ScenarioResult:
    placement: str
    calls: int = 0                  # calls that returned a reply
    errors: list = field(default_factory=list)     # (client, call number, repr of the exception)
    final: int | None = None        # the counter at the end
    faults: list = field(default_factory=list)     # (seconds since start, what)
    seconds: float = 0.0
    slowest_call: float = 0.0

    @property
    def exactly_once(self) -> bool:
        return not self.errors and self.final == self.calls


def run_counter_scenario(placement: str = "process", clients: int = 4, calls: int = 300,
                         call_timeout: float = 10.0, pause: tuple = (1.5, 3.0), fault_gap: tuple = (2.0, 4.0),
                         faults: tuple = ("pause-leader", "kill-follower"), seed: int | None = None,
                         progress: Callable[[str], None] = lambda s: None) -> ScenarioResult:
    """Run the scenario (see the module doc) and return what happened."""
    import ra_actors as ra

    rng = random.Random(seed)
    sids = [ServerId(CLUSTER, n) for n in NODES]
    result = ScenarioResult(placement)
    with ra.local_nodes(list(NODES), placement=placement) as nodes:
        admin = nodes.client()
        admin.start_cluster(CLUSTER, "machines.counter", sids, timeout=60.0)
        lock = threading.Lock()
        done = threading.Event()
        t0 = time.monotonic()

        def worker(i: int) -> None:
            client = nodes.client()
            for n in range(calls):
                sid = sids[(i + n) % len(sids)]
                started = time.monotonic()
                try:
                    client.process_command(sid, ("add", 1), timeout=call_timeout)
                except Exception as exc:  # noqa: BLE001 - every failure is the scenario's result
                    with lock:
                        result.errors.append((i, n, repr(exc)[:200]))
                    continue
                took = time.monotonic() - started
                with lock:
                    result.calls += 1
                    result.slowest_call = max(result.slowest_call, took)

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
        for t in threads:
            t.start()
        chaos = threading.Thread(target=_faults, args=(nodes, admin, sids, rng, faults, pause, fault_gap, done,
                                                        result, t0, progress), daemon=True)
        chaos.start()
        try:
            for t in threads:
                t.join()
        finally:
            done.set()
            chaos.join(120)
        result.seconds = time.monotonic() - t0
        # every node runs again here; read the counter through the log
        deadline = time.monotonic() + 60
        while True:
            try:
                result.final, _leader = admin.consistent_query(sids[0], "machines.counter:read", timeout=5.0)
                break
            except Exception:  # noqa: BLE001 - a leader may still be settling
                if time.monotonic() > deadline:
                    raise
    return result


def _faults(nodes, admin, sids, rng, faults, pause, gap, done, result, t0, progress) -> None:
    """The fault thread (see the module doc): one fault at a time."""
    def note(what: str) -> None:
        result.faults.append((round(time.monotonic() - t0, 2), what))
        progress(what)

    turn = 0
    while not done.wait(rng.uniform(*gap)):
        kind = faults[turn % len(faults)]
        try:
            _members, leader = admin.members(sids[rng.randrange(len(sids))], timeout=3.0)
        except Exception:  # noqa: BLE001 - no leader right now: try again later
            continue
        if leader is None:
            continue
        turn += 1
        if kind == "pause-leader":
            seconds = rng.uniform(*pause)
            note(f"pause {leader.node} (leader) for {seconds:.1f}s")
            nodes.pause(leader.node)
            try:
                done.wait(seconds)
            finally:
                nodes.resume(leader.node)
        else:
            victim = rng.choice([s.node for s in sids if s != leader])
            note(f"kill {victim} (follower)")
            nodes.kill(victim)
            done.wait(rng.uniform(0.5, 1.5))
            for attempt in range(3):
                try:
                    nodes.restart(victim)   # its server comes back from its data with the node
                    note(f"restarted {victim}")
                    break
                except Exception as exc:  # noqa: BLE001 - recorded; the next fault waits for it
                    note(f"restart of {victim} failed ({attempt + 1}): {exc!r:.100}")
            else:
                return      # a node stays down: no further fault (a majority must stay up)
