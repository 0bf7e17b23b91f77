"""Which of the processes a demo started are still alive (the demos' last
check: stopping everything leaves nothing behind).  Rule: only reads the
process table; never signals anything."""
from __future__ import annotations

from typing import Iterable

__all__ = ["alive_pids"]


def alive_pids(pids: Iterable[int]) -> list[int]:
    """The pids of ``pids`` that are still running (zombies count as gone)."""
    import psutil
    out = []
    for pid in set(pids):
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.Error:
            continue
    return sorted(out)
