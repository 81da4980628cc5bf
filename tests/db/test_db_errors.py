"""The one translator of database errors, as the CLI, HTTP API and health checks use it."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError

from cleversync.db.errors import database_error
from cleversync.errors import DatabaseError, DatabaseTransientError, DatabaseUnavailableError


def sqlite_error(cls: type, message: str) -> BaseException:
    return cls("SELECT 1", {}, sqlite3.OperationalError(message))


@pytest.mark.parametrize(
    ("exc", "kind", "message"),
    [
        (sqlite_error(OperationalError, "database is locked"), DatabaseTransientError, "locked"),
        (
            sqlite_error(OperationalError, "unable to open database file"),
            DatabaseUnavailableError,
            "unable to open",
        ),
        (sqlite_error(IntegrityError, "UNIQUE constraint failed"), DatabaseError, "UNIQUE"),
        (ArgumentError("not a database failure"), None, None),
        (ValueError("not ours at all"), None, None),
    ],
)
def test_database_error(exc: BaseException, kind: type | None, message: str | None) -> None:
    ours = database_error(exc, "SessionDb")
    if kind is None:
        assert ours is None
    else:
        assert type(ours) is kind
        assert str(ours).startswith("SessionDb: ") and message in str(ours)
