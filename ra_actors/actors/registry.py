"""The servers a node has data for (``node.servers.json``) and their files.

Rules:

* The registry maps a server's name to its uid (its data's directory) and
  whether it is stopped.  A node restart brings back every registered
  server that is not stopped; a stopped one waits for ``restart_server``.
* Every change is written at once, durably (temp file, fsync, rename), before
  the change is acted on or acknowledged.
* A server's configuration and log files belong to :mod:`.storage`; this
  module only names them by uid.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from ..core.types import ServerConfig
from . import storage
from .util import log

REGISTRY_FILE = "node.servers.json"


@dataclass(slots=True)
class RegisteredServer:
    uid: str
    stopped: bool = False


class ServerRegistry:
    """``node.servers.json`` in the node's data directory."""

    def __init__(self) -> None:
        self.data_dir = ""
        self.servers: dict[str, RegisteredServer] = {}

    def load(self, data_dir: str) -> None:
        self.data_dir = data_dir
        try:
            with open(self._path(REGISTRY_FILE)) as f:
                raw = json.load(f)
        except (OSError, ValueError):
            raw = {}
        self.servers = {}
        for name, rec in raw.items():
            try:
                self.servers[name] = RegisteredServer(rec["uid"], bool(rec.get("stopped")))
            except (KeyError, TypeError, AttributeError):
                log("registry", f"{REGISTRY_FILE}: ignoring the malformed entry {name!r}: {rec!r:.100}")

    def get(self, name: str) -> RegisteredServer | None:
        return self.servers.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self.servers

    def add(self, name: str, uid: str) -> None:
        self.servers[name] = RegisteredServer(uid)
        self._save()

    def set_stopped(self, name: str, stopped: bool) -> None:
        rec = self.servers.get(name)
        if rec is not None and rec.stopped != stopped:
            rec.stopped = stopped
            self._save()

    def remove(self, name: str) -> RegisteredServer | None:
        rec = self.servers.pop(name, None)
        self._save()
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

    def _save(self) -> None:
        tmp = self._path(REGISTRY_FILE + ".tmp")
        with open(tmp, "w") as f:
            json.dump({name: {"uid": rec.uid, "stopped": rec.stopped}
                       for name, rec in self.servers.items()}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path(REGISTRY_FILE))
