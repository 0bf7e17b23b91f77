"""A client's transport: a Thespian TCP endpoint in the caller's process.

A client (:mod:`ra_actors.client`) reaches the nodes through one
:class:`ClientEndpoint` and through nothing else of Thespian.  The endpoint
is a bare ``TCPTransport``: no admin, no actor system, nothing started.

Rules:

* **The seam.**  ``send(address, message, timeout, on_undelivered)``,
  ``locate_supervisor((host, port), nonce, timeout, on_undelivered)``,
  ``receive(timeout)`` and ``close()``.  Addresses (of supervisors and
  servers) are opaque to the client: it is given them and sends to them;
  the only address it builds is an admin's ``(host, port)``.
* **Undelivered.**  When Thespian gives up on a send it calls
  ``on_undelivered(refused)`` (from inside ``receive``).  ``refused`` is
  true only when the target refused the connection (a dead address): the
  message certainly did not arrive.  Otherwise it may have.
* **What comes out of** ``receive``: the nodes' messages as they were sent,
  except that an admin's answer comes out as a
  :class:`~.protocol.SupervisorLocation` (the client never handles
  Thespian's own classes), a host's ``Bundle`` read from a stream comes out
  one message at a time, and stream offers and socket readiness are handled
  here.
* **The direct stream.**  A server's actor (a host in placement
  ``shared``, the server's own in ``process``) that gets a ``ClientCall``
  or ``Pipeline`` through Thespian offers its stream endpoint
  (``StreamOffer``); the endpoint dials it (in a thread) and from then on
  sends its calls and pipelines to that actor, and reads its replies and
  events, on that connection: two Thespian hops fewer per synchronous
  command.  Whenever there is no live connection (or a message msgpack
  cannot carry), Thespian carries them.
* **Transmit limits.**  With Thespian's default of 20 pending sends per
  process, a client pipelining to a silent node would make every other
  send wait behind those; the endpoint takes the nodes' limit
  (``node_main.MAX_PENDING_TRANSMITS``) unless the environment sets one.
* **Waking up.**  ``wake_on(fd)`` adds a file descriptor (the read end of
  a pipe) that ends a ``receive`` early when it becomes readable (its bytes
  are read and dropped): another thread that hands the endpoint's owner
  work writes a byte there (:mod:`ra_actors.aio`'s I/O thread).
* It binds the local address that routes to the nodes (127.0.0.1 for
  loopback nodes), never ``0.0.0.0`` (:mod:`.netpatch`).
* **The cluster secret.**  The endpoint's transport and stream carry the
  client's own :class:`~.authsock.Guard`: every connection to or from a node
  proves the secret first (:mod:`.handshake`).  :meth:`check_secret` runs
  the handshake alone against an admin, so that a wrong secret is told at
  once; ``denied_by`` lists the peers that refused the client's secret.
* Not thread-safe, like the client that owns it.
"""
from __future__ import annotations

import os
import socket
import time
from collections import deque
from datetime import timedelta
from typing import Any, Callable

from thespian.actors import WatchMessage
from thespian.system.transport import (ExternalInterfaceTransportInit, ReceiveEnvelope, SendStatus,
                                       Thespian__UpdateWork, TransmitIntent)
from thespian.system.transport import asyncTransportBase
from thespian.system.transport.IPBase import thisSystem
from thespian.system.transport.TCPTransport import TCPTransport

from . import identify, looppatch, netpatch
from .authsock import Guard, probe
from .admin import RaSupervisorInfo, RaWhereIsSupervisor
from .node_main import MAX_PENDING_TRANSMITS
from .protocol import Bundle, ClientCall, Pipeline, StreamOffer, SupervisorLocation
from .stream import StreamHub
from .util import admin_address

__all__ = ["ClientEndpoint", "local_ip_for", "raise_transmit_limits"]

OnUndelivered = Callable[[bool], None]

# What may travel on a host's stream: the two client messages a host
# accepts there (everything else goes through Thespian).
_STREAMED = (ClientCall, Pipeline)


def local_ip_for(host: str) -> str:
    """The local address this machine uses to reach ``host``."""
    if host in ("127.0.0.1", "localhost") or host.startswith("127."):
        return "127.0.0.1"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((host, 9))
        return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        s.close()


def raise_transmit_limits() -> None:
    """The nodes' Thespian pending-transmit limit for this process too,
    unless its environment sets one (Thespian reads the environment into a
    module global at import, which may already have happened: the global is
    what counts)."""
    if "THESPIAN_MAX_PENDING_TRANSMITS" not in os.environ:
        asyncTransportBase.MAX_PENDING_TRANSMITS = max(asyncTransportBase.MAX_PENDING_TRANSMITS,
                                                      MAX_PENDING_TRANSMITS)


def _tcp_transport(local_ip: str) -> TCPTransport:
    """A TCP transport bound to ``local_ip``.  Thespian takes the bind
    address from the environment only: it is set for the construction and
    restored after."""
    old = os.environ.get("THESPIAN_BASE_IPADDR")
    os.environ["THESPIAN_BASE_IPADDR"] = local_ip
    try:
        thisSystem.add_local_addr(local_ip)
        return TCPTransport(ExternalInterfaceTransportInit(), {"Convention Address.IPv4": (local_ip, 1)},
                            None, None)
    finally:
        if old is None:
            os.environ.pop("THESPIAN_BASE_IPADDR", None)
        else:
            os.environ["THESPIAN_BASE_IPADDR"] = old


