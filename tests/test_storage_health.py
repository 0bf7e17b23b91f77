"""A sick disk as the node's supervisor sees it, without a running node: the
storage's health (back-off, error, probes) and what the supervisor does with
it (reopen the failed service, halt the servers and tell their watchers,
probe the disk, reopen and restart from disk once it works again).
docs/internals.rst, "A sick disk"."""
from __future__ import annotations

import errno

import pytest
from thespian.actors import ChildActorExited, WakeupMessage

from ra_actors.actors.children import RUNNING, Child
from ra_actors.actors.protocol import (ServerInit, ServerStarted, ServiceAddresses, ServiceFailed, ServiceFault,
                                       ServiceInit, ServiceReady, StopServer, Watch, WatchDown)
from ra_actors.actors.services import SERVICE_KINDS, ServiceReopenDue
from ra_actors.actors.storage_health import ERROR, FAILING, OK, StorageHealth, StoragePolicy
from ra_actors.actors.storage_supervision import StorageProbeDue
from ra_actors.actors.supervision import SERVER_KIND
from ra_actors.actors.supervisor import NodeSupervisor
from ra_actors.core.types import ServerConfig, ServerId
from ra_actors.log import fileio
from ra_actors.log.fileio import Fault

ENOSPC = "StorageError: write of /d/wal/0000000000000003.wal failed: ENOSPC (No space left on device)"


# ------------------------------------------------------------------ the policy
def test_faults_back_off_doubling_then_error():
    health = StorageHealth(StoragePolicy(max_faults=4, period=30.0, first_delay=0.1, max_delay=0.3))
    assert health.fault("wal", ENOSPC, True, now=100.0) == pytest.approx(0.1)
    assert health.state == FAILING and health.reason == f"wal: {ENOSPC}"
    assert health.fault("wal", ENOSPC, True, now=100.2) == pytest.approx(0.2)
    assert health.fault("wal", ENOSPC, True, now=100.5) == pytest.approx(0.3)   # capped
    assert health.fault("wal", ENOSPC, True, now=101.0) is None                  # the 4th: give up
    assert health.state == ERROR and health.curable
    assert health.overview()["recent_faults"] == 4 and health.first_fault == f"wal: {ENOSPC}"


def test_faults_out_of_the_period_are_forgotten_and_a_recovery_settles():
    health = StorageHealth(StoragePolicy(max_faults=2, period=10.0))
    assert health.fault("wal", "EIO", True, now=0.0) is not None
    health.settled(now=1.0)
    assert health.state == OK and health.reason is None and health.last_fault == "wal: EIO"
    assert health.fault("wal", "EIO", True, now=20.0) is not None   # the first one is 20 s old
    assert health.state == FAILING


def test_a_corrupt_log_is_an_error_at_once_and_never_probed():
    health = StorageHealth()
    assert health.fault("wal", "LogCorruption: corrupt: bad crc (x.wal)", False, now=0.0) is None
    assert health.state == ERROR and not health.curable


def test_a_passed_probe_clears_the_history():
    health = StorageHealth(StoragePolicy(max_faults=2))
    health.fault("wal", "EIO", True, now=0.0)
    health.fault("wal", "EIO", True, now=0.1)
    assert health.state == ERROR
    health.probe_failed()
    health.probe_passed(now=5.0)
    assert health.state == FAILING and not health.history and health.probes == 0
    assert health.fault("wal", "EIO", True, now=5.1) is not None     # a fresh budget


def test_the_policy_comes_from_the_node_settings():
    sup = NodeSupervisor()
    sup.ctx.configure(_cfg("/nowhere", settings={"storage_max_faults": 3, "storage_probe_interval": 1.5}))
    assert sup.ctx.storage_policy.max_faults == 3 and sup.ctx.storage_policy.probe_interval == 1.5


# ------------------------------------------------------------ the supervisor
def _cfg(data_dir, settings=None, placement="process"):
    return {"name": "n1", "incarnation": 1, "data_dir": str(data_dir), "host": "127.0.0.1", "port": 1,
            "settings": settings or {}, "placement": placement}


