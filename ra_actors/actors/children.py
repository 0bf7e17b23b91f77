"""A supervisor's children: what it runs, and which Thespian child exited.

Rules:

* A :class:`Child` is one incarnation of something the supervisor runs: a
  server, a storage service (WAL, segment writer, snapshot writer; the host
  actor in placement ``shared``) or an actor a client started.  A restart
  makes a new ``Child`` that inherits the old one's restart history.
* Only a parent hears that a Thespian child exited (``ChildActorExited``),
  so :class:`ChildActors` keeps every actor the supervisor created and
  finds the one an exit is about.  Servers in placement ``shared`` are not
  Thespian children (they live in the host actor) and are not in it.
* What is restarted after a crash, and when, is the node's
  :class:`~.restart_policy.RestartPolicy` (``NodeContext.restart_policy``);
  its history is the child's ``restarts``.
"""
from __future__ import annotations

from collections import deque
from typing import Any

from .node_context import BatchWaiter, NodeContext, Waiter

# Child.status values
STARTING = "starting"
RUNNING = "running"
STOPPING = "stopping"    # asked to stop; its exit is normal
DELETING = "deleting"    # asked to stop; its data goes once it has exited
EXITED = "exited"        # gone (a crashed child may be waiting for its restart)


class Child:
    """One incarnation of a supervised thing (see the module rules)."""

    __slots__ = ("kind", "name", "local", "addr", "incarnation", "status", "config", "waiters",
                 "restarts", "exit_reason", "new", "storage_crash", "halted", "storage_wait",
                 "then_restart", "wal")

    def __init__(self, kind: str, name: str, local: Any) -> None:
        self.kind = kind          # "server" | "wal" ("wal:1", ...) | "segment_writer" | "snapshot_writer" | "actor"
        self.name = name
        self.local = local        # the address createActor returned
        self.addr: Any = None     # its own address, once it said it runs
        self.incarnation = 0
        self.status = STARTING
        self.config: Any = None   # what a restart needs (ServerConfig, an actor's spec)
        self.waiters: list[Waiter | BatchWaiter] = []   # requests answered when it runs or exits
        self.restarts: deque[float] = deque()   # times of its recent restarts (RestartPolicy)
        self.exit_reason: Any = None            # what it said before it exited (a crash, a start error)
        self.new = False          # a server created by start_server (not recovered)
        # The node's storage (storage_supervision): it crashed on a StorageError;
        # it halted because the storage is in error; it waits for the storage
        # to come back before it starts; it is stopped to be started again.
        self.storage_crash = False
        self.halted = False
        self.storage_wait = False
        self.then_restart = False
        self.wal: int | None = None   # a server: the node's WAL it writes to (its index in wal_dirs)

    def matches(self, addr: Any) -> bool:
        return (self.local is not None and self.local == addr) or (self.addr is not None and self.addr == addr)

    def inherit(self, old: "Child") -> None:
        """Take over the restart history of the incarnation before."""
        self.restarts = old.restarts

    def answer_waiters(self, ctx: NodeContext, value: Any = None, error: tuple | None = None) -> None:
        for waiter in self.waiters:
            if isinstance(waiter, BatchWaiter):
                if error is None:
                    waiter.started(self.name, self.incarnation, self.addr)
                else:
                    waiter.failed(self.name, error)
                waiter.answer_if_done(ctx)
            elif error is None:
                ctx.reply(waiter, value)
            else:
                ctx.reply_error(waiter, error)
        self.waiters = []


class ChildActors:
    """The Thespian children of the supervisor, to match their exits."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.children: list[Child] = []

    def spawn(self, kind: str, name: str, actor_class: Any) -> Child:
        child = Child(kind, name, self.ctx.create_child(actor_class))
        self.children.append(child)
        return child

    def pop_exited(self, addr: Any) -> Child | None:
        """The child whose exit ``ChildActorExited`` reports, no longer
        tracked; None if it is not ours (or was already reported)."""
        for child in self.children:
            if child.matches(addr):
                self.children.remove(child)
                return child
        return None
