"""The asyncio client: ``client = await ra_actors.aio.connect(...)``.

::

    import ra_actors as ra
    from ra_actors import aio

    async def main(address):
        async with await aio.connect(address) as client:
            reply, leader = await client.process_command(ra.ServerId("kv", "n1"), ("write", "k", 1))
            value, leader = await client.consistent_query(leader, "machines.kv:read", "k")
            client.pipeline_command(leader, ("write", "k", 2), correlation=1)
            async for event in client.events(timeout=5):
                print(event)            # Applied(leader, [(1, "ok")])
                break

Design.  A client talks to the nodes through a Thespian endpoint, which is
single-threaded and blocks while it waits (:mod:`ra_actors.client`).  An
:class:`AsyncClient` therefore owns one ordinary :class:`ra_actors.Client`
and confines it to **one I/O thread** of its own; the event loop never
touches it:

* A call (``await client.process_command(...)``) checks its arguments in the
  caller (bad input raises at once, before anything is queued), puts a job
  on the I/O thread's queue, writes a byte into a wake-up pipe, and awaits an
  ``asyncio`` future.  The endpoint watches that pipe (``wake_on``): an I/O
  thread blocked waiting for the network wakes at once, runs the job (the
  sync client's own code: the same redirects, retries, deadlines and
  errors) and resolves the future on the loop with
  ``call_soon_threadsafe``.  Exceptions are the sync client's: the
  ``ra_actors.errors`` classes, unchanged.
* Jobs run one after the other, in the order they were queued: a call that
  waits (a timeout, a leader election) delays the calls queued behind it on
  the same client.  For throughput, pipeline (``pipeline_command`` queues
  the command and returns at once; results arrive as events); for
  synchronous calls in parallel, open several clients.  A cancelled
  ``await`` does not stop a job that already runs: its result is dropped.
* Between jobs the I/O thread waits on the endpoint, so events (``Applied``,
  ``Rejected``, ``TimedOut``, ``Message``) reach ``async for event in client.events()``
  as they arrive; pipelined commands queued during one turn of the loop
  leave together (one message per server), then the thread flushes.
* ``close()`` (or leaving ``async with``) closes the sync client in the I/O
  thread and ends it; an ``events()`` iteration then ends.  Should the I/O
  thread end for any other reason (an exception outside a call), every
  call queued or made afterwards raises instead of waiting forever.
* Sessions (exactly-once commands) are the sync client's: ``session=`` to
  ``connect``, ``client.session``, ``await client.next_seq(...)``,
  ``process_command(..., seq=)``.  This module adds no protocol of its own.
"""
from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import Mapping
from typing import Any, AsyncIterator, Callable, TypeVar

from . import codec
from .api import DEFAULT_TIMEOUT, Client, ServerLike, connect as _connect
from .client.ids import server_id as _sid
from .core.types import NON_VOTER, PROMOTABLE, VOTER, ActorRef, ServerId

__all__ = ["AsyncClient", "connect"]

T = TypeVar("T")

IDLE_WAIT = 1.0      # seconds the I/O thread waits on the endpoint when it has nothing to do

_STOP = object()
_CLOSED = object()   # the end of events(), put in their queue by close()


