"""The queue demo, narrated: a replicated FIFO queue (``machines.fifo``)
with two consumer processes; one is killed mid-stream and its unsettled
messages go to the other.

    python scripts/demo_queue.py            # or: ra-actors demo queue
    python scripts/demo_queue.py --fast     # fewer messages (what CI runs)

Steps: start three local nodes and a fifo cluster; start consumers A and B
as separate processes (each with its own client, checked out with a
prefetch, settling each message after some "work"); publish messages; while
they are flowing, freeze A (SIGSTOP) to record exactly what it holds, then
SIGKILL it; the machine sees ``Down`` for A's client handle and returns A's
unsettled messages, which B receives (delivery count 1) and settles.  Checks:
exactly the messages A held are redelivered, each to B once; nothing settled
is delivered again; every message is settled exactly once; the queue ends
empty.  Exit status 0 only if every check passed.

Rules: each step is a method of ``_QueueDemo``, run in order by
``run_steps``; a failed check is reported and the demo goes on unless the
steps after it cannot run (``run_steps`` returns False); an exception ends
it as a failed check; the consumers are stopped by their
own pids and the nodes through ``local_nodes``, and all are checked gone.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import ra_actors as ra

from ..cli.ui import Narrator, fmt_secs
from ..errors import RaError
from .processes import alive_pids

__all__ = ["add_arguments", "run", "main"]

NODES = ("n1", "n2", "n3")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fast", action="store_true", help="fewer messages (60 instead of 200)")
    p.add_argument("--messages", type=int, default=None, metavar="N", help="messages to publish")
    p.add_argument("--prefetch", type=int, default=5, help="unsettled messages per consumer (default 5)")
    p.add_argument("--work-ms", type=int, default=None, metavar="MS",
                   help="time a consumer spends on a message before settling it (default 30, --fast 20)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="keep node data and consumer logs under DIR (default: a temporary directory, removed)")


def _read_log(path: str) -> list[dict]:
    out = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    out.append(json.loads(line))
                except ValueError:   # a line torn by SIGKILL
                    break
    except FileNotFoundError:
        pass
    return out


class _Consumer:
    def __init__(self, label: str, root: str, nodes, server: str, prefetch: int, work_ms: int):
        self.label = label
        self.log = os.path.join(root, f"consumer-{label}.jsonl")
        self.out = os.path.join(root, f"consumer-{label}.out")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in [os.getcwd(), *sys.path] if p)
        cmd = [sys.executable, "-m", "ra_actors.demos.queue_consumer", "--server", server,
               "--prefetch", str(prefetch), "--work-ms", str(work_ms), "--log", self.log]
        for host, port in nodes.addresses().values():
            cmd += ["--connect", f"{host}:{port}"]
        with open(self.out, "ab") as out:
            # never a pipe: output goes to a file
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)
        self.handle = None

    def records(self) -> list[dict]:
        return _read_log(self.log)

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for r in self.records():
                if r["ev"] == "ready":
                    self.handle = r["handle"]
                    return r.get("reply") == "ok"
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def settled_ok(self) -> set:
        return {i for r in self.records() if r["ev"] == "settled" and r["reply"] == "ok" for i in r["ids"]}

    def deliveries(self) -> list[tuple]:
        return [(r["id"], r["count"]) for r in self.records() if r["ev"] == "delivery"]

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            # not reaped yet, so the pid is still ours
            self.proc.kill()
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.proc.wait(10)


def run(args) -> int:
    demo = _QueueDemo(args)
    n = demo.n
    try:
        if not demo.run_steps():
            return n.verdict()
    except (RaError, OSError, ValueError) as exc:
        n.check(False, f"step {n.step_no} raised {type(exc).__name__}: {exc}")
    finally:
        demo.clean_up()
    if not demo.own_root and os.path.isdir(demo.root):
        print(f"\nnode data and consumer logs kept under {demo.root}")
    return n.verdict()


class _QueueDemo:
    """The demo's steps, in order, and what they hand each other (the nodes,
    the client, the queue's leader, the consumers, what A held)."""

    def __init__(self, args) -> None:
        self.total = args.messages if args.messages else (60 if args.fast else 200)
        self.work_ms = args.work_ms if args.work_ms is not None else (20 if args.fast else 30)
        self.prefetch = max(1, args.prefetch)
        self.n = Narrator("ra_actors queue demo", steps=7)
        self.n.banner("A fifo queue on three nodes, two consumer processes; one dies holding messages.")
        self.own_root = args.data_dir is None
        self.root = tempfile.mkdtemp(prefix="ra_demo_queue_") if self.own_root else os.path.abspath(args.data_dir)
        os.makedirs(self.root, exist_ok=True)
        self.nodes = None
        self.client = None
        self.queue = None                     # the server every command goes to
        self.consumers: list[_Consumer] = []
        self.all_pids: list[int] = []

    @property
    def a(self) -> _Consumer:
        return self.consumers[0]

    @property
    def b(self) -> _Consumer:
        return self.consumers[1]

    def run_steps(self) -> bool:
        """Every step; False when the demo cannot go on (a consumer did not
        check out)."""
        self.start_nodes_and_cluster()
        if not self.start_consumers():
            return False
        self.publish()
        held, before = self.kill_consumer_a()
        self.drain_through_b()
        self.check_every_message(held, before)
        self.stop_everything()
        return True

    def clean_up(self) -> None:
        for c in self.consumers:
            c.kill()
        if self.nodes is not None:
            self.nodes.close()
        if self.own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def _query(self, fun: str):
        return self.client.consistent_query(self.queue, f"machines.fifo:{fun}", timeout=10)[0]

    # 1 -------------------------------------------------------------------
    def start_nodes_and_cluster(self) -> None:
        n = self.n
        n.step("Starting three local nodes and a fifo cluster 'queue' (machines.fifo)")
        t = time.monotonic()
        with n.status("starting nodes and electing a leader"):
            self.nodes = ra.local_nodes(list(NODES), data_root=os.path.join(self.root, "nodes"))
            self.client = self.nodes.client()
            sids = [ra.ServerId("queue", name) for name in NODES]
            started, _not = self.client.start_cluster("queue", "machines.fifo", sids)
        _m, leader = self.client.members(sids[0])
        n.check(len(started) == 3 and leader is not None,
                f"nodes up and leader {leader} elected in {fmt_secs(time.monotonic() - t)}")
        self.queue = leader

    # 2 -------------------------------------------------------------------
    def start_consumers(self) -> bool:
        """Start A and B; False unless both checked out."""
        n = self.n
        n.step(f"Starting consumers A and B: separate processes, own clients, prefetch {self.prefetch}, "
               f"{self.work_ms} ms of work per message")
        for label in ("A", "B"):
            self.consumers.append(_Consumer(label, self.root, self.nodes, str(self.queue), self.prefetch,
                                            self.work_ms))
        ok = all(c.wait_ready(30) for c in self.consumers)
        n.say("each ran: client.process_command(queue, ('checkout', client.handle, prefetch))")
        n.say("the machine monitors every consumer: Monitor('process', handle)")
        listed = self._query("consumers")
        n.table([(c.label, c.proc.pid, c.handle) for c in self.consumers], ("consumer", "pid", "client handle"))
        n.check(ok and {x[0] for x in listed} == {self.a.handle, self.b.handle}, "both consumers checked out")
        return ok

    # 3 -------------------------------------------------------------------
    def publish(self) -> None:
        n, client, total = self.n, self.client, self.total
        n.step(f"Publishing {total} messages (pipelined enqueue commands)")
        t = time.monotonic()
        pending = set()
        with n.status("publishing") as st:
            for i in range(1, total + 1):
                client.pipeline_command(self.queue, ("enqueue", f"msg-{i}"), correlation=i)
                pending.add(i)
            client.flush()
            deadline = time.monotonic() + 30
            while pending and time.monotonic() < deadline:
                for e in client.events(0.5):
                    for corr, _reply in getattr(e, "results", ()):
                        pending.discard(corr)
                st.progress(total - len(pending), total)
        n.check(not pending, f"{total} messages enqueued in {fmt_secs(time.monotonic() - t)}")

    # 4 -------------------------------------------------------------------
    def kill_consumer_a(self) -> tuple[tuple, dict]:
        """Freeze A mid-stream, note what it holds, SIGKILL it and wait for
        the machine's ``Down``; what A held and the machine's overview
        before the kill."""
        n, a = self.n, self.a
        n.step("Killing consumer A mid-stream")
        self._wait_until_a_settled(max(2, self.total // 6))
        os.kill(a.proc.pid, signal.SIGSTOP)      # freeze A: what it holds can no longer change
        held = self._held_by_a_once_stable()
        n.say(f"A settled {len(a.settled_ok())} messages; frozen with SIGSTOP it holds {len(held)} unsettled: "
              f"{list(held)}")
        n.check(len(held) > 0, "A holds unsettled messages when it dies")
        before = self._query("overview_query")
        self.all_pids.append(a.proc.pid)
        t = time.monotonic()
        a.kill()                                  # SIGKILL: a real process death
        n.say(f"SIGKILL to A (pid {a.proc.pid})")
        with n.status("waiting for the machine to see Down(A)"):
            seen = None
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if all(x[0] != a.handle for x in self._query("consumers")):
                    seen = time.monotonic() - t
                    break
                time.sleep(0.05)
        n.check(seen is not None, f"the machine applied Down(A) {fmt_secs(seen or 0)} after the kill "
                                  f"(A's node supervisor noticed its client process was gone)")
        return held, before

    def _wait_until_a_settled(self, want: int) -> None:
        a = self.a
        with self.n.status(f"waiting until A has settled {want} messages") as st:
            deadline = time.monotonic() + 60
            while len(a.settled_ok()) < want and time.monotonic() < deadline and a.proc.poll() is None:
                st.progress(len(a.settled_ok()), want)
                time.sleep(0.02)

    def _held_by_a(self) -> tuple:
        return next((tuple(x[2]) for x in self._query("consumers") if x[0] == self.a.handle), ())

    def _held_by_a_once_stable(self) -> tuple:
        # once a settle A sent just before the freeze has landed, the picture is stable
        held = self._held_by_a()
        for _ in range(20):
            time.sleep(0.2)
            again = self._held_by_a()
            if again == held:
                break
            held = again
        return held

    # 5 -------------------------------------------------------------------
    def drain_through_b(self) -> None:
        n, total = self.n, self.total
        n.step("B receives A's unsettled messages and drains the queue")
        t = time.monotonic()
        with n.status("draining") as st:
            deadline = time.monotonic() + 60
            depth = None
            while time.monotonic() < deadline:
                depth = self._query("depth")
                st.progress(total - depth, total)
                if depth == 0:
                    break
                time.sleep(0.1)
        n.check(depth == 0, f"queue empty {fmt_secs(time.monotonic() - t)} later")

    # 6 -------------------------------------------------------------------
    def check_every_message(self, held: tuple, before: dict) -> None:
        n, a, b, total = self.n, self.a, self.b, self.total
        n.step("Checking what happened to every message")
        b_deliveries = b.deliveries()
        redelivered = sorted(i for i, count in b_deliveries if count >= 1)
        a_ok = a.settled_ok()
        b_ok = b.settled_ok()
        a_recs = a.records()
        a_maybe = {i for r in a_recs if r["ev"] == "settling" for i in r["ids"]} - a_ok
        after = self._query("overview_query")
        n.table([("A", len(a.deliveries()), len(a_ok), len(held), "killed"),
                 ("B", len(b_deliveries), len(b_ok), 0, "running")],
                ("consumer", "delivered", "settled", "unsettled at death", "state"))
        n.say(f"redelivered to B (delivery count 1): {redelivered}")
        n.check(redelivered == sorted(held), "exactly the messages A held were redelivered, to B")
        n.check(after["returned_total"] - before["returned_total"] == len(held),
                f"the machine returned {len(held)} messages on Down (returned_total)")
        ids_b = [i for i, _c in b_deliveries]
        n.check(len(ids_b) == len(set(ids_b)), "B received no message twice")
        n.check(not (set(redelivered) & a_ok), "no message settled by A was delivered again")
        every = set(range(1, total + 1))
        settled_once = a_ok | (a_maybe - set(redelivered)) | b_ok
        n.check(not (a_ok & b_ok) and settled_once == every,
                f"each of the {total} messages was settled exactly once (A {len(a_ok)}, B {len(b_ok)}"
                + (f", A's last settle in flight at the freeze: {sorted(a_maybe)}" if a_maybe else "") + ")")
        n.check(after["enqueued_total"] == total and after["settled_total"] == total
                and after["messages_ready"] == 0 and after["messages_checked_out"] == 0,
                f"machine totals: enqueued {after['enqueued_total']}, settled {after['settled_total']}, "
                f"ready {after['messages_ready']}, checked out {after['messages_checked_out']}")

    # 7 -------------------------------------------------------------------
    def stop_everything(self) -> None:
        n, b = self.n, self.b
        n.step("Stopping B, the nodes and everything else")
        b.stop()
        n.check(b.proc.returncode == 0, "consumer B cancelled its checkout and exited")
        self.all_pids.extend(self.nodes.all_pids())
        with n.status("stopping nodes"):
            self.nodes.close()
            self.nodes = None
        left = alive_pids(self.all_pids + [c.proc.pid for c in self.consumers])
        n.check(not left, "every process has exited" if not left else f"processes left: {left}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="demo_queue.py", description=__doc__.split("\n\n")[0],
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