class _Recorder(NodeSupervisor):
    """A supervisor whose sends, wakeups and children are recorded."""

    def __init__(self):
        super().__init__()
        self.sent = []
        self.wakeups = []
        self.created = []

    def send(self, to, msg):
        self.sent.append((to, msg))

    def wakeupAfter(self, timePeriod, payload=None):
        self.wakeups.append((timePeriod, payload))

    @property
    def myAddress(self):
        return "supervisor"

    def createActor(self, actorClass, targetActorRequirements=None, globalName=None, sourceHash=None):
        addr = f"{actorClass.__name__}-{len(self.created)}"
        self.created.append(addr)
        return addr

    def take(self, kind=None, to=None):
        """The sends of ``kind`` (to ``to``), taken out of the record."""
        def match(t, m):
            return (kind is None or isinstance(m, kind)) and (to is None or t == to)
        out = [(t, m) for t, m in self.sent if match(t, m)]
        self.sent = [(t, m) for t, m in self.sent if not match(t, m)]
        return out

    def wakeup(self, payload_type):
        [(delay, payload)] = [(d, p) for d, p in self.wakeups if isinstance(p, payload_type)]
        self.wakeups.remove((delay, payload))
        self.receiveMessage(WakeupMessage(delay, payload), None)
        return delay


@pytest.fixture
def node(tmp_path):
    """A supervisor whose storage services run and which carries server kv."""
    (tmp_path / "wal").mkdir()
    (tmp_path / "servers").mkdir()
    sup = _Recorder()
    sup.ctx.configure(_cfg(tmp_path, settings={"storage_max_faults": 3}))
    sup.health.policy = sup.ctx.storage_policy
    sup.registry.load(str(tmp_path))
    for kind in SERVICE_KINDS:
        sup.services.start(kind)
        sup.receiveMessage(ServiceReady(kind), sup.services.get(kind).local)
    sid = ServerId("kv", "n1")
    config = ServerConfig(sid, "uid-kv", "kv", "machines.kv", (sid,))
    sup.registry.add("kv", "uid-kv")
    child = Child(SERVER_KIND, "kv", "kv-address")
    child.status, child.addr, child.config = RUNNING, "kv-address", config
    sup.directory.servers["kv"] = child
    sup.children.children.append(child)
    sup.receiveMessage(Watch(sid, "watcher", "ref"), "watcher")
    sup.sent, sup.wakeups = [], []
    return sup


def _storage_news(sup):
    return [m for to, m in sup.take(ServiceAddresses, to="kv-address")]


def test_a_wal_fault_is_reopened_after_the_back_off(node):
    wal = node.services.get("wal").local
    node.receiveMessage(ServiceFault("wal", ENOSPC), wal)
    assert node.services.overview()["wal"] == "failed"
    [news] = _storage_news(node)
    assert news.wal(0) is None and news.storage == FAILING and ENOSPC in news.storage_error
    assert node.wakeup(ServiceReopenDue) == pytest.approx(0.1)
    [(to, init)] = node.take(ServiceInit)
    assert to == wal                                   # the same actor opens the log again
    node.receiveMessage(ServiceReady("wal"), wal)
    restarted, settled = _storage_news(node)
    assert restarted.wal(0) == wal and restarted.wal_restarted == (0,)   # its servers write again what was lost
    assert settled.wal(0) == wal and settled.storage == OK and not settled.wal_restarted
    assert node.storage.overview()["state"] == OK


