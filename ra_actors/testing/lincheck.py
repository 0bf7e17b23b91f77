"""Linearizability checker for histories of per-key compare-and-set registers.

The search is Wing & Gong's, with Lowe's memoisation, as in porcupine and
Knossos: repeatedly pick an operation that has been invoked but whose
linearization is still open, apply it to the register model, and backtrack
when some operation's return is reached before it could be linearized.  A
cache of (set of linearized operations as an int bitmask, register value)
prunes every configuration already explored, which is what makes the search
practical.

Rules of the model (see :mod:`ra_actors.testing.history` for the format):

* The history is partitioned by ``key`` (events without a key, or with a null
  key, form one partition) and every key is checked on its own: a history is
  linearizable only if every key is.  Registers start at ``None`` (null).
* Real-time order is the order of the events (lines).  An operation must take
  effect between its invoke and its completion.
* ``ok``: it took effect.  A read returns the register's value at its
  linearization point; a write sets it; a cas ``[old, new]`` requires the
  value to be ``old`` and sets ``new``.
* ``fail``: it certainly did not take effect, so it is dropped.
* ``info`` (or an invoke never completed): unknown outcome.  Its return time
  is +infinity: it may take effect at any point after its invoke, or never.
  An ``info`` read constrains nothing and is dropped.
* Values are compared as JSON values (lists and objects by content).
* Each key gets a budget (``time_limit`` seconds and/or ``max_steps`` search
  steps); a key whose search exceeds it has verdict ``unknown``.  The whole
  history is ``not linearizable`` if any key is, else ``unknown`` if any key
  is, else ``linearizable``.

Command line::

    python -m ra_actors.testing.lincheck [--time-limit S] [--explain] FILE...

prints ``FILE: linearizable`` / ``FILE: not linearizable`` / ``FILE: unknown``
per file and exits 0 only if every file is linearizable, 1 otherwise, and 2
on a usage error or a file that cannot be read or parsed.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Any, Iterable, Optional, Sequence

from .history import (
    FAIL, OK, HistoryError, Operation, PathLike, freeze, pair_operations, read_history,
)

LINEARIZABLE = "linearizable"
NOT_LINEARIZABLE = "not linearizable"
UNKNOWN = "unknown"

_READ, _WRITE, _CAS = 0, 1, 2
_KINDS = {"read": _READ, "write": _WRITE, "cas": _CAS}

# How many search steps run between two looks at the clock: reading the
# clock every step would cost more than the step itself.
_CLOCK_EVERY = 4096
# How many pending operations a failure explanation lists at most.
_EXPLAIN_PENDING = 6


@dataclasses.dataclass(frozen=True)
class KeyResult:
    """Verdict for one key (one register).

    ``operations`` counts the operations the search considered (``fail``
    operations and ``info`` reads excluded).  For ``linearizable``,
    ``linearization`` lists the :attr:`Operation.index` of the operations
    that took effect, in order (``info`` operations left out never appear).
    For ``not linearizable``, ``involved`` holds the operation that could not
    be linearized first and the pending operations that were tried before it,
    and ``explanation`` says so in a sentence.
    """

    key: Any
    verdict: str
    operations: int
    steps: int
    elapsed: float
    explanation: Optional[str] = None
    linearization: Optional[tuple[int, ...]] = None
    involved: tuple[Operation, ...] = ()


@dataclasses.dataclass(frozen=True)
class Result:
    """Verdict for a whole history, with one :class:`KeyResult` per key."""

    verdict: str
    keys: tuple[KeyResult, ...]
    explanation: Optional[str] = None

    @property
    def linearizable(self) -> bool:
        return self.verdict == LINEARIZABLE

    def key(self, key: Any) -> KeyResult:
        """The result for ``key`` (``None`` for the keyless register)."""
        wanted = freeze(key)
        for result in self.keys:
            if freeze(result.key) == wanted:
                return result
        raise KeyError(key)


class _BudgetExceeded(Exception):
    """Internal: the per-key time or step budget ran out."""


def check_history(events: Iterable[dict[str, Any]], time_limit: Optional[float] = None,
                  max_steps: Optional[int] = None) -> Result:
    """Check a history given as a list of event dicts.

    ``time_limit`` (seconds) and ``max_steps`` bound the search of each key;
    ``None`` means no bound.  Raises :class:`HistoryError` if the events are
    malformed.
    """
    operations = pair_operations(list(events))

    partitions: dict[Any, list[Operation]] = {}
    originals: dict[Any, Any] = {}
    for operation in operations:
        token = freeze(operation.key)
        originals.setdefault(token, operation.key)
        partitions.setdefault(token, []).append(operation)

    results = tuple(
        _check_key(originals[token], ops, time_limit, max_steps)
        for token, ops in partitions.items()
    )
    verdicts = {result.verdict for result in results}
    if NOT_LINEARIZABLE in verdicts:
        verdict = NOT_LINEARIZABLE
        explanation = "; ".join(r.explanation for r in results
                                if r.verdict == NOT_LINEARIZABLE and r.explanation)
    elif UNKNOWN in verdicts:
        verdict = UNKNOWN
        explanation = "; ".join(r.explanation for r in results
                                if r.verdict == UNKNOWN and r.explanation)
    else:
        verdict, explanation = LINEARIZABLE, None
    return Result(verdict, results, explanation or None)


def check_file(path: PathLike, time_limit: Optional[float] = None,
               max_steps: Optional[int] = None) -> Result:
    """Read a JSON-lines history file and check it.

    Raises ``OSError`` or :class:`HistoryError` if it cannot be read.
    """
    return check_history(read_history(path), time_limit=time_limit, max_steps=max_steps)


def _check_key(key: Any, operations: Sequence[Operation], time_limit: Optional[float],
               max_steps: Optional[int]) -> KeyResult:
    """Run the memoised Wing & Gong search over one key's operations."""
    started = time.monotonic()
    # Keep only operations that can matter: failed ones never happened and
    # an unresolved read neither changes nor observes anything we know.
    ops = [op for op in operations
           if op.type != FAIL and not (op.f == "read" and op.type != OK)]
    links = _Links(ops)
    budget = max_steps if max_steps is not None else sys.maxsize
    deadline = started + time_limit if time_limit is not None else None
    found = _search(links, budget, deadline)
    return _key_result(key, ops, links, found, time.monotonic() - started, time_limit, max_steps)


