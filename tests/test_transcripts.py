"""Transcript tests of the pure Raft core: one test per ``tests/testdata/*.txt``.

Each file is replayed by :mod:`ra_actors.testing.transcript` (directives,
output format and rules are in its docstring) and every case's output must
equal the one recorded in the file.  A mismatch shows the file and line of
each case that differs and a diff of expected against actual output.

To regenerate the recorded outputs after a deliberate change of the core
(then read every changed line against the Raft rules before committing)::

    RA_REWRITE_TRANSCRIPTS=1 python -m pytest tests/test_transcripts.py
    python -m pytest tests/test_transcripts.py --rewrite-transcripts
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from ra_actors.testing.transcript import (Case, TranscriptError, parse, parse_directive, render_file,
                                          run_file, run_transcript)

TESTDATA = Path(__file__).resolve().parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))


def _rewrite_requested(config: pytest.Config) -> bool:
    if os.environ.get("RA_REWRITE_TRANSCRIPTS", "") not in ("", "0"):
        return True
    try:
        return bool(config.getoption("--rewrite-transcripts"))
    except ValueError:  # the option is registered by tests/conftest.py
        return False


def test_there_are_transcripts():
    assert FILES, f"no transcripts in {TESTDATA}"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_transcript(path: Path, request: pytest.FixtureRequest):
    outcomes = run_file(path, rewrite=_rewrite_requested(request.config))
    if _rewrite_requested(request.config):
        return
    failures = []
    for o in outcomes:
        if o.ok:
            continue
        diff = difflib.unified_diff(o.case.expected.splitlines(), o.actual.splitlines(),
                                    "expected", "actual", lineterm="", n=3)
        failures.append(f"{path}:{o.case.line}: {o.case.directive}\n" + "\n".join(diff))
    if failures:
        pytest.fail(f"{len(failures)} of {len(outcomes)} cases differ "
                    f"(RA_REWRITE_TRANSCRIPTS=1 regenerates them):\n\n" + "\n\n".join(failures),
                    pytrace=False)


# ====================================================== the format itself
def test_parse_keeps_comments_and_cases_and_rewrites_in_place():
    text = ("# a comment\n\nnet\n----\n\nstate n1\n----\nold\noutput\n\n"
            "net\n----\n----\nwith\n\nblank line\n----\n----\n")
    t = parse(text, "x.txt")
    cases = [p for p in t.parts if isinstance(p, Case)]
    assert [(c.line, c.directive, c.expected) for c in cases] == [
        (3, "net", ""), (6, "state n1", "old\noutput"), (11, "net", "with\n\nblank line")]
    assert render_file(t, {}) == text                       # nothing changed: same text
    assert render_file(t, {6: "new"}) == text.replace("old\noutput", "new")
    assert render_file(t, {11: "one line"}) == text.replace("----\nwith\n\nblank line\n----\n----\n",
                                                            "one line\n")


def test_directive_arguments():
    d = parse_directive("deliver from=(n1, n2) to=n3 count=2 extra")
    assert (d.name, d.args, d.kwargs) == ("deliver", ("extra",),
                                          {"from": ("n1", "n2"), "to": "n3", "count": "2"})


def test_errors_name_the_file_and_line():
    for text, message in [
        ("add-servers n1\n----\n\nfrobnicate\n----\n", "x.txt:4: frobnicate: unknown directive"),
        ("add-servers n1\n----\n\ndeliver cout=1\n----\n", "x.txt:4: deliver cout=1: deliver takes no cout="),
        ("add-servers n1\n----\n\ntell n1 Tick\n----\n", "x.txt:4: tell n1 Tick: Tick needs argument 1"),
        ("net\nan input line\n----\n", "x.txt:1: net: net takes no input lines"),
    ]:
        with pytest.raises(TranscriptError) as err:
            run_transcript(parse(text, "x.txt"))
        assert str(err.value).startswith(message), str(err.value)
