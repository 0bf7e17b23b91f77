"""The ``ra-actors`` command.

Usage::

    ra-actors [--debug] log check DATA_DIR [--json]
    ra-actors [--debug] log dump FILE

Rules:

* One argparse sub-command group per concern.  A group is a function
  ``add_<group>(subparsers)`` registered in :data:`GROUPS`; it adds its
  parser and sets ``func`` on each leaf command to a handler
  ``handler(args) -> int`` (the exit code).  Other groups (``node``,
  ``cluster``, ``demo``, ``sim``, ``bench``, ``jepsen``) plug in the same way.
* Errors print one line (``ra-actors: error: ...``) and exit 1, unless
  ``--debug`` is given, in which case the traceback is shown.  Usage errors
  exit 2 (argparse's convention).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from .errors import RaError

__all__ = ["main", "build_parser", "GROUPS"]


# ------------------------------------------------------------------ log group
def _log_check(args: argparse.Namespace) -> int:
    from .log.tools import check_data_dir, format_report

    report = check_data_dir(args.data_dir)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        print(format_report(report))
    return 0 if report.sound else 1


def _log_dump(args: argparse.Namespace) -> int:
    from .log.tools import dump_file

    for line in dump_file(args.file):
        print(line)
    return 0


def add_log(subparsers) -> None:
    p = subparsers.add_parser("log", help="inspect a node's WAL, segments and snapshots")
    sub = p.add_subparsers(dest="log_command", metavar="COMMAND")
    sub.required = True
    check = sub.add_parser("check", help="verify every WAL, segment, snapshot and meta file",
                           description="Verify every file of a node's data directory.  Exit 0 when "
                                       "the data is sound (a torn WAL tail is sound: recovery "
                                       "truncates it), 1 when something is corrupt.")
    check.add_argument("data_dir", metavar="DATA_DIR")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(func=_log_check)
    dump = sub.add_parser("dump", help="print a WAL or segment file's records, one per line",
                          description="Print server, index, term and size of every record.")
    dump.add_argument("file", metavar="FILE")
    dump.set_defaults(func=_log_dump)


# Group name -> function adding it.  Append new groups here.
def add_node(subparsers) -> None:
    from .cli_node import add_parser
    add_parser(subparsers)


GROUPS: dict[str, Callable] = {"log": add_log, "node": add_node}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ra-actors",
                                     description="Ra (RabbitMQ's Raft) on Thespian: operator tools")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="group", metavar="GROUP")
    sub.required = True
    for add in GROUPS.values():
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # pragma: no cover - e.g. piped into head
        return 0
    except (RaError, OSError, ValueError) as exc:
        if args.debug:
            raise
        print(f"ra-actors: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
