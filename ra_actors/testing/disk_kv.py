"""``machines.kv`` as a disk machine, for the simulator
(``Simulation(disk_machine=True)``): the same commands, replies and queries,
with the state kept in the node disk's simulated files
(:class:`~ra_actors.testing.disk.MachineFiles`) under the disk machine
contract (``docs/machine-tutorial.rst``, section 7).

Rules:

* ``files.committed`` is ``(kv state, applied index, replies)``, replaced
  whole by every apply (the one atomic step: the change, the index, the
  reply); the simulated disk decides what a node crash keeps of it.
* ``apply`` of an index at or below the applied one is a bug of the server
  (the adapter must skip it): it raises, and the simulator reports the core
  exception with its seed.
* ``machines.kv``'s ``ReleaseCursor(index, state)`` becomes
  ``ReleaseCursor(index)`` (the server snapshots the files);
  its ``Checkpoint`` is dropped (ignored for disk machines anyway).
* Snapshots are the msgpack of the kv state; ``install`` syncs at once.
* Queries (``read``, ``digest`` of ``machines.kv``) see the committed kv
  state through ``query_view``.
"""
from __future__ import annotations

from typing import Any

import machines.kv as kv

from .. import codec
from ..core import readonly
from ..core.effects import Checkpoint, ReleaseCursor
from .disk import MachineFiles

DISK = True


def open(files: MachineFiles, config: dict) -> MachineFiles:  # noqa: A001 - the contract's name
    if files.committed is None:
        files.committed = (kv.init(config), 0, {})
        files.synced()
    return files


def applied_index(files: MachineFiles) -> int:
    return files.committed[1]


def applied_reply(files: MachineFiles, index: int) -> Any:
    return files.committed[2].get(index, ("error", "ReplyForgotten"))


def apply(meta: Any, command: Any, files: MachineFiles):
    state, applied, replies = files.committed
    if meta.index <= applied:
        raise AssertionError(f"entry {meta.index} given to the machine again (its files hold {applied})")
    result = kv.apply(meta, command, state)
    new_state, reply = result[0], result[1]
    effects = []
    for e in (result[2] if len(result) == 3 else ()):
        if isinstance(e, ReleaseCursor):
            effects.append(ReleaseCursor(e.index))
        elif not isinstance(e, Checkpoint):
            effects.append(e)
    files.committed = (new_state, meta.index, {**replies, meta.index: reply})
    return files, reply, effects


def snapshot(files: MachineFiles) -> bytes:
    return codec.pack(files.committed[0])


def install(files: MachineFiles, image: bytes, index: int) -> MachineFiles:
    files.committed = (codec.unpack(image), index, {})
    files.synced()
    return files


def release(files: MachineFiles, index: int) -> None:
    state, applied, replies = files.committed
    files.committed = (state, applied, {i: r for i, r in replies.items() if i > index})


def close(files: MachineFiles) -> None:
    return None


def query_view(files: MachineFiles) -> Any:
    return readonly.view(files.committed[0])


def read(state: Any, key: Any) -> Any:
    return kv.read(state, key)


def digest(state: Any) -> Any:
    return kv.digest(state)
