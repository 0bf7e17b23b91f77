"""The shell: the one interpreter of the core's effects (``ra_actors.shell``),
driven here through in-memory twins of its port and store."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from core_helpers import MEMBERS3, N1, N2, N3, AuxKv, KvMachine, config, sync_cmd
from ra_actors.core import effects as fx
from ra_actors.core import messages as m
from ra_actors.core.server import RaftServer
from ra_actors.core.types import ServerId
from ra_actors.shell.server import (MACHINE_EFFECT_HANDLERS, SERVER_EFFECTS, ElectionWakeup, QueryWaitWakeup,
                                    ServerShell, TickWakeup, validate_settings)
from ra_actors.testing.memory import MemoryStore, RecordingPort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
X = ServerId("watched", "n9")
Y = ServerId("other", "n8")


def _shell(machine=None, core_factory=RaftServer, **cfg):
    port, store = RecordingPort(seed=1), MemoryStore()
    shell = ServerShell(port, core_factory)
    shell.recover(config(N1, MEMBERS3, **cfg), 1, store, machine or KvMachine(), {"tick_ms": 100})
    shell.start()
    return shell, port, store


def _elect(shell, port):
    """Make N1 leader: pre-vote and vote from N2 (meta is durable at once)."""
    shell.deliver(m.TriggerElection())
    shell.deliver(m.PreVoteResult(0, N2, shell.core.pre_vote_token, True))
    shell.deliver_rpcs((m.RequestVoteResult(1, N2, True),))
    assert shell.core.role == "leader"


# ================================================================ vocabulary
def test_the_shell_handles_exactly_the_cores_closed_effect_vocabulary():
    """Every record the core may emit belongs to one vocabulary, and the
    shell has exactly one handler per member of each: an effect added to
    the core without a handler fails here, not in production."""
    defined = {obj for obj in vars(fx).values()
               if isinstance(obj, type) and obj.__module__ == fx.__name__}
    assert defined == set(fx.SERVER_EFFECTS) | set(fx.MACHINE_EFFECTS) | set(fx.BUILTIN_COMMANDS)
    assert SERVER_EFFECTS == set(fx.SERVER_EFFECTS)
    assert MACHINE_EFFECT_HANDLERS == set(fx.MACHINE_EFFECTS)


def test_an_effect_without_a_handler_crashes_the_server_and_nothing_after_it_runs():
    class Mystery:
        pass

    class OddCore(RaftServer):
        def handle(self, msg):
            return self.role, [fx.SendRpc(N2, m.HeartbeatRpc(1, N1, 1)), Mystery(),
                               fx.SendRpc(N3, m.HeartbeatRpc(1, N1, 1))]

    shell, port, _ = _shell(core_factory=OddCore)
    shell.deliver(m.Tick(0))
    (reason, exc), = port.of("crash")
    assert "no handler for effect Mystery" in reason and isinstance(exc, TypeError)
    assert port.of("send_rpcs") == [] and not shell.running
    shell.deliver(m.Tick(1))                     # a crashed server takes nothing more
    assert len(port.of("crash")) == 1


# ==================================================================== rounds
def test_one_round_sends_one_batch_per_peer_and_one_wal_write():
    """Everything one input produced leaves together: one RPC batch per
    peer and one WAL write, whatever the number of commands."""
    shell, port, _ = _shell()
    _elect(shell, port)
    port.calls.clear()
    shell.deliver(m.Commands((sync_cmd(("put", "a", 1), "c1"), sync_cmd(("put", "b", 2), "c2"))))
    (appends,), = port.of("wal_write")
    assert [e.index for batch in appends for e in batch] == [2, 3]
    assert sorted(to for to, _ in port.of("send_rpcs")) == [N2, N3]
    for _to, rpcs in port.of("send_rpcs"):
        assert [len(r.entries) for r in rpcs] == [2]


def test_a_server_that_leaves_first_sends_what_its_round_produced():
    """A removed leader hands over with TimeoutNowRpc in the same round as
    its StopServer: the RPC leaves before the port is told to exit, and no
    effect after the exit runs."""
    timeout_now = m.TimeoutNowRpc(1, N1)

    class LeavingCore(RaftServer):
        def handle(self, msg):
            return "stopped", [fx.SendRpc(N2, timeout_now), fx.StopServer("removed"),
                               fx.SendRpc(N3, timeout_now)]

    shell, port, _ = _shell(core_factory=LeavingCore)
    port.calls.clear()
    shell.deliver(m.Tick(0))
    assert [name for name, _ in port.calls if name in ("send_rpcs", "exit")] == ["send_rpcs", "exit"]
    assert port.of("send_rpcs") == [(N2, (timeout_now,))] and port.of("exit") == [("removed",)]


# ==================================================================== timers
def test_a_stale_election_wakeup_is_ignored():
    """A wakeup cannot be cancelled on every port: a timer re-armed since
    carries a newer epoch and only that one counts."""
    shell, port, _ = _shell()
    shell.deliver(m.TriggerElection())              # pre-vote, election timer armed
    shell.deliver(m.ElectionTimeout())              # a second pre-vote round re-arms it
    (_, first), (_, second) = [c for c in port.of("wakeup") if isinstance(c[1], ElectionWakeup)][-2:]
    port.calls.clear()
    shell.on_wakeup(first)
    assert port.of("send_rpcs") == []
    shell.on_wakeup(second)
    assert sorted(to for to, _ in port.of("send_rpcs")) == [N2, N3]      # pre-vote again


def test_election_delays_come_from_the_settings_and_the_ports_random_source():
    shell, port, _ = _shell()
    shell.deliver(m.TriggerElection())
    delay, _ = [c for c in port.of("wakeup") if isinstance(c[1], ElectionWakeup)][-1]
    lo, hi = validate_settings(None)["election_timeout_ms"]
    assert lo <= delay <= hi and isinstance(delay, int)


def test_unknown_settings_are_refused_naming_the_known_ones():
    import pytest
    with pytest.raises(ValueError, match="unknown server settings \\['tick'\\]; known: "):
        validate_settings({"tick": 5})


# ========================================================== machine monitors
def test_a_down_becomes_a_command_on_the_leader_only():
    """The machine monitors two processes as leader; the exit of one is
    appended as a ``Down`` command.  Leadership lost, the other monitor
    ends, and a late report of its exit is no command (the core decides:
    ``MachineEvent``)."""
    machine = KvMachine(enter_effects={"leader": [fx.Monitor("process", X), fx.Monitor("process", Y)]})
    shell, port, _ = _shell(machine=machine)
    _elect(shell, port)
    (_, ref_x), (_, ref_y) = port.of("watch")[-2:]
    port.calls.clear()
    shell.on_watch_down(ref_x, "noproc")
    (appends,), = port.of("wal_write")
    assert appends[0][0].command.data == fx.Down(X, "noproc")

    shell.deliver_rpcs((m.AppendEntriesRpc(5, N2, 0, 0, 0, ()),))   # a newer leader: N1 follows
    assert shell.core.role == "follower" and port.of("unwatch") == [(Y, ref_y)]
    port.calls.clear()
    shell.on_watch_down(ref_y, "noproc")
    assert port.of("wal_write") == []


# ======================================================================== aux
def test_an_aux_effect_is_handed_back_to_the_core_and_what_handle_aux_returns_runs():
    """Ra's ``{aux, Cmd}``: when the effect comes up, the machine's
    handle_aux runs as a cast in the member's role, and its effects run
    next (a leader-only SendMsg: on the leader)."""
    hi = fx.SendMsg("proc-1", "hi")
    machine = AuxKv(enter_effects={"leader": [fx.Aux(("fx", [hi])), fx.Aux(("inc",))]})
    shell, port, _ = _shell(machine=machine)
    _elect(shell, port)
    assert ("leader", "cast", ("fx", [hi])) in machine.aux_calls
    assert port.of("send_message") == [("proc-1", "hi")]
    assert shell.core.aux_state["n"] == 1


def test_a_follower_of_an_aux_machine_ticks_and_its_handler_gets_the_ticks():
    machine = AuxKv()
    shell, port, _ = _shell(machine=machine)
    assert shell.core.role == "follower"
    ticks = [p for _d, p in port.of("wakeup") if isinstance(p, TickWakeup)]
    assert len(ticks) == 1
    shell.on_wakeup(ticks[0])
    assert ("follower", "cast", fx.AuxTick()) in machine.aux_calls
    assert len([p for _d, p in port.of("wakeup") if isinstance(p, TickWakeup)]) == 2   # and ticks on
    plain, plain_port, _ = _shell()
    assert [p for _d, p in plain_port.of("wakeup") if isinstance(p, TickWakeup)] == []


def test_a_query_waiting_for_its_condition_is_answered_timeout_when_its_wait_runs_out():
    shell, port, _ = _shell()
    shell.deliver(m.Query("local", lambda state: state, "q", condition=(5, 1)))
    shell.limit_query_wait(300, "q")
    ((delay, wakeup),) = [c for c in port.of("wakeup") if isinstance(c[1], QueryWaitWakeup)]
    assert delay == 300 and port.of("reply") == []
    shell.on_wakeup(wakeup)
    ((to, reply, _leader),) = port.of("reply")
    assert to == "q" and reply.kind == "Timeout"


def test_a_failing_aux_cast_is_logged_and_the_server_goes_on():
    machine = AuxKv(enter_effects={"leader": [fx.Aux(("boom",))]})
    shell, port, _ = _shell(machine=machine)
    _elect(shell, port)
    assert any("handle_aux failed on the cast ('boom',)" in text for (text,) in port.of("log"))
    assert shell.running and port.of("crash") == []


# ==================================================================== layers
def test_the_shell_and_the_simulator_import_without_thespian():
    """The shell is the layer between the pure core and the runtimes: it and
    the simulator that drives it must not need Thespian."""
    code = textwrap.dedent("""
        import sys
        class NoThespian:
            def find_spec(self, name, path=None, target=None):
                if name == "thespian" or name.startswith("thespian."):
                    raise ImportError("thespian is not importable here")
                return None
        sys.meta_path.insert(0, NoThespian())
        import ra_actors.shell, ra_actors.testing.sim
        from ra_actors.testing.sim import Simulation
        assert Simulation(5, steps=300).run().ok
        assert not any(m == "thespian" or m.startswith("thespian.") for m in sys.modules)
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
