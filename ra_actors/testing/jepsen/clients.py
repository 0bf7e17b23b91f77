"""The workload of a Jepsen run: client processes doing read / write / cas.

Each client is a separate Python process (``python -m
ra_actors.testing.jepsen.clients CONFIG``) with its own
:class:`ra_actors.api.Client`.  It records every operation with a
:class:`~ra_actors.testing.history.HistoryRecorder` into its own JSON-lines
file, timed with :func:`time.monotonic_ns` (one monotonic clock for every
process of the machine), and the harness merges the files by time.  Its
``process`` id is its client number.

Rules of the workload:

* Keys: ``keys`` slots; with ``key_period`` > 0 each slot moves to a fresh
  key every ``key_period`` seconds (``k<slot>@<generation>``), as Jepsen's
  independent keys do, so that no key's history grows too long to check.
  With ``key_period`` 0 the keys are ``k0 .. k<keys-1>`` for the whole run.
* Operations: half reads (``consistent_query`` of ``machines.kv:read``),
  a quarter writes, a quarter cas; each addresses a random member (reads of
  a member outside the majority are exactly what catches stale reads).
  Written values are unique per run: ``process * 1_000_000 + counter``.
  A cas expects the value this client last saw for the key.
* Outcomes:

  - read: ``ok`` with the value, or ``fail`` on any error or timeout (a read
    has no effect);
  - write: ``ok`` on the reply ``"ok"``, otherwise ``info`` (a timeout, a
    redirect that may already have delivered it, any error: the outcome is
    unknown);
  - cas: ``ok`` on ``"cas_ok"``, ``fail`` on ``("cas_failed", current)``
    (the machine applied it and changed nothing), otherwise ``info``.

* The client stops at ``end_ns`` (monotonic), when the stop file appears, or
  when its parent dies.  A client that sees nothing succeed for
  ``reconnect_after`` seconds replaces its Client (counted in its stats).
"""
from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
import traceback
from typing import Any

from ..history import FAIL, INFO, OK, HistoryRecorder

READ_FUNCTION = "machines.kv:read"


def key_name(slot: int, generation: int, key_period: float) -> str:
    return f"k{slot}" if key_period <= 0 else f"k{slot}@{generation}"


def current_generation(now_ns: int, t0_ns: int, key_period: float) -> int:
    if key_period <= 0:
        return 0
    return max(0, int((now_ns - t0_ns) / 1e9 // key_period))


def all_keys(keys: int, t0_ns: int, end_ns: int, key_period: float) -> list[str]:
    """Every key a run from ``t0_ns`` to ``end_ns`` can use."""
    last = current_generation(end_ns, t0_ns, key_period)
    return [key_name(s, g, key_period) for g in range(last + 1) for s in range(keys)]


class _Stop(BaseException):
    pass


def run_client(cfg: dict) -> int:
    """Body of one client process; returns its exit status."""
    from ...core.types import ServerId
    from .cluster import connect_any

    process = int(cfg["process"])
    rng = random.Random(f"{cfg['seed']}-client-{process}")
    sids = [ServerId(*s) for s in cfg["sids"]]
    addresses = [tuple(a) for a in cfg["addresses"]]
    timeout = float(cfg["op_timeout"])
    end_ns = int(cfg["end_ns"])
    t0_ns = int(cfg["t0_ns"])
    key_period = float(cfg["key_period"])
    stop_file = cfg["stop_file"]
    parent = os.getppid()
    stats = {"ops": 0, "ok": 0, "fail": 0, "info": 0, "reconnects": 0, "errors": {}}
    last_seen: dict[str, Any] = {}
    counter = 0

    def should_stop() -> bool:
        return (time.monotonic_ns() >= end_ns or os.path.exists(stop_file)
                or os.getppid() != parent)

    def note_error(exc: BaseException) -> None:
        name = type(exc).__name__
        stats["errors"][name] = stats["errors"].get(name, 0) + 1

    def new_client():
        while True:
            if should_stop():
                raise _Stop
            try:
                return connect_any(addresses, timeout=30.0, rng=rng, stop=should_stop)
            except Exception as exc:  # noqa: BLE001 - nodes may be down right now
                note_error(exc)
                time.sleep(0.2)

    recorder = HistoryRecorder(cfg["history"])
    client = None
    try:
        client = new_client()
        last_ok = time.monotonic()
        while not should_stop():
            if time.monotonic() - last_ok > float(cfg["reconnect_after"]):
                try:
                    client.close()
                except Exception:  # noqa: BLE001
                    pass
                client = new_client()
                stats["reconnects"] += 1
                last_ok = time.monotonic()
            slot = rng.randrange(int(cfg["keys"]))
            key = key_name(slot, current_generation(time.monotonic_ns(), t0_ns, key_period), key_period)
            sid = rng.choice(sids)
            roll = rng.random()
            stats["ops"] += 1
            if roll < 0.5:
                op = recorder.invoke(process, "read", key)
                try:
                    value, _leader = client.consistent_query(sid, READ_FUNCTION, key, timeout=timeout)
                except Exception as exc:  # noqa: BLE001 - a read has no effect
                    note_error(exc)
                    recorder.complete(op, FAIL)
                    stats["fail"] += 1
                    continue
                recorder.complete(op, OK, value)
                last_seen[key] = value
                stats["ok"] += 1
                last_ok = time.monotonic()
                continue
            counter += 1
            new = process * 1_000_000 + counter
            if roll < 0.75:
                op = recorder.invoke(process, "write", key, new)
                command = ("write", key, new)
            else:
                old = last_seen.get(key)
                op = recorder.invoke(process, "cas", key, (old, new))
                command = ("cas", key, old, new)
            try:
                reply, _leader = client.process_command(sid, command, timeout=timeout)
            except Exception as exc:  # noqa: BLE001 - unknown outcome
                note_error(exc)
                recorder.complete(op, INFO)
                stats["info"] += 1
                continue
            if reply in ("ok", "cas_ok"):
                recorder.complete(op, OK)
                last_seen[key] = new
                stats["ok"] += 1
                last_ok = time.monotonic()
            elif (command[0] == "cas" and isinstance(reply, (tuple, list)) and len(reply) == 2
                  and reply[0] == "cas_failed"):
                recorder.complete(op, FAIL)
                last_seen[key] = reply[1]
                stats["fail"] += 1
                last_ok = time.monotonic()
            else:
                stats["errors"][f"reply {reply!r}"[:60]] = stats["errors"].get(f"reply {reply!r}"[:60], 0) + 1
                recorder.complete(op, INFO)
                stats["info"] += 1
    except _Stop:
        pass
    finally:
        # An operation still open here stays an invoke without completion,
        # which the checker reads as info.
        recorder.close()
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001
                pass
        try:
            with open(cfg["stats"], "w", encoding="utf-8") as handle:
                json.dump(stats, handle)
        except OSError:
            pass
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0], "r", encoding="utf-8") as handle:
        cfg = json.load(handle)
    # The harness stops clients with the stop file or SIGTERM; Ctrl-C in a
    # terminal reaches the harness, which stops us in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def _term(_signum, _frame):
        raise _Stop

    signal.signal(signal.SIGTERM, _term)
    try:
        return run_client(cfg)
    except _Stop:
        return 0
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
