"""Periodic sends with at most one in flight per target (heartbeats, probes).

Rules:

* A periodic message (heartbeat, probe) to a target is skipped while the
  previous one to that target has not completed and was sent less than
  ``patience`` seconds ago.  A skipped message loses nothing: it would only
  have waited behind the one in flight.
* This is the only module of the supervisor below ``Actor.send``: completion
  callbacks need Thespian's actor manager (``_send_intent`` with a
  ``TransmitIntent``), and ``actor_send_fail`` stays the error callback so
  dead letters work as for ``Actor.send``.  On a Thespian without those
  internals every periodic message is sent plainly.

Why: Thespian sends to one target at a time, and a transmit to a silent
node (SIGSTOPped, partitioned) completes only when it times out
(``THESPIAN_TRANSMIT_TIMEOUT_PERIOD``, 20 s): heartbeats every 0.4 s and
probes every second would pile up behind it, about 50 intents per silent
node, each costing memory and work in every pass of the process's select
loop (and, with Thespian's default of 20 pending transmits, blocking every
other send: see ``node_main``).  A transmit to a live node completes in
about a millisecond and one to a dead port (connection refused) at once, so
failure detection and NodeUp keep their timing.

``patience`` bounds the wait because Thespian can also leave a transmit to a
*live* node pending until its timeout: when the connection breaks under it,
it retries only after 35 s, while new transmits to that target go out on a
fresh connection.  See docs/internals.rst, "Silent peers and Thespian's
transmit limits".
"""
from __future__ import annotations

import time
from typing import Any

from thespian.system.transport import TransmitIntent

from .node_context import ActorOps


class PeriodicSender:
    """One periodic message in flight per target, for one actor."""

    def __init__(self, actor: ActorOps) -> None:
        self.actor = actor
        self.in_flight: dict[str, float] = {}   # str(target) -> when its periodic send left
        self.skips = 0                          # sends skipped: the previous one was in flight

    def send_once(self, addr: Any, msg: Any, patience: float) -> bool:
        """Send ``msg`` to ``addr`` unless the previous periodic message to
        that target is still in flight and left less than ``patience``
        seconds ago; return whether it sent."""
        key = str(addr)
        now = time.time()
        since = self.in_flight.get(key)
        if since is not None and now - since < patience:
            self.skips += 1
            return False
        manager = getattr(self.actor, "_myRef", None)
        send_intent = getattr(manager, "_send_intent", None)
        send_fail = getattr(manager, "actor_send_fail", None)
        if send_intent is None or send_fail is None:  # another Thespian: no callbacks
            self.actor.send(addr, msg)
            return True
        self.in_flight[key] = now

        def done(result: Any, intent: Any) -> None:
            # a late completion of an older send must not clear a newer one
            if self.in_flight.get(key) == now:
                del self.in_flight[key]

        def failed(result: Any, intent: Any) -> None:
            done(result, intent)
            send_fail(result, intent)

        send_intent(TransmitIntent(addr, msg, onSuccess=done, onError=failed))
        return True
