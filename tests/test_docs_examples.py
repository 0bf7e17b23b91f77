"""Every code example in README.rst and docs/ runs as written.

Examples are marked in the .rst source with comments (invisible once
rendered) placed just before their code block:

* ``.. test-file: NAME`` — the next code block is the file NAME;
* ``.. test-append: NAME`` — the next code block is appended to NAME;
* ``.. test-run: NAME`` — the next code block is the file NAME, and NAME is
  run with this Python (in a directory holding the document's files) once
  all of the document's files are written; it must exit 0;
* ``.. test-expect: NAME: TEXT`` — NAME's output must contain TEXT;
* ``.. test-shell: NAME`` — the next code block is a shell session
  (``$ `` prompts) run with ``bash -e`` in a fresh directory; afterwards
  every node data directory the session left running is stopped.

The test also fails if a document has a Python code block that is not
marked (so an example cannot silently go untested).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["README.rst", "docs/machine-tutorial.rst", "docs/api.rst", "docs/operations.rst"]
MARK = re.compile(r"^\.\. (test-file|test-append|test-run|test-shell): (\S+)\s*$")
EXPECT = re.compile(r"^\.\. test-expect: (\S+): (.+)$")
PORT = re.compile(r"(?<=[: ])41\d\d\b")
BLOCK = re.compile(r"^(\.\. code-block::\s*(\w+)|.*::)\s*$")


def _blocks(text: str):
    """(kind, name, code) for every marked block, and a list of unmarked
    Python blocks; plus the expectations."""
    lines = text.splitlines()
    marked, unmarked, expects = [], [], []
    pending = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = MARK.match(line)
        e = EXPECT.match(line)
        if m:
            pending = (m.group(1), m.group(2))
            i += 1
            continue
        if e:
            expects.append((e.group(1), e.group(2)))
            i += 1
            continue
        b = BLOCK.match(line)
        if b and not line.startswith(".. test-"):
            lang = b.group(2)
            j = i + 1
            while j < len(lines) and (not lines[j].strip() or lines[j].startswith(":")):
                j += 1
            body = []
            while j < len(lines) and (not lines[j].strip() or lines[j].startswith((" ", "\t"))):
                body.append(lines[j])
                j += 1
            code = textwrap.dedent("\n".join(body)).strip("\n") + "\n"
            if pending is not None:
                marked.append((pending[0], pending[1], code))
                pending = None
            elif lang == "python":
                unmarked.append(code.splitlines()[0])
            i = j
            continue
        if line.strip():
            pending = None if not line.startswith("..") else pending
        i += 1
    return marked, unmarked, expects


def _shell_commands(code: str) -> str:
    """The commands of a ``$ `` session (continuation lines ending in \\ kept)."""
    out, cont = [], False
    for line in code.splitlines():
        if line.startswith("$ "):
            out.append(line[2:])
            cont = line.endswith("\\")
        elif cont:
            out.append(line)
            cont = line.endswith("\\")
    return "\n".join(out) + "\n"


def _env(home: Path):
    """The environment of an example: a home of its own, so that its nodes
    create and share ``~/.ra_actors.cookie`` there, as a user's would."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), *sys.path] if p)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["HOME"] = str(home)
    env.pop("RA_ACTORS_CONNECT", None)
    env.pop("RA_ACTORS_COOKIE_FILE", None)
    return env


def _stop_leftover_nodes(where: Path):
    from ra_actors.nodes import node_status, stop_node
    for status_file in where.rglob("node.pid"):
        data_dir = status_file.parent
        st = node_status(str(data_dir))
        if st["running"] or st["pids"]:
            stop_node(str(data_dir), timeout=15)


@pytest.mark.parametrize("doc", DOCS)
def test_doc_examples_run(doc, tmp_path):
    path = ROOT / doc
    if not path.exists():
        pytest.skip(f"{doc} not written yet")
    marked, unmarked, expects = _blocks(path.read_text())
    assert not unmarked, f"{doc}: python blocks without a test marker: {unmarked}"
    files: dict[str, str] = {}
    runs, shells = [], []
    for kind, name, code in marked:
        if kind == "test-append":
            assert name in files, f"{doc}: {name} appended before it was started"
            files[name] += "\n" + code
        elif kind == "test-shell":
            shells.append((name, code))
        else:
            files[name] = code
            if kind == "test-run":
                runs.append(name)
    work = tmp_path / "work"
    work.mkdir()
    for name, code in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(code)
    outputs = {}
    for name in runs:
        out = tmp_path / f"{name}.out"
        tmp = tmp_path / f"tmp-{name}"      # local_nodes' data roots land here
        tmp.mkdir()
        try:
            with open(out, "w") as f:
                proc = subprocess.run([sys.executable, name], cwd=work, env=dict(_env(tmp), TMPDIR=str(tmp)),
                                      stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, timeout=240)
        finally:
            _stop_leftover_nodes(tmp)      # only if the example died without stopping its nodes
        outputs[name] = out.read_text()
        assert proc.returncode == 0, f"{doc}: {name} failed:\n{outputs[name]}"
    for name, code in shells:
        shell_dir = tmp_path / f"shell-{name}"
        shell_dir.mkdir()
        script = shell_dir / "session.sh"
        commands = _shell_commands(code)
        # the documented ports (41xx), moved to free ones so that concurrent
        # runs cannot collide; everything else runs as written
        from ra_actors.nodes import free_port
        ports: dict[str, str] = {}
        for port in sorted(set(PORT.findall(commands))):
            ports[port] = str(free_port(exclude=[int(p) for p in ports.values()]))
        commands = PORT.sub(lambda m: ports[m.group(0)], commands)
        script.write_text("set -euo pipefail\n" + commands)
        out = tmp_path / f"{name}.out"
        try:
            with open(out, "w") as f:
                proc = subprocess.run(["bash", str(script)], cwd=shell_dir, env=_env(shell_dir), stdin=subprocess.DEVNULL,
                                      stdout=f, stderr=subprocess.STDOUT, timeout=300)
        finally:
            _stop_leftover_nodes(shell_dir)
        outputs[name] = out.read_text()
        assert proc.returncode == 0, f"{doc}: shell session {name} failed:\n{outputs[name]}"
    for name, text in expects:
        assert name in outputs, f"{doc}: expectation for {name}, which did not run"
        assert text in outputs[name], f"{doc}: {name} did not print {text!r}:\n{outputs[name]}"
