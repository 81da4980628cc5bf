"""Change detail through real syncs against the sandbox: each kind of change, the cap and its
omitted count, the guard's hold-back list, the purge with history, and a full sync's preview
(dry run) that writes nothing to the school database."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select

from cleversync.db.schema import SCHOOL_METADATA, School, SyncChange
from cleversync.vocabulary import ChangeKind, RunStatus
from tests.databases import inserting
from tests.world import World, clever_school_id, expected_students, stored_students


def entity(result: Any, name: str) -> Any:
    return next(o for o in result.entities if o.entity == name)


def student_rows(world: World) -> list[dict[str, Any]]:
    return [r for r in world.history(school_id=1) if r["EntityType"] == "Student"]


def dump(world: World) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of school 1's database."""
    engine = world.engine(world.school())
    with engine.connect() as conn:
        return {
            table.name: sorted(
                (tuple(r) for r in conn.execute(select(table))), key=lambda r: repr(r)
            )
            for table in SCHOOL_METADATA.sorted_tables
        }


def test_a_first_sync_records_every_insert_under_its_history_row(world: World) -> None:
    run = world.sync(school_id=1)
    [result] = run.schools
    log = world.services.changes
    for name in ("Student", "Teacher", "Section"):
        outcome = entity(result, name)
        changes = log.for_history(outcome.sync_id)
        assert len(changes) == outcome.counts.inserted > 0
        assert {c.kind for c in changes} == {ChangeKind.INSERTED}
        assert {c.entity for c in changes} == {name}
        assert all(c.school_id == 1 and c.fields is None and c.name for c in changes)
        assert log.omitted(outcome.sync_id) == 0
    stored = stored_students(world)
    some = log.for_school(1, entity="Student", limit=1)[0]
    assert (
        some.name == f"{stored[some.clever_id]['FirstName']} {stored[some.clever_id]['LastName']}"
    )


def test_updates_record_old_and_new_values_normalized_and_deletes_their_name(
    world: World,
) -> None:
    world.sync(school_id=1)
    here = clever_school_id(world)
    students = world.sandbox.students(here)
    changed, gone = students[0], students[1]
    old_first = changed["name"]["first"]
    world.sandbox.update_user(changed["id"], {"name": {"first": "  Zoë  "}, "email": "   "})
    world.sandbox.remove_user(gone["id"])
    run = world.sync(school_id=1, full=True)
    [result] = run.schools
    assert result.status == RunStatus.SUCCESS
    log = world.services.changes
    mine = log.for_school(1, clever_id=changed["id"])
    update = next(c for c in mine if c.kind == ChangeKind.UPDATED)
    assert update.history_id == entity(result, "Student").sync_id
    assert update.fields is not None
    assert update.fields["FirstName"] == (old_first.strip(), "Zoë")
    if changed.get("email"):
        assert update.fields["Email"] == (changed["email"].strip(), None)  # blank = no value
    assert "LastName" not in update.fields  # only the columns that differ
    [removed] = log.for_school(1, clever_id=gone["id"], since=update.recorded_at)
    assert removed.kind == ChangeKind.DELETED
    assert removed.name == f"{gone['name']['first']} {gone['name']['last']}".strip()
    # Newest first; the same run's changes share the history row of their entity.
    recent = log.for_school(1, history_id=update.history_id)
    assert {c.kind for c in recent} == {ChangeKind.UPDATED, ChangeKind.DELETED}
    assert [c.recorded_at for c in recent] == sorted((c.recorded_at for c in recent), reverse=True)
    assert log.for_school(1, entity="Teacher", history_id=update.history_id) == []


def test_incremental_events_record_inserts_and_updates(world: World) -> None:
    world.sync(school_id=1)
    here = clever_school_id(world)
    new = world.sandbox.add_student(here, first_name="Ada", last_name="Byron", grade="4")
    other = world.sandbox.students(here)[3]
    world.sandbox.update_user(other["id"], {"name": {"last": "Renamed"}})
    run = world.sync(school_id=1)
    [result] = run.schools
    assert result.mode == "events"
    changes = world.services.changes.for_history(entity(result, "Student").sync_id)
    by_id = {c.clever_id: c for c in changes}
    assert by_id[new].kind == ChangeKind.INSERTED and by_id[new].name == "Ada Byron"
    assert by_id[other["id"]].kind == ChangeKind.UPDATED
    assert by_id[other["id"]].fields == {"LastName": (other["name"]["last"], "Renamed")}


