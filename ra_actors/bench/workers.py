"""Benchmark client processes with a ready/go handshake.

Both sides of a throughput comparison drive their system the same way:
each client is its own OS process (``python -m MODULE --worker SPEC``), so
clients do not share a GIL with each other or with the driver.

Rules:

* **Handshake.** A worker sets itself up (connects), prints ``ready``,
  waits for ``go`` on stdin, runs, and prints one line ``result JSON``.
  The driver starts every worker, waits for every ``ready``, then sends
  ``go`` to all of them, so connection set-up is never timed and the
  clients start together.
* **Errors.** A worker's exception becomes ``{"error": ..., "traceback":
  ...}`` in its result; a worker that does not answer in time is a
  :class:`WorkerError`.
* **Hygiene.** :class:`WorkerProcesses` stops and reaps every process it
  started, by PID (SIGTERM, then SIGKILL after 5 s), whatever happened; a
  worker ignores SIGINT (the driver decides when it stops) and exits on its
  own when its parent changes (the driver died).  Nothing is killed by
  name.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

__all__ = ["WorkerError", "WorkerProcesses", "worker_entry"]

_REPO_ROOT = Path(__file__).resolve().parents[2]


class WorkerError(RuntimeError):
    """A client process failed to start or did not answer."""


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(3)   # orphaned: the benchmark driver is gone


def worker_entry(spec_json: str, body: Callable[[dict], dict]) -> int:
    """Run ``body(spec)`` in a worker process and print its result line.

    ``body`` prints ``ready`` once set up and waits for the go line
    (:func:`wait_for_go`)."""
    spec = json.loads(spec_json)
    threading.Thread(target=_watch_parent, args=(spec["parent_pid"],), daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = body(spec)
    except Exception as exc:  # noqa: BLE001 - reported to the driver
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    print("result " + json.dumps(result), flush=True)
    return 0


def wait_for_go() -> bool:
    """In a worker: say ``ready`` and wait for the driver's ``go``."""
    print("ready", flush=True)
    return sys.stdin.readline().strip() == "go"


class WorkerProcesses:
    """Client processes of ``module`` started (and always reaped) by this object."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.procs: list[subprocess.Popen] = []

    def start(self, specs: list[dict]) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(_REPO_ROOT)] + (
            [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        for spec in specs:
            spec = dict(spec, parent_pid=os.getpid())
            p = subprocess.Popen([sys.executable, "-m", self.module, "--worker", json.dumps(spec)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                 cwd=str(_REPO_ROOT))
            self.procs.append(p)

    def _readline(self, p: subprocess.Popen, timeout: float) -> str:
        # a thread, because a pipe's readline has no timeout
        box: list = []
        t = threading.Thread(target=lambda: box.append(p.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        if not box:
            raise WorkerError(f"client process {p.pid} did not answer within {timeout:.0f} s")
        return box[0]

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def wait_ready(self, timeout: float = 60.0) -> None:
        for p in self.procs:
            line = self._readline(p, timeout)
            if line.strip() != "ready":
                raise WorkerError(f"client process {p.pid} failed to start: {line!r}")

    def go(self) -> None:
        for p in self.procs:
            p.stdin.write("go\n")
            p.stdin.flush()

    def results(self, timeout: float) -> list[dict]:
        out = []
        for p in self.procs:
            line = self._readline(p, timeout)
            if not line.startswith("result "):
                raise WorkerError(f"client process {p.pid}: {line!r}")
            out.append(json.loads(line[len("result "):]))
        return out

    def run(self, timeout: float, on_go: Optional[Callable[[], Any]] = None) -> list[dict]:
        """Handshake, go, and every worker's result (``on_go`` is called
        right after the go lines are sent)."""
        self.wait_ready()
        self.go()
        if on_go is not None:
            on_go()
        return self.results(timeout)

    def close(self) -> None:
        try:
            for p in self.procs:
                if p.poll() is None:
                    p.terminate()
            deadline = time.monotonic() + 5.0
            for p in self.procs:
                try:
                    p.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        finally:
            # also reached on a second Ctrl-C during the polite stop
            for p in self.procs:
                if p.poll() is None:
                    p.kill()
                p.wait()
                for f in (p.stdin, p.stdout):
                    try:
                        f.close()
                    except Exception:  # noqa: BLE001 - a broken pipe is fine here
                        pass
            self.procs = []

    def __enter__(self) -> "WorkerProcesses":
        return self

    def __exit__(self, *exc: Any) -> bool:
        self.close()
        return False
