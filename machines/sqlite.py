"""A replicated SQLite database: a disk machine (``docs/machine-tutorial.rst``, section 7).

Each member keeps the database in ``<server dir>/machine/db.sqlite`` (WAL
mode).  The client side is :mod:`ra_actors.sqlite` (``connect``,
``execute``, ``query``).

Rules:

* **Commands** (tuples; lists arrive as tuples)::

      ("execute", sql, params)                       one statement
      ("transaction", ((sql, params), ...))          several, all or nothing

  ``params`` is a tuple (``?`` placeholders) or a dict (``:name``).  The
  reply is ``("ok", result)`` (a transaction: ``("ok", (result, ...))``),
  ``result`` a dict ``{"rowcount", "lastrowid", "columns", "rows"}``
  (``rows`` for statements that return some: ``SELECT``, ``RETURNING``);
  or ``("error", kind, message, statement)``: nothing of the command
  changed the database, on any member.
* **One atomic step.**  A command runs in one SQLite transaction that also
  records its log index and its reply (``_ra_meta``, ``_ra_replies``); a
  failed command rolls back and still records both.  So the files say
  exactly which entries they hold, and a replay after a crash (even between
  the commit and the reply) skips them (:func:`applied_index`,
  :func:`applied_reply`).  Commits are not fsynced (``synchronous=NORMAL``):
  the log is the durable record, and a power loss can only take the last
  transactions back, together with their recorded index.
* **Deterministic.**  Every member must reach the same database and reply.
  Refused, with ``("error", "NonDeterministic", ...)``: what
  :func:`ra_actors.sqlcheck.check_command` refuses (``random()``,
  ``datetime('now')``, ``CURRENT_TIMESTAMP``...), the same functions called
  through bound parameters (checked as they run), and, through SQLite's
  authorizer, transaction statements (the machine makes the transaction),
  ``ATTACH``/``DETACH``, ``PRAGMA`` (except read-only introspection) and the
  machine's own ``_ra_*`` tables.  ``ra_system_time()`` is the leader's
  clock when it received the command (``meta.system_time``, ms).
  ``changes()`` and ``last_insert_rowid()`` start every command at fixed
  values, so they do not depend on what this connection did before.  An
  error of the node (disk full, I/O error, a corrupt file) is never a reply:
  it raises, the server crashes and replays, so no member records a failure
  the others did not have.
* **Snapshots.**  Every ``release_cursor_every`` (config, default 1000,
  0 = never) log entries the machine returns ``ReleaseCursor(meta.index)``;
  :func:`snapshot` is a copy made with SQLite's online backup API, without
  the recorded replies; :func:`release` forgets the replies at or below a
  durable snapshot; :func:`install` replaces the file atomically
  (checkpoint and close, temp file, fsync, rename, fsync the directory).
* **Queries** (``QUERIES``): :func:`query` runs one read-only statement
  (``PRAGMA query_only`` and the authorizer refuse writes) and returns
  ``("ok", {"columns", "rows"})`` or ``("error", kind, message, 0)``;
  :func:`digest` is a checksum of every user table's rows (to compare
  members); non-deterministic functions are allowed in queries.
* Config keys: ``release_cursor_every``; any other key is refused.
"""
from __future__ import annotations

import hashlib
import os
import random
import sqlite3
from typing import Any

from ra_actors.codec import pack, unpack
from ra_actors.core.effects import ReleaseCursor
from ra_actors.sqlcheck import CLOCK_KEYWORDS, CLOCK_WORDS, HINT, TIME_FUNCTIONS, check_command

DISK = True
QUERIES = ("query", "digest")
DB_FILE = "db.sqlite"
CONFIG_KEYS = frozenset({"name", "release_cursor_every"})
DEFAULT_RELEASE_EVERY = 1000

# Errors that say something about the command (the same on every member):
# a reply.  Anything else (I/O, a full disk, corruption, locking) is the
# node's problem and must not become a reply.
_COMMAND_ERROR_CODES = frozenset({1, 18, 19, 20, 23, 25})   # ERROR TOOBIG CONSTRAINT MISMATCH AUTH RANGE
_READONLY_PRAGMAS = frozenset({"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo",
                               "foreign_key_list"})
