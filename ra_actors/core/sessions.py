"""Client sessions: every command applied at most once, each session's in
the order its client issued them (Raft thesis §6.3).

A client numbers its commands (``SessionSeq``) and re-sends one with the
same number until it has an answer.  Two parts make that safe:

:class:`SessionTable` -- replicated state, changed only when entries are
applied, identically on every member (and on replay after a restart):

* A command of a session the table does not know starts it at ``low``
  (the client's lowest outstanding number) -- unless the client has seen
  the session applied before (``known``): then the session expired, and the
  command is answered ``SessionExpired``, not applied.
* ``low`` moves ``next`` forward: numbers below it are acknowledged or
  abandoned by the client and are never applied from then on; their cached
  replies are dropped.
* ``seq < next``: a repeat -- answered with the cached reply (if the client
  may still wait for it), not applied.  ``seq == next``: applied, its reply
  cached, ``next`` grows.  ``seq > next``: a gap the leader should have held
  back -- answered ``SequenceGap``, not applied.
* Time is log time: the largest timestamp of the applied entries.  A
  session idle for ``timeout_ms`` of log time is forgotten, at the same
  entry on every member.  The table is part of snapshots.

:class:`Resequencer` -- the leader's, not replicated: a command that
arrives ahead of a gap in its session (the one before it was lost or
delayed) is held until the missing one arrives, for at most
``gap_timeout_ms`` of the leader's clock and ``max_parked`` per session,
then answered ``SequenceGap`` (the client re-sends from its lowest
outstanding).  So the log holds each session's commands in order, and
apply never has to hold anything back.
"""
from __future__ import annotations

from typing import Any, Iterable

from .types import SessionRecord, SessionSeq

APPLY = "apply"
DUPLICATE = "duplicate"
EXPIRED = "expired"
GAP = "gap"
NOT_CACHED = object()   # a repeat whose reply is gone (the client no longer waits for it)


class _Session:
    __slots__ = ("next_seq", "low", "last_active", "replies")

    def __init__(self, next_seq: int, low: int, last_active: int, replies: dict | None = None) -> None:
        self.next_seq = next_seq
        self.low = low
        self.last_active = last_active
        self.replies: dict[int, Any] = replies or {}


