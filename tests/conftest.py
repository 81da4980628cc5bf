"""Shared fixtures: settings isolated from the machine, databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.azurite import Azurite
from tests.azurite import missing_reason as azurite_missing
from tests.databases import sqlite_clone, use_folder
from tests.pgserver import Kind, PgServer, find_bin_dir

IN_CI = os.environ.get("CI", "").lower() == "true"

# The session's PostgreSQL cluster once a test has asked for it (so tests that do not need it
# never start it, and the databases a test made can still be dropped when it ends).
_running_pg: list[PgServer] = []


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's CleverSync variables; local data goes to tmp_path."""
    for key in list(os.environ):
        if key.lower().startswith("cleversync") or key == "APPLICATIONINSIGHTS_CONNECTION_STRING":
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CleverSync__DataDir", str(tmp_path / "data"))


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Entry points configure logging process-wide; each test starts from the same state."""
    root = logging.getLogger()
    names = ("cleversync", "azure")
    levels = {name: logging.getLogger(name).level for name in names}
    handlers, root_level = list(root.handlers), root.level
    filters = {id(h): list(h.filters) for h in handlers}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        handler.filters = filters[id(handler)]
    root.setLevel(root_level)


@pytest.fixture(scope="session", autouse=True)
def _database_templates(tmp_path_factory: pytest.TempPathFactory) -> None:
    use_folder(tmp_path_factory.mktemp("templates"))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        reason = "no PostgreSQL server binaries (initdb, pg_ctl) on this machine"
        if IN_CI:
            pytest.fail(f"{reason}; CI must run the PostgreSQL tests (.ci/run installs them)")
        pytest.skip(reason)
    server = PgServer(bin_dir)
    try:
        server.start()
    except Exception:
        server.stop()
        raise
    _running_pg.append(server)
    yield server
    _running_pg.remove(server)
    server.stop()


@pytest.fixture(autouse=True)
def _drop_test_databases() -> Iterator[None]:
    """Drop the PostgreSQL databases a test made once it ends (after its other fixtures,
    which set up later, have closed their engines)."""
    yield
    for server in _running_pg:
        server.drop_made()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh, empty PostgreSQL database."""
    return pg_server.create_database()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL: SQLite and PostgreSQL in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite'}"
    return request.getfixturevalue("pg_url")


def _migrated_url(request: pytest.FixtureRequest, tmp_path: Path, kind: Kind) -> str:
    if request.param == "sqlite":
        return sqlite_clone(kind, tmp_path / f"{kind}.sqlite")
    server: PgServer = request.getfixturevalue("pg_server")
    return server.clone_database(kind)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def school_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh school database at the head revision: SQLite and PostgreSQL in turn."""
    return _migrated_url(request, tmp_path, "school")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def sessiondb_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh SessionDb at the head revision: SQLite and PostgreSQL in turn."""
    return _migrated_url(request, tmp_path, "sessiondb")


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """Azurite's queue service on a free loopback port (the real Storage queue API)."""
    reason = azurite_missing()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"{reason}; CI must run the queue tests (.ci/run installs it)")
        pytest.skip(reason)
    server = Azurite(tmp_path_factory.mktemp("azurite"))
    server.start()
    yield server
    server.stop()
