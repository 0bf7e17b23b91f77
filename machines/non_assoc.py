"""An order-sensitive machine (after Ra's ``ra_props_SUITE``).

If two members applied the same commands in different orders, their states
would differ, so this machine makes ordering bugs visible.

Rules:

* State is an ``int`` in ``[0, P)`` with ``P = 2**61 - 1`` (a Mersenne
  prime): arithmetic is exact modular integer arithmetic, so every member
  computes bit-identical states and the state always fits msgpack's uint64.
* Commands ``("add", x)``, ``("sub", x)``, ``("mul", x)``, ``("div", x)``
  with an integer ``x``; ``div`` multiplies by the modular inverse of ``x``
  and is refused (``("error", "division_by_zero")``, state unchanged) when
  ``x`` is a multiple of ``P``.  The reply is the new state.
* Anything else replies ``("error", "unknown_command")`` and changes nothing.
* Query: ``read(state)``.
"""
from __future__ import annotations

from typing import Any

P = (1 << 61) - 1


def init(config: dict) -> int:
    return int(config.get("initial", 1)) % P


def apply(meta: Any, command: Any, state: int):
    if not (isinstance(command, tuple) and len(command) == 2
            and isinstance(command[1], int) and not isinstance(command[1], bool)):
        return state, ("error", "unknown_command")
    op, x = command
    if op == "add":
        value = (state + x) % P
    elif op == "sub":
        value = (state - x) % P
    elif op == "mul":
        value = (state * x) % P
    elif op == "div":
        if x % P == 0:
            return state, ("error", "division_by_zero")
        value = (state * pow(x, -1, P)) % P
    else:
        return state, ("error", "unknown_command")
    return value, value


def read(state: int) -> int:
    return state


def overview(state: int) -> dict:
    return {"value": state}
