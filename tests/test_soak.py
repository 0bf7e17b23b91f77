"""``scripts/soak.py``: seeds in parallel, every failure written and listed."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _soak():
    spec = importlib.util.spec_from_file_location("soak_script", os.path.join(ROOT, "scripts", "soak.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_plan_is_a_function_of_the_seed():
    soak = _soak()
    assert soak.plan(42, None, None) == soak.plan(42, None, None)
    p = soak.plan(42, frozenset({"crash"}), 100)
    assert p["faults"] == {"crash"} and p["steps"] == 100
    assert soak.command_line(p) == ("python scripts/sim.py --seed 42 --steps 100 "
                                    f"--members {p['members']} --clusters {p['clusters']} --faults crash")


def test_violation_kind_is_the_text_before_the_first_colon():
    soak = _soak()
    assert soak.violation_kind("t=23778ms ack before durable: kv@n1 sent ...") == "ack before durable"
    assert soak.violation_kind("liveness: 30000ms after the faults ended: x") == "liveness"


def _run(*args):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "soak.py"), *args],
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def test_keep_going_with_two_jobs_lists_every_failure_and_writes_each_seed(tmp_path):
    """A deliberate core bug makes seeds fail: the soak keeps going, writes
    each failing seed's replay command and transcript, and exits 1 with one
    line per kind of violation."""
    out = tmp_path / "failures"
    rc, printed = _run("--minutes", "0.05", "--jobs", "2", "--start", "1001", "--steps", "1500",
                       "--bugs", "commit_undurable", "--keep-going", "--out", str(out), "--progress", "1000")
    assert rc == 1, printed
    files = sorted(out.iterdir())
    assert len(files) >= 2, printed
    text = files[0].read_text().splitlines()
    assert text[0].startswith("replay: python scripts/sim.py --seed ") and text[0].endswith("--bugs commit_undurable")
    assert any("->" in line for line in text[3:]), "the transcript is a full trace"
    assert "soak:   commit not durable: " in printed


def test_without_keep_going_the_first_failure_stops_the_soak(tmp_path):
    rc, printed = _run("--minutes", "1", "--start", "1001", "--steps", "1500", "--bugs", "commit_undurable",
                       "--out", str(tmp_path), "--progress", "1000")
    assert rc == 1, printed
    assert printed.count("soak: FAILED seed") == 1 and len(list(tmp_path.iterdir())) == 1
