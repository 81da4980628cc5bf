"""SyncChanges on SQLite and PostgreSQL: migration 0003 up and down, values cut to the
column widths PostgreSQL enforces, and reading back what was written."""

from __future__ import annotations

from datetime import datetime

import pytest
from alembic import command
from sqlalchemy import insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from cleversync.db.engines import engine_for
from cleversync.db.migrate import alembic_config, current_revision, head_revision, upgrade
from cleversync.db.schema import District, School, SyncChange, SyncHistory, utf16_length
from cleversync.db.sessiondb.changes import NAME_WIDTH, VALUE_WIDTH, ChangeBuffer, ChangeLog, fit
from cleversync.settings import Settings
from cleversync.vocabulary import ChangeKind

T0 = datetime(2026, 12, 1, 2, 0, 0)


def downgrade(engine, revision: str) -> None:
    config = alembic_config("sessiondb")
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def upgrade_to(engine, revision: str) -> None:
    """Alembic alone (``upgrade`` checks the schema against today's models)."""
    config = alembic_config("sessiondb")
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def seed(engine, status: str = "Success") -> int:
    with engine.begin() as conn:
        conn.execute(
            insert(District.__table__),
            {
                "CleverDistrictId": "d1",
                "Name": "D",
                "DistrictPrefix": "D",
                "CreatedAt": T0,
                "UpdatedAt": T0,
            },
        )
        conn.execute(
            insert(School.__table__),
            {
                "DistrictId": 1,
                "CleverSchoolId": "s1",
                "Name": "S",
                "DatabaseName": "S",
                "SchoolPrefix": "S",
                "CreatedAt": T0,
                "UpdatedAt": T0,
            },
        )
        return conn.execute(
            insert(SyncHistory.__table__).returning(SyncHistory.SyncId),
            {
                "SchoolId": 1,
                "EntityType": "Student",
                "SyncType": "Full",
                "SyncStartTime": T0,
                "Status": status,
            },
        ).scalar_one()


def test_0003_upgrades_and_downgrades(db_url: str) -> None:
    engine = engine_for(db_url, create_sqlite_file=True)
    upgrade_to(engine, "0002")
    sync_id = seed(engine)
    upgrade_to(engine, "0003")
    assert current_revision(engine, "sessiondb") == "0003"
    with engine.begin() as conn:  # the existing row got the new column's default
        assert conn.scalar(select(SyncHistory.ChangesOmitted)) == 0
        conn.execute(
            insert(SyncHistory.__table__),
            {
                "SchoolId": 1,
                "EntityType": "Student",
                "SyncType": "Full",
                "SyncStartTime": T0,
                "Status": "DryRun",
            },
        )
    log = ChangeLog(engine, policy=Settings().retry.database)
    buffer = ChangeBuffer(10)
    buffer.add("Student", [("c1", ChangeKind.INSERTED, "A B", None)])
    assert log.save(buffer, school_id=1, sync_ids={"Student": sync_id}) == 1
    with pytest.raises(IntegrityError), engine.begin() as conn:  # the kinds are checked
        conn.execute(
            insert(SyncChange.__table__),
            {
                "SyncId": sync_id,
                "SchoolId": 1,
                "EntityType": "Student",
                "CleverId": "c2",
                "ChangeKind": "Renamed",
                "RecordedAt": T0,
            },
        )
    downgrade(engine, "0002")
    assert current_revision(engine, "sessiondb") == "0002"
    inspector = inspect(engine)
    assert "SyncChanges" not in inspector.get_table_names()
    assert "ChangesOmitted" not in {c["name"] for c in inspector.get_columns("SyncHistory")}
    with engine.begin() as conn:  # the preview's row went with its status
        assert conn.execute(text('SELECT "Status" FROM "SyncHistory"')).scalars().all() == [
            "Success"
        ]
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            text(
                'INSERT INTO "SyncHistory" ("SchoolId", "EntityType", "SyncType", '
                "\"SyncStartTime\", \"Status\") VALUES (1, 'Student', 'Full', :t, 'DryRun')"
            ),
            {"t": T0},
        )
    upgrade(engine, "sessiondb")  # and up again, past it, to the head
    assert current_revision(engine, "sessiondb") == head_revision("sessiondb")
    engine.dispose()


