"""Direct replication stream between the actors on the hot path.

A Thespian message costs ~0.6-0.7 ms of transport per hop (an ACK per
message, stop-and-wait per target, a selector rebuilt on every loop pass;
``../shared/reference/thespian-notes.md``), against ~0.05 ms for a frame
on a plain TCP connection.  Raft's hot path — ``AppendEntries`` out,
replies back — therefore gets its own connection between each pair of
actors carrying servers (host actors in placement ``shared``, server
actors in ``process``; which messages go where is
:mod:`.streamside`'s), as RabbitMQ streams replicate over their own TCP
protocol beside Erlang distribution.  Thespian stays the runtime for everything
else (placement, supervision, monitors, clients, control messages), and
the fallback: whenever no stream is up, the same message goes through
Thespian.

Rules:

* **What travels:** between the actors carrying servers, ``Rpcs`` and
  ``Forwarded`` commands (in ``Bundle`` records); from a client to a
  server's actor, its calls and pipelined commands (``ClientCall``,
  ``Pipeline``), and back the replies and events (``ClientReply``,
  ``Applied``, ``Rejected``, ``Message``); in placement ``process``, a
  server's ``WalWrite`` to its node's WAL actor and the ``WalResult``
  back.
  Everything else goes through Thespian.  Raft and the client's retries
  tolerate loss, duplication and reordering of these, so switching paths,
  dropping a frame on an overfull queue or losing a connection never
  needs more than those retries.
* **Frames:** 4-byte big-endian length, then the message in msgpack
  (:class:`ra_actors.codec.Codec` over the runtime's message classes:
  records are looked up in a fixed registry, nothing is unpickled).  An
  AppendEntries of 1,024 entries packs in ~2.1 ms and unpacks in ~3 ms,
  as pickle does (2.0 / 2.1 ms).  A message msgpack cannot carry (a query
  result that is not a msgpack value, say) goes through Thespian instead.
  A stream socket binds the node's address (never ``0.0.0.0``) and closes
  connections from hosts outside the node's allowed set before reading a
  byte.
* **Set-up:** a host that sends through Thespian to a host it has no
  stream with attaches ``StreamOffer(endpoint)``; the receiver connects
  to that endpoint (in a thread, so an unreachable peer never blocks the
  actor), from its own address, and says hello with its own Thespian
  address; from then on either side sends on the connection.  The actor
  watches the listener, the connections and a wake pipe with
  ``ThespianWatch``.
* **Trust:** before the hello, both sides prove the cluster secret
  (:mod:`.handshake`; the listener greets, the dialler proves and asks to
  be answered at once, and checks the answer before it sends a frame).  No
  byte of an accepted connection is decoded before its proof holds.  The
  hello's address must be on the host the connection comes from (no peer
  can speak for another).  An accepted connection has ``HELLO_S`` to prove
  the secret and say hello; at most ``MAX_PENDING`` may be that far at
  once (further ones are closed at once).  Refusals go to the hub's
  :class:`~.authsock.Guard` (on a node: counted in ``overview``, logged once
  per address).
* **Writes** go through one thread per connection with a byte-bounded
  queue: a paused or partitioned peer fills the queue, then whole frames
  are dropped (Raft resends) and the connection is closed after ``stall_s``
  without progress.  A frame is never split: once its first byte is on the
  wire the rest follows whatever the queue holds, and a frame above
  ``MAX_FRAME`` is refused to its sender (it goes through Thespian).
* **Protocol errors.**  Bytes that do not decode to well-formed records (the
  wire codec checks every record's field types and refuses the older nested
  encodings), a frame above ``MAX_FRAME``, or a first frame that is not a
  hello close that one connection; each is counted (``protocol_errors`` in
  ``stats``) and logged once per peer address.  Nothing else happens: no
  exception leaves ``on_ready``.
"""
from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections import deque

from . import handshake as hs
from .authsock import Guard, dial_handshake

_LEN = struct.Struct(">I")
MAX_FRAME = 256 << 20
HELLO_S = 10.0          # an accepted connection proves the secret and says hello within this
MAX_PENDING = 64        # accepted connections that have not said hello yet


def addr_key(addr):
    """A hashable key for a Thespian address (addresses are unhashable, and
    their ``str`` leaves the IP out)."""
    details = getattr(addr, "addressDetails", None)
    sockname = getattr(details, "sockname", None)
    return tuple(sockname) if sockname else str(addr)


