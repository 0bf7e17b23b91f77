"""The replicated SQLite on real nodes (``machines/sqlite.py`` through
``ra_actors.sqlite``): the leader's server process killed between the SQL
commit and the reply, a member that was down while the others
snapshotted getting the database as a snapshot, and a database whose
members write their log to the second of their nodes' two WALs."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

import ra_actors as ra
import ra_actors.sqlite as rsql
from ra_actors import errors
from ra_actors.cli import main
from ra_actors.log.wal import WAL_SUFFIX
from ra_actors.log.wal_format import scan_wal_file
from runtime_helpers import wait_for


_wait = partial(wait_for, timeout=30.0)


def _caught_up(client, servers, leader):
    commit = client.key_metrics(leader)["commit_index"]
    return all(client.key_metrics(s)["last_applied"] >= commit for s in servers)


@pytest.mark.parametrize("placement", ["process", "shared"])
def test_a_kill_between_the_commit_and_the_reply_applies_the_command_once(tmp_path, placement):
    """The leader's server process (placement ``shared``: the node's host
    process, its WAL included) commits the INSERT to its SQLite file and
    dies before anything else (SIGKILL).  The client's session sends the
    command again to whoever leads next; the restarted server replays its
    log and skips the entry its file already holds: one row on every member."""
    root = tmp_path / "nodes"
    with ra.local_nodes(["n1", "n2", "n3"], data_root=str(root), placement=placement,
                        allowed_modules=["sqlite_crash_machine"]) as nodes:
        client = nodes.client()
        servers = [ra.ServerId("db", n) for n in nodes]
        client.start_cluster("db", "sqlite_crash_machine", servers)
        db = rsql.connect(client, servers, machine="sqlite_crash_machine", timeout=30)
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT)")
        _members, leader = client.members(servers[0])
        before = client.member_overview(leader)["incarnation"]

        (root / leader.node / "CRASH_AFTER_COMMIT").write_bytes(b"")
        cur = db.execute("INSERT INTO t (note) VALUES (?) RETURNING id", ("once",))
        assert cur.fetchall() == [(1,)]
        assert not (root / leader.node / "CRASH_AFTER_COMMIT").exists()     # it did die there

        _wait(lambda: client.member_overview(leader)["incarnation"] != before, what="the restart")
        # (no leader while the election after the kill runs: not caught up yet)
        _wait(lambda: (lead := client.members(servers[0])[1]) is not None and _caught_up(client, servers, lead),
              what="catching up")
        for server in servers:
            ((_idx, _term), reply), _ = client.local_query(server, "sqlite_crash_machine:query",
                                                           "SELECT id, note FROM t", ())
            assert reply == ("ok", {"columns": ("id", "note"), "rows": ((1, "once"),)}), server
        assert len({db.digest(s) for s in servers}) == 1
        assert db.query("SELECT count(*) FROM t") == [(1,)]


def test_a_member_that_was_down_gets_the_database_as_a_snapshot(tmp_path):
    with ra.local_nodes(["n1", "n2", "n3"], data_root=str(tmp_path / "nodes")) as nodes:
        client = nodes.client()
        servers = rsql.start_cluster(client, "bank", nodes, release_cursor_every=20)
        db = rsql.connect(client, servers)
        db.execute("CREATE TABLE acct (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
        _members, leader = client.members(servers[0])
        down = next(s for s in servers if s != leader)
        nodes.stop(down.node)

        db.executemany("INSERT INTO acct (balance) VALUES (?)", [(100,)] * 10)
        for i in range(60):
            with db.transaction() as tx:
                tx.execute("UPDATE acct SET balance = balance - 1 WHERE id = ?", (i % 10 + 1,))
                tx.execute("UPDATE acct SET balance = balance + 1 WHERE id = ?", ((i + 3) % 10 + 1,))
        _wait(lambda: client.key_metrics(leader)["snapshot_index"] > 20, what="the leader's snapshot")

        nodes.restart(down.node)
        _wait(lambda: _caught_up(client, servers, leader), what="the restarted member catching up")
        overview = client.member_overview(down)
        assert overview["stats"]["snapshot_chunks_in"] >= 1, overview["stats"]       # it came as a snapshot
        assert overview["machine"]["applied_index"] > 20, overview["machine"]                # its own file
        assert db.query("SELECT sum(balance), count(*) FROM acct", consistency="consistent") == [(1000, 10)]
        assert db.query("SELECT sum(balance) FROM acct", consistency="local") == [(1000,)]
        assert rsql.connect(client, [down]).query("SELECT sum(balance) FROM acct", consistency="local") == [(1000,)]
        assert db.digest(down) == db.digest(leader)


def test_the_client_refuses_non_deterministic_sql_before_sending(tmp_path):
    with ra.local_nodes(["n1"], data_root=str(tmp_path / "nodes")) as nodes:
        client = nodes.client()
        servers = rsql.start_cluster(client, "db", nodes)
        db = rsql.connect(client, servers)
        db.execute("CREATE TABLE t (x)")
        index = client.key_metrics(servers[0])["commit_index"]
        with pytest.raises(errors.NonDeterministicSql, match="random"):
            db.execute("INSERT INTO t VALUES (random())")
        assert client.key_metrics(servers[0])["commit_index"] == index          # nothing was sent
        with pytest.raises(errors.SqlError) as info:
            db.execute("INSERT INTO nowhere VALUES (1)")
        assert info.value.kind == "OperationalError" and "no such table" in str(info.value)
        with pytest.raises(errors.SqlError, match="read-only"):
            db.query("DELETE FROM t")


def test_a_restart_of_every_node_keeps_the_database(tmp_path):
    """Every node restarts: each member opens its file (ahead of its last
    snapshot), replays only the entries the file lacks, and the database
    is as it was; commands go on."""
    with ra.local_nodes(["n1", "n2", "n3"], data_root=str(tmp_path / "nodes")) as nodes:
        client = nodes.client()
        servers = rsql.start_cluster(client, "db", nodes, release_cursor_every=10)
        db = rsql.connect(client, servers, timeout=30)
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER)")
        db.executemany("INSERT INTO t (n) VALUES (?)", [(i,) for i in range(30)])
        for i in range(25):
            db.execute("UPDATE t SET n = n + 1 WHERE id = ?", (i + 1,))
        expected = db.query("SELECT sum(n), count(*) FROM t")
        assert expected == [(sum(range(30)) + 25, 30)]
        for name in list(nodes):
            nodes.restart(name)
        db2 = rsql.connect(nodes.client(), servers, timeout=30)
        assert _wait(lambda: db2.query("SELECT sum(n), count(*) FROM t") == expected, what="the data back")
        db2.execute("INSERT INTO t (n) VALUES (1)")
        assert db2.query("SELECT count(*) FROM t") == [(31,)]
        assert _wait(lambda: len({db2.digest(s) for s in servers}) == 1, what="identical copies")


def _uids_in_wal(wdir) -> set:
    out = set()
    for path in sorted(Path(wdir).glob("*" + WAL_SUFFIX)):
        out.update(b.uid for b in scan_wal_file(path, tail_ok=True).blocks)
    return out


@pytest.mark.parametrize("placement", ["process", "shared"])
def test_a_database_on_the_second_of_two_wals_survives_a_kill_after_commit_and_a_sigkill_of_every_node(
        tmp_path, placement, capsys):
    """Every node has two WAL directories (two volumes).  The database's
    members write their log to WAL 1 (``wal=1``), a counter's to WAL 0.  The
    leader dies between the SQL commit and the reply (placement ``shared``:
    the host, both WALs with it); then every node is SIGKILLed and started
    again.  Each member reads its log from WAL 1 and its database from its
    own files, skipping what the files hold: every row once, identical
    copies, the counter back from WAL 0, and ``log check`` finds every
    server of every node sound on both WALs."""
    root = tmp_path / "nodes"
    vols = [str(tmp_path / "vol_a"), str(tmp_path / "vol_b")]
    with ra.local_nodes(["n1", "n2", "n3"], data_root=str(root), placement=placement, wal_dirs=vols,
                        allowed_modules=["sqlite_crash_machine"]) as nodes:
        client = nodes.client()
        servers = rsql.start_cluster(client, "db", nodes, wal=1, machine="sqlite_crash_machine",
                                     release_cursor_every=10)
        counters = [ra.ServerId("c", n) for n in nodes]
        client.start_cluster("c", "machines.counter", counters, wal=0)
        db = rsql.connect(client, servers, machine="sqlite_crash_machine", timeout=30)
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        db.executemany("INSERT INTO t (n) VALUES (?)", [(i,) for i in range(25)])
        for _ in range(5):
            client.process_command(counters[0], ("add", 1), timeout=15)
        for name in nodes:
            ov = client.overview(name)
            assert ov["servers"]["db"]["wal"] == 1 and ov["servers"]["c"]["wal"] == 0, ov["servers"]
            wal_a, wal_b = nodes.wal_dirs(name)
            db_uid, c_uid = ov["servers"]["db"]["uid"], ov["servers"]["c"]["uid"]
            # the database's log is in WAL 1 only, the counter's in WAL 0 only
            assert db_uid in _uids_in_wal(wal_b) and db_uid not in _uids_in_wal(wal_a), name
            assert c_uid in _uids_in_wal(wal_a) and c_uid not in _uids_in_wal(wal_b), name
            # the database's files are in the member's own directory, not on a WAL volume
            assert (root / name / "servers" / db_uid / "machine" / "db.sqlite").is_file()

        _members, leader = client.members(servers[0])
        before = client.member_overview(leader)["incarnation"]
        (root / leader.node / "CRASH_AFTER_COMMIT").write_bytes(b"")
        assert db.execute("INSERT INTO t (n) VALUES (?) RETURNING id", (100,)).fetchall() == [(26,)]
        assert not (root / leader.node / "CRASH_AFTER_COMMIT").exists()     # it did die there
        _wait(lambda: client.member_overview(leader)["incarnation"] != before, what="the restart")

        for name in list(nodes):
            nodes.kill(name)
        for name in list(nodes):
            nodes.restart(name)
        client2 = nodes.client()
        db2 = rsql.connect(client2, servers, machine="sqlite_crash_machine", timeout=30)
        expected = [(sum(range(25)) + 100, 26)]
        _wait(lambda: db2.query("SELECT sum(n), count(*) FROM t") == expected, what="the data back")
        assert _wait(lambda: client2.consistent_query(counters[0], "machines.counter:read", timeout=5)[0] == 5,
                     what="the counter back")
        db2.execute("INSERT INTO t (n) VALUES (?)", (1,))
        _wait(lambda: (lead := client2.members(servers[0])[1]) is not None and _caught_up(client2, servers, lead),
              what="catching up")
        for server in servers:
            assert rsql.connect(client2, [server], machine="sqlite_crash_machine").query(
                "SELECT sum(n), count(*) FROM t", consistency="local") == [(sum(range(25)) + 101, 27)], server
        assert len({db2.digest(s) for s in servers}) == 1
        for name in nodes:
            ov = client2.overview(name)
            assert {w["wal"]: w["servers"] for w in ov["wals"]} == {0: ["c"], 1: ["db"]}, name
    for name in ("n1", "n2", "n3"):
        assert main(["log", "check", str(root / name)]) == 0
        out = capsys.readouterr().out
        assert "WAL directory 1: " in out and "2 servers: 2 sound" in out, out
