"""Every counter a node keeps: its name, its kind and what it counts.

Rules:

* A *server* slot holds :data:`ra_actors.shell.server.SERVER_COUNTERS`, in
  that order (the shell, which writes them, owns the order); a *service*
  slot holds :data:`SERVICE_COUNTERS` of its kind.  :data:`SERVER_FIELDS` and
  :data:`SERVICE_FIELDS` give each one its kind and help text; a name
  without one is an error at import.
* ``counter``: only grows while the node runs (it survives a server's
  restart on the node; it starts from zero when the node starts);
  ``gauge``: a current value.  ``state`` and ``membership`` are codes
  (:data:`STATE_NAMES`, :data:`MEMBERSHIP_NAMES`).
* The Prometheus names are ``ra_server_<name>`` (counters end in
  ``_total``) and ``ra_<service>_<name>``; docs/api.rst ("Metrics") lists
  them all (a test checks it).
"""
from __future__ import annotations

from typing import Final

from ..shell.server import MEMBERSHIP_CODES, ROLE_CODES, SERVER_COUNTERS

__all__ = ["SERVER_FIELDS", "SERVICE_FIELDS", "SERVICE_COUNTERS", "SERVICE_KINDS", "STATE_NAMES",
           "MEMBERSHIP_NAMES", "COUNTER", "GAUGE", "KEY_METRICS"]

COUNTER: Final = "counter"
GAUGE: Final = "gauge"

SERVER_FIELDS: Final[dict[str, tuple[str, str]]] = {
    "last_applied": (GAUGE, "The last log index applied to the machine."),
    "commit_index": (GAUGE, "The highest log index known to be committed."),
    "snapshot_index": (GAUGE, "The index of the latest snapshot."),
    "last_index": (GAUGE, "The last index of the log."),
    "last_written_index": (GAUGE, "The last index written to the WAL and synced."),
    "commit_latency": (GAUGE, "Time from the leader receiving the last applied command to its "
                              "application on this member (as Ra's; across hosts it includes clock "
                              "skew).  key_metrics: milliseconds; Prometheus: seconds."),
    "term": (GAUGE, "The current term."),
    "machine_version": (GAUGE, "The effective machine version."),
    "state": (GAUGE, "The role: a code of STATE_NAMES (exported as a label)."),
    "membership": (GAUGE, "voter, non_voter or promotable: a code of MEMBERSHIP_NAMES."),
    "commands": (COUNTER, "Commands received by this server from clients (pipelined or not); a "
                          "follower forwards or rejects them."),
    "applied": (COUNTER, "Log entries applied (recovery replay and snapshot installs not counted)."),
    "queries": (COUNTER, "Queries received (local, leader and consistent)."),
    "rpcs_received": (COUNTER, "Raft RPCs received from peers."),
    "rpcs_sent": (COUNTER, "Raft RPCs sent to peers."),
    "wal_writes": (COUNTER, "Writes handed to the node's WAL (one per round, however many entries)."),
    "wal_resends": (COUNTER, "Times the unwritten suffix of the log was written again after the WAL "
                             "made no progress."),
    "snapshots_written": (COUNTER, "Snapshots written (own and installed)."),
    "snapshots_installed": (COUNTER, "Snapshots received from a leader and installed."),
    "snapshot_chunks_received": (COUNTER, "Snapshot chunks received."),
    "snapshot_chunks_sent": (COUNTER, "Snapshot chunks sent."),
    "elections": (COUNTER, "Elections started (candidate phases)."),
    "pre_vote_elections": (COUNTER, "Pre-vote phases started."),
    "term_and_vote_writes": (COUNTER, "Durable writes of the term and vote."),
    "leader_changes": (COUNTER, "Times this server learned of a new leader (or of none)."),
}

SERVICE_COUNTERS: Final[dict[str, tuple[str, ...]]] = {
    "wal": ("files", "batches", "writes", "bytes_written", "syncs", "dropped", "current_file_size",
            "max_file_size"),
    "segment_writer": ("wal_files_flushed", "entries_flushed"),
    "snapshot_writer": ("snapshots", "bytes_written"),
}
SERVICE_KINDS: Final[tuple[str, ...]] = tuple(SERVICE_COUNTERS)

SERVICE_FIELDS: Final[dict[str, dict[str, tuple[str, str]]]] = {
    "wal": {
        "files": (COUNTER, "WAL files opened."),
        "batches": (COUNTER, "Batches written (one write each)."),
        "writes": (COUNTER, "Entries written."),
        "bytes_written": (COUNTER, "Bytes written to WAL files."),
        "syncs": (COUNTER, "fsync/fdatasync calls (one per batch unless sync_method is none)."),
        "dropped": (COUNTER, "Entries dropped out of sequence: a gap after a writer's last write, "
                             "or entries it wrote already without overwrite (the writer is asked "
                             "to write them again)."),
        "current_file_size": (GAUGE, "Size of the WAL file being written, in bytes."),
        "max_file_size": (GAUGE, "wal_max_size_bytes: the size at which the WAL rolls over."),
    },
    "segment_writer": {
        "wal_files_flushed": (COUNTER, "Closed WAL files moved into segments."),
        "entries_flushed": (COUNTER, "Entries moved from WAL files into segments."),
    },
    "snapshot_writer": {
        "snapshots": (COUNTER, "Snapshots written durably."),
        "bytes_written": (COUNTER, "Bytes of snapshots written."),
    },
}

STATE_NAMES: Final[dict[int, str]] = {code: role for role, code in ROLE_CODES.items()}
MEMBERSHIP_NAMES: Final[dict[int, str]] = {code: name for name, code in MEMBERSHIP_CODES.items()}

#: What ``key_metrics`` answers (Ra's keys, in Ra's order).
KEY_METRICS: Final[tuple[str, ...]] = ("last_applied", "commit_index", "snapshot_index", "last_written_index",
                                       "last_index", "commit_latency", "term", "state", "membership")


def _check() -> None:
    missing = [n for n in SERVER_COUNTERS if n not in SERVER_FIELDS]
    extra = [n for n in SERVER_FIELDS if n not in SERVER_COUNTERS]
    if missing or extra:
        raise RuntimeError(f"metrics fields out of step with the shell: missing {missing}, extra {extra}")
    for kind, names in SERVICE_COUNTERS.items():
        if set(names) != set(SERVICE_FIELDS[kind]):
            raise RuntimeError(f"service {kind}: counters and fields differ")


_check()
