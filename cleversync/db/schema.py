"""Tables of SessionDb and of the school databases; names and widths are a contract.

Other SOS applications read the school databases, so table and column names are PascalCase
exactly as documented, and so are the attribute names here. ``Unicode`` is ``nvarchar`` on
SQL Server and ``varchar`` elsewhere; timestamps are naive UTC ``datetime2``.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Unicode,
    UnicodeText,
    column,
    false,
    text,
    true,
)
from sqlalchemy.dialects import mssql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cleversync.vocabulary import (
    FINISHED_STATUSES,
    RUN_TRIGGERS,
    STORED_STATUSES,
    ChangeKind,
    SyncType,
)

# Deterministic constraint names on every dialect, so migrations can refer to them.
NAMING = {
    "ix": "IX_%(table_name)s_%(column_0_N_name)s",
    "uq": "UQ_%(table_name)s_%(column_0_N_name)s",
    "ck": "CK_%(table_name)s_%(constraint_name)s",
    "fk": "FK_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "PK_%(table_name)s",
}

UtcDateTime = DateTime().with_variant(mssql.DATETIME2(), "mssql")
# NVARCHAR(max) on SQL Server (UnicodeText alone compiles to the deprecated NTEXT offline).
LongText = UnicodeText().with_variant(mssql.NVARCHAR(None), "mssql")

ENTITY_TYPES = ("Student", "Teacher", "Section")
SYNC_TYPES = tuple(t.value for t in SyncType)
STATUSES = tuple(s.value for s in STORED_STATUSES)  # Skipped is never stored
RUN_SCHOOL_STATUSES = ("Queued", "Running", *(s.value for s in FINISHED_STATUSES))
CHANGE_KINDS = tuple(k.value for k in ChangeKind)


def utf16_length(text: str) -> int:
    """A string's length as SQL Server's nvarchar counts it (UTF-16 code units): the widths
    here are checked that way before writing, so all three databases agree."""
    if text.isascii():  # one UTF-16 unit a character; isascii() is a flag, not a scan
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def _one_of(name: str, values: tuple[str, ...]) -> CheckConstraint:
    # An expression, not text: each dialect quotes the PascalCase column its own way.
    return CheckConstraint(column(name).in_(values), name=name)


class SessionBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    __table__: ClassVar[Table]  # every model here maps a Table (the library says FromClause)


class SchoolBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    __table__: ClassVar[Table]  # every model here maps a Table (the library says FromClause)


# --- SessionDb ---------------------------------------------------------------------------


class District(SessionBase):
    __tablename__ = "Districts"

    DistrictId: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    CleverDistrictId: Mapped[str] = mapped_column(Unicode(50), unique=True)
    Name: Mapped[str] = mapped_column(Unicode(200))
    DistrictPrefix: Mapped[str] = mapped_column(Unicode(100), index=True)
    CreatedAt: Mapped[datetime] = mapped_column(UtcDateTime)
    UpdatedAt: Mapped[datetime] = mapped_column(UtcDateTime)
    # A deactivated district's schools are left out of every run (their own flag is kept).
    IsActive: Mapped[bool] = mapped_column(Boolean, server_default=true())
    # Removed with its history kept: hidden everywhere, the row stays for SyncHistory's key.
    RemovedAt: Mapped[datetime | None] = mapped_column(UtcDateTime)


class School(SessionBase):
    __tablename__ = "Schools"

    SchoolId: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    DistrictId: Mapped[int] = mapped_column(ForeignKey("Districts.DistrictId"), index=True)
    CleverSchoolId: Mapped[str] = mapped_column(Unicode(50), unique=True)
    Name: Mapped[str] = mapped_column(Unicode(200))
    DatabaseName: Mapped[str] = mapped_column(Unicode(100))
    SchoolPrefix: Mapped[str] = mapped_column(Unicode(100), index=True)
    IsActive: Mapped[bool] = mapped_column(Boolean, server_default=true())
    RequiresFullSync: Mapped[bool] = mapped_column(Boolean, server_default=false())
    SyncLeaseOwner: Mapped[str | None] = mapped_column(Unicode(200))
    SyncLeaseExpiresAt: Mapped[datetime | None] = mapped_column(UtcDateTime)
    CreatedAt: Mapped[datetime] = mapped_column(UtcDateTime)
    UpdatedAt: Mapped[datetime] = mapped_column(UtcDateTime)
    RemovedAt: Mapped[datetime | None] = mapped_column(UtcDateTime)  # as Districts.RemovedAt


class SyncHistory(SessionBase):
    __tablename__ = "SyncHistory"
    __table_args__ = (
        Index(None, "SchoolId", "SyncStartTime"),
        _one_of("EntityType", ENTITY_TYPES),
        _one_of("SyncType", SYNC_TYPES),
        _one_of("Status", STATUSES),
    )

    SyncId: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    SchoolId: Mapped[int] = mapped_column(ForeignKey("Schools.SchoolId", ondelete="CASCADE"))
    EntityType: Mapped[str] = mapped_column(Unicode(50))
    SyncType: Mapped[str] = mapped_column(Unicode(20))
    SyncStartTime: Mapped[datetime] = mapped_column(UtcDateTime)
    SyncEndTime: Mapped[datetime | None] = mapped_column(UtcDateTime)
    Status: Mapped[str] = mapped_column(Unicode(20))
    RecordsProcessed: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    RecordsInserted: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    RecordsUpdated: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    RecordsDeleted: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    RecordsFailed: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    ErrorMessage: Mapped[str | None] = mapped_column(LongText)
    LastSyncTimestamp: Mapped[datetime | None] = mapped_column(UtcDateTime)
    LastEventId: Mapped[str | None] = mapped_column(Unicode(100))
    CorrelationId: Mapped[str | None] = mapped_column(Unicode(64))
    # Change details this row's run did not record (over History__MaxChangeDetailsPerRun).
    ChangesOmitted: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # The run's retried requests and transactions, and its waits for Clever's rate limit
    # (count and seconds) for this entity (cleversync.runtally).
    Retries: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    RateLimitWaits: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    RateLimitWaitSeconds: Mapped[float] = mapped_column(Float, server_default=text("0"))


class SyncChange(SessionBase):
    """One record a run inserted, updated, deleted, (de/re)activated or held back, under its
    SyncHistory row (deleted with it). ``SchoolId`` repeats the row's for reading by school
    (no foreign key of its own: SQL Server allows one cascade path to a row)."""

    __tablename__ = "SyncChanges"
    __table_args__ = (
        Index(None, "SyncId"),
        Index(None, "SchoolId", "CleverId"),
        _one_of("EntityType", ENTITY_TYPES),
        _one_of("ChangeKind", CHANGE_KINDS),
    )

    ChangeId: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    SyncId: Mapped[int] = mapped_column(ForeignKey("SyncHistory.SyncId", ondelete="CASCADE"))
    SchoolId: Mapped[int] = mapped_column(Integer)
    EntityType: Mapped[str] = mapped_column(Unicode(50))
    CleverId: Mapped[str] = mapped_column(Unicode(50))
    ChangeKind: Mapped[str] = mapped_column(Unicode(20))
    Name: Mapped[str | None] = mapped_column(Unicode(200))
    Fields: Mapped[str | None] = mapped_column(LongText)  # JSON {column: [old, new]}
    RecordedAt: Mapped[datetime] = mapped_column(UtcDateTime)


class SyncRun(SessionBase):
    """One request to sync some schools (the timer's, an HTTP call's): its schools are
    synced one queue message each, wherever the host runs them."""

    __tablename__ = "SyncRuns"
    __table_args__ = (Index(None, "RequestedAt"), _one_of("Trigger", RUN_TRIGGERS))

    RunId: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    CorrelationId: Mapped[str] = mapped_column(Unicode(64), unique=True)
    Trigger: Mapped[str] = mapped_column(Unicode(20))
    RequestedAt: Mapped[datetime] = mapped_column(UtcDateTime)
    Full: Mapped[bool] = mapped_column(Boolean, server_default=false())
    AllowMassDelete: Mapped[bool] = mapped_column(Boolean, server_default=false())
    FinishedAt: Mapped[datetime | None] = mapped_column(UtcDateTime)  # its last school ended
    ReportedAt: Mapped[datetime | None] = mapped_column(UtcDateTime)  # its report was sent


class SyncRunSchool(SessionBase):
    """One school's part of a run: queued, running, then its outcome."""

    __tablename__ = "SyncRunSchools"
    __table_args__ = (_one_of("Status", RUN_SCHOOL_STATUSES),)

    RunId: Mapped[int] = mapped_column(
        ForeignKey("SyncRuns.RunId", ondelete="CASCADE"), primary_key=True
    )
    SchoolId: Mapped[int] = mapped_column(
        ForeignKey("Schools.SchoolId", ondelete="CASCADE"), primary_key=True, index=True
    )
    Status: Mapped[str] = mapped_column(Unicode(20))
    Attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    QueuedAt: Mapped[datetime] = mapped_column(UtcDateTime)
    StartedAt: Mapped[datetime | None] = mapped_column(UtcDateTime)
    FinishedAt: Mapped[datetime | None] = mapped_column(UtcDateTime)
    Error: Mapped[str | None] = mapped_column(LongText)


