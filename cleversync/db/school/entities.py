"""The three synced entity types and the columns each maps from Clever."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Table

from cleversync.db.schema import Section, Student, Teacher


@dataclass(frozen=True)
class Entity:
    """How one entity type is stored: table, keys, and the columns compared for changes."""

    name: str  # SyncHistory.EntityType
    table: Table
    key: str  # the integer primary key
    clever_key: str  # the unique Clever id column
    columns: tuple[str, ...]  # mapped columns compared for changes (not the Clever id)
    widths: dict[str, int]


STUDENT = Entity(
    "Student",
    Student.__table__,
    "StudentId",
    "CleverStudentId",
    ("FirstName", "LastName", "Email", "Grade", "StudentNumber"),
    {
        "CleverStudentId": 50,
        "FirstName": 100,
        "LastName": 100,
        "Email": 200,
        "Grade": 50,
        "StudentNumber": 50,
    },
)
TEACHER = Entity(
    "Teacher",
    Teacher.__table__,
    "TeacherId",
    "CleverTeacherId",
    ("FirstName", "LastName", "Email", "Title"),
    {"CleverTeacherId": 50, "FirstName": 100, "LastName": 100, "Email": 200, "Title": 100},
)
SECTION = Entity(
    "Section",
    Section.__table__,
    "SectionId",
    "CleverSectionId",
    (
        "Name",
        "Period",
        "Subject",
        "Grade",
        "SectionNumber",
        "CleverTermId",
        "CleverCourseId",
        "CleverTeacherId",
    ),
    {
        "CleverSectionId": 50,
        "Name": 200,
        "Period": 50,
        "Subject": 100,
        "Grade": 50,
        "SectionNumber": 50,
        "CleverTermId": 50,
        "CleverCourseId": 50,
        "CleverTeacherId": 50,
    },
)
ENTITIES = (STUDENT, TEACHER, SECTION)
BY_NAME = {entity.name: entity for entity in ENTITIES}
