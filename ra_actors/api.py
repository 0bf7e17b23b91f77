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

Every command a Client sends belongs to its session (``client.session``;
:mod:`ra_actors.client.sessions`): numbered, it is sent again until the
cluster answers -- through leader changes, paused and restarted nodes --
and the cluster applies it once, in the order the client issued it.

Rules of this module: it is the public face only.  A method checks and
normalises its arguments, builds the request record and hands it to one of
the client's parts (:mod:`ra_actors.client`): :mod:`~ra_actors.client.discovery`
(nodes, supervisor calls), :mod:`~ra_actors.client.resolution` (server
calls: leaders, redirects, retries), :mod:`~ra_actors.client.commands`,
:mod:`~ra_actors.client.pipelining`,
:mod:`~ra_actors.client.clusters` (server and cluster lifecycles).  A
synchronous call sends the buffered pipelined commands first, so that a
caller's commands reach a server in the order they were issued.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any, Union

from . import codec, errors
from .actors.protocol import (MAX_QUERY_WAIT_MS, AddMemberRequest, AuxRequest, ForceShrinkRequest,
                              InitialMembersRequest, ListActorsRequest, MemberOverviewRequest, MembersInfoRequest,
                              OverviewRequest, QueryRequest, RemoveMemberRequest, SendToActorRequest,
                              ServerMetricsRequest, ServerPingRequest, StartActorRequest, StopActorRequest,
                              TransferLeadershipRequest, TriggerElectionRequest, UnregisterClientRequest)
from .client.addresses import AddressBook
from .client.clusters import Clusters
from .client.commands import Commands
from .client.connection import Connection
from .client.discovery import Discovery
from .actors.util import handle_node
from .client.ids import actor_ref, server_id as _sid
from .client.leaderboard import Leaderboards
from .client.pipelining import Pipeliner
from .client.replies import ERROR_CLASSES
from .client.resolution import Resolver
from .client.sessions import Session
from .cookie import cookie_path, read_cookie
from .core.types import DEFAULT_MAX_COMMAND_BYTES, NON_VOTER, PROMOTABLE, VOTER, ActorRef, ServerId

