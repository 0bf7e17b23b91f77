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
    import ra_actors as ra
    from ..cli.ui import Narrator, fmt_secs
    from ..errors import RaError

    total = args.messages if args.messages else (60 if args.fast else 200)
    work_ms = args.work_ms if args.work_ms is not None else (20 if args.fast else 30)
    prefetch = max(1, args.prefetch)
    n = Narrator("ra_actors queue demo", steps=7)
    n.banner("A fifo queue on three nodes, two consumer processes; one dies holding messages.")
    own_root = args.data_dir is None
    root = tempfile.mkdtemp(prefix="ra_demo_queue_") if own_root else os.path.abspath(args.data_dir)
    os.makedirs(root, exist_ok=True)
    nodes = None
    consumers: list[_Consumer] = []
    all_pids: list[int] = []
    try:
        # 1 ---------------------------------------------------------------
        n.step("Starting three local nodes and a fifo cluster 'queue' (machines.fifo)")
        t = time.monotonic()
        with n.status("starting nodes and electing a leader"):
            nodes = ra.local_nodes(list(NODES), data_root=os.path.join(root, "nodes"))
            client = nodes.client()
            sids = [ra.ServerId("queue", name) for name in NODES]
            started, _not = client.start_cluster("queue", "machines.fifo", sids)
        _m, leader = client.members(sids[0])
        n.check(len(started) == 3 and leader is not None,
                f"nodes up and leader {leader} elected in {fmt_secs(time.monotonic() - t)}")
        q = leader

        def query(fun):
            return client.consistent_query(q, f"machines.fifo:{fun}", timeout=10)[0]

        # 2 ---------------------------------------------------------------
        n.step(f"Starting consumers A and B: separate processes, own clients, prefetch {prefetch}, "
               f"{work_ms} ms of work per message")
        for label in ("A", "B"):
            consumers.append(_Consumer(label, root, nodes, str(q), prefetch, work_ms))
        a, b = consumers
        ok = all(c.wait_ready(30) for c in consumers)
        n.say("each ran: client.process_command(queue, ('checkout', client.handle, prefetch))")
        n.say("the machine monitors every consumer: Monitor('process', handle)")
        listed = query("consumers")
        n.table([(c.label, c.proc.pid, c.handle) for c in consumers], ("consumer", "pid", "client handle"))
        n.check(ok and {x[0] for x in listed} == {a.handle, b.handle}, "both consumers checked out")
        if not ok:
            return n.verdict()

        # 3 ---------------------------------------------------------------
        n.step(f"Publishing {total} messages (pipelined enqueue commands)")
        t = time.monotonic()
        pending = set()
        with n.status("publishing") as st:
            for i in range(1, total + 1):
                client.pipeline_command(q, ("enqueue", f"msg-{i}"), correlation=i)
                pending.add(i)
            client.flush()
            deadline = time.monotonic() + 30
            while pending and time.monotonic() < deadline:
                for e in client.events(0.5):
                    for corr, _reply in getattr(e, "results", ()):
                        pending.discard(corr)
                st.progress(total - len(pending), total)
        n.check(not pending, f"{total} messages enqueued in {fmt_secs(time.monotonic() - t)}")

        # 4 ---------------------------------------------------------------
        n.step("Killing consumer A mid-stream")
        want = max(2, total // 6)
        with n.status(f"waiting until A has settled {want} messages") as st:
            deadline = time.monotonic() + 60
            while len(a.settled_ok()) < want and time.monotonic() < deadline and a.proc.poll() is None:
                st.progress(len(a.settled_ok()), want)
                time.sleep(0.02)
        os.kill(a.proc.pid, signal.SIGSTOP)      # freeze A: what it holds can no longer change

        def held_by_a():
            return next((tuple(x[2]) for x in query("consumers") if x[0] == a.handle), ())

        # once a settle A sent just before the freeze has landed, the picture is stable
        held = held_by_a()
        for _ in range(20):
            time.sleep(0.2)
            again = held_by_a()
            if again == held:
                break
            held = again
        n.say(f"A settled {len(a.settled_ok())} messages; frozen with SIGSTOP it holds {len(held)} unsettled: "
              f"{list(held)}")
        n.check(len(held) > 0, "A holds unsettled messages when it dies")
        before = query("overview_query")
        all_pids.append(a.proc.pid)
        t = time.monotonic()
        a.kill()                                  # SIGKILL: a real process death
        n.say(f"SIGKILL to A (pid {a.proc.pid})")
        with n.status("waiting for the machine to see Down(A)"):
            seen = None
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if all(x[0] != a.handle for x in query("consumers")):
                    seen = time.monotonic() - t
                    break
                time.sleep(0.05)
        n.check(seen is not None, f"the machine applied Down(A) {fmt_secs(seen or 0)} after the kill "
                                  f"(A's node supervisor noticed its client process was gone)")

        # 5 ---------------------------------------------------------------
        n.step("B receives A's unsettled messages and drains the queue")
        t = time.monotonic()
        with n.status("draining") as st:
            deadline = time.monotonic() + 60
            depth = None
            while time.monotonic() < deadline:
                depth = query("depth")
                st.progress(total - depth, total)
                if depth == 0:
                    break
                time.sleep(0.1)
        n.check(depth == 0, f"queue empty {fmt_secs(time.monotonic() - t)} later")

        # 6 ---------------------------------------------------------------
        n.step("Checking what happened to every message")
        b_deliveries = b.deliveries()
        redelivered = sorted(i for i, count in b_deliveries if count >= 1)
        a_ok = a.settled_ok()
        b_ok = b.settled_ok()
        a_recs = a.records()
        a_maybe = {i for r in a_recs if r["ev"] == "settling" for i in r["ids"]} - a_ok
        after = query("overview_query")
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

        # 7 ---------------------------------------------------------------
        n.step("Stopping B, the nodes and everything else")
        b.stop()
        n.check(b.proc.returncode == 0, "consumer B cancelled its checkout and exited")
        all_pids.extend(nodes.all_pids())
        with n.status("stopping nodes"):
            nodes.close()
            nodes = None
        from .kv import _alive
        left = _alive(all_pids + [c.proc.pid for c in consumers])
        n.check(not left, "every process has exited" if not left else f"processes left: {left}")
    except (RaError, OSError, ValueError) as exc:
        n.check(False, f"step {n.step_no} raised {type(exc).__name__}: {exc}")
    finally:
        for c in consumers:
            c.kill()
        if nodes is not None:
            nodes.close()
        if own_root:
            shutil.rmtree(root, ignore_errors=True)
    if not own_root and os.path.isdir(root):
        print(f"\nnode data and consumer logs kept under {root}")
    return n.verdict()


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
