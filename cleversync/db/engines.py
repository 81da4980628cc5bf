"""SQLAlchemy engines for SessionDb and school databases, tuned per dialect."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import OperationalError

from cleversync.connstr import ODBC_DRIVER, parse_keyvalues, to_url
from cleversync.errors import ConfigurationError, DatabaseError, DatabaseUnavailableError
from cleversync.files import create_private_file, private_dir

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.pool import ConnectionPoolEntry

# A connection with this execution option (``SessionTables._read``) begins its SQLite
# transaction DEFERRED: a read takes no write lock, and in WAL mode waits for no writer.
READ_ONLY = "cleversync_read_only"

# One writer at a time per SQLite file in this process, handed over the moment it commits.
# SQLite itself makes a second writer wait by polling (its busy handler sleeps 1, 2, 5 ... up
# to 100 ms between tries): five schools writing SessionDb at once slept some 600 times in
# a 20-school district, for up to 100 ms each, while the lock had long been free. Other
# processes still meet SQLite's own wait (busy_timeout).
BUSY_TIMEOUT_SECONDS = 30
_WRITERS: dict[str, threading.RLock] = {}  # by the file's real path
_WRITERS_BY_NAME: dict[str, threading.RLock] = {}  # by the path as engines name it
_WRITERS_GUARD = threading.Lock()


def engine_for(
    connection_string: str, *, create_sqlite_file: bool = False, durable: bool = True
) -> Engine:
    """An engine for a connection string (URL, ADO.NET or ODBC).

    A SQLite file that does not exist is an error unless ``create_sqlite_file`` (only
    ``db upgrade`` creates databases): a sync must not write into an empty new file.
    ``durable=False`` (SQLite only) lets a commit return before it reaches the disk: for
    SessionDb, whose last commits a power cut may take back (see ``_sqlite_on_connect``).
    """
    return engine_for_url(
        to_url(connection_string), create_sqlite_file=create_sqlite_file, durable=durable
    )


def engine_for_url(url: URL, *, create_sqlite_file: bool = False, durable: bool = True) -> Engine:
    backend = url.get_backend_name()
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if backend == "sqlite":
        return _sqlite_engine(url, create_file=create_sqlite_file, durable=durable)
    if backend == "mssql":
        problem = odbc_problem(url)
        if problem is not None:
            raise ConfigurationError(problem)
        kwargs["fast_executemany"] = True
    if backend == "postgresql":
        # psycopg prepares a statement on its 5th run, and PostgreSQL may then keep a generic
        # plan made while a new school's tables were nearly empty (a sequential scan) for
        # every batch after: a full sync of 50,000 students took 26 s instead of 8.5 s, most
        # of it in those scans. Custom plans suit each run's values and the table as it is.
        option = "-c plan_cache_mode=force_custom_plan"
        given = url.query.get("options")  # the URL's own options are kept (str or tuple)
        given = " ".join(given) if isinstance(given, tuple) else given
        kwargs["connect_args"] = {"options": f"{given} {option}" if given else option}
        kwargs["use_insertmanyvalues"] = False
    return create_engine(url, **kwargs)


ODBC_INSTALL = (
    "install them (Debian/Ubuntu: 'apt-get install unixodbc', then msodbcsql18 from "
    "Microsoft's package repository; Azure's Python images have both)"
)


def odbc_problem(url: URL) -> str | None:
    """Why this machine cannot open a SQL Server URL (unixODBC or the ODBC driver it names
    is missing), or None. pyodbc fails otherwise with a bare ImportError at first use."""
    try:
        import pyodbc
    except ImportError:
        return (
            f"SQL Server connections need unixODBC and Microsoft's {ODBC_DRIVER}, and "
            f"unixODBC is not installed on this machine; {ODBC_INSTALL}"
        )
    wanted = _odbc_driver(url)
    if wanted is None or wanted in pyodbc.drivers():
        return None
    return (
        f"SQL Server connections need Microsoft's {wanted}, which is not installed on this "
        f"machine (unixODBC lists: {', '.join(pyodbc.drivers()) or 'no drivers'}); {ODBC_INSTALL}"
    )


def _odbc_driver(url: URL) -> str | None:
    """The ODBC driver a SQL Server URL names (a DSN names none)."""
    query = url.query
    if "odbc_connect" in query:
        raw = query["odbc_connect"]
        text = raw if isinstance(raw, str) else raw[0]
        driver = {k.lower(): v for k, v in parse_keyvalues(text)}.get("driver")
    else:
        named = query.get("driver")
        driver = named if isinstance(named, str) or named is None else named[0]
    return driver.strip("{}") if driver else None


def named(what: str, engine: Engine) -> str:
    """``what`` for messages, with a SQLite file's absolute path: "SessionDb (SQLite file
    /home/op/.cleversync/sessiondb.sqlite)", so an operator knows which file is meant."""
    database = engine.url.database
    if engine.url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return what
    if database.startswith("file:"):
        return f"{what} (SQLite {database})"
    return f"{what} (SQLite file {Path(database).absolute()})"


