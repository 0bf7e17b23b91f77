"""machines/sqlite.py on its own (real files in a temporary directory, no
nodes): commands, transactions, refusals of non-deterministic SQL,
queries, the apply/replay contract, snapshots and installs; and the SQL
checks of ra_actors.sqlcheck."""
from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import machines.sqlite as sq  # noqa: E402
from ra_actors.core.effects import ReleaseCursor  # noqa: E402
from ra_actors.core.machine import Machine  # noqa: E402
from ra_actors.sqlcheck import check_command  # noqa: E402


def meta(index: int, system_time: int = 1_700_000_000_000):
    return SimpleNamespace(index=index, term=1, system_time=system_time, machine_version=0, session=None)


class Db:
    """A machine opened on a directory, fed commands at increasing indexes."""

    def __init__(self, directory: Path, **config):
        directory.mkdir(exist_ok=True)
        self.directory = directory
        self.machine = Machine(sq, str(directory))
        self.state = self.machine.init({"name": "db", **config})
        self.index = 0

    def run(self, command, index: int | None = None):
        self.index = self.index + 1 if index is None else index
        self.state, reply, self.effects = self.machine.apply(0, meta(self.index), command, self.state)
        return reply

    def execute(self, sql, params=()):
        return self.run(("execute", sql, params))

    def query(self, sql, params=()):
        return sq.query(self.state, sql, params)

    def close(self):
        sq.close(self.state)


@pytest.fixture
def db(tmp_path):
    d = Db(tmp_path / "m")
    d.execute("CREATE TABLE acct (id INTEGER PRIMARY KEY, owner TEXT UNIQUE, balance INTEGER NOT NULL)")
    yield d
    d.close()


# ================================================================ commands
def test_a_statement_replies_rowcount_lastrowid_and_returned_rows(db):
    ok, result = db.execute("INSERT INTO acct (owner, balance) VALUES (?, ?) RETURNING id, owner",
                            ("ada", 10))
    assert ok == "ok"
    assert result["rows"] == ((1, "ada"),) and result["columns"] == ("id", "owner")
    assert result["lastrowid"] == 1
    assert db.execute("UPDATE acct SET balance = balance + :n WHERE owner = :o",
                      {"n": 5, "o": "ada"})[1]["rowcount"] == 1
    assert db.query("SELECT owner, balance FROM acct") == ("ok", {"columns": ("owner", "balance"),
                                                                 "rows": (("ada", 15),)})


def test_a_transaction_is_all_or_nothing_and_its_index_is_recorded_anyway(db):
    db.execute("INSERT INTO acct (owner, balance) VALUES ('ada', 10), ('bob', 0)")
    reply = db.run(("transaction", (("UPDATE acct SET balance = balance - 5 WHERE owner = 'ada'", ()),
                                    ("INSERT INTO acct (owner, balance) VALUES ('ada', 1)", ()))))
    assert reply[:2] == ("error", "IntegrityError") and reply[3] == 1
    assert db.query("SELECT balance FROM acct ORDER BY id")[1]["rows"] == ((10,), (0,))
    assert sq.applied_index(db.state) == db.index
    ok, results = db.run(("transaction", (("UPDATE acct SET balance = balance - 5 WHERE owner = 'ada'", ()),
                                          ("UPDATE acct SET balance = balance + 5 WHERE owner = 'bob'", ()))))
    assert ok == "ok" and [r["rowcount"] for r in results] == [1, 1]
    assert db.query("SELECT balance FROM acct ORDER BY id")[1]["rows"] == ((5,), (5,))


def test_a_malformed_command_is_an_error_reply_and_changes_nothing(db):
    assert db.run(("drop", "everything"))[:2] == ("error", "ProgrammingError")
    assert db.execute("SELEC 1")[:2] == ("error", "OperationalError")
    assert db.execute("SELECT ?", (1, 2))[:2] == ("error", "ProgrammingError")
    assert db.execute("SELECT 1; SELECT 2")[0] == "error"
    assert sq.applied_index(db.state) == db.index


@pytest.mark.parametrize("sql, params", [
    ("INSERT INTO acct (owner, balance) VALUES ('x', random())", ()),
    ("INSERT INTO acct (owner, balance) VALUES (hex(randomblob(4)), 1)", ()),
    ("INSERT INTO acct (owner, balance) VALUES (datetime('now'), 1)", ()),
    ("INSERT INTO acct (owner, balance) VALUES (date('2024-01-01', 'localtime'), 1)", ()),
    ("INSERT INTO acct (owner, balance) VALUES (CURRENT_TIMESTAMP, 1)", ()),
    ("INSERT INTO acct (owner, balance) VALUES (julianday(), 1)", ()),
    ("INSERT INTO acct (owner, balance) VALUES (strftime('%s', ?), 1)", ("now",)),
    ("CREATE TABLE log (at TEXT DEFAULT CURRENT_TIMESTAMP)", ()),
    ("CREATE TABLE log2 (at TEXT DEFAULT (datetime('now')))", ()),
    ("INSERT INTO acct (owner, balance) VALUES (sqlite_version(), 1)", ()),
])
def test_non_deterministic_sql_is_refused_with_a_clear_error(db, sql, params):
    reply = db.execute(sql, params)
    assert reply[:2] == ("error", "NonDeterministic"), reply
    assert "ra_system_time()" in reply[2]
    assert db.query("SELECT count(*) FROM acct")[1]["rows"] == ((0,),)
    assert db.query("SELECT count(*) FROM sqlite_schema WHERE name LIKE 'log%'")[1]["rows"] == ((0,),)


