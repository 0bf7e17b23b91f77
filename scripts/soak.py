#!/usr/bin/env python3
"""Run fresh simulation seeds until time is up; stop at the first failure.

    python scripts/soak.py --minutes 10
    python scripts/soak.py --minutes 2 --faults partition,crash,torn-write
    python scripts/soak.py --minutes 5 --start 1000      # seeds 1000, 1001, ...

Rules:

* Each run is fully described by its command line: the soak picks the
  members (3 or 5), clusters, fault mix and steps from the seed itself, and
  on the first failing seed prints the exact ``scripts/sim.py`` command that
  replays it, then exits 1.  Exit 0 means every seed passed.
* Without ``--start`` the first seed is drawn from the operating system's
  randomness, so every soak explores new seeds; the seeds are printed.
* ``--faults`` fixes the fault mix; otherwise each seed gets a random mix
  (always including partitions or crashes).
* The wall clock is used only to stop the soak and report progress; the
  simulations themselves run on virtual time.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ra_actors.testing.sim import FAULTS, Simulation, parse_faults  # noqa: E402


def plan(seed: int, faults: frozenset[str] | None, steps: int | None) -> dict:
    """The parameters of ``seed`` (a function of the seed only)."""
    rng = random.Random(f"soak-{seed}")
    members = rng.choice([3, 5])
    clusters = 2 if rng.random() < 0.25 else 1
    if faults is None:
        mix = {f for f in FAULTS if rng.random() < 0.5}
        mix.add(rng.choice(["partition", "crash"]))
        faults = frozenset(mix)
    return {"seed": seed, "members": members, "clusters": clusters, "faults": faults,
            "steps": steps if steps is not None else rng.choice([3000, 6000, 12000, 20000])}


def command_line(p: dict) -> str:
    return (f"python scripts/sim.py --seed {p['seed']} --steps {p['steps']} --members {p['members']} "
            f"--clusters {p['clusters']} --faults {','.join(sorted(p['faults']))}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--faults", default=None, help="fixed fault mix (default: random per seed)")
    parser.add_argument("--steps", type=int, default=None, help="fixed steps (default: random per seed)")
    parser.add_argument("--start", type=int, default=None, help="first seed (default: random)")
    parser.add_argument("--progress", type=float, default=10.0, help="seconds between progress lines")
    args = parser.parse_args(argv)
    try:
        faults = parse_faults(args.faults) if args.faults else None
    except ValueError as exc:
        parser.error(str(exc))
    start = args.start if args.start is not None else random.SystemRandom().randrange(10**6, 10**9)
    deadline = time.monotonic() + args.minutes * 60
    last_progress = time.monotonic()
    runs = 0
    totals = {"elections": 0, "committed": 0, "ops_ok": 0, "crashes": 0, "partitions": 0}
    print(f"soak: seeds from {start}, {args.minutes:g} minutes", flush=True)
    seed = start
    while time.monotonic() < deadline:
        p = plan(seed, faults, args.steps)
        result = Simulation(p["seed"], members=p["members"], clusters=p["clusters"],
                            faults=p["faults"], steps=p["steps"]).run()
        runs += 1
        for key in totals:
            totals[key] += result.stats.get(key, 0)
        if not result.ok:
            print(f"soak: FAILED after {runs} seeds")
            print(result.summary())
            print(f"replay: {command_line(p)}")
            return 1
        if time.monotonic() - last_progress >= args.progress:
            last_progress = time.monotonic()
            print(f"soak: {runs} seeds ok (last {seed}); " +
                  ", ".join(f"{k}={v}" for k, v in totals.items()), flush=True)
        seed += 1
    print(f"soak: OK, {runs} seeds ({start}..{seed - 1}) passed; " +
          ", ".join(f"{k}={v}" for k, v in totals.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
