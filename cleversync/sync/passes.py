"""The full and data-comparison passes over one entity: stream, batch, write, then delete.

Pages are streamed from Clever and written in whole batches; the Clever ids seen are kept
(the only thing that grows with the school) so that, once every page has arrived, a full
sync can remove what Clever no longer has, behind the mass-delete guard.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from cleversync.clever.client import CleverClient, Page
from cleversync.errors import (
    CleverAuthError,
    CleverSyncError,
    ConfigurationError,
    DatabaseError,
    RecordError,
    SchoolNotSharedError,
    SecretError,
    SyncError,
)
from cleversync.settings import Settings
from cleversync.sync.entities import SECTION, STUDENT, TEACHER, Entity
from cleversync.sync.mapping import Row, section_row, student_row, teacher_row
from cleversync.sync.outcome import EntityOutcome
from cleversync.sync.plan import plan_deletes
from cleversync.sync.writer import active_rows, chunks, remove_rows, write_rows, write_sections

# Errors that end the whole school's run; anything else from Clever fails one entity.
SCHOOL_LEVEL = (
    CleverAuthError,
    SchoolNotSharedError,
    DatabaseError,
    SecretError,
    ConfigurationError,
    SyncError,
)


@dataclass(frozen=True)
class PassContext:
    """What a pass needs from its run: settings, transactions, the checkpoint, progress."""

    settings: Settings
    transaction: Callable[[str, Callable[[Connection], Any]], Any]
    checkpoint: Callable[[], None]
    clock: Callable[[], datetime]
    allow_mass_delete: bool
    progress: Callable[[str, int], None] | None = None


def run_passes(
    ctx: PassContext,
    client: CleverClient,
    school_clever_id: str,
    outcomes: dict[str, EntityOutcome],
    *,
    delete: bool,
) -> None:
    """Students, teachers, then sections (their links need the people first)."""
    size = ctx.settings.sync.page_size
    plan: list[tuple[Entity, Callable[[], Iterator[Page[Any]]], Callable[[Any], Row]]] = [
        (STUDENT, lambda: client.students(school_clever_id, page_size=size), student_row),
        (TEACHER, lambda: client.teachers(school_clever_id, page_size=size), teacher_row),
        (SECTION, lambda: client.sections(school_clever_id, page_size=size), section_row),
    ]
    for entity, pages, mapper in plan:
        outcome = outcomes[entity.name]
        try:
            entity_pass(ctx, entity, pages(), mapper, outcome, delete=delete)
        except SCHOOL_LEVEL:
            raise
        except CleverSyncError as exc:  # this entity fails; the next one may still work
            outcome.fail(exc)
            outcome.log(logging.ERROR, "Sync of %s failed: %s", entity.name.lower(), outcome.error)


def entity_pass(
    ctx: PassContext,
    entity: Entity,
    pages: Iterable[Page[Any]],
    mapper: Callable[[Any], Row],
    outcome: EntityOutcome,
    *,
    delete: bool,
) -> None:
    active_before = _count_active(ctx, entity) if delete else 0
    seen: set[str] = set()
    batch: list[Row] = []
    size = ctx.settings.sync.batch_size
    for page in pages:
        outcome.counts.processed += len(page.records) + len(page.failures)
        for failure in page.failures:
            outcome.record_failure(failure)
            if failure.clever_id:
                seen.add(failure.clever_id)  # still in Clever: never delete it for this
        for record in page.records:
            seen.add(record.id.strip())
            try:
                batch.append(mapper(record))
            except RecordError as error:
                outcome.record_failure(error)
        if len(batch) >= size:  # whole batches; the rest waits for the next page
            whole = len(batch) - len(batch) % size
            _flush(ctx, entity, batch[:whole], outcome)
            batch = batch[whole:]
        if ctx.progress:
            ctx.progress(entity.name, outcome.counts.processed)
    _flush(ctx, entity, batch, outcome)
    if delete:  # only now: every page arrived
        _delete(ctx, entity, seen, active_before, outcome)
    outcome.finish()
    outcome.log(
        logging.INFO,
        "Synced %s: %d processed, %d inserted, %d updated, %d deleted, %d failed",
        entity.name.lower(),
        outcome.counts.processed,
        outcome.counts.inserted,
        outcome.counts.updated,
        outcome.counts.deleted,
        outcome.counts.failed,
    )


def _flush(ctx: PassContext, entity: Entity, batch: list[Row], outcome: EntityOutcome) -> None:
    size = ctx.settings.sync.batch_size
    for start in range(0, len(batch), size):
        part = batch[start : start + size]

        def write(conn: Connection, rows: list[Row] = part) -> Any:
            if entity is SECTION:
                return write_sections(conn, rows, ctx.clock())  # type: ignore[arg-type]
            return write_rows(conn, entity, rows, ctx.clock())

        written = ctx.transaction(f"writing {len(part)} {entity.name.lower()} rows", write)
        outcome.counts.inserted += written.inserted
        outcome.counts.updated += written.updated
        ctx.checkpoint()


def _delete(
    ctx: PassContext, entity: Entity, seen: set[str], active_before: int, outcome: EntityOutcome
) -> None:
    active = ctx.transaction(
        f"reading active {entity.name.lower()} rows", lambda conn: active_rows(conn, entity)
    )
    missing = [key for clever_id, key in active.items() if clever_id not in seen]
    mode = ctx.settings.sync.delete_mode
    decision = plan_deletes(
        entity=entity.name,
        missing=len(missing),
        active=max(active_before, len(active)),
        max_percent=ctx.settings.sync.max_delete_percent,
        allow_mass_delete=ctx.allow_mass_delete,
        mode=mode,
    )
    if not decision.allowed:
        outcome.held_back = decision.message
        outcome.log(logging.WARNING, "Mass-delete guard: %s", decision.message)
        return
    for part in chunks(missing, ctx.settings.sync.batch_size):
        outcome.counts.deleted += ctx.transaction(
            f"removing {len(part)} {entity.name.lower()} rows",
            lambda conn, p=part: remove_rows(conn, entity, p, mode=mode, now=ctx.clock()),
        )
        ctx.checkpoint()


def _count_active(ctx: PassContext, entity: Entity) -> int:
    table = entity.table
    query = select(func.count()).select_from(table).where(table.c.IsActive.is_(True))
    return ctx.transaction(
        f"counting {entity.name.lower()} rows", lambda conn: conn.scalar(query) or 0
    )
