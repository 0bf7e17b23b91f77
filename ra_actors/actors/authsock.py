"""Sockets that run the cluster-secret handshake inside Thespian's own calls.

Thespian's TCP transport drives every socket from its select loop with
plain non-blocking ``send`` and ``recv`` calls.  :mod:`.netpatch` hands it
these socket classes instead of plain sockets; they run the handshake
(:mod:`.handshake`) inside those very calls and then become
:class:`Authenticated`, a plain socket, by a change of class: from then on
every call is the C socket's own, so the handshake costs a round trip when
a connection is set up and nothing per message.

Rules:

* **Accepted** (:class:`AcceptedSocket`).  Greets at once.  ``recv`` reads
  exactly the proof's bytes, checks them, and only then reads what its
  caller asked for: Thespian sees none of the peer's bytes before the proof
  holds.  A wrong or missing proof is answered ``DENIED`` and refused
  (:class:`Guard`: counted, logged once per address), and the socket then
  reads as closed by the peer, which is how Thespian lets a connection go
  without logging anything.  So does a connection that has not proved the
  secret within ``HANDSHAKE_S``.  The answer travels in front of the first
  bytes the socket sends (Thespian's ACK) or at once, as the dialler asked.
* **Dialled** (:class:`DialledSocket`).  ``send`` first reads the
  acceptor's greeting (``EAGAIN`` until it is there: netpatch makes
  Thespian wait for the socket to be *readable* meanwhile), then sends the
  proof in front of the caller's bytes.  ``recv`` reads exactly the
  answer's bytes first: ``DENIED`` raises ``ConnectionRefusedError`` (and
  is remembered, so a client can say why it got no answer); a wrong answer
  is refused like a wrong proof.
* **Blocking helpers** for connections that are ours alone (the replication
  stream's dialler, pre-flight checks): :func:`dial_handshake` and
  :func:`probe`.
* Every handshake draws fresh nonces from ``os.urandom``.
"""
from __future__ import annotations

import errno
import os
import socket
import time
import weakref
from typing import Callable

from . import handshake as hs

__all__ = ["HANDSHAKE_S", "MAX_PENDING", "Guard", "Authenticated", "AcceptedSocket", "DialledSocket", "RefusedSocket",
           "dial_handshake", "probe", "pending_count"]

HANDSHAKE_S = 10.0     # an accepted connection must prove the secret within this
MAX_PENDING = 256      # accepted connections of one process still in their handshake

_send = socket.socket.send
_recv = socket.socket.recv


class Guard:
    """What a process's sockets need to know: the secret, where refusals are
    counted, and which peers refused us."""

    def __init__(self, key: bytes, refuse: Callable[[str, str, str], None] | None = None) -> None:
        if not isinstance(key, bytes) or not key:
            raise ValueError("the cluster secret must be non-empty bytes")
        self.key = key
        self._refuse = refuse
        self.denied_by: dict[str, int] = {}    # peer address -> times it refused our secret

    def refuse(self, kind: str, peer: str, why: str) -> None:
        if self._refuse is not None:
            self._refuse(kind, peer, why)

    def denied(self, peer: str) -> None:
        self.denied_by[peer] = self.denied_by.get(peer, 0) + 1


def _peer_of(sock: socket.socket) -> str:
    try:
        return str(sock.getpeername()[0])
    except (OSError, IndexError):
        return "an unknown address"


def _eagain() -> BlockingIOError:
    return BlockingIOError(errno.EAGAIN, "cluster-secret handshake in progress")


class Authenticated(socket.socket):
    """A socket whose peer proved the secret: every call is the plain one."""


class RefusedSocket(socket.socket):
    """An accepted connection refused before its first byte: it reads as
    closed (even what the peer sent before it was accepted, which the
    kernel would still hand out after a shutdown) and cannot send."""

    @classmethod
    def adopt(cls, sock: socket.socket) -> "RefusedSocket":
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return cls(sock.family, sock.type, sock.proto, fileno=sock.detach())

    def recv(self, n: int, flags: int = 0) -> bytes:
        return b""

    def send(self, data, flags: int = 0) -> int:
        raise BrokenPipeError(errno.EPIPE, "refused connection")

    def sendall(self, data, flags: int = 0) -> None:
        raise BrokenPipeError(errno.EPIPE, "refused connection")


