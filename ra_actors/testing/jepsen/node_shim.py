"""Start-up shim for the node processes of a Jepsen run (test use only).

The harness copies this file as ``sitecustomize.py`` into a directory it
puts first on the nodes' ``PYTHONPATH`` (``start_node(python_path=...)``),
so Python runs it when every node process starts; forked actors inherit
what it did.  It is never imported by the library itself and never by
client processes.  It does two things, each only when asked to:

* **Source addresses.**  With ``RA_JEPSEN_BIND_SOURCE=1``, an outgoing
  IPv4 TCP connection to a loopback address is bound, before it connects,
  to the node's own address (``THESPIAN_BASE_IPADDR``, which the node sets
  to its ``host``) when that is a loopback address other than 127.0.0.1.
  Without it Linux gives every loopback connection the source 127.0.0.1,
  so packet filters could not tell node n1's traffic from node n2's or a
  client's.  (Requested from the runtime as a netpatch option; this shim
  stands in until then.)
* **Deliberate bugs.**  With ``RA_ACTORS_UNSAFE_BUGS=a,b`` every server
  shell of the node builds its core from
  ``ra_actors.testing.bugs.core_class({"a", "b"})`` instead of the correct
  ``RaftServer`` (the runtime itself has no switch for them).

Everything is best effort: a failure here must never stop a node.
"""
from __future__ import annotations

import os


def _bind_source() -> None:
    import socket

    if getattr(socket.socket, "_ra_jepsen_patched", False):
        return
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def _maybe_bind(sock, address) -> None:
        try:
            if sock.family != socket.AF_INET or not isinstance(address, tuple):
                return
            if not str(address[0]).startswith("127."):
                return
            own = os.environ.get("THESPIAN_BASE_IPADDR", "")
            if not own.startswith("127.") or own == "127.0.0.1":
                return
            if sock.getsockname()[1] != 0:     # already bound
                return
            try:
                # Pick the port at connect time (per 4-tuple), not at bind
                # time: bind(port 0) alone would make every connection of
                # the node share one pool of ephemeral ports.
                sock.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24), 1)
            except OSError:
                pass
            sock.bind((own, 0))
        except OSError:
            pass

    def connect(self, address):
        _maybe_bind(self, address)
        return original_connect(self, address)

    def connect_ex(self, address):
        _maybe_bind(self, address)
        return original_connect_ex(self, address)

    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    socket.socket._ra_jepsen_patched = True


def _unsafe_bugs() -> None:
    names = frozenset(n.strip() for n in os.environ.get("RA_ACTORS_UNSAFE_BUGS", "").split(",")
                      if n.strip())
    if not names:
        return
    from ra_actors.shell import server as shell_server
    from ra_actors.testing.bugs import core_class

    shell_server.DEFAULT_CORE = core_class(names)


def install() -> None:
    if os.environ.get("RA_JEPSEN_BIND_SOURCE") == "1":
        try:
            _bind_source()
        except Exception:  # noqa: BLE001 - never stop a node
            pass
    try:
        _unsafe_bugs()
    except Exception:  # noqa: BLE001
        pass


if __name__ == "sitecustomize":   # only as the nodes' start-up hook
    install()