class ClientEndpoint:
    """One client's Thespian endpoint (see the module rules)."""

    def __init__(self, peer_host: str, key: bytes) -> None:
        netpatch.apply()
        identify.apply()
        looppatch.apply()
        raise_transmit_limits()
        self.refused: dict[tuple, int] = {}        # (kind, peer) -> connections this client refused
        self.guard = Guard(key, refuse=self._count_refusal)
        self.local_ip: str = local_ip_for(peer_host)
        self.transport: TCPTransport = _tcp_transport(self.local_ip)
        self.transport._ra_guard = self.guard      # (read by netpatch's socket hooks)
        self.address: Any = self.transport.myAddress
        self.stream: StreamHub | None = None      # dialled on a host's first StreamOffer
        self._stream_in: deque = deque()          # messages read from the stream, not yet handed out
        self._wake: list[int] = []                # fds that end a receive early (see wake_on)

    def _count_refusal(self, kind: str, peer: str, why: str) -> None:
        self.refused[(kind, peer)] = self.refused.get((kind, peer), 0) + 1

    @property
    def denied_by(self) -> dict[str, int]:
        """``{peer address: times it refused this client's secret}``."""
        return self.guard.denied_by

    def check_secret(self, admin: tuple, timeout: float) -> str:
        """Run the handshake alone with the admin at ``admin``: ``"ok"``,
        ``"denied"``, ``"bad"`` or ``"unreachable"`` (:func:`.authsock.probe`)."""
        source = None if self.local_ip == "127.0.0.1" else self.local_ip
        return probe(tuple(admin), self.guard.key, timeout, source=source)

    # ------------------------------------------------------------------ out
    def send(self, addr: Any, msg: Any, timeout: float, on_undelivered: OnUndelivered | None = None) -> None:
        """Send ``msg`` to ``addr``: on the host's stream when there is one
        (calls and pipelines only), else through Thespian, which may take up
        to ``timeout`` seconds (at least 0.5) before it gives up."""
        if self.stream is not None and type(msg) in _STREAMED and self.stream.send(addr, msg):
            return
        on_error = None
        if on_undelivered is not None:
            def on_error(result, _intent, _report=on_undelivered):
                _report(result == SendStatus.DeadTarget)
        intent = TransmitIntent(addr, msg, onError=on_error, maxPeriod=timedelta(seconds=max(0.5, timeout)))
        self.transport.scheduleTransmit(None, intent)

    def locate_supervisor(self, admin: tuple, nonce: Any, timeout: float,
                          on_undelivered: OnUndelivered | None = None) -> None:
        """Ask the node admin at ``admin`` (``(host, port)``) where its
        supervisor is; the answer comes out of :meth:`receive` as a
        ``SupervisorLocation`` carrying ``nonce``."""
        self.send(admin_address(*admin), RaWhereIsSupervisor(nonce), timeout, on_undelivered)

    # ------------------------------------------------------------------- in
    def receive(self, timeout: float) -> Any:
        """The next incoming message, or None once ``timeout`` seconds passed."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            if self.stream is not None:
                if self._stream_in:
                    return self._stream_in.popleft()
                self.transport.set_watch(self.stream.fds() + self._wake)
            elif self._wake:
                self.transport.set_watch(list(self._wake))
            remaining = max(0.0, deadline - time.monotonic())
            r = self.transport.run(None, timedelta(seconds=remaining))
            if isinstance(r, ReceiveEnvelope):
                msg = r.message
                if isinstance(msg, WatchMessage):
                    if self._woken(msg.ready):
                        return None
                    self._read_stream(msg.ready)
                    continue
                if isinstance(msg, StreamOffer):
                    self._dial(r.sender, msg.endpoint)
                    continue
                if isinstance(msg, RaSupervisorInfo):
                    return SupervisorLocation(msg.node, msg.address, msg.incarnation, msg.admin, msg.nonce)
                return msg
            if isinstance(r, Thespian__UpdateWork):
                continue
            if time.monotonic() >= deadline:
                return None

    def wake_on(self, fd: int) -> None:
        """A readable ``fd`` ends :meth:`receive` early (see the module rules)."""
        self._wake.append(fd)

    def _woken(self, ready) -> bool:
        woken = False
        for fd in self._wake:
            if fd in ready:
                woken = True
                try:
                    while os.read(fd, 4096):
                        pass
                except (BlockingIOError, OSError):
                    pass
        if woken and self.stream is not None:
            self._read_stream([fd for fd in ready if fd not in self._wake])
        return woken

    def _read_stream(self, ready) -> None:
        if self.stream is not None:
            for _peer, m in self.stream.on_ready(ready):
                self._stream_in.extend(m.msgs if isinstance(m, Bundle) else (m,))

    def _dial(self, addr: Any, endpoint: tuple) -> None:
        if self.stream is None:
            self.stream = StreamHub(self.local_ip, self.address, listen=False, guard=self.guard)
        self.stream.dial(addr, endpoint)

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        try:
            self.transport.close()
        except Exception:  # noqa: BLE001 - closing: nothing to do about it
            pass
