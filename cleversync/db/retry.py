"""Database retries for transient errors only, classified per dialect."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from tenacity import RetryCallState

from cleversync import runtally
from cleversync.db.engines import one_writer
from cleversync.errors import DatabaseError, DatabaseTransientError, DatabaseUnavailableError
from cleversync.redaction import mask_credentials
from cleversync.retrying import retrying
from cleversync.settings import RetryPolicy

logger = logging.getLogger(__name__)
T = TypeVar("T")

# SQL Server / Azure SQL error numbers that Microsoft documents as transient
# (throttling, failover, deadlock victim, dropped connections).
MSSQL_TRANSIENT_NUMBERS = frozenset(
    {
        1205,
        233,
        64,
        20,
        121,
        258,
        10053,
        10054,
        10060,
        10928,
        10929,
        40143,
        40197,
        40501,
        40540,
        40613,
        42108,
        42109,
        49918,
        49919,
        49920,
        4221,
        615,
        926,
        4060,
    }
)
MSSQL_TRANSIENT_STATES = frozenset({"08S01", "08001", "08004", "HYT00", "HYT01", "40001"})
# PostgreSQL SQLSTATEs: serialization failure, deadlock, connection trouble, shutdowns.
PG_TRANSIENT_PREFIXES = ("08", "40001", "40P01", "53300", "57P01", "57P02", "57P03", "55P03")
PG_UNAVAILABLE_STATES = frozenset({"3D000", "28P01", "28000"})
SQLITE_TRANSIENT = ("database is locked", "database table is locked", "database is busy")
SQLITE_UNAVAILABLE = ("unable to open database file", "no such table", "file is not a database")
_MSSQL_NUMBER = re.compile(r"\((\d{2,5})\)")


def classify(exc: BaseException) -> type[DatabaseError] | None:
    """DatabaseTransientError for an error worth retrying, DatabaseUnavailableError for a
    database that is missing or refuses us, None for anything else (a bug or bad data)."""
    if not isinstance(exc, DBAPIError):
        return None
    if exc.connection_invalidated:
        return DatabaseTransientError
    orig = exc.orig
    module = type(orig).__module__.split(".")[0] if orig is not None else ""
    text = str(orig).lower() if orig is not None else str(exc).lower()
    if module == "sqlite3":
        if any(marker in text for marker in SQLITE_TRANSIENT):
            return DatabaseTransientError
        if any(marker in text for marker in SQLITE_UNAVAILABLE):
            return DatabaseUnavailableError
        return None
    if module == "psycopg":
        state = getattr(orig, "sqlstate", None) or ""
        if state in PG_UNAVAILABLE_STATES:
            return DatabaseUnavailableError
        if state.startswith(PG_TRANSIENT_PREFIXES) or (
            not state and isinstance(exc, OperationalError)
        ):
            return DatabaseTransientError
        return None
    if module == "pyodbc":
        args: tuple[object, ...] = getattr(orig, "args", ())
        state = str(args[0]) if args else ""
        numbers = {int(n) for n in _MSSQL_NUMBER.findall(str(args[1]) if len(args) > 1 else "")}
        if state in MSSQL_TRANSIENT_STATES or numbers & MSSQL_TRANSIENT_NUMBERS:
            return DatabaseTransientError
        if state == "28000" or 18456 in numbers:  # login failed
            return DatabaseUnavailableError
        return None
    return DatabaseTransientError if isinstance(exc, OperationalError) else None


def translate(exc: BaseException, what: str) -> DatabaseError | None:
    """Our error for a database failure, with a sanitized message; None if not a DB error."""
    kind = classify(exc)
    if kind is None:
        if isinstance(exc, DBAPIError):
            kind = DatabaseError
        else:
            return None
    detail = mask_credentials(str(exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc))
    detail = detail.splitlines()[0][:500] if detail else type(exc).__name__
    return kind(f"{what}: {detail}")


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Our DatabaseError for a database failure inside the block (``what`` names the
    database); a SQLAlchemy error that is not one is raised as it is."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise (translate(exc, what) or exc) from exc


def run_with_retry(
    operation: Callable[[], T],
    *,
    policy: RetryPolicy,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``operation``; retry transient database errors with exponential backoff.

    Anything else, and a transient error that outlasts the retries, is raised as our
    DatabaseError (``raise ... from``), so callers never see driver exceptions.
    """

    def log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        runtally.count_retry()
        logger.warning(
            "Transient database error during %s (attempt %d of %d); retrying: %s",
            what,
            state.attempt_number,
            policy.max_attempts + 1,
            mask_credentials(str(exc)).splitlines()[0] if exc else "",
        )

    # waits of base, 2 x base, 4 x base ... plus up to a quarter of base of jitter
    retry = retrying(
        policy,
        retry_on=lambda exc: classify(exc) is DatabaseTransientError,
        jitter=0.25,
        sleep=sleep,
        before_sleep=log_retry,
    )
    try:
        return retry(operation)
    except DBAPIError as exc:
        translated = translate(exc, what)
        raise (translated or DatabaseError(what)) from exc


def in_transaction(
    engine: Engine,
    work: Callable[[Connection], T],
    *,
    policy: RetryPolicy,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``work`` in one transaction on ``engine``, all of it again on a transient error."""

    def attempt() -> T:
        with one_writer(engine), engine.begin() as conn:
            return work(conn)

    return run_with_retry(attempt, policy=policy, what=what, sleep=sleep)
