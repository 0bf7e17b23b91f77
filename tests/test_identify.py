"""Thespian's log descriptions of messages name their type and address and
never format their contents (ra_actors.actors.identify)."""
from thespian.system.transport import ReceiveEnvelope, TransmitIntent

from ra_actors.actors import identify


class Secret:
    """A payload that records being formatted."""

    formatted = 0

    def __str__(self):
        Secret.formatted += 1
        return "the contents"

    __repr__ = __str__


def test_a_sent_message_is_described_by_type_and_target_without_its_contents():
    identify.apply()
    intent = TransmitIntent("ActorAddr-(T|:1234)", Secret())
    text = intent.identify()
    assert text == "TransportIntent(ActorAddr-(T|:1234)-Secret)"
    assert Secret.formatted == 0 and "contents" not in str(intent)


def test_a_received_message_is_described_by_type_and_sender_without_its_contents():
    identify.apply()
    envelope = ReceiveEnvelope("ActorAddr-(T|:99)", Secret())
    assert str(envelope) == "ReceiveEnvelope(ActorAddr-(T|:99)-Secret)"
    assert Secret.formatted == 0


def test_applying_twice_changes_nothing():
    identify.apply()
    first = TransmitIntent.identify
    identify.apply()
    assert TransmitIntent.identify is first
