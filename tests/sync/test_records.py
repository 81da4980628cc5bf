"""Record handling: normalization, records that do not fit, unknown fields, set-based writes."""

from __future__ import annotations

import logging
import re

import pytest
from sqlalchemy import event

from cleversync.sandbox import Fault
from tests.world import World, clever_school_id, expected_students, stored_students


def entity(result, name: str):
    return next(o for o in result.entities if o.entity == name)


def test_values_are_trimmed_and_blank_is_null(world: World) -> None:
    clever_id = clever_school_id(world)
    student = world.sandbox.add_student(
        clever_id, first_name="  Ana  ", last_name="Lima ", email="   ", grade=""
    )
    world.sync(school_id=1)
    row = stored_students(world)[student]
    assert (row["FirstName"], row["LastName"], row["Email"], row["Grade"]) == (
        "Ana",
        "Lima",
        None,
        None,
    )


def test_whitespace_and_null_changes_are_not_updates(world: World) -> None:
    clever_id = clever_school_id(world)
    student = world.sandbox.add_student(
        clever_id, first_name="Ana", last_name="Lima", email="", grade="5"
    )
    world.sync(school_id=1)
    before = world.students(world.school())[student]
    world.sandbox.update_user(
        student, {"email": None, "name": {"first": " Ana "}, "roles": {"student": {"grade": "5 "}}}
    )
    run = world.sync(school_id=1)
    assert entity(run.schools[0], "Student").counts.processed == 1
    assert entity(run.schools[0], "Student").counts.updated == 0
    assert world.students(world.school())[student] == before


def test_last_modified_alone_is_not_a_change(world: World) -> None:
    world.sync(school_id=1)
    clever_id = clever_school_id(world)
    student = world.sandbox.students(clever_id)[0]["id"]
    before = world.students(world.school())[student]
    # A field we do not store changes: Clever bumps last_modified and sends an event.
    world.sandbox.update_user(
        student,
        {
            "roles": {
                "student": {"gender": "X" if before["Grade"] != "X" else "F", "dob": "1/2/2010"}
            }
        },
    )
    run = world.sync(school_id=1)
    assert entity(run.schools[0], "Student").counts.updated == 0
    assert world.students(world.school())[student] == before


def test_oversized_and_incomplete_records_are_skipped_counted_and_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    clever_id = clever_school_id(world)
    long_name = world.sandbox.add_student(clever_id, first_name="x" * 150, last_name="Long")
    nameless = world.sandbox.add_student(clever_id, name=None)
    wide_grade = world.sandbox.add_student(clever_id, first_name="G", last_name="W", grade="g" * 51)
    fits = world.sandbox.add_student(
        clever_id,
        first_name="é" * 100,
        last_name="TransitionalKindergarten",
        grade="TransitionalKindergarten",
    )
    with caplog.at_level(logging.WARNING, logger="cleversync"):
        run = world.sync(school_id=1)
    [result] = run.schools
    students = entity(result, "Student")
    assert (result.status, students.status, students.counts.failed) == ("Partial", "Partial", 3)
    stored = stored_students(world)
    assert fits in stored
    assert stored[fits]["Grade"] == "TransitionalKindergarten"
    for bad in (long_name, nameless, wide_grade):
        assert bad not in stored
        assert bad in caplog.text  # logged by Clever id
    assert "x" * 150 not in caplog.text  # never the value
    row = next(r for r in world.history(school_id=1) if r["EntityType"] == "Student")
    assert (row["Status"], row["RecordsFailed"]) == ("Partial", 3)
    assert row["RecordsProcessed"] == len(expected_students(world))
    assert row["LastEventId"] is not None  # Partial from skipped records is a successful run
    assert not world.school().requires_full_sync


def test_utf16_length_is_what_counts(world: World) -> None:
    clever_id = clever_school_id(world)
    # 60 emoji are 60 code points but 120 UTF-16 units: too long for nvarchar(100).
    emoji = world.sandbox.add_student(clever_id, first_name="😀" * 60, last_name="Emoji")
    run = world.sync(school_id=1)
    assert entity(run.schools[0], "Student").counts.failed == 1
    assert emoji not in stored_students(world)


