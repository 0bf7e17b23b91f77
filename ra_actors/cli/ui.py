"""Terminal output helpers shared by the ``ra-actors`` command and the demos.

* :func:`table` formats rows as aligned columns (plain ASCII, so it reads
  the same in a terminal, a CI log or a file).
* :class:`LiveStatus` shows a one-line live status (spinner, elapsed time,
  optional progress bar) while something slow runs.  It redraws only when
  its stream is a terminal; otherwise it writes nothing, so ``--json``
  output and logs stay clean.
* :class:`Narrator` prints numbered steps and ``[ok]``/``[FAIL]`` checks
  and counts failures (the demos' exit status).

Rule: this module imports nothing of ``ra_actors``, so the demos can use it
without pulling in the rest of the command.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Iterable, Sequence

__all__ = ["table", "LiveStatus", "Narrator", "fmt_secs"]


def fmt_secs(seconds: float) -> str:
    if seconds < 1.0:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str], indent: str = "") -> str:
    """Rows as left-aligned columns under ``headers`` (numbers right-aligned)."""
    rows = [[_cell(v) for v in row] for row in rows]
    headers = [str(h) for h in headers]
    widths = [len(h) for h in headers]
    numeric = [True] * len(headers)
    for row in rows:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], len(v))
            if v not in ("-", "") and not v.lstrip("-").replace(".", "", 1).isdigit():
                numeric[i] = False

    def line(cells):
        out = []
        for i, v in enumerate(cells):
            out.append(v.rjust(widths[i]) if numeric[i] and cells is not headers else v.ljust(widths[i]))
        return (indent + "  ".join(out)).rstrip()

    lines = [line(headers), indent + "  ".join("-" * w for w in widths)]
    lines.extend(line(r) for r in rows)
    return "\n".join(lines)


def _is_tty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class LiveStatus:
    """A live status line (context manager)::

        with LiveStatus("starting node n1") as st:
            ...                      # spinner and elapsed time while this runs
            st.update("waiting for the WAL")
            st.progress(40, 100)     # adds a bar: [########............] 40/100

    On exit the line is cleared (nothing else is printed: the caller reports
    the outcome).  When ``stream`` is not a terminal nothing is drawn.
    """

    FRAMES = "|/-\\"

    def __init__(self, text: str, stream=None, interval: float = 0.1, enabled: bool | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.text = text
        self.interval = interval
        self.enabled = _is_tty(self.stream) if enabled is None else enabled
        self.started = time.monotonic()
        self._done = None
        self._total = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._width = 0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def update(self, text: str) -> None:
        with self._lock:
            self.text = text

    def progress(self, done: int, total: int) -> None:
        with self._lock:
            self._done, self._total = done, total

    def _render(self, frame: int) -> str:
        with self._lock:
            text, done, total = self.text, self._done, self._total
        bar = ""
        if total:
            filled = int(20 * min(done, total) / total)
            bar = f" [{'#' * filled}{'.' * (20 - filled)}] {done}/{total}"
        return f"{self.FRAMES[frame % len(self.FRAMES)]} {text}{bar} ({self.elapsed:.1f}s)"

    def _draw(self, frame: int) -> None:
        line = self._render(frame)
        pad = max(0, self._width - len(line))
        self._width = len(line)
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()

    def _run(self) -> None:
        frame = 0
        while not self._stop.wait(self.interval):
            frame += 1
            try:
                self._draw(frame)
            except (OSError, ValueError):  # pragma: no cover - stream closed
                return

    def __enter__(self) -> "LiveStatus":
        self.started = time.monotonic()
        if self.enabled:
            self._draw(0)
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> bool:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            try:
                self.stream.write("\r" + " " * self._width + "\r")
                self.stream.flush()
            except (OSError, ValueError):  # pragma: no cover
                pass
        return False


class Narrator:
    """Numbered steps, checks and a verdict, for the demos."""

    def __init__(self, title: str, steps: int, stream=None):
        self.stream = stream if stream is not None else sys.stdout
        self.title = title
        self.steps = steps
        self.step_no = 0
        self.checks = 0
        self.failures: list[str] = []
        self.t0 = time.monotonic()

    def _print(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def banner(self, text: str) -> None:
        self._print(f"== {self.title} ==")
        for line in text.strip().splitlines():
            self._print(line)

    def step(self, title: str) -> None:
        self.step_no += 1
        self._print()
        self._print(f"[{self.step_no}/{self.steps}] {title}")

    def say(self, text: str) -> None:
        for line in str(text).splitlines():
            self._print(f"    {line}")

    def table(self, rows, headers) -> None:
        self._print(table(rows, headers, indent="    "))

    def check(self, ok: bool, what: str) -> bool:
        self.checks += 1
        if ok:
            self._print(f"    [ok] {what}")
        else:
            self.failures.append(what)
            self._print(f"    [FAIL] {what}")
        return bool(ok)

    def status(self, text: str) -> LiveStatus:
        return LiveStatus(text, stream=self.stream)

    def verdict(self) -> int:
        self._print()
        took = fmt_secs(time.monotonic() - self.t0)
        if self.failures:
            self._print(f"RESULT: FAILED: {len(self.failures)} of {self.checks} checks failed ({took}):")
            for f in self.failures:
                self._print(f"    - {f}")
            return 1
        self._print(f"RESULT: OK: all {self.checks} checks passed in {self.step_no} steps ({took})")
        return 0