__all__ = ["Client", "connect", "ERROR_CLASSES", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 5.0

#: A server id as calls accept it: a ``ServerId`` or a ``(name, node)`` pair.
ServerLike = Union[ServerId, tuple, list]


def _query_condition(condition: Any) -> tuple[int, int]:
    """A query's ``condition`` option, checked: ``(index, term)``, whole numbers >= 0."""
    if (not isinstance(condition, (tuple, list)) or len(condition) != 2
            or any(type(x) is not int or x < 0 for x in condition)):
        raise errors.InvalidOption(f"a query condition is (index, term), whole numbers >= 0, "
                                   f"not {condition!r:.80}")
    return int(condition[0]), int(condition[1])


def connect(addresses: Any, timeout: float = 10.0, **kw: Any) -> "Client":
    """Connect to the nodes reachable through ``addresses``: one ``(host, port)``
    admin address (e.g. the convention leader's) or a list of them.  Keyword
    arguments go to :class:`Client` (``session=`` resumes a session).

    ``cookie_file`` names the cluster secret's file (default:
    ``$RA_ACTORS_COOKIE_FILE``, else ``~/.ra_actors.cookie``);
    ``max_command_bytes`` bounds a command's encoded size (1 MiB).  Raises
    ``CookieError`` (no readable secret), ``AuthenticationFailed`` (a node
    refused the secret), ``Timeout`` (no node answered)."""
    if isinstance(addresses, tuple) and len(addresses) == 2 and isinstance(addresses[1], int):
        addresses = [addresses]
    return Client([tuple(a) for a in addresses], timeout=timeout, **kw)


class Client:
    """A connection to a set of ra_actors nodes (see the module doc).

    ``session``: None for a new session, or the name of one to go on with
    (``client.session`` of an earlier client, or a name of your own): see
    :attr:`session`.  ``pipeline_timeout``: seconds a pipelined command is
    sent again before the client gives up on it (``TimedOut`` event; None:
    never)."""

    def __init__(self, seeds: list, timeout: float = 10.0, pipeline_batch: int = 256,
                 pipeline_delay: float = 0.005, session: str | None = None,
                 pipeline_timeout: float | None = 30.0, *, cookie_file: str | None = None,
                 max_command_bytes: int = DEFAULT_MAX_COMMAND_BYTES) -> None:
        if not seeds:
            raise ValueError("connect needs at least one (host, port) address")
        if pipeline_timeout is not None and not pipeline_timeout > 0:
            raise ValueError(f"pipeline_timeout is a positive number of seconds or None, not {pipeline_timeout!r}")
        if not isinstance(max_command_bytes, int) or isinstance(max_command_bytes, bool) or max_command_bytes < 1:
            raise ValueError(f"max_command_bytes must be a positive int, not {max_command_bytes!r}")
        self._session = Session(session, time.time_ns() // 1000)
        seeds = [(str(h), int(p)) for h, p in seeds]
        self.max_command_bytes = max_command_bytes
        key = read_cookie(cookie_path(cookie_file))
        self._closed = False
        self._book = AddressBook()
        self._conn = Connection(seeds[0][0], self._book, key)
        self._discovery = Discovery(self._conn, self._book, seeds)
        try:
            self.handle: str = self._discovery.bootstrap(timeout)
        except BaseException:
            self._closed = True
            self._conn.close()
            raise
        self._resolver = Resolver(self._conn, self._book, self._discovery, self.handle)
        self._pipeline = Pipeliner(self._conn, self._resolver, self.handle, self._session, pipeline_batch,
                                   pipeline_delay, pipeline_timeout)
        self._commands = Commands(self._conn, self._resolver, self._session, self._pipeline.flush)
        self._lifecycle = Clusters(self._conn, self._book, self._discovery, self._resolver)
        self._boards = Leaderboards(self._discovery, self._book)

    @property
    def session(self) -> str:
        """The name of this client's session.  Every command is numbered in
        it (per server id named: ``next_seq``) and sent until answered; the
        cluster applies it once, in the order issued.  A process that
        restarts passes the name to ``connect(session=...)`` to go on with
        it, and may then send a command of the earlier process again under
        the number it had (``seq=``)."""
        return self._session.name

    def next_seq(self, server_id: ServerLike) -> int:
        """The number the next command to ``server_id`` will carry in this
        session (write it down with the command to send it again after a
        restart)."""
        return self._session.stream(_sid(server_id), time.time_ns() // 1000).next

    @property
    def pipeline_batch(self) -> int:
        """Pipelined commands per server that make a batch leave at once."""
        return self._pipeline.batch

    @pipeline_batch.setter
    def pipeline_batch(self, value: int) -> None:
        self._pipeline.batch = value

    @property
    def pipeline_delay(self) -> float:
        """Seconds a pipelined command may wait for its batch."""
        return self._pipeline.delay

    @pipeline_delay.setter
    def pipeline_delay(self, value: float) -> None:
        self._pipeline.delay = value

    # ================================================================ nodes
    def nodes(self) -> dict:
        """``{node: "up" | "down"}`` as the nodes see each other."""
        return self._discovery.node_states()

    def node_admins(self) -> dict:
        """``{node: (host, port)}``: each known node's admin address, as the
        nodes see each other (``nodes()`` says which are up)."""
        self._discovery.node_states()
        return {name: tuple(entry.admin) for name, entry in self._book.nodes.items()}

    def overview(self, node: str, timeout: float = DEFAULT_TIMEOUT) -> dict:
        """The node's view: its servers, the nodes it sees, its services."""
        return self._discovery.sup_call(node, OverviewRequest(), timeout)

    # ============================================================ commands
    def process_command(self, server_id: ServerLike, command: Any, timeout: float = DEFAULT_TIMEOUT, *,
                        seq: int | None = None, reply_from: Any = None) -> tuple[Any, ServerId | None]:
        """Apply ``command`` through the leader of ``server_id``'s cluster and
        return ``(reply, leader)``.

        The command is sent again (same number: applied once) to the
        leader a server names, else to the other members, until the
        cluster answers; ``Timeout`` means no leader with a quorum answered
        within ``timeout`` -- the command may or may not have been applied,
        and if it was not, it never will be once this stream's next command
        arrives.  ``seq``: send the command of an earlier client of this
        (named) session again under the number it had.

        ``reply_from`` (Ra's): ``"leader"`` (the default), ``"local"`` (the
        member on this client's node answers once *it* has applied the
        command; the leader if no voter is there) or a ServerId (that
        member; the leader if it is no member).  ``InvalidCommand`` for
        anything else."""
        data = self._command(command)
        where = self._reply_from(reply_from)
        sid = _sid(server_id)
        self.flush()
        return self._commands.call(sid, data, timeout, seq, reply_from=where)

    def _reply_from(self, reply_from: Any) -> tuple | None:
        if reply_from is None or reply_from == "leader":
            return None
        if reply_from == "local":
            return ("local", handle_node(self.handle))
        try:
            return ("member", tuple(_sid(reply_from)))
        except (TypeError, ValueError):
            raise errors.InvalidCommand(f"reply_from must be 'leader', 'local' or a server id, "
                                        f"not {reply_from!r:.100}") from None

    def pipeline_command(self, server_id: ServerLike, command: Any, correlation: Any = None,
                         priority: str = "normal", *, seq: int | None = None) -> int:
        """Send ``command`` without waiting and return its number in the
        session; the leader answers with one ``Applied`` event result
        carrying ``correlation`` (``events()``; none if ``correlation`` is
        None).  The client sends it again after a leader change, a
        ``not_leader`` rejection or silence, and hands out one result per
        command; ``TimedOut`` if no quorum answered within the client's
        ``pipeline_timeout``.  Commands are coalesced: they leave at the
        latest on the next ``flush()``/``events()``/synchronous call.
        ``seq``: as for :meth:`process_command`."""
        if priority not in ("normal", "low"):
            raise ValueError("priority is 'normal' or 'low'")
        data = self._command(command)
        if correlation is not None:
            # the form every leader will answer with (also one that read it from disk)
            correlation = codec.normalise(correlation)
        return self._pipeline.add(_sid(server_id), data, correlation, priority, seq)

    def _command(self, command: Any) -> Any:
        """``command`` as every member will see it; ``InvalidCommand`` if it
        is not a msgpack value, ``CommandTooLarge`` (nothing sent) above
        ``max_command_bytes``."""
        data, size = codec.sized(command)
        if size > self.max_command_bytes:
            raise errors.CommandTooLarge(
                f"the command is {size} bytes encoded, above this client's max_command_bytes "
                f"({self.max_command_bytes}); raise it with connect(max_command_bytes=...) and the "
                "cluster's with start_cluster(max_command_bytes=...)")
        return data

    def flush(self, timeout: float = 2.0) -> None:
        """Send every pipelined command still buffered (one message per server)."""
        self._pipeline.flush(timeout)

    def events(self, timeout: float = 1.0) -> list:
        """Events received so far (``Applied``, ``Rejected``, ``TimedOut``,
        ``Message``, ``RaEvent``); waits up to ``timeout`` seconds for the
        first one (sending pipelined commands again meanwhile, see
        ``pipeline_command``)."""
        self.flush()
        deadline = time.monotonic() + timeout
        inbox = self._conn.events
        self._conn.pump(0.0)
        while not inbox:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._conn.pump(min(remaining, 0.1 if self._pipeline.outstanding() else 0.5))
            self._pipeline.flush()
        out = list(inbox)
        inbox.clear()
        return out

    # ============================================================== queries
    def _query(self, kind: str, server_id: ServerLike, fun: str, args: tuple, timeout: float,
               redirect: bool, condition: Any = None, context: bool = False) -> tuple[Any, ServerId | None]:
        if not isinstance(fun, str) or ":" not in fun:
            raise errors.InvalidCommand(f"queries name a function as 'module:function', got {fun!r}")
        if type(context) is not bool:
            raise errors.InvalidOption(f"context is True or False, not {context!r:.40}")
        if condition is not None:
            condition = _query_condition(condition)
        args = codec.normalise(tuple(args))
        self.flush()
        if condition is None:
            return self._resolver.call(server_id, QueryRequest(kind, fun, args, context=context), timeout,
                                       redirect=redirect)
        # The server gives up a little before the caller, so the caller
        # hears why; asked once per server (each ask would wait again).
        wait_ms = min(MAX_QUERY_WAIT_MS, max(1, int(timeout * 1000) - min(250, int(timeout * 100))))
        request = QueryRequest(kind, fun, args, condition=condition, wait_ms=wait_ms, context=context)
        try:
            return self._resolver.call(server_id, request, timeout, redirect=redirect, idempotent=False)
        except errors.Timeout as exc:
            index, term = condition
            raise errors.Timeout(f"index {index} of term {term} was not applied in time for the query "
                                 f"({exc})") from None

    def local_query(self, server_id: ServerLike, fun: str, *args: Any, timeout: float = DEFAULT_TIMEOUT,
                    condition: tuple[int, int] | None = None,
                    context: bool = False) -> tuple[Any, ServerId | None]:
        """``fun(state, *args)`` on ``server_id`` itself: ``((index, term), value), leader``.

        ``condition=(index, term)`` (Ra's ``{applied, {Index, Term}}``):
        read-your-writes on any member -- the member answers once it has
        applied ``index`` and the entry there has ``term`` (the ``(index,
        term)`` of a write, e.g. from ``process_command``); ``Timeout`` if it
        has not by ``timeout``.  ``context=True``: the function is called
        ``fun(state, *args, context=ctx)`` with a
        :class:`~ra_actors.core.types.QueryContext` (``index``, ``term``,
        ``machine_version``, ``leader``).  ``InvalidOption`` for a malformed
        condition or context."""
        return self._query("local", server_id, fun, args, timeout, False, condition, context)

    def leader_query(self, server_id: ServerLike, fun: str, *args: Any, timeout: float = DEFAULT_TIMEOUT,
                     condition: tuple[int, int] | None = None,
                     context: bool = False) -> tuple[Any, ServerId | None]:
        """``fun(state, *args)`` on the leader: ``((index, term), value),
        leader``; ``condition`` and ``context`` as :meth:`local_query` (the
        leader checks the condition)."""
        return self._query("leader", server_id, fun, args, timeout, True, condition, context)

    def consistent_query(self, server_id: ServerLike, fun: str, *args: Any, timeout: float = DEFAULT_TIMEOUT,
                         context: bool = False) -> tuple[Any, ServerId | None]:
        """Linearizable ``fun(state, *args)`` (ReadIndex on the leader):
        ``value, leader``; ``context`` as :meth:`local_query`."""
        return self._query("consistent", server_id, fun, args, timeout, True, None, context)

    # ================================================================== aux
    def _aux(self, kind: str, server_id: ServerLike, command: Any, timeout: float,
             redirect: bool) -> tuple[Any, ServerId | None]:
        data = self._command(command)
        self.flush()
        # (handle_aux may change the member's aux state: never sent twice)
        return self._resolver.call(server_id, AuxRequest(kind, data), timeout, redirect=redirect,
                                   idempotent=False)

    def aux_command(self, server_id: ServerLike, command: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Ra's ``aux_command``: ``handle_aux(role, "call", command, ...)``
        on ``server_id`` itself, in whatever role it is; returns its reply.
        ``command`` is a msgpack value (``InvalidCommand``,
        ``CommandTooLarge`` as for commands).  Raises ``AuxNotImplemented``
        (the machine has no ``handle_aux``), ``AuxFailed`` (it raised),
        ``NoSuchServer``, ``NodeDown``, ``Timeout``."""
        reply, _leader = self._aux("call", server_id, command, timeout, redirect=False)
        return reply

    def cast_aux_command(self, server_id: ServerLike, command: Any, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Ra's ``cast_aux_command``: ``handle_aux(role, "cast", command,
        ...)`` on ``server_id``; returns once the server has taken it (it
        runs right after; nothing is answered about it, a failure is only
        logged by the server)."""
        self._aux("cast", server_id, command, timeout, redirect=False)

    def consistent_aux(self, server_id: ServerLike, command: Any,
                       timeout: float = DEFAULT_TIMEOUT) -> tuple[Any, ServerId | None]:
        """Ra's ``consistent_aux``: the aux call on the leader of
        ``server_id``'s cluster once a consistent read barrier passed (a
        heartbeat round confirmed its leadership and it applied everything
        committed when it was asked): ``(reply, leader)``.  Raises as
        :meth:`aux_command`."""
        return self._aux("consistent", server_id, command, timeout, redirect=True)

    # =========================================================== membership
    def members(self, server_id: ServerLike | str, local: bool = False,
                timeout: float = DEFAULT_TIMEOUT) -> tuple[list[ServerId], ServerId | None]:
        """``(members, leader)`` of the cluster of ``server_id`` (a server id,
        or a cluster name).

        As Ra's ``members``: by default the leader's view (a member that
        knows a leader is asked, then that leader; if the leader does not
        answer in time, the member's own view is returned).  ``local=True``
        (Ra's ``{local, ServerId}``): the addressed member's own view, from
        its node's leaderboard (the member itself is asked only if it has
        recorded nothing yet).  A cluster name is looked up in the nearest
        node's leaderboard (``leader``); ``NoSuchCluster`` if no node knows it."""
        deadline = time.monotonic() + timeout
        if isinstance(server_id, str):
            entry = self._boards.cluster(server_id, timeout)
            if entry is None:
                raise errors.NoSuchCluster(f"no node knows cluster {server_id!r}")
            leader, members = entry
            if local or leader is None:
                return members, leader
            return self._leader_view(None, members, leader, deadline)
        sid = _sid(server_id)
        if local:
            entry = self._boards.server(sid, timeout)
            if entry is not None:
                leader, members = entry
                return members, leader
            return self._resolver.members(sid, max(0.1, deadline - time.monotonic()))
        members, leader = self._resolver.members(sid, timeout)
        return self._leader_view(sid, members, leader, deadline)

    def _leader_view(self, asked: ServerId | None, members: list[ServerId], leader: ServerId | None,
                     deadline: float) -> tuple[list[ServerId], ServerId | None]:
        """Follow ``leader`` (at most three hops, until ``deadline``) to the
        leader's own view; what is known so far if it does not answer."""
        for _hop in range(3):
            left = deadline - time.monotonic()
            if leader is None or leader == asked or left <= 0:
                break
            try:
                found, new_leader = self._resolver.members(leader, left)
            except (errors.Timeout, errors.NoSuchServer, errors.NodeDown):
                break
            asked, members, leader = leader, found, new_leader
        return members, leader

    def leader(self, cluster_name: str, timeout: float = DEFAULT_TIMEOUT) -> ServerId | None:
        """The leader of ``cluster_name`` as the nearest node's leaderboard
        has it (Ra's ``ra_leaderboard:lookup_leader``): kept by that node's
        members, no server or leader is asked.  ``None`` while the cluster
        has no leader; ``NoSuchCluster`` if no node knows the cluster."""
        if not isinstance(cluster_name, str):
            raise ValueError(f"a cluster name is a string, not {cluster_name!r}")
        entry = self._boards.cluster(cluster_name, timeout)
        if entry is None:
            raise errors.NoSuchCluster(f"no node knows cluster {cluster_name!r}")
        return entry[0]

    def members_info(self, server_id: ServerLike,
                     timeout: float = DEFAULT_TIMEOUT) -> tuple[dict[ServerId, dict], ServerId | None]:
        """Every member of the cluster of ``server_id``, as its leader sees it
        (Ra's ``members_info``): ``({server: info}, leader)`` where ``info``
        has ``membership`` (``voter``, ``promotable``, ``non_voter``),
        ``status`` (``leader``, ``normal``, ``snapshot``: being sent one),
        ``next_index``, ``match_index`` and ``query_index``."""
        info, leader = self._resolver.call(server_id, MembersInfoRequest(), timeout, redirect=True)
        members, _leader = info
        return {ServerId(*sid): dict(v) for sid, v in dict(members).items()}, leader

    def initial_members(self, server_id: ServerLike,
                        timeout: float = DEFAULT_TIMEOUT) -> tuple[list[ServerId], ServerId | None]:
        """The members the cluster of ``server_id`` was started with, as its
        leader's server config has them (Ra's ``initial_members``):
        ``(members, leader)``.  Members added since are not in it; a
        leader that was started to join a running cluster (``start_server``)
        answers the peers it was given.  Systems with changing membership
        use it to find the original members, e.g. to seed a new one."""
        members, leader = self._resolver.call(server_id, InitialMembersRequest(), timeout, redirect=True)
        return [ServerId(*s) for s in members], leader

    def force_shrink_members_to_current_member(self, server_id: ServerLike,
                                               timeout: float = DEFAULT_TIMEOUT) -> None:
        """Disaster recovery when a majority of the cluster is lost for good
        (Ra's ``force_shrink_members_to_current_member``): ``server_id``
        (this very member, never redirected) appends a configuration with
        itself as the only voter and stands for election at once; it leads
        alone and takes commands again.  What the lost members had and it
        lacks is lost; members that come back are no longer in the cluster
        (delete them, or ``add_member`` them afresh).  Never use it while a
        majority may still be alive: two clusters would result.  Raises
        ``ClusterChangeNotPermitted`` while the member takes in a snapshot or
        the cluster is being deleted, ``NoSuchServer``, ``NodeDown``,
        ``Timeout``."""
        self._resolver.call(server_id, ForceShrinkRequest(), timeout, redirect=False, idempotent=False)
        sid = _sid(server_id)
        self._book.remember_cluster((sid,))

    def add_member(self, server_id: ServerLike, new_server: ServerLike, membership: str = VOTER,
                   timeout: float = DEFAULT_TIMEOUT) -> tuple[Any, ServerId | None]:
        """Add ``new_server`` to the cluster (start it with ``start_server``)."""
        if membership not in (VOTER, NON_VOTER, PROMOTABLE):
            raise ValueError(f"membership is one of {VOTER}, {NON_VOTER}, {PROMOTABLE}")
        new_server = _sid(new_server)
        result = self._resolver.retry_change(server_id, AddMemberRequest(new_server, membership), timeout)
        sid = _sid(server_id)
        members = tuple(self._book.cluster_of(sid) or (sid,))
        if new_server not in members:
            self._book.remember_cluster(members + (new_server,))
        return result

    def remove_member(self, server_id: ServerLike, old_server: ServerLike,
                      timeout: float = DEFAULT_TIMEOUT) -> tuple[Any, ServerId | None]:
        """Remove ``old_server`` from the cluster."""
        old_server = _sid(old_server)
        result = self._resolver.retry_change(server_id, RemoveMemberRequest(old_server), timeout)
        members = tuple(m for m in self._book.cluster_of(_sid(server_id)) or () if m != old_server)
        if members:
            self._book.remember_cluster(members)
        return result

    def transfer_leadership(self, server_id: ServerLike, target: ServerLike,
                            timeout: float = DEFAULT_TIMEOUT) -> tuple[str, ServerId | None]:
        """Ask the leader to hand over to ``target``; returns once ``target``
        leads (or raises Timeout)."""
        target = _sid(target)
        deadline = time.monotonic() + timeout
        value, leader = self._resolver.call(server_id, TransferLeadershipRequest(target), timeout)
        if value == "already_leader":
            return "already_leader", leader
        while time.monotonic() < deadline:
            try:
                _m, leader = self._resolver.members(target, max(0.1, min(1.0, deadline - time.monotonic())))
            except errors.Timeout:
                continue
            if leader == target:
                return "ok", leader
            self._conn.pump(0.05)
        raise errors.Timeout(f"leadership did not move to {target} within {timeout}s")

    def trigger_election(self, server_id: ServerLike, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Make ``server_id`` start an election now."""
        self._resolver.call(server_id, TriggerElectionRequest(), timeout, redirect=False)

    def ping(self, server_id: ServerLike, timeout: float = DEFAULT_TIMEOUT) -> tuple[str, str]:
        """Ra's ``ping``: ``("pong", role)`` from ``server_id`` itself (its
        current role, e.g. ``"follower"``).  Raises ``NoSuchServer``,
        ``NodeDown``, ``Timeout``."""
        value, _leader = self._resolver.call(server_id, ServerPingRequest(), timeout, redirect=False)
        return tuple(value)

    def key_metrics(self, server_id: ServerLike, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """Ra's key metrics of ``server_id`` (``last_applied``, ``commit_index``,
        ``snapshot_index``, ``last_written_index``, ``last_index``,
        ``commit_latency``, ``term``, ``state``, ``membership``), read by its
        node from the node's counters: a busy server is not asked."""
        sid = _sid(server_id)
        return self._discovery.sup_call(sid.node, ServerMetricsRequest(sid.name), timeout)

    def member_overview(self, server_id: ServerLike, timeout: float = DEFAULT_TIMEOUT) -> dict:
        """The key metrics of ``server_id`` and everything else it knows about itself."""
        value, _leader = self._resolver.call(server_id, MemberOverviewRequest(), timeout, redirect=False)
        return value

    # ============================================================ lifecycle
    def start_cluster(self, cluster_name: str, machine: str, server_ids: list, config: dict | None = None,
                      timeout: float = 30.0, **server_config: Any) -> tuple[list[ServerId], list[ServerId]]:
        """Start a new cluster of ``server_ids`` running ``machine`` (an import
        path) and elect a leader.  Returns ``(started, not_started)``.

        Raises ``ServerAlreadyExists`` (duplicate ids, or an id already used),
        ``MachineError`` (the machine does not import on a node; nothing is
        started), ``ClusterNotFormed`` (no leader within ``timeout``; the
        servers that started are deleted again)."""
        return self._lifecycle.start_cluster(cluster_name, machine, server_ids, config, timeout, server_config)

    def start_clusters(self, clusters: Mapping[str, list], machine: str, config: dict | None = None,
                       timeout: float = 60.0, **server_config: Any) -> dict[str, tuple[list[ServerId],
                                                                                       list[ServerId]]]:
        """Start many new clusters of one machine at once: ``clusters`` maps
        each cluster's name to its server ids; ``config`` and
        ``server_config`` apply to every one.  Returns ``{name: (started,
        not_started)}``.  Each cluster forms as with ``start_cluster``, but
        the servers of a batch of clusters are created with one request per
        node, and their elections are triggered and awaited together, so
        starting thousands costs far fewer round trips.

        Raises before starting anything on bad input (``ValueError``,
        ``ServerAlreadyExists`` for an id given twice, ``MachineError``).
        Raises ``ClusterNotFormed`` once every cluster was tried if some did
        not form: those were deleted again, ``exc.failed`` maps each to its
        error and ``exc.formed`` holds the others' result."""
        return self._lifecycle.start_clusters(clusters, machine, config, timeout, server_config)

    def start_server(self, cluster_name: str, machine: str, server_id: ServerLike, members: list,
                     config: dict | None = None, timeout: float = 10.0, **server_config: Any) -> ServerId:
        """Start one server to join a running cluster (then ``add_member``).

        ``members`` names the cluster's current members.  The new server
        takes its configuration from the leader's log or snapshot only: until
        the leader has replicated the change that adds it, it neither
        campaigns nor counts votes (a member list given here was never in
        any log, so trusting it could elect a leader without committed
        entries)."""
        return self._lifecycle.start_server(cluster_name, machine, server_id, members, config, timeout,
                                            server_config)

    def restart_server(self, server_id: ServerLike, timeout: float = 10.0, **config: Any) -> None:
        """Start a stopped (or crashed) server again from its data.  ``config``
        (Ra's mutable config) changes tunables of :data:`MUTABLE_CONFIG_KEYS`
        in its persisted config first; ``InvalidConfig`` for any other key or
        a bad value, and an error if the server is running."""
        self._lifecycle.restart_server(server_id, timeout, config)

    def stop_server(self, server_id: ServerLike, timeout: float = 10.0) -> None:
        """Stop a server and keep its data (it stays stopped across node restarts)."""
        self._lifecycle.stop_server(server_id, timeout)

    def force_delete_server(self, server_id: ServerLike, timeout: float = 10.0) -> None:
        """Stop a server and delete its data without asking its cluster."""
        self._lifecycle.force_delete_server(server_id, timeout)

    def leave_and_terminate(self, server_ref: ServerLike, server_id: ServerLike,
                            timeout: float = DEFAULT_TIMEOUT) -> None:
        """Ra's ``leave_and_terminate``: remove ``server_id`` from its cluster
        through ``server_ref`` (once the removal is committed), then stop it
        and keep its data.  Raises what ``remove_member`` raises; nothing is
        stopped then."""
        self.remove_member(server_ref, server_id, timeout)
        self.stop_server(server_id, timeout)

    def leave_and_delete_server(self, server_ref: ServerLike, server_id: ServerLike,
                                timeout: float = DEFAULT_TIMEOUT) -> None:
        """Ra's ``leave_and_delete_server``: remove ``server_id`` from its
        cluster through ``server_ref``, then stop it and delete its data
        (``force_delete_server``).  Raises what ``remove_member`` raises;
        nothing is deleted then."""
        self.remove_member(server_ref, server_id, timeout)
        self.force_delete_server(server_id, timeout)

    def start_or_restart_cluster(self, cluster_name: str, machine: str, server_ids: list,
                                 config: dict | None = None, timeout: float = 30.0,
                                 **server_config: Any) -> tuple[list[ServerId], list[ServerId]]:
        """Ra's ``start_or_restart_cluster``: if the first of ``server_ids``
        was started before (its node knows it), restart every one of them
        from its data and return ``(server_ids, [])`` (an error restarting
        one is raised); otherwise ``start_cluster``."""
        sids = [_sid(s) for s in server_ids]
        if not sids:
            raise ValueError("start_or_restart_cluster needs at least one server id")
        try:
            self.restart_server(sids[0], timeout)
        except errors.NoSuchServer:
            return self.start_cluster(cluster_name, machine, sids, config, timeout, **server_config)
        for sid in sids[1:]:
            self.restart_server(sid, timeout)
        return sids, []

    def delete_cluster(self, server_ids: list, timeout: float = 10.0) -> ServerId | None:
        """Delete the cluster (replicated: every member removes its data once
        the deletion is applied; the machine sees ``state_enter("eol")``)."""
        return self._lifecycle.delete_cluster(server_ids, timeout)

    # =============================================================== actors
    def start_actor(self, node: str, actor_class: str, name: str | None = None, init: Any = None,
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
        return self._discovery.sup_call(node, StartActorRequest(actor_class, name, init, restart), timeout)

    def stop_actor(self, ref: ActorRef, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop the actor and return once it has exited (its watchers see
        ``Down(ref, "normal")``; a permanent actor is not restarted).
        Raises ``NoSuchActor`` (no such live actor), ``NoSuchServer``
        (unknown node), ``Timeout``."""
        ref = actor_ref(ref)
        self._discovery.sup_call(ref.node, StopActorRequest(ref.name), timeout)

    def send_actor(self, ref: ActorRef, msg: Any, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Deliver ``msg`` (a msgpack value, normalised like a command) to the
        actor; returns once its node's supervisor has handed it on (the
        actor sees the supervisor as the sender).  Raises ``NoSuchActor``,
        ``InvalidCommand``, ``NoSuchServer`` (unknown node), ``Timeout``."""
        ref = actor_ref(ref)
        msg = codec.normalise(msg)
        self._discovery.sup_call(ref.node, SendToActorRequest(ref.name, msg), timeout)

    def actors(self, node: str, timeout: float = DEFAULT_TIMEOUT) -> dict:
        """``{name: status}`` of the actors started on ``node``: ``"running"``,
        ``"stopping"`` or ``"restarting"`` (a permanent actor between two
        incarnations).  Actors that are gone for good are not listed."""
        return self._discovery.sup_call(node, ListActorsRequest(), timeout)

    # ============================================================== closing
    def close(self) -> None:
        """Flush pipelined commands, unregister the handle (its watchers see
        ``Down(handle, "normal")``) and close the connection."""
        if self._closed:
            return
        try:
            self.flush(timeout=1.0)
            home = self._discovery.home
            if home is not None:
                self._discovery.sup_call(home, UnregisterClientRequest(self.handle), 1.0)
        except Exception:  # noqa: BLE001 - closing: the nodes notice a vanished client anyway
            pass
        self._closed = True
        self._conn.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover
        try:
            if not self._closed:
                self._conn.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing to do about it
            pass
