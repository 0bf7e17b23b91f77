"""Small helpers shared by the node's actors and the client."""
from __future__ import annotations

import gc
import os
import sys
import time
import traceback

from .. import errors as _errors
from ..core.types import ActorRef

CLIENT_PREFIX = "client:"


# CPython collects its youngest generation every 700 net allocations, and
# looks at the whole heap every 100 young collections.  A Raft server keeps
# every log entry above its latest snapshot in memory (four or five tracked
# objects each), and collections of a large live heap are not cheap: py-spy
# put 10-17% of a busy host's samples on the lines that allocate records,
# and these thresholds cut CPU per pipelined command by ~7%
# (scripts/perf/README.md).  Only reference cycles wait for a collection;
# the messages and entries of the hot path have none.
GC_THRESHOLDS = (20_000, 10, 10)


def tune_gc() -> None:
    """Collect less often in a process that carries Raft servers (see
    ``GC_THRESHOLDS``); called once as the host or server actor starts."""
    gc.set_threshold(*GC_THRESHOLDS)


def now_ms() -> int:
    return int(time.time() * 1000)


def log(who: str, msg: str) -> None:
    """One line on the node's log (every process of a node writes to node.log)."""
    try:
        sys.stderr.write(f"{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d} "
                         f"[{who} {os.getpid()}] {msg}\n")
        sys.stderr.flush()
    except Exception:  # pragma: no cover
        pass


def log_exc(who: str, msg: str) -> None:
    log(who, f"{msg}\n{traceback.format_exc()}")


def admin_address(host: str, port: int):
    """The ActorAddress of the Thespian admin listening on ``host:port``."""
    from thespian.system.transport.TCPTransport import TCPTransport
    return TCPTransport.getAddressFromString((host, int(port)))


def make_client_handle(node: str, ident: str) -> str:
    return f"{CLIENT_PREFIX}{node}:{ident}"


def is_client_handle(value) -> bool:
    return isinstance(value, str) and value.startswith(CLIENT_PREFIX)


def handle_node(handle: str) -> str:
    """The node whose supervisor registered client handle ``handle``."""
    return handle[len(CLIENT_PREFIX):].rsplit(":", 1)[0]


def target_node(target):
    """Node of a monitor/lookup target (ServerId, (name, node), ActorRef or
    client handle)."""
    if is_client_handle(target):
        return handle_node(target)
    if isinstance(target, ActorRef):
        return target.node
    if isinstance(target, tuple) and len(target) == 2:
        return target[1]
    return None


def encode_error(exc: BaseException, extra=None) -> tuple:
    return (type(exc).__name__, str(exc), extra)


def decode_error(err: tuple) -> Exception:
    """Rebuild an ``ra_actors.errors`` exception from ``encode_error``."""
    name, message, extra = (tuple(err) + (None, None, None))[:3]
    cls = getattr(_errors, name, None)
    if isinstance(cls, type) and issubclass(cls, _errors.RaError):
        if cls is _errors.NotLeader:
            return cls(message, leader=extra)
        try:
            exc = cls(message)
        except TypeError:
            exc = _errors.RaError(f"{name}: {message}")
        return exc
    return _errors.RaError(f"{name}: {message}")
