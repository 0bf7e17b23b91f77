"""A consumer process of the queue demo (``python -m ra_actors.demos.queue_consumer``).

It connects with its own client (so its client handle names this process),
checks out of the fifo cluster with a prefetch, then for each delivered
message "works" for ``--work-ms`` and settles it.  Everything it sees and
does goes to ``--log`` as JSON lines, written and flushed before the next
action, so the demo can reconstruct what happened even after a SIGKILL::

    {"ev": "ready", "handle": ...}
    {"ev": "delivery", "id": 7, "count": 0, "body": "msg-7", "t": ...}
    {"ev": "settling", "ids": [7]}         # before the settle is sent
    {"ev": "settled", "ids": [7], "reply": "ok"}

SIGTERM (or the demo's death) makes it cancel its checkout and exit.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections import deque


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connect", action="append", required=True, metavar="HOST:PORT")
    p.add_argument("--server", required=True, metavar="NAME@NODE")
    p.add_argument("--prefetch", type=int, default=5)
    p.add_argument("--work-ms", type=int, default=40)
    p.add_argument("--log", required=True)
    p.add_argument("--max-seconds", type=float, default=300.0, help="exit after this long whatever happens")
    args = p.parse_args(argv)

    import ra_actors as ra
    from ra_actors.events import Message

    stop = {"flag": False}

    def on_term(signum, frame):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_term)
    parent = os.getppid()
    name, _, node = args.server.partition("@")
    sid = ra.ServerId(name, node)
    addrs = []
    for a in args.connect:
        host, _, port = a.rpartition(":")
        addrs.append((host, int(port)))
    log = open(args.log, "a", buffering=1)

    def write(**rec):
        log.write(json.dumps(rec) + "\n")
        log.flush()

    client = ra.connect(addrs)
    reply, _leader = client.process_command(sid, ("checkout", client.handle, args.prefetch), timeout=10)
    write(ev="ready", handle=client.handle, reply=reply, pid=os.getpid())
    todo: deque = deque()
    deadline = time.monotonic() + args.max_seconds
    while not stop["flag"] and time.monotonic() < deadline and os.getppid() == parent:
        for e in client.events(0.0 if todo else 0.2):
            if isinstance(e, Message) and e.msg and e.msg[0] == "delivery":
                for msg_id, body, count in e.msg[2]:
                    write(ev="delivery", id=msg_id, count=count, body=body, t=time.time())
                    todo.append(msg_id)
        if todo:
            msg_id = todo.popleft()
            time.sleep(args.work_ms / 1000.0)
            write(ev="settling", ids=[msg_id])
            reply, _leader = client.process_command(sid, ("settle", client.handle, (msg_id,)), timeout=10)
            write(ev="settled", ids=[msg_id], reply=reply if isinstance(reply, str) else list(reply))
    try:
        client.process_command(sid, ("cancel", client.handle), timeout=5)
        write(ev="cancelled")
    except ra.errors.RaError:
        pass
    client.close()
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
