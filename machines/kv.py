"""A key/value store of registers: the machine behind the KV workloads.

Rules:

* State is a plain dict (msgpack-serialisable, so snapshots encode it as is)::

      {"kv": {key: value}, "every": N, "since": n}          (+ "checkpoint": C)

  ``every`` is the ``release_cursor_every`` option (0 = never) and ``since``
  counts commands applied since the last release cursor.  ``checkpoint``
  (the ``checkpoint_every`` option, present only when set) makes the machine
  emit ``Checkpoint(meta.index, state)`` at every index divisible by it, and
  its release cursors then carry no state (``ReleaseCursor(meta.index)``):
  they promote the newest checkpoint at or below that index.
* ``apply`` never mutates the state it is given: it returns a new dict, so a
  state handed out in a ``ReleaseCursor`` (or held by a query) stays valid.
* Commands are tuples (clients normalise them through msgpack, so lists
  arrive as tuples):

  ===========================  ==========================================
  ``("write", k, v)``          set ``k`` to ``v``; reply ``"ok"``
  ``("cas", k, old, new)``     if ``k`` holds ``old`` set it to ``new``:
                               reply ``"cas_ok"``; otherwise reply
                               ``("cas_failed", current)`` (no change)
  ``("delete", k)``            remove ``k``; reply ``"ok"``
  ``("read", k)``              reply the value (``None`` if absent)
  ===========================  ==========================================

  Anything else (including built-in commands such as ``TimerFired``) leaves
  the state unchanged and replies ``("error", "unknown_command")``.  A
  missing key reads as ``None``, so ``("cas", k, None, v)`` creates ``k``.
* Every ``every`` applied commands (of any kind) the machine emits
  ``ReleaseCursor(meta.index, state)`` so the core takes a snapshot.
* Queries: ``read(state, key)`` (use ``functools.partial(read, key=k)`` or
  the ``"machines.kv:read"`` query name with the key as argument) and
  ``digest(state)`` (to compare replicas).
"""
from __future__ import annotations

import zlib
from typing import Any

from ra_actors.core.effects import Checkpoint, ReleaseCursor

CAS_OK = "cas_ok"
CAS_FAILED = "cas_failed"


def init(config: dict) -> dict:
    every = int(config.get("release_cursor_every", 0) or 0)
    if every < 0:
        raise ValueError(f"release_cursor_every must be >= 0, got {every}")
    checkpoint = int(config.get("checkpoint_every", 0) or 0)
    if checkpoint < 0:
        raise ValueError(f"checkpoint_every must be >= 0, got {checkpoint}")
    state = {"kv": {}, "every": every, "since": 0}
    if checkpoint:
        state["checkpoint"] = checkpoint
    return state


def _result(meta: Any, kv: dict, state: dict, reply: Any):
    since = state["since"] + 1
    every = state["every"]
    checkpoint = state.get("checkpoint", 0)
    effects = []
    if every and since >= every:
        since = 0
    new_state = {"kv": kv, "every": every, "since": since}
    if checkpoint:
        new_state["checkpoint"] = checkpoint
        if meta.index % checkpoint == 0:
            effects.append(Checkpoint(meta.index, new_state))
    if every and since == 0:
        effects.append(ReleaseCursor(meta.index) if checkpoint else ReleaseCursor(meta.index, new_state))
    if effects:
        return new_state, reply, effects
    return new_state, reply


def apply(meta: Any, command: Any, state: dict):
    kv = state["kv"]
    if isinstance(command, tuple) and command:
        op = command[0]
        if op == "write" and len(command) == 3:
            new_kv = dict(kv)
            new_kv[command[1]] = command[2]
            return _result(meta, new_kv, state, "ok")
        if op == "cas" and len(command) == 4:
            _, key, expected, new = command
            current = kv.get(key)
            if current != expected:
                return _result(meta, kv, state, (CAS_FAILED, current))
            new_kv = dict(kv)
            new_kv[key] = new
            return _result(meta, new_kv, state, CAS_OK)
        if op == "delete" and len(command) == 2:
            new_kv = dict(kv)
            new_kv.pop(command[1], None)
            return _result(meta, new_kv, state, "ok")
        if op == "read" and len(command) == 2:
            return _result(meta, kv, state, kv.get(command[1]))
    return _result(meta, kv, state, ("error", "unknown_command"))


def read(state: dict, key: Any) -> Any:
    """Query: the value of ``key`` (``None`` if absent)."""
    return state["kv"].get(key)


def digest(state: dict) -> tuple:
    """Query: ``(number of keys, CRC-32 over the sorted items)``, to compare
    replicas without moving the whole state."""
    kv = state["kv"]
    crc = 0
    for k in sorted(kv, key=repr):
        crc = zlib.crc32(repr((k, kv[k])).encode(), crc)
    return (len(kv), crc)


def overview(state: dict) -> dict:
    return {"keys": len(state["kv"]), "release_cursor_every": state["every"]}
