"""Actors started by clients under a node supervisor (``client.start_actor``).

Erlang and Ra users spawn processes and monitor them; here a client asks a
node's supervisor to create an instance of any Thespian ``Actor`` class
importable on that node.  The supervisor is the actor's parent, so Thespian
tells it when the actor ends (``ChildActorExited``), whatever the cause:
``stop_actor``, an exit of its own, a SIGKILL of its process.  The
supervisor turns that into ``WatchDown`` for every watcher, exactly as it
does for servers, so a machine's ``Monitor("process", ref)`` works for
actors too.

Rules:

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
  actor's node supervisor; a message for an actor on a node that is down
  is dropped (and logged).
* Actors are not persisted: they live as long as their node incarnation.
* :class:`UserActors` owns their lifecycle; their table is the directory's
  (``Directory.actors``: lookups answer from it), their watches are the
  monitors', their restarts follow the node's
  :class:`~.restart_policy.RestartPolicy`, the one servers follow.
"""
from __future__ import annotations

import dataclasses
import importlib
import time
from dataclasses import dataclass
from typing import Any

from thespian.actors import Actor, ActorExitRequest

from .. import errors
from ..core.types import ActorRef
from ..shell.names import ModulePolicy, NameRefused
from .children import EXITED, RUNNING, STOPPING, Child, ChildActors
from .directory import Directory
from .failure_detector import FailureDetector
from .monitors import Monitors
from .node_context import DEFERRED, NodeContext
from .protocol import (ActorInit, ActorSend, ListActorsRequest, SendToActorRequest, StartActorRequest,
                       StopActorRequest)
from .util import log, log_exc

ACTOR_KIND = "actor"
RESTART_POLICIES = ("temporary", "permanent")


def load_actor_class(path: str, node: str, policy: ModulePolicy):
    """Import ``"pkg.module:Class"`` if the node's ``policy`` allows the
    module, and check that it is a Thespian Actor class; raise
    ``ActorClassError`` (naming ``node``) otherwise, before importing
    anything the policy refuses."""
    try:
        # (Thespian creates the actor from "module.Class": only a
        # module-level class can be named)
        mod_name, attr = policy.actor_class(path)
    except NameRefused as exc:
        raise errors.ActorClassError(f"node {node}: actor class must be an allowed 'pkg.module:Class': "
                                     f"{exc}") from None
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




@dataclass(frozen=True, slots=True)
class ActorSpec:
    """What a client asked for, and what a restart repeats."""

    actor_class: str        # "pkg.module:Class"
    init: Any
    restart: str            # one of RESTART_POLICIES
    restarts: int = 0       # restarts so far (ActorInit.restarts)


@dataclass(frozen=True, slots=True)
class ActorRestartDue:
    """Wakeup payload: restart actor ``name`` if ``child_id`` is still its
    current, exited incarnation."""

    name: str
    child_id: int


