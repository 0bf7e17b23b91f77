"""Machine version upgrades in the pure core, as Ra's
``machine_upgrade_strategy``: ``quorum`` (the default here) switches at a
new leader's noop; ``all`` waits until every member reported (``InfoRpc``
/ ``InfoReply``) that its code runs the new version.  And Ra's guards for
both: pre-votes only for candidates whose code the voter can follow, and a
member whose code is too old applies nothing past the switch."""
from __future__ import annotations

import pytest

from core_helpers import (N1, N2, N3, KvMachine, VersionedKv, ae_ok, aer, make_follower, make_leader, new_server,
                          noop, of_type, rpcs, usr)
from ra_actors.core import effects as fx
from ra_actors.core import messages as m
from ra_actors.core.types import InvalidConfig, Noop


class V1(VersionedKv):
    """Code that runs version 1 (and 0), without a machine ``tick``: the
    leader ticks only while it has work (``wants_tick``)."""

    tick = None

    def __init__(self, **kw):
        super().__init__(**kw)
        self.v0.tick = None


class V0(KvMachine):
    tick = None


def _noops(effects) -> list[int]:
    return [e.command.machine_version for a in of_type(effects, fx.LogAppend) for e in a.entries
            if isinstance(e.command, Noop)]


def _upgrades(srv) -> list:
    return [c for _i, _t, c in srv.machine_state["applied"] if isinstance(c, fx.MachineVersion)]


def _commit_last(srv, peers=(N2, N3)) -> None:
    t, idx = srv.current_term, srv.log.last_index
    srv.handle(m.Written(t, idx, idx))
    for p in peers:
        srv.handle(ae_ok(t, p, idx, t))


# ================================================================== quorum
def test_quorum_a_new_leader_switches_at_once_and_asks_nobody():
    leader = make_leader(N1, machine=V1())
    assert leader.log.get(1).command == Noop(1) and leader.machine_version == 1
    assert _upgrades(leader) == [fx.MachineVersion(0, 1)]
    leader.handle(m.Tick(1000))
    assert not leader.wants_tick()


def test_an_unknown_strategy_is_invalid_config():
    with pytest.raises(InvalidConfig, match="machine_upgrade_strategy"):
        new_server(N1, machine_upgrade_strategy="some")


# ===================================================================== all
def test_all_the_leader_keeps_the_effective_version_and_asks_every_member():
    """Ra 2.16's ``all``: the noop carries the effective version; info_rpc
    goes to every peer."""
    leader = new_server(N1, machine=V1(), machine_upgrade_strategy="all")
    leader.handle(m.TriggerElection())
    leader.handle(m.PreVoteResult(0, N2, leader.pre_vote_token, True))
    leader.handle(m.MetaWritten(1, N1))
    _role, effects = leader.handle(m.RequestVoteResult(1, N2, True))
    assert _noops(effects) == [0]
    assert rpcs(effects, m.InfoRpc) == [(N2, m.InfoRpc(1, N1)), (N3, m.InfoRpc(1, N1))]


def test_all_switches_once_every_member_runs_the_new_version():
    leader = make_leader(N1, machine=V1(), machine_upgrade_strategy="all")
    assert leader.machine_version == 0 and leader.wants_tick()
    _role, effects = leader.handle(m.InfoReply(1, N2, 1))
    assert _noops(effects) == []                                  # N3 has not answered
    _role, effects = leader.handle(m.InfoReply(1, N3, 1))
    assert _noops(effects) == [1]
    _commit_last(leader)
    assert leader.machine_version == 1 and _upgrades(leader) == [fx.MachineVersion(0, 1)]
    assert leader.handle(m.InfoReply(1, N3, 1))[1] == []          # nothing twice
    assert not leader.wants_tick()


