"""A replicated SQLite database, from the client's side: ``connect`` and
``execute`` / ``query``, DB-API-like where it fits.

::

    import ra_actors as ra
    import ra_actors.sqlite

    with ra.local_nodes(["n1", "n2", "n3"]) as nodes:
        client = nodes.client()
        servers = ra_actors.sqlite.start_cluster(client, "db", nodes)
        db = ra_actors.sqlite.connect(client, servers)
        db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
        db.execute("INSERT INTO t VALUES (?, ?)", ("a", 1))
        print(db.query("SELECT * FROM t"))          # [('a', 1)]

Rules:

* A *command* (:meth:`Connection.execute`, :meth:`Connection.executemany`,
  :meth:`Connection.transaction`) is replicated: it returns once a majority
  holds it and the leader applied it, exactly once (the client's session
  resends it through leader changes; ``docs/machine-tutorial.rst``,
  section 6).  Several statements in one command are one transaction: all
  or nothing.  A failed command raises :class:`ra_actors.errors.SqlError`
  and changed nothing, on any member.
* SQL whose result would differ between members (``random()``,
  ``datetime('now')``, ``CURRENT_TIMESTAMP``...) is refused before it is
  sent (:class:`ra_actors.errors.NonDeterministicSql`); the machine checks
  again (:mod:`ra_actors.sqlcheck`, ``machines/sqlite.py``).
* A *query* (:meth:`Connection.query`) is one read-only statement, run
  ``consistent`` (linearizable: the leader confirms it leads first; the
  default), ``leader`` (the leader's copy, no confirmation) or ``local``
  (the member named first, possibly behind).  Rows are tuples.
* Parameters are a sequence (``?``) or a dict (``:name``) of ``None``,
  ``int``, ``float``, ``str`` and ``bytes``; anything else is refused
  before sending (``ProgrammingError``-like :class:`SqlError`).
* The connection holds no server-side resource: ``close`` only marks it
  closed; the client stays the caller's.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from . import errors
from .core.types import ServerId
from .sqlcheck import check_command

__all__ = ["connect", "start_cluster", "Connection", "Cursor", "Transaction", "MACHINE"]

MACHINE = "machines.sqlite"
CONSISTENCIES = ("consistent", "leader", "local")
_PARAM_TYPES = (type(None), int, float, str, bytes)


def start_cluster(client: Any, name: str, nodes: Iterable[Any], *, release_cursor_every: int | None = None,
                  wal: int | None = None, machine: str = MACHINE, timeout: float = 30.0) -> list[ServerId]:
    """Start a replicated database ``name`` with one member on each node
    (names, or anything iterating as names, e.g. ``local_nodes``); returns
    the member ids.  ``wal=k``: every member writes its log to its node's
    ``k``-th WAL directory (``start_node(wal_dirs=...)``; default: the one
    its uid hashes to); the database's own files stay in the member's
    directory under the node's data directory either way.  ``machine``:
    the module to run (``machines.sqlite`` or one that wraps it)."""
    servers = [ServerId(name, str(node)) for node in nodes]
    config = {} if release_cursor_every is None else {"release_cursor_every": release_cursor_every}
    server_config = {} if wal is None else {"wal": wal}
    client.start_cluster(name, machine, servers, config=config, timeout=timeout, **server_config)
    return servers


def connect(client: Any, servers: ServerId | Sequence[Any], *, consistency: str = "consistent",
            timeout: float = 10.0, machine: str = MACHINE) -> "Connection":
    """A :class:`Connection` to the database whose members are ``servers``
    (one ``ServerId`` or several; commands go to the leader whichever is
    named).  ``consistency`` is the default for queries; ``machine`` the
    module the cluster runs (its ``query`` and ``digest`` are called)."""
    if isinstance(servers, ServerId) or (isinstance(servers, tuple) and len(servers) == 2
                                         and all(isinstance(x, str) for x in servers)):
        servers = [servers]
    members = [ServerId(*s) for s in servers]
    if not members:
        raise errors.InvalidOption("connect needs at least one server id")
    _check_consistency(consistency)
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise errors.InvalidOption(f"timeout must be a positive number of seconds, not {timeout!r}")
    if not isinstance(machine, str) or not machine:
        raise errors.InvalidOption(f"machine is a module name, not {machine!r}")
    return Connection(client, members, consistency, float(timeout), machine)


def _check_consistency(consistency: str) -> None:
    if consistency not in CONSISTENCIES:
        raise errors.InvalidOption(f"consistency is one of {', '.join(CONSISTENCIES)}, not {consistency!r}")


def _statement(sql: Any, params: Any, position: int = 0) -> tuple[str, Any]:
    """``(sql, params)`` checked as the machine will check them."""
    if not isinstance(sql, str):
        raise errors.SqlError(f"SQL is text, not {type(sql).__name__}", "ProgrammingError", position)
    why = check_command(sql)
    if why is not None:
        raise errors.NonDeterministicSql(why, position)
    if params is None:
        params = ()
    if isinstance(params, dict):
        values = params.values()
        if not all(isinstance(k, str) for k in params):
            raise errors.SqlError("named parameters have str names", "ProgrammingError", position)
    elif isinstance(params, (list, tuple)):
        values = params = tuple(params)
    else:
        raise errors.SqlError(f"parameters are a sequence or a dict, not {type(params).__name__}",
                              "ProgrammingError", position)
    for value in values:
        if not isinstance(value, _PARAM_TYPES):
            raise errors.SqlError(f"a parameter is None, int, float, str or bytes, not {type(value).__name__}",
                                  "ProgrammingError", position)
    return sql, params


def _raise_error(reply: Any) -> None:
    _error, kind, message, position = (tuple(reply) + (None,) * 4)[:4]
    if kind == "NonDeterministic":
        raise errors.NonDeterministicSql(str(message), position)
    raise errors.SqlError(str(message), str(kind), position)


class Cursor:
    """The result of one statement (DB-API-like): ``rowcount``,
    ``lastrowid``, ``description``, ``fetchone`` / ``fetchmany`` /
    ``fetchall`` and iteration over the rows."""

    def __init__(self, result: dict) -> None:
        self.rowcount: int = result.get("rowcount", -1)
        self.lastrowid: int | None = result.get("lastrowid")
        columns = tuple(result.get("columns") or ())
        self.description = tuple((c, None, None, None, None, None, None) for c in columns) or None
        self.columns = columns
        self._rows = [tuple(r) for r in result.get("rows") or ()]
        self._at = 0

    def fetchone(self) -> tuple | None:
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchmany(self, size: int = 1) -> list[tuple]:
        out = self._rows[self._at:self._at + size]
        self._at += len(out)
        return out

    def fetchall(self) -> list[tuple]:
        out = self._rows[self._at:]
        self._at = len(self._rows)
        return out

    def __iter__(self):
        while (row := self.fetchone()) is not None:
            yield row

    def __repr__(self) -> str:
        return f"<Cursor rowcount={self.rowcount} lastrowid={self.lastrowid} rows={len(self._rows)}>"


class Transaction:
    """Statements collected by ``with db.transaction() as tx: tx.execute(...)``
    and sent as one command when the block ends without an exception;
    ``cursors`` holds their results afterwards."""

    def __init__(self, connection: "Connection") -> None:
        self._connection = connection
        self._statements: list[tuple[str, Any]] = []
        self.cursors: list[Cursor] = []

    def execute(self, sql: str, params: Any = ()) -> None:
        self._statements.append(_statement(sql, params, len(self._statements)))

    def __enter__(self) -> "Transaction":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None and self._statements:
            self.cursors = self._connection._send_transaction(self._statements)
        return False


class Connection:
    """See the module rules.  Build with :func:`connect`."""

    def __init__(self, client: Any, servers: list[ServerId], consistency: str, timeout: float,
                 machine: str = MACHINE) -> None:
        self.client = client
        self.machine = machine
        self.servers = servers
        self.consistency = consistency
        self.timeout = timeout
        self.leader: ServerId | None = None
        self.closed = False

    # ------------------------------------------------------------- commands
    def execute(self, sql: str, params: Any = ()) -> Cursor:
        """Run one statement as a replicated command."""
        sql, params = _statement(sql, params)
        return Cursor(self._command(("execute", sql, params)))

    def executemany(self, sql: str, seq_of_params: Iterable[Any]) -> list[Cursor]:
        """Run ``sql`` once per parameter set, all in one transaction."""
        return self._send_transaction([_statement(sql, p, i) for i, p in enumerate(seq_of_params)])

    def transaction(self) -> Transaction:
        """``with db.transaction() as tx:`` -- statements sent as one command."""
        self._check_open()
        return Transaction(self)

    def _send_transaction(self, statements: list[tuple[str, Any]]) -> list[Cursor]:
        if not statements:
            return []
        return [Cursor(r) for r in self._command(("transaction", tuple(statements)))]

    def _command(self, command: tuple) -> Any:
        self._check_open()
        target = self.leader or self.servers[0]
        reply, leader = self.client.process_command(target, command, timeout=self.timeout)
        if leader is not None:
            self.leader = ServerId(*leader)
        if isinstance(reply, tuple) and reply and reply[0] == "ok":
            return reply[1]
        _raise_error(reply)

    # -------------------------------------------------------------- queries
    def query(self, sql: str, params: Any = (), *, consistency: str | None = None) -> list[tuple]:
        """The rows of one read-only statement (see the module rules)."""
        return self.query_cursor(sql, params, consistency=consistency).fetchall()

    def query_cursor(self, sql: str, params: Any = (), *, consistency: str | None = None) -> Cursor:
        """As :meth:`query`, with the column names (``description``)."""
        self._check_open()
        consistency = consistency or self.consistency
        _check_consistency(consistency)
        if not isinstance(sql, str):
            raise errors.SqlError(f"SQL is text, not {type(sql).__name__}", "ProgrammingError", 0)
        params = tuple(params) if isinstance(params, list) else params
        fun = f"{self.machine}:query"
        if consistency == "local":
            ((_index, _term), reply), _leader = self.client.local_query(self.servers[0], fun, sql, params,
                                                                        timeout=self.timeout)
        else:
            call = self.client.consistent_query if consistency == "consistent" else self.client.leader_query
            target = self.leader or self.servers[0]
            result, leader = call(target, fun, sql, params, timeout=self.timeout)
            if leader is not None:
                self.leader = ServerId(*leader)
            reply = result if consistency == "consistent" else result[1]
        if isinstance(reply, tuple) and reply and reply[0] == "ok":
            return Cursor(reply[1])
        _raise_error(reply)

    def digest(self, server: Any = None) -> str:
        """A checksum of the database on ``server`` (default: the first
        member), as far as it has applied: equal digests, equal data."""
        target = ServerId(*server) if server is not None else self.servers[0]
        (_pos, value), _leader = self.client.local_query(target, f"{self.machine}:digest", timeout=self.timeout)
        return value

    # ------------------------------------------------------------- lifecycle
    def _check_open(self) -> None:
        if self.closed:
            raise errors.SqlError("the connection is closed", "ProgrammingError")

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
