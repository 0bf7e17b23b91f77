"""A lighter pass of Thespian's TCP loop: one poll, no generator per lock.

Thespian 4.0.1's ``TCPTransport._runWithExpiry`` runs once per message,
stream frame and WAL wake-up of a node's host, and each pass pays for
generic machinery around a single wait (about 45 us of CPU per pass on
the 2-vCPU VM, ``docs/performance.rst`` items 15 and 16):

* it makes a new ``selectors.DefaultSelector()``, registers every socket and
  watched descriptor in it, waits once and closes it: on Linux an epoll set
  (``epoll_create``, one ``epoll_ctl`` per descriptor, ``epoll_wait``,
  ``close``);
* it takes its processing flag twice through ``exclusive_processing``, a
  ``contextlib.contextmanager`` generator;
* it splits and maps its transmit intents with ``partition`` and ``fmap``,
  functional helpers that build a closure and a fold per call, even when
  there is no intent at all (the usual case on a host, whose hot path is
  on the direct streams).

This module gives the ``TCPTransport`` module lighter equivalents of those
four names, with the same results:

* :class:`PassSelector`: a selector for one wait over ``select.poll``
  (register without a system call, one ``poll``), reporting ``(key, mask)``
  pairs whose ``key.fd`` is the descriptor, which is all the loop reads;
* :class:`ExclusiveProcessing`: the same spin on
  ``transport._exclusively_processing()`` and release, as a plain context
  manager (it also releases when the block raises, which the generator did
  not);
* :func:`partition` and :func:`fmap`: the same answers as
  ``thespian.system.utilis``'s for the shapes the transport passes (lists,
  a filter; a tuple of lists of intents); any other shape is handed to the
  originals.

Rules:

* :func:`apply` changes these names only as ``TCPTransport`` sees them (its
  module globals); the rest of the process, asyncio included, keeps
  ``selectors.DefaultSelector`` and Thespian's helpers.  Idempotent; applied
  in every node process and in every client's endpoint, beside
  :mod:`.identify` and :mod:`.netpatch`.
* Where the platform has no ``poll`` (it is POSIX), nothing changes.
"""
from __future__ import annotations

import select
import selectors
import time
import types
from typing import Any, Callable, Iterable

_state = {"applied": False}

_POLL_IN = select.POLLIN
_POLL_OUT = select.POLLOUT


class PassKey:
    """What the loop reads of a ready descriptor: its number."""
    __slots__ = ("fd",)

    def __init__(self, fd: int):
        self.fd = fd


class PassSelector:
    """A selector for one wait: ``register`` each descriptor (an ``int`` or
    an object with ``fileno()``) for ``EVENT_READ`` and/or ``EVENT_WRITE``,
    ``select(timeout)`` once, ``close``.  Same events as
    ``selectors.PollSelector``."""
    __slots__ = ("_poll", "_masks")

    def __init__(self):
        self._poll = select.poll()
        self._masks: dict[int, int] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> PassKey:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        if fd < 0:
            raise ValueError(f"Invalid file descriptor: {fd}")
        if fd in self._masks:
            raise KeyError(f"{fileobj!r} (FD {fd}) is already registered")
        flags = (_POLL_IN if events & selectors.EVENT_READ else 0) | (
            _POLL_OUT if events & selectors.EVENT_WRITE else 0)
        self._poll.register(fd, flags)
        self._masks[fd] = events
        return PassKey(fd)

    def select(self, timeout: float | None = None) -> list:
        if timeout is None:
            ms = None
        elif timeout <= 0:
            ms = 0
        else:
            ms = -(-int(timeout * 1000_000) // 1000)   # round up, as selectors does
        ready = []
        masks = self._masks
        for fd, ev in self._poll.poll(ms):
            mask = 0
            # As selectors.PollSelector: an error or hang-up (POLLERR,
            # POLLHUP, POLLNVAL) counts as both, so the loop's read or
            # write finds out and the transport cleans up.
            if ev & ~_POLL_OUT:
                mask |= selectors.EVENT_READ
            if ev & ~_POLL_IN:
                mask |= selectors.EVENT_WRITE
            mask &= masks.get(fd, 0)
            if mask:
                ready.append((PassKey(fd), mask))
        return ready

    def close(self) -> None:
        self._masks.clear()


class ExclusiveProcessing:
    """``with ExclusiveProcessing(transport):``: the transport's processing
    flag, held for the block."""
    __slots__ = ("_transport",)

    def __init__(self, transport: Any):
        self._transport = transport

    def __enter__(self) -> None:
        take = self._transport._exclusively_processing
        while not take():
            time.sleep(0.000001)

    def __exit__(self, *_exc) -> None:
        self._transport._not_processing()


def _partition(original: Callable) -> Callable:
    def partition(test: Callable, items: Iterable, output_type: type = list) -> tuple:
        if output_type is not list:
            return original(test, items, output_type)
        passed: list = []
        failed: list = []
        for item in items:
            (passed if test(item) else failed).append(item)
        return passed, failed
    return partition


_CONTAINERS = (list, tuple, dict, filter, map, zip, range)


def _fmap(original: Callable) -> Callable:
    def fmap(func: Callable, obj: Any) -> Any:
        if type(obj) is tuple and all(type(part) is list for part in obj):
            out = []
            for part in obj:
                if any(isinstance(x, _CONTAINERS) or hasattr(x, "fmap") for x in part):
                    return original(func, obj)
                out.append([func(x) for x in part])
            return tuple(out)
        return original(func, obj)
    return fmap


def transport_selectors() -> types.SimpleNamespace:
    """What ``TCPTransport`` uses of the ``selectors`` module, with
    :class:`PassSelector` as its default."""
    return types.SimpleNamespace(DefaultSelector=PassSelector, EVENT_READ=selectors.EVENT_READ,
                                 EVENT_WRITE=selectors.EVENT_WRITE)


def apply() -> None:
    if _state["applied"] or not hasattr(select, "poll"):
        return
    _state["applied"] = True
    from thespian.system.transport import TCPTransport as tcp
    tcp.selectors = transport_selectors()
    tcp.exclusive_processing = ExclusiveProcessing
    tcp.partition = _partition(tcp.partition)
    tcp.fmap = _fmap(tcp.fmap)
