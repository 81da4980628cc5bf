"""Alembic: one environment per database kind (SessionDb, school), each with its version table."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypedDict

from cleversync.errors import ConfigurationError, DatabaseError, DatabaseUnavailableError

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import MetaData
    from sqlalchemy.engine import Connection, Engine

Kind = Literal["sessiondb", "school"]
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
VERSION_TABLES: dict[Kind, str] = {
    "sessiondb": "alembic_version_sessiondb",
    "school": "alembic_version_school",
}


class _EnvironmentOptions(TypedDict):
    """What both environments pass to alembic's ``context.configure`` (checked per key)."""

    target_metadata: MetaData
    version_table: str
    render_as_batch: bool
    compare_type: bool


def metadata_for(kind: Kind) -> MetaData:
    from cleversync.db.schema import SCHOOL_METADATA, SESSION_METADATA

    return SESSION_METADATA if kind == "sessiondb" else SCHOOL_METADATA


def alembic_config(kind: Kind) -> Config:
    from alembic.config import Config

    location = MIGRATIONS_DIR / kind
    if not location.is_dir():
        raise ConfigurationError(
            f"the migrations folder {location} is missing; CleverSync runs from its source "
            "tree (or an install that includes migrations/)"
        )
    config = Config()
    config.set_main_option("script_location", str(location))
    return config


def upgrade(
    engine: Engine, kind: Kind, revision: str = "head", *, what: str | None = None
) -> tuple[str | None, str | None]:
    """Bring the database to ``revision``; returns the revisions before and after.

    Errors are DatabaseError naming the database (``what``, e.g. "school database X"): one
    it cannot reach, one with CleverSync's tables but no version table, one at a revision
    this CleverSync does not know, and one whose tables lack columns their revision has.
    """
    from alembic import command
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from cleversync.db.retry import translate

    what = what or ("SessionDb" if kind == "sessiondb" else "the school database")
    config = alembic_config(kind)
    try:
        before = current_revision(engine, kind)
        _check_known(engine, kind, before, revision, what)
        with (
            engine.connect() as connection,
            _sqlite_foreign_keys_off(connection),
            connection.begin(),
        ):
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            _check_foreign_keys(connection, what)
        after = current_revision(engine, kind)
        _check_schema(engine, kind, after, what)
    except SQLAlchemyError as exc:
        raise (translate(exc, what) or DatabaseError(f"{what}: {type(exc).__name__}")) from exc
    except CommandError as exc:
        raise DatabaseError(f"{what}: {exc}") from exc
    return before, after


@contextmanager
def _sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """SQLite alters a table by copying it and dropping the old one (Alembic's batch mode),
    which foreign keys pointing at it refuse while they are enforced: switch enforcement off
    around the migration (possible only outside a transaction) and on again after it; the
    migration checks every key before it commits. Other databases alter in place."""
    if connection.dialect.name != "sqlite":
        yield
        return
    raw = connection.connection.driver_connection
    assert raw is not None
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


def _check_foreign_keys(connection: Connection, what: str) -> None:
    """On SQLite (whose keys were not enforced while migrating), refuse to commit a migration
    that left a row referring to one that does not exist."""
    if connection.dialect.name != "sqlite":
        return
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        tables = ", ".join(sorted({str(row[0]) for row in broken}))
        raise DatabaseError(
            f"{what}: the migration left rows of {tables} referring to rows that do not exist"
        )