class SessionTable:
    """The replicated session table (see the module rules)."""

    def __init__(self, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms
        self.sessions: dict[str, _Session] = {}
        self.log_clock = 0
        self._last_sweep = 0
        self._sweep_every = max(1, timeout_ms // 8)     # log time between two sweeps

    def __len__(self) -> int:
        return len(self.sessions)

    def admit(self, s: SessionSeq, ts: int) -> tuple[str, Any]:
        """What to do with command ``s`` applied at log time ``ts``:
        ``(APPLY, None)``, ``(DUPLICATE, cached reply or NOT_CACHED)``,
        ``(EXPIRED, None)`` or ``(GAP, None)``."""
        if ts > self.log_clock or self.log_clock - self._last_sweep >= self._sweep_every:
            self._advance_clock(ts)
        session = self.sessions.get(s.session)
        if session is None:
            if s.known:
                return EXPIRED, None
            session = self.sessions[s.session] = _Session(s.low, s.low, self.log_clock)
        session.last_active = self.log_clock
        if s.low > session.low:
            self._release(session, s.low)
        if s.seq < session.next_seq:
            return DUPLICATE, session.replies.get(s.seq, NOT_CACHED)
        if s.seq > session.next_seq:
            return GAP, None
        return APPLY, None

    @staticmethod
    def _release(session: _Session, low: int) -> None:
        """The client waits for nothing below ``low`` any more.  (Cached
        replies are numbered from the old ``low`` up: the ones released are
        dropped by number, not by a scan of the whole cache.)"""
        replies = session.replies
        if low - session.low <= len(replies):
            for seq in range(session.low, low):
                replies.pop(seq, None)
        else:
            session.replies = {q: r for q, r in replies.items() if q >= low}
        session.low = low
        session.next_seq = max(session.next_seq, low)

    def applied(self, s: SessionSeq, reply: Any) -> None:
        """Command ``s`` (admitted with APPLY) was applied with ``reply``."""
        session = self.sessions[s.session]
        session.replies[s.seq] = reply
        session.next_seq = s.seq + 1

    def next_seq(self, session_id: str) -> int | None:
        session = self.sessions.get(session_id)
        return session.next_seq if session is not None else None

    def _advance_clock(self, ts: int) -> None:
        if ts > self.log_clock:
            self.log_clock = ts
        # Sweep now and then (log time, so every member sweeps at the same entry).
        if self.log_clock - self._last_sweep >= self._sweep_every:
            self._last_sweep = self.log_clock
            horizon = self.log_clock - self.timeout_ms
            for sid in [k for k, v in self.sessions.items() if v.last_active < horizon]:
                del self.sessions[sid]

    # -- snapshots -----------------------------------------------------------
    def records(self) -> tuple[SessionRecord, ...]:
        return tuple(SessionRecord(sid, s.next_seq, s.low, s.last_active, tuple(sorted(s.replies.items())))
                     for sid, s in sorted(self.sessions.items()))

    def restore(self, records: Iterable[SessionRecord], log_clock: int) -> None:
        self.sessions = {r.session: _Session(r.next_seq, r.low, r.last_active, dict(r.replies)) for r in records}
        self.log_clock = log_clock
        self._last_sweep = log_clock

    def overview(self) -> dict:
        """``count`` of sessions; ``oldest_last_active`` (log time, ms) of
        the longest idle one and how long it has been idle
        (``oldest_idle_ms``, None without sessions); ``log_clock``;
        ``cached_replies`` held for clients that may still ask."""
        oldest = min((s.last_active for s in self.sessions.values()), default=None)
        return {"count": len(self.sessions), "oldest_last_active": oldest,
                "oldest_idle_ms": None if oldest is None else self.log_clock - oldest,
                "log_clock": self.log_clock,
                "cached_replies": sum(len(s.replies) for s in self.sessions.values())}


class Resequencer:
    """The leader's hold on commands ahead of a gap (see the module rules)."""

    def __init__(self, gap_timeout_ms: int, max_parked: int) -> None:
        self.gap_timeout_ms = gap_timeout_ms
        self.max_parked = max_parked
        self.tails: dict[str, int] = {}       # session -> highest number in this leader's log
        self.parked: dict[str, dict[int, Any]] = {}   # session -> seq -> Command

    def reset(self, tails: dict[str, int]) -> list:
        """Leadership gained (``tails`` from the log) or lost; returns the
        commands that were held (to be turned away)."""
        held = [cmd for cmds in self.parked.values() for _seq, cmd in sorted(cmds.items())]
        self.tails = dict(tails)
        self.parked = {}
        return held

    def offer(self, cmd: Any) -> tuple[list, Any]:
        """A session command reached the leader: ``(commands to append now,
        in order; a command refused because its session holds too many, or None)``."""
        s: SessionSeq = cmd.session
        tail = max(self.tails.get(s.session, 0), s.low - 1)
        if s.seq > tail + 1:
            held = self.parked.setdefault(s.session, {})
            if len(held) >= self.max_parked and s.seq not in held:
                return [], cmd
            held[s.seq] = cmd
            return [], None
        out = [cmd]
        if s.seq == tail + 1:
            tail = s.seq
            held = self.parked.get(s.session)
            while held and tail + 1 in held:
                tail += 1
                out.append(held.pop(tail))
            if held is not None and not held:
                del self.parked[s.session]
        self.tails[s.session] = tail
        return out, None

    def offer_all(self, cmds: Iterable) -> tuple[list, list]:
        """:meth:`offer` for each of ``cmds`` in turn (commands without a
        session pass): ``(commands to append now, in order; commands
        refused)``.  A command that follows on its session's tail while
        nothing of its session is held -- every command of a healthy
        pipeline -- is taken here without the general case's lists."""
        out: list = []
        refused: list = []
        tails, parked = self.tails, self.parked
        for cmd in cmds:
            s = cmd.session
            if s is not None:
                name = s.session
                seq = s.seq
                if name not in parked and seq == max(tails.get(name, 0), s.low - 1) + 1:
                    tails[name] = seq
                    out.append(cmd)
                    continue
                ready, no = self.offer(cmd)
                out.extend(ready)
                if no is not None:
                    refused.append(no)
            else:
                out.append(cmd)
        return out, refused

    def expired(self, now_ms: int) -> list:
        """Commands held longer than the gap timeout (they leave the hold)."""
        out = []
        for sid in list(self.parked):
            held = self.parked[sid]
            for seq in [q for q, cmd in held.items() if now_ms - cmd.ts > self.gap_timeout_ms]:
                out.append(held.pop(seq))
            if not held:
                del self.parked[sid]
        return out

    def holding(self) -> bool:
        return bool(self.parked)
