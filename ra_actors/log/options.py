"""The node's log options (``log_options`` of ``start_node``), checked in one place.

Rules:

* The valid keys are exactly those of :data:`LOG_OPTIONS`; any other key is
  refused with :class:`~.common.LogUsageError` (a ``ValueError``) naming the
  valid ones, so a misspelt option (``max_size_bytes`` for
  ``wal_max_size_bytes``) is never silently dropped.
* Values are checked here too (type and range), before anything starts.
* :func:`check_log_options` returns the keyword arguments of
  :func:`.recovery.recover_node` the options stand for.
"""
from __future__ import annotations

from typing import Any, Mapping

from .common import SYNC_METHODS, LogUsageError
from .wal import MIN_MAX_SIZE_BYTES

__all__ = ["LOG_OPTIONS", "check_log_options"]

# key -> (recover_node keyword, what it is)
LOG_OPTIONS: dict[str, tuple[str, str]] = {
    "sync_method": ("sync_method", f"how the WAL reaches the disk: one of {', '.join(SYNC_METHODS)}"),
    "wal_max_size_bytes": ("wal_max_size_bytes",
                           f"WAL file size that triggers a rollover (int >= {MIN_MAX_SIZE_BYTES})"),
    "segment_max_entries": ("segment_max_count", "entries per segment file (int >= 1)"),
    "segment_max_size_bytes": ("segment_max_size_bytes", "bytes per segment file (int >= 1)"),
}


def check_log_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate ``options``; return them as :func:`~.recovery.recover_node` keywords."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise LogUsageError(f"log options must be a dict, not {type(options).__name__}")
    unknown = sorted(str(k) for k in options if k not in LOG_OPTIONS)
    if unknown:
        raise LogUsageError(f"unknown log option(s) {', '.join(map(repr, unknown))}; valid log "
                            f"options: {', '.join(LOG_OPTIONS)}")
    out: dict[str, Any] = {}
    for key, value in options.items():
        kw, what = LOG_OPTIONS[key]
        if key == "sync_method":
            if value not in SYNC_METHODS:
                raise LogUsageError(f"log option sync_method={value!r}: {what}")
        else:
            minimum = MIN_MAX_SIZE_BYTES if key == "wal_max_size_bytes" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise LogUsageError(f"log option {key}={value!r}: {what}")
        out[kw] = value
    return out
