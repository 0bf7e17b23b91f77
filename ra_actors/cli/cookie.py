"""``ra-actors cookie new|path``: the cluster secret's file.

Usage::

    ra-actors cookie new [--cookie-file FILE] [--force]
    ra-actors cookie path [--cookie-file FILE]

``new`` writes a fresh secret (mode 0600) to the cookie file and refuses to
replace one unless ``--force`` is given; ``path`` prints which file the
other commands would use.  Copy the file to every host of the convention
(``docs/operations.rst``, "Security").

Rules: this module only parses and prints; :mod:`ra_actors.cookie` does the
work.  The secret itself is never printed.
"""
from __future__ import annotations

import os

from .exit_codes import EXIT_FAILED, EXIT_OK

__all__ = ["add_parser", "add_cookie_option"]


def add_cookie_option(parser) -> None:
    """``--cookie-file`` for a command that starts a node or connects."""
    parser.add_argument("--cookie-file", default=None, metavar="FILE",
                        help="the cluster secret's file (default $RA_ACTORS_COOKIE_FILE, else ~/.ra_actors.cookie)")


def _new(args) -> int:
    from ..cookie import cookie_path, create_cookie
    path = cookie_path(args.cookie_file)
    if os.path.lexists(path):
        if not args.force:
            print(f"{path} exists: give --force to replace it (every node and client must then get the new one)")
            return EXIT_FAILED
        os.unlink(path)
    create_cookie(path)
    print(f"new cluster secret in {path} (mode 0600): copy it to every host of the convention")
    return EXIT_OK


def _path(args) -> int:
    from ..cookie import cookie_path
    print(cookie_path(args.cookie_file))
    return EXIT_OK


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("cookie", help="create or locate the cluster secret's file",
                              description="The cluster secret every node and client of a convention shares.")
    sub = p.add_subparsers(dest="cookie_command", metavar="COMMAND")
    sub.required = True
    new = sub.add_parser("new", help="write a fresh secret to the cookie file")
    add_cookie_option(new)
    new.add_argument("--force", action="store_true", help="replace an existing cookie file")
    new.set_defaults(func=_new)
    path = sub.add_parser("path", help="print the cookie file the commands use")
    add_cookie_option(path)
    path.set_defaults(func=_path)
