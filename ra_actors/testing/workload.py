"""Simulated KV clients: read / write / cas on a few keys, with a history.

Rules:

* A :class:`Workload` drives ``n`` client processes against one cluster
  running :mod:`machines.kv`.  Each client has at most one operation
  outstanding and records it in a
  :class:`~ra_actors.testing.history.HistoryRecorder` whose clock is the
  simulation's virtual time (the Jepsen format of
  ``shared/data/jepsen-etcd/README.md``).
* Writes and cas go through the log: ``Command(data, AwaitConsensus(from_))``
  (or, for pipelining clients, ``NotifyReply(correlation, client)``, answered
  by ``Applied``/``Rejected`` events).  Reads are consistent queries
  (``Query("consistent", partial(kv.read, key=k), from_)``) or, sometimes,
  ``("read", k)`` commands through the log.
* Written values are unique per key (a per-key counter), so the checker can
  tell every write apart.
* Retrying is safe only when the command was certainly *not* appended: a
  ``Redirect(hint)`` reply, a ``Rejected`` event, or a send that
  failed at once because the server is not running, for the latest attempt.  The client then follows the hint (or, without one, waits
  a little and tries another member).  Every attempt has its own ``from_``
  (``"<owner>#<n>"``) so late replies of older attempts are recognised; an
  ``ok`` from any attempt of the current operation completes it.
* No answer before the operation's deadline: a write or cas is ``info``
  (it may still take effect) and the client continues as a *new* process
  number, as Jepsen does; a read is ``fail`` (reads have no effect).
  ``Error(...)`` replies are ``info`` for commands and ``fail`` for
  reads.
* **Sessions** (``WorkloadConfig.sessions``): a client numbers its commands
  in a session of its own (``SessionSeq``; ``low`` is the command's own
  number, since a client has one operation outstanding and has given up on
  every earlier one).  Such a client may also resend a command when an
  attempt gets no answer for ``attempt_timeout_ms`` -- the session makes a
  resend safe: the cluster applies the command at most once.
* The workload never sees the simulator: it talks to it through the small
  :class:`ClientEnv` protocol, and all its randomness comes from the
  simulation's RNG.
"""
from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from .. import codec
from ..core.messages import Command, Query
from ..core.types import AwaitConsensus, Error, NotifyReply, Ok, Redirect, ServerId, SessionSeq
from .history import FAIL, INFO, OK, HistoryRecorder, OpHandle

import machines.kv as kv


class ClientEnv(Protocol):
    """What a workload needs from the simulator."""

    def clock(self) -> int:
        """Virtual time in milliseconds."""

    def send_to_server(self, owner: str, sid: ServerId, msg: Any) -> None: ...

    def wake(self, owner: str, delay_ms: int, token: Any) -> None: ...

    def acked(self, cluster: str, from_key: Any) -> None: ...

    def note(self, line: str) -> None: ...


@dataclass
class WorkloadConfig:
    clients: int = 4
    keys: int = 3
    think_ms: tuple[int, int] = (20, 200)
    op_timeout_ms: int = 1500
    retry_backoff_ms: tuple[int, int] = (20, 120)
    read_share: float = 0.45
    cas_share: float = 0.25
    read_via_log: float = 0.15     # share of reads sent as ("read", k) commands
    pipelined_clients: int = 1     # how many clients use NotifyReply
    redirects_before_backoff: int = 4
    sessions: bool = True          # commands carry SessionSeq (exactly once)
    attempt_timeout_ms: int = 400  # a session client resends after this much silence


@dataclass
class _Op:
    handle: OpHandle
    f: str
    key: str
    value: Any
    message_data: Any          # the command data (None for query reads)
    serial: int
    session: SessionSeq | None = None
    attempts: set[int] = field(default_factory=set)
    last_attempt: int = 0
    redirects: int = 0


