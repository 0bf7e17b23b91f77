"""A client's session: the numbers its commands carry (Raft thesis §6.3).

The cluster's side is :mod:`ra_actors.core.sessions`; this is what a client
keeps so that it may send a command again and again until it has the answer
and the cluster still applies it once.

Rules:

* **One session per client**, named ``name``: random for a new client, or
  the name given to ``connect(session=...)``.  Commands are numbered per
  *stream*: one stream per server id the caller names, recorded by the
  cluster behind it as session ``"<name>/<server>@<node>"``.  (A cluster
  wants the numbers of a session without gaps, and one client may command
  many clusters; a cluster named through two of its members sees two
  sessions, each exactly-once and ordered.)
* **Numbers.**  A stream numbers its commands 1, 2, 3, ... in the order the
  caller issues them.  A session given by name (one that may have been used
  before, by a process that has since restarted) numbers from the client's
  clock in microseconds instead, so that its new numbers come after every
  number an earlier client of the session used.
* **low** is the lowest number of the stream still outstanding (issued and
  neither answered nor given up), or the next number when none is: the
  cluster never applies a number below it from then on.  So a command the
  client gave up on (``Timeout``) is either applied before the next command
  of its stream arrives, or never.
* **known**: the command may repeat one the cluster has seen (it is sent
  again, or numbers below it are outstanding) and the stream has seen a
  command applied.  A cluster with no record of the session then answers
  ``SessionExpired`` instead of applying anything twice.  A first attempt
  with nothing outstanding below it repeats nothing: it is sent unknown
  and starts the session afresh in a cluster that forgot it.
* **Resending an earlier client's command.**  A client that named its
  session may send a command again under the number an earlier client of
  the session gave it (``claim``): a number below the stream's own first
  one and not outstanding.  The stream's own commands wait while such
  commands are outstanding (``blocked``): between the old numbers and its
  own lies a gap the cluster would hold them behind.
* No I/O, no clock: times come in as arguments.
"""
from __future__ import annotations

import uuid
from typing import Any

from ..core.types import ServerId

__all__ = ["Session", "Stream", "MAX_NAME"]

MAX_NAME = 128      # characters of a session name (the cluster's record adds the server id)


class Stream:
    """One stream of numbers (see the module rules)."""

    __slots__ = ("key", "next", "first_own", "outstanding", "seen_applied", "claimed", "_low")

    def __init__(self, key: str, first: int) -> None:
        self.key = key                      # the session name the cluster records
        self.next = first                   # the number the next own command gets
        self.first_own = first
        self.outstanding: dict[int, Any] = {}   # number -> the caller's token for it
        self.seen_applied = False           # some command of this stream was answered applied
        self.claimed = 0                    # outstanding numbers below first_own (claims)
        self._low = first                   # no own number below this is outstanding

    def issue(self, token: Any = None) -> int:
        """The next own number, outstanding from now on."""
        seq = self.next
        self.next = seq + 1
        self.outstanding[seq] = token
        return seq

    def claim(self, seq: int, token: Any = None) -> int:
        """Number ``seq`` of an earlier client of the session, outstanding
        again here; ``ValueError`` if it is not one (see the module rules)."""
        if type(seq) is not int or not 1 <= seq < self.first_own:
            raise ValueError(f"seq must be a number an earlier client of the session used "
                             f"(1 to {self.first_own - 1}), not {seq!r}")
        if seq in self.outstanding:
            raise ValueError(f"command {seq} of this session is already outstanding")
        self.outstanding[seq] = token
        self.claimed += 1
        return seq

    def settle(self, seq: int) -> None:
        """``seq`` is answered or given up: no longer outstanding."""
        if self.outstanding.pop(seq, _ABSENT) is not _ABSENT and seq < self.first_own:
            self.claimed -= 1

    def low(self) -> int:
        if self.claimed:
            return min(s for s in self.outstanding if s < self.first_own)
        low, outstanding, nxt = self._low, self.outstanding, self.next
        while low < nxt and low not in outstanding:
            low += 1
        self._low = low
        return low

    def known(self, seq: int, again: bool) -> bool:
        """The ``known`` flag of command ``seq`` (``again``: it may have been
        sent before, by this client or an earlier one)."""
        if again or seq < self.first_own:
            return self.seen_applied or seq < self.first_own
        return self.seen_applied and self.low() < seq

    def blocked(self) -> bool:
        """Own commands must wait: claimed ones are outstanding."""
        return self.claimed > 0


_ABSENT = object()


class Session:
    """A client's session and its streams (see the module rules)."""

    def __init__(self, name: str | None, now_us: int) -> None:
        if name is None:
            self.name = uuid.uuid4().hex[:20]
            self.named = False
        else:
            if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
                raise ValueError(f"a session name is a string of 1 to {MAX_NAME} characters, not {name!r:.80}")
            self.name = name
            self.named = True
        self._base = now_us
        self.streams: dict[ServerId, Stream] = {}

    def stream(self, sid: ServerId, now_us: int) -> Stream:
        found = self.streams.get(sid)
        if found is None:
            first = max(now_us, self._base) if self.named else 1
            found = self.streams[sid] = Stream(f"{self.name}/{sid.name}@{sid.node}", first)
        return found
