"""A replicated SQLite database, narrated: bank transfers keep going while
the leader's node is killed, and nothing is lost or applied twice.

    python scripts/demo_sql.py            # or: ra-actors demo sql
    python scripts/demo_sql.py --fast     # fewer transfers (what CI runs)

Steps: start three local nodes; start a ``machines.sqlite`` cluster and
create the accounts; run transfers (each one SQL transaction: debit, credit,
a row in ``transfers``), and SIGKILL the leader's whole node in the middle
of them; check that every acknowledged transfer is there exactly once and
the total never changed; restart the killed node and watch it catch up
(from a snapshot of the database) until every member's copy has the same
digest; stop everything.  Every step is checked; the exit status is 0 only
if all checks passed (1 otherwise).

Rules: as the kv demo (``ra_actors/demos/kv.py``): one method per step,
run in order; a failed check is reported and the demo goes on unless the
steps after it cannot run; every process it starts is stopped and checked
gone.  The kill comes from a timer thread while the main thread is inside
``execute``: that transfer is sent again by the client's session, under
the same number, and applied once.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

import ra_actors as ra
import ra_actors.sqlite as rsql

from ..cli.ui import Narrator, fmt_secs
from ..errors import RaError, SqlError
from .processes import alive_pids

__all__ = ["add_arguments", "run", "main"]

NODES = ("n1", "n2", "n3")
ACCOUNTS = 10
OPENING = 1000
SCHEMA = ("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0))",
          "CREATE TABLE transfers (id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, amount INTEGER, "
          "at_ms INTEGER)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fast", action="store_true", help="60 transfers instead of 300")
    p.add_argument("--transfers", type=int, default=None, metavar="N", help="how many transfers to run")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="keep the nodes' data under DIR (default: a temporary directory, removed at the end)")


def run(args) -> int:
    demo = _SqlDemo(args)
    n = demo.n
    try:
        if not demo.run_steps():
            return n.verdict()
    except (RaError, OSError) as exc:
        n.check(False, f"step {n.step_no} raised {type(exc).__name__}: {exc}")
    finally:
        demo.clean_up()
    if not demo.own_root and os.path.isdir(demo.root):
        print(f"\nnode data kept under {demo.root}")
    return n.verdict()


def _transfer(i: int) -> tuple[int, int, int]:
    """The i-th transfer: from, to, amount (a fixed pattern, so runs compare)."""
    src = i % ACCOUNTS + 1
    dst = (i * 7 + 3) % ACCOUNTS + 1
    if dst == src:
        dst = src % ACCOUNTS + 1
    return src, dst, 1 + (i * 37) % 150


class _SqlDemo:
    """The demo's steps, in order, and what they hand each other."""

    def __init__(self, args) -> None:
        self.count = args.transfers if args.transfers else (60 if args.fast else 300)
        self.n = Narrator("ra_actors SQL demo", steps=6)
        self.n.banner("A SQLite database replicated on three nodes; we kill the leader's node "
                      "in the middle of a stream of transfers.")
        self.own_root = args.data_dir is None
        self.root = tempfile.mkdtemp(prefix="ra_demo_sql_") if self.own_root else args.data_dir
        self.nodes = None
        self.client = None
        self.db: rsql.Connection | None = None
        self.servers: list = []
        self.victim: str | None = None
        self.done: list[int] = []          # transfers acknowledged (committed, in the table)
        self.refused: list[int] = []       # refused by the CHECK (would overdraw): not applied
        self.all_pids: list[int] = []

    def run_steps(self) -> bool:
        self.start_nodes()
        self.create_bank()
        if not self.transfer_and_kill():
            return False
        self.check_the_books()
        self.restart_killed_node()
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
        n.step(f"Starting three local nodes {', '.join(NODES)}")
        t = time.monotonic()
        with n.status("starting nodes"):
            self.nodes = nodes = ra.local_nodes(list(NODES), data_root=self.root)
        n.check(all(nodes[name].alive() for name in NODES), f"three nodes up in {fmt_secs(time.monotonic() - t)}")
        self.client = nodes.client()

    # 2 -------------------------------------------------------------------
    def create_bank(self) -> None:
        n = self.n
        n.step("Starting a replicated SQLite 'bank' (machines.sqlite) and creating the accounts")
        with n.status("electing a leader"):
            self.servers = rsql.start_cluster(self.client, "bank", self.nodes, release_cursor_every=50)
        self.db = db = rsql.connect(self.client, self.servers, timeout=30)
        n.say("db = ra_actors.sqlite.connect(client, servers)")
        for sql in SCHEMA:
            n.say(f"db.execute({sql[:60]!r}...)")
            db.execute(sql)
        db.executemany("INSERT INTO accounts (id, balance) VALUES (?, ?)",
                       [(i, OPENING) for i in range(1, ACCOUNTS + 1)])
        total = db.query("SELECT sum(balance), count(*) FROM accounts")
        _members, leader = self.client.members(self.servers[0])
        n.check(total == [(ACCOUNTS * OPENING, ACCOUNTS)],
                f"{ACCOUNTS} accounts of {OPENING}, total {total[0][0]}; leader {leader}")

    # 3 -------------------------------------------------------------------
    def transfer_and_kill(self) -> bool:
        n = self.n
        _members, leader = self.client.members(self.servers[0])
        self.victim = victim = leader.node
        kill_at = self.count // 3
        n.step(f"Running {self.count} transfers; node {victim} (the leader's) is killed after {kill_at}")
        n.say("each transfer is one command: BEGIN; debit; credit; INSERT INTO transfers; COMMIT")
        self.all_pids.extend(self.nodes.all_pids())
        killed = threading.Event()
        slowest = 0.0
        t = time.monotonic()
        with n.status("transferring") as st:
            for i in range(self.count):
                if i == kill_at:
                    # from another thread, while the next execute is on its way
                    threading.Timer(0.005, lambda: (self.nodes.kill(victim), killed.set())).start()
                start = time.monotonic()
                self._one_transfer(i)
                slowest = max(slowest, time.monotonic() - start)
                st.progress(i + 1, self.count)
        killed.wait(10)
        n.check(killed.is_set() and self.nodes.pids(victim) == [], f"node {victim} was killed mid-stream")
        leader = self._leader(exclude=victim)
        n.say(f"new leader: {leader}; the slowest transfer took {fmt_secs(slowest)} (the election)")
        n.check(len(self.done) + len(self.refused) == self.count,
                f"{self.count} transfers answered in {fmt_secs(time.monotonic() - t)}: {len(self.done)} done, "
                f"{len(self.refused)} refused by the CHECK (balance >= 0)")
        return leader is not None and leader.node != victim

    def _leader(self, exclude: str | None = None):
        """The leader as a member not on ``exclude`` sees it (None if none in 30 s)."""
        askable = [s for s in self.servers if s.node != exclude]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for sid in askable:
                try:
                    _members, leader = self.client.members(sid, timeout=1.0)
                except RaError:
                    continue
                if leader is not None and leader.node != exclude:
                    return leader
            time.sleep(0.05)
        return None

    def _one_transfer(self, i: int) -> None:
        src, dst, amount = _transfer(i)
        try:
            with self.db.transaction() as tx:
                tx.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, src))
                tx.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, dst))
                tx.execute("INSERT INTO transfers (id, src, dst, amount, at_ms) "
                           "VALUES (?, ?, ?, ?, ra_system_time())", (i, src, dst, amount))
        except SqlError as exc:
            if exc.kind != "IntegrityError":
                raise
            self.refused.append(i)
            return
        self.done.append(i)

    # 4 -------------------------------------------------------------------
    def check_the_books(self) -> None:
        n, db = self.n, self.db
        n.step("Checking the books on the new leader (consistent queries)")
        total = db.query("SELECT sum(balance) FROM accounts")[0][0]
        n.check(total == ACCOUNTS * OPENING, f"the total is still {total}")
        ids = [r[0] for r in db.query("SELECT id FROM transfers ORDER BY id")]
        n.check(ids == sorted(self.done), f"{len(ids)} transfers in the table: exactly the acknowledged ones, "
                                          "none lost, none twice")
        rows = db.query("SELECT a.id, a.balance, "
                        "(SELECT coalesce(sum(amount), 0) FROM transfers WHERE dst = a.id) - "
                        "(SELECT coalesce(sum(amount), 0) FROM transfers WHERE src = a.id) "
                        "FROM accounts a ORDER BY a.id")
        n.check(all(balance == OPENING + net for _id, balance, net in rows),
                "every balance is its opening balance plus its transfers in, minus its transfers out")

    # 5 -------------------------------------------------------------------
    def restart_killed_node(self) -> None:
        n, victim, client = self.n, self.victim, self.client
        back = ra.ServerId("bank", victim)
        n.step(f"Restarting node {victim}: it catches up, from a snapshot of the database if it is far behind")
        with n.status(f"starting {victim}"):
            self.nodes.restart(victim)
        self.all_pids.extend(self.nodes.pids(victim))
        leader = self._leader(exclude=victim)
        target = client.key_metrics(leader)["commit_index"]
        t = time.monotonic()
        km = {}
        with n.status(f"{back} catching up"):
            while time.monotonic() - t < 60:
                try:
                    km = client.key_metrics(back, timeout=2.0)
                except RaError:
                    km = {}
                if km.get("last_applied", 0) >= target:
                    break
                time.sleep(0.05)
        chunks = client.member_overview(back)["stats"]["snapshot_chunks_in"] if km else 0
        n.check(km.get("last_applied", 0) >= target,
                f"{back} applied up to {target} in {fmt_secs(time.monotonic() - t)} "
                f"({chunks} snapshot chunk(s) received: the database came as a copy)" if chunks else
                f"{back} applied up to {target} in {fmt_secs(time.monotonic() - t)} (from the log)")
        deadline = time.monotonic() + 15
        while True:   # every member applies the last entries a moment after the leader
            digests = {str(s): self.db.digest(s) for s in self.servers}
            if len(set(digests.values())) == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        n.table([(s, d[:16]) for s, d in digests.items()], ("server", "database digest"))
        n.check(len(set(digests.values())) == 1, "the three copies of the database are identical")

    # 6 -------------------------------------------------------------------
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
    p = argparse.ArgumentParser(prog="demo_sql.py", description=__doc__.split("\n\n")[0],
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
