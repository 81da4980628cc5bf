"""Full sync: a new school, a year-end rollover, the mass-delete guard, failed fetches."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from cleversync.db.schema import School
from cleversync.sandbox import Fault
from cleversync.secrets import names
from tests.world import World, clever_school_id, expected_students, stored_students


def entity(result, name: str):
    return next(o for o in result.entities if o.entity == name)


def test_first_sync_of_a_new_school(world: World) -> None:
    baseline = world.sandbox.latest_event_id(world.districts[0].clever_district_id)
    run = world.sync(school_id=world.schools[0].school_id)
    [result] = run.schools
    assert (run.status, result.status, result.mode) == ("Success", "Success", "full")
    assert stored_students(world) == expected_students(world)
    school = world.school()
    clever_id = clever_school_id(world)
    assert set(world.teachers(school)) == {t["id"] for t in world.sandbox.teachers(clever_id)}
    sections = world.sections(school)
    assert set(sections) == {s["id"] for s in world.sandbox.sections(clever_id)}
    # Every link whose student or teacher this school holds, and no other.
    known = set(world.students(school)) | set(world.teachers(school))
    expected_links = {
        (s["id"], member)
        for s in world.sandbox.sections(clever_id)
        for member in [
            *s["students"],
            *s["teachers"],
            *([s["teacher"]] if s.get("teacher") else []),
        ]
        if member in known
    }
    assert world.enrolments(school) == expected_links
    rows = world.history(school_id=school.school_id)
    assert {r["EntityType"] for r in rows} == {"Student", "Teacher", "Section"}
    for row in rows:
        assert (row["Status"], row["SyncType"]) == ("Success", "Full")
        assert row["LastEventId"] == (baseline or "")
        assert row["LastSyncTimestamp"] == row["SyncStartTime"]
        assert row["SyncEndTime"] >= row["SyncStartTime"]
        assert row["CorrelationId"] == run.correlation_id
    students = next(r for r in rows if r["EntityType"] == "Student")
    assert (
        students["RecordsProcessed"] == students["RecordsInserted"] == len(expected_students(world))
    )
    assert not world.school().requires_full_sync


def test_a_second_full_sync_with_no_changes_writes_nothing(world: World) -> None:
    world.sync(school_id=1)
    before = world.students(world.school())
    run = world.sync(school_id=1, full=True)
    [result] = run.schools
    assert result.mode == "full"
    assert all(
        (o.counts.inserted, o.counts.updated, o.counts.deleted) == (0, 0, 0)
        for o in result.entities
    )
    assert world.students(world.school()) == before  # not even UpdatedAt moved


def test_beginning_of_year_full_sync_removes_graduates(world: World) -> None:
    world.sync(school_id=1)
    clever_id = clever_school_id(world)
    graduates = [s["id"] for s in world.sandbox.students(clever_id)[:6]]
    for student in graduates:
        world.sandbox.remove_user(student)
    newcomer = world.sandbox.add_student(
        clever_id, first_name="Zoë", last_name="O'Brien", grade="9"
    )
    run = world.sync(school_id=1)  # incremental: deletes wait for a full sync
    assert run.schools[0].mode == "events"
    assert set(graduates) <= set(stored_students(world))
    assert newcomer in stored_students(world)
    world.services.registry.set_requires_full_sync(1)
    run = world.sync(school_id=1)
    [result] = run.schools
    assert result.mode == "full"
    assert entity(result, "Student").counts.deleted == len(graduates)
    assert stored_students(world) == expected_students(world)
    assert not set(graduates) & set(world.students(world.school()))  # hard-deleted
    assert not world.school().requires_full_sync


def test_deactivate_mode_keeps_rows_and_reactivates_returners(world: World) -> None:
    services = world.make_services(CleverSync__Sync__DeleteMode="Deactivate")
    world.sync(services, school_id=1)
    here, elsewhere = clever_school_id(world, 0), clever_school_id(world, 1)
    mover = next(
        s for s in world.sandbox.students(here) if s["roles"]["student"]["schools"] == [here]
    )
    # The student transfers out (still in Clever, no longer at this school)...
    world.sandbox.update_user(
        mover["id"], {"roles": {"student": {"school": elsewhere, "schools": [elsewhere]}}}
    )
    run = world.sync(services, school_id=1, full=True)
    assert entity(run.schools[0], "Student").counts.deleted == 1
    row = world.students(world.school())[mover["id"]]
    assert not row["IsActive"]
    assert row["DeactivatedAt"] is not None
    assert mover["id"] not in stored_students(world)  # inactive
    # ...and comes back: the same row is reactivated, not duplicated.
    world.sandbox.update_user(
        mover["id"], {"roles": {"student": {"school": here, "schools": [here]}}}
    )
    run = world.sync(services, school_id=1, full=True)
    students = entity(run.schools[0], "Student")
    assert (students.counts.inserted, students.counts.updated) == (0, 1)
    again = world.students(world.school())[mover["id"]]
    assert again["IsActive"]
    assert again["DeactivatedAt"] is None
    assert again["StudentId"] == row["StudentId"]


def test_mass_delete_guard_holds_and_can_be_overridden(world: World) -> None:
    world.sync(school_id=1)
    clever_id = clever_school_id(world)
    students = world.sandbox.students(clever_id)
    leaving = [s["id"] for s in students[: int(len(students) * 0.6)]]
    for student in leaving:
        world.sandbox.remove_user(student)
    run = world.sync(school_id=1, full=True)
    [result] = run.schools
    students_outcome = entity(result, "Student")
    assert (result.status, students_outcome.status, students_outcome.counts.deleted) == (
        "Partial",
        "Partial",
        0,
    )
    assert "--allow-mass-delete" in students_outcome.message()
    assert set(leaving) <= set(stored_students(world))  # nothing removed
    assert world.school().requires_full_sync  # every run is full until an operator decides
    row = next(
        r
        for r in world.history(school_id=1)
        if r["EntityType"] == "Student" and r["Status"] == "Partial"
    )
    assert "held back deleting" in row["ErrorMessage"]
    run = world.sync(school_id=1)
    assert run.schools[0].mode == "full"
    assert run.schools[0].status == "Partial"  # trips again, visibly
    run = world.sync(school_id=1, allow_mass_delete=True)
    assert run.schools[0].status == "Success"
    assert entity(run.schools[0], "Student").counts.deleted == len(leaving)
    assert stored_students(world) == expected_students(world)
    assert not world.school().requires_full_sync


def test_a_fetch_failing_on_page_3_deletes_nothing_and_the_next_run_recovers(world: World) -> None:
    world.sync(school_id=1)
    clever_id = clever_school_id(world)
    gone = world.sandbox.students(clever_id)[0]["id"]
    world.sandbox.remove_user(gone)
    world.sandbox.faults.add(
        Fault(
            "status",
            path=f"/v3.0/schools/{clever_id}/users",
            query="role=student",
            status=503,
            after=2,
            times=6,
        )
    )
    run = world.sync(school_id=1, full=True)
    [result] = run.schools
    students = entity(result, "Student")
    assert (result.status, students.status) == ("Failed", "Failed")
    assert "HTTP 503" in students.error
    assert entity(result, "Teacher").status == "Success"  # the other entities still ran
    assert gone in stored_students(world)  # a partial fetch never deletes
    assert world.school().requires_full_sync  # a Failed full sync sets the flag
    run = world.sync(school_id=1)
    assert (run.schools[0].mode, run.schools[0].status) == ("full", "Success")
    assert gone not in stored_students(world)


def test_the_same_student_in_two_schools_is_in_both_databases(world: World) -> None:
    world.sync()
    first, second = (set(stored_students(world, i)) for i in (0, 1))
    shared = first & second
    assert shared  # the sandbox, like the real demo district, has students at two schools
    for student in shared:
        user = world.sandbox.user(student)
        assert {clever_school_id(world, 0), clever_school_id(world, 1)} <= set(
            user["roles"]["student"]["schools"]
        )
    assert stored_students(world, 0) == expected_students(world, 0)
    assert stored_students(world, 1) == expected_students(world, 1)


def test_a_missing_school_database_fails_that_school_alone(world: World, backend: str) -> None:
    district = world.districts[0]
    broken = world.add_school(
        district, "5a1b2c3d4e5f60718293a4b5", "Ghost School", "Ghost", migrate=False
    )
    run = world.sync()
    by_id = {r.school_id: r for r in run.schools}
    assert by_id[broken.school_id].status == "Failed"
    assert all(by_id[s.school_id].status == "Success" for s in world.schools[:2])
    rows = world.history(school_id=broken.school_id)
    assert len(rows) == 3
    assert all(r["Status"] == "Failed" for r in rows)
    hint = f"cleversync db upgrade --school-id {broken.school_id}"
    for row in rows:
        # SQLite: no file; PostgreSQL: a database without our tables. Either way, the fix.
        assert (
            "does not exist" in row["ErrorMessage"]
            or "has no CleverSync schema" in row["ErrorMessage"]
        )
        assert hint in row["ErrorMessage"]


def test_a_missing_connection_secret_is_named(world: World) -> None:
    school = world.schools[1]
    del world.secrets.values[names.connection_string(school.prefix)]
    world.secrets.invalidate()
    run = world.sync()
    by_id = {r.school_id: r for r in run.schools}
    assert by_id[school.school_id].status == "Failed"
    assert by_id[world.schools[0].school_id].status == "Success"
    for row in world.history(school_id=school.school_id):
        assert row["Status"] == "Failed"
        assert names.connection_string(school.prefix) in row["ErrorMessage"]


def test_a_section_listing_users_of_other_schools_keeps_the_section(world: World) -> None:
    clever_id = clever_school_id(world)
    outsider = world.sandbox.add_student(
        clever_school_id(world, 1), first_name="Other", last_name="School"
    )
    own = world.sandbox.students(clever_id)[0]["id"]
    section = world.sandbox.add_section(clever_id, student_ids=[own, outsider])
    run = world.sync(school_id=1)
    assert run.schools[0].status == "Success"
    assert section in world.sections(world.school())
    links = {m for s, m in world.enrolments(world.school()) if s == section}
    assert own in links
    assert outsider not in links


@pytest.mark.parametrize("fault", ["drop_role_in_next", "full_last_page_next"])
def test_paging_quirks_do_not_change_the_result(world: World, fault: str) -> None:
    world.sandbox.faults.add(Fault(fault, times=None))
    run = world.sync(school_id=1)
    assert run.schools[0].status == "Success"
    assert stored_students(world) == expected_students(world)
    assert set(world.teachers(world.school())) == {
        t["id"] for t in world.sandbox.teachers(clever_school_id(world))
    }


def test_token_rotation_mid_paging(world: World) -> None:
    clever_district = world.districts[0].clever_district_id
    state = {"rotated": False}

    def rotate(progress) -> None:
        if progress.entity == "Student" and not state["rotated"]:
            state["rotated"] = True
            world.sandbox.rotate_token(clever_district)

    run = world.services.orchestrator(on_progress=rotate).run(school_id=1)
    assert state["rotated"]
    assert run.schools[0].status == "Success"
    assert stored_students(world) == expected_students(world)
    assert any(r.status == 401 for r in world.sandbox.request_log)


def test_requires_full_sync_column_is_cleared_in_sessiondb(world: World) -> None:
    world.services.registry.set_requires_full_sync(1)
    world.sync(school_id=1)
    with world.services.session_engine().connect() as conn:
        assert conn.scalar(select(School.RequiresFullSync).where(School.SchoolId == 1)) in (
            False,
            0,
        )


def test_an_emptied_or_swapped_school_database_gets_a_full_sync(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    from cleversync.db.engines import engine_for
    from cleversync.db.migrate import upgrade

    assert world.sync(school_id=1).status == "Success"
    assert world.sync(school_id=1).schools[0].mode == "events"
    # The school's connection string now names a freshly migrated, empty database.
    url = world.new_database("swapped")
    upgrade(engine_for(url, create_sqlite_file=True), "school")
    world.secrets.set(names.connection_string(world.schools[0].prefix), url)
    with caplog.at_level("WARNING", logger="cleversync"):
        run = world.sync(school_id=1)  # not asked for a full sync
    [result] = run.schools
    assert (result.status, result.mode) == ("Success", "full")
    assert "no active Student" in result.reason
    assert "emptied or replaced" in caplog.text
    rows = [r for r in world.history(school_id=1) if r["CorrelationId"] == run.correlation_id]
    assert {r["SyncType"] for r in rows} == {"Full"}
    assert all("emptied or replaced" in r["ErrorMessage"] for r in rows)
    assert stored_students(world) == expected_students(world)
    clever_id = clever_school_id(world)
    assert set(world.sections(world.school())) == {
        s["id"] for s in world.sandbox.sections(clever_id)
    }
    assert world.sync(school_id=1).schools[0].mode == "events"  # and back to normal


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sessiondb_commits_before_the_disk_and_school_databases_do_not(world: World) -> None:
    # SQLite's synchronous: 2 = FULL (a commit waits for the disk), 1 = NORMAL (it need not).
    # A school's rows are durable before the history row that moves its cursor past them.
    with world.services.session_engine().connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1
    with world.engine(world.school()).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
