"""Shared builders for the unit tests of the pure Raft core (tests/test_core_*.py).

Everything here drives :class:`ra_actors.core.server.RaftServer` directly:
messages in through ``handle``, ``(role, effects)`` out.  No simulator, no
shell, no clock.

* ``N1 .. N5`` are server ids of one cluster ``c`` on nodes ``n1 .. n5``.
* :class:`KvMachine` is a tiny dict machine whose commands are tuples (see
  its docstring); it records the optional callbacks it receives in
  ``calls`` so tests can assert on ``state_enter``/``tick``/
  ``snapshot_installed`` without peeking into the core; :class:`AuxKv`
  adds an aux handler (``init_aux``/``handle_aux``).
* :func:`new_server` builds (and ``init``s) a server; :func:`make_leader`
  and :func:`make_follower` drive one into place by feeding messages.
* Message builders (:func:`aer`, :func:`ae_ok`, ...) keep tests short.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the clone itself must be importable
    sys.path.insert(0, str(REPO))

from ra_actors.core import effects as fx  # noqa: E402
from ra_actors.core import messages as m  # noqa: E402
from ra_actors.core.machine import NO_REPLY, Machine  # noqa: E402
from ra_actors.core.server import RaftServer, Recovered  # noqa: E402
from ra_actors.testing.bugs import core_class  # noqa: E402
from ra_actors.core.types import (  # noqa: E402
    AwaitConsensus, Entry, NoReply, Noop, ServerConfig, ServerId, Usr,
)

N1 = ServerId("c", "n1")
N2 = ServerId("c", "n2")
N3 = ServerId("c", "n3")
N4 = ServerId("c", "n4")
N5 = ServerId("c", "n5")
MEMBERS3 = (N1, N2, N3)


# ================================================================== machines
class KvMachine:
    """A dict machine.  State (msgpack-friendly, never mutated in place)::

        {"kv": {key: value}, "applied": ((index, term, command), ...)}

    Commands (tuples):

    * ``("put", k, v)`` sets ``k``; replies the previous value (None if absent);
    * ``("get", k)`` replies the value;
    * ``("fx", reply, effects)`` replies ``reply`` and returns ``effects`` as
      given (a list/tuple or a single effect);
    * ``("fx2", reply)`` returns a 2-tuple ``(state, reply)`` explicitly;
    * ``("noreply",)`` replies ``NO_REPLY`` (no reply must be sent);
    * ``("release",)`` replies ``"released"`` and emits
      ``ReleaseCursor(meta.index, new_state)``;
    * anything else (the built-in commands ``Down``, ``NodeUp``, ...,
      ``MachineVersion``) is recorded in ``applied`` and replies ``"builtin"``.

    Every apply appends ``(meta.index, meta.term, command)`` to ``applied``.
    """

    def __init__(self, enter_effects: dict | None = None, tick_effects: Iterable = (),
                 installed_effects: Iterable = (), tag: str = "v0"):
        self.enter_effects = dict(enter_effects or {})
        self.tick_effects = list(tick_effects)
        self.installed_effects = list(installed_effects)
        self.tag = tag
        self.calls: list[tuple] = []

    def init(self, config: dict) -> dict:
        self.calls.append(("init", config.get("name")))
        return {"kv": {}, "applied": ()}

    def apply(self, meta, cmd, state):
        self.calls.append(("apply", self.tag, meta.index))
        applied = state["applied"] + ((meta.index, meta.term, cmd),)
        kv = state["kv"]
        if isinstance(cmd, tuple) and cmd and cmd[0] == "put":
            _, k, v = cmd
            new_kv = dict(kv)
            new_kv[k] = v
            return {"kv": new_kv, "applied": applied}, kv.get(k)
        if isinstance(cmd, tuple) and cmd and cmd[0] == "get":
            return {"kv": kv, "applied": applied}, kv.get(cmd[1])
        if isinstance(cmd, tuple) and cmd and cmd[0] == "fx":
            return {"kv": kv, "applied": applied}, cmd[1], cmd[2]
        if isinstance(cmd, tuple) and cmd and cmd[0] == "fx2":
            return ({"kv": kv, "applied": applied}, cmd[1])
        if isinstance(cmd, tuple) and cmd and cmd[0] == "noreply":
            return {"kv": kv, "applied": applied}, NO_REPLY
        if isinstance(cmd, tuple) and cmd and cmd[0] == "release":
            new = {"kv": kv, "applied": applied}
            return new, "released", [fx.ReleaseCursor(meta.index, new)]
        return {"kv": kv, "applied": applied}, "builtin"

    def state_enter(self, role, state):
        self.calls.append(("state_enter", role))
        return list(self.enter_effects.get(role, ()))

    def tick(self, time_ms, state):
        self.calls.append(("tick", time_ms))
        return list(self.tick_effects)

    def overview(self, state):
        return {"keys": len(state["kv"]), "tag": self.tag}

    def snapshot_installed(self, meta, state):
        self.calls.append(("snapshot_installed", meta.index))
        return list(self.installed_effects)

    def entered(self) -> list:
        """Roles passed to ``state_enter`` so far, in order."""
        return [c[1] for c in self.calls if c[0] == "state_enter"]


class VersionedKv(KvMachine):
    """Version 1 of :class:`KvMachine`; ``which_module(0)`` is a plain v0 machine."""

    def __init__(self, **kw):
        super().__init__(tag="v1", **kw)
        self.v0 = KvMachine(tag="v0")

    def version(self) -> int:
        return 1

    def which_module(self, version: int):
        return self if version >= 1 else self.v0


class AuxKv(KvMachine):
    """:class:`KvMachine` with an aux handler.  Aux state: ``{"n": int,
    "seen": (command, ...)}`` where ``seen`` holds the built-in aux casts.
    Aux commands: ``("inc",)`` (cast or call: n + 1, replies n), ``("get",)``,
    ``("peek",)`` (replies what ``internal`` says), ``("fetch", i)``,
    ``("noreply",)``, ``("fx", effects)``, ``("boom",)`` (raises),
    ``("mutate",)`` (writes to the machine state: must fail)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.aux_calls: list[tuple] = []

    def init_aux(self, name):
        self.calls.append(("init_aux", name))
        return {"n": 0, "seen": ()}

    def handle_aux(self, role, kind, command, aux, internal):
        self.aux_calls.append((role, kind, command))
        if isinstance(command, (fx.AuxEval, fx.AuxTick)):
            return {**aux, "seen": aux["seen"] + (command,)}, NO_REPLY
        op = command[0]
        if op == "inc":
            return {**aux, "n": aux["n"] + 1}, aux["n"] + 1
        if op == "get":
            return aux, aux["n"]
        if op == "peek":
            return aux, {"id": internal.server_id(), "last_applied": internal.last_applied(),
                         "term": internal.current_term(), "leader": internal.leader_id(),
                         "version": internal.effective_machine_version(), "members": internal.members(),
                         "kv": dict(internal.machine_state()["kv"]),
                         "last": internal.log_last_index_term(), "stats": internal.log_stats()}
        if op == "info":
            return aux, internal.members_info()
        if op == "fetch":
            return aux, internal.log_fetch(command[1])
        if op == "noreply":
            return aux, NO_REPLY
        if op == "fx":
            return aux, "ok", command[1]
        if op == "boom":
            raise RuntimeError("aux bug")
        if op == "mutate":
            internal.machine_state()["kv"]["x"] = 1
        raise AssertionError(command)