class NotifyOutbox(SessionBase):
    """Email messages (run reports, alerts) not sent yet: written before the first try, deleted
    once sent, so a message an SMTP server refused is sent first at the next report."""

    __tablename__ = "NotifyOutbox"
    __table_args__ = (Index(None, "CreatedAt"),)

    MessageId: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    Kind: Mapped[str] = mapped_column(Unicode(20))  # report | alert
    RunId: Mapped[int | None] = mapped_column(Integer)  # the run a report is about
    Subject: Mapped[str] = mapped_column(Unicode(300))
    Message: Mapped[str] = mapped_column(LongText)  # the whole MIME message
    CreatedAt: Mapped[datetime] = mapped_column(UtcDateTime)
    Attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    LastError: Mapped[str | None] = mapped_column(LongText)
    # A sender is delivering it until then (two instances never send the same message).
    ClaimedUntil: Mapped[datetime | None] = mapped_column(UtcDateTime)


# --- School database ---------------------------------------------------------------------


class Student(SchoolBase):
    __tablename__ = "Students"

    StudentId: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    CleverStudentId: Mapped[str] = mapped_column(Unicode(50), unique=True)
    FirstName: Mapped[str] = mapped_column(Unicode(100))
    LastName: Mapped[str] = mapped_column(Unicode(100))
    Email: Mapped[str | None] = mapped_column(Unicode(200))
    Grade: Mapped[str | None] = mapped_column(Unicode(50))
    StudentNumber: Mapped[str | None] = mapped_column(Unicode(50))
    IsActive: Mapped[bool] = mapped_column(Boolean, server_default=true())
    DeactivatedAt: Mapped[datetime | None] = mapped_column(UtcDateTime)
    LastModifiedInClever: Mapped[datetime | None] = mapped_column(UtcDateTime)
    CreatedAt: Mapped[datetime] = mapped_column(UtcDateTime)
    UpdatedAt: Mapped[datetime] = mapped_column(UtcDateTime)


