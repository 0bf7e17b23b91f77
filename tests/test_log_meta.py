"""Meta (term, vote, last_applied), server configs, server deletion."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ra_actors.core.messages import MetaWritten
from ra_actors.core.types import ServerConfig, ServerId
from ra_actors.errors import LogCorruption, ServerAlreadyExists
from ra_actors.log.common import LogUsageError, server_dir
from ra_actors.log.config_store import list_configs, load_config, save_config
from ra_actors.log.meta import MetaStore
from ra_actors.log.server_log import ServerLog

A, B = ServerId("a", "n1"), ServerId("b", "n2")


def config(uid="s1", sid=A):
    # msgpack gives sequences back as tuples (codec rule), so configs use tuples.
    return ServerConfig(sid, uid, "clu", "machines.kv", (A, B), {"opt": (1, 2)},
                        min_snapshot_interval=7)


def test_meta_survives_restart(tmp_path):
    m = MetaStore(tmp_path)
    assert (m.current_term, m.voted_for, m.last_applied) == (0, None, 0)
    m.store(5, B)
    m.store_last_applied(42)
    m2 = MetaStore(tmp_path)
    assert (m2.current_term, m2.voted_for, m2.last_applied) == (5, B, 42)
    assert isinstance(m2.voted_for, ServerId)
    m2.store(6, None)
    assert MetaStore(tmp_path).voted_for is None
    with pytest.raises(LogUsageError):
        m2.store(-1, None)


def test_term_and_vote_are_durable_when_store_returns(tmp_path):
    """A child process stores a vote and is SIGKILLed right after: the vote is there."""
    code = ("import os, sys\nfrom ra_actors.log.meta import MetaStore\nfrom ra_actors.core.types import ServerId\n"
            "m = MetaStore(sys.argv[1])\nm.store(9, ServerId('b', 'n2'))\n"
            "os.kill(os.getpid(), 9)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], timeout=30)
    assert proc.returncode == -9
    m = MetaStore(tmp_path)
    assert (m.current_term, m.voted_for) == (9, B)
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_corrupt_meta_is_an_error_but_bad_last_applied_is_only_a_hint(tmp_path, caplog):
    m = MetaStore(tmp_path)
    m.store(3, A)
    m.store_last_applied(10)
    la = tmp_path / "last_applied"
    la.write_bytes(la.read_bytes()[:-1] + b"\xff")
    assert MetaStore(tmp_path).last_applied == 0
    assert "last_applied" in caplog.text
    meta = tmp_path / "meta"
    data = bytearray(meta.read_bytes())
    data[-1] ^= 1
    meta.write_bytes(bytes(data))
    with pytest.raises(LogCorruption) as err:
        MetaStore(tmp_path)
    assert err.value.path == str(meta)


def test_server_log_persist_meta_returns_meta_written(tmp_path):
    slog = ServerLog.create(tmp_path, config())
    assert slog.persist_meta(4, B) == MetaWritten(4, B)
    slog.close()
    again = ServerLog.open(tmp_path, "s1")
    assert (again.current_term, again.voted_for) == (4, B)
    rec = again.recovered()
    assert (rec.current_term, rec.voted_for, rec.last_applied, rec.snapshot, rec.entries) == \
        (4, B, 0, None, ())


def test_config_round_trip_and_listing(tmp_path):
    save_config(tmp_path, config("s1"))
    save_config(tmp_path, config("s2", B))
    assert load_config(tmp_path, "s1") == config("s1")
    assert [c.uid for c in list_configs(tmp_path)] == ["s1", "s2"]
    assert list_configs(tmp_path)[1].server_id == B
    with pytest.raises(LogUsageError):
        save_config(tmp_path, {"uid": "x"})


def test_corrupt_config_is_named(tmp_path):
    path = save_config(tmp_path, config())
    data = bytearray(path.read_bytes())
    data[20] ^= 4
    path.write_bytes(bytes(data))
    with pytest.raises(LogCorruption) as err:
        list_configs(tmp_path)
    assert err.value.path == str(path)


def test_create_refuses_existing_and_delete_removes_everything(tmp_path):
    slog = ServerLog.create(tmp_path, config())
    assert ServerLog.exists(tmp_path, "s1")
    with pytest.raises(ServerAlreadyExists):
        ServerLog.create(tmp_path, config())
    slog.persist_meta(1, None)
    slog.delete()
    assert not server_dir(tmp_path, "s1").exists()
    assert not ServerLog.exists(tmp_path, "s1")
    assert list_configs(tmp_path) == []
    assert not [n for n in os.listdir(tmp_path / "servers") if n.startswith(".")]
    with pytest.raises(LogUsageError):
        ServerLog.open(tmp_path, "s1")
