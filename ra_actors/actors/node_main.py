"""The processes of one ra_actors node.

``python -m ra_actors.actors.node_main CONFIG.json`` runs the node's
*keeper*; it never imports Thespian itself.  Process tree::

    keeper            (not in the node's process group; child sub-reaper)
     └ node-main      (leader of the node's process group; holds node.lock)
        └ admin       (Thespian multiprocTCPBase admin, RaNodeAdmin; reparented to the keeper)
           ├ logger
           └ NodeSupervisor
              ├ WAL, segment writer, snapshot writer
              └ one actor per Raft server

* Killing the node = SIGKILL to its process group (every Thespian process,
  never the keeper).  The keeper reaps them all, so nothing is left,
  not even zombies.
* If the admin dies alone, the keeper kills the rest of the group: no orphan
  keeps serving (half-open) connections on the node's ports.
* SIGTERM to the keeper stops the node gracefully (Thespian shutdown), then
  kills whatever is left after ``stop_grace`` seconds.
* Start-up refuses a data directory locked by a live node and kills the
  stale processes of a previous incarnation of the same node (pid file).
* A start that fails says why in ``node.status`` before any process of the
  node exits: node-main records the reason *before* it shuts Thespian down,
  because the admin's exit lets the keeper kill node-main's whole group at
  any moment after it.  The first reason recorded stays; the keeper writes
  its own ("node process exited during start-up") only when node-main died
  without one (e.g. SIGKILL), and the supervisor writes ``node.status`` only
  once the node is up.

Files in the data directory: ``node.json`` (config), ``node.pid``,
``node.status`` (starting | ready | error | stopped, JSON), ``node.log``
(stdout/stderr of every process of the node), ``node.lock``,
``node.admin_pid``, ``thespian.log``, ``counters`` (made by the supervisor:
:mod:`ra_actors.metrics.block`).  With ``metrics_port`` node-main also
serves the counters over HTTP (:mod:`ra_actors.metrics.exporter`) on the
node's address; the port it listens on is in ``node.status``.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import signal
import socket
import sys
import time
from typing import NoReturn

from .node_files import read_json, set_status, write_json  # noqa: F401 - (also this module's API)

PR_SET_CHILD_SUBREAPER = 36


# ------------------------------------------------------------------ files
def _path(data_dir: str, name: str) -> str:
    return os.path.join(data_dir, name)


def log(msg: str) -> None:
    sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [keeper {os.getpid()}] {msg}\n")
    sys.stderr.flush()


# --------------------------------------------------------- process helpers
def proc_create_time(pid: int):
    """Create time of live process ``pid`` (None if gone or a zombie)."""
    try:
        import psutil
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p.create_time()
    except Exception:
        return None


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def group_members(pgid: int) -> list[int]:
    import psutil
    out = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except (ProcessLookupError, psutil.Error, OSError):
            pass
    return out


def lock_is_held(data_dir: str) -> bool:
    """True when some process holds the node lock of ``data_dir``."""
    path = _path(data_dir, "node.lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def _same_process(pid, create_time) -> bool:
    if not pid:
        return False
    ct = proc_create_time(pid)
    return ct is not None and (create_time is None or abs(ct - create_time) < 0.01)


def live_node_info(data_dir: str):
    """The pid file of a node that is still running in ``data_dir``, else None."""
    info = read_json(_path(data_dir, "node.pid"))
    if not info:
        return None
    if _same_process(info.get("keeper"), info.get("keeper_ct")) or \
            _same_process(info.get("node_main"), info.get("node_main_ct")):
        return info
    admin = read_json(_path(data_dir, "node.admin_pid"))
    if admin and _same_process(admin, None) and lock_is_held(data_dir):
        return info
    return None


def cleanup_stale(data_dir: str, timeout: float = 10.0) -> None:
    """Refuse a live node; kill the leftovers of a crashed one."""
    from ..errors import DataDirLocked

    info = read_json(_path(data_dir, "node.pid")) or {}
    if _same_process(info.get("keeper"), info.get("keeper_ct")):
        raise DataDirLocked(f"{data_dir} is used by a running node (keeper pid {info['keeper']})")
    pgid = info.get("pgid")
    admin = read_json(_path(data_dir, "node.admin_pid"))
    if pgid and admin and _same_process(admin, None):
        try:
            if os.getpgid(admin) == pgid:
                raise DataDirLocked(f"{data_dir} is used by a running node (admin pid {admin}, "
                                    "its keeper is gone: stop it with stop_node)")
        except ProcessLookupError:
            pass
    if pgid and group_alive(pgid) and lock_is_held(data_dir):
        # Processes of a previous incarnation whose keeper and admin died:
        # they are ours (same group, holding our lock); kill them.
        log(f"killing stale processes of process group {pgid}")
        _kill_group(pgid)
    deadline = time.time() + timeout
    while lock_is_held(data_dir):
        if time.time() > deadline:
            raise DataDirLocked(f"{data_dir} is locked by another process")
        time.sleep(0.05)


# ------------------------------------------------------------------ keeper
def keeper_main(cfg_path: str) -> int:
    """Run the keeper of the node configured in ``cfg_path``: start
    node-main in a process group of its own, then watch, stop and reap the
    node until none of its processes is left.  Returns the keeper's exit
    status: 0 once the node is down, 1 if it failed to start, 2 if its data
    directory was refused."""
    # Everything the node creates (its log, registries, WAL, segments,
    # snapshots, node.log) is its owner's alone; every process of the node
    # inherits this.
    os.umask(0o077)
    cfg = read_json(cfg_path)
    data_dir = cfg["data_dir"]
    _become_child_subreaper()
    try:
        cleanup_stale(data_dir)
    except Exception as exc:
        set_status(data_dir, "error", error=f"{type(exc).__name__}: {exc}", kind=type(exc).__name__)
        log(f"start refused: {exc}")
        return 2
    _forget_previous_admin(data_dir)
    set_status(data_dir, "starting")
    child = _fork_node_main(cfg)
    pgid = child
    _write_pid_file(cfg, child, pgid)
    log(f"node {cfg['name']} process group {pgid}")
    return _KeeperWatch(cfg, child, pgid).run()


def _become_child_subreaper() -> None:
    """Orphans of the node (the admin, after Thespian's double fork) are
    reparented to the keeper, which reaps them."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except Exception:  # pragma: no cover - non-Linux
        pass


def _forget_previous_admin(data_dir: str) -> None:
    # the watch loop learns the admin's pid from this file, so a previous
    # incarnation's must not be read as the new one's
    for stale in ("node.admin_pid",):
        try:
            os.unlink(_path(data_dir, stale))
        except FileNotFoundError:
            pass


def _fork_node_main(cfg: dict) -> int:
    """Fork node-main as the leader of a new process group; its pid."""
    child = os.fork()
    if child == 0:
        _node_main_child(cfg)
    # set in both processes, so that neither depends on which runs first
    try:
        os.setpgid(child, child)
    except OSError:
        pass
    return child


def _node_main_child(cfg: dict) -> NoReturn:
    """The forked child: node-main, the leader of the node's process group."""
    code = 1
    try:
        os.setpgid(0, 0)
        code = node_main(cfg)
    except BaseException as exc:  # noqa: BLE001
        _record_failure(cfg["data_dir"], exc)   # (a failure before Thespian ran)
        import traceback
        traceback.print_exc()
    finally:
        os._exit(code)


def _record_failure(data_dir: str, exc: BaseException) -> None:
    """``node.status``: ``error`` with ``exc`` as the reason, unless a reason
    is recorded already (the first one is the real one)."""
    if (read_json(_path(data_dir, "node.status")) or {}).get("state") == "error":
        return
    set_status(data_dir, "error", error=f"{type(exc).__name__}: {exc}", kind=type(exc).__name__)


#: Tests only: seconds node-main waits after Thespian shut down, before it
#: exits -- the window in which the keeper sees the admin gone and kills
#: node-main's group (tests/test_runtime_nodes.py forces it with this).
ENV_EXIT_DELAY = "RA_ACTORS_NODE_EXIT_DELAY"


def _exit_delay_for_tests() -> None:
    delay = os.environ.get(ENV_EXIT_DELAY)
    if delay:
        time.sleep(float(delay))


def _write_pid_file(cfg: dict, child: int, pgid: int) -> None:
    write_json(_path(cfg["data_dir"], "node.pid"), {
        "node": cfg["name"], "keeper": os.getpid(), "keeper_ct": proc_create_time(os.getpid()),
        "node_main": child, "node_main_ct": proc_create_time(child), "pgid": pgid,
        "host": cfg["host"], "port": cfg["port"]})


class _KeeperWatch:
    """The keeper's loop over a started node: every ``POLL_S`` it reaps what
    died, follows start-up, stops the node on request (SIGTERM or SIGINT to
    the keeper, or its owner's death), kills the group when the admin dies
    alone or the stop grace runs out, and returns once the group is gone."""

    POLL_S = 0.05
    ADMIN_DIED = -1

    def __init__(self, cfg: dict, child: int, pgid: int) -> None:
        self.data_dir: str = cfg["data_dir"]
        self.child = child
        self.pgid = pgid
        # A node started without detach belongs to the process that started it:
        # if that process dies, the node stops (no orphan nodes after a crash).
        self.owner: int | None = cfg.get("owner_pid")
        self.grace = float(cfg.get("stop_grace", 10.0))
        self.stop_requested = False
        self.admin_pid: int | None = None        # None until node-main records it
        self.main_exited = False
        self.ready = False
        self.stop_deadline: float | None = None  # set once stopping has begun

    def _on_term(self, signum, frame) -> None:
        self.stop_requested = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        while True:
            self._reap_children()
            self._learn_admin_pid()
            if not self.ready and self._start_up_failed():
                return self._give_up_start_up()
            self._stop_if_owner_gone()
            self._begin_stop_if_requested()
            self._kill_group_if_admin_died()
            self._kill_group_after_grace()
            if not group_alive(self.pgid):
                return self._node_is_down()
            time.sleep(self.POLL_S)

    def _reap_children(self) -> None:
        """Reap everything that died (the keeper is the node's sub-reaper)."""
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = 0
            if pid == 0:
                return
            if pid == self.child:
                self.main_exited = True
            if self.admin_pid is not None and pid == self.admin_pid:
                self.admin_pid = self.ADMIN_DIED

    def _learn_admin_pid(self) -> None:
        if self.admin_pid is None:
            a = read_json(_path(self.data_dir, "node.admin_pid"))
            if a:
                self.admin_pid = int(a)

    def _start_up_failed(self) -> bool:
        """Read node-main's status: notes ``ready``; True if start-up failed."""
        st = read_json(_path(self.data_dir, "node.status")) or {}
        self.ready = st.get("state") == "ready"
        return st.get("state") == "error" or (self.main_exited and not self.ready)

    def _give_up_start_up(self) -> int:
        _kill_group(self.pgid)
        _reap_all(self.pgid)
        if (read_json(_path(self.data_dir, "node.status")) or {}).get("state") != "error":
            set_status(self.data_dir, "error", error="node process exited during start-up")
        return 1

    def _stop_if_owner_gone(self) -> None:
        if self.owner and self.stop_deadline is None and os.getppid() != self.owner:
            log(f"owner process {self.owner} is gone: stopping")
            self.stop_requested = True

    def _begin_stop_if_requested(self) -> None:
        """A graceful stop: SIGTERM to node-main, which shuts Thespian down."""
        if self.stop_requested and self.stop_deadline is None:
            self.stop_deadline = time.time() + self.grace
            log("stopping")
            try:
                os.kill(self.child, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _kill_group_if_admin_died(self) -> None:
        # no orphan may keep serving (half-open) connections on the node's ports
        if self.admin_pid == self.ADMIN_DIED and self.stop_deadline is None:
            log("admin process died: killing the node's process group")
            _kill_group(self.pgid)

    def _kill_group_after_grace(self) -> None:
        if self.stop_deadline is not None and time.time() > self.stop_deadline:
            log("stop grace period over: killing the node's process group")
            _kill_group(self.pgid)
            # still stopping (the status will say "stopped"), but killed only once
            self.stop_deadline = time.time() + 3600

    def _node_is_down(self) -> int:
        _reap_all(self.pgid)
        set_status(self.data_dir, "stopped" if self.stop_deadline is not None else "dead")
        log("node is down")
        return 0


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
        os.killpg(pgid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def _reap_all(pgid: int, timeout: float = 5.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            if not group_alive(pgid):
                return
            pid = 0
        if pid == 0:
            if not group_alive(pgid):
                return
            time.sleep(0.01)


# --------------------------------------------------------------- node-main
def _port_free(host: str, port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return True
    except OSError as exc:
        return exc.errno not in (errno.EADDRINUSE, errno.EACCES)
    finally:
        s.close()


#: Thespian's transmit limits for every process of a node (see
#: :func:`thespian_transmit_env`); Thespian's defaults are 20 / 950 / 780 /
#: 1050.  Operators can override each one in the node's environment.
MAX_PENDING_TRANSMITS = 4096
MAX_QUEUED_TRANSMITS = 1024


def thespian_transmit_env(cfg: dict, environ=os.environ) -> None:
    """Set Thespian's transmit limits; must run before Thespian is imported
    (``asyncTransportBase`` and ``transport`` read them at import time).

    How Thespian 4.0.1 sends (``system/transport/asyncTransportBase.py`` and
    ``TCPTransport.py``), per actor process:

    * every ``send`` becomes a *transmit intent* whose timeout
      (``THESPIAN_TRANSMIT_TIMEOUT_PERIOD``, 5 min by default, 20 s here)
      starts when ``send`` is called;
    * at most ``MAX_PENDING_TRANSMITS`` intents (default **20**) are handed to
      the TCP layer.  That count covers every intent not yet completed:
      the one being sent to a target *and* those waiting behind it, because
      the TCP layer sends to one target at a time (stop-and-wait on the
      target's ACK; a second intent to that target waits for the slot);
    * further intents wait in one FIFO queue for the whole process.  At
      ``MAX_QUEUED_TRANSMITS`` (950) queued, ``send`` itself blocks in
      "tx-only mode" (the actor receives nothing) until the queue drains to
      ``QUEUED_TRANSMIT_UNBLOCK_THRESHOLD`` (780) or the intent's timeout;
      at ``DROP_TRANSMITS_LEVEL`` (1050) new intents fail at once (silently:
      the actor is told only of dead targets).

    A send to a silent peer (SIGSTOPped, or its packets dropped) completes
    only when its timeout expires.  With the default 20 pending slots, the
    heartbeats, probes and Rpcs to one silent node fill them within seconds,
    and then *every* other send of the process waits behind them in the FIFO
    queue: the supervisors of the healthy nodes stopped hearing each other
    about 7 s into a partition, and declared each other down.

    So the pending limit is raised far above what one silent target can
    hold (the supervisor keeps one heartbeat and one probe in flight per
    target; a server at most ``max_unanswered`` Rpcs per peer): intents to a
    silent target then wait in that target's own line and never delay sends
    to others.  The queue limits keep Thespian's shape (block, then drop)
    for a process that really has thousands of unacknowledged sends, and
    bound its memory: at most 4096 + 2048 intents per process, none older
    than the transmit timeout.  Each waiting intent costs a little on every
    pass of the process's select loop, which is why the application keeps
    its own per-target bounds as well.
    """
    environ.setdefault("THESPIAN_TRANSMIT_TIMEOUT_PERIOD", cfg.get("transmit_timeout", "0:20"))
    environ.setdefault("THESPIAN_MAX_PENDING_TRANSMITS", str(MAX_PENDING_TRANSMITS))
    queued = environ.setdefault("THESPIAN_MAX_QUEUED_TRANSMITS", str(MAX_QUEUED_TRANSMITS))
    try:
        queued = max(1, int(queued))
    except ValueError:
        queued = MAX_QUEUED_TRANSMITS
    # keep unblock < queued < drop, also when only the queue limit is overridden
    environ.setdefault("THESPIAN_QUEUED_TRANSMIT_UNBLOCK_THRESHOLD", str(queued * 3 // 4))
    environ.setdefault("THESPIAN_DROP_TRANSMITS_LEVEL", str(queued * 2))


def _serve_metrics(host: str, port: int | None, data_dir: str) -> dict:
    """With a metrics port: serve the counters over HTTP from this process
    (it lives as long as the node; the supervisor made the counters file by
    now).  What to add to the node's status."""
    if port is None:
        return {}
    from ..metrics.exporter import serve
    _server, actual = serve(host, port, data_dir)
    return {"metrics_port": actual}


def node_allowed_hosts(cfg: dict) -> list | None:
    """The hosts that may connect to a node bound to ``cfg["host"]``: None
    (no filter) on 127.0.0.1, else the node's own address, the convention
    host, the seeds' hosts and ``allowed_hosts``, which adds to them."""
    if cfg["host"] in ("127.0.0.1", "localhost"):
        return None
    return ([cfg["host"], cfg["convention"][0]] + [seed[0] for seed in cfg.get("seeds") or ()]
            + list(cfg.get("allowed_hosts") or ()))


def _guard_the_node(cfg: dict) -> None:
    """The node's secret, allowed hosts and refusal record, for node-main
    and (through fork) every process of the node."""
    from ..cookie import read_cookie
    from . import identify, looppatch, netpatch
    from .authsock import Guard
    from .refusals import Refusals, process_log
    refusals = Refusals(log=process_log("node"))
    guard = Guard(read_cookie(cfg["cookie_file"]), refuse=refusals.refused)
    netpatch.apply(allowed_hosts=node_allowed_hosts(cfg), guard=guard, refusals=refusals)
    identify.apply()
    looppatch.apply()


def node_main(cfg: dict) -> int:
    data_dir = cfg["data_dir"]
    host = cfg["host"]
    os.environ["THESPIAN_BASE_IPADDR"] = host
    thespian_transmit_env(cfg)
    os.environ["THESPLOG_FILE"] = _path(data_dir, "thespian.log")
    os.environ.setdefault("THESPLOG_FILE_MAXSIZE", str(1024 * 1024))
    os.environ.setdefault("THESPLOG_THRESHOLD", "WARNING")

    from ..errors import DataDirLocked, NodeError

    lock_fd = os.open(_path(data_dir, "node.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise DataDirLocked(f"{data_dir} is locked by another process") from None
    # lock_fd stays open: every process of the node inherits it.

    if not _port_free(host, cfg["port"]):
        raise NodeError(f"port {host}:{cfg['port']} is already in use")
    metrics_port = cfg.get("metrics_port")
    if metrics_port and not _port_free(host, metrics_port):
        raise NodeError(f"metrics port {host}:{metrics_port} is already in use")

    _guard_the_node(cfg)

    # Thespian's admin calls setsid() and double-forks; keep it in our group.
    os.setsid = lambda: None  # type: ignore[assignment]
    import thespian.system.multiprocCommon as mpc
    from .admin import RaNodeAdmin
    mpc.MultiProcAdmin = RaNodeAdmin

    from thespian.actors import ActorSystem
    from .supervisor import NodeSupervisor
    from .protocol import SupervisorInit, SupervisorReady

    caps = {
        "Admin Port": cfg["port"],
        "Convention Address.IPv4": tuple(cfg["convention"]),
        "ra_node": cfg["name"],
        "ra_data_dir": data_dir,
    }
    asys = ActorSystem("multiprocTCPBase", capabilities=caps, transientUnique=True)
    stop = {"flag": False}

    def _on_term(signum, frame):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sup = asys.createActor(NodeSupervisor, {"ra_node": cfg["name"]})
        reply = asys.ask(sup, SupervisorInit(cfg), float(cfg.get("start_timeout", 60)))
        if not isinstance(reply, SupervisorReady):
            raise NodeError(f"node supervisor did not start: {reply!r}")
        if reply.error:
            raise NodeError(reply.error)
        set_status(data_dir, "ready", supervisor=str(sup), pgid=os.getpgrp(),
                   **_serve_metrics(host, metrics_port, data_dir))
        while not stop["flag"]:
            # reap the intermediate process of Thespian's double fork
            try:
                os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.2)
    except BaseException as exc:
        # now, not after the shutdown: once the admin is gone, the keeper
        # may kill this process before it says why the start failed
        _record_failure(data_dir, exc)
        raise
    finally:
        try:
            asys.shutdown()
        except Exception:  # pragma: no cover
            pass
        _exit_delay_for_tests()
    return 0


if __name__ == "__main__":
    sys.exit(keeper_main(sys.argv[1]))
