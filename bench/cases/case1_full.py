"""Case 1: a full sync of one school of 10,000 students into new databases.

It runs ``--repeat`` times, product and floor alike, each time on new databases, and the
fastest counts; the last databases are kept for cases 3 and 2.
"""

from __future__ import annotations

from bench.install import Backend, Database, Installation
from bench.measure import (
    Bench,
    Figure,
    Served,
    best,
    district,
    problems,
    timing,
)
from cleversync.sandbox import Sandbox

FULL_RATIO, FULL_SQLITE_SECONDS = 2.0, 5.0


def sandbox() -> Sandbox:
    """The one school of cases 1, 3 and 2."""
    return district(1)


def run(
    bench: Bench, site: Served, backend: Backend, idle_mb: float
) -> tuple[Installation, Database]:
    """Measure case 1; returns the last installation and floor database (the caller drops
    them)."""
    runs, floors = [], []
    for attempt in range(bench.repeat):
        installation = Installation(
            bench.root, backend, site.district, site.district.schools, "one"
        )
        floor_db = backend.school_database("one-floor")
        school = installation.schools[0]
        runs.append(
            bench.product(site, installation, f"case1-{backend.name}", school_id=school.school_id)
        )
        targets = [{"clever_id": school.clever_id, "target": floor_db.target}]
        floors.append(bench.floor(site, backend, "full", targets))
        if attempt < bench.repeat - 1:
            installation.drop()
            backend.drop(floor_db)
    run, floor = best(runs), best(floors)
    ratio = run["wall"] / floor["wall"]
    correct = all(
        r["schools"][0]["status"] == "Success"
        and r["schools"][0]["mode"] == "full"
        and r["totals"]["inserted"] == r["rows"] == floor["rows"]
        for r in runs
    )
    target = f"<= {FULL_RATIO:g}x floor"
    ok = correct and ratio <= FULL_RATIO
    if backend.name == "sqlite":
        ok = ok and run["wall"] < FULL_SQLITE_SECONDS
        target += f", < {FULL_SQLITE_SECONDS:g} s"
    bench.add(
        Figure.measured(
            "1 full sync, 10k students",
            backend.name,
            run,
            floor,
            ratio=ratio,
            target=target,
            passed=ok,
            notes=[
                *problems(runs, "full"),
                f"{run['rows']} records written by both ({floor['written']} rows with the "
                f"links); {run['api_requests']} API requests; peak {run['peak_mb']:.0f} MB "
                f"({run['peak_mb'] - idle_mb:+.0f} MB over the idle child)",
                timing(runs, floors),
            ],
            details={"product": run, "floor": floor},
        )
    )
    return installation, floor_db
