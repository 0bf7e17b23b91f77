"""machines.fifo on real nodes: SendMsg to client handles, Monitor/Down of a
consumer process, Timer -> TimerFired through the log."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import ra_actors as ra
from ra_actors.events import Message

CONSUMER = """
import sys, time
import ra_actors as ra
c = ra.connect(("127.0.0.1", int(sys.argv[1])))
sid = ra.ServerId("q", "n2")
reply, leader = c.process_command(sid, ("checkout", c.handle, 100))
print(c.handle, reply, flush=True)
while True:
    c.events(1.0)          # receive deliveries, never settle
"""


def _deliveries(c, timeout=5.0, want=1):
    out = []
    deadline = time.time() + timeout
    while time.time() < deadline and len(out) < want:
        for e in c.events(0.2):
            if isinstance(e, Message) and e.msg[0] == "delivery":
                out.extend(e.msg[2])
    return out


def test_fifo_consumers_deliveries_down_and_timer(nodes3):
    c = nodes3.client()
    sids = [ra.ServerId("q", n) for n in ("n1", "n2", "n3")]
    c.start_cluster("q", "machines.fifo", sids, config={"delivery_timeout_ms": 1000})
    q = sids[0]
    # a consumer in another process takes everything and dies without settling
    proc = subprocess.Popen([sys.executable, "-c", CONSUMER, str(nodes3.ports["n3"])],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p)))
    try:
        handle, reply = proc.stdout.readline().decode().split()
        assert reply == "ok"
        ids = [c.process_command(q, ("enqueue", f"m{i}"))[0][1] for i in range(3)]
        consumers, _ = c.consistent_query(q, "machines.fifo:consumers")
        assert consumers == ((handle, 100, tuple(ids)),)     # all delivered to it
        proc.kill()
        proc.wait(5)
        # Down(handle): the consumer is removed and its messages are ready again
        deadline = time.time() + 10
        while time.time() < deadline and c.consistent_query(q, "machines.fifo:consumers")[0]:
            time.sleep(0.1)
        assert c.consistent_query(q, "machines.fifo:consumers")[0] == ()
        assert c.consistent_query(q, "machines.fifo:depth")[0] == 3
    finally:
        proc.kill()
        proc.wait(5)
        proc.stdout.close()
    assert c.process_command(q, ("checkout", c.handle, 10))[0] == "ok"
    got = _deliveries(c, want=3)
    assert sorted(m[0] for m in got) == ids
    assert all(m[2] == 1 for m in got), got          # delivered once before, to the dead consumer
    assert c.process_command(q, ("settle", c.handle, tuple(ids)))[0] == "ok"
    assert c.consistent_query(q, "machines.fifo:depth")[0] == 0
    # an unsettled message comes back after delivery_timeout_ms (Timer -> TimerFired)
    (_, mid), _ = c.process_command(q, ("enqueue", "slow"))
    first = _deliveries(c, want=1)
    assert [m[0] for m in first] == [mid]
    again = _deliveries(c, timeout=6.0, want=1)
    assert [(m[0], m[2]) for m in again] == [(mid, 1)]
    assert c.process_command(q, ("settle", c.handle, (mid,)))[0] == "ok"
