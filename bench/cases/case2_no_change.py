"""Case 2: the school of case 1 synced again, incremental with events off, nothing changed.

The product (``cleversync sync --school-id N``, the whole process) compares data and must
write nothing; its floor is a process fetching the same pages. Product and floor runs are
interleaved, ``--repeat`` of each, and the medians count.
"""

from __future__ import annotations

from bench.cases.case1_full import sync_args, walls
from bench.install import Backend, Installation, fingerprint
from bench.measure import Bench, Figure, Served, median_of

NOCHANGE_RATIO = 1.2


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
    for attempt in range(bench.repeat):
        for side in ("product", "floor") if attempt % 2 == 0 else ("floor", "product"):
            if side == "floor":
                floors.append(bench.floor_process(site, backend, "fetch", floor_school))
            else:
                runs.append(bench.cli(site, installation, sync_args(school.school_id, full=False)))
    after = fingerprint(school.database.url)
    site.sandbox.set_events_enabled(site.district.id, True)
    run, floor = median_of(runs), median_of(floors)
    ratio = run["wall"] / floor["wall"]
    unchanged = before == after
    ok = unchanged and ratio <= NOCHANGE_RATIO
    notes = []
    if before != after:
        notes.append(f"the school database changed: {before} -> {after}")
    notes += [
        f"the database {'unchanged' if before == after else 'CHANGED'}; "
        f"{run['api_requests']} API requests (one is the refused events call) against the "
        f"floor's {floor['api_requests']}",
        walls(runs, floors),
    ]
    bench.add(
        Figure.measured(
            "2 no change, events off (whole process)",
            backend.name,
            {**run, "rows": floor["rows"]},
            floor,
            ratio=ratio,
            target=f"<= {NOCHANGE_RATIO:g}x fetch, 0 written",
            passed=ok,
            notes=notes,
            details={"walls": run["walls"], "floor_walls": floor["walls"]},
        )
    )
