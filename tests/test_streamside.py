"""An actor's side of the direct stream (ra_actors.actors.streamside): what
goes on a stream and what through Thespian, what is taken from a stream,
and who may connect to a WAL's.  Hubs run in this process, driven as the
actors drive them."""
from __future__ import annotations

import select
import time

import pytest

from ra_actors.actors import netpatch, streamside
from ra_actors.actors import stream as stream_mod
from ra_actors.actors.authsock import Guard
from ra_actors.actors.protocol import Bundle, Rpcs, StreamOffer, WalResult, WalWrite
from ra_actors.core.messages import Written
from ra_actors.core.types import ServerId

from test_stream import KEY, Addr, pump

REAL_HUB = stream_mod.StreamHub


def TestHub(ip, addr, allowed, **kw):
    """A real hub whose hellos carry a name (as in test_stream)."""
    return REAL_HUB(ip, addr, allowed, to_wire=lambda a: a.name, from_wire=Addr,
                    host_of=lambda _wire: "127.0.0.1", **kw)

RPCS = Rpcs(ServerId("s", "a"), 1, ServerId("s", "b"), 2, ())


@pytest.fixture
def sides(monkeypatch):
    """Make ``StreamSide``s whose hubs hold the test secret; closed after."""
    monkeypatch.setitem(netpatch._state, "guard", Guard(KEY))
    monkeypatch.setitem(netpatch._state, "allowed", None)
    monkeypatch.setattr(streamside, "StreamHub", TestHub)
    made = []

    def make(name, **kw):
        sent = []
        side = streamside.StreamSide(Addr(name), lambda addr, msg: sent.append((str(addr), msg)), lambda _t: None,
                                     **kw)
        made.append(side)
        return side, sent

    yield make
    for side in made:
        side.close()


def _link(a, a_addr, b, b_addr):
    """``b`` dials ``a`` (as after an offer) until both can send."""
    b.hub.dial(a_addr, a.hub.endpoint)
    pump([a.hub, b.hub], lambda r: b.hub.has_link(a_addr))


def _read(side, dispatch, until) -> None:
    """Drive ``side`` as its actor would until ``until()`` holds."""
    deadline = time.time() + 5
    while time.time() < deadline and not until():
        ready, _, _ = select.select(side.fds(), [], [], 0.05)
        side.on_ready(ready, dispatch)
    assert until(), "not reached"


def test_without_a_stream_a_message_goes_through_thespian_with_one_offer_a_second(sides):
    a, sent = sides("a")
    a.send(Addr("b"), RPCS)
    a.send(Addr("b"), RPCS)
    offers = [m for _to, m in sent if type(m) is StreamOffer]
    assert [m for _to, m in sent if type(m) is Rpcs] == [RPCS, RPCS], "both went through Thespian"
    assert len(offers) == 1 and tuple(offers[0].endpoint) == a.hub.endpoint, "offered once (rate-limited)"


def test_with_a_stream_nothing_goes_through_thespian(sides):
    a, _ = sides("a")
    b, b_sent = sides("b")
    _link(a, Addr("a"), b, Addr("b"))
    b.send(Addr("a"), RPCS)
    assert b_sent == []
    got = []
    _read(a, lambda m, p: got.append((str(p), m)), lambda: got)
    assert got == [("Addr(b)", RPCS)]


def test_a_message_the_side_does_not_accept_closes_that_connection_unhandled(sides):
    server, _ = sides("server")                       # takes Raft's and clients' messages only
    intruder, _ = sides("intruder")
    _link(server, Addr("server"), intruder, Addr("intruder"))
    assert intruder.hub.send(Addr("server"), Bundle((RPCS, WalResult("s", (Written(1, 1, 9),)))))
    handled = []
    _read(server, lambda m, p: handled.append(m), lambda: server.hub.protocol_errors)
    assert server.hub.protocol_errors == 1
    assert handled == [], "not even the Rpcs before it in the Bundle was handled"


def test_a_message_whose_handler_raises_closes_that_connection(sides):
    server, _ = sides("server")
    peer, _ = sides("peer")
    _link(server, Addr("server"), peer, Addr("peer"))
    assert peer.hub.send(Addr("server"), RPCS)

    def refuse(msg, sender):
        raise ValueError("not from you")

    _read(server, refuse, lambda: server.hub.protocol_errors)
    assert server.hub.protocol_errors == 1 and not server.hub.has_link(Addr("peer"))


def test_a_wal_takes_writes_and_only_from_its_own_host(sides, monkeypatch):
    monkeypatch.setitem(netpatch._state, "allowed", frozenset({"127.0.0.1", "192.0.2.7"}))
    wal, _ = sides("wal", accepted=streamside.WAL_STREAMED, local_only=True)
    assert wal.hub.allowed == {"127.0.0.1"}, "the node's own address only, not the cluster's hosts"
    server, _ = sides("server")
    assert server.hub.allowed == {"127.0.0.1", "192.0.2.7"}
    _link(wal, Addr("wal"), server, Addr("server"))
    write = WalWrite("uid", (), (1, 0, 1))
    assert server.hub.send(Addr("wal"), write)
    got = []
    _read(wal, lambda m, p: got.append(m), lambda: got)
    assert got == [write]
