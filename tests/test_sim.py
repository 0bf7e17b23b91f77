"""Deterministic simulation tests (``ra_actors.testing``).

* ``test_seed``: a fixed list of 240 seeds mixing 3- and 5-member clusters,
  one or two clusters per node set, and fault mixes (partitions, crashes
  with torn writes, message loss / duplication / reordering, membership
  changes, leadership transfers, snapshots, false suspicions).  Every
  invariant runs online; each seed's KV history must be linearizable.  A
  failure message carries the ``scripts/sim.py`` command that replays it.
* ``test_deliberate_bug_is_caught``: each deliberate core bug is reported by
  at least one seed of the list.
* Determinism: a seed prints the same transcript twice, also across
  processes with different hash seeds.
* The KV history check is sharp: a shell that serves consistent reads
  locally is caught.
* Component tests of the network, the disk and the invariants.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from ra_actors.core import effects as fx
from ra_actors.core.messages import MetaWritten, Query, SnapshotWritten, Written
from ra_actors.core.log import RaftLog
from ra_actors.core.types import Entry, Noop, ServerId, SnapshotMeta
from ra_actors.testing.disk import DiskConfig, NodeDisk
from ra_actors.testing.invariants import Invariants
from ra_actors.testing.network import Network, NetworkConfig
from ra_actors.testing.sim import FAULTS, Simulation, parse_faults

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 5000

MIXES = (
    "partition,crash",
    "partition,crash,torn-write",
    "partition,drop,duplicate,reorder",
    "crash,torn-write,snapshot",
    "partition,crash,membership",
    "partition,transfer,false-suspicion",
    "crash,torn-write,drop,duplicate,reorder,snapshot",
    "all",
)


def _seed_list() -> list[tuple[int, int, int, str]]:
    """(seed, members, clusters, faults) for 240 seeds: every mix with 3 and
    5 members, some with two clusters sharing the nodes."""
    out = []
    for i in range(240):
        mix = MIXES[i % len(MIXES)]
        members = 5 if (i // len(MIXES)) % 2 else 3
        clusters = 2 if i % 7 == 3 else 1
        out.append((1000 + i, members, clusters, mix))
    return out


SEEDS = _seed_list()


def replay(seed: int, members: int, clusters: int, faults: str, bugs: str = "") -> str:
    cmd = (f"python scripts/sim.py --seed {seed} --steps {STEPS} --members {members} "
           f"--clusters {clusters} --faults {faults}")
    return cmd + (f" --bugs {bugs}" if bugs else "")


@pytest.mark.parametrize("seed,members,clusters,faults", SEEDS,
                         ids=[f"{s}-{m}x{c}-{f}" for s, m, c, f in SEEDS])
def test_seed(seed, members, clusters, faults):
    result = Simulation(seed, members=members, clusters=clusters, faults=faults, steps=STEPS).run()
    if not result.ok:
        pytest.fail("\n".join([result.summary()] + result.violations[1:4] +
                               [f"replay: {replay(seed, members, clusters, faults)}"]), pytrace=False)
    assert result.lincheck and set(result.lincheck.values()) == {"linearizable"}
    assert result.stats["ops_ok"] > 0 and result.stats["committed"] > 0


# Seeds that once found a violation, with the parameters that found it
# (``scripts/soak.py`` picked them).  Each must pass for good; the core unit
# test named beside it checks the rule that was broken.
REGRESSIONS = (
    # A joiner elected from a member list that was never in any log
    # (test_core_membership.py::test_joining_server_does_not_campaign_when_its_leader_dies).
    (877187950, 20000, 3, 1, "crash,membership,partition,torn-write"),
    (209396330, 20000, 3, 1, "crash,membership,partition,torn-write"),
    # An older snapshot landed after a received one and replaced it
    # (test_core_snapshot.py::test_no_release_cursor_while_a_received_snapshot_is_being_written,
    # test_log_snapshot.py::test_an_older_snapshot_never_replaces_a_newer_one).
    (496897026, 20000, 5, 1, "crash,drop,duplicate,false-suspicion,partition,reorder,snapshot,torn-write,"
                             "transfer"),
    # A snapshot transfer that never ended (test_core_snapshot.py::
    # test_snapshot_transfer_ends_when_the_follower_acknowledges_the_leaders_first_index).
    (855337442, 12000, 5, 1, "crash,duplicate,membership,partition,reorder,snapshot,transfer"),
    (867606193, 6000, 3, 1, "crash,membership,reorder,snapshot,torn-write"),
    (777336805, 6000, 5, 1, "crash,drop,false-suspicion,membership,partition,reorder,snapshot,torn-write,transfer"),
    (874408424, 12000, 5, 2, "drop,partition,reorder,snapshot,torn-write,transfer"),
)


@pytest.mark.parametrize("seed,steps,members,clusters,faults", REGRESSIONS,
                         ids=[str(r[0]) for r in REGRESSIONS])
def test_regression_seed(seed, steps, members, clusters, faults):
    result = Simulation(seed, members=members, clusters=clusters, faults=faults, steps=steps).run()
    replay_cmd = (f"python scripts/sim.py --seed {seed} --steps {steps} --members {members} "
                  f"--clusters {clusters} --faults {faults}")
    if not result.ok:
        pytest.fail("\n".join([result.summary()] + result.violations[1:4] + [f"replay: {replay_cmd}"]),
                    pytrace=False)
    assert "not linearizable" not in set(result.lincheck.values())


# The first violation of a run with a deliberate bug must be one of these.
BUG_SIGNS = {
    "commit_undurable": ("commit not durable",),
    "vote_before_durable": ("vote before durable",),
    "truncate_matching": ("log rewrite", "log matching", "leader completeness",
                          "state machine safety", "commit not durable"),
}


@pytest.mark.parametrize("bug", sorted(BUG_SIGNS))
def test_deliberate_bug_is_caught(bug):
    for seed, members, clusters, faults in SEEDS:
        result = Simulation(seed, members=members, clusters=clusters, faults=faults, steps=STEPS,
                            bugs={bug}).run()
        if not result.ok and any(sign in result.violations[0] for sign in BUG_SIGNS[bug]):
            return
    pytest.fail(f"no seed of the list catches the deliberate bug {bug}")


class _StaleReadShell(Simulation):
    """A broken shell: consistent queries are served as local queries (any
    member, no ReadIndex round), so partitioned members answer stale reads."""

    def send_to_server(self, owner, sid, msg):
        if isinstance(msg, Query) and msg.kind == "consistent":
            msg = Query("local", msg.fun, msg.from_)
        super().send_to_server(owner, sid, msg)

    def _ev_client(self, owner, kind, payload):
        if kind == "reply":
            to, reply, leader = payload
            # A local query answers ((last_applied, term), value): keep the value.
            if (isinstance(reply, tuple) and len(reply) == 2 and reply[0] == "ok"
                    and isinstance(reply[1], tuple) and len(reply[1]) == 2
                    and isinstance(reply[1][0], tuple)):
                payload = (to, ("ok", reply[1][1]), leader)
        super()._ev_client(owner, kind, payload)


def test_stale_reads_are_caught_by_the_history_check():
    for seed in range(10):
        result = _StaleReadShell(seed, faults="partition", steps=4000).run()
        if not result.ok:
            assert "linearizability" in result.violations[0], result.violations[0]
            return
    pytest.fail("stale local reads went unnoticed on ten partitioned seeds")


def test_the_seed_list_covers_every_fault_and_both_sizes():
    used = set()
    for _, _, _, faults in SEEDS:
        used |= parse_faults(faults)
    assert used == set(FAULTS)
    assert {m for _, m, _, _ in SEEDS} == {3, 5}
    assert {c for _, _, c, _ in SEEDS} == {1, 2}
    assert len(SEEDS) >= 200


def test_faults_actually_happen():
    totals: dict[str, int] = {}
    for seed in (3, 4, 5):
        result = Simulation(seed, members=5, clusters=2, faults="all", steps=6000).run()
        for key, value in result.stats.items():
            if isinstance(value, int):
                totals[key] = totals.get(key, 0) + value
    for key in ("crashes", "node_crashes", "process_crashes", "partitions", "heals", "dropped",
                "duplicated", "reordered", "snapshots", "suspicions", "membership_changes",
                "transfers", "torn_batches"):
        assert totals[key] > 0, f"no {key} in three 'all' runs: {totals}"
    assert totals["elections"] >= 6


# ----------------------------------------------------------- determinism
def test_same_seed_same_transcript():
    a = Simulation(21, members=5, clusters=2, faults="all", steps=3000, trace=True).run()
    b = Simulation(21, members=5, clusters=2, faults="all", steps=3000, trace=True).run()
    assert a.transcript == b.transcript
    assert a.histories == b.histories
    assert a.stats == b.stats
    c = Simulation(22, members=5, clusters=2, faults="all", steps=3000, trace=True).run()
    assert c.transcript != a.transcript


def test_script_output_is_identical_across_processes():
    outputs = []
    for hash_seed in ("0", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "sim.py"), "--seed", "5",
                               "--steps", "2000", "--members", "5", "--faults", "all"],
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        outputs.append((proc.returncode, proc.stdout))
    assert outputs[0] == outputs[1]
    assert outputs[0][1].splitlines()[-1].startswith("seed 5: ")


def test_unknown_effect_raises():
    sim = Simulation(1, steps=10)
    sim._bootstrap()
    slot = next(iter(sim.slots.values()))

    class Mystery:
        pass

    with pytest.raises(TypeError, match="cannot carry out"):
        sim._run_effects(slot, [Mystery()], 0)


def test_parse_faults():
    assert parse_faults("partition, crash") == {"partition", "crash"}
    assert parse_faults("all") == set(FAULTS)
    assert parse_faults("none") == frozenset()
    with pytest.raises(ValueError):
        parse_faults("partition,meteor")


# ---------------------------------------------------------------- network
def test_partition_drops_both_ways_and_heal_restores():
    net = Network(random.Random(1), NetworkConfig(remote_delay=(1, 5)), faulty_nodes=["a", "b", "c"])
    net.partition([["a"], ["b", "c"]])
    assert net.plan("a", "b", 0) == [] and net.plan("c", "a", 0) == []
    assert len(net.plan("b", "c", 0)) == 1
    net.heal()
    assert len(net.plan("a", "b", 0)) == 1


def test_one_way_cut_and_in_flight_loss():
    net = Network(random.Random(2), NetworkConfig(), faulty_nodes=["a", "b"])
    assert net.plan("a", "b", 0)            # sent before the cut...
    net.cut("a", "b")
    assert not net.deliverable("a", "b")    # ...is lost on arrival
    assert net.deliverable("b", "a") and net.plan("b", "a", 0)
    net.isolate("b", ["a", "b"])
    assert not net.reachable("b", "a") and net.reachable("b", "b")


def test_links_are_fifo_without_reordering():
    net = Network(random.Random(3), NetworkConfig(remote_delay=(1, 50)), faulty_nodes=["a", "b"])
    arrivals = [net.plan("a", "b", t)[0] for t in range(100)]
    assert arrivals == sorted(arrivals)


def test_reordering_and_duplication_and_loss():
    net = Network(random.Random(4), NetworkConfig(remote_delay=(1, 5), reorder=0.5, duplicate=0.3,
                                                  drop=0.2), faulty_nodes=["a", "b"])
    plans = [net.plan("a", "b", t) for t in range(400)]
    firsts = [p[0] for p in plans if p]
    assert firsts != sorted(firsts)
    assert any(len(p) == 2 for p in plans) and any(not p for p in plans)
    assert net.dropped and net.duplicated and net.reordered


def test_client_links_are_reliable_and_local_messages_never_lost():
    net = Network(random.Random(5), NetworkConfig(drop=1.0, duplicate=1.0), faulty_nodes=["a", "b"])
    assert len(net.plan("clients", "a", 0)) == 1
    assert len(net.plan("a", "a", 0)) == 1
    assert net.plan("a", "b", 0) == []


# ------------------------------------------------------------------- disk
def entries(first: int, last: int, term: int) -> tuple:
    return tuple(Entry(i, term, Noop()) for i in range(first, last + 1))


def sync(disk: NodeDisk) -> list:
    """Run the WAL until idle; returns the notifications."""
    notes = []
    duration = disk.start_batch()
    while duration is not None:
        batch_notes, duration = disk.finish_batch()
        notes.extend(batch_notes)
    return notes


def test_wal_batches_and_notifies_per_term_run():
    disk = NodeDisk("n1", random.Random(1))
    assert disk.log_append("u1", "w1", entries(1, 3, 1)) is not None   # wakes the WAL
    assert disk.log_append("u1", "w1", entries(4, 5, 2)) is None       # already awake
    disk.log_append("u2", "w2", entries(1, 2, 1))
    assert not disk.durable_covers("u1", 1, 1)
    notes = sync(disk)
    assert notes == [("w1", Written(1, 1, 3)), ("w1", Written(2, 4, 5)), ("w2", Written(1, 1, 2))]
    assert disk.durable_covers("u1", 5, 2) and not disk.durable_covers("u1", 5, 1)
    assert disk.batches == 1


def test_overwrite_drops_everything_above():
    disk = NodeDisk("n1", random.Random(1))
    disk.log_append("u", "w", entries(1, 5, 1))
    sync(disk)
    disk.log_append("u", "w", entries(3, 3, 2))
    assert sync(disk) == [("w", Written(2, 3, 3))]
    rec = disk.recover("u")
    assert [(e.index, e.term) for e in rec.entries] == [(1, 1), (2, 1), (3, 2)]


def test_later_record_in_the_same_batch_wins():
    disk = NodeDisk("n1", random.Random(1))
    disk.log_append("u", "w", entries(1, 4, 1))
    disk.log_append("u", "w", entries(3, 4, 2))
    assert sync(disk) == [("w", Written(1, 1, 2)), ("w", Written(2, 3, 4))]


def test_crash_loses_unsynced_writes():
    disk = NodeDisk("n1", random.Random(1), DiskConfig())
    disk.log_append("u", "w", entries(1, 2, 1))
    sync(disk)
    disk.log_append("u", "w", entries(3, 4, 1))   # pending, never taken by the WAL
    disk.persist_meta("u", "w", 3, ServerId("s", "n1"), 0)
    epoch = disk.epoch
    report = disk.crash()
    assert report["pending_lost"] == 2 and disk.epoch == epoch + 1
    rec = disk.recover("u")
    assert [e.index for e in rec.entries] == [1, 2]
    assert disk.finish_meta() is None and disk.start_batch() is None


def test_torn_write_leaves_a_prefix_of_the_batch():
    prefixes = set()
    for seed in range(40):
        disk = NodeDisk("n1", random.Random(seed), DiskConfig(torn_writes=True))
        disk.log_append("u", "w", entries(1, 6, 1))
        disk.start_batch()                # in flight: the crash hits the fsync
        disk.crash()
        got = [e.index for e in disk.recover("u").entries]
        assert got == list(range(1, len(got) + 1))   # always a prefix
        prefixes.add(len(got))
    assert len(prefixes) > 3 and 0 in prefixes


def test_crash_without_torn_writes_is_all_or_nothing():
    kept = set()
    for seed in range(20):
        disk = NodeDisk("n1", random.Random(seed), DiskConfig(torn_writes=False))
        disk.log_append("u", "w", entries(1, 4, 1))
        disk.start_batch()
        disk.crash()
        kept.add(len(disk.recover("u").entries))
    assert kept == {0, 4}


def test_meta_and_snapshot_writes_complete_in_order():
    disk = NodeDisk("n1", random.Random(1))
    sid = ServerId("s", "n1")
    d1 = disk.persist_meta("u", "w", 1, None, 0)
    d2 = disk.persist_meta("u", "w", 2, sid, 0)
    assert d2 >= d1
    assert disk.durable_meta("u") == (0, None)
    assert disk.finish_meta() == ("w", MetaWritten(1, None))
    assert disk.finish_meta() == ("w", MetaWritten(2, sid))
    assert disk.durable_meta("u") == (2, sid)
    meta = SnapshotMeta(10, 2, ((sid, "voter"),))
    disk.write_snapshot("u", "w", meta, b"0123456789abc", 0)
    assert disk.read_snapshot_chunk("u", meta, 1, 5) is None     # not durable yet
    assert disk.finish_snapshot() == ("w", SnapshotWritten(meta))
    assert disk.read_snapshot_chunk("u", meta, 1, 5) == (b"01234", False)
    assert disk.read_snapshot_chunk("u", meta, 3, 5) == (b"abc", True)
    assert disk.read_snapshot_chunk("u", meta, 4, 5) is None
    assert disk.durable_covers("u", 10, 99)   # covered by the snapshot


def test_an_older_snapshot_landing_last_does_not_replace_a_newer_one():
    """As the real store: snapshot writes finish in order, and one older than
    the durable snapshot is discarded (the log below the newer one may be
    gone already)."""
    disk = NodeDisk("n1", random.Random(1))
    sid = ServerId("s", "n1")
    newer, older = SnapshotMeta(10, 2, ((sid, "voter"),)), SnapshotMeta(7, 2, ((sid, "voter"),))
    disk.write_snapshot("u", "w", newer, b"new", 0)
    disk.write_snapshot("u", "w", older, b"old", 0)
    disk.finish_snapshot()
    disk.finish_snapshot()
    assert disk.durable_snapshot_index("u") == 10
    assert disk.recover("u").snapshot == (newer, b"new")


def test_recovery_after_snapshot_and_truncation():
    disk = NodeDisk("n1", random.Random(1))
    sid = ServerId("s", "n1")
    disk.log_append("u", "w", entries(1, 8, 1))
    sync(disk)
    meta = SnapshotMeta(5, 1, ((sid, "voter"),))
    disk.write_snapshot("u", "w", meta, b"state", 0)
    disk.finish_snapshot()
    disk.truncate_below("u", "w", 5)
    sync(disk)
    rec = disk.recover("u")
    assert rec.snapshot == (meta, b"state")
    assert [e.index for e in rec.entries] == [6, 7, 8]
    # A received snapshot whose point we did not hold discards the rest.
    meta2 = SnapshotMeta(20, 3, ((sid, "voter"),))
    disk.write_snapshot("u", "w", meta2, b"new", 0)
    disk.finish_snapshot()
    disk.truncate_below("u", "w", 20, keep_above=False)
    sync(disk)
    assert disk.recover("u").entries == ()


def test_entries_after_a_gap_are_not_recoverable():
    disk = NodeDisk("n1", random.Random(1))
    disk.log_append("u", "w", entries(1, 2, 1) + entries(5, 6, 1))
    sync(disk)
    assert [e.index for e in disk.recover("u").entries] == [1, 2]
    assert disk.durable_covers("u", 2, 1) and not disk.durable_covers("u", 6, 1)


def test_pending_and_delete():
    disk = NodeDisk("n1", random.Random(1))
    disk.log_append("u", "w", entries(1, 2, 1))
    assert disk.has_pending("u") and not disk.has_pending("v")
    disk.delete("u")
    assert not disk.has_pending("u")
    sync(disk)
    assert disk.recover("u").entries == ()


# ------------------------------------------------------------- invariants
def test_invariants_detect_two_leaders_in_a_term():
    inv = Invariants()
    inv.on_leader("c", ServerId("c", "n1"), 3, RaftLog())
    inv.on_leader("c", ServerId("c", "n1"), 3, RaftLog())
    assert inv.ok
    inv.on_leader("c", ServerId("c", "n2"), 3, RaftLog())
    assert "election safety" in inv.violations[0]


def test_invariants_detect_divergent_applies_and_missing_committed_entries():
    inv = Invariants()
    a, b = ServerId("c", "n1"), ServerId("c", "n2")
    log = RaftLog(0, 0, entries(1, 3, 1))
    inv.on_commit("c", a, log, 0, 3)
    inv.on_leader("c", b, 2, RaftLog(0, 0, entries(1, 2, 1)))
    assert "leader completeness" in inv.violations[0]
    inv = Invariants()
    inv.on_apply("c", a, 1, 1, ("write", "k", 1), None)
    inv.on_apply("c", b, 1, 1, ("write", "k", 2), None)
    assert "state machine safety" in inv.violations[0]


def test_invariants_detect_rewrite_and_undurable_acks():
    inv = Invariants()
    sid = ServerId("c", "n1")
    inv.on_log_append("c", sid, entries(4, 5, 2), commit_before=3)
    assert inv.ok
    inv.on_log_append("c", sid, entries(3, 3, 2), commit_before=3)
    assert "log rewrite" in inv.violations[0]
    inv = Invariants()
    inv.on_vote_granted(sid, ServerId("c", "n2"), 4, (3, None))
    inv.on_append_ack(sid, ServerId("c", "n2"), 7, 2, covered=False)
    assert "vote before durable" in inv.violations[0] and "ack before durable" in inv.violations[1]


def test_effect_handlers_cover_every_server_effect():
    sim = Simulation(1, steps=10)
    server_effects = {getattr(fx, n) for n in dir(fx)
                      if isinstance(getattr(fx, n), type) and getattr(fx, n).__module__ == fx.__name__}
    machine_side = set(fx.MACHINE_EFFECTS) | set(fx.BUILTIN_COMMANDS)
    assert server_effects - machine_side == set(sim._handlers)
