"""Actors started by clients under a node supervisor (``client.start_actor``).

Erlang and Ra users spawn processes and monitor them; here a client asks a
node's supervisor to create an instance of any Thespian ``Actor`` class
importable on that node.  The supervisor is the actor's parent, so Thespian
tells it when the actor ends (``ChildActorExited``), whatever the cause:
``stop_actor``, an exit of its own, a SIGKILL of its process.  The
supervisor turns that into ``WatchDown`` for every watcher, exactly as it
does for servers, so a machine's ``Monitor("process", ref)`` works for
actors too.

* Identity: ``ActorRef(name, node)``.  A name is unique among the node's
  live actors (a permanent actor waiting for its restart is alive); it can
  be reused once the actor is gone for good.
* First message: ``ActorInit(ref, init, restarts)``.
* Restart policies: ``"temporary"`` (never restarted: its exit is final,
  like a plain spawned Erlang process) and ``"permanent"`` (restarted within
  the supervisor's intensity limits, ``max_restarts`` per
  ``restart_period``, with the same back-off as servers).  Every exit fires
  ``Down`` to the watchers of the moment: a monitor fires once, as in
  Erlang; a watcher that wants the next incarnation monitors again.
* Exit reasons: ``"normal"`` after ``stop_actor``; ``"killed"`` for any
  other exit (Thespian does not say why a child ended); ``"noproc"`` when
  the actor was not alive when watched.  Watchers on other nodes get
  ``"noconnection"`` when the actor's node goes down (the supervisors'
  remote watches).
* Delivery: a machine's ``SendMsg(ref, msg)`` (``ActorSend`` from the server
  actor) and ``client.send_actor`` go through the supervisors, which know
  the address of the current incarnation, so nothing is cached that could
  go stale after a restart.  ``msg`` arrives as is; its sender is the
  actor's node supervisor.

Actors are not persisted: they live as long as their node incarnation.

Used by :class:`~ra_actors.actors.supervisor.NodeSupervisor` as a mixin; the
supervisor calls the hooks ``_actor_exited``, ``_watch_actor``,
``_unwatch_actor``, ``_lookup_actor``, ``_actors_overview`` and
``_restart_actor``; the ``_op_*`` methods are client operations
(``SupRequest``).
"""
from __future__ import annotations

import importlib
import time

from thespian.actors import Actor, ActorExitRequest

from .. import errors
from ..core.types import ActorRef
from .protocol import ActorInit, ActorSend, LookupReply, SupResponse, WatchDown
from .util import log, log_exc

KIND = "actor"
RESTART_POLICIES = ("temporary", "permanent")