class Client:
    """One simulated client process (see the module rules)."""

    def __init__(self, workload: "Workload", index: int, pipelined: bool) -> None:
        self.w = workload
        self.index = index
        self.owner = f"{workload.cluster}/c{index}"
        self.process = index
        self.pipelined = pipelined
        self.op: _Op | None = None
        self.attempt = 0
        self.serial = 0
        self.leader_guess: ServerId | None = None
        self.ops_started = 0
        self.session_id = f"{self.owner}/session"
        self.seq = 0
        self.session_known = False    # the cluster has applied a command of this session

    # ------------------------------------------------------------- driving
    def schedule_next(self) -> None:
        self.w.env.wake(self.owner, self.w.rng.randint(*self.w.config.think_ms), ("start",))

    def on_wake(self, token: tuple) -> None:
        kind = token[0]
        if kind == "start":
            if self.op is None and self.w.active:
                self._start_op()
        elif kind == "deadline":
            if self.op is not None and self.op.serial == token[1]:
                self._timeout()
        elif kind == "retry":
            if self.op is not None and self.op.serial == token[1] and self.op.last_attempt == token[2]:
                self._send_attempt()
        elif kind == "silence":
            # no answer to the latest attempt: with a session, sending the
            # same command again (elsewhere) cannot apply it twice
            if self.op is not None and self.op.serial == token[1] and self.op.last_attempt == token[2]:
                self.leader_guess = None
                self._send_attempt()

    def _start_op(self) -> None:
        w, rng, cfg = self.w, self.w.rng, self.w.config
        key = rng.choice(w.keys)
        roll = rng.random()
        if roll < cfg.read_share:
            f, value = "read", None
            data = ("read", key) if rng.random() < cfg.read_via_log else None
        elif roll < cfg.read_share + cfg.cas_share:
            f = "cas"
            expected = rng.choice(w.candidates(key))
            value = (expected, w.fresh_value(key))
            data = ("cas", key, expected, value[1])
        else:
            f = "write"
            value = w.fresh_value(key)
            data = ("write", key, value)
        self.serial += 1
        handle = w.history.invoke(self.process, f, key, value)
        session = None
        if data is not None and cfg.sessions:
            self.seq += 1
            session = SessionSeq(self.session_id, self.seq, self.seq, self.session_known)
        self.op = _Op(handle, f, key, value, codec.normalise(data) if data is not None else None, self.serial,
                      session=session)
        self.ops_started += 1
        w.env.wake(self.owner, cfg.op_timeout_ms, ("deadline", self.serial))
        self._send_attempt()

    def _target(self) -> ServerId:
        if self.leader_guess is not None:
            return self.leader_guess
        return self.w.rng.choice(self.w.members())

    def _send_attempt(self) -> None:
        op = self.op
        assert op is not None
        self.attempt += 1
        op.attempts.add(self.attempt)
        op.last_attempt = self.attempt
        from_ = f"{self.owner}#{self.attempt}"
        if op.message_data is None:
            msg: Any = Query("consistent", functools.partial(kv.read, key=op.key), from_)
        elif self.pipelined:
            msg = Command(op.message_data, NotifyReply(self.attempt, self.owner), session=op.session)
        else:
            msg = Command(op.message_data, AwaitConsensus(from_), session=op.session)
        self.w.env.send_to_server(self.owner, self._target(), msg)
        if op.session is not None:
            self.w.env.wake(self.owner, self.w.config.attempt_timeout_ms, ("silence", op.serial, self.attempt))

    # ------------------------------------------------------------ outcomes
    def _finish(self, kind: str, value: Any = None, has_value: bool = False) -> None:
        op = self.op
        assert op is not None
        if has_value:
            self.w.history.complete(op.handle, kind, value)
        else:
            self.w.history.complete(op.handle, kind)
        self.w.count(kind)
        self.op = None
        if kind == INFO:
            # The op stays open forever (it may still take effect): continue
            # as a fresh process, as Jepsen does.
            self.process += self.w.config.clients
        self.schedule_next()

    def _timeout(self) -> None:
        op = self.op
        assert op is not None
        self._finish(FAIL if op.f == "read" else INFO)
        # Whoever we believed led did not answer: ask around next time.
        self.leader_guess = None

    def _machine_reply(self, reply: Any, from_key: Any) -> None:
        op = self.op
        assert op is not None
        if op.session is not None:
            self.session_known = True
        if op.f != "read":
            self.w.env.acked(self.w.cluster, from_key)
        if op.f == "read":
            self.w.observe(op.key, reply)
            self._finish(OK, reply, has_value=True)
        elif op.f == "write":
            if reply == "ok":
                self._finish(OK)
            else:
                self._finish(INFO)
        else:  # cas
            if reply == kv.CAS_OK:
                self._finish(OK)
            elif isinstance(reply, tuple) and reply and reply[0] == kv.CAS_FAILED:
                self.w.observe(op.key, reply[1])
                self._finish(FAIL)
            else:
                self._finish(INFO)

    def _redirect(self, attempt: int, hint: ServerId | None) -> None:
        op = self.op
        if op is None or attempt != op.last_attempt:
            return
        op.redirects += 1
        self.leader_guess = ServerId(*hint) if hint is not None else None
        if hint is not None and op.redirects % self.w.config.redirects_before_backoff:
            self._send_attempt()
        else:
            # No hint, or servers keep pointing at each other (stale views
            # during an election): back off before asking again.
            self.w.env.wake(self.owner, self.w.rng.randint(*self.w.config.retry_backoff_ms),
                            ("retry", op.serial, op.last_attempt))

    def on_reply(self, from_: str, reply: Any, leader: ServerId | None) -> None:
        attempt = int(from_.rsplit("#", 1)[1])
        op = self.op
        if op is None or attempt not in op.attempts:
            return  # a late answer to an operation already finished
        if isinstance(reply, Ok):
            if leader is not None:
                self.leader_guess = ServerId(*leader)
            self._machine_reply(reply.value, from_)
        elif isinstance(reply, Redirect):
            self._redirect(attempt, reply.leader)
        elif isinstance(reply, Error) and reply.kind == "SequenceGap" and attempt == op.last_attempt:
            self._send_attempt()          # not applied: send it again
        else:
            # An error: a command's fate is unknown, a read had no effect.
            self._finish(FAIL if op.f == "read" else INFO)

    def on_applied(self, leader: ServerId, results: tuple) -> None:
        op = self.op
        for correlation, reply in results:
            if op is not None and correlation in op.attempts:
                self.leader_guess = ServerId(*leader)
                self._machine_reply(reply, (self.owner, correlation))
                op = self.op

    def on_unreachable(self, msg: Any) -> None:
        """Sending ``msg`` failed at once (no such server): try elsewhere."""
        mode = getattr(msg, "reply_mode", None)
        if isinstance(mode, NotifyReply):
            attempt = mode.correlation
        else:
            caller = msg.from_ if isinstance(msg, Query) else getattr(mode, "from_", None)
            if not isinstance(caller, str):
                return
            attempt = int(caller.rsplit("#", 1)[1])
        self._redirect(attempt, None)

    def on_rejected(self, from_id: ServerId, leader: ServerId | None, correlation: Any,
                    reason: str = "not_leader") -> None:
        if self.op is not None and correlation in self.op.attempts:
            if reason == "not_leader":
                self._redirect(correlation, leader)
            elif reason == "SequenceGap":
                if correlation == self.op.last_attempt:
                    self._send_attempt()  # not applied: send it again
            else:
                self._finish(INFO)        # the session expired: this command's fate is unknown


