"""Alembic: one environment per database kind (SessionDb, school), each with its version table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cleversync.errors import ConfigurationError, DatabaseUnavailableError

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import MetaData
    from sqlalchemy.engine import Engine

Kind = Literal["sessiondb", "school"]
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
VERSION_TABLES: dict[Kind, str] = {
    "sessiondb": "alembic_version_sessiondb",
    "school": "alembic_version_school",
}


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


def upgrade(engine: Engine, kind: Kind, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the database to ``revision``; returns the revisions before and after."""
    from alembic import command

    config = alembic_config(kind)
    before = current_revision(engine, kind)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return before, current_revision(engine, kind)


def current_revision(engine: Engine, kind: Kind) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": VERSION_TABLES[kind]}
        )
        return context.get_current_revision()


def head_revision(kind: Kind) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(kind)).get_current_head()


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
    options = {
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
