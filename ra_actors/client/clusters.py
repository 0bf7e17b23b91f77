"""Starting, stopping and deleting servers and clusters.

Rules:

* Servers are created and removed by their node's supervisor (a
  ``SupervisorRequest``); a cluster is deleted through its log
  (``DeleteClusterRequest``), so that every member removes its own data.
* **start_cluster** checks first that every reachable node loads the
  machine (nothing is started if one cannot), starts the servers
  concurrently, and keeps them only if a majority started and no node
  answered an error; then it triggers an election and waits for a leader.
  Whatever does not reach a leader by the timeout is deleted again
  (``ClusterNotFormed``): a failed start leaves nothing behind.
* **start_clusters** does the same for many clusters, :data:`START_BATCH`
  at a time: one ``StartServersRequest`` per node for the batch's servers,
  every election triggered at once, and the nodes' leaderboards polled
  (one request per node per round) until every cluster has a leader; the
  next batch's requests go out as soon as this batch's elections are
  triggered, so the nodes create servers while clusters elect.  Each cluster
  forms or is deleted on its own; ``ClusterNotFormed`` then names those
  that did not form, after the others were started.
* A server's ``uid`` (its data's name on disk) is its cluster and server
  names, made file-safe, plus a random part: a server started again under
  the same name never meets an old one's data.
* Stopping, restarting or deleting a server drops its cached address.
"""
from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from .. import codec, errors
from ..actors.protocol import (CheckMachineRequest, DeleteClusterRequest, ForceDeleteServerRequest,
                               LeaderboardRequest, RestartServerRequest, StartServerRequest, StartServersRequest,
                               StopServerRequest, TriggerElectionRequest)
from ..actors.util import decode_error
from ..core.types import UPGRADE_STRATEGIES, ServerConfig, ServerId, check_mutable_changes
from .addresses import AddressBook
from .connection import Connection, Undelivered
from .discovery import Discovery
from .ids import server_id
from .resolution import Resolver

__all__ = ["Clusters"]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
ELECTION_RETRIGGER = 2.0    # seconds without a leader before an election is triggered again
# Polls for the new leader: an election on a quiet node takes a few
# milliseconds, one among thousands of starting clusters far longer.
FIRST_LEADER_POLL = 0.002
LAST_LEADER_POLL = 0.05
START_BATCH = 32            # clusters per round of start_clusters (one request per node each)
LEADERBOARD_PATIENCE = 1.0  # seconds a node's leaderboard has to answer a poll


def server_config(cluster_name: str, machine: str, sid: ServerId, members: list, config: dict, extra: dict,
                  joining: bool = False) -> ServerConfig:
    limit = extra.get("max_command_bytes")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"max_command_bytes must be a positive int, not {limit!r}")
    strategy = extra.get("machine_upgrade_strategy", "quorum")
    if strategy not in UPGRADE_STRATEGIES:
        raise errors.InvalidConfig(f"machine_upgrade_strategy is one of {', '.join(UPGRADE_STRATEGIES)}, "
                                   f"not {strategy!r:.60}")
    wal = extra.get("wal")
    if wal is not None and (not isinstance(wal, int) or isinstance(wal, bool) or wal < 0):
        raise ValueError(f"wal must be the index of a WAL directory of the nodes (an int >= 0), not {wal!r}")
    uid = f"{_SAFE.sub('_', cluster_name)[:60]}_{_SAFE.sub('_', sid.name)[:60]}_{uuid.uuid4().hex[:12]}"
    return ServerConfig(server_id=sid, uid=uid, cluster_name=cluster_name, machine=machine,
                        initial_members=tuple(members), machine_config=dict(config),
                        joining=joining, **extra)


