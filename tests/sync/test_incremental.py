"""Incremental sync: by events (create, update, ignored delete, order, cursor), by data
comparison when events are off, and the fall-backs to a full sync when the cursor expired."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from cleversync.db.schema import Student, SyncHistory
from cleversync.sandbox import Fault
from tests.databases import inserting
from tests.world import World, clever_school_id, expected_students, stored_students


def entity(result, name: str):
    return next(o for o in result.entities if o.entity == name)


def test_incremental_by_events_create_update_and_ignored_delete(world: World) -> None:
    world.sync(school_id=1)
    clever_id = clever_school_id(world)
    students = world.sandbox.students(clever_id)
    created = world.sandbox.add_student(
        clever_id, first_name="Nguyễn", last_name="Văn An", grade="3"
    )
    world.sandbox.update_user(students[1]["id"], {"name": {"last": "Renamed"}})
    world.sandbox.remove_user(students[2]["id"])
    teacher = world.sandbox.add_teacher(
        clever_id, first_name="Ada", last_name="Lovelace", title="Math Teacher"
    )
    run = world.sync(school_id=1)
    [result] = run.schools
    assert (result.mode, result.status) == ("events", "Success")
    s = entity(result, "Student")
    assert (s.counts.inserted, s.counts.updated, s.counts.deleted) == (1, 1, 0)
    assert s.counts.processed == 3  # the created, updated and deleted student's events
    stored = stored_students(world)
    assert stored[created]["FirstName"] == "Nguyễn"
    assert stored[students[1]["id"]]["LastName"] == "Renamed"
    assert students[2]["id"] in stored  # deletes wait for a full sync
    assert world.teachers(world.school())[teacher]["Title"] == "Math Teacher"
    rows = [r for r in world.history(school_id=1) if r["CorrelationId"] == run.correlation_id]
    latest = world.sandbox.latest_event_id(world.districts[0].clever_district_id)
    assert {r["SyncType"] for r in rows} == {"Incremental"}
    assert {r["LastEventId"] for r in rows} == {latest}


def test_a_no_change_events_run_writes_nothing(world: World) -> None:
    world.sync(school_id=1)
    before = world.students(world.school())
    run = world.sync(school_id=1)
    assert run.schools[0].mode == "events"
    assert all(o.counts == type(o.counts)() for o in run.schools[0].entities)
    assert world.students(world.school()) == before


def test_events_during_a_full_sync_are_applied_by_the_next_incremental(world: World) -> None:
    clever_id = clever_school_id(world)
    first = world.sandbox.students(clever_id)[0]["id"]
    changed = {"done": False}

    def change_during_sync(progress) -> None:
        # After the students' first page: this student was already read, so only the
        # event (after the baseline taken before any data) can bring the change.
        if progress.entity == "Student" and not changed["done"]:
            changed["done"] = True
            world.sandbox.update_user(first, {"name": {"first": "Changed-Mid-Sync"}})

    world.services.orchestrator(on_progress=change_during_sync).run(school_id=1)
    assert stored_students(world)[first]["FirstName"] != "Changed-Mid-Sync"
    run = world.sync(school_id=1)
    assert run.schools[0].mode == "events"
    assert stored_students(world)[first]["FirstName"] == "Changed-Mid-Sync"


def test_section_events_replace_enrolments(world: World) -> None:
    world.sync(school_id=1)
    clever_id = clever_school_id(world)
    section = world.sandbox.sections(clever_id)[0]
    keep = [s for s in section["students"] if s in stored_students(world)][:2]
    world.sandbox.update_section(section["id"], {"students": keep, "name": "Algebra II"})
    run = world.sync(school_id=1)
    assert entity(run.schools[0], "Section").counts.updated == 1
    links = {m for s, m in world.enrolments(world.school()) if s == section["id"]}
    assert links == set(keep) | set(section["teachers"]) & set(world.teachers(world.school()))
    assert world.sections(world.school())[section["id"]]["Name"] == "Algebra II"


def test_a_user_event_for_someone_who_left_is_not_applied(world: World) -> None:
    world.sync()
    here, elsewhere = clever_school_id(world, 0), clever_school_id(world, 1)
    mover = next(
        s for s in world.sandbox.students(here) if s["roles"]["student"]["schools"] == [here]
    )
    world.sandbox.update_user(
        mover["id"],
        {
            "name": {"last": "Moved"},
            "roles": {"student": {"school": elsewhere, "schools": [elsewhere]}},
        },
    )
    world.sync()
    assert stored_students(world, 0)[mover["id"]]["LastName"] != "Moved"  # not applied here
    assert stored_students(world, 1)[mover["id"]]["LastName"] == "Moved"  # but there


def test_data_api_fallback_with_no_changes_writes_nothing(world: World) -> None:
    world.sandbox.set_events_enabled(world.districts[0].clever_district_id, False)
    run = world.sync(school_id=1)
    [result] = run.schools
    assert (result.mode, result.status) == ("full", "Success")
    assert all(o.last_event_id is None for o in result.entities)
    assert "not enabled" in entity(result, "Student").message()
    before = world.students(world.school())
    run = world.sync(school_id=1)
    [result] = run.schools
    assert (result.mode, result.status) == ("data", "Success")
    assert all(
        (o.counts.inserted, o.counts.updated, o.counts.deleted) == (0, 0, 0)
        for o in result.entities
    )
    assert entity(result, "Student").counts.processed == len(expected_students(world))
    assert world.students(world.school()) == before
    row = next(r for r in world.history(school_id=1) if r["CorrelationId"] == run.correlation_id)
    assert "compared data instead of reading events" in row["ErrorMessage"]


def test_data_api_fallback_applies_changes_but_never_deletes(world: World) -> None:
    world.sandbox.set_events_enabled(world.districts[0].clever_district_id, False, status=404)
    world.sync(school_id=1)
    clever_id = clever_school_id(world)
    students = world.sandbox.students(clever_id)
    world.sandbox.update_user(students[0]["id"], {"roles": {"student": {"grade": "12"}}})
    world.sandbox.remove_user(students[1]["id"])
    run = world.sync(school_id=1)
    s = entity(run.schools[0], "Student")
    assert (run.schools[0].mode, s.counts.updated, s.counts.deleted) == ("data", 1, 0)
    assert stored_students(world)[students[0]["id"]]["Grade"] == "12"
    assert students[1]["id"] in stored_students(world)


def test_events_enabled_later_switch_the_data_path_to_events(world: World) -> None:
    district = world.districts[0].clever_district_id
    world.sandbox.set_events_enabled(district, False)
    world.sync(school_id=1)
    world.sandbox.set_events_enabled(district, True)
    run = world.sync(school_id=1)  # data comparison, which reads a baseline now
    assert run.schools[0].mode == "data"
    assert run.schools[0].entities[0].last_event_id is not None
    assert world.sync(school_id=1).schools[0].mode == "events"


def test_an_empty_feed_at_baseline_reads_the_feed_from_its_start(world: World) -> None:
    assert world.sandbox.latest_event_id(world.districts[0].clever_district_id) is None
    run = world.sync(school_id=1)
    assert run.schools[0].entities[0].last_event_id == ""
    created = world.sandbox.add_student(
        clever_school_id(world), first_name="First", last_name="Event"
    )
    run = world.sync(school_id=1)
    assert run.schools[0].mode == "events"
    assert created in stored_students(world)


def _age_last_run(world: World, days: int) -> None:
    """Move every history row ``days`` into the past, as if the school had not synced since."""
    with world.services.session_engine().begin() as conn:
        rows = conn.execute(
            select(SyncHistory.SyncId, SyncHistory.SyncStartTime, SyncHistory.LastSyncTimestamp)
        ).all()
        for sync_id, started, last in rows:
            conn.execute(
                update(SyncHistory)
                .where(SyncHistory.SyncId == sync_id)
                .values(
                    SyncStartTime=started - timedelta(days=days),
                    LastSyncTimestamp=(last - timedelta(days=days)) if last else None,
                )
            )


def test_a_cursor_older_than_the_retention_means_a_full_sync(world: World) -> None:
    world.sync(school_id=1)
    _age_last_run(world, 30)
    run = world.sync(school_id=1)
    [result] = run.schools
    assert result.mode == "full"
    assert "cursor is expired" in result.reason
    assert "30 days ago" in result.reason


def test_a_404_on_the_stored_cursor_falls_back_to_a_full_sync(world: World) -> None:
    world.sandbox.add_student(clever_school_id(world), first_name="Before", last_name="Baseline")
    world.sync(school_id=1)
    assert world.school_sync_cursor() not in (None, "")
    world.sandbox.add_student(clever_school_id(world), first_name="After", last_name="Baseline")
    world.sandbox.faults.add(
        Fault(
            "status",
            path="/v3.0/events",
            query="starting_after",
            status=404,
            body='{"message": "Not Found"}',
        )
    )
    run = world.sync(school_id=1)
    [result] = run.schools
    assert (result.mode, result.status) == ("full", "Success")
    assert "fell back to a full sync" in result.reason
    rows = [r for r in world.history(school_id=1) if r["CorrelationId"] == run.correlation_id]
    assert {r["SyncType"] for r in rows} == {"Full"}
    assert all("fell back to a full sync" in r["ErrorMessage"] for r in rows)
    assert stored_students(world) == expected_students(world)


def test_the_cursor_never_moves_past_an_event_that_failed(world: World) -> None:
    services = world.make_services(CleverSync__Sync__PageSize="2")
    world.sync(services, school_id=1)
    clever_id = clever_school_id(world)
    made = [
        world.sandbox.add_student(clever_id, first_name=f"New{n}", last_name="Student")
        for n in range(5)
    ]
    # The third page of events fails to be written, and so does every later write (a
    # database in trouble: not a refused value, which would only skip its record).
    engine = services.school_engine(world.school())
    calls = {"n": 0}

    from sqlalchemy import event

    def fail_third_page(conn, cursor, statement, params, context, executemany) -> None:
        if inserting(statement) and "Students" in statement:
            calls["n"] += 1
            if calls["n"] >= 3:
                raise engine.dialect.loaded_dbapi.OperationalError("injected failure")

    event.listen(engine, "before_cursor_execute", fail_third_page)
    try:
        run = services.orchestrator().run(school_id=1)
    finally:
        event.remove(engine, "before_cursor_execute", fail_third_page)
    assert run.schools[0].status == "Failed"
    assert set(made[:4]) <= set(stored_students(world))  # pages 1-2 committed
    good_cursor = services.school_sync().history.last_good_run(1).last_event_id
    rows = [r for r in world.history(school_id=1) if r["CorrelationId"] == run.correlation_id]
    assert all(r["LastEventId"] is None for r in rows)  # a Failed run stores no cursor
    run = services.orchestrator().run(school_id=1)
    assert (run.schools[0].mode, run.schools[0].status) == ("events", "Success")
    assert set(made) <= set(stored_students(world))
    assert services.school_sync().history.last_good_run(1).last_event_id != good_cursor


def test_data_comparison_skips_rows_stored_at_clevers_version(world: World) -> None:
    world.sandbox.set_events_enabled(world.districts[0].clever_district_id, False)
    world.sync(school_id=1)
    clever_id = clever_school_id(world)
    students = world.sandbox.students(clever_id)
    changed, edited = students[0]["id"], students[1]["id"]
    world.sandbox.update_user(changed, {"name": {"last": "Changed-In-Clever"}})
    # Someone edits a row behind our back; Clever's version of it is unchanged.
    with world.engine(world.school()).begin() as conn:
        conn.execute(
            update(Student).where(Student.CleverStudentId == edited).values(LastName="Edited-Here")
        )
    run = world.sync(school_id=1)
    s = entity(run.schools[0], "Student")
    assert (run.schools[0].mode, s.counts.updated) == ("data", 1)
    assert s.counts.processed == len(expected_students(world))  # every record still counts
    stored = stored_students(world)
    assert stored[changed]["LastName"] == "Changed-In-Clever"
    assert stored[edited]["LastName"] == "Edited-Here"  # same Clever version: not compared
    run = world.sync(school_id=1, full=True)  # a full sync compares every row
    assert entity(run.schools[0], "Student").counts.updated == 1
    assert stored_students(world) == expected_students(world)


def test_data_comparison_reactivates_a_returning_row(world: World) -> None:
    services = world.make_services(CleverSync__Sync__DeleteMode="Deactivate")
    world.sandbox.set_events_enabled(world.districts[0].clever_district_id, False)
    world.sync(services, school_id=1)
    here, elsewhere = clever_school_id(world, 0), clever_school_id(world, 1)
    mover = next(
        s for s in world.sandbox.students(here) if s["roles"]["student"]["schools"] == [here]
    )
    world.sandbox.update_user(
        mover["id"], {"roles": {"student": {"school": elsewhere, "schools": [elsewhere]}}}
    )
    world.sync(services, school_id=1, full=True)
    assert mover["id"] not in stored_students(world)  # deactivated
    world.sandbox.update_user(
        mover["id"], {"roles": {"student": {"school": here, "schools": [here]}}}
    )
    run = world.sync(services, school_id=1)
    assert (run.schools[0].mode, entity(run.schools[0], "Student").counts.updated) == ("data", 1)
    assert mover["id"] in stored_students(world)
