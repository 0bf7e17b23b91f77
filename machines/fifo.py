"""A FIFO queue with consumers, in the spirit of RabbitMQ's quorum queues
(``rabbit_fifo``): the machine that shows machine effects end to end.

Producers enqueue messages; consumers check out with a prefetch limit, the
machine pushes messages to them (``SendMsg``), they settle (acknowledge) or
return them.  The machine monitors every consumer, so a consumer that dies
(``Down``) gives its unsettled messages back and they are redelivered to the
others.  Nothing here is remembered outside the replicated state, so every
member agrees on which consumer holds which message.

Commands (tuples; clients normalise them through msgpack):

=====================================  =====================================
``("enqueue", body)``                  add ``body`` at the back; reply
                                       ``("ok", msg_id)``.  Message ids are
                                       increasing integers from 1, never
                                       reused (not even after a purge).
``("checkout", consumer, prefetch)``   register ``consumer`` (any hashable
                                       msgpack value naming a process: a
                                       client handle id, a ``ServerId``)
                                       with at most ``prefetch`` (>= 1)
                                       unsettled messages; reply ``"ok"``.
                                       A new consumer is monitored
                                       (``Monitor("process", consumer)``).
                                       Checking out again only changes the
                                       prefetch.
``("cancel", consumer)``               stop deliveries to ``consumer``; its
                                       unsettled messages are returned;
                                       ``Demonitor("process", consumer)``;
                                       reply ``"ok"`` (or ``("error",
                                       "unknown_consumer")``).
``("settle", consumer, msg_ids)``      the consumer is done with these
                                       messages: they leave the queue for
                                       good.  Reply ``"ok"``.
``("return", consumer, msg_ids)``      give these messages back; they are
                                       redelivered with their delivery count
                                       incremented.  Reply ``"ok"``.
``("purge",)``                         drop every ready (not checked-out)
                                       message; reply ``("ok", n_dropped)``.
``Down(consumer, reason)``             a monitored consumer died: as
                                       ``cancel`` (without ``Demonitor``, the
                                       monitor already fired), whatever the
                                       reason.  Reply ``"ok"``.
``TimerFired("delivery_timeout")``     return every message checked out for
                                       at least ``delivery_timeout_ms``; the
                                       consumer stays but moves to the back
                                       of the line.  Reply ``"ok"``.
=====================================  =====================================

``settle``/``return`` of ids the consumer does not hold (unknown, already
settled, or held by another consumer) change nothing for those ids and reply
``("error", "unknown_msg_ids", (id, ...))``; the known ids in the same
command are still processed.  Anything else (including ``MachineVersion``
and other timers) changes nothing and replies ``("error",
"unknown_command")``; a malformed command (bad prefetch, unhashable
consumer) replies ``("error", "bad_command")``.

Deliveries and effects (in this order within one apply):

* ``Monitor``/``Demonitor`` of the command itself;
* at most one ``SendMsg(consumer, ("delivery", name, ((msg_id, body,
  delivery_count), ...)))`` per consumer per apply, carrying everything
  delivered to it by that command (``name`` is the ``name`` config key,
  which the server sets to the cluster name, or None).  ``delivery_count``
  is how many times the message was delivered before (0 the first time);
* ``Timer("delivery_timeout", ms)`` when the timeout is on and the apply
  took the queue from no checked-out message to some, or after a
  ``TimerFired("delivery_timeout")`` while messages are still checked out
  (``ms`` = time until the oldest checkout expires);
* ``ReleaseCursor(meta.index, state)`` every ``release_cursor_every``
  applied commands (of any kind; 0 = never).

Rules:

* After every apply no message is ready while a consumer has credit: each
  command ends by delivering.  The ready queue is served in message-id
  order, so returned messages (which are always older than never-delivered
  ones) go first, oldest first.  Consumers with credit are served round-robin,
  one message at a time; a consumer that receives a message moves to the back.
* A message is checked out by at most one consumer; once settled it is gone
  for good.  ``enqueued_total == depth + settled_total + purged_total``.
* Time comes only from ``meta.system_time`` (the leader's clock when the
  command was received), recorded as each message's checkout time.
* ``state_enter("leader", state)`` re-monitors every consumer (monitors live
  on the leader, so they must move with it) and re-arms the timer with the
  full timeout if messages are checked out (``state_enter`` has no clock, so
  a message may overstay by up to one timeout after a leader change).
* The state is plain dicts and tuples (msgpack round-trips it unchanged).
  ``apply`` validates a command before touching anything, then updates the
  state in place and returns it: a queue may hold millions of messages and a
  copy per command would make every command O(n).  This is safe because the
  core encodes a ``ReleaseCursor`` state at once and never reuses an older
  state; queries build fresh values.

Config: ``delivery_timeout_ms`` (default 0 = off), ``release_cursor_every``
(default 0 = never), ``name``.

Queries: ``depth(state)`` (messages held: ready + checked out),
``overview_query(state)``, ``consumers(state)``.
"""
from __future__ import annotations