_pending: "weakref.WeakSet[AcceptedSocket]" = weakref.WeakSet()


def pending_count() -> int:
    """Accepted sockets of this process still in their handshake."""
    return len(_pending)


class AcceptedSocket(socket.socket):
    """An accepted connection, until its peer has proved the secret."""

    @classmethod
    def adopt(cls, sock: socket.socket, guard: Guard, peer: str) -> "AcceptedSocket":
        """Take over ``sock`` (just accepted) and greet its peer."""
        me = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        me._guard = guard
        me._peer = peer
        me._nonce = os.urandom(hs.NONCE_BYTES)
        me._buf = b""
        me._out = b""            # our answer, sent in front of our first bytes
        me._proven = False
        me._closed_quietly = False
        me._deadline = time.monotonic() + HANDSHAKE_S
        _pending.add(me)
        try:
            greeted = _send(me, hs.hello(me._nonce), socket.MSG_DONTWAIT) == hs.HELLO_LEN
        except OSError:
            greeted = False          # (the peer is gone already: nothing to refuse)
        if not greeted:
            me._closed_quietly = True
            _pending.discard(me)
        return me

    def handshake_deadline(self) -> float | None:
        """When this connection's handshake times out (None once proven)."""
        return None if self._proven else self._deadline

    def _fail(self, why: str, deny: bool = True) -> bytes:
        if deny:
            try:
                _send(self, hs.DENIED, socket.MSG_DONTWAIT)
            except OSError:
                pass
        self._closed_quietly = True
        _pending.discard(self)
        self._guard.refuse("secret", self._peer, why)
        return b""

    def recv(self, n: int, flags: int = 0) -> bytes:
        if self._proven:
            return _recv(self, n, flags)
        if self._closed_quietly:
            return b""
        if time.monotonic() > self._deadline:
            return self._fail(f"no cluster-secret proof within {HANDSHAKE_S:g}s", deny=False)
        chunk = _recv(self, hs.PROOF_LEN - len(self._buf))
        if not chunk:
            self._closed_quietly = True
            _pending.discard(self)
            if self._buf:
                self._guard.refuse("secret", self._peer, "closed in the middle of the handshake")
            return b""
        self._buf += chunk
        if not hs.could_be_proof(self._buf):
            return self._fail("the peer did not start with an ra_actors handshake", deny=False)
        if len(self._buf) < hs.PROOF_LEN:
            raise _eagain()
        try:
            mode, nonce_d = hs.check_proof(self._guard.key, self._nonce, self._buf)
        except hs.NotOurProtocol as exc:
            return self._fail(str(exc), deny=False)
        except hs.HandshakeError as exc:
            return self._fail(str(exc))
        self._proven = True
        _pending.discard(self)
        reply = hs.answer(self._guard.key, self._nonce, nonce_d)
        if mode == hs.ANSWER_NOW:
            try:
                _send(self, reply, socket.MSG_DONTWAIT)
            except OSError:
                return b""
            self.__class__ = Authenticated
        else:
            self._out = reply
        return _recv(self, n, flags)

    def send(self, data, flags: int = 0) -> int:
        if not self._proven:
            raise BrokenPipeError(errno.EPIPE, "the peer has not proved the cluster secret")
        out = self._out
        n = _send(self, out + bytes(data), flags)
        if n < len(out):
            self._out = out[n:]
            return 0
        self._out = b""
        self.__class__ = Authenticated
        return n - len(out)

    def sendall(self, data, flags: int = 0) -> None:
        view = memoryview(bytes(data))
        while view:
            view = view[self.send(view, flags):]

    def close(self) -> None:
        _pending.discard(self)
        super().close()


