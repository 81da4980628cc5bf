"""Case 4: a district of 100 schools of 1,000 students, five at once, at Clever's rate limit.

At page size 1000 it is measured against the floor fetching and inserting the same schools
with as many workers; at the default page size 100 the requests need more than one
rate-limit window, and it is measured against the time the limit imposes.
"""

from __future__ import annotations

import functools
import math

from bench.install import Backend, Installation
from bench.measure import (
    PAGE_SIZE,
    PARALLEL,
    RATE_LIMIT,
    RATE_WINDOW,
    Bench,
    Figure,
    Result,
    Served,
    district,
    served,
    timing,
)
from cleversync.sandbox import Sandbox

DISTRICT_SCHOOLS, DISTRICT_STUDENTS, DISTRICT_TEACHERS, DISTRICT_SECTIONS = 100, 1000, 60, 40
BIG_PAGE_SIZE = 1000
DISTRICT_SECONDS = 60.0
RATE_LIMITED_RATIO = 1.2


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
        _rate_limited(bench, site, backend)


def _district_run(bench: Bench, site: Served, backend: Backend, page_size: int) -> Result:
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


def _unthrottled(bench: Bench, site: Served, backend: Backend) -> None:
    run = _district_run(bench, site, backend, BIG_PAGE_SIZE)
    floor_dbs = [backend.school_database(f"district-floor-{n}") for n in range(DISTRICT_SCHOOLS)]
    try:
        schools = [
            {"clever_id": school.id, "target": db.target}
            for school, db in zip(site.district.schools, floor_dbs, strict=True)
        ]
        floor = bench.floor(
            site, backend, "full", schools, page_size=BIG_PAGE_SIZE, workers=PARALLEL
        )
    finally:
        for db in floor_dbs:
            backend.drop(db)
    ok = run["failed_schools"] == 0 and run["wall"] < DISTRICT_SECONDS
    bench.add(
        Figure.measured(
            f"4 district 100x1000, PageSize {BIG_PAGE_SIZE}",
            backend.name,
            run,
            floor,
            target=f"< {DISTRICT_SECONDS:g} s",
            passed=ok,
            notes=[*_notes(run), timing([run], [floor])],
            details={"product": run, "floor": floor},
        )
    )


def _rate_limited(bench: Bench, site: Served, backend: Backend) -> None:
    run = _district_run(bench, site, backend, PAGE_SIZE)
    windows = math.ceil(run["api_requests"] / RATE_LIMIT)
    imposed = (windows - 1) * RATE_WINDOW
    ratio = run["wall"] / imposed if imposed else None
    ok = run["failed_schools"] == 0 and run["http_429"] == 0
    ok = ok and ratio is not None and ratio <= RATE_LIMITED_RATIO
    bench.add(
        Figure.measured(
            f"4 district 100x1000, PageSize {PAGE_SIZE}",
            backend.name,
            run,
            imposed,
            ratio=ratio,
            target=f"0 failed, no 429, <= {RATE_LIMITED_RATIO:g}x limit",
            passed=ok,
            notes=[
                *_notes(run),
                f"the floor column is what the limit imposes: {run['api_requests']} "
                f"requests at {RATE_LIMIT} a {RATE_WINDOW:g} s window need {windows} "
                f"windows, the last opening {imposed:.0f} s after the first request; the "
                f"product waited for the window instead of collecting 429s",
            ],
            details={"product": run, "imposed_seconds": imposed, "windows": windows},
        )
    )


def _notes(run: Result) -> list[str]:
    notes = [
        f"{len(run['schools'])} schools, {run['failed_schools']} failed; {run['rows']} records; "
        f"{run['api_requests']} API requests, {run['http_429']} answered 429"
    ]
    notes += [
        f"school {s['school_id']}: {s['error']}" for s in run["schools"] if s["status"] == "Failed"
    ][:3]
    return notes
