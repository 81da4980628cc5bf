"""A school database as a sync run uses it: transactions with retries, and the run's reads.

The sync modules hold no SQL and no SQLAlchemy: they get a ``SchoolDb`` (or the
``Transaction`` it offers) and call the functions of this package with the connection
it hands them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeAlias

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine

from cleversync.db.migrate import require_current
from cleversync.db.retry import in_transaction, translated
from cleversync.db.school.entities import SECTION, STUDENT, TEACHER, Entity
from cleversync.db.school.writer import Written, write_rows, write_sections
from cleversync.db.sessiondb.registry import SchoolRecord
from cleversync.settings import RetryPolicy
from cleversync.sync.mapping import Row, SectionRow

# What runs inside one transaction; what runs it is a ``Transaction``: (what, work) -> result.
Work: TypeAlias = Callable[[Connection], Any]
# What a unit of work receives: sync/ names it without importing SQLAlchemy.
SchoolConnection: TypeAlias = Connection
SchoolEngine: TypeAlias = Engine
EngineFactory: TypeAlias = Callable[[SchoolRecord], SchoolEngine]


class SchoolDb:
    """One school's database for one run."""

    def __init__(
        self,
        engine: SchoolEngine,
        *,
        name: str,
        policy: RetryPolicy,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from cleversync.db.engines import named

        self.engine = engine
        self.name = named(name, engine)  # a SQLite file by its absolute path
        self._policy = policy
        self._sleep = sleep

    def transaction(self, what: str, work: Work) -> Any:
        return in_transaction(
            self.engine,
            work,
            policy=self._policy,
            what=f"{what} in school database {self.name}",
            sleep=self._sleep,
        )

    def require_current(self, hint: str) -> None:
        """DatabaseUnavailableError unless the tables are at the head revision."""
        what = f"school database {self.name}"
        with translated(what):
            require_current(self.engine, "school", what, hint)

    def emptied(self, entities: Iterable[Entity]) -> list[str]:
        """The names of the ``entities`` whose table holds no active row."""
        expected = list(entities)
        if not expected:
            return []

        def empty(conn: Connection) -> list[str]:
            names: list[str] = [
                e.name
                for e in expected
                if conn.execute(
                    select(e.table.c[e.key]).where(e.table.c.IsActive.is_(True)).limit(1)
                ).first()
                is None
            ]
            return names

        names: list[str] = self.transaction("looking for active rows", empty)
        return names

    def dispose(self) -> None:
        self.engine.dispose()


def count_active(conn: Connection, entity: Entity) -> int:
    table = entity.table
    query = select(func.count()).select_from(table).where(table.c.IsActive.is_(True))
    return conn.scalar(query) or 0


def write_page(
    conn: Connection,
    students: Sequence[Row],
    teachers: Sequence[Row],
    sections: Sequence[SectionRow],
    now: datetime,
) -> dict[str, Written]:
    """Write one page of events' rows; returns what was written by entity."""
    written: dict[str, Written] = {}
    # Users first, so the sections of this page can link to students created in it.
    for rows, entity in ((students, STUDENT), (teachers, TEACHER)):
        if rows:
            written[entity.name] = write_rows(conn, entity, rows, now, keys=False)
    if sections:
        written[SECTION.name] = write_sections(conn, sections, now)
    return written
