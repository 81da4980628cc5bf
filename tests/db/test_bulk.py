"""Many rows through the driver's executemany, or PostgreSQL's COPY (``db.bulk``): stored
exactly as SQLAlchemy's own executemany stores them, on SQLite (which converts timestamps and
booleans to text and integers) and PostgreSQL; refused and lost as an execute is."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import bindparam, event, insert, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from cleversync.db.bulk import Bulk
from cleversync.db.engines import engine_for
from cleversync.db.retry import classify
from cleversync.db.schema import Student
from cleversync.errors import DatabaseTransientError
from tests.databases import sqlite_clone
from tests.pgserver import PgServer

TABLE = Student.__table__
NAMES = (
    "CleverStudentId",
    "FirstName",
    "LastName",
    "Email",
    "IsActive",
    "LastModifiedInClever",
    "CreatedAt",
    "UpdatedAt",
)
AT = datetime(2024, 3, 1, 8, 30, 0)
LATER = datetime(2024, 3, 1, 8, 30, 0, 250)


@pytest.fixture
def engine(school_db_url: str) -> Iterator[Engine]:
    engine = engine_for(school_db_url)
    yield engine
    engine.dispose()


def _raw(engine: Engine) -> list[tuple[object, ...]]:
    """The rows as the database holds them (SQLite's text, not SQLAlchemy's conversion)."""
    columns = ", ".join(f'"{c}"' for c in NAMES)
    with engine.connect() as conn:
        query = f'SELECT {columns} FROM "Students" ORDER BY "CleverStudentId"'  # noqa: S608
        return [tuple(r) for r in conn.exec_driver_sql(query)]


def _stored_by_bulk(
    engine: Engine, rows: list[tuple[object, ...]], *, plain: bool = False
) -> list[tuple[object, ...]]:
    with engine.begin() as conn:
        conn.execute(TABLE.delete())
        Bulk(insert(TABLE), NAMES, plain=plain).run(conn, rows)
    return _raw(engine)


def _stored_by_sqlalchemy(
    engine: Engine, rows: list[tuple[object, ...]]
) -> list[tuple[object, ...]]:
    with engine.begin() as conn:
        conn.execute(TABLE.delete())
        conn.execute(insert(TABLE), [dict(zip(NAMES, row, strict=True)) for row in rows])
    return _raw(engine)


@pytest.mark.parametrize("plain", [False, True], ids=["executemany", "plain"])
def test_rows_are_stored_as_sqlalchemy_stores_them(engine: Engine, plain: bool) -> None:
    rows = [
        ("a1", "Ana", "Lima", "a@b.c", True, AT, AT, AT),
        ("a2", "Ben", "Ito", None, False, None, AT, LATER),
        ("a3", "Łódź 😀", "O'Neil", None, True, LATER, LATER, LATER),
        # What COPY's text format must escape: its separators, its escape, its NULL.
        ("a4", "tab\there", "new\nline\r", "back\\slash", True, AT, AT, AT),
        ("a5", "\\N", "", "\\.", False, AT, AT, AT),
    ]
    assert _stored_by_bulk(engine, rows, plain=plain) == _stored_by_sqlalchemy(engine, rows)
    with engine.connect() as conn:
        read = conn.execute(select(TABLE.c.LastModifiedInClever).order_by(TABLE.c.StudentId))
        assert [r[0] for r in read] == [AT, None, LATER, AT, AT]


def test_an_update_takes_its_parameters_in_the_order_named(engine: Engine) -> None:
    with engine.begin() as conn:
        Bulk(insert(TABLE), NAMES).run(conn, [("a1", "Ana", "Lima", None, True, AT, AT, AT)])
        key = conn.scalar(select(TABLE.c.StudentId))
        statement = (
            update(TABLE)
            .where(TABLE.c.StudentId == bindparam("_key"))
            .values(LastName=bindparam("LastName"), FirstName=bindparam("FirstName"))
        )
        # The row's order is the names', not the statement's SET order.
        Bulk(statement, ("FirstName", "_key", "LastName")).run(conn, [("Eva", key, "Souza")])
        assert conn.execute(select(TABLE.c.FirstName, TABLE.c.LastName)).one() == ("Eva", "Souza")


def test_no_rows_run_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        Bulk(insert(TABLE), NAMES).run(conn, [])
        assert conn.execute(text('SELECT COUNT(*) FROM "Students"')).scalar() == 0


def test_a_value_bound_in_the_statement_itself_is_refused(engine: Engine) -> None:
    statement = update(TABLE).values(IsActive=False).where(TABLE.c.StudentId == bindparam("_key"))
    with engine.begin() as conn, pytest.raises(ValueError, match="IsActive"):
        Bulk(statement, ("_key",)).run(conn, [(1,)])


def test_rows_of_the_wrong_length_are_refused(engine: Engine) -> None:
    # zip would cut every row to the shortest: a value would silently go to the wrong column.
    short = [("a1", "Ana", "Lima", None, True, AT, AT, AT), ("a2", "Ben", "Ito", None, True, AT)]
    with engine.begin() as conn, pytest.raises(ValueError, match="argument 2 is shorter"):
        Bulk(insert(TABLE), NAMES).run(conn, short)
    with engine.begin() as conn, pytest.raises(ValueError, match="9 values for 8 names"):
        Bulk(insert(TABLE), NAMES).run(conn, [("a1", "Ana", "Lima", None, True, AT, AT, AT, 1)])


def test_unhashable_values_are_converted_one_by_one() -> None:
    from cleversync.db.bulk import _converted

    def process(value: object) -> str:
        return repr(value)

    assert _converted([{"a": 1}, None, {"a": 1}], process) == ["{'a': 1}", None, "{'a': 1}"]
    assert _converted([AT, AT, AT], process) == (repr(AT),) * 3
    assert _converted([AT, None, LATER, AT], process) == [repr(AT), None, repr(LATER), repr(AT)]


@pytest.mark.parametrize("plain", [False, True], ids=["executemany", "plain"])
def test_equal_timestamps_in_other_zones_are_converted_apart(engine: Engine, plain: bool) -> None:
    # The same instant in two zones compares equal; SQLAlchemy writes each as it is (and a
    # COPY, whose text would drop the offset, gets them as naive UTC: the same instant).
    utc = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    east = datetime(2024, 1, 1, 7, 0, tzinfo=timezone(timedelta(hours=-5)))
    rows = [("z1", "A", "B", None, True, utc, AT, AT), ("z2", "C", "D", None, True, east, AT, AT)]
    assert _stored_by_bulk(engine, rows, plain=plain) == _stored_by_sqlalchemy(engine, rows)


@pytest.mark.parametrize("plain", [False, True], ids=["executemany", "plain"])
def test_rows_written_first_on_a_connection_are_committed_with_it(
    engine: Engine, plain: bool
) -> None:
    """Commit as you go: the Bulk is the connection's first statement, and its commit keeps
    the rows (the driver's COPY alone would not begin SQLAlchemy's transaction)."""
    with engine.connect() as conn:
        Bulk(insert(TABLE), NAMES, plain=plain).run(
            conn, [("c1", "A", "B", None, True, AT, AT, AT)]
        )
        conn.commit()
    assert [r[0] for r in _raw(engine)] == ["c1"]


def test_other_dialects_keep_sqlalchemys_executemany(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQL Server (not in DIRECT) goes through conn.execute, which declares the parameters'
    # types to pyodbc; the rows stored are the same.
    from cleversync.db import bulk

    assert "mssql" not in bulk.DIRECT
    rows = [
        ("a1", "Ana", "Lima", None, True, AT, AT, AT),
        ("a2", "Ben", "Ito", None, False, None, AT, LATER),
    ]
    with engine.begin() as conn:
        Bulk(insert(TABLE), NAMES).run(conn, rows)
    direct = _raw(engine)
    monkeypatch.setattr(bulk, "DIRECT", frozenset())
    with engine.begin() as conn:
        conn.execute(TABLE.delete())
        Bulk(insert(TABLE), NAMES).run(conn, rows)
    assert _raw(engine) == direct


@pytest.mark.postgres
def test_postgresql_plans_the_rows_once_and_then_forces_custom_plans_again(
    pg_server: PgServer,
) -> None:
    engine = engine_for(pg_server.clone_database("school"))
    rows = [
        ("a1", "Ana", "Lima", None, True, AT, AT, AT),
        ("a2", "Ben", "Ito", None, True, AT, AT, AT),
    ]
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    try:
        with engine.begin() as conn:
            assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"
            Bulk(insert(TABLE), NAMES).run(conn, rows)
            # The rows' one statement runs with the default plan cache (planned once).
            assert [q.split()[0] for q in statements[1:]] == ["SET", "INSERT", "RESET"]
            assert statements[1] == "SET LOCAL plan_cache_mode = auto"
            # The reads after it in the same transaction are custom-planned again.
            assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"
    finally:
        engine.dispose()


@pytest.mark.parametrize("plain", [False, True], ids=["executemany", "plain"])
def test_a_refused_row_raises_the_databases_error_not_a_later_one(
    engine: Engine, plain: bool
) -> None:
    # On PostgreSQL the plan setting is not restored after a failure (the transaction is
    # aborted): the error the caller sees is the refusal, which splitting the batch needs;
    # a COPY's is SQLAlchemy's IntegrityError as an execute's is.
    from cleversync.db.school.writer import refused_data

    rows = [
        ("a1", "Ana", "Lima", None, True, AT, AT, AT),
        ("a1", "Ben", "Ito", None, True, AT, AT, AT),
    ]
    with pytest.raises(IntegrityError) as raised, engine.begin() as conn:
        Bulk(insert(TABLE), NAMES, plain=plain).run(conn, rows)
    assert refused_data(raised.value) and classify(raised.value) is None
    with engine.begin() as conn:  # the transaction was rolled back; the engine goes on
        Bulk(insert(TABLE), NAMES, plain=plain).run(conn, rows[:1])
    assert [r[0] for r in _raw(engine)] == ["a1"]


def test_only_an_insert_may_be_copied() -> None:
    with pytest.raises(ValueError, match="only an insert"):
        Bulk(update(TABLE).where(TABLE.c.StudentId == bindparam("_key")), ("_key",), plain=True)


@pytest.mark.postgres
def test_a_copy_is_one_command_the_engine_s_listeners_see(pg_server: PgServer) -> None:
    engine = engine_for(pg_server.clone_database("school"))
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    rows = [(f"c{n}", "Ana", "Lima", None, True, AT, AT, AT) for n in range(50)]
    try:
        with engine.begin() as conn:
            Bulk(insert(TABLE), NAMES, plain=True).run(conn, rows)
            assert [s.split(" (")[0] for s in statements] == ['COPY "Students"']
        assert len(_raw(engine)) == 50
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_copy_on_a_lost_connection_is_a_transient_error(pg_server: PgServer) -> None:
    """The server ends the session (a failover, an idle timeout): the error is SQLAlchemy's,
    with the connection invalidated, which the retry layer takes for a transient failure;
    the pool does not hand that connection out again."""
    engine = engine_for(pg_server.clone_database("school"))
    rows = [("a1", "Ana", "Lima", None, True, AT, AT, AT)]
    try:
        with engine.connect() as conn:
            conn.begin()
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with engine.connect() as other:
                other.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
            with pytest.raises(DBAPIError) as raised:
                Bulk(insert(TABLE), NAMES, plain=True).run(conn, rows)
        assert raised.value.connection_invalidated
        assert classify(raised.value) is DatabaseTransientError
        with engine.begin() as conn:
            Bulk(insert(TABLE), NAMES, plain=True).run(conn, rows)
        assert [r[0] for r in _raw(engine)] == ["a1"]
    finally:
        engine.dispose()


def test_sqlite_takes_a_plain_insert_in_statements_of_many_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As many rows a statement as SQLite's parameter limit allows (here made 20: two rows of
    eight values); stored as SQLAlchemy stores them."""
    from cleversync.db import bulk

    engine = engine_for(sqlite_clone("school", tmp_path / "school.db"))

    monkeypatch.setattr(bulk, "parameter_limit", lambda conn: 20)
    rows = [(f"m{n}", "Ana", f"L{n}", None, n % 2 == 0, AT, AT, LATER) for n in range(5)]
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    try:
        stored = _stored_by_bulk(engine, rows, plain=True)
        inserts = [s for s in statements if s.startswith("INSERT")]
        assert [s.count("(?, ?, ?, ?, ?, ?, ?, ?)") for s in inserts] == [2, 2, 1]
        assert stored == _stored_by_sqlalchemy(engine, rows)
    finally:
        engine.dispose()