def _check_known(engine: Engine, kind: Kind, current: str | None, target: str, what: str) -> None:
    """Refuse what Alembic would otherwise trip over halfway, with a traceback."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError
    from sqlalchemy import inspect

    script = ScriptDirectory.from_config(alembic_config(kind))
    known = {rev.revision for rev in script.walk_revisions()}
    if target != "head" and target not in known:
        raise DatabaseError(
            f"{what}: there is no revision {target!r} (known: {', '.join(sorted(known))})"
        )
    if current is not None and current not in known:
        try:
            script.get_revision(current)
        except CommandError:
            raise DatabaseError(
                f"{what} is at revision {current!r}, which this CleverSync does not know "
                f"(its newest is {script.get_current_head()}): it was upgraded by a newer "
                "CleverSync; run that version, or restore the database from before"
            ) from None
    if current is None:
        ours = sorted(set(inspect(engine).get_table_names()) & set(metadata_for(kind).tables))
        if ours:
            raise DatabaseError(
                f"{what} has CleverSync's tables ({', '.join(ours)}) but no version table "
                f"{VERSION_TABLES[kind]}, so its schema is unknown and CleverSync will not "
                "change it: it was not made by 'cleversync db upgrade' (or its version table "
                "was dropped); point the school at an empty database, or restore the table"
            )


def _check_schema(engine: Engine, kind: Kind, revision: str | None, what: str) -> None:
    """Every table and column the models expect exists (a hand-edited schema is caught
    here, not by the first sync that writes the missing column)."""
    from sqlalchemy import inspect

    inspector = inspect(engine)
    tables = set(inspector.get_table_names())
    problems = []
    for name, table in sorted(metadata_for(kind).tables.items()):
        if name not in tables:
            problems.append(f"table {name} is missing")
            continue
        have = {column["name"] for column in inspector.get_columns(name)}
        missing = [column.name for column in table.columns if column.name not in have]
        if missing:
            problems.append(f"table {name} has no column {', '.join(missing)}")
    if problems:
        raise DatabaseError(
            f"{what} is at revision {revision} but its schema differs from it: "
            f"{'; '.join(problems)}; it was changed by hand: restore the missing parts, or "
            "give the school a new empty database and run 'cleversync db upgrade' again"
        )


def current_revision(engine: Engine, kind: Kind) -> str | None:
    """The revision in the database's version table; None when it has none.

    Read with a plain SELECT: importing Alembic costs every process about 0.2 s of CPU,
    which a sync (it only checks the revision) should not pay. A table with more than one
    row (branches) is left to Alembic, which knows what that means.
    """
    from sqlalchemy import column, inspect, select, table

    name = VERSION_TABLES[kind]
    with engine.connect() as connection:
        if not inspect(connection).has_table(name):
            return None
        query = select(column("version_num")).select_from(table(name))  # type: ignore[var-annotated]
        values = [str(row[0]) for row in connection.execute(query)]
    if len(values) <= 1:
        return values[0] if values else None
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": name})
        return context.get_current_revision()


@functools.cache  # the scripts are fixed for the process: read them once, not per school run
def head_revision(kind: Kind) -> str | None:
    """The newest revision of ``kind``'s migrations.

    Read from the scripts' ``revision`` and ``down_revision`` assignments without importing
    them (Alembic's ScriptDirectory imports every script, and Alembic itself); anything
    other than one plain line of revisions is left to Alembic.
    """
    try:
        return _single_head(MIGRATIONS_DIR / kind / "versions")
    except ValueError:
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(alembic_config(kind)).get_current_head()


# A module-level ``revision = "..."`` or ``down_revision: str | None = ...`` line.
_ASSIGNMENT = re.compile(r"^(revision|down_revision)\b\s*(?::[^=\n]*)?=\s*(.+?)\s*$", re.MULTILINE)


def _single_head(folder: Path) -> str | None:
    """The one revision no other script revises; ValueError when that is not plain. Each
    script's two assignments are read from their lines (parsing whole scripts cost every
    process more than the rest of the check)."""
    import ast

    revisions: set[str] = set()
    revised: set[str] = set()
    for script in sorted(folder.glob("*.py")):
        found: dict[str, object] = {}
        for name, value in _ASSIGNMENT.findall(script.read_text(encoding="utf-8")):
            if name in found:
                raise ValueError(f"{script.name}: {name} is assigned twice")
            try:
                found[name] = ast.literal_eval(value)
            except (ValueError, SyntaxError) as exc:
                raise ValueError(f"{script.name}: {name} is not a literal") from exc
        revision, down = found.get("revision"), found.get("down_revision")
        if not isinstance(revision, str) or not (down is None or isinstance(down, str)):
            raise ValueError(f"{script.name}: not one plain revision")
        revisions.add(revision)
        if down is not None:
            revised.add(down)
    heads = revisions - revised
    if len(heads) > 1 or not revised <= revisions:
        raise ValueError(f"heads {sorted(heads)}")
    return heads.pop() if heads else None


def require_current(engine: Engine, kind: Kind, what: str, hint: str) -> None:
    """Raise DatabaseUnavailableError unless ``engine``'s schema is at the head revision."""
    current = current_revision(engine, kind)
    head = head_revision(kind)
    if current != head:
        state = "has no CleverSync schema" if current is None else f"is at revision {current}"
        raise DatabaseUnavailableError(f"{what} {state}, not {head}; run '{hint}'")


def run_environment(kind: Kind) -> None:
    """The body of each environment's env.py (online with a connection, or offline SQL)."""
    from alembic import context
    from sqlalchemy import create_engine

    config = context.config
    options: _EnvironmentOptions = {
        "target_metadata": metadata_for(kind),
        "version_table": VERSION_TABLES[kind],
        "render_as_batch": True,  # SQLite can only change tables by copying them
        "compare_type": True,
    }
    if context.is_offline_mode():
        url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
            "sqlalchemy.url"
        )
        context.configure(url=url, literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise ConfigurationError("pass the database URL with -x url=... (or use cleversync db)")
    engine = create_engine(url)
    with engine.begin() as connection:
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()
