"""When run reports and alerts are due, and getting them out without ever failing a sync.

Every message is first kept in SessionDb (``NotifyOutbox``), then the outbox is emptied
through the transport, oldest first: so a message the SMTP server refused (or could not be
reached for) goes out before the next one, at the next report. A queued run's report is
claimed in the same transaction that keeps it (``SyncRuns.ReportedAt``): whichever instance
finishes the run's last school, and however many finish at once, the run is reported once.
Nothing here raises: a failure is logged (without secrets) and the message stays kept,
within bounds (``MAX_KEPT`` messages, ``MAX_ATTEMPTS`` tries each).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from email import message_from_string, policy
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from cleversync.errors import CleverSyncError
from cleversync.notify.message import (
    Alert,
    EntityLine,
    Envelope,
    RunReport,
    SchoolLine,
    alert_message,
    report_message,
)
from cleversync.notify.transport import Transport
from cleversync.redaction import Redactor
from cleversync.settings import NotifySettings
from cleversync.timeutil import utcnow

if TYPE_CHECKING:
    from cleversync.db.sessiondb.outbox import Kept, Outbox, Pending
    from cleversync.db.sessiondb.runs import RunRecord
    from cleversync.orchestrator import RunResult

logger = logging.getLogger(__name__)

MAX_KEPT = 50  # unsent messages kept at most (the oldest go first)
# A batch stops after this many SMTP timeouts' worth of time, slow server or not: the rest
# wait for the next report rather than hold up the run that is ending.
BATCH_TIMEOUTS = 3
MAX_ATTEMPTS = 10  # a message refused this many times is dropped
BATCH = 20  # messages sent at most per report
REPORT = "report"
ALERT = "alert"


class Notifier:
    """Run reports and alerts for one process; safe to use from many threads."""

    def __init__(
        self,
        settings: NotifySettings,
        *,
        outbox: Callable[[], Outbox],
        transport: Transport | None,
        redactor: Redactor,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``transport`` None: reports are off (``On=never``, or nowhere to send them)."""
        self._monotonic = monotonic
        self._settings = settings
        self._outbox = outbox
        self._transport = transport
        self._redactor = redactor
        self._clock = clock
        self._sending = threading.Lock()
        self.envelope = Envelope(
            sender=settings.from_address,
            to=settings.recipients,
            dashboard_url=settings.dashboard_url,
        )

    @property
    def enabled(self) -> bool:
        return self._transport is not None and self._settings.on != "never"

    def due(self, report: RunReport) -> bool:
        """``On=always``: every run; ``failures``: a run with a school failed, held back or
        partial; ``never``: none."""
        if not self.enabled:
            return False
        return self._settings.on == "always" or report.needs_attention

    # --- the events ---------------------------------------------------------------------

    def run_finished(self, run: RunResult, trigger: str) -> None:
        """An in-process run (the CLI's) has ended: its report, if due, then the outbox."""
        if not self.enabled:
            return
        try:
            report = report_from_result(run, trigger, self._clock())
            if not self.due(report):
                self._deliver()  # what an earlier report left is still due
                return
            self._keep(self._report(report))
        except Exception as exc:
            _log_failure(
                f"The report of run {run.correlation_id} could not be prepared", exc, self._redact
            )
            return
        self._deliver()

    def queued_run_finished(self, run: RunRecord) -> bool:
        """A queued run's last school has ended (``run`` read with its history): claim its
        report; whether this call claimed it (then it was kept, if due, and sent)."""
        if not self.enabled:
            return False
        try:
            finished = run.finished_at or self._clock()
            report = report_from_record(run, finished)
            pending = self._report(report) if self.due(report) else None
            claimed = self._outbox().claim_report(run.run_id, pending)
        except Exception as exc:
            _log_failure(
                f"The report of sync run {run.run_id} could not be claimed", exc, self._redact
            )
            return False
        if claimed:
            self._deliver()
        return claimed

    def alert(self, alert: Alert) -> None:
        """ConsecutiveSyncFailures: sent at once (with whatever is kept before it)."""
        if not self.enabled:
            return
        try:
            self._keep(
                self._pending(ALERT, alert_message(alert, self.envelope, self._redact), None)
            )
        except Exception as exc:
            _log_failure(
                f"The alert for school {alert.school_id} could not be kept", exc, self._redact
            )
            return
        self._deliver()

    # --- keeping and sending ------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return self._redactor.redact(text)

    def _report(self, report: RunReport) -> Pending:
        message = report_message(report, self.envelope, self._redact, self._clock())
        return self._pending(REPORT, message, report.run_id)

    def _pending(self, kind: str, message: EmailMessage, run_id: int | None) -> Pending:
        from cleversync.db.sessiondb.outbox import Pending

        return Pending(kind, str(message["Subject"]), message.as_string(), run_id)

    def _keep(self, pending: Pending) -> None:
        self._outbox().add(pending)

    def deliver(self) -> int:
        """Send what is kept (oldest first); messages sent. Never raises."""
        return self._deliver()

    def _deliver(self) -> int:
        transport = self._transport
        if transport is None:
            return 0
        with self._sending:  # one batch at a time in this process; the claims guard the rest
            try:
                outbox = self._outbox()
                for dropped in outbox.drop_excess(keep=MAX_KEPT, max_attempts=MAX_ATTEMPTS):
                    logger.error(
                        "Dropped the unsent email %r (kept since %s, %d attempt(s); last error: "
                        "%s)",
                        dropped.subject,
                        dropped.created_at,
                        dropped.attempts,
                        self._redact(dropped.last_error or "none"),
                        extra={"EmailKind": dropped.kind},
                    )
                taken = outbox.take(
                    limit=BATCH, hold_seconds=max(60.0, 4 * self._settings.timeout_seconds * BATCH)
                )
            except Exception as exc:
                _log_failure("Kept email messages could not be read", exc, self._redact)
                return 0
            if not taken:
                return 0
            return self._send(transport, outbox, taken)

    def _send(self, transport: Transport, outbox: Outbox, taken: list[Kept]) -> int:
        try:
            connection = transport.open()
        except Exception as exc:
            error = self._redact(
                str(exc) if isinstance(exc, CleverSyncError) else f"unexpected {type(exc).__name__}"
            )
            logger.warning(
                "%d email message(s) not sent, kept for the next report: %s",
                len(taken),
                error,
                extra={"EmailsKept": len(taken)},
            )
            for kept in taken:
                self._quietly(outbox.failed, kept.message_id, error)
            return 0
        sent = 0
        deadline = self._monotonic() + BATCH_TIMEOUTS * self._settings.timeout_seconds
        try:
            for n, kept in enumerate(taken):
                if n and self._monotonic() > deadline:
                    left = taken[n:]
                    logger.warning(
                        "The mail server is slow: %d email message(s) left for the next report",
                        len(left),
                        extra={"EmailsKept": len(left)},
                    )
                    for waiting in left:
                        self._quietly(outbox.release, waiting.message_id)
                    break
                message = message_from_string(kept.message, policy=policy.SMTP)
                self._retarget(message)
                try:
                    where = connection.send(message)
                except Exception as exc:
                    error = self._redact(
                        str(exc)
                        if isinstance(exc, CleverSyncError)
                        else f"unexpected {type(exc).__name__}"
                    )
                    logger.warning(
                        "The email %r was not sent, kept for the next report: %s",
                        kept.subject,
                        error,
                        extra={"EmailKind": kept.kind},
                    )
                    self._quietly(outbox.failed, kept.message_id, error)
                    continue
                self._quietly(outbox.sent, kept.message_id)
                sent += 1
                logger.info(
                    "Sent the email %r to %s", kept.subject, where, extra={"EmailKind": kept.kind}
                )
        finally:
            try:
                connection.close()
            except Exception as exc:  # the messages went; a rude goodbye changes nothing
                logger.debug("Closing the mail connection failed: %s", type(exc).__name__)
        return sent

    def _retarget(self, message: EmailMessage) -> None:
        """Kept messages go to today's recipients (the setting may have changed since)."""
        if self.envelope.to:
            del message["To"]
            message["To"] = ", ".join(self.envelope.to)
        if self.envelope.sender:
            del message["From"]
            message["From"] = self.envelope.sender

    def _quietly(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            _log_failure("Recording an email's outcome failed", exc, self._redact)


def _log_failure(what: str, exc: BaseException, redact: Callable[[str], str]) -> None:
    if isinstance(exc, CleverSyncError):
        logger.warning("%s: %s", what, redact(str(exc)))
    else:
        logger.error("%s: unexpected %s", what, type(exc).__name__, exc_info=exc)


# --- reports from runs ---------------------------------------------------------------------


def report_from_result(run: RunResult, trigger: str, finished_at: datetime) -> RunReport:
    """The report of an in-process run."""
    return RunReport(
        correlation_id=run.correlation_id,
        trigger=trigger,
        finished_at=finished_at,
        schools=tuple(
            SchoolLine(
                school_id=school.school_id,
                name=school.name,
                status=str(school.status),
                error=school.error,
                entities=tuple(
                    EntityLine(
                        entity=outcome.entity,
                        status=str(outcome.status),
                        inserted=outcome.counts.inserted,
                        updated=outcome.counts.updated,
                        deleted=outcome.counts.deleted,
                        failed=outcome.counts.failed,
                        message=outcome.message(),
                    )
                    for outcome in school.entities
                ),
            )
            for school in run.schools
        ),
    )


def report_from_record(run: RunRecord, finished_at: datetime) -> RunReport:
    """The report of a queued run, from SyncRunSchools and the latest attempt's history."""
    schools = []
    for part in run.schools:
        latest = max((row["SyncStartTime"] for row in part.history), default=None)
        rows = [row for row in part.history if row["SyncStartTime"] == latest]
        schools.append(
            SchoolLine(
                school_id=part.school_id,
                name=part.name or f"school {part.school_id}",
                status=part.status,
                error=part.error,
                entities=tuple(
                    EntityLine(
                        entity=row["EntityType"],
                        status=row["Status"],
                        inserted=row["RecordsInserted"] or 0,
                        updated=row["RecordsUpdated"] or 0,
                        deleted=row["RecordsDeleted"] or 0,
                        failed=row["RecordsFailed"] or 0,
                        message=row["ErrorMessage"],
                    )
                    for row in rows
                ),
            )
        )
    return RunReport(
        correlation_id=run.correlation_id,
        trigger=run.trigger,
        finished_at=finished_at,
        run_id=run.run_id,
        schools=tuple(schools),
    )