def test_repeated_faults_halt_the_servers_then_a_probe_brings_everything_back(node):
    wal = node.services.get("wal").local
    node.receiveMessage(ServiceFault("wal", ENOSPC), wal)
    node.wakeup(ServiceReopenDue)
    node.receiveMessage(ServiceFailed("wal", ENOSPC, retry=True), wal)     # the reopen failed
    assert node.wakeup(ServiceReopenDue) == pytest.approx(0.2)
    node.sent = []
    node.receiveMessage(ServiceFailed("wal", ENOSPC, retry=True), wal)     # the 3rd fault: error
    news = _storage_news(node)
    assert news[-1].storage == ERROR and ENOSPC in news[-1].storage_error  # the server halts
    [(to, down)] = [(t, m) for t, m in node.sent if isinstance(m, WatchDown)]
    assert to == "watcher" and down.reason.startswith("storage error: wal: StorageError")
    ov = node._overview(None, None)
    assert ov["storage"]["state"] == ERROR and ov["servers"]["kv"]["status"] == "error"
    assert not [p for _, p in node.wakeups if isinstance(p, ServiceReopenDue)]   # nothing spins
    # still sick: the probe fails and is tried again later; nothing reopens
    with fileio.inject(Fault("write", errno.ENOSPC, path="*/.probe.tmp")):
        assert node.wakeup(StorageProbeDue) == node.ctx.storage_policy.probe_interval
    assert not node.take(ServiceInit) and node.health.probes == 1
    # the disk works again: reopen, then the halted server restarts from disk
    node.wakeup(StorageProbeDue)
    [(to, _init)] = node.take(ServiceInit)
    assert to == wal
    node.receiveMessage(ServiceReady("wal"), wal)
    [(to, stop)] = node.take(StopServer)
    assert to == "kv-address" and not stop.delete
    node.receiveMessage(ChildActorExited("kv-address"), None)
    [(new_addr, init)] = node.take(ServerInit)
    assert init.config.uid == "uid-kv" and init.services.storage == FAILING
    assert node.storage.overview()["state"] == FAILING      # until the server runs again
    node.receiveMessage(ServerStarted("kv", init.incarnation), new_addr)
    assert node.storage.overview()["state"] == OK
    assert node._overview(None, None)["servers"]["kv"]["status"] == "running"


def test_a_corrupt_log_found_on_reopen_halts_without_probing(node):
    wal = node.services.get("wal").local
    node.receiveMessage(ServiceFault("wal", ENOSPC), wal)
    node.wakeup(ServiceReopenDue)
    node.receiveMessage(ServiceFailed("wal", "LogCorruption: corrupt: bad crc (1.wal)", retry=False), wal)
    assert node.storage.overview()["state"] == ERROR and node.storage.overview()["curable"] is False
    assert not [p for _, p in node.wakeups if isinstance(p, StorageProbeDue)]


def test_a_storage_service_that_exits_is_started_again_after_the_back_off(node):
    sw = node.services.get("segment_writer")
    node.receiveMessage(ChildActorExited(sw.local), None)
    assert not node.take(ServiceInit)                     # not at once
    node.wakeup(ServiceReopenDue)
    [(to, _init)] = node.take(ServiceInit)
    assert to != sw.local and node.services.get("segment_writer").restarts   # a new actor


def test_a_server_crash_on_the_disk_is_a_storage_fault(node):
    from ra_actors.actors.protocol import ServerCrash
    node.receiveMessage(ServerCrash("kv", "StorageError: write of meta failed: EIO", storage=True), "kv-address")
    node.receiveMessage(ChildActorExited("kv-address"), None)
    assert node.storage.overview()["state"] == FAILING
    assert not node.take(ServerInit)                      # restarted after the back-off
    from ra_actors.actors.supervision import ServerRestartDue
    node.wakeup(ServerRestartDue)
    [(_to, init)] = node.take(ServerInit)
    assert init.config.uid == "uid-kv"


def test_no_server_starts_while_the_storage_is_in_error(node):
    from ra_actors.actors.protocol import RestartServerRequest, SupResponse
    wal = node.services.get("wal").local
    for _ in range(3):
        node.receiveMessage(ServiceFault("wal", ENOSPC), wal)
    node.sent = []
    node.receiveMessage(RestartServerRequest("kv", req_id=9), "client")
    [(to, reply)] = node.take(SupResponse)
    assert to == "client" and reply.error[0] == "StorageError" and "ENOSPC" in reply.error[1]


