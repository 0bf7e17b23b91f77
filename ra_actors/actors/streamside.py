"""An actor's side of the direct stream: when to use it, when Thespian.

The actors on a node's hot path use the direct stream of :mod:`.stream`
the same way: a host actor (placement ``shared``, for all its servers), a
server actor (placement ``process``, for its one server) and a WAL actor
(placement ``process``, for the node's servers writing to it).
:class:`StreamSide` is that common part.

Rules:

* **What may go on a stream** (``streamed``): Raft's RPCs between servers,
  forwarded commands, and what a server sends its clients (replies and
  events) -- ``STREAMED``; a server actor's writes to its WAL actor and
  the WAL's results (``WAL_STREAMED``, ``WAL_RESULTS``).  Anything else
  goes through Thespian.
* **What is taken from a stream** (``accepted``): what peers and clients
  send there (RPCs, forwarded commands, calls, pipelined commands:
  ``FROM_STREAM``), and what a WAL and its servers send each other, alone
  or in a ``Bundle``.  Anything else, or a message the actor cannot handle
  (its handler raises), is a protocol error that closes that one
  connection; the actor carries on.
* A WAL actor's stream takes connections from its own host only
  (``allowed``): only the node's servers write to it.
* **Fallback and set-up.**  A message for an address with no live stream
  goes through Thespian, with a ``StreamOffer`` of our endpoint at most
  every ``OFFER_EVERY`` seconds per address; the receiver dials the
  endpoint (:meth:`StreamHub.dial`, in a thread).  A client that calls
  through Thespian is offered the stream the same way.
* No stream at all (``RA_ACTORS_STREAM=0`` in the node's environment, or a
  listener that cannot be opened): everything goes through Thespian.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Iterable

from .. import events as ev
from . import netpatch
from .protocol import Bundle, ClientCall, ClientReply, Forwarded, Pipeline, Rpcs, StreamOffer, WalResult, WalWrite
from .stream import StreamHub, addr_key

OFFER_EVERY = 1.0      # seconds between stream offers to an address we have no stream with

# RA_ACTORS_STREAM=0 in a node's environment turns the direct stream off
# (everything goes through Thespian): for A/B measurements.
STREAM_ENABLED = os.environ.get("RA_ACTORS_STREAM", "1") != "0"

# The stream's writer threads wait for the GIL while the actor's thread
# works; CPython hands it over only every switch interval (5 ms by
# default).  A process whose actor opens a stream uses this shorter one.
SWITCH_INTERVAL = 0.0005  # seconds

STREAMED = frozenset({Rpcs, Forwarded, ClientReply, ev.Applied, ev.Rejected, ev.Message, ev.RaEvent})
FROM_STREAM = frozenset({Rpcs, Forwarded, ClientCall, Pipeline})
WAL_STREAMED = frozenset({WalWrite})     # server -> its WAL actor
WAL_RESULTS = frozenset({WalResult})     # WAL actor -> the server


class StreamSide:
    """One actor's stream (see the module rules).  ``thespian_send(addr,
    msg)`` is the actor's own send; ``log(text)`` its log.  Used from the
    actor's thread only."""

    def __init__(self, my_addr: Any, thespian_send: Callable[[Any, Any], None],
                 log: Callable[[str], None], *, accepted: frozenset = FROM_STREAM,
                 local_only: bool = False) -> None:
        self._thespian_send = thespian_send
        self._log = log
        self.accepted = accepted
        self.offered: dict = {}                 # address key -> when we last offered
        self.hub = None
        if not STREAM_ENABLED:
            return
        bind_ip = os.environ.get("THESPIAN_BASE_IPADDR") or "127.0.0.1"
        allowed = frozenset({bind_ip, netpatch.LOOPBACK}) if local_only else netpatch.allowed_hosts()
        try:
            self.hub = StreamHub(bind_ip, my_addr, allowed, guard=netpatch.guard(), log=log)
        except (OSError, ValueError) as exc:    # no stream: everything goes through Thespian
            log(f"replication stream unavailable: {exc!r}")
            return
        sys.setswitchinterval(SWITCH_INTERVAL)

    # ------------------------------------------------------------ outbound
    def send(self, addr: Any, msg: Any) -> None:
        """``msg`` to ``addr``: on its stream if there is one, else through
        Thespian (offering our stream)."""
        hub = self.hub
        if hub is not None:
            if hub.send(addr, msg):
                return
            self.offer(addr)
        self._thespian_send(addr, msg)

    def offer(self, addr: Any) -> None:
        """Ask the actor (or client) at ``addr`` to open a stream to us
        (rate-limited)."""
        key = addr_key(addr)
        now = time.monotonic()
        if now - self.offered.get(key, 0.0) >= OFFER_EVERY:
            self.offered[key] = now
            self._thespian_send(addr, StreamOffer(self.hub.endpoint))

    def offer_client(self, sender: Any) -> None:
        """A client (or a WAL's writer) sent through Thespian: offer it our
        stream."""
        if self.hub is not None and not self.hub.has_link(sender):
            self.offer(sender)

    # ------------------------------------------------------------- inbound
    def on_offer(self, msg: StreamOffer, sender: Any) -> None:
        if self.hub is not None and not self.hub.has_link(sender):
            self.hub.dial(sender, msg.endpoint)

    def on_dead(self, addr: Any) -> None:
        if self.hub is not None:
            self.hub.forget(addr)

    def fds(self) -> list:
        return self.hub.fds() if self.hub is not None else []

    def on_ready(self, ready: Iterable[int], dispatch: Callable[[Any, Any], None]) -> None:
        """Read what the stream has for us and hand each message to
        ``dispatch(msg, peer)``."""
        if self.hub is None:
            return
        for peer, msg in self.hub.on_ready(ready):
            self._take(msg, peer, dispatch)

    def _take(self, msg: Any, peer: Any, dispatch: Callable[[Any, Any], None]) -> None:
        items = msg.msgs if type(msg) is Bundle else (msg,)
        accepted = self.accepted
        if not all(type(item) in accepted for item in items):
            kinds = sorted({type(item).__name__ for item in items if type(item) not in accepted})
            self.hub.refuse(peer, f"{', '.join(kinds)} is not sent on a stream")
            return
        for item in items:
            try:
                dispatch(item, peer)
            except Exception as exc:  # noqa: BLE001 - the peer's message, not the actor, is at fault
                self._log(f"a {type(item).__name__} from the stream could not be routed: {exc!r:.200}")
                self.hub.refuse(peer, f"{type(item).__name__}: {exc!r:.200}")
                return

    def expire(self) -> None:
        if self.hub is not None:
            self.hub.expire()

    def stats(self) -> dict | None:
        return self.hub.stats() if self.hub is not None else None

    def close(self) -> None:
        if self.hub is not None:
            self.hub.close()
