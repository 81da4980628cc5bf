"""Tables of SessionDb and of the school databases; names and widths are a contract.

Other SOS applications read the school databases, so table and column names are PascalCase
exactly as documented, and so are the attribute names here. ``Unicode`` is ``nvarchar`` on
SQL Server and ``varchar`` elsewhere; timestamps are naive UTC ``datetime2``.

The tables are SQLAlchemy Core, not ORM models: every statement is Core, and importing
``sqlalchemy.orm`` and mapping the classes cost each sync process about 0.1 s of start-up
(README, Performance). A class here only declares a ``Table``: ``School.__table__`` is the
table and ``School.SchoolId`` its ``Column``. ``required`` columns are NOT NULL and
``optional`` ones nullable, as ``Mapped[X]`` and ``Mapped[X | None]`` declared them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias, TypeVar, cast

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
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
from sqlalchemy.types import TypeDecorator

from cleversync.vocabulary import (
    FINISHED_STATUSES,
    RUN_TRIGGERS,
    STORED_STATUSES,
    ChangeKind,
    SyncType,
)

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, TextClause
    from sqlalchemy.engine import Dialect
    from sqlalchemy.schema import SchemaItem
    from sqlalchemy.sql.base import SchemaEventTarget
    from sqlalchemy.types import TypeEngine

# Deterministic constraint names on every dialect, so migrations can refer to them.
NAMING = {
    "ix": "IX_%(table_name)s_%(column_0_N_name)s",
    "uq": "UQ_%(table_name)s_%(column_0_N_name)s",
    "ck": "CK_%(table_name)s_%(constraint_name)s",
    "fk": "FK_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "PK_%(table_name)s",
}


class _OnSqlServer(TypeDecorator[Any]):
    """``impl``, and ``sql_server()`` on SQL Server. A ``with_variant`` would need the SQL
    Server dialect's types at import, and importing that dialect cost every sync process
    on SQLite or PostgreSQL some 16 ms of start-up: it is imported only for SQL Server.
    (SQLAlchemy reads ``cache_ok`` from each class itself, so each one sets it.)"""

    def sql_server(self) -> TypeEngine[Any]:
        raise NotImplementedError

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "mssql":
            return dialect.type_descriptor(self.sql_server())
        return super().load_dialect_impl(dialect)


class _UtcDateTime(_OnSqlServer):
    """``DateTime``, and ``datetime2`` on SQL Server."""

    impl = DateTime
    cache_ok = True

    def sql_server(self) -> TypeEngine[Any]:
        from sqlalchemy.dialects.mssql import DATETIME2

        return DATETIME2()


class _LongText(_OnSqlServer):
    """``UnicodeText``, and NVARCHAR(max) on SQL Server (``UnicodeText`` alone compiles to
    the deprecated NTEXT offline)."""

    impl = UnicodeText
    cache_ok = True

    def sql_server(self) -> TypeEngine[Any]:
        from sqlalchemy.dialects.mssql import NVARCHAR

        return NVARCHAR(None)


UtcDateTime = _UtcDateTime()
LongText = _LongText()

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


_T = TypeVar("_T")
_Type: TypeAlias = "TypeEngine[_T] | type[TypeEngine[_T]]"

if TYPE_CHECKING:

    class _ClassColumn(Column[_T]):
        """For mypy only: read from its class, ``School.SchoolId`` is a ``Column[int]``.
        SQLAlchemy types a ``Column`` read from a class as ``Never`` (a class of Core columns
        is no ORM model); here the class is only a namespace of its table's columns."""

        def __get__(self, instance: object, owner: Any) -> Column[_T]: ...  # type: ignore[override]

else:
    _ClassColumn = Column


def required(
    type_: _Type[_T],
    *args: SchemaEventTarget,
    primary_key: bool = False,
    unique: bool | None = None,
    index: bool | None = None,
    server_default: ColumnElement[Any] | TextClause | None = None,
) -> _ClassColumn[_T]:
    """A NOT NULL column (``Mapped[X]`` before), named after the attribute it is assigned to."""
    column = Column(
        type_,
        *args,
        nullable=False,
        primary_key=primary_key,
        unique=unique,
        index=index,
        server_default=server_default,
    )
    return cast("_ClassColumn[_T]", column)


def optional(type_: _Type[_T]) -> _ClassColumn[_T | None]:
    """A nullable column (``Mapped[X | None]`` before), named after its attribute."""
    return cast("_ClassColumn[_T | None]", Column(type_, nullable=True))


