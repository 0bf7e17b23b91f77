"""A client outlives its nodes: after every node restarted while the client
was idle, it finds the new supervisors through the (unchanged) admin
addresses instead of timing out for ever."""
from __future__ import annotations

import ra_actors as ra


def test_client_reconnects_after_every_node_restarted(tmp_path):
    with ra.local_nodes(["n1", "n2", "n3"], data_root=str(tmp_path)) as nodes:
        client = nodes.client()
        try:
            sids = [ra.ServerId("kv", n) for n in ("n1", "n2", "n3")]
            client.start_cluster("kv", "machines.kv", sids)
            client.process_command(sids[0], ("write", "k", 1), timeout=10)
            for n in ("n1", "n2", "n3"):
                nodes.restart(n)
            members, leader = client.members(sids[0], timeout=30)
            assert sorted(members) == sorted(sids) and leader in sids
            client.process_command(sids[0], ("write", "k", 2), timeout=30)
            value, _ = client.consistent_query(sids[0], "machines.kv:read", "k", timeout=30)
            assert value == 2
        finally:
            client.close()
