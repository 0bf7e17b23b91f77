"""Exceptions raised by ra_actors.

Rule: every failure a user can see is one of these classes (never a bare
``None`` or a string).  They all derive from :class:`RaError`, so
``except ra_actors.errors.RaError`` catches everything the library raises on
purpose.  Each class maps onto an error atom of Ra where one exists.
"""
from __future__ import annotations

from typing import Any

# Defined in the core, which raises InvalidEffect itself and imports nothing
# outside itself; they are these very classes.
from .core.types import InvalidConfig, InvalidEffect, RaError  # noqa: F401


class Timeout(RaError):
    """No answer within the caller's timeout (Ra's ``{timeout, ServerId}``).

    The operation may or may not have taken effect.
    """


class NotLeader(RaError):
    """The addressed server is not the leader; ``leader`` is who it thinks is."""

    def __init__(self, message: str = "not leader", leader: Any = None):
        super().__init__(message)
        self.leader = leader


class NoSuchServer(RaError):
    """The server id names no running server on its node (Ra's ``noproc``)."""


class NodeDown(RaError):
    """The node named by a server id is not reachable."""


class ClusterNotFormed(RaError):
    """``start_cluster`` could not elect a leader (Ra's ``cluster_not_formed``).

    From ``start_clusters``: some of the clusters did not form (their
    servers were deleted again); ``failed`` maps each of them to its error,
    ``formed`` the others to ``(started, not_started)``.
    """

    def __init__(self, message: str = "cluster not formed", formed: dict | None = None,
                 failed: dict | None = None):
        super().__init__(message)
        self.formed = dict(formed or {})
        self.failed = dict(failed or {})


class InvalidCommand(RaError):
    """A command, query argument or reply is not a msgpack-serialisable value."""


class AlreadyMember(RaError):
    """``add_member`` named a server that is already in the cluster."""


class NotMember(RaError):
    """``remove_member``/``transfer_leadership`` named a server outside the cluster."""


class ClusterChangeNotPermitted(RaError):
    """A membership change is still pending, or the leader has not committed its noop."""


class NotUpToDate(RaError):
    """Leadership transfer target has not replicated the whole log yet."""


class NonVoter(RaError):
    """Leadership transfer target is not a voter."""


class MachineError(RaError):
    """A machine module could not be loaded, or it raised in a callback."""


class ServerAlreadyExists(RaError):
    """A server with that id already runs (or has data) on its node (Ra's ``not_new``)."""


class LogCorruption(RaError):
    """A log, segment, snapshot or meta file failed validation.

    ``path`` and ``offset`` say exactly where; the node refuses to start
    rather than skip data.
    """

    def __init__(self, message: str, path: str | None = None, offset: int | None = None):
        where = ""
        if path is not None:
            where = f" ({path}" + (f" at byte offset {offset}" if offset is not None else "") + ")"
        super().__init__(f"corrupt: {message}{where}")
        self.path = path
        self.offset = offset


class DataDirLocked(RaError):
    """Another live process holds the data directory's lock."""


class NodeError(RaError):
    """A node could not be started or stopped."""


class WalNotFound(RaError):
    """A server's recorded WAL is not there: its WAL directory is not among
    its node's ``wal_dirs``, or that directory holds another WAL (or none:
    a volume that is not mounted).  The server does not start rather than
    recover without the entries its WAL holds."""


class NoSuchCluster(NoSuchServer):
    """No node's leaderboard knows the cluster (``client.leader``,
    ``client.members(cluster_name, ...)``): none of its members runs on a
    node the client reaches.  A :class:`NoSuchServer`."""


class NoSuchActor(NoSuchServer):
    """An ``ActorRef`` names no live actor on its node (Ra's ``noproc``).

    A subclass of :class:`NoSuchServer`, so code that handles "no such
    process" for servers handles actors too."""


class ActorAlreadyExists(RaError):
    """``start_actor`` named an actor that is already alive on its node."""


