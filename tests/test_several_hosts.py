"""Several hosts, for real: docs/operations.rst's "Several hosts" session,
command for command, on hosts that are network namespaces.

The test builds one network namespace per host of the session (a, b, c and
the operator's machine ops, with their documented addresses from
192.0.2.0/24, RFC 5737) and a switch namespace holding a bridge that
connects them; nothing is added to the machine's own network namespace.
Every ``host$ command`` of the session runs with ``ip netns exec`` in that
host's namespace, in a shell that keeps the host's ``export``\\ s; the hosts
share this machine's file system, which stands in for copying the cookie
file.  Then it kills the leader's node and sees the cluster fail over, and
shows that an outsider gets nothing: the operator's machine with another
secret, and a fifth host (192.0.2.20) outside the allowed hosts with the
right one, whose pickle sent to every port of a node runs nothing.

Every namespace, bridge and process the test created is removed at the
end, also when it fails.  Needs root and ``ip netns`` (skipped, with the
reason, otherwise).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "operations.rst"
SUBNET = "192.0.2"
OUTSIDER = f"{SUBNET}.20"
TAG = f"{os.getpid() % 100000}"


# ---------------------------------------------------------------- the doc
def doc_session(name: str) -> list[tuple[str, str]]:
    """``[(host, command)]`` of the ``.. test-hosts: NAME`` block."""
    lines = DOC.read_text().splitlines()
    start = lines.index(f".. test-hosts: {name}")
    i = start + 1
    while not lines[i].startswith(".. code-block::"):
        i += 1
    out, current = [], None
    for line in lines[i + 1:]:
        if line and not line.startswith(" "):
            break
        text = line.strip()
        if current is not None:
            current = (current[0], current[1][:-1] + " " + text)
        else:
            m = re.match(r"^(\w+)\$ (.*)$", text)
            if not m:
                continue                      # output lines
            current = (m.group(1), m.group(2))
        if not current[1].endswith("\\"):
            out.append(current)
            current = None
    assert out, f"no commands in {name}"
    return out


def hosts_of_doc() -> dict[str, str]:
    """Each host of the session and its address, as the session gives them."""
    text = DOC.read_text()
    found = dict(re.findall(r"``(\w+)`` \((192\.0\.2\.\d+)\)", text))
    assert {"a", "b", "c", "ops"} <= set(found), found
    return found


# ------------------------------------------------------------ namespaces
def _run(cmd, check=True, timeout=60, **kw):
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed"
    probe = f"ra_probe_{TAG}"
    proc = _run(["ip", "netns", "add", probe], check=False)
    if proc.returncode != 0:
        return f"'ip netns add' is not permitted here: {proc.stderr.strip()}"
    _run(["ip", "netns", "del", probe], check=False)
    return None


class Network:
    """Namespaces on a bridge (the bridge in a namespace of its own)."""

    def __init__(self):
        self.switch = f"ra_sw_{TAG}"
        self.hosts: dict[str, str] = {}       # host -> namespace
        self.created: list[str] = []

    def ns(self, host: str) -> str:
        return self.hosts[host]

    def build(self, addresses: dict[str, str]) -> None:
        self._add(self.switch)
        _run(["ip", "-n", self.switch, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", self.switch, "link", "set", "br0", "up"])
        for i, (host, ip) in enumerate(sorted(addresses.items())):
            ns = f"ra_{host}_{TAG}"
            self._add(ns)
            self.hosts[host] = ns
            port = f"p{i}"
            _run(["ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port,
                  "netns", self.switch])
            _run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(["ip", "-n", self.switch, "link", "set", port, "master", "br0"])
            _run(["ip", "-n", self.switch, "link", "set", port, "up"])

    def _add(self, ns: str) -> None:
        _run(["ip", "netns", "add", ns])
        self.created.append(ns)

    def pids(self, ns: str) -> list[int]:
        proc = _run(["ip", "netns", "pids", ns], check=False)
        return [int(p) for p in proc.stdout.split() if p.isdigit()]

    def teardown(self) -> list[str]:
        """Kill every process left in our namespaces, delete them; returns
        what could not be cleaned up."""
        problems = []
        for ns in self.created:
            for pid in self.pids(ns):
                try:
                    os.kill(pid, signal.SIGCONT)
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 10
        while time.time() < deadline and any(self.pids(ns) for ns in self.created):
            time.sleep(0.05)
        for ns in reversed(self.created):
            if self.pids(ns):
                problems.append(f"processes left in {ns}: {self.pids(ns)}")
            if _run(["ip", "netns", "del", ns], check=False).returncode != 0:
                problems.append(f"could not delete {ns}")
        listed = _run(["ip", "netns", "list"], check=False).stdout
        problems += [f"{ns} still exists" for ns in self.created if re.search(rf"^{ns}\b", listed, re.M)]
        self.created = []
        return problems


class Hosts:
    """Shell sessions on the hosts: each keeps its own ``export``\\ s."""

    def __init__(self, net: Network, work: Path, env: dict):
        self.net = net
        self.work = work
        self.env = env
        self.exports: dict[str, list[str]] = {}

    def run(self, host: str, command: str, check: bool = True, timeout: float = 120,
            extra_env: dict | None = None) -> subprocess.CompletedProcess:
        if command.startswith("export "):
            self.exports.setdefault(host, []).append(command)
            return subprocess.CompletedProcess(command, 0, "", "")
        script = "\n".join(["set -euo pipefail", f"cd {self.work}", *self.exports.get(host, []), command])
        env = dict(self.env, **(extra_env or {}))
        return _run(["ip", "netns", "exec", self.net.ns(host), "bash", "-c", script], check=check,
                    timeout=timeout, env=env)


# ------------------------------------------------------------------ test
@pytest.fixture
def network():
    why = netns_unavailable()
    if why:
        pytest.skip(why)
    net = Network()
    yield net
    problems = net.teardown()
    assert not problems, problems


def _env(home: Path) -> dict:
    env = dict(os.environ)
    env["HOME"] = str(home)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), *sys.path] if p)
    for var in ("RA_ACTORS_COOKIE_FILE", "RA_ACTORS_CONNECT", "THESPIAN_BASE_IPADDR"):
        env.pop(var, None)
    return env


ATTACK = """
import os, pickle, socket, sys
class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + sys.argv[1],))
p = pickle.dumps(Evil())
for spec in sys.argv[2:]:
    host, port = spec.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2) as s:
            s.sendall(b"%d>" % len(p) + p)
            s.settimeout(1)
            try:
                while s.recv(4096):
                    pass
            except OSError:
                pass
    except OSError:
        pass
