"""One poll per pass of Thespian's TCP loop, instead of a new epoll set.

Thespian 4.0.1's ``TCPTransport._runWithExpiry`` makes a new
``selectors.DefaultSelector()`` on every pass of its loop, registers every
socket and watched descriptor in it, waits once and closes it.  On Linux
that is an epoll set: ``epoll_create``, one ``epoll_ctl`` per descriptor,
``epoll_wait`` and ``close`` per pass, and a node's host passes through
that loop for every message, stream frame and WAL wake-up.  A poll
selector built for one wait costs one ``poll`` call and no system call to
register: the same events, for a loop that rebuilds its set every time
anyway.

Rules:

* :func:`apply` changes the selector only as ``TCPTransport`` sees it (its
  module's ``selectors`` name); the rest of the process, asyncio included,
  keeps ``selectors.DefaultSelector``.  Idempotent; applied in every node
  process and in every client's endpoint, beside :mod:`.identify` and
  :mod:`.netpatch`.
* Where the platform has no ``poll`` (it is POSIX), nothing changes.
"""
from __future__ import annotations

import selectors
import types

_state = {"applied": False}


def transport_selectors() -> types.SimpleNamespace:
    """What ``TCPTransport`` uses of the ``selectors`` module, with a poll
    selector as its default."""
    return types.SimpleNamespace(DefaultSelector=selectors.PollSelector, EVENT_READ=selectors.EVENT_READ,
                                 EVENT_WRITE=selectors.EVENT_WRITE)


def apply() -> None:
    if _state["applied"] or not hasattr(selectors, "PollSelector"):
        return
    _state["applied"] = True
    from thespian.system.transport import TCPTransport as tcp
    tcp.selectors = transport_selectors()