_WRITES = frozenset(getattr(sqlite3, n) for n in (
    "SQLITE_INSERT", "SQLITE_UPDATE", "SQLITE_DELETE", "SQLITE_CREATE_TABLE", "SQLITE_CREATE_INDEX",
    "SQLITE_CREATE_TRIGGER", "SQLITE_CREATE_VIEW", "SQLITE_DROP_TABLE", "SQLITE_DROP_INDEX",
    "SQLITE_DROP_TRIGGER", "SQLITE_DROP_VIEW", "SQLITE_ALTER_TABLE", "SQLITE_REINDEX", "SQLITE_ANALYZE",
    "SQLITE_CREATE_TEMP_TABLE", "SQLITE_CREATE_TEMP_INDEX", "SQLITE_CREATE_TEMP_TRIGGER",
    "SQLITE_CREATE_TEMP_VIEW", "SQLITE_DROP_TEMP_TABLE", "SQLITE_DROP_TEMP_INDEX",
    "SQLITE_DROP_TEMP_TRIGGER", "SQLITE_DROP_TEMP_VIEW", "SQLITE_CREATE_VTABLE", "SQLITE_DROP_VTABLE"))
_SCHEMA = """
CREATE TABLE IF NOT EXISTS _ra_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS _ra_replies (idx INTEGER PRIMARY KEY, reply BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS _ra_reset (x);
INSERT OR IGNORE INTO _ra_meta VALUES ('applied_index', 0), ('snapshot_index', 0);
"""


class Refused(Exception):
    """A statement the machine will not run (the message says why)."""

    def __init__(self, message: str, kind: str = "NonDeterministic") -> None:
        super().__init__(message)
        self.kind = kind


