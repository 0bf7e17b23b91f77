"""A corrupt log stops the node with a clear error (never skipped, never a
crash loop): the node start fails fast and names the corruption."""
from __future__ import annotations

import time

import pytest

import ra_actors as ra
from ra_actors.cli import main
from ra_actors.errors import NodeError
from ra_actors.nodes import free_port


def test_node_with_a_corrupt_wal_refuses_to_start_and_says_corrupt(tmp_path):
    data = str(tmp_path / "n1")
    node = ra.start_node("n1", data_dir=data, port=free_port())
    try:
        client = ra.connect(node.address)
        try:
            sid = ra.ServerId("c", "n1")
            client.start_cluster("c", "machines.counter", [sid])
            for _ in range(3):
                client.process_command(sid, ("add", 1), timeout=10)
        finally:
            client.close()
    finally:
        ra.stop_node(node)
    wal = sorted((tmp_path / "n1" / "wal").glob("*.wal"))
    assert wal, "the node wrote no WAL file"
    raw = bytearray(wal[0].read_bytes())
    assert len(raw) > 200
    raw[60] ^= 0xFF  # a flipped byte in the middle of the first record block
    wal[0].write_bytes(bytes(raw))
    started = time.monotonic()
    with pytest.raises(NodeError, match="corrupt"):
        node = ra.start_node("n1", data_dir=data, port=free_port(), timeout=60)
        ra.stop_node(node)  # only reached if the start wrongly succeeded
    assert time.monotonic() - started < 30, "the start should fail fast, not time out"


def test_a_corrupt_segment_keeps_its_server_down_and_the_overview_says_why(tmp_path):
    """Segments are per server: the node starts, the damaged server does not,
    and the node's overview names the corruption instead of a silent absence."""
    data = str(tmp_path / "n1")
    opts = {"wal_max_size_bytes": 1024, "segment_max_entries": 8}
    sid = ra.ServerId("c", "n1")
    node = ra.start_node("n1", data_dir=data, port=free_port(), log_options=opts)
    try:
        with ra.connect(node.address) as client:
            client.start_cluster("c", "machines.counter", [sid])
            for _ in range(40):
                client.process_command(sid, ("add", 1), timeout=10)
    finally:
        ra.stop_node(node)
    segments = sorted((tmp_path / "n1" / "servers").glob("*/segments/*.segment"))
    assert segments, "the node wrote no segment"
    raw = bytearray(segments[0].read_bytes())
    raw[len(raw) // 2] ^= 0x01
    segments[0].write_bytes(bytes(raw))
    node = ra.start_node("n1", data_dir=data, port=free_port(), log_options=opts, timeout=60)
    try:
        with ra.connect(node.address) as client:
            deadline = time.monotonic() + 20
            while True:
                entry = client.overview("n1")["servers"]["c"]
                if entry["status"] == "exited" or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert entry["status"] == "exited", entry
            assert entry["reason"].startswith("LogCorruption:") and str(segments[0]) in entry["reason"]
            with pytest.raises(ra.errors.RaError):
                client.key_metrics(sid, timeout=2)
    finally:
        ra.stop_node(node)
    assert main(["log", "check", data]) == 1
