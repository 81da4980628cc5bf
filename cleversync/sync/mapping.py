"""Clever records to school-database rows: trimmed, empty as NULL, checked against the columns.

A value longer than its column (by UTF-16 length, what SQL Server's nvarchar counts, so all
three databases agree), a character no database can store (NUL, which PostgreSQL refuses;
a lone UTF-16 surrogate, which has no UTF-8 or UTF-16 form) or a missing required field makes
the record a RecordError: it is skipped and counted, never cut short or altered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cleversync.clever.models import Section, User
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
    for column, value in values.items():
        if value is None:
            if column in REQUIRED:
                raise RecordError(clever_id, f"{column} is missing")
            continue
        problem = unstorable(value)
        if problem:
            raise RecordError(clever_id, f"{column} holds {problem}, which no database stores")
        width = entity.widths[column]
        length = utf16_length(value)
        if length > width:
            raise RecordError(clever_id, f"{column} is {length} characters, longer than {width}")
    return clever_id


def student_row(user: User) -> Row:
    role = user.roles.student
    name = user.name
    values = {
        "FirstName": clean(name.first if name else None),
        "LastName": clean(name.last if name else None),
        "Email": clean(user.email),
        "Grade": clean(role.grade if role else None),
        "StudentNumber": clean(role.student_number if role else None),
    }
    clever_id = _check(STUDENT, clean(user.id), values)
    return Row(clever_id, values, parse_clever_time(user.last_modified))


def teacher_row(user: User) -> Row:
    role = user.roles.teacher
    name = user.name
    values = {
        "FirstName": clean(name.first if name else None),
        "LastName": clean(name.last if name else None),
        "Email": clean(user.email),
        "Title": clean(role.title if role else None),
    }
    clever_id = _check(TEACHER, clean(user.id), values)
    return Row(clever_id, values, parse_clever_time(user.last_modified))


def section_row(section: Section) -> SectionRow:
    values = {
        "Name": clean(section.name),
        "Period": clean(section.period),
        "Subject": clean(section.subject),
        "Grade": clean(section.grade),
        "SectionNumber": clean(section.section_number),
        "CleverTermId": clean(section.term_id),
        "CleverCourseId": clean(section.course),
        "CleverTeacherId": clean(section.teacher),
    }
    clever_id = _check(SECTION, clean(section.id), values)
    # A member id no database can hold matches no stored row: skipped like any member this
    # school's database does not hold.
    teachers = list(dict.fromkeys(t for t in section.teachers if t and storable(t)))
    if section.teacher and section.teacher not in teachers and storable(section.teacher):
        teachers.insert(0, section.teacher)
    return SectionRow(
        clever_id,
        values,
        parse_clever_time(section.last_modified),
        student_ids=tuple(dict.fromkeys(s for s in section.students if s and storable(s))),
        teacher_ids=tuple(teachers),
    )


def belongs_to(user: User, role: str, school_id: str) -> bool:
    """Whether the user holds ``role`` at the school (any of the role's schools, not only
    the primary one: a student enrolled at two schools is in both databases)."""
    held = getattr(user.roles, role)
    if held is None:
        return False
    return school_id in held.schools or held.school == school_id