class _TableClass:
    """Builds a subclass's ``__table__`` in ``metadata`` from its ``Column`` attributes, in
    declaration order, then its ``__table_args__`` (indexes, check constraints), as the ORM's
    declarative mapping did. The table adopts those very columns, so ``School.SchoolId is
    School.__table__.c.SchoolId``; and the class stands for its table in a statement
    (``update(School)``, ``select_from(District)``)."""

    metadata: ClassVar[MetaData]
    __tablename__: ClassVar[str]
    __table_args__: ClassVar[tuple[SchemaItem, ...]] = ()
    __table__: ClassVar[Table]

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        if "__tablename__" not in vars(cls):
            return  # SessionBase, SchoolBase: the MetaData of their tables
        columns = {k: v for k, v in vars(cls).items() if isinstance(v, Column)}
        for name, col in columns.items():
            col.name = col.key = name
        cls.__table__ = Table(
            cls.__tablename__, cls.metadata, *columns.values(), *cls.__table_args__
        )

    @classmethod
    def __clause_element__(cls) -> Table:
        return cls.__table__


class SessionBase(_TableClass):
    metadata = MetaData(naming_convention=NAMING)


class SchoolBase(_TableClass):
    metadata = MetaData(naming_convention=NAMING)


# --- SessionDb ---------------------------------------------------------------------------


class District(SessionBase):
    __tablename__ = "Districts"

    DistrictId = required(Integer, Identity(), primary_key=True)
    CleverDistrictId = required(Unicode(50), unique=True)
    Name = required(Unicode(200))
    DistrictPrefix = required(Unicode(100), index=True)
    CreatedAt = required(UtcDateTime)
    UpdatedAt = required(UtcDateTime)
    # A deactivated district's schools are left out of every run (their own flag is kept).
    IsActive = required(Boolean, server_default=true())
    # Removed with its history kept: hidden everywhere, the row stays for SyncHistory's key.
    RemovedAt = optional(UtcDateTime)


class School(SessionBase):
    __tablename__ = "Schools"

    SchoolId = required(Integer, Identity(), primary_key=True)
    DistrictId = required(Integer, ForeignKey("Districts.DistrictId"), index=True)
    CleverSchoolId = required(Unicode(50), unique=True)
    Name = required(Unicode(200))
    DatabaseName = required(Unicode(100))
    SchoolPrefix = required(Unicode(100), index=True)
    IsActive = required(Boolean, server_default=true())
    RequiresFullSync = required(Boolean, server_default=false())
    SyncLeaseOwner = optional(Unicode(200))
    SyncLeaseExpiresAt = optional(UtcDateTime)
    CreatedAt = required(UtcDateTime)
    UpdatedAt = required(UtcDateTime)
    RemovedAt = optional(UtcDateTime)  # as Districts.RemovedAt


class SyncHistory(SessionBase):
    __tablename__ = "SyncHistory"
    __table_args__ = (
        Index(None, "SchoolId", "SyncStartTime"),
        _one_of("EntityType", ENTITY_TYPES),
        _one_of("SyncType", SYNC_TYPES),
        _one_of("Status", STATUSES),
    )

    SyncId = required(Integer, Identity(), primary_key=True)
    SchoolId = required(Integer, ForeignKey("Schools.SchoolId", ondelete="CASCADE"))
    EntityType = required(Unicode(50))
    SyncType = required(Unicode(20))
    SyncStartTime = required(UtcDateTime)
    SyncEndTime = optional(UtcDateTime)
    Status = required(Unicode(20))
    RecordsProcessed = required(Integer, server_default=text("0"))
    RecordsInserted = required(Integer, server_default=text("0"))
    RecordsUpdated = required(Integer, server_default=text("0"))
    RecordsDeleted = required(Integer, server_default=text("0"))
    RecordsFailed = required(Integer, server_default=text("0"))
    ErrorMessage = optional(LongText)
    LastSyncTimestamp = optional(UtcDateTime)
    LastEventId = optional(Unicode(100))
    CorrelationId = optional(Unicode(64))
    # Change details this row's run did not record (over History__MaxChangeDetailsPerRun).
    ChangesOmitted = required(Integer, server_default=text("0"))
    # The run's retried requests and transactions, and its waits for Clever's rate limit
    # (count and seconds) for this entity (cleversync.runtally).
    Retries = required(Integer, server_default=text("0"))
    RateLimitWaits = required(Integer, server_default=text("0"))
    RateLimitWaitSeconds = required(Float, server_default=text("0"))


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

    ChangeId = required(Integer, Identity(), primary_key=True)
    SyncId = required(Integer, ForeignKey("SyncHistory.SyncId", ondelete="CASCADE"))
    SchoolId = required(Integer)
    EntityType = required(Unicode(50))
    CleverId = required(Unicode(50))
    ChangeKind = required(Unicode(20))
    Name = optional(Unicode(200))
    Fields = optional(LongText)  # JSON {column: [old, new]}
    RecordedAt = required(UtcDateTime)


