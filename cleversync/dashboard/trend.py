"""A school's last 30 days as a small inline SVG: changed rows as bars, duration as a line.

Pure: it takes the runs and returns markup (numbers only, nothing from the data is put in it
as text except through ``markupsafe.escape``), so the page needs no script or image file.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from markupsafe import Markup, escape

from cleversync.db.sessiondb.overview import TREND_DAYS, RunPoint
from cleversync.vocabulary import RunStatus

WIDTH = 150
HEIGHT = 36
_BAR = "#5b7fa6"
_FAILED = "#b3261e"
_LINE = "#1f1f1f"


def trend_svg(runs: Sequence[RunPoint], now: datetime, *, label: str) -> Markup:
    """Changed rows per run (bars; failed runs in red, with a cross) and duration (line)
    over the last ``TREND_DAYS`` days; its description says the same in words."""
    start = now - timedelta(days=TREND_DAYS)
    span = TREND_DAYS * 86400.0
    points = [r for r in runs if r.started_at >= start]

    def x(at: datetime) -> float:
        return round(2 + (WIDTH - 4) * min(1.0, max(0.0, (at - start).total_seconds() / span)), 1)

    most_changed = max((r.changed for r in points), default=0) or 1
    longest = max((r.duration_seconds or 0.0 for r in points), default=0.0) or 1.0
    parts = []
    for run in points:
        height = round((HEIGHT - 6) * run.changed / most_changed, 1)
        colour = _FAILED if run.status == RunStatus.FAILED else _BAR
        parts.append(
            f'<rect x="{x(run.started_at) - 1}" y="{HEIGHT - 2 - height}" width="2" '
            f'height="{max(height, 0.5)}" fill="{colour}"/>'
        )
        if run.status == RunStatus.FAILED:
            cx = x(run.started_at)
            parts.append(
                f'<path d="M{cx - 2} 2 L{cx + 2} 6 M{cx + 2} 2 L{cx - 2} 6" '
                f'stroke="{_FAILED}" stroke-width="1"/>'
            )
    timed = [r for r in points if r.duration_seconds is not None]
    if len(timed) > 1:
        scale = (HEIGHT - 6) / longest
        line = " ".join(
            f"{x(r.started_at)},{round(HEIGHT - 2 - scale * (r.duration_seconds or 0.0), 1)}"
            for r in timed
        )
        parts.append(f'<polyline points="{line}" fill="none" stroke="{_LINE}" stroke-width="1"/>')
    failed = sum(1 for r in points if r.status == RunStatus.FAILED)
    changed = sum(r.changed for r in points)
    slowest = max((r.duration_seconds or 0.0 for r in points), default=0.0)
    words = (
        f"{len(points)} runs in {TREND_DAYS} days, {failed} failed, {changed} rows changed, "
        f"longest {slowest:.0f} s"
        if points
        else f"no runs in {TREND_DAYS} days"
    )
    title = escape(f"{label}: {words}")
    # Only numbers and the escaped title go into the markup.
    return Markup(  # noqa: S704
        f'<svg class="trend" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" aria-label="{title}"><title>{title}</title>'
        f'<line x1="0" y1="{HEIGHT - 1.5}" x2="{WIDTH}" y2="{HEIGHT - 1.5}" stroke="#999" '
        f'stroke-width="0.5"/>{"".join(parts)}</svg>'
    )
