"""Sockets that prove the cluster secret inside the caller's own calls
(ra_actors.actors.authsock), driven the way Thespian drives them: non-
blocking, ``send``/``recv`` when the selector says so."""
from __future__ import annotations

import errno
import pickle
import select
import socket
import threading
import time

import pytest

from ra_actors.actors import authsock
from ra_actors.actors.authsock import (AcceptedSocket, Authenticated, DialledSocket, Guard, RefusedSocket,
                                       pending_count, probe)

KEY = b"s" * 32


class Refused:
    def __init__(self):
        self.seen = []

    def __call__(self, kind, peer, why):
        self.seen.append((kind, peer, why))


@pytest.fixture
def listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s
    s.close()


def accepted(listener, guard) -> AcceptedSocket:
    sock, peer = listener.accept()
    a = AcceptedSocket.adopt(sock, guard, peer[0])
    a.setblocking(False)
    return a


def dialled(listener, guard) -> DialledSocket:
    d = DialledSocket(socket.AF_INET, socket.SOCK_STREAM).arm(guard)
    d.connect(listener.getsockname())
    d.setblocking(False)
    return d


def until(fn, timeout=5.0):
    """Call ``fn`` until it returns something other than EAGAIN."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return fn()
        except BlockingIOError:
            time.sleep(0.005)
    raise AssertionError("no progress")


def test_a_message_goes_through_once_both_sides_proved_the_secret(listener):
    d = dialled(listener, Guard(KEY))
    a = accepted(listener, Guard(KEY))
    try:
        assert d.awaiting_greeting()
        assert until(lambda: d.send(b"20>" + b"p" * 20)) == 23, "the caller's bytes, all of them"
        assert not d.awaiting_greeting()
        assert until(lambda: a.recv(100)) == b"20>" + b"p" * 20
        assert a.send(b"ACK") == 3, "the answer travels in front, unseen by the caller"
        assert type(a) is Authenticated
        assert until(lambda: d.recv(100)) == b"ACK"
        assert type(d) is Authenticated, "from now on, plain socket calls"
        d.send(b"more")
        assert until(lambda: a.recv(100)) == b"more"
    finally:
        d.close()
        a.close()


def test_another_secret_is_refused_and_the_dialler_is_told(listener):
    refused = Refused()
    dguard = Guard(b"x" * 32)
    d = dialled(listener, dguard)
    a = accepted(listener, Guard(KEY, refuse=refused))
    try:
        until(lambda: d.send(b"5>" + pickle.dumps("hi")))
        assert until(lambda: a.recv(100)) == b"", "reads as closed: Thespian lets it go"
        assert refused.seen and refused.seen[0][0] == "secret" and refused.seen[0][1] == "127.0.0.1"
        with pytest.raises(ConnectionRefusedError):
            until(lambda: d.recv(100))
        assert dguard.denied_by == {"127.0.0.1": 1}
    finally:
        d.close()
        a.close()


def test_a_pickle_sent_without_the_handshake_is_never_handed_over(listener):
    refused = Refused()
    raw = socket.create_connection(listener.getsockname())
    a = accepted(listener, Guard(KEY, refuse=refused))
    try:
        payload = pickle.dumps(("anything", 1))
        raw.sendall(b"%d>" % len(payload) + payload + b"x" * 200)
        assert until(lambda: a.recv(1000)) == b""
        assert [k for k, _p, _w in refused.seen] == ["secret"]
        assert "not start with an ra_actors handshake" in refused.seen[0][2]
        assert until(lambda: a.recv(1000)) == b"", "and stays closed"
    finally:
        raw.close()
        a.close()


def test_an_accepted_socket_cannot_send_before_its_peer_proved_the_secret(listener):
    raw = socket.create_connection(listener.getsockname())
    a = accepted(listener, Guard(KEY))
    try:
        with pytest.raises(BrokenPipeError):
            a.send(b"secrets")
    finally:
        raw.close()
        a.close()


def test_a_silent_connection_is_refused_after_the_deadline(listener, monkeypatch):
    monkeypatch.setattr(authsock, "HANDSHAKE_S", 0.2)
    refused = Refused()
    raw = socket.create_connection(listener.getsockname())
    a = accepted(listener, Guard(KEY, refuse=refused))
    try:
        assert a.handshake_deadline() is not None
        with pytest.raises(BlockingIOError):
            a.recv(10)
        time.sleep(0.3)
        assert a.recv(10) == b""
        assert refused.seen[0][0] == "secret" and "within" in refused.seen[0][2]
    finally:
        raw.close()
        a.close()


def test_a_connection_closed_without_a_byte_is_not_a_refusal(listener):
    """(Thespian wakes its own loop by connecting to itself and closing.)"""
    refused = Refused()
    raw = socket.create_connection(listener.getsockname())
    a = accepted(listener, Guard(KEY, refuse=refused))
    raw.recv(100)           # (the greeting: unread, the close would be a reset)
    raw.close()
    try:
        assert until(lambda: a.recv(10)) == b""
        assert refused.seen == []
    finally:
        a.close()


def test_pending_handshakes_are_counted_until_done(listener):
    before = pending_count()
    raw = socket.create_connection(listener.getsockname())
    a = accepted(listener, Guard(KEY))
    assert pending_count() == before + 1
    a.close()
    raw.close()
    assert pending_count() == before


def test_a_dialler_waits_for_the_greeting_without_blocking(listener):
    d = dialled(listener, Guard(KEY))
    try:
        with pytest.raises(BlockingIOError) as info:
            d.send(b"x")                      # nobody accepted yet
        assert info.value.errno == errno.EAGAIN
    finally:
        d.close()


def test_a_dialler_refuses_a_peer_that_is_not_ours(listener):
    refused = Refused()
    d = dialled(listener, Guard(KEY, refuse=refused))
    server, _ = listener.accept()
    try:
        server.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"x" * 20)
        with pytest.raises(ConnectionAbortedError):
            until(lambda: d.send(b"x"))
        assert refused.seen[0][0] == "secret"
    finally:
        server.close()
        d.close()


def _serve(listener, guard, stop):
    """A tiny acceptor loop (as a node's process would run)."""
    conns = []
    listener.setblocking(False)
    while not stop.is_set():
        r, _, _ = select.select([listener] + conns, [], [], 0.02)
        for s in r:
            if s is listener:
                conns.append(accepted(listener, guard))
            else:
                try:
                    if s.recv(100) == b"":
                        conns.remove(s)
                        s.close()
                except BlockingIOError:
                    pass
    for s in conns:
        s.close()


def test_probe_says_ok_denied_or_unreachable(listener):
    stop = threading.Event()
    t = threading.Thread(target=_serve, args=(listener, Guard(KEY), stop), daemon=True)
    t.start()
    try:
        assert probe(listener.getsockname(), KEY) == "ok"
        assert probe(listener.getsockname(), b"wrong" * 8) == "denied"
    finally:
        stop.set()
        t.join(5)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        dead = free.getsockname()
    assert probe(dead, KEY) == "unreachable"


def test_a_refused_connection_hands_out_nothing_it_was_sent_before_the_accept(listener):
    """A plain socket, even shut down, still returns what arrived before it
    was accepted (Linux): a refused one must read as closed at once."""
    raw = socket.create_connection(listener.getsockname())
    raw.sendall(b"61>" + b"p" * 61)
    time.sleep(0.05)
    sock, _peer = listener.accept()
    refused = RefusedSocket.adopt(sock)
    try:
        assert refused.recv(100) == b""
        with pytest.raises(BrokenPipeError):
            refused.send(b"x")
    finally:
        refused.close()
        raw.close()
