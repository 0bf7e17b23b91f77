"""Exactly-once on real processes: clients that ride over failovers
(issue 15).

* The issue's scenario, in both placements: three local nodes, a
  ``machines.counter`` cluster, four threads each calling
  ``process_command(server, ("add", 1), timeout=10)`` in a loop while the
  leader's node is paused (SIGSTOP, 1.5-3 s) and a follower's node is killed
  and restarted, in turn, every 2-4 s (a majority always up): every call
  returns, no call raises, and the counter ends equal to the number of
  calls.  The issue ran 1,500 calls per thread; so does placement
  ``shared`` here (about 20 s on a 2-core machine); placement ``process``,
  four to five times slower per call, runs 300 per thread (about 45 s), so
  that each test stays under a minute and still meets several faults of
  both kinds.  ``python
  scripts/failover.py`` runs the full 1,500 (see its ``--help``).
* Pipelined commands sent while the leader's node is paused: each
  correlation answered once, the counter equal to the number sent.
* A process that dies with commands in flight, restarted with its session
  name, sends them again under their numbers: those that were applied are
  answered from the cluster's reply cache, the others applied -- each once.
* Sessions are replicated state: after every node was killed and
  restarted, a command sent again gets its first reply and is not applied
  again.
* A command sent again after its session expired (``session_timeout_ms``
  of log time) is refused ``SessionExpired``, not applied a second time.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

import ra_actors as ra
from ra_actors import errors, events as ev
from ra_actors.testing.failover import run_counter_scenario

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CALLS = 1500   # per client: enough calls to meet a pause and a kill in either placement


@pytest.mark.slow
@pytest.mark.parametrize("placement", ["process", "shared"])
def test_process_command_loops_ride_over_paused_leaders_and_restarted_followers(placement):
    result = run_counter_scenario(placement=placement, clients=4, calls=CALLS, call_timeout=10.0,
                                  seed=15)
    during = [what for t, what in result.faults if t < result.seconds]
    print(f"\n{placement}: {result.calls} calls in {result.seconds:.1f}s, slowest {result.slowest_call:.2f}s, "
          f"faults {result.faults}")
    assert any(w.startswith("pause") for w in during) and any(w.startswith("kill") for w in during), \
        f"the calls must meet both faults: {result.faults}"
    assert result.errors == []
    assert result.calls == 4 * CALLS
    assert result.final == result.calls, "every call applied exactly once"


def _counter_cluster(nodes, name="counter"):
    client = nodes.client()
    sids = [ra.ServerId(name, n) for n in nodes]
    client.start_cluster(name, "machines.counter", sids)
    return client, sids


def test_pipelined_commands_ride_over_a_paused_leader_and_are_answered_once():
    with ra.local_nodes(["n1", "n2", "n3"]) as nodes:
        client, sids = _counter_cluster(nodes)
        _r, leader = client.process_command(sids[0], ("add", 0))
        answers: dict = {}
        sent = 0
        for i in range(300):
            client.pipeline_command(leader, ("add", 1), correlation=i)
        sent += 300
        nodes.pause(leader.node)
        try:
            for i in range(300, 600):           # to the paused leader: nothing answers for a while
                client.pipeline_command(leader, ("add", 1), correlation=i)
            sent += 300
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline:
                _take(client.events(timeout=0.2), answers)
        finally:
            nodes.resume(leader.node)
        deadline = time.monotonic() + 60
        while len(answers) < sent and time.monotonic() < deadline:
            _take(client.events(timeout=1.0), answers)
        assert sorted(answers) == list(range(sent))
        value, _ = client.consistent_query(sids[0], "machines.counter:read", timeout=10)
        assert value == sent
        assert sorted(answers.values()) == list(range(1, sent + 1)), "one apply, one counter value each"


def _take(events, answers):
    for e in events:
        assert isinstance(e, ev.Applied), e
        for corr, reply in e.results:
            assert corr not in answers, f"correlation {corr} answered twice"
            answers[corr] = reply


_DYING = textwrap.dedent("""
    import json, os, sys, time
    import ra_actors as ra
    addresses, journal = json.loads(sys.argv[1]), sys.argv[2]
    client = ra.connect([tuple(a) for a in addresses])
    _members, sid = client.members(ra.ServerId("counter", "n1"))      # the leader: no redirect to follow
    entries = []
    for i in range(200):
        entries.append([i, client.next_seq(sid)])       # written down before it is sent
        client.pipeline_command(sid, ("add", 1), correlation=i)
        if i == 99:
            client.flush()
            with open(journal, "w") as f:
                json.dump({"session": client.session, "server": list(sid), "commands": entries + [
                    [j, entries[-1][1] + j - 99] for j in range(100, 200)]}, f)
            time.sleep(1.0)                              # the first 100 reach the cluster ...
            os._exit(0)                                  # ... and the process dies, answers unread
