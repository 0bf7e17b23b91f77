"""Disk machines in the pure core: a machine whose state lives in files the
server gives it (``ra_actors/core/machine.py``, ``DISK = True``).

The "files" here are a :class:`Files` object the test keeps across restarts
of the server, standing in for a directory: what it holds survives a crash,
what the server kept in memory does not.  The machine commits its change,
its index and its reply in one step, as ``machines/sqlite.py`` does in one
SQLite transaction."""
from __future__ import annotations

import pytest

from core_helpers import N1, N2, N3, ae_ok, aer, config, log_of, make_leader, noop, sync_cmd
from ra_actors import codec
from ra_actors.core import effects as fx
from ra_actors.core import messages as m
from ra_actors.core.machine import Machine
from ra_actors.core.server import RaftServer, Recovered
from ra_actors.core.types import VOTER, Entry, NoReply, Ok, SessionSeq, SnapshotMeta, Usr, cluster_tuple

THREE = cluster_tuple({N1: VOTER, N2: VOTER, N3: VOTER})


class Files:
    """What is on "disk": the key/values, the index and the replies recorded with them."""

    def __init__(self) -> None:
        self.kv: dict = {}
        self.applied = 0
        self.replies: dict = {}
        self.closed = False


class DiskKv:
    """``("put", k, v)`` replies the previous value; ``("release",)`` asks for a snapshot."""

    DISK = True

    def __init__(self) -> None:
        self.applies: list[int] = []          # indexes really applied to the files
        self.installs: list[int] = []
        self.released: list[int] = []

    def open(self, directory: Files, config: dict) -> Files:
        return directory

    def applied_index(self, files: Files) -> int:
        return files.applied

    def applied_reply(self, files: Files, index: int):
        return files.replies.get(index, "forgotten")

    def apply(self, meta, command, files: Files):
        self.applies.append(meta.index)
        effects = []
        match command:
            case ("put", k, v):
                reply = files.kv.get(k)
                kv = {**files.kv, k: v}
            case ("release",):
                reply, kv = "released", files.kv
                effects = [fx.ReleaseCursor(meta.index)]
            case _:
                reply, kv = "builtin", files.kv
        # the atomic step: data, index and reply together
        files.kv, files.applied, files.replies = kv, meta.index, {**files.replies, meta.index: reply}
        return files, reply, effects

    def snapshot(self, files: Files) -> bytes:
        return codec.pack({"kv": files.kv, "applied": files.applied})

    def install(self, files: Files, image: bytes, index: int) -> Files:
        self.installs.append(index)
        data = codec.unpack(image)
        files.kv, files.applied, files.replies = dict(data["kv"]), data["applied"], {}
        return files

    def release(self, files: Files, index: int) -> None:
        self.released.append(index)
        files.replies = {i: r for i, r in files.replies.items() if i > index}

    def close(self, files: Files) -> None:
        files.closed = True


def server(impl: DiskKv, files: Files, recovered: Recovered | None = None, sid=N1) -> RaftServer:
    srv = RaftServer(config(sid), Machine(impl, files), recovered)
    srv.init()
    return srv


def puts(first: int, last: int, term: int = 1) -> tuple:
    return tuple(Entry(i, term, Usr(("put", f"k{i}", i), NoReply(), 0)) for i in range(first, last + 1))


def test_a_disk_machine_needs_its_callbacks_and_a_directory():
    with pytest.raises(TypeError, match="needs a directory"):
        Machine(DiskKv())

    class Half:
        DISK = True

        def apply(self, meta, command, state):
            return state, None
    with pytest.raises(TypeError, match="lacks open, applied_index"):
        Machine(Half(), Files())


def test_replay_after_a_crash_skips_what_the_files_hold():
    """The files recorded index 3 with its change: a restart whose log and
    commit hint reach 5 applies only 4 and 5, and 2 and 3 are never applied
    twice (the crash came after the commit, before anything else)."""
    impl, files = DiskKv(), Files()
    server(impl, files, Recovered(current_term=1, last_applied=3, entries=(noop(1, 1),) + puts(2, 3)))
    assert impl.applies == [2, 3] and files.applied == 3
    srv = server(impl, files, Recovered(current_term=1, last_applied=5, entries=(noop(1, 1),) + puts(2, 5)))
    assert impl.applies == [2, 3, 4, 5]
    assert srv.last_applied == 5
    assert files.kv == {"k2": 2, "k3": 3, "k4": 4, "k5": 5}


def test_a_skipped_entry_answers_with_the_recorded_reply():
    """A session command applied before the crash is replayed from the
    recorded reply, so a repeat of it afterwards gets the first answer and
    is not applied again."""
    impl, files = DiskKv(), Files()
    seq = SessionSeq("s1", 1, 1, False)
    cmd = Entry(2, 1, Usr(("put", "a", 7), NoReply(), 0, seq))
    files.kv, files.applied, files.replies = {"a": 7}, 2, {2: "the first reply"}
    srv = server(impl, files, Recovered(current_term=1, last_applied=2, entries=(noop(1, 1), cmd)))
    assert impl.applies == []
    assert srv.sessions.sessions["s1"].replies[1] == "the first reply"