def test_all_waits_for_a_member_with_older_code_and_asks_it_again_at_every_tick():
    leader = make_leader(N1, machine=V1(), machine_upgrade_strategy="all")
    leader.handle(m.InfoReply(1, N2, 1))
    assert _noops(leader.handle(m.InfoReply(1, N3, 0))[1]) == []
    _commit_last(leader)
    assert leader.machine_version == 0 and leader.wants_tick()
    _role, effects = leader.handle(m.Tick(1000))
    assert rpcs(effects, m.InfoRpc) == [(N3, m.InfoRpc(1, N1))]   # only the one that is behind
    _role, effects = leader.handle(m.InfoReply(1, N3, 1))         # restarted with newer code
    assert _noops(effects) == [1]


def test_all_switches_to_the_newest_version_every_member_runs():
    class V2(V1):
        def version(self):
            return 2

        def which_module(self, version):
            return self if version >= 1 else self.v0

    leader = make_leader(N1, machine=V2(), machine_upgrade_strategy="all")
    leader.handle(m.InfoReply(1, N2, 2))
    assert _noops(leader.handle(m.InfoReply(1, N3, 1))[1]) == [1]


def test_all_a_single_member_switches_at_once():
    leader = make_leader(N1, members=(N1,), machine=V1(), machine_upgrade_strategy="all")
    assert leader.machine_version == 1


def test_all_a_leader_whose_code_is_not_newer_asks_nobody():
    leader = make_leader(N1, machine=V0(), machine_upgrade_strategy="all")
    assert not leader.wants_tick()
    assert rpcs(leader.handle(m.Tick(1000))[1], m.InfoRpc) == []


def test_every_member_answers_info_with_the_version_its_code_runs():
    follower = make_follower(N2, machine=VersionedKv())
    assert follower.handle(m.InfoRpc(1, N1)) == ("follower", [fx.SendRpc(N1, m.InfoReply(1, N2, 1))])
    old = make_follower(N3)
    assert old.handle(m.InfoRpc(1, N1))[1] == [fx.SendRpc(N1, m.InfoReply(1, N3, 0))]


def test_members_info_shows_the_versions_the_leader_learned():
    leader = make_leader(N1, machine=V1(), machine_upgrade_strategy="all")
    leader.handle(m.InfoReply(1, N2, 0))
    info = leader.members_info()
    assert (info[N1]["machine_version"], info[N2]["machine_version"], info[N3]["machine_version"]) == (1, 0, None)


# =============================================================== the guards
def test_pre_vote_is_refused_to_a_candidate_whose_code_is_newer_than_ours():
    """Ra: granted when the candidate's version is our effective one, or
    newer but one our code runs; so under ``quorum`` a new version wins
    only with a quorum of voters that run it."""
    old = make_follower(N2)
    old.handle(m.ServerDown(N1))
    newer = m.PreVoteRpc(1, N3, 7, 1, 1, machine_version=1)
    assert old.handle(newer)[1] == [fx.SendRpc(N3, m.PreVoteResult(1, N2, 7, False))]
    upgraded = make_follower(N2, machine=VersionedKv(), entries=(noop(1, 1, version=0),))
    upgraded.handle(m.ServerDown(N1))
    assert upgraded.handle(newer)[1] == [fx.SendRpc(N3, m.PreVoteResult(1, N2, 7, True))]


def test_a_member_whose_code_cannot_run_the_new_version_applies_nothing_past_the_switch():
    """Ra: an older member stops applying at the noop of a newer version
    until it is restarted with code that runs it; it still replicates."""
    entries = (noop(1, 1), usr(2, 1, ("put", "a", 1)), noop(3, 2, version=1), usr(4, 2, ("put", "b", 2)))
    old = make_follower(N2, term=2, entries=entries)
    assert (old.commit_index, old.last_applied, old.machine_version) == (4, 2, 0)
    assert old.machine_state["kv"] == {"a": 1} and not _upgrades(old)
    _role, effects = old.handle(aer(2, N1, 4, 2, (usr(5, 2, ("put", "c", 3)),), commit=5))
    assert old.last_applied == 2 and old.log.last_index == 5 and of_type(effects, fx.LogAppend)
