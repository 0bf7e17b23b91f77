"""The processes that carry Raft servers collect garbage less often than
CPython's default (``ra_actors.actors.util.GC_THRESHOLDS``): checked inside
a real server's process, in both placements, through a query (this module
is also the machine the node imports for it)."""
from __future__ import annotations

import gc

import pytest

import ra_actors as ra
from ra_actors.actors.util import GC_THRESHOLDS


def init(_config):
    return 0


def apply(_meta, _command, state):
    return state + 1, state + 1


def gc_thresholds(_state):
    """Runs in the server's process (a local query)."""
    return gc.get_threshold()


@pytest.mark.parametrize("placement", ["process", "shared"])
def test_a_server_process_collects_with_the_node_thresholds(tmp_path, placement):
    assert GC_THRESHOLDS != (700, 10, 10) and gc.get_threshold() != GC_THRESHOLDS   # (this process: untouched)
    with ra.local_nodes(["n1"], data_root=str(tmp_path), placement=placement,
                        allowed_modules=[__name__]) as nodes:
        client = nodes.client()
        sid = ra.ServerId("gc", "n1")
        client.start_cluster("gc", __name__, [sid], timeout=60.0)
        (_pos, thresholds), _leader = client.local_query(sid, f"{__name__}:gc_thresholds", timeout=30.0)
    assert tuple(thresholds) == GC_THRESHOLDS