class _Links:
    """One key's operations as the search sees them: each operation's kind and
    arguments, and a doubly linked list of call and return entries in
    real-time order (entries 1..2n; 0 is the head, 2n+1 the tail) in which
    lifting and restoring an operation is O(1) (dancing links).  Unresolved
    operations return at +infinity, i.e. after every event."""

    def __init__(self, ops: Sequence[Operation]) -> None:
        count = len(ops)
        self.count = count
        self.kind = [_KINDS[op.f] for op in ops]
        self.required = [1 if op.type == OK else 0 for op in ops]
        self.arg_a: list[Any] = []
        self.arg_b: list[Any] = []
        for op in ops:
            if op.f == "cas":
                self.arg_a.append(freeze(op.value[0]))
                self.arg_b.append(freeze(op.value[1]))
            else:
                self.arg_a.append(freeze(op.value))
                self.arg_b.append(None)
        infinity = float("inf")
        timeline: list[tuple[float, int, int]] = []  # (position, 0=call/1=return, op)
        for i, op in enumerate(ops):
            timeline.append((op.invoke_index, 0, i))
            timeline.append((op.return_index if op.type == OK else infinity, 1, i))
        timeline.sort()
        size = 2 * count + 2
        self.nxt = list(range(1, size + 1))
        self.prv = list(range(-1, size - 1))
        self.entry_op = [-1] * size
        self.is_call = [False] * size
        self.match = [0] * size  # call entry -> its return entry
        call_entry = [0] * count
        for number, (_, which, i) in enumerate(timeline, start=1):
            self.entry_op[number] = i
            if which == 0:
                self.is_call[number] = True
                call_entry[i] = number
            else:
                self.match[call_entry[i]] = number


@dataclasses.dataclass
class _Found:
    verdict: str
    steps: int
    stack: list            # (call entry lifted, state before it), bottom first
    best_depth: int        # the deepest dead end, to explain a failure
    best_involved: tuple
    best_state: Any