class DialledSocket(socket.socket):
    """A connection this process opens, until the acceptor has proved the
    secret (see the module rules)."""

    def arm(self, guard: Guard | None, mode: int = hs.ANSWER_LATER) -> "DialledSocket":
        """Set the socket up (``guard`` None: this process holds no secret,
        and the connection fails as soon as it is used)."""
        self._guard = guard
        self._mode = mode
        self._nonce = os.urandom(hs.NONCE_BYTES)
        self._nonce_a = None
        self._buf = b""
        self._out = None         # our proof, once the greeting is in
        return self

    def awaiting_greeting(self) -> bool:
        """True until the acceptor's greeting has been read (Thespian must
        wait for the socket to be readable, not writable)."""
        return self._out is None

    def _read_greeting(self) -> None:
        if self._guard is None:
            raise ConnectionAbortedError(errno.ECONNABORTED, "this process holds no cluster secret")
        chunk = _recv(self, hs.HELLO_LEN - len(self._buf))
        if not chunk:
            raise ConnectionResetError(errno.ECONNRESET, "the peer closed before the handshake")
        self._buf += chunk
        if len(self._buf) < hs.HELLO_LEN:
            raise _eagain()
        try:
            self._out = hs.prove(self._guard.key, self._buf, self._nonce, self._mode)
        except hs.NotOurProtocol as exc:
            self._guard.refuse("secret", _peer_of(self), str(exc))
            raise ConnectionAbortedError(errno.ECONNABORTED, str(exc)) from None
        self._nonce_a = self._buf[len(hs.MAGIC):]
        self._buf = b""

    def send(self, data, flags: int = 0) -> int:
        if self._out is None:
            self._read_greeting()
        out = self._out
        if not out:
            return _send(self, data, flags)
        n = _send(self, out + bytes(data), flags)
        if n < len(out):
            self._out = out[n:]
            return 0
        self._out = b""
        return n - len(out)

    def sendall(self, data, flags: int = 0) -> None:
        view = memoryview(bytes(data))
        while view:
            view = view[self.send(view, flags):]

    def recv(self, n: int, flags: int = 0) -> bytes:
        if self._out is None:
            self._read_greeting()
            raise _eagain()
        chunk = _recv(self, hs.ANSWER_LEN - len(self._buf))
        if not chunk:
            return b""
        self._buf += chunk
        if len(self._buf) < hs.ANSWER_LEN:
            raise _eagain()
        try:
            hs.check_answer(self._guard.key, self._nonce_a, self._nonce, self._buf)
        except hs.Denied as exc:
            self._guard.denied(_peer_of(self))
            raise ConnectionRefusedError(errno.ECONNREFUSED, str(exc)) from None
        except hs.HandshakeError as exc:
            self._guard.refuse("secret", _peer_of(self), str(exc))
            raise ConnectionAbortedError(errno.ECONNABORTED, str(exc)) from None
        self.__class__ = Authenticated
        return _recv(self, n, flags)


# ------------------------------------------------------------ blocking side
def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = _recv(sock, n - len(data))
        if not chunk:
            raise ConnectionResetError(errno.ECONNRESET, "the peer closed during the handshake")
        data += chunk
    return data


def dial_handshake(sock: socket.socket, key: bytes) -> None:
    """Run the dialler's side on a connected blocking socket (with a
    timeout); the acceptor answers at once.  Raises ``handshake.Denied``,
    ``handshake.HandshakeError`` or ``OSError``."""
    nonce_d = os.urandom(hs.NONCE_BYTES)
    greeting = _recv_exactly(sock, hs.HELLO_LEN)
    sock.sendall(hs.prove(key, greeting, nonce_d, hs.ANSWER_NOW))
    hs.check_answer(key, greeting[len(hs.MAGIC):], nonce_d, _recv_exactly(sock, hs.ANSWER_LEN))


def probe(address: tuple, key: bytes, timeout: float = 2.0, source: str | None = None) -> str:
    """Connect to ``address`` and run the handshake: ``"ok"``, ``"denied"``
    (the peer holds another secret), ``"bad"`` (the peer is not an ra_actors
    process holding our secret) or ``"unreachable"``."""
    try:
        sock = socket.create_connection(tuple(address), timeout=timeout,
                                        source_address=(source, 0) if source else None)
    except OSError:
        return "unreachable"
    try:
        dial_handshake(sock, key)
        return "ok"
    except hs.Denied:
        return "denied"
    except hs.HandshakeError:
        return "bad"
    except OSError:
        return "unreachable"
    finally:
        sock.close()
