"""What the dashboard reads from SessionDb: every school's state in three queries, a school's
history with its runs' attempts, and a run found by its id or correlation id.

The overview is built from three statements whatever the number of schools: the schools with
their districts (and leases), the latest SyncHistory row of each school and entity, and the
runs of the last ``TREND_DAYS`` days grouped per school (trend, failure streak). What needs
attention is decided here, in plain Python over those rows (``attention``), so the page
only renders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, case, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from cleversync.db.schema import District, School, SyncHistory, SyncRun, SyncRunSchool
from cleversync.db.sessiondb import SessionTables
from cleversync.vocabulary import RunStatus

TREND_DAYS = 30
# The mass-delete guard's message names the override (sync/plan.py, delete_plan): a Partial
# row saying so is a hold-back waiting for an operator.
HOLD_BACK_MARKER = "--allow-mass-delete"
ENTITY_ORDER = ("Student", "Teacher", "Section")

_HISTORY = SyncHistory.__table__
_SCHOOLS = School.__table__
_DISTRICTS = District.__table__
_RUNS = SyncRun.__table__
_PARTS = SyncRunSchool.__table__
_T = TypeVar("_T")

# A school's state on the overview, most urgent first (the sort key is the position).
HELD_BACK = "HeldBack"
FAILING = "Failed"
RUNNING = "Running"
PARTIAL = "Partial"
NEVER = "NeverSynced"
HEALTHY = "Success"
INACTIVE = "Inactive"
STATES = (HELD_BACK, FAILING, RUNNING, PARTIAL, NEVER, HEALTHY, INACTIVE)
STATE_LABELS = {
    HELD_BACK: "Deletes held back",
    FAILING: "Failing",
    RUNNING: "Running now",
    PARTIAL: "Partial",
    NEVER: "Never synced",
    HEALTHY: "OK",
    INACTIVE: "Inactive",
}

_LEVEL = {
    RunStatus.FAILED: 3,
    RunStatus.IN_PROGRESS: 2,
    RunStatus.PARTIAL: 1,
}
_LEVEL_STATUS = {
    3: RunStatus.FAILED,
    2: RunStatus.IN_PROGRESS,
    1: RunStatus.PARTIAL,
    0: RunStatus.SUCCESS,
}


@dataclass(frozen=True)
class EntityState:
    """The latest SyncHistory row of one entity of a school."""

    entity: str
    sync_id: int
    status: str
    sync_type: str
    started_at: datetime
    ended_at: datetime | None
    processed: int
    inserted: int
    updated: int
    deleted: int
    failed: int
    error: str | None
    correlation_id: str | None

    @property
    def changed(self) -> int:
        return self.inserted + self.updated + self.deleted

    @property
    def held_back(self) -> bool:
        return self.status == RunStatus.PARTIAL and HOLD_BACK_MARKER in (self.error or "")


@dataclass(frozen=True)
class RunPoint:
    """One run of a school (its entity rows together): for the trend and the streak."""

    started_at: datetime
    status: str
    duration_seconds: float | None
    processed: int
    changed: int
    correlation_id: str | None


@dataclass(frozen=True)
class SchoolState:
    school_id: int
    name: str
    district_id: int
    district_name: str
    clever_school_id: str
    is_active: bool
    requires_full_sync: bool
    lease_owner: str | None
    lease_expires_at: datetime | None
    running: bool
    entities: dict[str, EntityState]
    runs: list[RunPoint]  # the last TREND_DAYS days, oldest first
    failure_streak: int
    streak_capped: bool  # every run of the window failed: the streak may be longer
    state: str
    full_sync_reason: str | None

    @property
    def last_sync(self) -> datetime | None:
        return max((e.started_at for e in self.entities.values()), default=None)

    @property
    def held_back(self) -> list[EntityState]:
        return [e for e in self.entities.values() if e.held_back]

    @property
    def processed(self) -> int:
        return sum(e.processed for e in self.latest_run)

    @property
    def changed(self) -> int:
        return sum(e.changed for e in self.latest_run)

    @property
    def latest_run(self) -> list[EntityState]:
        last = self.last_sync
        return [e for e in self.entities.values() if e.started_at == last]

    @property
    def attention(self) -> int:
        return STATES.index(self.state)


@dataclass(frozen=True)
class DistrictSummary:
    district_id: int
    name: str
    clever_district_id: str
    prefix: str


@dataclass(frozen=True)
class HistoryRow(EntityState):
    """A SyncHistory row with the attempts of the queued run it belongs to (if any)."""

    run_id: int | None
    attempts: int | None
    # The run's retried requests and transactions and its waits for Clever's rate limit,
    # for this entity (SyncHistory.Retries, RateLimitWaits, RateLimitWaitSeconds).
    retries: int = 0
    rate_limit_waits: int = 0
    rate_limit_wait_seconds: float = 0.0

    @property
    def duration_seconds(self) -> float | None:
        if self.ended_at is None:
            return None
        return max(0.0, (self.ended_at - self.started_at).total_seconds())


@dataclass(frozen=True)
class RunView:
    """One run's schools and outcomes, queued (SyncRuns) or not (only its history rows)."""

    run_id: int | None
    correlation_id: str
    trigger: str | None
    requested_at: datetime | None
    finished_at: datetime | None
    full: bool | None
    allow_mass_delete: bool | None
    schools: list[RunSchoolView] = field(default_factory=list)