def _search(links: _Links, budget: int, deadline: Optional[float]) -> _Found:
    """The Wing & Gong search with Lowe's memo of (linearized set, state).
    (One function on purpose: its locals are the hot path.)"""
    nxt, prv, match, is_call, entry_op = links.nxt, links.prv, links.match, links.is_call, links.entry_op
    kind, required, arg_a, arg_b = links.kind, links.required, links.arg_a, links.arg_b
    remaining = sum(required)
    state: Any = None
    linearized = 0
    stack: list[tuple[int, Any]] = []
    seen: set[tuple[int, Any]] = set()
    steps = 0
    best = _Found(LINEARIZABLE, 0, stack, -1, (), None)
    entry = nxt[0]
    try:
        while remaining:
            steps += 1
            if steps > budget or (deadline is not None and steps % _CLOCK_EVERY == 0
                                  and time.monotonic() > deadline):
                raise _BudgetExceeded
            if is_call[entry]:
                i = entry_op[entry]
                k = kind[i]
                if k == _WRITE:
                    new_state = arg_a[i]
                elif state == arg_a[i]:
                    new_state = state if k == _READ else arg_b[i]
                else:
                    entry = nxt[entry]
                    continue
                config = (linearized | (1 << i), new_state)
                if config in seen:
                    entry = nxt[entry]
                    continue
                seen.add(config)
                stack.append((entry, state))
                state = new_state
                linearized = config[0]
                remaining -= required[i]
                # Lift the call and its return out of the list.
                ret = match[entry]
                nxt[prv[entry]] = nxt[entry]
                prv[nxt[entry]] = prv[entry]
                nxt[prv[ret]] = nxt[ret]
                prv[nxt[ret]] = prv[ret]
                entry = nxt[0]
            else:
                # A return reached: that operation had to take effect already,
                # so this prefix is a dead end.
                if len(stack) > best.best_depth:
                    _remember_dead_end(links, best, entry, len(stack), state)
                if not stack:
                    best.verdict = NOT_LINEARIZABLE
                    break
                entry, state = stack.pop()
                i = entry_op[entry]
                linearized &= ~(1 << i)
                remaining += required[i]
                # Restore in the reverse order of lifting.
                ret = match[entry]
                prv[nxt[ret]] = ret
                nxt[prv[ret]] = ret
                prv[nxt[entry]] = entry
                nxt[prv[entry]] = entry
                entry = nxt[entry]
    except _BudgetExceeded:
        best.verdict = UNKNOWN
    best.steps = steps
    return best


def _remember_dead_end(links: _Links, best: _Found, entry: int, depth: int, state: Any) -> None:
    """The deepest dead end so far: the operation whose return blocked it and
    the operations still pending before that return."""
    pending = []
    scan = links.nxt[0]
    while scan != entry:
        if links.is_call[scan] and links.match[scan] != entry:
            pending.append(links.entry_op[scan])
        scan = links.nxt[scan]
    best.best_depth = depth
    best.best_state = state
    best.best_involved = (links.entry_op[entry], *pending)


def _key_result(key: Any, ops: Sequence[Operation], links: _Links, found: _Found, elapsed: float,
                time_limit: Optional[float], max_steps: Optional[int]) -> KeyResult:
    count, steps = links.count, found.steps
    if found.verdict == LINEARIZABLE:
        order = tuple(ops[links.entry_op[e]].index for e, _ in found.stack)
        return KeyResult(key, LINEARIZABLE, count, steps, elapsed, linearization=order)
    if found.verdict == UNKNOWN:
        limits = []
        if time_limit is not None:
            limits.append(f"{time_limit:g}s")
        if max_steps is not None:
            limits.append(f"{max_steps} steps")
        return KeyResult(key, UNKNOWN, count, steps, elapsed,
                         explanation=f"key {key!r}: search budget ({' / '.join(limits)}) "
                                     f"exceeded after {steps} steps")
    involved = tuple(ops[i] for i in found.best_involved)
    blocked, pending_ops = involved[0], involved[1:]
    explanation = (
        f"key {key!r}: the longest linearizable prefix has {found.best_depth} of {count} "
        f"operations (register then {found.best_state!r}), and {blocked.describe()} cannot "
        f"take effect before it returns")
    if pending_ops:
        listed = ", ".join(op.describe() for op in pending_ops[:_EXPLAIN_PENDING])
        if len(pending_ops) > _EXPLAIN_PENDING:
            listed += f", ... ({len(pending_ops) - _EXPLAIN_PENDING} more)"
        explanation += f", whichever of the other pending operations go first ({listed})"
    return KeyResult(key, NOT_LINEARIZABLE, count, steps, elapsed, explanation=explanation,
                     involved=involved)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m ra_actors.testing.lincheck",
        description="Check JSON-lines register histories for linearizability.")
    parser.add_argument("files", nargs="+", metavar="FILE", help="history files (JSON lines)")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="search budget per key; exceeded gives 'unknown'")
    parser.add_argument("--max-steps", type=int, default=None, metavar="N",
                        help="search-step budget per key; exceeded gives 'unknown'")
    parser.add_argument("--explain", action="store_true",
                        help="write why a history is not linearizable to stderr")
    args = parser.parse_args(argv)

    all_linearizable = True
    unreadable = False
    for path in args.files:
        try:
            result = check_file(path, time_limit=args.time_limit, max_steps=args.max_steps)
        except (OSError, HistoryError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            print(f"lincheck: cannot read {path}: {reason}", file=sys.stderr)
            unreadable = True
            continue
        print(f"{path}: {result.verdict}", flush=True)
        if not result.linearizable:
            all_linearizable = False
            if args.explain and result.explanation:
                print(f"  {result.explanation}", file=sys.stderr)
    if unreadable:
        return 2
    return 0 if all_linearizable else 1


if __name__ == "__main__":
    sys.exit(main())