def load_actor_class(path: str, node: str):
    """Import ``"pkg.module:Class"`` and check that it is a Thespian Actor
    class; raise ``ActorClassError`` (naming ``node``) otherwise."""
    if not isinstance(path, str):
        raise errors.ActorClassError(f"node {node}: actor class must be 'pkg.module:Class', not {path!r}")
    mod_name, sep, attr = path.partition(":")
    if not sep or not mod_name or not attr or not attr.isidentifier():
        # (Thespian creates the actor from "module.Class": nested classes
        # cannot be named that way)
        raise errors.ActorClassError(f"node {node}: actor class must be 'pkg.module:Class' "
                                     f"(a module-level class), not {path!r}")
    try:
        importlib.invalidate_caches()
        module = importlib.import_module(mod_name)
        cls = getattr(module, attr)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's
        raise errors.ActorClassError(f"node {node}: actor class {path!r} cannot be imported: "
                                     f"{type(exc).__name__}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Actor)):
        raise errors.ActorClassError(f"node {node}: {path!r} is not a Thespian Actor class "
                                     f"(got {type(cls).__name__} {cls!r:.80})")
    return cls


class UserActorsMixin:
    """The supervisor's table of client-started actors (``self.actors``:
    name -> ``_Child`` of kind ``"actor"``; ``child.config`` holds the spec:
    ``cls``, ``init``, ``restart``, ``restarts``)."""

    # ------------------------------------------------------------ lifecycle
    def _spawn_actor(self, name, cls, spec, old=None):
        child = self._new_child(KIND, name, cls)
        if old is not None:
            child.restarts = old.restarts
        child.config = spec
        child.incarnation = time.time_ns() // 1000
        child.status = "running"
        self.actors[name] = child
        self.send(child.local, ActorInit(ActorRef(name, self.node), spec["init"], spec["restarts"]))
        return child

    def _op_start_actor(self, sender, req, cls_path, name, init, restart):
        if restart not in RESTART_POLICIES:
            raise errors.RaError(f"restart must be one of {', '.join(RESTART_POLICIES)}, not {restart!r}")
        if not isinstance(name, str) or not name:
            raise errors.RaError(f"an actor name is a non-empty string, not {name!r}")
        if name in self.actors:
            raise errors.ActorAlreadyExists(f"actor {name} already runs on node {self.node}")
        cls = load_actor_class(cls_path, self.node)
        spec = {"cls": cls_path, "init": init, "restart": restart, "restarts": 0}
        try:
            self._spawn_actor(name, cls, spec)
        except Exception as exc:  # noqa: BLE001 - Thespian refused to create it
            raise errors.ActorClassError(f"node {self.node}: actor {cls_path!r} cannot be created: "
                                         f"{type(exc).__name__}: {exc}") from None
        log(self.who, f"actor {name} ({cls_path}, {restart}) started")
        return ActorRef(name, self.node)

    def _op_stop_actor(self, sender, req, name):
        from .supervisor import _DEFER
        child = self.actors.get(name)
        if child is None:
            raise errors.NoSuchActor(f"no actor {name} runs on node {self.node}")
        if child.status == "exited":
            # a permanent actor waiting for its restart: it stays down
            del self.actors[name]
            log(self.who, f"actor {name} stopped (it was waiting for a restart)")
            return ("ok", None)
        child.waiters.append((sender, req))
        if child.status != "stopping":
            child.status = "stopping"
            self.send(child.local, ActorExitRequest())
        return _DEFER

    def _op_send_actor(self, sender, req, name, msg):
        child = self.actors.get(name)
        if child is None or child.status != "running":
            raise errors.NoSuchActor(f"no actor {name} runs on node {self.node}")
        self.send(child.local, msg)
        return ("ok", None)

    def _op_actors(self, sender, req):
        return {name: _status(c) for name, c in self.actors.items()}

    def _actors_overview(self):
        return {name: {"class": c.config["cls"], "status": _status(c), "restart": c.config["restart"],
                       "restarts": c.config["restarts"], "incarnation": c.incarnation}
                for name, c in self.actors.items()}

    def _actor_exited(self, child, prev):
        """Hook: ``ChildActorExited`` of an actor child (``prev``: its status
        before).  Fire Down, answer stop requests, restart a permanent actor."""
        if self.actors.get(child.name) is not child:
            return
        stopped = prev == "stopping"
        reason = "normal" if stopped else "killed"
        self._fire_down(ActorRef(child.name, self.node), child.watchers, reason)
        child.watchers = []
        for who, req in child.waiters:
            self.send(who, SupResponse(req, ("ok", None)))
        child.waiters = []
        if stopped or child.config["restart"] != "permanent":
            del self.actors[child.name]
            log(self.who, f"actor {child.name} exited ({reason})")
            return
        now = time.time()
        while child.restarts and now - child.restarts[0] > self.settings["restart_period"]:
            child.restarts.popleft()
        if len(child.restarts) >= self.settings["max_restarts"]:
            del self.actors[child.name]
            log(self.who, f"actor {child.name} exited too often; not restarting it")
            return
        child.restarts.append(now)
        delay = 0.0 if len(child.restarts) <= 1 else min(1.0, 0.05 * 2 ** len(child.restarts))
        log(self.who, f"actor {child.name} exited ({reason}); restarting in {delay:.2f}s")
        if delay:
            self.wakeupAfter(delay, ("restart_actor", child.name, id(child)))
        else:
            self._restart_actor(child.name, id(child))

    def _restart_actor(self, name, child_id):
        child = self.actors.get(name)
        if child is None or id(child) != child_id or child.status != "exited":
            return
        spec = dict(child.config)
        spec["restarts"] += 1
        try:
            cls = load_actor_class(spec["cls"], self.node)
            self._spawn_actor(name, cls, spec, old=child)
        except Exception:  # noqa: BLE001
            log_exc(self.who, f"actor {name} cannot be restarted")
            if self.actors.get(name) is child:
                del self.actors[name]

    # ------------------------------------------------------------- delivery
    def _on_actor_send(self, msg: ActorSend, sender):
        ref = msg.ref
        if ref.node == self.node:
            child = self.actors.get(ref.name)
            if child is not None and child.status == "running":
                self.send(child.local, msg.msg)
            else:
                log(self.who, f"message for {ref} dropped: no such actor runs")
            return
        st = self.nodes.get(ref.node)
        if st is not None and st.up:
            self.send(st.info.sup, msg)
        else:
            log(self.who, f"message for {ref} dropped: node {ref.node} is {'down' if st else 'unknown'}")

    # ------------------------------------------------ monitors and directory
    def _watch_actor(self, msg):
        child = self.actors.get(msg.target.name)
        if child is None or child.status not in ("running", "stopping"):
            self.send(msg.watcher, WatchDown(msg.target, "noproc", msg.ref))
        else:
            child.watchers.append((msg.watcher, msg.ref))

    def _unwatch_actor(self, msg):
        child = self.actors.get(msg.target.name)
        if child is not None:
            child.watchers = [w for w in child.watchers if not (w[0] == msg.watcher and w[1] == msg.ref)]

    def _lookup_actor(self, key, req):
        child = self.actors.get(key.name)
        if child is not None and child.status == "running":
            return LookupReply(key, child.local, child.incarnation, req, "running")
        return LookupReply(key, None, 0, req, "starting" if child is not None else "unknown")


def _status(child) -> str:
    return "restarting" if child.status == "exited" else child.status
