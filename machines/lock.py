"""Named distributed locks without leases: the machine monitors every owner,
so a holder that dies releases its locks (``Down``) instead of a lease
running out.

An owner is any hashable msgpack value naming a process the runtime can
monitor (a client handle id, a ``ServerId``, an ``ActorRef``); a lock name is any hashable
msgpack value.

Commands (tuples; clients normalise them through msgpack):

====================================  ======================================
``("acquire", lock, owner)``          free lock: ``owner`` holds it, reply
                                      ``("ok", "acquired")``.  Held by
                                      someone else: ``owner`` joins the FIFO
                                      wait queue, reply ``("ok", "queued",
                                      position)`` (1 = next in line).  Already
                                      holding it: ``("ok", "acquired")``;
                                      already waiting: ``("ok", "queued",
                                      position)`` (retries are harmless).
``("try_acquire", lock, owner)``      as ``acquire`` but never queues: a lock
                                      held by someone else replies
                                      ``("error", "locked")``.
``("release", lock, owner)``          the holder gives the lock up: reply
                                      ``"ok"`` and the first waiter gets it;
                                      anyone else gets ``("error",
                                      "not_holder")``.
``("cancel", lock, owner)``           a waiter gives up waiting: ``"ok"``, or
                                      ``("error", "not_waiting")``.
``Down(owner, reason)``               the owner died (any reason): every lock
                                      it holds passes to its first waiter and
                                      it leaves every wait queue.  ``"ok"``.
====================================  ======================================

Anything else (including ``MachineVersion`` and timers) changes nothing and
replies ``("error", "unknown_command")``; a lock or owner that is not
hashable replies ``("error", "bad_command")``.

Effects:

* ``Monitor("process", owner)`` when an owner starts holding or waiting on
  its first lock (``acquire``/``try_acquire``);
* ``SendMsg(owner, ("lock_granted", lock))`` when a lock passes to a waiter
  (on ``release`` or ``Down`` of the holder).  Whoever acquired directly
  learns it from the reply instead;
* ``Demonitor("process", owner)`` when an owner no longer holds or waits on
  anything after ``release``/``cancel`` (not after ``Down``: that monitor has
  already fired);
* ``ReleaseCursor(meta.index, state)`` every ``release_cursor_every`` applied
  commands (config, default 0 = never).

Rules:

* State: ``{"locks": {lock: {"holder": owner, "waiters": (owner, ...)}},
  "owners": {owner: refs}, "release_cursor_every": n, "since_release": n}``.
  A lock with no holder is deleted (a lock that has waiters always has a
  holder).  ``refs`` counts the locks an owner holds plus the queues it waits
  in, so knowing when to monitor or demonitor is O(1).
* ``apply`` validates a command before touching anything, then updates the
  state in place and returns it (the core encodes a ``ReleaseCursor`` state
  at once, and never reuses an older state); queries build fresh values.
* ``state_enter("leader", state)`` re-monitors every owner: monitors live on
  the leader, so they must move with it.
* Queries: ``holder(state, lock)`` (the owner or None), ``waiters(state,
  lock)`` (a tuple, next in line first), ``overview(state)``.
"""
from __future__ import annotations

from typing import Any

from ra_actors.core.effects import Demonitor, Down, Monitor, ReleaseCursor, SendMsg

UNKNOWN_COMMAND = ("error", "unknown_command")
BAD_COMMAND = ("error", "bad_command")


def init(config: dict) -> dict:
    every = config.get("release_cursor_every", 0) or 0
    if not isinstance(every, int) or isinstance(every, bool) or every < 0:
        raise ValueError(f"release_cursor_every must be an integer >= 0, got {every!r}")
    return {"locks": {}, "owners": {}, "release_cursor_every": every, "since_release": 0}


# ================================================================= helpers
def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _ref(state: dict, owner: Any, effects: list) -> None:
    owners = state["owners"]
    if owner not in owners:
        owners[owner] = 0
        effects.append(Monitor("process", owner))
    owners[owner] += 1


def _unref(state: dict, owner: Any, effects: list) -> None:
    owners = state["owners"]
    owners[owner] -= 1
    if owners[owner] == 0:
        del owners[owner]
        effects.append(Demonitor("process", owner))


