"""The counter workload of a Jepsen run (``--workload counter``): exactly-once
increments through faults.

Clients call ``process_command(member, ("add", 1))`` on a
``machines.counter`` cluster and now and then read it
(``consistent_query`` of :data:`READ_FUNCTION`).  The history holds
``add`` operations (``value`` 1 on invoke; an ``ok`` completion carries
the counter the machine replied) and ``read`` operations.

Rules of the check (:func:`check_counter`), each a way exactly-once can
break:

* **Final value.**  After healing, the counter read through the log must
  satisfy ``acknowledged <= final <= acknowledged + uncertain``: every
  acknowledged add applied, no more than the adds whose outcome is unknown
  (``info``, or never completed) on top -- an add applied twice, or a
  failed one applied, shows as a counter above the bound.
* **Replies.**  The counters the machine replied to acknowledged adds are
  distinct (one add, one apply, one value) and none exceeds the final value.
* **Reads.**  A read returns at least the acknowledged adds that completed
  before it was invoked, and at most the adds (not failed) invoked before it
  returned.

The verdict is ``valid`` or ``invalid`` with the violations (at most 10
listed); ``unknown`` without a final read.
"""
from __future__ import annotations

import bisect
from typing import Any, Optional

from ..history import FAIL, OK, pair_operations

__all__ = ["READ_FUNCTION", "MACHINE", "CLUSTER", "check_counter"]

READ_FUNCTION = "machines.counter:read"
MACHINE = "machines.counter"
CLUSTER = "jepsen_counter"


def check_counter(events: list[dict], final: Optional[int]) -> dict:
    """Check a counter history against the final value (see the module rules)."""
    ops = pair_operations(events)
    adds = [op for op in ops if op.f == "add"]
    acked = [op for op in adds if op.type == OK]
    uncertain = [op for op in adds if op.type not in (OK, FAIL)]
    problems: list[str] = []
    replies = [events[op.return_index].get("value") for op in acked]
    out: dict[str, Any] = {"acknowledged": len(acked), "uncertain": len(uncertain),
                           "failed": sum(1 for op in adds if op.type == FAIL), "final": final,
                           "reads": sum(1 for op in ops if op.f == "read" and op.type == OK)}
    if final is None:
        out.update(verdict="unknown", explanation="no final read of the counter")
        return out
    if final < len(acked):
        problems.append(f"final counter {final} is below the {len(acked)} acknowledged adds: "
                        f"{len(acked) - final} lost")
    if final > len(acked) + len(uncertain):
        problems.append(f"final counter {final} is above the {len(acked)} acknowledged adds plus "
                        f"{len(uncertain)} uncertain ones: {final - len(acked) - len(uncertain)} applied twice "
                        f"(or a failed add applied)")
    seen: dict = {}
    for op, value in zip(acked, replies):
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{op.describe()}: reply {value!r} is not a counter")
        elif value in seen:
            problems.append(f"{op.describe()} and {seen[value].describe()} were both answered {value}")
        elif value > final:
            problems.append(f"{op.describe()} was answered {value}, above the final counter {final}")
        else:
            seen[value] = op
    problems += _check_reads(ops, acked, adds)
    out["verdict"] = "invalid" if problems else "valid"
    out["problems"] = problems[:10]
    out["explanation"] = problems[0] if problems else (
        f"{len(acked)} <= final {final} <= {len(acked)} + {len(uncertain)}")
    return out


def _check_reads(ops, acked, adds) -> list[str]:
    acked_done = sorted(op.return_index for op in acked)
    started = sorted(op.invoke_index for op in adds if op.type != FAIL)
    problems = []
    for op in ops:
        if op.f != "read" or op.type != OK:
            continue
        value = op.value
        low = bisect.bisect_left(acked_done, op.invoke_index)
        high = bisect.bisect_left(started, op.return_index)
        if not isinstance(value, int) or not low <= value <= high:
            problems.append(f"{op.describe()}: read {value!r}, but {low} acknowledged adds had completed "
                            f"before it and {high} had been invoked by its end")
    return problems
