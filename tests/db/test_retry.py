"""Database errors: which are retried, which mean the database is unavailable, which are bugs.

The drivers' exceptions are built as SQLAlchemy hands them over (a DBAPIError whose ``orig``
is the driver's exception); pyodbc's ``args`` are (SQLSTATE, message), the message ending in
SQL Server's error number in parentheses. The retry loop then runs on real SQLite and
PostgreSQL locks.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
import psycopg.errors
import pytest
from sqlalchemy import create_engine, event, func, insert, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError

from cleversync.db.engines import engine_for
from cleversync.db.retry import in_transaction, run_with_retry, translate
from cleversync.db.schema import Student, Teacher
from cleversync.errors import DatabaseError, DatabaseTransientError, DatabaseUnavailableError
from cleversync.settings import RetryPolicy

TRANSIENT, UNAVAILABLE, OTHER = DatabaseTransientError, DatabaseUnavailableError, DatabaseError


def _pyodbc_errors() -> dict[type[DBAPIError], type[Exception]]:
    """pyodbc's exception classes; where its ODBC library is missing (it is on CI, not on
    every laptop), stand-ins of the same module and shape."""
    try:
        import pyodbc

        return {
            OperationalError: pyodbc.OperationalError,
            ProgrammingError: pyodbc.ProgrammingError,
            IntegrityError: pyodbc.IntegrityError,
        }
    except ImportError:
        classes = {
            wrapper: type(wrapper.__name__, (Exception,), {"__module__": "pyodbc"})
            for wrapper in (OperationalError, ProgrammingError, IntegrityError)
        }
        return classes  # type: ignore[return-value]


PYODBC = _pyodbc_errors()


def mssql(state: str, number: int, text: str, wrapper: type[DBAPIError] = OperationalError):
    message = (
        f"[{state}] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]{text} ({number}) "
        "(SQLExecDirectW)"
    )
    return wrapper("SELECT 1", {}, PYODBC[wrapper](state, message))


def postgres(sqlstate: str, message: str, wrapper: type[DBAPIError] = OperationalError):
    return wrapper("SELECT 1", {}, psycopg.errors.lookup(sqlstate)(message))


def sqlite(message: str, wrapper: type[DBAPIError] = OperationalError):
    driver = sqlite3.IntegrityError if wrapper is IntegrityError else sqlite3.OperationalError
    return wrapper("SELECT 1", {}, driver(message))


# SQL Server and Azure SQL errors Microsoft documents as transient: retried.
MSSQL_TRANSIENT = [
    (1205, "40001", "Transaction (Process ID 52) was deadlocked on lock resources"),
    (233, "08S01", "A connection was successfully established, then an error occurred"),
    (64, "08S01", "The specified network name is no longer available"),
    (20, "08S01", "The instance of SQL Server does not support encryption"),
    (121, "08S01", "The semaphore timeout period has expired"),
    (258, "HYT00", "Wait operation timed out"),
    (10053, "08S01", "An established connection was aborted by the software in your host"),
    (10054, "08S01", "An existing connection was forcibly closed by the remote host"),
    (10060, "08001", "A connection attempt failed because the host did not respond"),
    (10928, "42000", "Resource ID : 1. The request limit for the database is 60"),
    (10929, "42000", "Resource ID : 1. The min guarantee is 0, max limit is 60"),
    (40143, "42000", "The service has encountered an error processing your request"),
    (40197, "42000", "The service has encountered an error processing your request"),
    (40501, "42000", "The service is currently busy. Retry the request after 10 seconds"),
    (40540, "42000", "The service has encountered an error processing your request"),
    (40613, "42000", "Database 'School' on server 'sos' is not currently available"),
    (42108, "42000", "Can not connect to the SQL pool since it is paused"),
    (42109, "42000", "The SQL pool is warming up. Please try again"),
    (49918, "42000", "Cannot process request. Not enough resources to process request"),
    (49919, "42000", "Cannot process create or update request. Too many operations"),
    (49920, "42000", "Cannot process request. Too many operations in progress"),
    (4221, "42000", "Login to read-secondary failed due to long wait on HADR_DATABASE_WAIT"),
    (615, "42000", "Could not find database ID 7, name 'School'. The database may be offline"),
    (926, "42000", "Database 'School' cannot be opened. It has been marked SUSPECT"),
    (4060, "42000", "Cannot open database 'School' requested by the login"),
]

CASES: list[tuple[str, DBAPIError, type[DatabaseError]]] = [
    *[(f"mssql {n}", mssql(state, n, text), TRANSIENT) for n, state, text in MSSQL_TRANSIENT],
    # The SQLSTATE alone is enough, whatever the number.
    ("mssql 08S01 link failure", mssql("08S01", 0, "Communication link failure"), TRANSIENT),
    ("mssql 08001 cannot connect", mssql("08001", 2, "Named Pipes Provider"), TRANSIENT),
    ("mssql 08004 refused", mssql("08004", 4060, "Server rejected the connection"), TRANSIENT),
    ("mssql HYT00 timeout", mssql("HYT00", 0, "Query timeout expired"), TRANSIENT),
    ("mssql HYT01 timeout", mssql("HYT01", 0, "Connection timeout expired"), TRANSIENT),
    ("mssql 40001 deadlock state", mssql("40001", 0, "deadlock victim"), TRANSIENT),
    # A refused login is an unavailable database: retrying will not fix a password.
    ("mssql 18456 login", mssql("28000", 18456, "Login failed for user 'sync'."), UNAVAILABLE),
    ("mssql 18456 as 42000", mssql("42000", 18456, "Login failed for user 'sync'."), UNAVAILABLE),
    # Bugs and bad data: not retried.
    (
        "mssql 208 no table",
        mssql("42S02", 208, "Invalid object name 'Students'.", ProgrammingError),
        OTHER,
    ),
    (
        "mssql 2627 duplicate",
        mssql("23000", 2627, "Violation of UNIQUE KEY constraint", IntegrityError),
        OTHER,
    ),
    (
        "mssql 8152 truncation",
        mssql("22001", 8152, "String or binary data would be truncated", ProgrammingError),
        OTHER,
    ),
    # PostgreSQL SQLSTATEs.
    ("pg 40001 serialization", postgres("40001", "could not serialize access"), TRANSIENT),
    ("pg 40P01 deadlock", postgres("40P01", "deadlock detected"), TRANSIENT),
    ("pg 08006 connection failure", postgres("08006", "server closed the connection"), TRANSIENT),
    ("pg 08001 cannot connect", postgres("08001", "could not connect to server"), TRANSIENT),
    ("pg 08003 no connection", postgres("08003", "connection does not exist"), TRANSIENT),
    ("pg 53300 too many connections", postgres("53300", "too many clients already"), TRANSIENT),
    ("pg 57P01 admin shutdown", postgres("57P01", "terminating connection"), TRANSIENT),
    ("pg 57P02 crash shutdown", postgres("57P02", "terminating connection"), TRANSIENT),
    ("pg 57P03 starting up", postgres("57P03", "the database system is starting up"), TRANSIENT),
    ("pg 55P03 lock timeout", postgres("55P03", "canceling statement due to lock"), TRANSIENT),
    ("pg 3D000 no database", postgres("3D000", 'database "school" does not exist'), UNAVAILABLE),
    ("pg 28P01 bad password", postgres("28P01", "password authentication failed"), UNAVAILABLE),
    ("pg 28000 not authorized", postgres("28000", "no pg_hba.conf entry"), UNAVAILABLE),
    ("pg 23505 duplicate", postgres("23505", "duplicate key", IntegrityError), OTHER),
    ("pg 22001 too long", postgres("22001", "value too long", ProgrammingError), OTHER),
    ("pg 42P01 no table", postgres("42P01", 'relation "Students"', ProgrammingError), OTHER),
    (
        "pg no sqlstate",
        OperationalError("SELECT 1", {}, psycopg.OperationalError("connection refused")),
        TRANSIENT,
    ),
    # SQLite, by message.
    ("sqlite locked", sqlite("database is locked"), TRANSIENT),
    ("sqlite table locked", sqlite("database table is locked: Students"), TRANSIENT),
    ("sqlite busy", sqlite("database is busy"), TRANSIENT),
    ("sqlite cannot open", sqlite("unable to open database file"), UNAVAILABLE),
    ("sqlite no table", sqlite("no such table: Students"), UNAVAILABLE),
    ("sqlite not a database", sqlite("file is not a database"), UNAVAILABLE),
    ("sqlite unique", sqlite("UNIQUE constraint failed", IntegrityError), OTHER),
    ("sqlite syntax", sqlite('near "SELEC": syntax error'), OTHER),
]


@pytest.mark.parametrize(
    ("error", "expected"), [(e, k) for _, e, k in CASES], ids=[name for name, _, _ in CASES]
)
def test_driver_errors_are_translated_by_kind(error: DBAPIError, expected: type) -> None:
    translated = translate(error, "writing students")
    assert type(translated) is expected
    assert str(translated).startswith("writing students: ")
    assert translated.retryable is (expected is TRANSIENT)


def test_a_dropped_connection_is_transient_whatever_the_error() -> None:
    error = sqlite("UNIQUE constraint failed", IntegrityError)
    error.connection_invalidated = True
    assert type(translate(error, "x")) is TRANSIENT


def test_other_drivers_operational_errors_are_transient_and_the_rest_are_not() -> None:
    class OddballError(Exception):
        __module__ = "some_driver"

    assert type(translate(OperationalError("S", {}, OddballError("gone")), "x")) is TRANSIENT
    assert type(translate(ProgrammingError("S", {}, OddballError("bad")), "x")) is OTHER


def test_what_is_not_a_database_error_is_left_alone() -> None:
    assert translate(ValueError("not ours"), "x") is None


def test_the_message_is_one_line_without_the_password() -> None:
    error = postgres(
        "08006",
        "connection to postgresql://sync:Hunter2-secret@db:5432/school failed; "
        "Password=Hunter2-secret\nDETAIL: more lines\nand more",
    )
    message = str(translate(error, "connecting"))
    assert "Hunter2-secret" not in message
    assert "\n" not in message
    assert message.startswith("connecting: connection to postgresql://sync:***@db")
    assert len(translate(sqlite("database is locked " + "x" * 2000), "w").args[0]) < 520


POLICY = RetryPolicy(MaxAttempts=3, BackoffBase=0.5)


class Flaky:
    """An operation that fails with ``error`` the first ``failures`` times."""

    def __init__(self, error: Exception, failures: int) -> None:
        self.error, self.failures, self.calls = error, failures, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "done"


def test_transient_errors_are_retried_with_growing_waits() -> None:
    sleeps: list[float] = []
    flaky = Flaky(postgres("40P01", "deadlock detected"), failures=3)
    assert run_with_retry(flaky, policy=POLICY, what="w", sleep=sleeps.append) == "done"
    assert flaky.calls == 4
    # base, 2 x base, 4 x base, each plus up to a quarter of base of jitter
    for wait, base in zip(sleeps, (0.5, 1.0, 2.0), strict=True):
        assert base <= wait <= base + 0.125


def test_a_transient_error_that_outlasts_the_retries_is_raised_as_ours() -> None:
    sleeps: list[float] = []
    error = mssql("42000", 40501, "The service is currently busy.")
    flaky = Flaky(error, failures=99)
    with pytest.raises(DatabaseTransientError, match=r"^w: .*40501") as raised:
        run_with_retry(flaky, policy=POLICY, what="w", sleep=sleeps.append)
    assert raised.value.__cause__ is error
    assert flaky.calls == POLICY.max_attempts + 1 and len(sleeps) == POLICY.max_attempts


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (postgres("23505", "duplicate key", IntegrityError), DatabaseError),
        (postgres("3D000", 'database "x" does not exist'), DatabaseUnavailableError),
        (mssql("28000", 18456, "Login failed for user 'sync'."), DatabaseUnavailableError),
    ],
    ids=["bug", "missing database", "login failed"],
)
def test_other_errors_are_not_retried(error: DBAPIError, expected: type) -> None:
    sleeps: list[float] = []
    flaky = Flaky(error, failures=1)
    with pytest.raises(expected) as raised:
        run_with_retry(flaky, policy=POLICY, what="w", sleep=sleeps.append)
    assert type(raised.value) is expected
    assert flaky.calls == 1 and sleeps == []


def test_no_retries_when_the_policy_allows_none() -> None:
    flaky = Flaky(sqlite("database is locked"), failures=1)
    with pytest.raises(DatabaseTransientError):
        run_with_retry(flaky, policy=RetryPolicy(MaxAttempts=0, BackoffBase=0), what="w")
    assert flaky.calls == 1


@contextmanager
def teachers_locked(url: str) -> Iterator[Callable[[], None]]:
    """Another session holds the Teachers table (all of a SQLite database) until released."""
    if url.startswith("sqlite"):
        holder: Any = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
    else:
        holder = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
        holder.execute('LOCK TABLE "Teachers" IN ACCESS EXCLUSIVE MODE')
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            holder.commit()
            released.set()

    try:
        yield release
    finally:
        release()
        holder.close()


def impatient_engine(url: str) -> Engine:
    """An engine whose writes fail at once on a held lock, with the driver's own error."""
    if url.startswith("sqlite"):
        # pysqlite's deferred BEGIN and no busy timeout: the first write meets the lock (the
        # product's engine takes the lock at BEGIN and waits up to 30 s for it).
        return create_engine(url, connect_args={"timeout": 0})
    engine = engine_for(url)
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("SET LOCAL lock_timeout = 20"))
    return engine


