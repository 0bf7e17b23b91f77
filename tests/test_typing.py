"""Users' type checkers see ra_actors' hints (PEP 561).

The package is built as setuptools ships it (``build_py``: the modules plus
``package_data``, so ``py.typed`` and ``__init__.pyi`` are there only if
``setup.cfg`` ships them), put on ``PYTHONPATH`` as an installed package
would be, and ``mypy --strict`` checks two user programs against it:
``testdata/typing/user_program.py`` (the public API used correctly: no
error) and ``testdata/typing/misuse.py`` (exactly the mistakes marked on its
lines).  The second shows the first proves something: a name the checker
could not see would be ``Any`` and let every mistake through."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ra_actors

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = Path(__file__).resolve().parent / "testdata" / "typing"

@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The package's files as a wheel would hold them."""
    lib = tmp_path_factory.mktemp("lib")
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(lib)],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return lib


def mypy(lib: Path, program: Path, workdir: Path) -> list[tuple[int, str]]:
    """``(line, message)`` of every error mypy --strict reports in ``program``."""
    env = dict(os.environ, PYTHONPATH=str(lib))
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
                          "--cache-dir", str(workdir / "cache"), "--config-file", str(workdir / "none.ini"),
                          str(program)],
                         cwd=workdir, env=env, capture_output=True, text=True, timeout=240)
    # 0: no error; 1: errors found; anything else (or a traceback): mypy did not run
    assert out.returncode in (0, 1) and not out.stderr.strip(), out.stderr
    errors = []
    for line in out.stdout.splitlines():
        m = re.match(r".*?:(\d+): error: (.*)$", line)
        if m:
            errors.append((int(m.group(1)), m.group(2)))
        else:
            assert ": note: " in line, line
    assert (out.returncode == 0) == (errors == []), out.stdout
    return errors


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "none.ini").write_text("[mypy]\n")
    return tmp_path


def test_the_shipped_package_has_its_marker_and_stub(shipped):
    assert (shipped / "ra_actors" / "py.typed").is_file()
    assert (shipped / "ra_actors" / "__init__.pyi").is_file()


def test_a_correct_user_program_type_checks_cleanly(shipped, workdir):
    assert mypy(shipped, PROGRAMS / "user_program.py", workdir) == []


def test_mistakes_against_the_api_are_caught(shipped, workdir):
    program = PROGRAMS / "misuse.py"
    expected = {}
    for number, line in enumerate(program.read_text().splitlines(), 1):
        if "  # error: " in line:
            expected[number] = line.split("  # error: ", 1)[1]
    assert len(expected) >= 7
    found = dict(mypy(shipped, program, workdir))
    assert sorted(found) == sorted(expected), found
    for number, text in expected.items():
        assert text in found[number], (number, found[number])


def test_without_the_marker_the_checker_sees_nothing(shipped, workdir, tmp_path_factory):
    # The marker is what makes the hints count: the same files without it are
    # an untyped package to mypy.
    bare = tmp_path_factory.mktemp("bare")
    subprocess.run(["cp", "-r", str(shipped / "ra_actors"), str(bare)], check=True)
    (bare / "ra_actors" / "py.typed").unlink()
    errors = mypy(bare, PROGRAMS / "user_program.py", workdir)
    assert any("missing library stubs or py.typed marker" in msg for _n, msg in errors), errors


def test_the_stub_declares_exactly_the_public_names():
    tree = ast.parse((ROOT / "ra_actors" / "__init__.pyi").read_text())
    declared = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            declared.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.AnnAssign):
            declared.add(node.target.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            declared.add(node.name)
    assert declared - {"__all__"} == set(ra_actors.__all__) | {"codec"}
    for name in ra_actors.__all__:
        assert getattr(ra_actors, name) is not None
