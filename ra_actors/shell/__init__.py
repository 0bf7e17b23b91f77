"""Between the pure core and the runtimes: one interpreter of the core's effects.

* :mod:`.server` -- :class:`ServerShell`: feeds a ``RaftServer`` and carries
  out its effects; the only interpreter, used by the actors and the simulator.
* :mod:`.port` -- the seams it depends on: ``ServerPort`` (network, WAL,
  monitors, timers, clock, exit) and ``ServerStore`` (the server's files).
* :mod:`.names` -- which names from the network may be resolved to code
  (queries, ModCall targets, machines, actor classes).

Nothing here imports Thespian or does I/O.
"""
from .port import ServerPort, ServerStore
from .server import SERVER_DEFAULTS, ServerShell

__all__ = ["ServerPort", "ServerStore", "ServerShell", "SERVER_DEFAULTS"]
