"""The ``ra-actors`` command: help, exit codes, one-line errors, the
cluster commands against real nodes, and the script pass-through."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ra_actors import cli

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ help
def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "ra_actors.cli", "--help"], env=ENV, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    assert out.returncode == 0
    text = out.stdout.decode()
    for command in ("node", "cluster", "demo", "log", "sim", "bench", "jepsen"):
        assert f"    {command} " in text, command
    assert "exit status" in text


@pytest.mark.parametrize("argv", [
    ["node"], ["node", "start"], ["node", "stop"], ["node", "status"],
    ["cluster"], ["cluster", "start"], ["cluster", "members"], ["cluster", "overview"],
    ["cluster", "transfer"], ["cluster", "add"], ["cluster", "remove"], ["cluster", "delete"],
    ["cluster", "command"], ["cluster", "query"],
    ["demo"], ["demo", "kv"], ["demo", "queue"], ["log"], ["log", "check"], ["log", "dump"],
])
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv + ["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ra-actors " + " ".join(argv))
    assert len(out.splitlines()) >= 4


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["cluster", "members", "no-at-sign"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["nonsense"])
    assert exc.value.code == 2


# ------------------------------------------------------- errors, exit codes
def test_cluster_without_a_node_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.delenv("RA_ACTORS_CONNECT", raising=False)
    code, out, err = run(["cluster", "members", "kv@n1"], capsys)
    assert code == 2
    assert err.startswith("ra-actors: error: no node to talk to") and err.count("\n") == 1


def test_python_m_reports_usage_errors_like_the_console_script():
    # ``python -m ra_actors.cli`` runs the package's __main__, which must
    # raise and catch the same UsageError class as the handlers.
    env = {k: v for k, v in ENV.items() if k != "RA_ACTORS_CONNECT"}
    proc = subprocess.run([sys.executable, "-m", "ra_actors.cli", "cluster", "members", "kv@n1"], env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.decode().startswith("ra-actors: error: no node to talk to")
    assert b"Traceback" not in proc.stderr


def test_unreachable_node_is_one_line_and_exit_3(capsys, monkeypatch):
    from ra_actors.nodes import free_port
    monkeypatch.setenv("RA_ACTORS_CONNECT", f"127.0.0.1:{free_port()}")
    code, out, err = run(["cluster", "members", "kv@n1", "--timeout", "1"], capsys)
    assert code == 3
    assert err.startswith("ra-actors: error: no ra_actors node answered") and err.count("\n") == 1
    assert "Traceback" not in err
    # --debug shows the traceback instead
    with pytest.raises(Exception):
        cli.main(["--debug", "cluster", "members", "kv@n1", "--timeout", "1"])


def test_node_commands_on_an_empty_data_dir(tmp_path, capsys):
    code, out, _ = run(["node", "status", "--data-dir", str(tmp_path)], capsys)
    assert code == 3 and "absent" in out
    code, out, _ = run(["node", "stop", "--data-dir", str(tmp_path)], capsys)
    assert code == 3 and "no node runs" in out


def test_log_check_exit_codes(tmp_path, capsys):
    code, _out, err = run(["log", "check", str(tmp_path / "missing")], capsys)
    assert code == 1 and err.startswith("ra-actors: error: ") and err.count("\n") == 1
    code, out, _ = run(["log", "check", str(tmp_path), "--json"], capsys)
    assert code == 0 and json.loads(out)["sound"] is True


# ------------------------------------------------------------ script tools
def test_missing_script_exits_2_with_a_clear_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RA_ACTORS_SCRIPTS_DIR", str(tmp_path))
    code, _out, err = run(["bench", "--quick"], capsys)
    assert code == 2
    assert "bench is not available" in err and "bench.py" in err


def test_scripts_get_every_argument_and_their_exit_status_is_ours(tmp_path, monkeypatch):
    (tmp_path / "jepsen.py").write_text("import sys, json\nprint(json.dumps(sys.argv[1:]))\nsys.exit(7)\n")
    out = tmp_path / "out.txt"
    with open(out, "w") as f:
        proc = subprocess.run([sys.executable, "-m", "ra_actors.cli", "jepsen", "--short", "--nemesis", "kill",
                               "--help"], env=dict(ENV, RA_ACTORS_SCRIPTS_DIR=str(tmp_path)),
                              stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, timeout=60)
    assert proc.returncode == 7
    assert json.loads(out.read_text()) == ["--short", "--nemesis", "kill", "--help"]


def test_sim_runs_the_simulator(capsys):
    proc = subprocess.run([sys.executable, "-m", "ra_actors.cli", "sim", "--seed", "3", "--steps", "300",
                           "--quiet"], env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=120)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.decode().startswith("seed 3: OK")


# ------------------------------------------------------- against real nodes
def test_cluster_commands_on_real_nodes(tmp_path, capsys, monkeypatch):
    import ra_actors as ra
    with ra.local_nodes(["n1", "n2", "n3", "n4"], data_root=str(tmp_path / "nodes")) as nodes:
        host, port = nodes.addresses()["n2"]
        monkeypatch.setenv("RA_ACTORS_CONNECT", f"{host}:{port}")

        code, out, err = run(["cluster", "start", "kv", "machines.kv", "n1", "n2", "kv@n3"], capsys)
        assert code == 0, err
        assert "cluster kv (machines.kv) started on kv@n1, kv@n2, kv@n3" in out
        assert "<- leader" in out

        code, out, _ = run(["cluster", "members", "kv@n3", "--json"], capsys)
        assert code == 0
        doc = json.loads(out)
        assert sorted(doc["members"]) == ["kv@n1", "kv@n2", "kv@n3"]
        assert doc["leader"] in doc["members"]
        assert sorted(r["state"] for r in doc["metrics"]) == ["follower", "follower", "leader"]

        code, out, _ = run(["cluster", "command", "kv@n1", '["write", "k", [1, 2]]'], capsys)
        assert (code, out) == (0, '"ok"\n')
        code, out, _ = run(["cluster", "query", "kv@n2", "machines.kv:read", '"k"'], capsys)
        assert (code, out) == (0, "[1, 2]\n")
        code, out, _ = run(["cluster", "query", "kv@n3", "machines.kv:read", '"k"', "--local", "--json"], capsys)
        assert code == 0 and json.loads(out)["value"] == [1, 2]

        target = next(m for m in doc["members"] if m != doc["leader"])
        code, out, _ = run(["cluster", "transfer", "kv@n1", target], capsys)
        assert (code, out) == (0, f"{target} is the leader\n")

        code, out, _ = run(["cluster", "add", "kv@n1", "kv@n4"], capsys)
        assert code == 0 and "kv@n4 added" in out and "kv@n4" in out.splitlines()[-1]
        code, out, _ = run(["cluster", "remove", "kv@n4", "kv@n1", "--delete"], capsys)
        assert code == 0 and "kv@n1 removed and its data deleted" in out

        code, out, _ = run(["cluster", "overview"], capsys)
        assert code == 0
        lines = {line.split()[0]: line for line in out.splitlines()[2:]}
        assert set(lines) == {"n1", "n2", "n3", "n4"}
        assert "kv(running)" in lines["n4"] and "kv(" not in lines["n1"]
        code, out, _ = run(["cluster", "overview", "kv@n4", "--json"], capsys)
        assert code == 0 and json.loads(out)["id"] == "kv@n4"

        code, _out, err = run(["cluster", "transfer", "kv@n2", "kv@n1"], capsys)
        assert code == 1 and "not a member" in err
        code, _out, err = run(["cluster", "members", "nope@n2"], capsys)
        assert code == 3 and "NoSuchServer" in err

        code, _out, err = run(["cluster", "delete", "kv@n2"], capsys)   # stdin is not a terminal
        assert code == 2 and "without --yes" in err
        code, out, _ = run(["cluster", "delete", "kv@n2", "--yes"], capsys)
        assert code == 0 and out.startswith("cluster deleted: ")
        code, out, _ = run(["cluster", "overview", "--json"], capsys)
        assert all(not v["servers"] for v in json.loads(out)["nodes"].values())