from typing import Any

from ra_actors.core.effects import (
    Demonitor, Down, Monitor, ReleaseCursor, SendMsg, Timer, TimerFired,
)

DELIVERY_TIMEOUT = "delivery_timeout"

UNKNOWN_COMMAND = ("error", "unknown_command")
BAD_COMMAND = ("error", "bad_command")
UNKNOWN_CONSUMER = ("error", "unknown_consumer")


# ===================================================================== init
def _non_negative_int(config: dict, key: str) -> int:
    value = config.get(key, 0) or 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{key} must be an integer >= 0, got {value!r}")
    return value


def init(config: dict) -> dict:
    return {
        "name": config.get("name"),
        "delivery_timeout_ms": _non_negative_int(config, "delivery_timeout_ms"),
        "release_cursor_every": _non_negative_int(config, "release_cursor_every"),
        "since_release": 0,
        # Never-delivered messages {msg_id: body}.  They leave only from the
        # front (delivery) or all at once (purge), so their ids are exactly
        # the contiguous range [low, next_msg_id): no ordering structure needed.
        "messages": {},
        "low": 1,
        "next_msg_id": 1,
        # Ready messages that were delivered before: ((msg_id, body,
        # delivery_count), ...) sorted by msg_id.  Small in practice (bounded
        # by what consumers held), so a sorted tuple is fine.
        "returns": (),
        # {consumer: {"prefetch": n, "checked_out": {msg_id: (body,
        # delivery_count, checkout_time)}}}
        "consumers": {},
        # Round-robin order of all consumers; the next to be served is first.
        "service": (),
        "enqueued_total": 0,
        "settled_total": 0,
        "returned_total": 0,
        "purged_total": 0,
    }


# ================================================================= helpers
def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _msg_ids(value: Any) -> tuple | None:
    """A tuple (or list, for direct callers) of integer ids, else None."""
    if not isinstance(value, (tuple, list)):
        return None
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        return None
    return tuple(value)


def _ready_count(state: dict) -> int:
    return len(state["messages"]) + len(state["returns"])


def _checked_out_count(state: dict) -> int:
    return sum(len(c["checked_out"]) for c in state["consumers"].values())


def _return_messages(state: dict, returned: list[tuple]) -> None:
    """Put ``(msg_id, body, delivery_count)`` back on the ready queue (their
    delivery count already incremented), keeping msg-id order."""
    if returned:
        state["returns"] = tuple(sorted(state["returns"] + tuple(returned), key=lambda m: m[0]))
        state["returned_total"] += len(returned)


def _take_back(checked_out: dict, msg_ids) -> list[tuple]:
    """Remove ``msg_ids`` from ``checked_out`` and return them as ready
    entries with one more delivery counted."""
    out = []
    for msg_id in msg_ids:
        body, count, _since = checked_out.pop(msg_id)
        out.append((msg_id, body, count + 1))
    return out


