"""Ra's ``send_msg`` options and ``reply_from`` in the pure core.

Without ``local`` a SendMsg runs on the leader only; with ``local`` it runs
on the voter on the target's node, whatever its role, and on the leader
only when no voter is there.  Bad options are an error at construction.
``reply_from`` picks the member that answers an applied command the same
way."""
from __future__ import annotations

import pytest

from core_helpers import N1, N2, N3, make_follower, make_leader, of_type, usr
from core_helpers import aer
from ra_actors import errors
from ra_actors.core import effects as fx
from ra_actors.core import messages as m
from ra_actors.core.types import ActorRef, NON_VOTER, VOTER


def _sent(effects) -> list:
    return [e for me in of_type(effects, fx.MachineEffects) for e in me.effects if isinstance(e, fx.SendMsg)]


def _follower_applies(follower, *effects) -> list:
    e2 = usr(2, 1, ("fx", "r", list(effects)))
    out = follower.handle(aer(1, N1, 1, 1, (e2,), commit=2))[1]
    return out + follower.handle(m.Written(1, 2, 2))[1]


def _leader_applies(leader, *effects) -> list:
    from core_helpers import ae_ok, sync_cmd
    leader.handle(sync_cmd(("fx", "r", list(effects)), "c1"))
    leader.handle(m.Written(1, 2, 2))
    return leader.handle(ae_ok(1, N2, 2))[1]


def test_without_local_only_the_leader_sends():
    plain = fx.SendMsg(ActorRef("a", "n2"), "hi")
    evented = fx.SendMsg(ActorRef("a", "n2"), "hi", ("ra_event",))
    assert _sent(_follower_applies(make_follower(N2), plain, evented)) == []
    assert _sent(_leader_applies(make_leader(N1), plain, evented)) == [plain, evented]


def test_with_local_the_voter_on_the_targets_node_sends_and_the_leader_does_not():
    local = fx.SendMsg(ActorRef("a", "n2"), "hi", "local")
    assert _sent(_follower_applies(make_follower(N2), local)) == [local]     # n2's member
    assert _sent(_follower_applies(make_follower(N3), local)) == []          # another node's
    assert _sent(_leader_applies(make_leader(N1), local)) == []              # n2 has a voter


def test_with_local_the_leader_sends_when_no_voter_is_on_the_targets_node_or_it_is_there():
    far = fx.SendMsg("client:n9:abc", "hi", ("local", "ra_event"))
    here = fx.SendMsg(ActorRef("a", "n1"), "hi", ("local",))
    assert _sent(_leader_applies(make_leader(N1), far, here)) == [far, here]


def test_with_local_a_non_voter_on_the_targets_node_does_not_send():
    local = fx.SendMsg(ActorRef("a", "n3"), "hi", "local")
    follower = make_follower(N3)
    follower.cluster_history[-1] = (0, {N1: VOTER, N2: VOTER, N3: NON_VOTER})
    assert _sent(_follower_applies(follower, local)) == []


def test_send_msg_options_are_checked():
    assert fx.SendMsg("client:n1:x", "m", "ra_event").options == ("ra_event",)
    assert fx.SendMsg("client:n1:x", "m", ["local", "cast", "local"]).options == ("cast", "local")
    with pytest.raises(errors.InvalidEffect, match="bogus"):
        fx.SendMsg("client:n1:x", "m", ("bogus",))
    with pytest.raises(errors.InvalidEffect, match="no meaning for a server"):
        fx.SendMsg(N2, "m", ("ra_event",))
    with pytest.raises(errors.InvalidEffect):
        fx.SendMsg(N2, "m", 7)
    assert fx.SendMsg(N2, "m", "local").options == ("local",)


# ====================================================== reply_from (Ra)
def _replies(effects) -> list:
    return of_type(effects, fx.Reply)


