"""Events a client receives asynchronously (``client.events(timeout)``).

* ``Applied(leader, results)``: pipelined commands were applied; ``results``
  is a list of ``(correlation, reply)`` in apply order (one event per apply
  batch of the leader).
* ``Rejected(server, reason)``: a pipelined command was not taken.
  ``reason`` is ``NotLeader(leader, correlation)`` when it reached a server
  that is not the leader (``leader`` may be None): resend it to ``leader``;
  or ``SessionRefused(kind, correlation)`` when its session refused it
  (``kind`` is ``"SessionExpired"`` or ``"SequenceGap"``, the name of the
  ``ra_actors.errors`` class); or ``StorageFailed(detail, correlation)``
  when the server halted because its node's disk failed (the command may
  or may not have been applied; ``detail`` names the error); or
  ``CommandRefused(kind, correlation)`` when the server refused the command
  itself (``kind`` is ``"CommandTooLarge"`` or ``"InvalidCommand"``):
  nothing was appended.
* ``Message(msg)``: a machine sent ``msg`` to this client's handle
  (``SendMsg(client.handle, msg)``).

They are plain frozen dataclasses: compare them, match on them::

    for ev in client.events(timeout=1.0):
        match ev:
            case Applied(leader, results): ...
            case Rejected(server, NotLeader(leader, corr)): ...
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Applied", "Rejected", "NotLeader", "SessionRefused", "StorageFailed", "CommandRefused",
           "Message"]


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


@dataclass(frozen=True)
class Applied:
    leader: Any
    results: list | tuple    # ((correlation, reply), ...); msgpack delivers tuples


@dataclass(frozen=True)
class Rejected:
    server: Any
    reason: Any


@dataclass(frozen=True)
class Message:
    msg: Any
