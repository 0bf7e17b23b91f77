"""When a crashed child is restarted: Erlang's supervisor intensity plus a
back-off.  One policy for servers and client-started actors.

Rules:

* At most ``max_restarts`` restarts within ``period`` seconds; one more
  crash in that window and the child stays down (a child that cannot run
  must not spin the node).
* The first restart in the window happens at once, the next ones after a
  delay that doubles (``first_delay * 2**n``), capped at ``max_delay``.
* The history (times of recent restarts) belongs to the child and passes
  from one incarnation to the next; the policy only reads and extends it.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    max_restarts: float = 10
    period: float = 10.0          # seconds
    first_delay: float = 0.05     # the second restart in the period waits 0.05 * 2**2 s ...
    max_delay: float = 1.0        # ... doubling up to this

    @classmethod
    def from_settings(cls, settings: Mapping[str, float]) -> "RestartPolicy":
        """From the supervisor's ``max_restarts`` and ``restart_period``."""
        return cls(settings["max_restarts"], settings["restart_period"])

    def next_delay(self, history: deque[float], now: float | None = None) -> float | None:
        """Record a restart in ``history`` and return how long to wait before
        it; None: the intensity is exceeded, do not restart (nothing is
        recorded)."""
        now = time.time() if now is None else now
        while history and now - history[0] > self.period:
            history.popleft()
        if len(history) >= self.max_restarts:
            return None
        history.append(now)
        if len(history) <= 1:
            return 0.0
        return min(self.max_delay, self.first_delay * 2 ** len(history))
