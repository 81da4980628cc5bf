"""A whole CleverSync installation for end-to-end tests: the Clever sandbox served over real
HTTP on loopback, SessionDb and one database per school (SQLite or PostgreSQL), secrets in
memory, and the real Services, SchoolSync and Orchestrator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cleversync.db.engines import engine_for
from cleversync.db.migrate import upgrade
from cleversync.db.schema import Section, SectionStudent, SectionTeacher, Student, Teacher
from cleversync.db.sessiondb.registry import DistrictRecord, SchoolRecord
from cleversync.orchestrator import RunResult
from cleversync.redaction import Redactor
from cleversync.sandbox import Sandbox
from cleversync.secrets import names
from cleversync.services import Services
from cleversync.settings import Settings
from tests.databases import sqlite_clone
from tests.fakes import MemorySecretStore
from tests.pgserver import Kind

FAST = {
    "CleverSync__Retry__CleverApi__BackoffBase": "0",
    "CleverSync__Retry__Database__BackoffBase": "0",
    "CleverSync__Sync__PageSize": "10",
    "CleverSync__Sync__BatchSize": "7",
}


class World:
    def __init__(
        self,
        sandbox: Sandbox,
        api_base_url: str,
        token_url: str,
        new_database: Callable[[str], str],
        env: dict[str, str],
        migrated_database: Callable[[str, Kind], str] | None = None,
    ) -> None:
        """``new_database(name)`` makes an empty database; ``migrated_database(name, kind)``,
        if given, one already at the head revision (else: an empty one, then migrated)."""
        self.sandbox = sandbox
        self.new_database = new_database
        self._migrated_database = migrated_database
        self.redactor = Redactor()
        self.secrets = MemorySecretStore(redactor=self.redactor)
        self.env = {
            **FAST,
            "CleverSync__Clever__ApiBaseUrl": api_base_url,
            "CleverSync__Clever__TokenUrl": token_url,
            **env,
        }
        session_url = self.migrated_database("sessiondb", "sessiondb")
        self.secrets.set(names.SESSIONDB_CONNECTION_STRING, session_url)
        self.services = self.make_services()
        self.districts: list[DistrictRecord] = []
        self.schools: list[SchoolRecord] = []
        self.clever_ids: dict[int, str] = {}

    def migrated_database(self, name: str, kind: Kind) -> str:
        if self._migrated_database is not None:
            return self._migrated_database(name, kind)
        url = self.new_database(name)
        engine = engine_for(url, create_sqlite_file=True)
        try:
            upgrade(engine, kind)
        finally:
            engine.dispose()
        return url

    def make_services(self, **env: str) -> Services:
        settings = Settings.load({**self.env, **env})
        return Services(settings, secret_store=self.secrets, redactor=self.redactor)

    def register_all(self) -> None:
        registry = self.services.registry
        for n, district in enumerate(self.sandbox.districts, start=1):
            record = registry.add_district(
                name=district.name, clever_id=district.id, prefix=f"District-{n}"
            )
            self.secrets.set(names.client_id(record.prefix), district.client_id)
            self.secrets.set(names.client_secret(record.prefix), district.client_secret)
            self.districts.append(record)
            for m, school in enumerate(district.schools, start=1):
                self.add_school(record, school.id, school.name, f"School-{n}-{m}")

    def add_school(
        self,
        district: DistrictRecord,
        clever_id: str,
        name: str,
        prefix: str,
        *,
        migrate: bool = True,
    ) -> SchoolRecord:
        name = prefix.lower()
        url = self.migrated_database(name, "school") if migrate else self.new_database(name)
        self.secrets.set(names.connection_string(prefix), url)
        school = self.services.registry.add_school(
            district_id=district.district_id,
            clever_id=clever_id,
            name=name,
            prefix=prefix,
            database_name=prefix,
        )
        self.schools.append(school)
        return school

    def sync(self, services: Services | None = None, **kwargs: Any) -> RunResult:
        return (services or self.services).orchestrator().run(**kwargs)

    def school(self, index: int = 0) -> SchoolRecord:
        return self.services.registry.get_school(self.schools[index].school_id)

    def engine(self, school: SchoolRecord):
        return self.services.school_engine(school)

    def table(self, school: SchoolRecord, model: Any, *columns: str) -> list[dict[str, Any]]:
        table = model.__table__
        with self.engine(school).connect() as conn:
            rows = conn.execute(select(table)).all()
        return [dict(r._mapping) for r in rows]

    def students(self, school: SchoolRecord) -> dict[str, dict[str, Any]]:
        return {r["CleverStudentId"]: r for r in self.table(school, Student)}

    def teachers(self, school: SchoolRecord) -> dict[str, dict[str, Any]]:
        return {r["CleverTeacherId"]: r for r in self.table(school, Teacher)}

    def sections(self, school: SchoolRecord) -> dict[str, dict[str, Any]]:
        return {r["CleverSectionId"]: r for r in self.table(school, Section)}

    def enrolments(self, school: SchoolRecord) -> set[tuple[str, str]]:
        """(Clever section id, Clever user id) for every stored student and teacher link."""
        with self.engine(school).connect() as conn:
            students = conn.execute(
                select(Section.CleverSectionId, Student.CleverStudentId)
                .join(SectionStudent, SectionStudent.SectionId == Section.SectionId)
                .join(Student, Student.StudentId == SectionStudent.StudentId)
            ).all()
            teachers = conn.execute(
                select(Section.CleverSectionId, Teacher.CleverTeacherId)
                .join(SectionTeacher, SectionTeacher.SectionId == Section.SectionId)
                .join(Teacher, Teacher.TeacherId == SectionTeacher.TeacherId)
            ).all()
        return {tuple(r) for r in students} | {tuple(r) for r in teachers}

    def history(self, **filters: Any) -> list[dict[str, Any]]:
        return self.services.school_sync().history.rows(**filters)

    def school_sync_cursor(self, school_id: int = 1) -> str | None:
        last = self.services.school_sync().history.last_good_run(school_id)
        return last.last_event_id if last else None

    def close(self) -> None:
        self.services.close()


@contextmanager
def make_world(
    backend: str,
    tmp_path: Path,
    pg_server: Any,
    *,
    sandbox: Sandbox,
    env: dict[str, str] | None = None,
) -> Iterator[World]:
    def new_database(name: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'{name}.sqlite'}"
        return pg_server.create_database(name.replace("-", "_")[:20])

    def migrated_database(name: str, kind: Kind) -> str:
        if backend == "sqlite":
            return sqlite_clone(kind, tmp_path / f"{name}.sqlite")
        return pg_server.clone_database(kind, name.replace("-", "_")[:20])

    with sandbox.serve() as running:
        world = World(
            sandbox,
            running.api_base_url,
            running.token_url,
            new_database,
            # Local files (the .eml outbox) in the test's folder, not the working directory.
            {"CleverSync__DataDir": str(tmp_path / "data"), **(env or {})},
            migrated_database=migrated_database,
        )
        try:
            yield world
        finally:
            world.close()


def clever_school_id(world: World, index: int = 0) -> str:
    return world.schools[index].clever_school_id


def expected_students(world: World, index: int = 0) -> dict[str, dict[str, Any]]:
    """The sandbox's students of a school, as our Students table should hold them."""
    out = {}
    for user in world.sandbox.students(clever_school_id(world, index)):
        name = user.get("name") or {}
        role = user["roles"]["student"]
        out[user["id"]] = {
            "FirstName": _clean(name.get("first")),
            "LastName": _clean(name.get("last")),
            "Email": _clean(user.get("email")),
            "Grade": _clean(role.get("grade")),
            "StudentNumber": _clean(role.get("student_number")),
        }
    return out


def stored_students(
    world: World, index: int = 0, *, active_only: bool = True
) -> dict[str, dict[str, Any]]:
    columns = ("FirstName", "LastName", "Email", "Grade", "StudentNumber")
    return {
        clever_id: {c: row[c] for c in columns}
        for clever_id, row in world.students(world.school(index)).items()
        if row["IsActive"] or not active_only
    }


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None