def _thespian_to_wire(addr):
    return list(addr.addressDetails.sockname[:2])


def _wire_host(value) -> str:
    """The host of an address as a hello carries it (``[host, port]``)."""
    return str(value[0])


def _thespian_from_wire(value):
    from .util import admin_address   # a TCP address from (host, port)
    host, port = value
    return admin_address(str(host), int(port))


_CODEC = None


def wire_codec():
    """The stream's msgpack codec: the base records plus the messages that
    travel on a stream."""
    global _CODEC
    if _CODEC is None:
        import dataclasses
        from .. import codec, events
        from ..core import messages
        from . import protocol
        classes = [protocol.Rpcs, protocol.Bundle, protocol.Forwarded, protocol.ClientCall,
                   protocol.Pipeline, protocol.ClientReply, events.Applied, events.Rejected,
                   events.NotLeader, events.SessionRefused, events.CommandRefused, events.Message,
                   events.RaEvent]
        classes += [*protocol.CLIENT_REQUESTS, protocol.PipelinedCommand, protocol.PipelinedColumns]
        classes += [c for c in vars(messages).values()
                    if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__module__ == messages.__name__]
        classes.append(events.StorageFailed)
        from ..log.wal import EncodedAppend
        classes += [protocol.WalWrite, protocol.WalResult, EncodedAppend]
        _CODEC = codec.Codec(classes, wire=True)
    return _CODEC


