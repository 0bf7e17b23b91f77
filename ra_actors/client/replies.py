"""What a failed reply raises.

Rules: a server's answer is a typed record (``Ok``, ``Redirect``,
``Error(kind, detail)``, ``Unavailable(reason)``; :mod:`ra_actors.core.types`).
An ``Error`` becomes the exception class its ``kind`` names, looked up only
in :data:`ERROR_CLASSES`, which holds exactly the core's closed list
(``ERROR_KINDS``): a kind arrives from the network, so it never names
anything else.  Anything unexpected is a plain ``RaError``.  No I/O.
"""
from __future__ import annotations

from typing import Any

from .. import errors
from ..core.types import ERROR_KINDS, Error

__all__ = ["ERROR_CLASSES", "error_from"]

# Error.kind -> the exception the caller gets: one class per kind, checked by
# tests/test_api_replies.py against the core's closed list.
ERROR_CLASSES: dict[str, type[errors.RaError]] = {kind: getattr(errors, kind) for kind in ERROR_KINDS}


def error_from(reply: Any) -> errors.RaError:
    """The exception for a reply that is neither a result nor a redirect."""
    if isinstance(reply, Error) and reply.kind in ERROR_CLASSES:
        return ERROR_CLASSES[reply.kind](reply.detail or reply.kind)
    return errors.RaError(f"unexpected reply {reply!r:.200}")
