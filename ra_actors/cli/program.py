"""The ``ra-actors`` command.

Usage::

    ra-actors [--debug] node start|stop|status ...
    ra-actors [--debug] cluster start|members|overview|transfer|add|remove|delete|command|query ...
    ra-actors [--debug] demo kv|queue [--fast]
    ra-actors [--debug] log check|dump ...
    ra-actors [--debug] sim|bench|jepsen [ARGS...]    (scripts/sim.py, bench.py, jepsen.py)

``ra-actors GROUP --help`` and ``ra-actors GROUP COMMAND --help`` describe
every command.

Rules:

* One argparse sub-command group per concern.  A group is a function
  ``add_<group>(subparsers)`` registered in :data:`GROUPS`; it adds its
  parser and sets ``func`` on each leaf command to a handler
  ``handler(args) -> int`` (the exit code).
* ``sim``, ``bench`` and ``jepsen`` pass every argument after their name to
  the script of the same name in ``scripts/`` (run with this Python) and
  return its exit status; ``ra-actors sim --help`` is the script's help.
* Output is a human-readable table or a few lines by default; ``--json``
  (where offered) prints one JSON document instead.  Live status lines go to
  stderr and only when it is a terminal.
* Errors print one line (``ra-actors: error: ...``) unless ``--debug`` is
  given, in which case the traceback is shown.  Exit codes: see
  :data:`EXIT_CODES`.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from . import errors
from .errors import RaError

__all__ = ["main", "build_parser", "GROUPS", "EXIT_CODES", "UsageError"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_TIMEOUT = 4
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILED: "the operation failed or a check did not pass (the message says why)",
    EXIT_USAGE: "bad usage, or a tool that is not available",
    EXIT_UNAVAILABLE: "not running / not reachable: no node at that address or data dir, no such server",
    EXIT_TIMEOUT: "timed out: the operation may or may not have taken effect",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}

EPILOG = "exit status:\n" + "\n".join(f"  {code:<4} {what}" for code, what in EXIT_CODES.items())


class UsageError(Exception):
    """Bad arguments found after parsing (exit 2)."""


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
    p = subparsers.add_parser("log", help="inspect a node's WAL, segments and snapshots",
                              description="Read-only checks and dumps of a node's data directory "
                                          "(safe beside a running node).")
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


# --------------------------------------------------------------- other groups
def add_node(subparsers) -> None:
    from .cli_node import add_parser
    add_parser(subparsers)


def add_cluster(subparsers) -> None:
    from .cli_cluster import add_parser
    add_parser(subparsers)


def add_demo(subparsers) -> None:
    from .cli_tools import add_demo_parser
    add_demo_parser(subparsers)


def add_scripts(subparsers) -> None:
    from .cli_tools import add_script_parsers
    add_script_parsers(subparsers)


# Group name -> function adding it (in ``--help`` order).  Append new groups here.
GROUPS: dict[str, Callable] = {"node": add_node, "cluster": add_cluster, "demo": add_demo,
                               "log": add_log, "scripts": add_scripts}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ra-actors",
        description="ra_actors (Ra, RabbitMQ's Raft library, on Thespian): run nodes, manage "
                    "clusters, run the demos, check logs, run the simulator, benchmark and "
                    "Jepsen-style tests.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND")
    sub.required = True
    for add in GROUPS.values():
        add(sub)
    return parser


def _version() -> str:
    from . import __version__
    return __version__


# Ra's error atoms (what the servers answer) in words.
_ATOMS = {
    "unknown_member": "that server is not a member of the cluster",
    "not_member": "that server is not a member of the cluster",
    "already_member": "that server is already a member of the cluster",
    "cluster_change_not_permitted": "a membership change is still in progress; try again",
    "non_voter": "the target is not a voter",
    "not_up_to_date": "the target has not replicated the whole log yet; try again",
}


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    if isinstance(exc, errors.Timeout):
        return EXIT_TIMEOUT
    if isinstance(exc, (errors.NoSuchServer, errors.NodeDown)):
        return EXIT_UNAVAILABLE
    return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv[: next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))]
    from .cli_tools import SCRIPTS, run_script
    first = next((a for a in argv if not a.startswith("-")), None)
    if first in SCRIPTS:
        # everything after the tool's name belongs to the script
        return run_script(first, argv[argv.index(first) + 1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("ra-actors: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # pragma: no cover - e.g. piped into head
        return 0
    except (RaError, OSError, ValueError, UsageError) as exc:
        if debug or getattr(args, "debug", False):
            raise
        text = _ATOMS.get(str(exc), str(exc)) or type(exc).__name__
        if isinstance(exc, RaError) and type(exc).__name__ not in text:
            text = f"{text} ({type(exc).__name__})"
        print(f"ra-actors: error: {text}", file=sys.stderr)
        return _exit_code(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
