"""The direct host-to-host replication stream (ra_actors.actors.stream),
without Thespian: two hubs in one process, driven like the host actor
drives them (select on their fds, then on_ready)."""
from __future__ import annotations

import select
import socket
import threading
import time

from ra_actors.actors import handshake as hs
from ra_actors.actors import stream as stream_mod
from ra_actors.actors.authsock import Guard, dial_handshake
from ra_actors.actors.protocol import ClientCall, CommandRequest, QueryRequest, Rpcs
from ra_actors.actors.stream import addr_key
from ra_actors.core.types import ServerId


class Addr:
    """Stands in for a Thespian address: compared and keyed by str()."""

    def __init__(self, name):
        self.name = name

    def __str__(self):
        return f"Addr({self.name})"


KEY = b"the-stream-tests-cluster-secret"


def StreamHub(ip, addr, **kw):
    """A hub holding ``KEY`` whose hellos carry a name (so the address check
    sees every peer on 127.0.0.1)."""
    kw.setdefault("guard", Guard(KEY))
    return stream_mod.StreamHub(ip, addr, to_wire=lambda a: a.name, from_wire=Addr,
                                host_of=lambda _wire: "127.0.0.1", **kw)


def proven_connection(hub, key: bytes = KEY) -> socket.socket:
    """A raw connection to ``hub`` that has done the secret's handshake (the
    hub is driven meanwhile, as its actor would)."""
    sock = socket.create_connection(hub.endpoint, timeout=5)
    result = {}

    def run():
        try:
            dial_handshake(sock, key)
            result["ok"] = True
        except Exception as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    pump([hub], lambda r: result, timeout=5.0)
    t.join(5)
    if "error" in result:
        sock.close()
        raise result["error"]
    return sock


def _closed(sock) -> bool:
    try:
        return sock.recv(10) == b""
    except ConnectionResetError:
        return True


def pump(hubs, until, timeout=5.0):
    """Run every hub's reads until ``until(received)`` holds."""
    received = {id(h): [] for h in hubs}
    deadline = time.time() + timeout
    while time.time() < deadline:
        fds = {fd: h for h in hubs for fd in h.fds()}
        ready, _, _ = select.select(list(fds), [], [], 0.05)
        for h in hubs:
            mine = [fd for fd in ready if fds[fd] is h]
            if mine:
                received[id(h)].extend(h.on_ready(mine))
        if until(received):
            return received
    raise AssertionError(f"not reached: {received}")


def test_offer_dial_hello_then_frames_both_ways():
    a_addr, b_addr = Addr("a"), Addr("b")
    a, b = StreamHub("127.0.0.1", a_addr), StreamHub("127.0.0.1", b_addr)
    try:
        assert not a.send(b_addr, "too early"), "no stream yet: the caller uses Thespian"
        # a offered its endpoint to b (through Thespian); b dials it
        b.dial(a_addr, a.endpoint)
        pump([a, b], lambda r: b.has_link(a_addr))
        rpcs = Rpcs(ServerId("s", "a"), 1, ServerId("s", "b"), 2, ())
        assert b.send(a_addr, rpcs)
        got = pump([a, b], lambda r: r[id(a)])
        assert [(str(p), m) for p, m in got[id(a)]] == [("Addr(b)", rpcs)]
        # the hello taught a who is on the other end: it answers on the same connection
        assert a.has_link(b_addr)
        for i in range(100):
            assert a.send(b_addr, ("reply", i, b"x" * 1000))
        got = pump([a, b], lambda r: len(r[id(b)]) == 100)
        assert [m[1] for _p, m in got[id(b)]] == list(range(100)), "frames arrive in order"
    finally:
        a.close()
        b.close()


def test_a_lost_connection_falls_back_and_can_be_dialled_again():
    a_addr, b_addr = Addr("a"), Addr("b")
    a, b = StreamHub("127.0.0.1", a_addr, retry_s=0.0), StreamHub("127.0.0.1", b_addr)
    try:
        b.dial(a_addr, a.endpoint)
        pump([a, b], lambda r: b.has_link(a_addr))
        b.send(a_addr, "one")
        pump([a, b], lambda r: r[id(a)])
        a.close()                     # the peer host dies
        pump([b], lambda r: not b.has_link(a_addr))
        assert not b.send(a_addr, "two"), "no stream: Thespian carries it"
        a2 = StreamHub("127.0.0.1", a_addr)
        try:
            b.dial(a_addr, a2.endpoint)
            pump([a2, b], lambda r: b.has_link(a_addr))
            assert b.send(a_addr, "three")
            got = pump([a2, b], lambda r: r[id(a2)])
            assert [m for _p, m in got[id(a2)]] == ["three"]
        finally:
            a2.close()
    finally:
        b.close()


