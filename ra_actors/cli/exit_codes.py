"""Exit statuses of the ``ra-actors`` command and the exception each one
stands for.

Every handler returns one of these; :func:`exit_code_for` maps an exception
that escaped a handler to its status.  Rule: this module imports only
:mod:`ra_actors.errors` and :mod:`ra_actors.cli.usage`, so every command
group may import it.
"""
from __future__ import annotations

from .. import errors
from .usage import UsageError

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_UNAVAILABLE", "EXIT_TIMEOUT",
           "EXIT_INTERRUPTED", "EXIT_CODES", "exit_code_for"]

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


def exit_code_for(exc: BaseException) -> int:
    """The exit status of a command that raised ``exc``."""
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    if isinstance(exc, errors.Timeout):
        return EXIT_TIMEOUT
    if isinstance(exc, (errors.NoSuchServer, errors.NodeDown)):
        return EXIT_UNAVAILABLE
    return EXIT_FAILED