def display_url(engine: Engine) -> str:
    """The engine's URL with any password hidden, for messages."""
    return engine.url.render_as_string(hide_password=True)


def _sqlite_engine(url: URL, *, create_file: bool, durable: bool) -> Engine:
    path = url.database
    if path and path != ":memory:" and not path.startswith("file:"):
        file = Path(path)
        if create_file:
            private_dir(file.parent)
            create_private_file(file)
        elif not file.exists():
            raise DatabaseUnavailableError(f"SQLite database file {file.absolute()} does not exist")
        _require_writable(file)
    # No pre-ping: a connection to a local file cannot drop, and the ping was a statement
    # before every transaction (two dozen per school run).
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_SECONDS})
    event.listen(engine, "connect", _sqlite_on_connect)
    if not durable:
        event.listen(engine, "connect", _sqlite_commit_before_the_disk)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def one_writer(engine: Engine) -> AbstractContextManager[None]:
    """Held around a write transaction on ``engine``: for a SQLite file, this process's lock
    of that file, whatever path names it (reentrant: the thread that holds it may nest);
    otherwise nothing."""
    url = engine.url
    path = url.database
    if url.get_backend_name() != "sqlite" or not path or path == ":memory:":
        return nullcontext()
    lock = _WRITERS_BY_NAME.get(path)
    if lock is None:  # the file's real path is looked up once per name, not per transaction
        key = path if path.startswith("file:") else os.path.realpath(path)
        with _WRITERS_GUARD:
            lock = _WRITERS.setdefault(key, threading.RLock())
            _WRITERS_BY_NAME[path] = lock
    return _holding(lock)


@contextmanager
def _holding(lock: threading.RLock) -> Iterator[None]:
    # Waited for as long as SQLite itself would wait, and then the same error ("database is
    # locked": transient, so the transaction is retried after a pause), instead of going on
    # to wait for SQLite's lock as long again.
    if not lock.acquire(timeout=BUSY_TIMEOUT_SECONDS):
        raise OperationalError(
            "BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked")
        )
    try:
        yield
    finally:
        lock.release()


def _require_writable(file: Path) -> None:
    """Every CleverSync command that opens a database writes to it (leases, history, rows).
    SQLite itself says only "unable to open database file" or "attempt to write a readonly
    database", and only at the first write, so say what is wrong up front."""
    if not os.access(file, os.W_OK):
        raise DatabaseError(
            f"SQLite database file {file} is read-only: CleverSync writes to it; make it "
            "writable by the user running CleverSync (chmod u+w, or check lsattr and the mount)"
        )
    if not os.access(file.parent, os.W_OK | os.X_OK):
        raise DatabaseError(
            f"the folder of SQLite database file {file} is read-only: SQLite writes its -wal "
            "and -shm files next to the database; make the folder writable"
        )


def _sqlite_on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # Take transaction control from pysqlite (it defers BEGIN and can't upgrade read locks
    # without failing), turn on foreign keys (for ON DELETE CASCADE) and WAL (readers never
    # block the writer, which matters when several schools record history at once).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
    cursor.close()


def _sqlite_commit_before_the_disk(
    dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry
) -> None:
    # SessionDb: synchronous=NORMAL, SQLite's advice for WAL: a commit no longer waits for
    # the disk (FULL's fsync took 5 ms a commit here, and a school run commits to SessionDb
    # some two dozen times: half of a 100-school district's time). The file stays consistent
    # through any crash; a power cut may take back its last commits: the history rows,
    # cursors and flags of the last runs, so the next run starts from an earlier cursor and
    # writes the same rows again. School databases stay FULL: their rows are durable before
    # the history row that moves the cursor past them is written, so a power cut can never
    # leave a cursor ahead of the data.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_on_begin(connection: Any) -> None:
    # IMMEDIATE: take the write lock at BEGIN, so a transaction that reads then writes
    # waits for the lock (busy_timeout) instead of failing at its first write. A read-only
    # connection (READ_ONLY) begins DEFERRED: it reads a snapshot and never waits.
    if connection.get_execution_options().get(READ_ONLY):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
