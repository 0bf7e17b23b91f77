"""In-memory twins of the shell's seams, for tests of one server at a time.

Rules:

* :class:`RecordingPort` records every call a :class:`~ra_actors.shell.server.ServerShell`
  makes, in order, as ``(method, args)`` in ``calls``; it delivers nothing
  by itself.  Time is ``now`` (set it), randomness a seeded ``rng``.
* :class:`MemoryStore` keeps a server's durable state in memory and makes
  meta durable at once (as the real store does); WAL appends are the entry
  tuples themselves (the test decides when they are ``Written``).
* Nothing here is used by the runtime or the simulator.
"""
from __future__ import annotations

import random
from typing import Any

from ..core.messages import MetaWritten
from ..core.server import Recovered
from ..core.types import ServerId, SnapshotMeta
from ..errors import MachineError


class RecordingPort:
    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.now = 0
        self.calls: list[tuple[str, tuple]] = []

    def _record(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))

    def of(self, method: str) -> list[tuple]:
        """The arguments of every call to ``method``, in order."""
        return [args for name, args in self.calls if name == method]

    def send_rpcs(self, to: ServerId, rpcs: tuple) -> None:
        self._record("send_rpcs", to, rpcs)

    def forward_commands(self, to: ServerId, commands: tuple) -> None:
        self._record("forward_commands", to, commands)

    def reply(self, to: Any, reply: Any, leader: ServerId | None) -> None:
        self._record("reply", to, reply, leader)

    def applied(self, client: Any, leader: ServerId, results: tuple) -> None:
        self._record("applied", client, leader, results)

    def rejected(self, client: Any, server: ServerId, leader: ServerId | None, correlation: Any,
                 reason: str = "not_leader") -> None:
        self._record("rejected", client, server, leader, correlation, reason)

    def send_message(self, to: Any, msg: Any, options: tuple = (), leader: ServerId | None = None) -> None:
        if options:
            self._record("send_message", to, msg, options, leader)
        else:
            self._record("send_message", to, msg)

    def wal_write(self, appends: tuple) -> None:
        self._record("wal_write", appends)

    def write_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        self._record("write_snapshot", meta, data)

    def watch(self, target: Any, ref: Any) -> None:
        self._record("watch", target, ref)

    def unwatch(self, target: Any, ref: Any) -> None:
        self._record("unwatch", target, ref)

    def wakeup(self, delay_ms: int, payload: Any) -> None:
        self._record("wakeup", delay_ms, payload)

    def now_ms(self) -> int:
        return self.now

    def log(self, text: str) -> None:
        self._record("log", text)

    def exit(self, why: str) -> None:
        self._record("exit", why)

    def crash(self, reason: str, exc: BaseException | None) -> None:
        self._record("crash", reason, exc)


class MemoryStore:
    def __init__(self, recovered: Recovered | None = None, machine_dir: Any = None) -> None:
        self.recovered = recovered or Recovered()
        self._machine_dir = machine_dir       # what a disk machine is given (the test's choice)
        self.meta: tuple[int, ServerId | None] = (self.recovered.current_term, self.recovered.voted_for)
        self.last_applied = self.recovered.last_applied
        self.snapshots: dict[SnapshotMeta, bytes] = {}
        self.truncated_below = 0
        self.closed = False

    def recover(self) -> Recovered:
        return self.recovered

    def append(self, entries: tuple) -> tuple:
        return entries

    def written(self, msg: Any) -> list:
        return [msg]

    def segments_written(self, refs: Any) -> None:
        return None

    def truncate_below(self, index: int, keep_above: bool) -> None:
        self.truncated_below = max(self.truncated_below, index)

    def persist_meta(self, term: int, voted_for: ServerId | None) -> MetaWritten:
        self.meta = (term, voted_for)
        return MetaWritten(term, voted_for)

    def persist_last_applied(self, index: int) -> None:
        self.last_applied = index

    def snapshot_written(self, meta: SnapshotMeta) -> None:
        return None

    def snapshot_bytes(self, meta: SnapshotMeta) -> bytes | None:
        return self.snapshots.get(meta)

    def machine_dir(self) -> Any:
        if self._machine_dir is None:
            raise MachineError("this MemoryStore was built without a machine_dir")
        return self._machine_dir

    def overview(self) -> dict:
        return {"memory": True}

    def close(self) -> None:
        self.closed = True
