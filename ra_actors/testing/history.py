"""Operation histories: JSON-lines files of invocations and completions.

A history is the record of what concurrent clients asked a system to do and
what they were told, in the format of the Jepsen etcd corpus
(``shared/data/jepsen-etcd/README.md``).  Rules:

* One JSON object per line, lines in real-time order::

      {"process": 3, "type": "invoke", "f": "write", "key": "x", "value": 4, "time": 17}

* ``type`` is ``invoke`` when a call starts, then exactly one of ``ok`` (it
  took effect; a read's ``value`` is what it saw), ``fail`` (it certainly did
  not take effect) or ``info`` (unknown outcome) from the same ``process``.
  A process has at most one operation outstanding; an invoke that is never
  completed has an unknown outcome, exactly like ``info``.
* ``f`` is ``read`` (``value`` null on invoke), ``write`` (``value``),
  ``cas`` (``value`` is ``[old, new]``), ``add`` (a counter's increment;
  an ``ok`` completion may carry the counter the system answered) or
  ``transfer`` (the bank workload's, ``[id, from, to, amount]``).
* ``time`` is an integer that never decreases from one line to the next
  (an event counter, or nanoseconds of one monotonic clock).
* ``key`` names the register the operation addresses; it may be absent, and
  all operations without a key address one and the same register.
* Only JSON is read or written (never pickle); anything malformed raises
  :class:`HistoryError` naming the line.

:class:`HistoryRecorder` produces such histories from a test harness, and
:func:`pair_operations` turns events back into whole operations for checkers.
"""
from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Optional, Union

INVOKE = "invoke"
OK = "ok"
FAIL = "fail"
INFO = "info"
COMPLETION_TYPES = frozenset({OK, FAIL, INFO})
EVENT_TYPES = frozenset({INVOKE}) | COMPLETION_TYPES
FUNCTIONS = frozenset({"read", "write", "cas", "add", "transfer"})

PathLike = Union[str, "os.PathLike[str]"]


class HistoryError(ValueError):
    """A history (file or event list) does not follow the format."""


# ---------------------------------------------------------------------------
# Validation, reading and writing
# ---------------------------------------------------------------------------

def validate_event(event: Any, where: str = "event") -> dict[str, Any]:
    """Check one event's shape and return it; raise :class:`HistoryError`."""
    if not isinstance(event, dict):
        raise HistoryError(f"{where}: expected a JSON object, got {type(event).__name__}")
    for field in ("process", "type", "f", "time"):
        if field not in event:
            raise HistoryError(f"{where}: missing field {field!r}")
    if event["type"] not in EVENT_TYPES:
        raise HistoryError(f"{where}: unknown type {event['type']!r}")
    if event["f"] not in FUNCTIONS:
        raise HistoryError(f"{where}: unknown f {event['f']!r}")
    # bool is an int subclass; a boolean time is certainly a mistake.
    if not isinstance(event["time"], int) or isinstance(event["time"], bool):
        raise HistoryError(f"{where}: time must be an integer, got {event['time']!r}")
    if (event["f"] == "cas" and event["type"] in (INVOKE, OK)
            and not (isinstance(event.get("value"), list) and len(event["value"]) == 2)):
        raise HistoryError(f"{where}: cas value must be [old, new], got {event.get('value')!r}")
    return event


def parse_lines(lines: Iterable[str], source: str = "<history>") -> list[dict[str, Any]]:
    """Parse JSON lines (blank lines ignored) into validated events."""
    events: list[dict[str, Any]] = []
    last_time: Optional[int] = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HistoryError(f"{where}: invalid JSON ({exc.msg})") from None
        validate_event(event, where)
        if last_time is not None and event["time"] < last_time:
            raise HistoryError(f"{where}: time {event['time']} goes backwards (previous {last_time})")
        last_time = event["time"]
        events.append(event)
    return events


def read_history(path: PathLike) -> list[dict[str, Any]]:
    """Read a JSON-lines history file.

    Raises ``OSError`` if the file cannot be opened and :class:`HistoryError`
    if its content is malformed.
    """
    with open(path, "r", encoding="utf-8") as handle:
        return parse_lines(handle, os.fspath(path))