class Database:
    """The handle the server keeps as this machine's state."""

    def __init__(self, directory: str, release_every: int) -> None:
        self.directory = directory
        self.path = os.path.join(directory, DB_FILE)
        self.release_every = release_every
        self.mode = "internal"            # "internal" | "apply" | "query": what the authorizer allows
        self.refusal: Refused | None = None
        self.system_time = 0
        self.applied = 0
        self.released = 0                 # index of the last snapshot taken here
        self.conn: sqlite3.Connection | None = None
        self._calc = sqlite3.connect(":memory:")   # built-in date functions, for the checked wrappers

    def __repr__(self) -> str:
        return f"<machines.sqlite.Database {self.path} applied {self.applied}>"

    # ------------------------------------------------------------------ files
    def connect(self) -> None:
        # No statement cache: SQLite asks the authorizer only when a statement
        # is prepared, and its answer depends on the mode (a user's "COMMIT"
        # must not reuse the machine's own prepared COMMIT).
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, cached_statements=0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(_SCHEMA)
        conn.set_authorizer(self._authorize)
        self._add_functions(conn)
        self.conn = conn
        self.applied = self._meta("applied_index")
        self.released = self._meta("snapshot_index")

    def _meta(self, key: str) -> int:
        row = self.conn.execute("SELECT value FROM _ra_meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def disconnect(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()

    # --------------------------------------------------------------- guards
    def _authorize(self, action: int, arg1: Any, arg2: Any, _db: Any, _source: Any) -> int:
        if self.mode == "internal":
            return sqlite3.SQLITE_OK
        why = self._refuse_action(action, arg1, arg2)
        if why is None:
            return sqlite3.SQLITE_OK
        self.refusal = why
        return sqlite3.SQLITE_DENY

    def _refuse_action(self, action: int, arg1: Any, arg2: Any) -> Refused | None:
        if action == sqlite3.SQLITE_FUNCTION:
            if self.mode == "apply" and isinstance(arg2, str) and arg2.lower() in _NONDETERMINISTIC:
                return Refused(f"{arg2}() is not deterministic: {HINT}")
            return None
        for name in (arg1, arg2):
            if isinstance(name, str) and name.lower().startswith("_ra_"):
                return Refused(f"{name} belongs to the replicated-SQLite machine", "ProgrammingError")
        if action in (sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT):
            return Refused("each command runs in a transaction of its own: send several statements "
                           "as one ('transaction', ...) command", "ProgrammingError")
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            return Refused("ATTACH and DETACH are not allowed: other files are not replicated",
                           "ProgrammingError")
        if action == sqlite3.SQLITE_PRAGMA:
            if isinstance(arg1, str) and arg1.lower() in _READONLY_PRAGMAS:
                return None
            return Refused(f"PRAGMA {arg1} is not allowed: the machine sets the database's pragmas",
                           "ProgrammingError")
        if self.mode == "query" and action in _WRITES:
            return Refused("a query is read-only: change the database with a command", "ProgrammingError")
        return None

    def _add_functions(self, conn: sqlite3.Connection) -> None:
        # Application functions take precedence over SQLite's built-in ones,
        # also in column defaults (which the authorizer never sees): these
        # wrappers refuse the clock and randomness while a command runs, and
        # let queries have them.
        conn.create_function("ra_system_time", 0, lambda: self.system_time)
        for name in TIME_FUNCTIONS - {"timediff"}:
            conn.create_function(name, -1, self._time_function(name), deterministic=True)
        for name in CLOCK_KEYWORDS:
            conn.create_function(name, 0, self._time_function(name))
        conn.create_function("random", 0, self._checked("random", lambda: random.getrandbits(64) - (1 << 63)))
        conn.create_function("randomblob", 1, self._checked("randomblob", lambda n: os.urandom(max(1, int(n)))))

    def _refuse_in_command(self, what: str) -> None:
        if self.mode == "apply":
            self.refusal = Refused(f"{what} is not deterministic: {HINT}")
            raise ValueError(str(self.refusal))

    def _checked(self, name: str, fn):
        def call(*args: Any) -> Any:
            self._refuse_in_command(f"{name}()")
            return fn(*args)
        return call

    def _time_function(self, name: str):
        keyword = name in CLOCK_KEYWORDS

        def call(*args: Any) -> Any:
            words = [a for a in args if isinstance(a, str) and a.strip().lower() in CLOCK_WORDS]
            if keyword or not args or words:
                given = ", ".join(repr(w) for w in words) or "no argument"
                self._refuse_in_command(name.upper() if keyword else f"{name}({given}), reading the clock,")
            if keyword:
                return self._calc.execute(f"SELECT {name}").fetchone()[0]
            marks = ", ".join("?" * len(args))
            return self._calc.execute(f"SELECT {name}({marks})", args).fetchone()[0]
        return call

    # ----------------------------------------------------------------- apply
    def run_command(self, statements: tuple) -> Any:
        """Run ``statements`` as one transaction; the reply (see the module rules)."""
        conn = self.conn
        results = []
        for position, (sql, params) in enumerate(statements):
            why = check_command(sql)
            if why is not None:
                return ("error", "NonDeterministic", why, position)
            self.refusal = None
            self.mode = "apply"
            try:
                cur = conn.execute(sql, params)
                rows = cur.fetchall() if cur.description else None
            except Exception as exc:  # noqa: BLE001 - sorted below: a reply or a crash
                return self._command_error(exc, position)
            finally:
                self.mode = "internal"
            results.append({"rowcount": cur.rowcount, "lastrowid": cur.lastrowid,
                            "columns": tuple(d[0] for d in cur.description) if cur.description else (),
                            "rows": tuple(tuple(r) for r in rows) if rows is not None else ()})
        return ("ok", tuple(results))

    def _command_error(self, exc: BaseException, position: int) -> tuple:
        refusal, self.refusal = self.refusal, None
        if refusal is not None:
            return ("error", refusal.kind, str(refusal), position)
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(exc, sqlite3.Error) and code is not None and (code & 0xFF) not in _COMMAND_ERROR_CODES:
            raise exc      # the node's disk or file, not the command: crash and replay
        if not isinstance(exc, (sqlite3.Error, sqlite3.Warning, OverflowError, TypeError, ValueError)):
            raise exc
        return ("error", type(exc).__name__, str(exc), position)


_NONDETERMINISTIC = frozenset({"sqlite_version", "sqlite_source_id", "sqlite_compileoption_get",
                               "sqlite_compileoption_used", "total_changes", "sqlite_offset", "random",
                               "randomblob", "load_extension", "current_timestamp", "current_date",
                               "current_time"})


# ======================================================= the disk machine
def open(directory: str, config: dict) -> Database:  # noqa: A001 - the contract's name
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        raise ValueError(f"machines.sqlite: unknown config keys {unknown}; known: release_cursor_every")
    every = config.get("release_cursor_every", DEFAULT_RELEASE_EVERY)
    if not isinstance(every, int) or isinstance(every, bool) or every < 0:
        raise ValueError(f"release_cursor_every must be an int >= 0, got {every!r}")
    db = Database(str(directory), every)
    if os.path.exists(db.path + ".install"):
        os.unlink(db.path + ".install")      # an install cut short: the old file is still whole
    db.connect()
    return db


def applied_index(db: Database) -> int:
    return db.applied


def applied_reply(db: Database, index: int) -> Any:
    row = db.conn.execute("SELECT reply FROM _ra_replies WHERE idx = ?", (index,)).fetchone()
    if row is None:
        return ("error", "ReplyForgotten", f"entry {index} was applied; its reply is no longer kept", 0)
    return unpack(row[0])


def apply(meta: Any, command: Any, db: Database):
    statements = _statements(command)
    db.system_time = int(meta.system_time or 0)
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        if isinstance(statements, str):
            reply = ("error", "ProgrammingError", statements, 0)
        else:
            # changes() and last_insert_rowid() start every command the same way
            conn.execute("INSERT INTO _ra_reset VALUES (NULL)")
            conn.execute("DELETE FROM _ra_reset")
            reply = db.run_command(statements)
            if reply[0] == "error":
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
            elif command[0] == "execute":
                reply = ("ok", reply[1][0])
        conn.execute("UPDATE _ra_meta SET value = ? WHERE key = 'applied_index'", (meta.index,))
        conn.execute("INSERT OR REPLACE INTO _ra_replies VALUES (?, ?)", (meta.index, pack(reply)))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    db.applied = meta.index
    if db.release_every and meta.index - db.released >= db.release_every:
        return db, reply, [ReleaseCursor(meta.index)]
    return db, reply


def _statements(command: Any) -> tuple | str:
    """``((sql, params), ...)`` of a command, or why it is malformed."""
    match command:
        case ("execute", sql, params):
            pairs = ((sql, params),)
        case ("execute", sql):
            pairs = ((sql, ()),)
        case ("transaction", tuple() as stmts) if stmts:
            pairs = stmts
        case _:
            return ("commands are ('execute', sql, params) or ('transaction', ((sql, params), ...)); "
                    f"got {command!r}"[:400])
    out = []
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) in (1, 2) and isinstance(pair[0], str)):
            return f"a statement is (sql, params), got {pair!r}"[:400]
        params = pair[1] if len(pair) == 2 else ()
        if params is None:
            params = ()
        if not isinstance(params, (tuple, dict)):
            return f"parameters are a tuple or a dict, got {type(params).__name__}"
        out.append((pair[0], params))
    return tuple(out)


