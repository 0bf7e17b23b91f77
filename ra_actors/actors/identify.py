"""How Thespian names a message in its own log lines: by type and address,
never by contents.

Thespian 4.0.1 builds a description of every message it sends or receives
(``TransmitIntent.identify``, ``ReceiveEnvelope.identify``) to pass to its
debug log, whether or not that level is enabled: ``str(message)`` of a
batch of entries or of a query's result costs as much as the message is
large, on every send (measured: 3-4 % of a pipelined leader's CPU in
placement ``process``).  :func:`apply` replaces both with a description
that costs the same for any message and does not copy payloads (command
data, machine state) into log files.  Idempotent; applied in every node
process and in every client's endpoint.
"""
from __future__ import annotations

_state = {"applied": False}


def describe(kind: str, address, message) -> str:
    """``kind(address-MessageType)``: what the log lines say of a message."""
    return f"{kind}({address}-{type(message).__name__})"


def apply() -> None:
    if _state["applied"]:
        return
    _state["applied"] = True
    from thespian.system import transport

    def intent_identify(self) -> str:
        return describe("TransportIntent", self.targetAddr, self.message)

    def envelope_identify(self) -> str:
        return describe("ReceiveEnvelope", self.sender, self.message)

    transport.TransmitIntent.identify = intent_identify
    transport.ReceiveEnvelope.identify = envelope_identify
