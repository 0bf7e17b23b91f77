"""Thespian's TCP loop gets lighter equivalents of its selector, its
processing-flag lock and its functional helpers, with the same answers,
and nothing else in the process changes (ra_actors.actors.looppatch)."""
import asyncio
from collections import deque
import selectors
import socket

import pytest
from thespian.system import utilis
from thespian.system.transport import TCPTransport as tcp

from ra_actors.actors import looppatch


def test_the_tcp_transport_gets_the_light_pieces_and_the_process_keeps_its_default():
    default = selectors.DefaultSelector
    looppatch.apply()
    looppatch.apply()                                       # idempotent
    assert tcp.selectors.DefaultSelector is looppatch.PassSelector
    assert tcp.exclusive_processing is looppatch.ExclusiveProcessing
    assert tcp.partition is not utilis.partition and tcp.fmap is not utilis.fmap
    assert selectors.DefaultSelector is default              # asyncio and everyone else: unchanged
    assert utilis.partition.__module__ == "thespian.system.utilis"
    loop = asyncio.new_event_loop()
    try:
        assert type(loop._selector) is default
    finally:
        loop.close()


def _ready(sel_class, *registrations, timeout=1.0):
    sel = sel_class()
    for fileobj, events in registrations:
        sel.register(fileobj, events)
    try:
        return {(key.fd, mask) for key, mask in sel.select(timeout)}
    finally:
        sel.close()


def test_the_selector_reports_readable_and_writable_sockets_as_the_poll_selector_does():
    looppatch.apply()
    a, b = socket.socketpair()
    try:
        b.send(b"x")
        regs = [(a.fileno(), selectors.EVENT_READ), (b, selectors.EVENT_WRITE)]
        ours = _ready(tcp.selectors.DefaultSelector, *regs)
        assert ours == {(a.fileno(), selectors.EVENT_READ), (b.fileno(), selectors.EVENT_WRITE)}
        assert ours == _ready(selectors.PollSelector, *regs)
    finally:
        a.close()
        b.close()


def test_a_wait_with_nothing_ready_times_out_empty():
    a, b = socket.socketpair()
    try:
        assert _ready(looppatch.PassSelector, (a, selectors.EVENT_READ), timeout=0.01) == set()
        assert _ready(looppatch.PassSelector, (a, selectors.EVENT_READ), timeout=0) == set()
    finally:
        a.close()
        b.close()


def test_a_closed_peer_is_reported_readable_so_the_read_finds_out():
    a, b = socket.socketpair()
    b.close()
    try:
        regs = [(a, selectors.EVENT_READ)]
        assert _ready(looppatch.PassSelector, *regs) == {(a.fileno(), selectors.EVENT_READ)}
        assert _ready(looppatch.PassSelector, *regs) == _ready(selectors.PollSelector, *regs)
    finally:
        a.close()


def test_registering_twice_or_a_bad_descriptor_is_refused_as_selectors_does():
    sel = looppatch.PassSelector()
    a, b = socket.socketpair()
    try:
        sel.register(a, selectors.EVENT_READ)
        with pytest.raises(KeyError):
            sel.register(a.fileno(), selectors.EVENT_WRITE)
        with pytest.raises(ValueError):
            sel.register(-1, selectors.EVENT_READ)
    finally:
        sel.close()
        a.close()
        b.close()


class _Flag:
    """The part of asyncTransportBase the lock uses."""

    def __init__(self, busy_for: int = 0):
        self.processing = False
        self.busy_for = busy_for
        self.tries = 0

    def _exclusively_processing(self):
        self.tries += 1
        if self.processing or self.busy_for > 0:
            self.busy_for -= 1
            return False
        self.processing = True
        return True

    def _not_processing(self):
        self.processing = False


def test_the_processing_flag_is_waited_for_held_for_the_block_and_released_even_on_error():
    flag = _Flag(busy_for=3)                    # another thread holds it for three tries
    with looppatch.ExclusiveProcessing(flag):
        assert flag.processing
    assert not flag.processing and flag.tries == 4
    with pytest.raises(RuntimeError):
        with looppatch.ExclusiveProcessing(flag):
            raise RuntimeError("boom")
    assert not flag.processing


class _Intent:
    def __init__(self, n):
        self.n = n


@pytest.mark.parametrize("items", [[], [1, 2, 3, 4, 5], [_Intent(1), _Intent(2)]])
def test_partition_answers_as_thespians(items):
    light = looppatch._partition(utilis.partition)

    def even(x):
        return (x.n if isinstance(x, _Intent) else x) % 2 == 0
    assert light(even, list(items)) == utilis.partition(even, list(items))
    assert light(even, filter(None, items)) == utilis.partition(even, filter(None, items))
    assert light(even, items, deque) == utilis.partition(even, items, deque)   # handed to Thespian's


@pytest.mark.parametrize("obj", [([], []), ([_Intent(1)], [_Intent(2), _Intent(3)]), ([[1, 2]], [3]),
                                 ({"a": 1},), [1, 2], 7])
def test_fmap_answers_as_thespians(obj):
    light = looppatch._fmap(utilis.fmap)

    def f(x):
        return ("seen", x.n if isinstance(x, _Intent) else x)
    assert light(f, obj) == utilis.fmap(f, obj)