class _IOThread:
    """The one thread that owns a sync :class:`Client` (see the module doc)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.events: asyncio.Queue = asyncio.Queue()
        self.client: Client | None = None
        self.ended: BaseException | None = None    # set once the thread is over (why)
        self._lock = threading.Lock()               # orders submit() against the thread's end
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.thread = threading.Thread(target=self._run, name="ra-aio", daemon=True)
        self.thread.start()

    # -------------------------------------------------------- loop side
    def submit(self, fn: Callable[..., T], *args: Any, **kw: Any) -> "asyncio.Future[T]":
        fut: asyncio.Future = self.loop.create_future()
        self._put((fn, args, kw, fut))
        return fut

    def submit_nowait(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> None:
        self._put((fn, args, kw, None))

    def _put(self, job: tuple) -> None:
        with self._lock:
            if self.ended is not None:
                raise RuntimeError("the client is closed") from self.ended
            self.jobs.put(job)
            self._wake()

    def stop(self) -> None:
        with self._lock:
            if self.ended is None:
                self.jobs.put(_STOP)
                self._wake()

    def _wake(self) -> None:
        # (under the lock, before the thread's end: the pipe is open)
        try:
            os.write(self.wake_w, b"x")
        except BlockingIOError:
            pass     # the pipe is full of wake-ups already

    # ---------------------------------------------------------- I/O side
    def _run(self) -> None:
        why: BaseException = RuntimeError("the client is closed")
        try:
            while True:
                if not self._run_jobs():
                    return
                client = self.client
                if client is None:
                    self._wait_for_job()
                    continue
                client.flush()
                self._forward_events()
                client._conn.pump(IDLE_WAIT if self.jobs.empty() else 0.0)
                self._forward_events()
        except BaseException as exc:  # noqa: BLE001 - the awaiting callers get it
            why = RuntimeError(f"the client's I/O thread failed: {exc!r}")
            why.__cause__ = exc
            raise
        finally:
            self._end(why)

    def _end(self, why: BaseException) -> None:
        """Close the client and fail whatever is still queued: nothing waits forever."""
        with self._lock:
            self.ended = why      # from now on nothing is queued and the pipe is not written
        try:
            if self.client is not None:
                self.client.close()
        finally:
            os.close(self.wake_r)
            os.close(self.wake_w)
            settle = [job[3] for job in _drain(self.jobs) if job is not _STOP and job[3] is not None]
            try:
                for fut in settle:
                    self.loop.call_soon_threadsafe(_settle, fut, None, why)
                self.loop.call_soon_threadsafe(self.events.put_nowait, _CLOSED)
            except RuntimeError:
                pass      # the loop is closed: nobody awaits any more

    def _wait_for_job(self) -> None:
        import select
        select.select([self.wake_r], [], [], IDLE_WAIT)
        try:
            os.read(self.wake_r, 4096)
        except BlockingIOError:
            pass

    def _run_jobs(self) -> bool:
        """Run what is queued; False once told to stop."""
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return True
            if job is _STOP:
                return False
            fn, args, kw, fut = job
            try:
                result = fn(*args, **kw)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                if fut is not None:
                    self.loop.call_soon_threadsafe(_settle, fut, None, exc)
                continue
            if fut is not None:
                self.loop.call_soon_threadsafe(_settle, fut, result, None)

    def _forward_events(self) -> None:
        inbox = self.client._conn.events if self.client is not None else None
        if inbox:
            events = list(inbox)
            inbox.clear()
            self.loop.call_soon_threadsafe(_put_all, self.events, events)

    def open(self, seeds: Any, timeout: float, kw: dict) -> str:
        """(In the I/O thread.)  Connect the sync client; its handle."""
        self.client = _connect(seeds, timeout=timeout, **kw)
        self.client._conn.wake_on(self.wake_r)
        return self.client.handle


def _drain(jobs: queue.SimpleQueue) -> list:
    out = []
    while True:
        try:
            out.append(jobs.get_nowait())
        except queue.Empty:
            return out


def _settle(fut: asyncio.Future, result: Any, exc: BaseException | None) -> None:
    if fut.cancelled():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def _put_all(q: asyncio.Queue, events: list) -> None:
    for event in events:
        q.put_nowait(event)


async def connect(addresses: Any, timeout: float = 10.0, **kw: Any) -> "AsyncClient":
    """Connect to the nodes reachable through ``addresses`` (as
    :func:`ra_actors.connect`, the same keywords); returns an
    :class:`AsyncClient`.  Raises ``Timeout`` if no node answers."""
    io = _IOThread(asyncio.get_running_loop())
    try:
        handle = await io.submit(io.open, addresses, timeout, kw)
    except BaseException:
        io.stop()
        raise
    return AsyncClient(io, handle)


class AsyncClient:
    """A client whose calls are awaited (see the module doc).  Every method
    means what the same method of :class:`ra_actors.Client` means, takes the
    same arguments and raises the same errors."""

    def __init__(self, io: _IOThread, handle: str) -> None:
        self._io = io
        self.handle: str = handle
        self._closed = False

    def _sync(self) -> Client:
        client = self._io.client
        if client is None or self._closed or self._io.ended is not None:
            raise RuntimeError("the client is closed") from self._io.ended
        return client

    def _call(self, name: str, *args: Any, **kw: Any) -> "asyncio.Future[Any]":
        client = self._sync()
        return self._io.submit(getattr(client, name), *args, **kw)

    # ============================================================ sessions
    @property
    def session(self) -> str:
        """The name of this client's session (see :attr:`ra_actors.Client.session`)."""
        return self._sync().session

    async def next_seq(self, server_id: ServerLike) -> int:
        """The number the next command to ``server_id`` will carry."""
        return await self._call("next_seq", _sid(server_id))

    # ============================================================ commands
    async def process_command(self, server_id: ServerLike, command: Any, timeout: float = DEFAULT_TIMEOUT, *,
                              seq: int | None = None) -> tuple[Any, ServerId | None]:
        """Apply ``command`` through the leader: ``(reply, leader)``; sent
        until answered, applied once.  ``seq``: a command of an earlier client
        of this (named) session, sent again under its number."""
        codec.normalise(command)
        return await self._call("process_command", _sid(server_id), command, timeout, seq=seq)

    def pipeline_command(self, server_id: ServerLike, command: Any, correlation: Any = None,
                         priority: str = "normal") -> None:
        """Queue ``command`` without waiting (not a coroutine): the leader
        answers with an ``Applied`` event (``events()``) if it has a
        ``correlation``.  Commands queued in one turn of the loop leave together.
        (No ``seq``: a number the session cannot take would be found in the
        I/O thread, after the call returned; send an earlier client's
        commands again with ``process_command(..., seq=)``.)"""
        if priority not in ("normal", "low"):
            raise ValueError("priority is 'normal' or 'low'")
        codec.normalise(command)
        if correlation is not None:
            codec.normalise(correlation)
        client = self._sync()
        self._io.submit_nowait(client.pipeline_command, _sid(server_id), command, correlation, priority)

    async def flush(self, timeout: float = 2.0) -> None:
        """Send every pipelined command still queued or buffered."""
        await self._call("flush", timeout)

    async def events(self, timeout: float | None = None) -> AsyncIterator[Any]:
        """The events as they arrive (``Applied``, ``Rejected``, ``TimedOut``, ``Message``),
        for as long as the client is open; with ``timeout``, the iteration
        ends once no event came for that many seconds."""
        q = self._io.events
        while not self._closed:
            try:
                if timeout is None:
                    event = await q.get()
                else:
                    event = await asyncio.wait_for(q.get(), timeout)
            except asyncio.TimeoutError:
                return
            if event is _CLOSED:
                q.put_nowait(_CLOSED)     # for any other iteration
                return
            yield event

    # ============================================================= queries
    async def local_query(self, server_id: ServerLike, fun: str, *args: Any,
                          timeout: float = DEFAULT_TIMEOUT, condition: tuple[int, int] | None = None,
                          context: bool = False) -> tuple[Any, ServerId | None]:
        """``fun(state, *args)`` on ``server_id`` itself: ``(((index, term), value), leader)``;
        ``condition`` and ``context`` as ``Client.local_query``."""
        return await self._call("local_query", server_id, fun, *args, timeout=timeout, condition=condition,
                                context=context)

    async def leader_query(self, server_id: ServerLike, fun: str, *args: Any,
                           timeout: float = DEFAULT_TIMEOUT, condition: tuple[int, int] | None = None,
                           context: bool = False) -> tuple[Any, ServerId | None]:
        """``fun(state, *args)`` on the leader: ``(((index, term), value), leader)``;
        ``condition`` and ``context`` as ``Client.local_query``."""
        return await self._call("leader_query", server_id, fun, *args, timeout=timeout, condition=condition,
                                context=context)

    async def consistent_query(self, server_id: ServerLike, fun: str, *args: Any,
                               timeout: float = DEFAULT_TIMEOUT, context: bool = False) -> tuple[Any, ServerId | None]:
        """Linearizable ``fun(state, *args)``: ``(value, leader)``; ``context`` as ``Client.local_query``."""
        return await self._call("consistent_query", server_id, fun, *args, timeout=timeout, context=context)

    # ================================================================= aux
    async def aux_command(self, server_id: ServerLike, command: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """``handle_aux`` as a call on ``server_id`` itself: its reply."""
        return await self._call("aux_command", server_id, command, timeout)

    async def cast_aux_command(self, server_id: ServerLike, command: Any,
                               timeout: float = DEFAULT_TIMEOUT) -> None:
        """``handle_aux`` as a cast on ``server_id`` (returns once taken)."""
        return await self._call("cast_aux_command", server_id, command, timeout)

    async def consistent_aux(self, server_id: ServerLike, command: Any,
                             timeout: float = DEFAULT_TIMEOUT) -> tuple[Any, ServerId | None]:
        """The aux call on the leader after a consistent read barrier: ``(reply, leader)``."""
        return await self._call("consistent_aux", server_id, command, timeout)

    # ========================================================== membership
    async def members(self, server_id: ServerLike | str, local: bool = False,
                      timeout: float = DEFAULT_TIMEOUT) -> tuple[list[ServerId], ServerId | None]:
        """``(members, leader)``: the leader's view, or with ``local=True`` the member's own."""
        return await self._call("members", server_id, local, timeout)

    async def members_info(self, server_id: ServerLike,
                           timeout: float = DEFAULT_TIMEOUT) -> tuple[dict[ServerId, dict], ServerId | None]:
        """Every member as the leader sees it (Ra's ``members_info``)."""
        return await self._call("members_info", server_id, timeout)

    async def force_shrink_members_to_current_member(self, server_id: ServerLike,
                                                     timeout: float = DEFAULT_TIMEOUT) -> None:
        """Disaster recovery: ``server_id`` becomes the only voter (see the sync client)."""
        return await self._call("force_shrink_members_to_current_member", server_id, timeout)

    async def initial_members(self, server_id: ServerLike,
                              timeout: float = DEFAULT_TIMEOUT) -> tuple[list[ServerId], ServerId | None]:
        """The members the cluster was started with (Ra's ``initial_members``): ``(members, leader)``."""
        return await self._call("initial_members", server_id, timeout)

    async def leader(self, cluster_name: str, timeout: float = DEFAULT_TIMEOUT) -> ServerId | None:
        """The leader of ``cluster_name`` from the nearest node's leaderboard."""
        if not isinstance(cluster_name, str):
            raise ValueError(f"a cluster name is a string, not {cluster_name!r}")
        return await self._call("leader", cluster_name, timeout)

    async def add_member(self, server_id: ServerLike, new_server: ServerLike, membership: str = VOTER,
                         timeout: float = DEFAULT_TIMEOUT) -> tuple[Any, ServerId | None]:
        """Add ``new_server`` to the cluster of ``server_id``."""
        if membership not in (VOTER, NON_VOTER, PROMOTABLE):
            raise ValueError(f"membership is one of {VOTER}, {NON_VOTER}, {PROMOTABLE}")
        return await self._call("add_member", server_id, new_server, membership, timeout)

    async def remove_member(self, server_id: ServerLike, old_server: ServerLike,
                            timeout: float = DEFAULT_TIMEOUT) -> tuple[Any, ServerId | None]:
        """Remove ``old_server`` from the cluster of ``server_id``."""
        return await self._call("remove_member", server_id, old_server, timeout)

    async def transfer_leadership(self, server_id: ServerLike, target: ServerLike,
                                  timeout: float = DEFAULT_TIMEOUT) -> tuple[str, ServerId | None]:
        """Hand leadership to ``target``; returns once it leads."""
        return await self._call("transfer_leadership", server_id, target, timeout)

    async def trigger_election(self, server_id: ServerLike, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Make ``server_id`` start an election now."""
        await self._call("trigger_election", server_id, timeout)

    # ============================================================ observing
    async def key_metrics(self, server_id: ServerLike, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """Ra's key metrics, read by the server's node from its counters."""
        return await self._call("key_metrics", server_id, timeout)

    async def member_overview(self, server_id: ServerLike, timeout: float = DEFAULT_TIMEOUT) -> dict:
        """Everything ``server_id`` knows about itself."""
        return await self._call("member_overview", server_id, timeout)

    async def overview(self, node: str, timeout: float = DEFAULT_TIMEOUT) -> dict:
        """The node's view."""
        return await self._call("overview", node, timeout)

    async def nodes(self) -> dict:
        """``{node: "up" | "down"}``."""
        return await self._call("nodes")

    # ============================================================ lifecycle
    async def start_cluster(self, cluster_name: str, machine: str, server_ids: list, config: dict | None = None,
                            timeout: float = 30.0, **server_config: Any) -> tuple[list[ServerId], list[ServerId]]:
        """Start a cluster and elect a leader: ``(started, not_started)``."""
        return await self._call("start_cluster", cluster_name, machine, server_ids, config, timeout,
                                **server_config)

    async def start_clusters(self, clusters: Mapping[str, list], machine: str, config: dict | None = None,
                             timeout: float = 60.0, **server_config: Any) -> dict[str, tuple[list[ServerId],
                                                                                             list[ServerId]]]:
        """Start many clusters at once: ``{name: (started, not_started)}``."""
        return await self._call("start_clusters", clusters, machine, config, timeout, **server_config)

    async def start_server(self, cluster_name: str, machine: str, server_id: ServerLike, members: list,
                           config: dict | None = None, timeout: float = 10.0, **server_config: Any) -> ServerId:
        """Start one server to join a running cluster."""
        return await self._call("start_server", cluster_name, machine, server_id, members, config, timeout,
                                **server_config)

    async def restart_server(self, server_id: ServerLike, timeout: float = 10.0) -> None:
        """Start a stopped (or crashed) server again from its data."""
        await self._call("restart_server", server_id, timeout)

    async def stop_server(self, server_id: ServerLike, timeout: float = 10.0) -> None:
        """Stop a server and keep its data."""
        await self._call("stop_server", server_id, timeout)

    async def force_delete_server(self, server_id: ServerLike, timeout: float = 10.0) -> None:
        """Stop a server and delete its data without asking its cluster."""
        await self._call("force_delete_server", server_id, timeout)

    async def delete_cluster(self, server_ids: list, timeout: float = 10.0) -> ServerId | None:
        """Delete the cluster through its log."""
        return await self._call("delete_cluster", server_ids, timeout)

    # =============================================================== actors
    async def start_actor(self, node: str, actor_class: str, name: str | None = None, init: Any = None,
                          restart: str = "temporary", timeout: float = DEFAULT_TIMEOUT) -> ActorRef:
        """Start a Thespian actor under ``node``'s supervisor."""
        return await self._call("start_actor", node, actor_class, name, init, restart, timeout)

    async def stop_actor(self, ref: ActorRef, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Stop the actor and return once it has exited."""
        await self._call("stop_actor", ref, timeout)

    async def send_actor(self, ref: ActorRef, msg: Any, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Hand ``msg`` to the actor through its node's supervisor."""
        await self._call("send_actor", ref, msg, timeout)

    async def actors(self, node: str, timeout: float = DEFAULT_TIMEOUT) -> dict:
        """``{name: status}`` of the actors started on ``node``."""
        return await self._call("actors", node, timeout)

    # ============================================================== closing
    async def close(self) -> None:
        """Flush, unregister the handle, close the connection and end the I/O thread."""
        if self._closed:
            return
        self._closed = True
        self._io.stop()
        await asyncio.get_running_loop().run_in_executor(None, self._io.thread.join, 10.0)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
