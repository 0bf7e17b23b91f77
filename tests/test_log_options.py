"""Unknown log options and node settings are errors, not silently dropped
(``max_size_bytes`` used to be ignored: the key is ``wal_max_size_bytes``)."""
from __future__ import annotations

import pytest

import ra_actors as ra
from ra_actors.errors import RaError
from ra_actors.log.common import LogUsageError
from ra_actors.log.options import LOG_OPTIONS, check_log_options
from ra_actors.log.recovery import recover_node, recover_node_with_options


def test_unknown_key_names_the_valid_ones():
    with pytest.raises(LogUsageError) as err:
        check_log_options({"max_size_bytes": 65536})
    msg = str(err.value)
    assert "'max_size_bytes'" in msg and all(k in msg for k in LOG_OPTIONS)
    assert isinstance(err.value, ValueError) and isinstance(err.value, RaError)


@pytest.mark.parametrize("options", [{"sync_method": "fsync"}, {"wal_max_size_bytes": "65536"},
                                     {"wal_max_size_bytes": 10}, {"segment_max_entries": 0},
                                     {"segment_max_size_bytes": True}, ["sync_method"]])
def test_bad_values_are_refused(options):
    with pytest.raises(LogUsageError):
        check_log_options(options)


def test_valid_options_map_onto_recover_node():
    assert check_log_options(None) == {} and check_log_options({}) == {}
    assert check_log_options({"sync_method": "none", "wal_max_size_bytes": 65536,
                              "segment_max_entries": 10, "segment_max_size_bytes": 4096}) == {
        "sync_method": "none", "wal_max_size_bytes": 65536, "segment_max_count": 10,
        "segment_max_size_bytes": 4096}


def test_recovery_entry_points_refuse_before_touching_the_directory(tmp_path):
    with pytest.raises(LogUsageError):
        recover_node_with_options(tmp_path / "a", {"max_size_bytes": 65536})
    with pytest.raises(LogUsageError):
        recover_node(tmp_path / "b", sync_method="fsync")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with recover_node_with_options(tmp_path / "c", {"wal_max_size_bytes": 65536}) as node:
        assert node.wal.max_size_bytes == 65536


def test_wal_service_refuses_unknown_options(tmp_path):
    from ra_actors.actors.storage import WalService
    with pytest.raises(LogUsageError) as err:
        WalService(str(tmp_path / "n"), {"max_size_bytes": 65536})
    assert "wal_max_size_bytes" in str(err.value)
    assert not (tmp_path / "n").exists()


def test_start_node_and_local_nodes_refuse_before_starting_anything(tmp_path):
    with pytest.raises(ValueError) as err:
        ra.start_node("n1", str(tmp_path / "n1"), 1, log_options={"max_size_bytes": 65536})
    assert "max_size_bytes" in str(err.value) and "wal_max_size_bytes" in str(err.value)
    assert not (tmp_path / "n1").exists()
    with pytest.raises(ValueError):
        ra.local_nodes(["n1", "n2"], data_root=str(tmp_path / "root"),
                       log_options={"max_size_bytes": 65536})
    assert not (tmp_path / "root").exists()


def test_the_log_creates_files_only_its_owner_can_read(tmp_path):
    """A node's log holds every command of every cluster on it: files 0600,
    directories 0700 (whatever the umask allows)."""
    import stat
    from ra_actors.core.types import Entry, ServerConfig, ServerId
    from ra_actors.log.recovery import recover_node
    a = ServerId("a", "n1")
    with recover_node(tmp_path / "data") as node:
        slog = node.create_server(ServerConfig(a, "s1", "c", "machines.kv", (a,)))
        req = slog.append([Entry(1, 1, ("v", 1))])
        node.wal.append_run(req.uid, req.first_index, req.terms, req.payloads, truncate=req.truncate, overwrite=req.overwrite)
        node.flush()
        slog.persist_meta(1, a)
    for path in (tmp_path / "data").rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
        else:
            assert mode & 0o077 == 0, f"{path} is {oct(mode)}"


@pytest.mark.parametrize("kw,bad", [({"settings": {"heartbeat_intervall": 0.4}}, "heartbeat_intervall"),
                                    ({"server_settings": {"election_timeout": 500}}, "election_timeout")])
def test_unknown_node_settings_are_refused_before_anything_starts(tmp_path, kw, bad):
    import ra_actors as ra
    from ra_actors.errors import InvalidOption
    from ra_actors.nodes import free_port
    with pytest.raises(InvalidOption, match=f"unknown .*'{bad}'.*valid") as err:
        ra.start_node("n1", data_dir=str(tmp_path / "n1"), port=free_port(), **kw)
    assert isinstance(err.value, ValueError)
    assert not (tmp_path / "n1" / "node.json").exists()
    with pytest.raises(InvalidOption, match=bad):
        ra.local_nodes(["a", "b"], data_root=str(tmp_path / "root"), **kw)
    assert not (tmp_path / "root").exists() or not any((tmp_path / "root").iterdir())