def test_timestamps_take_isoformat_only_where_it_writes_what_sqlite_s_conversion_writes() -> None:
    from datetime import date

    from sqlalchemy.dialects import sqlite

    from cleversync.db.bulk import _isoformat_where_equal

    class Stamp(datetime):  # a subclass may format itself otherwise: left to SQLAlchemy
        pass

    dialect = sqlite.dialect()
    process = sqlite.DATETIME().bind_processor(dialect)
    assert process is not None
    fast = _isoformat_where_equal(process)
    assert fast is not process
    values = [
        AT,
        LATER,
        datetime(1, 1, 1),
        datetime(9999, 12, 31, 23, 59, 59, 999_999),
        datetime(2024, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=-5))),
        Stamp(2024, 5, 6, 7, 8, 9, 10),
        date(2024, 2, 29),
        None,
    ]
    assert [fast(v) for v in values] == [process(v) for v in values]
    # Another storage format: SQLAlchemy's conversion stays, whatever the value.
    custom = sqlite.DATETIME(
        storage_format="%(year)04d/%(month)02d/%(day)02d %(hour)02d:%(minute)02d:%(second)02d"
    ).bind_processor(dialect)
    assert custom is not None and _isoformat_where_equal(custom) is custom
    # A conversion of another type is left alone.
    boolean = sqlite.BOOLEAN().bind_processor(dialect)
    assert boolean is not None and _isoformat_where_equal(boolean) is boolean


