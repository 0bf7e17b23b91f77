"""The cluster secret's challenge-response (ra_actors.actors.handshake),
as bytes: who can prove what, and what a recorded exchange is worth."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ra_actors.actors import handshake as hs

KEY = b"k" * 32
OTHER = b"o" * 32
NA, ND = bytes(range(32)), bytes(range(32, 64))      # acceptor's and dialler's nonces


def exchange(dialler_key: bytes, acceptor_key: bytes, mode: int = hs.ANSWER_LATER):
    """One whole handshake: (what the acceptor concluded, the answer the
    dialler got, the dialler's verdict)."""
    greeting = hs.hello(NA)
    proof = hs.prove(dialler_key, greeting, ND, mode)
    try:
        got_mode, nonce_d = hs.check_proof(acceptor_key, NA, proof)
    except hs.BadProof:
        answer = hs.DENIED
        accepted = False
    else:
        assert (got_mode, nonce_d) == (mode, ND)
        answer = hs.answer(acceptor_key, NA, nonce_d)
        accepted = True
    try:
        hs.check_answer(dialler_key, NA, ND, answer)
        verdict = "ok"
    except hs.Denied:
        verdict = "denied"
    except hs.BadProof:
        verdict = "bad"
    return accepted, answer, verdict


def test_the_same_secret_on_both_sides_succeeds_in_either_mode():
    for mode in (hs.ANSWER_LATER, hs.ANSWER_NOW):
        accepted, _answer, verdict = exchange(KEY, KEY, mode)
        assert accepted and verdict == "ok"


def test_a_dialler_with_another_secret_is_refused_and_told_so():
    accepted, answer, verdict = exchange(OTHER, KEY)
    assert not accepted and answer == hs.DENIED and verdict == "denied"


def test_the_sizes_are_fixed():
    greeting = hs.hello(NA)
    proof = hs.prove(KEY, greeting, ND)
    assert (len(greeting), len(proof), len(hs.answer(KEY, NA, ND))) == (hs.HELLO_LEN, hs.PROOF_LEN, hs.ANSWER_LEN)


def test_an_acceptor_without_the_secret_cannot_fake_an_answer():
    """An impostor acceptor gets a correct proof from a real dialler, but
    cannot answer it: the answer is a proof over the dialler's nonce."""
    proof = hs.prove(KEY, hs.hello(NA), ND)
    nonce_d = proof[len(hs.MAGIC) + 1:len(hs.MAGIC) + 1 + hs.NONCE_BYTES]     # readable by anyone
    assert nonce_d == ND
    with pytest.raises(hs.BadProof):
        hs.check_answer(KEY, NA, ND, hs.answer(OTHER, NA, nonce_d))


def test_a_recorded_proof_is_worthless_on_another_connection():
    """The acceptor draws a fresh nonce per connection: a proof recorded on
    one connection does not check against another's nonce."""
    recorded = hs.prove(KEY, hs.hello(NA), ND)
    fresh = bytes(reversed(NA))
    with pytest.raises(hs.BadProof):
        hs.check_proof(KEY, fresh, recorded)


def test_a_proof_cannot_be_reflected_as_an_answer_or_back():
    """Each side's MAC has its own label: an acceptor's answer sent back as
    a dialler's proof (or the other way round) does not check."""
    answer = hs.answer(KEY, NA, ND)
    reflected = hs.MAGIC + bytes([hs.ANSWER_LATER]) + ND + answer[1:]
    with pytest.raises(hs.BadProof):
        hs.check_proof(KEY, NA, reflected)
    proof = hs.prove(KEY, hs.hello(NA), ND)
    with pytest.raises(hs.BadProof):
        hs.check_answer(KEY, NA, ND, b"\x01" + proof[-32:])


def test_the_mode_is_part_of_the_proof():
    proof = bytearray(hs.prove(KEY, hs.hello(NA), ND, hs.ANSWER_LATER))
    proof[len(hs.MAGIC)] = hs.ANSWER_NOW
    with pytest.raises(hs.BadProof):
        hs.check_proof(KEY, NA, bytes(proof))


def test_bytes_of_another_protocol_are_not_our_protocol():
    pickle_frame = b"52>" + b"\x80\x04" + b"x" * 68
    with pytest.raises(hs.NotOurProtocol):
        hs.check_proof(KEY, NA, pickle_frame[:hs.PROOF_LEN])
    with pytest.raises(hs.NotOurProtocol):
        hs.prove(KEY, b"HTTP/1.1 200 OK\r\n" + b"x" * 23, ND)
    with pytest.raises(hs.NotOurProtocol):
        hs.check_answer(KEY, NA, ND, b"\x07" + b"x" * 32)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        hs.prove(b"", hs.hello(NA), ND)
    with pytest.raises(ValueError):
        hs.hello(b"short")
    with pytest.raises(ValueError):
        hs.prove(KEY, hs.hello(NA), ND, mode=7)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=hs.PROOF_LEN, max_size=hs.PROOF_LEN))
def test_random_bytes_never_pass_as_a_proof(data):
    """Random proofs are refused with a HandshakeError, never anything else."""
    with pytest.raises(hs.HandshakeError):
        hs.check_proof(KEY, NA, data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2 * hs.PROOF_LEN))
def test_any_bytes_give_a_handshake_error_or_a_proof(data):
    try:
        hs.check_proof(KEY, NA, data)
    except hs.HandshakeError:
        return
    raise AssertionError("random bytes passed as a proof")
