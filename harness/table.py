"""Plain-text tables for terminals: what people read (records are for programs)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from typing import Any


def terminal_width() -> int | None:
    """The terminal's columns when stdout is one; None for a file, a pipe or a CI log (every column kept)."""
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], width: int | None = None,
                 optional: Sequence[str] = ()) -> str:
    """Left-aligned text columns, right-aligned numbers, one header rule.

    With `width` (a terminal's columns), the `optional` columns are left out, in that order, until the table
    fits, and a last line names them: a wrapped table cannot be read.
    """
    left_out = []
    for name in optional:
        if width is None or max(map(len, _format(headers, rows).split("\n"))) <= width:
            break
        if name in headers:
            keep = [i for i, header in enumerate(headers) if header != name]
            headers, rows = [headers[i] for i in keep], [[row[i] for i in keep] for row in rows]
            left_out.append(name)
    table = _format(headers, rows)
    return table + (f"\n(left out to fit {width} columns: {', '.join(left_out)})" if left_out else "")


def _format(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    numeric = [all(_is_number(row[i]) for row in rows) and bool(rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in cells)])


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)