def _members(server_ids: Any) -> list[ServerId]:
    """A new cluster's server ids (ValueError, ServerAlreadyExists)."""
    if isinstance(server_ids, (str, bytes)):
        raise ValueError(f"server ids are a list, not {server_ids!r:.60}")
    sids = [server_id(s) for s in server_ids]
    if not sids:
        raise ValueError("a cluster needs at least one server id")
    if len(set(sids)) != len(sids):
        dups = sorted({str(s) for s in sids if sids.count(s) > 1})
        raise errors.ServerAlreadyExists(f"duplicate server ids: {', '.join(dups)}")
    return sids


def _machine_config(machine: Any, config: dict | None) -> dict:
    """A new cluster's machine (an import path) and its config (MachineError,
    InvalidCommand: not msgpack-serialisable)."""
    if not isinstance(machine, str) or not machine:
        raise errors.MachineError(f"machine must be an import path, not {machine!r}")
    config = dict(config or {})
    codec.pack(config)
    return config


class _Starting:
    """A batch of ``start_clusters`` whose servers the nodes are starting:
    the requests in flight (``req_id -> [(cluster, server id, config)]``)
    and the servers not started so far."""

    __slots__ = ("batch", "pending", "not_started")

    def __init__(self, batch: dict[str, list]) -> None:
        self.batch = batch
        self.pending: dict[int, list] = {}
        self.not_started: dict[str, list] = {name: [] for name in batch}