def _remove_consumer(state: dict, consumer: Any) -> None:
    record = state["consumers"].pop(consumer)
    state["service"] = tuple(c for c in state["service"] if c != consumer)
    # Sorted so redelivery follows the original (msg-id) order.
    _return_messages(state, _take_back(record["checked_out"], sorted(record["checked_out"])))


def _deliver(state: dict, now: int) -> list[SendMsg]:
    """Hand ready messages to consumers with credit, round-robin, and return
    one ``SendMsg`` per consumer that received something."""
    consumers = state["consumers"]
    returns = state["returns"]
    r = 0  # how many of ``returns`` were taken (slice once at the end)
    messages = state["messages"]
    order = list(state["service"])
    batches: dict[Any, list] = {}  # insertion order = order of first delivery
    while r < len(returns) or state["low"] < state["next_msg_id"]:
        for i, consumer in enumerate(order):
            record = consumers[consumer]
            if len(record["checked_out"]) < record["prefetch"]:
                break
        else:
            break  # nobody has credit
        if r < len(returns):
            msg_id, body, count = returns[r]
            r += 1
        else:
            msg_id = state["low"]
            body, count = messages.pop(msg_id), 0
            state["low"] = msg_id + 1
        record["checked_out"][msg_id] = (body, count, now)
        batches.setdefault(consumer, []).append((msg_id, body, count))
        order.append(order.pop(i))  # served: to the back of the line
    if r:
        state["returns"] = returns[r:]
    state["service"] = tuple(order)
    return [SendMsg(c, ("delivery", state["name"], tuple(batch))) for c, batch in batches.items()]


# =================================================================== apply
def _settle_or_return(state: dict, consumer: Any, ids: tuple, settle: bool) -> Any:
    record = state["consumers"].get(consumer)
    held = record["checked_out"] if record is not None else {}
    known: list[int] = []
    unknown: list[int] = []
    seen: set[int] = set()
    for msg_id in ids:
        # An id listed twice is known once: the second occurrence is unknown.
        (known if msg_id in held and msg_id not in seen else unknown).append(msg_id)
        seen.add(msg_id)
    if settle:
        for msg_id in known:
            del held[msg_id]
        state["settled_total"] += len(known)
    else:
        _return_messages(state, _take_back(held, sorted(known)))
    return ("error", "unknown_msg_ids", tuple(unknown)) if unknown else "ok"


def _expire(state: dict, now: int) -> None:
    timeout = state["delivery_timeout_ms"]
    expired: list[tuple] = []
    late_consumers = []
    for consumer in state["service"]:
        held = state["consumers"][consumer]["checked_out"]
        late = [msg_id for msg_id, (_b, _c, since) in held.items() if now - since >= timeout]
        if late:
            expired.extend(_take_back(held, late))
            late_consumers.append(consumer)
    # A consumer that let messages expire keeps its place in the queue but
    # loses its turn: overdue messages go to someone else if anyone has credit.
    state["service"] = (tuple(c for c in state["service"] if c not in late_consumers)
                        + tuple(late_consumers))
    _return_messages(state, expired)


