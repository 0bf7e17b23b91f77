"""``ra-actors node start|stop|status``: run nodes from separate shells or hosts.

Usage::

    ra-actors node start NAME --data-dir DIR --port PORT [--host ADDR]
                         [--convention HOST:PORT] [--allowed-host ADDR ...]
                         [--seed HOST:PORT ...] [--sync-method datasync|sync|none]
                         [--placement process|shared] [--metrics-port PORT]
                         [--wal-dir DIR ...]
    ra-actors node stop --data-dir DIR [--timeout SECONDS]
    ra-actors node status --data-dir DIR [--json] [--timeout SECONDS]

``start`` returns once the node is up; the node keeps running in its own
session (its own process group) until ``stop``.  Without ``--convention``
the node leads its own convention; other nodes name it as theirs.

Rules: this module only parses and prints; :mod:`ra_actors.nodes` starts,
stops and inspects the node.  Handlers return an exit status of
:mod:`ra_actors.cli.exit_codes` (``EXIT_UNAVAILABLE`` when no node runs).
"""
from __future__ import annotations

import argparse
import json

from .cookie import add_cookie_option
from .exit_codes import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE
from .ui import LiveStatus

__all__ = ["add_parser"]


def _hostport(text: str) -> tuple:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    try:
        return host, int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}") from None


def _start(args) -> int:
    from ..nodes import start_node
    log_options = {"sync_method": args.sync_method} if args.sync_method else {}
    with LiveStatus(f"starting node {args.name} on {args.host}:{args.port}"):
        node = start_node(args.name, args.data_dir, args.port, convention=args.convention, host=args.host,
                          allowed_hosts=args.allowed_host or None, seeds=args.seed or None,
                          log_options=log_options, placement=args.placement,
                          allowed_modules=args.allow_module or None, detach=True,
                          metrics_port=args.metrics_port, timeout=args.timeout, cookie_file=args.cookie_file,
                          wal_dirs=args.wal_dir or None)
    print(f"node {node.name} started on {node.host}:{node.port} "
          f"(process group {node.pgid}, data {node.data_dir})")
    if node.metrics_port is not None:
        print(f"metrics at http://{node.host}:{node.metrics_port}/metrics")
    return EXIT_OK


def _stop(args) -> int:
    from ..nodes import node_status, stop_node
    before = node_status(args.data_dir)
    if not before["running"] and not before["pids"]:
        print(f"no node runs in {args.data_dir}" + (f" (node {before['node']} is {before['state']})"
                                                     if before.get("node") else ""))
        return EXIT_UNAVAILABLE
    with LiveStatus(f"stopping node {before.get('node') or args.data_dir}"):
        stop_node(args.data_dir, timeout=args.timeout)
    print(f"node {before.get('node') or '?'} stopped")
    return EXIT_OK


def _status(args) -> int:
    from ..nodes import node_status
    st = node_status(args.data_dir, ask=True, timeout=args.timeout)
    if args.json:
        print(json.dumps(st, indent=2, default=str))
    else:
        where = f"{st['host']}:{st['port']}" if st.get("port") else "-"
        print(f"node {st.get('node') or '?'}: {st['state']} at {where}, "
              f"process group {st.get('pgid')}, {len(st['pids'])} processes")
        storage = st.get("storage") or {}
        if storage.get("state") not in (None, "ok"):
            print(f"storage: {storage['state']}: {storage.get('reason')}")
        if st.get("error"):
            print(f"last error: {st['error']}")
    if not st["running"]:
        return EXIT_UNAVAILABLE
    return EXIT_FAILED if st["state"] == "error" else EXIT_OK


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("node", help="start, stop or inspect a node",
                              description="Run an ra_actors node as background processes.")
    sub = p.add_subparsers(dest="node_command", metavar="COMMAND")
    sub.required = True

    start = sub.add_parser("start", help="start a node and return once it is up")
    start.add_argument("name", metavar="NAME", help="node name (ServerId(..., NAME))")
    start.add_argument("--data-dir", required=True, help="the node's data directory")
    start.add_argument("--port", required=True, type=int, help="the node's admin port")
    start.add_argument("--host", default="127.0.0.1",
                       help="address to bind and advertise (default 127.0.0.1)")
    start.add_argument("--convention", type=_hostport, default=None, metavar="HOST:PORT",
                       help="the convention leader's admin (default: this node)")
    start.add_argument("--allowed-host", action="append", metavar="ADDR",
                       help="more hosts allowed to connect when --host is not loopback, besides this "
                            "node's, the convention's and the seeds' (repeatable)")
    add_cookie_option(start)
    start.add_argument("--seed", action="append", type=_hostport, metavar="HOST:PORT",
                       help="other nodes' admins to contact (repeatable)")
    start.add_argument("--sync-method", choices=("datasync", "sync", "none"), default=None)
    start.add_argument("--wal-dir", action="append", metavar="DIR",
                       help="a WAL directory (repeatable: one WAL writer per directory, each batching and "
                            "syncing on its own; default DATA_DIR/wal).  Each server writes to one of them "
                            "for its whole life: restart the node with the same directories")
    start.add_argument("--placement", choices=("process", "shared"), default="process",
                       help="process: one actor process per Raft server (default); shared: one "
                            "host actor carries every server of the node and its WAL")
    start.add_argument("--allow-module", action="append", metavar="MODULE",
                       help="a module (or package) whose machines, queries and actor classes this "
                            "node may load, besides the shipped 'machines' (repeatable)")
    start.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                       help="serve the node's counters over HTTP for Prometheus on this port of --host "
                            "(0: any free port; default: off)")
    start.add_argument("--timeout", type=float, default=30.0)
    start.set_defaults(func=_start)

    stop = sub.add_parser("stop", help="stop the node of a data directory")
    stop.add_argument("--data-dir", required=True)
    stop.add_argument("--timeout", type=float, default=15.0)
    stop.set_defaults(func=_stop)

    status = sub.add_parser("status", help="show whether the node of a data directory runs",
                            description="Whether the node of a data directory runs, and its storage's "
                                        "state.  Exit 0: it runs; 1: it runs but its storage is in "
                                        "error (a sick disk: the reason is shown); 3: it does not run.")
    status.add_argument("--data-dir", required=True)
    status.add_argument("--json", action="store_true")
    status.add_argument("--timeout", type=float, default=5.0, help="how long to wait for the node's answer")
    status.set_defaults(func=_status)
