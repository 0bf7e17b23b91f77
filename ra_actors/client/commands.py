"""Synchronous commands (``process_command``): one numbered command, sent
until the cluster answers it or the call's timeout ends.

Rules:

* The command takes the next number of its stream (:mod:`.sessions`), or
  the number an earlier client of the session gave it (``seq``), and
  :meth:`~.resolution.Resolver.session_call` sends it until answered.  The
  first attempt carries ``known`` as the stream's rules say; every later
  attempt may repeat it and says so.
* ``low`` is read again for every attempt (pipelined commands of the same
  stream may be answered meanwhile).
* An own command of a stream that waits for an earlier client's commands
  (``Stream.blocked``) first waits for them, within the call's timeout.
* Whatever the outcome -- a reply, an error, ``Timeout`` -- the number is
  no longer outstanding when the call returns: a command given up on is
  applied before the stream's next command arrives, or never.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from .. import errors
from ..actors.protocol import CommandRequest
from ..core.types import ServerId
from .connection import Connection
from .resolution import Resolver
from .sessions import Session

__all__ = ["Commands"]


class Commands:
    """``process_command`` for one client (see the module rules)."""

    def __init__(self, conn: Connection, resolver: Resolver, session: Session,
                 idle: Callable[[], None]) -> None:
        self.conn = conn
        self.resolver = resolver
        self.session = session
        self.idle = idle            # the pipeliner's flush: its resends go on while we wait

    def call(self, sid: ServerId, data: Any, timeout: float, seq: int | None = None,
             reply_from: Any = None) -> tuple[Any, ServerId | None]:
        deadline = time.monotonic() + timeout
        stream = self.session.stream(sid, time.time_ns() // 1000)
        if seq is None:
            while stream.blocked():
                if time.monotonic() >= deadline:
                    raise errors.Timeout(f"the commands an earlier client of session {self.session.name!r} "
                                         f"sent to {sid} were not answered within {timeout}s")
                self.idle()
                self.conn.pump(min(0.05, max(0.0, deadline - time.monotonic())))
            seq = stream.issue()
        else:
            seq = stream.claim(seq)
        key = stream.key

        def request_for(attempt: int) -> CommandRequest:
            return CommandRequest(data, "await_consensus", "normal", key, seq, stream.low(),
                                  stream.known(seq, attempt > 0), reply_from)

        try:
            value, leader = self.resolver.session_call(sid, request_for, max(0.0, deadline - time.monotonic()),
                                                       self.idle)
        finally:
            stream.settle(seq)
        stream.seen_applied = True
        return value, leader