def test_unknown_fields_are_reported_and_the_sync_goes_on(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.sandbox.faults.add(Fault("extra_fields", times=None))
    with caplog.at_level(logging.WARNING, logger="cleversync"):
        run = world.sync(school_id=1)
    assert run.schools[0].status == "Success"
    assert stored_students(world) == expected_students(world)
    warnings = [r.getMessage() for r in caplog.records if "does not know" in r.getMessage()]
    assert len([w for w in warnings if "Student fields" in w]) == 1  # once per run per entity
    assert any("x_sandbox_unknown" in w for w in warnings)
    assert "added by the extra_fields fault" not in caplog.text  # names only, no values


def test_writes_are_set_based_not_per_record(world: World) -> None:
    school = world.school()
    engine = world.engine(school)
    statements: list[str] = []

    def count(conn, cursor, statement, params, context, executemany) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        world.sync(school_id=1)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    students = len(expected_students(world))
    student_inserts = [s for s in statements if re.match(r'\s*(INSERT INTO|COPY) "?Students"? ', s)]
    batches = -(-students // 7)
    # Per batch of 7: one COPY on PostgreSQL; on SQLite statements of 4, 2 and 1 rows (powers
    # of two, so that few distinct statements are prepared). Never one per record.
    per_batch = 1 if engine.dialect.name == "postgresql" else 3
    assert batches <= len(student_inserts) <= per_batch * batches
    assert len(student_inserts) < students
    # Per batch: one read of the rows already stored, one read of the new keys; plus the
    # count before and the active rows after (for deletes), the section link lookups.
    student_reads = [
        s for s in statements if re.match(r'\s*SELECT .*\s+FROM "?Students"?\s', s, re.S)
    ]
    assert len(student_reads) <= 2 * batches + 2 + 1


def test_characters_the_database_cannot_store_skip_only_their_record(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    clever_id = clever_school_id(world)
    students = world.sandbox.students(clever_id)
    nul, surrogate = students[3]["id"], students[12]["id"]
    users = "/v3.0/schools/*/users"
    world.sandbox.faults.add(
        Fault("bad_value", path=users, record_id=nul, value="Li\x00ma", times=None)
    )
    world.sandbox.faults.add(
        Fault(
            "bad_value",
            path=users,
            record_id=surrogate,
            record_field="name.first",
            value="An\ud800a",  # sent as the escape \ud800: no UTF-8 form
            times=None,
        )
    )
    with caplog.at_level(logging.WARNING, logger="cleversync"):
        run = world.sync(school_id=1)
    [result] = run.schools
    statuses = {o.entity: (o.status, o.counts.failed) for o in result.entities}
    assert statuses == {
        "Student": ("Partial", 2),
        "Teacher": ("Success", 0),
        "Section": ("Success", 0),
    }
    expected = expected_students(world)
    del expected[nul], expected[surrogate]
    assert stored_students(world) == expected
    school = world.school()
    assert set(world.teachers(school)) == {t["id"] for t in world.sandbox.teachers(clever_id)}
    assert set(world.sections(school)) == {s["id"] for s in world.sandbox.sections(clever_id)}
    assert nul in caplog.text and surrogate in caplog.text  # logged by Clever id
    row = next(r for r in world.history(school_id=1) if r["EntityType"] == "Student")
    assert (row["Status"], row["RecordsFailed"]) == ("Partial", 2)
    assert world.sync(school_id=1).status == "Success"  # the next run works too...
    again = world.sync(school_id=1, full=True)  # ...and so does the next full one
    assert again.status == "Partial"
    assert entity(again.schools[0], "Student").counts.failed == 2
    assert stored_students(world) == expected


@pytest.fixture
def refuse_last_name(world: World):
    """The school database itself refuses one value (a rule our checks do not know)."""
    engine = world.engine(world.school())
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                'ALTER TABLE "Students" ADD CONSTRAINT refused CHECK ("LastName" <> \'Refused\')'
            )
        else:
            conn.exec_driver_sql(
                'CREATE TRIGGER refused BEFORE INSERT ON "Students" '
                "WHEN NEW.\"LastName\" = 'Refused' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
    return "Refused"


def test_a_batch_the_database_refuses_is_split_to_skip_only_the_refused_record(
    world: World, refuse_last_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    clever_id = clever_school_id(world)
    refused = world.sandbox.add_student(clever_id, first_name="Rita", last_name=refuse_last_name)
    with caplog.at_level(logging.WARNING, logger="cleversync"):
        run = world.sync(school_id=1)
    [result] = run.schools
    students = entity(result, "Student")
    assert (result.status, students.status, students.counts.failed) == ("Partial", "Partial", 1)
    expected = expected_students(world)
    del expected[refused]
    assert stored_students(world) == expected  # the rest of its batch was written
    assert students.counts.inserted == len(expected)
    assert refused in caplog.text
    assert {o.status for o in result.entities if o.entity != "Student"} == {"Success"}


def test_a_database_that_refuses_a_whole_batch_fails_the_entity(world: World) -> None:
    engine = world.engine(world.school())
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                'ALTER TABLE "Students" ADD CONSTRAINT refused CHECK ("StudentId" < 0)'
            )
        else:
            conn.exec_driver_sql(
                'CREATE TRIGGER refused BEFORE INSERT ON "Students" '
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
    run = world.sync(school_id=1)
    # Every record refused on its own: the database is at fault, not the records.
    assert run.schools[0].status == "Failed"
    assert stored_students(world) == {}


def test_an_event_the_database_refuses_is_skipped_and_the_cursor_moves_past_it(
    world: World, refuse_last_name: str
) -> None:
    assert world.sync(school_id=1).status == "Success"
    clever_id = clever_school_id(world)
    fine = world.sandbox.add_student(clever_id, first_name="Fina", last_name="Fine")
    refused = world.sandbox.add_student(clever_id, first_name="Rita", last_name=refuse_last_name)
    section = world.sandbox.sections(clever_id)[0]["id"]
    world.sandbox.update_section(section, {"name": "Renamed"})  # same page, another entity
    run = world.sync(school_id=1)
    [result] = run.schools
    students = entity(result, "Student")
    assert (result.mode, students.status, students.counts.failed) == ("events", "Partial", 1)
    stored = stored_students(world)
    assert fine in stored and refused not in stored
    assert world.sections(world.school())[section]["Name"] == "Renamed"
    again = world.sync(school_id=1)  # the cursor moved past the refused event
    assert again.status == "Success" and entity(again.schools[0], "Student").counts.failed == 0