@dataclass(frozen=True)
class RunSchoolView:
    school_id: int
    name: str | None
    status: str
    attempts: int | None
    error: str | None
    rows: list[HistoryRow]


class Overview(SessionTables):
    """Read-only queries for the dashboard; each read retried when the error is transient."""

    # --- the overview -------------------------------------------------------------------

    def districts(self) -> list[DistrictSummary]:
        query = (
            select(_DISTRICTS)
            .where(_DISTRICTS.c.RemovedAt.is_(None))
            .order_by(_DISTRICTS.c.Name, _DISTRICTS.c.DistrictId)
        )
        rows = self._read("reading districts", lambda conn: conn.execute(query).all())
        return [
            DistrictSummary(r.DistrictId, r.Name, r.CleverDistrictId, r.DistrictPrefix)
            for r in rows
        ]

    def schools(
        self, *, district_id: int | None = None, school_id: int | None = None
    ) -> list[SchoolState]:
        """Every school (of one district, or one school) with its state, most urgent first."""
        now = self._clock()
        since = now - timedelta(days=TREND_DAYS)
        where_school: list[ColumnElement[bool]] = [
            _SCHOOLS.c.RemovedAt.is_(None),
            _DISTRICTS.c.RemovedAt.is_(None),
        ]
        where_history: list[ColumnElement[bool]] = []
        if district_id is not None:
            where_school.append(_SCHOOLS.c.DistrictId == district_id)
            where_history.append(
                _HISTORY.c.SchoolId.in_(
                    select(_SCHOOLS.c.SchoolId).where(_SCHOOLS.c.DistrictId == district_id)
                )
            )
        if school_id is not None:
            where_school.append(_SCHOOLS.c.SchoolId == school_id)
            where_history.append(_HISTORY.c.SchoolId == school_id)
        # A preview's DryRun rows changed nothing: they are history, not the school's state.
        real = _HISTORY.c.Status != RunStatus.DRY_RUN
        older = (
            select(_HISTORY.c.SyncId)
            .where(
                _HISTORY.c.SchoolId == _SCHOOLS.c.SchoolId, _HISTORY.c.SyncStartTime < since, real
            )
            .exists()
        )
        schools_query = (
            select(
                _SCHOOLS,
                _DISTRICTS.c.Name.label("DistrictName"),
                _DISTRICTS.c.IsActive.label("DistrictActive"),
                older.label("HasOlder"),
            )
            .select_from(
                _SCHOOLS.join(_DISTRICTS, _DISTRICTS.c.DistrictId == _SCHOOLS.c.DistrictId)
            )
            .where(*where_school)
        )
        newest = (
            select(func.max(_HISTORY.c.SyncId).label("SyncId"))
            .where(real, *where_history)
            .group_by(_HISTORY.c.SchoolId, _HISTORY.c.EntityType)
            .subquery()
        )
        latest_query = select(_HISTORY).join(newest, newest.c.SyncId == _HISTORY.c.SyncId)
        worst = func.max(
            case(
                *((_HISTORY.c.Status == status, level) for status, level in _LEVEL.items()),
                else_=0,
            )
        )
        runs_query = (
            select(
                _HISTORY.c.SchoolId,
                _HISTORY.c.SyncStartTime,
                worst.label("Level"),
                func.max(_HISTORY.c.SyncEndTime).label("Ended"),
                func.sum(_HISTORY.c.RecordsProcessed).label("Processed"),
                func.sum(
                    _HISTORY.c.RecordsInserted
                    + _HISTORY.c.RecordsUpdated
                    + _HISTORY.c.RecordsDeleted
                ).label("Changed"),
                func.max(_HISTORY.c.CorrelationId).label("CorrelationId"),
            )
            .where(_HISTORY.c.SyncStartTime >= since, real, *where_history)
            .group_by(_HISTORY.c.SchoolId, _HISTORY.c.SyncStartTime)
            .order_by(_HISTORY.c.SchoolId, _HISTORY.c.SyncStartTime)
        )

        def read(conn: Connection) -> tuple[list[Any], list[Any], list[Any]]:
            return (
                list(conn.execute(schools_query).all()),
                list(conn.execute(latest_query).all()),
                list(conn.execute(runs_query).all()),
            )

        school_rows, latest_rows, run_rows = self._read("reading the overview", read)
        latest: dict[int, dict[str, EntityState]] = {}
        for row in latest_rows:
            latest.setdefault(row.SchoolId, {})[row.EntityType] = _entity_state(row)
        runs: dict[int, list[RunPoint]] = {}
        for row in run_rows:
            ended = row.Ended
            runs.setdefault(row.SchoolId, []).append(
                RunPoint(
                    started_at=row.SyncStartTime,
                    status=_LEVEL_STATUS[int(row.Level or 0)],
                    duration_seconds=(
                        max(0.0, (ended - row.SyncStartTime).total_seconds()) if ended else None
                    ),
                    processed=int(row.Processed or 0),
                    changed=int(row.Changed or 0),
                    correlation_id=row.CorrelationId,
                )
            )
        states = [
            _school_state(row, latest.get(row.SchoolId, {}), runs.get(row.SchoolId, []), now)
            for row in school_rows
        ]
        states.sort(key=lambda s: (s.attention, s.district_name.lower(), s.name.lower()))
        return states

    # --- one school ---------------------------------------------------------------------

    def history(
        self,
        school_id: int,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        entity: str | None = None,
        status: str | None = None,
        limit: int = 200,
    ) -> list[HistoryRow]:
        """The school's SyncHistory rows, newest first, with their queued run's attempts."""
        query = (
            select(
                _HISTORY,
                _RUNS.c.RunId.label("RunId"),
                _PARTS.c.Attempts.label("Attempts"),
            )
            .select_from(
                _HISTORY.outerjoin(
                    _RUNS, _RUNS.c.CorrelationId == _HISTORY.c.CorrelationId
                ).outerjoin(
                    _PARTS,
                    and_(
                        _PARTS.c.RunId == _RUNS.c.RunId,
                        _PARTS.c.SchoolId == _HISTORY.c.SchoolId,
                    ),
                )
            )
            .where(_HISTORY.c.SchoolId == school_id)
            .order_by(_HISTORY.c.SyncStartTime.desc(), _HISTORY.c.SyncId.desc())
            .limit(limit)
        )
        if since is not None:
            query = query.where(_HISTORY.c.SyncStartTime >= since)
        if until is not None:
            query = query.where(_HISTORY.c.SyncStartTime < until)
        if entity is not None:
            query = query.where(_HISTORY.c.EntityType == entity)
        if status is not None:
            query = query.where(_HISTORY.c.Status == status)
        rows = self._read("reading SyncHistory", lambda conn: conn.execute(query).all())
        return [_history_row(row) for row in rows]

    # --- one run ------------------------------------------------------------------------

    def run(self, key: str) -> RunView | None:
        """A run by its run id (digits) or its correlation id; None when neither is known."""

        def read(conn: Connection) -> RunView | None:
            run = None
            if key.isdigit() and 0 < int(key) <= 2**31 - 1:
                run = conn.execute(select(_RUNS).where(_RUNS.c.RunId == int(key))).first()
            if run is None:
                run = conn.execute(select(_RUNS).where(_RUNS.c.CorrelationId == key)).first()
            correlation_id = run.CorrelationId if run is not None else key
            history = conn.execute(
                select(_HISTORY, _SCHOOLS.c.Name.label("SchoolName"))
                .select_from(
                    _HISTORY.outerjoin(_SCHOOLS, _SCHOOLS.c.SchoolId == _HISTORY.c.SchoolId)
                )
                .where(_HISTORY.c.CorrelationId == correlation_id)
                .order_by(_HISTORY.c.SchoolId, _HISTORY.c.SyncId)
            ).all()
            rows: dict[int, list[HistoryRow]] = {}
            names: dict[int, str] = {}
            for row in history:
                rows.setdefault(row.SchoolId, []).append(
                    _history_row(row, run_id=run.RunId if run is not None else None)
                )
                names[row.SchoolId] = row.SchoolName
            if run is None:
                if not history:
                    return None
                return RunView(
                    run_id=None,
                    correlation_id=correlation_id,
                    trigger=None,
                    requested_at=min(r.started_at for rs in rows.values() for r in rs),
                    finished_at=None,
                    full=None,
                    allow_mass_delete=None,
                    schools=[
                        RunSchoolView(
                            school_id=school_id,
                            name=names.get(school_id),
                            status=_worst([r.status for r in school_rows]),
                            attempts=None,
                            error=None,
                            rows=school_rows,
                        )
                        for school_id, school_rows in rows.items()
                    ],
                )
            parts = conn.execute(
                select(_PARTS, _SCHOOLS.c.Name.label("SchoolName"))
                .select_from(_PARTS.outerjoin(_SCHOOLS, _SCHOOLS.c.SchoolId == _PARTS.c.SchoolId))
                .where(_PARTS.c.RunId == run.RunId)
                .order_by(_PARTS.c.SchoolId)
            ).all()
            return RunView(
                run_id=run.RunId,
                correlation_id=run.CorrelationId,
                trigger=run.Trigger,
                requested_at=run.RequestedAt,
                finished_at=run.FinishedAt,
                full=bool(run.Full),
                allow_mass_delete=bool(run.AllowMassDelete),
                schools=[
                    RunSchoolView(
                        school_id=p.SchoolId,
                        name=p.SchoolName,
                        status=p.Status,
                        attempts=p.Attempts or 0,
                        error=p.Error,
                        rows=rows.get(p.SchoolId, []),
                    )
                    for p in parts
                ],
            )

        return self._read("reading a sync run", read)


