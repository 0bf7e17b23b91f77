#!/usr/bin/env python3
"""Issue 15's failover scenario at full size: ``process_command`` loops ride
over paused leaders and restarted followers, each call applied once.

    python scripts/failover.py                         # 4 threads x 1,500 calls, placement process
    python scripts/failover.py --placement shared --calls 3000 --seed 7

Three local nodes, a ``machines.counter`` cluster, ``--clients`` threads
each calling ``process_command(server, ("add", 1), timeout=--timeout)``
``--calls`` times while the leader's node is paused (SIGSTOP 1.5-3 s) and a
follower's node is killed and restarted, in turn, every 2-4 s (see
:mod:`ra_actors.testing.failover`; tests/test_runtime_sessions.py runs a
shorter version).  Prints the faults and the outcome; exit 0 only if no call
raised and the counter equals the number of calls.  Every node it starts is
stopped at the end, also on errors and Ctrl-C.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ra_actors.testing.failover import run_counter_scenario  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--placement", choices=("process", "shared"), default="process")
    p.add_argument("--clients", type=int, default=4, help="client threads (default 4)")
    p.add_argument("--calls", type=int, default=1500, help="calls per thread (default 1500)")
    p.add_argument("--timeout", type=float, default=10.0, help="timeout of each call, s (default 10)")
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args(argv)
    if args.clients < 1 or args.calls < 1 or args.timeout <= 0:
        p.error("--clients, --calls and --timeout must be positive")
    result = run_counter_scenario(placement=args.placement, clients=args.clients, calls=args.calls,
                                  call_timeout=args.timeout, seed=args.seed,
                                  progress=lambda s: print(f"{time.strftime('%H:%M:%S')} {s}", flush=True))
    total = args.clients * args.calls
    print(f"placement {args.placement}: {result.calls} of {total} calls returned in {result.seconds:.1f}s "
          f"(slowest {result.slowest_call:.2f}s); {len(result.errors)} raised; final counter {result.final}")
    for client, n, what in result.errors[:20]:
        print(f"  ! client {client} call {n}: {what}")
    ok = result.exactly_once and result.calls == total
    print("exactly once: " + ("yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
