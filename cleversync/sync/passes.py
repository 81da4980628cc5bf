"""The full and data-comparison passes over one entity: stream, batch, write, then delete.

Pages are streamed from Clever and written in whole batches; the Clever ids seen are kept
(the only thing that grows with the school, kept compact by ``seen.py``) so that, once
every page has arrived, a full sync can remove what Clever no longer has, behind the
mass-delete guard. A list Clever sent incomplete (its end could not be confirmed, or a page
was over its limit) is written as far as it arrived, since those records are real, but
deletes nothing; the entity is Partial and the school is flagged for a full sync.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cleversync import runtally
from cleversync.clever.client import CleverClient
from cleversync.clever.pages import RawPage
from cleversync.db.school.entities import SECTION, STUDENT, TEACHER, Entity
from cleversync.db.school.store import SchoolConnection, count_active
from cleversync.db.school.writer import (
    MAX_IN,
    Transaction,
    chunks,
    describe_rows,
    missing_rows,
    remove_rows,
    stored_versions,
    write_refusing,
)
from cleversync.errors import (
    CleverIncompleteListError,
    CleverSyncError,
    RecordError,
)
from cleversync.settings import Settings
from cleversync.sync.mapping import Row, section_row, storable, student_row, teacher_row
from cleversync.sync.outcome import EntityOutcome
from cleversync.sync.plan import plan_deletes
from cleversync.sync.seen import SeenIds
from cleversync.timeutil import parse_clever_time
from cleversync.vocabulary import ChangeKind, RunStatus

# Raw records held for one read of their stored versions (within SQL Server's parameters).
VERSION_CHECK_SIZE = MAX_IN


@dataclass(frozen=True)
class PassContext:
    """What a pass needs from its run: settings, transactions, the checkpoint, progress."""

    settings: Settings
    transaction: Transaction
    checkpoint: Callable[[], None]
    clock: Callable[[], datetime]
    allow_mass_delete: bool
    progress: Callable[[str, int], None] | None = None
    school_id: int | None = None  # named in the mass-delete guard's hint


def run_passes(
    ctx: PassContext,
    client: CleverClient,
    school_clever_id: str,
    outcomes: dict[str, EntityOutcome],
    *,
    delete: bool,
) -> None:
    """Students, teachers, then sections (their links need the people first)."""
    plan: list[tuple[Entity, str, Callable[[Any], Row]]] = [
        (STUDENT, "students", student_row),
        (TEACHER, "teachers", teacher_row),
        (SECTION, "sections", section_row),
    ]
    for entity, kind, mapper in plan:
        outcome = outcomes[entity.name]
        source = Source(client, kind, school_clever_id, mapper)
        # A data comparison (no deletes) may skip people stored at the version Clever has;
        # sections are always compared, so their links reach people stored since.
        versioned = not delete and entity is not SECTION
        try:
            with runtally.entity(entity.name):  # its database retries count on its row
                entity_pass(ctx, entity, source, outcome, delete=delete, versioned=versioned)
        except CleverSyncError as exc:  # this entity fails; the next one may still work
            if exc.ends_school:
                raise
            outcome.fail(exc)
            outcome.log(logging.ERROR, "Sync of %s failed: %s", entity.name.lower(), outcome.error)


@dataclass(frozen=True)
class Source:
    """Where an entity's records come from, and how they become rows."""

    client: CleverClient
    kind: str  # students | teachers | sections
    school: str
    mapper: Callable[[Any], Row]

    def rows(self, raws: list[dict[str, Any]], outcome: EntityOutcome, seen: SeenIds) -> list[Row]:
        """Parse and map records; every id Clever sent is ``seen``, readable or not."""
        page = self.client.parse_records(self.kind, raws)
        outcome.counts.processed += len(page.records) + len(page.failures)
        rows = []
        for failure in page.failures:
            outcome.record_failure(failure)
            if failure.clever_id:
                seen.add(failure.clever_id)  # still in Clever: never delete it for this
        for record in page.records:
            seen.add(record["id"].strip())
            try:
                rows.append(self.mapper(record))
            except RecordError as error:
                outcome.record_failure(error)
        return rows


def entity_pass(
    ctx: PassContext,
    entity: Entity,
    source: Source,
    outcome: EntityOutcome,
    *,
    delete: bool,
    versioned: bool = False,
) -> None:
    """Stream the entity's pages and write them in whole batches; then, in a full sync,
    remove what Clever no longer has. ``versioned``: skip records stored at Clever's
    version (see ``_changed``)."""
    active_before = _count_active(ctx, entity) if delete else 0
    seen = SeenIds()
    batch: list[Row] = []
    held: list[dict[str, Any]] = []
    size = ctx.settings.sync.batch_size
    incomplete: list[CleverIncompleteListError] = []
    pages = _until_incomplete(
        source.client.raw_pages(source.kind, source.school, page_size=ctx.settings.sync.page_size),
        incomplete,
    )
    for raw in pages:
        outcome.counts.processed += len(raw.failures)
        for failure in raw.failures:
            outcome.record_failure(failure)
        if versioned:
            held.extend(raw.records)
            if len(held) >= VERSION_CHECK_SIZE:
                batch += _changed(ctx, entity, source, held, outcome, seen)
                held = []
        else:
            batch += source.rows(raw.records, outcome, seen)
        if len(batch) >= size:  # whole batches; the rest waits for the next page
            whole = len(batch) - len(batch) % size
            _flush(ctx, entity, batch[:whole], outcome)
            batch = batch[whole:]
        if ctx.progress:
            ctx.progress(entity.name, outcome.counts.processed)
    if held:
        batch += _changed(ctx, entity, source, held, outcome, seen)
    _flush(ctx, entity, batch, outcome)
    if incomplete:  # what arrived is real and was written; what is missing is unknown
        _incomplete(outcome, incomplete[0], delete=delete)
    elif delete:  # only now: every page arrived
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