def _entity_fields(row: Any) -> dict[str, Any]:
    """A SyncHistory row's columns as EntityState's fields."""
    return {
        "entity": row.EntityType,
        "sync_id": row.SyncId,
        "status": row.Status,
        "sync_type": row.SyncType,
        "started_at": row.SyncStartTime,
        "ended_at": row.SyncEndTime,
        "processed": row.RecordsProcessed or 0,
        "inserted": row.RecordsInserted or 0,
        "updated": row.RecordsUpdated or 0,
        "deleted": row.RecordsDeleted or 0,
        "failed": row.RecordsFailed or 0,
        "error": row.ErrorMessage,
        "correlation_id": row.CorrelationId,
    }


def _entity_state(row: Any) -> EntityState:
    return EntityState(**_entity_fields(row))


def _history_row(row: Any, *, run_id: int | None = None) -> HistoryRow:
    mapping = row._mapping
    return HistoryRow(
        **_entity_fields(row),
        run_id=mapping.get("RunId", run_id),
        attempts=mapping.get("Attempts"),
        retries=row.Retries or 0,
        rate_limit_waits=row.RateLimitWaits or 0,
        rate_limit_wait_seconds=float(row.RateLimitWaitSeconds or 0),
    )


def _worst(statuses: Sequence[str]) -> str:
    known = {str(status): level for status, level in _LEVEL.items()}
    level = max((known.get(s, 0) for s in statuses), default=0)
    return _LEVEL_STATUS[level]