class _Link:
    """One TCP connection to a peer host (outgoing or accepted)."""

    def __init__(self, hub: "StreamHub", sock: socket.socket | None, peer_addr=None):
        self.hub = hub
        self.sock = sock
        self.peer_addr = peer_addr            # the peer host's Thespian address (after hello)
        self.rbuf = bytearray()
        self.queue: deque = deque()
        self.queued = 0
        self.busy = False                     # the writer thread is sending
        self.cond = threading.Condition()
        self.alive = True
        self.ready = sock is not None         # outgoing links are ready once connected
        self.last_progress = time.monotonic()
        self.sent_frames = 0
        self.recv_frames = 0
        self.oversized = False                # the peer announced a frame above MAX_FRAME
        # accepted links: the secret's handshake, then the hello
        self.proven = sock is None            # (a dialled link proves the acceptor in its writer)
        self.nonce = b""
        self.proof = b""
        self.deadline = 0.0

    # ------------------------------------------------------------- writing
    def start_writer(self, connect_to=None, hello: bytes | None = None):
        threading.Thread(target=self._writer, args=(connect_to, hello), daemon=True,
                         name="ra-stream-writer").start()

    def put(self, frame: bytes) -> bool:
        with self.cond:
            if not self.alive:
                return False
            if not self.queue and not self.busy and self.sock is not None:
                # Nothing queued and the writer idle: send from the caller's
                # thread, without waiting for the writer to get the GIL (a
                # thread hand-off cost ~0.5 ms per hop on a busy process).
                try:
                    n = self.sock.send(frame, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError:
                    self.alive = False
                    self.cond.notify()
                    return False
                if n == len(frame):
                    self.last_progress = time.monotonic()
                    return True
                if n > 0:
                    # Part of the frame is on the wire: the rest must follow
                    # it, or every later frame would be read out of step.
                    self.queue.append(frame[n:])
                    self.queued += len(frame) - n
                    self.cond.notify()
                    return True
            if self.queued + len(frame) > self.hub.max_queue_bytes:
                self.hub.dropped += 1
                if time.monotonic() - self.last_progress > self.hub.stall_s:
                    self.alive = False   # the peer stopped reading: give the link up
                    self.cond.notify()
                return False
            self.queue.append(frame)
            self.queued += len(frame)
            self.cond.notify()
        return True

    def _writer(self, connect_to, hello):
        try:
            if connect_to is not None:
                sock = socket.create_connection(connect_to, timeout=self.hub.connect_timeout,
                                                source_address=(self.hub.bind_ip, 0))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    dial_handshake(sock, self.hub.guard.key)
                except hs.HandshakeError as exc:
                    sock.close()
                    self.hub.dial_refused(connect_to, exc)
                    return
                sock.settimeout(None)
                sock.sendall(hello)
                with self.cond:
                    self.sock = sock
                    self.ready = True
                self.last_progress = time.monotonic()
                self.hub._wake()      # the actor must start watching this socket
            while True:
                with self.cond:
                    while self.alive and not self.queue:
                        self.cond.wait()
                    if not self.alive:
                        return
                    frames = list(self.queue)
                    self.queue.clear()
                    self.queued = 0
                    self.busy = True
                try:
                    self.sock.sendall(b"".join(frames))
                finally:
                    with self.cond:
                        self.busy = False
                self.last_progress = time.monotonic()
        except OSError:
            pass
        finally:
            with self.cond:
                self.alive = False
            self.hub._wake()          # the actor drops the link and falls back

    # ------------------------------------------------------------- reading
    def read(self) -> list | None:
        """Frames available now (``None``: the connection is gone)."""
        try:
            # the socket stays blocking for the writer thread; reads never block
            data = self.sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return []
        except OSError:
            return None
        if not data:
            return None
        self.rbuf += data
        out = []
        buf = self.rbuf
        pos = 0
        while len(buf) - pos >= 4:
            (n,) = _LEN.unpack_from(buf, pos)
            if n > MAX_FRAME:
                self.oversized = True
                return None
            if len(buf) - pos - 4 < n:
                break
            out.append(bytes(buf[pos + 4:pos + 4 + n]))
            pos += 4 + n
        if pos:
            del buf[:pos]
        self.recv_frames += len(out)
        return out

    def close(self):
        with self.cond:
            self.alive = False
            self.cond.notify()
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                self.sock.close()
            except OSError:
                pass


class StreamHub:
    """The stream side of one host actor: a listener, links per peer host,
    and a wake pipe.  Used only from the actor's thread (plus the links'
    writer threads, which touch nothing but their own link and the pipe)."""

    def __init__(self, bind_ip: str, my_addr, allowed=None, *, guard: Guard, max_queue_bytes: int = 32 << 20,
                 stall_s: float = 5.0, connect_timeout: float = 2.0, retry_s: float = 1.0,
                 listen: bool = True, codec=None, to_wire=_thespian_to_wire, from_wire=_thespian_from_wire,
                 host_of=_wire_host, log=None):
        if guard is None:
            raise ValueError("a stream needs the cluster secret (a Guard)")
        self.guard = guard
        self.bind_ip = bind_ip
        self.codec = codec or wire_codec()
        self.log = log or (lambda _text: None)
        self.from_wire = from_wire
        self.host_of = host_of
        self.my_addr = my_addr
        self.allowed = allowed                # None: anyone who can reach bind_ip
        self.max_queue_bytes = max_queue_bytes
        self.stall_s = stall_s
        self.connect_timeout = connect_timeout
        self.retry_s = retry_s
        self.listener = None
        self.endpoint = None
        if listen:     # (a client only dials)
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind((bind_ip, 0))
            self.listener.listen(64)
            self.listener.setblocking(False)
            self.endpoint = (bind_ip, self.listener.getsockname()[1])
        self.rfd, self.wfd = os.pipe()
        os.set_blocking(self.rfd, False)
        os.set_blocking(self.wfd, False)
        self.links: dict[str, _Link] = {}     # peer key -> link used to send
        self.by_fd: dict[int, _Link] = {}     # every readable link
        self.pending: list = []               # accepted links before their hello
        self.dialed: list = []                # our outgoing links (read once connected)
        self.dialing: dict = {}               # (peer key, endpoint) -> when we last tried
        self.dropped = 0
        self.refused = 0
        self.protocol_errors = 0
        self._reported: set = set()           # peer IPs whose protocol error was logged
        self.hello = self._frame(("hello", to_wire(my_addr)))

    def _frame(self, obj) -> bytes:
        data = self.codec.pack(obj)
        return _LEN.pack(len(data)) + data

    def _wake(self):
        try:
            os.write(self.wfd, b"w")
        except OSError:
            pass

    # ------------------------------------------------------------ the actor
    def fds(self) -> list[int]:
        fds = [self.rfd] + list(self.by_fd)
        if self.listener is not None:
            fds.append(self.listener.fileno())
        return fds

    def has_link(self, addr) -> bool:
        link = self.links.get(addr_key(addr))
        return link is not None and link.alive and link.ready

    def send(self, addr, msg) -> bool:
        """Queue ``msg`` for ``addr`` on its stream; False if there is none
        (the caller sends through Thespian instead)."""
        link = self.links.get(addr_key(addr))
        if link is None or not link.ready:
            return False
        if not link.alive:
            self._drop(link)
            return False
        try:
            frame = self._frame(msg)
        except (TypeError, ValueError, OverflowError):
            return False      # not a msgpack value somewhere inside: Thespian carries it
        if len(frame) - _LEN.size > MAX_FRAME:
            return False      # the receiver would refuse it: Thespian carries it
        if link.put(frame):
            link.sent_frames += 1
            return True
        return False

    def dial(self, addr, endpoint) -> None:
        """Connect to the host at ``addr`` that offered ``endpoint``."""
        key = addr_key(addr)
        link = self.links.get(key)
        if link is not None and link.alive:
            return
        now = time.monotonic()
        attempt = (key, tuple(endpoint))   # a new endpoint (a restarted peer) is dialled at once
        if now - self.dialing.get(attempt, 0.0) < self.retry_s:
            return
        self.dialing[attempt] = now
        link = _Link(self, None, addr)
        link.ready = False
        self.links[key] = link
        self.dialed.append(link)
        link.start_writer(tuple(endpoint), self.hello)

    def on_ready(self, ready) -> list:
        """Handle readable fds; returns ``[(peer address, message)]``."""
        out = []
        ready = set(ready)
        self.expire()
        if self.rfd in ready:
            try:
                os.read(self.rfd, 65536)
            except BlockingIOError:
                pass
            self._adopt_connected()
        if self.listener is not None and self.listener.fileno() in ready:
            self._accept()
        for fd in [fd for fd in ready if fd in self.by_fd]:
            link = self.by_fd[fd]
            if not link.proven and not self._read_proof(link):
                continue
            frames = link.read()
            if frames is None:
                if link.oversized:
                    self.protocol_error(link, f"a frame above {MAX_FRAME} bytes")
                else:
                    self._drop(link)
                continue
            for raw in frames:
                try:
                    msg = self.codec.unpack(raw)
                    if link.peer_addr is None:
                        self._hello(link, msg)
                        continue
                except Exception as exc:  # noqa: BLE001 - whatever the bytes were: that link is done
                    self.protocol_error(link, f"{type(exc).__name__}: {exc}")
                    break
                out.append((link.peer_addr, msg))
        return out

    def _hello(self, link: _Link, msg) -> None:
        """``link``'s first frame: who is on the other end (raises if it is
        not a hello, or names an address on another host)."""
        if not (isinstance(msg, tuple) and len(msg) == 2 and msg[0] == "hello"):
            raise ValueError("the first frame is not a hello")
        claimed, actual = self.host_of(msg[1]), self._peer_ip(link)
        if claimed != actual:
            raise ValueError(f"the hello names an address on {claimed}, but the connection comes from {actual}")
        peer = self.from_wire(msg[1])
        link.peer_addr = peer
        self.links[addr_key(peer)] = link   # reply on the same connection
        if link in self.pending:
            self.pending.remove(link)

    def _read_proof(self, link: _Link) -> bool:
        """Read what there is of an accepted link's proof of the secret;
        True once it holds (the answer is on its way)."""
        try:
            chunk = link.sock.recv(hs.PROOF_LEN - len(link.proof), socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            self._drop(link)
            return False
        if not chunk:
            if link.proof:
                self._refuse(link, "secret", "closed in the middle of the handshake")
            else:
                self._drop(link)
            return False
        link.proof += chunk
        if not hs.could_be_proof(link.proof):
            self._refuse(link, "secret", "the peer did not start with an ra_actors handshake")
            return False
        if len(link.proof) < hs.PROOF_LEN:
            return False
        try:
            _mode, nonce_d = hs.check_proof(self.guard.key, link.nonce, link.proof)
            link.sock.send(hs.answer(self.guard.key, link.nonce, nonce_d), socket.MSG_DONTWAIT)
        except hs.NotOurProtocol as exc:
            self._refuse(link, "secret", str(exc))
            return False
        except hs.HandshakeError as exc:
            self._refuse(link, "secret", str(exc), deny=True)
            return False
        except OSError:
            self._drop(link)
            return False
        link.proven = True
        return True

    def _refuse(self, link: _Link, kind: str, why: str, deny: bool = False) -> None:
        """An accepted link failed the secret's handshake: close it, count it."""
        if deny:
            try:
                link.sock.send(hs.DENIED, socket.MSG_DONTWAIT)
            except OSError:
                pass
        self.refused += 1
        self.guard.refuse(kind, self._peer_ip(link), f"replication stream: {why}")
        self._drop(link)

    def dial_refused(self, endpoint, exc: Exception) -> None:
        """(writer thread) The peer at ``endpoint`` failed the handshake."""
        peer = str(endpoint[0])
        if isinstance(exc, hs.Denied):
            self.guard.denied(peer)
        else:
            self.guard.refuse("secret", peer, f"replication stream: {exc}")

    def expire(self, now: float | None = None) -> None:
        """Close accepted links that have not proved the secret and said
        hello within ``HELLO_S``."""
        if not self.pending:
            return
        now = time.monotonic() if now is None else now
        for link in [link for link in self.pending if now > link.deadline]:
            if link.proven:
                self.protocol_error(link, f"no hello within {HELLO_S:g}s")
            else:
                self._refuse(link, "secret", f"no proof of the cluster secret within {HELLO_S:g}s")

    def _adopt_connected(self):
        # Every connection we dialled is read once it is up, whether or not
        # it is the one we send on: the peer may have chosen it for its
        # replies (both sides can dial each other at once; the hello of the
        # other connection then replaces ours in ``links``).
        for link in list(self.dialed):
            if not link.alive:
                self._drop(link)
            elif link.ready and link.sock is not None and link.sock.fileno() not in self.by_fd:
                self.by_fd[link.sock.fileno()] = link
        for link in list(self.links.values()):
            if not link.alive:
                self._drop(link)

    def _accept(self):
        while True:
            try:
                sock, peer = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if self.allowed is not None and peer[0] not in self.allowed:
                self.refused += 1
                sock.close()
                self.guard.refuse("host", str(peer[0]), "replication stream: not an allowed host")
                continue
            if len(self.pending) >= MAX_PENDING:
                self.refused += 1
                sock.close()
                self.guard.refuse("busy", str(peer[0]),
                                  f"replication stream: {MAX_PENDING} connections were waiting for their hello")
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(True)    # (accepted from a non-blocking listener)
            link = _Link(self, sock)
            link.proven = False
            link.nonce = os.urandom(hs.NONCE_BYTES)
            link.deadline = time.monotonic() + HELLO_S
            try:
                sock.send(hs.hello(link.nonce), socket.MSG_DONTWAIT)
            except OSError:
                sock.close()
                continue
            link.start_writer()
            self.by_fd[sock.fileno()] = link
            self.pending.append(link)

    def protocol_error(self, link: _Link, why: str) -> None:
        """``link``'s peer sent something that is not our protocol: close that
        connection, count it, and log it once per peer address."""
        self.protocol_errors += 1
        peer = self._peer_ip(link)
        if peer not in self._reported:
            self._reported.add(peer)
            self.log(f"closing a stream connection from {peer}: {why} (logged once per address)")
        self._drop(link)

    @staticmethod
    def _peer_ip(link: _Link) -> str:
        try:
            return str(link.sock.getpeername()[0])
        except (OSError, AttributeError, IndexError):
            return "an unknown address"

    def _drop(self, link: _Link):
        for key, other in list(self.links.items()):
            if other is link:
                del self.links[key]
        for fd, other in list(self.by_fd.items()):
            if other is link:
                del self.by_fd[fd]
        if link in self.pending:
            self.pending.remove(link)
        if link in self.dialed:
            self.dialed.remove(link)
        link.close()

    def refuse(self, addr, why: str) -> None:
        """The receiver could not use what the peer at ``addr`` sent: a
        protocol error on that peer's connection."""
        link = self.links.get(addr_key(addr))
        if link is not None:
            self.protocol_error(link, why)

    def forget(self, addr) -> None:
        """The peer at ``addr`` is gone (dead letter, node down)."""
        link = self.links.get(addr_key(addr))
        if link is not None:
            self._drop(link)

    def stats(self) -> dict:
        return {"endpoint": list(self.endpoint) if self.endpoint else None, "links": len(self.links), "dropped": self.dropped,
                "refused": self.refused, "protocol_errors": self.protocol_errors,
                "frames_out": sum(link.sent_frames for link in self.links.values()),
                "frames_in": sum(link.recv_frames for link in self.by_fd.values())}

    def close(self):
        for link in list(self.by_fd.values()) + list(self.links.values()) + list(self.dialed):
            link.close()
        if self.listener is not None:
            self.listener.close()
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass
