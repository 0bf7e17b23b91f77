"""Which SQL a replicated SQLite database may run in a command.

Every member of a cluster applies each command to its own copy of the
database, so a command must change every copy the same way and give the
same reply.  This module reads SQL text (it imports no ``sqlite3`` and runs
nothing) and refuses what would differ between members.  The client checks
before sending (a clear error, nothing logged) and the machine
(``machines/sqlite.py``) checks again before running: a command from the
network is never trusted.

Rules (:func:`check_command`):

* No call of a function whose result is not a function of the database and
  the command: ``random()``, ``randomblob()``, ``sqlite_version()`` and the
  other build-dependent ones, ``total_changes()`` and ``sqlite_offset()``.
* No ``CURRENT_TIMESTAMP``, ``CURRENT_DATE``, ``CURRENT_TIME``.
* A date and time function (``date``, ``time``, ``datetime``,
  ``julianday``, ``strftime``, ``unixepoch``, ``timediff``) called without
  arguments, or with ``'now'``, ``'localtime'`` or ``'utc'`` (the node's
  clock or time zone) among its literal arguments.  Bound parameters are
  checked by the machine when the function runs.
* In ``CREATE`` and ``ALTER`` statements, no ``'now'``, ``'localtime'`` or
  ``'utc'`` literal anywhere: a column default or trigger body would read
  the clock at every insert, long after the check.
* The machine's own tables (``_ra_*``) are not the command's business; the
  machine's SQLite authorizer refuses them (and transactions statements,
  ``ATTACH``, ``PRAGMA``) when the statement is prepared.

Names inside quotes (``"random"``, ```random```, ``[random]``) are
identifiers, not calls, and are allowed; comments are skipped.  The leader's
clock is available as ``ra_system_time()`` (milliseconds since the epoch,
``meta.system_time``), e.g. ``datetime(ra_system_time() / 1000, 'unixepoch')``.
"""
from __future__ import annotations

from typing import Iterator

__all__ = ["check_command", "tokens", "NONDETERMINISTIC_FUNCTIONS", "TIME_FUNCTIONS", "CLOCK_WORDS",
           "CLOCK_KEYWORDS", "HINT"]

#: Functions whose result is not a function of the database and the command.
NONDETERMINISTIC_FUNCTIONS = frozenset({
    "random", "randomblob", "sqlite_version", "sqlite_source_id", "sqlite_compileoption_get",
    "sqlite_compileoption_used", "total_changes", "sqlite_offset", "load_extension"})
#: Keywords that read the clock.
CLOCK_KEYWORDS = frozenset({"current_timestamp", "current_date", "current_time"})
#: Date and time functions: deterministic unless given one of CLOCK_WORDS (or no argument).
TIME_FUNCTIONS = frozenset({"date", "time", "datetime", "julianday", "strftime", "unixepoch", "timediff"})
#: Arguments of the date and time functions that read the node's clock or time zone.
CLOCK_WORDS = frozenset({"now", "localtime", "utc"})

HINT = ("every member applies the command to its own copy and must get the same result; "
        "pass the value from the client, or use ra_system_time() (the leader's clock when it "
        "received the command, in ms since the epoch), e.g. datetime(ra_system_time() / 1000, 'unixepoch')")


def tokens(sql: str) -> Iterator[tuple[str, str]]:
    """``(kind, text)`` of ``sql``: kinds ``word`` (lower-cased), ``string``
    (the literal's value), ``ident`` (a quoted identifier), ``punct``,
    ``other``; comments and white space are skipped."""
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c.isspace():
            i += 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c == "'":
            value, i = _quoted(sql, i, "'")
            yield "string", value
        elif c in "\"`":
            value, i = _quoted(sql, i, c)
            yield "ident", value
        elif c == "[":
            end = sql.find("]", i + 1)
            end = n if end < 0 else end
            yield "ident", sql[i + 1:end]
            i = end + 1
        elif c.isalpha() or c == "_":
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] in "_$"):
                j += 1
            yield "word", sql[i:j].lower()
            i = j
        elif c in "(),;":
            yield "punct", c
            i += 1
        else:
            j = i + 1
            while j < n and not (sql[j].isspace() or sql[j].isalpha() or sql[j] in "_'\"`[(),;"):
                j += 1
            yield "other", sql[i:j]
            i = j


def _quoted(sql: str, i: int, quote: str) -> tuple[str, int]:
    """The value of the quoted text starting at ``i`` (a doubled quote is one)."""
    out = []
    j = i + 1
    n = len(sql)
    while j < n:
        if sql[j] == quote:
            if j + 1 < n and sql[j + 1] == quote:
                out.append(quote)
                j += 2
                continue
            return "".join(out), j + 1
        out.append(sql[j])
        j += 1
    return "".join(out), n


def check_command(sql: str) -> str | None:
    """Why ``sql`` may not run in a command (see the module rules), or None."""
    if not isinstance(sql, str):
        return f"SQL is text, not {type(sql).__name__}"
    toks = list(tokens(sql))
    schema = bool(toks) and toks[0] in (("word", "create"), ("word", "alter"))
    for k, (kind, text) in enumerate(toks):
        nxt = toks[k + 1] if k + 1 < len(toks) else None
        prev = toks[k - 1] if k else None
        if kind == "word" and prev != ("other", "."):
            if text in CLOCK_KEYWORDS:
                return f"{text.upper()} reads the node's clock: {HINT}"
            if nxt == ("punct", "(") and text in NONDETERMINISTIC_FUNCTIONS:
                return f"{text}() is not deterministic: {HINT}"
            if nxt == ("punct", "(") and text in TIME_FUNCTIONS:
                why = _clock_call(toks, k + 1)
                if why:
                    return f"{text}({why}) reads the node's clock or time zone: {HINT}"
        elif kind == "string" and schema and text.strip().lower() in CLOCK_WORDS:
            return (f"'{text}' in a CREATE or ALTER statement would read the node's clock or time zone "
                    f"whenever it is used: {HINT}")
    return None


def _clock_call(toks: list, open_at: int) -> str | None:
    """If the call whose ``(`` is at ``open_at`` reads the clock: what it
    was given (for the message), else None."""
    depth = 0
    literals = []
    empty = True
    for kind, text in toks[open_at:]:
        if (kind, text) == ("punct", "("):
            depth += 1
            continue
        if (kind, text) == ("punct", ")"):
            depth -= 1
            if depth == 0:
                break
            continue
        empty = False
        if depth == 1 and kind == "string" and text.strip().lower() in CLOCK_WORDS:
            literals.append(f"'{text}'")
    if empty:
        return "no argument: the current time"
    return ", ".join(literals) if literals else None