def kv_state(pairs: dict | None = None, applied: tuple = ()) -> dict:
    return {"kv": dict(pairs or {}), "applied": applied}


# ================================================================= builders
def config(sid: ServerId = N1, members: Iterable = MEMBERS3, **tunables) -> ServerConfig:
    return ServerConfig(server_id=sid, uid=f"uid-{sid.name}-{sid.node}", cluster_name="c",
                        machine="tests.core_helpers:KvMachine", initial_members=tuple(members),
                        **tunables)


def new_server(sid: ServerId = N1, members: Iterable = MEMBERS3, machine: Any = None,
               recovered: Recovered | None = None, bugs: Iterable = (), **tunables) -> RaftServer:
    """A server built and ``init``-ed (its init effects are discarded)."""
    srv = core_class(bugs)(config(sid, members, **tunables), Machine(machine or KvMachine()), recovered)
    srv.init()
    return srv


def mach(srv: RaftServer) -> KvMachine:
    """The test machine behind ``srv``."""
    return srv.machine.impl


def noop(index: int, term: int, version: int = 0) -> Entry:
    return Entry(index, term, Noop(version))


def usr(index: int, term: int, data: Any = ("put", "k", 1), mode: Any = None) -> Entry:
    return Entry(index, term, Usr(data, mode if mode is not None else NoReply(), 0))


