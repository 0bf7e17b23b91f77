"""Tests of the linearizability checker and the history tools.

The checker must agree with the published verdicts of all 102 Jepsen etcd
histories (``../shared/data/jepsen-etcd`` beside the clone, or the directory
named by ``RA_JEPSEN_ETCD_DIR``).  Missing data is a failure, not a skip: a
checker that is never compared against known verdicts proves nothing.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
# The package is not necessarily installed in the environment running the
# tests; make the clone itself importable, as ``python -m pytest`` would.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ra_actors.testing.history import (  # noqa: E402
    HistoryError, HistoryRecorder, pair_operations, parse_lines, read_history, write_history,
)
from ra_actors.testing.lincheck import (  # noqa: E402
    LINEARIZABLE, NOT_LINEARIZABLE, UNKNOWN, check_file, check_history,
)


def jepsen_dir() -> Path:
    override = os.environ.get("RA_JEPSEN_ETCD_DIR")
    if override:
        return Path(override)
    return REPO.parent / "shared" / "data" / "jepsen-etcd"


def load_verdicts() -> dict[str, bool]:
    directory = jepsen_dir()
    table = directory / "verdicts.tsv"
    assert table.is_file(), (
        f"Jepsen etcd histories not found at {directory} "
        f"(set RA_JEPSEN_ETCD_DIR or put shared/data beside the clone)")
    verdicts: dict[str, bool] = {}
    for line in table.read_text().splitlines()[1:]:
        if line.strip():
            name, value = line.split("\t")
            verdicts[name] = {"true": True, "false": False}[value.strip()]
    return verdicts


class H:
    """Builds a history by hand; time is the event's position."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def _add(self, process: Any, type: str, f: str, value: Any, key: Any) -> "H":
        event: dict[str, Any] = {"process": process, "type": type, "f": f}
        if key is not None:
            event["key"] = key
        event["value"] = value
        event["time"] = len(self.events)
        self.events.append(event)
        return self

    def invoke(self, p: Any, f: str, value: Any = None, key: Any = None) -> "H":
        return self._add(p, "invoke", f, value, key)

    def ok(self, p: Any, f: str, value: Any = None, key: Any = None) -> "H":
        return self._add(p, "ok", f, value, key)

    def fail(self, p: Any, f: str, value: Any = None, key: Any = None) -> "H":
        return self._add(p, "fail", f, value, key)

    def info(self, p: Any, f: str, value: Any = None, key: Any = None) -> "H":
        return self._add(p, "info", f, value, key)

    # Sequential (non-overlapping) operations.
    def write(self, p: Any, value: Any, key: Any = None) -> "H":
        return self.invoke(p, "write", value, key).ok(p, "write", value, key)

    def read(self, p: Any, value: Any, key: Any = None) -> "H":
        return self.invoke(p, "read", None, key).ok(p, "read", value, key)

    def cas(self, p: Any, old: Any, new: Any, outcome: str = "ok", key: Any = None) -> "H":
        self.invoke(p, "cas", [old, new], key)
        return self._add(p, outcome, "cas", [old, new], key)

    def verdict(self, **kwargs: Any) -> str:
        return check_history(self.events, **kwargs).verdict


# ---------------------------------------------------------------------------
# The Jepsen etcd corpus
# ---------------------------------------------------------------------------

def test_agrees_with_all_jepsen_etcd_verdicts() -> None:
    verdicts = load_verdicts()
    directory = jepsen_dir()
    assert len(verdicts) == 102
    assert sum(verdicts.values()) == 23
    assert sorted(p.name for p in directory.glob("*.jsonl")) == sorted(verdicts)
    mismatches = []
    for name, expected in sorted(verdicts.items()):
        result = check_file(directory / name)
        want = LINEARIZABLE if expected else NOT_LINEARIZABLE
        if result.verdict != want:
            mismatches.append(f"{name}: got {result.verdict}, expected {want}")
        if not expected:
            assert result.explanation and "key 'x'" in result.explanation
    assert not mismatches, "\n".join(mismatches)


def test_cli_on_jepsen_corpus() -> None:
    verdicts = load_verdicts()
    directory = jepsen_dir()
    files = [str(directory / name) for name in sorted(verdicts)]
    proc = run_cli(*files)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert len(lines) == len(files)
    for path, line in zip(files, lines):
        expected = "linearizable" if verdicts[Path(path).name] else "not linearizable"
        assert line == f"{path}: {expected}"