def streak(runs: Sequence[RunPoint]) -> int:
    """Failed runs since the latest Success (Partial and unfinished runs neither count nor
    reset), the attempts of one queued run counted once, as History.failure_streak does."""
    count = 0
    newer: str | None = None
    for run in reversed(runs):
        same = run.correlation_id is not None and run.correlation_id == newer
        newer = run.correlation_id
        if same:
            continue
        if run.status == RunStatus.SUCCESS:
            break
        if run.status == RunStatus.FAILED:
            count += 1
    return count


def attention(
    *,
    is_active: bool,
    running: bool,
    entities: dict[str, EntityState],
    failure_streak: int,
) -> str:
    """The school's state on the overview (STATES, most urgent first)."""
    if not is_active:
        return INACTIVE
    if any(e.held_back for e in entities.values()):
        return HELD_BACK
    last = max((e.started_at for e in entities.values()), default=None)
    latest = [e.status for e in entities.values() if e.started_at == last]
    if failure_streak or RunStatus.FAILED in latest:
        return FAILING
    if running:
        return RUNNING
    if not entities:
        return NEVER
    if RunStatus.PARTIAL in latest or RunStatus.IN_PROGRESS in latest:
        return PARTIAL
    return HEALTHY


def full_sync_reason(
    requires_full_sync: bool, entities: dict[str, EntityState], running: bool
) -> str | None:
    """Why the school's next run will be a full one, as far as SessionDb tells."""
    if not requires_full_sync:
        return None
    held = [e.entity for e in entities.values() if e.held_back]
    if held:
        return (
            f"the mass-delete guard held back deletes of {', '.join(held)} rows: it stays "
            "flagged until an operator accepts them (or Clever is fixed)"
        )
    if not entities:
        return "never synced: the first sync is a full one"
    last = max(e.started_at for e in entities.values())
    latest = [e for e in entities.values() if e.started_at == last]
    if running or any(e.status == RunStatus.IN_PROGRESS for e in latest):
        return "a full sync is running"
    if any(e.status == RunStatus.FAILED for e in latest):
        return "the last run failed: a full sync follows to catch up"
    incomplete = [e for e in latest if e.status == RunStatus.PARTIAL and e.error]
    if incomplete:
        return "the last run did not finish every list (see its message)"
    return "flagged by an operator (or by a full sync that did not finish)"


