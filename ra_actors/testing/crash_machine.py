"""A counter whose ``apply`` can be made to raise, to test crash handling.

``("add", n)`` adds ``n``; ``("crash_if", path)`` raises ``RuntimeError``
while the file ``path`` exists and is a no-op otherwise.  A raising
``apply`` is a server crash (as in Ra): the supervisor restarts the server,
which replays the entry and crashes again until the file is gone, so a
test decides how long the server stays down.  Only for tests: ``apply``
must not depend on the file system in a real machine.
"""
from __future__ import annotations

import os
from typing import Any


def init(config: dict) -> int:
    return 0


def apply(meta: Any, command: Any, state: int):
    if isinstance(command, tuple) and len(command) == 2:
        if command[0] == "add":
            return state + command[1], state + command[1]
        if command[0] == "crash_if":
            if os.path.exists(command[1]):
                raise RuntimeError(f"crash requested by {command[1]}")
            return state, "survived"
    return state, ("error", "unknown_command")


def read(state: int) -> int:
    return state
