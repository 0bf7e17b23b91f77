"""Ra's query options on real nodes, in both placements: a query with a
``condition=(index, term)`` waits on the member it names until that member
has applied the write (read-your-writes on any member) or answers
``Timeout``; a query function with ``context=True`` learns where the state
it reads stands.

This module is also the machine the nodes run."""
from __future__ import annotations

import threading
import time

import pytest

import ra_actors as ra
from ra_actors import aio, errors

MACHINE = __name__


# ================================================================ the machine
def init(config):
    return {"value": None, "writes": 0}


def apply(meta, command, state):
    state = {"value": command[1], "writes": state["writes"] + 1}
    return state, (meta.index, meta.term)        # where the write landed


def value(state):
    return state["value"]


def where(state, *, context):
    return {"index": context.index, "term": context.term, "version": context.machine_version,
            "leader": context.leader, "value": state["value"]}


# ================================================================== fixtures
@pytest.fixture(params=["process", "shared"])
def placement(request):
    return request.param


@pytest.fixture
def nodes(placement, tmp_path):
    with ra.local_nodes(["n1", "n2", "n3"], data_root=str(tmp_path / "nodes"), placement=placement,
                        allowed_modules=[__name__]) as nodes:
        yield nodes


@pytest.fixture
def cluster(nodes):
    c = nodes.client()
    sids = [ra.ServerId("q", n) for n in ("n1", "n2", "n3")]
    started, _ = c.start_cluster("q", MACHINE, sids)
    assert sorted(started) == sorted(sids)
    leader = c.members(sids[0])[1]
    yield c, sids, leader


def _followers(sids, leader):
    return [s for s in sids if s != leader]


# ================================================================ conditions
def test_a_follower_answers_a_conditional_query_only_once_it_applied_the_write(cluster, nodes):
    c, sids, leader = cluster
    follower = _followers(sids, leader)[0]
    (index, term), _ = c.process_command(leader, ("set", "first"))
    # The next write will land at index + 1 in this term: ask for it before it exists.
    answer: dict = {}
    asking = threading.Event()

    def ask():
        other = nodes.client()
        try:
            asking.set()
            answer["got"] = other.local_query(follower, f"{MACHINE}:value", timeout=20,
                                              condition=(index + 1, term))
        except Exception as exc:  # noqa: BLE001 - reported below
            answer["error"] = exc
        finally:
            other.close()

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        assert asking.wait(30)
        time.sleep(1.0)
        assert asker.is_alive() and not answer, "the query waits for an entry no member has yet"
        (second, second_term), _ = c.process_command(leader, ("set", "second"))
        assert (second, second_term) == (index + 1, term)
    finally:
        asker.join(30)
    ((applied, _t), got), _leader = answer["got"]
    assert got == "second" and applied >= second


def test_a_condition_already_met_is_answered_at_once(cluster):
    c, sids, leader = cluster
    (index, term), _ = c.process_command(leader, ("set", "x"))
    for sid in sids:
        ((applied, _t), got), _ = c.local_query(sid, f"{MACHINE}:value", timeout=10, condition=(index, term))
        assert got == "x" and applied >= index
    ((applied, _t), got), answered_by = c.leader_query(_followers(sids, leader)[0], f"{MACHINE}:value",
                                                       condition=(index, term))
    assert got == "x" and answered_by == leader


def test_a_condition_never_met_times_out_with_a_clear_error_and_the_member_goes_on(cluster):
    c, sids, leader = cluster
    follower = _followers(sids, leader)[0]
    (index, term), _ = c.process_command(leader, ("set", "x"))
    started = time.monotonic()
    with pytest.raises(errors.Timeout, match=f"index {index + 1000} of term {term} was not applied"):
        c.local_query(follower, f"{MACHINE}:value", timeout=1.5, condition=(index + 1000, term))
    assert time.monotonic() - started < 10
    # the entry at index is of `term`, not of a later one: never met either
    with pytest.raises(errors.Timeout, match="was not applied"):
        c.local_query(follower, f"{MACHINE}:value", timeout=1.5, condition=(index, term + 5))
    assert c.local_query(follower, f"{MACHINE}:value", condition=(index, term))[0][1] == "x"


def test_query_options_are_checked_before_anything_is_sent(cluster):
    c, sids, leader = cluster
    for bad in ("x", (1,), (1, 2, 3), (-1, 1), (1, 1.5), (True, 1)):
        with pytest.raises(errors.InvalidOption, match="condition"):
            c.local_query(leader, f"{MACHINE}:value", condition=bad)
    with pytest.raises(errors.InvalidOption, match="context"):
        c.leader_query(leader, f"{MACHINE}:where", context="yes")
    with pytest.raises(TypeError):
        c.consistent_query(leader, f"{MACHINE}:value", condition=(1, 1))    # Ra's has none either


# =================================================================== context
def test_a_query_function_with_context_learns_where_its_state_stands(cluster):
    c, sids, leader = cluster
    (index, term), _ = c.process_command(leader, ("set", "y"))
    ((applied, at_term), ctx), _ = c.local_query(leader, f"{MACHINE}:where", context=True)
    assert ctx == {"index": applied, "term": at_term, "version": 0, "leader": leader, "value": "y"}
    assert applied >= index and at_term == term
    ctx, answered_by = c.consistent_query(_followers(sids, leader)[0], f"{MACHINE}:where", context=True)
    assert answered_by == leader and ctx["index"] >= index and ctx["value"] == "y"
    follower = _followers(sids, leader)[1]
    (_it, ctx), _ = c.local_query(follower, f"{MACHINE}:where", condition=(index, term), context=True)
    assert ctx["index"] >= index and ctx["leader"] == leader and ctx["value"] == "y"
    with pytest.raises(errors.QueryFailed, match="context"):     # a function that takes none
        c.local_query(leader, f"{MACHINE}:value", context=True)


@pytest.mark.asyncio
async def test_the_asyncio_client_takes_the_same_options(cluster, nodes):
    c, sids, leader = cluster
    (index, term), _ = c.process_command(leader, ("set", "z"))
    async with await aio.connect(nodes.addresses()["n1"]) as client:
        follower = _followers(sids, leader)[0]
        (_it, got), _ = await client.local_query(follower, f"{MACHINE}:value", condition=(index, term))
        assert got == "z"
        (_it, ctx), _ = await client.leader_query(follower, f"{MACHINE}:where", context=True)
        assert ctx["index"] >= index
        ctx, _ = await client.consistent_query(follower, f"{MACHINE}:where", context=True)
        assert ctx["value"] == "z"
        with pytest.raises(errors.Timeout):
            await client.local_query(follower, f"{MACHINE}:value", timeout=1.0, condition=(index + 99, term))
        with pytest.raises(errors.InvalidOption):
            await client.local_query(follower, f"{MACHINE}:value", condition="soon")