@pytest.mark.parametrize(
    ("count", "most", "sizes"),
    [
        (500, 32_766 // 11, [256, 128, 64, 32, 16, 4]),
        (200, 32_766 // 11, [128, 64, 8]),  # powers of two: few distinct statements
        (1, 100, [1]),
        (7, 2, [2, 2, 2, 1]),
        (7, 3, [2, 2, 2, 1]),
        (300, 90, [64, 64, 64, 64, 32, 8, 4]),  # SQLite before 3.32: 999 parameters
        (3, 0, [1, 1, 1]),  # rows wider than the limit: one a statement
    ],
)
def test_statement_sizes(count: int, most: int, sizes: list[int]) -> None:
    from cleversync.db.bulk import statement_sizes

    assert list(statement_sizes(count, most)) == sizes


def test_the_parameter_limit_is_the_connection_s_own(tmp_path: Path) -> None:
    """SQLite's limit is set when it is built, and a connection may lower it: a connection
    limited to 999 parameters still takes 200 rows of eight values (124 a statement at most:
    64, 64, 64, 8)."""
    import sqlite3

    engine = engine_for(sqlite_clone("school", tmp_path / "school.db"))
    event.listen(
        engine,
        "connect",
        lambda dbapi_connection, _: dbapi_connection.setlimit(
            sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999
        ),
    )
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    rows = [(f"p{n:03d}", "Ana", "Lima", None, True, AT, AT, AT) for n in range(200)]
    try:
        assert _stored_by_bulk(engine, rows, plain=True) == _stored_by_sqlalchemy(engine, rows)
        inserts = [s for s in statements if s.startswith("INSERT")][:4]
        assert [s.count("(?, ?, ?, ?, ?, ?, ?, ?)") for s in inserts] == [64, 64, 64, 8]
    finally:
        engine.dispose()
