"""One school's sync run: lease, mode, history, and the full, data or events pass.

Full sync reads the event baseline first, streams every page, upserts in batches, and only
when every page arrived removes what Clever no longer has (unless that would remove more
than ``MaxDeletePercent``). Incremental sync applies events after the stored cursor, or,
when the district has not enabled events, compares the data and writes only real changes;
it never deletes. Every run writes one SyncHistory row per entity (README: 'How a sync works').
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cleversync import runtally
from cleversync.clever.breaker import RunBreakers
from cleversync.db.retry import translate
from cleversync.db.school.entities import ENTITIES
from cleversync.db.school.store import EngineFactory
from cleversync.db.sessiondb import SessionEngine
from cleversync.db.sessiondb.changes import ChangeBuffer, ChangeLog
from cleversync.db.sessiondb.history import History, sanitize
from cleversync.db.sessiondb.lease import Lease, Leases
from cleversync.db.sessiondb.registry import DistrictRecord, Registry, SchoolRecord
from cleversync.errors import CleverSyncError, LeaseHeldError, LeaseLostError
from cleversync.logcontext import log_context
from cleversync.redaction import Redactor
from cleversync.runtally import RunTally
from cleversync.settings import Settings
from cleversync.sync.modes import ClientFactory, Modes, Run, dims
from cleversync.sync.outcome import EntityOutcome
from cleversync.sync.plan import choose_mode
from cleversync.sync.rollup import roll_up, unwritten_failure
from cleversync.timeutil import utcnow
from cleversync.vocabulary import GOOD_STATUSES, RunStatus, SyncMode, SyncType

logger = logging.getLogger(__name__)


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
    status: RunStatus  # Success | Partial | Failed | Skipped
    mode: SyncMode | None = None
    reason: str | None = None
    error: str | None = None
    entities: list[EntityOutcome] = field(default_factory=list)
    duration_ms: int = 0
    # Failed for a cause that may pass (Clever or a database unreachable): a queued school's
    # message is delivered again rather than completed.
    retryable: bool = False


@dataclass(frozen=True)
class Progress:
    school_id: int
    entity: str
    processed: int


class SchoolSync:
    """Runs one school's sync; safe to use from many threads (one school per call)."""

    def __init__(
        self,
        *,
        settings: Settings,
        session_engine: SessionEngine,
        school_engine: EngineFactory,
        clever: ClientFactory,
        owner: str,
        redactor: Redactor,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self._settings = settings
        self._owner = owner
        self._clock = clock
        policy = settings.retry.database
        self.registry = Registry(session_engine, clock=clock)
        self.history = History(
            session_engine, policy=policy, redactor=redactor, clock=clock, sleep=sleep
        )
        self.leases = Leases(session_engine, policy=policy, clock=clock, sleep=sleep)
        self.changes = ChangeLog(session_engine, policy=policy, sleep=sleep)
        self._modes = Modes(
            settings=settings,
            school_engine=school_engine,
            clever=clever,
            registry=self.registry,
            history=self.history,
            clock=clock,
            sleep=sleep,
            on_progress=(lambda school, entity, n: on_progress(Progress(school, entity, n)))
            if on_progress
            else None,
        )

    # --- the run ------------------------------------------------------------------------

    def run(
        self, school: SchoolRecord, district: DistrictRecord, request: SyncRequest
    ) -> SchoolResult:
        # Everything logged during the run (retries, waits, token refreshes) carries these,
        # and its retries and rate-limit waits are counted for its SyncHistory rows.
        with (
            log_context(
                CorrelationId=request.correlation_id,
                DistrictId=district.district_id,
                SchoolId=school.school_id,
            ),
            runtally.tally(RunTally(ENTITIES[0].name)),
        ):
            return self._run_leased(school, district, request)

    def _run_leased(
        self, school: SchoolRecord, district: DistrictRecord, request: SyncRequest
    ) -> SchoolResult:
        began = time.perf_counter()
        result = SchoolResult(school.school_id, school.name, district.district_id, RunStatus.FAILED)
        try:
            lease = self.leases.acquire(school.school_id, self._owner)
        except LeaseHeldError as exc:
            result.status, result.error = RunStatus.SKIPPED, str(exc)
            logger.info("Skipped school %s: %s", school.school_id, exc, extra=dims(school, request))
            return result
        except CleverSyncError as exc:
            result.error = sanitize(str(exc))
            result.retryable = exc.retryable
            logger.error(
                "School %s failed before it started: %s",
                school.school_id,
                exc,
                extra=dims(school, request),
            )
            return result
        try:
            self._run(school, district, request, lease, result)
        except Exception as exc:  # history could not be written: say so in the result and logs
            result.status, result.error = RunStatus.FAILED, sanitize(_describe(exc))
            result.retryable = _retryable(exc)
            logger.exception(
                "School %s failed: %s", school.school_id, result.error, extra=dims(school, request)
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
                extra=dims(school, request),
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
        sync_type = SyncType.FULL if decision.mode == SyncMode.FULL else SyncType.INCREMENTAL
        ids = self.history.open_run(
            school_id=school.school_id,
            entities=[e.name for e in ENTITIES],
            sync_type=sync_type,
            started_at=started,
            correlation_id=request.correlation_id,
        )
        changes = ChangeBuffer(self._settings.history.max_change_details_per_run, self._clock)
        run = Run(
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
                    changes=changes,
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
            extra=dims(school, request, SyncType=sync_type),
        )
        mode = decision.mode
        try:
            mode = self._modes.execute(run, decision)
        except Exception as exc:  # the school's run ends here; every open entity fails
            message = _describe(exc)
            for outcome in run.outcomes.values():
                if not outcome.done:
                    outcome.fail(message)
                    outcome.retryable = _retryable(exc)
            if not isinstance(exc, CleverSyncError):
                logger.exception(
                    "Unexpected error syncing school %s",
                    school.school_id,
                    extra=dims(school, request),
                )
        finally:
            self._close(run, mode, result)
            if run.db is not None:
                # Hundreds of schools a night: keep no idle pool per school database open
                # until the next run (the engine reconnects then).
                run.db.dispose()

    def _save_changes(self, run: Run) -> dict[str, int]:
        """Write the run's change detail; returns what was left out, by entity (everything,
        if it cannot be written: the run's counts stand, only the detail is lost)."""
        buffer = next(iter(run.outcomes.values())).changes
        omitted = dict(buffer.omitted)
        try:
            self.changes.save(
                buffer,
                school_id=run.school.school_id,
                sync_ids={o.entity: o.sync_id for o in run.outcomes.values()},
            )
        except Exception as exc:
            for entity, *_ in (*buffer.rows, *buffer.held):
                omitted[entity] = omitted.get(entity, 0) + 1
            logger.warning(
                "Could not write school %s's change detail (the sync itself is unaffected): %s",
                run.school.school_id,
                _describe(exc),
                extra=dims(run.school, run.request),
            )
        return omitted

    def _close(self, run: Run, mode: SyncMode, result: SchoolResult) -> None:
        # A write that fails here is reported after the run's own error, never instead of
        # it: "writing 7 student rows: ..." is what the operator must read first.
        unwritten: list[str] = []
        omitted = self._save_changes(run)
        counted, _ = runtally.current()
        for outcome in run.outcomes.values():
            if not outcome.done:
                outcome.fail("the run stopped before this entity was synced")
            if counted is not None:
                outcome.waits = counted.of(outcome.entity)
            good = outcome.status in GOOD_STATUSES
            try:
                self.history.close(
                    outcome.sync_id,
                    status=outcome.status,
                    counts=outcome.counts,
                    error=outcome.message(),
                    last_event_id=outcome.last_event_id if good else None,
                    last_sync_timestamp=run.started if good else None,
                    changes_omitted=omitted.get(outcome.entity, 0),
                    waits=outcome.waits,
                )
            except Exception as exc:  # the row stays InProgress until the next sweep
                unwritten.append(_describe(exc))
                logger.error(
                    "Could not close school %s's %s SyncHistory row %s: %s",
                    run.school.school_id,
                    outcome.entity,
                    outcome.sync_id,
                    unwritten[-1],
                    extra=dims(run.school, run.request),
                )
        result.entities = list(run.outcomes.values())
        rollup = roll_up(result.entities, mode=mode, flagged=run.flagged)
        result.status, result.error = rollup.status, rollup.error
        result.mode, result.reason = mode, run.reason
        result.retryable = result.status == RunStatus.FAILED and any(
            o.retryable for o in result.entities if o.status == RunStatus.FAILED
        )
        if rollup.needs_full != run.flagged:
            try:
                self.registry.set_requires_full_sync(run.school.school_id, rollup.needs_full)
            except Exception as exc:
                unwritten.append(_describe(exc))
        if unwritten:
            result.status, result.error = (
                RunStatus.FAILED,
                unwritten_failure(result.error, unwritten),
            )
        level = logging.ERROR if result.status == RunStatus.FAILED else logging.INFO
        logger.log(
            level,
            "School %s (%s) finished: %s%s",
            run.school.school_id,
            run.school.name,
            result.status,
            f" ({result.error})" if result.error else "",
            extra=dims(run.school, run.request, Status=result.status, SyncType=mode),
        )


def _retryable(exc: BaseException) -> bool:
    """Whether trying the school again later may succeed (its error's class says so)."""
    ours = translate(exc, "database") or exc
    return bool(getattr(ours, "retryable", False))


def _describe(exc: BaseException) -> str:
    translated = translate(exc, "database")  # None unless a database error
    if translated is not None:
        return str(translated)
    if isinstance(exc, CleverSyncError):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {exc}"


__all__ = ["LeaseLostError", "Progress", "SchoolResult", "SchoolSync", "SyncRequest"]
