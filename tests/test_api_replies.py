"""Replies are typed records (Ok, Redirect, Error, Unavailable) that map one
to one onto what the caller gets: a result, a redirect, or the
``ra_actors.errors`` class an Error's kind names."""
from __future__ import annotations

import dataclasses

import pytest

from ra_actors import api, codec, errors
from ra_actors.client.replies import error_from
from ra_actors.core.types import ERROR_KINDS, Error, Redirect, Ok, ServerId, Unavailable


def test_every_error_kind_the_core_may_send_is_one_error_class():
    assert set(api.ERROR_CLASSES) == set(ERROR_KINDS)
    for kind, cls in api.ERROR_CLASSES.items():
        assert cls.__name__ == kind and issubclass(cls, errors.RaError)


@pytest.mark.parametrize("kind", sorted(ERROR_KINDS))
def test_an_error_reply_raises_its_class_with_its_detail(kind):
    exc = error_from(Error(kind, "why it failed"))
    assert type(exc) is api.ERROR_CLASSES[kind] and str(exc) == "why it failed"


def test_a_kind_outside_the_list_is_never_looked_up():
    """A kind arrives from the network: only the declared list is consulted."""
    for kind in ("SystemExit", "KeyboardInterrupt", "RaError", "__class__", "NodeDown"):
        exc = error_from(Error(kind, "x"))
        assert type(exc) is errors.RaError and "unexpected reply" in str(exc)
    assert type(error_from(("error", "already_member"))) is errors.RaError


@pytest.mark.parametrize("reply", [Ok(None), Ok((3, 2)), Redirect(ServerId("kv", "n2")), Redirect(None),
                                   Error("NotMember", "kv@n9 is not a member"), Unavailable("starting")])
def test_replies_are_frozen_slotted_and_travel_through_the_codec(reply):
    params = type(reply).__dataclass_params__
    assert params.frozen and "__slots__" in type(reply).__dict__
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(reply, dataclasses.fields(reply)[0].name, 1)
    assert codec.unpack(codec.pack(reply)) == reply