def _until_incomplete(
    pages: Iterable[RawPage], incomplete: list[CleverIncompleteListError]
) -> Iterator[RawPage]:
    """The pages, until Clever's list turns out incomplete (the error goes in ``incomplete``)."""
    try:
        yield from pages
    except CleverIncompleteListError as exc:
        incomplete.append(exc)


def _incomplete(outcome: EntityOutcome, exc: CleverIncompleteListError, *, delete: bool) -> None:
    """Partial, saying why; the school's run flags a full sync for it."""
    outcome.incomplete = True
    outcome.status = RunStatus.PARTIAL
    held = "nothing deleted; " if delete else ""
    outcome.notes.append(f"{exc}; {held}a full sync is flagged for the next run")
    outcome.log(logging.WARNING, "Incomplete %s list: %s", outcome.entity.lower(), exc)


def _changed(
    ctx: PassContext,
    entity: Entity,
    source: Source,
    raws: list[dict[str, Any]],
    outcome: EntityOutcome,
    seen: SeenIds,
) -> list[Row]:
    """Rows for the records not stored at Clever's version; the others are only counted.

    ``LastModifiedInClever`` is written only together with a row's values, so an active
    row holding Clever's ``last_modified`` holds that very version of the record: parsing,
    mapping and comparing it again would find nothing. (A full sync compares everything.)
    """
    ids = [raw["id"] for raw in raws if isinstance(raw.get("id"), str) and storable(raw["id"])]
    stored = ctx.transaction(
        f"reading the versions of {len(ids)} {entity.name.lower()} rows",
        lambda conn: stored_versions(conn, entity, ids),
    )
    role = source.kind[:-1]  # students -> student
    changed = []
    for raw in raws:
        version = stored.get(raw["id"]) if isinstance(raw.get("id"), str) else None
        roles = raw.get("roles")
        if (
            version is not None
            and version == parse_clever_time(raw.get("last_modified"))
            and isinstance(roles, dict)
            and roles.get(role)
        ):
            outcome.counts.processed += 1
        else:
            changed.append(raw)
    return source.rows(changed, outcome, seen)


def _flush(ctx: PassContext, entity: Entity, batch: list[Row], outcome: EntityOutcome) -> None:
    size = ctx.settings.sync.batch_size
    for start in range(0, len(batch), size):
        write_refusing(ctx.transaction, entity, batch[start : start + size], ctx.clock, outcome)
        ctx.checkpoint()


def _delete(
    ctx: PassContext, entity: Entity, seen: SeenIds, active_before: int, outcome: EntityOutcome
) -> None:
    missing, active = ctx.transaction(
        f"reading active {entity.name.lower()} rows",
        lambda conn: missing_rows(conn, entity, seen),
    )
    mode = ctx.settings.sync.delete_mode
    decision = plan_deletes(
        entity=entity.name,
        missing=len(missing),
        active=max(active_before, active),
        max_percent=ctx.settings.sync.max_delete_percent,
        allow_mass_delete=ctx.allow_mass_delete,
        mode=mode,
        school_id=ctx.school_id,
    )
    if not decision.allowed:
        outcome.held_back = decision.message
        outcome.log(logging.WARNING, "Mass-delete guard: %s", decision.message)
        _record_held_back(ctx, entity, missing, outcome)
        return
    kind = ChangeKind.DEACTIVATED if mode == "Deactivate" else ChangeKind.DELETED
    for part in chunks(missing, ctx.settings.sync.batch_size):
        described = part[: outcome.changes.room()]  # only what the change detail keeps

        def remove(
            conn: SchoolConnection, part: list[int] = part, described: list[int] = described
        ) -> tuple[int, list[tuple[str, str | None]]]:
            names = describe_rows(conn, entity, described) if described else []
            return remove_rows(conn, entity, part, mode=mode, now=ctx.clock()), names

        removed, names = ctx.transaction(f"removing {len(part)} {entity.name.lower()} rows", remove)
        outcome.counts.deleted += removed
        outcome.changes.add(entity.name, [(c, kind, n, None) for c, n in names], total=len(part))
        ctx.checkpoint()


def _record_held_back(
    ctx: PassContext, entity: Entity, missing: list[int], outcome: EntityOutcome
) -> None:
    """The rows the guard kept, in the change detail, for the operator deciding on them."""
    wanted = missing[: outcome.changes.room(ChangeKind.HELD_BACK)]
    names = (
        ctx.transaction(
            f"reading the {len(wanted)} {entity.name.lower()} rows held back",
            lambda conn: describe_rows(conn, entity, wanted),
        )
        if wanted
        else []
    )
    outcome.changes.add(
        entity.name,
        [(c, ChangeKind.HELD_BACK, n, None) for c, n in names],
        total=len(missing),
    )


def _count_active(ctx: PassContext, entity: Entity) -> int:
    return ctx.transaction(
        f"counting {entity.name.lower()} rows", lambda conn: count_active(conn, entity)
    )
