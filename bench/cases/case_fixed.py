"""Case F: the fixed cost of one run, a full sync of a 10-student school as a whole process
(``cleversync sync --school-id N --full``) against the floor's whole process for the same
school. Hundreds of small schools a night pay it each time; with the queue, each message.

Product and floor runs are interleaved, ``--repeat`` of each, each on new databases; the
difference of the medians counts.
"""

from __future__ import annotations

import statistics

from bench.cases.case1_full import sync_args, walls
from bench.install import Backend, Installation, fingerprint
from bench.measure import Bench, Figure, Result, Served, district, median_of, served

FIXED_SECONDS = 0.25
STUDENTS, TEACHERS, SECTIONS = 10, 2, 2


def run(bench: Bench, backend: Backend) -> None:
    sandbox = district(6, students=STUDENTS, teachers=TEACHERS, sections=SECTIONS)
    runs: list[Result] = []
    floors: list[Result] = []
    problems: list[str] = []
    with served(sandbox) as site:
        clever_id = site.district.schools[0].id
        for attempt in range(bench.repeat):
            for side in ("product", "floor") if attempt % 2 == 0 else ("floor", "product"):
                if side == "floor":
                    floor_db = backend.school_database("small-floor")
                    try:
                        targets = [{"clever_id": clever_id, "target": floor_db.target}]
                        floors.append(bench.floor_process(site, backend, "full", targets))
                    finally:
                        backend.drop(floor_db)
                    continue
                installation = Installation(
                    bench.root, backend, site.district, site.district.schools, "small"
                )
                try:
                    school = installation.schools[0]
                    runs.append(bench.cli(site, installation, sync_args(school.school_id)))
                    stored = fingerprint(school.database.url)
                    count = sum(stored[t][0] for t in ("Students", "Teachers", "Sections"))
                    if count != STUDENTS + TEACHERS + SECTIONS:
                        problems.append(f"the product stored {count} records")
                finally:
                    installation.drop()
        warm = _warm(bench, site, backend)
    run, floor = median_of(runs), median_of(floors)
    extra = run["wall"] - floor["wall"]
    warm_floor = statistics.median(f["inner_wall"] for f in floors)
    warm_extra = warm - warm_floor
    bench.add(
        Figure.measured(
            f"F fixed cost: full sync, {STUDENTS} students",
            backend.name,
            {**run, "rows": floor["rows"]},
            floor,
            target=f"<= floor + {FIXED_SECONDS:g} s",
            passed=not problems and extra <= FIXED_SECONDS,
            notes=[
                *problems[:3],
                f"the product's process takes {extra:+.3f} s over the floor's "
                f"(target <= +{FIXED_SECONDS:g} s)",
                walls(runs, floors),
                f"in a warm process (modules loaded, as in the Functions host, where a queue "
                f"message pays only this): the school's run {warm:.3f} s, the floor's "
                f"{warm_floor:.3f} s in its process, {warm_extra:+.3f} s (not judged)",
            ],
            details={"extra_seconds": extra, "warm_extra_seconds": warm_extra},
        )
    )


def _warm(bench: Bench, site: Served, backend: Backend) -> float:
    """The median wall of the school's run through the ``sync_school`` trigger's work, in
    a process whose modules are loaded before the clock starts (its first run there: the
    engines, SQL and HTTP client are new, as after a host restart)."""
    walls: list[float] = []
    for _ in range(bench.repeat):
        installation = Installation(
            bench.root, backend, site.district, site.district.schools, "warm"
        )
        try:
            school = installation.schools[0]
            result = bench.product(
                site,
                installation,
                f"caseF-warm-{backend.name}",
                kind="school_path",
                path="queued",
                school_id=school.school_id,
            )
            walls.append(result["wall"])
        finally:
            installation.drop()
    return statistics.median(walls)
