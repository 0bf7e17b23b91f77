"""The trust boundary of real nodes: only holders of the cluster secret get
in, and nothing from the network runs code, kills a process or grows the
log without bound.  An outsider here is a process on the same machine that
does not hold the secret (loopback gets no exemption)."""
from __future__ import annotations

import os
import pickle
import socket
import time

import msgpack
import psutil
import pytest

import ra_actors as ra
from ra_actors import errors, events as ev
from ra_actors.actors import handshake as hs
from ra_actors.actors.authsock import dial_handshake
from ra_actors.actors.node_main import node_allowed_hosts
from ra_actors.actors.protocol import Bundle, WalResult
from ra_actors.actors.stream import MAX_FRAME, wire_codec
from ra_actors.cookie import cookie_path, create_cookie, read_cookie
from ra_actors.core.codec import EXT_RECORD, EXT_TAG
from ra_actors.core.messages import Written
from ra_actors.nodes import free_port


class _CreatesAFile:
    """Unpickling this runs ``os.system("touch PATH")``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _listening_ports(pids) -> set:
    ports = set()
    for pid in pids:
        try:
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    ports.add((conn.laddr.ip, conn.laddr.port))
        except psutil.Error:
            continue
    return ports


def _send_and_read(addr, data: bytes) -> bytes:
    """Send ``data`` and read what comes back until the peer closes (or 1 s
    of silence: a listener whose process never accepts)."""
    got = b""
    with socket.create_connection(addr, timeout=2.0) as s:
        s.sendall(data)
        s.settimeout(1.0)
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    return got


@pytest.mark.parametrize("placement", ["process", "shared"])
def test_no_port_of_a_node_runs_a_pickle_sent_without_the_secret(tmp_path, placement):
    marker = tmp_path / "pwned"
    p = pickle.dumps(_CreatesAFile(str(marker)))
    framed = b"%d>" % len(p) + p
    with ra.local_nodes(["n1", "n2", "n3"], data_root=str(tmp_path / "nodes"), placement=placement) as nodes:
        c = nodes.client()
        sids = [ra.ServerId("kv", n) for n in nodes]
        c.start_cluster("kv", "machines.kv", sids)
        c.process_command(sids[0], ("write", "k", 1))
        pids = nodes.all_pids()
        ports = _listening_ports(pids)
        assert len(ports) >= 18, ports          # every actor and admin listens; shared: the streams too
        for addr in sorted(ports):
            # the pickle alone, and the pickle behind a greeting-sized prefix
            for payload in (framed, b"\0" * 73 + framed):
                answer = _send_and_read(addr, payload)
                assert len(answer) <= hs.HELLO_LEN and (not answer or answer.startswith(hs.MAGIC)), \
                    "nothing but a greeting"
        time.sleep(0.5)
        assert not marker.exists(), "no port unpickled it"
        assert all(psutil.pid_exists(pid) for pid in pids), "every process of every node survives"
        assert nodes.all_pids() and set(pids) <= set(nodes.all_pids())
        reply, _leader = c.process_command(sids[0], ("write", "k", 2))
        assert reply == "ok"
        (_idx, value), _ = c.local_query(sids[1], "machines.kv:read", "k")
        assert value in (1, 2), "the replicas are intact and serving"
        for name in nodes:
            refused = c.overview(name)["refused"]
            assert refused["secret"] >= 7, refused       # each of its listening processes refused us
            log = (tmp_path / "nodes" / name / "node.log").read_text()
            assert log.count("refused a connection from 127.0.0.1") == 1, "logged once per address"


def _nested_records(depth: int) -> bytes:
    doc = msgpack.packb(None)
    for _ in range(depth):
        doc = msgpack.packb(msgpack.ExtType(EXT_RECORD, doc))
    return doc


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


# What the probes of issue 13 sent to a host's stream, and more: each closes
# its connection, is counted, and does nothing else.
_HOSTILE_FRAMES = {
    "nested record extensions (segfaulted a host)": _frame(_nested_records(3000)),
    "a Bundle of things not sent on a stream": _frame(wire_codec().pack(Bundle((1, "x", None)))),
    "a record with fields of the wrong types": _frame(msgpack.packb(
        [msgpack.ExtType(EXT_TAG, b"Rpcs"), 7, "1", 7, None, [1, 2]])),
    "an unknown record": _frame(msgpack.packb([msgpack.ExtType(EXT_TAG, b"os.system"), "touch x"])),
    "a WAL result from an actor that is not the server's WAL": _frame(wire_codec().pack(
        WalResult("kv", (Written(1, 1, 1000),)))),
    "bytes that are not msgpack": _frame(b"\xc1\xc1\xc1"),
    "a length above MAX_FRAME": (MAX_FRAME + 1).to_bytes(4, "big"),
}


def _stream_endpoints(client, sids) -> dict:
    out = {}
    for sid in sids:
        overview = client.member_overview(sid)
        # a host's stream (placement shared), or the server actor's own (process)
        stream = overview["host"]["stream"] if overview["host"] else overview["stream"]
        out[sid.node] = (tuple(stream["endpoint"]), stream["protocol_errors"])
    return out


def _closed_by_peer(sock: socket.socket) -> bool:
    sock.settimeout(5.0)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("placement", ["process", "shared"])
def test_hostile_stream_frames_from_a_secret_holder_close_one_connection_and_restart_nothing(tmp_path, placement):
    """A process that holds the secret (so passes the handshake and says a
    well-formed hello) sends each hostile frame on a connection of its own
    to the stream of every server's actor (its host's in placement
    ``shared``).  Each connection is closed and counted; no process dies,
    no server restarts, the replicas serve on."""
    key = read_cookie(cookie_path(None))
    hello = _frame(wire_codec().pack(("hello", ["127.0.0.1", free_port()])))
    with ra.local_nodes(["n1", "n2", "n3"], data_root=str(tmp_path / "nodes"), placement=placement) as nodes:
        c = nodes.client()
        sids = [ra.ServerId("kv", n) for n in nodes]
        c.start_cluster("kv", "machines.kv", sids)
        c.process_command(sids[0], ("write", "k", 1))
        pids = set(nodes.all_pids())
        servers_before = {n: c.overview(n)["servers"] for n in nodes}
        before = _stream_endpoints(c, sids)
        for node, (endpoint, _errors) in before.items():
            for what, frame in _HOSTILE_FRAMES.items():
                with socket.create_connection(endpoint, timeout=5.0) as s:
                    dial_handshake(s, key)
                    s.sendall(hello + frame)
                    assert _closed_by_peer(s), f"{node}: {what} closes the connection"
        after = _stream_endpoints(c, sids)
        for node in nodes:
            assert after[node][1] - before[node][1] == len(_HOSTILE_FRAMES), f"{node}: each one counted"
        assert set(nodes.all_pids()) == pids, "no process died or was replaced"
        for node in nodes:
            assert c.overview(node)["servers"] == servers_before[node], "no server restarted"
        assert c.process_command(sids[0], ("write", "k", 2))[0] == "ok"
        for sid in sids:
            # (a client's calls travel on the stream in both placements)
            with pytest.raises(errors.InvalidQuery):
                c.local_query(sid, "builtins:dict.clear")
            assert c.consistent_query(sid, "machines.kv:read", "k")[0] == 2


def test_a_client_with_another_secret_is_told_at_once(nodes3, tmp_path):
    other = tmp_path / "other.cookie"
    create_cookie(str(other))
    t0 = time.monotonic()
    with pytest.raises(errors.AuthenticationFailed, match="refused this client's cluster secret"):
        ra.connect(list(nodes3.addresses().values()), timeout=10.0, cookie_file=str(other))
    assert time.monotonic() - t0 < 5.0, "not a timeout"
    assert nodes3.client().overview("n1")["refused"]["secret"] >= 1


def test_a_node_with_another_secret_is_refused_at_start(nodes3, tmp_path):
    other = tmp_path / "other.cookie"
    create_cookie(str(other))
    data_dir = tmp_path / "n4"
    with pytest.raises(errors.AuthenticationFailed, match="refused this node's cluster secret"):
        ra.start_node("n4", str(data_dir), free_port(), convention=nodes3.convention, cookie_file=str(other),
                      timeout=20.0)
    assert not (data_dir / "node.pid").exists(), "nothing was started"
    assert set(nodes3.client().nodes()) == {"n1", "n2", "n3"}


def test_a_missing_or_loose_cookie_is_a_cookie_error(nodes3, tmp_path):
    with pytest.raises(errors.CookieError, match="no cookie file"):
        ra.connect(nodes3.convention, cookie_file=str(tmp_path / "absent"))
    loose = tmp_path / "loose"
    create_cookie(str(loose))
    os.chmod(loose, 0o644)
    with pytest.raises(errors.CookieError, match="chmod 600"):
        ra.start_node("n4", str(tmp_path / "n4"), free_port(), convention=nodes3.convention,
                      cookie_file=str(loose))


def test_a_second_live_node_with_a_taken_name_is_refused(nodes3, tmp_path):
    with pytest.raises(errors.NodeNameTaken, match="'n2' already runs at 127.0.0.1"):
        ra.start_node("n2", str(tmp_path / "n2-again"), free_port(), convention=nodes3.convention, timeout=20.0)
    c = nodes3.client()
    assert c.nodes() == {"n1": "up", "n2": "up", "n3": "up"}
    assert c.overview("n2")["admin"] == nodes3.addresses()["n2"], "the first n2 is untouched"


def test_a_node_restarted_on_its_own_address_is_not_a_taken_name(nodes3):
    nodes3.kill("n2")            # (the others may still believe it up)
    node = nodes3.restart("n2")
    assert node.alive()


def test_a_command_above_max_command_bytes_is_refused_and_nothing_appended(nodes3):
    small = nodes3.client(max_command_bytes=1000)
    sid = ra.ServerId("big", "n1")
    members = [ra.ServerId("big", n) for n in nodes3]
    small.start_cluster("big", "machines.kv", members, max_command_bytes=2000)
    small.process_command(sid, ("write", "k", b"x" * 100))
    before = small.key_metrics(sid)["last_index"]
    with pytest.raises(errors.CommandTooLarge, match="max_command_bytes"):
        small.process_command(sid, ("write", "k", b"x" * 1500))       # the client's own limit: nothing sent
    big = nodes3.client(max_command_bytes=10_000)
    with pytest.raises(errors.CommandTooLarge, match="cluster's max_command_bytes \\(2000\\)"):
        big.process_command(sid, ("write", "k", b"x" * 3000))          # the server's: refused there
    big.pipeline_command(sid, ("write", "k", b"x" * 3000), correlation=7)
    big.pipeline_command(sid, ("write", "k", b"small"), correlation=8)
    events = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(isinstance(e, ev.Applied) for e in events):
        events += big.events(timeout=0.5)
    refused = [e for e in events if isinstance(e, ev.Rejected)]
    assert [(e.reason.kind, e.reason.correlation) for e in refused] == [("CommandTooLarge", 7)]
    assert [r for e in events if isinstance(e, ev.Applied) for r in e.results] == [(8, "ok")]
    assert small.key_metrics(sid)["last_index"] == before + 1, "only the small one was appended"


def test_allowed_hosts_add_to_the_convention_and_seed_hosts():
    cfg = {"host": "192.0.2.2", "convention": ["192.0.2.1", 4100], "seeds": [["192.0.2.3", 4100]],
           "allowed_hosts": ["192.0.2.9"]}
    assert set(node_allowed_hosts(cfg)) == {"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.9"}
    assert set(node_allowed_hosts(dict(cfg, allowed_hosts=None))) == {"192.0.2.1", "192.0.2.2", "192.0.2.3"}
    assert node_allowed_hosts(dict(cfg, host="127.0.0.1")) is None, "loopback nodes filter nothing by host"
