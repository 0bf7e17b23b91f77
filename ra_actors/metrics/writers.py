"""Opening a slot of the node's counters file for its writer.

Rules: a server's writer is opened with the slot its supervisor gave it; a
service's with its fixed slot.  No counters file (a node started by hand,
a test) means no writer: ``None``, and the caller publishes nothing.
"""
from __future__ import annotations

from .block import SERVICE_SLOTS, SlotWriter
from .fields import COUNTER, SERVER_FIELDS, SERVICE_COUNTERS, SERVICE_FIELDS
from ..shell.server import SERVER_COUNTERS

__all__ = ["server_writer", "service_writer"]

_SERVER_MASK = tuple(SERVER_FIELDS[n][0] == COUNTER for n in SERVER_COUNTERS)


def server_writer(data_dir: str, slot: int | None) -> SlotWriter | None:
    """The writer of a server's slot (``SERVER_COUNTERS`` order)."""
    if slot is None:
        return None
    return SlotWriter.open(data_dir, slot, len(SERVER_COUNTERS), _SERVER_MASK)


def service_writer(data_dir: str, kind: str) -> SlotWriter | None:
    """The writer of storage service ``kind``'s slot (``SERVICE_COUNTERS[kind]`` order)."""
    names = SERVICE_COUNTERS[kind]
    mask = tuple(SERVICE_FIELDS[kind][n][0] == COUNTER for n in names)
    return SlotWriter.open(data_dir, SERVICE_SLOTS[kind], len(names), mask)
