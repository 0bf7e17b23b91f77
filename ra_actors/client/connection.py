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
* Only answers someone waits for are kept: a key is awaited from its send
  until its ``wait`` returns (``keep=True``: until :meth:`Connection.release`).
  An answer that comes later (a call that timed out, a repeat) is dropped
  on arrival, so the inbox never grows with answers nobody takes.
* Events (``Applied``, ``Rejected``, ``Message``, ``RaEvent``) pass the ``event_filter``
  (the pipeliner's: it takes the events of its own commands and hands on
  what the user should see) and queue in ``events`` until the client hands
  them out.
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

    def __init__(self, peer_host: str, book: AddressBook, key: bytes | None = None, endpoint: Any = None) -> None:
        if endpoint is None:
            if key is None:
                raise ValueError("a client's endpoint needs the cluster secret")
            from ..actors.endpoint import ClientEndpoint
            endpoint = ClientEndpoint(peer_host, key)
        self.endpoint = endpoint
        self.book = book
        self.replies: dict = {}            # key -> the answer nobody has taken yet
        self.failed: dict = {}             # key -> refused, for sends the transport gave up on
        self.awaited: set = set()          # keys someone waits for (see the rules)
        self.events: deque = deque()
        self.event_filter: Callable[[Any], Any] | None = None
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids)

    # ------------------------------------------------------------------ out
    def send(self, addr: Any, msg: Any, key: Any, timeout: float) -> None:
        """Send ``msg``, whose answer (or failure) is filed under ``key``."""
        self.awaited.add(key)

        def undelivered(refused: bool, key=key) -> None:
            if key in self.awaited:
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
        under ``("where", nonce)`` (take it with :meth:`take`, then
        :meth:`release` the nonces no longer awaited)."""
        self.awaited.add(("where", nonce))
        self.endpoint.locate_supervisor(admin, nonce, timeout)

    # ------------------------------------------------------------------- in
    def dispatch(self, msg: Any) -> None:
        if isinstance(msg, (ClientReply, SupResponse)):
            self._file(msg.req_id, msg)
        elif isinstance(msg, LookupReply):
            self._file(("lookup", msg.req), msg)
        elif isinstance(msg, SupervisorLocation):
            self._file(("where", msg.nonce), msg)
        elif isinstance(msg, ev.Applied):
            if not isinstance(msg.results, list):   # (msgpack on a stream gives tuples)
                msg = ev.Applied(msg.leader, list(msg.results))
            self._event(msg)
        elif isinstance(msg, (ev.Rejected, ev.Message, ev.RaEvent)):
            self._event(msg)
        elif isinstance(msg, Misdelivered):
            self.book.forget_server(server_id(msg.to))
        elif isinstance(msg, Bundle):      # a host's replies and events, sent together
            for inner in msg.msgs:
                self.dispatch(inner)

    def _file(self, key: Any, msg: Any) -> None:
        try:
            if key in self.awaited:
                self.replies[key] = msg
        except TypeError:     # an unhashable key: nobody's
            pass

    def _event(self, msg: Any) -> None:
        if self.event_filter is not None:
            msg = self.event_filter(msg)
            if msg is None:
                return
        self.events.append(msg)

    def take(self, key: Any) -> Any:
        """The answer filed under ``key`` if there is one (None otherwise);
        ``key`` stays awaited."""
        return self.replies.pop(key, None)

    def release(self, *keys: Any) -> None:
        """Nobody waits for ``keys`` any more: drop what came, and what comes."""
        for key in keys:
            self.awaited.discard(key)
            self.replies.pop(key, None)
            self.failed.pop(key, None)

    def pump(self, timeout: float = 0.0) -> None:
        """Take in what arrives within ``timeout``, and then what is there."""
        msg = self.endpoint.receive(timeout)
        while msg is not None:
            self.dispatch(msg)
            msg = self.endpoint.receive(0.0)

    def wait(self, key: Any, deadline: float, keep: bool = False) -> Any:
        """The answer filed under ``key``; :class:`Undelivered` if the
        request could not be delivered; None at ``deadline``.  Then ``key``
        is no longer awaited, unless ``keep`` (more answers may come under
        it: the caller releases it)."""
        try:
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
        finally:
            if not keep:
                self.awaited.discard(key)

    def wake_on(self, fd: int) -> None:
        """A readable ``fd`` ends a ``pump`` early (the endpoint's ``wake_on``)."""
        self.endpoint.wake_on(fd)

    def close(self) -> None:
        self.endpoint.close()
