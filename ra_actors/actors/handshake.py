"""The cluster secret's challenge-response: bytes in, bytes out.

Every TCP connection between the processes of a convention (nodes, host
actors, clients) starts with this exchange, as Erlang distribution starts
with its cookie challenge; nothing the peer sends after it is read until it
succeeded.  The accepting side speaks first::

    acceptor -> dialler   HELLO   MAGIC, nonce_a                      (40 bytes)
    dialler -> acceptor   PROOF   MAGIC, mode, nonce_d, mac_d         (73 bytes)
    acceptor -> dialler   ANSWER  1, mac_a   or   DENIED              (33 bytes)

    mac_d = HMAC-SHA256(secret, "ra-dialler" MAGIC mode nonce_a nonce_d)
    mac_a = HMAC-SHA256(secret, "ra-acceptor" MAGIC nonce_d nonce_a)

Rules:

* **Mutual, fresh, not reflectable.**  Each side proves the secret over a
  nonce the other side has just drawn (32 random bytes per connection and
  side), so a recorded proof is worth nothing on another connection; the
  two proofs carry different labels, so neither side's proof can be sent
  back to it as the other's.  Proofs are compared with
  ``hmac.compare_digest``.
* **Nothing is read before the proof.**  The acceptor reads exactly the
  proof's bytes before anything else; the dialler reads exactly the
  answer's bytes before anything else (its payload may already be on its
  way: it is the acceptor that must not read it unproven, and it does not).
* **mode** says when the acceptor answers: ``ANSWER_LATER`` in front of
  the first bytes it sends anyway (Thespian always sends an ACK first, so
  the answer costs no packet of its own), ``ANSWER_NOW`` at once (a
  dialler that sends nothing before it knows its peer: the replication
  stream, a pre-flight check).
* A wrong proof is answered ``DENIED``, so that a dialler with the wrong
  secret is told so at once instead of timing out; a peer that is not
  speaking this protocol at all (wrong MAGIC) is simply not answered.
* Pure: no sockets, no clock, no randomness (nonces are passed in).  What
  the secret does not give: confidentiality or integrity of the bytes
  after the handshake (there is no encryption); see ``docs/operations.rst``,
  "Security".
"""
from __future__ import annotations

import hashlib
import hmac

__all__ = ["MAGIC", "NONCE_BYTES", "HELLO_LEN", "PROOF_LEN", "ANSWER_LEN", "ANSWER_LATER", "ANSWER_NOW",
           "DENIED", "HandshakeError", "NotOurProtocol", "BadProof", "Denied",
           "hello", "prove", "check_proof", "could_be_proof", "answer", "check_answer"]

MAGIC = b"ra-auth\x01"          # protocol and version
NONCE_BYTES = 32
MAC_BYTES = 32
HELLO_LEN = len(MAGIC) + NONCE_BYTES                      # 40
PROOF_LEN = len(MAGIC) + 1 + NONCE_BYTES + MAC_BYTES      # 73
ANSWER_LEN = 1 + MAC_BYTES                                # 33

ANSWER_LATER = 0
ANSWER_NOW = 1
_MODES = (ANSWER_LATER, ANSWER_NOW)

_OK = 1
DENIED = bytes(ANSWER_LEN)       # status 0: "your proof is wrong"

_DIALLER = b"ra-dialler"
_ACCEPTOR = b"ra-acceptor"


class HandshakeError(Exception):
    """The handshake failed; ``str()`` says why, for the log."""


class NotOurProtocol(HandshakeError):
    """The peer's bytes are not this handshake (another program, another
    version, or garbage)."""


class BadProof(HandshakeError):
    """The peer does not hold the secret."""


class Denied(HandshakeError):
    """The acceptor says the dialler's proof is wrong: the two sides hold
    different secrets."""


def _mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes) or not key:
        raise ValueError("the cluster secret must be non-empty bytes")


def _check_nonce(nonce: bytes) -> None:
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES:
        raise ValueError(f"a nonce is {NONCE_BYTES} bytes")


def hello(nonce_a: bytes) -> bytes:
    """The acceptor's first bytes."""
    _check_nonce(nonce_a)
    return MAGIC + nonce_a


def prove(key: bytes, hello_bytes: bytes, nonce_d: bytes, mode: int = ANSWER_LATER) -> bytes:
    """The dialler's proof for the acceptor's ``hello_bytes``."""
    _check_key(key)
    _check_nonce(nonce_d)
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}")
    if len(hello_bytes) != HELLO_LEN or not hello_bytes.startswith(MAGIC):
        raise NotOurProtocol("the peer's greeting is not an ra_actors handshake")
    nonce_a = hello_bytes[len(MAGIC):]
    tag = bytes([mode])
    return MAGIC + tag + nonce_d + _mac(key, _DIALLER, MAGIC, tag, nonce_a, nonce_d)


def check_proof(key: bytes, nonce_a: bytes, proof: bytes) -> tuple[int, bytes]:
    """The acceptor's check of the dialler's ``proof``: ``(mode, nonce_d)``.
    Raises ``NotOurProtocol`` or ``BadProof``."""
    _check_key(key)
    if len(proof) != PROOF_LEN or not proof.startswith(MAGIC):
        raise NotOurProtocol("the peer did not start with an ra_actors handshake")
    at = len(MAGIC)
    mode = proof[at]
    nonce_d = proof[at + 1:at + 1 + NONCE_BYTES]
    mac_d = proof[at + 1 + NONCE_BYTES:]
    if mode not in _MODES:
        raise NotOurProtocol(f"unknown handshake mode {mode}")
    expected = _mac(key, _DIALLER, MAGIC, bytes([mode]), nonce_a, nonce_d)
    if not hmac.compare_digest(expected, mac_d):
        raise BadProof("the peer does not hold the cluster secret")
    return mode, nonce_d


def could_be_proof(prefix: bytes) -> bool:
    """False when the first bytes of a proof already show it is not one
    (so that other protocols are turned away without waiting for more)."""
    n = min(len(prefix), len(MAGIC))
    return prefix[:n] == MAGIC[:n]


def answer(key: bytes, nonce_a: bytes, nonce_d: bytes) -> bytes:
    """The acceptor's proof, once the dialler's was right."""
    _check_key(key)
    return bytes([_OK]) + _mac(key, _ACCEPTOR, MAGIC, nonce_d, nonce_a)


def check_answer(key: bytes, nonce_a: bytes, nonce_d: bytes, answer_bytes: bytes) -> None:
    """The dialler's check of the acceptor's answer.  Raises ``Denied`` (the
    acceptor refused our proof), ``BadProof`` or ``NotOurProtocol``."""
    _check_key(key)
    if len(answer_bytes) != ANSWER_LEN:
        raise NotOurProtocol("the peer's answer has the wrong length")
    if answer_bytes == DENIED:
        raise Denied("the peer refused our cluster secret")
    if answer_bytes[0] != _OK:
        raise NotOurProtocol(f"unknown handshake answer {answer_bytes[0]}")
    expected = _mac(key, _ACCEPTOR, MAGIC, nonce_d, nonce_a)
    if not hmac.compare_digest(expected, answer_bytes[1:]):
        raise BadProof("the peer does not hold the cluster secret")