def _school_state(
    row: Any, entities: dict[str, EntityState], runs: list[RunPoint], now: datetime
) -> SchoolState:
    running = (
        row.SyncLeaseOwner is not None
        and row.SyncLeaseExpiresAt is not None
        and row.SyncLeaseExpiresAt > now
    )
    count = streak(runs)
    is_active = bool(row.IsActive) and bool(row.DistrictActive)  # as runs decide
    ordered = {name: entities[name] for name in ENTITY_ORDER if name in entities}
    ordered.update({k: v for k, v in entities.items() if k not in ordered})
    return SchoolState(
        school_id=row.SchoolId,
        name=row.Name,
        district_id=row.DistrictId,
        district_name=row.DistrictName,
        clever_school_id=row.CleverSchoolId,
        is_active=is_active,
        requires_full_sync=bool(row.RequiresFullSync),
        lease_owner=row.SyncLeaseOwner if running else None,
        lease_expires_at=row.SyncLeaseExpiresAt if running else None,
        running=running,
        entities=ordered,
        runs=runs,
        failure_streak=count,
        # Every run of the window failed and there are older ones: the streak may be longer.
        streak_capped=bool(row.HasOlder)
        and bool(runs)
        and count == len({r.correlation_id or r.started_at for r in runs}),
        state=attention(
            is_active=is_active, running=running, entities=ordered, failure_streak=count
        ),
        full_sync_reason=full_sync_reason(bool(row.RequiresFullSync), ordered, running),
    )