def test_tight_time_limit_gives_unknown_not_a_wrong_answer() -> None:
    # Whatever the budget, the checker may only answer the truth or unknown.
    directory = jepsen_dir()
    for name, expected in sorted(load_verdicts().items())[:20]:
        result = check_file(directory / name, max_steps=200)
        want = LINEARIZABLE if expected else NOT_LINEARIZABLE
        assert result.verdict in (want, UNKNOWN)


# ---------------------------------------------------------------------------
# Hand-written histories
# ---------------------------------------------------------------------------

def test_empty_history_is_linearizable() -> None:
    assert check_history([]).verdict == LINEARIZABLE


def test_sequential_write_then_read() -> None:
    assert H().write(1, 5).read(2, 5).verdict() == LINEARIZABLE
    assert H().write(1, 5).read(2, 6).verdict() == NOT_LINEARIZABLE


def test_initial_value_is_null() -> None:
    assert H().read(1, None).verdict() == LINEARIZABLE
    assert H().read(1, 0).verdict() == NOT_LINEARIZABLE


def test_stale_read() -> None:
    h = H().write(1, 1).write(1, 2).read(2, 1)
    result = check_history(h.events)
    assert result.verdict == NOT_LINEARIZABLE
    assert "p2 read 1 ok" in result.explanation


def test_lost_write() -> None:
    assert H().write(1, 7).read(2, None).verdict() == NOT_LINEARIZABLE


def test_read_concurrent_with_write_sees_old_or_new() -> None:
    for seen in (None, 1):
        h = H().invoke(1, "write", 1).invoke(2, "read").ok(2, "read", seen).ok(1, "write", 1)
        assert h.verdict() == LINEARIZABLE
    h = H().invoke(1, "write", 1).invoke(2, "read").ok(2, "read", 2).ok(1, "write", 1)
    assert h.verdict() == NOT_LINEARIZABLE


def test_concurrent_overlapping_writes() -> None:
    def overlapping() -> H:
        return (H().invoke(1, "write", 1).invoke(2, "write", 2)
                .ok(2, "write", 2).ok(1, "write", 1))

    # Either order is possible ...
    assert overlapping().read(3, 1).read(3, 1).verdict() == LINEARIZABLE
    assert overlapping().read(3, 2).read(4, 2).verdict() == LINEARIZABLE
    # ... but only one order: the value cannot flip back afterwards.
    assert overlapping().read(3, 1).read(3, 2).verdict() == NOT_LINEARIZABLE
    assert overlapping().read(3, 2).read(4, 1).verdict() == NOT_LINEARIZABLE


def test_read_overlapping_two_writes_can_not_see_both_orders() -> None:
    # Two reads overlapping the writes may see 1 then 2, but not 2 then 1
    # once the first read has returned before the second starts.
    h = (H().invoke(1, "write", 1).invoke(2, "write", 2)
         .read(3, 1).read(3, 2).ok(1, "write", 1).ok(2, "write", 2))
    assert h.verdict() == LINEARIZABLE
    h = (H().invoke(1, "write", 1).invoke(2, "write", 2)
         .read(3, 1).read(3, 2).read(3, 1).ok(1, "write", 1).ok(2, "write", 2))
    assert h.verdict() == NOT_LINEARIZABLE


def test_info_write_may_take_effect_late() -> None:
    h = (H().invoke(1, "write", 1).info(1, "write", None)
         .read(2, None).read(2, None).read(2, 1).read(3, 1))
    assert h.verdict() == LINEARIZABLE
    # Once it has been seen, it cannot be un-seen.
    assert h.read(2, None).verdict() == NOT_LINEARIZABLE


def test_info_write_may_never_take_effect() -> None:
    h = H().write(2, 0).invoke(1, "write", 1).info(1, "write").read(2, 0).read(3, 0)
    assert h.verdict() == LINEARIZABLE


def test_info_write_cannot_take_effect_before_its_invoke() -> None:
    h = H().read(2, 1).invoke(1, "write", 1).info(1, "write")
    assert h.verdict() == NOT_LINEARIZABLE


def test_invoke_without_completion_is_info() -> None:
    h = H().invoke(1, "write", 1).read(2, None).read(2, 1)
    assert h.verdict() == LINEARIZABLE
    h = H().invoke(1, "write", 1).read(2, None).read(2, 1).read(2, None)
    assert h.verdict() == NOT_LINEARIZABLE


def test_reinvoke_by_same_process_leaves_earlier_call_unresolved() -> None:
    h = H().invoke(1, "write", 1).invoke(1, "write", 2).ok(1, "write", 2).read(2, 1)
    ops = pair_operations(h.events)
    assert [op.type for op in ops] == ["info", "ok", "ok"]
    assert h.verdict() == LINEARIZABLE


