"""Incremental sync from Clever's Events API: apply the school's events in order.

Each page of events is applied in one transaction (events carry whole objects, so within a
page the last event per record is the state to write). The cursor moves to a page's last
event only once that page is committed: it never passes an event that failed to apply.
Deletes are ignored (they happen only in a full sync), and so is a user event for someone
no longer at this school.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cleversync.clever.client import CleverClient
from cleversync.clever.models import Event, Section, User, checked, unknown_in
from cleversync.db.school.entities import SECTION, STUDENT, TEACHER
from cleversync.db.school.store import SchoolConnection, write_page
from cleversync.db.school.writer import Transaction, refused_data, write_refusing
from cleversync.errors import RecordError
from cleversync.sync.mapping import (
    Row,
    SectionRow,
    belongs_to,
    section_row,
    student_row,
    teacher_row,
)
from cleversync.sync.outcome import EntityOutcome

_USER_ROLES = (("student", STUDENT.name, student_row), ("teacher", TEACHER.name, teacher_row))


@dataclass
class PendingPage:
    """One page of events reduced to the rows to write, latest state per record."""

    students: dict[str, Row]
    teachers: dict[str, Row]
    sections: dict[str, SectionRow]

    def empty(self) -> bool:
        return not (self.students or self.teachers or self.sections)


def apply_events(
    client: CleverClient,
    *,
    school_clever_id: str,
    cursor: str,
    page_size: int,
    outcomes: dict[str, EntityOutcome],
    transaction: Transaction,
    now: Callable[[], datetime],
    after_page: Callable[[], None],
) -> str:
    """Apply the school's events after ``cursor``; returns the last applied event id."""
    last_applied = cursor
    for page in client.events(school_clever_id, after=cursor or None, page_size=page_size):
        pending = PendingPage({}, {}, {})
        for failure in page.failures:
            logging.getLogger(__name__).warning(
                "Skipped unreadable Clever event %s: %s", failure.clever_id, failure.problem
            )
        for event in page.records:
            _reduce(event, school_clever_id, pending, outcomes, client)
        if not pending.empty():
            try:

                def write(conn: SchoolConnection, p: PendingPage = pending) -> Any:
                    return write_page(
                        conn,
                        list(p.students.values()),
                        list(p.teachers.values()),
                        list(p.sections.values()),
                        now(),
                    )

                written = transaction(f"applying {len(page.records)} Clever events", write)
            except Exception as exc:
                if not refused_data(exc):
                    raise
                # A value the database refuses: the page again, split to skip only the
                # records it refuses (they count as applied, like records that do not fit).
                for rows, entity in (
                    (pending.students, STUDENT),
                    (pending.teachers, TEACHER),
                    (pending.sections, SECTION),
                ):
                    if rows:
                        write_refusing(
                            transaction, entity, list(rows.values()), now, outcomes[entity.name]
                        )
            else:
                # Counted once committed (a retried transaction must not count twice).
                for name, result in written.items():
                    outcomes[name].counts.inserted += result.inserted
                    outcomes[name].counts.updated += result.updated
                    outcomes[name].changes.add_from(name, result)
        if page.last_id:
            last_applied = page.last_id
        after_page()
    return last_applied


def _reduce(
    event: Event,
    school: str,
    pending: PendingPage,
    outcomes: dict[str, EntityOutcome],
    client: CleverClient,
) -> None:
    if event.record_type == "users":
        roles = event.object["roles"] if isinstance(event.object.get("roles"), dict) else {}
        touched = [(role, name, mapper) for role, name, mapper in _USER_ROLES if role in roles]
        if not touched:
            return
        try:
            user = checked(User, event.object)
        except RecordError as error:
            for _, name, _ in touched:
                outcomes[name].counts.processed += 1
                outcomes[name].record_failure(error)
            return
        unknown = unknown_in(User, [event.object])
        for role, name, mapper in touched:
            outcome = outcomes[name]
            outcome.counts.processed += 1
            client.field_report.observe(name, unknown)
            if event.action == "deleted" or not belongs_to(user, role, school):
                continue  # deletes wait for a full sync; so do users who left this school
            try:
                row = mapper(user)
            except RecordError as error:
                outcome.record_failure(error)
                continue
            target = pending.students if name == STUDENT.name else pending.teachers
            target.pop(row.clever_id, None)
            target[row.clever_id] = row
    elif event.record_type == "sections":
        outcome = outcomes[SECTION.name]
        outcome.counts.processed += 1
        if event.action == "deleted":
            return
        try:
            section = checked(Section, event.object)
            client.field_report.observe(SECTION.name, unknown_in(Section, [event.object]))
            if section.get("school") != school:
                return
            row = section_row(section)
        except RecordError as error:
            outcome.record_failure(error)
            return
        pending.sections.pop(row.clever_id, None)
        pending.sections[row.clever_id] = row