def log_of(*terms: int, start: int = 1) -> tuple:
    """Entries ``start..`` with the given terms (``put`` commands; noop for index 1)."""
    out = []
    for offset, t in enumerate(terms):
        i = start + offset
        out.append(noop(i, t) if i == 1 else usr(i, t, ("put", f"k{i}", i)))
    return tuple(out)


# ================================================================ messages
def aer(term: int, frm: ServerId, prev: int, prev_term: int, entries: Iterable = (),
        commit: int = 0) -> m.AppendEntriesRpc:
    return m.AppendEntriesRpc(term, frm, commit, prev, prev_term, tuple(entries))


def ae_ok(term: int, frm: ServerId, last: int, last_term: int | None = None,
          next_index: int | None = None) -> m.AppendEntriesReply:
    return m.AppendEntriesReply(term, frm, True, last + 1 if next_index is None else next_index,
                                last, term if last_term is None else last_term)


def ae_fail(term: int, frm: ServerId, next_index: int, last: int = 0,
            last_term: int = 0) -> m.AppendEntriesReply:
    return m.AppendEntriesReply(term, frm, False, next_index, last, last_term)


def send(to: ServerId, rpc: Any) -> fx.SendRpc:
    return fx.SendRpc(to, rpc)


def sync_cmd(data: Any, frm: Any = "client-1") -> m.Command:
    return m.Command(data, AwaitConsensus(frm))


def rpcs(effects: list, kind: type | None = None) -> list:
    """``(to, rpc)`` of every SendRpc effect (optionally only of one RPC type)."""
    return [(e.to, e.rpc) for e in effects
            if isinstance(e, fx.SendRpc) and (kind is None or isinstance(e.rpc, kind))]


def of_type(effects: list, kind: type) -> list:
    return [e for e in effects if isinstance(e, kind)]


# ============================================================== scenarios
def make_leader(sid: ServerId = N1, members: Iterable = MEMBERS3, *, machine: Any = None,
                recovered: Recovered | None = None, bugs: Iterable = (),
                commit_noop: bool = True, **tunables) -> RaftServer:
    """A leader elected through pre-vote and vote (grants from the other
    voters, in ``members`` order).  With ``commit_noop`` the leader's noop is
    made durable locally (``Written``) and acknowledged by every follower,
    so it is committed and applied: the leader is ready for membership
    changes and consistent queries."""
    members = tuple(members)
    srv = new_server(sid, members, machine, recovered, bugs, **tunables)
    others = [p for p in members if p != sid]
    quorum = len(members) // 2 + 1
    srv.handle(m.TriggerElection())
    for peer in others[:quorum - 1]:
        srv.handle(m.PreVoteResult(srv.current_term, peer, srv.pre_vote_token, True))
    srv.handle(m.MetaWritten(srv.current_term, sid))
    for peer in others[:quorum - 1]:
        srv.handle(m.RequestVoteResult(srv.current_term, peer, True))
    assert srv.role == "leader", srv.role
    if commit_noop:
        t, idx = srv.current_term, srv.log.last_index
        srv.handle(m.Written(t, idx, idx))
        for peer in others:
            srv.handle(ae_ok(t, peer, idx, t))
        assert srv.commit_index == idx and srv.last_applied == idx
    return srv


def make_follower(sid: ServerId = N2, members: Iterable = MEMBERS3, *, leader: ServerId = N1,
                  term: int = 1, entries: Iterable | None = None, commit: int | None = None,
                  durable: bool = True, machine: Any = None, bugs: Iterable = (),
                  **tunables) -> RaftServer:
    """A brand-new follower that received ``entries`` (default: the leader's
    noop at index 1) from ``leader`` in ``term`` and, with ``durable``, the
    ``Written`` for them.  ``commit`` defaults to the last entry."""
    entries = tuple(entries) if entries is not None else (noop(1, term),)
    srv = new_server(sid, members, machine, None, bugs, **tunables)
    last = entries[-1].index if entries else 0
    srv.handle(aer(term, leader, 0, 0, entries, last if commit is None else commit))
    if durable and entries:
        for t in sorted({e.term for e in entries}):
            idxs = [e.index for e in entries if e.term == t]
            srv.handle(m.Written(t, min(idxs), max(idxs)))
    assert srv.role == "follower" and srv.leader_id == leader
    return srv