print("sent")
"""


def test_three_hosts_as_documented_form_a_cluster_fail_over_and_keep_outsiders_out(network, tmp_path):
    addresses = hosts_of_doc()
    addresses["outsider"] = OUTSIDER
    network.build(addresses)
    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    hosts = Hosts(network, work, _env(home))
    try:
        # --- the documented session, command for command
        for host, command in doc_session("several-hosts"):
            proc = hosts.run(host, command)
            if command.startswith("ra-actors cluster overview"):
                for node in ("a", "b", "c"):
                    assert re.search(rf"^{node}\s+up\s+{re.escape(addresses[node])}:4100", proc.stdout, re.M), \
                        proc.stdout
        assert hosts.run("ops", "ra-actors cluster query kv@c machines.kv:read '\"greeting\"' --local") \
            .stdout.strip() == '"hello"'

        # --- failover: kill the leader's node (its whole process group)
        members = json.loads(hosts.run("ops", "ra-actors cluster members kv@a --json").stdout)
        leader = _leader_of(members)
        pid_file = json.loads((work / "data" / leader / "node.pid").read_text())
        os.killpg(pid_file["pgid"], signal.SIGKILL)
        survivor = next(n for n in ("a", "b", "c") if n != leader)
        deadline = time.time() + 30
        while True:
            proc = hosts.run("ops", f"ra-actors cluster command kv@{survivor} '[\"write\", \"after\", 1]' --timeout 5",
                             check=False)
            if proc.returncode == 0 or time.time() > deadline:
                break
        assert proc.returncode == 0 and proc.stdout.strip() == '"ok"', proc.stderr
        new_leader = _leader_of(json.loads(hosts.run("ops", f"ra-actors cluster members kv@{survivor} --json").stdout))
        assert new_leader != leader

        # --- outsiders get nothing
        wrong = tmp_path / "wrong.cookie"
        hosts.run("ops", f"ra-actors cookie new --cookie-file {wrong}")
        proc = hosts.run("ops", "ra-actors cluster overview --timeout 5", check=False,
                         extra_env={"RA_ACTORS_COOKIE_FILE": str(wrong)})
        assert proc.returncode != 0 and "AuthenticationFailed" in proc.stderr, proc.stderr
        proc = hosts.run("outsider", f"ra-actors cluster overview --connect {addresses[survivor]}:4100 --timeout 5",
                         check=False)
        assert proc.returncode != 0 and "AuthenticationFailed" not in proc.stderr, "closed before any handshake"
        ports = _listening_ports(hosts, survivor, work / "data" / survivor)
        assert len(ports) >= 6, ports
        marker = tmp_path / "pwned"
        targets = [f"{addresses[survivor]}:{port}" for port in ports]
        for attacker, env in (("outsider", {}), ("ops", {"RA_ACTORS_COOKIE_FILE": str(wrong)})):
            (work / "attack.py").write_text(ATTACK)
            assert hosts.run(attacker, f"{sys.executable} attack.py {marker} {' '.join(targets)}",
                             extra_env=env).stdout.strip() == "sent"
        time.sleep(0.5)
        assert not marker.exists(), "no port ran the pickle"
        overview = json.loads(hosts.run("ops", "ra-actors cluster overview --json", check=False).stdout)
        refused = overview["nodes"][survivor]["refused"]
        assert refused["host"] >= 1 and refused["secret"] >= 1, refused    # the outsider, and ops's wrong secret
        proc = hosts.run("ops", f"ra-actors cluster command kv@{survivor} '[\"write\", \"still\", 2]'")
        assert proc.stdout.strip() == '"ok"', "the cluster still serves"

        # --- and the documented stop
        for host, command in doc_session("several-hosts-stop"):
            if f"data/{leader}" in command:
                continue                     # (killed above)
            hosts.run(host, command)
    finally:
        for node in ("a", "b", "c"):
            pid_file = work / "data" / node / "node.pid"
            if pid_file.exists():
                try:
                    os.killpg(json.loads(pid_file.read_text())["pgid"], signal.SIGKILL)
                except (ProcessLookupError, KeyError, ValueError):
                    pass


def _leader_of(members_json) -> str:
    """The leader's node in ``cluster members --json`` output."""
    leader = members_json.get("leader") if isinstance(members_json, dict) else None
    assert leader, members_json
    return str(leader).split("@")[1]


LISTENING = """
import os, sys, psutil
pgid = int(sys.argv[1])
ports = set()
for p in psutil.process_iter(["pid"]):
    try:
        if os.getpgid(p.pid) == pgid:
            ports |= {c.laddr.port for c in p.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
    except (psutil.Error, OSError):
        pass
print(" ".join(map(str, sorted(ports))))
"""


def _listening_ports(hosts: Hosts, host: str, data_dir: Path) -> list[int]:
    """Every port the node's processes listen on (seen from inside its
    namespace: sockets belong to the namespace that made them)."""
    pgid = json.loads((data_dir / "node.pid").read_text())["pgid"]
    (hosts.work / "listening.py").write_text(LISTENING)
    out = hosts.run(host, f"{sys.executable} listening.py {pgid}").stdout
    return [int(p) for p in out.split()]