class ActorClassError(RaError):
    """``start_actor``'s class cannot be imported on its node, or is not a
    Thespian ``Actor`` (the message names the node and the import error)."""


class StorageError(RaError):
    """A file operation of the node's storage failed: the disk said no (``EIO``,
    ``ENOSPC``, ``EROFS``, ``EACCES``, ...), as opposed to bad bytes on disk
    (:class:`LogCorruption`).

    ``path`` names the file or directory, ``errno`` is the OS error number
    and ``op`` the operation (``write``, ``fdatasync``, ``rename``...).  After a
    failed write or sync the file is never trusted again: the WAL refuses
    further work (nothing of the failed batch was reported durable) and the
    node's log must be reopened, which runs recovery.  The message names the
    operation, the path and the error, so it survives a trip to a client
    (where only the class and the message travel).
    """

    def __init__(self, message: str, path: str | None = None, errno: int | None = None,
                 op: str | None = None):
        super().__init__(message)
        self.path = path
        self.errno = errno
        self.op = op


class InvalidOption(RaError, ValueError):
    """An options dict (``start_node``'s ``settings`` or ``server_settings``)
    has a key nobody reads: the message names it and the valid ones."""


class LastVoter(RaError):
    """``remove_member`` would leave the cluster without a voter."""


class InvalidMembership(RaError, ValueError):
    """A membership other than ``voter``, ``non_voter`` or ``promotable``."""


class QueryFailed(RaError):
    """A query function raised on the server (the server carries on)."""


class AuxNotImplemented(RaError):
    """An aux command reached a server whose machine has no ``handle_aux``
    (Ra's ``aux_handler_not_implemented``)."""


class AuxFailed(RaError):
    """The machine's ``handle_aux`` raised on the aux command (the member's
    aux state is unchanged and the server carries on)."""


class InvalidQuery(RaError, ValueError):
    """A query names no function the server may call, or an unknown query kind."""


class SessionExpired(RaError):
    """The client's session was forgotten by the cluster (idle longer than
    its ``session_timeout_ms``): the command was not applied.  Start a new
    session (a new client) to go on."""


class SequenceGap(RaError):
    """A session's command arrived before the ones it follows and they did
    not come in time: it was not applied (the client sends them again)."""


class CookieError(RaError):
    """The cluster secret's file is missing, unreadable, too short, or
    readable by other users (``docs/operations.rst``, "Security"); the
    message names the file and what to do."""


class AuthenticationFailed(RaError):
    """A node refused this process's cluster secret, or a peer failed to
    prove it holds the secret: the two sides hold different cookies."""


class CommandTooLarge(InvalidCommand):
    """A command's msgpack encoding is larger than the cluster's
    ``max_command_bytes`` (1 MiB by default): nothing was sent, or the
    server refused it and appended nothing."""


class NodeNameTaken(NodeError):
    """Another live node of the convention already has this node's name."""


class SqlError(RaError):
    """A replicated SQLite command or query failed (``ra_actors.sqlite``,
    ``machines/sqlite.py``).  ``kind`` is SQLite's class of error
    (``"IntegrityError"``, ``"OperationalError"``, ``"ProgrammingError"``,
    ``"NonDeterministic"``, ...); ``statement`` the position (from 0) of the
    failing statement in a transaction.  A failed command changed nothing:
    its whole transaction was rolled back, on every member."""

    def __init__(self, message: str, kind: str = "Error", statement: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.statement = statement


class NonDeterministicSql(SqlError, ValueError):
    """SQL a replicated database may not run in a command: its result would
    differ between members (``random()``, ``datetime('now')``,
    ``CURRENT_TIMESTAMP``...).  Use values from the client, or
    ``ra_system_time()`` (the leader's clock when it received the command)."""

    def __init__(self, message: str, statement: int | None = None):
        super().__init__(message, "NonDeterministic", statement)