class UserActors:
    """The actors clients started on this node (see the module rules)."""

    def __init__(self, ctx: NodeContext, children: ChildActors, directory: Directory,
                 monitors: Monitors, detector: FailureDetector) -> None:
        self.ctx = ctx
        self.children = children
        self.monitors = monitors
        self.detector = detector
        self.actors = directory.actors      # name -> current incarnation (the directory's table)

    # ------------------------------------------------------------- requests
    def start(self, request: StartActorRequest, sender: Any) -> ActorRef:
        node, name, restart = self.ctx.node, request.name, request.restart
        if restart not in RESTART_POLICIES:
            raise errors.RaError(f"restart must be one of {', '.join(RESTART_POLICIES)}, not {restart!r}")
        if not isinstance(name, str) or not name:
            raise errors.RaError(f"an actor name is a non-empty string, not {name!r}")
        if name in self.actors:
            raise errors.ActorAlreadyExists(f"actor {name} already runs on node {node}")
        actor_class = load_actor_class(request.actor_class, node, self.ctx.modules)
        try:
            self._spawn(name, actor_class, ActorSpec(request.actor_class, request.init, restart))
        except Exception as exc:  # noqa: BLE001 - Thespian refused to create it
            raise errors.ActorClassError(f"node {node}: actor {request.actor_class!r} cannot be created: "
                                         f"{type(exc).__name__}: {exc}") from None
        log(self.ctx.who, f"actor {name} ({request.actor_class}, {restart}) started")
        return ActorRef(name, node)

    def stop(self, request: StopActorRequest, sender: Any) -> Any:
        name = request.name
        child = self.actors.get(name)
        if child is None:
            raise errors.NoSuchActor(f"no actor {name} runs on node {self.ctx.node}")
        if child.status == EXITED:
            # a permanent actor waiting for its restart: it stays down
            del self.actors[name]
            log(self.ctx.who, f"actor {name} stopped (it was waiting for a restart)")
            return ("ok", None)
        child.waiters.append((sender, request.req_id))
        if child.status != STOPPING:
            child.status = STOPPING
            self.ctx.send(child.local, ActorExitRequest())
        return DEFERRED

    def send_to(self, request: SendToActorRequest, sender: Any) -> tuple:
        child = self.actors.get(request.name)
        if child is None or child.status != RUNNING:
            raise errors.NoSuchActor(f"no actor {request.name} runs on node {self.ctx.node}")
        self.ctx.send(child.local, request.msg)
        return ("ok", None)

    def list(self, request: ListActorsRequest, sender: Any) -> dict[str, str]:
        return {name: _status(c) for name, c in self.actors.items()}

    def overview(self) -> dict[str, dict[str, Any]]:
        return {name: {"class": c.config.actor_class, "status": _status(c), "restart": c.config.restart,
                       "restarts": c.config.restarts, "incarnation": c.incarnation,
                       "watchers": self.monitors.watchers(ActorRef(name, self.ctx.node))}
                for name, c in self.actors.items()}

    # ------------------------------------------------------------ lifecycle
    def _spawn(self, name: str, actor_class: type, spec: ActorSpec, old: Child | None = None) -> Child:
        child = self.children.spawn(ACTOR_KIND, name, actor_class)
        if old is not None:
            child.inherit(old)
        child.config = spec
        child.incarnation = time.time_ns() // 1000
        child.status = RUNNING
        self.actors[name] = child
        self.ctx.send(child.local, ActorInit(ActorRef(name, self.ctx.node), spec.init, spec.restarts))
        return child

    def exited(self, child: Child, prev: str) -> None:
        """``ChildActorExited`` of an actor (``prev``: its status before):
        fire Down, answer stop requests, restart a permanent actor."""
        if self.actors.get(child.name) is not child:
            return
        stopped = prev == STOPPING
        reason = "normal" if stopped else "killed"
        self.monitors.fire(ActorRef(child.name, self.ctx.node), reason)
        child.answer_waiters(self.ctx, ("ok", None))
        if stopped or child.config.restart != "permanent":
            del self.actors[child.name]
            log(self.ctx.who, f"actor {child.name} exited ({reason})")
            return
        delay = self.ctx.restart_policy.next_delay(child.restarts)
        if delay is None:
            del self.actors[child.name]
            log(self.ctx.who, f"actor {child.name} exited too often; not restarting it")
            return
        log(self.ctx.who, f"actor {child.name} exited ({reason}); restarting in {delay:.2f}s")
        due = ActorRestartDue(child.name, id(child))
        if delay:
            self.ctx.wakeup_after(delay, due)
        else:
            self.restart_due(due)

    def restart_due(self, due: ActorRestartDue) -> None:
        child = self.actors.get(due.name)
        if child is None or id(child) != due.child_id or child.status != EXITED:
            return
        spec = dataclasses.replace(child.config, restarts=child.config.restarts + 1)
        try:
            self._spawn(due.name, load_actor_class(spec.actor_class, self.ctx.node, self.ctx.modules), spec, old=child)
        except Exception:  # noqa: BLE001 - the class may no longer import
            log_exc(self.ctx.who, f"actor {due.name} cannot be restarted")
            if self.actors.get(due.name) is child:
                del self.actors[due.name]

    # ------------------------------------------------------------- delivery
    def on_actor_send(self, msg: ActorSend, sender: Any) -> None:
        ref = msg.ref
        if ref.node == self.ctx.node:
            child = self.actors.get(ref.name)
            if child is not None and child.status == RUNNING:
                self.ctx.send(child.local, msg.msg)
            else:
                log(self.ctx.who, f"message for {ref} dropped: no such actor runs")
            return
        sup = self.detector.supervisor_of(ref.node)
        if sup is not None:
            self.ctx.send(sup, msg)
        else:
            state = "down" if self.detector.knows(ref.node) else "unknown"
            log(self.ctx.who, f"message for {ref} dropped: node {ref.node} is {state}")


def _status(child: Child) -> str:
    return "restarting" if child.status == EXITED else child.status
