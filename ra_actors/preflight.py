"""Checks made before a node that joins a convention starts.

A node started with the wrong secret, or under a name another live node
already has, would otherwise start "fine" and then never be let in, or
confuse every other node (two incarnations of one name, each declaring the
other restarted).  ``start_node`` runs these checks first and raises the
error that says so.

Rules:

* **The secret.**  Each admin the node will contact first (the convention
  leader, the seeds) runs the secret's handshake alone with us: one that
  refuses it is ``AuthenticationFailed``; unreachable ones are skipped (a
  node may start while others are down).
* **The name.**  A client (same secret) asks the convention which nodes it
  knows: a node of the same name that is up and answers from another admin
  address is ``NodeNameTaken``.  One at our own address is our previous
  incarnation (if it still ran, its port would be taken); one that does
  not answer is dead.
* Both use the node's own address as their source, so that the others'
  allowed hosts apply to them as to the node.
"""
from __future__ import annotations

import time

from . import errors

__all__ = ["check_joining"]


def check_joining(name: str, host: str, port: int, admins: list, cookie_file: str, key: bytes,
                  timeout: float = 5.0) -> None:
    """Check that ``admins`` take the secret ``key`` and that no other live
    node is called ``name`` (see the module rules)."""
    from .actors.authsock import probe
    me = (host, int(port))
    admins = [tuple(a) for a in admins if tuple(a) != me]
    source = None if host in ("127.0.0.1", "localhost") else host
    reachable = []
    for admin in admins:
        verdict = probe(admin, key, min(2.0, timeout), source=source)
        if verdict == "denied":
            raise errors.AuthenticationFailed(
                f"the node at {admin[0]}:{admin[1]} refused this node's cluster secret ({cookie_file}): "
                "start every node of a convention with the same cookie file")
        if verdict == "bad":
            raise errors.AuthenticationFailed(
                f"{admin[0]}:{admin[1]} is not an ra_actors node holding this node's cluster secret ({cookie_file})")
        if verdict == "ok":
            reachable.append(admin)
    if reachable:
        _check_name(name, me, reachable, cookie_file, time.monotonic() + timeout)


def _check_name(name: str, me: tuple, admins: list, cookie_file: str, deadline: float) -> None:
    from .api import connect
    try:
        client = connect(admins, timeout=max(0.5, deadline - time.monotonic()), cookie_file=cookie_file)
    except errors.Timeout:
        return                      # no node answered: nothing to collide with
    try:
        if client.nodes().get(name) != "up" or client.node_admins().get(name) == me:
            return
        try:
            other = client.overview(name, timeout=max(0.5, min(2.0, deadline - time.monotonic())))
        except (errors.Timeout, errors.NodeDown, errors.NoSuchServer):
            return                  # listed, but gone
        admin = tuple(other.get("admin") or ())
        if admin and admin != me:
            raise errors.NodeNameTaken(f"a node named {name!r} already runs at {admin[0]}:{admin[1]} "
                                       f"(pid {other.get('pid')}): choose another name, or stop that node first")
    finally:
        client.close()
