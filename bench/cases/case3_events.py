"""Case 3: 200 changes to the school of case 1, synced incrementally by reading events."""

from __future__ import annotations

import random

from bench.install import Backend, Installation
from bench.measure import Bench, BenchError, Figure, Served, problems
from cleversync.sandbox import Sandbox

CHANGES = 200
EVENTS_SECONDS = 1.0


def run(
    bench: Bench,
    site: Served,
    backend: Backend,
    installation: Installation,
    floor_school: list[dict[str, str]],
) -> None:
    school = installation.schools[0]
    cursor = site.sandbox.latest_event_id(site.district.id)
    made = make_changes(site.sandbox, school.clever_id, CHANGES)
    run = bench.product(site, installation, f"case3-{backend.name}", school_id=school.school_id)
    floor = bench.floor(site, backend, "events", floor_school, cursor=cursor)
    ok = not problems([run], "events") and run["written"] == made
    ok = ok and run["wall"] < EVENTS_SECONDS
    bench.add(
        Figure.measured(
            f"3 incremental by events, {CHANGES} changes",
            backend.name,
            run,
            floor,
            target=f"< {EVENTS_SECONDS:g} s",
            passed=ok,
            notes=[
                *problems([run], "events"),
                f"{made} changes made, {run['written']} rows written "
                f"({run['totals']['inserted']} inserted, {run['totals']['updated']} "
                f"updated); {run['api_requests']} API requests",
            ],
            details={"product": run, "floor": floor, "changes": made},
        )
    )


def make_changes(sandbox: Sandbox, school_id: str, count: int) -> int:
    """``count`` changes in the school, each one event: renamed students, retitled teachers,
    re-timed sections and five new students. Returns the events they made."""
    rng = random.Random(3)
    district = sandbox.districts[0].id
    before = len(sandbox.events(district))
    added, sections, teachers = 5, 15, 20
    students = count - added - sections - teachers
    for user in rng.sample(sandbox.students(school_id), students):
        sandbox.update_user(user["id"], {"name": {"last": f"{user['name']['last']}-Bench"}})
    for user in rng.sample(sandbox.teachers(school_id), teachers):
        sandbox.update_user(user["id"], {"roles": {"teacher": {"title": "Bench Coordinator"}}})
    for section in rng.sample(sandbox.sections(school_id), sections):
        sandbox.update_section(section["id"], {"period": f"P{section.get('period', '')}"})
    for _ in range(added):
        sandbox.add_student(school_id)
    made = len(sandbox.events(district)) - before
    if made != count:
        raise BenchError(f"made {made} events, not {count}")
    return made