# ------------------------------------------------------------ the WAL service
def _drain_until(svc, done, timeout=10.0):
    """Drain ``svc`` (as its actor does when the pipe wakes it) until ``done(replies)``."""
    import select
    import time
    replies: dict = {}
    deadline = time.monotonic() + timeout
    while not done(replies):
        assert time.monotonic() < deadline, f"the WAL did not answer: {replies} {svc.failure!r}"
        select.select([svc.rfd], [], [], 0.1)
        got, _closed = svc.drain()
        for uid, msgs in got.items():
            replies.setdefault(uid, []).extend(msgs)
    return replies


@pytest.mark.parametrize("op", ["write", "fdatasync"])
def test_a_failed_wal_acknowledges_nothing_unsynced_and_reopens_from_what_recovery_proves(tmp_path, op):
    from ra_actors.actors.storage import WalService
    from ra_actors.core.messages import Written
    from ra_actors.log.server_log import ServerLog
    from ra_actors.log.wal import Wal
    sid = ServerId("kv", "n1")
    ServerLog.create(str(tmp_path), ServerConfig(sid, "s1", "kv", "machines.kv", (sid,))).close()
    svc = WalService(str(tmp_path), {})
    svc.write([Wal.encode_run("s1", 1, 1, [b"a"] * 5)])
    svc.kick()     # as its actor does at the end of a turn
    replies = _drain_until(svc, lambda r: r.get("s1"))
    assert replies["s1"] == [Written(1, 1, 5)]
    path = svc.wal.path
    synced = path.stat().st_size
    with fileio.inject(Fault(op, errno.EIO, path="*.wal")):
        svc.write([Wal.encode_run("s1", 6, 1, [b"b"] * 3)])
        svc.kick()
        replies = _drain_until(svc, lambda r: svc.failure is not None)
    assert replies == {} and svc.failure.errno == errno.EIO and svc.failure.op == op
    svc.write([Wal.encode_run("s1", 9, 1, [b"c"])])     # dropped: the WAL is dead
    assert svc.abandon() == []
    # never trusted again: the unsynced bytes were cut off before the file was let go
    assert path.stat().st_size == synced
    # reopened (the lock was released): recovery keeps exactly what was acknowledged
    again = WalService(str(tmp_path), {})
    try:
        slog = ServerLog.open(str(tmp_path), "s1")
        assert [e.index for e in slog.recovered().entries] == [1, 2, 3, 4, 5]
        slog.close()
    finally:
        again.abandon()


# ------------------------------------------------------------ several WALs
@pytest.fixture
def two_wals(tmp_path):
    """A supervisor of a node with two WALs (directories a and b) whose
    services run, carrying kv0 (on WAL 0) and kv1 (on WAL 1)."""
    from ra_actors.log.wal_dirs import record_assignment
    wal_dirs = [tmp_path / "a", tmp_path / "b"]
    for d in wal_dirs:
        d.mkdir()
    (tmp_path / "servers").mkdir()
    sup = _Recorder()
    sup.ctx.configure(dict(_cfg(tmp_path, settings={"storage_max_faults": 3}),
                           wal_dirs=[str(d) for d in wal_dirs]))
    sup.health.policy = sup.ctx.storage_policy
    sup.registry.load(str(tmp_path))
    assert sup.services.kinds() == ["wal", "wal:1", "segment_writer", "snapshot_writer"]
    for kind in sup.services.kinds():
        sup.services.start(kind)
        sup.receiveMessage(ServiceReady(kind), sup.services.get(kind).local)
    for k in (0, 1):
        sid = ServerId(f"kv{k}", "n1")
        record_assignment(tmp_path, f"uid-kv{k}", wal_dirs[k])
        sup.registry.add(sid.name, f"uid-kv{k}")
        child = Child(SERVER_KIND, sid.name, f"kv{k}-address")
        child.status, child.addr, child.wal = RUNNING, f"kv{k}-address", k
        child.config = ServerConfig(sid, f"uid-kv{k}", sid.name, "machines.kv", (sid,))
        sup.directory.servers[sid.name] = child
        sup.children.children.append(child)
        sup.receiveMessage(Watch(sid, "watcher", f"ref{k}"), "watcher")
    sup.sent, sup.wakeups = [], []
    return sup


