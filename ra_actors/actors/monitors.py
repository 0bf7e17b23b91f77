"""Monitors (Erlang's ``erlang:monitor``): ``Watch`` a server, a client
handle or a client-started actor, on any node, and get ``WatchDown`` once.

Thespian tells only a parent that its child exited, so the parent, the
node's supervisor, turns its children's exits into ``WatchDown`` for every
watcher, wherever it is.

Rules:

* A watch of a target on this node registers the watcher if the target is
  alive (:meth:`~.directory.Directory.watchable`), otherwise it fires
  ``noproc`` at once.  When the target goes, whoever saw it go
  (:mod:`.supervision`, :mod:`.user_actors`, :mod:`.clients`) calls
  :meth:`Monitors.fire` with the reason: every watcher gets one
  ``WatchDown`` and the watch is over (a watcher that wants the next
  incarnation watches again).
* A watch of a target on another node is forwarded to that node's
  supervisor and remembered here, so it fires ``noconnection`` when that
  node goes down; a target on a node that is down fires ``noconnection`` at
  once.
* A watcher is ``(address, ref)``; ``Unwatch`` removes exactly that pair.
"""
from __future__ import annotations

from typing import Any

from .directory import Directory, local_target
from .failure_detector import FailureDetector
from .node_context import NodeContext
from .protocol import Unwatch, Watch, WatchDown
from .util import target_node

Watcher = tuple[Any, Any]   # (watcher address, ref)


class Monitors:
    """The watches of this node's targets and of remote ones."""

    def __init__(self, ctx: NodeContext, directory: Directory, detector: FailureDetector) -> None:
        self.ctx = ctx
        self.directory = directory
        self.detector = detector
        self.local: dict[Any, list[Watcher]] = {}    # local_target(...) -> watchers
        self.remote: dict[Any, list[Watcher]] = {}   # target on another node -> local watchers

    def on_watch(self, msg: Watch, sender: Any) -> None:
        target = msg.target
        node = target_node(target)
        if node == self.ctx.node:
            target = local_target(target, node)
            if self.directory.watchable(target):
                self.local.setdefault(target, []).append((msg.watcher, msg.ref))
            else:
                self.ctx.send(msg.watcher, WatchDown(target, "noproc", msg.ref))
            return
        sup = self.detector.supervisor_of(node)
        if sup is None:
            self.ctx.send(msg.watcher, WatchDown(target, "noconnection", msg.ref))
            return
        self.remote.setdefault(target, []).append((msg.watcher, msg.ref))
        self.ctx.send(sup, msg)

    def on_unwatch(self, msg: Unwatch, sender: Any) -> None:
        target = msg.target
        node = target_node(target)
        watcher = (msg.watcher, msg.ref)
        if node == self.ctx.node:
            _drop(self.local, local_target(target, node), watcher)
            return
        _drop(self.remote, target, watcher)
        sup = self.detector.supervisor_of(node)
        if sup is not None:
            self.ctx.send(sup, msg)

    def watchers(self, target: Any) -> int:
        """How many watches of ``target`` (on this node, canonical) are
        registered here: a watch counts from the moment a ``WatchDown`` for
        it would be the target's exit reason rather than ``noproc``."""
        return len(self.local.get(target, ()))

    def fire(self, target: Any, reason: Any) -> None:
        """``target`` (on this node, canonical) is gone: tell its watchers."""
        self._fire(target, self.local.pop(target, []), reason)

    def node_down(self, node: str) -> None:
        """Every watch of a target on ``node`` fires ``noconnection``."""
        for target in [t for t in self.remote if target_node(t) == node]:
            self._fire(target, self.remote.pop(target), "noconnection")

    def _fire(self, target: Any, watchers: list[Watcher], reason: Any) -> None:
        for watcher, ref in watchers:
            self.ctx.send(watcher, WatchDown(target, reason, ref))


def _drop(table: dict[Any, list[Watcher]], target: Any, watcher: Watcher) -> None:
    watchers = table.get(target)
    if watchers is None:
        return
    kept = [w for w in watchers if not (w[0] == watcher[0] and w[1] == watcher[1])]
    if kept:
        table[target] = kept
    else:
        del table[target]
