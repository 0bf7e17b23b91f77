"""Finding the nodes, and asking a node's supervisor for something.

Rules:

* **Bootstrap.**  A client knows only admin addresses ``(host, port)`` (the
  seeds): only an admin has a fixed address.  It asks every seed's admin
  where its node's supervisor is (``locate_supervisor``), takes the first
  node whose supervisor runs, learns every node of the convention from it
  (``ListNodesRequest``) and registers its handle there
  (``RegisterClientRequest``: that node watches the client's process).
  Until some node answers it asks again, up to the connect timeout.
* **Refresh.**  A node marked down, or unknown, makes the client ask a node
  it believes up for the node table; if none answers (every node restarted
  while the client was idle), it asks the admins again, whose addresses do
  not change, and forgets the servers of every node whose supervisor it
  finds anew.
* **Supervisor calls.**  One request record (``SupervisorRequest``) under a
  fresh request id; a send that is not delivered, or not answered in
  time, marks the node down and is tried again, against the refreshed
  table, until the call's timeout; then ``Timeout``.  An error the
  supervisor answers is raised as the ``ra_actors.errors`` class it names.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import time
import uuid
from typing import Any

from .. import errors
from ..actors.protocol import ListNodesRequest, RegisterClientRequest, SupervisorLocation, SupervisorRequest
from ..actors.util import decode_error, make_client_handle
from .addresses import AddressBook
from .connection import Connection, Undelivered

__all__ = ["Discovery"]


class Discovery:
    """The nodes a client knows, and calls to their supervisors."""

    def __init__(self, conn: Connection, book: AddressBook, seeds: list[tuple[str, int]]) -> None:
        self.conn = conn
        self.book = book
        self.seeds = seeds
        self.handle: str | None = None     # the client's handle, once registered
        self.home: str | None = None       # the node it is registered on

    # ------------------------------------------------------------ bootstrap
    def bootstrap(self, timeout: float) -> str:
        """Find a node, learn the others, register a client handle there;
        returns the handle.  Raises ``AuthenticationFailed`` if a seed
        refuses the client's secret, ``Timeout`` if no node answers."""
        deadline = time.monotonic() + timeout
        self._check_secret(deadline)
        while time.monotonic() < deadline:
            found = self._locate(self.seeds, deadline)
            if found:
                return self._register(found[0], deadline)
        denied = self.conn.denied_by()
        if denied:
            raise errors.AuthenticationFailed(f"{', '.join(sorted(denied))} refused this client's cluster secret")
        raise errors.Timeout(f"no ra_actors node answered at {self.seeds} within {timeout}s")

    def _check_secret(self, deadline: float) -> None:
        """The handshake alone with the seeds, until one takes the secret:
        a seed that refuses it is ``AuthenticationFailed`` at once (rather
        than a timeout); an unreachable one is left to the bootstrap."""
        for seed in self.seeds:
            verdict = self.conn.check_secret(seed, max(0.2, min(2.0, deadline - time.monotonic())))
            if verdict == "ok":
                return
            if verdict == "denied":
                raise errors.AuthenticationFailed(f"the node at {seed[0]}:{seed[1]} refused this client's "
                                                  "cluster secret (another cookie file?)")
            if verdict == "bad":
                raise errors.AuthenticationFailed(f"{seed[0]}:{seed[1]} is not an ra_actors node holding this "
                                                  "client's cluster secret")

    def _register(self, info: SupervisorLocation, deadline: float) -> str:
        self.book.set_node(info.node, info.address, info.admin, True)
        try:
            self.refresh_nodes(info.node, deadline)
        except errors.Timeout:
            pass
        handle = make_client_handle(info.node, uuid.uuid4().hex[:16])
        try:
            import psutil
            ct = psutil.Process(os.getpid()).create_time()
        except Exception:  # pragma: no cover - the node then checks the pid alone
            ct = None
        self.sup_call(info.node, RegisterClientRequest(handle, os.getpid(), socket.gethostname(), ct),
                      max(0.5, deadline - time.monotonic()))
        self.handle = handle
        self.home = info.node
        return handle

    def _locate(self, admins: list, deadline: float, everyone: bool = False) -> list[SupervisorLocation]:
        """Ask each admin in ``admins`` where its supervisor is: the answers
        with a running supervisor that came first, within a second (with
        ``everyone``, all the answers that came within that second)."""
        nonces = []
        for admin in admins:
            nonce = ("c", self.conn.next_id())
            nonces.append(nonce)
            self.conn.locate_supervisor(admin, nonce, 2.0)
        end = min(deadline, time.monotonic() + 1.0)
        answered: dict = {}
        try:
            while True:
                for n in nonces:
                    r = self.conn.take(("where", n))
                    if r is not None:
                        answered[n] = r
                found = [r for r in answered.values() if r.address is not None]
                if found and (not everyone or len(answered) == len(nonces)):
                    return found
                if time.monotonic() >= end:
                    return found if everyone else []
                self.conn.pump(0.05)
        finally:
            self.conn.release(*[("where", n) for n in nonces])

    # -------------------------------------------------------------- refresh
    def refresh_nodes(self, via: str, deadline: float) -> None:
        table = self.sup_call(via, ListNodesRequest(), max(0.2, deadline - time.monotonic()))
        for name, (sup, admin, up) in table.items():
            self.book.set_node(name, sup, admin, up)

    def node_states(self) -> dict:
        """``{node: "up" | "down"}`` after asking the nodes."""
        self.refresh_any(time.monotonic() + 2.0)
        return {n: ("up" if e.up else "down") for n, e in self.book.nodes.items()}

    def refresh_any(self, deadline: float) -> bool:
        if self.refresh_known(deadline):
            return True
        # Every supervisor we knew is gone (e.g. all nodes restarted while we
        # were idle): ask the admins again, whose addresses do not change.
        return self.rediscover(deadline)

    def refresh_known(self, deadline: float) -> bool:
        for name, entry in list(self.book.nodes.items()):
            if not entry.up:
                continue
            try:
                self.refresh_nodes(name, min(deadline, time.monotonic() + 1.0))
                return True
            except (errors.Timeout, errors.NodeDown):
                entry.up = False
        return False

    def rediscover(self, deadline: float, everyone: bool = False) -> bool:
        admins = self.book.admins() | {tuple(s) for s in self.seeds}
        found = self._locate(sorted(admins), deadline, everyone)
        for r in found:
            self.book.set_node(r.node, r.address, r.admin, True)
            self.book.forget_servers_on(r.node)    # a new supervisor: its servers moved too
        if found:
            try:
                self.refresh_known(deadline)
            except errors.RaError:
                pass
        return bool(found)

    # ---------------------------------------------------- supervisor calls
    def sup_address(self, node: str, deadline: float) -> Any:
        """The address of ``node``'s supervisor; None if it is down.
        Raises ``NoSuchServer`` for a node no node knows."""
        entry = self.book.nodes.get(node)
        if entry is None or not entry.up:
            self.refresh_any(deadline)
            if node not in self.book.nodes:
                # The node that answered first may not know this node yet
                # (nodes that have just started): ask every admin once.
                self.rediscover(deadline, everyone=True)
            if node not in self.book.nodes:
                raise errors.NoSuchServer(f"unknown node {node!r}")
            entry = self.book.nodes.get(node)
            if entry is None or not entry.up:
                return None
        return entry.supervisor

    def sup_call(self, node: str, request: SupervisorRequest, timeout: float) -> Any:
        """Send ``request`` to ``node``'s supervisor (under a fresh request id)
        and return the value it answers, raising the error it answers."""
        op = type(request).__name__
        deadline = time.monotonic() + timeout
        while True:
            addr = self.sup_address(node, deadline)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise errors.Timeout(f"node {node} did not answer {op} within {timeout}s")
            if addr is None:
                self.conn.pump(min(0.2, remaining))
                continue
            req = self.conn.next_id()
            self.conn.send(addr, dataclasses.replace(request, req_id=req), req, remaining)
            r = self.conn.wait(req, deadline)
            if r is None or isinstance(r, Undelivered):
                if time.monotonic() >= deadline:
                    raise errors.Timeout(f"node {node} did not answer {op} within {timeout}s")
                self.book.mark_down(node)
                continue
            if r.error:
                raise decode_error(r.error)
            return r.value
