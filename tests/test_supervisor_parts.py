"""The node supervisor's seams, without a running node: its requests are
records each with one handler, the restart policy, and the routing of a
server's retirement (docs/internals.rst, "The node supervisor")."""
from __future__ import annotations

import dataclasses
import pickle
from collections import deque

import pytest

from ra_actors.actors import protocol
from ra_actors.actors.children import DELETING, STOPPING, Child
from ra_actors.actors.protocol import RetireServerRequest, StopServerRequest, SupervisorRequest, SupResponse
from ra_actors.actors.restart_policy import RestartPolicy
from ra_actors.actors.supervisor import NodeSupervisor


def _request_types() -> list[type]:
    return [cls for cls in vars(protocol).values()
            if isinstance(cls, type) and issubclass(cls, SupervisorRequest) and cls is not SupervisorRequest]


class _Recorder(NodeSupervisor):
    """A supervisor whose sends are recorded instead of transmitted."""

    def __init__(self):
        super().__init__()
        self.sent = []

    def send(self, to, msg):
        self.sent.append((to, msg))


def test_every_supervisor_request_has_one_handler():
    sup = NodeSupervisor()
    assert set(_request_types()) == set(sup._requests)


def test_requests_are_frozen_records_that_pickle_with_their_id():
    request = StopServerRequest("kv")
    assert request.req_id is None
    sent = dataclasses.replace(request, req_id=7)
    assert pickle.loads(pickle.dumps(sent)) == StopServerRequest("kv", req_id=7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sent.name = "other"   # type: ignore[misc]


def test_a_request_error_is_answered_not_raised():
    sup = _Recorder()
    sup.receiveMessage(StopServerRequest("nothing", req_id=3), "client")
    [(to, reply)] = sup.sent
    assert to == "client" and isinstance(reply, SupResponse) and reply.req_id == 3
    assert reply.error[0] == "NoSuchServer"


def test_an_unknown_request_type_is_answered_with_an_error():
    @dataclasses.dataclass(frozen=True, slots=True)
    class FutureRequest(SupervisorRequest):
        pass

    sup = _Recorder()
    sup.receiveMessage(FutureRequest(req_id=4), "client")
    [(_, reply)] = sup.sent
    assert reply.req_id == 4 and "unknown operation FutureRequest" in reply.error[1]


@pytest.mark.parametrize("delete_data, status", [(True, DELETING), (False, STOPPING)])
def test_a_retiring_server_is_not_restarted(tmp_path, delete_data, status):
    sup = _Recorder()
    sup.registry.load(str(tmp_path))
    sup.registry.add("kv", "uid-kv")
    child = Child("server", "kv", "kv-address")
    child.status = "running"
    sup.directory.servers["kv"] = child
    sup.receiveMessage(RetireServerRequest("kv", delete_data=delete_data), "other-address")
    assert child.status == "running"                       # only the server itself may retire
    sup.receiveMessage(RetireServerRequest("kv", delete_data=delete_data), "kv-address")
    assert child.status == status
    assert sup.registry.get("kv").stopped
    assert [reply.value for _, reply in sup.sent] == [("ok", None), ("ok", None)]


def test_restart_policy_intensity_and_backoff():
    policy = RestartPolicy(max_restarts=3, period=10.0)
    history: deque[float] = deque()
    assert policy.next_delay(history, now=100.0) == 0.0          # the first restart: at once
    assert policy.next_delay(history, now=100.1) == pytest.approx(0.2)
    assert policy.next_delay(history, now=100.2) == pytest.approx(0.4)
    assert policy.next_delay(history, now=100.3) is None         # a fourth within 10 s: give up
    assert len(history) == 3
    assert policy.next_delay(history, now=111.0) == 0.0          # the window moved on


def test_restart_policy_backoff_is_capped():
    policy = RestartPolicy(max_restarts=100, period=10.0)
    history: deque[float] = deque()
    delays = [policy.next_delay(history, now=1.0 + i / 100) for i in range(10)]
    assert delays[-1] == policy.max_delay


def test_restart_policy_from_the_supervisor_settings():
    sup = NodeSupervisor()
    assert sup.ctx.restart_policy == RestartPolicy(10, 10.0)

