"""msgpack encoding of everything ra_actors stores, sends or validates.

The public face of :mod:`ra_actors.core.codec` (see its rules): the same
functions, except that a value msgpack cannot encode raises
``errors.InvalidCommand`` -- what a caller of the client API is told.
"""
from __future__ import annotations

from typing import Any

from .core.codec import (EXT_ACTOR_REF, EXT_RECORD, EXT_SERVER_ID, EXT_TAG, Codec, EncodeError, register,
                         unpack)
from .core.codec import pack as _pack
from .errors import InvalidCommand

__all__ = ["pack", "unpack", "normalise", "register", "Codec", "EncodeError",
           "EXT_SERVER_ID", "EXT_RECORD", "EXT_ACTOR_REF", "EXT_TAG"]


def pack(value: Any) -> bytes:
    """Encode ``value``; raise ``InvalidCommand`` if it is not serialisable."""
    try:
        return _pack(value)
    except EncodeError as exc:
        raise InvalidCommand(str(exc)) from None


def normalise(value: Any) -> Any:
    """``unpack(pack(value))``: the canonical form every member will see."""
    return unpack(pack(value))