def test_release_cursor_without_a_state_snapshots_the_files_at_that_index():
    """The machine asks for a snapshot with ``ReleaseCursor(index)`` alone:
    the core takes the files' copy in the same apply, writes it as the
    snapshot payload, and once it is durable truncates the log and lets the
    machine forget the replies it kept for replays below it."""
    impl, files = DiskKv(), Files()
    srv = RaftServer(config(N1), Machine(impl, files), None)
    srv.init()
    srv = make_leader_from(srv)
    srv.handle(sync_cmd(("put", "a", 1), "c1"))
    srv.handle(sync_cmd(("release",), "c2"))
    srv.handle(m.Written(1, 2, 3))
    _role, effects = srv.handle(ae_ok(1, N2, 3))
    meta3 = SnapshotMeta(3, 1, THREE, 0)
    assert [e for e in effects if isinstance(e, fx.WriteSnapshot)] == [
        fx.WriteSnapshot(meta3, data=codec.pack(codec.pack({"kv": {"a": 1}, "applied": 3})))]
    assert files.replies == {2: None, 3: "released"}
    assert srv.handle(m.SnapshotWritten(meta3)) == ("leader", [fx.TruncateLogBelow(3)])
    assert impl.released == [3] and files.replies == {}


def make_leader_from(srv: RaftServer) -> RaftServer:
    srv.handle(m.TriggerElection())
    srv.handle(m.PreVoteResult(srv.current_term, N2, srv.pre_vote_token, True))
    srv.handle(m.MetaWritten(srv.current_term, N1))
    srv.handle(m.RequestVoteResult(srv.current_term, N2, True))
    srv.handle(m.Written(1, 1, 1))
    srv.handle(ae_ok(1, N2, 1))
    assert srv.role == "leader" and srv.last_applied == 1
    return srv


def test_a_received_snapshot_replaces_the_files_through_install():
    impl, files = DiskKv(), Files()
    srv = server(impl, files, sid=N3)
    image = codec.pack({"kv": {"x": 1}, "applied": 5})
    meta5 = SnapshotMeta(5, 1, THREE, 0)
    data = codec.pack(image)
    srv.handle(m.InstallSnapshotRpc(2, N1, meta5, 1, True, data))
    assert files.applied == 0                          # not before it is durable
    role, _effects = srv.handle(m.SnapshotWritten(meta5))
    assert role == "follower"
    assert impl.installs == [5] and files.kv == {"x": 1} and files.applied == 5
    assert srv.machine_state is files and srv.last_applied == 5
    srv.handle(aer(2, N1, 5, 1, puts(6, 6, 2), commit=6))
    assert impl.applies == [6] and files.kv == {"x": 1, "k6": 6}


def test_files_behind_the_snapshot_are_replaced_by_it_at_recovery():
    """A power loss took transactions the snapshot covers (or an install was
    cut short): the log below the snapshot is gone, so the snapshot's image
    goes into the files before the log after it is replayed."""
    impl, files = DiskKv(), Files()
    meta5 = SnapshotMeta(5, 1, THREE, 0)
    image = codec.pack({"kv": {"x": 1}, "applied": 5})
    srv = server(impl, files, Recovered(current_term=1, last_applied=7, snapshot=(meta5, image),
                                        entries=puts(6, 7)))
    assert impl.installs == [5] and impl.applies == [6, 7]
    assert files.kv == {"x": 1, "k6": 6, "k7": 7} and srv.last_applied == 7


def test_files_ahead_of_the_snapshot_are_kept():
    impl, files = DiskKv(), Files()
    files.kv, files.applied, files.replies = {"x": 1, "k6": 6}, 6, {6: None}
    meta5 = SnapshotMeta(5, 1, THREE, 0)
    server(impl, files, Recovered(current_term=1, last_applied=7,
                                  snapshot=(meta5, codec.pack({"kv": {"x": 1}, "applied": 5})),
                                  entries=puts(6, 7)))
    assert impl.installs == [] and impl.applies == [7]


def test_checkpoints_are_ignored_for_disk_machines():
    impl, files = DiskKv(), Files()
    srv = make_leader_from(server(impl, files))
    srv._checkpoint(1, None)
    assert srv.pending_checkpoint is None


def test_a_query_gets_the_handle_itself():
    impl, files = DiskKv(), Files()
    srv = make_leader_from(server(impl, files))
    seen = []
    srv.handle(m.Query("local", lambda state: seen.append(state) or len(state.kv), "q1"))
    assert seen == [files]


# ================================================================ the shell
def test_the_shell_gives_a_disk_machine_the_stores_directory_and_closes_it():
    from ra_actors.shell.server import ServerShell
    from ra_actors.testing.memory import MemoryStore, RecordingPort

    files = Files()
    shell = ServerShell(RecordingPort(seed=1))
    shell.recover(config(N1), 1, MemoryStore(machine_dir=files), DiskKv())
    shell.start()
    assert shell.core.machine_state is files and shell.core.machine.directory is files
    shell.close()
    assert files.closed


def test_a_crashed_server_releases_its_files():
    from ra_actors.shell.server import ServerShell
    from ra_actors.testing.memory import MemoryStore, RecordingPort

    class Exploding(DiskKv):
        def apply(self, meta, command, files):
            raise RuntimeError("boom")

    files = Files()
    port = RecordingPort(seed=1)
    shell = ServerShell(port)
    shell.recover(config(N1), 1, MemoryStore(machine_dir=files), Exploding())
    shell.start()
    shell.deliver(m.AppendEntriesRpc(1, N2, 2, 0, 0, (noop(1, 1), Entry(2, 1, Usr(("put", "a", 1), NoReply(), 0)))))
    shell.on_wal_result((m.Written(1, 1, 2),))
    assert port.of("crash") and files.closed


def test_a_store_without_a_directory_refuses_a_disk_machine():
    from ra_actors.errors import MachineError
    from ra_actors.shell.server import ServerShell
    from ra_actors.testing.memory import MemoryStore, RecordingPort

    with pytest.raises(MachineError, match="machine_dir"):
        ServerShell(RecordingPort(seed=1)).recover(config(N1), 1, MemoryStore(), DiskKv())
