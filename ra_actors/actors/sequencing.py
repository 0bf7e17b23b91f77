"""One sender's numbered messages, back in the order they were sent.

Thespian may deliver the messages of one actor to another out of order
(a send that had to wait is overtaken by later ones) and, when it retries a
send whose acknowledgement it missed, twice.  Where order matters — a
server's WAL writes, where a late old write would overwrite newer entries —
the sender numbers its messages and the receiver puts them back in order
with a :class:`Resequencer`.

Rules:

* A message is numbered ``(generation, n)``; ``n`` counts 1, 2, ... within a
  generation.  A sender starts a new generation whenever it starts talking
  to a receiver afresh (it restarted, or the receiver did); generations are
  ordered (tuples compare), and a newer one supersedes the older: what
  waits of the old one is dropped, and so is anything of it that arrives
  later.
* :meth:`Resequencer.offer` returns what may be delivered now, in order:
  the message if it is the next one expected, followed by the waiting
  messages it unblocks.  A message whose number was delivered already is a
  duplicate and dropped; one above the next expected waits.
* A hole (the next message never came: a message can be lost when a sender
  dies or Thespian gives up) is not waited for forever.  After
  :meth:`Resequencer.skip_holes` finds it older than the caller's limit, or
  when more than ``max_waiting`` messages wait behind it, the waiting
  messages are delivered in order; the receiver's own gap detection (the
  WAL's resend request, the server's stall check) repairs what is missing.
* No clock here: the caller passes ``now`` (seconds, any monotonic origin).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable

DEFAULT_MAX_WAITING = 1024


@dataclass(slots=True)
class _Stream:
    generation: Any
    next_n: int = 1
    waiting: dict[int, Any] = field(default_factory=dict)   # n -> message
    hole_since: float | None = None                          # when the first message waited


class Resequencer:
    """Per-sender ordering (see the module rules)."""

    def __init__(self, max_waiting: int = DEFAULT_MAX_WAITING) -> None:
        self.max_waiting = max_waiting
        self._streams: dict[Hashable, _Stream] = {}
        self.stats = {"reordered": 0, "duplicates": 0, "stale": 0, "holes_skipped": 0}

    def offer(self, sender: Hashable, seq: tuple, message: Any, now: float) -> list:
        """Messages of ``sender`` deliverable now, in order (see the rules)."""
        *gen, n = seq
        generation = tuple(gen)
        st = self._streams.get(sender)
        if st is None or generation > st.generation:
            st = self._streams[sender] = _Stream(generation)
        elif generation < st.generation:
            self.stats["stale"] += 1
            return []
        if n < st.next_n or n in st.waiting:
            self.stats["duplicates"] += 1
            return []
        if n > st.next_n:
            self.stats["reordered"] += 1
            st.waiting[n] = message
            if st.hole_since is None:
                st.hole_since = now
            if len(st.waiting) > self.max_waiting:
                return self._skip(st, now)
            return []
        st.next_n = n + 1
        return [message, *self._release(st, now)]

    def skip_holes(self, now: float, older_than: float) -> dict[Hashable, list]:
        """Give up on every hole that has waited at least ``older_than``
        seconds: ``{sender: messages to deliver in order}``."""
        out = {}
        for sender, st in self._streams.items():
            if st.hole_since is not None and now - st.hole_since >= older_than:
                out[sender] = self._skip(st, now)
        return out

    def has_holes(self) -> bool:
        return any(st.hole_since is not None for st in self._streams.values())

    def forget(self, sender: Hashable) -> None:
        self._streams.pop(sender, None)

    def _skip(self, st: _Stream, now: float) -> list:
        self.stats["holes_skipped"] += 1
        st.next_n = min(st.waiting)
        return self._release(st, now)

    @staticmethod
    def _release(st: _Stream, now: float) -> list:
        out = []
        while st.next_n in st.waiting:
            out.append(st.waiting.pop(st.next_n))
            st.next_n += 1
        if out:
            # what still waits is behind a new hole (or none)
            st.hole_since = now if st.waiting else None
        return out
