"""``ra-actors log check|dump``: read-only checks and dumps of a node's data
directory.

Usage::

    ra-actors log check DATA_DIR [--wal-dir DIR ...] [--json]
    ra-actors log dump FILE

Both only read files, so they are safe beside a running node.  ``check``
exits 0 when the data is sound (a torn tail of the newest WAL file is sound:
recovery keeps its bytes aside and truncates it), 1 when something is
corrupt (damage anywhere else, a hole in a server's log), 2 on a usage
error.  ``check`` covers every WAL directory of the node: those given with
``--wal-dir``, else those of the node's ``node.json`` (its ``wal_dirs``),
else ``DATA_DIR/wal``, and any a server's record names.  The work is done by
:mod:`ra_actors.log.tools`; this module only parses and prints.
"""
from __future__ import annotations

import argparse
import json
import os

from .exit_codes import EXIT_FAILED, EXIT_OK

__all__ = ["add_parser"]


def _check(args: argparse.Namespace) -> int:
    from ..log.tools import check_data_dir, format_report

    report = check_data_dir(args.data_dir, args.wal_dir or _node_wal_dirs(args.data_dir))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        print(format_report(report))
    return EXIT_OK if report.sound else EXIT_FAILED


def _node_wal_dirs(data_dir: str) -> list | None:
    """The ``wal_dirs`` the node of ``data_dir`` was started with (its
    ``node.json``), None if it names none."""
    try:
        with open(os.path.join(data_dir, "node.json")) as f:
            dirs = json.load(f).get("wal_dirs")
    except (OSError, ValueError, AttributeError):
        return None
    return [str(d) for d in dirs] if isinstance(dirs, list) and dirs else None


def _dump(args: argparse.Namespace) -> int:
    from ..log.tools import dump_file

    for line in dump_file(args.file):
        print(line)
    return EXIT_OK


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("log", help="inspect a node's WAL, segments and snapshots",
                              description="Read-only checks and dumps of a node's data directory "
                                          "(safe beside a running node).")
    sub = p.add_subparsers(dest="log_command", metavar="COMMAND")
    sub.required = True
    check = sub.add_parser("check", help="verify every file and every server's log",
                           description="Verify every file of a node's data directory and every "
                                       "server's log (recoverable range, holes, meta against the "
                                       "log).  Exit 0 when the data is sound (a torn tail of the "
                                       "newest WAL file is sound: recovery keeps its bytes aside "
                                       "and truncates it), 1 when something is corrupt, 2 on a "
                                       "usage error.")
    check.add_argument("data_dir", metavar="DATA_DIR")
    check.add_argument("--wal-dir", action="append", metavar="DIR",
                       help="a WAL directory of the node (repeatable; default: the node.json's "
                            "wal_dirs, else DATA_DIR/wal)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(func=_check)
    dump = sub.add_parser("dump", help="print a WAL or segment file's records, one per line",
                          description="Print server, index, term and size of every record.")
    dump.add_argument("file", metavar="FILE")
    dump.set_defaults(func=_dump)