class SyncRun(SessionBase):
    """One request to sync some schools (the timer's, an HTTP call's): its schools are
    synced one queue message each, wherever the host runs them."""

    __tablename__ = "SyncRuns"
    __table_args__ = (Index(None, "RequestedAt"), _one_of("Trigger", RUN_TRIGGERS))

    RunId = required(Integer, Identity(), primary_key=True)
    CorrelationId = required(Unicode(64), unique=True)
    Trigger = required(Unicode(20))
    RequestedAt = required(UtcDateTime)
    Full = required(Boolean, server_default=false())
    AllowMassDelete = required(Boolean, server_default=false())
    FinishedAt = optional(UtcDateTime)  # its last school ended
    ReportedAt = optional(UtcDateTime)  # its report was sent


class SyncRunSchool(SessionBase):
    """One school's part of a run: queued, running, then its outcome."""

    __tablename__ = "SyncRunSchools"
    __table_args__ = (_one_of("Status", RUN_SCHOOL_STATUSES),)

    RunId = required(Integer, ForeignKey("SyncRuns.RunId", ondelete="CASCADE"), primary_key=True)
    SchoolId = required(
        Integer, ForeignKey("Schools.SchoolId", ondelete="CASCADE"), primary_key=True, index=True
    )
    Status = required(Unicode(20))
    Attempts = required(Integer, server_default=text("0"))
    QueuedAt = required(UtcDateTime)
    StartedAt = optional(UtcDateTime)
    FinishedAt = optional(UtcDateTime)
    Error = optional(LongText)


class NotifyOutbox(SessionBase):
    """Email messages (run reports, alerts) not sent yet: written before the first try, deleted
    once sent, so a message an SMTP server refused is sent first at the next report."""

    __tablename__ = "NotifyOutbox"
    __table_args__ = (Index(None, "CreatedAt"),)

    MessageId = required(Integer, Identity(), primary_key=True)
    Kind = required(Unicode(20))  # report | alert
    RunId = optional(Integer)  # the run a report is about
    Subject = required(Unicode(300))
    Message = required(LongText)  # the whole MIME message
    CreatedAt = required(UtcDateTime)
    Attempts = required(Integer, server_default=text("0"))
    LastError = optional(LongText)
    # A sender is delivering it until then (two instances never send the same message).
    ClaimedUntil = optional(UtcDateTime)


# --- School database ---------------------------------------------------------------------


class Student(SchoolBase):
    __tablename__ = "Students"

    StudentId = required(Integer, Identity(), primary_key=True)
    CleverStudentId = required(Unicode(50), unique=True)
    FirstName = required(Unicode(100))
    LastName = required(Unicode(100))
    Email = optional(Unicode(200))
    Grade = optional(Unicode(50))
    StudentNumber = optional(Unicode(50))
    IsActive = required(Boolean, server_default=true())
    DeactivatedAt = optional(UtcDateTime)
    LastModifiedInClever = optional(UtcDateTime)
    CreatedAt = required(UtcDateTime)
    UpdatedAt = required(UtcDateTime)


class Teacher(SchoolBase):
    __tablename__ = "Teachers"

    TeacherId = required(Integer, Identity(), primary_key=True)
    CleverTeacherId = required(Unicode(50), unique=True)
    FirstName = required(Unicode(100))
    LastName = required(Unicode(100))
    Email = optional(Unicode(200))
    Title = optional(Unicode(100))
    IsActive = required(Boolean, server_default=true())
    DeactivatedAt = optional(UtcDateTime)
    LastModifiedInClever = optional(UtcDateTime)
    CreatedAt = required(UtcDateTime)
    UpdatedAt = required(UtcDateTime)


class Section(SchoolBase):
    __tablename__ = "Sections"

    SectionId = required(Integer, Identity(), primary_key=True)
    CleverSectionId = required(Unicode(50), unique=True)
    Name = required(Unicode(200))
    Period = optional(Unicode(50))
    Subject = optional(Unicode(100))
    Grade = optional(Unicode(50))
    SectionNumber = optional(Unicode(50))
    CleverTermId = optional(Unicode(50))
    CleverCourseId = optional(Unicode(50))
    CleverTeacherId = optional(Unicode(50))
    IsActive = required(Boolean, server_default=true())
    DeactivatedAt = optional(UtcDateTime)
    LastModifiedInClever = optional(UtcDateTime)
    CreatedAt = required(UtcDateTime)
    UpdatedAt = required(UtcDateTime)


class SectionStudent(SchoolBase):
    __tablename__ = "SectionStudents"

    SectionId = required(
        Integer, ForeignKey("Sections.SectionId", ondelete="CASCADE"), primary_key=True
    )
    StudentId = required(
        Integer, ForeignKey("Students.StudentId", ondelete="CASCADE"), primary_key=True, index=True
    )


class SectionTeacher(SchoolBase):
    __tablename__ = "SectionTeachers"

    SectionId = required(
        Integer, ForeignKey("Sections.SectionId", ondelete="CASCADE"), primary_key=True
    )
    TeacherId = required(
        Integer, ForeignKey("Teachers.TeacherId", ondelete="CASCADE"), primary_key=True, index=True
    )


SESSION_METADATA = SessionBase.metadata
SCHOOL_METADATA = SchoolBase.metadata
