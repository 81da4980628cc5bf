"""One school's sync run: lease, mode, history, and the full, data or events pass (design §6).

Full sync reads the event baseline first, streams every page, upserts in batches, and only
when every page arrived removes what Clever no longer has (unless that would remove more
than ``MaxDeletePercent``). Incremental sync applies events after the stored cursor, or,
when the district has not enabled events, compares the data and writes only real changes;
it never deletes. Every run writes one SyncHistory row per entity.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from cleversync.clever.client import CleverClient, FieldReport, RunBreakers
from cleversync.db.migrate import require_current
from cleversync.db.retry import in_transaction, translate
from cleversync.errors import (
    CleverSyncError,
    DatabaseUnavailableError,
    EventCursorExpiredError,
    EventsNotEnabledError,
    LeaseHeldError,
    LeaseLostError,
    SyncError,
)
from cleversync.logcontext import log_context
from cleversync.registry import DistrictRecord, Registry, SchoolRecord
from cleversync.settings import Settings
from cleversync.sync.entities import ENTITIES
from cleversync.sync.events import apply_events
from cleversync.sync.history import FAILED, GOOD, Counts, History, sanitize
from cleversync.sync.lease import Lease, Leases
from cleversync.sync.outcome import EntityOutcome
from cleversync.sync.passes import PassContext, run_passes
from cleversync.sync.plan import Mode, ModeDecision, choose_mode, expects_rows
from cleversync.timeutil import utcnow

logger = logging.getLogger(__name__)

SKIPPED = "Skipped"
INTERRUPTED = "interrupted: the run was asked to stop (Ctrl-C or SIGTERM) after the current batch"
WAIT_SLICE_SECONDS = 10.0  # a long wait for Clever renews the lease and checks the budget

# (district, field report, *, wait=, breaker=) -> client
ClientFactory = Callable[..., CleverClient]
EngineFactory = Callable[[SchoolRecord], Engine]
_T = TypeVar("_T")


@dataclass(frozen=True)
class SyncRequest:
    full: bool = False
    allow_mass_delete: bool = False
    correlation_id: str = ""
    # Set to stop the run at the next batch boundary (an operator's Ctrl-C or SIGTERM).
    stop: threading.Event | None = field(default=None, compare=False)
    breakers: RunBreakers | None = None  # the run's "Clever is down" per district


@dataclass
class SchoolResult:
    school_id: int
    name: str
    district_id: int
    status: str  # Success | Partial | Failed | Skipped
    mode: str | None = None
    reason: str | None = None
    error: str | None = None
    entities: list[EntityOutcome] = field(default_factory=list)
    duration_ms: int = 0


@dataclass(frozen=True)
class Progress:
    school_id: int
    entity: str
    processed: int


@dataclass
class _Run:
    school: SchoolRecord
    district: DistrictRecord
    request: SyncRequest
    lease: Lease
    started: datetime
    deadline: datetime
    outcomes: dict[str, EntityOutcome] = field(default_factory=dict)
    engine: Engine | None = None
    client: CleverClient | None = None
    reason: str = ""
    cursor: str = ""  # the event cursor of the school's last good run
    flagged: bool = False  # RequiresFullSync as this run last saw or wrote it
    choose: Callable[..., ModeDecision] = choose_mode  # the mode, given more facts


class SchoolSync:
    """Runs one school's sync; safe to use from many threads (one school per call)."""

    def __init__(
        self,
        *,
        settings: Settings,
        session_engine: Engine,
        school_engine: EngineFactory,
        clever: ClientFactory,
        owner: str,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self._settings = settings
        self._school_engine = school_engine
        self._clever = clever
        self._owner = owner
        self._clock = clock
        self._sleep = sleep
        self._on_progress = on_progress
        policy = settings.retry.database
        self.registry = Registry(session_engine, clock=clock)
        self.history = History(session_engine, policy=policy, clock=clock, sleep=sleep)
        self.leases = Leases(session_engine, policy=policy, clock=clock, sleep=sleep)

    # --- the run ------------------------------------------------------------------------

    def run(
        self, school: SchoolRecord, district: DistrictRecord, request: SyncRequest
    ) -> SchoolResult:
        # Everything logged during the run (retries, waits, token refreshes) carries these.
        with log_context(
            CorrelationId=request.correlation_id,
            DistrictId=district.district_id,
            SchoolId=school.school_id,
        ):
            return self._run_leased(school, district, request)

    def _run_leased(
        self, school: SchoolRecord, district: DistrictRecord, request: SyncRequest
    ) -> SchoolResult:
        began = time.perf_counter()
        result = SchoolResult(school.school_id, school.name, district.district_id, FAILED)
        try:
            lease = self.leases.acquire(school.school_id, self._owner)
        except LeaseHeldError as exc:
            result.status, result.error = SKIPPED, str(exc)
            logger.info(
                "Skipped school %s: %s", school.school_id, exc, extra=_dims(school, request)
            )
            return result
        except CleverSyncError as exc:
            result.error = sanitize(str(exc))
            logger.error(
                "School %s failed before it started: %s",
                school.school_id,
                exc,
                extra=_dims(school, request),
            )
            return result
        try:
            self._run(school, district, request, lease, result)
        except Exception as exc:  # history could not be written: say so in the result and logs
            result.status, result.error = FAILED, sanitize(_describe(exc))
            logger.exception(
                "School %s failed: %s", school.school_id, result.error, extra=_dims(school, request)
            )
        finally:
            try:
                lease.release()
            except CleverSyncError as exc:
                logger.warning(
                    "Could not release school %s's lease (it expires by itself): %s",
                    school.school_id,
                    exc,
                )
            result.duration_ms = int((time.perf_counter() - began) * 1000)
        return result

    def _run(
        self,
        school: SchoolRecord,
        district: DistrictRecord,
        request: SyncRequest,
        lease: Lease,
        result: SchoolResult,
    ) -> None:
        closed = self.history.close_abandoned(
            school.school_id,
            f"abandoned: the run holding this school's lease "
            f"({lease.taken_over_from or 'unknown'}) stopped without finishing; closed by run "
            f"{request.correlation_id}",
        )
        if closed:
            logger.warning(
                "Closed %d abandoned SyncHistory row(s) of school %s",
                closed,
                school.school_id,
                extra=_dims(school, request),
            )
        school = self.registry.get_school(school.school_id)  # fresh RequiresFullSync
        started = self._clock()
        last = self.history.last_good_run(school.school_id)
        choose = functools.partial(
            choose_mode,
            requested_full=request.full or request.allow_mass_delete,
            requires_full_sync=school.requires_full_sync,
            last=last,
            now=started,
            retention_days=self._settings.sync.event_retention_days,
        )
        decision = choose()
        sync_type = "Full" if decision.mode == "full" else "Incremental"
        ids = self.history.open_run(
            school_id=school.school_id,
            entities=[e.name for e in ENTITIES],
            sync_type=sync_type,
            started_at=started,
            correlation_id=request.correlation_id,
        )
        run = _Run(
            school,
            district,
            request,
            lease,
            started,
            deadline=started + timedelta(minutes=self._settings.sync.timeout_minutes),
            outcomes={
                name: EntityOutcome(
                    name,
                    sync_type,
                    sync_id,
                    district.district_id,
                    school.school_id,
                    request.correlation_id,
                )
                for name, sync_id in ids.items()
            },
        )
        result.mode, result.reason = decision.mode, decision.reason
        run.reason = decision.reason
        run.cursor = last.last_event_id if last and last.last_event_id is not None else ""
        run.flagged = school.requires_full_sync
        run.choose = choose
        logger.info(
            "Syncing school %s (%s): %s sync, %s",
            school.school_id,
            school.name,
            sync_type.lower(),
            decision.reason,
            extra=_dims(school, request, SyncType=sync_type),
        )
        mode = decision.mode
        try:
            mode = self._execute(run, decision)
        except Exception as exc:  # the school's run ends here; every open entity fails
            message = _describe(exc)
            for outcome in run.outcomes.values():
                if not outcome.done:
                    outcome.fail(message)
            if not isinstance(exc, CleverSyncError):
                logger.exception(
                    "Unexpected error syncing school %s",
                    school.school_id,
                    extra=_dims(school, request),
                )
        finally:
            self._close(run, mode, result)
            if run.engine is not None:
                # Hundreds of schools a night: keep no idle pool per school database open
                # until the next run (the engine reconnects then).
                run.engine.dispose()

    def _execute(self, run: _Run, decision: ModeDecision) -> Mode:
        hint = f"cleversync db upgrade --school-id {run.school.school_id}"
        try:
            run.engine = self._school_engine(run.school)
        except DatabaseUnavailableError as exc:
            raise DatabaseUnavailableError(
                f"{exc}; create the school's tables with '{hint}'"
            ) from exc
        try:
            require_current(
                run.engine,
                "school",
                f"school database {run.school.database_name}",
                hint,
            )
        except SQLAlchemyError as exc:
            raise translate(exc, f"school database {run.school.database_name}") or exc from exc
        breakers = run.request.breakers
        run.client = self._clever(
            run.district,
            FieldReport(),
            wait=lambda seconds: self._clever_wait(run, seconds),
            breaker=breakers.district(run.district.district_id) if breakers else None,
        )
        if decision.mode != "full":
            emptied = self._emptied(run)
            if emptied:
                decision = run.choose(empty_entities=emptied)
                self._switch_to_full(run, decision.reason)
                logger.warning(
                    "School %s: %s; running a full sync",
                    run.school.school_id,
                    decision.reason,
                    extra=_dims(run.school, run.request),
                )
        if decision.mode == "events":
            try:
                self._events(run, run.cursor)
                return "events"
            except EventCursorExpiredError as exc:
                self._switch_to_full(run, f"{exc}; fell back to a full sync")
                self._full(run)
                return "full"
            except EventsNotEnabledError as exc:
                run.reason = f"compared data: {exc}"
                self._fallback_note(run, exc)
                self._data(run, baseline_known_disabled=True)
                return "data"
        if decision.mode == "data":
            self._data(run)
            return "data"
        self._full(run)
        return "full"

    def _emptied(self, run: _Run) -> list[str]:
        """Entities whose table holds no active rows though their history says it must."""
        runs = self.history.entity_runs(run.school.school_id)
        expected = [e for e in ENTITIES if expects_rows(runs.get(e.name, []))]
        if not expected:
            return []

        def empty(conn: Connection) -> list[str]:
            return [
                e.name
                for e in expected
                if conn.execute(
                    select(e.table.c[e.key]).where(e.table.c.IsActive.is_(True)).limit(1)
                ).first()
                is None
            ]

        return self._transaction(run, "looking for active rows", empty)

    def _switch_to_full(self, run: _Run, reason: str) -> None:
        """The run becomes a full sync (its history rows say so, with the reason)."""
        run.reason = reason
        self._note_all(run, reason)
        self.history.set_sync_type([o.sync_id for o in run.outcomes.values()], "Full")
        for outcome in run.outcomes.values():
            outcome.sync_type, outcome.status, outcome.counts = ("Full", "InProgress", Counts())

    # --- modes --------------------------------------------------------------------------

    def _full(self, run: _Run) -> None:
        # Flagged before the first page, cleared only when every entity finished: a run
        # killed in between (no finally block runs) leaves the next run a full one, so what
        # Clever removed is still removed.
        if not run.flagged:
            self.registry.set_requires_full_sync(run.school.school_id, True)
            run.flagged = True
        baseline = self._baseline(run)  # before any data: no event during the sync is lost
        self._passes(run, delete=True)
        for outcome in run.outcomes.values():
            outcome.last_event_id = baseline

    def _data(self, run: _Run, *, baseline_known_disabled: bool = False) -> None:
        baseline = None if baseline_known_disabled else self._baseline(run, fallback=True)
        self._passes(run, delete=False)
        for outcome in run.outcomes.values():
            outcome.last_event_id = baseline

    def _events(self, run: _Run, cursor: str) -> None:
        assert run.client is not None
        assert run.engine is not None
        last = apply_events(
            run.client,
            school_clever_id=run.school.clever_school_id,
            cursor=cursor,
            page_size=self._settings.sync.page_size,
            outcomes=run.outcomes,
            transaction=lambda what, fn: self._transaction(run, what, fn),
            now=self._clock,
            after_page=lambda: self._checkpoint(run),
        )
        for outcome in run.outcomes.values():
            outcome.last_event_id = last
            outcome.finish()

    def _baseline(self, run: _Run, *, fallback: bool = False) -> str | None:
        assert run.client is not None
        try:
            return run.client.latest_event_id()
        except EventsNotEnabledError as exc:
            if fallback:
                self._fallback_note(run, exc)
            else:
                self._note_all(
                    run, f"{exc}; incremental runs will compare data instead of reading events"
                )
                logger.warning(
                    "Events API not enabled for district %s: %s",
                    run.district.district_id,
                    exc,
                    extra=_dims(run.school, run.request),
                )
            return None

    def _fallback_note(self, run: _Run, exc: Exception) -> None:
        note = f"compared data instead of reading events: {exc}"
        self._note_all(run, note)
        logger.warning(
            "School %s: %s", run.school.school_id, note, extra=_dims(run.school, run.request)
        )

    def _note_all(self, run: _Run, note: str) -> None:
        for outcome in run.outcomes.values():
            outcome.notes.append(note)

    # --- entity passes ------------------------------------------------------------------

    def _passes(self, run: _Run, *, delete: bool) -> None:
        assert run.client is not None
        school = run.school.school_id
        on_progress = self._on_progress
        context = PassContext(
            settings=self._settings,
            transaction=lambda what, fn: self._transaction(run, what, fn),
            checkpoint=lambda: self._checkpoint(run),
            clock=self._clock,
            allow_mass_delete=run.request.allow_mass_delete,
            progress=(lambda entity, n: on_progress(Progress(school, entity, n)))
            if on_progress
            else None,
            school_id=school,
        )
        run_passes(context, run.client, run.school.clever_school_id, run.outcomes, delete=delete)

    # --- plumbing -----------------------------------------------------------------------

    def _transaction(self, run: _Run, what: str, fn: Callable[[Connection], _T]) -> _T:
        assert run.engine is not None
        return in_transaction(
            run.engine,
            fn,
            policy=self._settings.retry.database,
            what=f"{what} in school database {run.school.database_name}",
            sleep=self._sleep,
        )

    def _checkpoint(self, run: _Run) -> None:
        """Between batches: renew the lease, and stop a run that outlived its time budget."""
        if run.request.stop is not None and run.request.stop.is_set():
            raise SyncError(INTERRUPTED)
        if self._clock() > run.deadline:
            raise SyncError(
                f"time budget exceeded: the sync of school {run.school.school_id} ran longer than "
                f"CleverSync__Sync__TimeoutMinutes={self._settings.sync.timeout_minutes:g}; stopped"
            )
        run.lease.renew()

    def _clever_wait(self, run: _Run, seconds: float) -> None:
        """Every wait for Clever (retries, rate limits), and the moment before each request
        (``seconds`` 0): in slices, renewing the lease and keeping to the time budget, so
        a long wait neither lets the lease lapse nor outlives the run's budget."""
        if seconds > 0 and self._clock() + timedelta(seconds=seconds) > run.deadline:
            raise SyncError(
                f"time budget exceeded: waiting {seconds:.0f} s for Clever would take the sync "
                f"of school {run.school.school_id} past "
                f"CleverSync__Sync__TimeoutMinutes={self._settings.sync.timeout_minutes:g}; "
                "stopped"
            )
        self._checkpoint(run)
        while seconds > 0:
            step = min(seconds, WAIT_SLICE_SECONDS)
            self._sleep(step)
            seconds -= step
            self._checkpoint(run)

    def _close(self, run: _Run, mode: str, result: SchoolResult) -> None:
        # A write that fails here is reported after the run's own error, never instead of
        # it: "writing 7 student rows: ..." is what the operator must read first.
        unwritten: list[str] = []
        for outcome in run.outcomes.values():
            if not outcome.done:
                outcome.fail("the run stopped before this entity was synced")
            good = outcome.status in GOOD
            try:
                self.history.close(
                    outcome.sync_id,
                    status=outcome.status,
                    counts=outcome.counts,
                    error=outcome.message(),
                    last_event_id=outcome.last_event_id if good else None,
                    last_sync_timestamp=run.started if good else None,
                )
            except Exception as exc:  # the row stays InProgress until the next sweep
                unwritten.append(_describe(exc))
                logger.error(
                    "Could not close school %s's %s SyncHistory row %s: %s",
                    run.school.school_id,
                    outcome.entity,
                    outcome.sync_id,
                    unwritten[-1],
                    extra=_dims(run.school, run.request),
                )
        outcomes = list(run.outcomes.values())
        result.entities = outcomes
        statuses = {o.status for o in outcomes}
        result.status = (
            FAILED if FAILED in statuses else ("Partial" if "Partial" in statuses else "Success")
        )
        result.mode, result.reason = mode, run.reason
        result.error = next((o.error for o in outcomes if o.error), None)
        incomplete = any(o.incomplete for o in outcomes)
        if mode == "full":
            needs_full = not all(o.completed for o in outcomes)
        else:  # an incomplete list in any mode: only a full sync removes what is gone
            needs_full = run.flagged or incomplete
        if needs_full != run.flagged:
            try:
                self.registry.set_requires_full_sync(run.school.school_id, needs_full)
            except Exception as exc:
                unwritten.append(_describe(exc))
        if unwritten:
            result.status = FAILED
            note = f"its sync record could not be written: {unwritten[0]}"
            result.error = sanitize(f"{result.error}; and {note}" if result.error else note)
        level = logging.ERROR if result.status == FAILED else logging.INFO
        logger.log(
            level,
            "School %s (%s) finished: %s%s",
            run.school.school_id,
            run.school.name,
            result.status,
            f" ({result.error})" if result.error else "",
            extra=_dims(run.school, run.request, Status=result.status, SyncType=mode),
        )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SQLAlchemyError):
        translated = translate(exc, "database")
        if translated is not None:
            return str(translated)
    if isinstance(exc, CleverSyncError):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {exc}"


def _dims(school: SchoolRecord, request: SyncRequest, **extra: Any) -> dict[str, Any]:
    return {
        "CorrelationId": request.correlation_id,
        "DistrictId": school.district_id,
        "SchoolId": school.school_id,
        **extra,
    }


__all__ = ["LeaseLostError", "Progress", "SchoolResult", "SchoolSync", "SyncRequest"]