def snapshot(db: Database) -> bytes:
    """The database at ``applied_index``, copied with the online backup API
    (without the recorded replies: they are for replays here only)."""
    copy = sqlite3.connect(":memory:")
    try:
        db.conn.backup(copy)
        copy.execute("DELETE FROM _ra_replies")
        copy.execute("UPDATE _ra_meta SET value = ? WHERE key = 'snapshot_index'", (db.applied,))
        copy.commit()
        image = bytearray(copy.serialize())
    finally:
        copy.close()
    # The copy's header still says WAL (bytes 18-19 = 2), which an image
    # opened from memory or a fresh file cannot honour; 1 is the rollback
    # journal format: the image is a whole database, nothing is in a WAL.
    image[18] = image[19] = 1
    db.released = db.applied
    return bytes(image)


def release(db: Database, index: int) -> None:
    """The snapshot at ``index`` is durable: a restart replays from there at
    the earliest, so the replies recorded at or below it can go."""
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("DELETE FROM _ra_replies WHERE idx <= ?", (index,))
    conn.execute("UPDATE _ra_meta SET value = ? WHERE key = 'snapshot_index'", (index,))
    conn.execute("COMMIT")
    db.released = max(db.released, index)


def install(db: Database, image: bytes, index: int) -> Database:
    """Replace the database by ``image`` (the copy at ``index``), atomically."""
    if not isinstance(image, bytes) or not image.startswith(b"SQLite format 3\x00"):
        raise ValueError(f"the snapshot at {index} is not an SQLite database image")
    check = sqlite3.connect(":memory:")
    try:
        check.deserialize(image)
        row = check.execute("SELECT value FROM _ra_meta WHERE key = 'applied_index'").fetchone()
    finally:
        check.close()
    if row is None or int(row[0]) != index:
        raise ValueError(f"the snapshot image says it holds entry {row and row[0]}, not {index}")
    tmp = db.path + ".install"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(image)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    # The old file's WAL must never be applied to the new file: fold it in
    # and remove it before the rename.
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.disconnect()
    for suffix in ("-wal", "-shm"):
        if os.path.exists(db.path + suffix):
            os.unlink(db.path + suffix)
    os.replace(tmp, db.path)
    dfd = os.open(db.directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    db.connect()
    return db


def close(db: Database) -> None:
    db.disconnect()
    db._calc.close()


# ================================================================ queries
def query(db: Database, sql: str, params: Any = ()) -> tuple:
    """One read-only statement: ``("ok", {"columns", "rows"})`` or an error tuple."""
    if not isinstance(sql, str):
        return ("error", "ProgrammingError", f"SQL is text, not {type(sql).__name__}", 0)
    if params is None:
        params = ()
    if not isinstance(params, (tuple, list, dict)):
        return ("error", "ProgrammingError", f"parameters are a tuple or a dict, got {type(params).__name__}", 0)
    conn = db.conn
    db.refusal = None
    conn.execute("PRAGMA query_only = ON")
    db.mode = "query"
    try:
        cur = conn.execute(sql, params)
        rows = cur.fetchall() if cur.description else []
        columns = tuple(d[0] for d in cur.description) if cur.description else ()
    except Exception as exc:  # noqa: BLE001 - a query's error is the caller's
        refusal, db.refusal = db.refusal, None
        if refusal is not None:
            return ("error", refusal.kind, str(refusal), 0)
        return ("error", type(exc).__name__, str(exc), 0)
    finally:
        db.mode = "internal"
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.execute("PRAGMA query_only = OFF")
    return ("ok", {"columns": columns, "rows": tuple(tuple(r) for r in rows)})


def digest(db: Database) -> str:
    """A checksum of the schema and every user table's rows (ordered by
    rowid or primary key), to compare members."""
    conn = db.conn
    h = hashlib.sha256()
    tables = conn.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'table' "
                          "AND name NOT LIKE '\\_ra\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                          "ORDER BY name").fetchall()
    for name, sql in tables:
        h.update(pack((name, sql)))
        quoted = '"' + name.replace('"', '""') + '"'
        width = len(conn.execute(f"SELECT * FROM {quoted} LIMIT 0").description)
        order = ", ".join(str(i) for i in range(1, width + 1))
        for row in conn.execute(f"SELECT * FROM {quoted} ORDER BY {order}"):
            h.update(pack(tuple(row)))
    return h.hexdigest()


def overview(db: Database) -> dict:
    tables = db.conn.execute("SELECT count(*) FROM sqlite_schema WHERE type = 'table' "
                             "AND name NOT LIKE '\\_ra\\_%' ESCAPE '\\'").fetchone()[0]
    size = os.path.getsize(db.path) if os.path.exists(db.path) else 0
    return {"applied_index": db.applied, "snapshot_index": db.released, "tables": tables, "file_bytes": size}