class Workload:
    """The clients of one cluster and their shared history."""

    def __init__(self, cluster: str, rng: random.Random, env: ClientEnv,
                 members: Callable[[], list[ServerId]], config: WorkloadConfig | None = None) -> None:
        self.cluster = cluster
        self.rng = rng
        self.env = env
        self.members = members
        self.config = config or WorkloadConfig()
        self.history = HistoryRecorder(clock=env.clock)
        self.keys = [f"k{i}" for i in range(self.config.keys)]
        self._next_value: dict[str, int] = {k: 0 for k in self.keys}
        self._seen: dict[str, list[Any]] = {k: [None] for k in self.keys}
        self.active = False
        self.stats = {OK: 0, FAIL: 0, INFO: 0}
        self.clients = [Client(self, i, pipelined=i < self.config.pipelined_clients)
                        for i in range(self.config.clients)]
        self.by_owner = {c.owner: c for c in self.clients}

    # -------------------------------------------------------------- values
    def fresh_value(self, key: str) -> int:
        self._next_value[key] += 1
        value = self._next_value[key]
        self.observe(key, value)
        return value

    def observe(self, key: str, value: Any) -> None:
        seen = self._seen[key]
        if value not in seen:
            seen.append(value)
            if len(seen) > 4:
                del seen[0]

    def candidates(self, key: str) -> list[Any]:
        return list(self._seen[key])

    def count(self, kind: str) -> None:
        self.stats[kind] += 1

    # ------------------------------------------------------------- control
    def start(self) -> None:
        self.active = True
        for c in self.clients:
            c.schedule_next()

    def stop(self) -> None:
        """No new operations; outstanding ones finish or time out."""
        self.active = False

    def idle(self) -> bool:
        return all(c.op is None for c in self.clients)

    def events(self) -> list[dict]:
        return self.history.events()
