"""Events a client receives asynchronously (``client.events(timeout)``).

* ``Applied(leader, results)``: pipelined commands were applied; ``results``
  is a list of ``(correlation, reply)`` in apply order (one event per apply
  batch of the leader).
* ``Rejected(server, reason)``: a pipelined command was not taken.
  ``reason`` is ``SessionRefused(kind, correlation)`` when the cluster
  refused it for its session (``kind`` names the ``ra_actors.errors``
  class: ``"SessionExpired"``), or ``CommandRefused(kind, correlation)``
  when the server refused the command itself (``kind``:
  ``"CommandTooLarge"``, or ``"InvalidCommand"`` -- not a value the log can
  store, or malformed session fields or priority); either way it was not
  applied; or ``StorageFailed(detail, correlation)`` when the server
  halted because its node's disk failed (the command may or may not have
  been applied; ``detail`` names the error).  A ``Client`` sends a command that reached a server that does
  not lead (``NotLeader(leader, correlation)``) or that waited behind a gap
  (``SessionRefused("SequenceGap", ...)``) again itself and never hands
  those out; a program that speaks to servers without a ``Client`` sees
  them.
* ``TimedOut(server, correlation)``: no quorum answered the pipelined
  command within the client's ``pipeline_timeout``; it may or may not have
  been applied, and the client sends it no more (``server``: the one it
  was last sent to).
* ``Message(msg)``: a machine sent ``msg`` to this client's handle
  (``SendMsg(client.handle, msg)``).
* ``RaEvent(leader, msg)``: the same with the ``ra_event`` option (Ra's
  ``{ra_event, Leader, {machine, Msg}}``); actors receive it too.
* ``Cast(msg)``: what an actor receives for a ``SendMsg`` with the ``cast``
  option (Ra's ``{'$gen_cast', Msg}``): ``msg`` is the message, or the
  ``RaEvent`` when both options are given.

They are plain frozen dataclasses: compare them, match on them::

    for ev in client.events(timeout=1.0):
        match ev:
            case Applied(leader, results): ...
            case Rejected(server, SessionRefused(kind, corr) | CommandRefused(kind, corr)): ...
            case TimedOut(server, corr): ...
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Applied", "Rejected", "NotLeader", "SessionRefused", "StorageFailed", "CommandRefused",
           "TimedOut", "Message", "RaEvent", "Cast"]


@dataclass(frozen=True)
class NotLeader:
    """Reason of a ``Rejected`` event (Ra's ``{not_leader, Leader, Correlation}``)."""

    leader: Any
    correlation: Any


@dataclass(frozen=True)
class SessionRefused:
    """Reason of a ``Rejected`` event: the command's session refused it."""

    kind: str
    correlation: Any


@dataclass(frozen=True)
class StorageFailed:
    """Reason of a ``Rejected`` event: the server halted because its node's
    storage failed (``detail`` says how); like a timeout, the command may
    or may not have been applied."""

    detail: str
    correlation: Any


@dataclass(frozen=True)
class CommandRefused:
    """Reason of a ``Rejected`` event: the server refused the command itself."""

    kind: str
    correlation: Any


@dataclass(frozen=True, repr=False)
class Applied:
    leader: Any
    results: list | tuple    # ((correlation, reply), ...); msgpack delivers tuples

    def __repr__(self) -> str:
        # Bounded: Thespian formats every message it sends (process placement
        # sends Applied through it), and a batch holds up to a window of results.
        shown = ", ".join(repr(r) for r in self.results[:_SHOWN])
        more = len(self.results) - _SHOWN
        tail = f", ... {more} more" if more > 0 else ""
        return f"Applied(leader={self.leader!r}, results=[{shown}{tail}])"


_SHOWN = 8


@dataclass(frozen=True)
class Rejected:
    server: Any
    reason: Any


@dataclass(frozen=True)
class TimedOut:
    """A pipelined command no quorum answered in time: its outcome is unknown."""

    server: Any
    correlation: Any


@dataclass(frozen=True)
class Message:
    msg: Any


@dataclass(frozen=True)
class RaEvent:
    """A machine's ``SendMsg(..., options=("ra_event",))``: ``leader`` is the
    leader as the sending member knew it."""

    leader: Any
    msg: Any


@dataclass(frozen=True)
class Cast:
    """A machine's ``SendMsg(..., options=("cast",))`` to an actor."""

    msg: Any
