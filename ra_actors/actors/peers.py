"""Where a server's messages go: peer servers' and clients' actor addresses.

One :class:`PeerRouter` per Raft server (in its server actor, or per hosted
server in a host actor).  Rules:

* A peer is addressed by ``ServerId`` and incarnation.  Its address comes
  from the node supervisors' directories (``Lookup`` -> ``LookupReply``) and
  is cached; it is refreshed when a message from the peer shows a new
  address or incarnation, on a dead letter, on ``Misdelivered``, when the
  peer's node comes back up, and when the peer stays silent
  ``peer_silence_s`` while messages to it go unanswered.
* A message from an older incarnation of a peer is dropped.  A message
  meant for an older incarnation of *this* server is dropped and answered
  with an empty ``Rpcs`` so the sender learns the current incarnation.
* At most ``max_unanswered`` messages are queued to a silent peer; peers on
  a node that is down get none (Raft resends).  While an address is being
  looked up, up to 64 messages wait for it; a lookup is asked at most once
  a second.
* Clients are addressed by handle (``client:<node>:<id>``, resolved by the
  supervisors) or directly by the address they called from.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from thespian.actors import ActorAddress

from ..core.types import ServerId
from .protocol import Lookup, LookupReply, Misdelivered, Rpcs
from .util import is_client_handle

MAX_WAITING = 64          # messages kept per destination while its address is looked up
LOOKUP_EVERY_S = 1.0      # a lookup in flight is not asked again sooner


class Peer:
    __slots__ = ("address", "incarnation", "unanswered", "last_heard", "dropped")

    def __init__(self, address: Any = None, incarnation: int = 0) -> None:
        self.address = address
        self.incarnation = incarnation
        self.unanswered = 0
        self.last_heard = time.time()
        self.dropped = 0


class PeerRouter:
    """See the module rules.  ``send(addr, msg)`` is the hosting actor's send."""

    def __init__(self, me: ServerId, incarnation: int, send: Callable[[Any, Any], None], supervisor: Any,
                 settings: dict, nodes_down=(), log: Callable[[str], None] = lambda _t: None) -> None:
        self.me = me
        self.incarnation = incarnation
        self._send = send
        self.supervisor = supervisor
        self.max_unanswered = int(settings["max_unanswered"])
        self.silence_s = float(settings["peer_silence_s"])
        self.nodes_down: set[str] = set(nodes_down)
        self.peers: dict[ServerId, Peer] = {}
        self.clients: dict[Any, Any] = {}            # client handle -> address
        self._waiting: dict[Any, list] = {}         # destination key -> [("rpcs"|"raw", item)]
        self._lookups: dict[Any, float] = {}        # destination key -> when asked
        self._log = log

    # ------------------------------------------------------------ outgoing
    def send_rpcs(self, to: ServerId, rpcs: tuple) -> None:
        if to.node in self.nodes_down:
            return
        peer = self.peers.get(to)
        if peer is None or peer.address is None:
            self._wait(to, ("rpcs", rpcs))
            return
        if peer.unanswered >= self.max_unanswered:
            peer.dropped += len(rpcs)
            if time.time() - peer.last_heard > self.silence_s:
                self._forget(peer)   # re-resolve: it may have moved
            return
        peer.unanswered += 1
        self._send(peer.address, Rpcs(to, peer.incarnation, self.me, self.incarnation, rpcs))

    def send_to_server(self, to: ServerId, msg: Any) -> None:
        peer = self.peers.get(to)
        if peer is not None and peer.address is not None:
            self._send(peer.address, msg)
        else:
            self._wait(to, ("raw", msg))

    def send_to_client(self, handle: Any, msg: Any) -> None:
        if isinstance(handle, ActorAddress):
            self._send(handle, msg)
            return
        addr = self.clients.get(handle)
        if addr is not None:
            self._send(addr, msg)
        elif is_client_handle(handle):
            self._wait(handle, ("raw", msg))
        else:
            self._log(f"no route to client {handle!r:.100}")

    def _wait(self, key: Any, item: tuple) -> None:
        queue = self._waiting.setdefault(key, [])
        if len(queue) < MAX_WAITING:
            queue.append(item)
        last = self._lookups.get(key)
        if last is None or time.time() - last > LOOKUP_EVERY_S:
            self._lookups[key] = time.time()
            self._send(self.supervisor, Lookup(key, self.me.name))

    def _release(self, key: Any, address: Any) -> None:
        for kind, item in self._waiting.pop(key, ()):
            if kind == "rpcs":
                self.send_rpcs(key, item)
            else:
                self._send(address, item)

    @staticmethod
    def _forget(peer: Peer) -> None:
        peer.address = None
        peer.unanswered = 0

    # ------------------------------------------------------------ incoming
    def client_called(self, handle: Any, address: Any) -> None:
        """A client called from ``address``: replies to ``handle`` go there."""
        if handle:
            self.clients[handle] = address

    def accept_rpcs(self, msg: Rpcs, sender: Any) -> bool:
        """Learn from ``msg``; whether its RPCs are for this incarnation."""
        if ServerId(*msg.to) != self.me:
            self._send(sender, Misdelivered(msg.to))
            return False
        sender_id = ServerId(*msg.from_)
        peer = self.peers.get(sender_id)
        if peer is not None and msg.from_inc < peer.incarnation:
            return False   # from an older incarnation of that peer
        if peer is None or msg.from_inc > peer.incarnation or peer.address != sender:
            peer = self.peers[sender_id] = Peer(sender, msg.from_inc)
            self._release(sender_id, sender)
        peer.unanswered = 0
        peer.last_heard = time.time()
        if msg.to_inc and msg.to_inc < self.incarnation:
            # meant for an earlier life of this server: tell the sender who we are now
            self._send(sender, Rpcs(sender_id, msg.from_inc, self.me, self.incarnation, ()))
            return False
        return True

    def on_lookup_reply(self, msg: LookupReply) -> None:
        key = msg.key
        self._lookups.pop(key, None)
        if msg.address is None:
            self._waiting.pop(key, None)
            return
        if is_client_handle(key):
            self.clients[key] = msg.address
            self._release(key, msg.address)
            return
        sid = ServerId(*key)
        peer = self.peers.get(sid)
        if peer is None or msg.incarnation >= peer.incarnation:
            self.peers[sid] = Peer(msg.address, msg.incarnation)
        elif msg.incarnation == 0:
            # (a host's answer for a whole node carries no incarnation: the
            # peer's first reply teaches it, or refuses an older one)
            peer.address = msg.address
            peer.unanswered = 0
        self._release(sid, msg.address)

    def on_misdelivered(self, msg: Misdelivered, sender: Any) -> None:
        peer = self.peers.get(ServerId(*msg.to))
        if peer is not None and peer.address is not None and peer.address == sender:
            self._forget(peer)

    def on_dead_letter(self, dead: Any) -> None:
        for peer in self.peers.values():
            if peer.address is not None and peer.address == dead:
                self._forget(peer)
        for handle, addr in list(self.clients.items()):
            if addr == dead:
                del self.clients[handle]

    def on_node_event(self, node: str, up: bool) -> None:
        if up:
            self.nodes_down.discard(node)
            for sid, peer in self.peers.items():
                if sid.node == node:
                    self._forget(peer)   # it may have restarted: look it up again
        else:
            self.nodes_down.add(node)
            for key in [k for k in self._waiting if not is_client_handle(k) and ServerId(*k).node == node]:
                self._waiting.pop(key, None)

    def check_silent(self) -> None:
        """Forget the address of a peer that stopped answering (leader tick)."""
        now = time.time()
        for peer in self.peers.values():
            if peer.address is not None and peer.unanswered and now - peer.last_heard > self.silence_s:
                self._forget(peer)

    def stats(self) -> dict:
        return {str(s): {"unanswered": p.unanswered, "dropped": p.dropped} for s, p in self.peers.items()}
