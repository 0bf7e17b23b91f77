"""``client.start_clusters``: many clusters of one machine started with one
request per node per batch; each forms on its own or is deleted again, and
bad input starts nothing (ra_actors.client.clusters)."""
from __future__ import annotations

import pytest

import ra_actors as ra
from ra_actors import errors
from ra_actors.actors.protocol import StartServersRequest
from ra_actors.client.clusters import START_BATCH

NODES = ("n1", "n2", "n3")


def _ids(name, nodes=NODES):
    return [ra.ServerId(name, n) for n in nodes]


@pytest.fixture
def shared3(tmp_path):
    with ra.local_nodes(list(NODES), data_root=str(tmp_path / "nodes"), placement="shared") as nodes:
        yield nodes


def _servers_on(client, node):
    return set(client.overview(node)["servers"])


def test_more_clusters_than_one_batch_all_form_and_take_commands(shared3):
    c = shared3.client()
    specs = {f"q{i}": _ids(f"q{i}", NODES[i % 3:] + NODES[:i % 3]) for i in range(2 * START_BATCH + 5)}
    formed = c.start_clusters(specs, "machines.kv")
    assert set(formed) == set(specs)
    for name, (started, not_started) in formed.items():
        assert started == specs[name] and not_started == []   # in the order given
    for name in ("q0", f"q{START_BATCH}", f"q{2 * START_BATCH + 4}"):
        members, leader = c.members(specs[name][2])
        assert sorted(members) == sorted(specs[name]) and leader in specs[name]
        assert c.process_command(specs[name][1], ("write", "k", name))[0] == "ok"
        assert c.consistent_query(specs[name][0], "machines.kv:read", "k")[0] == name
    for node in NODES:
        assert set(specs) <= _servers_on(c, node)


def test_clusters_that_cannot_form_are_named_and_the_others_start(shared3):
    c = shared3.client()
    c.start_cluster("old", "machines.kv", _ids("old"))
    with pytest.raises(errors.ClusterNotFormed) as info:
        c.start_clusters({"old": _ids("old"), "new": _ids("new")}, "machines.kv")
    exc = info.value
    assert set(exc.failed) == {"old"} and isinstance(exc.failed["old"], errors.ServerAlreadyExists)
    assert set(exc.formed) == {"new"} and exc.formed["new"][0] == _ids("new")
    # the cluster that was there is untouched, the new one runs
    assert c.process_command(_ids("old")[0], ("write", "k", 1))[0] == "ok"
    assert c.process_command(_ids("new")[0], ("write", "k", 2))[0] == "ok"


def test_a_node_that_is_down_is_left_out_of_every_cluster(shared3):
    c = shared3.client()
    c.nodes()
    shared3.kill("n3")
    specs = {name: _ids(name) for name in ("h1", "h2", "h3")}
    formed = c.start_clusters(specs, "machines.kv", timeout=30)
    for name, (started, not_started) in formed.items():
        assert started == specs[name][:2] and not_started == [specs[name][2]]
        assert c.process_command(specs[name][0], ("write", "k", 1))[0] == "ok"


@pytest.mark.parametrize("clusters, machine, config, error", [
    ({}, "machines.kv", None, ValueError),
    ([("x", _ids("x"))], "machines.kv", None, ValueError),                 # not a mapping
    ({"": _ids("x")}, "machines.kv", None, ValueError),
    ({"x": []}, "machines.kv", None, ValueError),
    ({"x": "n1"}, "machines.kv", None, ValueError),
    ({"x": _ids("x"), "y": _ids("x")[:1] + _ids("y")[1:]}, "machines.kv", None, errors.ServerAlreadyExists),
    ({"x": _ids("x")}, "", None, errors.MachineError),
    ({"x": _ids("x")}, "no_such_module_here", None, errors.MachineError),
    ({"x": _ids("x")}, "machines.kv", {"bad": object()}, errors.InvalidCommand),
])
def test_bad_input_starts_nothing(shared3, clusters, machine, config, error):
    c = shared3.client()
    with pytest.raises(error):
        c.start_clusters(clusters, machine, config=config)
    for node in NODES:
        assert not {"x", "y"} & _servers_on(c, node)


def test_a_node_refuses_a_malformed_batch_whole(shared3):
    c = shared3.client()
    with pytest.raises(errors.InvalidConfig):
        c._discovery.sup_call("n1", StartServersRequest(()), 10)
    with pytest.raises(errors.InvalidConfig):
        c._discovery.sup_call("n1", StartServersRequest(("not a config",)), 10)


def test_process_placement_starts_a_batch_too(tmp_path):
    with ra.local_nodes(list(NODES), data_root=str(tmp_path / "nodes")) as nodes:
        c = nodes.client()
        specs = {name: _ids(name) for name in ("p1", "p2")}
        formed = c.start_clusters(specs, "machines.kv")
        assert {name: started for name, (started, _n) in formed.items()} == specs
        for sids in specs.values():
            assert c.process_command(sids[2], ("write", "k", 1))[0] == "ok"
