"""``ra-actors metrics``: a node's counters in the Prometheus text format.

Usage::

    ra-actors metrics --data-dir DIR [--data-dir DIR ...]

It reads each node's counters file (``DIR/counters``) read-only and asks no
node anything, so it answers for a busy or wedged node too (a node that
does not run shows its last counters, with ``ra_server_up 0``).  Exit 3 if
none of the directories has a counters file.

Rules: this module only parses and prints; :mod:`ra_actors.metrics` reads.
"""
from __future__ import annotations

import argparse
import os
import sys

from .exit_codes import EXIT_OK, EXIT_UNAVAILABLE

__all__ = ["add_parser"]


def _metrics(args: argparse.Namespace) -> int:
    from ..metrics.block import counters_path
    from ..metrics.exporter import metrics_text
    present = [d for d in args.data_dir if os.path.exists(counters_path(d))]
    for d in args.data_dir:
        if d not in present:
            print(f"ra-actors: no counters in {d} (no node has run there)", file=sys.stderr)
    if not present:
        return EXIT_UNAVAILABLE
    sys.stdout.write(metrics_text(present))
    return EXIT_OK


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("metrics", help="print nodes' counters in the Prometheus text format",
                              description="Print the counters of the nodes of the given data directories "
                                          "in the Prometheus text format (read from their counters files; "
                                          "no node is asked).")
    p.add_argument("--data-dir", action="append", required=True, metavar="DIR",
                   help="a node's data directory (repeatable)")
    p.set_defaults(func=_metrics)
