"""What one run did to one entity of one school: counts, status, message; and its logging."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from cleversync.db.sessiondb.changes import ChangeBuffer
from cleversync.db.sessiondb.history import Counts, sanitize
from cleversync.errors import RecordError
from cleversync.runtally import Waits
from cleversync.vocabulary import GOOD_STATUSES, RunStatus, SyncType

logger = logging.getLogger("cleversync.sync")
DEFAULT_CHANGE_LIMIT = 5000  # History__MaxChangeDetailsPerRun's default


@dataclass
class EntityOutcome:
    entity: str
    sync_type: SyncType
    sync_id: int
    district_id: int
    school_id: int
    correlation_id: str
    counts: Counts = field(default_factory=Counts)
    status: RunStatus = RunStatus.IN_PROGRESS
    error: str | None = None
    held_back: str | None = None  # the mass-delete guard's message
    incomplete: bool = False  # Clever's list was incomplete: nothing deleted, full sync due
    notes: list[str] = field(default_factory=list)
    last_event_id: str | None = None
    retryable: bool = False  # failed for a cause that may pass (Clever or a database down)
    # The run's retries and rate-limit waits for this entity (written when its row closes).
    waits: Waits = field(default_factory=Waits)
    # The run's change detail (one buffer shared by the run's entities: the cap is per run).
    changes: ChangeBuffer = field(default_factory=lambda: ChangeBuffer(DEFAULT_CHANGE_LIMIT))

    @property
    def done(self) -> bool:
        return self.status != RunStatus.IN_PROGRESS

    @property
    def completed(self) -> bool:
        """Ran to its end: Success, or Partial only for skipped records. What the guard held
        back, a list Clever did not send whole, a failure or an unfinished pass leaves the school
        needing a full sync."""
        return self.status in GOOD_STATUSES and not self.held_back and not self.incomplete

    def dimensions(self, **extra: Any) -> dict[str, Any]:
        """The structured attributes of every sync log line (App Insights custom dimensions)."""
        return {
            "SyncId": self.sync_id,
            "CorrelationId": self.correlation_id,
            "DistrictId": self.district_id,
            "SchoolId": self.school_id,
            "EntityType": self.entity,
            "SyncType": self.sync_type,
            "Status": self.status,
            **extra,
        }

    def log(self, level: int, message: str, *args: object, **extra: Any) -> None:
        logger.log(level, message, *args, extra=self.dimensions(**extra))

    def record_failure(self, error: RecordError) -> None:
        """A record that cannot be stored: skipped, counted, logged by Clever id."""
        self.counts.failed += 1
        self.log(
            logging.WARNING,
            "Skipped %s %s: %s",
            self.entity.lower(),
            error.clever_id or "(no id)",
            error.problem,
            CleverId=error.clever_id,
        )

    def finish(self) -> None:
        """Settle the status of an entity that ran to its end."""
        if self.status == RunStatus.IN_PROGRESS:
            self.status = (
                RunStatus.PARTIAL if (self.counts.failed or self.held_back) else RunStatus.SUCCESS
            )

    def fail(self, error: BaseException | str) -> None:
        self.status = RunStatus.FAILED
        self.error = sanitize(str(error)) or type(error).__name__
        self.retryable = bool(getattr(error, "retryable", False))

    def message(self) -> str | None:
        """ErrorMessage for the history row: the error, the guard's message, the notes."""
        parts = [p for p in (self.error, self.held_back) if p]
        if self.counts.failed:
            parts.append(
                f"{self.counts.failed} record(s) skipped: they cannot be stored as they are "
                "(logged by Clever id)"
            )
        parts += self.notes
        return "; ".join(parts) or None
