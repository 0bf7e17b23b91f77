"""What a server takes from a client as a command.

The client checks its commands before sending them, but a server cannot
rely on that (another client version, a hand-made message): it checks
every command a client sends it (``CommandRequest``, each command of a
``Pipeline``) again, before anything reaches the core.

Rules:

* A command must be a value the log can store (msgpack, with the core's
  records), in the form every member will read back from the log (what a
  client's ``normalise`` gives: tuples, not lists or sets), so that the
  leader applies what its followers apply; and its encoding must be at
  most the cluster's ``max_command_bytes`` (``ServerConfig``, 1 MiB by
  default).  Otherwise it is refused with the ``ra_actors.errors`` class
  that says why (``InvalidCommand``, ``CommandTooLarge``) and nothing is
  appended.
* Commands a follower forwards to its leader were checked by that
  follower when its client sent them.
* The size is that of the plain msgpack encoding (the core's records are
  encoded only when plain msgpack cannot carry the value).
"""
from __future__ import annotations

from typing import Any

import msgpack

from ..core import codec

__all__ = ["command_refusal"]

_SCALARS = frozenset({bytes, str, int, float, bool, type(None)})
_BIN_END = 1 << 32      # msgpack's bin: at most this many bytes minus one


def command_refusal(data: Any, limit: int) -> tuple[str, str] | None:
    """None when a server takes ``data`` as a command, else ``(error class
    name, message)``."""
    if type(data) is bytes and len(data) < _BIN_END:
        # (the commonest command: its encoded size needs no encoding)
        n = len(data)
        return _size_refusal(n + (2 if n < 0x100 else 3 if n < 0x10000 else 5), limit)
    try:
        packed = msgpack.packb(data)
        # (a scalar comes back as it went; only containers need the check)
        canonical = type(data) in _SCALARS or msgpack.unpackb(packed, use_list=False) == data
    except (TypeError, ValueError, OverflowError):
        canonical = False
    if not canonical:      # records inside, or not in canonical form: the core's codec decides
        try:
            packed = codec.pack(data)
        except codec.EncodeError as exc:
            return "InvalidCommand", f"not a value the log can store: {exc}"
        if codec.unpack(packed) != data:
            return "InvalidCommand", ("not in the form the log gives back (lists or sets where tuples belong): "
                                      "send what ra_actors.codec.normalise gives")
    return _size_refusal(len(packed), limit)


def _size_refusal(size: int, limit: int) -> tuple[str, str] | None:
    if size > limit:
        return "CommandTooLarge", f"the command is {size} bytes encoded, above the cluster's max_command_bytes ({limit})"
    return None
