"""Client commands in the pure core: reply modes, redirects and rejections,
low-priority batching (Raft §8 "client interaction", Ra's pipeline protocol)."""
from __future__ import annotations

from core_helpers import (
    N1, N2, N3, aer, ae_ok, make_follower, make_leader, new_server, send, sync_cmd,
)
from ra_actors.core.types import Ok, Redirect  # noqa: E402
from ra_actors.core import effects as fx
from ra_actors.core import messages as m
from ra_actors.core.types import AfterLogAppend, AwaitConsensus, Entry, NoReply, NotifyReply, Usr


def _entry(index, cmd, term=1):
    return Entry(index, term, Usr(cmd.data, cmd.reply_mode, cmd.ts))


def _notify(data, corr, client):
    return m.Command(data, NotifyReply(corr, client))


def test_sync_command_answered_once_applied_on_leader():
    """Raft §8: the leader responds to the client after the entry is
    committed and applied (Ra await_consensus), naming itself as leader."""
    srv = make_leader(N1)
    cmd = sync_cmd(("put", "a", 1), "caller")
    e2 = _entry(2, cmd)
    assert srv.handle(cmd) == ("leader", [
        fx.LogAppend((e2,)),
        send(N2, aer(1, N1, 1, 1, (e2,), commit=1)),
        send(N3, aer(1, N1, 1, 1, (e2,), commit=1)),
    ])
    assert srv.handle(m.Written(1, 2, 2)) == ("leader", [])
    assert srv.handle(ae_ok(1, N3, 2)) == ("leader", [
        fx.Reply("caller", Ok(None), N1),
        fx.PersistLastApplied(2),
        send(N2, aer(1, N1, 2, 1, (), commit=2)),
        send(N3, aer(1, N1, 2, 1, (), commit=2)),
    ])


def test_pipelined_commands_answered_by_one_applied_event_per_client_per_batch():
    """Ra pipeline protocol (ra-inventory §3): notifications are gathered per
    client during one apply batch and sent as one Applied event, in apply
    order, after the batch."""
    srv = make_leader(N1)
    cmds = (_notify(("put", "a", 1), "c-a", "cl1"), _notify(("put", "b", 2), "c-b", "cl2"),
            _notify(("put", "a", 3), "c-a2", "cl1"))
    srv.handle(m.Commands(cmds))
    srv.handle(m.Written(1, 2, 4))
    assert srv.handle(ae_ok(1, N2, 4)) == ("leader", [
        fx.PersistLastApplied(4),
        send(N2, aer(1, N1, 4, 1, (), commit=4)),
        send(N3, aer(1, N1, 4, 1, (), commit=4)),
        fx.Applied("cl1", N1, (("c-a", None), ("c-a2", 1))),
        fx.Applied("cl2", N1, (("c-b", None),)),
    ])
    # A later batch gets its own event.
    srv.handle(_notify(("get", "a"), "c-get", "cl1"))
    srv.handle(m.Written(1, 5, 5))
    role, effects = srv.handle(ae_ok(1, N2, 5))
    assert [e for e in effects if isinstance(e, fx.Applied)] == [fx.Applied("cl1", N1, (("c-get", 3),))]


def test_no_reply_result_is_left_out_of_applied_events():
    """Ra: '$ra_no_reply' suppresses the notification too."""
    srv = make_leader(N1)
    srv.handle(m.Commands((_notify(("noreply",), 1, "cl"), _notify(("put", "x", 1), 2, "cl"))))
    srv.handle(m.Written(1, 2, 3))
    role, effects = srv.handle(ae_ok(1, N2, 3))
    assert effects[-1] == fx.Applied("cl", N1, ((2, None),))
    assert len([e for e in effects if isinstance(e, fx.Applied)]) == 1


def test_follower_that_knows_the_leader_rejects_or_redirects_every_reply_mode():
    """Raft §8: a follower redirects clients to the leader it knows; Ra: a
    pipelined command is rejected (not_leader, leader, correlation), a
    no-reply command is forwarded to the leader."""
    srv = make_follower(N2)
    notify = _notify(("put", "a", 1), 7, "cl")
    assert srv.handle(notify) == ("follower", [fx.Rejected("cl", N2, N1, 7)])
    assert srv.handle(sync_cmd(("put", "a", 1), "caller")) == (
        "follower", [fx.Reply("caller", Redirect(N1), N1)])
    fire = m.Command(("put", "a", 1), NoReply())
    assert srv.handle(fire) == ("follower", [fx.ForwardCommand(N1, fire)])
    assert srv.handle(m.Command(("put", "a", 1), AfterLogAppend("ala"))) == (
        "follower", [fx.Reply("ala", Redirect(N1), N1)])
    assert srv.log.last_index == 1