def _command(meta: Any, command: Any, state: dict) -> tuple[Any, list]:
    """Carry out one command: (reply, command-specific effects).  The reply
    is ``None`` for anything that is not a command of this machine (the
    state is then untouched)."""
    if isinstance(command, Down):
        if _hashable(command.target) and command.target in state["consumers"]:
            _remove_consumer(state, command.target)
        return "ok", []
    if isinstance(command, TimerFired):
        if command.name != DELIVERY_TIMEOUT:
            return None, []
        if state["delivery_timeout_ms"]:
            _expire(state, meta.system_time)
        return "ok", []
    if not (isinstance(command, tuple) and command):
        return None, []
    op, args = command[0], command[1:]
    if op == "enqueue" and len(args) == 1:
        msg_id = state["next_msg_id"]
        state["messages"][msg_id] = args[0]
        state["next_msg_id"] = msg_id + 1
        state["enqueued_total"] += 1
        return ("ok", msg_id), []
    if op == "checkout" and len(args) == 2:
        consumer, prefetch = args
        if (not _hashable(consumer) or not isinstance(prefetch, int)
                or isinstance(prefetch, bool) or prefetch < 1):
            return BAD_COMMAND, []
        record = state["consumers"].get(consumer)
        if record is not None:
            record["prefetch"] = prefetch
            return "ok", []
        state["consumers"][consumer] = {"prefetch": prefetch, "checked_out": {}}
        # A new consumer joins the back of the line.
        state["service"] = state["service"] + (consumer,)
        return "ok", [Monitor("process", consumer)]
    if op == "cancel" and len(args) == 1:
        consumer = args[0]
        if not _hashable(consumer):
            return BAD_COMMAND, []
        if consumer not in state["consumers"]:
            return UNKNOWN_CONSUMER, []
        _remove_consumer(state, consumer)
        return "ok", [Demonitor("process", consumer)]
    if op in ("settle", "return") and len(args) == 2:
        consumer, ids = args[0], _msg_ids(args[1])
        if ids is None or not _hashable(consumer):
            return BAD_COMMAND, []
        return _settle_or_return(state, consumer, ids, settle=(op == "settle")), []
    if op == "purge" and not args:
        dropped = _ready_count(state)
        state["messages"] = {}
        state["returns"] = ()
        state["low"] = state["next_msg_id"]
        state["purged_total"] += dropped
        return ("ok", dropped), []
    return None, []


def apply(meta: Any, command: Any, state: dict):
    before = _checked_out_count(state)
    reply, effects = _command(meta, command, state)
    if reply is None:
        reply = UNKNOWN_COMMAND
    else:
        # Every command ends by delivering: a settle, return, cancel, death or
        # timeout may have freed credit or made messages ready.
        effects.extend(_deliver(state, meta.system_time))
        timeout = state["delivery_timeout_ms"]
        if timeout:
            if isinstance(command, TimerFired):
                # Re-arm for the oldest checkout still outstanding.
                oldest = min((since for c in state["consumers"].values()
                              for (_b, _c, since) in c["checked_out"].values()), default=None)
                if oldest is not None:
                    effects.append(Timer(DELIVERY_TIMEOUT, max(1, oldest + timeout - meta.system_time)))
            elif before == 0 and _checked_out_count(state) > 0:
                # Later checkouts expire later, so one timer for the first
                # checkout suffices: when it fires it re-arms for the next.
                effects.append(Timer(DELIVERY_TIMEOUT, timeout))
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
    effects: list = [Monitor("process", c) for c in state["service"]]
    if state["delivery_timeout_ms"] and _checked_out_count(state):
        effects.append(Timer(DELIVERY_TIMEOUT, state["delivery_timeout_ms"]))
    return effects


def overview(state: dict) -> dict:
    return {
        "type": "fifo",
        "messages_ready": _ready_count(state),
        "messages_checked_out": _checked_out_count(state),
        "consumers": len(state["consumers"]),
        "enqueued_total": state["enqueued_total"],
        "settled_total": state["settled_total"],
        "returned_total": state["returned_total"],
        "purged_total": state["purged_total"],
        "next_msg_id": state["next_msg_id"],
        "delivery_timeout_ms": state["delivery_timeout_ms"],
        "release_cursor_every": state["release_cursor_every"],
    }


# ================================================================= queries
def depth(state: dict) -> int:
    """Query: messages the queue still holds (ready + checked out)."""
    return _ready_count(state) + _checked_out_count(state)


def overview_query(state: dict) -> dict:
    """Query: the same map as :func:`overview`."""
    return overview(state)


def consumers(state: dict) -> tuple:
    """Query: ``((consumer, prefetch, (checked-out msg_id, ...)), ...)`` in
    round-robin order (the next consumer to be served first)."""
    return tuple((c, state["consumers"][c]["prefetch"], tuple(sorted(state["consumers"][c]["checked_out"])))
                 for c in state["service"])
