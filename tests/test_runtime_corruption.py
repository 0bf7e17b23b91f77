"""A corrupt log stops the node with a clear error (never skipped, never a
crash loop): the node start fails fast and names the corruption."""
from __future__ import annotations

import time

import pytest

import ra_actors as ra
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