class Teacher(SchoolBase):
    __tablename__ = "Teachers"

    TeacherId: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    CleverTeacherId: Mapped[str] = mapped_column(Unicode(50), unique=True)
    FirstName: Mapped[str] = mapped_column(Unicode(100))
    LastName: Mapped[str] = mapped_column(Unicode(100))
    Email: Mapped[str | None] = mapped_column(Unicode(200))
    Title: Mapped[str | None] = mapped_column(Unicode(100))
    IsActive: Mapped[bool] = mapped_column(Boolean, server_default=true())
    DeactivatedAt: Mapped[datetime | None] = mapped_column(UtcDateTime)
    LastModifiedInClever: Mapped[datetime | None] = mapped_column(UtcDateTime)
    CreatedAt: Mapped[datetime] = mapped_column(UtcDateTime)
    UpdatedAt: Mapped[datetime] = mapped_column(UtcDateTime)


class Section(SchoolBase):
    __tablename__ = "Sections"

    SectionId: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    CleverSectionId: Mapped[str] = mapped_column(Unicode(50), unique=True)
    Name: Mapped[str] = mapped_column(Unicode(200))
    Period: Mapped[str | None] = mapped_column(Unicode(50))
    Subject: Mapped[str | None] = mapped_column(Unicode(100))
    Grade: Mapped[str | None] = mapped_column(Unicode(50))
    SectionNumber: Mapped[str | None] = mapped_column(Unicode(50))
    CleverTermId: Mapped[str | None] = mapped_column(Unicode(50))
    CleverCourseId: Mapped[str | None] = mapped_column(Unicode(50))
    CleverTeacherId: Mapped[str | None] = mapped_column(Unicode(50))
    IsActive: Mapped[bool] = mapped_column(Boolean, server_default=true())
    DeactivatedAt: Mapped[datetime | None] = mapped_column(UtcDateTime)
    LastModifiedInClever: Mapped[datetime | None] = mapped_column(UtcDateTime)
    CreatedAt: Mapped[datetime] = mapped_column(UtcDateTime)
    UpdatedAt: Mapped[datetime] = mapped_column(UtcDateTime)


class SectionStudent(SchoolBase):
    __tablename__ = "SectionStudents"

    SectionId: Mapped[int] = mapped_column(
        ForeignKey("Sections.SectionId", ondelete="CASCADE"), primary_key=True
    )
    StudentId: Mapped[int] = mapped_column(
        ForeignKey("Students.StudentId", ondelete="CASCADE"), primary_key=True, index=True
    )


class SectionTeacher(SchoolBase):
    __tablename__ = "SectionTeachers"

    SectionId: Mapped[int] = mapped_column(
        ForeignKey("Sections.SectionId", ondelete="CASCADE"), primary_key=True
    )
    TeacherId: Mapped[int] = mapped_column(
        ForeignKey("Teachers.TeacherId", ondelete="CASCADE"), primary_key=True, index=True
    )


SESSION_METADATA = SessionBase.metadata
SCHOOL_METADATA = SchoolBase.metadata