@pytest.mark.parametrize("sql", [
    "BEGIN", "COMMIT", "SAVEPOINT a", "ATTACH DATABASE 'x.db' AS x", "PRAGMA journal_mode=DELETE",
    "SELECT * FROM _ra_meta", "UPDATE _ra_meta SET value = 0", "DELETE FROM _ra_replies",
])
def test_statements_that_would_break_the_machine_are_refused(db, sql):
    reply = db.execute(sql)
    assert reply[:2] == ("error", "ProgrammingError"), reply
    assert sq.applied_index(db.state) == db.index


def test_the_leaders_clock_is_offered_instead(db):
    db.state.conn  # (open)
    reply = db.run(("execute", "INSERT INTO acct (owner, balance) VALUES (datetime(ra_system_time() / 1000, "
                               "'unixepoch'), ra_system_time())", ()))
    assert reply[0] == "ok", reply
    assert db.query("SELECT owner, balance FROM acct")[1]["rows"] == (("2023-11-14 22:13:20", 1_700_000_000_000),)


def test_quoted_names_and_string_data_are_not_calls():
    assert check_command('SELECT "random" FROM t') is None
    assert check_command("INSERT INTO t VALUES ('now', 'random()')") is None
    assert check_command("SELECT date('2024-01-01', '+1 day') -- random()") is None
    assert check_command("SELECT [current_timestamp] /* now */ FROM t") is None
    assert "RANDOM()" not in (check_command("SELECT RANDOM()") or "") and check_command("SELECT RANDOM()")
    assert check_command("CREATE TABLE t (a DEFAULT 'utc')")


def test_changes_and_last_insert_rowid_do_not_depend_on_the_connections_past(db, tmp_path):
    db.execute("INSERT INTO acct (owner, balance) VALUES ('ada', 1)")
    first = db.execute("SELECT changes(), last_insert_rowid()")[1]["rows"]
    db.close()
    again = Db(tmp_path / "m")
    again.index = db.index
    assert again.execute("SELECT changes(), last_insert_rowid()")[1]["rows"] == first
    again.close()


def test_a_query_is_read_only(db):
    assert db.query("INSERT INTO acct (owner, balance) VALUES ('x', 1)")[:2] == ("error", "ProgrammingError")
    assert db.query("SELECT count(*) FROM acct")[1]["rows"] == ((0,),)
    assert db.query("SELECT random() IS NOT NULL")[1]["rows"] == ((1,),)     # reads may use it
    assert db.query("SELECT * FROM nowhere")[:2] == ("error", "OperationalError")


def test_unknown_config_keys_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown config keys"):
        Db(tmp_path / "x", releases=3)


# ======================================================= the disk contract
def test_an_entry_the_file_holds_is_not_applied_again_after_a_crash(tmp_path):
    """The server died between the commit and the reply: reopened, the same
    entry is answered from the recorded reply and the row is there once."""
    first = Db(tmp_path / "m")
    first.execute("CREATE TABLE t (x)")
    reply = first.execute("INSERT INTO t VALUES (1) RETURNING x")
    index = first.index
    first.close()            # (a crash: nothing else happens in between)
    again = Db(tmp_path / "m")
    assert sq.applied_index(again.state) == index
    assert again.run(("execute", "INSERT INTO t VALUES (1) RETURNING x", ()), index=index) == reply
    assert again.query("SELECT count(*) FROM t")[1]["rows"] == ((1,),)
    again.close()


def test_snapshot_and_install_carry_the_database_at_an_index(tmp_path):
    leader = Db(tmp_path / "a", release_cursor_every=3)
    leader.execute("CREATE TABLE t (x)")
    leader.execute("INSERT INTO t VALUES (1)")
    assert leader.effects == []
    leader.execute("INSERT INTO t VALUES (2)")
    assert leader.effects == [ReleaseCursor(3)]
    image = sq.snapshot(leader.state)
    leader.execute("INSERT INTO t VALUES (3)")          # after the copy: not in it
    follower = Db(tmp_path / "b")
    follower.execute("CREATE TABLE other (y)")
    follower.state = sq.install(follower.state, image, 3)
    assert sq.applied_index(follower.state) == 3
    assert follower.query("SELECT x FROM t ORDER BY x")[1]["rows"] == ((1,), (2,))
    assert follower.query("SELECT count(*) FROM sqlite_schema WHERE name = 'other'")[1]["rows"] == ((0,),)
    follower.run(("execute", "INSERT INTO t VALUES (3)", ()), index=4)
    assert sq.digest(follower.state) == sq.digest(leader.state)
    with pytest.raises(ValueError, match="holds entry 3, not 9"):
        sq.install(follower.state, image, 9)
    follower.close()
    reopened = Db(tmp_path / "b")                       # the installed file is what opens
    assert sq.applied_index(reopened.state) == 4
    assert not (tmp_path / "b" / "db.sqlite.install").exists()
    reopened.close()
    leader.close()


def test_release_forgets_replies_at_or_below_a_durable_snapshot(db):
    db.execute("CREATE TABLE t (x)")
    db.execute("INSERT INTO t VALUES (1)")
    sq.release(db.state, 2)
    assert sq.applied_reply(db.state, 2)[:2] == ("error", "ReplyForgotten")
    assert sq.applied_reply(db.state, 3)[0] == "ok"


def test_a_node_error_is_raised_never_replied(db):
    """A full disk on one member must not become an error reply the others
    did not give: it raises (the server crashes and replays)."""
    class Full(sqlite3.OperationalError):
        sqlite_errorcode = 13   # SQLITE_FULL
    with pytest.raises(sqlite3.OperationalError):
        db.state._command_error(Full("database or disk is full"), 0)
    assert db.state._command_error(sqlite3.IntegrityError("UNIQUE constraint failed"), 0)[:2] == (
        "error", "IntegrityError")
