"""``ra-actors cluster ...``: start and manage clusters on running nodes.

Usage::

    ra-actors cluster start NAME MACHINE MEMBER... [--config JSON]
    ra-actors cluster members SERVER
    ra-actors cluster overview [SERVER]
    ra-actors cluster transfer SERVER TARGET
    ra-actors cluster add SERVER NEW [--membership voter|non_voter|promotable]
    ra-actors cluster remove SERVER OLD [--delete]
    ra-actors cluster delete SERVER --yes
    ra-actors cluster command SERVER COMMAND_JSON
    ra-actors cluster query SERVER MODULE:FUNCTION [ARG_JSON...] [--local|--leader]

Every command needs a node to talk to: ``--connect HOST:PORT`` (repeatable,
any node's admin address) or ``$RA_ACTORS_CONNECT`` (``HOST:PORT[,HOST:PORT]``).
Servers are written ``NAME@NODE`` (``ServerId(NAME, NODE)``); in ``start``
a bare ``NODE`` means ``NAME@NODE``.  Commands and query arguments are JSON
(arrays become tuples, as the client's msgpack normalisation does).

Rules: each command is a handler ``_<command>(args) -> int`` returning an
exit status of :mod:`ra_actors.cli.exit_codes`; bad arguments found after
parsing raise :class:`~ra_actors.cli.usage.UsageError`, client errors
propagate to :func:`ra_actors.cli.program.main`, which prints them.  The
client API (and so Thespian) is imported only when a command connects.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from ..core.types import ServerId
from ..errors import NodeDown, NoSuchServer, RaError, Timeout
from .cookie import add_cookie_option
from .exit_codes import EXIT_FAILED, EXIT_OK
from .ui import LiveStatus, table
from .usage import UsageError

__all__ = ["add_parser", "parse_server_id"]

CONNECT_ENV = "RA_ACTORS_CONNECT"


# ------------------------------------------------------------------ parsing
def parse_server_id(text: str, default_name: str | None = None):
    name, sep, node = text.partition("@")
    if not sep:
        if default_name is None:
            raise argparse.ArgumentTypeError(f"expected NAME@NODE, got {text!r}")
        name, node = default_name, text
    if not name or not node:
        raise argparse.ArgumentTypeError(f"expected NAME@NODE, got {text!r}")
    return ServerId(name, node)


def _sid_arg(text: str):
    return parse_server_id(text)


def _hostport(text: str) -> tuple:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    try:
        return host, int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}") from None


def _json_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not JSON: {text!r} (strings need quotes: '\"k\"')") from None


def _to_python(value):
    """JSON arrays -> tuples (what the client's msgpack normalisation gives)."""
    if isinstance(value, list):
        return tuple(_to_python(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_python(v) for k, v in value.items()}
    return value


def jsonable(value):
    """ServerIds as ``NAME@NODE`` strings, tuples as lists, other keys as strings."""
    if isinstance(value, ServerId):
        return str(value)
    if isinstance(value, dict):
        return {(str(k) if not isinstance(k, (str, int, float, bool)) or isinstance(k, ServerId) else k):
                jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, bytes):
        return value.hex()
    return repr(value)


def _print_json(value) -> None:
    print(json.dumps(jsonable(value), indent=2, sort_keys=False))


def _addresses(args) -> list:
    addrs = list(args.connect or [])
    if not addrs:
        env = os.environ.get(CONNECT_ENV, "")
        for part in env.split(","):
            if part.strip():
                try:
                    addrs.append(_hostport(part))
                except argparse.ArgumentTypeError as exc:
                    raise UsageError(f"${CONNECT_ENV}: {exc}") from None
    if not addrs:
        raise UsageError(f"no node to talk to: give --connect HOST:PORT (a node's admin address) "
                         f"or set ${CONNECT_ENV}")
    return addrs


def _client(args):
    from ..api import connect
    addrs = _addresses(args)
    where = ", ".join(f"{h}:{p}" for h, p in addrs)
    with LiveStatus(f"connecting to {where}"):
        try:
            return connect(addrs, timeout=min(args.timeout, 10.0), cookie_file=args.cookie_file)
        except Timeout:
            raise NodeDown(f"no ra_actors node answered at {where}") from None


# ------------------------------------------------------------------ helpers
def _metrics_rows(client, sids, leader):
    rows = []
    for sid in sids:
        try:
            km = client.key_metrics(sid, timeout=2.0)
        except RaError as exc:
            rows.append({"server": str(sid), "state": "unreachable", "error": type(exc).__name__})
            continue
        row = {"server": str(sid), **km}
        row["leader"] = sid == leader
        rows.append(row)
    return rows


MEMBER_HEADERS = ("server", "role", "membership", "term", "last_index", "commit", "applied", "snapshot", "")


def _member_table(rows) -> str:
    return table([(r["server"], r["state"], r.get("membership"), r.get("term"), r.get("last_index"),
                   r.get("commit_index"), r.get("last_applied"), r.get("snapshot_index"),
                   "<- leader" if r.get("leader") else "") for r in rows], MEMBER_HEADERS)


def _show_members(client, sid, as_json, timeout):
    members, leader = client.members(sid, timeout=timeout)
    rows = _metrics_rows(client, members, leader)
    if as_json:
        _print_json({"members": members, "leader": leader, "metrics": rows})
    else:
        print(_member_table(rows))
    return members, leader


def _wait_caught_up(client, server, new, timeout) -> bool:
    """Wait (with a live status) until ``new`` applied the leader's commit index."""
    deadline = time.monotonic() + timeout
    with LiveStatus(f"{new} catching up") as st:
        while time.monotonic() < deadline:
            try:
                _m, leader = client.members(server, timeout=2.0)
                target = client.key_metrics(leader or server, timeout=2.0)["commit_index"]
                applied = client.key_metrics(new, timeout=2.0)["last_applied"]
            except RaError:
                time.sleep(0.1)
                continue
            st.progress(applied, target)
            if applied >= target:
                return True
            time.sleep(0.1)
    return False


# ----------------------------------------------------------------- commands
def _start(args) -> int:
    sids = []
    for m in args.members:
        try:
            sids.append(parse_server_id(m, default_name=args.name))
        except argparse.ArgumentTypeError as exc:
            raise UsageError(str(exc)) from None
    config = args.config or {}
    if not isinstance(config, dict):
        raise UsageError("--config must be a JSON object")
    with _client(args) as client:
        with LiveStatus(f"starting cluster {args.name} on {len(sids)} servers and electing a leader"):
            extra = {} if args.wal is None else {"wal": args.wal}
            started, not_started = client.start_cluster(args.name, args.machine, sids, config=config,
                                                        timeout=args.timeout, **extra)
        if args.json:
            members, leader = client.members(started[0])
            _print_json({"cluster": args.name, "machine": args.machine, "started": started,
                         "not_started": not_started, "leader": leader})
        else:
            print(f"cluster {args.name} ({args.machine}) started on {', '.join(map(str, started))}")
            if not_started:
                print(f"warning: not started (unreachable nodes): {', '.join(map(str, not_started))}",
                      file=sys.stderr)
            _show_members(client, started[0], False, args.timeout)
    return EXIT_OK


def _members(args) -> int:
    with _client(args) as client:
        _show_members(client, args.server, args.json, args.timeout)
    return EXIT_OK


def _overview(args) -> int:
    with _client(args) as client:
        if args.server is not None:
            ov = client.member_overview(args.server, timeout=args.timeout)
            if args.json:
                _print_json(ov)
                return EXIT_OK
            keys = ("id", "state", "membership", "term", "leader_id", "voted_for", "last_index",
                    "last_written_index", "commit_index", "last_applied", "snapshot_index",
                    "machine_module", "machine_version", "pid", "incarnation", "uid")
            print(table([(k, jsonable(ov.get(k))) for k in keys], ("field", "value")))
            print()
            print(table([(str(s), m) for s, m in ov.get("cluster", {}).items()], ("member", "membership")))
            if ov.get("peers"):
                print()
                print(table([(str(s), p["next_index"], p["match_index"], p["status"])
                             for s, p in ov["peers"].items()], ("peer", "next_index", "match_index", "status")))
            print()
            print("machine overview: " + json.dumps(jsonable(ov.get("machine"))))
            return EXIT_OK
        seen = client.nodes()
        nodes = {}
        for name in sorted(seen):
            if seen[name] != "up":
                nodes[name] = None
                continue
            try:
                nodes[name] = client.overview(name, timeout=min(args.timeout, 5.0))
            except RaError:
                nodes[name] = None
        if args.json:
            _print_json({"nodes": {n: (ov if ov is not None else {"status": "down"}) for n, ov in nodes.items()}})
            return EXIT_OK
        rows = []
        sick = []
        for name, ov in nodes.items():
            if ov is None:
                rows.append((name, "down", "-", "-", "-", "-", "-"))
                continue
            servers = ", ".join(f"{s}({v['status']}{', restarts ' + str(v['restarts']) if v['restarts'] else ''})"
                                for s, v in sorted(ov["servers"].items())) or "-"
            down = [n for n, st in ov["nodes"].items() if st != "up"]
            storage = ov.get("storage") or {}
            state = storage.get("state", "ok")
            if state != "ok":
                sick.append(f"{name}: storage {state}: {storage.get('reason')}")
            rows.append((name, "up" if state == "ok" else f"up, storage {state}", f"{ov['admin'][0]}:{ov['admin'][1]}",
                         ov["clients"],
                         ",".join(f"{k}:{v}" for k, v in sorted(ov["services"].items()) if v != "running") or "ok",
                         ",".join(down) or "-", servers))
        print(table(rows, ("node", "status", "admin", "clients", "services", "sees down", "servers")))
        for name, ov in nodes.items():
            wals = (ov or {}).get("wals") or []
            if len(wals) > 1:
                print(f"{name} WALs: " + "; ".join(
                    f"{w['wal']}: {w['dir']} ({w['status']}, {len(w['servers'])} servers)" for w in wals))
        for line in sick:
            print(line)
    healthy = all(ov is not None and (ov.get("storage") or {}).get("state", "ok") != "error"
                  for ov in nodes.values())
    return EXIT_OK if healthy else EXIT_FAILED


def _transfer(args) -> int:
    with _client(args) as client:
        with LiveStatus(f"transferring leadership to {args.target}"):
            result, leader = client.transfer_leadership(args.server, args.target, timeout=args.timeout)
        if args.json:
            _print_json({"result": result, "leader": leader})
        else:
            print(f"{leader} is the leader" + (" (it already was)" if result == "already_leader" else ""))
    return EXIT_OK


def _add(args) -> int:
    config = args.config or {}
    with _client(args) as client:
        members, _leader = client.members(args.server, timeout=args.timeout)
        machine = args.machine or client.member_overview(args.server, timeout=args.timeout)["machine_module"]
        cluster_name = args.cluster_name or args.server.name
        with LiveStatus(f"starting {args.new} and adding it as a {args.membership}"):
            client.start_server(cluster_name, machine, args.new, members, config=config, timeout=args.timeout)
            client.add_member(args.server, args.new, membership=args.membership, timeout=args.timeout)
        caught_up = _wait_caught_up(client, args.server, args.new, args.timeout)
        if not caught_up:
            print(f"warning: {args.new} has not caught up with the leader yet", file=sys.stderr)
        if args.json:
            members, leader = client.members(args.server, timeout=args.timeout)
            _print_json({"added": args.new, "membership": args.membership, "members": members, "leader": leader})
        else:
            print(f"{args.new} added to the cluster of {args.server} as a {args.membership}")
            _show_members(client, args.server, False, args.timeout)
    return EXIT_OK


def _remove(args) -> int:
    with _client(args) as client:
        with LiveStatus(f"removing {args.old}"):
            client.remove_member(args.server, args.old, timeout=args.timeout)
            node_up = True
            try:
                if args.delete:
                    client.force_delete_server(args.old, timeout=min(args.timeout, 5.0))
                else:
                    client.stop_server(args.old, timeout=min(args.timeout, 5.0))
            except NoSuchServer:
                pass   # already gone
            except (Timeout, NodeDown):
                node_up = False
        if not node_up:
            print(f"warning: node {args.old.node} is down: {args.old} was removed from the cluster but "
                  f"not {'deleted' if args.delete else 'stopped'} on its node", file=sys.stderr)
        via = args.server if args.server != args.old else None
        if args.json:
            out = {"removed": args.old, "stopped": node_up, "deleted": bool(args.delete and node_up)}
            if via is not None:
                out["members"], out["leader"] = client.members(via, timeout=args.timeout)
            _print_json(out)
        else:
            print(f"{args.old} removed" + ("" if not node_up else " and its data deleted" if args.delete else
                                           " (its server is stopped; its data is kept)"))
            if via is not None:
                _show_members(client, via, False, args.timeout)
    return EXIT_OK


def _delete(args) -> int:
    with _client(args) as client:
        members, _leader = client.members(args.server, timeout=args.timeout)
        if not args.yes:
            what = f"delete the cluster of {args.server} ({', '.join(map(str, members))}) and all its data"
            if sys.stdin.isatty():
                answer = input(f"{what}? [y/N] ").strip().lower()
                if answer not in ("y", "yes"):
                    print("nothing deleted")
                    return EXIT_FAILED
            else:
                raise UsageError(f"refusing to {what} without --yes")
        with LiveStatus(f"deleting the cluster of {args.server}"):
            client.delete_cluster(members, timeout=args.timeout)
        if args.json:
            _print_json({"deleted": members})
        else:
            print(f"cluster deleted: {', '.join(map(str, members))}")
    return EXIT_OK


def _command(args) -> int:
    command = _to_python(args.command)
    with _client(args) as client:
        reply, leader = client.process_command(args.server, command, timeout=args.timeout)
    if args.json:
        _print_json({"reply": reply, "leader": leader})
    else:
        print(json.dumps(jsonable(reply)))
    return EXIT_OK


def _query(args) -> int:
    qargs = [_to_python(a) for a in args.args]
    with _client(args) as client:
        if args.kind == "local":
            (idx_term, value), leader = client.local_query(args.server, args.function, *qargs, timeout=args.timeout)
        elif args.kind == "leader":
            (idx_term, value), leader = client.leader_query(args.server, args.function, *qargs, timeout=args.timeout)
        else:
            value, leader = client.consistent_query(args.server, args.function, *qargs, timeout=args.timeout)
            idx_term = None
    if args.json:
        out = {"value": value, "leader": leader}
        if idx_term is not None:
            out["index_term"] = idx_term
        _print_json(out)
    else:
        print(json.dumps(jsonable(value)))
    return EXIT_OK


# ------------------------------------------------------------------- parser
def _common(p, timeout: float = 10.0) -> None:
    g = p.add_argument_group("connection")
    g.add_argument("--connect", "-c", action="append", type=_hostport, metavar="HOST:PORT",
                   help=f"a node's admin address (repeatable; default ${CONNECT_ENV})")
    g.add_argument("--timeout", type=float, default=timeout, metavar="SECONDS",
                   help=f"give up after this long (default {timeout:g}; exit 4)")
    add_cookie_option(g)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("cluster", help="start, inspect and change clusters on running nodes",
                              description="Start, inspect and change clusters on running nodes.\n\n"
                                          + __doc__.split("\n\n")[2],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cluster_command", metavar="COMMAND")
    sub.required = True
    for register in _COMMAND_REGISTRARS:
        register(sub)


def _register_start(sub) -> None:
    s = sub.add_parser("start", help="start a new cluster and elect a leader",
                       description="Start a server per MEMBER running MACHINE (an import path every node "
                                   "can import, e.g. machines.kv) and elect a leader.  MEMBER is NODE "
                                   "(server NAME@NODE) or NAME@NODE.",
                       epilog="example: ra-actors cluster start kv machines.kv n1 n2 n3 -c 127.0.0.1:4100")
    s.add_argument("name", metavar="NAME", help="cluster name (and server name for bare nodes)")
    s.add_argument("machine", metavar="MACHINE", help="machine import path, e.g. machines.kv")
    s.add_argument("members", nargs="+", metavar="MEMBER", help="NODE or NAME@NODE")
    s.add_argument("--config", type=_json_value, default=None, metavar="JSON",
                   help='machine config, a JSON object (e.g. \'{"release_cursor_every": 1000}\')')
    s.add_argument("--wal", type=int, default=None, metavar="K",
                   help="write to each node's K-th WAL directory (--wal-dir of node start, from 0; "
                        "default: the one the server's uid hashes to)")
    _common(s, timeout=30.0)
    s.set_defaults(func=_start)


def _register_members(sub) -> None:
    m = sub.add_parser("members", help="members of a cluster, its leader and every member's indexes")
    m.add_argument("server", type=_sid_arg, metavar="SERVER", help="any member, NAME@NODE")
    _common(m)
    m.set_defaults(func=_members)


def _register_overview(sub) -> None:
    o = sub.add_parser("overview", help="every node's servers and view (or one server's overview)",
                       description="Without SERVER: one line per node (status, admin address, servers, the "
                                   "nodes it sees down); exit 1 if a node is down.  With SERVER: that "
                                   "member's overview (role, indexes, peers, machine overview).")
    o.add_argument("server", nargs="?", type=_sid_arg, metavar="SERVER", help="NAME@NODE")
    _common(o)
    o.set_defaults(func=_overview)


def _register_transfer(sub) -> None:
    t = sub.add_parser("transfer", help="hand leadership to another member",
                       description="Ask the leader to hand over to TARGET (a caught-up voter); returns once "
                                   "TARGET leads.")
    t.add_argument("server", type=_sid_arg, metavar="SERVER", help="any member, NAME@NODE")
    t.add_argument("target", type=_sid_arg, metavar="TARGET", help="the new leader, NAME@NODE")
    _common(t)
    t.set_defaults(func=_transfer)


def _register_add(sub) -> None:
    a = sub.add_parser("add", help="start a new server and add it to a cluster",
                       description="Start server NEW (same machine as SERVER unless --machine) and add it "
                                   "to SERVER's cluster; it catches up from the leader (entries or a "
                                   "snapshot).")
    a.add_argument("server", type=_sid_arg, metavar="SERVER", help="any member, NAME@NODE")
    a.add_argument("new", type=_sid_arg, metavar="NEW", help="the new server, NAME@NODE")
    a.add_argument("--membership", choices=("voter", "non_voter", "promotable"), default="voter")
    a.add_argument("--machine", default=None, help="machine import path (default: SERVER's)")
    a.add_argument("--cluster-name", default=None, help="cluster name (default: SERVER's name)")
    a.add_argument("--config", type=_json_value, default=None, metavar="JSON",
                   help="machine config of the new server (a JSON object; use the cluster's)")
    _common(a)
    a.set_defaults(func=_add)


def _register_remove(sub) -> None:
    r = sub.add_parser("remove", help="remove a member from a cluster",
                       description="Remove OLD from SERVER's cluster and stop its server, keeping its "
                                   "data; with --delete, delete its data too.")
    r.add_argument("server", type=_sid_arg, metavar="SERVER", help="any member, NAME@NODE")
    r.add_argument("old", type=_sid_arg, metavar="OLD", help="the member to remove, NAME@NODE")
    r.add_argument("--delete", action="store_true", help="also delete OLD's data on its node")
    _common(r)
    r.set_defaults(func=_remove)


def _register_delete(sub) -> None:
    d = sub.add_parser("delete", help="delete a cluster and all its data",
                       description="Delete SERVER's whole cluster: every member stops and removes its "
                                   "data.  Asks for confirmation on a terminal; needs --yes otherwise.")
    d.add_argument("server", type=_sid_arg, metavar="SERVER", help="any member, NAME@NODE")
    d.add_argument("--yes", "-y", action="store_true", help="do not ask")
    _common(d)
    d.set_defaults(func=_delete)


def _register_command(sub) -> None:
    c = sub.add_parser("command", help="apply one command through the leader and print the reply",
                       description="process_command(SERVER, COMMAND): COMMAND is JSON, arrays become "
                                   "tuples.  Prints the machine's reply as JSON.",
                       epilog="example: ra-actors cluster command kv@n1 '[\"write\", \"k\", 1]' -c 127.0.0.1:4100")
    c.add_argument("server", type=_sid_arg, metavar="SERVER", help="any member, NAME@NODE")
    c.add_argument("command", type=_json_value, metavar="COMMAND_JSON")
    _common(c)
    c.set_defaults(func=_command)


def _register_query(sub) -> None:
    q = sub.add_parser("query", help="run a query function on the machine state and print its value",
                       description="Call MODULE:FUNCTION(state, *ARGS) (ARGS are JSON).  Consistent "
                                   "(linearizable) by default; --local reads SERVER's own state, --leader "
                                   "the leader's without a quorum round.",
                       epilog="example: ra-actors cluster query kv@n1 machines.kv:read '\"k\"' -c 127.0.0.1:4100")
    q.add_argument("server", type=_sid_arg, metavar="SERVER", help="any member, NAME@NODE")
    q.add_argument("function", metavar="MODULE:FUNCTION")
    q.add_argument("args", nargs="*", type=_json_value, metavar="ARG_JSON")
    kind = q.add_mutually_exclusive_group()
    kind.add_argument("--local", dest="kind", action="store_const", const="local")
    kind.add_argument("--leader", dest="kind", action="store_const", const="leader")
    q.set_defaults(kind="consistent")
    _common(q)
    q.set_defaults(func=_query)


# One function per command adding its parser, in ``ra-actors cluster --help`` order.
_COMMAND_REGISTRARS = (_register_start, _register_members, _register_overview, _register_transfer,
                       _register_add, _register_remove, _register_delete, _register_command,
                       _register_query)
