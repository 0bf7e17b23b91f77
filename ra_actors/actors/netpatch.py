"""Safety patches for Thespian 4.0.1's TCP transport.

Thespian binds every actor and admin socket to INADDR_ANY and accepts
unauthenticated pickles on it.  :func:`apply` changes two things, in the
current process and (through fork) every process it starts:

* sockets bind to the address they advertise (``127.0.0.1`` unless the
  operator configured another address through ``THESPIAN_BASE_IPADDR``),
  never to ``0.0.0.0``;
* when ``allowed_hosts`` is given, incoming connections from any other
  host are closed before a byte is read (loopback and the bind address
  are always allowed).

Both are idempotent; the last ``allowed_hosts`` wins.
"""
from __future__ import annotations

import os
import socket

_state = {"applied": False, "allowed": None}

LOOPBACK = "127.0.0.1"


def _resolve(host: str) -> set[str]:
    try:
        return {info[4][0] for info in socket.getaddrinfo(host, None, socket.AF_INET)}
    except OSError:
        return {host}


def apply(allowed_hosts=None) -> None:
    """Patch Thespian's address and accept paths (see module doc)."""
    from thespian.system.transport import IPBase, TCPTransport as _T

    if allowed_hosts is not None:
        allowed = {LOOPBACK}
        for h in allowed_hosts:
            allowed |= _resolve(h)
        base = os.environ.get("THESPIAN_BASE_IPADDR")
        if base:
            allowed |= _resolve(base)
        _state["allowed"] = frozenset(allowed)
    if _state["applied"]:
        return
    _state["applied"] = True

    orig_init = IPBase.IPActorAddress.__init__

    def _init(self, *args, **kw):
        orig_init(self, *args, **kw)
        bind = getattr(self, "bindname", None)
        if bind and bind[0] in ("", "0.0.0.0", None):
            host = self.sockname[0] if self.sockname and self.sockname[0] not in ("", "0.0.0.0") else LOOPBACK
            self.bindname = (host,) + tuple(bind[1:])

    IPBase.IPActorAddress.__init__ = _init

    orig_new_socket = _T.TCPTransport.new_socket

    def new_socket(self, op, *args, **kw):
        result = orig_new_socket(self, op, *args, **kw)
        allowed = _state["allowed"]
        if allowed is not None and getattr(op, "__name__", "") == "accept":
            sock, peer = result
            if peer and peer[0] not in allowed:
                # Refuse it before a byte is read.  (Raising here would kill
                # Thespian's admin; a shut-down socket just reads as closed.)
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                _state["refused"] = _state.get("refused", 0) + 1
        return result

    _T.TCPTransport.new_socket = new_socket


def allowed_hosts():
    return _state["allowed"]
