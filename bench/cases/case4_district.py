"""Case 4: a district of 100 schools of 1,000 students, five at once, at Clever's rate limit.

At page size 1000 it is measured against the floor fetching and inserting the same schools
with as many workers (both timed inside their processes, start-up excluded), interleaved,
``--district-repeat`` of each, the medians counting. At page size 100 the requests need
more than one rate-limit window: that is the page-size study's (``--page-sizes``).
"""

from __future__ import annotations

import functools
import math

from bench.install import Backend, Installation
from bench.measure import (
    PARALLEL,
    RATE_LIMIT,
    RATE_WINDOW,
    Bench,
    Figure,
    Result,
    Served,
    district,
    median_of,
    served,
    timing,
)
from cleversync.sandbox import Sandbox

DISTRICT_SCHOOLS, DISTRICT_STUDENTS, DISTRICT_TEACHERS, DISTRICT_SECTIONS = 100, 1000, 60, 40
BIG_PAGE_SIZE = 1000
DISTRICT_RATIO = 1.5


@functools.cache
def sandbox() -> Sandbox:
    """Built once, for every database the bench runs on."""
    return district(
        4,
        schools=DISTRICT_SCHOOLS,
        students=DISTRICT_STUDENTS,
        teachers=DISTRICT_TEACHERS,
        sections=DISTRICT_SECTIONS,
    )


def run(bench: Bench, backend: Backend) -> None:
    with served(sandbox()) as site:
        _unthrottled(bench, site, backend)


def district_run(bench: Bench, site: Served, backend: Backend, page_size: int) -> Result:
    """The whole district synced once by the product (a new installation, dropped after)."""
    label = f"district{page_size}"
    installation = Installation(bench.root, backend, site.district, site.district.schools, label)
    try:
        return bench.product(
            site,
            installation,
            f"case4-{page_size}-{backend.name}",
            district_id=installation.district_id,
            page_size=page_size,
        )
    finally:
        installation.drop()


def district_floor(bench: Bench, site: Served, backend: Backend, page_size: int) -> Result:
    floor_dbs = [backend.school_database(f"district-floor-{n}") for n in range(DISTRICT_SCHOOLS)]
    try:
        schools = [
            {"clever_id": school.id, "target": db.target}
            for school, db in zip(site.district.schools, floor_dbs, strict=True)
        ]
        return bench.floor(site, backend, "full", schools, page_size=page_size, workers=PARALLEL)
    finally:
        for db in floor_dbs:
            backend.drop(db)


def _unthrottled(bench: Bench, site: Served, backend: Backend) -> None:
    runs: list[Result] = []
    floors: list[Result] = []
    for attempt in range(bench.district_repeat):
        for side in ("product", "floor") if attempt % 2 == 0 else ("floor", "product"):
            if side == "floor":
                floors.append(district_floor(bench, site, backend, BIG_PAGE_SIZE))
            else:
                runs.append(district_run(bench, site, backend, BIG_PAGE_SIZE))
    run, floor = median_of(runs), median_of(floors)
    ratio = run["wall"] / floor["wall"]
    ok = all(r["failed_schools"] == 0 for r in runs) and ratio <= DISTRICT_RATIO
    gc_share = run["gc_seconds"] / run["cpu"] if run["cpu"] else 0.0
    bench.add(
        Figure.measured(
            f"4 district 100x1000, PageSize {BIG_PAGE_SIZE}",
            backend.name,
            run,
            floor,
            ratio=ratio,
            target=f"<= {DISTRICT_RATIO:g}x floor",
            passed=ok,
            notes=[
                *_notes(run),
                f"GC: {gc_share:.0%} of the product's CPU ({run['gc_seconds']:.2f} s of "
                f"{run['cpu']:.2f} s); per school: {run['wall'] / DISTRICT_SCHOOLS * 1000:.0f} "
                f"ms of wall, the floor {floor['wall'] / DISTRICT_SCHOOLS * 1000:.0f} ms",
                timing(runs, floors),
            ],
            details={"product": run, "floor": floor, "gc_share": gc_share},
        )
    )


def rate_limited(bench: Bench, site: Served, backend: Backend) -> Result:
    """The district at page size 100: more requests than one rate-limit window allows. The
    page-size study's row for 100; the figure is how close to the limit's time it came."""
    run = district_run(bench, site, backend, 100)
    windows = math.ceil(run["api_requests"] / RATE_LIMIT)
    run["imposed_seconds"] = (windows - 1) * RATE_WINDOW
    return run


def _notes(run: Result) -> list[str]:
    notes = [
        f"{len(run['schools'])} schools, {run['failed_schools']} failed; {run['rows']} records; "
        f"{run['api_requests']} API requests, {run['http_429']} answered 429"
    ]
    notes += [
        f"school {s['school_id']}: {s['error']}" for s in run["schools"] if s["status"] == "Failed"
    ][:3]
    return notes
