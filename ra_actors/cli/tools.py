"""``ra-actors demo kv|queue|sql`` and ``ra-actors sim|bench|jepsen``.

* ``demo`` runs the narrated demos of :mod:`ra_actors.demos` in this
  process (the same code as ``scripts/demo_kv.py`` and
  ``scripts/demo_queue.py``, ``scripts/demo_sql.py``).
* ``sim``, ``bench`` and ``jepsen`` run ``scripts/sim.py``,
  ``scripts/bench.py`` and ``scripts/jepsen.py`` of the source tree this
  package was installed from (``pip install -e``), with this Python and the
  same arguments, and return the script's exit status.  The script is looked
  up when the command runs: if it is missing the command says so and exits 2.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

__all__ = ["SCRIPTS", "scripts_dir", "run_script", "add_script_parsers", "add_demo_parser"]

SCRIPTS = {
    "sim": ("sim.py", "replay a deterministic simulation seed (scripts/sim.py; --help for its options)"),
    "bench": ("bench.py", "throughput and latency benchmark against PySyncObj and etcd (scripts/bench.py)"),
    "jepsen": ("jepsen.py", "Jepsen-style run: real nodes, faults, linearizability (scripts/jepsen.py)"),
}


def scripts_dir() -> str:
    """``scripts/`` next to the ``ra_actors`` package (the source tree)."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.environ.get("RA_ACTORS_SCRIPTS_DIR") or os.path.join(here, "scripts")


def run_script(name: str, argv: list[str]) -> int:
    script = os.path.join(scripts_dir(), SCRIPTS[name][0])
    if not os.path.isfile(script):
        print(f"ra-actors: {name} is not available: {script} does not exist"
              + (" (the benchmark script has not been added to this tree yet)" if name == "bench" else "")
              + ".  It runs from a source checkout installed with pip install -e.", file=sys.stderr)
        return 2
    # The script's own stdio is ours (no pipe); Ctrl-C reaches both processes.
    proc = subprocess.Popen([sys.executable, script, *argv])
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            # the child got the SIGINT too; give it time to clean up
            try:
                return proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)
            except KeyboardInterrupt:
                proc.send_signal(signal.SIGTERM)


def add_script_parsers(subparsers) -> None:
    for name, (_file, help_text) in SCRIPTS.items():
        # Parsed by main() before argparse (every argument goes to the script);
        # registered here so that ``ra-actors --help`` lists them.
        p = subparsers.add_parser(name, help=help_text, add_help=False)
        p.add_argument("args", nargs="*")


def _demo(module_name: str):
    def handler(args) -> int:
        import importlib
        return importlib.import_module(f"ra_actors.demos.{module_name}").run(args)
    return handler


def add_demo_parser(subparsers) -> None:
    from ..demos import kv, queue, sql
    p = subparsers.add_parser("demo", help="narrated demos on three local nodes (kv, queue, sql)",
                              description="Narrated, self-checking demos on three local nodes.  "
                                          "Exit 0 only if every check passed, 1 otherwise.")
    sub = p.add_subparsers(dest="demo", metavar="DEMO")
    sub.required = True
    k = sub.add_parser("kv", help="kv cluster: kill the leader's node, new leader, catch-up",
                       description=kv.__doc__.split("\n\n")[0] + "\n\n" + kv.__doc__.split("\n\n")[2],
                       formatter_class=_raw())
    kv.add_arguments(k)
    k.set_defaults(func=_demo("kv"))
    q = sub.add_parser("queue", help="fifo cluster: kill a consumer, its messages are redelivered",
                       description=queue.__doc__.split("\n\n")[0] + "\n\n" + queue.__doc__.split("\n\n")[2],
                       formatter_class=_raw())
    queue.add_arguments(q)
    q.set_defaults(func=_demo("queue"))
    d = sub.add_parser("sql", help="replicated SQLite: kill the leader's node mid-transfer, nothing lost",
                       description=sql.__doc__.split("\n\n")[0] + "\n\n" + sql.__doc__.split("\n\n")[2],
                       formatter_class=_raw())
    sql.add_arguments(d)
    d.set_defaults(func=_demo("sql"))


def _raw():
    import argparse
    return argparse.RawDescriptionHelpFormatter
