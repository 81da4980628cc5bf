"""Set-based writes to a school database: never a query per record.

For each batch: the rows already stored are read in one query, the plan is made in Python
(``plan.py``), and inserts and updates go out as one ``executemany`` each. Enrolment links
are diffed per section and written the same way. Every function takes an open connection:
the caller decides the transaction (one per batch, or one per page of events).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import ColumnElement, Table, and_, any_, bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.sql.dml import Delete, Update

from cleversync.db.bulk import Bulk
from cleversync.db.retry import classify
from cleversync.db.schema import SectionStudent, SectionTeacher
from cleversync.db.school.entities import ENTITIES, SECTION, STUDENT, TEACHER, Entity
from cleversync.errors import RecordError
from cleversync.redaction import mask_credentials
from cleversync.sync.mapping import Row, SectionRow, clean
from cleversync.sync.outcome import EntityOutcome
from cleversync.sync.plan import (
    BatchPlan,
    ChangeItem,
    Existing,
    Fields,
    batch_changes,
    display_name,
    plan_batch,
    plan_links,
)
from cleversync.vocabulary import ChangeKind

# SQL Server allows 2,100 parameters a statement: IN lists stay well under it.
MAX_IN = 2000


@dataclass
class Written:
    """What a batch wrote: the primary key of every row in it (of the rows inserted, only
    when asked for), which were written, and (on demand, up to a limit) the change of each
    written record."""

    keys: dict[str, int] = field(default_factory=dict)
    inserted_keys: set[int] = field(default_factory=set)
    updated_keys: set[int] = field(default_factory=set)
    plan: BatchPlan | None = None
    existing: Mapping[str, Existing] = field(default_factory=dict)
    links: dict[str, Fields] = field(default_factory=dict)  # by section Clever id
    new: int = 0  # rows inserted (their keys are in inserted_keys when they were read)

    @property
    def inserted(self) -> int:
        return self.new

    @property
    def updated(self) -> int:
        return len(self.updated_keys)

    @property
    def changed(self) -> int:
        return self.inserted + self.updated

    def changes(self, limit: int) -> list[ChangeItem]:
        """The first ``limit`` changes (described only when asked: a run past its cap of
        change detail pays nothing for them)."""
        if self.plan is None or limit <= 0:
            return []
        items = batch_changes(self.plan, self.existing, limit)
        if self.links:  # sections whose links changed: merged, or on their own
            items = [
                (c, k, n, {**(f or {}), **self.links[c]}) if c in self.links else (c, k, n, f)
                for c, k, n, f in items
            ]
            for _, row in self.plan.unchanged:
                if len(items) >= limit:
                    break
                if row.clever_id in self.links:
                    fields = self.links[row.clever_id]
                    items.append(
                        (row.clever_id, ChangeKind.UPDATED, display_name(row.values), fields)
                    )
        return items


_Key = TypeVar("_Key", str, int)


def chunks(items: Sequence[_Key], size: int = MAX_IN) -> Iterator[list[_Key]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


# The parameter of ``one_of``: a part of the values, given when the statement is executed.
VALUES = "one_of_values"


def one_of(conn: Connection, column: ColumnElement[Any]) -> ColumnElement[bool]:
    """``column IN (:VALUES)``; on PostgreSQL ``= ANY(:VALUES)``, one array parameter instead
    of hundreds, which the server parses and plans in half the time.

    The values go with each execution (``{VALUES: part}``), not into the statement: a
    statement's bound values sit in SQLAlchemy's reference cycles, which only the cyclic
    collector frees, and it runs seldom (``services.GC_THRESHOLDS``). A big school's full sync
    kept every batch's ids that way, some 40 bytes a student more at its peak. One
    ``one_of`` a statement: a second would take the same values."""
    if conn.dialect.name == "postgresql":
        # Imported here: the PostgreSQL dialect is loaded only where it is used.
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == any_(bindparam(VALUES, type_=ARRAY(column.type)))
    return column.in_(bindparam(VALUES, expanding=True))


def read_existing(
    conn: Connection, entity: Entity, clever_ids: Sequence[str]
) -> dict[str, Existing]:
    table = entity.table
    columns = [table.c[entity.key], table.c[entity.clever_key], table.c.IsActive]
    columns += [table.c[c] for c in entity.columns]
    found: dict[str, Existing] = {}
    query = select(*columns).where(one_of(conn, table.c[entity.clever_key]))
    for part in chunks(clever_ids):
        # By position, in the order selected: a row's _mapping costs a lookup per column.
        # A part's rows in one fetch (.all()), here and in the readers below that look up
        # unique keys, so at most MAX_IN rows: iterating a result fetches a row a call, a
        # third slower on PostgreSQL (psycopg's fetchone is Python; 10k rows: 35-40 ms
        # against 26 ms) and a few percent on SQLite.
        for key, clever_id, is_active, *values in conn.execute(query, {VALUES: part}).all():
            found[clever_id] = Existing(key=key, values=tuple(values), is_active=bool(is_active))
    return found


def stored_versions(
    conn: Connection, entity: Entity, clever_ids: Sequence[str]
) -> dict[str, datetime | None]:
    """``LastModifiedInClever`` of the stored active rows among ``clever_ids``."""
    table = entity.table
    found: dict[str, datetime | None] = {}
    query = select(table.c[entity.clever_key], table.c.LastModifiedInClever).where(
        one_of(conn, table.c[entity.clever_key]), table.c.IsActive.is_(True)
    )
    for part in chunks(clever_ids):
        for clever_id, last_modified in conn.execute(query, {VALUES: part}).all():
            found[clever_id] = last_modified
    return found


def keys_for(conn: Connection, entity: Entity, clever_ids: Iterable[str]) -> dict[str, int]:
    """Primary keys of the given Clever ids that are stored (unknown ids are left out)."""
    table = entity.table
    ids = list(dict.fromkeys(clever_ids))
    found: dict[str, int] = {}
    query = select(table.c[entity.clever_key], table.c[entity.key]).where(
        one_of(conn, table.c[entity.clever_key])
    )
    for part in chunks(ids):
        found.update(conn.execute(query, {VALUES: part}).all())
    return found


_TRAILER = ("IsActive", "DeactivatedAt", "LastModifiedInClever", "CreatedAt", "UpdatedAt")


def _inserts(entity: Entity) -> Bulk:
    return Bulk(insert(entity.table), (entity.clever_key, *entity.columns, *_TRAILER), plain=True)


def _updates(entity: Entity) -> Bulk:
    """A changed or inactive row: its columns, active again, its version and time."""
    table = entity.table
    names = (*entity.columns, "IsActive", "DeactivatedAt", "LastModifiedInClever", "UpdatedAt")
    statement = (
        update(table)
        .where(table.c[entity.key] == bindparam("_key"))
        .values({c: bindparam(c) for c in names})
    )
    return Bulk(statement, (*names, "_key"))


def _link_inserts(table: Table, member_column: str) -> Bulk:
    return Bulk(insert(table), ("SectionId", member_column), plain=True)


def _link_deletes(table: Table, member_column: str) -> Bulk:
    statement = delete(table).where(
        and_(table.c.SectionId == bindparam("_s"), table.c[member_column] == bindparam("_m"))
    )
    return Bulk(statement, ("_s", "_m"))


# Each compiled once per dialect, on first use.
INSERTS = {entity.name: _inserts(entity) for entity in ENTITIES}
UPDATES = {entity.name: _updates(entity) for entity in ENTITIES}
LINKS = {
    name: (_link_inserts(table, column), _link_deletes(table, column))
    for name, table, column in (
        ("Student", SectionStudent.__table__, "StudentId"),
        ("Teacher", SectionTeacher.__table__, "TeacherId"),
    )
}


def write_rows(
    conn: Connection, entity: Entity, rows: Sequence[Row], now: datetime, *, keys: bool = True
) -> Written:
    """Insert new rows, update changed or inactive ones; unchanged rows are not written.
    ``keys``: read the primary keys of the rows inserted (what sections need for their
    links; without it ``Written.keys`` holds only the rows that were stored already)."""
    if not rows:
        return Written()
    existing = read_existing(conn, entity, [row.clever_id for row in rows])
    plan = plan_batch(rows, existing)
    INSERTS[entity.name].run(
        conn,
        [
            (row.clever_id, *row.values.values(), True, None, row.last_modified, now, now)
            for row in plan.inserts
        ],
    )
    UPDATES[entity.name].run(
        conn,
        [
            (*row.values.values(), True, None, row.last_modified, now, key)
            for key, row in plan.updates
        ],
    )
    stored = {
        row.clever_id: existing[row.clever_id].key for row in rows if row.clever_id in existing
    }
    inserted = (
        keys_for(conn, entity, [row.clever_id for row in plan.inserts])
        if keys and plan.inserts
        else {}
    )
    return Written(
        keys=stored | inserted,
        inserted_keys=set(inserted.values()),
        updated_keys={key for key, _ in plan.updates},
        plan=plan,
        existing=existing,
        new=len(plan.inserts),
    )


def write_sections(conn: Connection, rows: Sequence[SectionRow], now: datetime) -> Written:
    """Sections and their enrolment links, replaced with each section's current lists.

    Links to students or teachers this school's database does not hold are skipped (real
    Clever sections list them often); the section is kept. A section whose links changed
    counts as updated; its change lists the links removed (old) and added (new).
    """
    rows = list({row.clever_id: row for row in rows}.values())
    written = write_rows(conn, SECTION, rows, now)
    if not rows:
        return written
    students = _write_links(
        conn,
        rows,
        written.keys,
        SectionStudent.__table__,
        "StudentId",
        STUDENT,
        lambda row: row.student_ids,
    )
    teachers = _write_links(
        conn,
        rows,
        written.keys,
        SectionTeacher.__table__,
        "TeacherId",
        TEACHER,
        lambda row: row.teacher_ids,
    )
    # A section whose links changed was written: it counts as updated, unless it was
    # inserted in this batch (and once, even if its columns changed too).
    relinked = (students.keys() | teachers.keys()) - written.inserted_keys
    if relinked:
        written.updated_keys |= relinked
        # Their change lists the members' Clever ids unlinked (old) and linked (new).
        clever_ids = {key: clever_id for clever_id, key in written.keys.items()}
        for label, changed in (("Students", students), ("Teachers", teachers)):
            for key, (removed, added) in changed.items():
                if key in relinked:
                    fields = written.links.setdefault(clever_ids[key], {})
                    fields[label] = (", ".join(removed) or None, ", ".join(added) or None)
    return written


def _write_links(
    conn: Connection,
    rows: Sequence[SectionRow],
    section_keys: dict[str, int],
    table: Table,
    member_column: str,
    member_entity: Entity,
    members: Callable[[SectionRow], tuple[str, ...]],
) -> dict[int, tuple[list[str], list[str]]]:
    """Make each section's links to ``member_entity`` exactly its current list; returns, by
    section whose links changed, the members' Clever ids removed and added.

    The stored links are read with their members' Clever ids (one join), so only the
    members of links to add are looked up; those this school does not hold are skipped.
    """
    member = member_entity.table
    desired = {section_keys[row.clever_id]: set(members(row)) for row in rows}
    stored: dict[int, dict[str, int]] = {key: {} for key in desired}
    query = (
        select(table.c.SectionId, member.c[member_entity.clever_key], table.c[member_column])
        .join(member, member.c[member_entity.key] == table.c[member_column])
        .where(one_of(conn, table.c.SectionId))
    )
    for part in chunks(list(desired)):
        # Iterated, not fetched at once: a part's links grow with its sections' sizes
        # (MAX_IN sections of 30 students: 60,000 rows, 7 MB more at once).
        for section, clever_id, key in conn.execute(query, {VALUES: part}):
            stored[section][clever_id] = key
    add_ids, remove_ids = plan_links(desired, {s: set(m) for s, m in stored.items()})
    known = keys_for(conn, member_entity, [m for _, m in add_ids]) if add_ids else {}
    add = [(s, known[m]) for s, m in add_ids if m in known]
    remove = [(s, stored[s][m]) for s, m in remove_ids]
    changed: dict[int, tuple[list[str], list[str]]] = {}
    for s, m in remove_ids:
        changed.setdefault(s, ([], []))[0].append(m)
    for s, m in add_ids:
        if m in known:
            changed.setdefault(s, ([], []))[1].append(m)
    inserts, deletes = LINKS[member_entity.name]
    inserts.run(conn, add)
    deletes.run(conn, remove)
    return changed


def missing_rows(conn: Connection, entity: Entity, seen: Container[str]) -> tuple[list[int], int]:
    """Primary keys of the active rows whose Clever id is not in ``seen`` (what a full sync
    may remove), and how many rows are active. The rows are streamed, not held: memory keeps
    the missing keys, not a copy of every active row beside ``seen``."""
    table = entity.table
    query = select(table.c[entity.clever_key], table.c[entity.key]).where(
        table.c.IsActive.is_(True)
    )
    missing: list[int] = []
    active = 0
    for clever_id, key in conn.execution_options(yield_per=2000).execute(query):
        active += 1
        if clever_id not in seen:
            missing.append(key)
    return missing, active


def describe_rows(
    conn: Connection, entity: Entity, keys: Sequence[int]
) -> list[tuple[str, str | None]]:
    """(Clever id, display name) of the rows with these primary keys (for change detail)."""
    table = entity.table
    named = [c for c in ("Name", "FirstName", "LastName") if c in entity.columns]
    found: list[tuple[str, str | None]] = []
    query = select(table.c[entity.clever_key], *(table.c[c] for c in named)).where(
        one_of(conn, table.c[entity.key])
    )
    for part in chunks(list(keys)):
        for clever_id, *values in conn.execute(query, {VALUES: part}).all():
            found.append(
                (clever_id, display_name({c: clean(v) for c, v in zip(named, values, strict=True)}))
            )
    return found


def remove_rows(
    conn: Connection, entity: Entity, keys: Sequence[int], *, mode: str, now: datetime
) -> int:
    """Delete the rows (their links cascade) or deactivate them (``DeleteMode=Deactivate``)."""
    table = entity.table
    removed = 0
    statement: Update | Delete
    if mode == "Deactivate":
        statement = (
            update(table)
            .where(one_of(conn, table.c[entity.key]))
            .values(IsActive=False, DeactivatedAt=now, UpdatedAt=now)
        )
    else:
        statement = delete(table).where(one_of(conn, table.c[entity.key]))
    for part in chunks(list(keys)):
        removed += conn.execute(statement, {VALUES: part}).rowcount or 0
    return removed


# Records one batch may lose to the database refusing their values; past this, it is the
# database (a schema out of step, a broken rule), not a few records, and the batch fails.
MAX_REFUSED = 10

_T = TypeVar("_T")


class Transaction(Protocol):
    """Runs ``work`` in one transaction (retried if transient); ``what`` names it in errors."""

    def __call__(self, what: str, work: Callable[[Connection], _T], /) -> _T: ...


def write_refusing(
    transaction: Transaction,
    entity: Entity,
    rows: Sequence[Row],
    now: Callable[[], datetime],
    outcome: EntityOutcome,
) -> None:
    """Write a batch in one transaction, counting what was written. When the database
    refuses the batch for its values, each half is written on its own, down to the single
    records it refuses: those are skipped (counted, logged by Clever id) and the rest is
    written. If it refuses every record of a batch on its own, or more than
    ``MAX_REFUSED``, the database is at fault, not the records: the error is raised."""
    refused = _write_or_split(transaction, entity, list(rows), now, outcome, [MAX_REFUSED])
    if refused and len(refused) == len(rows) > 1:
        raise refused[0][1]
    for row, error in refused:
        outcome.record_failure(
            RecordError(row.clever_id, f"the database refused it: {refusal(error)}")
        )


def _write_or_split(
    transaction: Transaction,
    entity: Entity,
    rows: list[Row],
    now: Callable[[], datetime],
    outcome: EntityOutcome,
    budget: list[int],
) -> list[tuple[Row, BaseException]]:
    def write(conn: Connection) -> Written:
        if entity is SECTION:
            return write_sections(conn, rows, now())  # type: ignore[arg-type]
        # People's keys are not needed: sections look up their members' keys themselves.
        return write_rows(conn, entity, rows, now(), keys=False)

    try:
        written = transaction(f"writing {len(rows)} {entity.name.lower()} rows", write)
    except Exception as exc:
        if not refused_data(exc):
            raise
        if len(rows) == 1:
            budget[0] -= 1
            if budget[0] < 0:
                raise
            return [(rows[0], exc)]
        half = len(rows) // 2
        refused = _write_or_split(transaction, entity, rows[:half], now, outcome, budget)
        return refused + _write_or_split(transaction, entity, rows[half:], now, outcome, budget)
    # Counted once committed (a retried transaction must not count twice).
    outcome.counts.inserted += written.inserted
    outcome.counts.updated += written.updated
    outcome.changes.add_from(entity.name, written)
    return []


def refused_data(exc: BaseException) -> bool:
    """Whether a failed write was refused for the values it carried (a constraint, a value
    the column cannot hold, a character the driver cannot encode) rather than for the
    database's state (connection, locks, disk): only the first is worth splitting the batch
    to find the records at fault."""
    for error in _causes(exc):
        if isinstance(error, UnicodeError):
            return True
        if isinstance(error, DataError | IntegrityError):
            return classify(error) is None
    return False


def refusal(exc: BaseException) -> str:
    """The database's reason for refusing a record, short and sanitized (its first line:
    PostgreSQL puts the row's values on the next)."""
    for error in _causes(exc):
        if isinstance(error, UnicodeError):
            return "a character it cannot encode"
        if isinstance(error, DataError | IntegrityError):
            detail = str(error.orig if error.orig is not None else error)
            first = mask_credentials(detail).splitlines()[0] if detail else type(error).__name__
            return first[:200]
    return type(exc).__name__


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        error = todo.pop(0)
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        todo += [error.__cause__, error.__context__, getattr(error, "orig", None)]
