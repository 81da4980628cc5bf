"""Runs many schools: all districts, one district or one school, a few at a time.

Schools run in a thread pool of ``MaxSchoolsInParallel`` (the sync is blocking code). One
school's failure, whatever it is, never stops another. When a school's run ends (here or
from the queue), a school whose Failed runs just reached ``AlertAfterConsecutiveFailures``
in a row gets one ``ConsecutiveSyncFailures`` alert event; after a timer run, old history is
purged.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cleversync.clever.breaker import RunBreakers
from cleversync.db.sessiondb.history import sanitize
from cleversync.db.sessiondb.registry import DistrictRecord, SchoolRecord
from cleversync.errors import CleverSyncError, UsageError
from cleversync.settings import Settings
from cleversync.sync.school import SchoolResult, SchoolSync, SyncRequest
from cleversync.threads import bound
from cleversync.timeutil import utcnow
from cleversync.vocabulary import RunStatus

if TYPE_CHECKING:
    from cleversync.notify.notifier import Notifier

logger = logging.getLogger(__name__)

ALERT_EVENT = "ConsecutiveSyncFailures"
# Lifting the mass-delete guard is a decision about one school's data, never a blanket one.
ONE_SCHOOL_OVERRIDE = "the mass-delete override applies to exactly one school: give its id"


@dataclass
class RunResult:
    correlation_id: str
    status: RunStatus  # Success | Partial | Failed | Skipped (no school ran)
    duration_ms: int
    schools: list[SchoolResult] = field(default_factory=list)
    alerts: list[int] = field(default_factory=list)  # school ids alerted in this run


def new_correlation_id() -> str:
    return uuid.uuid4().hex


class Orchestrator:
    def __init__(
        self,
        *,
        settings: Settings,
        school_sync: SchoolSync,
        clock: Callable[[], datetime] = utcnow,
        notifier: Notifier | None = None,
    ) -> None:
        """``notifier``: emails run reports and alerts (none: they are only logged)."""
        self._settings = settings
        self.settings = settings
        self._sync = school_sync
        self._clock = clock
        self.notifier = notifier
        self.registry = school_sync.registry
        self.history = school_sync.history

    def targets(
        self, *, school_id: int | None = None, district_id: int | None = None
    ) -> list[tuple[SchoolRecord, DistrictRecord]]:
        """The schools a run covers (NotFoundError for unknown ids, UsageError for both)."""
        if school_id is not None and district_id is not None:
            raise UsageError("give a school id or a district id, not both")
        districts = {d.district_id: d for d in self.registry.list_districts()}
        if school_id is not None:
            school = self.registry.get_school(school_id)
            if not school.is_active:
                why = "is inactive" if school.district_active else "is in an inactive district"
                raise UsageError(f"school {school_id} ({school.name}) {why}; it is not synced")
            return [(school, districts[school.district_id])]
        if district_id is not None:
            self.registry.get_district(district_id)
        schools = self.registry.list_schools(district_id=district_id, active_only=True)
        return [(s, districts[s.district_id]) for s in schools]

    def run(
        self,
        *,
        school_id: int | None = None,
        district_id: int | None = None,
        full: bool = False,
        allow_mass_delete: bool = False,
        correlation_id: str | None = None,
        trigger: str = "manual",
        stop: threading.Event | None = None,
        within_deadline: bool = True,
    ) -> RunResult:
        """``within_deadline``: start no school once ``Sync__RunDeadlineMinutes`` have passed
        (a run inside the Functions host, which is stopped at functionTimeout); the CLI has no
        such limit and passes False."""
        began = time.perf_counter()
        deadline = self._deadline() if within_deadline else None
        if allow_mass_delete and school_id is None:
            raise UsageError(ONE_SCHOOL_OVERRIDE)
        targets = self.targets(school_id=school_id, district_id=district_id)
        request = SyncRequest(
            full=full or allow_mass_delete,
            allow_mass_delete=allow_mass_delete,
            correlation_id=correlation_id or new_correlation_id(),
            stop=stop,
            breakers=RunBreakers(),  # per run: the next run tries a down Clever again
        )
        logger.info(
            "Sync run %s (%s): %d school(s), at most %d at once",
            request.correlation_id,
            trigger,
            len(targets),
            self._settings.concurrency.max_schools_in_parallel,
            extra={"CorrelationId": request.correlation_id, "Trigger": trigger},
        )
        if school_id is None:  # a run over many schools: the timer, a district, all
            self._close_expired(request.correlation_id)
        results: list[SchoolResult] = []
        alerted: list[int] = []
        if targets:
            workers = min(self._settings.concurrency.max_schools_in_parallel, len(targets))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="school-sync") as pool:
                futures = [
                    pool.submit(bound(self._one), school, district, request, deadline, alerted)
                    for school, district in targets
                ]
                results = _collect(futures, stop)
        not_run = [r.school_id for r in results if r.error == self._not_run]
        status = overall_status(results)
        if not_run:
            logger.warning(
                "Sync run %s reached its deadline (CleverSync__Sync__RunDeadlineMinutes=%g): "
                "%d school(s) not run: %s",
                request.correlation_id,
                self._settings.sync.run_deadline_minutes,
                len(not_run),
                ", ".join(map(str, not_run)),
                extra={"CorrelationId": request.correlation_id, "NotRun": len(not_run)},
            )
            if status == RunStatus.SUCCESS:  # not every school was synced
                status = RunStatus.PARTIAL
        run = RunResult(
            correlation_id=request.correlation_id,
            status=status,
            duration_ms=int((time.perf_counter() - began) * 1000),
            schools=results,
        )
        run.alerts = [r.school_id for r in results if r.school_id in alerted]
        logger.info(
            "Sync run %s finished: %s in %.1f s",
            run.correlation_id,
            run.status,
            run.duration_ms / 1000,
            extra={
                "CorrelationId": run.correlation_id,
                "Status": run.status,
                "DurationMs": run.duration_ms,
            },
        )
        if self.notifier is not None:  # never raises; bounded by the SMTP timeouts
            self.notifier.run_finished(run, trigger)
        return run

    def close_expired(self, correlation_id: str) -> None:
        """Close the InProgress rows of runs that are gone (see ``_close_expired``)."""
        self._close_expired(correlation_id)

    def _close_expired(self, correlation_id: str) -> None:
        """Close every school's InProgress rows whose run is gone (its lease expired or is
        not held), so they do not stay InProgress until that school's next run, or for ever
        for a school deactivated after a crash."""
        try:
            closed = self.history.close_expired(
                "abandoned: the run that opened this row stopped without finishing (the "
                f"school's sync lease expired); closed by run {correlation_id}"
            )
        except CleverSyncError as exc:  # the schools' own runs close their rows as well
            logger.warning("Could not close expired SyncHistory rows: %s", exc)
            return
        for school_id, count in sorted(closed.items()):
            logger.warning(
                "Closed %d expired InProgress SyncHistory row(s) of school %s as Failed",
                count,
                school_id,
                extra={"CorrelationId": correlation_id, "SchoolId": school_id},
            )

    def _deadline(self) -> datetime | None:
        minutes = self._settings.sync.run_deadline_minutes
        return self._clock() + timedelta(minutes=minutes) if minutes > 0 else None

    @property
    def _not_run(self) -> str:
        return (
            "not run: the run deadline (CleverSync__Sync__RunDeadlineMinutes="
            f"{self._settings.sync.run_deadline_minutes:g}) was reached before its turn; "
            "a later run syncs it"
        )

    def _one(
        self,
        school: SchoolRecord,
        district: DistrictRecord,
        request: SyncRequest,
        deadline: datetime | None = None,
        alerted: list[int] | None = None,
    ) -> SchoolResult | None:
        if request.stop is not None and request.stop.is_set():
            return None  # asked to stop: no new school starts
        if deadline is not None and self._clock() >= deadline:
            # Skipped, not Failed: nothing is wrong with the school, so it writes no history
            # and never counts toward ConsecutiveSyncFailures; the run's warning says why.
            return SchoolResult(
                school.school_id,
                school.name,
                district.district_id,
                RunStatus.SKIPPED,
                error=self._not_run,
            )
        try:
            result = self._sync.run(school, district, request)
        except Exception as exc:  # a bug in one school's run must not stop the others
            logger.exception(
                "School %s crashed",
                school.school_id,
                extra={"CorrelationId": request.correlation_id, "SchoolId": school.school_id},
            )
            result = SchoolResult(
                school.school_id,
                school.name,
                district.district_id,
                RunStatus.FAILED,
                error=sanitize(f"unexpected {type(exc).__name__}: {exc}"),
            )
        if self.alert_if_due(result, request.correlation_id) and alerted is not None:
            alerted.append(result.school_id)
        return result

    def alert_if_due(self, result: SchoolResult, correlation_id: str) -> bool:
        """When a school's run has ended: one ConsecutiveSyncFailures event if its Failed runs
        just reached the threshold in a row (exactly: once per streak). Whether it fired."""
        threshold = self._settings.monitoring.alert_after_consecutive_failures
        if result.status != RunStatus.FAILED:
            return False
        try:
            streak = self.history.failure_streak(result.school_id, limit=threshold + 1)
        except CleverSyncError as exc:
            logger.warning("Could not read school %s's failure streak: %s", result.school_id, exc)
            return False
        if streak != threshold:
            return False
        logger.error(
            "%s: school %s (%s) has failed %d syncs in a row; last error: %s",
            ALERT_EVENT,
            result.school_id,
            result.name,
            streak,
            result.error,
            extra={
                "EventName": ALERT_EVENT,
                "SchoolId": result.school_id,
                "DistrictId": result.district_id,
                "ConsecutiveFailures": streak,
                "CorrelationId": correlation_id,
                "Status": RunStatus.FAILED,
            },
        )
        if self.notifier is not None:
            from cleversync.notify.message import Alert

            self.notifier.alert(
                Alert(
                    school_id=result.school_id,
                    name=result.name,
                    district_id=result.district_id,
                    failures=streak,
                    error=result.error,
                    correlation_id=correlation_id,
                    at=self._clock(),
                )
            )
        return True

    def purge_history(self) -> int:
        days = self._settings.history.retention_days
        removed = self.history.purge(self._clock() - timedelta(days=days))
        logger.info("Purged %d SyncHistory row(s) older than %d days", removed, days)
        return removed


def _collect(
    futures: list[Future[SchoolResult | None]], stop: threading.Event | None
) -> list[SchoolResult]:
    """The schools' results in order, leaving out those never started because of ``stop``.

    Waits in short steps: the main thread must wake up to run signal handlers (Ctrl-C).
    """
    pending = set(futures)
    while pending:
        _, pending = wait(pending, timeout=0.2)
        if stop is not None and stop.is_set():
            for future in pending:
                future.cancel()  # not started yet: it never will
    done = [future.result() for future in futures if not future.cancelled()]
    return [result for result in done if result is not None]


def overall_status(results: list[SchoolResult]) -> RunStatus:
    return status_over([r.status for r in results])


def status_over(statuses: list[str]) -> RunStatus:
    """Failed, Partial or Success over the schools that ran; Skipped when there were schools
    and none of them ran (a run that synced nothing must not look like a success)."""
    ran = set(statuses) - {RunStatus.SKIPPED}
    if statuses and not ran:
        return RunStatus.SKIPPED
    if RunStatus.FAILED in ran:
        return RunStatus.FAILED
    if RunStatus.PARTIAL in ran:
        return RunStatus.PARTIAL
    return RunStatus.SUCCESS