def _follower_applies_await(follower, reply_from) -> list:
    from ra_actors.core.types import AwaitConsensus, Entry, Usr
    e2 = Entry(2, 1, Usr(("put", "k", 1), AwaitConsensus(("h", 7), reply_from), 0))
    out = follower.handle(aer(1, N1, 1, 1, (e2,), commit=2))[1]
    return out + follower.handle(m.Written(1, 2, 2))[1]


def _leader_applies_await(leader, reply_from) -> list:
    from core_helpers import ae_ok
    from ra_actors.core.types import AwaitConsensus
    leader.handle(m.Command(("put", "k", 1), AwaitConsensus(("h", 7), reply_from)))
    leader.handle(m.Written(1, 2, 2))
    return leader.handle(ae_ok(1, N2, 2))[1]


def test_reply_from_a_member_is_sent_by_that_member_when_it_applies():
    from ra_actors.core.types import Ok
    assert _replies(_follower_applies_await(make_follower(N2), ("member", N2))) == [
        fx.Reply(("h", 7), Ok(None), N1)]
    assert _replies(_follower_applies_await(make_follower(N3), ("member", N2))) == []
    assert _replies(_leader_applies_await(make_leader(N1), ("member", N2))) == []
    # a member that is not in the cluster: the leader answers
    assert len(_replies(_leader_applies_await(make_leader(N1), ("member", ("c", "n9"))))) == 1


def test_reply_from_local_is_the_voter_on_that_node_else_the_leader():
    assert len(_replies(_follower_applies_await(make_follower(N3), ("local", "n3")))) == 1
    assert _replies(_follower_applies_await(make_follower(N2), ("local", "n3"))) == []
    assert _replies(_leader_applies_await(make_leader(N1), ("local", "n3"))) == []
    assert len(_replies(_leader_applies_await(make_leader(N1), ("local", "n9")))) == 1
    assert len(_replies(_leader_applies_await(make_leader(N1), None))) == 1
    assert _replies(_follower_applies_await(make_follower(N2), None)) == []


# ============================================================= Log effect
def test_log_effect_reads_user_commands_on_the_leader_and_runs_what_fun_returns():
    seen = []

    def fun(commands):
        seen.append(commands)
        return fx.SendMsg("client:n1:x", ("logged", tuple(commands)))

    leader = make_leader(N1)
    from core_helpers import ae_ok, sync_cmd
    leader.handle(sync_cmd(("put", "a", 1), "c0"))                   # index 2
    leader.handle(m.Written(1, 2, 2))
    leader.handle(ae_ok(1, N2, 2))
    leader.handle(sync_cmd(("fx", "r", [fx.Log((1, 2, 3, 99), fun)]), "c1"))   # index 3
    leader.handle(m.Written(1, 3, 3))
    effects = leader.handle(ae_ok(1, N2, 3))[1]
    # 1 is the noop (no user command), 99 is not in the log
    assert seen == [[("put", "a", 1), ("fx", "r", [fx.Log((1, 2, 3, 99), fun)])]]
    assert _sent(effects) == [fx.SendMsg("client:n1:x", ("logged", tuple(seen[0])))]


def test_log_effect_with_a_node_runs_on_the_voter_there():
    calls = []
    log_n2 = fx.Log((1,), lambda cmds: calls.append(cmds) or [])
    assert calls == []
    _follower_applies(make_follower(N3), fx.Log((2,), lambda cmds: calls.append(("n3", cmds)) or [], "n2"))
    _follower_applies(make_follower(N2), fx.Log((2,), lambda cmds: calls.append(("n2", cmds)) or [], "n2"))
    _leader_applies(make_leader(N1), fx.Log((2,), lambda cmds: calls.append(("n1", cmds)) or [], "n2"))
    assert [c[0] for c in calls] == ["n2"]
    assert log_n2.indexes == (1,)
    with pytest.raises(errors.InvalidEffect):
        fx.Log((0,), print)
    with pytest.raises(errors.InvalidEffect):
        fx.Log((1,), "not callable")
