"""Test-session guard for tests that start real nodes (tests/test_runtime_*).

Every process started during the session inherits ``RA_ACTORS_TEST_SESSION``
(a fresh id).  At the end of the session, whatever still runs with that id
(nodes, keepers, orphaned actors, client subprocesses) is killed, and the
session fails if there was anything to kill: tests must clean up after
themselves, also when they fail.
"""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
import uuid

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # each xdist worker is a session of its own: it must not kill the
    # processes of its siblings (which inherited the controller's id)
    os.environ["RA_ACTORS_TEST_SESSION"] = uuid.uuid4().hex
SESSION_ID = os.environ.setdefault("RA_ACTORS_TEST_SESSION", uuid.uuid4().hex)

# The cluster secret of every node and client of this session (and of the
# processes they start): a file of the session's own, never the user's
# ~/.ra_actors.cookie.  Made now, so that a client that runs before any
# node (to see it fail to connect) has one too.
_COOKIE_DIR = tempfile.mkdtemp(prefix="ra_actors_test_cookie_")
os.environ["RA_ACTORS_COOKIE_FILE"] = os.path.join(_COOKIE_DIR, "cookie")


def _make_session_cookie():
    from ra_actors.cookie import create_cookie
    create_cookie(os.environ["RA_ACTORS_COOKIE_FILE"])


_make_session_cookie()


def session_processes():
    """Live (non-zombie) processes of this test session, except this one."""
    import psutil
    me = os.getpid()
    out = []
    for p in psutil.process_iter(["pid"]):
        if p.pid == me:
            continue
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            if p.environ().get("RA_ACTORS_TEST_SESSION") == SESSION_ID:
                out.append(p)
        except (psutil.Error, OSError):
            continue
    return out


def kill_session_processes(timeout: float = 5.0):
    """SIGKILL every live process of the session (by process group when it
    is not ours); return the list of what was found."""
    import psutil
    found = session_processes()
    my_pgid = os.getpgrp()
    for p in found:
        try:
            pgid = os.getpgid(p.pid)
            if pgid != my_pgid:
                os.killpg(pgid, signal.SIGKILL)
                os.killpg(pgid, signal.SIGCONT)
            else:
                p.kill()
        except (ProcessLookupError, psutil.Error, OSError):
            pass
    deadline = time.time() + timeout
    while time.time() < deadline and session_processes():
        time.sleep(0.05)
    return found


@pytest.fixture(scope="session", autouse=True)
def no_leftover_processes():
    yield
    leftovers = kill_session_processes()
    shutil.rmtree(_COOKIE_DIR, ignore_errors=True)
    described = []
    for p in leftovers:
        try:
            described.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
        except Exception:  # noqa: BLE001
            described.append(str(p.pid))
    assert not leftovers, "processes left running after the test session:\n" + "\n".join(described)


# ------------------------------------------------------------ node fixtures
class KvCluster:
    """Three local nodes running a ``machines.kv`` cluster named ``kv``."""

    def __init__(self, nodes, client, sids):
        self.nodes = nodes
        self.client = client
        self.sids = sids

    def leader(self, timeout: float = 10.0):
        deadline = time.time() + timeout
        from ra_actors import errors
        while time.time() < deadline:
            for sid in self.sids:
                try:
                    _m, leader = self.client.members(sid, timeout=1.0)
                except errors.RaError:
                    continue
                if leader is not None:
                    return leader
            time.sleep(0.05)
        raise AssertionError("no leader")

    def wait_applied(self, sid, index, timeout: float = 15.0):
        from ra_actors import errors
        deadline = time.time() + timeout
        km = None
        while time.time() < deadline:
            try:
                km = self.client.key_metrics(sid, timeout=2.0)
                if km["last_applied"] >= index:
                    return km
            except errors.RaError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{sid} did not apply {index} in {timeout}s: {km}")


@pytest.fixture
def nodes3(tmp_path, request):
    """Three nodes that also allow the requesting test module (a test
    module may be its own machine)."""
    import ra_actors as ra
    with ra.local_nodes(["n1", "n2", "n3"], data_root=str(tmp_path / "nodes"),
                        allowed_modules=[request.module.__name__]) as nodes:
        yield nodes


@pytest.fixture
def kv3(nodes3):
    import ra_actors as ra
    client = nodes3.client()
    sids = [ra.ServerId("kv", n) for n in ("n1", "n2", "n3")]
    started, not_started = client.start_cluster("kv", "machines.kv", sids)
    assert sorted(started) == sorted(sids) and not not_started
    yield KvCluster(nodes3, client, sids)


# ------------------------------------------------------ transcript tests
def pytest_addoption(parser):
    """``--rewrite-transcripts``: tests/test_transcripts.py stores the actual
    outputs in tests/testdata/*.txt instead of comparing them (the same as
    ``RA_REWRITE_TRANSCRIPTS=1``)."""
    parser.addoption("--rewrite-transcripts", action="store_true", default=False,
                     help="regenerate the expected outputs of tests/testdata/*.txt in place")
