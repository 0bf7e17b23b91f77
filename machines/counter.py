"""The smallest useful machine: one integer counter.

Rules:

* State is an ``int`` (starts at ``config.get("initial", 0)``).
* ``("add", n)`` adds the integer ``n`` and replies the new value; anything
  else leaves the state alone and replies ``("error", "unknown_command")``.
* Query: ``read(state)`` returns the value.
"""
from __future__ import annotations

from typing import Any


def init(config: dict) -> int:
    return int(config.get("initial", 0))


def apply(meta: Any, command: Any, state: int):
    if (isinstance(command, tuple) and len(command) == 2 and command[0] == "add"
            and isinstance(command[1], int) and not isinstance(command[1], bool)):
        value = state + command[1]
        return value, value
    return state, ("error", "unknown_command")


def read(state: int) -> int:
    return state


def overview(state: int) -> dict:
    return {"value": state}
