"""A client's connection: its endpoint, its request ids, and what arrived.

Rules:

* One :class:`~ra_actors.actors.endpoint.ClientEndpoint` per client, the
  client's only contact with Thespian.  It is imported when a client
  connects, so that importing the client API imports no Thespian.
* Whatever the client waits for is sent under a key of its own (a request
  id, ``("lookup", id)``, ``("where", nonce)``); :meth:`Connection.dispatch`
  files each answer under its key and :meth:`Connection.wait` takes it.  A
  send the endpoint reports undelivered is filed under its key too, and
  ``wait`` answers :class:`Undelivered` for it.
* Events (``Applied``, ``Rejected``, ``Message``) queue in ``events`` until
  the client hands them out.
* A ``Misdelivered`` drops the cached address of the server it names (its
  port now belongs to another actor).
* Nothing here retries, redirects or raises: :mod:`.resolution` and
  :mod:`.discovery` decide what an answer (or its absence) means.
"""
from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from .. import events as ev
from ..actors.protocol import (Bundle, ClientReply, LookupReply, Misdelivered, SupervisorLocation,
                               SupResponse)
from .addresses import AddressBook
from .ids import server_id

__all__ = ["Connection", "Undelivered"]


@dataclass(frozen=True, slots=True)
class Undelivered:
    """:meth:`Connection.wait`'s answer when the transport gave up on the
    request: ``refused`` if the target refused it (it certainly did not
    arrive), otherwise it may have arrived."""

    refused: bool


class Connection:
    """The client's endpoint and inbox (see the module rules)."""

    def __init__(self, peer_host: str, book: AddressBook, key: bytes) -> None:
        from ..actors.endpoint import ClientEndpoint
        self.endpoint = ClientEndpoint(peer_host, key)
        self.book = book
        self.replies: dict = {}            # key -> the answer nobody has taken yet
        self.failed: dict = {}             # key -> refused, for sends the transport gave up on
        self.events: deque = deque()
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids)

    # ------------------------------------------------------------------ out
    def send(self, addr: Any, msg: Any, key: Any, timeout: float) -> None:
        """Send ``msg``, whose answer (or failure) is filed under ``key``."""
        def undelivered(refused: bool, key=key) -> None:
            self.failed[key] = refused
        self.endpoint.send(addr, msg, timeout, undelivered)

    def send_untracked(self, addr: Any, msg: Any, timeout: float,
                       on_undelivered: Callable[[bool], None] | None = None) -> None:
        """Send ``msg`` that no one waits for (pipelined commands)."""
        self.endpoint.send(addr, msg, timeout, on_undelivered)

    def check_secret(self, admin: tuple, timeout: float) -> str:
        """The handshake alone with the admin at ``admin``: ``"ok"``,
        ``"denied"``, ``"bad"`` or ``"unreachable"``."""
        return self.endpoint.check_secret(admin, timeout)

    def denied_by(self) -> dict:
        """``{peer address: times}`` a peer refused the client's secret."""
        return dict(self.endpoint.denied_by)

    def locate_supervisor(self, admin: tuple, nonce: Any, timeout: float) -> None:
        """Ask the admin at ``admin`` for its supervisor: the answer is filed
        under ``("where", nonce)``."""
        self.endpoint.locate_supervisor(admin, nonce, timeout)

    # ------------------------------------------------------------------- in
    def dispatch(self, msg: Any) -> None:
        if isinstance(msg, (ClientReply, SupResponse)):
            self.replies[msg.req_id] = msg
        elif isinstance(msg, LookupReply):
            self.replies[("lookup", msg.req)] = msg
        elif isinstance(msg, SupervisorLocation):
            self.replies[("where", msg.nonce)] = msg
        elif isinstance(msg, ev.Applied):
            if not isinstance(msg.results, list):   # (msgpack on a stream gives tuples)
                msg = ev.Applied(msg.leader, list(msg.results))
            self.events.append(msg)
        elif isinstance(msg, (ev.Rejected, ev.Message)):
            self.events.append(msg)
        elif isinstance(msg, Misdelivered):
            self.book.forget_server(server_id(msg.to))
        elif isinstance(msg, Bundle):      # a host's replies and events, sent together
            for inner in msg.msgs:
                self.dispatch(inner)

    def pump(self, timeout: float = 0.0) -> None:
        """Take in what arrives within ``timeout``, and then what is there."""
        msg = self.endpoint.receive(timeout)
        while msg is not None:
            self.dispatch(msg)
            msg = self.endpoint.receive(0.0)

    def wait(self, key: Any, deadline: float) -> Any:
        """The answer filed under ``key``; :class:`Undelivered` if the
        request could not be delivered; None at ``deadline``."""
        while True:
            if key in self.replies:
                return self.replies.pop(key)
            if key in self.failed:
                return Undelivered(self.failed.pop(key))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            msg = self.endpoint.receive(min(remaining, 0.5))
            if msg is not None:
                self.dispatch(msg)

    def close(self) -> None:
        self.endpoint.close()
