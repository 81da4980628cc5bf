"""Set-based writes to a real school database (SQLite and PostgreSQL): what each batch writes,
what it leaves alone, enrolment links, what a full sync may remove, and how it removes it."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.engine import Connection, Engine

from cleversync.db.engines import engine_for
from cleversync.db.schema import SectionStudent, SectionTeacher
from cleversync.db.school.entities import SECTION, STUDENT, TEACHER
from cleversync.db.school.writer import (
    MAX_IN,
    chunks,
    describe_rows,
    keys_for,
    missing_rows,
    read_existing,
    remove_rows,
    stored_versions,
    write_rows,
    write_sections,
)
from cleversync.sync.mapping import Row, SectionRow
from tests.databases import inserting

T0 = datetime(2024, 1, 10, 8, 0, 0)  # the first write
T1 = datetime(2024, 2, 20, 9, 30, 0)  # the batch under test
CLEVER_T0 = datetime(2024, 1, 9, 12, 0, 0)
CLEVER_T1 = datetime(2024, 2, 19, 12, 0, 0)


@pytest.fixture
def engine(school_db_url: str) -> Iterator[Engine]:
    engine = engine_for(school_db_url)
    yield engine
    engine.dispose()


def student(
    clever_id: str,
    first: str | None = "Ann",
    *,
    email: str | None = None,
    modified: datetime | None = CLEVER_T0,
) -> Row:
    values = {
        "FirstName": first,
        "LastName": "Lee",
        "Email": email,
        "Grade": "5",
        "StudentNumber": None,
    }
    return Row(clever_id, values, modified)


def teacher(clever_id: str) -> Row:
    values = {"FirstName": "Tom", "LastName": "Ray", "Email": None, "Title": None}
    return Row(clever_id, values, CLEVER_T0)


def section(
    clever_id: str,
    name: str = "Math",
    students: tuple[str, ...] = (),
    teachers: tuple[str, ...] = (),
) -> SectionRow:
    values: dict[str, str | None] = dict.fromkeys(SECTION.columns)
    values["Name"] = name
    return SectionRow(clever_id, values, CLEVER_T0, student_ids=students, teacher_ids=teachers)


def stored(engine: Engine, entity: Any = STUDENT) -> dict[str, dict[str, Any]]:
    table = entity.table
    with engine.connect() as conn:
        rows = conn.execute(select(table)).all()
    return {r._mapping[entity.clever_key]: dict(r._mapping) for r in rows}


def enrolments(engine: Engine) -> set[tuple[str, str]]:
    """(Clever section id, Clever student or teacher id) of every stored link."""
    out: set[tuple[str, str]] = set()
    with engine.connect() as conn:
        for link, member in ((SectionStudent, STUDENT), (SectionTeacher, TEACHER)):
            member_key = member.key
            query = (
                select(SECTION.table.c.CleverSectionId, member.table.c[member.clever_key])
                .select_from(link.__table__)
                .join(SECTION.table, SECTION.table.c.SectionId == link.__table__.c.SectionId)
                .join(
                    member.table,
                    member.table.c[member_key] == link.__table__.c[member_key],
                )
            )
            out |= {(s, m) for s, m in conn.execute(query)}
    return out


def deactivate(engine: Engine, *clever_ids: str) -> None:
    table = STUDENT.table
    with engine.begin() as conn:
        conn.execute(
            update(table)
            .where(table.c.CleverStudentId.in_(clever_ids))
            .values(IsActive=False, DeactivatedAt=T0)
        )


# name, rows stored first (at T0), ids then deactivated, the batch (at T1),
# ids inserted, ids updated, FirstName after, ids whose UpdatedAt is T1
WRITE_CASES = [
    ("new rows are inserted", [], [], [student("a"), student("b")], "ab", "", {}, "ab"),
    (
        "unchanged rows are not written",
        [student("a"), student("b")],
        [],
        [student("a"), student("b")],
        "",
        "",
        {"a": "Ann", "b": "Ann"},
        "",
    ),
    (
        "a changed row is updated, the others left alone",
        [student("a"), student("b")],
        [],
        [student("a", "Annie"), student("b")],
        "",
        "a",
        {"a": "Annie", "b": "Ann"},
        "a",
    ),
    (
        "null, empty and surrounding blanks are the same value",
        [student("a", email=None), student("b", " Ann ")],
        [],
        [student("a", email=""), student("b", "Ann")],
        "",
        "",
        {},
        "",
    ),
    (
        "Clever's timestamp alone is not a change",
        [student("a")],
        [],
        [student("a", modified=CLEVER_T1)],
        "",
        "",
        {"a": "Ann"},
        "",
    ),
    (
        "an inactive row comes back",
        [student("a"), student("b")],
        ["a"],
        [student("a"), student("b")],
        "",
        "a",
        {"a": "Ann"},
        "a",
    ),
    (
        "the later of two records for one id wins",
        [],
        [],
        [student("a", "First"), student("a", "Second")],
        "a",
        "",
        {"a": "Second"},
        "a",
    ),
    ("an empty batch writes nothing", [student("a")], [], [], "", "", {"a": "Ann"}, ""),
]


@pytest.mark.parametrize(
    ("before", "inactive", "batch", "inserted", "updated", "names", "touched"),
    [case[1:] for case in WRITE_CASES],
    ids=[case[0] for case in WRITE_CASES],
)
def test_write_rows(
    engine: Engine,
    before: list[Row],
    inactive: list[str],
    batch: list[Row],
    inserted: str,
    updated: str,
    names: dict[str, str],
    touched: str,
) -> None:
    with engine.begin() as conn:
        write_rows(conn, STUDENT, before, T0)
    if inactive:
        deactivate(engine, *inactive)
    with engine.begin() as conn:
        written = write_rows(conn, STUDENT, batch, T1)
    rows = stored(engine)
    key_of = {clever_id: row["StudentId"] for clever_id, row in rows.items()}
    assert written.inserted_keys == {key_of[c] for c in inserted}
    assert written.updated_keys == {key_of[c] for c in updated}
    assert written.keys == {row.clever_id: key_of[row.clever_id] for row in batch}
    assert len(rows) == len({row.clever_id for row in before + batch})
    for clever_id, name in names.items():
        assert rows[clever_id]["FirstName"] == name
    assert {c for c, r in rows.items() if r["UpdatedAt"] == T1} == set(touched)
    for clever_id in touched:  # a written row is active with Clever's latest timestamp
        row = rows[clever_id]
        assert row["IsActive"] and row["DeactivatedAt"] is None
        assert (
            row["LastModifiedInClever"]
            == [r for r in batch if r.clever_id == clever_id][-1].last_modified
        )
    for clever_id in inserted:
        assert rows[clever_id]["CreatedAt"] == T1


def test_a_batch_is_a_few_statements_not_one_per_row(engine: Engine) -> None:
    # More ids than one IN list may hold: read, insert, and key lookup are split, not per row.
    many = [student(f"s{n:05d}") for n in range(MAX_IN + 5)]
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with engine.begin() as conn:
        written = write_rows(conn, STUDENT, many, T1)
    assert written.inserted == len(many) and len(written.keys) == len(many)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 4
    # PostgreSQL: one COPY; SQLite: statements of 256 rows (and powers of two for the rest).
    inserts = [s for s in statements if inserting(s)]
    assert len(inserts) == (1 if engine.dialect.name == "postgresql" else 7 + 5)
    with engine.begin() as conn:
        changed = [student(r.clever_id, "Changed") for r in many[::2]]
        again = write_rows(conn, STUDENT, many[1::2] + changed, T1)
    assert again.inserted == 0 and again.updated == len(changed)


@pytest.mark.parametrize(
    ("items", "size", "expected"),
    [
        ([], 3, []),
        ([1, 2, 3], 3, [[1, 2, 3]]),
        ([1, 2, 3, 4], 3, [[1, 2, 3], [4]]),
        (list(range(7)), 2, [[0, 1], [2, 3], [4, 5], [6]]),
    ],
)
def test_chunks(items: list[int], size: int, expected: list[list[int]]) -> None:
    assert list(chunks(items, size)) == expected


def _setup_people(conn: Connection) -> None:
    write_rows(conn, STUDENT, [student(c) for c in ("s1", "s2", "s3")], T0)
    write_rows(conn, TEACHER, [teacher("t1"), teacher("t2")], T0)


# name, sections stored first, the batch, (inserted, updated) section ids, links after
SECTION_CASES = [
    (
        "new sections with their students and teachers",
        [],
        [section("c1", students=("s1", "s2"), teachers=("t1",)), section("c2")],
        ("c1 c2", ""),
        {("c1", "s1"), ("c1", "s2"), ("c1", "t1")},
    ),
    (
        "links to people this school does not hold are skipped, the section kept",
        [],
        [section("c1", students=("s1", "elsewhere"), teachers=("t-elsewhere",))],
        ("c1", ""),
        {("c1", "s1")},
    ),
    (
        "a section's lists are replaced: it counts as updated",
        [section("c1", students=("s1", "s2"), teachers=("t1",)), section("c2", students=("s3",))],
        [section("c1", students=("s2", "s3"), teachers=("t2",)), section("c2", students=("s3",))],
        ("", "c1"),
        {("c1", "s2"), ("c1", "s3"), ("c1", "t2"), ("c2", "s3")},
    ),
    (
        "an unchanged section with unchanged links is not written",
        [section("c1", students=("s1",), teachers=("t1",))],
        [section("c1", students=("s1",), teachers=("t1",))],
        ("", ""),
        {("c1", "s1"), ("c1", "t1")},
    ),
    (
        "a renamed section whose links changed too counts once",
        [section("c1", students=("s1",))],
        [section("c1", "Algebra", students=("s2",))],
        ("", "c1"),
        {("c1", "s2")},
    ),
    (
        "the later of two records for one section wins",
        [],
        [section("c1", students=("s1",)), section("c1", students=("s2",))],
        ("c1", ""),
        {("c1", "s2")},
    ),
    (
        "an emptied section loses every link",
        [section("c1", students=("s1", "s2"), teachers=("t1",))],
        [section("c1")],
        ("", "c1"),
        set(),
    ),
]


@pytest.mark.parametrize(
    ("before", "batch", "written_ids", "links"),
    [case[1:] for case in SECTION_CASES],
    ids=[case[0] for case in SECTION_CASES],
)
def test_write_sections(
    engine: Engine,
    before: list[SectionRow],
    batch: list[SectionRow],
    written_ids: tuple[str, str],
    links: set[tuple[str, str]],
) -> None:
    with engine.begin() as conn:
        _setup_people(conn)
        write_sections(conn, before, T0)
    with engine.begin() as conn:
        written = write_sections(conn, batch, T1)
    key_of = {c: r["SectionId"] for c, r in stored(engine, SECTION).items()}
    inserted, updated = (ids.split() for ids in written_ids)
    assert written.inserted_keys == {key_of[c] for c in inserted}
    assert written.updated_keys == {key_of[c] for c in updated}
    assert enrolments(engine) == links


def test_missing_rows_are_the_active_rows_not_seen(engine: Engine) -> None:
    with engine.begin() as conn:
        write_rows(conn, STUDENT, [student(c) for c in ("a", "b", "c", "d")], T0)
    deactivate(engine, "d")
    key_of = {c: r["StudentId"] for c, r in stored(engine).items()}
    with engine.connect() as conn:
        assert missing_rows(conn, STUDENT, {"a", "c", "unknown"}) == ([key_of["b"]], 3)
        every, active = missing_rows(conn, STUDENT, set())
        assert (sorted(every), active) == (sorted(key_of[c] for c in "abc"), 3)
        assert missing_rows(conn, TEACHER, {"a"}) == ([], 0)


def _school_with_links(engine: Engine) -> dict[str, int]:
    with engine.begin() as conn:
        _setup_people(conn)
        write_sections(conn, [section("c1", students=("s1", "s2"), teachers=("t1",))], T0)
    return {c: r["StudentId"] for c, r in stored(engine).items()}


def test_deleting_rows_removes_their_enrolments(engine: Engine) -> None:
    key_of = _school_with_links(engine)
    with engine.begin() as conn:
        assert remove_rows(conn, STUDENT, [key_of["s1"], key_of["s3"]], mode="Delete", now=T1) == 2
    assert set(stored(engine)) == {"s2"}
    assert enrolments(engine) == {("c1", "s2"), ("c1", "t1")}


def test_deactivating_rows_keeps_them_and_their_enrolments(engine: Engine) -> None:
    key_of = _school_with_links(engine)
    with engine.begin() as conn:
        removed = remove_rows(conn, STUDENT, [key_of["s1"]], mode="Deactivate", now=T1)
    assert removed == 1
    rows = stored(engine)
    assert (rows["s1"]["IsActive"], rows["s1"]["DeactivatedAt"], rows["s1"]["UpdatedAt"]) == (
        False,
        T1,
        T1,
    )
    assert all(rows[c]["IsActive"] and rows[c]["UpdatedAt"] == T0 for c in ("s2", "s3"))
    assert ("c1", "s1") in enrolments(engine)
    with engine.connect() as conn:
        assert missing_rows(conn, STUDENT, {"s2", "s3"}) == ([], 2)


def test_removing_more_rows_than_one_in_list_holds(engine: Engine) -> None:
    with engine.begin() as conn:
        written = write_rows(conn, STUDENT, [student(f"s{n}") for n in range(MAX_IN + 3)], T0)
        keys = sorted(written.keys.values())
        assert remove_rows(conn, STUDENT, keys[1:], mode="Delete", now=T1) == len(keys) - 1
        assert conn.scalar(select(func.count()).select_from(STUDENT.table)) == 1


def test_stored_versions_are_those_of_active_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        write_rows(
            conn,
            STUDENT,
            [student("a"), student("b", modified=CLEVER_T1), student("c", modified=None)],
            T0,
        )
        write_rows(conn, STUDENT, [student("gone")], T0)
    deactivate(engine, "gone")
    with engine.connect() as conn:
        versions = stored_versions(conn, STUDENT, ["a", "b", "c", "gone", "unknown"])
    assert versions == {"a": CLEVER_T0, "b": CLEVER_T1, "c": None}


@pytest.mark.parametrize(
    "read",
    [
        lambda conn, ids, keys: read_existing(conn, STUDENT, ids),
        lambda conn, ids, keys: stored_versions(conn, STUDENT, ids),
        lambda conn, ids, keys: keys_for(conn, STUDENT, ids),
        lambda conn, ids, keys: describe_rows(conn, STUDENT, keys),
        lambda conn, ids, keys: remove_rows(conn, STUDENT, keys, mode="Deactivate", now=T1),
    ],
    ids=["read_existing", "stored_versions", "keys_for", "describe_rows", "remove_rows"],
)
def test_a_batch_s_values_are_not_kept_after_its_statement(
    engine: Engine, read: Callable[[Connection, list[str], list[int]], Any]
) -> None:
    """Values bound into a statement sit in SQLAlchemy's reference cycles until the cyclic
    collector runs, which a sync makes rare: a 50,000-student school kept every batch's ids
    that way. Each batch's values go with its execution instead, and are freed with it."""
    with engine.begin() as conn:
        written = write_rows(conn, STUDENT, [student(f"batch-{n}") for n in range(12)], T0)
    ids = [f"batch-{n}" for n in range(7, 12)]
    keys = [written.keys[i] for i in ids]
    gc.collect()
    gc.disable()
    try:
        with engine.begin() as conn:
            read(conn, ids, keys)
        kept = [
            o
            for o in gc.get_objects()
            if type(o) is list and o is not ids and o is not keys and o in (ids, keys)
        ]
    finally:
        gc.enable()
    assert kept == [], f"{len(kept)} lists of a batch's values outlived its statement"
