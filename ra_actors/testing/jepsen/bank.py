"""The bank workload of a Jepsen run: transfers between accounts as SQL
transactions on a replicated SQLite database (``machines.sqlite``).

Setup: :data:`ACCOUNTS` accounts holding :data:`OPENING` each
(:data:`SCHEMA`), a ``CHECK (balance >= 0)``, and a ``transfers`` table
with no unique key on the transfer's id: a transfer applied twice leaves
two rows (and moves the money twice) instead of being refused.

Operations (history ``f``):

* ``transfer`` -- ``value`` ``[id, src, dst, amount]``, one command of
  three statements (:func:`transfer_statements`): debit, credit, and the
  transfer's row.  ``ok``: committed; ``fail``: refused by the database
  (an overdraft trips the ``CHECK``: nothing of it applied); ``info``:
  unknown.  Ids are unique per run (``process * 1_000_000 + n``).
* ``read`` -- every balance in one read-only statement
  (:data:`READ_SQL`, a consistent query); an ``ok`` read's ``value`` is the
  balances in account order.
* The final read, after healing: the balances and the ids in
  ``transfers`` (:data:`FINAL_IDS_SQL`), both through the log.

Rules of the check (:func:`check_bank`), each a way a replicated
transaction can break:

* **Consistent cuts.**  Every ``ok`` read has one balance per account, none
  negative, summing to the total: a read that saw a debit without its
  credit (a torn transaction, or a member applying half a command) shows
  another total.
* **Nothing lost, nothing invented, nothing twice.**  The final ids
  include every ``ok`` transfer, no ``fail`` one, none that was never
  invoked, and none twice.
* **Exactly once.**  The final balances are the opening balances plus each
  transfer in the table applied once (a transfer applied twice, or half of
  one, shows here), and the total is unchanged.

The verdict is ``valid`` or ``invalid`` with the violations (at most 10
listed); ``unknown`` without a final read.
"""
from __future__ import annotations

from typing import Any, Optional

from ..history import FAIL, OK, pair_operations

__all__ = ["ACCOUNTS", "OPENING", "MACHINE", "QUERY_FUNCTION", "CLUSTER", "opening_statements", "SCHEMA", "READ_SQL", "FINAL_IDS_SQL",
           "transfer_statements", "pick_transfer", "check_bank"]

ACCOUNTS = 8
OPENING = 100
MACHINE = "machines.sqlite"
QUERY_FUNCTION = "machines.sqlite:query"
CLUSTER = "jepsen_bank"
SCHEMA = (
    "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0))",
    # (no unique key on tid: a transfer applied twice must show, not be refused)
    "CREATE TABLE transfers (tid INTEGER NOT NULL, src INTEGER NOT NULL, dst INTEGER NOT NULL, "
    "amount INTEGER NOT NULL)",
)
READ_SQL = "SELECT balance FROM accounts ORDER BY id"
FINAL_IDS_SQL = "SELECT tid, src, dst, amount FROM transfers ORDER BY tid, rowid"
MAX_LISTED = 10


def opening_statements(accounts: int = ACCOUNTS, opening: int = OPENING) -> tuple:
    """The schema and the opening balances, as one transaction."""
    return tuple((sql, ()) for sql in SCHEMA) + tuple(
        ("INSERT INTO accounts (id, balance) VALUES (?, ?)", (i, opening)) for i in range(1, accounts + 1))