def _pass_on(state: dict, name: Any, effects: list) -> None:
    """The holder of ``name`` is gone: grant it to the first waiter, or
    delete the lock.  The waiter's reference (waiting) becomes its reference
    as holder, so the owner counts do not change."""
    lock = state["locks"][name]
    if lock["waiters"]:
        nxt = lock["waiters"][0]
        state["locks"][name] = {"holder": nxt, "waiters": lock["waiters"][1:]}
        effects.append(SendMsg(nxt, ("lock_granted", name)))
    else:
        del state["locks"][name]


# =================================================================== apply
def _acquire(state: dict, name: Any, owner: Any, queue: bool, effects: list) -> Any:
    lock = state["locks"].get(name)
    if lock is None:
        _ref(state, owner, effects)
        state["locks"][name] = {"holder": owner, "waiters": ()}
        return ("ok", "acquired")
    if lock["holder"] == owner:
        return ("ok", "acquired")
    if not queue:
        return ("error", "locked")
    if owner not in lock["waiters"]:
        _ref(state, owner, effects)
        lock["waiters"] = lock["waiters"] + (owner,)
    return ("ok", "queued", lock["waiters"].index(owner) + 1)


def _release(state: dict, name: Any, owner: Any, effects: list) -> Any:
    lock = state["locks"].get(name)
    if lock is None or lock["holder"] != owner:
        return ("error", "not_holder")
    _pass_on(state, name, effects)
    _unref(state, owner, effects)
    return "ok"


def _cancel(state: dict, name: Any, owner: Any, effects: list) -> Any:
    lock = state["locks"].get(name)
    if lock is None or owner not in lock["waiters"]:
        return ("error", "not_waiting")
    lock["waiters"] = tuple(w for w in lock["waiters"] if w != owner)
    _unref(state, owner, effects)
    return "ok"


def _down(state: dict, owner: Any, effects: list) -> None:
    if owner not in state["owners"]:
        return
    # Dict order is replicated state (msgpack keeps it), so every member
    # grants in the same order.
    for name in list(state["locks"]):
        lock = state["locks"][name]
        if lock["holder"] == owner:
            _pass_on(state, name, effects)
        elif owner in lock["waiters"]:
            lock["waiters"] = tuple(w for w in lock["waiters"] if w != owner)
    del state["owners"][owner]


def _command(command: Any, state: dict, effects: list) -> Any:
    """Carry out one command; ``None`` for anything that is not a command of
    this machine (the state is then untouched)."""
    if isinstance(command, Down):
        if _hashable(command.target):
            _down(state, command.target, effects)
        return "ok"
    if not (isinstance(command, tuple) and len(command) == 3):
        return None
    op, name, owner = command
    if op not in ("acquire", "try_acquire", "release", "cancel"):
        return None
    if not (_hashable(name) and _hashable(owner)):
        return BAD_COMMAND
    if op == "acquire":
        return _acquire(state, name, owner, True, effects)
    if op == "try_acquire":
        return _acquire(state, name, owner, False, effects)
    if op == "release":
        return _release(state, name, owner, effects)
    return _cancel(state, name, owner, effects)


def apply(meta: Any, command: Any, state: dict):
    effects: list = []
    reply = _command(command, state, effects)
    if reply is None:
        reply = UNKNOWN_COMMAND
    every = state["release_cursor_every"]
    if every:
        state["since_release"] += 1
        if state["since_release"] >= every:
            state["since_release"] = 0
            effects.append(ReleaseCursor(meta.index, state))
    return state, reply, effects


# ======================================================== other callbacks
def state_enter(role: str, state: dict) -> list:
    if role != "leader":
        return []
    return [Monitor("process", owner) for owner in state["owners"]]


def overview(state: dict) -> dict:
    """Also a query: counts of held locks, waiting owners and owners."""
    return {
        "type": "lock",
        "locks_held": len(state["locks"]),
        "waiting": sum(len(lock["waiters"]) for lock in state["locks"].values()),
        "owners": len(state["owners"]),
        "release_cursor_every": state["release_cursor_every"],
    }


# ================================================================= queries
def holder(state: dict, lock_name: Any) -> Any:
    """Query: who holds ``lock_name`` (None if it is free)."""
    lock = state["locks"].get(lock_name) if _hashable(lock_name) else None
    return lock["holder"] if lock is not None else None


def waiters(state: dict, lock_name: Any) -> tuple:
    """Query: the owners waiting for ``lock_name``, next in line first."""
    lock = state["locks"].get(lock_name) if _hashable(lock_name) else None
    return lock["waiters"] if lock is not None else ()
