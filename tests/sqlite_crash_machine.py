"""``machines.sqlite`` that can die between the SQL commit and the reply
(tests/test_runtime_sqlite.py only).

If ``<node data dir>/CRASH_AFTER_COMMIT`` exists when an entry is applied,
the file is removed and the process is killed with SIGKILL right after the
entry's transaction committed: nothing after the commit (the reply, the
effects, the next entries) happens in that process.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import machines.sqlite as sq

DISK = True
QUERIES = ("query", "digest")


def _trigger(db) -> Path:
    # <data dir>/servers/<uid>/machine
    return Path(db.directory).parents[2] / "CRASH_AFTER_COMMIT"


def open(directory, config):  # noqa: A001 - the contract's name
    return sq.open(directory, config)


def applied_index(db):
    return sq.applied_index(db)


def applied_reply(db, index):
    return sq.applied_reply(db, index)


def apply(meta, command, db):
    result = sq.apply(meta, command, db)
    trigger = _trigger(db)
    if trigger.exists():
        trigger.unlink()
        os.kill(os.getpid(), signal.SIGKILL)
    return result


def snapshot(db):
    return sq.snapshot(db)


def release(db, index):
    sq.release(db, index)


def install(db, image, index):
    return sq.install(db, image, index)


def close(db):
    sq.close(db)


def query(db, sql, params=()):
    return sq.query(db, sql, params)


def digest(db):
    return sq.digest(db)