def transfer_statements(tid: int, src: int, dst: int, amount: int) -> tuple:
    """The three statements of one transfer (one command, one transaction)."""
    return (("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, src)),
            ("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, dst)),
            ("INSERT INTO transfers (tid, src, dst, amount) VALUES (?, ?, ?, ?)", (tid, src, dst, amount)))


def pick_transfer(rng: Any, accounts: int = ACCOUNTS, opening: int = OPENING) -> tuple[int, int, int]:
    """A random ``(src, dst, amount)`` with ``src != dst``; amounts up to half
    an opening balance, so some transfers overdraw and are refused."""
    src = rng.randint(1, accounts)
    dst = rng.randint(1, accounts - 1)
    if dst >= src:
        dst += 1
    return src, dst, rng.randint(1, max(1, opening // 2))


def _listed(problems: list[str]) -> list[str]:
    return problems[:MAX_LISTED] + ([f"... and {len(problems) - MAX_LISTED} more"]
                                   if len(problems) > MAX_LISTED else [])


def check_bank(events: list[dict], final: Optional[dict], accounts: int = ACCOUNTS,
               opening: int = OPENING) -> dict:
    """Check a bank history against the final read (see the module rules).
    ``final``: ``{"balances": [...], "transfers": [[id, src, dst, amount], ...]}``."""
    ops = pair_operations(events)
    total = accounts * opening
    transfers = [op for op in ops if op.f == "transfer"]
    reads = [op for op in ops if op.f == "read" and op.type == OK]
    problems: list[str] = []
    for op in reads:
        why = _bad_cut(op.value, accounts, total)
        if why:
            problems.append(f"{op.describe()}: {why}")
    out: dict[str, Any] = {
        "transfers": len(transfers), "acknowledged": sum(1 for op in transfers if op.type == OK),
        "refused": sum(1 for op in transfers if op.type == FAIL),
        "uncertain": sum(1 for op in transfers if op.type not in (OK, FAIL)), "reads": len(reads)}
    if final is None:
        out.update(verdict="unknown" if not problems else "invalid",
                   explanation="no final read", problems=_listed(problems))
        return out
    problems.extend(_final_problems(transfers, final, accounts, opening))
    out["applied"] = len(final.get("transfers") or ())
    out["verdict"] = "invalid" if problems else "valid"
    out["problems"] = _listed(problems)
    return out


def _bad_cut(balances: Any, accounts: int, total: int) -> Optional[str]:
    if not isinstance(balances, (list, tuple)) or len(balances) != accounts:
        return f"expected {accounts} balances, read {balances!r}"
    if any(not isinstance(b, int) or b < 0 for b in balances):
        return f"a negative or missing balance in {list(balances)}"
    if sum(balances) != total:
        return f"balances sum to {sum(balances)}, not {total}: not a consistent cut"
    return None


def _final_problems(transfers: list, final: dict, accounts: int, opening: int) -> list[str]:
    problems: list[str] = []
    invoked = {op.value[0]: op for op in transfers if isinstance(op.value, (list, tuple)) and op.value}
    rows = [tuple(r) for r in final.get("transfers") or ()]
    applied = {r[0]: r for r in rows}
    if len(applied) != len(rows):
        twice = sorted({r[0] for r in rows if sum(1 for x in rows if x[0] == r[0]) > 1})
        problems.append(f"transfers applied more than once: {twice[:10]}")
    for tid, op in invoked.items():
        if op.type == OK and tid not in applied:
            problems.append(f"acknowledged transfer {tid} is not in the table: lost")
        if op.type == FAIL and tid in applied:
            problems.append(f"refused transfer {tid} is in the table")
    for tid, row in applied.items():
        op = invoked.get(tid)
        if op is None:
            problems.append(f"transfer {tid} in the table was never invoked")
        elif list(row[1:]) != list(op.value[1:]):
            problems.append(f"transfer {tid} is in the table as {list(row[1:])}, invoked as {list(op.value[1:])}")
    expected = [opening] * accounts
    for _tid, src, dst, amount in rows:
        if 1 <= src <= accounts and 1 <= dst <= accounts:
            expected[src - 1] -= amount
            expected[dst - 1] += amount
    balances = list(final.get("balances") or ())
    why = _bad_cut(balances, accounts, accounts * opening)
    if why:
        problems.append(f"final read: {why}")
    elif balances != expected:
        problems.append(f"final balances {balances} are not the opening balances plus the "
                        f"{len(rows)} transfers in the table ({expected}): one applied twice or in part")
    return problems
