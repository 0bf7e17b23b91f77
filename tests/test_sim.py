"""Deterministic simulation tests (``ra_actors.testing``).

* ``test_seed``: a fixed list of 1,200 seeds (:data:`SEEDS`) mixing 3- and
  5-member clusters, one or two clusters per node set, and fault mixes
  weighted towards the ones that found bugs (``crash,membership``,
  ``snapshot,torn-write``); 200 of them run longer.  Every invariant runs
  online; each seed's KV history must be linearizable.  The seeds run in a
  process pool over every core once per session (:func:`sim_results`); a
  failure message carries the ``scripts/sim.py`` command that replays it.
* ``test_regression_seed``: every seed a soak ever found, with its rule test.
* ``test_deliberate_bug_is_caught``: each deliberate core bug is reported by
  at least one seed of the list.
* Determinism: a seed prints the same transcript twice, also across
  processes with different hash seeds.
* The KV history check is sharp: a shell that serves consistent reads
  locally is caught.
* Component tests of the network, the disk and the invariants.
"""
from __future__ import annotations

import multiprocessing
import os
import random
import subprocess
import sys

import pytest

from ra_actors.core.messages import MetaWritten, Query, SnapshotWritten, Written
from ra_actors.core.log import RaftLog
from ra_actors.core.types import Entry, Noop, ServerId, SnapshotMeta
from ra_actors.testing.disk import DiskConfig, NodeDisk
from ra_actors.testing.invariants import Invariants
from ra_actors.testing.network import Network, NetworkConfig
from ra_actors.testing.sim import FAULTS, Simulation, parse_faults

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 5000
LONG_STEPS = 12000

# (fault mix, weight): membership changes with crashes and snapshots with
# torn writes are where the soaks found bugs, so they get more seeds.
MIXES = (
    ("crash,membership", 3),
    ("partition,crash,membership", 2),
    ("crash,membership,snapshot,torn-write", 2),
    ("crash,snapshot,torn-write", 3),
    ("partition,crash", 1),
    ("partition,crash,torn-write", 1),
    ("partition,drop,duplicate,reorder", 1),
    ("partition,transfer,false-suspicion", 1),
    ("crash,torn-write,drop,duplicate,reorder,snapshot", 1),
    ("crash,membership,reorder,snapshot,transfer", 1),
    ("crash,wal-loss,snapshot,membership", 1),
    ("all", 2),
)


