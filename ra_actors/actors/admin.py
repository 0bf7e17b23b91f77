"""The node's Thespian admin, extended with a well-known lookup service.

Thespian's ``globalName`` does not work across nodes in 4.0.1, and actor
ports are ephemeral, so nothing but the admin has a fixed address.  The node
process installs :class:`RaNodeAdmin` in place of Thespian's admin class
before the admin starts; it answers ``RaWhereIsSupervisor`` from anyone
(other nodes' supervisors, clients) with the address of the node's
``NodeSupervisor``, which registers itself on start.

If the supervisor dies outside of a shutdown, the node is dead (as an Erlang
VM whose top supervisor died): the admin kills its whole process group and
the node's keeper reaps it.
"""
from __future__ import annotations

import os
import signal

from thespian.actors import ActorSystemMessage
from thespian.system.multiprocCommon import MultiProcAdmin
from thespian.system.transport import TransmitIntent


class RaRegisterSupervisor(ActorSystemMessage):
    """Supervisor -> its own admin, once started."""

    def __init__(self, node: str, incarnation: int):
        self.node = node
        self.incarnation = incarnation


class RaWhereIsSupervisor(ActorSystemMessage):
    """Anyone -> a node's admin (its well-known host:port)."""

    def __init__(self, nonce=None):
        self.nonce = nonce


class RaSupervisorInfo:
    """Admin -> requester.  ``address`` is None while the node starts."""

    def __init__(self, node, address, incarnation, admin, nonce=None):
        self.node = node
        self.address = address
        self.incarnation = incarnation
        self.admin = admin  # (host, port)
        self.nonce = nonce

    def __repr__(self):
        return f"RaSupervisorInfo({self.node!r}, {self.address}, {self.incarnation})"


class RaNodeAdmin(MultiProcAdmin):
    def __init__(self, transport, address, capabilities, *args, **kw):
        super().__init__(transport, address, capabilities, *args, **kw)
        self._ra_sup = None
        self._ra_node = capabilities.get("ra_node")
        self._ra_inc = None
        data_dir = capabilities.get("ra_data_dir")
        if data_dir:
            try:
                with open(os.path.join(data_dir, "node.admin_pid"), "w") as f:
                    f.write(str(os.getpid()))
            except OSError:
                pass

    def _ra_admin_hostport(self):
        try:
            return tuple(self.transport.myAddress.addressDetails.sockname[:2])
        except Exception:  # pragma: no cover
            return None

    def h_RaRegisterSupervisor(self, envelope):
        self._ra_sup = envelope.sender
        self._ra_inc = envelope.message.incarnation
        return True

    def h_RaWhereIsSupervisor(self, envelope):
        info = RaSupervisorInfo(self._ra_node, self._ra_sup, self._ra_inc,
                                self._ra_admin_hostport(), envelope.message.nonce)
        self._send_intent(TransmitIntent(envelope.sender, info))
        return True

    def h_ChildActorExited(self, envelope):
        result = super().h_ChildActorExited(envelope)
        if self._ra_sup is not None and envelope.message.childAddress == self._ra_sup \
                and not self.isShuttingDown():
            # The node's top supervisor died: the node dies with it.
            os.killpg(os.getpgrp(), signal.SIGKILL)
        return result