def test_connections_from_hosts_outside_the_allowed_set_are_closed_unread():
    a = StreamHub("127.0.0.1", Addr("a"), allowed=frozenset({"10.9.9.9"}))
    try:
        with socket.create_connection(a.endpoint, timeout=2) as s:
            s.sendall(b"\x00\x00\x00\x05hello")
            pump([a], lambda r: a.refused == 1)
            s.settimeout(2)
            assert _closed(s), "closed by the hub"
        assert a.by_fd == {}
    finally:
        a.close()


def test_garbage_or_a_missing_hello_drops_the_connection():
    a = StreamHub("127.0.0.1", Addr("a"))
    try:
        with proven_connection(a) as s:
            frame = a._frame(("not hello", 1))
            s.sendall(frame)
            pump([a], lambda r: not a.by_fd and not a.pending)
            s.settimeout(2)
            assert _closed(s)
    finally:
        a.close()


def test_an_unreachable_peer_never_blocks_the_caller():
    a = StreamHub("127.0.0.1", Addr("a"), connect_timeout=0.5)
    try:
        # nobody listens on this port: dialling returns at once, the link dies in its thread
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            dead = probe.getsockname()
        t0 = time.monotonic()
        a.dial(Addr("z"), dead)
        assert time.monotonic() - t0 < 0.1
        pump([a], lambda r: addr_key(Addr("z")) not in a.links)
        assert not a.send(Addr("z"), "x")
    finally:
        a.close()


def test_messages_msgpack_cannot_carry_are_left_to_thespian():
    a_addr, b_addr = Addr("a"), Addr("b")
    a, b = StreamHub("127.0.0.1", a_addr), StreamHub("127.0.0.1", b_addr)
    try:
        b.dial(a_addr, a.endpoint)
        pump([a, b], lambda r: b.has_link(a_addr))
        assert not b.send(a_addr, ClientCall(1, "client:x:y", QueryRequest("local", "m:f", (object(),)))), \
            "falls back"
        assert b.send(a_addr, ClientCall(2, "client:x:y", CommandRequest(("write", 1, 2), "noreply")))
        got = pump([a, b], lambda r: r[id(a)])
        assert [m.req_id for _p, m in got[id(a)]] == [2]
    finally:
        a.close()
        b.close()


def test_a_thespian_address_survives_the_wire():
    from ra_actors.actors.util import admin_address
    addr = admin_address("127.0.0.3", 4321)
    back = stream_mod._thespian_from_wire(stream_mod._thespian_to_wire(addr))
    assert back == addr and addr_key(back) == ("127.0.0.3", 4321)
    assert addr_key(admin_address("127.0.0.4", 4321)) != addr_key(addr), "the IP is part of the key"


def test_both_hosts_dialling_each_other_at_once_keep_reading_both_connections():
    """Each side dials the other; each hello replaces the dialled link in
    ``links`` by the accepted one.  Both sockets must still be read, or the
    side that sends on the other's dialled connection talks into the void."""
    a_addr, b_addr = Addr("a"), Addr("b")
    a, b = StreamHub("127.0.0.1", a_addr), StreamHub("127.0.0.1", b_addr)
    try:
        a.dial(b_addr, b.endpoint)
        b.dial(a_addr, a.endpoint)
        pump([a, b], lambda r: a.has_link(b_addr) and b.has_link(a_addr)
             and len(a.by_fd) == 2 and len(b.by_fd) == 2)
        for i in range(20):
            assert a.send(b_addr, ("a->b", i))
            assert b.send(a_addr, ("b->a", i))
        got = pump([a, b], lambda r: len(r[id(a)]) == 20 and len(r[id(b)]) == 20)
        assert sorted(m[1] for _p, m in got[id(b)]) == list(range(20))
        assert sorted(m[1] for _p, m in got[id(a)]) == list(range(20))
    finally:
        a.close()
        b.close()


# ================================================================ trust
def test_a_connection_without_the_secret_is_refused_before_a_frame_is_read():
    refused = []
    a = StreamHub("127.0.0.1", Addr("a"), guard=Guard(KEY, refuse=lambda *r: refused.append(r)))
    try:
        with socket.create_connection(a.endpoint, timeout=2) as s:
            frame = a._frame(("hello", "b"))
            s.sendall(frame)
            pump([a], lambda r: refused)
            assert refused[0][0] == "secret" and "handshake" in refused[0][2]
            assert a.links == {} and a.by_fd == {} and a.stats()["frames_in"] == 0
            greeting = b""
            while len(greeting) < hs.HELLO_LEN:
                greeting += s.recv(hs.HELLO_LEN - len(greeting))
            assert greeting.startswith(hs.MAGIC), "the greeting is all it ever sent"
            assert _closed(s)
    finally:
        a.close()


