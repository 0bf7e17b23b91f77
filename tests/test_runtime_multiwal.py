"""A real node with two WALs on two directories: each server writes to one
WAL, each WAL holds only its servers' entries, and after a SIGKILL every
server recovers from its own WAL (both placements).  A node restarted
without one of its WAL directories keeps that WAL's servers down and says
why; given the directory again, in any order, they come back."""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest

import ra_actors as ra
from ra_actors import errors
from ra_actors.cli import main
from ra_actors.log.wal import WAL_SUFFIX
from ra_actors.log.wal_format import scan_wal_file
from ra_actors.nodes import free_port
from runtime_helpers import wait_for

READ = "machines.counter:read"


_wait = partial(wait_for, timeout=30.0)


def _uids_in(wdir) -> set:
    out = set()
    for path in sorted(Path(wdir).glob("*" + WAL_SUFFIX)):
        out.update(b.uid for b in scan_wal_file(path, tail_ok=True).blocks)
    return out


ADDS = 30


@pytest.mark.parametrize("placement", ["process", "shared"])
def test_a_node_with_two_wals_recovers_every_server_from_its_own_wal_after_a_sigkill(tmp_path, placement, capsys):
    roots = [str(tmp_path / "vol_a"), str(tmp_path / "vol_b")]
    names = [f"c{i}" for i in range(6)]
    sids = {n: ra.ServerId(n, "n1") for n in names}
    # small WAL files: both WALs roll over, and the one segment writer moves the files of each
    with ra.local_nodes(["n1"], data_root=str(tmp_path / "nodes"), placement=placement,
                        wal_dirs=roots, log_options={"wal_max_size_bytes": 2048}) as nodes:
        wa, wb = nodes.wal_dirs("n1")
        assert (wa, wb) == (str(tmp_path / "vol_a" / "n1"), str(tmp_path / "vol_b" / "n1"))
        c = nodes.client()
        c.start_cluster("c0", "machines.counter", [sids["c0"]], wal=0)
        c.start_cluster("c1", "machines.counter", [sids["c1"]], wal=1)
        for n in names[2:]:
            c.start_cluster(n, "machines.counter", [sids[n]])        # by a hash of the uid
        with pytest.raises(errors.InvalidConfig, match="0..1"):
            c.start_cluster("c9", "machines.counter", [ra.ServerId("c9", "n1")], wal=2, timeout=10)
        # enough for each WAL to roll over even when the hash puts one server alone on it
        for _ in range(ADDS):
            for n in names:
                c.process_command(sids[n], ("add", 1), timeout=15)
        ov = c.overview("n1")
        assert [w["dir"] for w in ov["wals"]] == [wa, wb]
        on = {w["wal"]: set(w["servers"]) for w in ov["wals"]}
        assert "c0" in on[0] and "c1" in on[1] and on[0] | on[1] == set(names) and not on[0] & on[1]
        uids = {n: ov["servers"][n]["uid"] for n in names}
        # each WAL holds its own servers' entries, and only theirs; both WALs' closed files
        # went to segments
        assert _uids_in(wa) <= {uids[n] for n in on[0]} and _uids_in(wb) <= {uids[n] for n in on[1]}
        servers = Path(nodes.data_dir("n1")) / "servers"

        def with_segments() -> set:
            return {n for n in names if list((servers / uids[n] / "segments").glob("*.segment"))}
        # the segment writer moves closed WAL files in its own time
        _wait(lambda: with_segments() & on[0] and with_segments() & on[1], what="segments from both WALs")
        if placement == "process":
            assert ov["services"].get("wal:1") == "running"

        nodes.kill("n1")
        nodes.restart("n1")
        c2 = nodes.client()
        for n in names:
            _wait(lambda: c2.consistent_query(sids[n], READ, timeout=5)[0] == ADDS, what=f"{n} recovered")
            assert c2.process_command(sids[n], ("add", 1), timeout=15)[0] == ADDS + 1
        ov = c2.overview("n1")
        assert {w["wal"]: set(w["servers"]) for w in ov["wals"]} == on     # the same WAL for each, for good
    # the node's node.json names both WALs: the check covers them without being told
    data = str(tmp_path / "nodes" / "n1")
    assert main(["log", "check", data]) == 0
    out = capsys.readouterr().out
    assert f"WAL directory 0: {wa}" in out and f"WAL directory 1: {wb}" in out and "6 servers: 6 sound" in out