def _seed_list() -> list[tuple[int, int, int, str, int]]:
    """(seed, members, clusters, faults, steps): 1,000 seeds of STEPS and 200
    of LONG_STEPS, cycling through the weighted mixes with 3 and 5 members,
    some with two clusters sharing the nodes."""
    weighted = [mix for mix, weight in MIXES for _ in range(weight)]
    out = []
    for i in range(1200):
        mix = weighted[i % len(weighted)]
        members = 5 if (i // len(weighted)) % 2 else 3
        clusters = 2 if i % 7 == 3 else 1
        out.append((1000 + i, members, clusters, mix, STEPS if i < 1000 else LONG_STEPS))
    return out


SEEDS = _seed_list()


def replay(seed: int, members: int, clusters: int, faults: str, steps: int = STEPS, bugs: str = "") -> str:
    cmd = (f"python scripts/sim.py --seed {seed} --steps {steps} --members {members} "
           f"--clusters {clusters} --faults {faults}")
    return cmd + (f" --bugs {bugs}" if bugs else "")


def _run_seed(params: tuple) -> tuple:
    seed, members, clusters, faults, steps = params
    r = Simulation(seed, members=members, clusters=clusters, faults=faults, steps=steps).run()
    return (r.ok, r.summary(), r.violations[1:4], sorted(set(r.lincheck.values())),
            r.stats["ops_ok"], r.stats["committed"])


class _OneByOne(dict):
    """Results computed when a test asks for them (under pytest-xdist)."""

    def __missing__(self, params: tuple) -> tuple:
        return _run_seed(params)


@pytest.fixture(scope="session")
def sim_results(request) -> dict:
    """Run every ``test_seed`` case selected in this session, once, in a
    process pool over all cores (the simulator is pure Python: one seed per
    core at a time).  Under pytest-xdist every worker collects every seed
    but runs only the ones it is handed, and the workers already share the
    cores: each seed then runs in the test that asks for it."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return _OneByOne()
    selected = [tuple(item.callspec.params[k] for k in ("seed", "members", "clusters", "faults", "steps"))
                for item in request.session.items
                if getattr(item, "originalname", None) == "test_seed"]
    with multiprocessing.get_context("fork").Pool(os.cpu_count() or 1) as pool:
        results = pool.map(_run_seed, selected, chunksize=4)
    return dict(zip(selected, results))


@pytest.mark.parametrize("seed,members,clusters,faults,steps", SEEDS,
                         ids=[f"{s}-{m}x{c}-{f}-{n}" for s, m, c, f, n in SEEDS])
def test_seed(seed, members, clusters, faults, steps, sim_results):
    ok, summary, more, lincheck, ops_ok, committed = sim_results[(seed, members, clusters, faults, steps)]
    if not ok:
        pytest.fail("\n".join([summary] + more + [f"replay: {replay(seed, members, clusters, faults, steps)}"]),
                    pytrace=False)
    assert lincheck == ["linearizable"]
    assert ops_ok > 0 and committed > 0


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
    # A follower's truncating WAL write was lost and its next append spliced
    # the old log's head to the new log's tail
    # (test_log_wal.py::test_an_append_into_written_entries_must_say_it_overwrites,
    # test_core_replication.py::test_resend_write_starts_no_higher_than_the_durable_prefix).
    (243157563, 12000, 3, 1, "crash,drop,partition,wal-loss"),
    # After a node restart a follower's overwrite of its old entries, the
    # first write of its WAL's new life, was lost; the next plain append
    # was taken, and the old entry below it stood beside the new ones
    # (test_log_wal.py::test_a_first_plain_append_above_index_1_is_refused_whatever_came_before,
    # test_log_server_log.py::test_the_first_append_after_a_restart_says_it_overwrites_wherever_it_starts).
    (447919188, 20000, 3, 1, "checkpoint,crash,false-suspicion,partition,reorder,snapshot,transfer,wal-loss"),
    # The same, after a restart of the server's process only: the WAL kept
    # what the old incarnation wrote, and the new one's plain append followed
    # on from it (test_log_wal.py::test_a_restarted_writer_starts_afresh_and_its_old_life_cannot_write).
    (50936382, 3000, 3, 1, "checkpoint,crash,drop,membership,snapshot,torn-write,wal-loss"),
    (50938451, 6000, 3, 1, "checkpoint,crash,false-suspicion,membership,partition,reorder,torn-write,wal-loss"),
    # A follower's overwrite of its last entry was lost and its next append,
    # at last + 1, was taken: the old entry stood below the new ones
    # (test_log_wal.py::test_a_lost_overwrite_of_the_last_entry_is_caught_by_the_next_appends_prev_term,
    # test_log_wal_sequence.py).
    (698787393, 6000, 3, 1, "crash,duplicate,partition,reorder,wal-loss"),
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
    "ignore_sessions": ("exactly once",),
    "written_above_hole": ("ack before durable", "commit not durable"),
    "wal_checks_indexes_only": ("exactly once", "log matching", "state machine safety",
                                "leader completeness", "log rewrite"),
}

# Bugs tried together with another: a WAL that checks each write's term
# before it takes nothing above a hole, so the core's own rule against
# counting a report above a hole is only exposed with the WAL weakened.
TOGETHER_WITH = {"written_above_hole": {"wal_checks_indexes_only"}}


# Seeds known to catch a bug, tried before the CI list: a WAL that refuses a
# writer's first plain append above index 1 leaves written_above_hole few
# holes to exploit, and the first CI seed that catches it is the 1,102nd.
FIRST_CATCHES = {"written_above_hole": [(2101, 5, 1, "all", 12000)],
                 # the seed that found it (REGRESSIONS)
                 "wal_checks_indexes_only": [(698787393, 3, 1, "crash,duplicate,partition,reorder,wal-loss",
                                              6000)]}


@pytest.mark.parametrize("bug", sorted(BUG_SIGNS))
def test_deliberate_bug_is_caught(bug):
    for seed, members, clusters, faults, steps in [*FIRST_CATCHES.get(bug, ()), *SEEDS]:
        result = Simulation(seed, members=members, clusters=clusters, faults=faults, steps=steps,
                            bugs={bug, *TOGETHER_WITH.get(bug, ())}).run()
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
    for _, _, _, faults, _ in SEEDS:
        used |= parse_faults(faults)
    assert used == set(FAULTS)
    assert {m for _, m, _, _, _ in SEEDS} == {3, 5}
    assert {c for _, _, c, _, _ in SEEDS} == {1, 2}
    assert {n for _, _, _, _, n in SEEDS} == {STEPS, LONG_STEPS}
    assert len(SEEDS) >= 1000
    heavy = sum(1 for _, _, _, f, _ in SEEDS if {"crash", "membership"} <= parse_faults(f)
                or {"snapshot", "torn-write"} <= parse_faults(f))
    assert heavy >= len(SEEDS) // 2


def test_faults_actually_happen():
    """Every kind of fault the 'all' mix names is injected (within ten seeds)."""
    kinds = ("crashes", "node_crashes", "process_crashes", "partitions", "heals", "dropped",
             "duplicated", "reordered", "snapshots", "suspicions", "membership_changes",
             "transfers", "torn_batches", "wal_writes_lost", "wal_reports_lost", "checkpoints_written",
             "checkpoints_promoted", "checkpoint_restarts")
    totals: dict[str, int] = {}
    for seed in range(3, 13):
        result = Simulation(seed, members=5, clusters=2, faults="all", steps=6000).run()
        for key, value in result.stats.items():
            if isinstance(value, int):
                totals[key] = totals.get(key, 0) + value
        if all(totals.get(k, 0) > 0 for k in kinds) and totals["elections"] >= 6:
            return
    missing = [k for k in kinds if not totals.get(k)]
    pytest.fail(f"never injected in ten 'all' runs: {missing} ({totals})")


def test_members_restart_from_checkpoints_and_release_cursors_promote_them():
    """The checkpoint fault: the KV machine checkpoints every few indexes and
    releases its cursor without a state, so every snapshot is a promoted
    checkpoint; crashed members restart from their newest checkpoint and
    replay the log after it.  Every invariant and the history check hold."""
    totals: dict[str, int] = {}
    for seed in range(21, 25):
        r = Simulation(seed, members=3, faults="checkpoint,crash,partition,torn-write", steps=3000).run()
        assert r.ok, f"{r.summary()}\nreplay: {replay(seed, 3, 1, 'checkpoint,crash,partition,torn-write', 3000)}"
        for key in ("checkpoints_written", "checkpoints_promoted", "checkpoint_restarts"):
            totals[key] = totals.get(key, 0) + r.stats[key]
    assert totals["checkpoints_written"] > 0 and totals["checkpoint_restarts"] > 0
    assert totals["checkpoints_promoted"] > 0


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
    disk.log_append("u", "w", entries(3, 3, 2), overwrite=True)
    assert sync(disk) == [("w", Written(2, 3, 3))]
    rec = disk.recover("u")
    assert [(e.index, e.term) for e in rec.entries] == [(1, 1), (2, 1), (3, 2)]


def test_later_record_in_the_same_batch_wins():
    disk = NodeDisk("n1", random.Random(1))
    disk.log_append("u", "w", entries(1, 4, 1))
    disk.log_append("u", "w", entries(3, 4, 2), overwrite=True)
    assert sync(disk) == [("w", Written(1, 1, 2)), ("w", Written(2, 3, 4))]


def test_the_wal_takes_only_appends_that_follow_on_or_say_they_overwrite():
    """As the real WAL: after the overwrite of 3..4 (term 2) was lost, the
    plain append of 5 (term 2) is refused -- taking it would leave 3..4 of
    term 1 under it, a log no leader had.  A gap is refused too; a log
    restarted after a snapshot goes anywhere; after a crash the first append
    goes anywhere as an overwrite, a plain one only at index 1."""
    disk = NodeDisk("n1", random.Random(1))
    disk.log_append("u", "w", entries(1, 4, 1))
    sync(disk)
    disk.log_append("u", "w", entries(5, 5, 2))     # follows on: taken
    disk.log_append("u", "w", entries(4, 4, 2))     # inside what it wrote, not an overwrite: refused
    disk.log_append("u", "w", entries(9, 9, 2))     # a gap: refused
    assert disk.refused == 2
    disk.log_append("u", "w", entries(20, 20, 3), truncate=True)
    assert sync(disk) == [("w", Written(2, 5, 5)), ("w", Written(3, 20, 20))]
    disk.crash()
    disk.log_append("u", "w", entries(3, 3, 4))     # a new WAL life knows no writer: plain refused
    assert disk.refused == 3
    disk.log_append("u", "w", entries(2, 2, 4), overwrite=True)
    disk.log_append("v", "x", entries(1, 1, 4))     # nothing below index 1 to splice: taken
    assert sync(disk) == [("w", Written(4, 2, 2)), ("x", Written(4, 1, 1))] and disk.refused == 3


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




# ============================================================ disk machines
DISK_MACHINE_SEEDS = [(seed, faults) for seed in range(7001, 7011)
                      for faults in ("crash,snapshot,torn-write", "crash,membership,snapshot,partition")]


@pytest.mark.parametrize("seed, faults", DISK_MACHINE_SEEDS)
def test_disk_machine_seed(seed, faults):
    """The KV machine as a disk machine (ra_actors/testing/disk_kv.py):
    node crashes take unsynced commits back, restarts replay only what the
    files lack (the machine raises if an entry comes again), snapshots are
    copies of the files; every invariant and the history check hold."""
    result = Simulation(seed, faults=faults, steps=3000, disk_machine=True).run()
    assert not result.violations, (f"python scripts/sim.py --seed {seed} --faults {faults} --steps 3000 "
                                   f"--disk-machine: {result.violations[:3]}")


def test_disk_machine_faults_actually_happen():
    lost = snapshots = 0
    for seed, faults in DISK_MACHINE_SEEDS[::2]:
        sim = Simulation(seed, faults=faults, steps=3000, disk_machine=True)
        result = sim.run()
        lost += result.stats.get("machine_commits_lost", 0)
        snapshots += result.stats["snapshots"]
    assert lost > 0 and snapshots > 0, (lost, snapshots)