def test_follower_without_a_leader_drops_pipelined_and_no_reply_commands():
    """Ra pipeline protocol: with no known leader a notify command is
    dropped silently (the client times out and resends) and a no-reply
    command is dropped; a sync caller is told not_leader with no leader."""
    srv = make_follower(N2)
    srv.handle(m.ServerDown(N1))
    assert srv.handle(_notify(("put", "a", 1), 7, "cl")) == ("follower", [])
    assert srv.handle(m.Command(("put", "a", 1), NoReply())) == ("follower", [])
    assert srv.handle(sync_cmd(("put", "a", 1), "caller")) == (
        "follower", [fx.Reply("caller", Redirect(None), None)])


def test_candidate_drops_pipelined_commands():
    """Ra pipeline protocol: in candidate/pre_vote the leader is unknown, so
    pipelined commands are dropped, not rejected."""
    srv = new_server(N1)
    srv.handle(m.TriggerElection())
    assert srv.handle(m.Commands((_notify(("put", "a", 1), 1, "cl"),))) == ("pre_vote", [])
    srv.handle(m.PreVoteResult(0, N2, 1, True))
    assert srv.handle(_notify(("put", "a", 1), 2, "cl")) == ("candidate", [])


def test_after_log_append_is_answered_on_append_not_on_apply():
    """Ra after_log_append reply mode: the caller gets (index, term) as soon
    as the leader appended the command; nothing more once it is applied."""
    srv = make_leader(N1)
    cmd = m.Command(("put", "a", 1), AfterLogAppend("ala"))
    e2 = _entry(2, cmd)
    assert srv.handle(cmd) == ("leader", [
        fx.LogAppend((e2,)),
        fx.Reply("ala", Ok((2, 1)), N1),
        send(N2, aer(1, N1, 1, 1, (e2,), commit=1)),
        send(N3, aer(1, N1, 1, 1, (e2,), commit=1)),
    ])
    srv.handle(m.Written(1, 2, 2))
    role, effects = srv.handle(ae_ok(1, N2, 2))
    assert not [e for e in effects if isinstance(e, fx.Reply)]
    assert srv.last_applied == 2


def test_low_priority_commands_are_flushed_in_bounded_batches():
    """Ra low-priority commands: queued and appended
    low_priority_flush_size at a time (one batch per message handled), while
    normal-priority commands are appended at once and may overtake them."""
    srv = make_leader(N1, low_priority_flush_size=2)
    lows = tuple(m.Command(("put", f"l{i}", i), NoReply(), priority="low") for i in range(5))
    normal = m.Command(("put", "n", 0), NoReply())
    e_n = _entry(2, normal)
    l2, l3 = _entry(3, lows[0]), _entry(4, lows[1])
    assert srv.handle(m.Commands(lows + (normal,))) == ("leader", [
        fx.LogAppend((e_n,)),
        send(N2, aer(1, N1, 1, 1, (e_n,), commit=1)),
        send(N3, aer(1, N1, 1, 1, (e_n,), commit=1)),
        fx.LogAppend((l2, l3)),
        send(N2, aer(1, N1, 2, 1, (l2, l3), commit=1)),
        send(N3, aer(1, N1, 2, 1, (l2, l3), commit=1)),
    ])
    l4, l5 = _entry(5, lows[2]), _entry(6, lows[3])
    assert srv.handle(m.Tick(1000)) == ("leader", [
        fx.LogAppend((l4, l5)),
        send(N2, aer(1, N1, 4, 1, (l4, l5), commit=1)),
        send(N3, aer(1, N1, 4, 1, (l4, l5), commit=1)),
    ])
    l6 = _entry(7, lows[4])
    # Any message handled by the leader flushes the next batch.
    assert srv.handle(m.Members("who")) == ("leader", [
        fx.Reply("who", Ok(((N1, N2, N3), N1)), N1),
        fx.LogAppend((l6,)),
        send(N2, aer(1, N1, 6, 1, (l6,), commit=1)),
        send(N3, aer(1, N1, 6, 1, (l6,), commit=1)),
    ])
    assert srv.low_queue == []


def test_queued_low_priority_commands_are_rejected_when_leader_steps_down():
    """Raft §5.1 (leader steps down on a higher term) with Ra's low-priority
    queue: commands not yet appended are answered not_leader, not lost."""
    srv = make_leader(N1, low_priority_flush_size=1)
    lows = (m.Command(("put", "a", 1), AwaitConsensus("x"), priority="low"),
            m.Command(("put", "b", 2), AwaitConsensus("y"), priority="low"),
            m.Command(("put", "c", 3), NotifyReply(3, "cl"), priority="low"))
    srv.handle(m.Commands(lows))                      # only the first is appended
    assert srv.handle(ae_ok(2, N2, 0, 0)) == ("follower", [
        fx.PersistMeta(2, None),
        fx.Reply("y", Redirect(None), None),
        fx.RoleChanged("follower"),
        fx.LeaderChanged(None, 2),
        fx.SetElectionTimer("long"),
    ])
