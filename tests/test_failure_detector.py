"""The node-pair failure detector on a clock the test moves: a healthy
pair's verdict after node_down_after, more patience for a node whose
heartbeats have been arriving late, none while this node itself was not
running (ra_actors.actors.failure_detector)."""
from types import SimpleNamespace

import pytest

from ra_actors.actors import failure_detector as fd
from ra_actors.actors.protocol import NodeHeartbeat, NodeHello, NodeInfo

SETTINGS = {"heartbeat_interval": 0.4, "node_down_after": 1.2, "probe_interval": 1.0}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Periodic:
    def __init__(self):
        self.sent = []

    def send_once(self, addr, msg, patience):
        self.sent.append((addr, msg))
        return True


@pytest.fixture
def world(tmp_path):
    clock = Clock()
    events = []
    ctx = SimpleNamespace(node="n1", incarnation=1, my_address="sup-n1", admin_hostport=("127.0.0.1", 1),
                          settings=dict(SETTINGS), data_dir=str(tmp_path), who="supervisor n1",
                          send=lambda addr, msg: None)
    det = fd.FailureDetector(ctx, Periodic(), on_up=lambda n: events.append(("up", n)),
                             on_down=lambda n: events.append(("down", n)), clock=clock)
    det.on_hello(NodeHello(NodeInfo("n2", 7, "sup-n2", ("127.0.0.1", 2)), reply=False), "sup-n2")
    assert events == [("up", "n2")]
    events.clear()
    return SimpleNamespace(clock=clock, det=det, events=events)


def heartbeats(world, every, count):
    """n2's heartbeats arrive ``every`` seconds; n1 ticks every 0.4 s meanwhile."""
    for _ in range(count):
        target = world.clock.now + every
        while world.clock.now + 0.4 < target:
            world.clock.now += 0.4
            world.det.tick(world.clock.now)
        world.clock.now = target
        world.det.on_heartbeat(NodeHeartbeat("n2", 7), "sup-n2")
        world.det.tick(world.clock.now)


def silence(world, seconds):
    """n2 says nothing; n1 keeps ticking on time.  Returns when n2 was
    declared down, seconds after its last heartbeat (None: not declared)."""
    start = world.clock.now
    while world.clock.now - start < seconds:
        world.clock.now += 0.1
        world.det.tick(world.clock.now)
        if ("down", "n2") in world.events:
            return round(world.clock.now - start, 1)
    return None


def test_a_healthy_pair_is_declared_down_after_node_down_after(world):
    heartbeats(world, 0.4, 20)
    assert world.det.down_after("n2") == pytest.approx(1.2)
    assert silence(world, 5) == pytest.approx(1.3, abs=0.11)


def test_a_node_whose_heartbeats_came_late_gets_more_patience_then_is_still_declared_down(world):
    heartbeats(world, 1.0, 5)                  # an overloaded machine: a heartbeat a second
    assert world.events == []                  # each 1 s gap was within 1.2 s anyway
    heartbeats(world, 1.6, 1)                  # one later still: no verdict, the allowance grows
    assert world.events == []
    assert world.det.down_after("n2") == pytest.approx(4.0)
    assert silence(world, 10) == pytest.approx(4.1, abs=0.11)


def test_the_patience_never_exceeds_its_cap_and_comes_back_once_heartbeats_are_regular(world):
    world.det.nodes["n2"].gaps.append(100.0)   # one enormous gap
    assert world.det.down_after("n2") == pytest.approx(1.2 * fd.MAX_DOWN_FACTOR)
    heartbeats(world, 0.4, fd.GAP_HISTORY)     # the gap leaves the history
    assert world.det.down_after("n2") == pytest.approx(1.2)


def test_a_tick_that_comes_late_declares_nobody_down_and_the_next_one_on_time_does(world):
    heartbeats(world, 0.4, 5)
    world.clock.now += 3.0                     # this process did not run for 3 s
    world.det.tick(world.clock.now)
    assert world.events == []                  # n2's heartbeats may be waiting unread
    world.clock.now += 2.0                     # late again
    world.det.tick(world.clock.now)
    assert world.events == []
    world.clock.now += 0.4                     # on time, and nothing from n2 was read meanwhile
    world.det.tick(world.clock.now)
    assert world.events == [("down", "n2")]


def test_a_heartbeat_read_late_because_this_process_was_starved_widens_the_allowance(world):
    heartbeats(world, 0.4, 5)
    world.clock.now += 3.0                     # starved: n2's heartbeat is read 3 s late
    world.det.tick(world.clock.now)
    world.det.on_heartbeat(NodeHeartbeat("n2", 7), "sup-n2")
    assert world.events == []
    assert world.det.down_after("n2") == pytest.approx(7.5)


def test_gaps_are_counted_only_while_the_node_is_up(world):
    assert silence(world, 5) is not None
    world.clock.now += 30.0                    # down for half a minute, then back
    world.det.on_heartbeat(NodeHeartbeat("n2", 7), "sup-n2")
    assert world.events[-1] == ("up", "n2")
    assert max(world.det.nodes["n2"].gaps, default=0.0) < 2.0
    assert world.det.down_after("n2") == pytest.approx(1.2)
