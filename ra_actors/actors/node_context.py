"""What every part of a node's supervisor shares: the node's identity and
settings, the actor they run in, and how a request is answered.

Rules:

* One :class:`NodeContext` per ``NodeSupervisor``, made with the actor and
  filled in once, by ``SupervisorInit`` (:meth:`NodeContext.configure`).
  The parts (:mod:`.supervision`, :mod:`.directory`, :mod:`.monitors`, ...)
  read it when they need a value and never copy its fields, so there is one
  truth about the node's name, incarnation and settings.
* The parts reach the actor only through :class:`ActorOps` (send, wake up
  later, create a child): none of them is an actor or knows the others'
  actor.  The Thespian internals below ``Actor.send`` are
  :mod:`.transmit`'s alone.
* A request handler (one per :class:`~.protocol.SupervisorRequest` type)
  returns the value to answer, raises an ``ra_actors.errors`` exception to
  answer an error, or returns :data:`DEFERRED` after keeping the requester
  as a :data:`Waiter`; whoever finishes the job answers the waiter with
  :meth:`NodeContext.reply` or :meth:`NodeContext.reply_error`.
"""
from __future__ import annotations

import os
from typing import Any, Final, Protocol

from ..shell.names import ModulePolicy, node_modules
from .protocol import SupResponse
from .restart_policy import RestartPolicy
from .storage_health import STORAGE_SETTINGS, StoragePolicy

SUPERVISOR_DEFAULTS: dict[str, float] = {
    "heartbeat_interval": 0.4,    # seconds between heartbeats to each live node (3 per down verdict)
    "node_down_after": 1.2,       # silence before a node is declared down
    "probe_interval": 1.0,        # how often down/unknown nodes are probed
    "client_check_interval": 0.5,
    "max_restarts": 10,           # restart intensity: at most this many ...
    "restart_period": 10.0,       # ... within this many seconds
    **STORAGE_SETTINGS,           # storage faults: back-off, error state, probes (storage_health)
}

PLACEMENTS = ("process", "shared")
"""``process``: one actor process per server (Ra's one Erlang process per
server).  ``shared``: one host actor per node carries every server of the
node and the node's WAL (:mod:`ra_actors.actors.host`)."""

Waiter = tuple[Any, Any]
"""``(address, req_id)`` of a requester whose answer comes later."""


class BatchWaiter:
    """The requester of one request about several servers (a
    ``StartServersRequest``): each server's outcome is kept, and the
    requester is answered once, when the last of them is known, with a
    tuple in the request's order of ``("ok", incarnation, address)`` or
    ``("error", encoded error)``."""

    __slots__ = ("waiter", "order", "results", "on_done", "ident")

    def __init__(self, waiter: Waiter, names: list[str], on_done: Any = None, ident: int = 0) -> None:
        self.waiter = waiter
        self.order = list(names)
        self.results: dict[str, tuple] = {}
        self.on_done = on_done      # called once answered
        self.ident = ident          # the owner's name for it (a timer's payload)

    def started(self, name: str, incarnation: Any, address: Any) -> None:
        self.results.setdefault(name, ("ok", incarnation, address))

    def failed(self, name: str, error: tuple) -> None:
        self.results.setdefault(name, ("error", error))

    def answer_if_done(self, ctx: "NodeContext") -> None:
        if self.waiter is not None and len(self.results) >= len(self.order):
            ctx.reply(self.waiter, tuple(self.results[n] for n in self.order))
            self.waiter = None
            if self.on_done is not None:
                self.on_done()


class _Deferred:
    def __repr__(self) -> str:
        return "DEFERRED"


DEFERRED: Final = _Deferred()
"""Returned by a request handler that answers later (it kept a waiter)."""


class ActorOps(Protocol):
    """The part of a Thespian ``Actor`` the supervisor's parts use."""

    myAddress: Any

    def send(self, targetAddr: Any, msg: Any) -> None: ...

    def wakeupAfter(self, timePeriod: Any, payload: Any = None) -> Any: ...

    def createActor(self, actorClass: Any, targetActorRequirements: Any = None,
                    globalName: Any = None, sourceHash: Any = None) -> Any: ...


class NodeContext:
    """The node's identity and settings, and the actor's operations."""

    def __init__(self, actor: ActorOps, node: str | None) -> None:
        self.actor = actor
        self.node = node
        self.incarnation = 0
        self.data_dir = ""
        self.settings: dict[str, float] = dict(SUPERVISOR_DEFAULTS)
        self.restart_policy = RestartPolicy.from_settings(self.settings)
        self.storage_policy = StoragePolicy.from_settings(self.settings)
        self.server_settings: dict[str, Any] = {}
        self.modules = ModulePolicy()          # what names from the network may import (shell/names.py)
        self.log_options: dict[str, Any] = {}
        self.wal_dirs: tuple[str, ...] = ()    # the node's WAL directories, in order (never empty once configured)
        self.placement = "process"
        self.admin_hostport: tuple[str, int] = ("", 0)
        # The node's counters file (ra_actors.metrics.block.CountersFile):
        # created by the supervisor at start, None if it could not be.
        self.counters: Any = None
        # After ActorExitRequest the children's exits are the node stopping:
        # nothing is restarted and nobody is told.
        self.exiting = False

    def configure(self, cfg: dict) -> None:
        """Take the node's configuration (``SupervisorInit.cfg``)."""
        placement = cfg.get("placement") or "process"
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
        self.node = cfg["name"]
        self.incarnation = int(cfg["incarnation"])
        self.data_dir = cfg["data_dir"]
        self.settings = dict(SUPERVISOR_DEFAULTS)
        self.settings.update({k: v for k, v in (cfg.get("settings") or {}).items()
                              if k in SUPERVISOR_DEFAULTS})
        self.restart_policy = RestartPolicy.from_settings(self.settings)
        self.storage_policy = StoragePolicy.from_settings(self.settings)
        self.server_settings = dict(cfg.get("server_settings") or {})
        self.modules = ModulePolicy(node_modules(cfg.get("allowed_modules")))
        self.log_options = dict(cfg.get("log") or {})
        self.wal_dirs = tuple(str(d) for d in (cfg.get("wal_dirs") or [os.path.join(self.data_dir, "wal")]))
        self.placement = placement
        self.admin_hostport = (cfg["host"], int(cfg["port"]))

    @property
    def who(self) -> str:
        return f"supervisor {self.node}"

    @property
    def shared(self) -> bool:
        """Placement ``shared``: the node's servers live in its host actor."""
        return self.placement == "shared"

    @property
    def my_address(self) -> Any:
        return self.actor.myAddress

    def send(self, to: Any, msg: Any) -> None:
        self.actor.send(to, msg)

    def wakeup_after(self, seconds: float, payload: Any) -> None:
        self.actor.wakeupAfter(seconds, payload)

    def create_child(self, actor_class: Any) -> Any:
        """A new child actor of the supervisor, placed on this node."""
        return self.actor.createActor(actor_class, {"ra_node": self.node})

    def reply(self, waiter: Waiter, value: Any) -> None:
        who, req_id = waiter
        self.send(who, SupResponse(req_id, value))

    def reply_error(self, waiter: Waiter, error: tuple) -> None:
        """``error``: ``util.encode_error``'s ``(class name, message, extra)``."""
        who, req_id = waiter
        self.send(who, SupResponse(req_id, None, error))
