"""Pipelined commands: numbered, buffered per stream, sent in batches, sent
again until answered, answered by events -- each exactly once.

Rules:

* ``pipeline_command`` numbers the command in its stream (:mod:`.sessions`)
  and buffers it.  A stream's buffer leaves when it holds ``batch`` commands
  or the oldest buffered command waited ``delay`` seconds, at the latest on
  the client's next flush (``flush()``, ``events()``, any synchronous call,
  ``close()``): one ``Pipeline`` message carries every buffered command of
  a stream, sent to the server the stream believes leads.
* On the wire a command's correlation is a *ticket*, a number of this
  client's own; the caller's correlation stays here.  The leader's
  ``Applied`` results are translated back, and a ticket answered twice (a
  command sent twice and answered from the cluster's reply cache, a message
  the transport repeated) is handed out once: the caller sees exactly one
  ``Applied`` result per command.  A command given without a correlation
  is numbered and followed the same way, and its result is not handed out.
* **Sent again** (same number, so applied at most once): a command a
  server rejects ``not_leader`` goes to the leader it names (another
  member if it names none); a ``SequenceGap`` refusal, or a stream with
  outstanding commands that heard nothing for ``PATIENCE`` seconds, sends
  every outstanding command of the stream again, in order (after silence
  to the next member: the one it asked may be paused or gone); a
  ``Pipeline`` the transport gave up on goes to the next member.  A
  ``Rejected(not_leader)`` is therefore never handed out.
* **Given up**: a command outstanding for ``timeout`` seconds (the
  client's ``pipeline_timeout``; None: never) without an answer is no
  longer sent and the caller gets ``TimedOut(correlation)``: no quorum
  answered, the command may or may not have been applied.  A refusal
  other than ``SequenceGap`` -- of its session (``SessionExpired``) or of
  the command itself (``InvalidCommand``, ``CommandTooLarge``) -- ends the
  command too (not applied) and is handed out as ``Rejected(server,
  SessionRefused(kind, correlation))`` or ``Rejected(server,
  CommandRefused(kind, correlation))``; the stream's later commands,
  which the leader holds for the refused number, go again at once with the
  new ``low``.
* Resends happen while the client runs (``flush``, ``events``, any call):
  a client that is not called does not resend.
"""
from __future__ import annotations

import itertools
import time
from typing import Any, Callable

from .. import errors
from .. import events as ev
from ..actors.protocol import Pipeline, PipelinedColumns
from ..core.types import ServerId
from .connection import Connection
from .ids import server_id_or_none
from .resolution import Resolver
from .sessions import Session, Stream

__all__ = ["Pipeliner", "PATIENCE"]

SEND_TIMEOUT = 10.0     # seconds Thespian may take to deliver a batch before giving up
PATIENCE = 2.0          # seconds of silence after which a stream's outstanding commands go again
TICK = 0.1              # seconds between two looks for silent streams


class _Pending:
    """One pipelined command until it is answered or given up."""

    __slots__ = ("ticket", "sid", "stream", "seq", "correlation", "notify", "data", "priority", "added", "sent",
                 "to")

    def __init__(self, ticket: int, sid: ServerId, stream: Stream, seq: int, correlation: Any, notify: bool,
                 data: Any, priority: str, added: float) -> None:
        self.ticket = ticket
        self.sid = sid
        self.stream = stream
        self.seq = seq
        self.correlation = correlation
        self.notify = notify            # the caller gave a correlation: hand the result out
        self.data = data
        self.priority = priority
        self.added = added
        self.sent = 0
        self.to: ServerId | None = None     # where it was sent last


class _Route:
    """Where a stream's commands go, and what waits to go again."""

    __slots__ = ("target", "tried", "heard", "again", "all_again")

    def __init__(self, target: ServerId, now: float) -> None:
        self.target = target
        self.tried: set = set()
        self.heard = now                # last answer (or first send after quiet)
        self.again: list[_Pending] = []  # rejected: to send to the new target
        self.all_again = False          # send every outstanding command again


