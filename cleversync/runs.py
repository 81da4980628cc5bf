"""Queued runs: a run is recorded, then synced one queue message per school, wherever the
Functions host delivers it.

``enqueue_run`` records the run (every school Queued) and sends its messages.
``process_message`` is the queue trigger's work: it syncs one school on the calling thread
and either completes (returns) or, for a failure that may pass (Clever or a database
unreachable), raises so the host delivers the message again; after ``maxDequeueCount``
deliveries the host moves it to the poison queue, where ``process_poison`` records that the
school's part of the run gave up. ``run_status`` is the run as ``GET /api/sync/runs/{id}``
shows it. Alerts are evaluated when each school's part ends.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from cleversync.clever.breaker import RunBreakers
from cleversync.db.school.entities import ENTITIES
from cleversync.db.sessiondb.history import sanitize
from cleversync.db.sessiondb.lease import GONE, Leases, held_message, new_owner, owner_state
from cleversync.db.sessiondb.registry import DistrictRecord, SchoolRecord
from cleversync.db.sessiondb.runs import FINISHED, OPEN, RUNNING, RunRecord, Runs
from cleversync.errors import CleverSyncError, LeaseHeldError, NotFoundError
from cleversync.orchestrator import Orchestrator, status_over
from cleversync.queue import MessageError, QueueUnavailableError, SyncMessage, SyncQueue
from cleversync.sync.school import SchoolResult, SchoolSync, SyncRequest
from cleversync.timeutil import iso, utcnow
from cleversync.vocabulary import RunStatus

logger = logging.getLogger(__name__)

MAX_DEQUEUE = 3  # host.json's extensions.queues.maxDequeueCount

# What process_message did with a delivery (for logs and tests).
DONE = "done"  # the school synced (whatever its outcome) and its part is closed
DUPLICATE = "duplicate"  # its part of the run was already over: nothing done
IN_FLIGHT = "in-flight"  # an earlier delivery of the same message is still syncing it
IGNORED = "ignored"  # not a message we can act on (bad body, unknown run): logged


class RetryLaterError(CleverSyncError):
    """Raised to the host so it delivers the message again: the failure may pass."""

    retryable = True


class QueuedRuns:
    def __init__(
        self,
        *,
        orchestrator: Orchestrator,
        runs: Runs,
        leases: Leases,
        queue: SyncQueue,
        school_sync: Callable[[str], SchoolSync],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """``school_sync(owner)``: a SchoolSync whose lease owner is ``owner``."""
        self.orchestrator = orchestrator
        self.runs = runs
        self.leases = leases
        self._queue = queue
        self._school_sync = school_sync
        self._clock = clock

    # --- enqueue ------------------------------------------------------------------------

    def enqueue_run(
        self,
        targets: Sequence[tuple[SchoolRecord, DistrictRecord]],
        *,
        full: bool = False,
        allow_mass_delete: bool = False,
        trigger: str,
        correlation_id: str | None = None,
    ) -> RunRecord:
        """Record a run of ``targets`` and queue one message per school.

        A school whose message could not be sent is closed Failed ("could not be queued");
        when not one could be sent, QueueUnavailableError says so.
        """
        run = self.runs.create(
            correlation_id=correlation_id or uuid.uuid4().hex,
            trigger=trigger,
            full=full or allow_mass_delete,
            allow_mass_delete=allow_mass_delete,
            school_ids=[school.school_id for school, _ in targets],
        )
        dims = {"CorrelationId": run.correlation_id, "RunId": run.run_id, "Trigger": trigger}
        sent = 0
        failure: Exception | None = None
        for school, _ in targets:
            if failure is None:
                try:
                    self._queue.send(
                        SyncMessage(
                            run_id=run.run_id,
                            school_id=school.school_id,
                            full=run.full,
                            allow_mass_delete=allow_mass_delete,
                            correlation_id=run.correlation_id,
                            trigger=trigger,
                        )
                    )
                    sent += 1
                    continue
                except Exception as exc:  # the rest cannot be sent either: close them all
                    failure = exc
            reason = sanitize(f"could not be queued: {_describe(failure)}")
            self.runs.finish_school(run.run_id, school.school_id, RunStatus.FAILED, reason)
        if failure is not None:
            logger.error(
                "Sync run %s: %d of %d school(s) could not be queued: %s",
                run.run_id,
                len(targets) - sent,
                len(targets),
                _describe(failure),
                extra=dims,
            )
            if sent == 0:
                raise QueueUnavailableError(
                    f"sync run {run.run_id} could not be queued: {_describe(failure)}"
                ) from failure
        logger.info("Sync run %s (%s): %d school(s) queued", run.run_id, trigger, sent, extra=dims)
        found = self.runs.get(run.run_id, with_history=False)
        return found if found is not None else run

    def purge_runs(self) -> int:
        """Delete finished runs older than History__RetentionDays (as history is)."""
        days = self.orchestrator.settings.history.retention_days
        removed = self.runs.purge(self._clock() - timedelta(days=days))
        logger.info("Purged %d sync run(s) older than %d days", removed, days)
        return removed

    def check_not_leased(self, school_id: int) -> None:
        """LeaseHeldError when a live run holds the school's lease right now."""
        holder, expires = self.leases.holder(school_id)
        if holder is not None and self._live(holder, expires):
            raise LeaseHeldError(held_message(school_id, holder, expires))

    # --- one delivery -------------------------------------------------------------------

    def process_message(
        self, body: str | bytes, dequeue_count: int, max_dequeue: int = MAX_DEQUEUE
    ) -> str:
        """Sync the message's school; raises (so the host delivers it again) only for a
        failure that may pass. The last delivery records the give-up before raising."""
        try:
            message = SyncMessage.parse(body)
        except MessageError as exc:
            logger.error("Ignored a queue message: %s", exc)
            return IGNORED
        dims = _dims(message)
        run = self.runs.get(message.run_id, with_history=False, school_id=message.school_id)
        part = run.school(message.school_id) if run is not None else None
        if run is not None and part is None:
            self._report_unclaimed(run)  # its school was removed: the run may have ended
        if run is None or part is None:
            logger.warning(
                "Ignored a queue message for school %s of run %s: no such run or school in it",
                message.school_id,
                message.run_id,
                extra=dims,
            )
            return IGNORED
        if part.status in FINISHED:
            logger.info(
                "School %s of run %s already finished (%s): message delivered again, nothing done",
                message.school_id,
                message.run_id,
                part.status,
                extra=dims,
            )
            self._report_unclaimed(run)  # its finisher may have died before claiming it
            return DUPLICATE
        registry = self.orchestrator.registry
        try:
            school = registry.get_school(message.school_id)
            district = registry.get_district(school.district_id)
        except NotFoundError as exc:
            self._finish(message, _result_for(message, None, RunStatus.FAILED, str(exc)))
            return DONE
        if not school.is_active:
            reason = f"school {school.school_id} ({school.name}) is inactive; it is not synced"
            self._finish(message, _result_for(message, school, RunStatus.SKIPPED, reason))
            return DONE
        tag = _run_tag(message.run_id)
        holder, expires = self.leases.holder(message.school_id)
        if holder is not None and _owner_tag(holder) == tag and self._live(holder, expires):
            logger.info(
                "School %s of run %s is still being synced by an earlier delivery",
                message.school_id,
                message.run_id,
                extra=dims,
            )
            return IN_FLIGHT
        if not self.runs.start_school(message.run_id, message.school_id):
            return DUPLICATE
        result = self._sync(message, school, district, new_owner(tag))
        if result.status == RunStatus.SKIPPED:
            holder, _ = self.leases.holder(message.school_id)
            if holder is None or _owner_tag(holder) == tag:
                # Another delivery of this message holds (or just released) the lease: it
                # closes the school's part; this one must not close it as Skipped.
                return IN_FLIGHT
        if result.status == RunStatus.FAILED and result.retryable:
            error = result.error or "failed"
            if dequeue_count < max_dequeue:
                self.runs.note_error(message.run_id, message.school_id, error)
                raise RetryLaterError(
                    f"school {school.school_id} of run {message.run_id}, attempt "
                    f"{dequeue_count} of {max_dequeue}: {error}; it will be tried again"
                )
            result.error = gave_up(max_dequeue, error)
            self._finish(message, result)
            raise RetryLaterError(
                f"school {school.school_id} of run {message.run_id}: {result.error}"
            )
        self._finish(message, result)
        return DONE

    def process_poison(self, body: str | bytes, max_dequeue: int = MAX_DEQUEUE) -> bool:
        """A message the host gave up on: its school's part of the run closes Failed
        ("gave up after N attempts"), with a Failed history row so it counts toward
        ConsecutiveSyncFailures. False when there was nothing to close."""
        try:
            message = SyncMessage.parse(body)
        except MessageError as exc:
            logger.error("Ignored a poison queue message: %s", exc)
            return False
        run = self.runs.get(message.run_id, school_id=message.school_id)
        part = run.school(message.school_id) if run is not None else None
        if part is None or part.status not in OPEN:
            return False
        error = gave_up(
            max_dequeue, part.error or "every delivery failed (see the sync_school logs)"
        )
        if not any(row["Status"] == RunStatus.FAILED for row in part.history):
            self.orchestrator.history.record_failed_run(
                school_id=message.school_id,
                entities=[entity.name for entity in ENTITIES],
                correlation_id=message.correlation_id,
                message=error,
            )
        result = _result_for(message, None, RunStatus.FAILED, error)
        result.name = part.name or result.name
        self._finish(message, result)
        return True

    # --- status -------------------------------------------------------------------------

    def run_status(self, run_id: int) -> dict[str, Any] | None:
        """The run as GET /api/sync/runs/{runId} shows it; None for an unknown run."""
        run = self.runs.get(run_id)
        if run is None:
            return None
        return {
            "runId": run.run_id,
            "correlationId": run.correlation_id,
            "trigger": run.trigger,
            "requestedAt": iso(run.requested_at),
            "finishedAt": iso(run.finished_at) if run.finished_at else None,
            "status": run_state(run),
            "schools": [
                {
                    "schoolId": part.school_id,
                    "name": part.name,
                    "status": part.status,
                    "attempts": part.attempts,
                    "error": sanitize(part.error),
                    "entities": _entities(part.history),
                }
                for part in run.schools
            ],
        }

    # --- helpers ------------------------------------------------------------------------

    def _sync(
        self,
        message: SyncMessage,
        school: SchoolRecord,
        district: DistrictRecord,
        owner: str,
    ) -> SchoolResult:
        request = SyncRequest(
            full=message.full,
            allow_mass_delete=message.allow_mass_delete,
            correlation_id=message.correlation_id,
            breakers=RunBreakers(),
        )
        try:
            return self._school_sync(owner).run(school, district, request)
        except Exception as exc:  # a bug: the school fails, the message completes
            logger.exception("School %s crashed", school.school_id, extra=_dims(message))
            return _result_for(
                message,
                school,
                RunStatus.FAILED,
                sanitize(f"unexpected {type(exc).__name__}: {exc}") or "crashed",
            )

    def _finish(self, message: SyncMessage, result: SchoolResult) -> None:
        closed, ended = self.runs.finish_school(
            message.run_id, message.school_id, result.status, result.error
        )
        if not closed:
            return
        self.orchestrator.alert_if_due(result, message.correlation_id)
        if ended:
            notifier = self.orchestrator.notifier
            reporting = notifier is not None and notifier.enabled
            run = self.runs.get(message.run_id, with_history=reporting)
            logger.info(
                "Sync run %s finished: %s",
                message.run_id,
                run_state(run) if run is not None else "?",
                extra=_dims(message),
            )
            if run is not None and notifier is not None and reporting:
                notifier.queued_run_finished(run)  # never raises; claims the report once

    def _report_unclaimed(self, run: RunRecord) -> None:
        """Report a run that has ended but whose report nobody claimed."""
        notifier = self.orchestrator.notifier
        if run.finished_at is None or run.reported_at is not None or notifier is None:
            return
        if not notifier.enabled:
            return
        finished = self.runs.get(run.run_id, with_history=True)
        if finished is not None:
            notifier.queued_run_finished(finished)  # never raises; claims the report once

    def _live(self, holder: str, expires: datetime | None) -> bool:
        return expires is not None and expires > self._clock() and owner_state(holder) != GONE