def test_each_wal_of_a_node_starts_with_its_directory():
    inits = {}
    sup = _Recorder()
    sup.ctx.configure(dict(_cfg("/d"), wal_dirs=["/a", "/b"]))
    for kind in sup.services.kinds():
        sup.services.start(kind)
    for to, msg in sup.take(ServiceInit):
        inits[to] = msg
    wal1 = inits[sup.services.get("wal:1").local]
    assert wal1.wal == 1 and wal1.wal_dirs == ("/a", "/b")
    assert inits[sup.services.get("wal").local].wal == 0


def test_a_sick_wal_disk_halts_only_the_servers_of_that_wal_and_comes_back_alone(two_wals):
    node = two_wals
    wal1 = node.services.get("wal:1").local
    for _ in range(3):
        node.receiveMessage(ServiceFault("wal:1", ENOSPC), wal1)
        delays = [p for _, p in node.wakeups if isinstance(p, ServiceReopenDue)]
        if delays:
            node.wakeup(ServiceReopenDue)
            node.take(ServiceInit)
    news = [m for _, m in node.take(ServiceAddresses, to="kv0-address")]
    assert news[-1].halt_reason(0) is None and ENOSPC in news[-1].halt_reason(1)   # kv1 halts, kv0 does not
    assert news[-1].storage == OK and news[-1].wal(1) is None and news[-1].wal(0) is not None
    downs = [m for _, m in node.sent if isinstance(m, WatchDown)]
    assert [d.target for d in downs] == [ServerId("kv1", "n1")]
    ov = node._overview(None, None)
    assert ov["storage"]["state"] == ERROR and ov["storage"]["wals"][1]["state"] == ERROR
    assert 0 not in ov["storage"]["wals"] or ov["storage"]["wals"][0]["state"] == OK
    assert ov["servers"]["kv0"]["status"] == "running" and ov["servers"]["kv1"]["status"] == "error"
    # the probe writes in WAL 1's directory only: a full WAL 0 disk does not keep it failing
    with fileio.inject(Fault("write", errno.ENOSPC, path="*/a/.probe.tmp", times=None)):
        node.wakeup(StorageProbeDue)
    [(to, init)] = node.take(ServiceInit)
    assert to == wal1 and init.wal == 1
    node.receiveMessage(ServiceReady("wal:1"), wal1)
    [(to, stop)] = node.take(StopServer)
    assert to == "kv1-address"                              # only kv1 restarts from disk
    node.receiveMessage(ChildActorExited("kv1-address"), None)
    [(new_addr, init)] = node.take(ServerInit)
    assert init.config.uid == "uid-kv1" and init.wal == 1 and init.services.halt_reason(1) is None
    node.receiveMessage(ServerStarted("kv1", init.incarnation), new_addr)
    assert node.storage.overview()["state"] == OK


def test_a_fault_of_the_data_directory_halts_every_server_of_a_node_with_two_wals(two_wals):
    node = two_wals
    sw = node.services.get("segment_writer").local
    for _ in range(3):
        node.receiveMessage(ServiceFault("segment_writer", ENOSPC), sw)
        if [p for _, p in node.wakeups if isinstance(p, ServiceReopenDue)]:
            node.wakeup(ServiceReopenDue)
            node.take(ServiceInit)
    downs = sorted(m.target.name for _, m in node.sent if isinstance(m, WatchDown))
    assert downs == ["kv0", "kv1"]
    [news] = [m for _, m in node.take(ServiceAddresses, to="kv1-address")][-1:]
    assert news.storage == ERROR and news.halt_reason(0) and news.halt_reason(1)