def test_deactivation_and_reactivation_are_recorded(world: World) -> None:
    services = world.make_services(CleverSync__Sync__DeleteMode="Deactivate")
    world.sync(services, school_id=1)
    here, elsewhere = clever_school_id(world, 0), clever_school_id(world, 1)
    mover = next(
        s for s in world.sandbox.students(here) if s["roles"]["student"]["schools"] == [here]
    )
    world.sandbox.update_user(
        mover["id"], {"roles": {"student": {"school": elsewhere, "schools": [elsewhere]}}}
    )
    world.sync(services, school_id=1, full=True)
    world.sandbox.update_user(
        mover["id"],
        {"name": {"last": "Back"}, "roles": {"student": {"school": here, "schools": [here]}}},
    )
    world.sync(services, school_id=1, full=True)
    kinds = [c.kind for c in world.services.changes.for_school(1, clever_id=mover["id"])]
    assert kinds == [ChangeKind.REACTIVATED, ChangeKind.DEACTIVATED, ChangeKind.INSERTED]
    back = world.services.changes.for_school(1, clever_id=mover["id"])[0]
    assert back.fields == {"LastName": (mover["name"]["last"], "Back")}


def test_a_section_whose_enrolment_changed_records_the_links(world: World) -> None:
    world.sync(school_id=1)
    here = clever_school_id(world)
    newcomer = world.sandbox.add_student(here, first_name="New", last_name="Kid")
    section = world.sandbox.sections(here)[0]
    world.sandbox.update_section(section["id"], {"students": [*section["students"], newcomer]})
    run = world.sync(school_id=1, full=True)
    changes = world.services.changes.for_history(entity(run.schools[0], "Section").sync_id)
    [change] = [c for c in changes if c.clever_id == section["id"]]
    assert change.kind == ChangeKind.UPDATED
    assert change.fields == {"Students": (None, newcomer)}


def test_the_cap_keeps_the_first_changes_and_counts_the_rest(world: World) -> None:
    services = world.make_services(CleverSync__History__MaxChangeDetailsPerRun="5")
    run = world.sync(services, school_id=1)
    [result] = run.schools
    log = world.services.changes
    kept = {o.entity: len(log.for_history(o.sync_id)) for o in result.entities}
    omitted = {o.entity: log.omitted(o.sync_id) for o in result.entities}
    assert sum(kept.values()) == 5  # per run, not per entity
    for o in result.entities:
        assert kept[o.entity] + omitted[o.entity] == o.counts.inserted
    row = next(r for r in student_rows(world) if r["SyncId"] == entity(result, "Student").sync_id)
    assert row["ChangesOmitted"] == omitted["Student"]
    none = world.make_services(CleverSync__History__MaxChangeDetailsPerRun="0")
    world.sandbox.add_student(clever_school_id(world), first_name="Not", last_name="Kept")
    run = world.sync(none, school_id=1)
    student = entity(run.schools[0], "Student")
    assert log.for_history(student.sync_id) == []
    assert log.omitted(student.sync_id) == 1


def test_the_guard_keeps_the_list_of_what_it_held_back(world: World) -> None:
    world.sync(school_id=1)
    here = clever_school_id(world)
    students = world.sandbox.students(here)
    leaving = students[: int(len(students) * 0.6)]
    for student in leaving:
        world.sandbox.remove_user(student["id"])
    run = world.sync(school_id=1, full=True)
    assert entity(run.schools[0], "Student").held_back
    log = world.services.changes
    held = log.held_back(1)
    assert {c.clever_id for c in held} == {s["id"] for s in leaving}
    assert {c.kind for c in held} == {ChangeKind.HELD_BACK}
    assert {c.entity for c in held} == {"Student"}
    names = {c.clever_id: c.name for c in held}
    first = leaving[0]
    assert names[first["id"]] == f"{first['name']['first']} {first['name']['last']}"
    assert set(stored_students(world)) >= {s["id"] for s in leaving}  # nothing removed
    # The list is the latest hold-back's: the same, again, on the next (full) run.
    again = world.sync(school_id=1)
    assert {c.history_id for c in log.held_back(1)} == {entity(again.schools[0], "Student").sync_id}
    done = world.sync(school_id=1, allow_mass_delete=True)
    deleted = log.for_history(entity(done.schools[0], "Student").sync_id)
    assert {c.clever_id for c in deleted if c.kind == ChangeKind.DELETED} == {
        s["id"] for s in leaving
    }
    assert stored_students(world) == expected_students(world)


def test_a_hold_back_list_is_capped_on_its_own(world: World) -> None:
    world.sync(school_id=1)
    here = clever_school_id(world)
    students = world.sandbox.students(here)
    leaving = students[: int(len(students) * 0.6)]
    for student in leaving:
        world.sandbox.remove_user(student["id"])
    services = world.make_services(CleverSync__History__MaxChangeDetailsPerRun="3")
    run = world.sync(services, school_id=1, full=True)
    sync_id = entity(run.schools[0], "Student").sync_id
    assert len(world.services.changes.held_back(1)) == 3
    assert world.services.changes.omitted(sync_id) == len(leaving) - 3


def test_purging_history_purges_its_changes(world: World) -> None:
    world.sync(school_id=1)
    history = world.services.history
    engine = world.services.session_engine()
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(SyncChange)) > 0
    assert history.purge(world.services.utc_clock() - timedelta(days=1)) == 0
    assert history.purge(world.services.utc_clock() + timedelta(seconds=1)) == 3
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(SyncChange)) == 0
    assert world.services.changes.for_school(1) == []