def iter_history_lines(events: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Yield each event as one JSON line (without the newline)."""
    for event in events:
        # ensure_ascii keeps files plain ASCII whatever the values contain.
        yield json.dumps(event, ensure_ascii=True)


def write_history(path: PathLike, events: Iterable[dict[str, Any]]) -> None:
    """Write events to ``path`` as JSON lines, replacing any existing file."""
    with open(path, "w", encoding="utf-8") as handle:
        for line in iter_history_lines(events):
            handle.write(line + "\n")


# ---------------------------------------------------------------------------
# Pairing events into operations
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Operation:
    """One call: its invocation and (if any) its completion.

    ``type`` is ``ok``, ``fail`` or ``info``; an invoke that was never
    completed (or was superseded by another invoke of the same process) is
    ``info``.  ``value`` is the invoke's value, except for an ``ok`` read
    where it is the value read.  ``return_index`` is ``None`` when no
    completion was seen.
    """

    index: int
    process: Any
    f: str
    key: Any
    has_key: bool
    value: Any
    type: str
    invoke_index: int
    return_index: Optional[int]
    invoke_time: int
    return_time: Optional[int]

    def describe(self) -> str:
        """Short human form, e.g. ``p3 write 4 ok [t=17..20]``."""
        if self.f == "cas" and isinstance(self.value, (list, tuple)) and len(self.value) == 2:
            shown = f"{self.value[0]!r}->{self.value[1]!r}"
        else:
            shown = repr(self.value)
        end = "?" if self.return_time is None else str(self.return_time)
        return f"p{self.process} {self.f} {shown} {self.type} [t={self.invoke_time}..{end}]"


def pair_operations(events: Iterable[dict[str, Any]]) -> list[Operation]:
    """Match each invoke with the next completion of the same process.

    Operations come back ordered by their invoke.  A completion without an
    outstanding invoke, or whose ``f`` differs from it, raises
    :class:`HistoryError`: such a history cannot be interpreted safely.
    """
    pending: dict[Any, int] = {}
    invokes: list[tuple[int, dict[str, Any]]] = []
    completions: dict[int, tuple[int, dict[str, Any]]] = {}
    for position, event in enumerate(events):
        validate_event(event, f"event {position}")
        process = freeze(event["process"])
        if event["type"] == INVOKE:
            # A process that invokes again has given up on its previous call
            # (Jepsen moves crashed clients to new process ids, but a harness
            # may not): the earlier call stays unresolved, i.e. ``info``.
            pending[process] = len(invokes)
            invokes.append((position, event))
            continue
        slot = pending.pop(process, None)
        if slot is None:
            raise HistoryError(
                f"event {position}: {event['type']} from process {event['process']!r} "
                f"without an outstanding invoke")
        if invokes[slot][1]["f"] != event["f"]:
            raise HistoryError(
                f"event {position}: completion f {event['f']!r} does not match invoke "
                f"f {invokes[slot][1]['f']!r} of process {event['process']!r}")
        completions[slot] = (position, event)

    operations: list[Operation] = []
    for slot, (position, invoke) in enumerate(invokes):
        done = completions.get(slot)
        kind = done[1]["type"] if done else INFO
        value = invoke.get("value")
        if kind == OK and invoke["f"] == "read":
            value = done[1].get("value")
        operations.append(Operation(
            index=slot,
            process=invoke["process"],
            f=invoke["f"],
            key=invoke.get("key"),
            has_key="key" in invoke,
            value=value,
            type=kind,
            invoke_index=position,
            return_index=done[0] if done else None,
            invoke_time=invoke["time"],
            return_time=done[1]["time"] if done else None,
        ))
    return operations


def freeze(value: Any) -> Any:
    """A hashable stand-in for a JSON value (lists and dicts become tuples)."""
    if isinstance(value, list):
        return ("__list__",) + tuple(freeze(item) for item in value)
    if isinstance(value, dict):
        return ("__dict__",) + tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    return value


# ---------------------------------------------------------------------------
# Recording
# ---------------------------------------------------------------------------

_SAME = object()  # sentinel: "complete with the invoke's value"


@dataclasses.dataclass(frozen=True)
class OpHandle:
    """What :meth:`HistoryRecorder.invoke` returns; pass it to ``complete``."""

    serial: int
    process: Any
    f: str
    key: Any
    value: Any


class HistoryRecorder:
    """Thread-safe writer of a history, in memory and optionally to a file.

    ``clock`` returns an integer time; the default is
    :func:`time.monotonic_ns`, and the deterministic simulator passes its
    virtual clock.  The clock is read under the recorder's lock, so line order
    and time order agree even when many threads record at once; a clock that
    steps backwards is clamped to the last time written, because the format
    promises non-decreasing times.

    With ``path`` every event is written and flushed as soon as it is
    recorded, so the history survives a crashed test run.  ``events()``
    always returns everything recorded so far.
    """

    def __init__(self, path: Optional[PathLike] = None,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        self._open: dict[int, OpHandle] = {}
        self._busy: set[Any] = set()
        self._next_serial = 0
        self._last_time: Optional[int] = None
        self._file = open(path, "w", encoding="utf-8") if path is not None else None

    # -- recording --------------------------------------------------------

    def invoke(self, process: Any, f: str, key: Any = None, value: Any = None) -> OpHandle:
        """Record the start of call ``f`` by ``process``; returns its handle.

        ``key`` ``None`` leaves the ``key`` field out (the single default
        register).  For ``cas`` ``value`` is ``(old, new)``.
        """
        if f not in FUNCTIONS:
            raise HistoryError(f"unknown f {f!r}")
        if f == "cas":
            if not (isinstance(value, (list, tuple)) and len(value) == 2):
                raise HistoryError(f"cas value must be (old, new), got {value!r}")
            value = list(value)
        if f == "read":
            value = None
        with self._lock:
            if process in self._busy:
                # Pairing is by process: two outstanding calls of one process
                # would make the history ambiguous.
                raise HistoryError(f"process {process!r} already has an operation outstanding")
            handle = OpHandle(self._next_serial, process, f, key, value)
            self._next_serial += 1
            self._open[handle.serial] = handle
            self._busy.add(process)
            self._append(INVOKE, handle, value)
        return handle

    def complete(self, handle: OpHandle, type: str, value: Any = _SAME) -> None:
        """Record the outcome ``type`` (``ok``/``fail``/``info``) of ``handle``.

        ``value`` defaults to the invoke's value; an ``ok`` read must pass the
        value it read.
        """
        if type not in COMPLETION_TYPES:
            raise HistoryError(f"completion type must be ok, fail or info, got {type!r}")
        if value is _SAME:
            value = handle.value
        elif isinstance(value, tuple):
            value = list(value)
        with self._lock:
            if self._open.pop(handle.serial, None) is None:
                raise HistoryError(f"operation {handle.serial} is not outstanding")
            self._busy.discard(handle.process)
            self._append(type, handle, value)

    def _append(self, type: str, handle: OpHandle, value: Any) -> None:
        # Caller holds the lock.
        now = int(self._clock())
        if self._last_time is not None and now < self._last_time:
            now = self._last_time
        self._last_time = now
        event: dict[str, Any] = {"process": handle.process, "type": type, "f": handle.f}
        if handle.key is not None:
            event["key"] = handle.key
        event["value"] = value
        event["time"] = now
        self._events.append(event)
        if self._file is not None:
            self._file.write(json.dumps(event, ensure_ascii=True) + "\n")
            self._file.flush()

    # -- reading and closing ----------------------------------------------

    def events(self) -> list[dict[str, Any]]:
        """A copy of every event recorded so far, in order."""
        with self._lock:
            return [dict(event) for event in self._events]

    def outstanding(self) -> list[OpHandle]:
        """Handles invoked but not yet completed (they count as ``info``)."""
        with self._lock:
            return list(self._open.values())

    def close(self) -> None:
        """Close the file, if any.  Outstanding calls stay unresolved."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> "HistoryRecorder":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
