"""The demos in their fast mode, as a user runs them (subprocesses, output to
a file: no pipe for the node processes to hold open)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(argv, tmp_path, timeout=240):
    out = tmp_path / "out.txt"
    t = time.monotonic()
    with open(out, "w") as f:
        proc = subprocess.run([sys.executable, *argv], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=f,
                              stderr=subprocess.STDOUT, timeout=timeout)
    text = out.read_text()
    print(f"\n{' '.join(argv)}: exit {proc.returncode} in {time.monotonic() - t:.1f}s")
    return proc.returncode, text


def test_demo_kv_fast(tmp_path):
    code, text = _run(["scripts/demo_kv.py", "--fast"], tmp_path)
    assert code == 0, text
    for line in ("[ok] three nodes up",
                 "[ok] 3 servers started, leader kv@",
                 "[ok] 20 writes acknowledged",
                 "after the kill",
                 "[ok] 20 of 20 keys read back",
                 "[ok] 10 more writes acknowledged",
                 "[ok] the indexes of all three members converged",
                 "[ok] every node process has exited",
                 "RESULT: OK"):
        assert line in text, (line, text)
    assert "[FAIL]" not in text


def test_demo_queue_fast(tmp_path):
    code, text = _run(["scripts/demo_queue.py", "--fast"], tmp_path)
    assert code == 0, text
    for line in ("[ok] both consumers checked out",
                 "[ok] 60 messages enqueued",
                 "[ok] A holds unsettled messages when it dies",
                 "[ok] the machine applied Down(A)",
                 "[ok] exactly the messages A held were redelivered, to B",
                 "[ok] no message settled by A was delivered again",
                 "[ok] each of the 60 messages was settled exactly once",
                 "[ok] every process has exited",
                 "RESULT: OK"):
        assert line in text, (line, text)
    assert "[FAIL]" not in text


def test_demo_sql_fast(tmp_path):
    code, text = _run(["scripts/demo_sql.py", "--fast"], tmp_path)
    assert code == 0, text
    for line in ("[ok] three nodes up",
                 "[ok] 10 accounts of 1000, total 10000",
                 "was killed mid-stream",
                 "[ok] 60 transfers answered",
                 "[ok] the total is still 10000",
                 "exactly the acknowledged ones, none lost, none twice",
                 "[ok] every balance is its opening balance",
                 "[ok] the three copies of the database are identical",
                 "[ok] every node process has exited",
                 "RESULT: OK"):
        assert line in text, (line, text)
    assert "[FAIL]" not in text


@pytest.mark.parametrize("demo", ["kv", "queue", "sql"])
def test_demo_help_through_the_command(demo, tmp_path):
    code, text = _run(["-m", "ra_actors.cli", "demo", demo, "--help"], tmp_path, timeout=60)
    assert code == 0 and "--fast" in text


def test_a_failed_check_makes_the_demo_exit_1(tmp_path):
    # a kv demo whose data dir cannot be created fails its first step, cleanly
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, text = _run(["scripts/demo_kv.py", "--fast", "--data-dir", str(blocker / "sub")], tmp_path, timeout=120)
    assert code == 1, text
    assert "[FAIL] step 1 raised" in text and "RESULT: FAILED" in text
    assert "Traceback" not in text
