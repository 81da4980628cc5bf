"""Case 5: a full sync of one school of 50,000 students: memory must not grow with it.

Its teachers and sections are case 1's school's, so the difference in peak memory between a
full sync of that school (10,000 students) and of this one is students alone; that slope is
held against what one more Clever id costs the set of ids seen. Both peaks are measured
here, each the first full sync of its school in a process of the same kind (``bench.child``
with the modules loaded): case 1's own peak is a whole ``cleversync`` process's, the highest
of its runs, and would put the difference of two kinds of process into the slope.
"""

from __future__ import annotations

import functools
import json
import random
import sys

from bench.cases import case1_full
from bench.install import Backend, Installation
from bench.measure import (
    SCHOOL_STUDENTS,
    Bench,
    Figure,
    Result,
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
    small = _small_school(bench, backend)
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
    slope = (run["peak_mb"] - small["peak_mb"]) * 1024 * 1024 / (BIG_STUDENTS - SCHOOL_STUDENTS)
    per_id = bench.facts["bytes_per_seen_id"]
    allowed = per_id * SLOPE_TOLERANCE
    ok = not problems([run, small], "full") and run["totals"]["inserted"] == run["rows"]
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
                *problems([run, small], "full"),
                f"peak {run['peak_mb']:.0f} MB = idle child {idle_mb:.0f} MB "
                f"+ {run['peak_mb'] - idle_mb:.0f} MB; from 10k students ({small['peak_mb']:.1f} "
                f"MB) to 50k the peak moved {run['peak_mb'] - small['peak_mb']:+.1f} MB, "
                f"{slope:.0f} bytes per "
                f"student (one more id costs a set of them as strings {per_id:.0f} B, the "
                f"product's set of them as bytes {bench.facts['bytes_per_kept_id']:.0f} B); "
                "the floor, which holds "
                f"every row, peaks at {floor['peak_mb']:.0f} MB",
                timing([run], [floor]),
            ],
            details={
                "product": run,
                "floor": floor,
                "bytes_per_student": slope,
                "bytes_per_seen_id": per_id,
                "bytes_per_kept_id": bench.facts["bytes_per_kept_id"],
                "small_school_peak_mb": small["peak_mb"],
            },
        )
    )


def _small_school(bench: Bench, backend: Backend) -> Result:
    """The slope's start: case 1's school (10,000 students, the same teachers and sections)
    synced as case 5's school is, in the same kind of process."""
    with served(case1_full.sandbox()) as site:
        return bench.new_school_run(site, backend, f"case5-start-{backend.name}")


def bytes_per_seen_id(small: int = SCHOOL_STUDENTS, big: int = BIG_STUDENTS) -> float:
    """The allowance's unit: what each more Clever id costs a set of the ids as Python reads
    them from JSON, from ``small`` to ``big`` ids: the id strings (24 characters, rounded up
    to pymalloc's 16-byte blocks) and the growth of the set's table. (The product keeps its
    ids seen as the bytes they spell, ``cleversync.sync.seen``: see ``bytes_per_kept_id``.)"""
    return (_set_size(big, compact=False) - _set_size(small, compact=False)) / (big - small)


def bytes_per_kept_id(small: int = SCHOOL_STUDENTS, big: int = BIG_STUDENTS) -> float:
    """The same for the product's own set of ids seen (``SeenIds``: Clever's ids as bytes)."""
    return (_set_size(big, compact=True) - _set_size(small, compact=True)) / (big - small)


def _set_size(count: int, *, compact: bool) -> int:
    from cleversync.sync.seen import SeenIds

    text = json.dumps([f"{random.getrandbits(96):024x}" for _ in range(count)])
    ids = json.loads(text)
    if compact:
        seen = SeenIds()
        for clever_id in ids:
            seen.add(clever_id)
        keys: set[bytes | str] = seen._keys
    else:
        keys = set(ids)
    items = sum(-(-sys.getsizeof(i) // 16) * 16 for i in keys)
    return sys.getsizeof(keys) + items
