#!/usr/bin/env python3
"""Replay one deterministic simulation seed and print its transcript.

    python scripts/sim.py                                  # seed 11, 3 members, partition,crash
    python scripts/sim.py --seed 7 --steps 20000 --members 5 --faults partition,crash,torn-write,drop
    python scripts/sim.py --seed 7 --trace                 # every message, effect and timer
    python scripts/sim.py --seed 7 --bugs commit_undurable # a deliberate core bug: expect a VIOLATION

Rules:

* The same arguments print the same transcript, byte for byte (virtual
  time only, one seeded RNG; see ``ra_actors/testing/sim.py``).
* Without ``--trace`` only notable events are printed: elections, crashes,
  restarts, partitions, heals, membership changes, commit milestones.
* The last line is the verdict: ``seed N: OK (...)`` or
  ``seed N: VIOLATION ...``; the exit status is 1 on any violation (a
  broken invariant, lost liveness or a non-linearizable KV history).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ra_actors.testing.bugs import KNOWN_BUGS, WAL_BUGS  # noqa: E402
from ra_actors.testing.history import write_history  # noqa: E402
from ra_actors.testing.sim import FAULTS, Simulation, parse_faults  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--steps", type=int, default=10000,
                        help="events in the fault phase (default 10000)")
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--clusters", type=int, default=1,
                        help="clusters sharing the same nodes (and WALs)")
    parser.add_argument("--faults", default="partition,crash",
                        help=f"comma-separated, 'all' or 'none'; known: {','.join(FAULTS)}")
    parser.add_argument("--bugs", default="",
                        help=f"deliberate bugs (comma-separated): {','.join(sorted(KNOWN_BUGS) + sorted(WAL_BUGS))}")
    parser.add_argument("--trace", action="store_true", help="print every event")
    parser.add_argument("--history", metavar="DIR",
                        help="write each cluster's KV history to DIR/<cluster>.jsonl")
    parser.add_argument("--quiet", action="store_true", help="print only the verdict line")
    parser.add_argument("--disk-machine", action="store_true",
                        help="the KV machine keeps its state in simulated files (a disk machine)")
    args = parser.parse_args(argv)
    try:
        faults = parse_faults(args.faults)
    except ValueError as exc:
        parser.error(str(exc))
    bugs = frozenset(b.strip() for b in args.bugs.split(",") if b.strip())

    echo = None if args.quiet else print
    sim = Simulation(args.seed, members=args.members, clusters=args.clusters, faults=faults,
                     steps=args.steps, bugs=bugs, trace=args.trace, echo=echo, disk_machine=args.disk_machine)
    result = sim.run()
    if args.history:
        os.makedirs(args.history, exist_ok=True)
        for name, events in result.histories.items():
            write_history(os.path.join(args.history, f"{name}.jsonl"), events)
    if not args.quiet:
        s = result.stats
        print(f"stats: events={s['events']} virtual={s['virtual_ms']}ms messages={s['messages']} "
              f"dropped={s['dropped']} duplicated={s['duplicated']} reordered={s['reordered']} "
              f"fsyncs={s['fsync_batches']} torn={s['torn_batches']} snapshots={s['snapshots']} "
              f"membership={s['membership_changes']} transfers={s['transfers']}")
        for v in result.violations[1:]:
            print(f"also: {v}")
    print(result.summary())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
