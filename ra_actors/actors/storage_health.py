"""The node's storage as its supervisor sees it: ``ok``, ``failing`` (a
storage service failed and is being reopened, with back-off) or ``error``
(the supervisor gave up reopening and probes the disk until it works again).

Rules:

* Every failure of the node's storage is one *fault*: a storage service
  whose write or sync the disk refused (``ServiceFault``), a reopen that
  failed (``ServiceFailed``), a storage service that exited, a server that
  crashed on a ``StorageError``.  A fault that trying again can mend (the
  disk said no; a process died) gets a reopen after a delay that doubles
  with each fault within ``period`` seconds (``first_delay``, twice that,
  ... at most ``max_delay``).  The ``max_faults``-th fault within ``period``,
  or one that trying again cannot mend (a corrupt log), puts the storage in
  ``error``.
* In ``error`` nothing is reopened or restarted (no process spins): the
  node's servers halt (they answer clients ``StorageError`` and their
  watchers see them ``Down``), and every ``probe_interval`` seconds the
  supervisor probes the disk (:func:`ra_actors.log.common.probe_storage`:
  ``probe_bytes`` written, synced and removed).  A probe that passes clears
  the history: the services are reopened and the servers restarted from
  what is on disk.  A corrupt log is never probed: only the operator can
  mend it (``ra-actors log check``, docs/operations.rst).
* A fault counts when the supervisor learns of it (the report, the
  failed reopen, the exit), in whatever state the storage is then.  In
  ``error`` nothing new is tried, so the count only takes the reports of
  what was under way when the error began: a reopen asked for before (its
  service is ``starting`` until it answers), a write a service had started.
  A node's count is final once it is in ``error`` with no service
  ``starting``; one ``failing`` may count more at any time.
* ``failing`` becomes ``ok`` again once everything runs after the reopen;
  the faults stay in the history for ``period`` seconds, so that a disk that
  keeps failing still ends in ``error``.
* ``reason`` is the last fault (``"wal: StorageError: write of ... failed:
  ENOSPC (No space left on device)"``), ``first_fault`` the one that ended
  the last ``ok``.  No clock here: callers pass ``now``.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping

OK = "ok"
FAILING = "failing"
ERROR = "error"

#: The node settings (``start_node(settings=...)``) of the policy, with defaults.
STORAGE_SETTINGS: dict[str, float] = {
    "storage_max_faults": 5,          # this many storage faults ...
    "storage_fault_period": 30.0,     # ... within this many seconds: error
    "storage_first_delay": 0.1,       # the first reopen waits this long, each next one twice as long ...
    "storage_max_delay": 2.0,         # ... at most this long
    "storage_probe_interval": 5.0,    # in error: probe the disk this often
    "storage_probe_bytes": 1 << 20,   # bytes a probe writes and syncs
}


@dataclass(frozen=True, slots=True)
class StoragePolicy:
    max_faults: int = 5
    period: float = 30.0
    first_delay: float = 0.1
    max_delay: float = 2.0
    probe_interval: float = 5.0
    probe_bytes: int = 1 << 20

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "StoragePolicy":
        s = {**STORAGE_SETTINGS, **{k: v for k, v in settings.items() if k in STORAGE_SETTINGS}}
        return cls(int(s["storage_max_faults"]), float(s["storage_fault_period"]),
                   float(s["storage_first_delay"]), float(s["storage_max_delay"]),
                   float(s["storage_probe_interval"]), int(s["storage_probe_bytes"]))


class StorageHealth:
    """The state machine of the module rules."""

    def __init__(self, policy: StoragePolicy | None = None) -> None:
        self.policy = policy or StoragePolicy()
        self.state = OK
        self.reason: str | None = None        # the fault that made the current state
        self.last_fault: str | None = None
        self.first_fault: str | None = None   # the fault that ended the last ``ok``
        self.since = 0.0                      # when the current state began
        self.curable = True                   # in error: whether a probe may mend it
        self.history: deque[float] = deque()  # times of the faults within the period
        self.faults = 0                       # faults since the node started
        self.probes = 0                       # failed probes in the current error

    def fault(self, source: str, reason: str, retry: bool, now: float) -> float | None:
        """Record a fault of ``source``.  Returns the delay before reopening
        it, or None when the storage is (now) in ``error``."""
        self.faults += 1
        self.last_fault = f"{source}: {reason}"
        if self.state == OK:
            self.first_fault = self.last_fault
        history = self.history
        while history and now - history[0] > self.policy.period:
            history.popleft()
        history.append(now)
        if self.state == ERROR:
            self.curable = self.curable and retry
            return None
        if not retry or len(history) >= self.policy.max_faults:
            self._enter(ERROR, now)
            self.curable = retry
            self.probes = 0
            return None
        self._enter(FAILING, now)
        return min(self.policy.max_delay, self.policy.first_delay * 2 ** (len(history) - 1))

    def settled(self, now: float) -> None:
        """Everything that failed runs again: ``failing`` -> ``ok``."""
        if self.state == FAILING:
            self._enter(OK, now)

    def probe_failed(self) -> None:
        self.probes += 1

    def probe_passed(self, now: float) -> None:
        """The disk works again: forget the history, reopen everything."""
        self.history.clear()
        self.probes = 0
        self._enter(FAILING, now)   # ``ok`` once everything runs again

    def _enter(self, state: str, now: float) -> None:
        if state != self.state:
            self.since = now
        self.state = state
        self.reason = None if state == OK else self.last_fault

    def overview(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "since": self.since,
                "faults": self.faults, "recent_faults": len(self.history),
                "last_fault": self.last_fault, "first_fault": self.first_fault, "probes": self.probes,
                "curable": self.curable if self.state == ERROR else None}
