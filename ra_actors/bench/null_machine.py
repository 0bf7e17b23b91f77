"""The benchmark's "machine that does almost nothing".

Rules:

* State is a tuple ``(count, digest)``: the number of commands applied and an
  order-sensitive CRC-32 chain over the command payloads (``bytes``).  Two
  members that applied the same commands in the same order hold the same
  state, so the durability check compares states, not only counts.
* Any ``bytes`` command counts; anything else leaves the state alone and
  replies ``("error", "unknown_command")``.
* ``apply`` replies the new count (a small int: the reply travels back to
  the client in the ``Applied`` event).
* Query: ``read(state)`` returns the state.
"""
from __future__ import annotations

import zlib
from typing import Any


def init(config: dict) -> tuple:
    return (0, 0)


def apply(meta: Any, command: Any, state: tuple):
    if isinstance(command, bytes):
        count = state[0] + 1
        return (count, zlib.crc32(command, state[1])), count
    return state, ("error", "unknown_command")


def read(state: tuple) -> tuple:
    return state


def overview(state: tuple) -> dict:
    return {"count": state[0], "digest": state[1]}
