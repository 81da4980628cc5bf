"""Pure decisions over plain data: what changed, what to write, which mode, whether to delete.

Nothing here does I/O; every function is tested with plain lists and dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeAlias

from cleversync.sync.mapping import Row, clean
from cleversync.vocabulary import ChangeKind, SyncMode, SyncType

# {column: (old, new)}, both normalized as the diff compares them (trimmed, empty = None).
Fields: TypeAlias = dict[str, tuple[str | None, str | None]]
# One record's change as a write reports it: (Clever id, kind, display name, fields or None).
ChangeItem: TypeAlias = tuple[str, ChangeKind, str | None, Fields | None]


@dataclass(frozen=True)
class Existing:
    """What a batch needs to know about a row already in the school database.

    ``values`` are the stored mapped columns, in the entity's column order.
    """

    key: int
    values: tuple[str | None, ...]
    is_active: bool


@dataclass
class BatchPlan:
    inserts: list[Row] = field(default_factory=list)
    updates: list[tuple[int, Row]] = field(default_factory=list)  # (primary key, new values)
    unchanged: list[tuple[int, Row]] = field(default_factory=list)


def same(a: Any, b: Any) -> bool:
    """Equal after normalization: null = empty = whitespace, strings trimmed."""
    return a == b or clean(a) == clean(b)  # equal as they are: the usual case, no cleaning


def changed_columns(incoming: Mapping[str, Any], stored: Mapping[str, Any]) -> list[str]:
    return [column for column, value in incoming.items() if not same(value, stored.get(column))]


def plan_batch(rows: Sequence[Row], existing: Mapping[str, Existing]) -> BatchPlan:
    """Insert the new, update the changed and the inactive (reactivation), skip the rest.

    ``LastModifiedInClever`` is not compared: Clever bumps it when fields we do not store
    change, so it is written only with a row that is written anyway. When a Clever id comes
    twice in one batch, the later record wins.
    """
    plan = BatchPlan()
    latest = {row.clever_id: row for row in rows}
    for row in latest.values():
        stored = existing.get(row.clever_id)
        if stored is None:
            plan.inserts.append(row)
        elif not stored.is_active or _changed(row, stored):
            plan.updates.append((stored.key, row))
        else:
            plan.unchanged.append((stored.key, row))
    return plan


def _changed(row: Row, stored: Existing) -> bool:
    incoming = tuple(row.values.values())
    if incoming == stored.values:  # what we wrote is already normalized: the usual case
        return False
    return any(not same(a, b) for a, b in zip(incoming, stored.values, strict=True))


def display_name(values: Mapping[str, Any]) -> str | None:
    """How a record is named to an operator: a section's Name, a person's first and last
    (mapped values are already trimmed)."""
    if "Name" in values:
        return values["Name"] or None
    first, last = values.get("FirstName"), values.get("LastName")
    if first and last:
        return f"{first} {last}"
    return first or last or None


def batch_changes(
    plan: BatchPlan, existing: Mapping[str, Existing], limit: int | None = None
) -> list[ChangeItem]:
    """What a batch's plan does to each record (the first ``limit``): inserted, updated (the
    columns that differ, old and new, normalized as compared) or reactivated (with any
    columns that changed)."""
    inserts = plan.inserts if limit is None else plan.inserts[:limit]
    items: list[ChangeItem] = [
        (row.clever_id, ChangeKind.INSERTED, display_name(row.values), None) for row in inserts
    ]
    updates = plan.updates if limit is None else plan.updates[: max(limit - len(items), 0)]
    for _, row in updates:
        stored = existing[row.clever_id]
        fields = {
            column: (clean(old), clean(new))
            for (column, new), old in zip(row.values.items(), stored.values, strict=True)
            if not same(new, old)
        }
        kind = ChangeKind.UPDATED if stored.is_active else ChangeKind.REACTIVATED
        items.append((row.clever_id, kind, display_name(row.values), fields or None))
    return items


def plan_links(
    desired: Mapping[int, set[Any]], existing: Mapping[int, set[Any]]
) -> tuple[list[tuple[int, Any]], list[tuple[int, Any]]]:
    """Links to add and to remove so each section holds exactly its desired members."""
    add: list[tuple[int, Any]] = []
    remove: list[tuple[int, Any]] = []
    for section, members in desired.items():
        current = existing.get(section, set())
        add += [(section, member) for member in sorted(members - current)]
        remove += [(section, member) for member in sorted(current - members)]
    return add, remove


@dataclass(frozen=True)
class DeletePlan:
    allowed: bool
    count: int
    active: int
    percent: float
    message: str | None = None


def plan_deletes(
    *,
    entity: str,
    missing: int,
    active: int,
    max_percent: float,
    allow_mass_delete: bool,
    mode: str,
    school_id: int | None = None,
) -> DeletePlan:
    """The mass-delete guard: more than ``max_percent`` of the active rows is held back.

    A sharing-rule change in Clever (a school suddenly unshared, a filter on the wrong
    field) looks like everyone leaving; a normal year-end rollover removes 15-30 %. The
    message names the command that lifts the guard for this one school (``school_id``).
    """
    percent = 100.0 * missing / active if active else 0.0
    if missing == 0 or allow_mass_delete or percent <= max_percent:
        return DeletePlan(True, missing, active, percent)
    verb = "deactivating" if mode == "Deactivate" else "deleting"
    school = "<school id>" if school_id is None else str(school_id)
    message = (
        f"held back {verb} {missing} of {active} active {entity.lower()} rows ({percent:.0f} %, "
        f"more than CleverSync__Sync__MaxDeletePercent={max_percent:g} %); if Clever is "
        f"right, force it with 'cleversync sync --school-id {school} --allow-mass-delete' "
        f"(HTTP: POST /api/sync?schoolId={school}&allowMassDelete=true)"
    )
    return DeletePlan(False, missing, active, percent, message)


@dataclass(frozen=True)
class LastRun:
    """The school's latest successful (or Partial) run: where incremental sync starts."""

    started_at: datetime
    last_event_id: str | None
    last_sync_timestamp: datetime | None


