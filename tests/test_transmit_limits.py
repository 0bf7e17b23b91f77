"""Silent peers: Thespian's transmit limits in node processes, and the
supervisor's one-periodic-send-in-flight-per-target rule (docs/internals.rst,
"Silent peers and Thespian's transmit limits").  The end-to-end check is the
Jepsen ``pause`` / ``partition`` runs; these pin down the pieces."""
from __future__ import annotations

import time

from thespian.system.transport import SendStatus

from ra_actors.actors import node_main
from ra_actors.actors.supervisor import NodeSupervisor


def test_node_sets_transmit_limits_unless_the_environment_does():
    env = {}
    node_main.thespian_transmit_env({}, env)
    assert env == {
        "THESPIAN_TRANSMIT_TIMEOUT_PERIOD": "0:20",
        "THESPIAN_MAX_PENDING_TRANSMITS": "4096",
        "THESPIAN_MAX_QUEUED_TRANSMITS": "1024",
        "THESPIAN_QUEUED_TRANSMIT_UNBLOCK_THRESHOLD": "768",
        "THESPIAN_DROP_TRANSMITS_LEVEL": "2048",
    }
    env = {"THESPIAN_MAX_PENDING_TRANSMITS": "20", "THESPIAN_MAX_QUEUED_TRANSMITS": "5000"}
    node_main.thespian_transmit_env({"transmit_timeout": "0:30"}, env)
    assert env["THESPIAN_MAX_PENDING_TRANSMITS"] == "20"
    assert env["THESPIAN_TRANSMIT_TIMEOUT_PERIOD"] == "0:30"
    # the levels derived from an overridden queue limit stay consistent
    assert int(env["THESPIAN_QUEUED_TRANSMIT_UNBLOCK_THRESHOLD"]) < 5000 < int(env["THESPIAN_DROP_TRANSMITS_LEVEL"])


class _FakeManager:
    """Stands in for Thespian's actor manager: records the intents."""

    def __init__(self):
        self.intents = []
        self.failed = []

    def _send_intent(self, intent):
        self.intents.append(intent)

    def actor_send_fail(self, result, intent):
        self.failed.append((result, intent))


def _supervisor():
    sup = NodeSupervisor()
    sup._myRef = _FakeManager()
    return sup, sup._myRef


class _Addr:
    def __init__(self, name):
        self.name = name

    def __str__(self):
        return f"addr-{self.name}"


def test_one_periodic_send_in_flight_per_target():
    sup, mgr = _supervisor()
    a, b = _Addr("a"), _Addr("b")
    assert sup.periodic.send_once(a, "hb", 5.0)
    assert not sup.periodic.send_once(a, "hb", 5.0)       # previous one not completed
    assert sup.periodic.send_once(b, "hb", 5.0)           # other targets are independent
    assert [str(i.targetAddr) for i in mgr.intents] == ["addr-a", "addr-b"]
    assert sup.periodic.skips == 1
    mgr.intents[0].tx_done(SendStatus.Sent)       # acknowledged: the next may go
    assert sup.periodic.send_once(a, "hb", 5.0)
    mgr.intents[2].tx_done(SendStatus.DeadTarget)  # refused: the next may go ...
    assert mgr.failed and mgr.failed[0][0] == SendStatus.DeadTarget  # ... and dead letters still work
    assert sup.periodic.send_once(a, "hb", 5.0)


def test_a_send_in_flight_longer_than_the_patience_does_not_block():
    sup, mgr = _supervisor()
    a = _Addr("a")
    assert sup.periodic.send_once(a, "probe", 0.05)
    assert not sup.periodic.send_once(a, "probe", 0.05)
    time.sleep(0.06)
    assert sup.periodic.send_once(a, "probe", 0.05)       # the first may be stuck in a Thespian retry
    mgr.intents[0].tx_done(SendStatus.Failed)     # its late completion does not clear the new one
    assert not sup.periodic.send_once(a, "probe", 0.05)
    mgr.intents[1].tx_done(SendStatus.Sent)
    assert sup.periodic.send_once(a, "probe", 0.05)
