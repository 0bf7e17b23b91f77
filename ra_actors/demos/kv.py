"""The Ra talk's demo, narrated: a replicated key-value store surviving the
loss of its leader's node.

    python scripts/demo_kv.py            # or: ra-actors demo kv
    python scripts/demo_kv.py --fast     # fewer keys (what CI runs)

Steps: start three local nodes; start a ``machines.kv`` cluster on them and
show its leader and members; write keys; SIGKILL the leader's whole node and
time the election of a new leader; read every key back; write more with one
node down; restart the killed node and watch it catch up until every
member's indexes agree; stop everything.  Every step is checked; the exit
status is 0 only if all checks passed (1 otherwise).

Rules: each step is a method of ``_KvDemo``, run in order by
``run_steps``; a failed check is reported and the demo goes on unless the
steps after it cannot run (``run_steps`` returns False); an exception ends
it as a failed check; every process it starts is stopped
(the nodes through ``local_nodes``, by process group) and checked gone.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import Callable

import ra_actors as ra

from ..cli.ui import Narrator, fmt_secs
from ..errors import RaError
from .processes import alive_pids

__all__ = ["add_arguments", "run", "main"]

NODES = ("n1", "n2", "n3")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fast", action="store_true", help="write fewer keys (20 + 10 instead of 100 + 50)")
    p.add_argument("--keys", type=int, default=None, metavar="N",
                   help="keys written before the kill (half as many after it)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="keep the nodes' data under DIR (default: a temporary directory, removed at the end)")


def _metrics_rows(client, sids, leader):
    rows = []
    for sid in sids:
        try:
            km = client.key_metrics(sid, timeout=2.0)
        except RaError as exc:
            rows.append((str(sid), "unreachable", "-", "-", "-", "-", "-", type(exc).__name__))
            continue
        rows.append((str(sid), km["state"], km["term"], km["last_index"], km["commit_index"],
                     km["last_applied"], km["snapshot_index"], "<- leader" if sid == leader else ""))
    return rows


HEADERS = ("server", "role", "term", "last_index", "commit", "applied", "snapshot", "")


def _wait_new_leader(client, survivors, old, deadline):
    while time.monotonic() < deadline:
        for sid in survivors:
            try:
                _m, leader = client.members(sid, timeout=0.5)
            except RaError:
                continue
            if leader is not None and leader != old and leader in survivors:
                return leader
        time.sleep(0.01)
    return None


def run(args) -> int:
    demo = _KvDemo(args)
    n = demo.n
    try:
        if not demo.run_steps():
            return n.verdict()
    except (RaError, OSError) as exc:
        n.check(False, f"step {n.step_no} raised {type(exc).__name__}: {exc}")
    finally:
        demo.clean_up()
    if not demo.own_root and os.path.isdir(demo.root):
        print(f"\nnode data kept under {demo.root} (try: ra-actors log check {demo.root}/n1)")
    return n.verdict()


class _KvDemo:
    """The demo's steps, in order, and what they hand each other (the nodes,
    the client, the leader, the keys written)."""

    def __init__(self, args) -> None:
        self.keys = args.keys if args.keys else (20 if args.fast else 100)
        self.more = max(1, self.keys // 2)
        self.n = Narrator("ra_actors kv demo", steps=8)
        self.n.banner("A kv machine replicated on three nodes; we kill the leader's node and bring it back.")
        self.own_root = args.data_dir is None
        self.root = tempfile.mkdtemp(prefix="ra_demo_kv_") if self.own_root else args.data_dir
        self.nodes = None
        self.client = None
        self.sids = [ra.ServerId("kv", name) for name in NODES]
        self.leader = None
        self.victim = None
        self.all_pids: list[int] = []
        self.expected: dict = {}

    def run_steps(self) -> bool:
        """Every step; False when the demo cannot go on (no new leader)."""
        self.start_nodes()
        self.start_cluster()
        self.write_keys()
        if not self.kill_leader_node():
            return False
        self.read_every_key_back()
        target = self.write_more_keys()
        self.restart_killed_node(target)
        self.stop_everything()
        return True

    def clean_up(self) -> None:
        if self.nodes is not None:
            self.nodes.close()
        if self.own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    # 1 -------------------------------------------------------------------
    def start_nodes(self) -> None:
        n = self.n
        n.step(f"Starting three local nodes {', '.join(NODES)} (one Thespian admin each, own process group)")
        t = time.monotonic()
        with n.status("starting nodes"):
            self.nodes = nodes = ra.local_nodes(list(NODES), data_root=self.root)
        n.table([(name, f"{nodes[name].host}:{nodes[name].port}", nodes[name].pgid, len(nodes.pids(name)),
                  nodes.data_dir(name)) for name in NODES],
                ("node", "admin address", "process group", "processes", "data dir"))
        n.check(all(nodes[name].alive() for name in NODES), f"three nodes up in {fmt_secs(time.monotonic() - t)}")
        self.client = nodes.client()

    # 2 -------------------------------------------------------------------
    def start_cluster(self) -> None:
        n, client, sids = self.n, self.client, self.sids
        n.step("Starting a cluster 'kv' running machines.kv, one server per node")
        t = time.monotonic()
        with n.status("electing a leader"):
            started, not_started = client.start_cluster("kv", "machines.kv", sids)
        members, leader = client.members(sids[0])
        n.say(f"client.start_cluster('kv', 'machines.kv', {[tuple(s) for s in sids]})")
        n.table(_metrics_rows(client, sids, leader), HEADERS)
        n.check(sorted(started) == sorted(sids) and not not_started and leader in sids,
                f"3 servers started, leader {leader} elected in {fmt_secs(time.monotonic() - t)}")
        n.check(sorted(members) == sorted(sids), f"members: {', '.join(map(str, members))}")
        self.leader = leader

    # 3 -------------------------------------------------------------------
    def write_keys(self) -> None:
        n, keys = self.n, self.keys
        n.step(f"Writing {keys} keys through the leader (process_command: each reply means a quorum has it on disk)")
        t = time.monotonic()
        with n.status("writing") as st:
            bad = self._write(range(keys), lambda i: st.progress(i + 1, keys))
        took = time.monotonic() - t
        n.check(bad == 0, f"{keys} writes acknowledged in {fmt_secs(took)} "
                          f"({fmt_secs(took / keys)} each, fsync included)")
        commit = self.client.key_metrics(self.leader)["commit_index"]
        n.say(f"leader {self.leader} commit index: {commit}")

    def _write(self, indexes: range, progress: Callable[[int], None]) -> int:
        """Write ``key<i>`` = i*i for each index through the leader; how
        many replies were not ``ok``."""
        bad = 0
        for i in indexes:
            reply, self.leader = self.client.process_command(self.leader, ("write", f"key{i:04d}", i * i),
                                                             timeout=10)
            self.expected[f"key{i:04d}"] = i * i
            bad += reply != "ok"
            progress(i)
        return bad

    # 4 -------------------------------------------------------------------
    def kill_leader_node(self) -> bool:
        """Kill the leader's node; False if no new leader was elected."""
        n, nodes, client = self.n, self.nodes, self.client
        self.victim = victim = self.leader.node
        old_leader = self.leader
        survivors = [s for s in self.sids if s.node != victim]
        n.step(f"Killing node {victim}, the leader's node (SIGKILL to its whole process group)")
        self.all_pids.extend(nodes.all_pids())
        pids = nodes.pids(victim)
        nodes.kill(victim)
        killed = time.monotonic()
        n.check(nodes.pids(victim) == [], f"{len(pids)} processes of {victim} are gone")
        with n.status("waiting for a new leader"):
            self.leader = leader = _wait_new_leader(client, survivors, old_leader, killed + 30)
        elected = time.monotonic() - killed
        n.say("the survivors learn of the death from the node failure detector (heartbeats between\n"
              "nodes, not between servers), then pre-vote and vote")
        n.check(leader is not None, f"new leader {leader} elected {fmt_secs(elected)} after the kill")
        if leader is None:
            return False
        n.table(_metrics_rows(client, self.sids, leader), HEADERS)
        return True

    # 5 -------------------------------------------------------------------
    def read_every_key_back(self) -> None:
        n, expected = self.n, self.expected
        n.step("Reading every key back from the new leader (consistent_query: linearizable reads)")
        wrong = []
        t = time.monotonic()
        with n.status("reading") as st:
            for i, (k, v) in enumerate(expected.items()):
                value, _ = self.client.consistent_query(self.leader, "machines.kv:read", k, timeout=10)
                if value != v:
                    wrong.append((k, v, value))
                st.progress(i + 1, len(expected))
        n.check(not wrong, f"{len(expected)} of {len(expected)} keys read back with their values "
                           f"in {fmt_secs(time.monotonic() - t)}" if not wrong else f"wrong values: {wrong[:5]}")

    # 6 -------------------------------------------------------------------
    def write_more_keys(self) -> int:
        """Write with one node down; the leader's commit index afterwards."""
        n, keys, more = self.n, self.keys, self.more
        n.step(f"Writing {more} more keys with {self.victim} still down (2 of 3 is a quorum)")
        with n.status("writing") as st:
            bad = self._write(range(keys, keys + more), lambda i: st.progress(i - keys + 1, more))
        n.check(bad == 0, f"{more} more writes acknowledged")
        target = self.client.key_metrics(self.leader)["commit_index"]
        n.say(f"leader {self.leader} commit index now {target}")
        return target

    # 7 -------------------------------------------------------------------
    def restart_killed_node(self, target: int) -> None:
        n, victim = self.n, self.victim
        back = ra.ServerId("kv", victim)
        n.step(f"Restarting node {victim}: its server recovers from its WAL and segments, then catches up")
        t = time.monotonic()
        with n.status(f"starting {victim}"):
            self.nodes.restart(victim)
        self.all_pids.extend(self.nodes.pids(victim))
        n.say(f"node {victim} up again in {fmt_secs(time.monotonic() - t)}")
        self._watch_catch_up(back, target)
        self._check_indexes_converge(target)
        last_key = f"key{self.keys + self.more - 1:04d}"
        (_idx, value), _ = self.client.local_query(back, "machines.kv:read", last_key)
        n.check(value == self.expected[last_key],
                f"{back} answers a local read of {last_key} = {value} (written while it was down)")

    def _watch_catch_up(self, back, target: int) -> None:
        """Follow ``back`` until it applied ``target`` (at most 30 s)."""
        n = self.n
        first = None
        km = None
        t = time.monotonic()
        with n.status(f"{back} catching up") as st:
            while time.monotonic() - t < 30:
                try:
                    km = self.client.key_metrics(back, timeout=2.0)
                except RaError:
                    time.sleep(0.05)
                    continue
                if first is None:
                    first = dict(km)
                st.update(f"{back}: applied {km['last_applied']} of {target}")
                if km["last_applied"] >= target:
                    break
                time.sleep(0.02)
        caught = km is not None and km["last_applied"] >= target
        if first is not None:
            n.say(f"first seen after the restart: log up to index {first['last_index']}, "
                  f"applied {first['last_applied']} (recovered from disk); the leader sends the rest")
        n.check(caught, f"{back} caught up to index {target} in {fmt_secs(time.monotonic() - t)}")

    def _check_indexes_converge(self, target: int) -> None:
        """Every member agrees on every index (at most 15 s)."""
        agreed = False
        deadline = time.monotonic() + 15
        rows = []
        while time.monotonic() < deadline:
            rows = _metrics_rows(self.client, self.sids, self.leader)
            applied = {r[5] for r in rows}
            last = {r[3] for r in rows}
            if len(applied) == 1 and len(last) == 1 and applied.pop() == target:
                agreed = True
                break
            time.sleep(0.1)
        self.n.table(rows, HEADERS)
        self.n.check(agreed, "the indexes of all three members converged")

    # 8 -------------------------------------------------------------------
    def stop_everything(self) -> None:
        n = self.n
        n.step("Stopping everything")
        self.all_pids.extend(self.nodes.all_pids())
        with n.status("stopping nodes"):
            self.nodes.close()
            self.nodes = None
        left = alive_pids(self.all_pids)
        n.check(not left, "every node process has exited" if not left else f"processes left: {left}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="demo_kv.py", description=__doc__.split("\n\n")[0],
                                epilog="Exit status: 0 every check passed, 1 a check failed.")
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
