#!/usr/bin/env python3
"""Run fresh simulation seeds until time is up, and report every violation.

    python scripts/soak.py --minutes 10
    python scripts/soak.py --minutes 60 --jobs 2 --keep-going   # both cores, list every finding
    python scripts/soak.py --minutes 2 --faults partition,crash,torn-write
    python scripts/soak.py --minutes 5 --start 1000              # seeds 1000, 1001, ...

Rules:

* Each run is fully described by its command line: the soak picks the
  members (3 or 5), clusters, fault mix and steps from the seed itself
  (:func:`plan`), so a failing seed prints the exact ``scripts/sim.py``
  command that replays it.
* Without ``--start`` the first seed is drawn from the operating system's
  randomness, so every soak explores new seeds; the seeds are printed.
* ``--faults`` fixes the fault mix; otherwise each seed gets a random mix
  (always including partitions or crashes).
* ``--jobs N`` runs N seeds at a time in worker processes (seeds are handed
  out in order; results are reported as they finish).  The workers are
  stopped when the soak ends, whatever the reason.
* A failing seed is written to ``--out`` (default ``soak-failures/``) as
  ``seed-<N>.txt``: the replay command, the violations, then the full
  ``--trace`` transcript.  Without ``--keep-going`` the soak stops at the
  first failure; with it, it goes on and ends with one line per distinct
  kind of violation (the text before its first colon).
* Exit status: 0 if every seed passed, 1 otherwise.  The wall clock only
  decides when to stop and when to print progress; the simulations run on
  virtual time.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ra_actors.testing.sim import FAULTS, Simulation, parse_faults  # noqa: E402

STAT_KEYS = ("elections", "committed", "ops_ok", "crashes", "partitions")


def plan(seed: int, faults: frozenset[str] | None, steps: int | None, bugs: frozenset[str] = frozenset()) -> dict:
    """The parameters of ``seed`` (a function of the seed only)."""
    rng = random.Random(f"soak-{seed}")
    members = rng.choice([3, 5])
    clusters = 2 if rng.random() < 0.25 else 1
    if faults is None:
        mix = {f for f in FAULTS if rng.random() < 0.5}
        mix.add(rng.choice(["partition", "crash"]))
        faults = frozenset(mix)
    return {"seed": seed, "members": members, "clusters": clusters, "faults": faults,
            "steps": steps if steps is not None else rng.choice([3000, 6000, 12000, 20000]),
            "bugs": frozenset(bugs)}


def command_line(p: dict) -> str:
    cmd = (f"python scripts/sim.py --seed {p['seed']} --steps {p['steps']} --members {p['members']} "
           f"--clusters {p['clusters']} --faults {','.join(sorted(p['faults']))}")
    return cmd + (f" --bugs {','.join(sorted(p['bugs']))}" if p.get("bugs") else "")


def violation_kind(violation: str) -> str:
    """``"t=123ms leader completeness: ..."`` -> ``"leader completeness"``."""
    text = re.sub(r"^t=\d+ms\s+", "", violation)
    return text.split(":", 1)[0].strip()


def run_seed(p: dict) -> dict:
    """Run one planned seed (in a worker).  A failing seed is run again with
    ``trace`` on (same seed, same run) for the full transcript."""
    def simulate(trace: bool):
        return Simulation(p["seed"], members=p["members"], clusters=p["clusters"], faults=p["faults"],
                          steps=p["steps"], bugs=p["bugs"], trace=trace).run()

    result = simulate(False)
    out = {"plan": p, "ok": result.ok, "stats": {k: result.stats.get(k, 0) for k in STAT_KEYS},
           "summary": result.summary(), "violations": list(result.violations), "transcript": None}
    if not result.ok:
        out["transcript"] = simulate(True).transcript
    return out


def write_failure(out_dir: Path, r: dict) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"seed-{r['plan']['seed']}.txt"
    lines = [f"replay: {command_line(r['plan'])}", r["summary"], *r["violations"], "",
             *(r["transcript"] or [])]
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--faults", default=None, help="fixed fault mix (default: random per seed)")
    parser.add_argument("--steps", type=int, default=None, help="fixed steps (default: random per seed)")
    parser.add_argument("--start", type=int, default=None, help="first seed (default: random)")
    parser.add_argument("--bugs", default="", help="deliberate core bugs (to check that the soak finds them)")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at a time (default 1)")
    parser.add_argument("--keep-going", action="store_true", help="go on after a failing seed")
    parser.add_argument("--out", default="soak-failures", help="where failing seeds are written")
    parser.add_argument("--progress", type=float, default=10.0, help="seconds between progress lines")
    args = parser.parse_args(argv)
    try:
        faults = parse_faults(args.faults) if args.faults else None
    except ValueError as exc:
        parser.error(str(exc))
    bugs = frozenset(b for b in args.bugs.split(",") if b)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    start = args.start if args.start is not None else random.SystemRandom().randrange(10**6, 10**9)
    deadline = time.monotonic() + args.minutes * 60
    print(f"soak: seeds from {start}, {args.minutes:g} minutes, {args.jobs} job(s)", flush=True)

    runs = 0
    totals = dict.fromkeys(STAT_KEYS, 0)
    failures: list[dict] = []
    next_seed = start
    last_progress = time.monotonic()
    pool = multiprocessing.get_context("fork").Pool(args.jobs) if args.jobs > 1 else None
    in_flight: list = []
    try:
        while True:
            stopping = time.monotonic() >= deadline or (failures and not args.keep_going)
            if pool is None:
                if stopping:
                    break
                results = [run_seed(plan(next_seed, faults, args.steps, bugs))]
                next_seed += 1
            else:
                while not stopping and len(in_flight) < 2 * args.jobs:
                    in_flight.append(pool.apply_async(run_seed, (plan(next_seed, faults, args.steps, bugs),)))
                    next_seed += 1
                if not in_flight:
                    break
                in_flight[0].wait(0.2)
                results = []
                while in_flight and in_flight[0].ready():
                    results.append(in_flight.pop(0).get())
            for r in results:
                runs += 1
                for key in STAT_KEYS:
                    totals[key] += r["stats"][key]
                if not r["ok"]:
                    failures.append(r)
                    path = write_failure(Path(args.out), r)
                    print(f"soak: FAILED {r['summary']}", flush=True)
                    print(f"soak: replay: {command_line(r['plan'])}  (transcript: {path})", flush=True)
            if time.monotonic() - last_progress >= args.progress:
                last_progress = time.monotonic()
                print(f"soak: {runs} seeds, {len(failures)} failed; "
                      + ", ".join(f"{k}={v}" for k, v in totals.items()), flush=True)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()

    seeds = f"{runs} seeds ({start}..{start + runs - 1})" if runs else "no seed"
    stats = ", ".join(f"{k}={v}" for k, v in totals.items())
    if not failures:
        print(f"soak: OK, {seeds} passed; {stats}")
        return 0
    kinds: dict[str, list[int]] = {}
    for r in failures:
        kinds.setdefault(violation_kind(r["violations"][0]), []).append(r["plan"]["seed"])
    print(f"soak: FAILED, {len(failures)} of {seeds} failed; {stats}")
    for kind, seeds_of_kind in sorted(kinds.items()):
        shown = ", ".join(str(s) for s in seeds_of_kind[:5]) + (" ..." if len(seeds_of_kind) > 5 else "")
        print(f"soak:   {kind}: {len(seeds_of_kind)} seed(s): {shown}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
