"""Ra's release cursor conditions on real nodes, in both placements: a
machine's ``ReleaseCursor(index, state, condition=...)`` snapshots every
member once its conditions hold (``("written", index)``: the member's log
is durable there; ``"no_snapshot_sends"``: it sends no snapshot).

This module is also the machine the nodes run: every fifth command
releases the cursor with both conditions."""
from __future__ import annotations

import pytest

import ra_actors as ra
from ra_actors.core.effects import ReleaseCursor
from runtime_helpers import wait_for

MACHINE = __name__


def init(config):
    return {"n": 0}


def apply(meta, command, state):
    state = {"n": state["n"] + 1}
    if state["n"] % 5 == 0:
        return state, meta.index, [ReleaseCursor(meta.index, state,
                                                 condition=(("written", meta.index), "no_snapshot_sends"))]
    return state, meta.index


def count(state):
    return state["n"]


@pytest.fixture(params=["process", "shared"])
def nodes(request, tmp_path):
    with ra.local_nodes(["n1", "n2", "n3"], data_root=str(tmp_path / "nodes"), placement=request.param,
                        allowed_modules=[__name__]) as nodes:
        yield nodes


def test_every_member_snapshots_once_the_conditions_hold(nodes):
    c = nodes.client()
    sids = [ra.ServerId("rc", n) for n in ("n1", "n2", "n3")]
    c.start_cluster("rc", MACHINE, sids)
    indexes = [c.process_command(sids[0], ("inc",))[0] for _ in range(10)]
    released = (indexes[4], indexes[9])          # (a release while a snapshot is written is skipped, as Ra's)
    for sid in sids:
        ov = wait_for(lambda sid=sid: (o := c.member_overview(sid))["snapshot_index"] >= released[0] and o,
                      what=f"{sid} snapshots")
        assert ov["snapshot_index"] in released and ov["stats"]["snapshots_written"] >= 1, ov
    assert c.consistent_query(sids[0], f"{MACHINE}:count")[0] == 10
