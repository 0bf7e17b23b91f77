"""Server ids and actor refs as a caller may give them.

Rules: a ``ServerId`` or any 2-sequence ``(name, node)`` names a server; an
``ActorRef`` or a plain 2-tuple or list names an actor.  Anything else is a
``ValueError`` raised before anything is sent.  No I/O.
"""
from __future__ import annotations

from typing import Any

from ..core.types import ActorRef, ServerId

__all__ = ["server_id", "server_id_or_none", "actor_ref"]


def server_id(value: Any) -> ServerId:
    """``value`` as a ``ServerId``; ``ValueError`` if it names none."""
    if isinstance(value, ServerId):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return ServerId(str(value[0]), str(value[1]))
    raise ValueError(f"not a server id: {value!r} (use ServerId(name, node))")


def server_id_or_none(value: Any) -> ServerId | None:
    """A leader as a server reported it: a ``ServerId``, or None for none
    (or for anything that is not one)."""
    if value is None:
        return None
    try:
        return server_id(value)
    except ValueError:
        return None


def actor_ref(value: Any) -> ActorRef:
    """``value`` as an ``ActorRef``; ``ValueError`` if it names none (a
    ``ServerId`` is not an actor)."""
    if isinstance(value, ActorRef):
        return value
    if type(value) in (tuple, list) and len(value) == 2:
        return ActorRef(str(value[0]), str(value[1]))
    raise ValueError(f"not an actor ref: {value!r} (use the ActorRef start_actor returned)")
