"""A full sync's preview (``sync --full --dry-run``): what it would insert, update and delete.

Clever is read exactly as a full sync reads it and compared with the school database, which
is only read; nothing is written there. SessionDb gets one ``DryRun`` history row per entity
(with the counts the sync would have), which is neither a good run, a failure nor a run in
progress, so incremental cursors, failure streaks and leases are untouched.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cleversync import runtally
from cleversync.clever.pages import FieldReport
from cleversync.db.school.entities import SECTION, STUDENT, TEACHER, Entity
from cleversync.db.school.store import EngineFactory, SchoolConnection, SchoolDb
from cleversync.db.school.writer import describe_rows, missing_rows, read_existing
from cleversync.db.sessiondb.changes import Change, ChangeBuffer
from cleversync.db.sessiondb.history import History
from cleversync.db.sessiondb.registry import Registry
from cleversync.errors import CleverIncompleteListError
from cleversync.runtally import RunTally
from cleversync.settings import Settings
from cleversync.sync.mapping import section_row, student_row, teacher_row
from cleversync.sync.modes import ClientFactory
from cleversync.sync.outcome import EntityOutcome
from cleversync.sync.passes import Source
from cleversync.sync.plan import Existing, batch_changes, plan_batch, plan_deletes
from cleversync.sync.seen import SeenIds
from cleversync.vocabulary import ChangeKind, RunStatus, SyncType

_PLAN = (
    (STUDENT, "students", student_row),
    (TEACHER, "teachers", teacher_row),
    (SECTION, "sections", section_row),
)
_REMOVED = (ChangeKind.DELETED, ChangeKind.DEACTIVATED)


@dataclass(frozen=True)
class Preview:
    """What a full sync of one school would do now. ``held_back``: the mass-delete guard
    would refuse the deletes (``messages`` say which, and how to lift it)."""

    school_id: int
    history_ids: dict[str, int]
    started_at: datetime
    inserts: list[Change] = field(default_factory=list)
    updates: list[Change] = field(default_factory=list)  # Updated and Reactivated
    deletes: list[Change] = field(default_factory=list)  # Deleted or Deactivated
    held_back: bool = False
    messages: list[str] = field(default_factory=list)
    omitted: int = 0  # changes counted but not listed (History__MaxChangeDetailsPerRun)
    skipped: int = 0  # records Clever sent that cannot be stored as they are
    # How many records each action would touch (the lists stop at the cap).
    inserted: int = 0
    updated: int = 0
    deleted: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "schoolId": self.school_id,
            "historyIds": self.history_ids,
            "startedAt": self.started_at.isoformat(),
            "heldBack": self.held_back,
            "messages": self.messages,
            "omitted": self.omitted,
            "skipped": self.skipped,
            "inserted": self.inserted,
            "updated": self.updated,
            "deleted": self.deleted,
            "inserts": [c.as_json() for c in self.inserts],
            "updates": [c.as_json() for c in self.updates],
            "deletes": [c.as_json() for c in self.deletes],
        }


def preview_full_sync(
    school_id: int,
    *,
    settings: Settings,
    registry: Registry,
    history: History,
    school_engine: EngineFactory,
    clever: ClientFactory,
    clock: Callable[[], datetime],
) -> Preview:
    """Read Clever and the school database and report what a full sync would change."""
    school = registry.get_school(school_id)
    district = registry.get_district(school.district_id)
    db = SchoolDb(school_engine(school), name=school.database_name, policy=settings.retry.database)
    db.require_current(f"cleversync db upgrade --school-id {school_id}")
    started = clock()
    correlation_id = uuid.uuid4().hex
    ids = history.open_run(
        school_id=school_id,
        entities=[e.name for e, _, _ in _PLAN],
        sync_type=SyncType.FULL,
        started_at=started,
        correlation_id=correlation_id,
        status=RunStatus.DRY_RUN,
    )
    buffer = ChangeBuffer(settings.history.max_change_details_per_run, clock)
    outcomes = {
        entity.name: EntityOutcome(
            entity.name,
            SyncType.FULL,
            ids[entity.name],
            district.district_id,
            school_id,
            correlation_id,
            changes=buffer,
        )
        for entity, _, _ in _PLAN
    }
    messages: list[str] = []
    error: str | None = None
    counted = RunTally(_PLAN[0][0].name)  # its retries and rate-limit waits, per entity
    with runtally.tally(counted):
        try:
            client = clever(district, FieldReport())
            for entity, kind, mapper in _PLAN:
                source = Source(client, kind, school.clever_school_id, mapper)
                with runtally.entity(entity.name):
                    note = _preview_entity(settings, db, entity, source, outcomes[entity.name])
                if note:
                    messages.append(note)
        except Exception as exc:
            error = str(exc)
            raise
        finally:
            for name, outcome in outcomes.items():
                history.close(
                    outcome.sync_id,
                    status=RunStatus.DRY_RUN,
                    counts=outcome.counts,
                    error=error or outcome.message(),
                    last_event_id=None,
                    last_sync_timestamp=None,
                    changes_omitted=buffer.omitted.get(name, 0),
                    waits=counted.of(name),
                )
            db.dispose()
    changes = [
        Change(ids[entity], school_id, entity, clever_id, ChangeKind(kind), name, fields, at)
        for entity, clever_id, kind, name, fields, at in buffer.rows
    ]
    return Preview(
        school_id=school_id,
        history_ids=ids,
        started_at=started,
        inserts=[c for c in changes if c.kind == ChangeKind.INSERTED],
        updates=[c for c in changes if c.kind not in (ChangeKind.INSERTED, *_REMOVED)],
        deletes=[c for c in changes if c.kind in _REMOVED],
        held_back=any(o.held_back for o in outcomes.values()),
        messages=messages,
        omitted=sum(buffer.omitted.values()),
        skipped=sum(o.counts.failed for o in outcomes.values()),
        inserted=sum(o.counts.inserted for o in outcomes.values()),
        updated=sum(o.counts.updated for o in outcomes.values()),
        deleted=sum(o.counts.deleted for o in outcomes.values()),
    )


def _preview_entity(
    settings: Settings, db: SchoolDb, entity: Entity, source: Source, outcome: EntityOutcome
) -> str | None:
    """Compare one entity's Clever list with its table; returns a note for the operator
    (the guard's message, or why deletes are unknown)."""
    seen = SeenIds()
    name = entity.name.lower()
    try:
        for raw in source.client.raw_pages(
            source.kind, source.school, page_size=settings.sync.page_size
        ):
            outcome.counts.processed += len(raw.failures)
            for failure in raw.failures:
                outcome.record_failure(failure)
            rows = source.rows(raw.records, outcome, seen)
            if not rows:
                continue
            ids = [r.clever_id for r in rows]

            def read(conn: SchoolConnection, ids: list[str] = ids) -> dict[str, Existing]:
                return read_existing(conn, entity, ids)

            existing = db.transaction(f"reading {len(rows)} {name} rows", read)
            plan = plan_batch(rows, existing)
            outcome.counts.inserted += len(plan.inserts)
            outcome.counts.updated += len(plan.updates)
            outcome.changes.add(entity.name, batch_changes(plan, existing))
    except CleverIncompleteListError as exc:
        outcome.incomplete = True
        note = f"{exc}; a full sync would delete no {name} rows now"
        outcome.notes.append(note)
        return note
    missing, active = db.transaction(
        f"reading active {name} rows", lambda conn: missing_rows(conn, entity, seen)
    )
    mode = settings.sync.delete_mode
    decision = plan_deletes(
        entity=entity.name,
        missing=len(missing),
        active=active,
        max_percent=settings.sync.max_delete_percent,
        allow_mass_delete=False,
        mode=mode,
        school_id=outcome.school_id,
    )
    kind = ChangeKind.DEACTIVATED if mode == "Deactivate" else ChangeKind.DELETED
    wanted = missing[: outcome.changes.room()]
    names = (
        db.transaction(
            f"reading {len(wanted)} {name} rows", lambda conn: describe_rows(conn, entity, wanted)
        )
        if wanted
        else []
    )
    outcome.changes.add(entity.name, [(c, kind, n, None) for c, n in names], total=len(missing))
    outcome.counts.deleted = len(missing)
    if not decision.allowed:
        outcome.held_back = decision.message
        return decision.message
    return None


__all__ = ["Preview", "preview_full_sync"]
