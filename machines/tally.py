"""A counter with an aux handler (Ra's ``init_aux``/``handle_aux``): the
example of ``docs/api.rst`` ("Aux commands").

Rules:

* Replicated state: an ``int``; ``("add", n)`` adds the integer ``n`` and
  replies the new value (anything else: ``("error", "unknown_command")``).
* Aux state, each member's own (never replicated): ``{"name": the server's
  name, "asked": aux calls answered}``.  Aux commands, as calls or casts:

  ==================  ===========================================================
  ``("value",)``      the counter as this member has applied it
  ``("whoami",)``     ``(role, name, last_applied)`` of this member
  ``("asked",)``      how many aux calls this member answered before this one
  ==================  ===========================================================

  Anything else (and the built-in ``AuxEval``/``AuxTick`` casts) changes
  nothing and replies ``("error", "unknown_aux_command")``.
"""
from __future__ import annotations

from typing import Any


def init(config: dict) -> int:
    return 0


def apply(meta: Any, command: Any, state: int):
    if (isinstance(command, tuple) and len(command) == 2 and command[0] == "add"
            and isinstance(command[1], int) and not isinstance(command[1], bool)):
        return state + command[1], state + command[1]
    return state, ("error", "unknown_command")


def init_aux(name: str) -> dict:
    return {"name": name, "asked": 0}


def handle_aux(role: str, kind: str, command: Any, aux: dict, internal: Any):
    asked = aux["asked"]
    if kind == "call":
        aux = {**aux, "asked": asked + 1}
    if command == ("value",):
        return aux, internal.machine_state()
    if command == ("whoami",):
        return aux, (role, aux["name"], internal.last_applied())
    if command == ("asked",):
        return aux, asked
    return aux, ("error", "unknown_aux_command")
