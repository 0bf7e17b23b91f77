"""The servers a node has data for and their files.

Rules:

* The registry maps a server's name to its uid (its data's directory) and
  whether it is stopped.  A node restart brings back every registered
  server that is not stopped; a stopped one waits for ``restart_server``.
* Every change is written at once, durably, before the change is acted on
  or acknowledged: one line appended to ``node.servers.journal`` and
  fsynced (the changes of one batch of starts: their lines, one fsync).  A change costs the same however many servers the node has, so
  starting N servers costs O(N), not O(N^2).
* ``node.servers.json`` holds the registry as of a compaction (temp file,
  fsync, rename); the journal the changes since.  The journal is compacted
  into it once it holds more lines than twice the servers (and at least
  :data:`COMPACT_MIN`); a crash between the rename and the journal's reset
  replays changes the snapshot already has, which changes nothing (every
  change sets a value).
* Each journal line carries the CRC-32 of its JSON.  Only the journal's
  last line may be torn (no newline: the change was never acknowledged);
  it is cut off with a warning.  Any other damaged line, or an unreadable
  ``node.servers.json``, is :class:`~ra_actors.errors.LogCorruption` naming
  the file and the byte offset: the node refuses to start rather than
  forget servers.
* A server's configuration and log files belong to :mod:`.storage`; this
  module only names them by uid.
"""
from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass

from ..core.types import ServerConfig
from ..errors import LogCorruption
from ..log import fileio
from . import storage
from .util import log

REGISTRY_FILE = "node.servers.json"
JOURNAL_FILE = "node.servers.journal"
COMPACT_MIN = 1024


@dataclass(slots=True)
class RegisteredServer:
    uid: str
    stopped: bool = False


class ServerRegistry:
    """``node.servers.json`` and its journal in the node's data directory."""

    def __init__(self) -> None:
        self.data_dir = ""
        self.servers: dict[str, RegisteredServer] = {}
        self.journal_lines = 0

    def load(self, data_dir: str) -> None:
        """Read the registry; :class:`LogCorruption` if a file is damaged."""
        self.data_dir = data_dir
        self.servers = {}
        self._load_snapshot()
        self._replay_journal()

    def _load_snapshot(self) -> None:
        path = self._path(REGISTRY_FILE)
        try:
            with open(path, "rb") as f:
                raw = json.loads(f.read())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise LogCorruption(f"the node's server registry cannot be read: {exc}", path) from None
        if not isinstance(raw, dict):
            raise LogCorruption("the node's server registry is not a JSON object", path)
        for name, rec in raw.items():
            self._apply({"op": "add", "name": name, **rec} if isinstance(rec, dict) else None, path, None)

    def _replay_journal(self) -> None:
        path = self._path(JOURNAL_FILE)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        offset = 0
        while offset < len(data):
            end = data.find(b"\n", offset)
            if end < 0:
                # the newest change, never fsynced whole, so never acknowledged
                log("registry", f"{path}: cutting a torn last change at byte offset {offset}")
                with open(path, "r+b") as f:
                    f.truncate(offset)
                    os.fsync(f.fileno())
                break
            self._apply(_decode_line(data[offset:end], path, offset), path, offset)
            self.journal_lines += 1
            offset = end + 1

    def _apply(self, change: dict | None, path: str, offset: int | None) -> None:
        try:
            op, name = change["op"], change["name"]
            if op == "add":
                self.servers[name] = RegisteredServer(str(change["uid"]), bool(change.get("stopped", False)))
            elif op == "stopped":
                self.servers[name].stopped = bool(change["stopped"])
            elif op == "remove":
                self.servers.pop(name, None)
            else:
                raise KeyError(op)
        except (KeyError, TypeError, AttributeError):
            raise LogCorruption(f"the node's server registry has a malformed entry {change!r:.100}",
                                path, offset) from None

    def get(self, name: str) -> RegisteredServer | None:
        return self.servers.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self.servers

    def add(self, name: str, uid: str) -> None:
        self.add_many([(name, uid)])

    def add_many(self, servers: list[tuple[str, str]]) -> None:
        """Register ``(name, uid)`` pairs with one durable write."""
        for name, uid in servers:
            self.servers[name] = RegisteredServer(uid)
        self._record(*({"op": "add", "name": name, "uid": uid} for name, uid in servers))

    def set_stopped(self, name: str, stopped: bool) -> None:
        rec = self.servers.get(name)
        if rec is not None and rec.stopped != stopped:
            rec.stopped = stopped
            self._record({"op": "stopped", "name": name, "stopped": stopped})

    def remove(self, name: str) -> RegisteredServer | None:
        rec = self.servers.pop(name, None)
        if rec is not None:
            self._record({"op": "remove", "name": name})
        return rec

    def name_of_uid(self) -> dict[str, str]:
        return {rec.uid: name for name, rec in self.servers.items()}

    # ---------------------------------------------------------------- files
    def read_config(self, uid: str) -> ServerConfig:
        return storage.read_server_config(self.data_dir, uid)

    def write_config(self, config: ServerConfig, wal_dir: str | None = None) -> None:
        storage.create_server(self.data_dir, config, wal_dir)

    def delete_data(self, uid: str) -> None:
        storage.delete_server_data(self.data_dir, uid)

    def _path(self, name: str) -> str:
        return os.path.join(self.data_dir, name)

    def _record(self, *changes: dict) -> None:
        """``changes`` (already applied in memory) on disk, in one append and
        one fsync; a compaction instead when the journal is long."""
        if not changes:
            return
        if self.journal_lines >= max(COMPACT_MIN, 2 * len(self.servers)):
            self._compact()
            return
        path = self._path(JOURNAL_FILE)
        new = not os.path.exists(path)
        with open(path, "ab") as f:
            f.write(b"".join(_encode_line(change) for change in changes))
            f.flush()
            os.fsync(f.fileno())
        if new:
            fileio.fsync_dir(self.data_dir)   # the journal's name survives a crash too
        self.journal_lines += len(changes)

    def _compact(self) -> None:
        """The whole registry into ``node.servers.json``, then an empty journal."""
        tmp = self._path(REGISTRY_FILE + ".tmp")
        with open(tmp, "w") as f:
            json.dump({name: {"uid": rec.uid, "stopped": rec.stopped}
                       for name, rec in self.servers.items()}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path(REGISTRY_FILE))
        with open(self._path(JOURNAL_FILE), "wb") as f:
            os.fsync(f.fileno())
        fileio.fsync_dir(self.data_dir)
        self.journal_lines = 0


def _encode_line(change: dict) -> bytes:
    body = json.dumps(change, separators=(",", ":")).encode()
    return b"%08x " % zlib.crc32(body) + body + b"\n"


def _decode_line(line: bytes, path: str, offset: int) -> dict:
    crc, _, body = line.partition(b" ")
    try:
        if int(crc, 16) != zlib.crc32(body):
            raise ValueError("checksum mismatch")
        change = json.loads(body)
    except ValueError as exc:
        raise LogCorruption(f"the node's server registry journal has a damaged change ({exc})",
                            path, offset) from None
    if not isinstance(change, dict):
        raise LogCorruption("the node's server registry journal has a change that is not an object", path, offset)
    return change
