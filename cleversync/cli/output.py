"""Plain-text tables and lines for the command line."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TextIO


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A left-aligned text table; None prints as '-'."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


class TtyProgress:
    """'[n/total] verb name...' on one rewritten line of a terminal; nothing otherwise (a
    log or a pipe gets only the result lines)."""

    def __init__(self, stream: TextIO, total: int, verb: str) -> None:
        self._stream = stream
        self._total = total
        self._verb = verb
        self._tty = stream.isatty()

    def show(self, n: int, name: str) -> None:
        if self._tty:
            self._stream.write(f"\r\x1b[2K[{n}/{self._total}] {self._verb} {name[:60]}...")
            self._stream.flush()

    def note(self, text: str) -> None:
        if self._tty:
            self._stream.write(f"\r\x1b[2K{text[:150]}")
            self._stream.flush()

    def clear(self) -> None:
        if self._tty:
            self._stream.write("\r\x1b[2K")
            self._stream.flush()
