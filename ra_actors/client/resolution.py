"""Which server answers a call, and what to do when it does not.

A call names one server; the answer may come from another (the leader).
:meth:`Resolver.call` sends one ``ClientCall`` at a time and follows the
answers until a result, an error or the call's deadline.

Rules (the retry policy):

* **Addresses.**  A server's address comes from its node's directory
  (``Lookup``, at most 2 s per ask) and is cached in the address book; a
  send that is refused or unanswered, or a ``Misdelivered`` /
  ``Unavailable("misdelivered")`` answer, drops it.  A node that does not
  answer the lookup is marked down.
* **Redirects.**  ``Redirect(leader)`` moves the call to ``leader``.  With
  no leader known, the call waits a little (50 ms more per attempt, at most
  300 ms) and tries another member of the cluster it has not tried yet;
  when it has tried them all, it starts over.  A call that must not be
  redirected (``redirect=False``: a local query, a server's own metrics)
  raises ``NotLeader`` instead.
* **Unknown clusters.**  Members come from the last ``members`` answer;
  for a cluster the client has not seen, a server of the same name on
  every known node (servers are usually named alike across their cluster).
* **Asked again.**  A query or other idempotent request is asked again
  after a third of the timeout (at least 1 s) without an answer.  A
  command without a session (``idempotent=False``) is never resent once it
  may have arrived: only a refused send proves it did not; otherwise the
  call waits for the answer until its deadline and then raises ``Timeout``
  ("unknown", not "not applied").
* **Session commands** (:meth:`Resolver.session_call`) are sent again, with
  the same number, until answered: after ``ATTEMPT_PATIENCE`` seconds
  without an answer (doubling up to ``MAX_PATIENCE``) to the next member,
  at once to a leader a redirect names, and after a ``SequenceGap``
  refusal (it was not applied).  Every attempt carries the same request
  id, so an answer to any of them ends the call.  ``Timeout`` then means
  only that no leader with a quorum answered in time.
* ``Unavailable`` (starting, a leader change in progress) is retried after
  50 ms.  Any ``Error`` is raised as its ``ra_actors.errors`` class
  (:mod:`.replies`).  Every call ends by its deadline at the latest.
* **Refusals.**  An ``Error`` marked ``refused`` (a server halted because
  its node's disk failed: ``StorageError``) did not take the request, so a
  call that may be redirected asks the other members, commands too.  Once
  every member refused, or at the deadline after a refusal, it raises the
  refusal (naming the disk's error) rather than ``Timeout``.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from .. import errors
from ..actors.protocol import ClientCall, ClientRequest, Lookup, MembersRequest
from ..core.types import Error, Ok, Redirect, ServerId, Unavailable
from .addresses import AddressBook
from .connection import Connection, Undelivered
from .discovery import Discovery
from .ids import server_id, server_id_or_none
from .replies import error_from

__all__ = ["Resolver"]

LOOKUP_PATIENCE = 2.0     # seconds a node's directory has to answer one lookup
CHANGE_RETRY = 0.05       # seconds between tries of a membership change that is not permitted yet
ATTEMPT_PATIENCE = 1.0    # seconds a session command waits for one attempt's answer (then doubles)
MAX_PATIENCE = 2.0
GAP_RETRY = 0.05          # seconds before a command refused SequenceGap goes again


class _Route:
    """Where one call stands: the server it names, the one it asks now,
    the ones it tried, and its deadline."""

    __slots__ = ("origin", "target", "tried", "attempt", "deadline", "timeout", "redirect", "refusals")

    def __init__(self, origin: ServerId, timeout: float, redirect: bool) -> None:
        self.origin = origin
        self.target = origin
        self.tried: set = set()
        self.refusals: dict = {}    # member -> the exception its refusal raises
        self.attempt = 0
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.redirect = redirect

    def left(self, cap: float) -> float:
        """Seconds to wait: ``cap``, or what is left if less."""
        return min(cap, max(0.0, self.deadline - time.monotonic()))


class Resolver:
    """Routes calls to servers (see the module rules)."""

    def __init__(self, conn: Connection, book: AddressBook, discovery: Discovery, handle: str) -> None:
        self.conn = conn
        self.book = book
        self.discovery = discovery
        self.handle = handle

    # ------------------------------------------------------------- addresses
    def resolve(self, sid: ServerId, deadline: float) -> Any:
        """The address of server ``sid`` (cached); None if its node is
        unreachable.  Raises ``NoSuchServer`` when its node says it does
        not run it."""
        cached = self.book.server(sid)
        if cached is not None:
            return cached
        addr = self.discovery.sup_address(sid.node, deadline)
        if addr is None:
            return None
        req = self.conn.next_id()
        remaining = max(0.1, deadline - time.monotonic())
        self.conn.send(addr, Lookup(sid, req), ("lookup", req), remaining)
        r = self.conn.wait(("lookup", req), min(deadline, time.monotonic() + LOOKUP_PATIENCE))
        if r is None or isinstance(r, Undelivered):
            self.book.mark_down(sid.node)
            return None
        if r.address is None:
            if r.status in ("unknown", "stopped"):
                raise errors.NoSuchServer(f"no server {sid.name} runs on node {sid.node}")
            return None
        self.book.set_server(sid, r.address, r.incarnation)
        return r.address

    def members_of(self, sid: ServerId) -> list:
        """``sid``'s cluster as this client knows it."""
        members = self.book.cluster_of(sid)
        if not members:
            # cluster unknown to this client: servers are usually named alike
            # on every node of their cluster
            members = [ServerId(sid.name, n) for n in sorted(self.book.nodes)]
        return list(members) or [sid]

    def other_member(self, sid: ServerId, current: ServerId, tried: set) -> ServerId | None:
        """A member of ``sid``'s cluster other than ``current`` and not yet tried."""
        for m in self.members_of(sid):
            if m != current and m not in tried:
                return m
        return None

    def _cluster_size(self, sid: ServerId) -> int:
        return len(self.book.cluster_of(sid) or (sid,))

    # ------------------------------------------------------------------ calls
    def call(self, sid: Any, request: ClientRequest, timeout: float, redirect: bool = True,
             idempotent: bool = True) -> tuple[Any, ServerId | None]:
        """Send ``request`` to server ``sid`` (following leader redirects) and
        return ``(value, leader)``."""
        route = _Route(server_id(sid), timeout, redirect)
        while True:
            remaining = route.deadline - time.monotonic()
            if remaining <= 0:
                if route.refusals:
                    raise list(route.refusals.values())[-1]
                raise errors.Timeout(f"{route.target} did not answer within {timeout}s")
            addr = self._address(route)
            if addr is None:
                self._unreachable(route)
                continue
            r = self._ask(addr, route, request, remaining, idempotent)
            if r is None or isinstance(r, Undelivered):
                self._unanswered(route)
                continue
            reply = r.result
            leader = server_id_or_none(r.leader)
            if isinstance(reply, Ok):
                return reply.value, leader
            if isinstance(reply, Redirect):
                self._redirected(route, server_id_or_none(reply.leader) or leader)
            elif isinstance(reply, Unavailable):
                if reply.reason == "misdelivered":
                    self.book.forget_server(route.target)   # its port now belongs to another server
                else:
                    self.conn.pump(route.left(0.05))
            elif isinstance(reply, Error) and reply.refused and route.redirect:
                self._refused(route, error_from(reply))
            else:
                raise error_from(reply)

    def session_call(self, sid: Any, request_for: Callable[[int], ClientRequest], timeout: float,
                     idle: Callable[[], None] | None = None) -> tuple[Any, ServerId | None]:
        """A session command to ``sid``'s cluster, sent until answered (see
        the rules): ``request_for(attempt)`` builds each attempt's request
        (0 for the first); ``idle`` runs between attempts."""
        route = _Route(server_id(sid), timeout, True)
        req = self.conn.next_id()
        attempt = 0
        patience = ATTEMPT_PATIENCE
        try:
            while True:
                remaining = route.deadline - time.monotonic()
                if remaining <= 0:
                    raise errors.Timeout(f"no leader of the cluster of {route.origin} answered within "
                                         f"{timeout}s")
                addr = self._address(route)
                if addr is None:
                    self._unreachable(route)
                    continue
                self.conn.send(addr, ClientCall(req, self.handle, request_for(attempt), route.target), req,
                               remaining)
                attempt += 1
                r = self.conn.wait(req, min(route.deadline, time.monotonic() + patience), keep=True)
                if r is None or isinstance(r, Undelivered):
                    if r is None:
                        patience = min(MAX_PATIENCE, patience * 2)
                    self._unanswered(route)
                    if idle is not None:
                        idle()
                    continue
                reply = r.result
                leader = server_id_or_none(r.leader)
                if isinstance(reply, Ok):
                    return reply.value, leader
                if isinstance(reply, Redirect):
                    self._redirected(route, server_id_or_none(reply.leader) or leader)
                elif isinstance(reply, Unavailable):
                    if reply.reason == "misdelivered":
                        self.book.forget_server(route.target)
                    else:
                        self.conn.pump(route.left(0.05))
                elif isinstance(reply, Error) and reply.kind == "SequenceGap":
                    # not applied: the commands before it had not arrived
                    self.conn.pump(route.left(GAP_RETRY))
                    if idle is not None:
                        idle()
                else:
                    raise error_from(reply)
        finally:
            self.conn.release(req)

    def _address(self, route: _Route) -> Any:
        try:
            return self.resolve(route.target, route.deadline)
        except errors.NoSuchServer:
            if route.target == route.origin:
                raise
            return None

    def _ask(self, addr: Any, route: _Route, request: ClientRequest, remaining: float, idempotent: bool) -> Any:
        """One attempt: the reply, :class:`Undelivered`, or None (no answer in time)."""
        req = self.conn.next_id()
        self.conn.send(addr, ClientCall(req, self.handle, request, route.target), req, remaining)
        if idempotent:
            attempt_deadline = min(route.deadline, time.monotonic() + max(1.0, route.timeout / 3))
        else:
            attempt_deadline = route.deadline
        r = self.conn.wait(req, attempt_deadline, keep=not idempotent)
        try:
            if isinstance(r, Undelivered) and not idempotent and not r.refused:
                # it may have arrived (only a refused connection proves it did
                # not): resending could apply it twice
                r = self.conn.wait(req, route.deadline)
                if r is None or isinstance(r, Undelivered):
                    raise errors.Timeout(f"{route.target} did not answer within {route.timeout}s")
        finally:
            self.conn.release(req)
        return r

    def _unreachable(self, route: _Route) -> None:
        """The target's node is down or does not know it: try another member."""
        nxt = self.other_member(route.origin, route.target, route.tried) if route.redirect else None
        route.tried.add(route.target)
        if nxt is not None:
            route.target = nxt
        else:
            self.conn.pump(route.left(0.1))
            if route.redirect and len(route.tried) >= self._cluster_size(route.origin):
                route.tried.clear()

    def _unanswered(self, route: _Route) -> None:
        """Refused (a dead address) or no answer in time (a query: ask again)."""
        self.book.forget_server(route.target)
        if route.redirect:
            route.tried.add(route.target)
            nxt = self.other_member(route.origin, route.target, route.tried)
            if nxt is not None:
                route.target = nxt

    def _refused(self, route: _Route, exc: errors.RaError) -> None:
        """The target did not take the request: ask another member; raise
        once every member refused."""
        route.refusals[route.target] = exc
        if all(m in route.refusals for m in self.members_of(route.origin)):
            raise exc
        route.tried.add(route.target)
        nxt = self.other_member(route.origin, route.target, route.tried)
        if nxt is not None:
            route.target = nxt
        else:
            self.conn.pump(route.left(0.1))
            route.tried.clear()

    def _redirected(self, route: _Route, leader: ServerId | None) -> None:
        if not route.redirect:
            raise errors.NotLeader(f"{route.target} is not the leader", leader=leader)
        if leader is not None and leader != route.target:
            route.target = leader
            return
        route.attempt += 1
        self.conn.pump(route.left(min(0.05 * route.attempt, 0.3)))
        route.tried.add(route.target)
        nxt = self.other_member(route.origin, route.target, route.tried)
        if nxt is not None:
            route.target = nxt
        elif len(route.tried) >= self._cluster_size(route.origin):
            route.tried.clear()

    def ask_many(self, asks: dict[Any, tuple[ServerId, ClientRequest]], deadline: float) -> dict[Any, Any]:
        """One attempt at each ``key: (server, request)``, all sent before
        any answer is awaited, with no redirect nor retry: ``key`` ->
        the ``ClientReply``, or None where the server was not reachable or
        did not answer by ``deadline`` (its cached address is dropped)."""
        out: dict[Any, Any] = dict.fromkeys(asks)
        sent = {}
        for key, (sid, request) in asks.items():
            try:
                addr = self.resolve(sid, deadline)
            except errors.NoSuchServer:
                addr = None
            if addr is None:
                continue
            req = self.conn.next_id()
            self.conn.send(addr, ClientCall(req, self.handle, request, sid), req,
                           max(0.1, deadline - time.monotonic()))
            sent[req] = (key, sid)
        for req, (key, sid) in sent.items():
            try:
                r = self.conn.wait(req, deadline)
            finally:
                self.conn.release(req)
            if r is None or isinstance(r, Undelivered) or (
                    isinstance(r.result, Unavailable) and r.result.reason == "misdelivered"):
                self.book.forget_server(sid)
            else:
                out[key] = r
        return out

    # ------------------------------------------------------- cluster helpers
    def retry_change(self, sid: Any, request: ClientRequest, timeout: float) -> tuple[Any, ServerId | None]:
        """A membership change, tried again while another one is in progress."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.call(sid, request, max(0.1, deadline - time.monotonic()))
            except errors.ClusterChangeNotPermitted:
                if time.monotonic() + CHANGE_RETRY >= deadline:
                    raise
                self.conn.pump(CHANGE_RETRY)

    def members(self, sid: Any, timeout: float) -> tuple[list[ServerId], ServerId | None]:
        """``(members, leader)`` as ``sid`` knows them (remembered as its cluster)."""
        (members, leader), via = self.call(sid, MembersRequest(), timeout, redirect=False)
        members = [ServerId(*m) for m in members]
        self.book.remember_cluster(members)
        return members, server_id_or_none(leader) or via
