"""Pipelined commands: buffered per server, sent in batches, answered by events.

Rules:

* ``pipeline_command`` only buffers.  A server's buffer leaves when it
  holds ``batch`` commands or the oldest buffered command waited ``delay``
  seconds, at the latest on the client's next flush (``flush()``,
  ``events()``, any synchronous call, ``close()``): one message carries
  every buffered command for one server (Thespian charges per message).
* Commands with a correlation travel as one ``Pipeline`` of
  ``PipelinedCommand`` records; the leader answers them with ``Applied``
  events, a non-leader with ``Rejected``.  Commands without one are fire
  and forget: each goes as a ``CommandRequest`` with reply mode
  ``"noreply"``.
* A server whose address cannot be found, or a ``Pipeline`` the transport
  gives up on, turns into ``Rejected(server, NotLeader(None, correlation))``
  for every correlated command (the caller resends; the address is
  looked up again).  Nothing is resent here.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from .. import errors
from .. import events as ev
from ..actors.protocol import ClientCall, CommandRequest, Pipeline, PipelinedCommand
from ..core.types import ServerId
from .connection import Connection
from .resolution import Resolver

__all__ = ["Pipeliner"]

SEND_TIMEOUT = 10.0     # seconds Thespian may take to deliver a batch before giving up


class Pipeliner:
    """One client's pipeline buffers (see the module rules)."""

    def __init__(self, conn: Connection, resolver: Resolver, handle: str, batch: int, delay: float) -> None:
        self.conn = conn
        self.resolver = resolver
        self.handle = handle
        self.batch = batch
        self.delay = delay
        self._buffers: dict[ServerId, list[PipelinedCommand]] = {}
        self._since: float | None = None    # when the oldest buffered command was added

    def add(self, sid: ServerId, command: PipelinedCommand) -> None:
        """Buffer ``command`` for ``sid``; flush if a batch is full or due."""
        buf = self._buffers.setdefault(sid, [])
        buf.append(command)
        now = time.monotonic()
        if self._since is None:
            self._since = now
        if len(buf) >= self.batch or now - self._since >= self.delay:
            self.flush()

    def flush(self, timeout: float = 2.0) -> None:
        """Send every buffered command now (one message per server)."""
        if not self._buffers:
            return
        buffers, self._buffers = self._buffers, {}
        self._since = None
        deadline = time.monotonic() + timeout
        for sid, cmds in buffers.items():
            try:
                addr = self.resolver.resolve(sid, deadline)
            except errors.NoSuchServer:
                addr = None
            if addr is None:
                self._reject(sid, cmds)
                continue
            notify = tuple(c for c in cmds if c.correlation is not None)
            if notify:
                self.conn.send_untracked(addr, Pipeline(self.handle, notify, sid), SEND_TIMEOUT,
                                         self._undelivered(sid, notify))
            for c in cmds:
                if c.correlation is None:
                    call = ClientCall(self.conn.next_id(), self.handle, CommandRequest(c.data, "noreply"), sid)
                    self.conn.send_untracked(addr, call, SEND_TIMEOUT)
        self.conn.pump(0.0)

    def _reject(self, sid: ServerId, cmds: Any) -> None:
        for c in cmds:
            if c.correlation is not None:
                self.conn.events.append(ev.Rejected(sid, ev.NotLeader(None, c.correlation)))

    def _undelivered(self, sid: ServerId, cmds: tuple) -> Callable[[bool], None]:
        def undelivered(_refused: bool) -> None:
            self.conn.book.forget_server(sid)
            self._reject(sid, cmds)
        return undelivered
