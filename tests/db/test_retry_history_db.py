"""Migration 0006 (SyncHistory.Retries, RateLimitWaits, RateLimitWaitSeconds) up and down on a
populated SessionDb, SQLite and PostgreSQL, and History.close writing the counts."""

from __future__ import annotations

import io

from alembic import command
from sqlalchemy import insert, inspect, select, text
from sqlalchemy.engine import Connection

from cleversync import runtally
from cleversync.db.engines import engine_for
from cleversync.db.migrate import alembic_config, current_revision, head_revision, upgrade
from cleversync.db.retry import in_transaction
from cleversync.db.schema import SyncChange, SyncHistory, Teacher
from cleversync.db.sessiondb.history import Counts, History
from cleversync.redaction import Redactor
from cleversync.runtally import Waits
from cleversync.settings import Settings
from cleversync.vocabulary import ChangeKind, RunStatus
from tests.db.test_changes_db import T0, downgrade, seed, upgrade_to
from tests.db.test_retry import POLICY, _insert, impatient_engine, teachers_locked

NEW = {"Retries", "RateLimitWaits", "RateLimitWaitSeconds"}


def columns(engine) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns("SyncHistory")}


def test_0006_upgrades_and_downgrades_a_populated_sessiondb(db_url: str) -> None:
    engine = engine_for(db_url, create_sqlite_file=True)
    upgrade_to(engine, "0005")
    sync_id = seed(engine)
    with engine.begin() as conn:  # a change under the row: SQLite's table copy must keep it
        conn.execute(
            insert(SyncChange.__table__),
            {
                "SyncId": sync_id,
                "SchoolId": 1,
                "EntityType": "Student",
                "CleverId": "c1",
                "ChangeKind": ChangeKind.INSERTED,
                "RecordedAt": T0,
            },
        )
    assert not NEW & columns(engine)
    upgrade_to(engine, "0006")
    assert current_revision(engine, "sessiondb") == "0006"
    assert columns(engine) >= NEW
    with engine.begin() as conn:  # the existing row got the defaults; its change is kept
        row = conn.execute(select(SyncHistory.__table__)).one()
        assert (row.SyncId, row.Status, row.Retries, row.RateLimitWaits) == (
            sync_id,
            "Success",
            0,
            0,
        )
        assert row.RateLimitWaitSeconds == 0
        assert conn.scalar(select(SyncChange.CleverId)) == "c1"
        # A row written without them (an older app version during a deployment) gets 0 too.
        conn.execute(
            text(
                'INSERT INTO "SyncHistory" ("SchoolId", "EntityType", "SyncType", '
                "\"SyncStartTime\", \"Status\") VALUES (1, 'Teacher', 'Full', :t, 'Success')"
            ),
            {"t": T0},
        )
        assert conn.execute(
            text('SELECT "Retries", "RateLimitWaitSeconds" FROM "SyncHistory" ORDER BY "SyncId"')
        ).all() == [(0, 0), (0, 0)]
    history = History(engine, policy=Settings().retry.database, redactor=Redactor())
    history.close(
        sync_id,
        status=RunStatus.SUCCESS,
        counts=Counts(),
        error=None,
        last_event_id=None,
        last_sync_timestamp=None,
        waits=Waits(retries=3, rate_limit_waits=2, rate_limit_wait_seconds=7.25),
    )
    [stored] = [r for r in history.rows(school_id=1) if r["SyncId"] == sync_id]
    assert (stored["Retries"], stored["RateLimitWaits"], stored["RateLimitWaitSeconds"]) == (
        3,
        2,
        7.25,
    )
    downgrade(engine, "0005")
    assert current_revision(engine, "sessiondb") == "0005"
    assert not NEW & columns(engine)
    with engine.begin() as conn:  # the rows and their change detail are still there
        assert conn.execute(text('SELECT COUNT(*) FROM "SyncHistory"')).scalar() == 2
        assert conn.execute(text('SELECT "CleverId" FROM "SyncChanges"')).scalars().all() == ["c1"]
    upgrade(engine, "sessiondb")  # and up again to the head
    assert current_revision(engine, "sessiondb") == head_revision("sessiondb")
    assert columns(engine) >= NEW
    engine.dispose()


def test_0006_renders_t_sql_both_ways() -> None:
    # SQL Server: NOT NULL columns with a default, and on the way down each default's
    # constraint dropped before its column (it refuses to drop a column with one).
    config = alembic_config("sessiondb")
    out = io.StringIO()
    config.output_buffer = out
    config.cmd_opts = type("Opts", (), {"x": ["url=mssql+pyodbc://"]})()
    command.upgrade(config, "0005:0006", sql=True)
    command.downgrade(config, "0006:0005", sql=True)
    sql = out.getvalue()
    assert "ALTER TABLE [SyncHistory] ADD [Retries] INTEGER NOT NULL DEFAULT 0" in sql
    assert "ALTER TABLE [SyncHistory] ADD [RateLimitWaitSeconds] FLOAT NOT NULL DEFAULT 0" in sql
    for name in NEW:
        drop_default = sql.index(f"col_name(parent_object_id, parent_column_id) = '{name}'")
        assert drop_default < sql.index(f"ALTER TABLE [SyncHistory] DROP COLUMN [{name}]")


def test_a_database_retry_counts_on_the_entity_whose_pass_met_it(school_db_url: str) -> None:
    # A real lock held by another session (SQLite and PostgreSQL), met inside a run's
    # Teacher pass: one retry, on the Teacher row.
    engine = impatient_engine(school_db_url)
    counted = runtally.RunTally("Student")
    with teachers_locked(school_db_url) as release:

        def work(conn: Connection) -> str:
            _insert(conn, Teacher, "t1")
            return "written"

        def sleep(seconds: float) -> None:
            release()

        with runtally.tally(counted), runtally.entity("Teacher"):
            assert in_transaction(engine, work, policy=POLICY, what="w", sleep=sleep) == "written"
    assert counted.of("Teacher") == Waits(retries=1)
    assert counted.of("Student") == counted.of("Section") == Waits()
    engine.dispose()
