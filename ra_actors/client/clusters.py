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
* A server's ``uid`` (its data's name on disk) is its cluster and server
  names, made file-safe, plus a random part: a server started again under
  the same name never meets an old one's data.
* Stopping, restarting or deleting a server drops its cached address.
"""
from __future__ import annotations

import re
import time
import uuid
from typing import Any

from .. import codec, errors
from ..actors.protocol import (CheckMachineRequest, DeleteClusterRequest, ForceDeleteServerRequest,
                               RestartServerRequest, StartServerRequest, StopServerRequest,
                               TriggerElectionRequest)
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
        sids = [server_id(s) for s in server_ids]
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
