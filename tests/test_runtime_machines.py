"""machines.counter, machines.lock and machines.non_assoc on real nodes
(kv and fifo have their own runtime tests)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import ra_actors as ra
from ra_actors.events import Applied, Message
from machines import non_assoc


def _wait(pred, timeout=10.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _converged(c, sids, fun):
    """Every member applied the leader's commit index; their query values."""
    _m, leader = c.members(sids[0])
    target = c.key_metrics(leader)["commit_index"]
    _wait(lambda: all(c.key_metrics(s)["last_applied"] >= target for s in sids), what="members to apply")
    return {s: c.local_query(s, fun)[0][1] for s in sids}


def test_counter_adds_from_any_member(nodes3):
    c = nodes3.client()
    sids = [ra.ServerId("cnt", n) for n in ("n1", "n2", "n3")]
    c.start_cluster("cnt", "machines.counter", sids, config={"initial": 10})
    total = 10
    for i in range(1, 16):
        reply, _leader = c.process_command(sids[i % 3], ("add", i))   # followers redirect to the leader
        total += i
        assert reply == total
    assert c.process_command(sids[0], ("add", "x"))[0] == ("error", "unknown_command")
    assert c.consistent_query(sids[1], "machines.counter:read")[0] == total
    assert set(_converged(c, sids, "machines.counter:read").values()) == {total}


def test_non_assoc_members_apply_in_the_same_order(nodes3):
    c = nodes3.client()
    sids = [ra.ServerId("na", n) for n in ("n1", "n2", "n3")]
    c.start_cluster("na", "machines.non_assoc", sids)
    _m, leader = c.members(sids[0])
    ops = [("add", 7), ("mul", 3), ("sub", 5), ("div", 4), ("mul", 11), ("add", 2**40), ("div", 9)] * 6
    for corr, op in enumerate(ops):
        c.pipeline_command(leader, op, correlation=corr)
    replies = {}
    deadline = time.time() + 15
    while len(replies) < len(ops) and time.time() < deadline:
        for e in c.events(0.5):
            assert isinstance(e, Applied), e
            replies.update(dict(e.results))
    # one client, one leader: applied in the order sent, so every reply is the
    # sequential fold (an order-sensitive machine would show any reordering)
    state = non_assoc.init({})
    for corr, op in enumerate(ops):
        state, _reply = non_assoc.apply(None, op, state)
        assert replies[corr] == state, corr
    assert set(_converged(c, sids, "machines.non_assoc:read").values()) == {state}


HOLDER = """
import sys, time
import ra_actors as ra
c = ra.connect(("127.0.0.1", int(sys.argv[1])))
reply, _ = c.process_command(ra.ServerId("lock", "n1"), ("acquire", "L", c.handle))
with open(sys.argv[2], "w") as f:
    f.write(f"{c.handle} {reply[1]}\\n")
time.sleep(600)
"""


def test_lock_held_by_a_killed_process_passes_to_the_waiter(nodes3, tmp_path):
    c = nodes3.client()
    sids = [ra.ServerId("lock", n) for n in ("n1", "n2", "n3")]
    c.start_cluster("lock", "machines.lock", sids)
    out = tmp_path / "holder.txt"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(nodes3.ports["n2"]), str(out)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p)))
    try:
        _wait(lambda: out.exists() and out.read_text().endswith("\n"), 30, "the holder to acquire")
        holder, status = out.read_text().split()
        assert status == "acquired"
        assert c.consistent_query(sids[0], "machines.lock:holder", "L")[0] == holder
        # we queue behind it
        assert c.process_command(sids[0], ("acquire", "L", c.handle))[0] == ("ok", "queued", 1)
        assert c.process_command(sids[0], ("try_acquire", "M", holder))[0] == ("ok", "acquired")
        proc.kill()
        proc.wait(5)
        # Down(holder): the lock passes to us and we are told so
        granted = []
        deadline = time.time() + 10
        while not granted and time.time() < deadline:
            granted = [e for e in c.events(0.5) if isinstance(e, Message) and e.msg == ("lock_granted", "L")]
        assert granted, "no lock_granted message"
        assert c.consistent_query(sids[0], "machines.lock:holder", "L")[0] == c.handle
        assert c.consistent_query(sids[0], "machines.lock:holder", "M")[0] is None   # freed, no waiter
        _reply, leader = c.process_command(sids[0], ("release", "L", c.handle))
        assert _reply == "ok"
        # (overview is a machine callback, not a query: it comes with the leader's overview)
        assert c.member_overview(leader)["machine"]["owners"] == 0
    finally:
        proc.kill()
        proc.wait(5)
