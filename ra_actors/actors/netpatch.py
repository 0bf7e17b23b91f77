"""Safety patches for Thespian 4.0.1's TCP transport.

Thespian binds every actor and admin socket to INADDR_ANY and unpickles
whatever arrives on it.  :func:`apply` changes that, in the current process
and (through fork) every process it starts:

* sockets bind to the address they advertise (``127.0.0.1`` unless the
  operator configured another address through ``THESPIAN_BASE_IPADDR``),
  never to ``0.0.0.0``;
* **the cluster secret**: every connection Thespian accepts or opens runs
  the challenge-response of :mod:`.handshake` before Thespian reads a byte
  of it (:mod:`.authsock`): accepted sockets are handed to Thespian as
  ``AcceptedSocket``, dialled ones as ``DialledSocket``, and while a
  dialled socket waits for the acceptor's greeting Thespian waits for it
  to become readable (not writable).  An accepted connection that has not
  proved the secret within ``authsock.HANDSHAKE_S`` is closed, and at most
  ``authsock.MAX_PENDING`` may be in their handshake at once.  A process
  without a secret refuses every connection and cannot open one;
* when ``allowed_hosts`` is given, incoming connections from any other
  host are closed before a byte is read or written (loopback and the bind
  address are always allowed).

Refusals go to the process's :class:`~.authsock.Guard` (on a node: counted
in the node-wide :class:`~.refusals.Refusals`, logged once per address).
A transport may carry a guard of its own (``transport._ra_guard``, set by a
client's endpoint); otherwise the process's guard applies.  Idempotent; the
last ``allowed_hosts`` and ``guard`` win.
"""
from __future__ import annotations

import os
import socket
import time
from datetime import timedelta

from .authsock import MAX_PENDING, AcceptedSocket, DialledSocket, Guard, RefusedSocket, pending_count

_state: dict = {"applied": False, "allowed": None, "guard": None, "refusals": None}

LOOPBACK = "127.0.0.1"


def _resolve(host: str) -> set[str]:
    try:
        return {info[4][0] for info in socket.getaddrinfo(host, None, socket.AF_INET)}
    except OSError:
        return {host}


def apply(allowed_hosts=None, *, guard: Guard | None = None, refusals=None) -> None:
    """Patch Thespian's address, accept and connect paths (see module doc)."""
    if allowed_hosts is not None:
        allowed = {LOOPBACK}
        for h in allowed_hosts:
            allowed |= _resolve(h)
        base = os.environ.get("THESPIAN_BASE_IPADDR")
        if base:
            allowed |= _resolve(base)
        _state["allowed"] = frozenset(allowed)
    if guard is not None:
        _state["guard"] = guard
    if refusals is not None:
        _state["refusals"] = refusals
    if _state["applied"]:
        return
    _state["applied"] = True
    _patch_addresses()
    _patch_sockets()


def _patch_addresses() -> None:
    from thespian.system.transport import IPBase

    orig_init = IPBase.IPActorAddress.__init__

    def _init(self, *args, **kw):
        orig_init(self, *args, **kw)
        bind = getattr(self, "bindname", None)
        if bind and bind[0] in ("", "0.0.0.0", None):
            host = self.sockname[0] if self.sockname and self.sockname[0] not in ("", "0.0.0.0") else LOOPBACK
            self.bindname = (host,) + tuple(bind[1:])

    IPBase.IPActorAddress.__init__ = _init


def _guard_of(transport) -> Guard | None:
    return getattr(transport, "_ra_guard", None) or _state["guard"]




def _patch_sockets() -> None:
    from thespian.system.transport import TCPTransport as _T

    transport_cls = _T.TCPTransport
    orig_new_socket = transport_cls.new_socket

    def new_socket(self, op, *args, **kw):
        guard = _guard_of(self)
        if op is socket.socket:
            # a connection Thespian opens: a socket that proves the secret first
            sock = orig_new_socket(self, DialledSocket, *args, **kw)
            return sock.arm(guard) if guard is not None else sock.arm(None)
        result = orig_new_socket(self, op, *args, **kw)
        if getattr(op, "__name__", "") != "accept":
            return result
        # A refused connection is handed to Thespian as one that reads as
        # closed: raising here would kill Thespian's admin, and a plain
        # socket, even shut down, would still hand out what the peer sent
        # before it was accepted.
        sock, peer = result
        ip = str(peer[0]) if peer else "an unknown address"
        allowed = _state["allowed"]
        if allowed is not None and ip not in allowed:
            if guard is not None:
                guard.refuse("host", ip, "not an allowed host")
            return RefusedSocket.adopt(sock), peer
        if guard is None:
            return RefusedSocket.adopt(sock), peer      # no secret, no connections
        if pending_count() >= MAX_PENDING:
            guard.refuse("busy", ip, f"{MAX_PENDING} connections were already in their handshake")
            return RefusedSocket.adopt(sock), peer
        adopted = AcceptedSocket.adopt(sock, guard, ip)
        self._ra_adopted = adopted
        return adopted, peer

    transport_cls.new_socket = new_socket

    class _PendingIncoming(_T.TCPIncomingPersistent):
        """Thespian's record of an accepted connection whose handshake is
        not done: its delay ends at the handshake's deadline, so that
        Thespian's loop wakes up and reads it (and the socket, past its
        deadline, reads as closed)."""

        def delay(self, current_time=None):
            d = super().delay(current_time)
            deadline = getattr(self._openSock, "handshake_deadline", None)
            due = deadline() if deadline is not None else None
            if due is None:
                return d
            return min(d, timedelta(seconds=max(0.0, due - time.monotonic())))

    orig_accept = transport_cls._acceptNewIncoming

    def _acceptNewIncoming(self):
        orig_accept(self)
        adopted = self.__dict__.pop("_ra_adopted", None)
        if adopted is not None:
            try:
                incoming = self._incomingSockets.get(adopted.fileno())
            except OSError:
                incoming = None
            if type(incoming) is _T.TCPIncomingPersistent:
                incoming.__class__ = _PendingIncoming

    transport_cls._acceptNewIncoming = _acceptNewIncoming

    wait_for_ack = transport_cls._XMITStepWaitForAck

    def _waitForSendable(intent):
        if intent.stage == wait_for_ack:
            return False
        sock = getattr(intent, "socket", None)
        return not (type(sock) is DialledSocket and sock.awaiting_greeting())

    transport_cls._waitForSendable = staticmethod(_waitForSendable)


def allowed_hosts():
    return _state["allowed"]


def guard() -> Guard | None:
    """This process's guard (None before a node or client set one)."""
    return _state["guard"]


def refusals():
    """The node's refusal record (None outside a node)."""
    return _state["refusals"]
