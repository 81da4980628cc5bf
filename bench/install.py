"""Databases and whole installations (SessionDb, school databases, local secrets) to sync into."""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Integer, cast, func, select

from cleversync.db.engines import engine_for
from cleversync.db.migrate import upgrade
from cleversync.db.schema import Section, SectionStudent, SectionTeacher, Student, Teacher
from cleversync.db.sessiondb.registry import Registry
from cleversync.secrets import names
from cleversync.secrets.local import LocalSecretStore

if TYPE_CHECKING:
    from cleversync.sandbox import DistrictInfo, SchoolInfo
    from tests.pgserver import PgServer


@dataclass(frozen=True)
class Database:
    """One database: the URL the product is given, and what the floor's bare driver opens."""

    backend: str
    name: str
    url: str
    target: str  # a SQLite file path, or a libpq conninfo string


class SqliteBackend:
    """SQLite files in a folder; school databases are copies of one migrated template."""

    name = "sqlite"

    def __init__(self, root: Path) -> None:
        self.root = root / "sqlite"
        self.root.mkdir(parents=True, exist_ok=True)
        self._template: Path | None = None

    def _new(self, label: str) -> Database:
        path = self.root / f"{label}-{uuid.uuid4().hex[:8]}.sqlite"
        return Database(self.name, path.stem, f"sqlite:///{path}", str(path))

    def session_database(self, label: str) -> Database:
        database = self._new(label)
        _migrate(database.url, "sessiondb")
        return database

    def school_database(self, label: str) -> Database:
        if self._template is None:
            template = self._new("template")
            _migrate(template.url, "school")
            self._template = Path(template.target)
        database = self._new(label)
        source = sqlite3.connect(self._template)
        copy = sqlite3.connect(database.target)
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
        return database

    def drop(self, database: Database) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(database.target + suffix).unlink(missing_ok=True)

    def close(self) -> None:
        pass


class PostgresBackend:
    """Databases on the throwaway cluster; school databases are ``CREATE DATABASE ... TEMPLATE``."""

    name = "postgresql"

    def __init__(self, server: PgServer) -> None:
        import psycopg

        self.server = server
        self._admin = psycopg.connect(
            host="127.0.0.1", port=server.port, user=server.user, dbname="postgres", autocommit=True
        )
        self._template: str | None = None

    def _create(self, label: str, template: str | None = None) -> Database:
        name = f"{label.replace('-', '_')[:40]}_{uuid.uuid4().hex[:8]}"
        clause = f' TEMPLATE "{template}"' if template else ""
        self._admin.execute(f'CREATE DATABASE "{name}"{clause}')
        conninfo = f"host=127.0.0.1 port={self.server.port} user={self.server.user} dbname={name}"
        return Database(self.name, name, self.server.url(name), conninfo)

    def session_database(self, label: str) -> Database:
        database = self._create(label)
        _migrate(database.url, "sessiondb")
        return database

    def school_database(self, label: str) -> Database:
        if self._template is None:
            template = self._create("template")
            _migrate(template.url, "school")
            self._template = template.name
        return self._create(label, self._template)

    def drop(self, database: Database) -> None:
        self._admin.execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')

    def close(self) -> None:
        self._admin.close()


Backend = SqliteBackend | PostgresBackend


def _migrate(url: str, kind: Any) -> None:
    engine = engine_for(url, create_sqlite_file=True)
    try:
        upgrade(engine, kind)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class InstalledSchool:
    school_id: int
    clever_id: str
    database: Database


class Installation:
    """What ``cleversync db upgrade``, ``district add`` and ``school add`` leave behind: a data
    folder with the local secrets file, a migrated SessionDb, the district's Clever app
    credentials, and one migrated database per school."""

    def __init__(
        self,
        root: Path,
        backend: Backend,
        district: DistrictInfo,
        schools: list[SchoolInfo],
        label: str,
    ) -> None:
        self.backend = backend
        self.data_dir = root / f"install-{label}-{uuid.uuid4().hex[:6]}"
        store = LocalSecretStore(self.data_dir / "secrets.json", cache_seconds=0)
        self.session = backend.session_database(f"{label}-session")
        store.set(names.SESSIONDB_CONNECTION_STRING, self.session.url)
        engine = engine_for(self.session.url)
        try:
            registry = Registry(engine)
            record = registry.add_district(
                name=district.name[:200], clever_id=district.id, prefix="Bench-District"
            )
            self.district_id = record.district_id
            store.set(names.client_id(record.prefix), district.client_id)
            store.set(names.client_secret(record.prefix), district.client_secret)
            self.schools: list[InstalledSchool] = []
            for n, school in enumerate(schools, start=1):
                database = backend.school_database(f"{label}-school-{n}")
                prefix = f"Bench-School-{n}"
                store.set(names.connection_string(prefix), database.url)
                added = registry.add_school(
                    district_id=record.district_id,
                    clever_id=school.id,
                    name=school.name[:200],
                    prefix=prefix,
                    database_name=database.name,
                )
                self.schools.append(InstalledSchool(added.school_id, school.id, database))
        finally:
            engine.dispose()

    def env(
        self, api_base_url: str, token_url: str, *, page_size: int, parallel: int
    ) -> dict[str, str]:
        """The ``CleverSync__`` variables a CLI run or the Functions app would be given."""
        return {
            "CleverSync__DataDir": str(self.data_dir),
            "CleverSync__Clever__ApiBaseUrl": api_base_url,
            "CleverSync__Clever__TokenUrl": token_url,
            "CleverSync__Sync__PageSize": str(page_size),
            "CleverSync__Concurrency__MaxSchoolsInParallel": str(parallel),
        }

    def drop(self) -> None:
        for school in self.schools:
            self.backend.drop(school.database)
        self.backend.drop(self.session)


def fingerprint(url: str) -> dict[str, Any]:
    """Row counts and the newest UpdatedAt of each school table: equal before and after a run
    means the run wrote nothing."""
    engine = engine_for(url)
    out: dict[str, Any] = {}
    try:
        with engine.connect() as conn:
            for model in (Student, Teacher, Section):
                table = model.__table__
                count, newest, active = conn.execute(
                    select(
                        func.count(),
                        func.max(table.c.UpdatedAt),
                        func.sum(cast(table.c.IsActive, Integer)),
                    )
                ).one()
                out[table.name] = [count, str(newest), int(active or 0)]
            for link in (SectionStudent, SectionTeacher):
                table = link.__table__
                out[table.name] = conn.scalar(select(func.count()).select_from(table))
    finally:
        engine.dispose()
    return out
