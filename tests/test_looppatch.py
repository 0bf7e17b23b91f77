"""Thespian's TCP loop waits with one poll per pass, and nothing else in the
process changes selector (ra_actors.actors.looppatch)."""
import asyncio
import selectors
import socket

from thespian.system.transport import TCPTransport as tcp

from ra_actors.actors import looppatch


def test_the_tcp_transport_builds_a_poll_selector_and_the_process_keeps_its_default():
    default = selectors.DefaultSelector
    looppatch.apply()
    looppatch.apply()                                       # idempotent
    assert tcp.selectors.DefaultSelector is selectors.PollSelector
    assert selectors.DefaultSelector is default              # asyncio and everyone else: unchanged
    loop = asyncio.new_event_loop()
    try:
        assert type(loop._selector) is default
    finally:
        loop.close()


def test_the_transports_selector_reports_readable_and_writable_sockets_as_before():
    """What the loop does with it every pass: register, wait once, close."""
    looppatch.apply()
    a, b = socket.socketpair()
    try:
        b.send(b"x")
        sel = tcp.selectors.DefaultSelector()
        sel.register(a.fileno(), tcp.selectors.EVENT_READ)
        sel.register(b, tcp.selectors.EVENT_WRITE)
        events = {(key.fd, mask) for key, mask in sel.select(1.0)}
        sel.close()
        assert events == {(a.fileno(), tcp.selectors.EVENT_READ), (b.fileno(), tcp.selectors.EVENT_WRITE)}
    finally:
        a.close()
        b.close()
