#!/usr/bin/env python3
"""Check that ``ra_actors`` keeps the shape its architecture promises.

    python scripts/check_layout.py            # every rule, one line per violation
    python scripts/check_layout.py --rule cycles

Rules (each violation is printed as ``rule: where: what``; exit 1 if any):

* ``cycles``: no import cycle between modules of ``ra_actors``, counting
  every import statement wherever it is (module level or inside a
  function).  A package's ``__init__`` counts as a module.
* ``thespian``: only modules under ``ra_actors/actors/`` import Thespian.
* ``core``: ``ra_actors/core`` imports nothing of ``ra_actors`` outside itself.
* ``shell``: ``ra_actors/shell`` imports only ``ra_actors.core`` and itself.
* ``function-length``: no function or method longer than 80 lines
  (from its ``def`` line to its last line, docstring included).
* ``protocol``: every class in ``ra_actors/actors/protocol.py`` is a frozen,
  slotted dataclass.

The checks read the source with :mod:`ast`; nothing is imported.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ra_actors"
MAX_FUNCTION_LINES = 80
RULES = ("cycles", "thespian", "core", "shell", "function-length", "protocol")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every ``ra_actors`` module that ``name`` imports, at any level."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                prefix = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                mod = ".".join(prefix + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for t in targets:
            # the longest known module that ``t`` names (``from x import y``:
            # y may be a module or a name in x)
            parts = t.split(".")
            for i in range(len(parts), 0, -1):
                cand = ".".join(parts[:i])
                if cand in known:
                    if cand != name:
                        found.add(cand)
                    break
    return found


def third_party_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module.split(".")[0])
    return out


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def check(rules: tuple[str, ...]) -> list[str]:
    mods = modules()
    known = set(mods)
    graph = {name: imports_of(name, path, known) for name, path in mods.items()}
    problems: list[str] = []
    if "cycles" in rules:
        for comp in find_cycles(graph):
            problems.append(f"cycles: {' <-> '.join(comp)}")
    for name, path in mods.items():
        rel = path.relative_to(ROOT)
        if "thespian" in rules and not name.startswith("ra_actors.actors") \
                and "thespian" in third_party_imports(path):
            problems.append(f"thespian: {rel}: imports thespian outside ra_actors/actors")
        if "core" in rules and name.startswith("ra_actors.core"):
            for dep in sorted(graph[name]):
                if not dep.startswith("ra_actors.core"):
                    problems.append(f"core: {rel}: imports {dep}")
        if "shell" in rules and name.startswith("ra_actors.shell"):
            for dep in sorted(graph[name]):
                if not dep.startswith(("ra_actors.shell", "ra_actors.core")):
                    problems.append(f"shell: {rel}: imports {dep}")
        if "function-length" in rules:
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        problems.append(f"function-length: {rel}:{node.lineno}: {node.name} has {length} lines")
    if "protocol" in rules:
        path = PACKAGE / "actors" / "protocol.py"
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                ok = False
                for dec in node.decorator_list:
                    if isinstance(dec, ast.Call) and getattr(dec.func, "id", "") == "dataclass":
                        kw = {k.arg: getattr(k.value, "value", None) for k in dec.keywords}
                        ok = kw.get("frozen") is True and kw.get("slots") is True
                if not ok:
                    problems.append(f"protocol: {path.relative_to(ROOT)}:{node.lineno}: {node.name} "
                                    "is not a frozen, slotted dataclass")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rule", action="append", choices=RULES, help="check only these rules")
    args = parser.parse_args(argv)
    problems = check(tuple(args.rule or RULES))
    for p in problems:
        print(p)
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
