"""One statement for many rows, handed to the driver's ``executemany`` as plain tuples.

``Connection.execute(statement, [dict, ...])`` makes SQLAlchemy build and process a
parameter dict for every row, which for a school's batch costs as much as the database's
own work. Here the statement is compiled once per dialect; each row is a tuple in the order
of ``names``, converted only where the dialect converts a value (SQLite's timestamps and
booleans, each distinct value once), and goes to the driver in its own parameter style.
The SQL and the values stored are exactly SQLAlchemy's.

On PostgreSQL the rows are planned once: its sessions force a custom plan for every
execution (``engines.py``: a generic plan made while a school's tables were empty would
scan them), which for an ``executemany`` means planning every row again; for one statement
of many rows by key or inserting, the transaction uses the default (``SET LOCAL``) and goes
back to forcing them after it, about a sixth of a full sync's time on PostgreSQL.

A plain insert (``plain=True``: the given columns, no ``RETURNING``, no ``ON CONFLICT``) goes
further. PostgreSQL takes its rows as one ``COPY ... FROM STDIN`` (psycopg's
``Cursor.copy``): they stream in one command, with none of an ``executemany``'s work a row on
either side; that took a district's 100 schools from 23 to 13 CPU seconds. Its errors are
raised as an ``execute``'s are (SQLAlchemy's ``IntegrityError`` and the like, the connection
invalidated when it is lost), so a refused batch is split and a dropped connection retried as
before. SQLite takes them as INSERTs of many rows each (``VALUES (...), (...)``, up to 256,
``statement_sizes``): its ``executemany`` releases the GIL around every row, and with
five schools' threads each release hands the interpreter to another thread and back; one
statement for hundreds of rows costs half the CPU with five threads at it.

Only on the drivers the tests run against (SQLite, PostgreSQL's psycopg). SQL Server keeps
SQLAlchemy's own path: with pyodbc's ``fast_executemany`` SQLAlchemy declares each
parameter's type (``setinputsizes``), which a bare ``executemany`` would leave to pyodbc's
guess from the first row (a NULL timestamp there, a date later).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, TypeDecorator
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import Insert, UpdateBase
from sqlalchemy.types import TypeEngine

_Processor = Callable[[Any], Any]

# Dialects whose drivers get the rows directly (the others: SQLAlchemy's executemany).
DIRECT = frozenset({"sqlite", "postgresql"})


@dataclass(frozen=True)
class _Compiled:
    sql: str
    order: tuple[int, ...] | None  # positional: the row's items in the statement's order
    names: tuple[str, ...] | None  # named: the parameter names, as the row orders them
    processors: tuple[tuple[int, _Processor], ...]  # (item, conversion) where there is one
    copy: str | None = None  # PostgreSQL's COPY for the rows, for a plain insert
    # SQLite's insert of many rows, for a plain insert: (the SQL up to VALUES, one row's group)
    values: tuple[str, str] | None = None


class Bulk:
    """``statement`` run for many rows, each a tuple of the values of ``names`` (an insert's
    columns, or the bound parameters of an update or delete). ``plain``: the statement is a
    plain insert of ``names``, which PostgreSQL may take as a ``COPY`` and SQLite as INSERTs
    of many rows each."""

    def __init__(self, statement: UpdateBase, names: Sequence[str], *, plain: bool = False) -> None:
        if plain and not isinstance(statement, Insert):
            raise ValueError("only an insert can be sent as a plain insert")
        self.statement = statement
        self.names = tuple(names)
        self.plain = plain
        self._compiled: dict[tuple[str, str, str], _Compiled] = {}
        self._lock = threading.Lock()

    def run(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if conn.dialect.name not in DIRECT:
            conn.execute(self.statement, [dict(zip(self.names, row, strict=True)) for row in rows])
            return
        compiled = self._for(conn.dialect)
        # Column by column: a batch's constant values (its time, IsActive) convert once.
        columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
        if len(columns) != len(self.names):
            raise ValueError(f"rows of {len(columns)} values for {len(self.names)} names")
        for i, process in compiled.processors:
            columns[i] = _converted(columns[i], process)
        if compiled.copy is not None:
            _copy(conn, compiled.copy, zip(*columns, strict=True))
            return
        if compiled.values is not None and compiled.order is not None and len(rows) > 1:
            in_order = list(zip(*(columns[i] for i in compiled.order), strict=True))
            _insert_many(conn, compiled.values, in_order)
            return
        planned_once = conn.dialect.name == "postgresql" and len(rows) > 1
        if planned_once:
            conn.exec_driver_sql("SET LOCAL plan_cache_mode = auto")
        if compiled.order is not None:
            ordered = (columns[i] for i in compiled.order)
            conn.exec_driver_sql(compiled.sql, list(zip(*ordered, strict=True)))
        else:
            names = compiled.names or self.names
            conn.exec_driver_sql(
                compiled.sql,
                [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)],
            )
        if planned_once:  # (not after a failure: the transaction is rolled back, and with it)
            conn.exec_driver_sql("RESET plan_cache_mode")

    def _for(self, dialect: Dialect) -> _Compiled:
        key = (dialect.name, str(dialect.driver), str(dialect.paramstyle))
        found = self._compiled.get(key)
        if found is None:
            with self._lock:
                found = self._compiled.get(key) or self._compile(dialect)
                self._compiled[key] = found
        return found

    def _compile(self, dialect: Dialect) -> _Compiled:
        keys = list(self.names) if isinstance(self.statement, Insert) else None
        compiled = self.statement.compile(dialect=dialect, column_keys=keys, for_executemany=True)
        binds = compiled.binds
        missing = set(binds) - set(self.names)
        if missing:  # a value bound in the statement itself would be left out
            raise ValueError(f"parameters not among the row's names: {sorted(missing)}")
        processors = tuple(
            (i, _isoformat_where_equal(process))
            for i, name in enumerate(self.names)
            if name in binds
            and (process := binds[name].type.dialect_impl(dialect).bind_processor(dialect))
        )
        if self.plain and dialect.name == "postgresql" and dialect.driver == "psycopg":
            quote = dialect.identifier_preparer
            table = quote.format_table(self.statement.table)
            names = ", ".join(quote.quote(name) for name in self.names)
            copy = f"COPY {table} ({names}) FROM STDIN"
            # COPY's text drops a timestamp's offset where an executemany's parameter keeps
            # it: aware timestamps are made naive UTC first (UTC is what the columns hold).
            processors += tuple(
                (i, _naive_utc)
                for i, name in enumerate(self.names)
                if name in binds and _holds_timestamps(binds[name].type.dialect_impl(dialect))
            )
            return _Compiled(compiled.string, None, self.names, processors, copy)
        if dialect.positional:
            position = {name: i for i, name in enumerate(self.names)}
            order = tuple(position[name] for name in compiled.positiontup or ())
            values = None
            if self.plain and dialect.name == "sqlite":
                head, _, group = compiled.string.rpartition(" VALUES ")
                if head and group == "(" + ", ".join(["?"] * len(order)) + ")":
                    values = (f"{head} VALUES ", group)
            return _Compiled(compiled.string, order, None, processors, values=values)
        return _Compiled(compiled.string, None, self.names, processors)


# Timestamps a conversion must turn into their ISO text for isoformat to stand in for it.
_ISO_SAMPLES = (
    datetime(2001, 2, 3, 4, 5, 6, 7),
    datetime(1, 1, 1),
    datetime(9999, 12, 31, 23, 59, 59, 999_999),
)


def _isoformat_where_equal(process: _Processor) -> _Processor:
    """``process``, or a faster one where it writes a naive timestamp as its ISO text.

    SQLite's DATETIME conversion fills a %-format from seven attributes a value (1.4 us
    against isoformat's 0.7, for every distinct timestamp of a batch); its default
    format is ``datetime.isoformat(" ", "microseconds")`` exactly, for naive timestamps. So
    where ``process`` gives that text for the samples, a naive ``datetime`` takes isoformat
    and any other value (aware, a subclass, a date, None) still goes through ``process``."""
    try:
        same = all(process(t) == t.isoformat(" ", "microseconds") for t in _ISO_SAMPLES)
    except Exception:  # a conversion of another type refuses timestamps
        return process
    if not same:
        return process

    def isoformat(value: Any) -> Any:
        if type(value) is datetime and value.tzinfo is None:
            return value.isoformat(" ", "microseconds")
        return process(value)

    return isoformat


# Rows in one SQLite INSERT at most. A statement's compiled program grows with its rows, and
# the driver keeps the last 128 it ran, prepared, on each connection: at SQLite's parameter
# limit a school's links made statements of 16,000 rows and a run's peak 9 MB higher, and a
# statement for every batch size up to 256 cost a connection some 18 MB. Rows go 256 a
# statement, the rest in powers of two (7 rows: 4, 2 and 1), so a table's inserts repeat at
# most nine statements, each prepared once.
MOST_ROWS = 256


def _insert_many(conn: Connection, values: tuple[str, str], rows: list[tuple[Any, ...]]) -> None:
    """The rows as INSERTs of many rows each (``statement_sizes``)."""
    head, group = values
    start = 0
    for size in statement_sizes(len(rows), parameter_limit(conn) // len(rows[0])):
        part = rows[start : start + size]
        start += size
        sql = head + ", ".join([group] * size)
        conn.exec_driver_sql(sql, tuple(value for row in part for value in row))


def statement_sizes(count: int, most: int) -> Iterator[int]:
    """Rows a statement for ``count`` rows: the largest power of two within ``MOST_ROWS`` and
    ``most`` (the parameter limit's rows) while they last, then powers of two."""
    largest = 1 << (max(1, min(MOST_ROWS, most)).bit_length() - 1)
    while count:
        size = largest if count >= largest else 1 << (count.bit_length() - 1)
        yield size
        count -= size


def parameter_limit(conn: Connection) -> int:
    """The most parameters one statement may have on this SQLite connection: set when SQLite
    was built (999 before 3.32, 32,766 since, other builds otherwise) and lowered per
    connection by ``setlimit``, so asked of the connection itself."""
    dbapi_connection: Any = conn.connection.dbapi_connection
    limit: int = dbapi_connection.getlimit(conn.dialect.loaded_dbapi.SQLITE_LIMIT_VARIABLE_NUMBER)
    return limit


def _holds_timestamps(type_: TypeEngine[Any]) -> bool:
    while isinstance(type_, TypeDecorator):  # ours (UtcDateTime) say "object"
        type_ = type_.impl_instance
    return isinstance(type_, DateTime)


def _naive_utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _copy(conn: Connection, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
    """The rows through psycopg's ``COPY ... FROM STDIN``, in the connection's transaction.

    As for an ``execute``: the engine's ``before_cursor_execute`` and ``after_cursor_execute``
    listeners see the statement (with no parameters and no execution context, which
    SQLAlchemy allows), a driver error is raised as SQLAlchemy's (``DBAPIError.instance``:
    ``IntegrityError``, ``DataError``, ``OperationalError``...), and a lost connection is
    invalidated so that the pool does not hand it out again."""
    dialect = conn.dialect
    if not conn.in_transaction():
        # What an execute would do first (SQLAlchemy's autobegin): the driver's connection
        # alone does not begin SQLAlchemy's transaction, and a commit would then commit
        # nothing while the pool rolled the rows back.
        conn.begin()
    dbapi_connection: Any = conn.connection.dbapi_connection
    try:
        with dbapi_connection.cursor() as cursor:
            conn.dispatch.before_cursor_execute(conn, cursor, sql, None, None, True)
            with cursor.copy(sql) as copy:
                for row in rows:
                    copy.write_row(row)
            conn.dispatch.after_cursor_execute(conn, cursor, sql, None, None, True)
    except dialect.loaded_dbapi.Error as exc:
        lost = dialect.is_disconnect(exc, dbapi_connection, None)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            sql,
            None,
            exc,
            dialect.loaded_dbapi.Error,
            connection_invalidated=lost,
            dialect=dialect,
        ) from exc


def _converted(column: Sequence[Any], process: _Processor) -> Sequence[Any]:
    """One column's values as the dialect converts them (None stays None), each distinct
    value once: a batch's timestamps are mostly the same few. Distinct, not merely equal:
    an aware timestamp equals the same instant in another zone, but is written apart."""
    first = column[0]
    if all(value is first for value in column):  # the batch's time, IsActive, None
        return (None if first is None else process(first),) * len(column)
    done: dict[Any, Any] = {}
    out: list[Any] = []
    try:
        for value in column:
            if value is None:
                out.append(None)
                continue
            key = (value.__class__, value, getattr(value, "tzinfo", None))
            try:
                out.append(done[key])
            except KeyError:
                done[key] = converted = process(value)
                out.append(converted)
    except TypeError:  # an unhashable value (a JSON column's dict): each on its own
        return [None if value is None else process(value) for value in column]
    return out
