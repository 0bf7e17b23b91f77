"""msgpack encoding of everything ra_actors stores, sends or validates.

The public face of :mod:`ra_actors.core.codec` (see its rules): the same
functions, except that a value msgpack cannot encode raises
``errors.InvalidCommand`` -- what a caller of the client API is told.

Rules of the shortcuts (every pipelined command of a client goes through
:func:`sized`, and its correlation through :func:`normalise`):

* A scalar (``bytes``, ``str``, ``int``, ``float``, ``bool``, ``None``, by
  exact type) decodes as itself: it is encoded (to check it can be, and to
  measure it) but never decoded again.
* ``bytes`` below 4 GiB and ``int`` in msgpack's range always encode:
  their size is computed, nothing is encoded.
"""
from __future__ import annotations

from typing import Any

from .core.codec import (EXT_ACTOR_REF, EXT_RECORD, EXT_SERVER_ID, EXT_TAG, Codec, EncodeError, register,
                         unpack)
from .core.codec import pack as _pack
from .errors import InvalidCommand

__all__ = ["pack", "unpack", "normalise", "sized", "register", "Codec", "EncodeError",
           "EXT_SERVER_ID", "EXT_RECORD", "EXT_ACTOR_REF", "EXT_TAG"]


def pack(value: Any) -> bytes:
    """Encode ``value``; raise ``InvalidCommand`` if it is not serialisable."""
    try:
        return _pack(value)
    except EncodeError as exc:
        raise InvalidCommand(str(exc)) from None


# Scalars that decode as themselves (exact types: a subclass is encoded as
# its base and decodes as the base).
_SELF_DECODING = frozenset({bytes, str, int, float, bool, type(None)})
_INT_MIN = -(1 << 63)
_INT_END = 1 << 64
_BIN_END = 1 << 32


def normalise(value: Any) -> Any:
    """``unpack(pack(value))``: the canonical form every member will see."""
    t = type(value)
    if t is int:
        if _INT_MIN <= value < _INT_END:
            return value
    elif t is bytes or value is None or t is bool:
        if t is not bytes or len(value) < _BIN_END:
            return value
    elif t in _SELF_DECODING:
        pack(value)
        return value
    return unpack(pack(value))


def sized(value: Any) -> tuple[Any, int]:
    """``(normalise(value), len(pack(value)))``, encoding ``value`` at most
    once (see the module rules); ``InvalidCommand`` if it cannot be."""
    if type(value) is bytes:
        n = len(value)
        if n < _BIN_END:
            return value, n + (2 if n < 0x100 else 3 if n < 0x10000 else 5)
    packed = pack(value)
    return (value if type(value) in _SELF_DECODING else unpack(packed)), len(packed)
