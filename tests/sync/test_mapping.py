"""Clever records to rows: the mapped columns, trimming, widths by UTF-16, required fields."""

from __future__ import annotations

import pytest

from cleversync.clever.models import Section, User, checked
from cleversync.errors import RecordError
from cleversync.sync.mapping import (
    belongs_to,
    section_row,
    student_row,
    teacher_row,
    unstorable,
    utf16_length,
)
from tests.recordings import SCHOOL_07, body


def test_a_real_student() -> None:
    raw = body("school_users")["data"][0]["data"]
    row = student_row(checked(User, raw))
    assert row.clever_id == "58da8c63d7dc0ca0680003ed"
    assert row.values == {
        "FirstName": "Steve",
        "LastName": "Ziemann",
        "Email": "z.steve@example.net",
        "Grade": "Kindergarten",
        "StudentNumber": "100095233",
    }
    assert row.last_modified.isoformat() == "2023-04-12T23:05:01.315000"


def test_a_real_teacher_whose_email_has_no_at() -> None:
    raw = body("user_myteachers")["data"][0]["data"]
    row = teacher_row(checked(User, raw))
    assert row.values["Email"] == "seth_schoen.example.org"  # stored as Clever gives it
    assert row.values["Title"] == "Kindergarten Teacher"


def test_a_real_section_with_empty_section_number() -> None:
    raw = body("school_sections")["data"][0]["data"]
    row = section_row(checked(Section, raw))
    assert row.values["SectionNumber"] is None  # "" in Clever
    assert row.values["CleverTeacherId"] == raw["teacher"]
    assert row.teacher_ids[0] == raw["teacher"]
    assert set(row.student_ids) == set(raw["students"])


def test_every_real_student_of_school_07_maps() -> None:
    for item in body("school_users_with_starting_after")["data"]:
        user = checked(User, item["data"])
        student_row(user)
        assert belongs_to(user, "student", SCHOOL_07)


def test_long_real_names_fit() -> None:
    # 84 and 77 characters in the real data: within FirstName/LastName (100).
    rows = [student_row(checked(User, i["data"])) for i in body("schoool_users_next", 1)["data"]]
    assert max(len(r.values["FirstName"]) for r in rows) <= 100


def raw_user(**overrides: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "id": "u1",
        "name": {"first": "Ana", "last": "Lima"},
        "email": "a@b.c",
        "roles": {"student": {"schools": ["s1"], "grade": "3"}},
    }
    raw.update(overrides)
    return raw


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (
            {"name": {"first": "x" * 101, "last": "L"}},
            "FirstName is 101 characters, longer than 100",
        ),
        ({"name": {"first": "   ", "last": "L"}}, "FirstName is missing"),
        ({"name": None}, "FirstName is missing"),
        ({"email": "e" * 201}, "Email is 201 characters, longer than 200"),
        ({"roles": {"student": {"grade": "g" * 51}}}, "Grade is 51 characters, longer than 50"),
        ({"id": "i" * 51}, "id is longer than 50"),
    ],
)
def test_records_that_do_not_fit(overrides: dict, problem: str) -> None:
    with pytest.raises(RecordError) as info:
        student_row(checked(User, raw_user(**overrides)))
    assert info.value.problem == problem


def test_utf16_length() -> None:
    assert utf16_length("é") == 1
    assert utf16_length("😀") == 2
    assert utf16_length("Nguyễn") == 6


def test_belongs_to_any_of_the_roles_schools() -> None:
    assert belongs_to(
        raw_user(roles={"student": {"school": "s2", "schools": ["s1", "s2"]}}), "student", "s1"
    )
    assert not belongs_to(
        raw_user(roles={"student": {"school": "s2", "schools": ["s2"]}}), "student", "s1"
    )
    assert not belongs_to(raw_user(), "teacher", "s1")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("Lima", None),
        ("Łódź 😀", None),  # astral characters are fine: one code point, a surrogate pair
        ("Li\x00ma", "NUL"),
        ("An\ud800a", "surrogate"),
        ("\udfff", "surrogate"),
    ],
)
def test_characters_no_database_stores(value: str, problem: str | None) -> None:
    found = unstorable(value)
    assert (found is None) if problem is None else (problem in found)


def test_a_record_holding_a_character_no_database_stores_is_a_record_error() -> None:
    raw = {"id": "s1", "name": {"first": "A", "last": "B\x00"}, "roles": {"student": {}}}
    with pytest.raises(RecordError, match="LastName holds a NUL character") as caught:
        student_row(checked(User, raw))
    assert caught.value.clever_id == "s1"
    bad_id = {"id": "s\ud800", "name": {"first": "A", "last": "B"}, "roles": {"student": {}}}
    with pytest.raises(RecordError, match="surrogate") as caught:
        student_row(checked(User, bad_id))
    assert caught.value.clever_id == "s\\ud800"  # printable in a log line
    section = checked(
        Section,
        {"id": "x1", "name": "Math", "students": ["ok", "bad\x00"], "teachers": ["t\ud800"]},
    )
    row = section_row(section)
    assert (row.student_ids, row.teacher_ids) == (("ok",), ())  # like members not held here