def _insert(conn: Connection, model: Any, clever_id: str) -> None:
    table = model.__table__
    key = "CleverStudentId" if model is Student else "CleverTeacherId"
    now = datetime(2024, 1, 1)
    conn.execute(
        insert(table).values(
            {key: clever_id, "FirstName": "A", "LastName": "B", "CreatedAt": now, "UpdatedAt": now}
        )
    )


def _count(engine: Engine, model: Any) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(model.__table__))


def test_a_real_lock_is_retried_and_the_failed_attempt_leaves_nothing(school_db_url: str) -> None:
    engine = impatient_engine(school_db_url)
    attempts = 0
    with teachers_locked(school_db_url) as release:

        def work(conn: Connection) -> str:
            nonlocal attempts
            attempts += 1
            _insert(conn, Student, "s1")  # on PostgreSQL written, then rolled back
            _insert(conn, Teacher, "t1")  # meets the lock on the first attempt
            return "written"

        def sleep(seconds: float) -> None:
            release()  # the other session finishes while we wait

        assert in_transaction(engine, work, policy=POLICY, what="w", sleep=sleep) == "written"
    assert attempts == 2
    assert _count(engine, Student) == _count(engine, Teacher) == 1
    engine.dispose()


def test_a_lock_held_too_long_fails_as_transient(school_db_url: str) -> None:
    engine = impatient_engine(school_db_url)
    sleeps: list[float] = []

    def work(conn: Connection) -> None:
        _insert(conn, Student, "s1")
        _insert(conn, Teacher, "t1")

    with teachers_locked(school_db_url), pytest.raises(DatabaseTransientError) as raised:
        in_transaction(engine, work, policy=POLICY, what="writing a batch", sleep=sleeps.append)
    assert str(raised.value).startswith("writing a batch: ")
    assert len(sleeps) == POLICY.max_attempts
    assert _count(engine, Student) == 0
    engine.dispose()
