"""The laptop's defaults (no Key Vault): SQLite files under the data folder, created on demand.

Only the CLI's set-up commands invent connection strings, and only SQLite ones next to a
SQLite SessionDb: with Key Vault, or with SessionDb on a server (Azure SQL, PostgreSQL), a
school's connection string is the operator's to give ('school set-connection-string').
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cleversync.secrets import names

if TYPE_CHECKING:
    from cleversync.services import Services


def ensure_local_sessiondb(services: Services) -> None:
    """On a laptop with no SessionDb yet, store a connection string for a SQLite file."""
    store = services.secret_store
    if services.settings.uses_key_vault or store.get(names.SESSIONDB_CONNECTION_STRING):
        return
    store.set(names.SESSIONDB_CONNECTION_STRING, f"sqlite:///{local_sessiondb_file(services)}")


def local_sessiondb_file(services: Services) -> Path:
    return (services.settings.data_dir / "sessiondb.sqlite").absolute()


def sessiondb_is_sqlite(services: Services) -> bool:
    """Whether SessionDb is a SQLite file (the laptop set-up), from its stored string."""
    from cleversync.connstr import to_url

    value = services.secret_store.get(names.SESSIONDB_CONNECTION_STRING)
    if not value:
        return not services.settings.uses_key_vault  # 'db upgrade' would make a SQLite one
    try:
        return to_url(value).get_backend_name() == "sqlite"
    except Exception:  # a bad string is reported by the commands that connect
        return False


def known_school_connection_string(services: Services, prefix: str) -> tuple[str | None, bool]:
    """The school's connection string if the store has one; on a laptop (no Key Vault, and
    SessionDb a SQLite file) otherwise a new local SQLite one. The flag says it is new (to be
    stored once the school is registered); otherwise (None, False): nothing is invented."""
    existing = services.secret_store.get(names.connection_string(prefix))
    if existing is not None or services.settings.uses_key_vault:
        return existing, False
    if not sessiondb_is_sqlite(services):
        return None, False
    path = (services.settings.data_dir / f"school-{prefix}.sqlite").absolute()
    return f"sqlite:///{path}", True


def location(connection_string: str) -> str:
    """Where a database is, for messages: a SQLite file's absolute path, else the server and
    database (never a password)."""
    from cleversync.connstr import database_name, to_url

    try:
        url = to_url(connection_string)
    except Exception:
        return "an unreadable connection string"
    if url.get_backend_name() == "sqlite":
        database = url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return f"SQLite {database or ':memory:'}"
        return f"SQLite file {Path(database).absolute()}"
    if "odbc_connect" in url.query:
        from cleversync.connstr import parse_keyvalues

        odbc = url.query["odbc_connect"]
        pairs = {
            k.lower(): v for k, v in parse_keyvalues(odbc if isinstance(odbc, str) else odbc[0])
        }
        server = pairs.get("server", "?")
        return f"SQL Server {server}, database {pairs.get('database') or '?'}"
    host = url.host or "localhost"
    port = f":{url.port}" if url.port else ""
    return f"{url.get_backend_name()} {host}{port}, database {database_name(connection_string)}"