class Clusters:
    """Server and cluster lifecycles (see the module rules)."""

    def __init__(self, conn: Connection, book: AddressBook, discovery: Discovery, resolver: Resolver) -> None:
        self.conn = conn
        self.book = book
        self.discovery = discovery
        self.resolver = resolver

    # -------------------------------------------------------- start_cluster
    def start_cluster(self, cluster_name: str, machine: str, server_ids: Any, config: dict | None,
                      timeout: float, extra: dict) -> tuple[list, list]:
        sids = _members(server_ids)
        config = _machine_config(machine, config)
        deadline = time.monotonic() + timeout
        reachable = self._nodes_loading(machine, sorted({s.node for s in sids}), deadline)
        started, not_started, first_error = self._start_servers(
            cluster_name, machine, sids, config, extra, reachable, deadline)
        if first_error is not None or len(started) < len(sids) // 2 + 1:
            self._cleanup(started, deadline)
            if first_error is not None:
                raise first_error
            raise errors.ClusterNotFormed(f"only {len(started)} of {len(sids)} servers started")
        self.book.remember_cluster(sids)
        try:
            self._elect(started, deadline)
        except errors.Timeout:
            self._cleanup(started, time.monotonic() + 10.0)
            raise errors.ClusterNotFormed(f"cluster {cluster_name} elected no leader within {timeout}s") from None
        return started, not_started

    # ------------------------------------------------------- start_clusters
    def start_clusters(self, clusters: Mapping[str, Any], machine: str, config: dict | None, timeout: float,
                       extra: dict) -> dict[str, tuple[list, list]]:
        if not isinstance(clusters, Mapping) or not clusters:
            raise ValueError("start_clusters needs a non-empty mapping of cluster name -> server ids")
        specs = {}
        for name, ids in clusters.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"a cluster name is a non-empty str, not {name!r:.60}")
            specs[name] = _members(ids)
        taken: dict[ServerId, str] = {}
        for name, sids in specs.items():
            for sid in sids:
                if sid in taken:
                    raise errors.ServerAlreadyExists(f"server id {sid} is in clusters {taken[sid]} and {name}")
                taken[sid] = name
        config = _machine_config(machine, config)
        deadline = time.monotonic() + timeout
        reachable = self._nodes_loading(machine, sorted({sid.node for sid in taken}), deadline)
        formed: dict[str, tuple[list, list]] = {}
        failed: dict[str, Exception] = {}
        names = list(specs)
        batches = [{name: specs[name] for name in names[i:i + START_BATCH]}
                   for i in range(0, len(names), START_BATCH)]
        starting = self._send_starts(batches[0], machine, config, extra, reachable, deadline)
        for k in range(len(batches)):
            this = starting
            electing = self._collect_starts(this, deadline, failed)
            self._trigger(electing, list(electing), deadline)
            if k + 1 < len(batches):
                # the nodes create the next batch's servers while this one elects
                starting = self._send_starts(batches[k + 1], machine, config, extra, reachable, deadline)
            led = self._await_leaders(electing, deadline)
            for name, ok in electing.items():
                if name in led:
                    formed[name] = (ok, this.not_started[name])
                else:
                    self._cleanup(ok, time.monotonic() + 10.0)
                    failed[name] = errors.ClusterNotFormed(f"cluster {name} elected no leader in time")
        if failed:
            some = "; ".join(f"{name}: {exc}" for name, exc in list(failed.items())[:3])
            raise errors.ClusterNotFormed(f"{len(failed)} of {len(specs)} clusters did not form and were "
                                          f"deleted again ({some}{'; ...' if len(failed) > 3 else ''})",
                                          formed=formed, failed=failed)
        return formed

    def _send_starts(self, batch: dict[str, list], machine: str, config: dict, extra: dict, reachable: list,
                     deadline: float) -> _Starting:
        """Ask each node to start its servers of ``batch`` (one request per
        node); the answers are collected by :meth:`_collect_starts`."""
        starting = _Starting(batch)
        by_node: dict[str, list] = {}
        for name, sids in batch.items():
            for sid in sids:
                if sid.node in reachable:
                    cfg = server_config(name, machine, sid, sids, config, extra)
                    by_node.setdefault(sid.node, []).append((name, sid, cfg))
                else:
                    starting.not_started[name].append(sid)
        for node, items in by_node.items():
            addr = self.discovery.sup_address(node, deadline)
            if addr is None:
                for name, sid, _cfg in items:
                    starting.not_started[name].append(sid)
                continue
            req = self.conn.next_id()
            self.conn.send(addr, StartServersRequest(tuple(cfg for _n, _s, cfg in items), req_id=req), req,
                           max(0.5, deadline - time.monotonic()))
            starting.pending[req] = items
        return starting

    def _collect_starts(self, starting: _Starting, deadline: float, failed: dict) -> dict[str, list]:
        """The nodes' answers for a batch: its clusters that may elect
        (``name -> started servers``, in the order given); the others are
        deleted again and put in ``failed``."""
        batch = starting.batch
        started: dict[str, list] = {name: [] for name in batch}
        unknown: dict[str, list] = {name: [] for name in batch}
        first_error: dict[str, Exception] = {}
        for req, items in starting.pending.items():
            r = self.conn.wait(req, deadline)
            if r is None or isinstance(r, Undelivered):
                results: Any = [None] * len(items)
            elif r.error:
                results = [("error", r.error)] * len(items)
            else:
                results = r.value
            for (name, sid, _cfg), res in zip(items, results):
                if res is not None and res[0] == "ok":
                    started[name].append(sid)
                    self.book.set_server(sid, res[2], res[1])
                    continue
                starting.not_started[name].append(sid)
                exc = None if res is None else decode_error(res[1])
                if exc is None or isinstance(exc, errors.Timeout):
                    unknown[name].append(sid)     # it may start yet: deleted with its cluster
                if exc is not None:
                    first_error.setdefault(name, exc)
        electing = {}
        for name, sids in batch.items():
            ok = sorted(started[name], key=sids.index)   # the election starts on the first given
            if name in first_error or len(ok) < len(sids) // 2 + 1:
                self._cleanup(ok + unknown[name], deadline)
                failed[name] = first_error.get(name) or errors.ClusterNotFormed(
                    f"only {len(ok)} of {len(sids)} servers started")
            else:
                self.book.remember_cluster(sids)
                electing[name] = ok
        return electing

    def _trigger(self, electing: dict[str, list], names: list, deadline: float) -> None:
        """Trigger an election on the first started member of each cluster of ``names``."""
        self.resolver.ask_many({n: (electing[n][0], TriggerElectionRequest()) for n in names},
                               min(deadline, time.monotonic() + 2.0))

    def _await_leaders(self, electing: dict[str, list], deadline: float) -> set[str]:
        """Poll the nodes' leaderboards (one request per node for every
        cluster still without a leader; an election triggered again after
        ``ELECTION_RETRIGGER`` s) until each has a leader or the deadline:
        the clusters that have one."""
        waiting = set(electing)
        next_trigger = time.monotonic() + ELECTION_RETRIGGER
        pause = FIRST_LEADER_POLL
        while waiting and time.monotonic() < deadline:
            self.conn.pump(pause)
            pause = min(2 * pause, LAST_LEADER_POLL)
            waiting -= self._leaders_known({n: electing[n] for n in waiting}, deadline)
            if waiting and time.monotonic() > next_trigger:
                next_trigger = time.monotonic() + ELECTION_RETRIGGER
                self._trigger(electing, sorted(waiting), deadline)
        return set(electing) - waiting

    def _leaders_known(self, clusters: dict[str, list], deadline: float) -> set[str]:
        """The clusters of which a member's node knows a leader (its
        leaderboard, one request per node)."""
        by_node: dict[str, list] = {}
        for name, sids in clusters.items():
            for sid in sids:
                by_node.setdefault(sid.node, []).append((name, sid.name))
        pending = {}
        for node, items in by_node.items():
            addr = self.discovery.sup_address(node, deadline)
            if addr is None:
                continue
            req = self.conn.next_id()
            self.conn.send(addr, LeaderboardRequest(servers=tuple(s for _n, s in items), req_id=req), req,
                           max(0.1, deadline - time.monotonic()))
            pending[req] = items
        led = set()
        for req, items in pending.items():
            r = self.conn.wait(req, min(deadline, time.monotonic() + LEADERBOARD_PATIENCE))
            if r is None or isinstance(r, Undelivered) or r.error:
                continue
            for (name, _s), entry in zip(items, r.value):
                if entry is not None and entry[0] is not None:
                    led.add(name)
        return led

    def _nodes_loading(self, machine: str, nodes: list, deadline: float) -> list:
        """The nodes that answer and load ``machine`` (an error it answers,
        e.g. ``MachineError``, is raised: nothing is started).  Every node
        is asked at once; one whose supervisor moved is asked again alone."""
        wait = max(0.2, min(5.0, deadline - time.monotonic()))
        node_deadline = time.monotonic() + wait
        pending, again = {}, []
        for node in nodes:
            addr = self.discovery.sup_address(node, node_deadline)
            if addr is None:
                again.append(node)
                continue
            req = self.conn.next_id()
            self.conn.send(addr, CheckMachineRequest(machine, req_id=req), req, wait)
            pending[node] = req
        loading = set()
        for node, req in pending.items():
            r = self.conn.wait(req, node_deadline)
            if isinstance(r, Undelivered):
                self.book.mark_down(node)
                again.append(node)
            elif r is not None:
                if r.error:
                    raise decode_error(r.error)
                loading.add(node)
        for node in again:
            try:
                self.discovery.sup_call(node, CheckMachineRequest(machine),
                                        max(0.2, node_deadline - time.monotonic()))
                loading.add(node)
            except (errors.Timeout, errors.NodeDown):
                continue
        return [node for node in nodes if node in loading]

    def _start_servers(self, cluster_name: str, machine: str, sids: list, config: dict, extra: dict,
                       reachable: list, deadline: float) -> tuple[list, list, Exception | None]:
        """Start every server on a reachable node at once, then collect the
        answers: ``(started, not_started, the first error answered)``."""
        not_started, pending = [], {}
        for sid in sids:
            if sid.node not in reachable:
                not_started.append(sid)
                continue
            cfg = server_config(cluster_name, machine, sid, sids, config, extra)
            addr = self.discovery.sup_address(sid.node, deadline)
            if addr is None:
                not_started.append(sid)
                continue
            req = self.conn.next_id()
            self.conn.send(addr, StartServerRequest(cfg, req_id=req), req, max(0.5, deadline - time.monotonic()))
            pending[req] = sid
        started, first_error = [], None
        for req, sid in pending.items():
            r = self.conn.wait(req, deadline)
            if r is None or isinstance(r, Undelivered):
                not_started.append(sid)
            elif r.error:
                not_started.append(sid)
                first_error = first_error or decode_error(r.error)
            else:
                started.append(sid)
        return started, not_started, first_error

    def _elect(self, started: list, deadline: float) -> ServerId:
        self.resolver.call(started[0], TriggerElectionRequest(), max(0.5, deadline - time.monotonic()),
                           redirect=False)
        next_trigger = time.monotonic() + ELECTION_RETRIGGER
        pause = FIRST_LEADER_POLL
        while time.monotonic() < deadline:
            for sid in started:
                try:
                    _m, leader = self.resolver.members(sid, max(0.1, min(1.0, deadline - time.monotonic())))
                except (errors.Timeout, errors.NoSuchServer):
                    continue
                if leader is not None:
                    return leader
            self.conn.pump(pause)
            pause = min(2 * pause, LAST_LEADER_POLL)
            if time.monotonic() > next_trigger:
                next_trigger = time.monotonic() + ELECTION_RETRIGGER
                try:
                    self.resolver.call(started[0], TriggerElectionRequest(), 1.0, redirect=False)
                except errors.RaError:
                    pass
        raise errors.Timeout("no leader")

    def _cleanup(self, sids: list, deadline: float) -> None:
        for sid in sids:
            try:
                self.force_delete_server(sid, max(0.5, deadline - time.monotonic()))
            except errors.RaError:
                pass

    # -------------------------------------------------------------- servers
    def start_server(self, cluster_name: str, machine: str, sid: Any, members: Any, config: dict | None,
                     timeout: float, extra: dict) -> ServerId:
        sid = server_id(sid)
        config = dict(config or {})
        codec.pack(config)
        members = [server_id(m) for m in members]
        if sid not in members:
            members = members + [sid]
        cfg = server_config(cluster_name, machine, sid, members, config, extra, joining=True)
        self.discovery.sup_call(sid.node, StartServerRequest(cfg), timeout)
        return sid

    def restart_server(self, sid: Any, timeout: float, config: dict | None = None) -> None:
        sid = server_id(sid)
        check_mutable_changes(dict(config or {}))
        self.book.forget_server(sid)
        self.discovery.sup_call(sid.node, RestartServerRequest(sid.name, dict(config or {})), timeout)

    def stop_server(self, sid: Any, timeout: float) -> None:
        sid = server_id(sid)
        self.book.forget_server(sid)
        self.discovery.sup_call(sid.node, StopServerRequest(sid.name), timeout)

    def force_delete_server(self, sid: Any, timeout: float) -> None:
        sid = server_id(sid)
        self.book.forget_server(sid)
        self.discovery.sup_call(sid.node, ForceDeleteServerRequest(sid.name), timeout)

    def delete_cluster(self, server_ids: Any, timeout: float) -> ServerId | None:
        sids = [server_id(s) for s in server_ids]
        self.book.remember_cluster(sids)
        deadline = time.monotonic() + timeout
        _v, leader = self.resolver.call(sids[0], DeleteClusterRequest(), timeout)
        # wait until every member is gone (best effort within the timeout)
        for sid in sids:
            while time.monotonic() < deadline:
                self.book.forget_server(sid)
                try:
                    if self.resolver.resolve(sid, deadline) is None:
                        break
                except errors.NoSuchServer:
                    break
                self.conn.pump(0.05)
        return leader
