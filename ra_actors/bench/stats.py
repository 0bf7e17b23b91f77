"""Small statistics and formatting helpers shared by the benchmarks.

Rules:

* Pure functions, standard library only, no I/O: ``scripts/bench.py`` and
  :mod:`ra_actors.bench.pysyncobj_bench` both use them, so both sides of the
  comparison are summarised the same way.
* :func:`percentile` uses the **nearest-rank** definition: the result is
  always one of the samples (the smallest sample such that at least ``p`` per
  cent of the samples are less than or equal to it).  No interpolated values
  are invented; ``percentile(xs, 100)`` is the maximum and ``percentile(xs, 0)``
  the minimum.
* :func:`median` is the ordinary median (mean of the two middle samples for an
  even count).  It is what "median over repeats" means in the reports.
* Empty input raises :class:`ValueError`; a benchmark that produced no samples
  must say so rather than report zero.
* :func:`format_table` renders aligned plain-text tables (numbers right
  aligned, text left aligned, unless told otherwise).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Optional, Sequence

__all__ = [
    "median",
    "percentile",
    "summarize_latencies",
    "format_value",
    "format_table",
]


def _sorted_samples(values: Iterable[float]) -> list[float]:
    data = sorted(float(v) for v in values)
    if not data:
        raise ValueError("no samples")
    for v in data:
        if math.isnan(v):
            raise ValueError("NaN sample")
    return data


def median(values: Iterable[float]) -> float:
    """The median of ``values`` (mean of the two middle ones for an even count)."""
    data = _sorted_samples(values)
    n = len(data)
    mid = n // 2
    if n % 2:
        return data[mid]
    return (data[mid - 1] + data[mid]) / 2.0


def percentile(values: Iterable[float], p: float) -> float:
    """Nearest-rank ``p``-th percentile of ``values`` (``0 <= p <= 100``).

    Returns the sample at rank ``ceil(p / 100 * n)`` (1-based; rank 1 for
    ``p == 0``).
    """
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile out of range: {p}")
    data = _sorted_samples(values)
    n = len(data)
    # Round before ceil so that e.g. 0.99 * 100 (=99.00000000000001) is rank 99.
    rank = math.ceil(round(p / 100.0 * n, 9))
    rank = min(max(rank, 1), n)
    return data[rank - 1]


def summarize_latencies(latencies_s: Sequence[float]) -> dict[str, float]:
    """Summary of latencies given in **seconds**, reported in milliseconds.

    Keys: ``n``, ``p50_ms``, ``p90_ms``, ``p99_ms``, ``max_ms``, ``min_ms``,
    ``mean_ms``.
    """
    data = _sorted_samples(latencies_s)
    ms = [v * 1000.0 for v in data]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": ms[-1],
        "min_ms": ms[0],
        "mean_ms": sum(ms) / len(ms),
    }


def format_value(value: Any, digits: int = 2) -> str:
    """Human formatting of one table cell.

    ``None`` -> ``"-"``; booleans -> ``yes``/``no``; integers and floats of
    1000 or more get thousands separators and no decimals; smaller floats get
    ``digits`` decimals.
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if abs(value) >= 1000.0:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def _is_numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    align: Optional[Sequence[str]] = None,
    digits: int = 2,
    sep: str = "  ",
) -> str:
    """Render ``rows`` under ``headers`` as an aligned plain-text table.

    ``align`` gives one of ``"l"``/``"r"`` per column; by default a column is
    right aligned when every non-empty cell in it is numeric, else left
    aligned.  Cells are formatted with :func:`format_value`.  A dashed rule
    separates the header from the body.  Returns the table without a trailing
    newline.
    """
    ncols = len(headers)
    for row in rows:
        if len(row) != ncols:
            raise ValueError(f"row has {len(row)} cells, expected {ncols}: {row!r}")
    if align is None:
        align = []
        for c in range(ncols):
            cells = [row[c] for row in rows if row[c] is not None]
            align.append("r" if cells and all(_is_numeric(v) for v in cells) else "l")
    elif len(align) != ncols:
        raise ValueError("align must have one entry per column")
    text_rows = [[format_value(v, digits) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        for c, cell in enumerate(row):
            widths[c] = max(widths[c], len(cell))

    def render(cells: Sequence[str]) -> str:
        out = []
        for c, cell in enumerate(cells):
            out.append(cell.rjust(widths[c]) if align[c] == "r" else cell.ljust(widths[c]))
        return sep.join(out).rstrip()

    lines = [render(list(headers)), sep.join("-" * w for w in widths)]
    lines.extend(render(row) for row in text_rows)
    return "\n".join(lines)
