"""Client handles attached through this node, and noticing that a client died.

A client registers its handle with the first node it reaches; machines may
monitor the handle (``Monitor("process", handle)``).  Nothing tells a
supervisor that a client process ended, so it checks.

Rules:

* Every ``client_check_interval`` each registered client is checked: by pid
  and process start time when it runs on this node's host, by connecting to
  its port otherwise.  A send to the client that is refused (a dead letter)
  counts at once.
* A dead client's watchers get ``Down(handle, "noproc")``; a client that
  unregisters (``client.close()``) fires ``"normal"``.
* A remote client whose port cannot be checked for another reason (no
  route, timeout) counts as alive: only a refused connection is death.
"""
from __future__ import annotations

import socket
import time
from typing import Any

import psutil

from .directory import Directory
from .monitors import Monitors
from .node_context import NodeContext
from .protocol import ClientInfo, RegisterClientRequest, UnregisterClientRequest
from .util import log


class ClientHandles:
    """Registration and liveness of the clients attached through this node."""

    def __init__(self, ctx: NodeContext, directory: Directory, monitors: Monitors) -> None:
        self.ctx = ctx
        self.directory = directory
        self.monitors = monitors
        self.hostname = socket.gethostname()
        self.last_check = 0.0

    # ------------------------------------------------------------- requests
    def register(self, request: RegisterClientRequest, sender: Any) -> tuple:
        self.directory.clients[request.handle] = ClientInfo(
            request.handle, sender, request.pid, request.host, request.create_time, time.time())
        return ("ok", request.handle)

    def unregister(self, request: UnregisterClientRequest, sender: Any) -> tuple:
        if self.directory.clients.pop(request.handle, None) is not None:
            self.monitors.fire(request.handle, "normal")
        return ("ok", None)

    # -------------------------------------------------------------- liveness
    def check(self, now: float) -> None:
        """Every ``client_check_interval``: drop the clients that died."""
        if now - self.last_check < self.ctx.settings["client_check_interval"]:
            return
        self.last_check = now
        for handle, info in list(self.directory.clients.items()):
            if not self._alive(info):
                self.gone(handle, "noproc")

    def on_dead_letter(self, address: Any) -> None:
        """A send to ``address`` was refused: if a client had it, it is gone."""
        for handle, info in list(self.directory.clients.items()):
            if info.address == address:
                self.gone(handle, "noproc")

    def gone(self, handle: str, reason: str) -> None:
        self.directory.clients.pop(handle, None)
        log(self.ctx.who, f"client {handle} is gone ({reason})")
        self.monitors.fire(handle, reason)

    def _alive(self, info: ClientInfo) -> bool:
        if info.host != self.hostname:
            return _tcp_alive(info.address)
        try:
            process = psutil.Process(info.pid)
            return process.status() != psutil.STATUS_ZOMBIE and (
                info.create_time is None or abs(process.create_time() - info.create_time) < 0.01)
        except psutil.Error:
            return False


def _tcp_alive(address: Any) -> bool:
    """False only if a connection to the Thespian address is refused."""
    try:
        host, port = address.addressDetails.sockname[:2]
    except Exception:  # noqa: BLE001 - not a TCP address: cannot tell
        return True
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect((host, port))
        return True
    except ConnectionRefusedError:
        return False
    except OSError:
        return True
    finally:
        s.close()
