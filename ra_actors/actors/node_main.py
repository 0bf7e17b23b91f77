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

Files in the data directory: ``node.json`` (config), ``node.pid``,
``node.status`` (starting | ready | error | stopped, JSON), ``node.log``
(stdout/stderr of every process of the node), ``node.lock``,
``node.admin_pid``, ``thespian.log``.
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

PR_SET_CHILD_SUBREAPER = 36


# ------------------------------------------------------------------ files
def _path(data_dir: str, name: str) -> str:
    return os.path.join(data_dir, name)


def write_json(path: str, value) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


def read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def set_status(data_dir: str, state: str, **extra) -> None:
    write_json(_path(data_dir, "node.status"), dict(state=state, time=time.time(), **extra))


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
    cfg = read_json(cfg_path)
    data_dir = cfg["data_dir"]
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except Exception:  # pragma: no cover - non-Linux
        pass
    try:
        cleanup_stale(data_dir)
    except Exception as exc:
        set_status(data_dir, "error", error=f"{type(exc).__name__}: {exc}", kind=type(exc).__name__)
        log(f"start refused: {exc}")
        return 2
    for stale in ("node.admin_pid",):
        try:
            os.unlink(_path(data_dir, stale))
        except FileNotFoundError:
            pass
    set_status(data_dir, "starting")
    child = os.fork()
    if child == 0:  # node-main: leader of the node's process group
        code = 1
        try:
            os.setpgid(0, 0)
            code = node_main(cfg)
        except BaseException as exc:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            set_status(data_dir, "error", error=f"{type(exc).__name__}: {exc}", kind=type(exc).__name__)
        finally:
            os._exit(code)
    pgid = child
    try:
        os.setpgid(child, child)
    except OSError:
        pass
    write_json(_path(data_dir, "node.pid"), {
        "node": cfg["name"], "keeper": os.getpid(), "keeper_ct": proc_create_time(os.getpid()),
        "node_main": child, "node_main_ct": proc_create_time(child), "pgid": pgid,
        "host": cfg["host"], "port": cfg["port"]})
    log(f"node {cfg['name']} process group {pgid}")

    stop = {"flag": False}

    def _on_term(signum, frame):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)

    # A node started without detach belongs to the process that started it:
    # if that process dies, the node stops (no orphan nodes after a crash).
    owner = cfg.get("owner_pid")
    admin_pid = None
    main_exited = False
    ready = False
    grace = float(cfg.get("stop_grace", 10.0))
    stop_deadline = None
    while True:
        # reap everything that died (we are the sub-reaper of the node)
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = 0
            if pid == 0:
                break
            if pid == child:
                main_exited = True
            if admin_pid is not None and pid == admin_pid:
                admin_pid = -1
        if admin_pid is None:
            a = read_json(_path(data_dir, "node.admin_pid"))
            if a:
                admin_pid = int(a)
        if not ready:
            st = read_json(_path(data_dir, "node.status")) or {}
            ready = st.get("state") == "ready"
            if st.get("state") == "error" or (main_exited and not ready):
                _kill_group(pgid)
                _reap_all(pgid)
                if (read_json(_path(data_dir, "node.status")) or {}).get("state") != "error":
                    set_status(data_dir, "error", error="node process exited during start-up")
                return 1
        if owner and stop_deadline is None and os.getppid() != owner:
            log(f"owner process {owner} is gone: stopping")
            stop["flag"] = True
        if stop["flag"] and stop_deadline is None:
            stop_deadline = time.time() + grace
            log("stopping")
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if admin_pid == -1 and stop_deadline is None:
            log("admin process died: killing the node's process group")
            _kill_group(pgid)
        if stop_deadline is not None and time.time() > stop_deadline:
            log("stop grace period over: killing the node's process group")
            _kill_group(pgid)
            stop_deadline = time.time() + 3600
        if not group_alive(pgid):
            _reap_all(pgid)
            if stop_deadline is not None:
                set_status(data_dir, "stopped")
            else:
                set_status(data_dir, "dead")
            log("node is down")
            return 0
        time.sleep(0.05)


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

    from . import netpatch
    allowed = cfg.get("allowed_hosts")
    if host not in ("127.0.0.1", "localhost") and allowed is None:
        allowed = [host, cfg["convention"][0]] + [seed[0] for seed in cfg.get("seeds") or ()]
    netpatch.apply(allowed_hosts=allowed if host not in ("127.0.0.1", "localhost") else None)

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
        set_status(data_dir, "ready", supervisor=str(sup), pgid=os.getpgrp())
        while not stop["flag"]:
            # reap the intermediate process of Thespian's double fork
            try:
                os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.2)
    finally:
        try:
            asys.shutdown()
        except Exception:  # pragma: no cover
            pass
    return 0


if __name__ == "__main__":
    sys.exit(keeper_main(sys.argv[1]))
