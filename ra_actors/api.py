"""The client API: ``ra_actors.connect(...)`` or ``nodes.client()``.

A :class:`Client` talks to the nodes' supervisors and server actors over
Thespian's TCP transport from the caller's process (it never starts an
admin).  It registers a *client handle* (``client.handle``, a string) on the
node it first reached; machines may monitor that handle
(``Monitor("process", handle)``): when the client process dies its node's
supervisor notices and the machine receives ``Down(handle, reason)``.
``client.start_actor`` starts any Thespian actor class under a node's
supervisor and returns an ``ActorRef`` that machines may monitor and send
to in the same way.

Every call takes a ``timeout`` (seconds) and raises
:class:`ra_actors.errors.Timeout` when it expires, never hangs.  Bad input
raises before anything is sent (``InvalidCommand`` for values msgpack cannot
encode).  A Client is not thread-safe: use one per thread.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import re
import socket
import time
import uuid
from collections import deque
from datetime import timedelta

from . import codec, errors
from . import events as ev
from .core.types import (ERROR_KINDS, NON_VOTER, PROMOTABLE, VOTER, ActorRef, Error, Ok, Redirect, ServerConfig,
                         ServerId, Unavailable)
from .actors.protocol import (AddMemberRequest, Bundle, CheckMachineRequest, ClientCall, ClientReply,
                              CommandRequest, DeleteClusterRequest, ForceDeleteServerRequest, KeyMetricsRequest,
                              ListActorsRequest, ListNodesRequest, Lookup, LookupReply, MemberOverviewRequest,
                              MembersRequest, Misdelivered, OverviewRequest, Pipeline, PipelinedCommand,
                              QueryRequest, RegisterClientRequest, RemoveMemberRequest, RestartServerRequest,
                              SendToActorRequest, StartActorRequest, StartServerRequest, StopActorRequest,
                              StopServerRequest, SupervisorRequest, SupResponse, TransferLeadershipRequest,
                              TriggerElectionRequest, UnregisterClientRequest)
from .actors.util import decode_error, make_client_handle

__all__ = ["Client", "connect"]

DEFAULT_TIMEOUT = 5.0
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def connect(addresses, timeout: float = 10.0, **kw) -> "Client":
    """Connect to the nodes reachable through ``addresses``: one ``(host, port)``
    admin address (e.g. the convention leader's) or a list of them."""
    if isinstance(addresses, tuple) and len(addresses) == 2 and isinstance(addresses[1], int):
        addresses = [addresses]
    return Client([tuple(a) for a in addresses], timeout=timeout, **kw)


def _local_ip_for(host: str) -> str:
    if host in ("127.0.0.1", "localhost") or host.startswith("127."):
        return "127.0.0.1"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((host, 9))
        return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        s.close()


def _raise_transmit_limits() -> None:
    """The node's Thespian transmit limits (``node_main.thespian_transmit_env``)
    for this process too, unless its environment sets them: with Thespian's
    default of 20 pending sends, a client pipelining to a silent node would
    make every other send wait behind them.  (The module reads them into
    globals at import, which may already have happened.)"""
    from thespian.system.transport import asyncTransportBase as atb
    from .actors.node_main import MAX_PENDING_TRANSMITS
    if "THESPIAN_MAX_PENDING_TRANSMITS" not in os.environ:
        atb.MAX_PENDING_TRANSMITS = max(atb.MAX_PENDING_TRANSMITS, MAX_PENDING_TRANSMITS)


class _Endpoint:
    """A Thespian TCP endpoint in this process (no admin)."""

    def __init__(self, local_ip: str):
        from .actors import netpatch
        netpatch.apply()
        _raise_transmit_limits()
        old = os.environ.get("THESPIAN_BASE_IPADDR")
        os.environ["THESPIAN_BASE_IPADDR"] = local_ip
        try:
            from thespian.system.transport import ExternalInterfaceTransportInit
            from thespian.system.transport.IPBase import thisSystem
            from thespian.system.transport.TCPTransport import TCPTransport
            thisSystem.add_local_addr(local_ip)
            self.transport = TCPTransport(ExternalInterfaceTransportInit(),
                                          {"Convention Address.IPv4": (local_ip, 1)}, None, None)
        finally:
            if old is None:
                os.environ.pop("THESPIAN_BASE_IPADDR", None)
            else:
                os.environ["THESPIAN_BASE_IPADDR"] = old
        self.address = self.transport.myAddress
        self.local_ip = local_ip

    # -- the direct stream to host actors (placement "shared") -----------------
    # A host that gets a ClientCall or Pipeline through Thespian offers its
    # stream endpoint (StreamOffer); the client connects (in a thread) and
    # from then on sends its calls and pipelines to that host, and gets the
    # replies and events, on the connection: two Thespian hops fewer per
    # synchronous command.  Whenever there is no live connection the
    # Thespian transport carries them, as before.
    stream = None

    def _dial(self, addr, endpoint):
        if self.stream is None:
            from .actors.stream import StreamHub
            self.stream = StreamHub(self.local_ip, self.address, listen=False)
            self._stream_in = deque()
        self.stream.dial(addr, endpoint)

    def send(self, addr, msg, timeout: float, on_error=None, on_success=None):
        if self.stream is not None and type(msg) in (ClientCall, Pipeline) and self.stream.send(addr, msg):
            return
        from thespian.system.transport import TransmitIntent
        intent = TransmitIntent(addr, msg, onSuccess=on_success, onError=on_error,
                                maxPeriod=timedelta(seconds=max(0.5, timeout)))
        self.transport.scheduleTransmit(None, intent)

    def receive(self, timeout: float):
        """The next incoming message (or None when ``timeout`` passes)."""
        from thespian.actors import WatchMessage
        from thespian.system.transport import ReceiveEnvelope, Thespian__UpdateWork
        from .actors.protocol import Bundle, StreamOffer
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            if self.stream is not None:
                if self._stream_in:
                    return self._stream_in.popleft()
                self.transport.set_watch(self.stream.fds())
            remaining = max(0.0, deadline - time.monotonic())
            r = self.transport.run(None, timedelta(seconds=remaining))
            if isinstance(r, ReceiveEnvelope):
                msg = r.message
                if isinstance(msg, WatchMessage):
                    if self.stream is not None:
                        for _peer, m in self.stream.on_ready(msg.ready):
                            self._stream_in.extend(m.msgs if isinstance(m, Bundle) else (m,))
                    continue
                if isinstance(msg, StreamOffer):
                    self._dial(r.sender, msg.endpoint)
                    continue
                return msg
            if isinstance(r, Thespian__UpdateWork):
                continue
            if time.monotonic() >= deadline:
                return None

    def close(self):
        if self.stream is not None:
            self.stream.close()
        try:
            self.transport.close()
        except Exception:  # pragma: no cover
            pass


class Client:
    """A connection to a set of ra_actors nodes (see the module doc)."""

    def __init__(self, seeds, timeout: float = 10.0, pipeline_batch: int = 256,
                 pipeline_delay: float = 0.005):
        if not seeds:
            raise ValueError("connect needs at least one (host, port) address")
        self._seeds = [(str(h), int(p)) for h, p in seeds]
        self._ep = _Endpoint(_local_ip_for(self._seeds[0][0]))
        self._req = itertools.count(1)
        self._replies: dict = {}
        self._events: deque = deque()
        self._failed: dict = {}           # req_id -> transmit failure
        self._nodes: dict = {}            # name -> [sup address, admin, up]
        self._servers: dict = {}          # ServerId -> (address, incarnation)
        self._clusters: dict = {}         # ServerId -> tuple of members
        self._pipe: dict = {}             # ServerId -> [PipelinedCommand]
        self._pipe_since = None
        self.pipeline_batch = pipeline_batch
        self.pipeline_delay = pipeline_delay
        self._closed = False
        self.handle = None
        self._home = None
        try:
            self._bootstrap(timeout)
        except BaseException:
            self._ep.close()
            raise

    # ============================================================ plumbing
    def _next(self):
        return next(self._req)

    def _dispatch(self, msg):
        from .actors.admin import RaSupervisorInfo
        if isinstance(msg, (ClientReply, SupResponse)):
            self._replies[msg.req_id] = msg
        elif isinstance(msg, LookupReply):
            self._replies[("lookup", msg.req)] = msg
        elif isinstance(msg, RaSupervisorInfo):
            self._replies[("where", msg.nonce)] = msg
        elif isinstance(msg, ev.Applied):
            if not isinstance(msg.results, list):   # (msgpack on a stream gives tuples)
                msg = ev.Applied(msg.leader, list(msg.results))
            self._events.append(msg)
        elif isinstance(msg, (ev.Rejected, ev.Message)):
            self._events.append(msg)
        elif isinstance(msg, Misdelivered):
            self._servers.pop(_sid(msg.to), None)
        elif isinstance(msg, Bundle):      # a host's replies and events, sent together
            for inner in msg.msgs:
                self._dispatch(inner)

    def _pump(self, timeout: float = 0.0):
        msg = self._ep.receive(timeout)
        while msg is not None:
            self._dispatch(msg)
            msg = self._ep.receive(0.0)

    def _wait(self, key, deadline: float):
        """The reply stored under ``key``, or None at ``deadline`` (or when the
        request could not be delivered)."""
        while True:
            if key in self._replies:
                return self._replies.pop(key)
            if key in self._failed:
                return _Undelivered(self._failed.pop(key))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            msg = self._ep.receive(min(remaining, 0.5))
            if msg is not None:
                self._dispatch(msg)

    def _send(self, addr, msg, key, timeout):
        def failed(result, intent, key=key):
            self._failed[key] = result
        self._ep.send(addr, msg, timeout, on_error=failed)

    # ================================================================ nodes
    def _bootstrap(self, timeout):
        from .actors.admin import RaWhereIsSupervisor
        from .actors.util import admin_address
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            nonces = []
            for seed in self._seeds:
                nonce = ("c", self._next())
                nonces.append(nonce)
                self._send(admin_address(*seed), RaWhereIsSupervisor(nonce), ("where", nonce), 2.0)
            end = min(deadline, time.monotonic() + 1.0)
            info = None
            while time.monotonic() < end and info is None:
                for n in nonces:
                    r = self._replies.pop(("where", n), None)
                    if r is not None and r.address is not None:
                        info = r
                        break
                if info is None:
                    self._pump(0.05)
            if info is not None:
                self._nodes[info.node] = [info.address, tuple(info.admin), True]
                try:
                    self._refresh_nodes(info.node, deadline)
                except errors.Timeout:
                    pass
                handle = make_client_handle(info.node, uuid.uuid4().hex[:16])
                try:
                    import psutil
                    ct = psutil.Process(os.getpid()).create_time()
                except Exception:  # pragma: no cover
                    ct = None
                self._sup_call(info.node, RegisterClientRequest(handle, os.getpid(), socket.gethostname(), ct),
                               max(0.5, deadline - time.monotonic()))
                self.handle = handle
                self._home = info.node
                return
        raise errors.Timeout(f"no ra_actors node answered at {self._seeds} within {timeout}s")

    def _refresh_nodes(self, via: str, deadline: float):
        table = self._sup_call(via, ListNodesRequest(), max(0.2, deadline - time.monotonic()))
        for name, (sup, admin, up) in table.items():
            self._nodes[name] = [sup, tuple(admin), bool(up)]

    def nodes(self) -> dict:
        """``{node: "up" | "down"}`` as the nodes see each other."""
        self._refresh_any(time.monotonic() + 2.0)
        return {n: ("up" if e[2] else "down") for n, e in self._nodes.items()}

    def _refresh_any(self, deadline):
        if self._refresh_known(deadline):
            return True
        # Every supervisor we knew is gone (e.g. all nodes restarted while we
        # were idle): ask the admins again, whose addresses do not change.
        return self._rediscover(deadline)

    def _refresh_known(self, deadline) -> bool:
        for name, entry in list(self._nodes.items()):
            if not entry[2]:
                continue
            try:
                self._refresh_nodes(name, min(deadline, time.monotonic() + 1.0))
                return True
            except (errors.Timeout, errors.NodeDown):
                entry[2] = False
        return False

    def _rediscover(self, deadline) -> bool:
        from .actors.admin import RaWhereIsSupervisor
        from .actors.util import admin_address
        admins = {tuple(e[1]) for e in self._nodes.values() if e[1]} | {tuple(s) for s in self._seeds}
        nonces = []
        for admin in sorted(admins):
            nonce = ("c", self._next())
            nonces.append(nonce)
            self._send(admin_address(*admin), RaWhereIsSupervisor(nonce), ("where", nonce), 2.0)
        end = min(deadline, time.monotonic() + 1.0)
        found = False
        while time.monotonic() < end and not found:
            for n in nonces:
                r = self._replies.pop(("where", n), None)
                if r is not None and r.address is not None:
                    self._nodes[r.node] = [r.address, tuple(r.admin), True]
                    self._servers = {sid: v for sid, v in self._servers.items() if sid.node != r.node}
                    found = True
            if not found:
                self._pump(0.05)
        if found:
            try:
                self._refresh_known(deadline)
            except errors.RaError:
                pass
        return found

    def _sup_address(self, node, deadline):
        entry = self._nodes.get(node)
        if entry is None or not entry[2]:
            if not self._refresh_any(deadline) or node not in self._nodes:
                if node not in self._nodes:
                    raise errors.NoSuchServer(f"unknown node {node!r}")
            entry = self._nodes.get(node)
            if entry is None or not entry[2]:
                return None
        return entry[0]

    def _sup_call(self, node, request: SupervisorRequest, timeout=DEFAULT_TIMEOUT):
        """Send ``request`` to ``node``'s supervisor (under a fresh request id)
        and return the value it answers, raising the error it answers."""
        op = type(request).__name__
        deadline = time.monotonic() + timeout
        while True:
            addr = self._sup_address(node, deadline)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise errors.Timeout(f"node {node} did not answer {op} within {timeout}s")
            if addr is None:
                self._pump(min(0.2, remaining))
                continue
            req = self._next()
            self._send(addr, dataclasses.replace(request, req_id=req), req, remaining)
            r = self._wait(req, deadline)
            if r is None or isinstance(r, _Undelivered):
                if time.monotonic() >= deadline:
                    raise errors.Timeout(f"node {node} did not answer {op} within {timeout}s")
                self._nodes.get(node, [None, None, True])[2] = False
                continue
            if r.error:
                raise decode_error(r.error)
            return r.value

    # ============================================================== servers
    def _resolve(self, sid: ServerId, deadline):
        """Address of server ``sid`` (cached), None if its node is unreachable.
        Raises NoSuchServer when its node says it does not run it."""
        cached = self._servers.get(sid)
        if cached is not None:
            return cached[0]
        addr = self._sup_address(sid.node, deadline)
        if addr is None:
            return None
        req = self._next()
        remaining = max(0.1, deadline - time.monotonic())
        self._send(addr, Lookup(sid, req), ("lookup", req), remaining)
        r = self._wait(("lookup", req), min(deadline, time.monotonic() + 2.0))
        if r is None or isinstance(r, _Undelivered):
            self._nodes[sid.node][2] = False
            return None
        if r.address is None:
            if r.status in ("unknown", "stopped"):
                raise errors.NoSuchServer(f"no server {sid.name} runs on node {sid.node}")
            return None
        self._servers[sid] = (r.address, r.incarnation)
        return r.address

    def _call(self, sid, request, timeout, redirect=True, idempotent=True):
        """Send ``request`` (a ClientRequest) to server ``sid`` (following leader redirects) and
        return ``(value, leader)``."""
        sid = _sid(sid)
        deadline = time.monotonic() + timeout
        target = sid
        tried = set()
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise errors.Timeout(f"{target} did not answer within {timeout}s")
            try:
                addr = self._resolve(target, deadline)
            except errors.NoSuchServer:
                if target == sid:
                    raise
                addr = None
            if addr is None:
                nxt = self._other_member(sid, target, tried) if redirect else None
                tried.add(target)
                if nxt is not None:
                    target = nxt
                else:
                    self._pump(min(0.1, max(0.0, deadline - time.monotonic())))
                    if redirect and len(tried) >= len(self._clusters.get(sid, (sid,))):
                        tried.clear()
                continue
            req = self._next()
            self._send(addr, ClientCall(req, self.handle, request, target), req, remaining)
            attempt_deadline = deadline if not idempotent else min(deadline, time.monotonic() + max(1.0, timeout / 3))
            r = self._wait(req, attempt_deadline)
            if isinstance(r, _Undelivered) and not idempotent and not r.refused:
                # it may have arrived (only a refused connection proves it did
                # not): resending could apply it twice
                r = self._wait(req, deadline)
                if r is None or isinstance(r, _Undelivered):
                    raise errors.Timeout(f"{target} did not answer within {timeout}s")
            if r is None or isinstance(r, _Undelivered):
                # refused (a dead address), or no answer in time (a query: ask again)
                self._servers.pop(target, None)
                if redirect:
                    tried.add(target)
                    nxt = self._other_member(sid, target, tried)
                    if nxt is not None:
                        target = nxt
                continue
            reply = r.result
            leader = _sid_or_none(r.leader)
            if isinstance(reply, Ok):
                return reply.value, leader
            if isinstance(reply, Redirect):
                leader = _sid_or_none(reply.leader) or leader
                if not redirect:
                    raise errors.NotLeader(f"{target} is not the leader", leader=leader)
                if leader is not None and leader != target:
                    target = leader
                else:
                    attempt += 1
                    self._pump(min(0.05 * attempt, 0.3, max(0.0, deadline - time.monotonic())))
                    tried.add(target)
                    nxt = self._other_member(sid, target, tried)
                    if nxt is not None:
                        target = nxt
                    elif len(tried) >= len(self._clusters.get(sid, (sid,))):
                        tried.clear()
                continue
            if isinstance(reply, Unavailable):
                if reply.reason == "misdelivered":
                    self._servers.pop(target, None)   # its port now belongs to another server
                else:
                    self._pump(min(0.05, max(0.0, deadline - time.monotonic())))
                continue
            raise _error_from(reply)

    def _other_member(self, sid, current, tried):
        members = self._clusters.get(sid)
        if not members:
            # cluster unknown to this client: servers are usually named alike
            # on every node of their cluster
            members = [ServerId(sid.name, n) for n in sorted(self._nodes)]
        for m in members:
            if m != current and m not in tried:
                return m
        return None

    def _remember_cluster(self, members):
        members = tuple(_sid(m) for m in members)
        for m in members:
            self._clusters[m] = members

    # ============================================================ commands
    def process_command(self, server_id, command, timeout: float = DEFAULT_TIMEOUT):
        """Apply ``command`` through the leader and return ``(reply, leader)``."""
        data = codec.normalise(command)
        self.flush()
        reply, leader = self._call(server_id, CommandRequest(data), timeout,
                                   idempotent=False)
        return reply, leader

    def pipeline_command(self, server_id, command, correlation=None, priority: str = "normal"):
        """Send ``command`` without waiting; the leader answers with an
        ``Applied`` event carrying ``correlation`` (``events()``), or a
        non-leader with ``Rejected``.  Commands are coalesced: they leave at
        the latest on the next ``flush()``/``events()``/synchronous call."""
        if priority not in ("normal", "low"):
            raise ValueError("priority is 'normal' or 'low'")
        data = codec.normalise(command)
        if correlation is not None:
            # the form every leader will answer with (also one that read it from disk)
            correlation = codec.normalise(correlation)
        sid = _sid(server_id)
        buf = self._pipe.setdefault(sid, [])
        buf.append(PipelinedCommand(correlation, data, priority))
        now = time.monotonic()
        if self._pipe_since is None:
            self._pipe_since = now
        if len(buf) >= self.pipeline_batch or now - self._pipe_since >= self.pipeline_delay:
            self.flush()

    def flush(self, timeout: float = 2.0):
        """Send every pipelined command still buffered (one message per server)."""
        if not self._pipe:
            return
        pipe, self._pipe = self._pipe, {}
        self._pipe_since = None
        deadline = time.monotonic() + timeout
        for sid, cmds in pipe.items():
            try:
                addr = self._resolve(sid, deadline)
            except errors.NoSuchServer:
                addr = None
            if addr is None:
                for c in cmds:
                    if c.correlation is not None:
                        self._events.append(ev.Rejected(sid, ev.NotLeader(None, c.correlation)))
                continue
            notify = tuple(c for c in cmds if c.correlation is not None)
            fire = tuple(c.data for c in cmds if c.correlation is None)
            if notify:
                self._ep.send(addr, Pipeline(self.handle, notify, sid), 10.0,
                              on_error=self._pipeline_failed(sid, notify))
            for data in fire:
                self._ep.send(addr, ClientCall(self._next(), self.handle,
                                               CommandRequest(data, "noreply"), sid), 10.0)
        self._pump(0.0)

    def _pipeline_failed(self, sid, cmds):
        def failed(result, intent):
            self._servers.pop(sid, None)
            for c in cmds:
                self._events.append(ev.Rejected(sid, ev.NotLeader(None, c.correlation)))
        return failed

    def events(self, timeout: float = 1.0) -> list:
        """Events received so far (``Applied``, ``Rejected``, ``Message``);
        waits up to ``timeout`` seconds for the first one."""
        self.flush()
        deadline = time.monotonic() + timeout
        self._pump(0.0)
        while not self._events:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._pump(min(remaining, 0.5))
        out = list(self._events)
        self._events.clear()
        return out

    # ============================================================== queries
    def _query(self, kind, server_id, fun, args, timeout, redirect):
        if not isinstance(fun, str) or ":" not in fun:
            raise errors.InvalidCommand(f"queries name a function as 'module:function', got {fun!r}")
        args = codec.normalise(tuple(args))
        self.flush()
        return self._call(server_id, QueryRequest(kind, fun, args), timeout, redirect=redirect)

    def local_query(self, server_id, fun: str, *args, timeout: float = DEFAULT_TIMEOUT):
        """``fun(state, *args)`` on ``server_id`` itself: ``((index, term), value), leader``."""
        return self._query("local", server_id, fun, args, timeout, redirect=False)

    def leader_query(self, server_id, fun: str, *args, timeout: float = DEFAULT_TIMEOUT):
        """``fun(state, *args)`` on the leader: ``((index, term), value), leader``."""
        return self._query("leader", server_id, fun, args, timeout, redirect=True)

    def consistent_query(self, server_id, fun: str, *args, timeout: float = DEFAULT_TIMEOUT):
        """Linearizable ``fun(state, *args)`` (ReadIndex on the leader): ``value, leader``."""
        return self._query("consistent", server_id, fun, args, timeout, redirect=True)

    # =========================================================== membership
    def members(self, server_id, timeout: float = DEFAULT_TIMEOUT):
        """``(members, leader)`` of the cluster of ``server_id``."""
        (members, leader), via = self._call(server_id, MembersRequest(), timeout, redirect=False)
        members = [ServerId(*m) for m in members]
        self._remember_cluster(members)
        return members, _sid_or_none(leader) or via

    def add_member(self, server_id, new_server, membership: str = VOTER, timeout: float = DEFAULT_TIMEOUT):
        """Add ``new_server`` to the cluster (start it with ``start_server``)."""
        if membership not in (VOTER, NON_VOTER, PROMOTABLE):
            raise ValueError(f"membership is one of {VOTER}, {NON_VOTER}, {PROMOTABLE}")
        new_server = _sid(new_server)
        result = self._retry_change(server_id, AddMemberRequest(new_server, membership), timeout)
        members = tuple(self._clusters.get(_sid(server_id), (_sid(server_id),)))
        if new_server not in members:
            self._remember_cluster(members + (new_server,))
        return result

    def remove_member(self, server_id, old_server, timeout: float = DEFAULT_TIMEOUT):
        old_server = _sid(old_server)
        result = self._retry_change(server_id, RemoveMemberRequest(old_server), timeout)
        members = tuple(m for m in self._clusters.get(_sid(server_id), ()) if m != old_server)
        if members:
            self._remember_cluster(members)
        return result

    def _retry_change(self, server_id, request, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._call(server_id, request, max(0.1, deadline - time.monotonic()))
            except errors.ClusterChangeNotPermitted:
                if time.monotonic() + 0.05 >= deadline:
                    raise
                self._pump(0.05)

    def transfer_leadership(self, server_id, target, timeout: float = DEFAULT_TIMEOUT):
        """Ask the leader to hand over to ``target``; returns once ``target``
        leads (or raises Timeout)."""
        target = _sid(target)
        deadline = time.monotonic() + timeout
        value, leader = self._call(server_id, TransferLeadershipRequest(target), timeout)
        if value == "already_leader":
            return "already_leader", leader
        while time.monotonic() < deadline:
            try:
                _m, leader = self.members(target, timeout=max(0.1, min(1.0, deadline - time.monotonic())))
            except errors.Timeout:
                continue
            if leader == target:
                return "ok", leader
            self._pump(0.05)
        raise errors.Timeout(f"leadership did not move to {target} within {timeout}s")

    def trigger_election(self, server_id, timeout: float = DEFAULT_TIMEOUT):
        self._call(server_id, TriggerElectionRequest(), timeout, redirect=False)

    def key_metrics(self, server_id, timeout: float = DEFAULT_TIMEOUT) -> dict:
        value, _leader = self._call(server_id, KeyMetricsRequest(), timeout, redirect=False)
        return value

    def member_overview(self, server_id, timeout: float = DEFAULT_TIMEOUT) -> dict:
        value, _leader = self._call(server_id, MemberOverviewRequest(), timeout, redirect=False)
        return value

    def overview(self, node: str, timeout: float = DEFAULT_TIMEOUT) -> dict:
        """The node's view: its servers, the nodes it sees, its services."""
        return self._sup_call(node, OverviewRequest(), timeout)

    # ============================================================ lifecycle
    def start_cluster(self, cluster_name: str, machine: str, server_ids, config: dict | None = None,
                      timeout: float = 30.0, **server_config):
        """Start a new cluster of ``server_ids`` running ``machine`` (an import
        path) and elect a leader.  Returns ``(started, not_started)``.

        Raises ``ServerAlreadyExists`` (duplicate ids, or an id already used),
        ``MachineError`` (the machine does not import on a node; nothing is
        started), ``ClusterNotFormed`` (no leader within ``timeout``; the
        servers that started are deleted again)."""
        sids = [_sid(s) for s in server_ids]
        if not sids:
            raise ValueError("start_cluster needs at least one server id")
        if len(set(sids)) != len(sids):
            dups = sorted({str(s) for s in sids if sids.count(s) > 1})
            raise errors.ServerAlreadyExists(f"duplicate server ids: {', '.join(dups)}")
        if not isinstance(machine, str) or not machine:
            raise errors.MachineError(f"machine must be an import path, not {machine!r}")
        config = dict(config or {})
        codec.pack(config)
        deadline = time.monotonic() + timeout
        nodes = sorted({s.node for s in sids})
        reachable = []
        for node in nodes:
            try:
                self._sup_call(node, CheckMachineRequest(machine),
                               max(0.2, min(5.0, deadline - time.monotonic())))
                reachable.append(node)
            except (errors.Timeout, errors.NodeDown):
                continue
        started, not_started = [], []
        pending = {}
        for sid in sids:
            if sid.node not in reachable:
                not_started.append(sid)
                continue
            cfg = self._server_config(cluster_name, machine, sid, sids, config, server_config)
            addr = self._sup_address(sid.node, deadline)
            if addr is None:
                not_started.append(sid)
                continue
            req = self._next()
            self._send(addr, StartServerRequest(cfg, req_id=req), req, max(0.5, deadline - time.monotonic()))
            pending[req] = sid
        first_error = None
        for req, sid in pending.items():
            r = self._wait(req, deadline)
            if r is None or isinstance(r, _Undelivered):
                not_started.append(sid)
            elif r.error:
                not_started.append(sid)
                first_error = first_error or decode_error(r.error)
            else:
                started.append(sid)
        if first_error is not None or len(started) < len(sids) // 2 + 1:
            self._cleanup(started, deadline)
            if first_error is not None:
                raise first_error
            raise errors.ClusterNotFormed(f"only {len(started)} of {len(sids)} servers started")
        self._remember_cluster(sids)
        try:
            self._elect(started, deadline)
        except errors.Timeout:
            self._cleanup(started, time.monotonic() + 10.0)
            raise errors.ClusterNotFormed(f"cluster {cluster_name} elected no leader within {timeout}s") from None
        return started, not_started

    def _server_config(self, cluster_name, machine, sid, members, config, extra, joining=False):
        uid = f"{_SAFE.sub('_', cluster_name)[:60]}_{_SAFE.sub('_', sid.name)[:60]}_{uuid.uuid4().hex[:12]}"
        return ServerConfig(server_id=sid, uid=uid, cluster_name=cluster_name, machine=machine,
                            initial_members=tuple(members), machine_config=dict(config),
                            joining=joining, **extra)

    def _elect(self, started, deadline):
        self._call(started[0], TriggerElectionRequest(), max(0.5, deadline - time.monotonic()), redirect=False)
        next_trigger = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            for sid in started:
                try:
                    _m, leader = self.members(sid, timeout=max(0.1, min(1.0, deadline - time.monotonic())))
                except (errors.Timeout, errors.NoSuchServer):
                    continue
                if leader is not None:
                    return leader
            self._pump(0.05)
            if time.monotonic() > next_trigger:
                next_trigger = time.monotonic() + 2.0
                try:
                    self._call(started[0], TriggerElectionRequest(), 1.0, redirect=False)
                except errors.RaError:
                    pass
        raise errors.Timeout("no leader")

    def _cleanup(self, sids, deadline):
        for sid in sids:
            try:
                self.force_delete_server(sid, timeout=max(0.5, deadline - time.monotonic()))
            except errors.RaError:
                pass

    def start_server(self, cluster_name: str, machine: str, server_id, members, config: dict | None = None,
                     timeout: float = 10.0, **server_config):
        """Start one server to join a running cluster (then ``add_member``).

        ``members`` names the cluster's current members.  The new server
        takes its configuration from the leader's log or snapshot only: until
        the leader has replicated the change that adds it, it neither
        campaigns nor counts votes (a member list given here was never in
        any log, so trusting it could elect a leader without committed
        entries)."""
        sid = _sid(server_id)
        config = dict(config or {})
        codec.pack(config)
        members = [_sid(m) for m in members]
        if sid not in members:
            members = members + [sid]
        cfg = self._server_config(cluster_name, machine, sid, members, config, server_config, joining=True)
        self._sup_call(sid.node, StartServerRequest(cfg), timeout)
        return sid

    def restart_server(self, server_id, timeout: float = 10.0):
        sid = _sid(server_id)
        self._servers.pop(sid, None)
        self._sup_call(sid.node, RestartServerRequest(sid.name), timeout)

    def stop_server(self, server_id, timeout: float = 10.0):
        sid = _sid(server_id)
        self._servers.pop(sid, None)
        self._sup_call(sid.node, StopServerRequest(sid.name), timeout)

    def force_delete_server(self, server_id, timeout: float = 10.0):
        sid = _sid(server_id)
        self._servers.pop(sid, None)
        self._sup_call(sid.node, ForceDeleteServerRequest(sid.name), timeout)

    def delete_cluster(self, server_ids, timeout: float = 10.0):
        """Delete the cluster (replicated: every member removes its data once
        the deletion is applied; the machine sees ``state_enter("eol")``)."""
        sids = [_sid(s) for s in server_ids]
        self._remember_cluster(sids)
        deadline = time.monotonic() + timeout
        _v, leader = self._call(sids[0], DeleteClusterRequest(), timeout)
        # wait until every member is gone (best effort within the timeout)
        for sid in sids:
            while time.monotonic() < deadline:
                self._servers.pop(sid, None)
                try:
                    if self._resolve(sid, deadline) is None:
                        break
                except errors.NoSuchServer:
                    break
                self._pump(0.05)
        return leader

    # =============================================================== actors
    def start_actor(self, node: str, actor_class: str, name: str | None = None, init=None,
                    restart: str = "temporary", timeout: float = DEFAULT_TIMEOUT) -> ActorRef:
        """Start an instance of the Thespian ``Actor`` class ``actor_class``
        (``"pkg.module:Class"``, importable on ``node``) as a child of
        ``node``'s supervisor; return its ``ActorRef``.

        Its first message is ``ActorInit(ref, init, restarts)``.  Machines
        can monitor the ref (``Monitor("process", ref)`` -> ``Down(ref,
        reason)``) and send to it (``SendMsg(ref, msg)``).  ``restart``:
        ``"temporary"`` (never restarted) or ``"permanent"`` (restarted by
        the supervisor within its restart intensity; every exit still fires
        ``Down``).  ``name`` defaults to a unique one.

        Raises ``ActorAlreadyExists`` (``name`` is alive on ``node``),
        ``ActorClassError`` (the class does not import on the node or is not
        an Actor; nothing is started), ``NoSuchServer`` (unknown node),
        ``InvalidCommand`` (``init`` is not a msgpack value), ``ValueError``
        (bad ``restart`` or ``name``), ``Timeout``."""
        if restart not in ("temporary", "permanent"):
            raise ValueError(f"restart is 'temporary' or 'permanent', not {restart!r}")
        if name is None:
            name = f"actor-{uuid.uuid4().hex[:12]}"
        elif not isinstance(name, str) or not name:
            raise ValueError(f"an actor name is a non-empty string, not {name!r}")
        if not isinstance(actor_class, str):
            raise errors.ActorClassError(f"actor_class must be 'pkg.module:Class', not {actor_class!r}")
        init = codec.normalise(init)
        return self._sup_call(node, StartActorRequest(actor_class, name, init, restart), timeout)

    def stop_actor(self, ref, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop the actor and return once it has exited (its watchers see
        ``Down(ref, "normal")``; a permanent actor is not restarted).
        Raises ``NoSuchActor`` (no such live actor), ``NoSuchServer``
        (unknown node), ``Timeout``."""
        ref = _aref(ref)
        self._sup_call(ref.node, StopActorRequest(ref.name), timeout)

    def send_actor(self, ref, msg, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Deliver ``msg`` (a msgpack value, normalised like a command) to the
        actor; returns once its node's supervisor has handed it on (the
        actor sees the supervisor as the sender).  Raises ``NoSuchActor``,
        ``InvalidCommand``, ``NoSuchServer`` (unknown node), ``Timeout``."""
        ref = _aref(ref)
        msg = codec.normalise(msg)
        self._sup_call(ref.node, SendToActorRequest(ref.name, msg), timeout)

    def actors(self, node: str, timeout: float = DEFAULT_TIMEOUT) -> dict:
        """``{name: status}`` of the actors started on ``node``: ``"running"``,
        ``"stopping"`` or ``"restarting"`` (a permanent actor between two
        incarnations).  Actors that are gone for good are not listed."""
        return self._sup_call(node, ListActorsRequest(), timeout)

    def close(self):
        if self._closed:
            return
        try:
            self.flush(timeout=1.0)
            if self.handle is not None and self._home is not None:
                self._sup_call(self._home, UnregisterClientRequest(self.handle), 1.0)
        except Exception:  # noqa: BLE001
            pass
        self._closed = True
        self._ep.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):  # pragma: no cover
        try:
            if not self._closed:
                self._ep.close()
        except Exception:
            pass


class _Undelivered:
    """``_wait``'s answer when the transport gave up on the request."""

    def __init__(self, status):
        from thespian.system.transport import SendStatus
        self.refused = status == SendStatus.DeadTarget


def _sid(value) -> ServerId:
    if isinstance(value, ServerId):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return ServerId(str(value[0]), str(value[1]))
    raise ValueError(f"not a server id: {value!r} (use ServerId(name, node))")


def _aref(value) -> ActorRef:
    if isinstance(value, ActorRef):
        return value
    if type(value) in (tuple, list) and len(value) == 2:
        return ActorRef(str(value[0]), str(value[1]))
    raise ValueError(f"not an actor ref: {value!r} (use the ActorRef start_actor returned)")


def _sid_or_none(value):
    if value is None:
        return None
    try:
        return _sid(value)
    except ValueError:
        return None


# Error.kind -> the exception the caller gets: one class per kind, checked by
# tests/test_api_replies.py against the core's closed list (a kind that
# arrives from the network is only ever looked up here).
ERROR_CLASSES: dict[str, type[errors.RaError]] = {kind: getattr(errors, kind) for kind in ERROR_KINDS}


def _error_from(reply) -> errors.RaError:
    if isinstance(reply, Error) and reply.kind in ERROR_CLASSES:
        return ERROR_CLASSES[reply.kind](reply.detail or reply.kind)
    return errors.RaError(f"unexpected reply {reply!r:.200}")