""")


def test_a_restarted_process_finishes_what_it_had_in_flight(tmp_path):
    with ra.local_nodes(["n1", "n2", "n3"]) as nodes:
        client, sids = _counter_cluster(nodes)
        journal = tmp_path / "journal.json"
        addresses = [list(nodes.addresses()[n]) for n in nodes]
        proc = subprocess.run([sys.executable, "-c", _DYING, json.dumps(addresses), str(journal)],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        before, _ = client.consistent_query(sids[0], "machines.counter:read", timeout=10)
        assert before == 100, "what the dead process had sent was applied; the rest was never sent"
        saved = json.loads(journal.read_text())

        again = nodes.client(session=saved["session"])
        server = ra.ServerId(*saved["server"])          # numbers count per server id named
        for corr, seq in saved["commands"]:             # everything without an answer, in order
            again.pipeline_command(server, ("add", 1), correlation=corr, seq=seq)
        answers: dict = {}
        deadline = time.monotonic() + 60
        while len(answers) < 200 and time.monotonic() < deadline:
            _take(again.events(timeout=1.0), answers)
        assert sorted(answers) == list(range(200))
        assert sorted(answers.values()) == list(range(1, 201)), \
            "the first 100 answered with their first replies, the others applied once"
        value, _ = again.consistent_query(sids[0], "machines.counter:read", timeout=10)
        assert value == 200
        reply, leader = again.process_command(server, ("add", 1), timeout=10)   # and it goes on
        assert reply == 201
        sessions = again.member_overview(leader)["sessions"]
        assert sessions["count"] == 1, "one session: the dead process's, resumed"
        assert sessions["oldest_idle_ms"] >= 0


def test_a_command_of_a_session_the_cluster_forgot_is_refused_not_applied_again():
    with ra.local_nodes(["n1", "n2", "n3"]) as nodes:
        client = nodes.client()
        sids = [ra.ServerId("counter", n) for n in nodes]
        client.start_cluster("counter", "machines.counter", sids, session_timeout_ms=1000)
        _r, leader = client.process_command(sids[0], ("add", 0))

        first = nodes.client(session="worker-7")
        seq = first.next_seq(leader)
        assert first.process_command(leader, ("add", 1), timeout=10) == (1, leader)
        first.close()
        # log time moves on with other clients' commands: worker-7 idles past the timeout
        until = time.monotonic() + 2.0
        while time.monotonic() < until:
            client.process_command(leader, ("add", 0), timeout=10)
            time.sleep(0.05)

        again = nodes.client(session="worker-7")
        with pytest.raises(errors.SessionExpired):
            again.process_command(leader, ("add", 1), timeout=10, seq=seq)
        value, _ = client.consistent_query(leader, "machines.counter:read", timeout=10)
        assert value == 1, "the command sent again was not applied a second time"
        # a new command of the session starts it afresh
        assert again.process_command(leader, ("add", 1), timeout=10)[0] == 2


def test_sessions_survive_a_restart_of_every_node():
    with ra.local_nodes(["n1", "n2", "n3"]) as nodes:
        client, sids = _counter_cluster(nodes)
        first = nodes.client(session="worker-3")
        seq = first.next_seq(sids[1])
        assert first.process_command(sids[1], ("add", 1), timeout=10)[0] == 1
        first.close()
        client.close()
        for n in nodes:                         # SIGKILL: only what was fsynced is left
            nodes.kill(n)
        for n in nodes:
            nodes.restart(n)
        # the process did not learn the answer: it sends the command again under its number
        again = nodes.client(session="worker-3")
        assert again.process_command(sids[1], ("add", 1), timeout=30, seq=seq)[0] == 1, "the first reply"
        value, _ = again.consistent_query(sids[0], "machines.counter:read", timeout=10)
        assert value == 1, "applied once, before the restart"
        assert again.process_command(sids[1], ("add", 1), timeout=10)[0] == 2
