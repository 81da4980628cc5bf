"""Case 5: a full sync of one school of 50,000 students: memory must not grow with it.

Its teachers and sections are case 1's, so the difference in peak memory between the two is
students alone; that slope is held against what one more Clever id costs the set of ids seen.
"""

from __future__ import annotations

import functools
import json
import random
import sys

from bench.install import Backend, Installation
from bench.measure import (
    SCHOOL_STUDENTS,
    Bench,
    Figure,
    district,
    problems,
    served,
    timing,
)
from cleversync.sandbox import Sandbox

BIG_STUDENTS = 50_000
PEAK_MB = 300.0
SLOPE_TOLERANCE = 1.25  # peak RSS moves in pages and pymalloc arenas: a quarter of slack


@functools.cache
def sandbox() -> Sandbox:
    """Built once, for every database the bench runs on."""
    return district(5, students=BIG_STUDENTS)


def run(bench: Bench, backend: Backend, idle_mb: float) -> None:
    """Needs case 1's figure on the same database (its peak is the slope's start)."""
    with served(sandbox()) as site:
        installation = Installation(
            bench.root, backend, site.district, site.district.schools, "big"
        )
        school = installation.schools[0]
        floor_db = backend.school_database("big-floor")
        target = [{"clever_id": school.clever_id, "target": floor_db.target}]
        try:
            run = bench.product(
                site, installation, f"case5-{backend.name}", school_id=school.school_id
            )
            floor = bench.floor(site, backend, "full", target)
        finally:
            installation.drop()
            backend.drop(floor_db)
    small = next(f for f in bench.figures if f.db == backend.name and f.case.startswith("1 "))
    assert small.peak_mb is not None
    slope = (run["peak_mb"] - small.peak_mb) * 1024 * 1024 / (BIG_STUDENTS - SCHOOL_STUDENTS)
    per_id = bench.facts["bytes_per_seen_id"]
    allowed = per_id * SLOPE_TOLERANCE
    ok = not problems([run], "full") and run["totals"]["inserted"] == run["rows"]
    ok = ok and run["peak_mb"] < PEAK_MB and slope <= allowed
    bench.add(
        Figure.measured(
            "5 full sync, 50k students",
            backend.name,
            run,
            floor,
            target=f"< {PEAK_MB:g} MB, <= {allowed:.0f} B/student",
            passed=ok,
            notes=[
                *problems([run], "full"),
                f"peak {run['peak_mb']:.0f} MB = idle child {idle_mb:.0f} MB "
                f"+ {run['peak_mb'] - idle_mb:.0f} MB; from 10k to 50k students the peak "
                f"moved {run['peak_mb'] - small.peak_mb:+.1f} MB, {slope:.0f} bytes per "
                f"student (one more id seen costs {per_id:.0f} B); the floor, which holds "
                f"every row, peaks at {floor['peak_mb']:.0f} MB",
                timing([run], [floor]),
            ],
            details={
                "product": run,
                "floor": floor,
                "bytes_per_student": slope,
                "bytes_per_seen_id": per_id,
            },
        )
    )


def bytes_per_seen_id(small: int = SCHOOL_STUDENTS, big: int = BIG_STUDENTS) -> float:
    """What each more Clever id costs the set of ids seen (the delete step needs it), from
    ``small`` to ``big`` ids: the id strings (24 characters, rounded up to pymalloc's 16-byte
    blocks) and the growth of the set's table."""

    def size(count: int) -> int:
        text = json.dumps([f"{random.getrandbits(96):024x}" for _ in range(count)])
        seen = set(json.loads(text))
        strings = sum(-(-sys.getsizeof(i) // 16) * 16 for i in seen)
        return sys.getsizeof(seen) + strings

    return (size(big) - size(small)) / (big - small)
