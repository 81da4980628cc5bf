"""Clever records to school-database rows: trimmed, empty as NULL, checked against the columns.

A value longer than its column (by UTF-16 length, what SQL Server's nvarchar counts, so all
three databases agree), a character no database can store (NUL, which PostgreSQL refuses;
a lone UTF-16 surrogate, which has no UTF-8 or UTF-16 form) or a missing required field makes
the record a RecordError: it is skipped and counted, never cut short or altered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cleversync.db.schema import utf16_length
from cleversync.db.school.entities import SECTION, STUDENT, TEACHER, Entity
from cleversync.errors import RecordError
from cleversync.timeutil import parse_clever_time

REQUIRED = {"FirstName", "LastName", "Name"}


@dataclass(frozen=True)
class Row:
    """One mapped record: the Clever id, the compared columns, and Clever's timestamp."""

    clever_id: str
    values: dict[str, str | None]
    last_modified: datetime | None


@dataclass(frozen=True)
class SectionRow(Row):
    student_ids: tuple[str, ...] = ()
    teacher_ids: tuple[str, ...] = ()


def clean(value: Any) -> str | None:
    """Trimmed text; None for missing, empty or whitespace-only values."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    text = text.strip()
    return text or None


def unstorable(text: str) -> str | None:
    """What makes ``text`` impossible to store in every database, or None if it can be."""
    if "\x00" in text:
        return "a NUL character"
    if not text.isascii():  # a flag, not a scan: the usual case costs nothing more
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "a lone UTF-16 surrogate (invalid Unicode)"
    return None


def storable(text: str) -> bool:
    return unstorable(text) is None


def _check(entity: Entity, clever_id: str | None, values: dict[str, str | None]) -> str:
    if not clever_id:
        raise RecordError("", f"a {entity.name.lower()} without an id")
    problem = unstorable(clever_id)
    if problem:  # the id itself cannot be logged as it is
        shown = clever_id.encode("unicode_escape").decode("ascii")
        raise RecordError(shown[:60], f"id holds {problem}")
    if utf16_length(clever_id) > entity.widths[entity.clever_key]:
        raise RecordError(clever_id[:60], f"id is longer than {entity.widths[entity.clever_key]}")
    widths = entity.widths
    for column, value in values.items():
        if value is None:
            if column in REQUIRED:
                raise RecordError(clever_id, f"{column} is missing")
            continue
        # The usual case (ASCII) is checked inline: this runs for every value of a page.
        ascii = value.isascii()
        problem = ("a NUL character" if "\x00" in value else None) if ascii else unstorable(value)
        if problem:
            raise RecordError(clever_id, f"{column} holds {problem}, which no database stores")
        length = len(value) if ascii else utf16_length(value)
        if length > widths[column]:
            raise RecordError(
                clever_id, f"{column} is {length} characters, longer than {widths[column]}"
            )
    return clever_id


# The mappers take a record's fields as a dict that fits its model (``models.checked``: the
# record as Clever sent it, or a validated model's dump); a missing field is None.


def student_row(user: Mapping[str, Any]) -> Row:
    name = user.get("name") or {}
    role = (user.get("roles") or {}).get("student") or {}
    values = {
        "FirstName": clean(name.get("first")),
        "LastName": clean(name.get("last")),
        "Email": clean(user.get("email")),
        "Grade": clean(role.get("grade")),
        "StudentNumber": clean(role.get("student_number")),
    }
    clever_id = _check(STUDENT, clean(user.get("id")), values)
    return Row(clever_id, values, parse_clever_time(user.get("last_modified")))


def teacher_row(user: Mapping[str, Any]) -> Row:
    name = user.get("name") or {}
    role = (user.get("roles") or {}).get("teacher") or {}
    values = {
        "FirstName": clean(name.get("first")),
        "LastName": clean(name.get("last")),
        "Email": clean(user.get("email")),
        "Title": clean(role.get("title")),
    }
    clever_id = _check(TEACHER, clean(user.get("id")), values)
    return Row(clever_id, values, parse_clever_time(user.get("last_modified")))


def section_row(section: Mapping[str, Any]) -> SectionRow:
    get = section.get
    lead = get("teacher")
    values = {
        "Name": clean(get("name")),
        "Period": clean(get("period")),
        "Subject": clean(get("subject")),
        "Grade": clean(get("grade")),
        "SectionNumber": clean(get("section_number")),
        "CleverTermId": clean(get("term_id")),
        "CleverCourseId": clean(get("course")),
        "CleverTeacherId": clean(lead),
    }
    clever_id = _check(SECTION, clean(get("id")), values)
    # A member id no database can hold matches no stored row: skipped like any member this
    # school's database does not hold.
    teachers = list(dict.fromkeys(t for t in get("teachers") or () if t and storable(t)))
    if lead and lead not in teachers and storable(lead):
        teachers.insert(0, lead)
    return SectionRow(
        clever_id,
        values,
        parse_clever_time(get("last_modified")),
        student_ids=tuple(dict.fromkeys(s for s in get("students") or () if s and storable(s))),
        teacher_ids=tuple(teachers),
    )


def belongs_to(user: Mapping[str, Any], role: str, school_id: str) -> bool:
    """Whether the user (its fields as a dict, as the mappers take them) holds ``role`` at
    the school (any of the role's schools, not only the primary one: a student enrolled at
    two schools is in both databases)."""
    held = (user.get("roles") or {}).get(role)
    if held is None:
        return False
    return school_id in (held.get("schools") or ()) or held.get("school") == school_id
