"""The ``ra-actors`` command (``python -m ra_actors.cli`` runs it too).

Usage::

    ra-actors [--debug] node start|stop|status ...
    ra-actors [--debug] cluster start|members|overview|transfer|add|remove|delete|command|query ...
    ra-actors [--debug] demo kv|queue|sql [--fast]
    ra-actors [--debug] log check|dump ...
    ra-actors [--debug] sim|bench|jepsen [ARGS...]    (scripts/sim.py, bench.py, jepsen.py)

``ra-actors GROUP --help`` and ``ra-actors GROUP COMMAND --help`` describe
every command.  Output is a human-readable table or a few lines by default;
``--json`` (where offered) prints one JSON document instead.  Live status
lines go to stderr and only when it is a terminal.

Modules, one per concern:

* :mod:`.program` -- the parser, the group registry, ``main`` and how
  errors become one line and an exit status;
* :mod:`.exit_codes` -- the exit statuses and the exception each stands for;
* :mod:`.usage` -- :class:`UsageError`, raised by any group;
* :mod:`.node`, :mod:`.cluster`, :mod:`.log` -- the ``node``, ``cluster``
  and ``log`` groups;
* :mod:`.tools` -- ``demo`` and the ``sim|bench|jepsen`` script pass-through;
* :mod:`.ui` -- tables, live status lines and the demos' narrator.

Rules: imports point from :mod:`.program` to the groups and from the groups
to :mod:`.ui`, :mod:`.usage` and :mod:`.exit_codes`, never back; no module
of the package imports this ``__init__``.
"""
from __future__ import annotations

from .exit_codes import EXIT_CODES
from .program import GROUPS, build_parser, main
from .usage import UsageError

__all__ = ["main", "build_parser", "GROUPS", "EXIT_CODES", "UsageError"]
