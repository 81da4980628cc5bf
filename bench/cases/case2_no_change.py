"""Case 2: the school of case 1 synced again, incremental with events off, nothing changed.

The product compares data and must write nothing; its floor is fetching the same pages. It
runs ``--repeat`` times, product and floor alike, and the fastest counts.
"""

from __future__ import annotations

from bench.install import Backend, Installation, fingerprint
from bench.measure import Bench, Figure, Served, best, problems, timing

NOCHANGE_RATIO = 1.5


def run(
    bench: Bench,
    site: Served,
    backend: Backend,
    installation: Installation,
    floor_school: list[dict[str, str]],
) -> None:
    school = installation.schools[0]
    site.sandbox.set_events_enabled(site.district.id, False)
    before = fingerprint(school.database.url)
    runs, floors = [], []
    for _ in range(bench.repeat):
        runs.append(
            bench.product(site, installation, f"case2-{backend.name}", school_id=school.school_id)
        )
        floors.append(bench.floor(site, backend, "fetch", floor_school))
    after = fingerprint(school.database.url)
    site.sandbox.set_events_enabled(site.district.id, True)
    run, floor = best(runs), best(floors)
    ratio = run["wall"] / floor["wall"]
    unchanged = before == after and all(r["written"] == 0 for r in runs)
    ok = not problems(runs, "data") and unchanged and ratio <= NOCHANGE_RATIO
    notes = problems(runs, "data")
    if before != after:
        notes.append(f"the school database changed: {before} -> {after}")
    notes += [
        f"rows written: {max(r['written'] for r in runs)} by the counts, and the database "
        f"{'unchanged' if before == after else 'CHANGED'}; {run['api_requests']} API "
        f"requests (one is the refused events call) against the floor's "
        f"{floor['api_requests']}",
        timing(runs, floors),
    ]
    bench.add(
        Figure.measured(
            "2 incremental, events off, no change",
            backend.name,
            run,
            floor,
            ratio=ratio,
            target=f"<= {NOCHANGE_RATIO:g}x fetch, 0 written",
            passed=ok,
            notes=notes,
            details={"product": run, "floor": floor, "before": before, "after": after},
        )
    )
