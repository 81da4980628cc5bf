"""Applying a school's Clever events to a real SQLite school database, page by page.

The client is a small fake at the seam ``apply_events`` uses (``events()`` yields pages of
parsed events, ``field_report`` collects unknown fields); the writes, transactions and the
database are the real ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from cleversync.clever.models import Event
from cleversync.clever.pages import FieldReport
from cleversync.db.engines import engine_for
from cleversync.db.retry import in_transaction
from cleversync.db.school.entities import SECTION, STUDENT, TEACHER
from cleversync.errors import DatabaseError, RecordError
from cleversync.settings import RetryPolicy
from cleversync.sync.events import apply_events
from cleversync.sync.outcome import EntityOutcome
from tests.databases import sqlite_clone
from tests.sync.test_writer import enrolments

SCHOOL = "sch-1"
NOW = datetime(2024, 4, 2, 10, 0, 0)


@dataclass
class EventPage:
    records: list[Event]
    failures: list[RecordError] = field(default_factory=list)
    last_id: str | None = None


class FakeClever:
    """Serves pages of events after a cursor, as CleverClient.events does."""

    def __init__(self, pages: list[EventPage]) -> None:
        self.pages = pages
        self.field_report = FieldReport()
        self.asked: list[tuple[str, str | None, int]] = []

    def events(self, school_id: str, *, after: str | None, page_size: int) -> Iterator[EventPage]:
        self.asked.append((school_id, after, page_size))
        yield from self.pages


def user(uid: str, first: str = "Ann", *, role: str = "student", school: str = SCHOOL, **extra):
    held = {"school": school, "schools": [school]}
    return {
        "id": uid,
        "name": {"first": first, "last": "Lee"},
        "roles": {role: held},
        "last_modified": "2024-04-01T00:00:00.000Z",
        **extra,
    }


def section(sid: str, name: str = "Math", *, students=(), teachers=(), school: str = SCHOOL):
    return {
        "id": sid,
        "name": name,
        "school": school,
        "students": list(students),
        "teachers": list(teachers),
        "last_modified": "2024-04-01T00:00:00.000Z",
    }


_n = iter(range(1, 10_000))


def ev(kind: str, obj: dict[str, Any]) -> Event:
    return Event(id=f"ev{next(_n):04d}", type=kind, object=obj)


def page(*events: Event, failures: int = 0) -> EventPage:
    bad = [RecordError(f"bad{i}", "unreadable event") for i in range(failures)]
    return EventPage(list(events), bad, events[-1].id if events else None)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = engine_for(sqlite_clone("school", tmp_path / "school.sqlite"))
    yield engine
    engine.dispose()


@dataclass
class Applied:
    cursor: str
    counts: dict[str, tuple[int, int, int, int]]  # processed, inserted, updated, failed
    transactions: int
    calls: str  # "tx" for each transaction, "page" for each after_page call, in order
    client: FakeClever


def apply(
    engine: Engine,
    pages: list[EventPage],
    *,
    cursor: str = "ev0000",
    fail: Callable[[int], bool] = lambda n: False,
    replay: bool = False,
) -> Applied:
    outcomes = {
        e.name: EntityOutcome(e.name, "Incremental", n, 1, 1, "c")
        for n, e in enumerate((STUDENT, TEACHER, SECTION), start=1)
    }
    client = FakeClever(pages)
    transactions = 0
    calls: list[str] = []

    def transaction(what: str, work: Callable[[Connection], Any]) -> Any:
        nonlocal transactions
        transactions += 1
        calls.append("tx")
        if fail(transactions):
            raise DatabaseError(f"{what}: the database went away")
        if replay:  # an attempt that is rolled back, as a retried transaction's first one is
            with engine.connect() as conn:
                work(conn)
                conn.rollback()
        return in_transaction(
            engine, work, policy=RetryPolicy(MaxAttempts=0, BackoffBase=0), what=what
        )

    last = apply_events(
        client,  # type: ignore[arg-type]
        school_clever_id=SCHOOL,
        cursor=cursor,
        page_size=3,
        outcomes=outcomes,
        transaction=transaction,
        now=lambda: NOW,
        after_page=lambda: calls.append("page"),
    )
    counts = {
        name: (o.counts.processed, o.counts.inserted, o.counts.updated, o.counts.failed)
        for name, o in outcomes.items()
    }
    return Applied(last, counts, transactions, " ".join(calls), client)


def names(engine: Engine, entity: Any) -> dict[str, str]:
    """Clever id -> name column of the stored active rows."""
    column = "Name" if entity is SECTION else "FirstName"
    table = entity.table
    with engine.connect() as conn:
        rows = conn.execute(
            select(table.c[entity.clever_key], table.c[column]).where(table.c.IsActive.is_(True))
        ).all()
    return dict(rows)


# name, pages, students after, teachers after, sections after, links after,
# counts {entity: (processed, inserted, updated, failed)}, transactions
SCENARIOS = [
    (
        "created users and sections are written, users first so sections can link them",
        [
            page(
                ev("sections.created", section("c1", students=["s1"], teachers=["t1"])),
                ev("users.created", user("s1")),
                ev("users.created", user("t1", "Tom", role="teacher")),
            )
        ],
        {"s1": "Ann"},
        {"t1": "Tom"},
        {"c1": "Math"},
        {("c1", "s1"), ("c1", "t1")},
        {"Student": (1, 1, 0, 0), "Teacher": (1, 1, 0, 0), "Section": (1, 1, 0, 0)},
        1,
    ),
    (
        "within a page the last event of a record is what is written",
        [
            page(
                ev("users.created", user("s1", "Ann")),
                ev("users.updated", user("s1", "Annie")),
                ev("users.updated", user("s1", "Anne")),
            )
        ],
        {"s1": "Anne"},
        {},
        {},
        set(),
        {"Student": (3, 1, 0, 0), "Teacher": (0, 0, 0, 0), "Section": (0, 0, 0, 0)},
        1,
    ),
    (
        "one transaction per page; a later page updates what an earlier one created",
        [
            page(ev("users.created", user("s1")), ev("users.created", user("s2"))),
            page(ev("users.updated", user("s1", "Annie"))),
        ],
        {"s1": "Annie", "s2": "Ann"},
        {},
        {},
        set(),
        {"Student": (3, 2, 1, 0), "Teacher": (0, 0, 0, 0), "Section": (0, 0, 0, 0)},
        2,
    ),
    (
        "deletes wait for a full sync",
        [
            page(ev("users.created", user("s1")), ev("sections.created", section("c1"))),
            page(ev("users.deleted", user("s1")), ev("sections.deleted", section("c1"))),
        ],
        {"s1": "Ann"},
        {},
        {"c1": "Math"},
        set(),
        {"Student": (2, 1, 0, 0), "Teacher": (0, 0, 0, 0), "Section": (2, 1, 0, 0)},
        1,  # the page of deletes writes nothing
    ),
    (
        "users and sections of other schools are not applied",
        [
            page(
                ev("users.created", user("s1", school="sch-2")),
                ev("users.updated", user("t1", role="teacher", school="sch-2")),
                ev("sections.created", section("c1", school="sch-2")),
            )
        ],
        {},
        {},
        {},
        set(),
        {"Student": (1, 0, 0, 0), "Teacher": (1, 0, 0, 0), "Section": (1, 0, 0, 0)},
        0,
    ),
    (
        "users with neither role, and other record types, are not counted",
        [
            page(
                ev("users.created", {**user("x1"), "roles": {"staff": {}}}),
                ev("courses.created", {"id": "k1"}),
            )
        ],
        {},
        {},
        {},
        set(),
        {"Student": (0, 0, 0, 0), "Teacher": (0, 0, 0, 0), "Section": (0, 0, 0, 0)},
        0,
    ),
    (
        "a record that does not fit is skipped and counted, the page still applied",
        [
            page(
                ev("users.created", user("s1", "A" * 101)),
                ev("users.created", user("s2")),
                ev("sections.created", {"id": "c1", "school": SCHOOL, "students": "not a list"}),
                failures=2,
            )
        ],
        {"s2": "Ann"},
        {},
        {},
        set(),
        {"Student": (2, 1, 0, 1), "Teacher": (0, 0, 0, 0), "Section": (1, 0, 0, 1)},
        1,
    ),
    (
        "a user who is both student and teacher is written as both",
        [
            page(
                ev(
                    "users.created",
                    {
                        **user("p1"),
                        "roles": {"student": {"school": SCHOOL}, "teacher": {"schools": [SCHOOL]}},
                    },
                )
            )
        ],
        {"p1": "Ann"},
        {"p1": "Ann"},
        {},
        set(),
        {"Student": (1, 1, 0, 0), "Teacher": (1, 1, 0, 0), "Section": (0, 0, 0, 0)},
        1,
    ),
    ("no events", [], {}, {}, {}, set(), {}, 0),
]


@pytest.mark.parametrize(
    ("pages", "students", "teachers", "sections", "enrolled", "counts", "transactions"),
    [case[1:] for case in SCENARIOS],
    ids=[case[0] for case in SCENARIOS],
)
def test_apply_events(
    engine: Engine,
    pages: list[EventPage],
    students: dict[str, str],
    teachers: dict[str, str],
    sections: dict[str, str],
    enrolled: set[tuple[str, str]],
    counts: dict[str, tuple[int, int, int, int]],
    transactions: int,
) -> None:
    applied = apply(engine, pages)
    assert names(engine, STUDENT) == students
    assert names(engine, TEACHER) == teachers
    assert names(engine, SECTION) == sections
    assert enrolments(engine) == enrolled
    zero = (0, 0, 0, 0)
    assert applied.counts == {n: counts.get(n, zero) for n in ("Student", "Teacher", "Section")}
    assert applied.transactions == transactions
    # after each page, once it is committed (between pages the run renews its lease)
    assert re.fullmatch(r"((tx )?page ?)*", applied.calls)
    assert applied.calls.count("page") == len(pages)
    last_ids = [p.last_id for p in pages if p.last_id]
    assert applied.cursor == (last_ids[-1] if last_ids else "ev0000")


def test_the_client_is_asked_for_events_after_the_cursor() -> None:
    for cursor, after in (("ev0042", "ev0042"), ("", None)):
        client = FakeClever([])
        apply_events(
            client,  # type: ignore[arg-type]
            school_clever_id=SCHOOL,
            cursor=cursor,
            page_size=7,
            outcomes={},
            transaction=lambda what, work: None,
            now=lambda: NOW,
            after_page=lambda: None,
        )
        assert client.asked == [(SCHOOL, after, 7)]


def test_a_page_that_fails_to_commit_stops_the_run_with_earlier_pages_kept(
    engine: Engine,
) -> None:
    pages = [
        page(ev("users.created", user("s1"))),
        page(ev("users.created", user("s2"))),
        page(ev("users.created", user("s3"))),
    ]
    with pytest.raises(DatabaseError, match="went away"):
        apply(engine, pages, fail=lambda n: n == 2)
    assert names(engine, STUDENT) == {"s1": "Ann"}


def test_a_page_of_unreadable_events_moves_the_cursor_past_them(engine: Engine) -> None:
    # Entries that cannot be read are logged and skipped; the cursor moves past them, or the
    # same unreadable page would stop every later run.
    unreadable = EventPage([], [RecordError("ev0900", "unreadable event")], last_id="ev0900")
    applied = apply(engine, [page(ev("users.created", user("s1"))), unreadable])
    assert applied.cursor == "ev0900"
    assert applied.transactions == 1


def test_unknown_fields_are_reported_by_entity(engine: Engine) -> None:
    applied = apply(
        engine,
        [
            page(
                ev("users.created", user("s1", pronouns="they")),
                ev("sections.created", {**section("c1"), "room": "B12"}),
            )
        ],
    )
    report = applied.client.field_report
    assert report.fields("Student") == {"pronouns"}
    assert report.fields("Section") == {"room"}
    assert names(engine, STUDENT) == {"s1": "Ann"}


def test_a_retried_page_is_counted_once(engine: Engine) -> None:
    pages = [page(ev("users.created", user("s1")), ev("users.created", user("s2")))]
    applied = apply(engine, pages, replay=True)
    assert applied.counts["Student"] == (2, 2, 0, 0)
    assert names(engine, STUDENT) == {"s1": "Ann", "s2": "Ann"}