def test_long_values_are_cut_to_the_widths_the_database_enforces(db_url: str) -> None:
    # PostgreSQL refuses a value longer than its column (like SQL Server); SQLite would not.
    engine = engine_for(db_url, create_sqlite_file=True)
    upgrade(engine, "sessiondb")
    sync_id = seed(engine)
    long_name = "Ana " + "😀" * 150  # 304 UTF-16 units: a cut must not split a pair
    long_value = "x" * 5000
    buffer = ChangeBuffer(10)
    buffer.add(
        "Student",
        [
            ("c" * 60, ChangeKind.INSERTED, long_name, None),
            ("c2", ChangeKind.UPDATED, "N", {"Email": (long_value, "é" * 300)}),
        ],
    )
    log = ChangeLog(engine, policy=Settings().retry.database)
    assert log.save(buffer, school_id=1, sync_ids={"Student": sync_id}) == 2
    inserted, updated = log.for_history(sync_id)
    assert inserted.name is not None and utf16_length(inserted.name) <= NAME_WIDTH
    assert inserted.name.startswith("Ana 😀") and inserted.name.endswith("...")
    assert len(inserted.clever_id) == 50
    assert updated.fields is not None
    old, new = updated.fields["Email"]
    assert old == "x" * (VALUE_WIDTH - 3) + "..."
    assert new == "é" * 300  # within the limit: kept whole
    engine.dispose()


def test_fit_cuts_on_utf16_units_without_splitting_a_pair() -> None:
    assert fit(None, 5) is None
    assert fit("abc", 3) == "abc"
    assert fit("abcdef", 5) == "ab..."
    assert fit("a" + "😀" * 3, 6) == "a😀..."  # 6 units exactly
    assert fit("a" + "😀" * 3, 5) == "a..."  # not half a pair
    assert fit("😀😀😀", 6) == "😀😀😀"
    assert fit("😀😀😀", 5) == "😀..."


def test_the_reader_filters_and_orders_newest_first(db_url: str) -> None:
    engine = engine_for(db_url, create_sqlite_file=True)
    upgrade(engine, "sessiondb")
    sync_id = seed(engine)
    times = iter([T0, T0.replace(hour=3), T0.replace(hour=4)])
    buffer = ChangeBuffer(10, clock=lambda: next(times))
    buffer.add("Student", [("s1", ChangeKind.INSERTED, "One", None)])
    buffer.add("Student", [("s2", ChangeKind.UPDATED, "Two", {"Grade": ("3", "4")})])
    buffer.add("Student", [("s1", ChangeKind.DELETED, "One", None)])
    log = ChangeLog(engine, policy=Settings().retry.database)
    log.save(buffer, school_id=1, sync_ids={"Student": sync_id})
    assert [c.clever_id for c in log.for_school(1)] == ["s1", "s2", "s1"]
    assert [c.kind for c in log.for_school(1, clever_id="s1")] == ["Deleted", "Inserted"]
    assert [c.clever_id for c in log.for_school(1, since=T0.replace(hour=3))] == ["s1", "s2"]
    assert log.for_school(1, entity="Teacher") == []
    assert log.for_school(2) == []
    assert len(log.for_school(1, limit=1)) == 1
    assert log.for_school(1, clever_id="s2")[0].fields == {"Grade": ("3", "4")}
    assert log.omitted(sync_id) == 0 and log.omitted(999) == 0
    assert log.held_back(1) == []
    engine.dispose()


def test_sql_server_gets_one_cascade_path_to_a_change() -> None:
    # SQL Server refuses two cascading paths to one row (Schools -> SyncHistory -> SyncChanges
    # and Schools -> SyncChanges): SchoolId is a plain column, SyncId cascades.
    from sqlalchemy.dialects import mssql
    from sqlalchemy.schema import CreateTable

    ddl = str(CreateTable(SyncChange.__table__).compile(dialect=mssql.dialect()))
    assert "REFERENCES [SyncHistory] ([SyncId]) ON DELETE CASCADE" in ddl
    assert "[Schools]" not in ddl
    assert "[Fields] NVARCHAR(max)" in ddl and "[RecordedAt] DATETIME2" in ddl
