"""How a client finds nodes: the admins' answers and the supervisors' node tables."""
from __future__ import annotations

import itertools
import time

import pytest

from ra_actors import errors
from ra_actors.actors.protocol import ListNodesRequest, SupervisorLocation
from ra_actors.client.addresses import AddressBook
from ra_actors.client.discovery import Discovery

ADMINS = {("127.0.0.1", 1001): "n1", ("127.0.0.1", 1002): "n2"}


class SlowAdminConnection:
    """Admins that answer ``locate_supervisor``: n2 at once, n1 a few pumps later."""

    def __init__(self, slow: dict) -> None:
        self.slow = slow          # node -> pumps before its admin answers
        self.ids = itertools.count(1)
        self.replies: dict = {}
        self.later: list = []

    def next_id(self) -> int:
        return next(self.ids)

    def locate_supervisor(self, admin, nonce, timeout) -> None:
        node = ADMINS[admin]
        answer = SupervisorLocation(node, f"sup-{node}", 1, admin, nonce)
        self.later.append([self.slow.get(node, 0), ("where", nonce), answer])

    def take(self, key):
        for item in [i for i in self.later if i[0] <= 0]:
            self.later.remove(item)
            self.replies[item[1]] = item[2]
        return self.replies.pop(key, None)

    def pump(self, timeout: float = 0.0) -> None:
        for item in self.later:
            item[0] -= 1

    def release(self, *keys) -> None:
        pass


def discovery(slow: dict) -> Discovery:
    d = Discovery(SlowAdminConnection(slow), AddressBook(), sorted(ADMINS))

    def sup_call(node, request, timeout):
        assert isinstance(request, ListNodesRequest)
        # a node that has just started knows only itself
        return {node: (f"sup-{node}", next(a for a, n in ADMINS.items() if n == node), True)}
    d.sup_call = sup_call
    return d


def test_a_node_the_first_answering_node_does_not_know_yet_is_found_through_its_admin():
    """Right after the nodes start, the admin that answers first may belong
    to a node that does not list the others yet: the client asks every
    admin before it calls a node unknown."""
    d = discovery({"n1": 3})
    assert d.sup_address("n1", time.monotonic() + 5) == "sup-n1"
    assert set(d.book.nodes) == {"n1", "n2"}


def test_a_node_no_admin_knows_is_unknown():
    d = discovery({})
    with pytest.raises(errors.NoSuchServer, match="unknown node 'n7'"):
        d.sup_address("n7", time.monotonic() + 30)
    assert set(d.book.nodes) == {"n1", "n2"}