class Pipeliner:
    """One client's pipelined commands (see the module rules)."""

    def __init__(self, conn: Connection, resolver: Resolver, handle: str, session: Session, batch: int,
                 delay: float, timeout: float | None = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.conn = conn
        self.resolver = resolver
        self.handle = handle
        self.session = session
        self.batch = batch
        self.delay = delay
        self.timeout = timeout
        self._tickets: dict[int, _Pending] = {}
        self._numbers = itertools.count(1)
        self._buffers: dict[ServerId, list[_Pending]] = {}
        self._routes: dict[ServerId, _Route] = {}
        self._since: float | None = None    # when the oldest buffered command was added
        self._next_tick = 0.0
        conn.event_filter = self.on_event

    # ------------------------------------------------------------- adding
    def add(self, sid: ServerId, data: Any, correlation: Any, priority: str, seq: int | None = None) -> int:
        """Number and buffer a command for stream ``sid`` (``seq``: an earlier
        client's number, see :mod:`.sessions`); flush if a batch is full or
        due.  Returns the command's number."""
        now = self.clock()
        stream = self.session.streams.get(sid)
        if stream is None:
            stream = self.session.stream(sid, time.time_ns() // 1000)
        ticket = next(self._numbers)
        seq = stream.issue(ticket) if seq is None else stream.claim(seq, ticket)
        p = _Pending(ticket, sid, stream, seq, correlation, correlation is not None, data, priority, now)
        self._tickets[ticket] = p
        buf = self._buffers.setdefault(sid, [])
        buf.append(p)
        if self._since is None:
            self._since = now
        if len(buf) >= self.batch or now - self._since >= self.delay:
            self.flush()
        return seq

    def outstanding(self) -> int:
        """Commands neither answered nor given up."""
        return len(self._tickets)

    # ------------------------------------------------------------ sending
    def flush(self, timeout: float = 2.0) -> None:
        """Send every buffered command now (one message per stream), and
        what waits to go again."""
        now = self.clock()
        if now >= self._next_tick:
            self._next_tick = now + TICK
            self._look_for_silence(now)
        if not self._buffers and not any(r.again or r.all_again for r in self._routes.values()):
            return
        deadline = now + timeout
        buffers, self._buffers = self._buffers, {}
        self._since = None
        for sid, route in self._routes.items():
            if route.all_again or route.again:
                self._send_again(sid, route, deadline)
        for sid, cmds in buffers.items():
            if cmds and cmds[0].stream.blocked():
                # own commands wait behind an earlier client's (see .sessions)
                keep = [p for p in cmds if p.seq >= p.stream.first_own]
                cmds = [p for p in cmds if p.seq < p.stream.first_own]
                if keep:
                    self._buffers[sid] = keep
                    self._since = self._since or now
            if cmds:
                self._send(sid, self._route(sid, now), cmds, deadline)
        self.conn.pump(0.0)

    def _route(self, sid: ServerId, now: float) -> _Route:
        route = self._routes.get(sid)
        if route is None:
            route = self._routes[sid] = _Route(sid, now)
        return route

    def _send(self, sid: ServerId, route: _Route, cmds: list, deadline: float) -> None:
        live = [p for p in cmds if p.ticket in self._tickets]
        if not live:
            return
        try:
            addr = self.resolver.resolve(route.target, deadline)
        except errors.NoSuchServer:
            addr = None
        if addr is None:
            # its node is down: the next member, now or on the next flush
            self._next_member(sid, route)
            route.again.extend(live)
            return
        stream = live[0].stream
        if len(stream.outstanding) <= len(live):
            route.heard = self.clock()      # nothing else outstanding: silence starts now
        low = stream.low()
        tickets, datas, priorities, seqs, knowns = [], [], [], [], []
        target = route.target
        # (stream.known, with the batch's low: nothing settles while it is built)
        seen, first_own = stream.seen_applied, stream.first_own
        for p in live:
            seq = p.seq
            if p.sent or seq < first_own:
                known = seen or seq < first_own
            else:
                known = seen and low < seq
            tickets.append(p.ticket)
            datas.append(p.data)
            priorities.append(p.priority)
            seqs.append(seq)
            knowns.append(known)
            p.sent += 1
            p.to = target
        columns = PipelinedColumns(tuple(tickets), tuple(datas), tuple(priorities), stream.key, tuple(seqs), low,
                                   tuple(knowns))
        self.conn.send_untracked(addr, Pipeline(self.handle, columns, route.target), SEND_TIMEOUT,
                                 self._undelivered(sid, route.target, live))

    def _send_again(self, sid: ServerId, route: _Route, deadline: float) -> None:
        if route.all_again:
            route.all_again = False
            route.again = []
            stream = self.session.streams.get(sid)
            tickets = self._tickets
            # (never sent: still buffered, they leave with their batch)
            cmds = [tickets[t] for _s, t in sorted(stream.outstanding.items())
                    if t in tickets and tickets[t].sent] if stream else []
        else:
            unique = {p.ticket: p for p in route.again}
            cmds, route.again = sorted(unique.values(), key=lambda p: p.seq), []
        if cmds:
            self._send(sid, route, cmds, deadline)

    def _next_member(self, sid: ServerId, route: _Route) -> None:
        route.tried.add(route.target)
        nxt = self.resolver.other_member(sid, route.target, route.tried)
        if nxt is None:
            route.tried = set()
            nxt = self.resolver.other_member(sid, route.target, route.tried) or sid
        route.target = nxt

    def _undelivered(self, sid: ServerId, target: ServerId, cmds: list) -> Callable[[bool], None]:
        def undelivered(_refused: bool) -> None:
            # (called from inside a receive: only note what to do)
            self.conn.book.forget_server(target)
            route = self._routes.get(sid)
            if route is not None:
                if route.target == target:
                    self._next_member(sid, route)
                route.again.extend(p for p in cmds if p.ticket in self._tickets)
        return undelivered

    def _look_for_silence(self, now: float) -> None:
        """Streams that heard nothing for PATIENCE: everything outstanding
        goes again, to the next member; what waited ``timeout`` is given up."""
        for sid, route in self._routes.items():
            stream = self.session.streams.get(sid)
            if stream is None or not stream.outstanding or now - route.heard < PATIENCE:
                continue
            route.heard = now
            if self.timeout is not None:
                self._give_up(stream, now - self.timeout, route.target)
            if stream.outstanding:
                self._next_member(sid, route)
                route.all_again = True

    def _give_up(self, stream: Stream, before: float, server: ServerId) -> None:
        for seq, ticket in list(stream.outstanding.items()):
            p = self._tickets.get(ticket)
            if p is not None and p.added < before:
                self._end(p)
                if p.notify:
                    self.conn.events.append(ev.TimedOut(server, p.correlation))

    def _end(self, p: _Pending) -> None:
        del self._tickets[p.ticket]
        p.stream.settle(p.seq)

    # ------------------------------------------------------------- events
    def on_event(self, e: Any) -> Any:
        """The connection's event filter: what the caller sees of ``e``."""
        if type(e) is ev.Applied:
            return self._applied(e)
        if type(e) is ev.Rejected:
            return self._rejected(e)
        return e

    def _applied(self, e: ev.Applied) -> Any:
        tickets = self._tickets
        out = []
        heard: set = set()          # the streams that heard from the cluster
        last = None
        for item in e.results:
            try:
                ticket, reply = item
                p = tickets.pop(ticket, None)
            except (TypeError, ValueError):
                continue
            if p is None:
                continue            # answered before (see the rules), or not ours
            stream = p.stream
            stream.settle(p.seq)
            stream.seen_applied = True
            if p.sid is not last:
                last = p.sid
                heard.add(last)
            if p.notify:
                out.append((p.correlation, reply))
        if heard:
            now = self.clock()
            leader = server_id_or_none(e.leader)
            for sid in heard:
                route = self._routes.get(sid)
                if route is not None:
                    route.heard = now
                    route.tried = set()
                    if leader is not None:
                        route.target = leader
        return ev.Applied(e.leader, out) if out else None

    def _rejected(self, e: ev.Rejected) -> Any:
        reason = e.reason
        try:
            p = self._tickets.get(reason.correlation)
        except (AttributeError, TypeError):
            return None
        if p is None:
            return None
        route = self._routes.get(p.sid)
        if isinstance(reason, ev.NotLeader):
            server = server_id_or_none(e.server)
            if route is not None and server is not None and p.to == server:
                # Everything sent there is turned away too: it all goes
                # now (the rejections still on their way find the commands
                # sent elsewhere, and change nothing).
                leader = server_id_or_none(reason.leader)
                if leader is not None and leader != server:
                    route.target = leader
                elif route.target == server:
                    self._next_member(p.sid, route)
                tickets = self._tickets
                for t in p.stream.outstanding.values():
                    q = tickets.get(t)
                    if q is not None and q.to == server:
                        q.to = None             # (queued: its own rejection changes nothing)
                        route.again.append(q)
            return None
        if isinstance(reason, ev.SessionRefused) and reason.kind == "SequenceGap":
            if route is not None:
                route.all_again = True
            return None
        self._end(p)
        if route is not None and any(seq > p.seq for seq in p.stream.outstanding):
            # the commands after it wait at the leader for a number that will
            # not come: sent again now, with the new low, they go on at once
            route.all_again = True
        if not p.notify:
            return None
        if isinstance(reason, (ev.SessionRefused, ev.CommandRefused)):
            return ev.Rejected(e.server, type(reason)(reason.kind, p.correlation))
        return ev.Rejected(e.server, ev.CommandRefused("InvalidCommand", p.correlation))
