"""Starting, stopping and handling ra_actors nodes (``start_node``,
``stop_node``, ``local_nodes``).

A node is one Thespian ``multiprocTCPBase`` admin with capability
``ra_node=<name>`` and its own data directory, joined to a convention.  All
of its processes form one process group, so killing the node (SIGKILL to the
group) kills all of its actors at once, as killing an Erlang VM does.  A
small *keeper* process outside the group starts it, reaps it and stops it
(see :mod:`ra_actors.actors.node_main`).

Nodes bind 127.0.0.1 unless ``host`` names another address; then they
refuse connections from hosts that are not members (their own, the
convention host, the seeds' hosts, and ``allowed_hosts``).  Every
connection proves the cluster secret first (:mod:`ra_actors.cookie`): the
first node of a convention creates its cookie file if there is none, the
others must be given the same one; a node that joins a convention checks
first that it takes the secret and that no other live node has its name
(:mod:`ra_actors.preflight`).
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any, Iterable, Iterator, NoReturn

from .cookie import cookie_path, ensure_cookie, read_cookie
from .errors import DataDirLocked, InvalidOption, NodeError
from .shell.names import node_modules

if TYPE_CHECKING:
    from .api import Client

#: A node's admin address: ``(host, port)``.
Address = tuple[str, int]

__all__ = ["Node", "LocalNodes", "start_node", "stop_node", "local_nodes", "node_status", "free_port"]


def _node_main():
    from .actors import node_main
    return node_main


# ------------------------------------------------------------------ ports
def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = map(int, f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1", exclude: Iterable[int] = ()) -> int:
    """A port that is free now and outside the kernel's ephemeral range (so an
    actor socket cannot take it before a node (re)starts on it)."""
    lo, _hi = _ephemeral_range()
    low, high = (10000, lo - 1) if lo > 12000 else (20000, 29999)
    exclude = set(exclude)
    for _ in range(500):
        port = random.randint(low, high)
        if port in exclude:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise NodeError("no free port found")


def _check_settings(settings, server_settings) -> None:
    """Unknown keys of ``settings`` (the supervisor's) or ``server_settings``
    are an :class:`~ra_actors.errors.InvalidOption` naming the valid ones:
    a misspelt setting must not be dropped in silence."""
    from .actors.node_context import SUPERVISOR_DEFAULTS
    from .shell.server import SERVER_DEFAULTS
    for what, given, known in (("settings", settings, SUPERVISOR_DEFAULTS),
                               ("server_settings", server_settings, SERVER_DEFAULTS)):
        if given is None:
            continue
        if not isinstance(given, dict):
            raise InvalidOption(f"{what} must be a dict, not {type(given).__name__}")
        unknown = sorted(str(k) for k in given if k not in known)
        if unknown:
            raise InvalidOption(f"unknown {what} {', '.join(map(repr, unknown))}; valid {what}: "
                                f"{', '.join(sorted(known))}")


def _check_wal_dirs(data_dir: str, wal_dirs) -> list[str] | None:
    """``wal_dirs`` as absolute paths (None: the default), checked (a
    ``ValueError`` naming what is wrong; see :mod:`ra_actors.log.wal_dirs`)
    and made (private, as the data directory)."""
    if wal_dirs is None:
        return None
    from .log.wal_dirs import check_wal_dirs
    dirs = [str(d) for d in check_wal_dirs(data_dir, wal_dirs)]
    for d in dirs:
        os.makedirs(d, mode=0o700, exist_ok=True)
    return dirs


def _check_log_options(log_options) -> dict:
    """The node's log options, checked (unknown keys and bad values are a
    ``ValueError`` naming the valid options; see :mod:`ra_actors.log.options`)."""
    from .log.options import check_log_options
    check_log_options(log_options)
    return dict(log_options or {})


# ------------------------------------------------------------------ nodes
class Node:
    """A started node: its name, address and processes."""

    def __init__(self, name: str, host: str, port: int, data_dir: str, convention: Address | None,
                 keeper_pid: int, pgid: int | None, popen: subprocess.Popen | None = None,
                 cfg: dict | None = None, metrics_port: int | None = None) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.data_dir = data_dir
        self.convention = convention
        self.keeper_pid = keeper_pid
        self.pgid = pgid
        self._popen = popen
        self.cfg = cfg or {}
        self.metrics_port = metrics_port     # where its counters are served over HTTP (None: they are not)

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    def __repr__(self) -> str:
        return f"Node({self.name!r}, {self.host}:{self.port}, pgid={self.pgid})"

    # -- processes ------------------------------------------------------------
    def pids(self) -> list[int]:
        """Every live process of the node (its process group)."""
        return _node_main().group_members(self.pgid)

    def alive(self) -> bool:
        return _node_main().group_alive(self.pgid)

    def kill(self, wait: float = 10.0) -> None:
        """SIGKILL the node's process group (every actor at once)."""
        nm = _node_main()
        try:
            os.killpg(self.pgid, signal.SIGKILL)
            os.killpg(self.pgid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        self._wait_keeper(wait)
        deadline = time.time() + wait
        while nm.group_alive(self.pgid) and time.time() < deadline:
            time.sleep(0.02)

    def pause(self) -> None:
        """SIGSTOP every process of the node."""
        os.killpg(self.pgid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.pgid, signal.SIGCONT)

    def stop(self, timeout: float = 15.0) -> None:
        stop_node(self, timeout=timeout)

    def _wait_keeper(self, timeout: float) -> bool:
        deadline = time.time() + timeout
        if self._popen is not None:
            try:
                self._popen.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        while time.time() < deadline:
            if not _pid_alive(self.keeper_pid):
                return True
            time.sleep(0.02)
        return False


def _pid_alive(pid: int) -> bool:
    if not pid:
        return False
    try:
        import psutil
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE
    except Exception:
        return False


def start_node(name: str, data_dir: str, port: int, convention: Address | None = None, host: str = "127.0.0.1",
               *, allowed_hosts: Iterable[str] | None = None, settings: dict | None = None,
               server_settings: dict | None = None, log_options: dict | None = None,
               seeds: Iterable[Address] | None = None, python_path: list | None = None, placement: str = "process",
               allowed_modules: Iterable[str] | None = None, detach: bool = False, metrics_port: int | None = None,
               timeout: float = 30.0, cookie_file: str | None = None,
               wal_dirs: Iterable[str] | None = None) -> Node:
    """Start node ``name`` as separate processes and wait until it is up.

    ``convention`` is the ``(host, port)`` of the convention leader's admin
    (default: this node leads its own convention).  ``host`` is the address
    the node binds and advertises (127.0.0.1 by default); with another
    address, only ``host``, the convention's and seeds' hosts, 127.0.0.1 and
    ``allowed_hosts`` (which add to them) may connect.  ``settings`` tune the
    supervisor, ``server_settings`` the servers, ``log_options`` the WAL.

    ``allowed_modules``: the modules (and packages) whose machines, query
    functions, ``ModCall`` targets and actor classes this node may import
    when a name for them arrives from the network, in addition to the
    shipped ``machines`` package -- e.g. ``["wordcount"]`` for your own
    machine module (``docs/operations.rst``, Security).

    ``placement`` says where the node's Raft servers run: ``"process"``
    (default) gives each server its own actor process, as Ra gives each
    server its own Erlang process; ``"shared"`` runs one host actor that
    carries every server of the node and the node's WAL — each server still
    addressed, monitored and restarted as its own ``ServerId`` — for many
    clusters per node and lower latency (``docs/internals.rst``).

    By default the node belongs to the calling process: it stops when that
    process exits (even by a crash).  ``detach=True`` puts it in its own
    session instead (what ``ra-actors node start`` does): it keeps running
    until ``stop_node``.

    ``wal_dirs``: the node's WAL directories (default ``[<data_dir>/wal]``),
    one WAL writer each; each server writes to one of them for good
    (``docs/operations.rst``, "Several WALs").

    ``cookie_file``: the cluster secret (default ``$RA_ACTORS_COOKIE_FILE``,
    else ``~/.ra_actors.cookie``), created by a node leading its convention.
    ``metrics_port``: serve the node's counters for Prometheus at ``http://host:
    metrics_port/metrics`` (``0``: a free port, see ``Node.metrics_port``; default: off).

    Raises ``ValueError`` for a bad log option (nothing starts), ``CookieError``,
    ``AuthenticationFailed`` (the convention refuses the secret), ``NodeNameTaken``,
    ``DataDirLocked`` (a live node uses ``data_dir``), ``NodeError`` (not up in time).
    """
    log_options = _check_log_options(log_options)   # before anything is created
    _check_options(placement, metrics_port, settings, server_settings)
    modules = node_modules(allowed_modules)
    nm = _node_main()
    data_dir = os.path.abspath(data_dir)
    wal_dirs = _check_wal_dirs(data_dir, wal_dirs)
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    os.chmod(data_dir, 0o700)     # (also one made before data dirs were private)
    port = int(port)
    convention = tuple(convention) if convention else (host, port)
    if nm.live_node_info(data_dir) is not None:
        raise DataDirLocked(f"{data_dir} is used by a running node")
    cookie = _check_secret(name, host, port, convention, seeds, cookie_file, timeout)
    cfg = {
        "name": name, "data_dir": data_dir, "host": host, "port": port,
        "convention": [convention[0], int(convention[1])], "incarnation": time.time_ns() // 1000,
        "allowed_hosts": list(allowed_hosts) if allowed_hosts is not None else None,
        "cookie_file": cookie, "settings": dict(settings or {}),
        "server_settings": dict(server_settings or {}), "log": log_options, "wal_dirs": wal_dirs,
        "placement": placement, "allowed_modules": list(modules), "metrics_port": metrics_port,
        "seeds": [list(s) for s in (seeds or ())], "start_timeout": timeout,
        # not detached: the node stops when this process dies
        "owner_pid": None if detach else os.getpid(),
    }
    cfg_path = os.path.join(data_dir, "node.json")
    nm.write_json(cfg_path, cfg)
    _forget_previous_status(data_dir)
    popen = _spawn_keeper(cfg_path, data_dir, _node_environment(python_path), detach)
    status = _wait_until_ready(popen, name, data_dir, timeout)
    info = nm.read_json(os.path.join(data_dir, "node.pid")) or {}
    return Node(name, host, port, data_dir, convention, popen.pid, info.get("pgid") or status.get("pgid"),
                None if detach else popen, cfg, metrics_port=status.get("metrics_port"))


def _check_options(placement: str, metrics_port, settings=None, server_settings=None) -> None:
    _check_settings(settings, server_settings)
    if placement not in ("process", "shared"):
        raise ValueError(f"placement must be 'process' or 'shared', got {placement!r}")
    if metrics_port is not None and (isinstance(metrics_port, bool) or not isinstance(metrics_port, int)
                                     or not 0 <= metrics_port <= 65535):
        raise ValueError(f"metrics_port must be a port number (0: any free one) or None, got {metrics_port!r}")


def _check_secret(name, host, port, convention, seeds, cookie_file, timeout) -> str:
    """The cookie file's path, after the secret was read (created by a node
    that leads its own convention) and, for a node that joins, the
    convention leader and the seeds took it and know no live node ``name``."""
    cookie = cookie_path(cookie_file)
    leads = tuple(convention) == (host, port)
    key = ensure_cookie(cookie) if leads else read_cookie(cookie)
    joins = [] if leads else [convention]
    joins += [tuple(s) for s in (seeds or ()) if tuple(s) not in joins]
    if joins:
        from .preflight import check_joining
        check_joining(name, host, port, joins, cookie, key, timeout=min(5.0, timeout))
    return cookie


def _forget_previous_status(data_dir: str) -> None:
    # start-up is followed through node.status: a previous run's "ready" or
    # "error" must not be read as this one's
    try:
        os.unlink(os.path.join(data_dir, "node.status"))
    except FileNotFoundError:
        pass


def _node_environment(python_path: list | None) -> dict:
    """This process's environment, with a ``PYTHONPATH`` that lets the node
    import what this process imports (``python_path`` first, no repeats)."""
    env = dict(os.environ)
    paths = [p for p in (python_path or []) if p]
    paths += [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    seen, ordered = set(), []
    for p in paths:
        if p not in seen:
            seen.add(p)
            ordered.append(p)
    env["PYTHONPATH"] = os.pathsep.join(ordered)
    return env


def _spawn_keeper(cfg_path: str, data_dir: str, env: dict, detach: bool) -> subprocess.Popen:
    """Start the node's keeper (:mod:`ra_actors.actors.node_main`), its
    output appended to ``node.log``."""
    log_fd = os.open(os.path.join(data_dir, "node.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(log_fd, "ab") as logf:
        # Never a pipe: the node outlives this call and would hold it open.
        return subprocess.Popen([sys.executable, "-m", "ra_actors.actors.node_main", cfg_path],
                                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                start_new_session=detach, close_fds=True, env=env, cwd=os.getcwd())


def _wait_until_ready(popen: subprocess.Popen, name: str, data_dir: str, timeout: float) -> dict:
    """The node's status once it says ``ready``.  Raises ``DataDirLocked``
    or ``NodeError`` if start-up fails, ``NodeError`` after stopping what
    was started if it takes longer than ``timeout``."""
    nm = _node_main()
    log_path = os.path.join(data_dir, "node.log")
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = nm.read_json(os.path.join(data_dir, "node.status")) or {}
        if status.get("state") == "ready":
            return status
        if status.get("state") == "error" or popen.poll() is not None:
            _raise_start_failure(popen, name, data_dir, status, log_path)
        time.sleep(0.02)
    _stop_unstarted_node(popen, data_dir)
    raise NodeError(f"node {name} did not start within {timeout}s (see {log_path})")


def _raise_start_failure(popen: subprocess.Popen, name: str, data_dir: str, status: dict,
                         log_path: str) -> NoReturn:
    try:
        popen.wait(15)   # the keeper kills and reaps the node's processes first
    except subprocess.TimeoutExpired:
        _stop_unstarted_node(popen, data_dir)   # nothing of a failed start stays
    status = _node_main().read_json(os.path.join(data_dir, "node.status")) or status
    kind = status.get("kind")
    err = status.get("error") or f"node {name} exited during start-up (see {log_path})"
    if kind == "DataDirLocked":
        raise DataDirLocked(err)
    raise NodeError(f"node {name} did not start: {err}")


def _stop_unstarted_node(popen: subprocess.Popen, data_dir: str) -> None:
    """Ask the keeper to stop the node; kill its group if it does not."""
    nm = _node_main()
    popen.send_signal(signal.SIGTERM)
    try:
        popen.wait(10)
    except subprocess.TimeoutExpired:
        info = nm.read_json(os.path.join(data_dir, "node.pid")) or {}
        if info.get("pgid"):
            nm._kill_group(info["pgid"])
        popen.kill()
        popen.wait(5)


def node_status(data_dir: str, ask: bool = False, timeout: float = 5.0) -> dict:
    """What the files of ``data_dir`` say about its node (for ``node status``).

    ``ask=True``: also ask the running node about its storage (``storage``:
    its state and reason, see ``client.overview``), since a node whose disk
    refuses writes may not be able to say so in ``node.status``; a storage
    in ``error`` makes ``state`` ``"error"`` with the reason in ``error``."""
    nm = _node_main()
    data_dir = os.path.abspath(data_dir)
    info = nm.read_json(os.path.join(data_dir, "node.pid")) or {}
    status = nm.read_json(os.path.join(data_dir, "node.status")) or {}
    live = nm.live_node_info(data_dir) is not None
    pgid = info.get("pgid")
    pids = nm.group_members(pgid) if pgid and nm.group_alive(pgid) else []
    out = {"data_dir": data_dir, "node": info.get("node"), "state": status.get("state") if live else
           ("stale" if pids else (status.get("state") or "absent")),
           "running": live, "keeper": info.get("keeper"), "pgid": pgid, "pids": pids,
           "host": info.get("host"), "port": info.get("port"), "error": status.get("error"),
           "metrics_port": status.get("metrics_port") if live else None}
    if ask and live and info.get("port") and info.get("node"):
        out["storage"] = _ask_storage(info["host"], int(info["port"]), info["node"], timeout)
        storage = out["storage"]
        if storage.get("state") == "error":
            out["state"], out["error"] = "error", f"storage: {storage.get('reason')}"
        elif storage.get("state") in ("ok", "failing") and out["state"] == "error":
            out["state"], out["error"] = "ready", None    # (the file is behind)
    return out


def _ask_storage(host: str, port: int, node: str, timeout: float) -> dict:
    """The running node's storage (``overview()["storage"]``), or what went wrong."""
    from .api import connect
    from .errors import RaError
    try:
        with connect([(host, port)], timeout=timeout) as client:
            return dict(client.overview(node, timeout=timeout).get("storage") or {})
    except RaError as exc:
        return {"state": "unknown", "reason": f"the node did not answer: {type(exc).__name__}: {exc}"}


def stop_node(node: Node | str, timeout: float = 15.0) -> None:
    """Stop a node gracefully (``node``: a :class:`Node` or its data dir);
    whatever is left after ``timeout`` seconds is killed."""
    nm = _node_main()
    if isinstance(node, Node):
        keeper, pgid, popen, data_dir = node.keeper_pid, node.pgid, node._popen, node.data_dir
    else:
        data_dir = os.path.abspath(str(node))
        info = nm.read_json(os.path.join(data_dir, "node.pid")) or {}
        keeper, pgid, popen = info.get("keeper"), info.get("pgid"), None
        if keeper and not nm._same_process(keeper, info.get("keeper_ct")):
            keeper = None
    if keeper and (popen is None or popen.poll() is None):
        try:
            os.kill(keeper, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if pgid:
            try:
                os.killpg(pgid, signal.SIGCONT)  # a paused node must be able to stop
            except ProcessLookupError:
                pass
    deadline = time.time() + timeout
    while time.time() < deadline:
        keeper_gone = (popen.poll() is not None) if popen is not None else not _pid_alive(keeper)
        if keeper_gone and not (pgid and nm.group_alive(pgid)):
            break
        time.sleep(0.02)
    else:
        if pgid:
            nm._kill_group(pgid)
        if keeper:
            try:
                os.kill(keeper, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if popen is not None:
        try:
            popen.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
    if pgid:
        end = time.time() + 5
        while nm.group_alive(pgid) and time.time() < end:
            time.sleep(0.02)


# ----------------------------------------------------------- local nodes
class LocalNodes:
    """Handle returned by :func:`local_nodes`."""

    def __init__(self, names: Iterable[str], data_root: str, host: str, ports: dict[str, int],
                 own_root: bool, options: dict[str, Any], cookie_file: str | None) -> None:
        self.names = list(names)
        self.data_root = data_root
        self.cookie_file = cookie_file
        self.host = host
        self.ports = dict(ports)
        self._own_root = own_root
        self._options = options
        self.nodes: dict[str, Node] = {}
        self._clients: list[Client] = []
        self.convention = (host, self.ports[self.names[0]])

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def data_dir(self, name: str) -> str:
        return os.path.join(self.data_root, name)

    def addresses(self) -> dict[str, Address]:
        return {n: (self.host, self.ports[n]) for n in self.names}

    def _start(self, name, timeout=30.0) -> Node:
        node = self._launch(name, timeout)
        self.nodes[name] = node
        return node

    def _launch(self, name, timeout=30.0) -> Node:
        """Start node ``name`` (not yet recorded in :attr:`nodes`: a start
        thread must not change that table while the caller reads it)."""
        options = dict(self._options)
        if options.get("wal_dirs") is not None:
            options["wal_dirs"] = self.wal_dirs(name)
        return start_node(name, self.data_dir(name), self.ports[name], convention=self.convention,
                          host=self.host, seeds=[a for n, a in self.addresses().items() if n != name],
                          timeout=timeout, cookie_file=self.cookie_file, **options)

    def wal_dirs(self, name: str) -> list[str] | None:
        """Node ``name``'s WAL directories (None: the default, in its data directory)."""
        roots = self._options.get("wal_dirs")
        return None if roots is None else [os.path.join(os.path.abspath(r), name) for r in roots]

    # -- clients -------------------------------------------------------------
    def client(self, **kw: Any) -> Client:
        """A new client connected to these nodes (closed on exit)."""
        from .api import connect
        kw.setdefault("cookie_file", self.cookie_file)
        c = connect([self.addresses()[n] for n in self.names], **kw)
        self._clients.append(c)
        return c

    # -- fault injection -------------------------------------------------------
    def kill(self, name: str) -> None:
        """SIGKILL node ``name``'s process group."""
        self.nodes[name].kill()

    def restart(self, name: str, timeout: float = 30.0) -> Node:
        """Start ``name`` again on the same data directory and port."""
        old = self.nodes.get(name)
        if old is not None and old.alive():
            old.stop()
        return self._start(name, timeout)

    def stop(self, name: str, timeout: float = 15.0) -> None:
        self.nodes[name].stop(timeout)

    def pause(self, name: str) -> None:
        self.nodes[name].pause()

    def resume(self, name: str) -> None:
        self.nodes[name].resume()

    def pids(self, name: str) -> list[int]:
        return self.nodes[name].pids()

    def all_pids(self) -> list[int]:
        out = []
        for n in self.nodes.values():
            out.extend(n.pids())
            if _pid_alive(n.keeper_pid):
                out.append(n.keeper_pid)
        return out

    # -- lifecycle ---------------------------------------------------------------
    def close(self) -> None:
        for c in self._clients:
            try:
                c.close()
            except Exception:  # pragma: no cover
                pass
        self._clients = []
        nodes = list(self.nodes.values())
        for n in nodes:
            try:
                os.killpg(n.pgid, signal.SIGCONT)
            except (ProcessLookupError, TypeError):
                pass
        # stop all nodes in parallel: SIGTERM every keeper, then wait
        for n in nodes:
            if n._popen is not None and n._popen.poll() is None:
                try:
                    n._popen.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for n in nodes:
            try:
                stop_node(n, timeout=10.0)
            except Exception:  # pragma: no cover
                n.kill()
        if self._own_root:
            shutil.rmtree(self.data_root, ignore_errors=True)

    def __enter__(self) -> LocalNodes:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def local_nodes(names: Iterable[str], data_root: str | None = None, host: str = "127.0.0.1", *,
                ports: dict[str, int] | None = None, timeout: float = 30.0, **options: Any) -> LocalNodes:
    """Start nodes ``names`` on free ports of ``host`` (a context manager).

    Each node gets ``<data_root>/<name>`` (``data_root`` defaults to a
    temporary directory removed on exit).  The first node leads the
    convention.  On exit (also on errors) every node is stopped, and killed
    if it does not stop in time.  Starting is all or nothing: if a node
    fails to start, every node that started (or was still starting) is
    stopped and the first failure is raised as it was (``NodeError`` with
    the node's reason, ``DataDirLocked``...).  The nodes and ``client()``
    share the cluster secret in ``cookie_file`` (default:
    ``$RA_ACTORS_COOKIE_FILE``, else ``~/.ra_actors.cookie``; created if
    missing).  Extra keyword arguments go to
    :func:`start_node` (``settings``, ``server_settings``, ``log_options``,
    ``placement``), except ``wal_dirs``: there it names *roots*, and node
    ``n`` gets ``<root>/n`` in each (two nodes never share a WAL directory).
    """
    names = list(names)
    if not names or len(set(names)) != len(names):
        raise ValueError("local_nodes needs distinct node names")
    if "log_options" in options:
        _check_log_options(options["log_options"])   # before any directory or node
    if options.get("wal_dirs") is not None:
        roots = options["wal_dirs"]
        roots = [] if isinstance(roots, (str, bytes, os.PathLike)) else list(roots)
        if not roots:
            raise ValueError("wal_dirs must be a list of root directories (node n gets <root>/n)")
        options["wal_dirs"] = [os.path.abspath(r) for r in roots]
    _check_settings(options.get("settings"), options.get("server_settings"))
    own_root = data_root is None
    data_root = os.path.abspath(data_root or tempfile.mkdtemp(prefix="ra_actors_"))
    used: set = set()
    chosen = {}
    for n in names:
        chosen[n] = int((ports or {}).get(n) or free_port(host, used))
        used.add(chosen[n])
    cookie_file = cookie_path(options.pop("cookie_file", None))
    handle = LocalNodes(names, data_root, host, chosen, own_root, options, cookie_file)
    starts: list[_Start] = []
    try:
        ensure_cookie(cookie_file)
        for n in names:
            os.makedirs(handle.data_dir(n), exist_ok=True)
        # the convention leader first, the others in parallel
        handle._start(names[0], timeout)
        starts = [_Start(handle, n, timeout) for n in names[1:]]
        for s in starts:
            s.join()
        failed = sorted((s for s in starts if s.error is not None), key=lambda s: s.failed_at)
        for s in starts:
            if s.node is not None:
                handle.nodes[s.name] = s.node
        if failed:
            raise failed[0].error
    except BaseException:
        # All or nothing: every start still in flight ends first (a node that
        # came up after the others were stopped would keep its data
        # directory locked), then every node that started is stopped.
        for s in starts:
            s.join()
            if s.node is not None:
                handle.nodes[s.name] = s.node
        handle.close()
        raise
    return handle


class _Start:
    """One node of :func:`local_nodes` starting in a thread of its own.  The
    thread records its outcome here and never touches ``handle.nodes``."""

    def __init__(self, handle: LocalNodes, name: str, timeout: float) -> None:
        import threading
        self.name = name
        self.timeout = timeout
        self.node: Node | None = None
        self.error: BaseException | None = None
        self.failed_at = 0.0
        self._thread = threading.Thread(target=self._run, args=(handle,), daemon=True,
                                        name=f"start-{name}")
        self._thread.start()

    def _run(self, handle: LocalNodes) -> None:
        try:
            self.node = handle._launch(self.name, self.timeout)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self.error = exc
            self.failed_at = time.monotonic()

    def join(self) -> None:
        """Wait for the outcome: ``start_node`` ends within its timeout
        (stopping what it started if the node was not up by then)."""
        self._thread.join(self.timeout + 30)
        if self._thread.is_alive() and self.error is None:
            self.error = NodeError(f"node {self.name} did not start")
            self.failed_at = time.monotonic()