def test_hubs_with_different_secrets_never_link():
    a_addr, b_addr = Addr("a"), Addr("b")
    b_guard = Guard(b"another-secret-entirely")
    a, b = StreamHub("127.0.0.1", a_addr), StreamHub("127.0.0.1", b_addr, guard=b_guard)
    try:
        b.dial(a_addr, a.endpoint)
        pump([a, b], lambda r: b_guard.denied_by and not b.has_link(a_addr) and a.refused == 1)
        assert not b.send(a_addr, "x") and not a.has_link(b_addr)
    finally:
        a.close()
        b.close()


def test_a_hello_naming_another_host_closes_the_connection():
    """A peer can speak only for an address on the host it connects from."""
    a = stream_mod.StreamHub("127.0.0.1", Addr("a"), guard=Guard(KEY), to_wire=lambda x: x.name, from_wire=Addr)
    try:
        s = proven_connection(a)
        hello = a._frame(("hello", ["10.0.0.7", 4100]))     # claims to be a host actor on 10.0.0.7
        s.sendall(hello)
        pump([a], lambda r: a.protocol_errors == 1)
        assert a.links == {} and _closed(s)
        s.close()
    finally:
        a.close()


def test_a_connection_that_never_says_hello_is_closed_at_the_deadline(monkeypatch):
    monkeypatch.setattr(stream_mod, "HELLO_S", 0.3)
    refused = []
    a = StreamHub("127.0.0.1", Addr("a"), guard=Guard(KEY, refuse=lambda *r: refused.append(r)))
    try:
        silent = socket.create_connection(a.endpoint, timeout=2)      # no proof at all
        proven = proven_connection(a)                                  # proof, but no hello
        pump([a], lambda r: len(a.pending) == 2)
        time.sleep(0.4)
        a.expire()
        assert a.pending == [] and a.by_fd == {}
        assert [r[0] for r in refused] == ["secret"], "the silent one failed the secret"
        assert a.protocol_errors == 1, "the proven one broke the protocol"
        silent.close()
        proven.close()
    finally:
        a.close()


def test_connections_beyond_the_pending_cap_are_closed_at_once(monkeypatch):
    monkeypatch.setattr(stream_mod, "MAX_PENDING", 3)
    refused = []
    a = StreamHub("127.0.0.1", Addr("a"), guard=Guard(KEY, refuse=lambda *r: refused.append(r)))
    socks = []
    try:
        for _ in range(5):
            socks.append(socket.create_connection(a.endpoint, timeout=2))
        pump([a], lambda r: len(a.pending) == 3 and len(refused) == 2)
        assert {r[0] for r in refused} == {"busy"}
    finally:
        for s in socks:
            s.close()
        a.close()


def _linked(a_kw=None, b_kw=None):
    a_addr, b_addr = Addr("a"), Addr("b")
    a = StreamHub("127.0.0.1", a_addr, **(a_kw or {}))
    b = StreamHub("127.0.0.1", b_addr, **(b_kw or {}))
    b.dial(a_addr, a.endpoint)
    pump([a, b], lambda r: b.has_link(a_addr))
    return a, b, a_addr


def test_a_frame_above_max_frame_is_refused_to_its_sender_and_the_link_goes_on(monkeypatch):
    monkeypatch.setattr(stream_mod, "MAX_FRAME", 4096)
    a, b, a_addr = _linked()
    try:
        assert not b.send(a_addr, b"x" * 5000), "above MAX_FRAME: the caller uses Thespian"
        assert b.send(a_addr, "small")
        got = pump([a, b], lambda r: r[id(a)])
        assert [m for _p, m in got[id(a)]] == ["small"]
        assert a.protocol_errors == 0 and b.protocol_errors == 0
    finally:
        a.close()
        b.close()


def test_a_frame_larger_than_the_queue_is_never_split():
    """The first write of a large frame goes out in part (the socket's buffer
    is smaller than the frame); the rest follows even though it is larger
    than the whole queue, and the frames after it are either delivered
    intact or refused to their sender -- the receiver never reads garbage."""
    a, b, a_addr = _linked(b_kw={"max_queue_bytes": 64 << 10, "stall_s": 60.0})
    try:
        big = bytes(range(256)) * (16 << 10)        # 4 MiB, far above the socket buffer and the queue
        assert b.send(a_addr, ("big", big))
        sent_after = [i for i in range(50) if b.send(a_addr, ("after", i))]
        assert len(sent_after) < 50, "the queue was full: some frames were refused to their sender"
        got = pump([a, b], lambda r: len(r[id(a)]) == 1 + len(sent_after), timeout=20.0)
        msgs = [m for _p, m in got[id(a)]]
        assert msgs[0] == ("big", big)
        assert [m[1] for m in msgs[1:]] == sent_after
        assert b.send(a_addr, "later")
        got = pump([a, b], lambda r: r[id(a)], timeout=5.0)
        assert [m for _p, m in got[id(a)]] == ["later"]
        assert a.protocol_errors == 0
    finally:
        a.close()
        b.close()