@dataclass(frozen=True)
class ModeDecision:
    mode: SyncMode
    reason: str


@dataclass(frozen=True)
class EntityRun:
    """One successful (or Partial) SyncHistory row of an entity: what it left stored."""

    sync_type: str  # Full | Incremental
    processed: int
    inserted: int
    updated: int
    failed: int


def expects_rows(runs: Sequence[EntityRun]) -> bool:
    """Whether the entity's table must hold active rows, from its good runs, newest first.

    Only a full sync removes rows. So the table holds at least what the latest good full
    sync stored (the records it examined, less those skipped as not fitting), plus every
    row an incremental run since inserted or (re)activated. An empty table then means the
    database was emptied or replaced, while a school that Clever itself emptied (its last
    full sync stored nothing) is left alone.
    """
    for run in runs:
        if run.sync_type != SyncType.FULL:
            if run.inserted or run.updated:
                return True
            continue
        return run.processed - run.failed > 0
    return False


def choose_mode(
    *,
    requested_full: bool,
    requires_full_sync: bool,
    last: LastRun | None,
    now: datetime,
    retention_days: float,
    empty_entities: Sequence[str] = (),
) -> ModeDecision:
    """Full when asked, when flagged, with no successful sync, when an entity's table is
    empty though its last successful sync stored rows (``empty_entities``: the database was
    emptied or replaced, and an incremental run would leave it so), or with an expired
    cursor; events when a cursor is stored; otherwise a data comparison."""
    if requested_full:
        return ModeDecision(SyncMode.FULL, "a full sync was requested")
    if requires_full_sync:
        return ModeDecision(SyncMode.FULL, "the school is flagged RequiresFullSync")
    if last is None:
        return ModeDecision(SyncMode.FULL, "the school has no successful sync yet")
    if empty_entities:
        which = " and ".join(empty_entities)
        return ModeDecision(
            SyncMode.FULL,
            f"the school database holds no active {which} rows although the last successful "
            "sync stored some: the database looks emptied or replaced",
        )
    if last.last_event_id is None:
        return ModeDecision(
            SyncMode.DATA, "no event cursor (Events API not enabled at the last sync)"
        )
    read_at = last.last_sync_timestamp or last.started_at
    age = now - read_at
    if age > timedelta(days=retention_days):
        return ModeDecision(
            SyncMode.FULL,
            f"the event cursor is expired: the feed was last read {age.days} days ago, more "
            f"than CleverSync__Sync__EventRetentionDays={retention_days:g} (Clever keeps 30)",
        )
    return ModeDecision(SyncMode.EVENTS, "events since the stored cursor")


def latest_per_record(records: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Collapse a run of events to the last state per record id (events carry whole objects),
    keeping the order in which each record last appeared."""
    latest: dict[str, Any] = {}
    for key, value in records:
        latest.pop(key, None)
        latest[key] = value
    return latest
