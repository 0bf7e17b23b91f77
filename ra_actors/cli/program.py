"""The ``ra-actors`` program: its parser, its command groups and how an
error becomes one line and an exit status.

Rules:

* One argparse sub-command group per concern, each in its own module of
  this package.  A group is a function ``add_<group>(subparsers)``
  registered in :data:`GROUPS`; it adds its parser and sets ``func`` on each
  leaf command to a handler ``handler(args) -> int`` (the exit code).  The
  group modules are imported when the parser is built, not when this
  module is, and none of them imports this module.
* ``sim``, ``bench`` and ``jepsen`` pass every argument after their name to
  the script of the same name in ``scripts/`` (run with this Python) and
  return its exit status; ``ra-actors sim --help`` is the script's help.
  :func:`main` hands them over before argparse sees any argument.
* Errors print one line (``ra-actors: error: ...``) unless ``--debug`` is
  given, in which case the traceback is shown.  Exit codes:
  :data:`ra_actors.cli.exit_codes.EXIT_CODES`.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from ..errors import RaError
from .exit_codes import EXIT_CODES, EXIT_INTERRUPTED, exit_code_for
from .usage import UsageError

__all__ = ["main", "build_parser", "GROUPS"]

EPILOG = "exit status:\n" + "\n".join(f"  {code:<4} {what}" for code, what in EXIT_CODES.items())


def add_node(subparsers) -> None:
    from .node import add_parser
    add_parser(subparsers)


def add_cluster(subparsers) -> None:
    from .cluster import add_parser
    add_parser(subparsers)


def add_cookie(subparsers) -> None:
    from .cookie import add_parser
    add_parser(subparsers)


def add_demo(subparsers) -> None:
    from .tools import add_demo_parser
    add_demo_parser(subparsers)


def add_log(subparsers) -> None:
    from .log import add_parser
    add_parser(subparsers)


def add_metrics(subparsers) -> None:
    from .metrics import add_parser
    add_parser(subparsers)


def add_scripts(subparsers) -> None:
    from .tools import add_script_parsers
    add_script_parsers(subparsers)


# Group name -> function adding it (in ``--help`` order).  Append new groups here.
GROUPS: dict[str, Callable[[Any], None]] = {"node": add_node, "cluster": add_cluster, "cookie": add_cookie,
                                            "demo": add_demo, "log": add_log, "metrics": add_metrics,
                                            "scripts": add_scripts}


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
    from .. import __version__
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


def _error_line(exc: BaseException) -> str:
    """The one line that says what went wrong (without ``--debug``)."""
    text = _ATOMS.get(str(exc), str(exc)) or type(exc).__name__
    if isinstance(exc, RaError) and type(exc).__name__ not in text:
        text = f"{text} ({type(exc).__name__})"
    return f"ra-actors: error: {text}"


def _debug_before_command(argv: list[str]) -> bool:
    """``--debug`` among the options before the first command word (the
    script tools own everything after their name, ``--debug`` included)."""
    first_word = next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))
    return "--debug" in argv[:first_word]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_before_command(argv)
    from .tools import SCRIPTS, run_script
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
        print(_error_line(exc), file=sys.stderr)
        return exit_code_for(exc)
