"""The node directory (Ra's ``ra_directory``): every name on this node, and
where it lives now.

Rules:

* Three kinds of names live on a node: servers (``ServerId``, by name),
  actors clients started (``ActorRef``) and client handles (strings).  The
  directory holds the tables of all three; the parts that start and stop
  those things (:mod:`.supervision`, :mod:`.user_actors`, :mod:`.clients`)
  write them, everyone else only reads them here.
* ``Lookup`` is answered from here for this node's names and forwarded to
  the owning node's supervisor for the others (Thespian's ``globalName``
  breaks across nodes in 4.0.1); a name on a node that is down or unknown
  is answered at once (``nodedown`` / ``unknown``).
* An address is given only for something running.  A server that is not
  running is ``starting`` if it is registered and not stopped (it is
  starting, or waiting for its restart), ``stopped`` or ``unknown``.
"""
from __future__ import annotations

from typing import Any

from ..core.types import ActorRef, ServerId
from .children import RUNNING, STARTING, STOPPING, Child
from .failure_detector import FailureDetector
from .node_context import NodeContext
from .protocol import ClientInfo, Lookup, LookupReply
from .registry import ServerRegistry
from .util import is_client_handle, target_node


def local_target(target: Any, node: str) -> Any:
    """The canonical form of a target on ``node``: a ``ServerId`` for a
    server (however it was spelled), the ``ActorRef`` or client handle as is."""
    if is_client_handle(target) or isinstance(target, ActorRef):
        return target
    return ServerId(target[0], node)


class Directory:
    """This node's names (see the module rules)."""

    def __init__(self, ctx: NodeContext, registry: ServerRegistry, detector: FailureDetector) -> None:
        self.ctx = ctx
        self.registry = registry
        self.detector = detector
        self.servers: dict[str, Child] = {}          # server name -> its current incarnation
        self.actors: dict[str, Child] = {}           # client-started actors, by name
        self.clients: dict[str, ClientInfo] = {}     # client handles attached through this node

    def on_lookup(self, msg: Lookup, sender: Any) -> None:
        reply_to = msg.reply_to or sender
        node = target_node(msg.key)
        if node == self.ctx.node:
            self.ctx.send(reply_to, self.entry(msg.key, msg.req))
            return
        sup = self.detector.supervisor_of(node)
        if sup is None:
            status = "nodedown" if self.detector.knows(node) else "unknown"
            self.ctx.send(reply_to, LookupReply(msg.key, None, 0, msg.req, status))
            return
        self.ctx.send(sup, Lookup(msg.key, msg.req, reply_to))

    def entry(self, key: Any, req: Any) -> LookupReply:
        """The answer to ``Lookup(key)`` for a name on this node."""
        if isinstance(key, ActorRef):
            actor = self.actors.get(key.name)
            if actor is not None and actor.status == RUNNING:
                return LookupReply(key, actor.local, actor.incarnation, req, "running")
            return LookupReply(key, None, 0, req, "starting" if actor is not None else "unknown")
        if is_client_handle(key):
            client = self.clients.get(key)
            return LookupReply(key, client.address if client else None, 0, req,
                               "running" if client else "unknown")
        server = self.servers.get(key[0])
        if server is not None and server.status == RUNNING:
            return LookupReply(key, server.addr, server.incarnation, req, "running",
                               host=self.ctx.shared)
        rec = self.registry.get(key[0])
        if rec is None:
            status = "unknown"
        elif rec.stopped:
            status = "stopped"
        else:
            status = "starting"   # (re)starting, or crashed and waiting for a restart
        return LookupReply(key, None, 0, req, status)

    def watchable(self, target: Any) -> bool:
        """Whether a watch of ``target`` (on this node) registers, rather
        than firing ``noproc`` at once: a client that is attached, an actor
        that runs or is stopping, a server that runs or is starting."""
        if is_client_handle(target):
            return target in self.clients
        if isinstance(target, ActorRef):
            actor = self.actors.get(target.name)
            return actor is not None and actor.status in (RUNNING, STOPPING)
        server = self.servers.get(target[0])
        return server is not None and server.status in (RUNNING, STARTING)

    def running_servers(self) -> list[Child]:
        return [s for s in self.servers.values() if s.status == RUNNING]
