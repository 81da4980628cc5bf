"""Migrations build the schema of ``cleversync/db/schema.py`` on SQLite and PostgreSQL, and compile for SQL Server."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.dialects import mssql
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.schema import CreateIndex, CreateTable

from cleversync.db.engines import engine_for
from cleversync.db.migrate import (
    VERSION_TABLES,
    alembic_config,
    current_revision,
    head_revision,
    metadata_for,
    upgrade,
)
from tests.child import python_output

# The contract other SOS applications read: every table and column, in order.
EXPECTED_COLUMNS = {
    "sessiondb": {
        "Districts": [
            "DistrictId",
            "CleverDistrictId",
            "Name",
            "DistrictPrefix",
            "CreatedAt",
            "UpdatedAt",
            "IsActive",
            "RemovedAt",
        ],
        "Schools": [
            "SchoolId",
            "DistrictId",
            "CleverSchoolId",
            "Name",
            "DatabaseName",
            "SchoolPrefix",
            "IsActive",
            "RequiresFullSync",
            "SyncLeaseOwner",
            "SyncLeaseExpiresAt",
            "CreatedAt",
            "UpdatedAt",
            "RemovedAt",
        ],
        "SyncHistory": [
            "SyncId",
            "SchoolId",
            "EntityType",
            "SyncType",
            "SyncStartTime",
            "SyncEndTime",
            "Status",
            "RecordsProcessed",
            "RecordsInserted",
            "RecordsUpdated",
            "RecordsDeleted",
            "RecordsFailed",
            "ErrorMessage",
            "LastSyncTimestamp",
            "LastEventId",
            "CorrelationId",
            "ChangesOmitted",
            "Retries",
            "RateLimitWaits",
            "RateLimitWaitSeconds",
        ],
        "SyncChanges": [
            "ChangeId",
            "SyncId",
            "SchoolId",
            "EntityType",
            "CleverId",
            "ChangeKind",
            "Name",
            "Fields",
            "RecordedAt",
        ],
        "SyncRuns": [
            "RunId",
            "CorrelationId",
            "Trigger",
            "RequestedAt",
            "Full",
            "AllowMassDelete",
            "FinishedAt",
            "ReportedAt",
        ],
        "SyncRunSchools": [
            "RunId",
            "SchoolId",
            "Status",
            "Attempts",
            "QueuedAt",
            "StartedAt",
            "FinishedAt",
            "Error",
        ],
        "NotifyOutbox": [
            "MessageId",
            "Kind",
            "RunId",
            "Subject",
            "Message",
            "CreatedAt",
            "Attempts",
            "LastError",
            "ClaimedUntil",
        ],
    },
    "school": {
        "Students": [
            "StudentId",
            "CleverStudentId",
            "FirstName",
            "LastName",
            "Email",
            "Grade",
            "StudentNumber",
            "IsActive",
            "DeactivatedAt",
            "LastModifiedInClever",
            "CreatedAt",
            "UpdatedAt",
        ],
        "Teachers": [
            "TeacherId",
            "CleverTeacherId",
            "FirstName",
            "LastName",
            "Email",
            "Title",
            "IsActive",
            "DeactivatedAt",
            "LastModifiedInClever",
            "CreatedAt",
            "UpdatedAt",
        ],
        "Sections": [
            "SectionId",
            "CleverSectionId",
            "Name",
            "Period",
            "Subject",
            "Grade",
            "SectionNumber",
            "CleverTermId",
            "CleverCourseId",
            "CleverTeacherId",
            "IsActive",
            "DeactivatedAt",
            "LastModifiedInClever",
            "CreatedAt",
            "UpdatedAt",
        ],
        "SectionStudents": ["SectionId", "StudentId"],
        "SectionTeachers": ["SectionId", "TeacherId"],
    },
}

# nvarchar widths, a contract with the applications that read these tables (None: unbounded).
EXPECTED_NVARCHAR = {
    "Districts": {"CleverDistrictId": 50, "Name": 200, "DistrictPrefix": 100},
    "Schools": {
        "CleverSchoolId": 50,
        "Name": 200,
        "DatabaseName": 100,
        "SchoolPrefix": 100,
        "SyncLeaseOwner": 200,
    },
    "SyncHistory": {
        "EntityType": 50,
        "SyncType": 20,
        "Status": 20,
        "ErrorMessage": "max",
        "LastEventId": 100,
        "CorrelationId": 64,
    },
    "SyncChanges": {
        "EntityType": 50,
        "CleverId": 50,
        "ChangeKind": 20,
        "Name": 200,
        "Fields": "max",
    },
    "Students": {
        "CleverStudentId": 50,
        "FirstName": 100,
        "LastName": 100,
        "Email": 200,
        "Grade": 50,
        "StudentNumber": 50,
    },
    "Teachers": {
        "CleverTeacherId": 50,
        "FirstName": 100,
        "LastName": 100,
        "Email": 200,
        "Title": 100,
    },
    "Sections": {
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
}


@pytest.mark.parametrize("kind", ["sessiondb", "school"])
def test_migrations_build_the_models_schema(db_url: str, kind: str) -> None:
    engine = engine_for(db_url, create_sqlite_file=True)
    assert upgrade(engine, kind) == (None, head_revision(kind))
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLES[kind], "compare_type": True}
            ),
            metadata_for(kind),
        )
    assert diff == []
    inspector = inspect(engine)
    tables = set(inspector.get_table_names()) - {VERSION_TABLES[kind]}
    assert tables == set(EXPECTED_COLUMNS[kind])
    for table, columns in EXPECTED_COLUMNS[kind].items():
        assert [c["name"] for c in inspector.get_columns(table)] == columns, table
    engine.dispose()


@pytest.mark.parametrize("kind", ["sessiondb", "school"])
def test_upgrading_twice_changes_nothing(db_url: str, kind: str) -> None:
    engine = engine_for(db_url, create_sqlite_file=True)
    upgrade(engine, kind)
    head = current_revision(engine, kind)
    assert upgrade(engine, kind) == (head, head)
    engine.dispose()


def test_each_environment_has_its_own_version_table(db_url: str) -> None:
    # One database may hold both schemas (a small install): the versions must not collide.
    engine = engine_for(db_url, create_sqlite_file=True)
    upgrade(engine, "sessiondb")
    upgrade(engine, "school")
    tables = set(inspect(engine).get_table_names())
    assert {"alembic_version_sessiondb", "alembic_version_school"} <= tables
    engine.dispose()


def test_sqlite_files_are_created_on_first_upgrade(tmp_path) -> None:
    path = tmp_path / "nested" / "school.sqlite"
    engine = engine_for(f"sqlite:///{path}", create_sqlite_file=True)
    upgrade(engine, "school")
    assert path.exists()
    engine.dispose()


@pytest.mark.postgres
def test_postgresql_enforces_column_widths_like_sql_server(pg_url: str) -> None:
    engine = engine_for(pg_url)
    upgrade(engine, "school")
    insert = text(
        'INSERT INTO "Students" ("CleverStudentId", "FirstName", "LastName", "CreatedAt", "UpdatedAt") '
        "VALUES (:id, :first, 'L', now(), now())"
    )
    with engine.begin() as conn:
        conn.execute(insert, {"id": "a" * 50, "first": "é" * 100})
    with pytest.raises((DataError, DBAPIError)), engine.begin() as conn:
        conn.execute(insert, {"id": "b" * 50, "first": "x" * 101})
    engine.dispose()


def _mssql_ddl() -> str:
    parts = []
    for kind in ("sessiondb", "school"):
        for table in metadata_for(kind).sorted_tables:
            parts.append(str(CreateTable(table).compile(dialect=mssql.dialect())))
            parts += [str(CreateIndex(ix).compile(dialect=mssql.dialect())) for ix in table.indexes]
    return "\n".join(parts)


def test_models_compile_for_sql_server_with_nvarchar_widths() -> None:
    ddl = _mssql_ddl()
    for table, widths in EXPECTED_NVARCHAR.items():
        block = ddl.split(f"CREATE TABLE [{table}] (", 1)[1].split("\n)", 1)[0]
        for column, width in widths.items():
            assert re.search(rf"\[{column}\] NVARCHAR\({width}\)", block), (table, column)
    assert "VARCHAR(" not in ddl.replace("NVARCHAR(", "")
    assert "NTEXT" not in ddl
    assert "DATETIME2" in ddl and " DATETIME " not in ddl
    assert "[IsActive] BIT NOT NULL DEFAULT 1" in ddl
    assert "ON DELETE CASCADE" in ddl
    assert (
        "CREATE INDEX [IX_SyncHistory_SchoolId_SyncStartTime] ON [SyncHistory] ([SchoolId], [SyncStartTime])"
        in ddl
    )


@pytest.mark.parametrize("kind", ["sessiondb", "school"])
def test_migrations_render_t_sql_offline(kind: str) -> None:
    # What a DBA would run on Azure SQL: `alembic ... upgrade head --sql`.
    config = alembic_config(kind)
    out = io.StringIO()
    config.output_buffer = out
    config.cmd_opts = type("Opts", (), {"x": ["url=mssql+pyodbc://"]})()
    command.upgrade(config, "head", sql=True)
    sql = out.getvalue()
    for table in EXPECTED_COLUMNS[kind]:
        assert f"CREATE TABLE [{table}]" in sql
    for table, widths in EXPECTED_NVARCHAR.items():
        if table in EXPECTED_COLUMNS[kind]:
            for column, width in widths.items():
                assert f"[{column}] NVARCHAR({width})" in sql, (table, column)
    assert f"CREATE TABLE {VERSION_TABLES[kind]}" in sql
    assert "NTEXT" not in sql


def test_a_missing_sqlite_file_is_not_created_by_accident(tmp_path) -> None:
    from cleversync.errors import DatabaseUnavailableError

    with pytest.raises(DatabaseUnavailableError, match="does not exist"):
        engine_for(f"sqlite:///{tmp_path / 'absent.sqlite'}")
    assert not (tmp_path / "absent.sqlite").exists()


def test_sqlite_cascades_enrolments(tmp_path) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 's.sqlite'}", create_sqlite_file=True)
    upgrade(engine, "school")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO Students (CleverStudentId, FirstName, LastName, CreatedAt, UpdatedAt) VALUES ('s1','A','B','2024-01-01','2024-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO Sections (CleverSectionId, Name, CreatedAt, UpdatedAt) VALUES ('c1','Math','2024-01-01','2024-01-01')"
            )
        )
        conn.execute(text("INSERT INTO SectionStudents (SectionId, StudentId) VALUES (1, 1)"))
        conn.execute(text("DELETE FROM Students"))
        assert conn.scalar(text("SELECT count(*) FROM SectionStudents")) == 0
    engine.dispose()
    assert create_engine  # imported for symmetry with other dialect tests


@pytest.mark.postgres
def test_postgresql_sessions_plan_each_statement_for_the_table_as_it_is(pg_url: str) -> None:
    # A generic plan made while a new school's tables were empty would scan them forever.
    engine = engine_for(pg_url + "?options=-c%20statement_timeout%3D60000")
    with engine.connect() as conn:
        assert conn.scalar(text("SHOW plan_cache_mode")) == "force_custom_plan"
        assert conn.scalar(text("SHOW statement_timeout")) == "1min"  # the URL's own options kept
    engine.dispose()


# --- the revision check a sync makes, without Alembic --------------------------------------


@pytest.mark.parametrize("kind", ["sessiondb", "school"])
def test_head_revision_is_alembics_head(kind: str) -> None:
    from alembic.script import ScriptDirectory

    head_revision.cache_clear()
    expected = ScriptDirectory.from_config(alembic_config(kind)).get_current_head()
    assert head_revision(kind) == expected


@pytest.mark.parametrize("kind", ["sessiondb", "school"])
def test_current_revision_reads_what_alembic_reads(db_url: str, kind: str) -> None:
    engine = engine_for(db_url, create_sqlite_file=True)
    assert current_revision(engine, kind) is None  # no version table yet
    upgrade(engine, kind)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLES[kind]})
        assert current_revision(engine, kind) == context.get_current_revision()
    with engine.begin() as conn:
        conn.execute(text(f"DELETE FROM {VERSION_TABLES[kind]}"))  # noqa: S608 (ours)
    assert current_revision(engine, kind) is None  # a version table with no row
    engine.dispose()


def test_a_version_table_with_two_heads_is_left_to_alembic(tmp_path) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 's.sqlite'}", create_sqlite_file=True)
    upgrade(engine, "school")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO alembic_version_school (version_num) VALUES ('0999')"))
    with pytest.raises(Exception, match="more than one head"):
        current_revision(engine, "school")
    engine.dispose()


def test_a_sync_imports_no_alembic(tmp_path) -> None:
    # Checking a database's revision (what every sync does) must not load Alembic: it costs
    # each process about 0.2 s of CPU.
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    engine = engine_for(url, create_sqlite_file=True)
    upgrade(engine, "school")
    engine.dispose()
    code = (
        "import sys\n"
        "from cleversync.db.engines import engine_for\n"
        "from cleversync.db.migrate import require_current\n"
        f"require_current(engine_for({url!r}), 'school', 'the school', 'upgrade')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    assert python_output(code).strip() == "[]"


@pytest.mark.parametrize(
    "unused",
    [
        # The tables are SQLAlchemy Core: importing the ORM cost each process about 0.1 s.
        "sqlalchemy.orm",
        # The SQL Server types are loaded for SQL Server only (16 ms of every start-up).
        "sqlalchemy.dialects.mssql",
    ],
)
def test_a_sync_on_sqlite_imports_no_orm_and_no_sql_server_dialect(
    unused: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'school.db'}"
    upgrade(engine_for(url, create_sqlite_file=True), "school")
    # What a sync does with the school database: check it is current, write a row with a
    # timestamp (the type that has a SQL Server variant), read it back.
    code = (
        "import sys, cleversync.sync.school, cleversync.services, cleversync.cli.run\n"
        "from datetime import datetime\n"
        "from sqlalchemy import insert, select\n"
        "from cleversync.db.engines import engine_for\n"
        "from cleversync.db.migrate import require_current\n"
        "from cleversync.db.schema import Student\n"
        f"engine = engine_for({url!r})\n"
        "require_current(engine, 'school', 'the school', 'upgrade')\n"
        "with engine.begin() as conn:\n"
        "    now = datetime(2026, 12, 2, 9, 30)\n"
        "    conn.execute(insert(Student.__table__).values(CleverStudentId='s1', FirstName='A',"
        " LastName='B', IsActive=True, CreatedAt=now, UpdatedAt=now))\n"
        "    assert conn.execute(select(Student.CreatedAt)).scalar_one() == now\n"
        f"print(sorted(m for m in sys.modules if m.startswith({unused!r})))\n"
    )
    assert python_output(code).strip() == "[]"


def test_a_table_class_names_its_table_and_columns() -> None:
    from sqlalchemy import select, update

    from cleversync.db.schema import District, School

    table = School.__table__
    assert table.name == "Schools" and School.SchoolId is table.c.SchoolId
    assert [c.key for c in table.c][:2] == ["SchoolId", "DistrictId"]
    assert not School.Name.nullable and School.RemovedAt.nullable
    query = select(School.SchoolId, District.IsActive.label("Active")).join(
        District, District.DistrictId == School.DistrictId
    )
    assert "JOIN" in str(query) and '"Active"' in str(query)
    assert str(update(School)).startswith('UPDATE "Schools"')


def test_scripts_that_are_not_one_line_of_revisions_go_to_alembic(tmp_path) -> None:
    from cleversync.db.migrate import _single_head

    (tmp_path / "a.py").write_text('revision = "a"\ndown_revision = None\n')
    (tmp_path / "b.py").write_text('revision: str = "b"\ndown_revision: str | None = "a"\n')
    assert _single_head(tmp_path) == "b"
    (tmp_path / "c.py").write_text('revision = "c"\ndown_revision = "a"\n')  # a branch
    with pytest.raises(ValueError, match="heads"):
        _single_head(tmp_path)
    (tmp_path / "c.py").write_text('revision = "c"\ndown_revision = ("a", "b")\n')  # a merge
    with pytest.raises(ValueError, match="plain"):
        _single_head(tmp_path)
    (tmp_path / "c.py").write_text('revision = make_id()\ndown_revision = "b"\n')
    with pytest.raises(ValueError, match="not a literal"):
        _single_head(tmp_path)
    (tmp_path / "c.py").write_text('revision = "c"\nrevision = "d"\ndown_revision = "b"\n')
    with pytest.raises(ValueError, match="twice"):
        _single_head(tmp_path)
    # Indented assignments (inside upgrade()) are not the script's revision.
    (tmp_path / "c.py").write_text(
        'revision = "c"\ndown_revision = "b"\n\ndef f():\n    revision = 1\n'
    )
    assert _single_head(tmp_path) == "c"


def test_sqlite_connections_use_wal_and_only_sessiondb_commits_before_the_disk(
    tmp_path,
) -> None:
    # WAL, foreign keys on, and no pre-ping statement per checkout. A school database's
    # commit waits for the disk (FULL): its rows are durable before the history row that
    # moves the cursor past them. SessionDb's need not (NORMAL): a power cut takes back
    # its last runs' rows, and the next run starts earlier.
    school = engine_for(f"sqlite:///{tmp_path / 's.sqlite'}", create_sqlite_file=True)
    session = engine_for(
        f"sqlite:///{tmp_path / 'c.sqlite'}", create_sqlite_file=True, durable=False
    )
    for engine, synchronous in ((school, 2), (session, 1)):  # FULL, NORMAL
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == synchronous
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert engine.pool._pre_ping is False
        engine.dispose()