def test_info_write_may_take_effect_once_only() -> None:
    h = (H().write(2, 0).invoke(1, "write", 1).info(1, "write")
         .read(2, 1).write(3, 0).read(2, 0).read(2, 1))
    assert h.verdict() == NOT_LINEARIZABLE


def test_failed_cas_did_not_happen() -> None:
    assert H().write(1, 1).cas(2, 1, 2, "fail").read(3, 1).verdict() == LINEARIZABLE
    assert H().write(1, 1).cas(2, 1, 2, "fail").read(3, 2).verdict() == NOT_LINEARIZABLE


def test_successful_cas() -> None:
    assert H().write(1, 1).cas(2, 1, 2).read(3, 2).verdict() == LINEARIZABLE
    assert H().write(1, 1).cas(2, 0, 2).verdict() == NOT_LINEARIZABLE
    assert H().write(1, 1).cas(2, 1, 2).read(3, 1).verdict() == NOT_LINEARIZABLE
    assert H().cas(1, None, 3).read(2, 3).verdict() == LINEARIZABLE


def test_info_cas() -> None:
    def base() -> H:
        return H().write(1, 1).invoke(2, "cas", [1, 2]).info(2, "cas")

    assert base().read(3, 1).read(3, 2).verdict() == LINEARIZABLE
    assert base().read(3, 1).read(3, 1).verdict() == LINEARIZABLE
    assert base().read(3, 2).read(3, 1).verdict() == NOT_LINEARIZABLE
    # An unresolved cas whose old value never holds cannot have taken effect.
    h = H().write(1, 1).invoke(2, "cas", [5, 2]).info(2, "cas").read(3, 2)
    assert h.verdict() == NOT_LINEARIZABLE


def test_failed_and_unresolved_reads_are_ignored() -> None:
    h = (H().write(1, 1).invoke(2, "read").fail(2, "read")
         .invoke(3, "read").info(3, "read").read(2, 1))
    assert h.verdict() == LINEARIZABLE


def test_values_compare_as_json() -> None:
    assert H().write(1, [1, {"a": 2}]).read(2, [1, {"a": 2}]).verdict() == LINEARIZABLE
    assert H().write(1, [1, 2]).cas(2, [1, 2], "x").read(2, "x").verdict() == LINEARIZABLE
    assert H().write(1, [1, 2]).read(2, [2, 1]).verdict() == NOT_LINEARIZABLE


def test_keys_are_checked_independently() -> None:
    h = (H().invoke(1, "write", 1, key="x").invoke(2, "write", 9, key="y")
         .ok(1, "write", 1, key="x").ok(2, "write", 9, key="y")
         .read(3, 1, key="x").read(4, 9, key="y").read(3, None, key="z"))
    result = check_history(h.events)
    assert result.verdict == LINEARIZABLE
    assert len(result.keys) == 3
    # Reading x's value from y is wrong even though x holds it.
    h.read(4, 1, key="y")
    result = check_history(h.events)
    assert result.verdict == NOT_LINEARIZABLE
    assert result.key("x").verdict == LINEARIZABLE
    assert result.key("z").verdict == LINEARIZABLE
    assert result.key("y").verdict == NOT_LINEARIZABLE
    assert "key 'y'" in result.explanation and "key 'x'" not in result.explanation
    assert [op.value for op in result.key("y").involved][:1] == [1]


def test_missing_key_is_one_partition() -> None:
    h = H().write(1, 1).read(2, 1).write(3, 2, key="k").read(4, None)
    assert h.verdict() == NOT_LINEARIZABLE  # the keyless register holds 1
    h = H().write(1, 1).write(3, 2, key="k").read(4, 1).read(4, 2, key="k")
    result = check_history(h.events)
    assert result.verdict == LINEARIZABLE
    assert result.key(None).verdict == LINEARIZABLE
    assert result.key("k").verdict == LINEARIZABLE


def test_linearizable_result_gives_an_order() -> None:
    h = (H().invoke(1, "write", 1).invoke(2, "write", 2)
         .ok(2, "write", 2).ok(1, "write", 1).read(3, 2))
    result = check_history(h.events)
    # Operation indices: write 1 = 0, write 2 = 1, read = 2; write 1 first.
    assert result.keys[0].linearization == (0, 1, 2)


def test_step_budget_gives_unknown() -> None:
    h = H()
    for p in range(8):
        h.invoke(p, "write", p)
    for p in range(8):
        h.ok(p, "write", p)
    h.read(9, 3).read(9, 4)  # impossible, but only after exploring orders
    assert h.verdict() == NOT_LINEARIZABLE
    result = check_history(h.events, max_steps=5)
    assert result.verdict == UNKNOWN
    assert "budget" in result.explanation
    # A bad key wins over an undecided one.
    h.read(1, 5, key="other")
    assert h.verdict(max_steps=20) == NOT_LINEARIZABLE


