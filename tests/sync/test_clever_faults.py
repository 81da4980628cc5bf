"""A whole sync under Clever's real-world faults: lists that end early, and oversize pages.

A scaled-down version of a 2,000-student school (60 students, pages of 10): one mid-list
page loses its ``next`` link or comes back empty. The list's end is confirmed with one more
request, so the later pages are still read and nothing real is deleted; when that request
fails, the entity is Partial, nothing is deleted and the school is flagged for a full sync.
"""

from __future__ import annotations

import logging

import pytest

from cleversync.sandbox import Fault, Sandbox
from tests.world import World, clever_school_id, expected_students, stored_students


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(seed=11, districts=1, schools=1, students=60, teachers=3, sections=3)


def entity(result, name: str):
    return next(o for o in result.entities if o.entity == name)


def students_path(world: World) -> str:
    return f"/v3.0/schools/{clever_school_id(world)}/users"


def student_ids(world: World) -> list[str]:
    return sorted(s["id"] for s in world.sandbox.students(clever_school_id(world)))


def remove_two_students(world: World) -> list[str]:
    """Two students really leave Clever: a full sync must still remove exactly them."""
    gone = student_ids(world)[:2]
    for clever_id in gone:
        world.sandbox.remove_user(clever_id)
    return gone


def page_requests(world: World) -> list[str]:
    return [
        r.target
        for r in world.sandbox.request_log
        if r.target.startswith(students_path(world)) and "role=student" in r.target
    ]


@pytest.mark.parametrize("fault", ["lose_next", "empty_page"])
def test_a_list_that_ends_early_is_confirmed_and_read_to_its_end(
    world: World, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert len(student_ids(world)) == 60
    world.sync(school_id=1)
    gone = remove_two_students(world)
    # Page 4 of 6 comes back full without `next`, or page 4 comes back empty: trusting it
    # would drop the last 18-20 students (about 30 %, under the mass-delete guard).
    world.sandbox.faults.add(Fault(fault, path=students_path(world), query="role=student", after=3))
    world.sandbox.request_log.clear()
    with caplog.at_level(logging.WARNING, logger="cleversync"):
        run = world.sync(school_id=1, full=True)
    [result] = run.schools
    students = entity(result, "Student")
    assert (result.status, students.status) == ("Success", "Success"), students.error
    assert students.counts.deleted == len(gone)  # only the students really gone
    assert stored_students(world) == expected_students(world)
    assert not world.school().requires_full_sync
    # The end is confirmed from the last student seen: page 4's last one when page 4 lost
    # its link; page 3's when page 4 came back empty (that page was asked for with it too).
    ids = student_ids(world)
    cursor, asked = (ids[39], 1) if fault == "lose_next" else (ids[29], 2)
    assert sum(f"starting_after={cursor}" in t for t in page_requests(world)) == asked
    assert any(
        r.levelno == logging.WARNING and "ended early" in r.getMessage() for r in caplog.records
    )


def test_a_failed_confirmation_leaves_the_entity_partial_and_deletes_nothing(
    world: World,
) -> None:
    world.sync(school_id=1)
    gone = remove_two_students(world)
    ids = student_ids(world)
    world.sandbox.faults.add(
        Fault("lose_next", path=students_path(world), query="role=student", after=3)
    )
    # The request confirming the end (after page 4's last student) fails through every retry.
    world.sandbox.faults.add(
        Fault("status", path=students_path(world), query=f"starting_after={ids[39]}", times=None)
    )
    run = world.sync(school_id=1, full=True)
    [result] = run.schools
    students = entity(result, "Student")
    assert (result.status, students.status) == ("Partial", "Partial")
    assert students.counts.deleted == 0
    assert set(gone) <= set(stored_students(world))  # nothing deleted
    assert entity(result, "Teacher").status == entity(result, "Section").status == "Success"
    row = next(r for r in world.history(school_id=1) if r["SyncId"] == students.sync_id)
    assert row["Status"] == "Partial"
    assert row["RecordsDeleted"] == 0
    assert "could not be confirmed" in row["ErrorMessage"]
    assert "HTTP 500" in row["ErrorMessage"]
    assert world.school().requires_full_sync
    world.sandbox.faults.clear()
    run = world.sync(school_id=1)  # the flag makes the next run full: it completes the job
    assert (run.schools[0].mode, run.schools[0].status) == ("full", "Success")
    assert stored_students(world) == expected_students(world)
    assert not world.school().requires_full_sync


def test_an_incomplete_list_flags_a_full_sync_in_an_incremental_run_too(world: World) -> None:
    world.sync(school_id=1)
    world.sandbox.set_events_enabled(world.districts[0].clever_district_id, False)
    world.sandbox.faults.add(
        Fault("oversize_page", path=students_path(world), query="role=student", after=1)
    )
    run = world.sync(school_id=1)
    [result] = run.schools
    assert result.mode == "data"
    students = entity(result, "Student")
    assert students.status == "Partial"
    assert "on a page asked for 10" in students.message()
    assert world.school().requires_full_sync


def test_an_oversize_page_is_a_protocol_error_that_deletes_nothing(world: World) -> None:
    world.sync(school_id=1)
    gone = remove_two_students(world)
    world.sandbox.faults.add(
        Fault("oversize_page", path=students_path(world), query="role=student", after=2)
    )
    run = world.sync(school_id=1, full=True)
    [result] = run.schools
    students = entity(result, "Student")
    assert (result.status, students.status) == ("Partial", "Partial")
    assert students.counts.deleted == 0
    assert set(gone) <= set(stored_students(world))
    assert "20 students on a page asked for 10" in students.message()
    assert world.school().requires_full_sync
