"""Shared helpers for the tests that drive real nodes (tests/test_runtime_*.py).

* :func:`wait_for` polls a predicate until it returns something truthy;
  an ``RaError`` while polling counts as "not yet" (a member may be
  restarting or between leaders), so only the deadline fails the test.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from ra_actors import errors


def wait_for(pred: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """The first truthy value of ``pred()`` within ``timeout`` seconds."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = pred()
            if last:
                return last
        except errors.RaError as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached in {timeout}s (last: {last!r})")