def test_malformed_histories_are_rejected() -> None:
    with pytest.raises(HistoryError):
        check_history(H().ok(1, "write", 1).events)
    with pytest.raises(HistoryError):
        check_history([{"process": 1, "type": "invoke", "f": "cas", "value": 3, "time": 0}])
    with pytest.raises(HistoryError):
        check_history([{"process": 1, "type": "invoke", "f": "delete", "time": 0}])
    with pytest.raises(HistoryError):
        check_history(H().invoke(1, "write", 1).ok(1, "read", 1).events)
    with pytest.raises(HistoryError, match="backwards"):
        parse_lines(['{"process": 1, "type": "invoke", "f": "read", "time": 5}',
                     '{"process": 1, "type": "ok", "f": "read", "time": 4}'])


# ---------------------------------------------------------------------------
# Random histories of a real atomic register are linearizable
# ---------------------------------------------------------------------------

def random_register_history(rng: random.Random, processes: int, operations: int,
                            keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Simulate clients of atomic registers: each call takes effect at one
    random moment between its invoke and its completion (or, for an
    ``info`` completion, possibly never)."""
    h = H()
    registers: dict[str, Any] = {}
    # process -> [f, key, arg, applied?, result]
    inflight: dict[int, list[Any]] = {}
    started = 0
    while started < operations or inflight:
        idle = [p for p in range(processes) if p not in inflight]
        choice = rng.random()
        if idle and started < operations and choice < 0.4:
            p = rng.choice(idle)
            f = rng.choice(["read", "write", "cas"])
            key = rng.choice(keys)
            arg: Any = None
            if f == "write":
                arg = rng.randrange(4)
            elif f == "cas":
                arg = [rng.choice([None, 0, 1, 2, 3]), rng.randrange(4)]
            inflight[p] = [f, key, arg, False, None]
            h.invoke(p, f, arg, key)
            started += 1
            continue
        if not inflight:
            continue
        p = rng.choice(sorted(inflight))
        f, key, arg, applied, outcome = inflight[p]
        if not applied and choice < 0.75:
            current = registers.get(key)
            if f == "read":
                outcome = current
            elif f == "write":
                registers[key] = arg
            elif current == arg[0]:
                registers[key] = arg[1]
                outcome = True
            else:
                outcome = False
            inflight[p][3:] = [True, outcome]
            continue
        if not applied and rng.random() < 0.8:
            continue
        del inflight[p]
        if not applied or rng.random() < 0.1:
            # Lost reply: the caller learns nothing (applied or not).
            h.info(p, f, None, key)
        elif f == "read":
            h.ok(p, f, outcome, key)
        elif f == "cas" and not outcome:
            h.fail(p, f, arg, key)
        else:
            h.ok(p, f, arg, key)
    return h.events


def test_random_atomic_register_histories_are_linearizable() -> None:
    for seed in range(150):
        rng = random.Random(seed)
        events = random_register_history(rng, processes=5, operations=40,
                                         keys=("a", "b") if seed % 2 else ("a",))
        result = check_history(events)
        assert result.verdict == LINEARIZABLE, (seed, result.explanation)


def test_corrupted_random_histories_are_caught() -> None:
    caught = 0
    for seed in range(150):
        rng = random.Random(seed)
        events = random_register_history(rng, processes=3, operations=30, keys=("a",))
        reads = [e for e in events if e["type"] == "ok" and e["f"] == "read"]
        if not reads:
            continue
        victim = rng.choice(reads)
        # A value never written anywhere can never be read.
        victim["value"] = 99
        assert check_history(events).verdict == NOT_LINEARIZABLE, seed
        caught += 1
    assert caught > 100


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "ra_actors.testing.lincheck", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_cli_exit_codes_and_output(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    bad = tmp_path / "bad.jsonl"
    write_history(good, H().write(1, 1).read(2, 1).events)
    write_history(bad, H().write(1, 1).read(2, 2).events)

    proc = run_cli(str(good))
    assert (proc.returncode, proc.stdout) == (0, f"{good}: linearizable\n")

    proc = run_cli(str(good), str(bad))
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [f"{good}: linearizable", f"{bad}: not linearizable"]

    proc = run_cli("--explain", str(bad))
    assert proc.returncode == 1
    assert "p2 read 2 ok" in proc.stderr

    proc = run_cli("--max-steps", "1", str(good))
    assert (proc.returncode, proc.stdout) == (1, f"{good}: unknown\n")


def test_cli_unreadable_files_and_usage(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    write_history(good, H().write(1, 1).events)
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text('{"process": 1, "type": "invoke"\n')
    missing = tmp_path / "missing.jsonl"

    for path in (missing, garbage):
        proc = run_cli(str(good), str(path))
        assert proc.returncode == 2
        assert proc.stdout == f"{good}: linearizable\n"
        error_lines = proc.stderr.splitlines()
        assert len(error_lines) == 1 and str(path) in error_lines[0]

    proc = run_cli()
    assert proc.returncode == 2


# ---------------------------------------------------------------------------
# HistoryRecorder
# ---------------------------------------------------------------------------

class FakeClock:
    def __init__(self, times: Optional[list[int]] = None) -> None:
        self.now = 0
        self.times = times

    def __call__(self) -> int:
        if self.times is not None:
            return self.times.pop(0)
        self.now += 10
        return self.now


def test_recorder_in_memory() -> None:
    rec = HistoryRecorder(clock=FakeClock())
    w = rec.invoke(1, "write", "x", 4)
    r = rec.invoke(2, "read", "x")
    c = rec.invoke(3, "cas", "x", (4, 5))
    rec.complete(w, "ok")
    rec.complete(r, "ok", 4)
    rec.complete(c, "info", None)
    assert rec.events() == [
        {"process": 1, "type": "invoke", "f": "write", "key": "x", "value": 4, "time": 10},
        {"process": 2, "type": "invoke", "f": "read", "key": "x", "value": None, "time": 20},
        {"process": 3, "type": "invoke", "f": "cas", "key": "x", "value": [4, 5], "time": 30},
        {"process": 1, "type": "ok", "f": "write", "key": "x", "value": 4, "time": 40},
        {"process": 2, "type": "ok", "f": "read", "key": "x", "value": 4, "time": 50},
        {"process": 3, "type": "info", "f": "cas", "key": "x", "value": None, "time": 60},
    ]
    assert check_history(rec.events()).verdict == LINEARIZABLE
    assert rec.outstanding() == []


def test_recorder_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    with HistoryRecorder(path, clock=FakeClock()) as rec:
        a = rec.invoke("c1", "write", None, [1, 2])
        rec.complete(a, "ok")
        b = rec.invoke("c1", "cas", None, [[1, 2], 3])
        rec.complete(b, "fail")
        r = rec.invoke("c2", "read")
        # Written and flushed already, before close.
        assert len(read_history(path)) == 5
        rec.complete(r, "ok", [1, 2])
    assert read_history(path) == rec.events()
    assert all("key" not in e for e in rec.events())
    for line in path.read_text().splitlines():
        json.loads(line)
    assert check_file(path).verdict == LINEARIZABLE


def test_recorder_rules() -> None:
    rec = HistoryRecorder(clock=FakeClock([5, 3, 7]))
    op = rec.invoke(1, "write", "k", 1)
    with pytest.raises(HistoryError):
        rec.invoke(1, "read", "k")  # process 1 is busy
    rec.complete(op, "ok")
    with pytest.raises(HistoryError):
        rec.complete(op, "ok")  # already complete
    with pytest.raises(HistoryError):
        rec.complete(rec.invoke(2, "read", "k"), "done")
    with pytest.raises(HistoryError):
        rec.invoke(3, "cas", "k", 1)
    # The clock stepped back from 5 to 3: the time written is clamped.
    assert [e["time"] for e in rec.events()] == [5, 5, 7]
    assert [op.process for op in rec.outstanding()] == [2]


def test_recorder_is_thread_safe(tmp_path: Path) -> None:
    path = tmp_path / "threads.jsonl"
    rec = HistoryRecorder(path)
    lock = threading.Lock()
    register: dict[str, Any] = {}

    def client(process: int) -> None:
        rng = random.Random(process)
        for _ in range(200):
            key = rng.choice("ab")
            if rng.random() < 0.5:
                value = rng.randrange(100)
                handle = rec.invoke(process, "write", key, value)
                with lock:
                    register[key] = value
                rec.complete(handle, "ok")
            else:
                handle = rec.invoke(process, "read", key)
                with lock:
                    seen = register.get(key)
                rec.complete(handle, "ok", seen)

    threads = [threading.Thread(target=client, args=(p,)) for p in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rec.close()
    events = read_history(path)  # also checks times never decrease
    assert events == rec.events()
    assert len(events) == 6 * 200 * 2
    assert all(op.type == "ok" for op in pair_operations(events))
    assert check_history(events, time_limit=60).verdict == LINEARIZABLE
