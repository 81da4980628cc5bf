"""Databases for tests, already migrated: copies of a template made once per session.

Migrating with Alembic costs a test tens of milliseconds per database on SQLite and a tenth of
a second on PostgreSQL (where creating the database is most of it), and a world makes three to
seven databases. So each kind is migrated once: SQLite files are copied, PostgreSQL databases
are cloned with CREATE DATABASE ... TEMPLATE (``PgServer.clone_database``). The migration tests
still start from empty databases (``PgServer.create_database``, the ``db_url`` fixture).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from pathlib import Path

from tests.pgserver import Kind

_sqlite_templates: dict[str, Path] = {}
_folder: list[Path] = []  # where templates go: the session's pytest temporary folder
_lock = threading.Lock()


def use_folder(folder: Path) -> None:
    """Make SQLite templates in ``folder`` (conftest passes one pytest cleans up)."""
    with _lock:
        _folder[:] = [folder]
        _sqlite_templates.clear()


def sqlite_template(kind: Kind) -> Path:
    """A SQLite file with ``kind``'s schema at the head revision, made on first use."""
    with _lock:
        if kind not in _sqlite_templates:
            from cleversync.db.engines import engine_for
            from cleversync.db.migrate import upgrade

            if not _folder:  # outside pytest's fixtures
                folder = Path(tempfile.mkdtemp(prefix="cleversync-templates-"))
                atexit.register(shutil.rmtree, folder, ignore_errors=True)
                _folder.append(folder)
            path = _folder[0] / f"{kind}.sqlite"
            engine = engine_for(f"sqlite:///{path}", create_sqlite_file=True)
            try:
                upgrade(engine, kind)
            finally:
                # The last connection to close checkpoints the WAL into the file, so the file
                # alone is the whole database.
                engine.dispose()
            _sqlite_templates[kind] = path
        return _sqlite_templates[kind]


def sqlite_clone(kind: Kind, path: Path) -> str:
    """A migrated SQLite database at ``path`` (a copy of the template); its URL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sqlite_template(kind), path)
    return f"sqlite:///{path}"


def inserting(statement: str) -> bool:
    """Whether a statement an engine's cursor events see inserts rows: an INSERT, or the
    COPY that ``db.bulk`` sends PostgreSQL for many rows at once."""
    return statement.lstrip().upper().startswith(("INSERT", "COPY"))