def test_change_detail_that_cannot_be_written_does_not_fail_the_sync(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    engine = world.services.session_engine()

    def refuse(conn, cursor, statement, params, context, executemany) -> None:
        if "SyncChanges" in statement and inserting(statement):
            raise engine.dialect.loaded_dbapi.OperationalError("injected: SyncChanges refused")

    event.listen(engine, "before_cursor_execute", refuse)
    try:
        with caplog.at_level(logging.WARNING):
            run = world.sync(school_id=1)
    finally:
        event.remove(engine, "before_cursor_execute", refuse)
    [result] = run.schools
    assert result.status == RunStatus.SUCCESS
    assert stored_students(world) == expected_students(world)
    student = entity(result, "Student")
    assert world.services.changes.omitted(student.sync_id) == student.counts.inserted
    assert "change detail" in caplog.text


# --- the preview (dry run) ------------------------------------------------------------


def test_a_preview_reports_what_a_full_sync_would_do_and_writes_nothing(world: World) -> None:
    world.sync(school_id=1)
    cursor = world.school_sync_cursor()
    here = clever_school_id(world)
    students = world.sandbox.students(here)
    renamed, gone = students[0], students[1]
    world.sandbox.update_user(renamed["id"], {"name": {"last": "Previewed"}})
    world.sandbox.remove_user(gone["id"])
    new = world.sandbox.add_student(here, first_name="Brand", last_name="New")
    before = dump(world)
    changes_before = world.services.changes.for_school(1, limit=10_000)
    preview = world.services.preview_full_sync(1)
    assert dump(world) == before  # nothing written to the school database
    assert world.services.changes.for_school(1, limit=10_000) == changes_before
    assert [(c.clever_id, c.name) for c in preview.inserts] == [(new, "Brand New")]
    [update] = [c for c in preview.updates if c.clever_id == renamed["id"]]
    assert update.fields == {"LastName": (renamed["name"]["last"], "Previewed")}
    assert gone["id"] in {c.clever_id for c in preview.deletes if c.kind == ChangeKind.DELETED}
    assert not preview.held_back
    assert (preview.inserted, preview.deleted) == (1, 1)
    rows = world.history(school_id=1)
    dry = [r for r in rows if r["Status"] == RunStatus.DRY_RUN]
    assert {r["EntityType"] for r in dry} == {"Student", "Teacher", "Section"}
    assert all(r["SyncEndTime"] is not None for r in dry)
    assert set(preview.history_ids.values()) == {r["SyncId"] for r in dry}
    assert not world.school().requires_full_sync
    with world.services.session_engine().connect() as conn:
        assert conn.scalar(select(School.SyncLeaseOwner).where(School.SchoolId == 1)) is None
    # The preview is no run: the cursor, streak and next sync are the last real run's.
    history = world.services.history
    assert world.school_sync_cursor() == cursor
    assert history.failure_streak(1) == 0
    assert RunStatus.DRY_RUN not in history.run_statuses(1)
    run = world.sync(school_id=1)
    [result] = run.schools
    assert (result.mode, result.status) == ("events", RunStatus.SUCCESS)
    assert entity(result, "Student").counts.inserted == 1


def test_a_preview_says_when_the_guard_would_hold_the_deletes_back(world: World) -> None:
    world.sync(school_id=1)
    here = clever_school_id(world)
    students = world.sandbox.students(here)
    leaving = students[: int(len(students) * 0.6)]
    for student in leaving:
        world.sandbox.remove_user(student["id"])
    before = dump(world)
    preview = world.services.preview_full_sync(1)
    assert preview.held_back
    assert any("MaxDeletePercent" in m for m in preview.messages)
    assert {c.clever_id for c in preview.deletes} == {s["id"] for s in leaving}
    assert dump(world) == before
    assert world.services.changes.held_back(1) == []  # a preview holds nothing back


def test_a_preview_does_not_break_a_failure_streak_or_count_in_it(world: World) -> None:
    world.sandbox.set_events_enabled(world.sandbox.districts[0].id, True)
    world.sync(school_id=1)
    history = world.services.history
    engine = world.engine(world.school())

    def fail(conn, cursor, statement, params, context, executemany) -> None:
        if inserting(statement) or statement.lstrip().upper().startswith("UPDATE"):
            raise engine.dialect.loaded_dbapi.OperationalError("injected: disk full")

    world.sandbox.add_student(clever_school_id(world), first_name="A", last_name="B")
    event.listen(engine, "before_cursor_execute", fail)
    try:
        assert world.sync(school_id=1).schools[0].status == RunStatus.FAILED
        world.services.preview_full_sync(1)  # reads only: works while writes fail
    finally:
        event.remove(engine, "before_cursor_execute", fail)
    assert history.failure_streak(1) == 1
    assert history.run_statuses(1)[0] == RunStatus.FAILED


def test_a_preview_of_an_unknown_school_is_a_clear_error(world: World) -> None:
    from cleversync.errors import NotFoundError

    with pytest.raises(NotFoundError, match="no school has id 99"):
        world.services.preview_full_sync(99)