def test_a_node_without_one_of_its_wal_directories_keeps_those_servers_down_and_says_why(tmp_path):
    data = str(tmp_path / "n1")
    wa, wb = str(tmp_path / "vol_a" / "wal"), str(tmp_path / "vol_b" / "wal")
    s0, s1 = ra.ServerId("c0", "n1"), ra.ServerId("c1", "n1")
    node = ra.start_node("n1", data, free_port(), wal_dirs=[wa, wb])
    try:
        with ra.connect(node.address) as c:
            c.start_cluster("c0", "machines.counter", [s0], wal=0)
            c.start_cluster("c1", "machines.counter", [s1], wal=1)
            for sid in (s0, s1):
                c.process_command(sid, ("add", 1), timeout=15)
    finally:
        ra.stop_node(node)

    node = ra.start_node("n1", data, free_port(), wal_dirs=[wa])     # vol_b forgotten
    try:
        with ra.connect(node.address) as c:
            entry = _wait(lambda: (e := c.overview("n1")["servers"]["c1"])["status"] == "exited" and e,
                          what="c1 refused")
            assert entry["reason"].startswith("WalNotFound:") and wb in entry["reason"]
            assert c.process_command(s0, ("add", 1), timeout=15)[0] == 2     # the other WAL's servers run
            with pytest.raises(errors.WalNotFound, match="not among this node's wal_dirs"):
                c.restart_server(s1)
    finally:
        ra.stop_node(node)

    node = ra.start_node("n1", data, free_port(), wal_dirs=[wb, wa])  # back, in another order
    try:
        with ra.connect(node.address) as c:
            _wait(lambda: c.consistent_query(s1, READ, timeout=5)[0] == 1, what="c1 back")
            assert c.process_command(s1, ("add", 1), timeout=15)[0] == 2
            assert c.consistent_query(s0, READ, timeout=5)[0] == 2
            assert {w["dir"]: w["servers"] for w in c.overview("n1")["wals"]} == {wb: ["c1"], wa: ["c0"]}
    finally:
        ra.stop_node(node)


@pytest.mark.parametrize("placement", ["process", "shared"])
def test_a_sick_wal_disk_halts_only_the_servers_writing_to_it(tmp_path, monkeypatch, placement):
    """WAL 1's fdatasync fails with EIO three times from its 10th sync on
    (the I/O seam in the node's processes): WAL 1's storage goes to error
    and its server halts with the reason, while the server on WAL 0 keeps
    taking commands; once the faults are spent, the probe of WAL 1's
    directory passes and its server comes back with every acknowledged
    write."""
    from ra_actors.log.fileio import ENV_FAULTS
    data = str(tmp_path / "n1")
    wa, wb = str(tmp_path / "vol_a" / "wal"), str(tmp_path / "vol_b" / "wal")
    fault = {"op": "fdatasync", "errno": 5, "path": f"{wb}/*.wal", "after": 10, "times": 3}
    monkeypatch.setenv(ENV_FAULTS, json.dumps([fault]))
    s0, s1 = ra.ServerId("c0", "n1"), ra.ServerId("c1", "n1")
    node = ra.start_node("n1", data, free_port(), wal_dirs=[wa, wb], placement=placement,
                         settings={"storage_max_faults": 3, "storage_probe_interval": 0.5})
    try:
        with ra.connect(node.address) as c:
            c.start_cluster("c0", "machines.counter", [s0], wal=0)
            c.start_cluster("c1", "machines.counter", [s1], wal=1)
            acked = 0
            with pytest.raises(errors.StorageError, match="EIO"):
                for _ in range(100):
                    c.process_command(s1, ("add", 1), timeout=10)
                    acked += 1
            assert acked >= 5
            st = c.overview("n1")["storage"]
            assert st["state"] == "error" and st["wals"][1]["state"] == "error" and "EIO" in st["reason"]
            for i in range(1, 6):   # the other WAL's server is not touched
                assert c.process_command(s0, ("add", 1), timeout=10)[0] == i
            # the faults are spent: the probe of WAL 1's directory passes and c1 comes back
            _wait(lambda: c.overview("n1")["storage"]["state"] == "ok", what="storage ok again")
            value = _wait(lambda: c.consistent_query(s1, READ, timeout=5)[0], what="c1 back")
            assert value >= acked                  # every acknowledged write is there
            assert c.process_command(s1, ("add", 1), timeout=10)[0] == value + 1
    finally:
        ra.stop_node(node)
    log = (tmp_path / "n1" / "node.log").read_text()
    assert "the servers of WAL 1 halt" in log