def run_state(run: RunRecord) -> str:
    """Queued (no school started), Running, or the outcome over its schools."""
    statuses = [part.status for part in run.schools]
    if any(status in OPEN for status in statuses):
        started = any(status not in OPEN or status == RUNNING for status in statuses)
        return "Running" if started else "Queued"
    return status_over(statuses)


def gave_up(attempts: int, error: str) -> str:
    return f"gave up after {attempts} attempts: {error}"


def _entities(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The latest attempt's SyncHistory rows, shaped as the sync body's entities."""
    if not rows:
        return []
    latest = max(row["SyncStartTime"] for row in rows)
    return [
        {
            "entityType": row["EntityType"],
            "syncType": row["SyncType"],
            "status": row["Status"],
            "syncId": row["SyncId"],
            "processed": row["RecordsProcessed"],
            "inserted": row["RecordsInserted"],
            "updated": row["RecordsUpdated"],
            "deleted": row["RecordsDeleted"],
            "failed": row["RecordsFailed"],
            "retries": row["Retries"],
            "rateLimitWaits": row["RateLimitWaits"],
            "rateLimitWaitSeconds": round(float(row["RateLimitWaitSeconds"] or 0), 3),
            "error": sanitize(row["ErrorMessage"]),
        }
        for row in rows
        if row["SyncStartTime"] == latest
    ]


def _result_for(
    message: SyncMessage, school: SchoolRecord | None, status: RunStatus, error: str
) -> SchoolResult:
    return SchoolResult(
        message.school_id,
        school.name if school else f"school {message.school_id}",
        school.district_id if school else 0,
        status,
        error=error,
    )


def _run_tag(run_id: int) -> str:
    return f"run{run_id}-"


def _owner_tag(owner: str) -> str | None:
    random = owner.rsplit(":", 1)[-1]
    return random[: random.index("-") + 1] if random.startswith("run") and "-" in random else None


def _dims(message: SyncMessage) -> dict[str, Any]:
    return {
        "CorrelationId": message.correlation_id,
        "RunId": message.run_id,
        "SchoolId": message.school_id,
        "Trigger": message.trigger,
    }


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, CleverSyncError):
        return str(exc)
    return f"unexpected {type(exc).__name__}" if exc is not None else "unknown error"
