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

* Workload ``counter`` (:mod:`.counter`): a fifth of the operations are
  reads of the counter (``consistent_query``), the others ``add`` 1
  (``process_command(member, ("add", 1))``, which sends the command again
  until answered, applied once by the cluster's session table): ``ok``
  with the counter the machine replied; ``fail`` when the cluster refused
  it (``SessionExpired``, ``InvalidCommand``: not applied); otherwise
  ``info``.
* Workload ``bank`` (:mod:`.bank`): a fifth of the operations read every
  balance (``consistent_query`` of ``machines.sqlite:query``), the others
  transfer a random amount between two random accounts as one SQL
  transaction (``process_command``): ``ok`` when committed; ``fail`` when
  the database refused it (the ``CHECK`` against overdrafts, or the session
  errors: not applied); otherwise ``info``.  A read is ``ok`` with the
  balances, ``fail`` on any error.
* With ``duplicate_sends`` every command message goes out twice (as a
  transport that redelivers a message may send it): the cluster's sessions
  answer the copy without applying it again.
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
from . import bank
from .counter import READ_FUNCTION as COUNTER_READ

READ_FUNCTION = "machines.kv:read"


def send_commands_twice(client) -> None:
    """Make ``client`` send every command message twice, back to back (see
    the module's rules): the fault a redelivering transport causes."""
    from ...actors.protocol import ClientCall, CommandRequest

    conn = client._conn
    send = conn.send

    def twice(addr, msg, key, timeout):
        send(addr, msg, key, timeout)
        if isinstance(msg, ClientCall) and isinstance(msg.request, CommandRequest):
            send(addr, msg, key, timeout)

    conn.send = twice


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
    workload = _ClientWorkload(cfg)
    try:
        workload.run()
    except _Stop:
        pass
    finally:
        workload.finish()
    return 0


class _ClientWorkload:
    """One client process's run (see the module's rules): its settings, its
    Client, its history recorder and its stats.

    Every random choice comes from one generator seeded by the run's seed
    and the process id, drawn in the same order each operation (slot,
    member, kind of operation), so a run's choices can be replayed."""

    def __init__(self, cfg: dict) -> None:
        from ...core.types import ServerId

        self.process = int(cfg["process"])
        self.rng = random.Random(f"{cfg['seed']}-client-{self.process}")
        self.sids = [ServerId(*s) for s in cfg["sids"]]
        self.addresses = [tuple(a) for a in cfg["addresses"]]
        self.timeout = float(cfg["op_timeout"])
        self.end_ns = int(cfg["end_ns"])
        self.t0_ns = int(cfg["t0_ns"])
        self.key_period = float(cfg["key_period"])
        self.keys = int(cfg["keys"])
        self.reconnect_after = float(cfg["reconnect_after"])
        self.stop_file: str = cfg["stop_file"]
        self.workload: str = cfg.get("workload", "kv")
        self.duplicate_sends = bool(cfg.get("duplicate_sends", False))
        self.stats_path: str = cfg["stats"]
        self.parent = os.getppid()
        self.stats: dict[str, Any] = {"ops": 0, "ok": 0, "fail": 0, "info": 0, "reconnects": 0, "errors": {}}
        self.last_seen: dict[str, Any] = {}
        self.counter = 0
        self.recorder = HistoryRecorder(cfg["history"])
        self.client = None
        self.last_ok = 0.0      # monotonic time of the last operation that succeeded

    def should_stop(self) -> bool:
        return (time.monotonic_ns() >= self.end_ns or os.path.exists(self.stop_file)
                or os.getppid() != self.parent)

    def run(self) -> None:
        """Operations until it is time to stop (raises ``_Stop`` if that
        happens while connecting)."""
        self.client = self._connect()
        self.last_ok = time.monotonic()
        while not self.should_stop():
            self._reconnect_if_silent()
            slot = self.rng.randrange(self.keys)
            key = key_name(slot, current_generation(time.monotonic_ns(), self.t0_ns, self.key_period),
                           self.key_period)
            sid = self.rng.choice(self.sids)
            roll = self.rng.random()
            self.stats["ops"] += 1
            if self.workload == "counter":
                if roll < 0.2:
                    self._read(None, sid, COUNTER_READ)
                else:
                    self._add(sid)
            elif self.workload == "bank":
                if roll < 0.2:
                    self._read_balances(sid)
                else:
                    self._transfer(sid)
            elif roll < 0.5:
                self._read(key, sid)
            else:
                self._update(key, sid, write=roll < 0.75)

    def finish(self) -> None:
        # An operation still open here stays an invoke without completion,
        # which the checker reads as info.
        self.recorder.close()
        if self.client is not None:
            try:
                self.client.close()
            except Exception:  # noqa: BLE001
                pass
        try:
            with open(self.stats_path, "w", encoding="utf-8") as handle:
                json.dump(self.stats, handle)
        except OSError:
            pass

    def _note_error(self, what: str) -> None:
        errors = self.stats["errors"]
        errors[what] = errors.get(what, 0) + 1

    def _connect(self):
        from .cluster import connect_any

        while True:
            if self.should_stop():
                raise _Stop
            try:
                client = connect_any(self.addresses, timeout=30.0, rng=self.rng, stop=self.should_stop)
                if self.duplicate_sends:
                    send_commands_twice(client)
                return client
            except Exception as exc:  # noqa: BLE001 - nodes may be down right now
                self._note_error(type(exc).__name__)
                time.sleep(0.2)

    def _reconnect_if_silent(self) -> None:
        """A Client that has seen nothing succeed for ``reconnect_after``
        seconds is replaced."""
        if time.monotonic() - self.last_ok > self.reconnect_after:
            try:
                self.client.close()
            except Exception:  # noqa: BLE001
                pass
            self.client = self._connect()
            self.stats["reconnects"] += 1
            self.last_ok = time.monotonic()

    def _answered(self, outcome: str) -> None:
        """The cluster answered (whatever the answer): count ``outcome``;
        the silence that triggers a reconnect starts again."""
        self.stats[outcome] += 1
        self.last_ok = time.monotonic()

    def _read(self, key: str | None, sid, function: str = READ_FUNCTION) -> None:
        op = self.recorder.invoke(self.process, "read", key)
        args = () if key is None else (key,)
        try:
            value, _leader = self.client.consistent_query(sid, function, *args, timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001 - a read has no effect
            self._note_error(type(exc).__name__)
            self.recorder.complete(op, FAIL)
            self.stats["fail"] += 1
            return
        self.recorder.complete(op, OK, value)
        self.last_seen[key] = value
        self._answered("ok")

    def _add(self, sid) -> None:
        """One increment of the counter (see the module's rules)."""
        from ... import errors

        op = self.recorder.invoke(self.process, "add", None, 1)
        try:
            reply, _leader = self.client.process_command(sid, ("add", 1), timeout=self.timeout)
        except (errors.SessionExpired, errors.InvalidCommand) as exc:
            self._note_error(type(exc).__name__)
            self.recorder.complete(op, FAIL)
            self._answered("fail")
            return
        except Exception as exc:  # noqa: BLE001 - unknown outcome
            self._note_error(type(exc).__name__)
            self.recorder.complete(op, INFO)
            self.stats["info"] += 1
            return
        self.recorder.complete(op, OK, reply)
        self._answered("ok")

    def _read_balances(self, sid) -> None:
        op = self.recorder.invoke(self.process, "read")
        try:
            reply, _leader = self.client.consistent_query(sid, bank.QUERY_FUNCTION, bank.READ_SQL, (),
                                                          timeout=self.timeout)
            if reply[0] != "ok":
                raise RuntimeError(f"query refused: {reply!r}"[:80])
        except Exception as exc:  # noqa: BLE001 - a read has no effect
            self._note_error(type(exc).__name__)
            self.recorder.complete(op, FAIL)
            self.stats["fail"] += 1
            return
        self.recorder.complete(op, OK, [row[0] for row in reply[1]["rows"]])
        self._answered("ok")

    def _transfer(self, sid) -> None:
        """One transfer (see the module's rules)."""
        from ... import errors

        self.counter += 1
        tid = self.process * 1_000_000 + self.counter
        src, dst, amount = bank.pick_transfer(self.rng)
        op = self.recorder.invoke(self.process, "transfer", None, [tid, src, dst, amount])
        command = ("transaction", bank.transfer_statements(tid, src, dst, amount))
        try:
            reply, _leader = self.client.process_command(sid, command, timeout=self.timeout)
        except (errors.SessionExpired, errors.InvalidCommand) as exc:
            self._note_error(type(exc).__name__)
            self.recorder.complete(op, FAIL)
            self._answered("fail")
            return
        except Exception as exc:  # noqa: BLE001 - unknown outcome
            self._note_error(type(exc).__name__)
            self.recorder.complete(op, INFO)
            self.stats["info"] += 1
            return
        if isinstance(reply, tuple) and reply and reply[0] == "ok":
            self.recorder.complete(op, OK)
            self._answered("ok")
        elif (isinstance(reply, tuple) and len(reply) >= 2 and reply[0] == "error"
              and reply[1] != "ReplyForgotten"):
            # the machine applied it as a refusal: nothing of it changed the database
            self._note_error(f"refused {reply[1]}")
            self.recorder.complete(op, FAIL)
            self._answered("fail")
        else:
            self._note_error(f"reply {reply!r}"[:60])
            self.recorder.complete(op, INFO)
            self.stats["info"] += 1

    def _update(self, key: str, sid, write: bool) -> None:
        """A write, or a cas from the value this client last saw."""
        self.counter += 1
        new = self.process * 1_000_000 + self.counter
        if write:
            op = self.recorder.invoke(self.process, "write", key, new)
            command = ("write", key, new)
        else:
            old = self.last_seen.get(key)
            op = self.recorder.invoke(self.process, "cas", key, (old, new))
            command = ("cas", key, old, new)
        try:
            reply, _leader = self.client.process_command(sid, command, timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001 - unknown outcome
            self._note_error(type(exc).__name__)
            self.recorder.complete(op, INFO)
            self.stats["info"] += 1
            return
        if reply in ("ok", "cas_ok"):
            self.recorder.complete(op, OK)
            self.last_seen[key] = new
            self._answered("ok")
        elif (command[0] == "cas" and isinstance(reply, (tuple, list)) and len(reply) == 2
              and reply[0] == "cas_failed"):
            # the machine applied it and changed nothing: we learn the value
            self.recorder.complete(op, FAIL)
            self.last_seen[key] = reply[1]
            self._answered("fail")
        else:
            self._note_error(f"reply {reply!r}"[:60])
            self.recorder.complete(op, INFO)
            self.stats["info"] += 1


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
